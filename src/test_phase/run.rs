//! The test container's lifecycle: create it from the image with safe limits
//! and kiln's labels, start it, find where its test port is published, and
//! remove it on every path — explicitly, through [`ContainerGuard`]'s `Drop`
//! when a future is dropped mid-way, and through [`cleanup_leftovers`] for
//! whatever a crashed run left behind.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, ListNetworksOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use futures_util::StreamExt;

use super::TestPhaseError;
use super::keepalive::KeepAlive;
use crate::load::ResourceLimits;

/// Label naming what kiln started a container for.
pub const LABEL_ROLE: &str = "dev.kiln.role";
/// Label with the recipe name.
pub const LABEL_RECIPE: &str = "dev.kiln.recipe";
/// Label with the test phase's run id (one per test of an image).
pub const LABEL_RUN: &str = "dev.kiln.run";
/// Label with the daemon's run id (the queue's run, on one host or in a
/// cluster), on the containers of a daemon run: once the daemon knows that
/// run is dead (its restart recovery), [`cleanup_run`] removes them
/// whatever host name or pid the owner label names.
pub const LABEL_DAEMON_RUN: &str = "dev.kiln.daemon-run";
/// Value of [`LABEL_ROLE`] on test containers and networks.
pub const ROLE_TEST: &str = "test";
/// Label with `host:pid` of the kiln process that started the object.
pub const LABEL_OWNER: &str = "dev.kiln.owner";
/// Objects older than this are leftovers even when their owner looks alive.
pub const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(6 * 3600);

/// How to start a test container.
#[derive(Debug, Clone)]
pub(crate) struct RunSpec<'a> {
    pub image: &'a str,
    pub recipe: &'a str,
    pub run_id: &'a str,
    /// The daemon run the test belongs to ([`LABEL_DAEMON_RUN`]).
    pub daemon_run: Option<&'a str>,
    /// Distinguishes the containers of one run (`main`, `cmd-3`, `files-1`).
    pub role: &'a str,
    pub port: Option<u16>,
    pub limits: ResourceLimits,
    /// Replace the entrypoint with a keep-alive (image kind, command and
    /// file tests).
    pub keep_alive: Option<&'a KeepAlive>,
    /// What `containerRunOptions` and env vars add.
    pub extra: Extras,
}

/// Per-container settings from structure-test files.
#[derive(Debug, Clone, Default)]
pub(crate) struct Extras {
    /// `KEY=VALUE`, on top of the image's environment.
    pub env: Vec<String>,
    pub user: Option<String>,
    pub tty: bool,
    /// Only set when the operator allows it (checked when the input is made).
    pub privileged: bool,
    pub cap_add: Vec<String>,
    /// `host:container[:options]`, host inside the project, operator-allowed.
    pub binds: Vec<String>,
}

/// Where the test port can be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortAccess {
    /// The container port.
    pub container_port: u16,
    /// The published port on 127.0.0.1.
    pub host: SocketAddr,
    /// The container's own address on its bridge network, when it has one.
    pub direct: Option<SocketAddr>,
}

/// A created container that is removed when the guard goes away.
#[derive(Debug)]
pub(crate) struct ContainerGuard {
    docker: Docker,
    /// Container id.
    pub id: String,
    armed: bool,
}

impl ContainerGuard {
    /// Removes the container now (forced, with its anonymous volumes).
    pub async fn remove(mut self) -> Result<(), TestPhaseError> {
        self.armed = false;
        remove_container(&self.docker, &self.id).await
    }
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        // Dropped mid-way (cancelled future, panic): removal cannot be awaited
        // here, so it is spawned; `cleanup_leftovers` catches what a dying
        // runtime never finishes.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let docker = self.docker.clone();
            let id = std::mem::take(&mut self.id);
            handle.spawn(async move {
                if let Err(e) = remove_container(&docker, &id).await {
                    tracing::warn!("{e}");
                }
            });
        }
    }
}

fn labels(spec: &RunSpec<'_>) -> HashMap<String, String> {
    let mut labels = HashMap::from([
        (LABEL_ROLE.to_string(), ROLE_TEST.to_string()),
        (LABEL_RECIPE.to_string(), spec.recipe.to_string()),
        (LABEL_RUN.to_string(), spec.run_id.to_string()),
        (LABEL_OWNER.to_string(), owner()),
    ]);
    if let Some(run) = spec.daemon_run {
        labels.insert(LABEL_DAEMON_RUN.to_string(), run.to_string());
    }
    labels
}

/// Creates a container: limits, `no-new-privileges`, no mounts or
/// privileges unless [`Extras`] carries operator-allowed ones, the test port
/// (if any) on 127.0.0.1 with an ephemeral host port.
pub(crate) async fn create(
    docker: &Docker,
    spec: &RunSpec<'_>,
) -> Result<ContainerGuard, TestPhaseError> {
    let port_key = spec.port.map(|p| format!("{p}/tcp"));
    let port_bindings = port_key.as_ref().map(|k| {
        HashMap::from([(
            k.clone(),
            Some(vec![PortBinding {
                host_ip: Some("127.0.0.1".into()),
                host_port: Some(String::new()),
            }]),
        )])
    });
    let x = &spec.extra;
    let host_config = HostConfig {
        memory: Some(spec.limits.memory_bytes),
        memory_swap: Some(spec.limits.memory_bytes),
        nano_cpus: Some(spec.limits.nano_cpus),
        pids_limit: Some(spec.limits.pids),
        privileged: Some(x.privileged),
        security_opt: Some(vec!["no-new-privileges".into()]),
        cap_add: (!x.cap_add.is_empty()).then(|| x.cap_add.clone()),
        binds: (!x.binds.is_empty()).then(|| x.binds.clone()),
        mounts: None,
        port_bindings,
        publish_all_ports: Some(false),
        ..Default::default()
    };
    let (entrypoint, cmd) = spec.keep_alive.map(KeepAlive::argv).unzip();
    let body = ContainerCreateBody {
        image: Some(spec.image.to_string()),
        labels: Some(labels(spec)),
        exposed_ports: port_key.map(|k| vec![k]),
        host_config: Some(host_config),
        entrypoint,
        cmd,
        env: (!x.env.is_empty()).then(|| x.env.clone()),
        user: x.user.clone(),
        tty: Some(x.tty),
        ..Default::default()
    };
    let name = format!(
        "kiln-test-{}-{}-{}",
        sanitize(spec.recipe),
        spec.run_id,
        spec.role
    );
    let options = CreateContainerOptionsBuilder::default().name(&name).build();
    let created = docker
        .create_container(Some(options), body)
        .await
        .map_err(|source| TestPhaseError::CreateContainer {
            image: spec.image.to_string(),
            source,
        })?;
    let guard = ContainerGuard {
        docker: docker.clone(),
        id: created.id,
        armed: true,
    };
    let helper = spec
        .keep_alive
        .map(KeepAlive::archive)
        .transpose()
        .map_err(|source| TestPhaseError::Archive { source })?
        .flatten();
    if let Some(tar) = helper {
        let options = UploadToContainerOptionsBuilder::default().path("/").build();
        docker
            .upload_to_container(&guard.id, Some(options), bollard::body_full(tar.into()))
            .await
            .map_err(|source| {
                TestPhaseError::docker("copy the keep-alive into", &guard.id, source)
            })?;
    }
    Ok(guard)
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Starts the container. `Ok(Err(reason))` when the engine refused to start
/// it (no such entrypoint, no `sleep` for the keep-alive, …): a test
/// failure, not a phase error.
pub(crate) async fn start(docker: &Docker, id: &str) -> Result<Result<(), String>, TestPhaseError> {
    match docker.start_container(id, None).await {
        Ok(()) => Ok(Ok(())),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 400 | 500,
            message,
        }) => Ok(Err(message)),
        Err(source) => Err(TestPhaseError::docker("start container", id, source)),
    }
}

/// Where `port` was published, and the container's bridge address.
pub(crate) async fn port_access(
    docker: &Docker,
    id: &str,
    port: u16,
) -> Result<PortAccess, TestPhaseError> {
    let info = docker
        .inspect_container(id, None)
        .await
        .map_err(|source| TestPhaseError::docker("inspect container", id, source))?;
    let settings = info.network_settings.unwrap_or_default();
    let host_port = settings
        .ports
        .as_ref()
        .and_then(|p| p.get(&format!("{port}/tcp")))
        .and_then(|b| b.as_ref())
        .and_then(|b| {
            b.iter()
                .find_map(|b| b.host_port.as_deref()?.parse::<u16>().ok())
        })
        .ok_or_else(|| TestPhaseError::PortNotPublished {
            container: id.to_string(),
            port,
        })?;
    let direct = settings
        .networks
        .as_ref()
        .and_then(|n| {
            n.values()
                .find_map(|e| e.ip_address.as_deref()?.parse::<IpAddr>().ok())
        })
        .map(|ip| SocketAddr::new(ip, port));
    Ok(PortAccess {
        container_port: port,
        host: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), host_port),
        direct,
    })
}

/// `(running, exit code)` of the container.
pub(crate) async fn state(docker: &Docker, id: &str) -> Result<(bool, i64), TestPhaseError> {
    let info = docker
        .inspect_container(id, None)
        .await
        .map_err(|source| TestPhaseError::docker("inspect container", id, source))?;
    let s = info.state.unwrap_or_default();
    Ok((s.running.unwrap_or(false), s.exit_code.unwrap_or(-1)))
}

/// The last `n` lines the container wrote (stdout and stderr), or a note
/// saying why they could not be read.
pub async fn last_log_lines(docker: &Docker, id: &str, n: usize) -> String {
    let options = LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .tail(&n.to_string())
        .build();
    let mut logs = docker.logs(id, Some(options));
    let mut out = String::new();
    while let Some(item) = logs.next().await {
        match item {
            Ok(chunk) => out.push_str(&chunk.to_string()),
            Err(e) => {
                out.push_str(&format!("(could not read the logs: {e})"));
                break;
            }
        }
    }
    out
}

async fn remove_container(docker: &Docker, id: &str) -> Result<(), TestPhaseError> {
    let options = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    match docker.remove_container(id, Some(options)).await {
        Ok(()) => Ok(()),
        // Already gone (or being removed by a concurrent cleanup).
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404 | 409,
            ..
        }) => Ok(()),
        Err(source) => Err(TestPhaseError::docker("remove container", id, source)),
    }
}

/// This machine's name, as in owner labels (`unknown` when unreadable).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// `host:pid` of this process.
fn owner() -> String {
    format!("{}:{}", hostname(), std::process::id())
}

/// Whether an object with these labels, created at `created` (unix
/// seconds), belongs to a run that can no longer clean up after itself: its
/// owner was a process on this host that is gone, or it is older than
/// [`STALE_AFTER`]. Objects of live runs (including concurrent runs in this
/// process) are left alone.
fn is_leftover(labels: Option<&HashMap<String, String>>, created: Option<i64>) -> bool {
    let now = chrono::Utc::now().timestamp();
    if let Some(c) = created
        && now.saturating_sub(c) > STALE_AFTER.as_secs() as i64
    {
        return true;
    }
    let Some((host, pid)) = labels
        .and_then(|l| l.get(LABEL_OWNER))
        .and_then(|o| o.rsplit_once(':'))
    else {
        return true;
    };
    host == hostname() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

fn role_filter(extra: Option<(&str, &str)>) -> HashMap<String, Vec<String>> {
    let mut labels = vec![format!("{LABEL_ROLE}={ROLE_TEST}")];
    if let Some((k, v)) = extra {
        labels.push(format!("{k}={v}"));
    }
    HashMap::from([("label".to_string(), labels)])
}

/// Ids of every container kiln's test phase started (any state).
pub async fn labelled_containers(docker: &Docker) -> Result<Vec<String>, TestPhaseError> {
    Ok(list_containers(docker)
        .await?
        .into_iter()
        .map(|c| c.0)
        .collect())
}

async fn list_containers(docker: &Docker) -> Result<Vec<(String, bool)>, TestPhaseError> {
    list_containers_with(docker, None).await
}

async fn list_containers_with(
    docker: &Docker,
    label: Option<(&str, &str)>,
) -> Result<Vec<(String, bool)>, TestPhaseError> {
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&role_filter(label))
        .build();
    let list = docker
        .list_containers(Some(options))
        .await
        .map_err(|source| TestPhaseError::docker("list containers", "-", source))?;
    Ok(list
        .into_iter()
        .filter_map(|c| {
            let leftover = is_leftover(c.labels.as_ref(), c.created);
            Some((c.id?, leftover))
        })
        .collect())
}

/// Ids of every network kiln's test phase created.
pub async fn labelled_networks(docker: &Docker) -> Result<Vec<String>, TestPhaseError> {
    Ok(list_networks(docker)
        .await?
        .into_iter()
        .map(|c| c.0)
        .collect())
}

async fn list_networks(docker: &Docker) -> Result<Vec<(String, bool)>, TestPhaseError> {
    list_networks_with(docker, None).await
}

async fn list_networks_with(
    docker: &Docker,
    label: Option<(&str, &str)>,
) -> Result<Vec<(String, bool)>, TestPhaseError> {
    let options = ListNetworksOptionsBuilder::default()
        .filters(&role_filter(label))
        .build();
    let list = docker
        .list_networks(Some(options))
        .await
        .map_err(|source| TestPhaseError::docker("list networks", "-", source))?;
    Ok(list
        .into_iter()
        .filter_map(|n| {
            // Creation time's type depends on bollard features; the owner
            // label decides for networks.
            let leftover = is_leftover(n.labels.as_ref(), None);
            Some((n.id?, leftover))
        })
        .collect())
}

/// Removes every container and network labelled `dev.kiln.role=test` that
/// a crashed or interrupted run left behind (see the owner label); objects of
/// live runs stay. Returns how many objects were removed.
pub async fn cleanup_leftovers(docker: &Docker) -> Result<usize, TestPhaseError> {
    remove_listed(
        docker,
        list_containers(docker).await?,
        list_networks(docker).await?,
    )
    .await
}

/// Removes every test container and network labelled with the daemon run
/// `run` ([`LABEL_DAEMON_RUN`]), whoever the owner label names: call it
/// only for a run known to be dead (the daemon's restart recovery; in a
/// cluster the database has proven it — the run was interrupted or reaped).
/// Returns how many objects were removed.
pub async fn cleanup_run(docker: &Docker, run: &str) -> Result<usize, TestPhaseError> {
    let label = Some((LABEL_DAEMON_RUN, run));
    let all = |list: Vec<(String, bool)>| list.into_iter().map(|(id, _)| (id, true)).collect();
    remove_listed(
        docker,
        all(list_containers_with(docker, label).await?),
        all(list_networks_with(docker, label).await?),
    )
    .await
}

/// Removes the containers, then the networks, marked `true`.
async fn remove_listed(
    docker: &Docker,
    containers: Vec<(String, bool)>,
    networks: Vec<(String, bool)>,
) -> Result<usize, TestPhaseError> {
    let mut removed = 0;
    for (id, leftover) in containers {
        if leftover {
            remove_container(docker, &id).await?;
            removed += 1;
        }
    }
    for (id, leftover) in networks {
        if !leftover {
            continue;
        }
        match docker.remove_network(&id).await {
            Ok(()) => removed += 1,
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(source) => return Err(TestPhaseError::docker("remove network", &id, source)),
        }
    }
    Ok(removed)
}

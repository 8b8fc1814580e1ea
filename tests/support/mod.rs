//! Shared test support: the real services (`scripts/services up`), a small
//! pusher that builds test images through the OCI API, and extra registry
//! processes. Tests fail, never skip, when the services are missing.
#![allow(dead_code)]

pub mod cluster;
pub mod count_relay;
pub mod cut_proxy;
pub mod example;
pub mod fault_proxy;
pub mod keys;
pub mod postgres;
pub mod push;
pub mod push_proxy;
pub mod registry_process;
pub mod seed;
pub mod serve_process;
pub mod upload_proxy;

use std::collections::BTreeMap;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

/// Where the real services answer.
#[derive(Debug, Clone)]
pub struct Services {
    /// `DOCKER_HOST`.
    pub docker_host: String,
    /// `host:port` of the CNCF distribution registry.
    pub registry: String,
    /// The pushed base image, e.g. `127.0.0.1:5000/kiln/base:1`.
    pub base_image: String,
    /// moto's ECR endpoint URL.
    pub moto: String,
}

const HINT: &str = "the real test services are not running: run `scripts/services up` (or `scripts/services run cargo test`)";

fn env_file() -> Option<PathBuf> {
    let mut dir: Option<&Path> = Some(Path::new(env!("CARGO_MANIFEST_DIR")));
    while let Some(d) = dir {
        let f = d.join("target/services.env");
        if f.is_file() {
            return Some(f);
        }
        dir = d.parent();
    }
    None
}

fn parse_env_file(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("export ").or(Some(l.trim())))
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        .collect()
}

fn answers(host_port: &str) -> bool {
    host_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok())
}

/// The services, from the environment or `<root>/target/services.env`.
/// Panics with instructions when they are missing or not answering.
pub fn services() -> Services {
    static S: OnceLock<Services> = OnceLock::new();
    S.get_or_init(|| {
        let file = env_file()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .map(|t| parse_env_file(&t))
            .unwrap_or_default();
        let get = |k: &str| -> String {
            if let Ok(v) = std::env::var(k) {
                return v;
            }
            let v = file
                .get(k)
                .cloned()
                .unwrap_or_else(|| panic!("{k} is not set and not in target/services.env; {HINT}"));
            // SAFETY: every test calls `services()` before doing anything else
            // and the OnceLock runs this once while other callers wait, so no
            // other thread of ours reads the environment concurrently.
            unsafe { std::env::set_var(k, &v) };
            v
        };
        let s = Services {
            docker_host: get("DOCKER_HOST"),
            registry: get("KILN_TEST_REGISTRY"),
            base_image: get("KILN_TEST_BASE_IMAGE"),
            moto: get("AWS_ENDPOINT_URL_ECR"),
        };
        for k in ["AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
            get(k);
        }
        assert!(
            answers(&s.registry),
            "registry {} does not answer; {HINT}",
            s.registry
        );
        let moto_host = s.moto.trim_start_matches("http://").trim_end_matches('/');
        assert!(
            answers(moto_host),
            "moto {} does not answer; {HINT}",
            s.moto
        );
        s
    })
    .clone()
}

/// `key` from the environment, else from `target/services.env` (written by
/// `scripts/services up`).
pub fn services_env(key: &str) -> Option<String> {
    let prefix = format!("export {key}=");
    std::env::var(key).ok().or_else(|| {
        let env = env_file()?;
        let text = std::fs::read_to_string(env).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
    })
}

/// A repository or tag name unique to this run.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{:08x}", std::process::id(), fastrand::u32(..))
}

/// A unique lowercase token for names and labels.
pub fn nonce() -> String {
    format!("{:016x}", fastrand::u64(..))
}

impl Services {
    /// A negotiated connection to the test daemon; panics when it does not answer.
    pub async fn docker(&self) -> bollard::Docker {
        let endpoint = kiln::docker::Endpoint {
            host: self.docker_host.clone(),
            tls: None,
        };
        let docker = kiln::docker::client(&endpoint).unwrap_or_else(|e| panic!("{e}; {HINT}"));
        docker.negotiate_version().await.unwrap_or_else(|e| {
            panic!(
                "docker at {} does not answer ({e}); {HINT}",
                self.docker_host
            )
        })
    }
}

/// Runs the `kiln` binary on project `dir`: exit code, stdout, stderr.
pub fn kiln_on(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("--project")
        .arg(dir)
        .args(args)
        .output()
        .expect("running kiln");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A push of `image` as recipe `web` 1.2.3, build `build`, to `targets`.
pub fn push_request(
    image: &str,
    targets: Vec<kiln::load::Target>,
    build: u64,
    state: &Path,
) -> kiln::distribute::PushRequest {
    kiln::distribute::PushRequest {
        image: image.to_string(),
        name: "web".into(),
        version: semver::Version::new(1, 2, 3),
        build,
        distribute: kiln::load::DistributeConfig {
            targets,
            ..Default::default()
        },
        parent: None,
        state_dir: Some(state.to_path_buf()),
        options: kiln::distribute::PushOptions::default(),
    }
}

/// Runs `distribute`, failing the test if it has not ended after 2 minutes
/// (the faults under test used to hang it forever).
pub async fn push_bounded(
    docker: &bollard::Docker,
    client: &kiln::registry::RegistryClient,
    req: &kiln::distribute::PushRequest,
) -> Result<kiln::distribute::PushedImage, kiln::distribute::DistributeError> {
    let on_event = |e: &kiln::distribute::PushEvent| eprintln!("{e:?}");
    tokio::time::timeout(
        Duration::from_secs(120),
        kiln::distribute::distribute(docker, client, req, &on_event),
    )
    .await
    .expect("the push ends instead of hanging")
}

/// `skopeo copy` between plain-HTTP registries, optionally converting the
/// manifest format (`oci`, `v2s2`), which gives the same image another digest.
pub fn skopeo_copy(from: &str, to: &str, format: Option<&str>) {
    let mut cmd = std::process::Command::new("skopeo");
    cmd.args([
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
    ]);
    if let Some(f) = format {
        cmd.args(["--format", f]);
    }
    let out = cmd
        .arg(format!("docker://{from}"))
        .arg(format!("docker://{to}"))
        .output()
        .expect("skopeo (installed by scripts/services up)");
    assert!(
        out.status.success(),
        "skopeo copy {from} {to}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Pins the parent by asking the registry for its manifest digest.
pub async fn pin(reference: &kiln::reference::ImageReference) -> kiln::render::Pins {
    let url = format!(
        "http://{}/v2/{}/manifests/{}",
        reference.registry,
        reference.repository,
        reference.manifest_reference()
    );
    let accept = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";
    let resp = reqwest::Client::new()
        .head(&url)
        .header("Accept", accept)
        .send()
        .await
        .unwrap_or_else(|e| panic!("HEAD {url}: {e}; run scripts/services up"));
    assert!(resp.status().is_success(), "HEAD {url}: {}", resp.status());
    let digest: kiln::digest::Digest = resp.headers()["Docker-Content-Digest"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    kiln::render::Pins(BTreeMap::from([(
        reference.clone(),
        reference.pinned(digest),
    )]))
}

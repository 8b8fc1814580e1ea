//! The test phase's sequence: clean leftovers, inspect the image, create and
//! start the main container — a **service** (its own entrypoint, readiness
//! awaited) or an **image** (entrypoint replaced by the keep-alive) — run the
//! component tests in it and the structure tests (in containers of their
//! own), check it still runs, remove everything — on every path, including
//! shutdown. A container that will not start or that exits is a failed
//! check with its exit code and last log lines, never an engine error.

use std::future::Future;
use std::time::{Instant, SystemTime};

use bollard::Docker;
use bollard::models::ImageConfig;
use bollard::query_parameters::ListImagesOptionsBuilder;
use regex::Regex;

use super::checks::{self, Target};
use super::http::HttpExpect;
use super::keepalive::KeepAlive;
use super::readiness::{self, Wait};
use super::report::ContainerKind;
use super::report::{CheckKind, CheckResult, ReadinessOutcome, TestReport, fmt_duration};
use super::run::{self, Extras, LABEL_RECIPE, PortAccess, RunSpec};
use super::{TestInput, TestPhaseError, exec};

/// Runs the test phase for `input`.
pub async fn test_image(docker: &Docker, input: &TestInput) -> Result<TestReport, TestPhaseError> {
    test_image_until(docker, input, std::future::pending()).await
}

/// Like [`test_image`], but stops when `shutdown` resolves (e.g.
/// `tokio::signal::ctrl_c()`), removing the container before it returns
/// [`TestPhaseError::Interrupted`].
pub async fn test_image_until(
    docker: &Docker,
    input: &TestInput,
    shutdown: impl Future<Output = ()>,
) -> Result<TestReport, TestPhaseError> {
    let phase_start = Instant::now();
    match run::cleanup_leftovers(docker).await {
        Ok(0) => {}
        Ok(n) => tracing::info!("removed {n} leftover test object(s) of earlier runs"),
        Err(e) => tracing::warn!("could not clean up leftovers of earlier runs: {e}"),
    }
    let (image_config, keep_alive) = match docker.inspect_image(&input.image).await {
        Ok(i) => (
            i.config.unwrap_or_default(),
            KeepAlive::for_architecture(i.architecture.as_deref().unwrap_or("")),
        ),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => {
            return Err(TestPhaseError::ImageNotFound {
                image: input.image.clone(),
            });
        }
        Err(source) => {
            return Err(TestPhaseError::InspectImage {
                image: input.image.clone(),
                source,
            });
        }
    };
    let regex =
        |field: &'static str, p: &Option<String>| -> Result<Option<Regex>, TestPhaseError> {
            p.as_deref()
                .map(|p| {
                    Regex::new(p).map_err(|source| TestPhaseError::InvalidRegex {
                        field,
                        pattern: p.into(),
                        source,
                    })
                })
                .transpose()
        };
    let log_line = regex("logLine", &input.config.log_line)?;
    let http = match &input.config.http {
        Some(h) => Some(HttpExpect {
            path: h.path.clone(),
            status: h.expect_status,
            body_contains: h.body_contains.clone(),
            body_regex: regex("http.expectBodyRegex", &h.body_regex)?,
            headers: h.headers.clone(),
        }),
        None => None,
    };
    let run_id = format!(
        "{:x}{:04x}",
        chrono::Utc::now().timestamp_millis(),
        fastrand::u16(..)
    );
    let kind = input.kind();
    let spec = RunSpec {
        image: &input.image,
        recipe: &input.recipe,
        run_id: &run_id,
        daemon_run: input.daemon_run.as_deref(),
        role: "main",
        port: input.config.port,
        limits: input.config.limits,
        keep_alive: (kind == ContainerKind::Image).then_some(&keep_alive),
        extra: Extras::default(),
    };
    let guard = run::create(docker, &spec).await?;
    let id = guard.id.clone();
    let ctx = Ctx {
        docker,
        id: &id,
        run_id: &run_id,
        kind,
        input,
        image_config: &image_config,
        keep_alive: &keep_alive,
        log_line: log_line.as_ref(),
        http: http.as_ref(),
    };
    let outcome = tokio::select! {
        r = ctx.run() => r,
        () = shutdown => Err(TestPhaseError::Interrupted),
    };
    let logs = match outcome {
        Ok(_) => run::last_log_lines(docker, &id, readiness::LOG_TAIL).await,
        Err(_) => String::new(),
    };
    let removed = guard.remove().await;
    let (readiness, ready_at, checks) = outcome?;
    removed?;
    let readiness_latency = match &readiness {
        ReadinessOutcome::Ready { latency } => Some(*latency),
        _ => None,
    };
    Ok(TestReport {
        image: input.image.clone(),
        recipe: input.recipe.clone(),
        run_id,
        kind,
        passed: checks.iter().all(|c| c.passed),
        readiness,
        readiness_latency,
        ready_at,
        checks,
        logs,
        duration: phase_start.elapsed(),
    })
}

type Outcome = (ReadinessOutcome, Option<SystemTime>, Vec<CheckResult>);

struct Ctx<'a> {
    docker: &'a Docker,
    id: &'a str,
    run_id: &'a str,
    kind: ContainerKind,
    input: &'a TestInput,
    image_config: &'a ImageConfig,
    keep_alive: &'a KeepAlive,
    log_line: Option<&'a Regex>,
    http: Option<&'a HttpExpect>,
}

impl Ctx<'_> {
    async fn run(&self) -> Result<Outcome, TestPhaseError> {
        let (docker, id) = (self.docker, self.id);
        if let Err(reason) = run::start(docker, id).await? {
            let exit_code = run::state(docker, id).await.map(|s| s.1).unwrap_or(-1);
            let logs = run::last_log_lines(docker, id, readiness::LOG_TAIL).await;
            let r = ReadinessOutcome::NotStarted {
                reason,
                exit_code,
                logs,
            };
            let name = self.ready_name(None);
            return Ok((r.clone(), None, vec![readiness_check(&r, &name)]));
        }
        let started = Instant::now();
        let port = match self.input.config.port {
            None => None,
            Some(p) => match run::port_access(docker, id, p).await {
                Ok(a) => Some(a),
                Err(e) => match run::state(docker, id).await? {
                    // Exited before the engine even reported its ports.
                    (false, code) => {
                        let logs = run::last_log_lines(docker, id, readiness::LOG_TAIL).await;
                        let r = ReadinessOutcome::Exited {
                            exit_code: code,
                            after: started.elapsed(),
                            logs,
                        };
                        return Ok((
                            r.clone(),
                            None,
                            vec![readiness_check(&r, &format!("ready: port {p}"))],
                        ));
                    }
                    (true, _) => return Err(e),
                },
            },
        };
        let wait = Wait {
            log_line: self.log_line,
            http: self.http,
            port,
            timeout: self.input.config.timeout,
        };
        let r = readiness::wait_ready(docker, id, &wait, started).await;
        let ready_at = SystemTime::now();
        let mut checks = vec![readiness_check(&r, &self.ready_name(Some(&wait)))];
        if !matches!(r, ReadinessOutcome::Ready { .. }) {
            return Ok((r, None, checks));
        }
        match self.tests(port, &mut checks).await {
            Ok(()) => checks.push(self.still_running().await?),
            Err(TestPhaseError::ContainerExited {
                exit_code, logs, ..
            }) => checks.push(CheckResult {
                name: "still running during the tests".into(),
                kind: CheckKind::Container,
                passed: false,
                skipped: false,
                duration: started.elapsed(),
                detail: format!(
                    "the container exited with code {exit_code} during the tests; last log lines:\n{logs}"
                ),
            }),
            Err(e) => return Err(e),
        }
        Ok((r, Some(ready_at), checks))
    }

    /// Component tests in the main container, then every structure file.
    async fn tests(
        &self,
        port: Option<PortAccess>,
        checks: &mut Vec<CheckResult>,
    ) -> Result<(), TestPhaseError> {
        checks.extend(
            exec::run_component_tests(
                self.docker,
                self.id,
                &self.input.test_scripts,
                self.input.exec_timeout,
            )
            .await?,
        );
        let target = Target {
            docker: self.docker,
            input: self.input,
            run_id: self.run_id,
            image_config: self.image_config,
            keep_alive: self.keep_alive,
            http: port.map(|p| p.host),
        };
        for (n, file) in self.input.config.structure_tests.iter().enumerate() {
            checks.extend(checks::run_file(&target, file, n + 1).await?);
        }
        Ok(())
    }

    async fn still_running(&self) -> Result<CheckResult, TestPhaseError> {
        let (docker, id) = (self.docker, self.id);
        let start = Instant::now();
        let (running, code) = run::state(docker, id).await?;
        let mut c = CheckResult {
            name: "still running after the tests".into(),
            kind: CheckKind::Container,
            passed: running,
            skipped: false,
            duration: start.elapsed(),
            detail: String::new(),
        };
        if !running {
            let logs = run::last_log_lines(docker, id, readiness::LOG_TAIL).await;
            c.detail = format!(
                "the container exited with code {code} during the tests; last log lines:\n{logs}"
            );
        }
        Ok(c)
    }

    fn ready_name(&self, wait: Option<&Wait<'_>>) -> String {
        match (self.kind, wait) {
            (ContainerKind::Image, _) => {
                format!("keep-alive running ({})", self.keep_alive.describe())
            }
            (ContainerKind::Service, Some(w)) => wait_name(w),
            (ContainerKind::Service, None) => "started".into(),
        }
    }
}

fn wait_name(w: &Wait<'_>) -> String {
    let mut parts = Vec::new();
    if w.log_line.is_some() {
        parts.push("log line".to_string());
    }
    match (w.http, w.port) {
        (Some(h), Some(p)) => parts.push(format!("http {} on port {}", h.path, p.container_port)),
        (None, Some(p)) => parts.push(format!("port {}", p.container_port)),
        _ => {}
    }
    if parts.is_empty() {
        "container running".into()
    } else {
        format!("ready: {}", parts.join(" + "))
    }
}

fn readiness_check(r: &ReadinessOutcome, name: &str) -> CheckResult {
    let (passed, duration, detail) = match r {
        ReadinessOutcome::Ready { latency } => (
            true,
            *latency,
            format!("ready after {}", fmt_duration(*latency)),
        ),
        ReadinessOutcome::Exited {
            exit_code,
            after,
            logs,
        } => (
            false,
            *after,
            format!(
                "the container exited with code {exit_code} after {} before it was ready; last log lines:\n{logs}",
                fmt_duration(*after)
            ),
        ),
        ReadinessOutcome::NotStarted {
            reason,
            exit_code,
            logs,
        } => (
            false,
            std::time::Duration::ZERO,
            format!(
                "the engine could not start the container (exit code {exit_code}): {reason}; last log lines:\n{logs}"
            ),
        ),
        ReadinessOutcome::TimedOut {
            timeout,
            waiting_for,
            logs,
        } => (
            false,
            *timeout,
            format!(
                "not ready within {}s, waiting for {waiting_for}; last log lines:\n{logs}",
                timeout.as_secs()
            ),
        ),
    };
    CheckResult {
        name: name.to_string(),
        kind: CheckKind::Readiness,
        passed,
        skipped: false,
        duration,
        detail,
    }
}

/// The newest local image of `recipe` whose build-key label is `build_key`
/// (what the builder writes), as an image id: the image built from exactly
/// these inputs, never one another checkout of the recipe built.
pub async fn find_built_image(
    docker: &Docker,
    recipe: &str,
    build_key: &crate::digest::Digest,
) -> Result<String, TestPhaseError> {
    let filters = std::collections::HashMap::from([(
        "label".to_string(),
        vec![
            format!("{LABEL_RECIPE}={recipe}"),
            format!("{}={build_key}", crate::build::labels::BUILD_KEY),
        ],
    )]);
    let options = ListImagesOptionsBuilder::default()
        .filters(&filters)
        .build();
    let images =
        docker
            .list_images(Some(options))
            .await
            .map_err(|source| TestPhaseError::InspectImage {
                image: format!("label {LABEL_RECIPE}={recipe}"),
                source,
            })?;
    images
        .into_iter()
        .max_by_key(|i| i.created)
        .map(|i| i.id)
        .ok_or_else(|| TestPhaseError::NotBuilt {
            recipe: recipe.to_string(),
            build_key: build_key.to_string(),
        })
}

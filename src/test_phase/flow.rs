//! The test phase's sequence: clean leftovers, inspect the image, create and
//! start the container, wait for readiness, run component tests and
//! structure tests, check the container still runs, remove it — on every
//! path, including shutdown.

use std::future::Future;
use std::time::{Instant, SystemTime};

use bollard::Docker;
use bollard::models::ImageConfig;
use bollard::query_parameters::ListImagesOptionsBuilder;
use regex::Regex;

use super::checks::{self, Target};
use super::http::HttpExpect;
use super::readiness::{self, Wait};
use super::report::{CheckKind, CheckResult, ReadinessOutcome, TestReport, fmt_duration};
use super::run::{self, LABEL_RECIPE, PortAccess, RunSpec};
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
    let image_config = match docker.inspect_image(&input.image).await {
        Ok(i) => i.config.unwrap_or_default(),
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
    let spec = RunSpec {
        image: &input.image,
        recipe: &input.recipe,
        run_id: &run_id,
        port: input.config.port,
        limits: input.config.limits,
    };
    let guard = run::create(docker, &spec).await?;
    let id = guard.id.clone();
    let ctx = Ctx {
        docker,
        id: &id,
        input,
        image_config: &image_config,
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
    input: &'a TestInput,
    image_config: &'a ImageConfig,
    log_line: Option<&'a Regex>,
    http: Option<&'a HttpExpect>,
}

impl Ctx<'_> {
    async fn run(&self) -> Result<Outcome, TestPhaseError> {
        let (docker, id) = (self.docker, self.id);
        run::start(docker, id).await?;
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
        let mut checks = vec![readiness_check(&r, &wait_name(&wait))];
        if !matches!(r, ReadinessOutcome::Ready { .. }) {
            return Ok((r, None, checks));
        }
        checks.extend(
            exec::run_component_tests(
                docker,
                id,
                &self.input.test_scripts,
                self.input.exec_timeout,
            )
            .await?,
        );
        let target = Target {
            docker,
            container: id,
            image_config: self.image_config,
            http: port.map(|p: PortAccess| p.host),
        };
        for (path, tests) in &self.input.structure_tests {
            let file = path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            checks.extend(checks::run_all(&target, &file, tests).await?);
        }
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
        checks.push(c);
        Ok((r, Some(ready_at), checks))
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

/// The newest local image labelled `dev.kiln.recipe=<recipe>` (what the
/// builder writes), as an image id.
pub async fn find_recipe_image(docker: &Docker, recipe: &str) -> Result<String, TestPhaseError> {
    let filters = std::collections::HashMap::from([(
        "label".to_string(),
        vec![format!("{LABEL_RECIPE}={recipe}")],
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
        .ok_or_else(|| TestPhaseError::NoImage {
            recipe: recipe.to_string(),
        })
}

//! Runs commands inside the test container through the Engine API (exec),
//! copies files in (a small tar through `upload_to_container`), and runs the
//! components' `test` phase scripts with kiln's AWSTOE runtime, turning the
//! `::kiln-step` lines into per-step results.

use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::query_parameters::UploadToContainerOptionsBuilder;
use futures_util::StreamExt;

use super::TestPhaseError;
use super::report::{CheckKind, CheckResult};
use crate::render::TestScript;
use crate::render::toe_script::TOE_RUNTIME;

/// Where component test scripts are copied in the container.
pub const SCRIPT_DIR: &str = "/tmp/.kiln-test";
/// Most output kept per stream of one exec.
const MAX_OUTPUT: usize = 1024 * 1024;

/// What an exec printed and how it ended.
#[derive(Debug, Clone, Default)]
pub struct ExecOutput {
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Exit code; `None` when it did not finish within the timeout.
    pub exit_code: Option<i64>,
}

/// Runs `cmd` (no shell) in the container, as the container's user; `tty`
/// merges stderr into stdout, as `docker run -t` does. When the container is
/// not running (it exited), the error is [`TestPhaseError::ContainerExited`]
/// with its exit code and last log lines, never the engine's 409.
pub(crate) async fn exec(
    docker: &Docker,
    id: &str,
    cmd: Vec<String>,
    env: Vec<String>,
    tty: bool,
    timeout: Duration,
) -> Result<ExecOutput, TestPhaseError> {
    let what = cmd.join(" ");
    let created = docker
        .create_exec(
            id,
            CreateExecOptions {
                cmd: Some(cmd),
                env: (!env.is_empty()).then_some(env),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                tty: Some(tty),
                ..Default::default()
            },
        )
        .await;
    let created = match created {
        Ok(c) => c,
        Err(source) => return Err(exec_error(docker, id, &what, source).await),
    };
    let started = match docker.start_exec(&created.id, None).await {
        Ok(s) => s,
        Err(source) => return Err(exec_error(docker, id, &what, source).await),
    };
    let mut out = ExecOutput::default();
    let StartExecResults::Attached { mut output, .. } = started else {
        return Ok(out);
    };
    let collect = async {
        while let Some(item) = output.next().await {
            match item {
                Ok(bollard::container::LogOutput::StdErr { message }) => {
                    push(&mut out.stderr, &message)
                }
                Ok(other) => push(&mut out.stdout, other.as_ref()),
                Err(_) => break,
            }
        }
    };
    if tokio::time::timeout(timeout, collect).await.is_err() {
        return Ok(out);
    }
    let inspect = match docker.inspect_exec(&created.id).await {
        Ok(i) => i,
        Err(source) => return Err(exec_error(docker, id, &what, source).await),
    };
    out.exit_code = inspect.exit_code;
    // Killed (137) or not executable (126): the container may be dying, and
    // the engine reports it a moment later; the exit code says which.
    if matches!(out.exit_code, Some(126 | 137))
        && let Some(exited) = exited_within(docker, id, SETTLE).await
    {
        return Err(exited);
    }
    Ok(out)
}

/// How long an exec that looks killed waits for the container to be seen
/// as exited.
const SETTLE: Duration = Duration::from_secs(1);

/// [`TestPhaseError::ContainerExited`] when the container stops within `wait`.
async fn exited_within(docker: &Docker, id: &str, wait: Duration) -> Option<TestPhaseError> {
    let options = bollard::query_parameters::WaitContainerOptionsBuilder::default()
        .condition("not-running")
        .build();
    let mut stream = docker.wait_container(id, Some(options));
    tokio::time::timeout(wait, stream.next()).await.ok()?;
    match super::run::state(docker, id).await {
        Ok((false, exit_code)) => Some(TestPhaseError::ContainerExited {
            container: id.to_string(),
            exit_code,
            logs: super::run::last_log_lines(docker, id, super::readiness::LOG_TAIL).await,
        }),
        _ => None,
    }
}

/// An exec failed: [`TestPhaseError::ContainerExited`] when the container is
/// no longer running, else [`TestPhaseError::Exec`].
async fn exec_error(
    docker: &Docker,
    id: &str,
    command: &str,
    source: bollard::errors::Error,
) -> TestPhaseError {
    match super::run::state(docker, id).await {
        Ok((false, exit_code)) => TestPhaseError::ContainerExited {
            container: id.to_string(),
            exit_code,
            logs: super::run::last_log_lines(docker, id, super::readiness::LOG_TAIL).await,
        },
        _ => TestPhaseError::Exec {
            command: command.to_string(),
            container: id.into(),
            source,
        },
    }
}

fn push(buf: &mut String, bytes: &[u8]) {
    if buf.len() < MAX_OUTPUT {
        buf.push_str(&String::from_utf8_lossy(bytes));
    }
}

/// Copies `files` (`(path under SCRIPT_DIR, bytes, mode)`) into the container.
pub(crate) async fn upload(
    docker: &Docker,
    id: &str,
    files: &[(String, Vec<u8>, u32)],
) -> Result<(), TestPhaseError> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut dirs = std::collections::BTreeSet::new();
    let root = SCRIPT_DIR.trim_start_matches('/');
    for (path, bytes, mode) in files {
        let full = format!("{root}/{path}");
        // Directories first, world-writable like /tmp so any container user can use them.
        let mut acc = String::new();
        for part in full
            .split('/')
            .collect::<Vec<_>>()
            .split_last()
            .map(|x| x.1)
            .unwrap_or(&[])
        {
            acc = if acc.is_empty() {
                part.to_string()
            } else {
                format!("{acc}/{part}")
            };
            if acc != "tmp" && dirs.insert(acc.clone()) {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o1777);
                h.set_size(0);
                builder
                    .append_data(&mut h, format!("{acc}/"), std::io::empty())
                    .map_err(|source| TestPhaseError::Archive { source })?;
            }
        }
        let mut h = tar::Header::new_gnu();
        h.set_mode(*mode);
        h.set_size(bytes.len() as u64);
        builder
            .append_data(&mut h, &full, bytes.as_slice())
            .map_err(|source| TestPhaseError::Archive { source })?;
    }
    let tar = builder
        .into_inner()
        .map_err(|source| TestPhaseError::Archive { source })?;
    let options = UploadToContainerOptionsBuilder::default().path("/").build();
    docker
        .upload_to_container(id, Some(options), bollard::body_full(tar.into()))
        .await
        .map_err(|source| TestPhaseError::docker("copy test scripts into container", id, source))
}

/// One parsed `::kiln-step` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepLine {
    /// Phase.
    pub phase: String,
    /// Step name.
    pub step: String,
    /// `passed`, `failed` or `ignored`.
    pub status: String,
    /// Exit code of the last attempt.
    pub exit: i64,
    /// Attempts made.
    pub attempts: u32,
    /// Milliseconds.
    pub ms: u64,
}

/// Parses `::kiln-step phase=P step=S status=X exit=N attempts=A ms=T`
/// (the step name may contain spaces; the other fields cannot).
pub fn parse_step_line(line: &str) -> Option<StepLine> {
    let rest = line.trim_end().strip_prefix("::kiln-step phase=")?;
    let (phase, rest) = rest.split_once(" step=")?;
    let (step, rest) = rest.rsplit_once(" status=")?;
    let mut fields = rest.split(' ');
    let status = fields.next()?.to_string();
    let mut get = |k: &str| fields.next()?.strip_prefix(k).map(str::to_string);
    Some(StepLine {
        phase: phase.to_string(),
        step: step.to_string(),
        status,
        exit: get("exit=")?.parse().ok()?,
        attempts: get("attempts=")?.parse().ok()?,
        ms: get("ms=")?.parse().ok()?,
    })
}

/// Step names a generated test script declares, in order.
pub fn declared_steps(script: &str) -> Vec<String> {
    script
        .lines()
        .filter_map(|l| l.strip_prefix("toe_step test "))
        .filter_map(|rest| {
            if let Some(q) = rest.strip_prefix('\'') {
                // shell_quote: 'it'\''s' → it's
                let mut name = String::new();
                let mut r = q;
                loop {
                    let end = r.find('\'')?;
                    name.push_str(&r[..end]);
                    r = &r[end + 1..];
                    match r.strip_prefix("\\''") {
                        Some(more) => {
                            name.push('\'');
                            r = more;
                        }
                        None => return Some(name),
                    }
                }
            }
            rest.split(' ').next().map(str::to_string)
        })
        .collect()
}

/// Runs each component's test script (recipe order) and returns one result
/// per step; steps after an `Abort` are reported as skipped.
pub(crate) async fn run_component_tests(
    docker: &Docker,
    id: &str,
    scripts: &[TestScript],
    timeout: Duration,
) -> Result<Vec<CheckResult>, TestPhaseError> {
    let mut results = Vec::new();
    let mut files = Vec::new();
    for (i, s) in scripts.iter().enumerate() {
        let dir = format!("{:02}-{}", i + 1, s.component);
        files.push((
            format!("{dir}/toe.sh"),
            TOE_RUNTIME.as_bytes().to_vec(),
            0o644,
        ));
        files.push((
            format!("{dir}/test.sh"),
            s.script.clone().into_bytes(),
            0o755,
        ));
    }
    if files.is_empty() {
        return Ok(results);
    }
    upload(docker, id, &files).await?;
    for (i, s) in scripts.iter().enumerate() {
        let path = format!("{SCRIPT_DIR}/{:02}-{}/test.sh", i + 1, s.component);
        let start = Instant::now();
        let out = exec(
            docker,
            id,
            vec!["/bin/bash".into(), path],
            Vec::new(),
            false,
            timeout,
        )
        .await?;
        let mut seen = Vec::new();
        let mut seen_passed = Vec::new();
        for line in out.stdout.lines() {
            let Some(step) = parse_step_line(line) else {
                continue;
            };
            let passed = step.status != "failed";
            let mut detail = format!("exit {} after {} attempt(s)", step.exit, step.attempts);
            if step.status == "ignored" {
                detail.push_str("; failure ignored (onFailure: Ignore)");
            }
            if step.status == "skipped" {
                detail = "skipped by its `if` (counts as a success, as in AWSTOE)".into();
            }
            if !passed {
                detail.push('\n');
                detail.push_str(&tail(&out.stderr, 15));
            }
            seen.push(step.step.clone());
            if step.status == "passed" {
                seen_passed.push(step.step.clone());
            }
            results.push(CheckResult {
                name: format!("{}/{}", s.component, step.step),
                kind: CheckKind::ComponentStep,
                passed,
                skipped: step.status == "skipped",
                duration: Duration::from_millis(step.ms),
                detail,
            });
        }
        for name in declared_steps(&s.script)
            .into_iter()
            .filter(|n| !seen.contains(n))
        {
            results.push(CheckResult {
                name: format!("{}/{name}", s.component),
                kind: CheckKind::ComponentStep,
                passed: true,
                skipped: true,
                duration: Duration::ZERO,
                detail: "not run: an earlier step failed with onFailure: Abort".into(),
            });
        }
        let passed: Vec<String> = seen_passed;
        let dir = format!("{SCRIPT_DIR}/{:02}-{}", i + 1, s.component);
        results.extend(
            super::s3_upload::upload_staged(docker, id, &s.component, &dir, &s.uploads, &passed)
                .await,
        );
        let script_failed = out.exit_code != Some(0);
        let step_failed = results
            .iter()
            .any(|r| !r.passed && r.name.starts_with(&format!("{}/", s.component)));
        if script_failed && !step_failed {
            // The script itself broke (no bash, timeout, …): report it.
            results.push(CheckResult {
                name: format!("{}/test phase", s.component),
                kind: CheckKind::ComponentStep,
                passed: false,
                skipped: false,
                duration: start.elapsed(),
                detail: match out.exit_code {
                    Some(c) => format!("test script exited {c}\n{}", tail(&out.stderr, 15)),
                    None => format!("test script did not finish within {}s", timeout.as_secs()),
                },
            });
        }
    }
    Ok(results)
}

/// The last `n` lines of `s`.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_step_lines() {
        let l = parse_step_line(
            "::kiln-step phase=test step=Serves It status=failed exit=3 attempts=2 ms=1200",
        )
        .unwrap();
        assert_eq!(l.step, "Serves It");
        assert_eq!(
            (l.status.as_str(), l.exit, l.attempts, l.ms),
            ("failed", 3, 2, 1200)
        );
        assert!(parse_step_line("kiln-toe: ==> test/x").is_none());
    }

    #[test]
    fn finds_declared_steps() {
        let s = "toe_step test Check Continue 1 0 '' 0 -- kiln_step_1\ntoe_step test 'it'\\''s' Abort 1 0 '' 0 -- kiln_step_2\n";
        assert_eq!(
            declared_steps(s),
            vec!["Check".to_string(), "it's".to_string()]
        );
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any container output line ends without a panic.
        #[test]
        fn arbitrary_lines_never_panic(line in "(::kiln-step )?\\PC{0,100}") {
            let _ = parse_step_line(&line);
        }

        /// The line toe.sh prints parses back to its fields (step names are
        /// `[A-Za-z0-9_-]+`, checked at load time).
        #[test]
        fn toe_lines_round_trip(
            phase in "build|validate|test",
            step in "[A-Za-z0-9_-]{1,20}",
            status in "passed|failed|ignored",
            exit in any::<i64>(),
            attempts in any::<u32>(),
            ms in any::<u64>(),
        ) {
            let line = format!("::kiln-step phase={phase} step={step} status={status} exit={exit} attempts={attempts} ms={ms}\n");
            let want = StepLine { phase, step, status, exit, attempts, ms };
            prop_assert_eq!(parse_step_line(&line), Some(want));
        }
    }
}

//! Runs one structure-test file the way container-structure-test's docker
//! driver does: each command test in a fresh container of its own (created
//! with the keep-alive, its env and `containerRunOptions`, removed after),
//! file and licence tests on one container created and never started, the
//! metadata test against the image configuration; then kiln's HTTP tests
//! against the service's published port. See ARCHITECTURE.md for the two
//! places kiln differs from CST (setup runs by exec, teardown runs).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::ImageConfig;
use regex::Regex;

use super::exec::exec;
use super::files::{self, FileSource};
use super::http::{self, HttpExpect};
use super::keepalive::KeepAlive;
use super::report::{CheckKind, CheckResult};
use super::run::{self, Extras, RunSpec};
use super::structure::{CommandTest, StructureFile};
use super::{TestInput, TestPhaseError, metadata};

/// Timeout of one command (setup, test, teardown).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// What every structure test of a run shares.
pub(crate) struct Target<'a> {
    pub docker: &'a Docker,
    pub input: &'a TestInput,
    pub run_id: &'a str,
    pub image_config: &'a ImageConfig,
    /// What keeps command-test containers alive.
    pub keep_alive: &'a KeepAlive,
    /// The service's published test port, if it has one.
    pub http: Option<SocketAddr>,
}

pub(crate) fn result(
    name: &str,
    kind: CheckKind,
    start: Instant,
    errors: Vec<String>,
) -> CheckResult {
    CheckResult {
        name: name.to_string(),
        kind,
        passed: errors.is_empty(),
        skipped: false,
        duration: start.elapsed(),
        detail: errors.join("\n"),
    }
}

/// Runs every test of structure file number `n` (1-based), in CST's order.
pub(crate) async fn run_file(
    t: &Target<'_>,
    file: &StructureFile,
    n: usize,
) -> Result<Vec<CheckResult>, TestPhaseError> {
    let tests = &file.tests;
    let shown = file.shown.display().to_string();
    let mut out = Vec::new();
    for (i, c) in tests.command_tests.iter().enumerate() {
        out.push(command(t, file, c, &format!("cmd-{n}-{}", i + 1)).await?);
    }
    if !tests.file_content_tests.is_empty()
        || !tests.file_existence_tests.is_empty()
        || !tests.license_tests.is_empty()
    {
        out.extend(file_checks(t, file, &format!("files-{n}")).await?);
    }
    if let Some(m) = &tests.metadata_test {
        out.push(metadata::check(t.image_config, m, &shown));
    }
    for h in &tests.http_tests {
        let start = Instant::now();
        let errors = match t.http {
            None => vec!["http tests need a service container (`test.port` in the recipe)".into()],
            Some(addr) => {
                let expect = HttpExpect {
                    path: h.path.clone(),
                    status: h.expect_status,
                    body_contains: h.expect_body_contains.clone(),
                    body_regex: None,
                    headers: Default::default(),
                };
                http::get(addr, &expect).await.err().into_iter().collect()
            }
        };
        out.push(result(&h.name, CheckKind::Http, start, errors));
    }
    Ok(out)
}

/// The environment of a file's containers, as CST's docker driver builds
/// it: `globalEnvVars` become part of the image's environment (each value
/// expanded against what came before); a test's `envVars` are expanded
/// against that and set in the container. Returns `KEY=VALUE`s and the map
/// that `$VAR`s in a command, its args and file paths are expanded from —
/// the image's environment plus the globals, not the test's own `envVars`
/// (CST expands before the test's variables exist).
fn environment(
    image: &ImageConfig,
    file: &StructureFile,
    test: Option<&CommandTest>,
) -> (Vec<String>, HashMap<String, String>) {
    let mut map = metadata::image_env(image);
    let mut list = Vec::new();
    for e in &file.tests.global_env_vars {
        let v = expand_env(&e.value, &map);
        map.insert(e.key.clone(), v.clone());
        list.push(format!("{}={v}", e.key));
    }
    for e in test.map(|c| c.env_vars.as_slice()).unwrap_or_default() {
        list.push(format!("{}={}", e.key, expand_env(&e.value, &map)));
    }
    (list, map)
}

/// [`Extras`] of a file's containers: `containerRunOptions` (the policy was
/// checked when the input was made) and the environment.
fn extras(file: &StructureFile, env: Vec<String>) -> Extras {
    let o = file.tests.container_run_options.clone().unwrap_or_default();
    let mut env = env;
    env.extend(file.env_file.iter().map(|(k, v)| format!("{k}={v}")));
    env.extend(
        o.env_vars
            .iter()
            .filter_map(|k| Some(format!("{k}={}", std::env::var(k).ok()?))),
    );
    Extras {
        env,
        user: o.user.filter(|u| !u.is_empty()),
        tty: o.allocate_tty,
        privileged: o.privileged,
        cap_add: o.capabilities,
        binds: file
            .bind_mounts
            .iter()
            .map(|(host, target, opts)| {
                let mut b = format!("{}:{target}", host.display());
                if let Some(o) = opts {
                    b.push(':');
                    b.push_str(o);
                }
                b
            })
            .collect(),
    }
}

fn spec<'a>(
    t: &'a Target<'a>,
    role: &'a str,
    keep_alive: &'a KeepAlive,
    extra: Extras,
) -> RunSpec<'a> {
    RunSpec {
        image: &t.input.image,
        recipe: &t.input.recipe,
        run_id: t.run_id,
        daemon_run: t.input.daemon_run.as_deref(),
        role,
        port: None,
        limits: t.input.config.limits,
        keep_alive: Some(keep_alive),
        extra,
    }
}

/// One command test in a fresh container, removed on every path.
async fn command(
    t: &Target<'_>,
    file: &StructureFile,
    c: &CommandTest,
    role: &str,
) -> Result<CheckResult, TestPhaseError> {
    let start = Instant::now();
    let (env, map) = environment(t.image_config, file, Some(c));
    let extra = extras(file, env);
    let tty = extra.tty;
    let guard = run::create(t.docker, &spec(t, role, t.keep_alive, extra)).await?;
    let outcome = command_in(t.docker, &guard.id, c, &map, tty).await;
    let removed = guard.remove().await;
    let (errors, notes) = match outcome {
        Ok(r) => r,
        Err(TestPhaseError::ContainerExited {
            exit_code, logs, ..
        }) => (
            vec![format!(
                "the command test's container exited with code {exit_code}; last log lines:\n{logs}"
            )],
            Vec::new(),
        ),
        Err(e) => return Err(e),
    };
    removed?;
    let mut r = result(&c.name, CheckKind::Command, start, errors);
    if !notes.is_empty() {
        if !r.detail.is_empty() {
            r.detail.push('\n');
        }
        r.detail.push_str(&notes.join("\n"));
    }
    Ok(r)
}

/// Setup, the command and teardown in container `id`: `(errors, notes)`.
/// As in CST, a failing setup or teardown command does not fail the test
/// (its exit is noted); the command's output and exit code decide.
async fn command_in(
    docker: &Docker,
    id: &str,
    c: &CommandTest,
    env: &HashMap<String, String>,
    tty: bool,
) -> Result<(Vec<String>, Vec<String>), TestPhaseError> {
    if let Err(reason) = run::start(docker, id).await? {
        return Ok((
            vec![format!(
                "cannot start the command test's container: {reason}"
            )],
            Vec::new(),
        ));
    }
    let mut errors = Vec::new();
    let mut notes = Vec::new();
    let run_all = async |cmds: &[Vec<String>], what: &str, notes: &mut Vec<String>| {
        for s in cmds {
            let o = exec(docker, id, s.clone(), Vec::new(), tty, COMMAND_TIMEOUT).await?;
            if o.exit_code != Some(0) {
                notes.push(format!(
                    "note: {what} `{}` exited {} (container-structure-test does not fail the test for it): {}",
                    s.join(" "),
                    o.exit_code.map_or("without finishing".into(), |c| c.to_string()),
                    o.stderr.trim()
                ));
            }
        }
        Ok::<(), TestPhaseError>(())
    };
    run_all(&c.setup, "setup", &mut notes).await?;
    let argv: Vec<String> = c.argv().iter().map(|a| expand_env(a, env)).collect();
    let o = exec(docker, id, argv, Vec::new(), tty, COMMAND_TIMEOUT).await?;
    let mut check = |list: &[String], text: &str, want: bool, what: &str| {
        for re in list {
            if matches(re, text) != want {
                let (verb, found) = if want {
                    ("expected", "not found")
                } else {
                    ("excluded", "found")
                };
                errors.push(format!("{verb} {what} `{re}` {found}; {what}: {text:?}"));
            }
        }
    };
    check(&c.expected_output, &o.stdout, true, "output");
    check(&c.excluded_output, &o.stdout, false, "output");
    check(&c.expected_error, &o.stderr, true, "error");
    check(&c.excluded_error, &o.stderr, false, "error");
    match o.exit_code {
        Some(code) if code == c.exit_code => {}
        Some(code) => errors.push(format!("exit code {code}, expected {}", c.exit_code)),
        None => errors.push(format!(
            "did not finish within {}s",
            COMMAND_TIMEOUT.as_secs()
        )),
    }
    run_all(&c.teardown, "teardown", &mut notes).await?;
    Ok((errors, notes))
}

/// File content, file existence and licence tests on one container created
/// from the image and never started, removed after.
async fn file_checks(
    t: &Target<'_>,
    file: &StructureFile,
    role: &str,
) -> Result<Vec<CheckResult>, TestPhaseError> {
    let (env, map) = environment(t.image_config, file, None);
    let never = KeepAlive::never_started();
    let guard = run::create(t.docker, &spec(t, role, &never, extras(file, env))).await?;
    let src = FileSource {
        docker: t.docker,
        container: &guard.id,
    };
    let outcome = async {
        let mut out = Vec::new();
        for f in &file.tests.file_content_tests {
            out.push(files::content(&src, f).await?);
        }
        for f in &file.tests.file_existence_tests {
            out.push(files::existence(&src, f, &map).await?);
        }
        for (i, l) in file.tests.license_tests.iter().enumerate() {
            let name = format!("license ({}) #{}", file.shown.display(), i + 1);
            out.push(files::license(&src, l, &name).await?);
        }
        Ok::<_, TestPhaseError>(out)
    }
    .await;
    let removed = guard.remove().await;
    let out = outcome?;
    removed?;
    Ok(out)
}

/// `$VAR` / `${VAR}` replaced from `env` (unknown → empty), as
/// container-structure-test does (Go's `os.Expand`).
pub fn expand_env(s: &str, env: &HashMap<String, String>) -> String {
    let re =
        Regex::new(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))").expect("valid");
    re.replace_all(s, |c: &regex::Captures<'_>| {
        let k = c
            .get(1)
            .or_else(|| c.get(2))
            .map(|m| m.as_str())
            .unwrap_or("");
        env.get(k).cloned().unwrap_or_default()
    })
    .into_owned()
}

pub(crate) fn matches(re: &str, text: &str) -> bool {
    Regex::new(re).map(|r| r.is_match(text)).unwrap_or(false)
}

/// Go's `os.FileMode.String()` for a tar header (what container-structure-test compares).
pub fn go_mode_string(h: &tar::Header) -> String {
    let mode = h.mode().unwrap_or(0);
    let mut s = String::new();
    match h.entry_type() {
        tar::EntryType::Directory => s.push('d'),
        tar::EntryType::Symlink => s.push('L'),
        tar::EntryType::Block => s.push('D'),
        tar::EntryType::Char => s.push_str("Dc"),
        tar::EntryType::Fifo => s.push('p'),
        _ => {}
    }
    if mode & 0o4000 != 0 {
        s.push('u');
    }
    if mode & 0o2000 != 0 {
        s.push('g');
    }
    if mode & 0o1000 != 0 {
        s.push('t');
    }
    if s.is_empty() {
        s.push('-');
    }
    for (i, c) in "rwxrwxrwx".chars().enumerate() {
        s.push(if mode & (1 << (8 - i)) != 0 { c } else { '-' });
    }
    s
}

//! Runs structure tests against the running test container: command tests
//! via exec, file tests through the archive API (no shell needed in the
//! image), the metadata test against the image configuration, HTTP tests
//! against the published port.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::ImageConfig;
use bollard::query_parameters::DownloadFromContainerOptionsBuilder;
use futures_util::StreamExt;
use regex::Regex;

use super::TestPhaseError;
use super::exec::exec;
use super::http::{self, HttpExpect};
use super::metadata;
use super::report::{CheckKind, CheckResult};
use super::structure::{CommandTest, EnvVar, FileContentTest, FileExistenceTest, StructureTests};

/// Timeout of one command (setup, test, teardown).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Most bytes of a file read for content tests.
const MAX_FILE: usize = 16 * 1024 * 1024;

/// Where the checks run.
pub(crate) struct Target<'a> {
    pub docker: &'a Docker,
    pub container: &'a str,
    pub image_config: &'a ImageConfig,
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

/// Runs every test of one file, in container-structure-test's order;
/// `file` names the metadata check (one per file).
pub(crate) async fn run_all(
    t: &Target<'_>,
    file: &str,
    tests: &StructureTests,
) -> Result<Vec<CheckResult>, TestPhaseError> {
    let mut out = Vec::new();
    let env = metadata::image_env(t.image_config);
    for c in &tests.command_tests {
        out.push(command(t, c, &tests.global_env_vars, &env).await?);
    }
    for f in &tests.file_existence_tests {
        out.push(file_existence(t, f).await?);
    }
    for f in &tests.file_content_tests {
        out.push(file_content(t, f).await?);
    }
    if let Some(m) = &tests.metadata_test {
        out.push(metadata::check(t.image_config, m, file));
    }
    for h in &tests.http_tests {
        let start = Instant::now();
        let errors = match t.http {
            None => vec!["http tests need `test.port` in the recipe".to_string()],
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

/// `$VAR` / `${VAR}` replaced from the image's environment (unknown → empty),
/// as container-structure-test does before running a command.
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

async fn command(
    t: &Target<'_>,
    c: &CommandTest,
    global: &[EnvVar],
    image_env: &HashMap<String, String>,
) -> Result<CheckResult, TestPhaseError> {
    let start = Instant::now();
    let env: Vec<String> = global
        .iter()
        .chain(&c.env_vars)
        .map(|e| format!("{}={}", e.key, e.value))
        .collect();
    let mut errors = Vec::new();
    for s in &c.setup {
        let o = exec(
            t.docker,
            t.container,
            s.clone(),
            env.clone(),
            COMMAND_TIMEOUT,
        )
        .await?;
        if o.exit_code != Some(0) {
            errors.push(format!(
                "setup `{}` failed ({:?}): {}",
                s.join(" "),
                o.exit_code,
                o.stderr.trim()
            ));
        }
    }
    if errors.is_empty() {
        let mut cmd = vec![expand_env(&c.command, image_env)];
        cmd.extend(c.args.iter().map(|a| expand_env(a, image_env)));
        let o = exec(t.docker, t.container, cmd, env.clone(), COMMAND_TIMEOUT).await?;
        let check =
            |list: &[String], text: &str, want: bool, what: &str, errors: &mut Vec<String>| {
                for re in list {
                    if matches(re, text) != want {
                        let verb = if want { "expected" } else { "excluded" };
                        errors.push(format!(
                            "{verb} {what} `{re}` {}; {what}: {:?}",
                            if want { "not found" } else { "found" },
                            text
                        ));
                    }
                }
            };
        check(&c.expected_output, &o.stdout, true, "output", &mut errors);
        check(&c.excluded_output, &o.stdout, false, "output", &mut errors);
        check(&c.expected_error, &o.stderr, true, "error", &mut errors);
        check(&c.excluded_error, &o.stderr, false, "error", &mut errors);
        match o.exit_code {
            Some(code) if code == c.exit_code => {}
            Some(code) => errors.push(format!("exit code {code}, expected {}", c.exit_code)),
            None => errors.push(format!(
                "did not finish within {}s",
                COMMAND_TIMEOUT.as_secs()
            )),
        }
    }
    for s in &c.teardown {
        let o = exec(
            t.docker,
            t.container,
            s.clone(),
            env.clone(),
            COMMAND_TIMEOUT,
        )
        .await?;
        if o.exit_code != Some(0) {
            errors.push(format!(
                "teardown `{}` failed ({:?}): {}",
                s.join(" "),
                o.exit_code,
                o.stderr.trim()
            ));
        }
    }
    Ok(result(&c.name, CheckKind::Command, start, errors))
}

/// A path's tar header (and content when asked), or `None` when missing.
async fn fetch(
    t: &Target<'_>,
    path: &str,
    content: bool,
) -> Result<Option<(tar::Header, Vec<u8>)>, TestPhaseError> {
    let options = DownloadFromContainerOptionsBuilder::default()
        .path(path)
        .build();
    let mut stream = t.docker.download_from_container(t.container, Some(options));
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(b) => buf.extend_from_slice(&b),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => return Ok(None),
            Err(source) => {
                return Err(TestPhaseError::docker(
                    "read a file from container",
                    t.container,
                    source,
                ));
            }
        }
        // A directory's archive can be huge; its first header is all a test needs.
        if (!content && buf.len() >= 8192) || buf.len() > MAX_FILE + 8192 {
            break;
        }
    }
    let mut archive = tar::Archive::new(buf.as_slice());
    let io = |source| TestPhaseError::Archive { source };
    let mut entries = archive.entries().map_err(io)?;
    let Some(entry) = entries.next() else {
        return Ok(None);
    };
    let mut entry = entry.map_err(io)?;
    let header = entry.header().clone();
    let mut data = Vec::new();
    if content {
        use std::io::Read as _;
        entry
            .by_ref()
            .take(MAX_FILE as u64)
            .read_to_end(&mut data)
            .map_err(io)?;
    }
    Ok(Some((header, data)))
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

async fn file_existence(
    t: &Target<'_>,
    f: &FileExistenceTest,
) -> Result<CheckResult, TestPhaseError> {
    let start = Instant::now();
    let found = fetch(t, &f.path, false).await?;
    let mut errors = Vec::new();
    match (&found, f.should_exist) {
        (None, true) => errors.push(format!("{} should exist but does not", f.path)),
        (Some(_), false) => errors.push(format!("{} should not exist but does", f.path)),
        _ => {}
    }
    if let Some((h, _)) = &found {
        let actual = go_mode_string(h);
        if let Some(p) = &f.permissions
            && *p != actual
        {
            errors.push(format!("{} has permissions {actual}, expected {p}", f.path));
        }
        let mode = h.mode().unwrap_or(0);
        if let Some(by) = &f.is_executable_by {
            let mask = match by.as_str() {
                "owner" => 0o100,
                "group" => 0o010,
                "other" => 0o001,
                _ => 0o111,
            };
            if mode & mask == 0 {
                errors.push(format!("{} is not executable by {by} ({actual})", f.path));
            }
        }
        let (uid, gid) = (h.uid().unwrap_or(0) as i64, h.gid().unwrap_or(0) as i64);
        if let Some(u) = f.uid.filter(|u| *u != uid) {
            errors.push(format!("{} is owned by uid {uid}, expected {u}", f.path));
        }
        if let Some(g) = f.gid.filter(|g| *g != gid) {
            errors.push(format!("{} has gid {gid}, expected {g}", f.path));
        }
    }
    Ok(result(&f.name, CheckKind::FileExistence, start, errors))
}

async fn file_content(t: &Target<'_>, f: &FileContentTest) -> Result<CheckResult, TestPhaseError> {
    let start = Instant::now();
    let mut errors = Vec::new();
    match fetch(t, &f.path, true).await? {
        None => errors.push(format!("{} does not exist", f.path)),
        Some((_, data)) => {
            let text = String::from_utf8_lossy(&data);
            for re in &f.expected_contents {
                if !matches(re, &text) {
                    errors.push(format!("expected contents `{re}` not found in {}", f.path));
                }
            }
            for re in &f.excluded_contents {
                if matches(re, &text) {
                    errors.push(format!("excluded contents `{re}` found in {}", f.path));
                }
            }
        }
    }
    Ok(result(&f.name, CheckKind::FileContent, start, errors))
}

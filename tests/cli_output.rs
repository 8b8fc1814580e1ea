//! Snapshots (insta) of the CLI's human output and its `--json`, success and
//! failure, for the main commands; volatile values (temp paths, digests,
//! ids, times, ports) are redacted. Exit codes are asserted beside them.
//! Also: a closed pipe ends output quietly, `--color`/`NO_COLOR`, the help
//! footer, `--version`, completions and the man page.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};

use support::example::example_project;
use support::services;

/// `kiln --project DIR ARGS…` with colour off unless asked: exit code,
/// stdout and stderr.
fn kiln(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("--project")
        .arg(dir)
        .args(args)
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The text with what changes between runs replaced by placeholders.
fn redact(text: &str, dir: &Path) -> String {
    let mut t = text.replace(&dir.display().to_string(), "[project]");
    let rules = [
        (r"sha256:[0-9a-f]{64}", "sha256:[digest]"),
        (r"sha256:[0-9a-f]{12}\b", "sha256:[short]"),
        (r"\b[0-9a-f]{32}\b", "[id]"),
        (r"\b[0-9a-f]{12}\b", "[short]"),
        (r"kiln-it/hello-[0-9a-f]{16}", "[repo]"),
        (r"127\.0\.0\.1:\d+", "127.0.0.1:[port]"),
        (r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?Z?", "[time]"),
        (
            r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
            "[uuid]",
        ),
        (r#""(\w+Ms|ms)": \d+"#, "\"$1\": [ms]"),
        (r"\d+\.\d+s\b", "[secs]"),
        (r"/tmp/\.tmp\w+", "[tmp]"),
    ];
    for (pattern, with) in rules {
        t = regex::Regex::new(pattern)
            .unwrap()
            .replace_all(&t, with)
            .into_owned();
    }
    t
}

/// Runs and snapshots `exit`, stdout and stderr of `kiln ARGS…` as one text.
#[track_caller]
fn snapshot(name: &str, dir: &Path, args: &[&str], code: i32) -> String {
    let (got, out, err) = kiln(dir, args);
    let shown = format!(
        "$ kiln {}\nexit {got}\n--- stdout\n{out}--- stderr\n{err}",
        args.join(" ")
    );
    assert_eq!(got, code, "{shown}");
    insta::assert_snapshot!(name, redact(&shown, dir));
    out
}

/// The JSON document on stdout of a failing `--json` command.
#[track_caller]
fn error_json(out: &str, kind: &str, code: i32) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["error"]["kind"], kind, "{out}");
    assert_eq!(v["error"]["exitCode"], code, "{out}");
    v
}

#[test]
fn validate_render_and_usage_errors() {
    services();
    let (dir, _) = example_project(|t| t);
    let d = dir.path();
    snapshot("validate_ok", d, &["validate"], 0);
    snapshot("validate_ok_json", d, &["validate", "--json"], 0);
    snapshot("render_ok", d, &["render", "hello-web"], 0);
    snapshot("usage_error", d, &["validate", "--bogus"], 2);
    let out = snapshot("usage_error_json", d, &["validate", "--bogus", "--json"], 2);
    error_json(&out, "usage", 2);

    let (bad, _) = example_project(|t| {
        t.replace("version: 1.0.0", "version: one")
            .replace("    pids: 64", "    pids: [64]")
    });
    let b = bad.path();
    snapshot("validate_invalid", b, &["validate"], 3);
    let out = snapshot("validate_invalid_json", b, &["validate", "--json"], 3);
    let v = error_json(&out, "invalid", 3);
    assert_eq!(v["error"]["file"], "recipes/hello-web.yaml", "{out}");
    assert!(v["error"]["line"].as_u64().is_some(), "{out}");
    snapshot(
        "render_invalid_json",
        b,
        &["render", "hello-web", "--json"],
        3,
    );
}

#[test]
fn resolve_check_records_approved_and_a_failed_run() {
    services();
    let (dir, _) = example_project(|t| t);
    let d = dir.path();
    snapshot("resolve_check_unlocked", d, &["resolve", "--check"], 4);
    let out = snapshot(
        "resolve_check_unlocked_json",
        d,
        &["resolve", "--check", "--json"],
        4,
    );
    error_json(&out, "drift", 4);
    assert_eq!(kiln(d, &["resolve"]).0, 0);
    snapshot("resolve_check_ok", d, &["resolve", "--check"], 0);
    snapshot(
        "resolve_check_ok_json",
        d,
        &["resolve", "--check", "--json"],
        0,
    );
    snapshot("records_empty", d, &["records"], 0);
    snapshot("approved_none", d, &["approved", "hello-web"], 1);
    let out = snapshot(
        "approved_none_json",
        d,
        &["approved", "hello-web", "--json"],
        1,
    );
    error_json(&out, "failed", 1);

    // A parent on a registry that refuses connections: the run fails at
    // resolve (infrastructure, exit 6) and is recorded as failed.
    let (down, _) = example_project(|t| {
        t.replace(
            "${KILN_REGISTRY:-127.0.0.1:5000}/kiln/base:1",
            "127.0.0.1:9/kiln/base:1",
        )
    });
    let d = down.path();
    let out = snapshot(
        "run_failed_json",
        d,
        &["run", "hello-web", "--json", "--quiet"],
        6,
    );
    let v = error_json(&out, "infrastructure", 6);
    assert_eq!(v["record"]["status"], "failed", "{out}");
    snapshot("run_failed", d, &["run", "hello-web", "--quiet"], 6);
    snapshot("records_after_failures", d, &["records"], 0);
    let out = snapshot("records_json", d, &["records", "--json", "--limit", "1"], 0);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()[0]["record"]["status"],
        "failed"
    );
    snapshot(
        "build_unpinned_json",
        d,
        &["build", "hello-web", "--json"],
        1,
    );
}

/// Runs `kiln --project DIR ARGS…` whose reader has gone before it writes:
/// stdout closed, and stderr too when `both` (`2>&1 | head -1`).
fn with_closed_output(dir: &Path, args: &[&str], both: bool) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("--project")
        .arg(dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    if both {
        drop(child.stderr.take());
    }
    child.wait_with_output().unwrap()
}

/// `kiln validate 2>&1 | head -1` and `kiln records | head -1`: the reader
/// goes away; kiln ends quietly with its own exit code, no panic.
#[test]
fn a_closed_pipe_ends_output_quietly() {
    services();
    let (dir, _) = example_project(|t| t);
    for args in [
        &["validate"][..],
        &["render", "hello-web"],
        &["records", "--json"],
        &["--help"],
    ] {
        let out = with_closed_output(dir.path(), args, false);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "{args:?}: {err}"
        );
    }
    let (bad, _) = example_project(|t| t.replace("version: 1.0.0", "version: one"));
    let out = with_closed_output(bad.path(), &["validate"], true);
    assert_eq!(out.status.code(), Some(3), "its own exit code");
}

#[test]
fn colour_only_when_asked_or_on_a_terminal() {
    services();
    let (bad, _) = example_project(|t| t.replace("version: 1.0.0", "version: one"));
    let b = bad.path();
    let (_, _, plain) = kiln(b, &["validate"]);
    assert!(
        !plain.contains('\x1b'),
        "not a terminal: no escape codes\n{plain}"
    );
    let (_, _, forced) = kiln(b, &["--color", "always", "validate"]);
    assert!(forced.contains("\x1b[1;31merror"), "{forced}");
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args([
            "--project",
            b.to_str().unwrap(),
            "--color",
            "never",
            "validate",
        ])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).contains('\x1b'));
    // The log (what `kiln serve` writes to its log file) follows the same rule.
    let (dir, _) = example_project(|t| t);
    let log = |color: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(["--project", dir.path().to_str().unwrap(), "--color", color])
            .args(["resolve", "--check"])
            .env("RUST_LOG", "debug")
            .env_remove("NO_COLOR")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let plain = log("auto");
    assert!(plain.contains("DEBUG"), "{plain}");
    assert!(
        !plain.contains('\x1b'),
        "a log that is not a terminal has no escape codes\n{plain}"
    );
    assert!(log("always").contains("\x1b["));
}

#[test]
fn help_version_completions_and_man_page() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (code, help, _) = kiln(d, &["--help"]);
    assert_eq!(code, 0);
    for line in [
        "Exit codes:",
        "3  validation failed",
        "4  drift found",
        "5  tests failed",
        "6  push or infrastructure failed",
    ] {
        assert!(help.contains(line), "{help}");
    }
    let (code, version, _) = kiln(d, &["--version"]);
    assert_eq!(code, 0);
    assert!(
        regex::Regex::new(r"^kiln \d+\.\d+\.\d+ \((revision [0-9a-f]{12}|revision unknown)\)\n$")
            .unwrap()
            .is_match(&version),
        "{version}"
    );
    for shell in ["bash", "zsh", "fish"] {
        let (code, script, err) = kiln(d, &["completions", shell]);
        assert_eq!(code, 0, "{err}");
        assert!(
            script.contains("validate") && script.contains("color"),
            "{shell}"
        );
    }
    let (code, script, _) = kiln(d, &["completions", "bash"]);
    assert_eq!(code, 0);
    let bash = Command::new("bash")
        .args(["-n", "-c", &script])
        .output()
        .unwrap();
    assert!(bash.status.success(), "bash -n: {bash:?}");
    let (code, man, _) = kiln(d, &["man"]);
    assert_eq!(code, 0);
    assert!(
        man.starts_with(".ie") || man.contains(".TH kiln 1"),
        "{man}"
    );
    assert!(
        man.contains("completions") && man.contains("Exit codes"),
        "{man}"
    );
}

/// A run whose tests fail: exit 5, and under `--json` one document naming
/// the failure and the failed record (today's `kiln run --json` printed
/// nothing when a run failed).
#[test]
fn a_run_whose_tests_fail_exits_5_with_the_error_as_json() {
    services();
    let (dir, _) = example_project(|t| {
        t.replace(
            "expectBodyContains: Hello from kiln",
            "expectBodyContains: not on the page",
        )
    });
    let d = dir.path();
    assert_eq!(kiln(d, &["resolve"]).0, 0);
    let (code, out, err) = kiln(d, &["run", "hello-web", "--json", "--quiet"]);
    assert_eq!(code, 5, "{out}{err}");
    let v = error_json(&out, "testsFailed", 5);
    assert!(
        v["error"]["causes"][0]
            .as_str()
            .unwrap()
            .starts_with("tests failed:"),
        "{out}"
    );
    assert_eq!(v["record"]["status"], "failed", "{out}");
}

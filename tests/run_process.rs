//! `kiln run` as a separate process, the way users and service managers stop
//! and overlap it: SIGTERM in the middle of the test phase, and several runs
//! of one recipe at once.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kiln::record::{Status, Store, db_path};
use support::example::{example_project, test_containers_of};
use support::services;

const BIN: &str = env!("CARGO_BIN_EXE_kiln");

/// `kiln --project DIR ARGS…` started in the background.
fn spawn(dir: &Path, args: &[&str]) -> Child {
    Command::new(BIN)
        .arg("--project")
        .arg(dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

fn finish(child: Child) -> (Option<i32>, String) {
    let out = child.wait_with_output().unwrap();
    let shown = format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), shown)
}

#[test]
fn sigterm_during_the_test_phase_cancels_cleans_up_and_records() {
    // The probe never sees its text, so the test phase waits for minutes.
    services();
    let (dir, _repo) = example_project(|t| {
        t.replace(
            "expectBodyContains: Hello from kiln",
            "expectBodyContains: never served",
        )
        .replace("timeoutSeconds: 30", "timeoutSeconds: 600")
    });
    let child = spawn(dir.path(), &["run", "hello-web"]);
    let pid = child.id();
    wait_until("the test container", 300, || {
        !test_containers_of(pid).is_empty()
    });
    signal(pid, "TERM");
    let (code, shown) = finish(child);
    assert_eq!(
        code,
        Some(1),
        "cancelled, not killed by the signal: {shown}"
    );
    assert!(
        test_containers_of(pid).is_empty(),
        "container left: {shown}"
    );
    let store = Store::open(db_path(dir.path())).unwrap();
    let records = store.list(Some("hello-web"), None).unwrap();
    assert_eq!(records.len(), 1, "{shown}");
    assert_eq!(records[0].record.status, Status::Cancelled, "{shown}");
    assert_eq!(records[0].record.failure.as_ref().unwrap().stage, "test");
}

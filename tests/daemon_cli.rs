//! `kiln serve` as a separate process over the real pipeline (Docker,
//! registry, moto), driven by the CLI (`trigger --wait`, `runs`, `logs`,
//! `approved --server`, `token hash`), killed with SIGKILL in the middle of a
//! run and restarted on the same SQLite state.

mod support;

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use assert_cmd::Command;
use support::example::test_containers_of;

const BIN: &str = env!("CARGO_BIN_EXE_kiln");

/// A copy of the example project without its schedule, pushing to unique
/// repositories.
fn project() -> tempfile::TempDir {
    support::services();
    let dir = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    for sub in ["recipes", "components", "dockerfiles", "config"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        for entry in std::fs::read_dir(repo.join(sub)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.path().join(sub).join(entry.file_name())).unwrap();
        }
    }
    let recipe = dir.path().join("recipes/hello-web.yaml");
    let text = std::fs::read_to_string(&recipe).unwrap().replace(
        "repository: kiln/hello-web",
        &format!("repository: kiln-it/daemon-{}", support::nonce()),
    );
    std::fs::write(&recipe, &text[..text.find("schedule:").unwrap()]).unwrap();
    dir
}

/// The stdout of a client command that must succeed.
fn succeeds(url: &str, token: &str, args: &[&str]) -> Vec<u8> {
    let out = kiln(url, token).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "kiln {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn runs(url: &str) -> serde_json::Value {
    serde_json::from_slice(&succeeds(url, "kiln-dev-reader", &["runs", "--json"])).unwrap()
}

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A daemon process, killed when dropped (a failing test leaves none behind).
struct Daemon(Child);

impl Daemon {
    fn id(&self) -> u32 {
        self.0.id()
    }

    /// SIGKILL, like a crash.
    fn kill(&mut self) -> std::io::Result<()> {
        self.0.kill()?;
        self.0.wait().map(drop)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `kiln serve --listen 127.0.0.1:0`; returns the daemon and its URL.
fn serve(dir: &Path) -> (Daemon, String) {
    let mut child = std::process::Command::new(BIN)
        .args([
            "--project",
            dir.to_str().unwrap(),
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("daemon exited before listening")
            .unwrap();
        if let Some(rest) = line.split("listening on ").nth(1) {
            let addr: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
            let addr = addr.trim_end_matches(|c: char| !c.is_ascii_digit());
            break format!("http://{addr}");
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    (Daemon(child), url)
}

fn kiln(url: &str, token: &str) -> Command {
    let mut c = Command::new(BIN);
    c.env("KILN_SERVER", url)
        .env("KILN_TOKEN", token)
        .timeout(Duration::from_secs(60));
    c
}

/// `kiln trigger PIPELINE` (no wait); returns the run id.
fn trigger(url: &str, pipeline: &str) -> String {
    let out = succeeds(url, "kiln-dev-trigger", &["trigger", pipeline]);
    String::from_utf8_lossy(&out)
        .lines()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn the_cli_drives_a_daemon_that_survives_sigkill_mid_run() {
    let dir = project();
    let (mut daemon, url) = serve(dir.path());

    // A real run, end to end, through the daemon.
    let out = kiln(&url, "kiln-dev-trigger")
        .args(["trigger", "hello-web", "--wait"])
        .timeout(Duration::from_secs(180))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    let first = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap()
        .to_string();
    let out = kiln(&url, "kiln-dev-reader")
        .args(["logs", &first])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("tagged"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = kiln(&url, "kiln-dev-reader")
        .args(["approved", "hello-web", "--server", &url])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("@sha256:"));

    // A reader may not trigger.
    let out = kiln(&url, "kiln-dev-reader")
        .args(["trigger", "hello-web"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs `trigger`"));

    // Change an input, trigger, and SIGKILL the daemon while the test phase
    // has a container running.
    let recipe = dir.path().join("recipes/hello-web.yaml");
    let text = std::fs::read_to_string(&recipe).unwrap().replace(
        "Greeting: Hello from kiln",
        "Greeting: Hello from kiln, again",
    );
    std::fs::write(&recipe, text).unwrap();
    let second = trigger(&url, "hello-web");
    let pid = daemon.id();
    wait_until("a test container of the daemon", 120, || {
        !test_containers_of(pid).is_empty()
    });
    daemon.kill().unwrap(); // SIGKILL
    assert!(
        !test_containers_of(pid).is_empty(),
        "the killed daemon left its container"
    );

    // Restart: the interrupted run is marked, its container removed, and a
    // retry runs to a passing record.
    let (mut daemon, url) = serve(dir.path());
    wait_until("the retry to finish", 180, || {
        runs(&url).as_array().unwrap().iter().any(|r| {
            r["retryOf"] == second.as_str() && r["status"] != "queued" && r["status"] != "running"
        })
    });
    let all = runs(&url);
    let by_id = |id: &str| {
        all.as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(by_id(&first)["status"], "passed", "{all}");
    assert_eq!(by_id(&second)["status"], "interrupted", "{all}");
    let retry = all
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["retryOf"] == second.as_str())
        .unwrap();
    assert_eq!(retry["status"], "passed", "{all}");
    assert!(
        test_containers_of(pid).is_empty(),
        "leftover container removed on restart"
    );
    let store = kiln::record::Store::open(kiln::record::db_path(dir.path())).unwrap();
    let records = store.list(Some("hello-web"), None).unwrap();
    let passing: Vec<u32> = records
        .iter()
        .filter(|r| r.record.status == kiln::record::Status::Passed)
        .map(|r| r.record.build.0)
        .collect();
    assert_eq!(
        passing,
        vec![2, 1],
        "one passing record per finished run, none for the killed one"
    );
    daemon.kill().unwrap();
}

#[test]
fn token_hash_prints_the_sha256_of_stdin() {
    let out = Command::new(BIN)
        .args(["token", "hash"])
        .write_stdin("kiln-dev-admin\n")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "69275ecaa95b2d16404e0f88d6aabd08c56e181b841d57b8db0af1520a84f631"
    );
    let out = Command::new(BIN)
        .args(["token", "hash"])
        .write_stdin("")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_second_kiln_serve_on_the_same_project_refuses_naming_the_first() {
    let dir = project();
    let (mut first, _url) = serve(dir.path());
    let out = Command::new(BIN)
        .args(["--project", dir.path().to_str().unwrap()])
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("NO_COLOR", "1")
        .timeout(Duration::from_secs(30))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("another kiln daemon is running on this state")
            && stderr.contains(&format!("pid {} on ", first.id())),
        "{stderr}"
    );
    // The lock dies with its process: a restart after SIGKILL starts.
    first.kill().unwrap();
    let (mut again, _) = serve(dir.path());
    again.kill().unwrap();
}

#[test]
fn sigterm_to_kiln_serve_cancels_the_running_test_phase_and_cleans_up() {
    let dir = project();
    let recipe = dir.path().join("recipes/hello-web.yaml");
    let text = std::fs::read_to_string(&recipe)
        .unwrap()
        .replace(
            "expectBodyContains: Hello from kiln",
            "expectBodyContains: never served",
        )
        .replace("timeoutSeconds: 30", "timeoutSeconds: 600");
    std::fs::write(&recipe, text).unwrap();
    let config = dir.path().join("config/kiln.yaml");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("graceSeconds: 30", "graceSeconds: 1");
    std::fs::write(&config, text).unwrap();
    let (mut daemon, url) = serve(dir.path());
    trigger(&url, "hello-web");
    let pid = daemon.id();
    wait_until("a test container of the daemon", 300, || {
        !test_containers_of(pid).is_empty()
    });
    let term = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = daemon.0.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(test_containers_of(pid).is_empty(), "container left behind");
    let store = kiln::record::Store::open(kiln::record::db_path(dir.path())).unwrap();
    let records = store.list(Some("hello-web"), None).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].record.status, kiln::record::Status::Cancelled);
}

//! `kiln serve` as a separate process, driven by the CLI (`trigger --wait`,
//! `runs`, `logs`, `approved --server`, `token hash`), killed with SIGKILL
//! and restarted on the same SQLite state. The pipeline is not wired into
//! the daemon yet, so runs fail with a message saying so.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use assert_cmd::Command;

const BIN: &str = env!("CARGO_BIN_EXE_kiln");

/// A copy of the example project without its schedule.
fn project() -> tempfile::TempDir {
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
    let text = std::fs::read_to_string(&recipe).unwrap();
    std::fs::write(&recipe, &text[..text.find("schedule:").unwrap()]).unwrap();
    dir
}

/// Starts `kiln serve --listen 127.0.0.1:0`; returns the child and its URL.
fn serve(dir: &Path) -> (Child, String) {
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
    (child, url)
}

fn kiln(url: &str, token: &str) -> Command {
    let mut c = Command::new(BIN);
    c.env("KILN_SERVER", url)
        .env("KILN_TOKEN", token)
        .timeout(Duration::from_secs(60));
    c
}

#[test]
fn the_cli_drives_a_daemon_that_survives_sigkill() {
    let dir = project();
    let (mut daemon, url) = serve(dir.path());

    let out = kiln(&url, "kiln-dev-trigger")
        .args(["trigger", "hello-web", "--wait"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains("not wired into the daemon yet"),
        "stderr: {stderr}"
    );
    let run = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap()
        .to_string();

    let out = kiln(&url, "kiln-dev-reader")
        .args(["trigger", "hello-web"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs `trigger`"));

    let out = kiln(&url, "kiln-dev-reader")
        .args(["logs", &run])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("not wired"));

    let out = kiln(&url, "kiln-dev-reader")
        .args(["approved", "hello-web", "--server", &url])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "no approved build yet");

    daemon.kill().unwrap(); // SIGKILL
    daemon.wait().unwrap();
    let (mut daemon, url) = serve(dir.path());
    let out = kiln(&url, "kiln-dev-reader")
        .args(["runs", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        runs[0]["id"],
        run.as_str(),
        "state survives the kill: {runs}"
    );
    assert_eq!(runs[0]["status"], "failed");
    daemon.kill().unwrap();
    daemon.wait().unwrap();
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

//! `kiln serve` as a separate process over the real pipeline (Docker,
//! registry, moto), driven by the CLI (`trigger --wait`, `runs`, `logs`,
//! `approved --server`, `token hash`), killed with SIGKILL in the middle of a
//! run and restarted on the same SQLite state. The daemon's settings come
//! from an operator config outside the project (`--config`).

mod support;

#[path = "support/record_fixture.rs"]
mod record_fixture;

use std::path::Path;
use std::time::Duration;

use assert_cmd::Command;
use support::example::test_containers_of;
use support::serve_process::Daemon;

const BIN: &str = env!("CARGO_BIN_EXE_kiln");

/// A project folder and, outside it, the operator config (the shipped
/// `deploy/kiln.yaml`, with the documented dev tokens).
struct Project {
    dir: tempfile::TempDir,
    ops: tempfile::TempDir,
}

impl Project {
    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The operator config file.
    fn config(&self) -> std::path::PathBuf {
        self.ops.path().join("kiln.yaml")
    }
}

/// A copy of the example project without its schedule, pushing to unique
/// repositories.
fn project() -> Project {
    support::services();
    let dir = tempfile::tempdir().unwrap();
    let ops = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(repo.join("deploy/kiln.yaml"), ops.path().join("kiln.yaml")).unwrap();
    for sub in ["recipes", "components", "dockerfiles"] {
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
    Project { dir, ops }
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

/// Starts `kiln --project DIR --config OPS serve --listen 127.0.0.1:0`.
fn serve(p: &Project) -> (Daemon, String) {
    support::serve_process::serve(&[
        "--project".as_ref(),
        p.path().as_os_str(),
        "--config".as_ref(),
        p.config().as_os_str(),
    ])
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
    let (mut daemon, url) = serve(&dir);

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
    let (mut daemon, url) = serve(&dir);
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
    let (mut first, _url) = serve(&dir);
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
    let (mut again, _) = serve(&dir);
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
    let config = dir.config();
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("graceSeconds: 30", "graceSeconds: 1");
    std::fs::write(&config, text).unwrap();
    let (mut daemon, url) = serve(&dir);
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

/// The recipe repository adds an admin token and drops the policy in its
/// own `config/kiln.yaml`; the daemon runs with `--config` and neither
/// counts: the token gets 401, and the operator's policy refuses the recipe
/// at load (file:line and rule), before anything is built or recorded.
#[test]
fn a_token_or_a_looser_policy_in_the_project_changes_nothing_under_config() {
    let dir = project();
    let evil = "kiln-evil-admin";
    std::fs::create_dir_all(dir.path().join("config")).unwrap();
    std::fs::write(
        dir.path().join("config/kiln.yaml"),
        format!(
            "tokens:\n  - {{name: evil, role: admin, sha256: {}}}\npolicy: {{}}\n",
            kiln::daemon::auth::hash_token(evil)
        ),
    )
    .unwrap();
    let ops = std::fs::read_to_string(dir.config()).unwrap();
    let policy = "policy:\n  forbiddenActions: [ExecuteBash]\n";
    std::fs::write(dir.config(), format!("{ops}{policy}")).unwrap();
    let (_daemon, url) = serve(&dir);

    assert_eq!(status_of(&url, "/v1/runs", evil), 401);
    assert_eq!(status_of(&url, "/v1/runs", "kiln-dev-reader"), 200);
    let out = kiln(&url, evil).args(["runs"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("refused the token"), "{stderr}");

    let out = kiln(&url, "kiln-dev-trigger")
        .args(["trigger", "hello-web", "--wait"])
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    // Exit 3, as `kiln run` ends on a policy violation: the run row says why.
    assert_eq!(out.status.code(), Some(3));
    let runs = runs(&url);
    assert_eq!(runs[0]["failure"], "invalid", "{runs}");
    let summary = runs[0]["summary"].as_str().unwrap_or_default().to_string();
    assert!(
        summary.contains("components/hello-site.yaml:31:17: policy `forbiddenActions`"),
        "{runs}"
    );
    let store = kiln::record::Store::open(kiln::record::db_path(dir.path())).unwrap();
    assert!(
        store.list(Some("hello-web"), Some(10)).unwrap().is_empty(),
        "nothing built, nothing recorded"
    );
}

/// The HTTP status of `GET path` with `token`, read off the wire.
fn status_of(url: &str, path: &str, token: &str) -> u16 {
    use std::io::{Read as _, Write as _};
    let addr = url.trim_start_matches("http://");
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut head = [0u8; 12];
    tcp.read_exact(&mut head).unwrap();
    String::from_utf8_lossy(&head[9..12]).parse().unwrap()
}

/// With `state: postgres://…` in the operator config, `kiln serve` serves
/// the records of that database and appends decisions to it; the
/// project's SQLite file holds no record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_with_a_postgres_state_serves_and_decides_there() {
    use kiln::record::{ChainKeys, Records, Status};
    let schema = support::postgres::TestSchema::new().await;
    let p = project();
    let config = std::fs::read_to_string(p.config()).unwrap();
    std::fs::write(p.config(), format!("{config}\nstate: {}\n", schema.url)).unwrap();
    let location = schema.url.parse().unwrap();
    let records = Records::open(&location, ChainKeys::default())
        .await
        .unwrap();
    let mut ids = Vec::new();
    for status in [Status::Passed, Status::AwaitingApproval] {
        let alloc = records
            .allocate("web", &record_fixture::v1())
            .await
            .unwrap();
        let mut r = record_fixture::record(&alloc);
        r.status = status;
        ids.push(records.append(&r).await.unwrap().record.id.0);
    }
    let (mut daemon, url) = serve(&p);

    let args = ["approved", "web", "--json", "--server", &url];
    let out = succeeds(&url, "kiln-dev-reader", &args);
    let served: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(served["record"]["record"]["id"], ids[0], "{served}");
    let answer = reqwest::Client::new()
        .post(format!("{url}/v1/builds/{}/approval", ids[1]))
        .bearer_auth("kiln-dev-approver")
        .json(&serde_json::json!({ "decision": "approve", "note": "ok" }))
        .send()
        .await
        .unwrap();
    assert!(
        answer.status().is_success(),
        "{}",
        answer.text().await.unwrap()
    );
    let decision = records
        .decision_of(&ids[1])
        .await
        .unwrap()
        .expect("in PostgreSQL");
    assert_eq!(decision.event.by, "token:dev-approver");
    let approved = records.approved("web").await.unwrap().unwrap();
    assert_eq!(approved.record.record.id.0, ids[1]);
    daemon.kill().unwrap();

    let sqlite = Records::sqlite(kiln::record::db_path(p.path()), ChainKeys::default());
    assert!(sqlite.list(None, None).await.unwrap().is_empty());
    schema.remove().await;
}

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

/// Replaces the recipe's targets (OCI + ECR) with `targets` (YAML list
/// items, indented like the recipe's).
fn with_targets(text: String, targets: &str) -> String {
    let start = text.find("  targets:\n").unwrap();
    let end = text.find("schedule:").unwrap_or(text.len());
    format!("{}  targets:\n{targets}{}", &text[..start], &text[end..])
}

fn oci_target(registry: &str, repo: &str) -> String {
    format!("    - oci:\n        registry: {registry}\n        repository: {repo}\n")
}

#[test]
fn concurrent_runs_of_one_recipe_build_and_push_once() {
    let s = services();
    let (dir, repo) = example_project(|t| t);
    let recipe = dir.path().join("recipes/hello-web.yaml");
    let text = std::fs::read_to_string(&recipe).unwrap();
    std::fs::write(&recipe, with_targets(text, &oci_target(&s.registry, &repo))).unwrap();

    let children: Vec<Child> = (0..3)
        .map(|_| spawn(dir.path(), &["run", "hello-web"]))
        .collect();
    let results: Vec<(Option<i32>, String)> = children.into_iter().map(finish).collect();
    for (code, shown) in &results {
        assert_eq!(*code, Some(0), "{shown}");
    }
    let up_to_date = results
        .iter()
        .filter(|(_, shown)| shown.contains("status    up to date"))
        .count();
    assert_eq!(up_to_date, 2, "{results:#?}");
    let store = Store::open(db_path(dir.path())).unwrap();
    let records = store.list(Some("hello-web"), None).unwrap();
    assert_eq!(records.len(), 1, "one build, one record: {records:#?}");
    assert_eq!(records[0].record.status, Status::Passed);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tags = rt.block_on(support::example::registry_tags(&repo));
    assert_eq!(tags, ["1.0.0-1"]);
}

/// The example project with a second OCI target (`<repo>-mirror`) behind a
/// proxy that never answers a manifest `PUT`: the first target gets tagged
/// while the run cannot reach its record.
struct Stalled {
    dir: tempfile::TempDir,
    repo: String,
    mirror: String,
    /// The recipe before the targets were replaced.
    original: String,
    stall: support::upload_proxy::UploadProxy,
}

async fn stalled_project() -> Stalled {
    use support::upload_proxy::{UploadFault, UploadProxy};
    let s = services();
    let stall = UploadProxy::start(&s.registry, UploadFault::HoldManifestPut, 0).await;
    let (dir, repo) = example_project(|t| t);
    let recipe = dir.path().join("recipes/hello-web.yaml");
    let original = std::fs::read_to_string(&recipe).unwrap();
    let mirror = format!("{repo}-mirror");
    let both = oci_target(&s.registry, &repo) + &oci_target(&stall.host(), &mirror);
    std::fs::write(&recipe, with_targets(original.clone(), &both)).unwrap();
    Stalled {
        dir,
        repo,
        mirror,
        original,
        stall,
    }
}

/// Starts `kiln run hello-web` and waits until `repo` has a tag.
async fn run_until_tagged(dir: &Path, repo: &str) -> Child {
    let mut child = spawn(dir, &["run", "hello-web"]);
    let deadline = Instant::now() + Duration::from_secs(300);
    while support::example::registry_tags(repo).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the first target was never tagged"
        );
        assert!(child.try_wait().unwrap().is_none(), "kiln run ended early");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_killed_after_tagging_is_recorded_by_the_next_run() {
    let s = services();
    let Stalled {
        dir,
        repo,
        mirror,
        original,
        stall,
    } = stalled_project().await;
    let recipe = dir.path().join("recipes/hello-web.yaml");
    let mut child = run_until_tagged(dir.path(), &repo).await;
    child.kill().unwrap(); // SIGKILL, between the manifest PUT and the record
    child.wait().unwrap();
    let records = || {
        Store::open(db_path(dir.path()))
            .unwrap()
            .list(Some("hello-web"), None)
            .unwrap()
    };
    assert!(records().is_empty(), "the killed run wrote no record");

    // The next run (the stalling target gone) records the killed run first.
    std::fs::write(
        &recipe,
        with_targets(original, &oci_target(&s.registry, &repo)),
    )
    .unwrap();
    let out = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        move || finish(spawn(&dir, &["run", "hello-web"]))
    })
    .await
    .unwrap();
    assert_eq!(out.0, Some(0), "{}", out.1);
    assert!(
        out.1.contains("note: recorded hello-web:1.0.0-1 as failed"),
        "{}",
        out.1
    );
    let all = records();
    let builds: Vec<(u32, Status)> = all
        .iter()
        .map(|r| (r.record.build.0, r.record.status))
        .collect();
    assert_eq!(
        builds,
        [(2, Status::Passed), (1, Status::Failed)],
        "{all:#?}"
    );
    let message = &all[1].record.failure.as_ref().unwrap().message;
    assert!(
        message.contains(&format!("{}/{repo}:1.0.0-1", s.registry))
            && message.contains(&format!("{}/{mirror}:1.0.0-1", stall.host())),
        "{message}"
    );
    let mut tags = support::example::registry_tags(&repo).await;
    tags.sort();
    assert_eq!(tags, ["1.0.0-1", "1.0.0-2"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_while_tagging_records_the_tags_that_may_exist() {
    let s = services();
    // `_stall` keeps the proxy alive for the whole test.
    let Stalled {
        dir,
        repo,
        stall: _stall,
        ..
    } = stalled_project().await;
    let child = run_until_tagged(dir.path(), &repo).await;
    signal(child.id(), "TERM");
    let (code, shown) = tokio::task::spawn_blocking(move || finish(child))
        .await
        .unwrap();
    assert_eq!(code, Some(1), "{shown}");
    let records = Store::open(db_path(dir.path()))
        .unwrap()
        .list(Some("hello-web"), None)
        .unwrap();
    assert_eq!(records.len(), 1, "{shown}");
    assert_eq!(records[0].record.status, Status::Cancelled);
    let message = &records[0].record.failure.as_ref().unwrap().message;
    assert!(
        message.contains(&format!("{}/{repo}:1.0.0-1", s.registry)),
        "{message}"
    );
}

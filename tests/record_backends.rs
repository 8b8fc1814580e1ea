//! The record-store abstraction (issue 15): the same questions and
//! decisions (`Records`) against both backends — a SQLite file and a
//! PostgreSQL schema — with the same answers; a fenced write refused once the
//! cluster claim it carries is lost; and `--state` / `state:` in the CLI.

mod support;

#[path = "support/record_fixture.rs"]
mod record_fixture;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use assert_cmd::Command;

use kiln::daemon::cluster::{Cluster, Enqueue, NodeInfo};
use kiln::digest::Digest;
use kiln::record::cleanup::CleanupRecord;
use kiln::record::*;
use kiln::state::StateLocation;
use record_fixture::{record, v1};
use support::postgres::TestSchema;

/// Allocates a build of `pipeline` and appends the fixture after `edit`.
async fn add(records: &Records, pipeline: &str, edit: impl FnOnce(&mut Record)) -> ChainedRecord {
    let alloc = records.allocate(pipeline, &v1()).await.unwrap();
    let mut r = record(&alloc);
    edit(&mut r);
    records.append(&r).await.unwrap()
}

fn awaiting(r: &mut Record) {
    r.status = Status::AwaitingApproval;
}

fn id(c: &ChainedRecord) -> Selector {
    Selector::Id(c.record.id.clone())
}

/// A signing key outside any project, as `ChainKeys` that sign and check.
fn signing_keys() -> (tempfile::TempDir, ChainKeys) {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = kiln::sign::SigningKey::generate(dir.path()).unwrap();
    let key = kiln::sign::SigningKey::load(&key).unwrap();
    (dir, ChainKeys::signing(Arc::new(key)))
}

/// Approved, awaiting, decisions and their refusals, branch builds and
/// cleanups: what every backend must answer alike.
async fn the_gate_behaves_the_same(records: Records) {
    let passed = add(&records, "web", |_| {}).await;
    let waiting = add(&records, "web", awaiting).await;
    let failed = add(&records, "web", |r| r.status = Status::Failed).await;
    let a = records.approved("web").await.unwrap().unwrap();
    assert_eq!(a.record, passed, "awaiting is never approved by itself");
    assert_eq!(
        records.awaiting_approval().await.unwrap(),
        std::slice::from_ref(&waiting)
    );
    let key = Digest::of(b"key");
    let (newest, approved) = records.latest_with_key("web", &key).await.unwrap().unwrap();
    assert_eq!(
        (newest, approved),
        (waiting.clone(), None),
        "undecided counts"
    );

    refusals(&records, &passed, &failed, &waiting).await;
    let (_, ev) = records
        .decide(
            &id(&waiting),
            Decision::Approve,
            "local:ops",
            Some("LGTM".into()),
        )
        .await
        .unwrap();
    assert_eq!(ev.prev_hash, failed.hash, "linked to the chain head");
    let e = records
        .decide(
            &id(&waiting),
            Decision::Reject,
            "token:x",
            Some("no".into()),
        )
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("already approved by `local:ops`"),
        "{e}"
    );
    let a = records.approved("web").await.unwrap().unwrap();
    assert_eq!(a.record.seq, waiting.seq);
    assert_eq!(a.approval.unwrap().event.by, "local:ops");
    assert!(records.awaiting_approval().await.unwrap().is_empty());
    assert_eq!(
        records.decision_of(&waiting.record.id.0).await.unwrap(),
        Some(ev)
    );

    branches_and_cleanups(&records).await;
    let report = records.verify().await.unwrap();
    assert!(report.first_bad.is_none(), "{report:?}");
    assert_eq!((report.checked, report.events), (4, 1));
}

/// Decisions that are refused, each appending nothing.
async fn refusals(
    records: &Records,
    passed: &ChainedRecord,
    failed: &ChainedRecord,
    waiting: &ChainedRecord,
) {
    for (c, expect) in [(passed, "not awaiting approval"), (failed, "`failed`")] {
        let e = records
            .decide(&id(c), Decision::Approve, "local:ops", None)
            .await
            .unwrap_err();
        assert!(e.to_string().contains(expect), "{e}");
    }
    let e = records
        .decide(&id(waiting), Decision::Reject, "local:ops", None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("needs a note"), "{e}");
    assert_eq!(
        records.verify().await.unwrap().events,
        0,
        "nothing appended"
    );
}

/// A passed branch build is never approved, is its branch's up-to-date
/// record only, and cannot be decided on; cleanups are kept per branch.
async fn branches_and_cleanups(records: &Records) {
    let before = records.approved("web").await.unwrap().unwrap();
    let on_branch = add(records, "web", |r| r.branch = Some("feature/x".into())).await;
    assert_eq!(records.approved("web").await.unwrap().unwrap(), before);
    let key = Digest::of(b"key");
    let found = records
        .latest_passing_on_branch("web", &key, "feature/x")
        .await;
    assert_eq!(found.unwrap(), Some(on_branch.clone()));
    let other = records.latest_passing_on_branch("web", &key, "other").await;
    assert_eq!(other.unwrap(), None);
    assert_eq!(
        records.branch_records(None).await.unwrap(),
        std::slice::from_ref(&on_branch)
    );
    let e = records
        .decide(&id(&on_branch), Decision::Approve, "local:ops", None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("branch `feature/x`"), "{e}");

    assert!(records.cleanups(None).await.unwrap().is_empty());
    let cleanup = CleanupRecord {
        branch: "feature/x".into(),
        at: chrono::Utc::now(),
        builds: vec![on_branch.record.build_id().to_string()],
        removed: vec!["127.0.0.1:5000/kiln/web:1.0.0-4-branch.x".into()],
        left: vec![("host/repo:t".into(), "why".into())],
    };
    records.append_cleanup(&cleanup).await.unwrap();
    let mut read = records.cleanups(Some("feature/x")).await.unwrap();
    read[0].at = cleanup.at; // stored as RFC 3339 text
    assert_eq!(read.len(), 1);
    assert_eq!(
        (&read[0].builds, &read[0].left),
        (&cleanup.builds, &cleanup.left)
    );
    assert!(records.cleanups(Some("other")).await.unwrap().is_empty());
}

/// Two deciders racing on one build: exactly one decision is appended.
async fn one_of_two_racing_decisions_wins(records: Records) {
    let waiting = add(&records, "api", awaiting).await;
    let decide = |by: &'static str| {
        let (r, sel) = (records.clone(), id(&waiting));
        tokio::spawn(async move { r.decide(&sel, Decision::Approve, by, None).await })
    };
    let (a, b) = (decide("token:a"), decide("token:b"));
    let results = [a.await.unwrap(), b.await.unwrap()];
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    let refused = results.iter().find_map(|r| r.as_ref().err()).unwrap();
    assert!(matches!(refused, RecordError::Decision(_)), "{refused:?}");
    let events = records.events_of(&waiting.record.id.0).await.unwrap();
    assert_eq!(events.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_answers_the_gate_like_every_backend() {
    let dir = tempfile::tempdir().unwrap();
    let (_k, keys) = signing_keys();
    let location = StateLocation::Sqlite(db_path(dir.path()));
    let records = Records::open(&location, keys).await.unwrap();
    assert!(!records.exists().await.unwrap());
    assert!(records.approved("web").await.unwrap().is_none());
    assert!(!db_path(dir.path()).exists(), "reads create no file");
    the_gate_behaves_the_same(records.clone()).await;
    one_of_two_racing_decisions_wins(records).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_answers_the_gate_like_every_backend() {
    let schema = TestSchema::new().await;
    let (_k, keys) = signing_keys();
    let location: StateLocation = schema.url.parse().unwrap();
    let records = Records::open(&location, keys).await.unwrap();
    the_gate_behaves_the_same(records.clone()).await;
    one_of_two_racing_decisions_wins(records).await;
    schema.remove().await;
}

/// A node with one claimed run of `pipeline` on `schema`, its lease `lease`.
async fn claimed(schema: &TestSchema, pipeline: &str, lease: Duration) -> (Cluster, Fence) {
    let cluster = Cluster::connect(&schema.url).await.unwrap();
    let node = NodeInfo {
        id: "n1".into(),
        docker_host: "unix:///run/n1/docker.sock".into(),
        platforms: vec!["linux/amd64".into()],
        labels: "{}".into(),
        checkout: "sha256:c".into(),
    };
    cluster.register(&node).await.unwrap();
    let run = Enqueue {
        pipeline,
        branch: None,
        platform: "linux/amd64",
        checkout: "sha256:c",
        trigger: "manual",
        check_first: false,
        queued_at: None,
    };
    cluster.enqueue(run).await.unwrap().expect("queued");
    let claim = cluster.claim(&node, lease).await.unwrap().expect("claimed");
    let fence = Fence {
        run_id: claim.run,
        epoch: claim.epoch,
        node: claim.node,
    };
    (cluster, fence)
}

fn is_fenced(e: &RecordError, fence: &Fence) -> bool {
    matches!(e, RecordError::Fenced { run, epoch } if *run == fence.run_id && *epoch == fence.epoch)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_write_is_refused_once_the_claim_is_lost_and_writes_nothing() {
    let schema = TestSchema::new().await;
    let records = Records::open(&schema.url.parse().unwrap(), ChainKeys::default())
        .await
        .unwrap();
    let (cluster, fence) = claimed(&schema, "web", Duration::from_secs(2)).await;
    let fenced = records.fenced(fence.clone());
    // While the claim holds, the run records as usual.
    let held = add(&fenced, "web", awaiting).await;
    let alloc = fenced.allocate("web", &v1()).await.unwrap();

    tokio::time::sleep(Duration::from_millis(2500)).await;
    // Reaped (a new epoch) but not retried: the run's record is written,
    // so a retry would record the build twice.
    let reaped = cluster.reap().await.unwrap();
    assert!(reaped.is_empty(), "{reaped:?}");
    let row = schema
        .admin()
        .await
        .query_one(
            "SELECT status, record_id, summary, epoch, \
             (SELECT count(*) FROM cluster_runs) FROM cluster_runs WHERE id = $1",
            &[&fence.run_id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "interrupted");
    assert_eq!(
        row.get::<_, Option<String>>(1),
        Some(held.record.id.0.clone())
    );
    assert!(row.get::<_, String>(2).contains("not retried"));
    assert_eq!(row.get::<_, i64>(3), fence.epoch + 1);
    assert_eq!(row.get::<_, i64>(4), 1, "no retry queued");
    let e = fenced.append(&record(&alloc)).await.unwrap_err();
    assert!(is_fenced(&e, &fence), "{e:?}");
    assert!(e.to_string().contains("nothing was written"), "{e}");
    let e = fenced.allocate("web", &v1()).await.unwrap_err();
    assert!(is_fenced(&e, &fence), "{e:?}");
    let e = fenced
        .decide(&id(&held), Decision::Approve, "token:a", None)
        .await
        .unwrap_err();
    assert!(is_fenced(&e, &fence), "{e:?}");

    // Nothing was written: one record, no event, two allocations.
    assert_eq!(
        records.list(None, None).await.unwrap(),
        std::slice::from_ref(&held)
    );
    assert!(
        records
            .events_of(&held.record.id.0)
            .await
            .unwrap()
            .is_empty()
    );
    let builds = schema
        .admin()
        .await
        .query_one("SELECT count(*) FROM builds", &[])
        .await;
    assert_eq!(builds.unwrap().get::<_, i64>(0), 2);
    // Unfenced writers (another node's run) go on.
    records.append(&record(&alloc)).await.unwrap();
    schema.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_taken_again_fences_the_old_epoch() {
    let schema = TestSchema::new().await;
    let records = Records::open(&schema.url.parse().unwrap(), ChainKeys::default())
        .await
        .unwrap();
    let (_cluster, fence) = claimed(&schema, "web", Duration::from_secs(60)).await;
    let stale = Fence {
        epoch: fence.epoch - 1,
        ..fence.clone()
    };
    let e = records
        .fenced(stale.clone())
        .allocate("web", &v1())
        .await
        .unwrap_err();
    assert!(is_fenced(&e, &stale), "{e:?}");
    let other_node = Fence {
        node: "n2".into(),
        ..fence.clone()
    };
    let e = records
        .fenced(other_node)
        .allocate("web", &v1())
        .await
        .unwrap_err();
    assert!(matches!(e, RecordError::Fenced { .. }), "{e:?}");
    add(&records.fenced(fence), "web", |_| {}).await;
    schema.remove().await;
}

#[tokio::test]
async fn sqlite_ignores_a_fence() {
    let dir = tempfile::tempdir().unwrap();
    let records = Records::sqlite(db_path(dir.path()), ChainKeys::default());
    let fence = Fence {
        run_id: "r".into(),
        epoch: 1,
        node: "n".into(),
    };
    add(&records.fenced(fence), "web", |_| {}).await;
    assert_eq!(records.list(None, None).await.unwrap().len(), 1);
}

/// `kiln ARGS…` in `root`; (exit code, stdout, everything for messages).
fn kiln(root: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::cargo_bin("kiln").unwrap();
    cmd.arg("--project")
        .arg(root)
        .args(args)
        .env_remove("KILN_STATE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let shown = format!(
        "kiln {}\nexit {:?}\n--- stdout\n{stdout}--- stderr\n{}",
        args.join(" "),
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), stdout, shown)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_reads_and_decides_on_the_store_state_names() {
    let (schema, dir) = (TestSchema::new().await, tempfile::tempdir().unwrap());
    let records = Records::open(&schema.url.parse().unwrap(), ChainKeys::default())
        .await
        .unwrap();
    let passed = add(&records, "web", |_| {}).await;
    let waiting = add(&records, "web", awaiting).await;
    let url = schema.url.as_str();
    let (code, stdout, shown) = kiln(dir.path(), &["--state", url, "records", "--verify"], &[]);
    assert_eq!(code, 0, "{shown}");
    assert!(stdout.starts_with("ok: 2 records, chain intact"), "{shown}");
    let (code, stdout, shown) = kiln(dir.path(), &["approved", "web"], &[("KILN_STATE", url)]);
    assert_eq!(code, 0, "{shown}");
    assert_eq!(stdout.lines().count(), 2, "{shown}");
    assert!(
        stdout.contains(passed.record.targets[0].manifest_digest.short()),
        "{shown}"
    );
    let build = waiting.record.build_id().to_string();
    let (code, _, shown) = kiln(dir.path(), &["--state", url, "approve", &build], &[]);
    assert_eq!(code, 0, "{shown}");
    let approved = records.approved("web").await.unwrap().unwrap();
    assert_eq!(approved.record.seq, waiting.seq, "decided in PostgreSQL");
    assert!(
        !db_path(dir.path()).exists(),
        "the project's SQLite file is not used"
    );

    // The operator config's `state:` is used too; `--state` overrides it.
    let ops = tempfile::tempdir().unwrap();
    let config = ops.path().join("kiln.yaml");
    std::fs::write(&config, format!("state: {url}\n")).unwrap();
    let cfg = config.to_str().unwrap();
    let (code, stdout, shown) = kiln(dir.path(), &["--config", cfg, "records", "web"], &[]);
    assert_eq!((code, stdout.lines().count()), (0, 3), "{shown}");
    let other = format!("sqlite:{}", dir.path().join("other.db").display());
    let args = ["--config", cfg, "--state", &other, "approved", "web"];
    let (code, _, shown) = kiln(dir.path(), &args, &[]);
    assert_eq!(code, 1, "{shown}");
    assert!(shown.contains("no approved build"), "{shown}");

    // `kiln runs` reads the cluster's runs from the store, no daemon asked.
    let (_cluster, fence) = claimed(&schema, "web", Duration::from_secs(60)).await;
    let (code, stdout, shown) = kiln(dir.path(), &["--state", url, "runs", "--json"], &[]);
    assert_eq!(code, 0, "{shown}");
    let runs: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(runs.as_array().map(Vec::len), Some(1), "{shown}");
    assert_eq!(runs[0]["id"], fence.run_id.as_str(), "{shown}");
    assert_eq!(
        (runs[0]["status"].as_str(), runs[0]["node"].as_str()),
        (Some("running"), Some("n1")),
        "{shown}"
    );
    let none = format!("sqlite:{}", dir.path().join("none.db").display());
    let (code, _, shown) = kiln(dir.path(), &["--state", &none, "runs"], &[]);
    assert_eq!(code, 0, "{shown}");
    assert!(shown.contains("no runs yet"), "{shown}");
    schema.remove().await;
}

#[test]
fn a_command_that_reads_no_store_refuses_state_rather_than_ignore_it() {
    let dir = tempfile::tempdir().unwrap();
    let state = format!("sqlite:{}", dir.path().join("k.db").display());
    let (code, _, shown) = kiln(dir.path(), &["--state", &state, "trigger", "web"], &[]);
    assert_eq!(code, 2, "{shown}");
    assert!(
        shown.contains("`kiln trigger` reads no state store"),
        "{shown}"
    );
    // The environment's KILN_STATE is for the commands that read a store.
    let args = ["completions", "bash"];
    let (code, _, shown) = kiln(dir.path(), &args, &[("KILN_STATE", &state)]);
    assert_eq!(code, 0, "{shown}");
}

#[test]
fn a_bad_state_is_a_usage_error_that_never_shows_a_password() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, shown) = kiln(dir.path(), &["--state", "bogus://x", "records"], &[]);
    assert_eq!(code, 2, "{shown}");
    assert!(
        shown.contains("`bogus://x` is not a state store") && shown.contains("sqlite:PATH"),
        "{shown}"
    );
    let secret = "mysql://kiln:hunter2@db/kiln";
    let (code, _, shown) = kiln(dir.path(), &["approved", "web"], &[("KILN_STATE", secret)]);
    assert_eq!(code, 2, "{shown}");
    assert!(
        !shown.contains("hunter2") && shown.contains("***"),
        "{shown}"
    );
    // A postgres URL that does not parse (a typo in the port) still hides it.
    let typo = "postgres://kiln:hunter2@db:5433x/kiln";
    let (code, _, shown) = kiln(dir.path(), &["--state", typo, "records"], &[]);
    assert_eq!(code, 2, "{shown}");
    let stderr = shown.split("--- stderr").nth(1).unwrap();
    assert!(
        !stderr.contains("hunter2") && stderr.contains("***"),
        "{shown}"
    );

    let ops = tempfile::tempdir().unwrap();
    let config = ops.path().join("kiln.yaml");
    std::fs::write(&config, "concurrency: 2\nstate: redis://h\n").unwrap();
    let (code, _, shown) = kiln(
        dir.path(),
        &["--config", config.to_str().unwrap(), "records"],
        &[],
    );
    assert_eq!(code, 1, "{shown}");
    assert!(
        shown.contains("line 2: `state`") && shown.contains("redis://h"),
        "{shown}"
    );
}

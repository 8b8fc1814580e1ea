//! Three daemons as cluster nodes on one PostgreSQL schema, in-process with
//! the harness's test runner (always on PostgreSQL, whatever
//! `KILN_TEST_STATE` says): queued runs each run exactly once across the
//! nodes; a node cut off from the database loses its run to another after
//! the lease and its late writes are refused; a cron slot due on three
//! nodes fires one run; `GET /v1/nodes` lists the nodes.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kiln::daemon::DaemonState;
use kiln::daemon::clock::{Clock, FakeClock, SystemClock};
use kiln::daemon::cluster::{Claim, Cluster, ClusterError};
use kiln::daemon::config::DaemonConfig;
use kiln::daemon::queue::{Enqueued, RunEnd};
use kiln::daemon::run::{RunState, TriggerKind};
use kiln::daemon::runner::{EventKind, LogEvent};
use kiln::state::StateLocation;
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::harness::{FakeRunner, READER, config, is, options, project, seed_run, serve_opts};
use crate::support::cut_proxy::CutProxy;
use crate::support::postgres::TestSchema;

/// One node: its daemon, API and runner.
struct Node {
    state: DaemonState,
    url: String,
    runner: Arc<FakeRunner>,
    task: JoinHandle<Result<(), kiln::daemon::DaemonError>>,
}

/// Starts node `id` over the project at `dir` on the database at `url`.
async fn node(
    dir: &Path,
    url: &str,
    id: &str,
    clock: Arc<dyn Clock>,
    config: DaemonConfig,
) -> Node {
    let runner = FakeRunner::new(clock.clone());
    let location = StateLocation::Postgres(url.to_string());
    let mut opts = options(dir, location, config, runner.clone(), clock).await;
    opts.node.id = Some(id.to_string());
    let (state, url, task) = serve_opts(opts).await;
    Node {
        state,
        url,
        runner,
        task,
    }
}

impl Node {
    async fn stop(self) {
        self.state.shutdown();
        self.task.await.unwrap().unwrap();
    }
}

/// A config with a short lease, as cluster tests use.
fn short_lease(lease: u64) -> DaemonConfig {
    let mut c = config(30);
    c.cluster.lease_seconds = lease;
    c.cluster.poll_seconds = 1;
    c
}

/// Waits (real time, bounded) until `done` holds.
async fn until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    for _ in 0..3000 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_run_thirty_queued_runs_each_exactly_once_and_are_listed() {
    let names: Vec<String> = (0..30).map(|i| format!("p{i:02}")).collect();
    let recipes: Vec<(&str, Option<&str>)> = names.iter().map(|n| (n.as_str(), None)).collect();
    let dir = project(&recipes);
    let schema = TestSchema::new().await;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut nodes = Vec::new();
    for i in 0..3 {
        let n = node(
            dir.path(),
            &schema.url,
            &format!("n{i}"),
            clock.clone(),
            config(30),
        )
        .await;
        n.runner.gated.store(true, Ordering::SeqCst);
        nodes.push(n);
    }
    let mut queued = HashSet::new();
    for name in &names {
        let trigger = nodes[0].state.trigger(name, TriggerKind::Manual, false);
        match trigger.await.unwrap() {
            Enqueued::Created(r) => queued.insert(r.id),
            other => panic!("{other:?}"),
        };
    }
    // Each node holds at most `concurrency` (2) gated runs: all three take
    // part before any run may end.
    let q = nodes[1].state.clone();
    until("six runs hold", async || {
        q.queue().depth().await.unwrap().1 == 6
    })
    .await;
    until("every run ended", async || {
        nodes.iter().for_each(|n| n.runner.release());
        q.queue().depth().await.unwrap() == (0, 0)
    })
    .await;

    let mut ran = Vec::new();
    for n in &nodes {
        let mine: Vec<String> = n
            .runner
            .runs
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.0.clone())
            .collect();
        assert!(mine.len() >= 2, "every node ran its share: {mine:?}");
        ran.extend(mine);
    }
    assert_eq!(ran.len(), 30, "each run exactly once: {ran:?}");
    assert_eq!(ran.iter().cloned().collect::<HashSet<_>>(), queued);
    let runs = nodes[2].state.queue().list(None, 100).await.unwrap();
    for r in &runs {
        let node = r.node.as_deref().unwrap();
        let by = &nodes[node[1..].parse::<usize>().unwrap()];
        assert!(
            by.runner.runs.lock().unwrap().iter().any(|x| x.0 == r.id),
            "{r:?}"
        );
        assert_eq!(r.status, RunState::Passed, "{r:?}");
    }

    // Any node's API lists the three, with their runs.
    let asked = reqwest::Client::new().get(format!("{}/v1/nodes", nodes[2].url));
    let resp = asked.bearer_auth(READER).send().await.unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::OK);
    let listed: Value = resp.json().await.unwrap();
    let listed = listed.as_array().unwrap();
    let ids: Vec<&str> = listed.iter().map(|n| n["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["n0", "n1", "n2"], "{listed:?}");
    for (n, view) in nodes.iter().zip(listed) {
        assert_eq!(view["platforms"], serde_json::json!(["linux/amd64"]));
        assert_eq!(view["checkout"], listed[0]["checkout"]);
        assert!(
            view["heartbeatAgeSeconds"].as_f64().unwrap() < 30.0,
            "{view}"
        );
        let passed = view["runs"]["passed"].as_u64().unwrap_or(0) as usize;
        assert_eq!(passed, n.runner.run_count(), "{view}");
    }
    for n in nodes {
        n.stop().await;
    }
    schema.remove().await;
}

/// The test schema's URL through `proxy` instead of the server itself.
fn through(url: &str, proxy: &CutProxy) -> String {
    let mut u = url::Url::parse(url).unwrap();
    u.set_port(Some(proxy.addr.port())).unwrap();
    u.set_host(Some(&proxy.addr.ip().to_string())).unwrap();
    u.to_string()
}

/// Node a, reaching PostgreSQL through a [`CutProxy`] under a 2 s lease,
/// running a gated run of `web`: the project, the schema, the proxy, the
/// clock, node a and the run's id.
struct Partitionable(
    tempfile::TempDir,
    TestSchema,
    Arc<CutProxy>,
    Arc<dyn Clock>,
    Node,
    String,
);

async fn partitionable() -> Partitionable {
    let dir = project(&[("web", None)]);
    let schema = TestSchema::new().await;
    let server = url::Url::parse(&schema.url).unwrap();
    let upstream = format!(
        "{}:{}",
        server.host_str().unwrap(),
        server.port().unwrap_or(5432)
    );
    let proxy = CutProxy::start(&upstream).await;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let a = node(
        dir.path(),
        &through(&schema.url, &proxy),
        "a",
        clock.clone(),
        short_lease(2),
    )
    .await;
    a.runner.gated.store(true, Ordering::SeqCst);
    let Enqueued::Created(run) = a
        .state
        .trigger("web", TriggerKind::Manual, false)
        .await
        .unwrap()
    else {
        panic!("queued")
    };
    until("node a runs it", async || {
        let held = a.state.queue().get(&run.id).await.unwrap();
        held.is_some_and(|r| r.status == RunState::Running && r.node.as_deref() == Some("a"))
    })
    .await;
    Partitionable(dir, schema, proxy, clock, a, run.id)
}

/// Node `a` ends `run` as passed, after it lost it.
async fn late_finish(a: &Node, run: &str) -> Result<bool, kiln::daemon::queue::QueueError> {
    let end = RunEnd {
        state: RunState::Passed,
        failure: None,
        summary: "late",
        record_id: None,
    };
    a.state.queue().finish(run, end, Utc::now()).await
}

/// Waits until node `b` reaped `run` and its retry passed there.
async fn retried_by(b: &Node, run: &str) -> kiln::daemon::run::RunRow {
    let mut retry = None;
    until("b reaped the run and ran its retry", async || {
        let runs = b.state.queue().list(None, 10).await.unwrap();
        retry = runs
            .into_iter()
            .find(|r| r.retry_of.as_deref() == Some(run));
        retry.as_ref().is_some_and(is(RunState::Passed))
    })
    .await;
    let retry = retry.unwrap();
    assert_eq!(retry.node.as_deref(), Some("b"));
    retry
}

/// Waits until node `a` stopped its (one) run itself.
async fn stopped(a: &Node) {
    until("a stopped its run", async || {
        a.runner.cancelled.load(Ordering::SeqCst) == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_cut_off_past_its_lease_loses_its_run_and_its_late_writes_are_refused() {
    let Partitionable(dir, schema, proxy, clock, a, run) = partitionable().await;
    let b = node(dir.path(), &schema.url, "b", clock.clone(), short_lease(2)).await;
    until("node a logged", async || {
        b.state.queue().events_after(&run, 0).await.unwrap().len() == 2
    })
    .await;

    // Node a's heartbeats stop reaching the database.
    proxy.cut();
    let retry = retried_by(&b, &run).await;
    assert_eq!(b.runner.runs.lock().unwrap()[0].0, retry.id);
    // Node a stopped the run itself: a lease without a heartbeat.
    stopped(&a).await;

    proxy.heal();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let old = b.state.queue().get(&run).await.unwrap().unwrap();
    assert_eq!(old.status, RunState::Interrupted, "{old:?}");
    let lines = b.state.queue().events_after(&run, 0).await.unwrap();
    assert_eq!(lines.len(), 2, "nothing of node a after the cut: {lines:?}");
    // Its late writes, through its queue and straight to the database with
    // its old claim, are refused.
    let late = late_finish(&a, &run).await;
    assert!(late.as_ref().is_err_and(|e| e.is_fenced()), "{late:?}");
    let line = LogEvent {
        kind: EventKind::Line,
        stage: None,
        text: "late".into(),
    };
    let late = a
        .state
        .queue()
        .append_events(&run, vec![line], Utc::now())
        .await;
    assert!(late.as_ref().is_err_and(|e| e.is_fenced()), "{late:?}");
    let stale = Claim {
        run: run.clone(),
        pipeline: "web".into(),
        branch: None,
        node: "a".into(),
        epoch: 1,
    };
    let db = Cluster::connect(&schema.url).await.unwrap();
    let late = db.log(&stale, 3, ("line", None, "late")).await;
    assert!(matches!(late, Err(ClusterError::Fenced { .. })), "{late:?}");
    let late = db.finish(
        &stale,
        kiln::daemon::cluster::Finish {
            status: "passed",
            summary: "late",
            failure: None,
            record_id: None,
        },
    );
    assert!(matches!(late.await, Err(ClusterError::Fenced { .. })));
    assert_eq!(
        b.state.queue().get(&run).await.unwrap().unwrap().status,
        RunState::Interrupted
    );
    a.stop().await;
    b.stop().await;
    schema.remove().await;
}

/// A silent partition: node a's packets to PostgreSQL vanish and nothing
/// closes its connections (`CutProxy::blackhole`), so its queries neither
/// answer nor fail. Its housekeeping still gives the run up after about a
/// lease without a heartbeat (each call is bounded, the last success is
/// judged on its own clock), and node b reaps and reruns it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_silently_partitioned_past_its_lease_stops_its_run() {
    let Partitionable(dir, schema, proxy, clock, a, run) = partitionable().await;
    let b = node(dir.path(), &schema.url, "b", clock.clone(), short_lease(2)).await;

    // Node a's packets are dropped; its connections stay open.
    proxy.blackhole();
    // Within a few leases (the bound is generous: a 2 s lease, up to 30 s),
    // node a stops the run itself; without bounded housekeeping calls its
    // heartbeat would wait on the silent connection for good.
    stopped(&a).await;
    retried_by(&b, &run).await;
    let old = b.state.queue().get(&run).await.unwrap().unwrap();
    assert_eq!(old.status, RunState::Interrupted, "{old:?}");

    // Healed: the bytes held back arrive; node a's late end is refused.
    proxy.heal();
    let late = late_finish(&a, &run).await;
    assert!(late.as_ref().is_err_and(|e| e.is_fenced()), "{late:?}");
    assert_eq!(
        b.state.queue().get(&run).await.unwrap().unwrap().status,
        RunState::Interrupted
    );
    a.stop().await;
    b.stop().await;
    schema.remove().await;
}

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_cron_slot_due_on_three_nodes_fires_one_run() {
    let nightly =
        "schedule:\n  cron: \"0 3 * * *\"\n  timezone: UTC\n  onlyWhenDependenciesChange: false\n";
    let dir = project(&[("nightly", Some(nightly))]);
    let schema = TestSchema::new().await;
    // The last run was days ago: the nodes also catch up once, not thrice.
    let old = ("rold", "nightly", "passed");
    seed_run(dir.path(), Some(&schema), old, "2026-05-01T03:00:00.000Z").await;
    let t0 = at("2026-05-04T12:00:00Z");
    let clock = Arc::new(FakeClock::starting_at(t0));
    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(
            node(
                dir.path(),
                &schema.url,
                &format!("n{i}"),
                clock.clone(),
                config(30),
            )
            .await,
        );
    }
    let got = crate::schedule::new_runs(&nodes[1].state, t0, 24).await;
    assert_eq!(got, ["catch_up 05-04T12:00Z", "schedule 05-05T03:00Z"]);
    let ran: usize = nodes.iter().map(|n| n.runner.run_count()).sum();
    assert_eq!(ran, 2);
    for n in nodes {
        n.stop().await;
    }
    schema.remove().await;
}

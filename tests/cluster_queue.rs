//! The cluster's shared run queue on the real PostgreSQL (issue 15): runs
//! claimed exactly once by nodes that can build them, leases timed by the
//! database, a lapsed lease reaped and retried while the old holder's late
//! writes are fenced off, and a schedule slot fired once across nodes. Each
//! node here is its own connection pool, as separate processes would be.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use kiln::daemon::cluster::{Cluster, ClusterError, Enqueue, Finish, Fired, NodeInfo};
use support::postgres::TestSchema;

const LONG: Duration = Duration::from_secs(60);

fn node(id: &str, platforms: &[&str], checkout: &str) -> NodeInfo {
    NodeInfo {
        id: id.into(),
        docker_host: format!("unix:///run/{id}/docker.sock"),
        platforms: platforms.iter().map(|p| p.to_string()).collect(),
        labels: "{}".into(),
        checkout: checkout.into(),
    }
}

fn run<'a>(pipeline: &'a str, platform: &'a str, checkout: &'a str) -> Enqueue<'a> {
    Enqueue {
        pipeline,
        branch: None,
        platform,
        checkout,
        trigger: "manual",
        check_first: false,
        queued_at: None,
    }
}

const PASSED: Finish<'static> = Finish {
    status: "passed",
    summary: "pushed",
    failure: None,
    record_id: None,
};

/// A registered node on its own pool.
async fn join(schema: &TestSchema, info: NodeInfo) -> (Cluster, NodeInfo) {
    let c = Cluster::connect(&schema.url).await.unwrap();
    c.register(&info).await.unwrap();
    (c, info)
}

/// Claims and finishes runs until none is left; returns the ids it ran.
async fn work(cluster: Cluster, me: NodeInfo) -> Vec<String> {
    let mut ran = Vec::new();
    while let Some(claim) = cluster.claim(&me, LONG).await.unwrap() {
        cluster
            .log(&claim, 1, ("line", Some("build"), "building"))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        cluster.finish(&claim, PASSED).await.unwrap();
        ran.push(claim.run);
    }
    ran
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_claim_thirty_runs_each_exactly_once() {
    let schema = TestSchema::new().await;
    // Three nodes start together on a fresh database: they migrate once.
    let nodes = futures_util::future::join_all((0..3).map(|i| {
        let name = format!("n{i}");
        join(&schema, node(&name, &["linux/amd64"], "sha256:c"))
    }))
    .await;
    let mut queued = HashSet::new();
    for i in 0..30 {
        let p = format!("p{i}");
        let id = nodes[0].0.enqueue(run(&p, "linux/amd64", "sha256:c")).await;
        queued.insert(id.unwrap().expect("queued"));
    }
    let tasks: Vec<_> = nodes
        .iter()
        .map(|(c, n)| tokio::spawn(work(c.clone(), n.clone())))
        .collect();
    let mut ran = Vec::new();
    for t in tasks {
        ran.extend(t.await.unwrap());
    }
    let unique: HashSet<_> = ran.iter().cloned().collect();
    assert_eq!(ran.len(), 30, "every run once: {ran:?}");
    assert_eq!(unique, queued);
    let runs = nodes[0].0.runs(100).await.unwrap();
    assert!(runs.iter().all(|r| r.2 == "passed" && r.4 == 1), "{runs:?}");
    schema.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_node_with_the_platform_and_the_checkout_claims_a_run() {
    let schema = TestSchema::new().await;
    let (arm, arm_node) = join(&schema, node("arm", &["linux/arm64"], "sha256:a")).await;
    let (old, old_node) = join(&schema, node("old", &["linux/amd64"], "sha256:b")).await;
    let (amd, amd_node) = join(&schema, node("amd", &["linux/amd64"], "sha256:a")).await;
    arm.enqueue(run("web", "linux/amd64", "sha256:a"))
        .await
        .unwrap();
    assert_eq!(arm.claim(&arm_node, LONG).await.unwrap(), None, "platform");
    assert_eq!(old.claim(&old_node, LONG).await.unwrap(), None, "checkout");
    let claim = amd.claim(&amd_node, LONG).await.unwrap().expect("claimed");
    assert_eq!((claim.pipeline.as_str(), claim.epoch), ("web", 1));
    // One active run per pipeline: a second trigger joins it.
    assert_eq!(
        amd.enqueue(run("web", "linux/amd64", "sha256:a"))
            .await
            .unwrap(),
        None
    );
    schema.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lapsed_lease_is_reaped_and_retried_and_the_old_holder_is_fenced() {
    let schema = TestSchema::new().await;
    let (a, a_node) = join(&schema, node("a", &["linux/amd64"], "sha256:c")).await;
    let (b, b_node) = join(&schema, node("b", &["linux/amd64"], "sha256:c")).await;
    a.enqueue(run("web", "linux/amd64", "sha256:c"))
        .await
        .unwrap();
    let stale = a
        .claim(&a_node, Duration::from_secs(1))
        .await
        .unwrap()
        .unwrap();
    a.log(&stale, 1, ("line", None, "before the pause"))
        .await
        .unwrap();
    // Node a stops heartbeating (paused, partitioned): its lease lapses.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let reaped = b.reap().await.unwrap();
    assert_eq!(reaped.len(), 1, "{reaped:?}");
    assert_eq!(reaped[0].run, stale.run);
    assert_eq!(reaped[0].node.as_deref(), Some("a"));
    let retry = reaped[0].retry.clone().expect("a retry is queued");
    assert!(b.reap().await.unwrap().is_empty(), "reaped once");

    let fresh = b.claim(&b_node, LONG).await.unwrap().expect("the retry");
    assert_eq!(fresh.run, retry);
    b.log(&fresh, 1, ("line", None, "retried")).await.unwrap();
    b.finish(&fresh, PASSED).await.unwrap();

    // Node a wakes up: every late write is refused, and it holds nothing.
    let late = a.log(&stale, 2, ("line", None, "after the pause")).await;
    assert!(matches!(late, Err(ClusterError::Fenced { .. })), "{late:?}");
    let late = a.finish(&stale, PASSED).await;
    assert!(matches!(late, Err(ClusterError::Fenced { .. })), "{late:?}");
    assert!(a.heartbeat("a", LONG).await.unwrap().is_empty());
    let runs = b.runs(10).await.unwrap();
    let status = |id: &str| runs.iter().find(|r| r.0 == id).unwrap().2.clone();
    assert_eq!(status(&stale.run), "interrupted");
    assert_eq!(status(&retry), "passed");
    let lines = schema
        .admin()
        .await
        .query(
            "SELECT run, text FROM cluster_run_events ORDER BY run, seq",
            &[],
        )
        .await
        .unwrap();
    let lines: HashSet<(String, String)> = lines.iter().map(|r| (r.get(0), r.get(1))).collect();
    let expected = HashSet::from([
        (stale.run.clone(), "before the pause".to_string()),
        (retry.clone(), "retried".to_string()),
    ]);
    assert_eq!(
        lines, expected,
        "no line of the stale holder after the pause"
    );
    schema.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeating_node_keeps_its_lease() {
    let schema = TestSchema::new().await;
    let (a, a_node) = join(&schema, node("a", &["linux/amd64"], "sha256:c")).await;
    a.enqueue(run("web", "linux/amd64", "sha256:c"))
        .await
        .unwrap();
    let lease = Duration::from_secs(1);
    let claim = a.claim(&a_node, lease).await.unwrap().unwrap();
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let held = a.heartbeat("a", lease).await.unwrap();
        assert_eq!(held, [(claim.run.clone(), claim.epoch)]);
        assert!(a.reap().await.unwrap().is_empty());
    }
    a.finish(&claim, PASSED).await.unwrap();
    schema.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_due_slot_fires_one_run_across_three_nodes() {
    let schema = TestSchema::new().await;
    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(
            join(
                &schema,
                node(&format!("n{i}"), &["linux/amd64"], "sha256:c"),
            )
            .await,
        );
    }
    let slot = 1_796_000_400; // the same cron slot, computed by every node
    let fires: Vec<_> = nodes
        .iter()
        .map(|(c, n)| {
            let (c, id) = (c.clone(), n.id.clone());
            tokio::spawn(async move {
                c.fire_slot(&id, slot, run("nightly", "linux/amd64", "sha256:c"))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for f in fires {
        outcomes.push(f.await.unwrap());
    }
    let queued: Vec<_> = outcomes
        .iter()
        .filter(|f| matches!(f, Fired::Queued(_)))
        .collect();
    assert_eq!(queued.len(), 1, "{outcomes:?}");
    let elsewhere = outcomes.iter().filter(|f| **f == Fired::Elsewhere).count();
    assert_eq!(elsewhere, 2, "{outcomes:?}");
    let runs = nodes[0].0.runs(10).await.unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    schema.remove().await;
}

/// A node older than the cluster's schema refuses to start (it would run
/// against tables it does not know): the error names the target without a
/// password, the version found and the one this build supports, and the
/// schema is left as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_older_than_the_cluster_schema_refuses_to_start() {
    use kiln::daemon::cluster::{ClusterQueue, ClusterSettings, schema};
    let schema_ = TestSchema::new().await;
    let (_c, _) = join(&schema_, node("a", &["linux/amd64"], "sha256:c")).await;
    let db = schema_.admin().await;
    let newer = schema::latest() as i32 + 1;
    db.execute("INSERT INTO cluster_schema VALUES ($1)", &[&newer])
        .await
        .unwrap();
    let err = Cluster::connect(&schema_.url).await.unwrap_err();
    assert!(
        matches!(err, ClusterError::SchemaTooNew { found, supported, .. }
            if found == i64::from(newer) && supported == schema::latest()),
        "{err:?}"
    );
    let msg = err.to_string();
    let url = url::Url::parse(&schema_.url).unwrap();
    let target = format!(
        "postgres://{}@{}:{}{}",
        url.username(),
        url.host_str().unwrap(),
        url.port().unwrap_or(5432),
        url.path()
    );
    assert!(msg.contains(&target), "{msg}");
    assert!(msg.contains(&format!("version {newer}")), "{msg}");
    assert!(
        msg.contains(&format!("supports up to {}", schema::latest())),
        "{msg}"
    );
    if let Some(pw) = url.password() {
        assert!(!msg.contains(pw), "{msg}");
    }
    // The daemon's queue (what `kiln serve --state postgres://…` opens)
    // refuses the same way.
    let settings = ClusterSettings {
        lease: Duration::from_secs(30),
        poll: Duration::from_secs(5),
    };
    let err = ClusterQueue::connect(
        &schema_.url,
        node("b", &["linux/amd64"], "sha256:c"),
        settings,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ClusterError::SchemaTooNew { .. }), "{err:?}");
    let versions: Vec<i32> = db
        .query("SELECT version FROM cluster_schema ORDER BY version", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let expected: Vec<i32> = (1..=newer).collect();
    assert_eq!(versions, expected);
    schema_.remove().await;
}

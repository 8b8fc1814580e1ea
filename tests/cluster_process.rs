//! A kiln cluster as real processes (issue 15): three `kiln --state
//! postgres://… serve --node-id nX` processes, each on its own Docker engine
//! (the default one and `KILN_TEST_DOCKER_HOSTS`) and in its own checkout of
//! one project, sharing runs and records through one PostgreSQL schema
//! (`tests/support/cluster.rs`). Real builds, tests and pushes to the test
//! registry; a node killed with SIGKILL or paused with SIGSTOP in the middle
//! of a run's test phase.
//!
//! The tests take turns (`SERIAL`): each starts three daemons that build on
//! the machine's two cores, and the engines are shared.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;
use support::cluster::{self, Node, ended, kiln_state, test_containers_on, wait_for};
use support::example::copy_project;
use support::postgres::TestSchema;

/// One cluster test at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The operator config of the failure tests: short leases, quick polls.
const SHORT_LEASE: &str = "cluster:\n  leaseSeconds: 4\n  pollSeconds: 1\n";

/// Three nodes `n1`…`n3` on the schema, each with its checkout and engine.
struct Cluster {
    schema: TestSchema,
    config: tempfile::TempDir,
    checkouts: Vec<tempfile::TempDir>,
    nodes: Vec<Node>,
    engines: Vec<String>,
    recipes: Vec<String>,
}

impl Cluster {
    /// A project of `fast` and `slow` recipes, three checkouts of it, and a
    /// node on each (operator config: `deploy/kiln.yaml` plus `extra`).
    async fn start(fast: &[String], slow: &[String], extra: &str) -> Cluster {
        support::services();
        let engines = cluster::engines();
        assert!(
            engines.len() >= 3,
            "three Docker engines are needed, found {engines:?}: run `scripts/services up`"
        );
        let schema = TestSchema::new().await;
        let project = cluster::project(fast, slow);
        let config = cluster::operator_config(extra);
        let checkouts: Vec<_> = (0..3).map(|_| copy_project(project.path())).collect();
        let nodes = (0..3)
            .map(|i| {
                let id = format!("n{}", i + 1);
                cluster::start(
                    checkouts[i].path(),
                    config.path(),
                    &schema.url,
                    &id,
                    &engines[i],
                )
            })
            .collect();
        Cluster {
            schema,
            config,
            checkouts,
            nodes,
            engines: engines.into_iter().take(3).collect(),
            recipes: fast.iter().chain(slow).cloned().collect(),
        }
    }

    /// The index of node `id`.
    fn index(&self, id: &str) -> usize {
        self.nodes
            .iter()
            .position(|n| n.id == id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    /// Every node's log, for a failing assertion's message.
    fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("--- node {} ---\n{}", n.id, n.log_text()))
            .collect()
    }

    /// Starts node `i` again (same id, checkout and engine), after a kill.
    fn restart(&mut self, i: usize) {
        let (id, engine) = (self.nodes[i].id.clone(), self.nodes[i].engine.clone());
        let node = cluster::start(
            self.checkouts[i].path(),
            self.config.path(),
            &self.schema.url,
            &id,
            &engine,
        );
        self.nodes[i] = node;
    }

    /// Waits until every run of `ids` has ended (asking node `via`); their
    /// rows by id.
    async fn wait_ended(&self, via: usize, ids: &[String], limit: Duration) -> Vec<Value> {
        let node = &self.nodes[via];
        let found = wait_for("the runs to end", limit, || async {
            let runs = node.runs().await;
            let mine: Vec<Value> = runs
                .into_iter()
                .filter(|r| ids.iter().any(|id| r["id"] == id.as_str()))
                .collect();
            (mine.len() == ids.len() && mine.iter().all(ended)).then_some(mine)
        });
        match tokio::time::timeout(limit + Duration::from_secs(5), found).await {
            Ok(runs) => runs,
            Err(_) => panic!("runs did not end; logs:\n{}", self.logs()),
        }
    }

    /// The retry of `run` once it has ended (asking node `via`).
    async fn ended_retry_of(&self, via: usize, run: &str, limit: Duration) -> Value {
        let node = &self.nodes[via];
        wait_for("the retry to end", limit, || async {
            node.runs()
                .await
                .into_iter()
                .find(|r| r["retryOf"] == run && ended(r))
        })
        .await
    }

    /// The node holding `run` once its test container is up: its index.
    async fn holder_in_test_phase(&self, run: &str) -> usize {
        let via = &self.nodes[0];
        wait_for(
            "the slow run's test phase",
            Duration::from_secs(120),
            || async {
                let row = via.run(run).await;
                assert!(
                    !ended(&row),
                    "the slow run ended early: {row}\n{}",
                    self.logs()
                );
                let i = self.index(row["node"].as_str()?);
                (!test_containers_on(&self.engines[i], &self.recipes).is_empty()).then_some(i)
            },
        )
        .await
    }

    /// A connection to the cluster's schema.
    async fn db(&self) -> tokio_postgres::Client {
        self.schema.admin().await
    }

    /// `(build, record id)` of every record of `pipeline`, and the number
    /// of build numbers allocated for it, from the shared database.
    async fn records_of(&self, pipeline: &str) -> (Vec<(i64, String)>, i64) {
        let db = self.db().await;
        let records = db
            .query(
                "SELECT build, id FROM records WHERE pipeline = $1 ORDER BY build",
                &[&pipeline],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let builds: i64 = db
            .query_one(
                "SELECT count(*) FROM builds WHERE pipeline = $1",
                &[&pipeline],
            )
            .await
            .unwrap()
            .get(0);
        (records, builds)
    }

    /// `kiln --state URL records --verify` must pass.
    fn verify_chain(&self) {
        let (code, out, err) = kiln_state(&self.schema.url, &["records", "--verify"]);
        assert_eq!(code, 0, "records --verify: {out}{err}");
    }

    /// Ends a passing test: the daemons, the schema, the images.
    async fn finish(self) {
        let Cluster {
            schema,
            nodes,
            engines,
            recipes,
            ..
        } = self;
        drop(nodes);
        schema.remove().await;
        for engine in &engines {
            cluster::remove_images(engine, &recipes);
        }
    }
}

/// A name unique to this test run (recipe names, hence containers, images
/// and repositories).
fn names(prefix: &str, n: usize) -> Vec<String> {
    let tag = &support::nonce()[..8];
    (0..n).map(|i| format!("c{tag}-{prefix}{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_runs_on_three_nodes_end_once_each_with_one_record_each() {
    let _turn = SERIAL.lock().await;
    let pipelines = names("p", 10);
    let c = Cluster::start(&pipelines, &[], "").await;
    // Three rounds: the main pipeline and two branches (a branch run of the
    // same inputs builds again, with its own build number), queued through
    // every node in turn.
    let branches = [None, Some("r2"), Some("r3")];
    let mut queued: Vec<(String, String)> = Vec::new();
    for (round, branch) in branches.iter().enumerate() {
        for (i, p) in pipelines.iter().enumerate() {
            let id = c.nodes[(i + round) % 3].trigger_on(p, *branch).await;
            queued.push((id, p.clone()));
        }
    }
    let ids: Vec<String> = queued.iter().map(|(id, _)| id.clone()).collect();
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), 30, "every trigger queued a run of its own");
    let runs = c.wait_ended(2, &ids, Duration::from_secs(300)).await;

    // Each run ended once, passed, on some node, with a record of its own.
    let logs = c.logs();
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    let mut record_ids = BTreeSet::new();
    for r in &runs {
        assert_eq!(r["status"], "passed", "{r}\n{logs}");
        assert!(r["retryOf"].is_null(), "no run was retried: {r}");
        *per_node
            .entry(r["node"].as_str().unwrap().to_string())
            .or_default() += 1;
        assert!(
            record_ids.insert(r["recordId"].as_str().unwrap().to_string()),
            "{r}"
        );
    }
    assert!(per_node.len() > 1, "runs spread over nodes: {per_node:?}");
    // Really built, tested and pushed (not up to date).
    for id in &ids {
        let detail = c.nodes[0].run(id).await;
        let stages: BTreeMap<&str, &str> = detail["stages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["name"].as_str().unwrap(), s["status"].as_str().unwrap()))
            .collect();
        for stage in ["build", "test", "distribute", "record"] {
            assert_eq!(stages.get(stage), Some(&"passed"), "{id}: {stages:?}");
        }
    }
    let all = c.nodes[1].runs().await;
    assert_eq!(
        all.len(),
        30,
        "no run besides the 30 queued (no retry, no duplicate)"
    );
    // Every node answers for the whole cluster.
    for n in &c.nodes {
        let rows = n.runs().await;
        let ended = rows.iter().filter(|r| r["status"] == "passed").count();
        assert_eq!(ended, 30, "node {} sees every run passed", n.id);
    }

    // The shared records: three builds per pipeline, numbered 1..3, each
    // allocated and recorded once, and every run's record among them.
    let mut recorded = BTreeSet::new();
    for p in &pipelines {
        let (records, allocated) = c.records_of(p).await;
        let builds: Vec<i64> = records.iter().map(|(b, _)| *b).collect();
        assert_eq!(builds, vec![1, 2, 3], "{p}: builds {builds:?}");
        assert_eq!(allocated, 3, "{p}: one build number per run");
        recorded.extend(records.into_iter().map(|(_, id)| id));
    }
    assert_eq!(recorded, record_ids, "each run's record, and only those");
    c.verify_chain();
    // The API's records (any node) list them too.
    let listed = c.nodes[0].get("/v1/records?limit=500").await;
    let listed: BTreeSet<String> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let id = r["id"].as_str().or(r["record"]["id"].as_str());
            id.unwrap_or_else(|| panic!("a record without an id: {r}"))
                .to_string()
        })
        .collect();
    assert_eq!(listed, record_ids);
    // What was pushed: one tag per build.
    for p in &pipelines {
        let mut tags = support::example::registry_tags(&cluster::repository(p)).await;
        tags.sort();
        assert_eq!(tags.len(), 3, "{p}: {tags:?}");
        assert!(tags.iter().any(|t| t == "1.0.0-1"), "{p}: {tags:?}");
    }
    eprintln!("runs per node: {per_node:?}");
    c.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_s_run_is_retried_elsewhere_and_its_container_removed_on_restart() {
    let _turn = SERIAL.lock().await;
    let slow = names("slow", 1);
    let mut c = Cluster::start(&[], &slow, SHORT_LEASE).await;
    let run = c.nodes[0].trigger(&slow[0]).await;
    let i = c.holder_in_test_phase(&run).await;
    let (killed, engine) = (c.nodes[i].id.clone(), c.engines[i].clone());
    c.nodes[i].daemon.kill().unwrap();
    let via = (i + 1) % 3;

    // Reaped after the lease, retried and passed on another node.
    let retry = c.ended_retry_of(via, &run, Duration::from_secs(120)).await;
    assert_eq!(retry["status"], "passed", "{retry}\n{}", c.logs());
    assert_ne!(retry["node"], killed.as_str(), "{retry}");
    let old = c.nodes[via].run(&run).await;
    assert_eq!(old["status"], "interrupted", "{old}");
    assert!(old["recordId"].is_null(), "{old}");

    // One build, one record: the retry's.
    let (records, allocated) = c.records_of(&slow[0]).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(retry["recordId"], records[0].1.as_str());
    assert_eq!(allocated, 1);
    c.verify_chain();
    let tags = support::example::registry_tags(&cluster::repository(&slow[0])).await;
    assert_eq!(tags, vec!["1.0.0-1".to_string()]);

    // Nobody else may reach the killed node's engine: its test container
    // is still there, until the node starts again and cleans up.
    assert_eq!(
        test_containers_on(&engine, &slow).len(),
        1,
        "the killed run's container is left on {engine}"
    );
    c.restart(i);
    wait_for(
        "the leftover container's removal",
        Duration::from_secs(60),
        || async { test_containers_on(&engine, &slow).is_empty().then_some(()) },
    )
    .await;
    let log = c.nodes[i].log_text();
    assert!(
        log.contains("removed containers of an interrupted run"),
        "{log}"
    );
    // The restarted node took part again and holds nothing.
    let nodes = c.nodes[i].get("/v1/nodes").await;
    let me = nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == killed.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{nodes}"));
    assert_eq!(me["runs"]["running"].as_i64().unwrap_or(0), 0, "{me}");
    c.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_node_s_late_writes_are_refused_and_nothing_is_recorded_twice() {
    let _turn = SERIAL.lock().await;
    let slow = names("slow", 1);
    let c = Cluster::start(&[], &slow, SHORT_LEASE).await;
    let run = c.nodes[0].trigger(&slow[0]).await;
    let i = c.holder_in_test_phase(&run).await;
    let (paused, pid) = (c.nodes[i].id.clone(), c.nodes[i].pid());
    cluster::signal(pid, "STOP");
    let via = (i + 1) % 3;

    // Taken over and finished elsewhere while the holder sleeps.
    let retry = c.ended_retry_of(via, &run, Duration::from_secs(120)).await;
    cluster::signal(pid, "CONT");
    assert_eq!(retry["status"], "passed", "{retry}\n{}", c.logs());
    assert_ne!(retry["node"], paused.as_str(), "{retry}");
    let db = c.db().await;
    let events_of = |id: String| {
        let db = &db;
        async move {
            let n: i64 = db
                .query_one(
                    "SELECT count(*) FROM cluster_run_events WHERE run = $1",
                    &[&id],
                )
                .await
                .unwrap()
                .get(0);
            n
        }
    };
    let before = events_of(run.clone()).await;

    // Awake again, the old holder learns it lost the run and stops it: its
    // test container goes, and it writes nothing.
    wait_for(
        "the paused node to give the run up",
        Duration::from_secs(60),
        || async {
            let log = c.nodes[i].log_text();
            let gone = test_containers_on(&c.engines[i], &slow).is_empty();
            (gone && log.contains("lost the run")).then_some(())
        },
    )
    .await;
    // Whatever it still tried (log lines, its end, a build number) was
    // refused; give it a few heartbeats to try.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(events_of(run.clone()).await, before, "no late log line");
    let old = c.nodes[i].run(&run).await;
    assert_eq!(
        old["status"], "interrupted",
        "the old run stays reaped: {old}"
    );
    assert!(old["recordId"].is_null(), "{old}");
    let again = c.nodes[i].run(retry["id"].as_str().unwrap()).await;
    assert_eq!(again["status"], "passed");
    assert_eq!(again["node"], retry["node"]);
    assert_eq!(again["recordId"], retry["recordId"]);

    // The paused node does not claim the run: no run is running anywhere,
    // and its own view of the nodes gives it none.
    let nodes = c.nodes[i].get("/v1/nodes").await;
    for n in nodes.as_array().unwrap() {
        assert_eq!(n["runs"]["running"].as_i64().unwrap_or(0), 0, "{nodes}");
    }
    let mine: Vec<Value> = c.nodes[i]
        .runs()
        .await
        .into_iter()
        .filter(|r| r["node"] == paused.as_str() && r["status"] != "interrupted")
        .collect();
    assert!(
        mine.is_empty(),
        "the paused node ran nothing else: {mine:?}"
    );

    // One build number, one record, one pushed tag: the retry's. The
    // paused node could not push: the build number it needed before its
    // first push is allocated through the fenced record store.
    let (records, allocated) = c.records_of(&slow[0]).await;
    assert_eq!(records.len(), 1, "{records:?}\n{}", c.logs());
    assert_eq!(retry["recordId"], records[0].1.as_str());
    assert_eq!(allocated, 1, "no build number for the zombie");
    let tags = support::example::registry_tags(&cluster::repository(&slow[0])).await;
    assert_eq!(
        tags,
        vec!["1.0.0-1".to_string()],
        "nothing pushed by the zombie"
    );
    c.verify_chain();
    c.finish().await;
}

//! Scheduled slots at scale, with the real pipeline runner against the real
//! registry behind a counting relay: an unchanged slot of 30 pipelines over
//! 3 parents costs at most one manifest `HEAD` per parent and no `GET`; a
//! moved parent rebuilds exactly its pipelines; a 429 pauses the registry for
//! every run and nothing fails. Passing records are seeded (their build keys
//! come from `Pipeline::freshness`), so unchanged pipelines never build.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kiln::daemon::DaemonState;
use kiln::daemon::clock::{Clock, SystemClock};
use kiln::daemon::pipeline_runner::PipelineRunnerImpl;
use kiln::daemon::queue::Enqueued;
use kiln::daemon::run::{RunRow, RunState, TriggerKind};
use kiln::pipeline::Pipeline;
use kiln::project::Project;
use kiln::registry::RegistryClient;

use crate::harness::{READER, config, serve_with, state_for};
use crate::support::count_relay::{CountRelay, Rule};
use crate::support::postgres::TestSchema;
use crate::support::{self, nonce, seed, services};

const PIPELINES: usize = 30;

/// A recipe on the example component and template, pushed to `repo`.
fn recipe(name: &str, parent: &str, registry: &str, repo: &str) -> String {
    format!(
        "name: {name}\nversion: 1.0.0\nparentImage: {parent}\ndockerfile: hello-web.Dockerfile\n\
         components:\n  - name: hello-site\n    parameters:\n      Greeting: Hello from kiln\n\
         test:\n  port: 8080\n  http:\n    path: /\n    expectStatus: 200\n    \
         expectBodyContains: Hello from kiln\n  timeoutSeconds: 30\n\
         distribute:\n  tags:\n    - \"{{{{ version }}}}-{{{{ build }}}}\"\n  targets:\n    \
         - oci:\n        registry: {registry}\n        repository: {repo}\n"
    )
}

/// The slot's project: `counts[i]` pipelines on parent `i`, each parent a
/// copy of the base image, referenced through `relay`.
struct Slot {
    dir: tempfile::TempDir,
    /// Parent repositories (in the registry), by index.
    parents: Vec<String>,
    /// Pipeline name → parent index.
    on: BTreeMap<String, usize>,
}

fn slot(relay: &CountRelay, counts: &[usize]) -> Slot {
    let s = services();
    let dir = crate::harness::project(&[]);
    let tag = nonce();
    let mut parents = Vec::new();
    let mut on = BTreeMap::new();
    for (i, n) in counts.iter().enumerate() {
        let repo = format!("kiln-it/scale-parent-{tag}-{i}");
        support::skopeo_copy(&s.base_image, &format!("{}/{repo}:1", s.registry), None);
        for j in 0..*n {
            let name = format!("p{i}-{j:02}");
            let parent = format!("{}/{repo}:1", relay.host());
            let out = format!("kiln-it/scale-{tag}-{name}");
            let text = recipe(&name, &parent, &s.registry, &out);
            std::fs::write(dir.path().join(format!("recipes/{name}.yaml")), text).unwrap();
            on.insert(name, i);
        }
        parents.push(repo);
    }
    Slot { dir, parents, on }
}

/// A daemon over `dir` with the real runner and a fresh registry client.
async fn daemon(
    dir: &Path,
) -> (
    DaemonState,
    String,
    tokio::task::JoinHandle<Result<(), kiln::daemon::DaemonError>>,
    Option<TestSchema>,
) {
    let s = services();
    let pipeline = Pipeline {
        project: Project::open(dir).unwrap(),
        docker: s.docker().await,
        registry: RegistryClient::with_defaults().unwrap(),
        signing: None,
        governance: Default::default(),
        records: kiln::record::Records::sqlite(
            kiln::record::db_path(dir),
            kiln::record::ChainKeys::default(),
        ),
    };
    let runner = Arc::new(PipelineRunnerImpl::new(pipeline));
    let (location, schema) = state_for(dir).await;
    let (state, url, task) =
        serve_with(dir, location, Arc::new(SystemClock), runner, config(30)).await;
    (state, url, task, schema)
}

/// Queues every pipeline as one scheduled slot does (check first, one queue
/// time) and waits until all runs ended.
async fn run_slot(state: &DaemonState, names: impl Iterator<Item = String>) -> Vec<RunRow> {
    let at = SystemClock.now();
    let mut ids = Vec::new();
    for n in names {
        match state
            .trigger_at(&n, TriggerKind::Schedule, true, at)
            .await
            .unwrap()
        {
            Enqueued::Created(run) => ids.push(run.id),
            Enqueued::Joined(run) => panic!("{n} already had a run: {run:?}"),
        }
    }
    let mut out = Vec::new();
    for id in ids {
        out.push(wait_finished(state, &id).await);
    }
    out
}

async fn wait_finished(state: &DaemonState, id: &str) -> RunRow {
    for _ in 0..18_000 {
        let run = state.queue().get(id).await.unwrap().unwrap();
        if run.status.is_finished() {
            return run;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("run {id} did not finish in 3 minutes");
}

async fn metrics(url: &str) -> String {
    let resp = reqwest::Client::new()
        .get(format!("{url}/metrics"))
        .bearer_auth(READER)
        .send()
        .await
        .unwrap();
    resp.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_slot_heads_each_parent_once_and_gets_nothing() {
    let s = services();
    let relay = CountRelay::start(&s.registry, Duration::ZERO).await;
    let sl = slot(&relay, &[10, 10, 10]);
    seed::up_to_date(sl.dir.path()).await;
    relay.reset();
    let (state, url, _task, schema) = daemon(sl.dir.path()).await;
    let runs = run_slot(&state, sl.on.keys().cloned()).await;
    assert_eq!(runs.len(), PIPELINES);
    let bad: Vec<_> = runs
        .iter()
        .filter(|r| r.status != RunState::UpToDate)
        .collect();
    assert!(bad.is_empty(), "{bad:#?}");
    let heads = relay.manifests("HEAD", "");
    let gets = relay.manifests("GET", "");
    eprintln!("unchanged slot of {PIPELINES}: {heads} manifest HEADs, {gets} GETs");
    assert!(heads <= 3, "{heads} manifest HEADs: {:#?}", relay.seen());
    assert_eq!(gets, 0, "{:#?}", relay.seen());
    let m = metrics(&url).await;
    let host = relay.host();
    assert!(
        m.contains(&format!(
            "kiln_runs_total{{outcome=\"up_to_date\"}} {PIPELINES}\n"
        )),
        "{m}"
    );
    assert!(
        m.contains(&format!(
            "kiln_registry_lookups_total{{registry=\"{host}\",kind=\"pin\"}} 0\n"
        )),
        "{m}"
    );
    state.shutdown();
    if let Some(schema) = schema {
        schema.remove().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_parent_rebuilds_exactly_its_pipelines() {
    let s = services();
    let relay = CountRelay::start(&s.registry, Duration::ZERO).await;
    // Two pipelines on the parent that moves (each rebuild is a real build,
    // test and push), fourteen on each of the others.
    let sl = slot(&relay, &[2, 14, 14]);
    seed::up_to_date(sl.dir.path()).await;
    // Move parent 0: the same image in OCI format has another digest.
    let moved = &sl.parents[0];
    let tag = format!("{}/{moved}:1", s.registry);
    support::skopeo_copy(&s.base_image, &tag, Some("oci"));
    relay.reset();
    let (state, _url, _task, schema) = daemon(sl.dir.path()).await;
    let runs = run_slot(&state, sl.on.keys().cloned()).await;
    for r in &runs {
        let want = if sl.on[&r.pipeline] == 0 {
            RunState::Passed
        } else {
            RunState::UpToDate
        };
        assert_eq!(r.status, want, "{r:#?}");
    }
    let gets = relay.manifests("GET", "");
    assert!(gets > 0, "the moved parent is pinned with GETs");
    assert_eq!(
        relay.manifests("GET", moved),
        gets,
        "GETs only for the moved parent: {:#?}",
        relay.seen()
    );
    for other in &sl.parents[1..] {
        assert!(relay.manifests("HEAD", other) <= 1, "{:#?}", relay.seen());
    }
    let log = state.queue().events_after(&runs[0].id, 0).await.unwrap();
    let text: Vec<_> = log.iter().map(|e| e.text.as_str()).collect();
    assert!(
        text.iter()
            .any(|t| t.starts_with("build needed:") && t.contains("moved")),
        "{text:#?}"
    );
    state.shutdown();
    if let Some(schema) = schema {
        schema.remove().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_pauses_the_registry_for_every_run_and_all_finish() {
    let s = services();
    let relay = CountRelay::start(&s.registry, Duration::ZERO).await;
    let sl = slot(&relay, &[10, 10, 10]);
    seed::up_to_date(sl.dir.path()).await;
    relay.reset();
    relay.add_rule(Rule {
        method: None,
        path_contains: "/manifests/".into(),
        status: 429,
        headers: vec![("Retry-After", "3".into())],
        body: r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#.into(),
        times: 1,
    });
    let (state, url, _task, schema) = daemon(sl.dir.path()).await;
    let runs = run_slot(&state, sl.on.keys().cloned()).await;
    let bad: Vec<_> = runs
        .iter()
        .filter(|r| r.status != RunState::UpToDate)
        .collect();
    assert!(bad.is_empty(), "{bad:#?}");
    let seen = relay.seen();
    let hit = seen
        .iter()
        .find(|r| r.injected == Some(429))
        .expect("the 429 was sent");
    let during = seen
        .iter()
        .filter(|r| r.at > hit.at && r.at < hit.at + Duration::from_secs(3))
        .count();
    assert!(during <= 1, "{during} requests during the pause: {seen:#?}");
    assert!(
        seen.iter().any(|r| r.at >= hit.at + Duration::from_secs(3)),
        "lookups resumed after the pause: {seen:#?}"
    );
    let mut waited = 0;
    for r in &runs {
        let log = state.queue().events_after(&r.id, 0).await.unwrap();
        waited += log
            .iter()
            .filter(|e| e.text.starts_with("waited ") && e.text.contains("429"))
            .count();
    }
    assert!(waited >= 1, "a run's log says it waited and why");
    let m = metrics(&url).await;
    let host = relay.host();
    assert!(
        m.contains(&format!(
            "kiln_registry_throttled_total{{registry=\"{host}\"}} 1\n"
        )),
        "{m}"
    );
    state.shutdown();
    if let Some(schema) = schema {
        schema.remove().await;
    }
}

//! Run logs under write contention: several runs log at once while other
//! connections write the records' SQLite file (as the pipeline's record
//! store does; on SQLite it is the queue's file too), and every stage event
//! of every run is stored.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use kiln::daemon::DaemonState;
use kiln::daemon::clock::SystemClock;
use kiln::daemon::queue::Enqueued;
use kiln::daemon::run::{RunState, TriggerKind};
use kiln::daemon::runner::{
    BuildNeed, LogSink, PipelineRunner, RunOutcome, RunRequest, RunnerError,
};
use kiln::record::{Status, Store};
use tokio_util::sync::CancellationToken;

use crate::harness::{config, options, project, state_for};

const STAGES: usize = 100;
const PIPELINES: [&str; 4] = ["a", "b", "c", "d"];

/// Logs `STAGES` started/passed pairs, each with a line, yielding between
/// them so the runs' log writers interleave.
struct ChattyRunner;

#[async_trait]
impl PipelineRunner for ChattyRunner {
    async fn run(&self, _run: RunRequest, log: LogSink, _c: CancellationToken) -> RunOutcome {
        for i in 0..STAGES {
            let stage = format!("s{i}");
            log.stage_started(&stage);
            log.line(format!("working on {stage}"));
            log.stage_finished(&stage, true, "ok");
            tokio::task::yield_now().await;
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        RunOutcome {
            status: Status::Passed,
            summary: "done".into(),
            record_id: None,
            failure: None,
        }
    }

    async fn needs_build(
        &self,
        _pipeline: &str,
        _queued: tokio::time::Instant,
        _log: &LogSink,
    ) -> Result<BuildNeed, RunnerError> {
        Ok(BuildNeed::Needed("test".into()))
    }

    async fn cleanup_run(&self, _run_id: &str) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_stage_event_of_concurrent_runs_is_stored_while_others_write() {
    let recipes: Vec<(&str, Option<&str>)> = PIPELINES.iter().map(|p| (*p, None)).collect();
    let dir = project(&recipes);
    let project = kiln::project::Project::open(dir.path()).unwrap();
    let database = kiln::record::db_path(project.root());
    let mut cfg = config(30);
    cfg.concurrency = PIPELINES.len();
    // On PostgreSQL the log goes there, and the writers below write the
    // records' SQLite file beside it.
    let (location, schema) = state_for(dir.path()).await;
    let opts = options(
        dir.path(),
        location,
        cfg,
        Arc::new(ChattyRunner),
        Arc::new(SystemClock),
    )
    .await;
    let state = DaemonState::open(opts).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let task = tokio::spawn(kiln::daemon::serve(
        listener,
        state.clone(),
        std::future::pending(),
    ));

    // Other writers of the same file: build-number allocations, as
    // pipelines in the daemon make them, on their own connections.
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (db, stop) = (database.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut store = Store::open(&db).unwrap();
                let v = semver::Version::new(1, 0, 0);
                while !stop.load(Ordering::SeqCst) {
                    store.allocate(&format!("writer-{w}"), &v).unwrap();
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
            })
        })
        .collect();

    let mut ids = Vec::new();
    for p in PIPELINES {
        match state.trigger(p, TriggerKind::Manual, false).await.unwrap() {
            Enqueued::Created(r) => ids.push(r.id),
            other => panic!("{other:?}"),
        }
    }
    for id in &ids {
        let mut finished = None;
        for _ in 0..6000 {
            let run = state.queue().get(id).await.unwrap().unwrap();
            if run.status.is_finished() {
                finished = Some(run);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let run = finished.unwrap_or_else(|| panic!("run {id} never finished"));
        assert_eq!(run.status, RunState::Passed);
    }
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.join().unwrap();
    }
    for id in &ids {
        let stored = state.queue().stage_events(id).await.unwrap();
        assert_eq!(stored.len(), 2 * STAGES, "stage events of run {id}");
        let all = state.queue().events_after(id, 0).await.unwrap();
        assert_eq!(all.len(), 3 * STAGES, "all events of run {id}");
    }
    state.shutdown();
    task.await.unwrap().unwrap();
    if let Some(schema) = schema {
        schema.remove().await;
    }
}

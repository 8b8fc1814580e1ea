//! Restart recovery over a real SQLite file: a run a killed daemon left
//! `running` is marked interrupted, cleaned up, retried and finished.

use std::sync::Arc;

use kiln::daemon::clock::SystemClock;
use kiln::daemon::queue::Queue;
use kiln::daemon::run::{RunState, TriggerKind};

use crate::harness::{project, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_left_running_is_interrupted_cleaned_up_and_retried() {
    let dir = project(&[("web", None)]);
    let db = kiln::record::db_path(&dir.path().canonicalize().unwrap());
    let queue = Queue::open(&db).unwrap();
    queue
        .with_connection(|c| {
            c.execute(
                "INSERT INTO runs (id, pipeline, trigger, check_first, status, queued_at, started_at) \
                 VALUES ('rdead', 'web', 'manual', 0, 'running', '2026-01-01T00:00:00.000Z', \
                 '2026-01-01T00:00:01.000Z')",
                [],
            )
        })
        .await
        .unwrap();
    drop(queue);

    let d = start(dir, Arc::new(SystemClock), 30).await;
    let old = d.state.queue().get("rdead").await.unwrap().unwrap();
    assert_eq!(old.status, RunState::Interrupted);
    assert!(old.finished_at.is_some());
    assert_eq!(*d.runner.cleanups.lock().unwrap(), ["rdead"]);
    let runs = d.state.queue().list(Some("web".into()), 10).await.unwrap();
    let retry = runs
        .iter()
        .find(|r| r.retry_of.as_deref() == Some("rdead"))
        .unwrap();
    assert_eq!(retry.trigger, TriggerKind::Retry);
    assert_eq!(d.wait_finished(&retry.id).await.status, RunState::Passed);
    assert_eq!(d.runner.run_count(), 1);

    // A second start finds nothing to recover.
    let dir = d.stop().await;
    let d = start(dir, Arc::new(SystemClock), 30).await;
    assert!(d.runner.cleanups.lock().unwrap().is_empty());
    assert_eq!(d.state.queue().list(None, 10).await.unwrap().len(), 2);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_the_same_state_refuses_to_start_and_names_the_first() {
    use std::sync::atomic::Ordering;

    use kiln::daemon::lock::LockError;
    use kiln::daemon::{DaemonError, DaemonOptions, DaemonState};

    let d = start(project(&[("web", None)]), Arc::new(SystemClock), 30).await;
    d.runner.gated.store(true, Ordering::SeqCst);
    let run = d
        .state
        .trigger("web", TriggerKind::Manual, false)
        .await
        .unwrap();
    let id = match run {
        kiln::daemon::queue::Enqueued::Created(r) => r.id,
        other => panic!("{other:?}"),
    };
    d.wait_run(&id, crate::harness::is(RunState::Running)).await;

    // The second daemon: same database, its own runner.
    let project = kiln::project::Project::open(d.dir.path()).unwrap();
    let second = DaemonState::open(DaemonOptions {
        database: kiln::record::db_path(project.root()),
        project,
        config: crate::harness::config(30),
        config_path: None,
        runner: crate::harness::FakeRunner::new(Arc::new(SystemClock)),
        clock: Arc::new(SystemClock),
    })
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = kiln::daemon::serve(listener, second, std::future::pending())
        .await
        .unwrap_err();
    let DaemonError::Lock(LockError::Held { holder, .. }) = &err else {
        panic!("{err:?}")
    };
    assert!(
        holder.starts_with(&format!("pid {} on ", std::process::id())),
        "{holder}"
    );

    // The first daemon's run was not touched: still running, no retry.
    let runs = d.state.queue().list(None, 10).await.unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].status, RunState::Running);
    d.runner.release();
    assert_eq!(d.wait_finished(&id).await.status, RunState::Passed);
    d.stop().await;
}

//! Restart recovery: a run a killed daemon (on PostgreSQL: this node, in an
//! earlier life) left `running` is marked interrupted, cleaned up, retried
//! and finished.

use std::sync::Arc;

use kiln::daemon::clock::SystemClock;
use kiln::daemon::run::{RunState, TriggerKind};

use crate::harness::{config, on_postgres, project, seed_run, start_on, state_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_left_running_is_interrupted_cleaned_up_and_retried() {
    let dir = project(&[("web", None)]);
    let (location, schema) = state_for(dir.path()).await;
    let dead = ("rdead", "web", "running");
    seed_run(
        dir.path(),
        schema.as_ref(),
        dead,
        "2026-01-01T00:00:00.000Z",
    )
    .await;

    let clock = Arc::new(SystemClock);
    let d = start_on(dir, location.clone(), schema, clock.clone(), config(30)).await;
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
    let (dir, schema) = d.stop().await;
    let d = start_on(dir, location, schema, clock, config(30)).await;
    assert!(d.runner.cleanups.lock().unwrap().is_empty());
    assert_eq!(d.state.queue().list(None, 10).await.unwrap().len(), 2);
    d.finish().await;
}

/// SQLite only, by design: the lock is one host's "one daemon per state
/// file". Daemons on PostgreSQL share the queue as nodes, without a lock
/// (leases and fencing keep them apart: `tests/daemon/cluster.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_the_same_state_refuses_to_start_and_names_the_first() {
    use std::sync::atomic::Ordering;

    use kiln::daemon::lock::LockError;
    use kiln::daemon::{DaemonError, DaemonState};

    if on_postgres() {
        return;
    }
    let d = crate::harness::start(project(&[("web", None)]), Arc::new(SystemClock), 30).await;
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
    let (location, _) = state_for(d.dir.path()).await;
    let second = DaemonState::open(
        crate::harness::options(
            d.dir.path(),
            location,
            config(30),
            crate::harness::FakeRunner::new(Arc::new(SystemClock)),
            Arc::new(SystemClock),
        )
        .await,
    )
    .await
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
    d.finish().await;
}

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

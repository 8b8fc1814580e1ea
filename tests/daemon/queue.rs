//! The SQLite run queue on a real file: join, upgrade, claim order, finish.
//! SQLite only, by design: it drives the SQLite backend directly, down to
//! its unique index (`tests/cluster_queue.rs` does the same for PostgreSQL).

use chrono::{DateTime, Utc};
use kiln::daemon::queue::{Enqueued, Queue, RunQueue as _};
use kiln::daemon::run::{RunState, TriggerKind};

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

#[tokio::test]
async fn one_active_run_per_pipeline_claimed_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(&dir.path().join("kiln.db")).unwrap();
    let now = t("2026-01-01T00:00:00Z");
    let Enqueued::Created(a) = q
        .enqueue("a", TriggerKind::Schedule, true, now)
        .await
        .unwrap()
    else {
        panic!("first trigger creates")
    };
    let Enqueued::Created(b) = q
        .enqueue("b", TriggerKind::Manual, false, now)
        .await
        .unwrap()
    else {
        panic!("another pipeline creates")
    };
    // A manual trigger joins the queued refresh and makes it a full run.
    let Enqueued::Joined(joined) = q
        .enqueue("a", TriggerKind::Manual, false, now)
        .await
        .unwrap()
    else {
        panic!("second trigger joins")
    };
    assert_eq!(joined.id, a.id);
    assert!(!joined.check_first);
    // The index refuses a second active row even from outside the queue.
    let dup = q
        .with_connection(|c| {
            c.execute(
                "INSERT INTO runs (id, pipeline, trigger, status, queued_at) \
                 VALUES ('x', 'a', 'manual', 'queued', '2026-01-01T00:00:00Z')",
                [],
            )
        })
        .await;
    assert!(dup.is_err());
    assert_eq!(q.depth().await.unwrap(), (2, 0));
    let first = q.claim_next(now).await.unwrap().unwrap();
    assert_eq!(
        (first.id.as_str(), first.status),
        (a.id.as_str(), RunState::Running)
    );
    assert_eq!(q.claim_next(now).await.unwrap().unwrap().id, b.id);
    assert!(q.claim_next(now).await.unwrap().is_none());
    assert!(
        q.finish(&a.id, (RunState::Passed, None), "ok", None, now)
            .await
            .unwrap()
    );
    assert!(
        !q.finish(
            &a.id,
            (
                RunState::Failed,
                Some(kiln::pipeline::FailureKind::TestsFailed)
            ),
            "again",
            None,
            now
        )
        .await
        .unwrap()
    );
    assert_eq!(
        q.get(&a.id).await.unwrap().unwrap().status,
        RunState::Passed
    );
    assert_eq!(q.depth().await.unwrap(), (0, 1));
    let Enqueued::Created(_) = q
        .enqueue("a", TriggerKind::Manual, false, now)
        .await
        .unwrap()
    else {
        panic!("a finished run does not block a new one")
    };
}

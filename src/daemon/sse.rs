//! Replay-then-follow of a run's log, behind `GET /v1/runs/{id}/log`: the
//! stored events first, then live ones until the run ends. Yields typed
//! items; [`super::api`] frames them as Server-Sent Events.
//!
//! No event is lost or repeated: the follower subscribes to the broadcast
//! before it reads the run and its stored events, the worker stores events
//! before broadcasting them, and live events are de-duplicated by sequence
//! number. A follower that falls behind the broadcast re-reads the store.
//! A run another node executes (a cluster) is followed by re-reading the
//! store every [`super::queue::RunQueue::follow_poll`].

use futures_util::Stream;
use tokio::sync::{broadcast, mpsc};

use super::run::{RunRow, StoredEvent};
use super::state::{DaemonError, DaemonState, LiveKind};

/// One item of a followed log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogItem {
    /// A stored log event.
    Event(StoredEvent),
    /// The run ended; its final row. Always the last item.
    End(RunRow),
}

/// Replays a run's log and, if `live`, follows it. Fails at once if the run
/// does not exist; otherwise the stream ends after [`LogItem::End`] (sent
/// when the run has ended), after the replay when not `live`, or when the
/// daemon shuts down.
pub async fn follow(
    state: &DaemonState,
    run_id: &str,
    live_too: bool,
) -> Result<impl Stream<Item = LogItem> + Send + 'static, DaemonError> {
    follow_after(state, run_id, live_too, 0).await
}

/// [`follow`] from the event after sequence number `after` (a client's
/// `Last-Event-ID`): a reconnecting reader neither loses nor repeats events.
pub async fn follow_after(
    state: &DaemonState,
    run_id: &str,
    live_too: bool,
    after: i64,
) -> Result<impl Stream<Item = LogItem> + Send + 'static, DaemonError> {
    let mut live = state.shared.events.subscribe();
    let run = state.queue().get(run_id).await?;
    let run = run.ok_or_else(|| DaemonError::UnknownRun {
        id: run_id.to_string(),
    })?;
    let (tx, rx) = mpsc::channel(64);
    let state = state.clone();
    let run_id = run_id.to_string();
    tokio::spawn(async move {
        let mut last = after;
        if !catch_up(&state, run, &mut last, &tx).await || !live_too {
            return;
        }
        let shutdown = state.shared.shutdown.clone();
        let poll = state.queue().follow_poll();
        loop {
            let msg = tokio::select! {
                m = live.recv() => Some(m),
                () = reread(poll) => None,
                () = tx.closed() => return,
                () = shutdown.cancelled() => return,
            };
            let ev = match msg {
                Some(Ok(ev)) => ev,
                Some(Err(broadcast::error::RecvError::Closed)) => return,
                None | Some(Err(broadcast::error::RecvError::Lagged(_))) => {
                    let Ok(Some(run)) = state.queue().get(&run_id).await else {
                        return;
                    };
                    if !catch_up(&state, run, &mut last, &tx).await {
                        return;
                    }
                    continue;
                }
            };
            if ev.run_id != run_id {
                continue;
            }
            match &ev.kind {
                LiveKind::Log(e) if e.seq > last => {
                    last = e.seq;
                    if tx.send(LogItem::Event(e.clone())).await.is_err() {
                        return;
                    }
                }
                LiveKind::Log(_) => {}
                LiveKind::End(row) => {
                    let _ = tx.send(LogItem::End(row.clone())).await;
                    return;
                }
            }
        }
    });
    Ok(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

/// Completes after `poll`, or never without one.
async fn reread(poll: Option<std::time::Duration>) {
    match poll {
        Some(p) => tokio::time::sleep(p).await,
        None => std::future::pending().await,
    }
}

/// Sends the stored events after `last`; if `run` (read before them) had
/// already ended, also its end. Returns whether to keep following.
async fn catch_up(
    state: &DaemonState,
    run: RunRow,
    last: &mut i64,
    tx: &mpsc::Sender<LogItem>,
) -> bool {
    let events = match state.queue().events_after(&run.id, *last).await {
        Ok(events) => events,
        Err(e) => {
            tracing::error!(run = %run.id, error = %e, "cannot read the run log");
            return false;
        }
    };
    for e in events {
        *last = e.seq;
        if tx.send(LogItem::Event(e)).await.is_err() {
            return false;
        }
    }
    if run.status.is_finished() {
        let _ = tx.send(LogItem::End(run)).await;
        return false;
    }
    true
}

//! The worker: claims queued runs (within the concurrency limit), drives the
//! [`PipelineRunner`] for each, stores and broadcasts its log events, and
//! finishes the run. Also crash recovery at start, the drain at shutdown,
//! and what the queue reports while running ([`watch`]: runs this node lost
//! or was asked to cancel). A write the queue refuses as fenced stops the
//! run here; nothing more is written for it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::queue::{Claimed, QueueEvent, RunEnd};
use super::run::{RunRow, RunState, StoredEvent};
use super::runner::{
    BuildNeed, EventKind, LogEvent, LogSink, PipelineRunner, RunOutcome, RunRequest,
};
use super::state::{DaemonError, DaemonState, LiveEvent, LiveKind};
use crate::pipeline::{FailureKind, chain};
use crate::record::Status;

/// After the grace period and cancellation, how long runs get to return.
const CANCEL_WAIT: Duration = Duration::from_secs(10);
/// Most log events written in one transaction.
const LOG_BATCH: usize = 256;
/// How long a batch of log events is retried when the database refuses it
/// (each try already waits out the 30 s busy timeout) before it is given up.
const LOG_RETRY_FOR: Duration = Duration::from_secs(120);

/// Crash recovery: runs this daemon (node) left `running` when it was
/// killed are marked `interrupted` with a retry queued, and the runner
/// cleans up after each of them — and after runs another node's reaper
/// interrupted under it — on this node's engine only.
pub async fn recover(state: &DaemonState) -> Result<(), DaemonError> {
    let s = &state.shared;
    let recovered = s.queue.recover(s.clock.now()).await?;
    for r in recovered {
        let (old, retry) = (&r.run, r.retry.as_ref().map(|r| r.id.as_str()));
        tracing::warn!(run = %old.id, pipeline = %old.pipeline, retry = retry.unwrap_or("-"),
            "run was interrupted by a daemon stop; cleaning up");
        if retry.is_some() {
            s.metrics.run_finished(RunState::Interrupted);
        }
        s.runner.cleanup_run(&old.id).await;
    }
    Ok(())
}

/// Acts on what the queue's background work reports until the channel
/// closes: a lost run or an asked cancel stops the run here (its pipeline
/// removes its containers); a reaped run is counted.
pub async fn watch(state: DaemonState, mut found: mpsc::UnboundedReceiver<QueueEvent>) {
    let s = &state.shared;
    while let Some(event) = found.recv().await {
        match event {
            QueueEvent::Lost { run, why } => {
                tracing::warn!(run = %run, why = %why, "this node lost the run; stopping it");
                state.cancel_local(&run);
            }
            QueueEvent::CancelRequested { run } => {
                tracing::info!(run = %run, "cancel asked through another node");
                state.cancel_local(&run);
            }
            QueueEvent::Reaped { run, node, retry } => {
                tracing::warn!(run = %run, node = node.as_deref().unwrap_or("?"),
                    retry = retry.as_deref().unwrap_or("-"), "lease lapsed; run interrupted");
                s.metrics.run_finished(RunState::Interrupted);
            }
        }
    }
}

/// Claims and starts runs until shutdown, then drains.
pub async fn dispatch(state: DaemonState) {
    let s = state.shared.clone();
    let mut runs = JoinSet::new();
    loop {
        while runs.try_join_next().is_some() {}
        let permit = tokio::select! {
            p = s.limit.clone().acquire_owned() => p.expect("the run semaphore is never closed"),
            () = s.shutdown.cancelled() => break,
        };
        match s.queue.claim(s.clock.now()).await {
            Ok(Some(claimed)) => {
                tracing::info!(run = %claimed.run.id, pipeline = %claimed.run.pipeline,
                    "run started");
                runs.spawn(run_one(state.clone(), claimed, permit));
            }
            Ok(None) => {
                drop(permit);
                tokio::select! {
                    () = s.wake.notified() => {}
                    () = s.shutdown.cancelled() => break,
                }
            }
            Err(e) => {
                drop(permit);
                tracing::error!(error = %e, "cannot claim a run; retrying in 1s");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = s.shutdown.cancelled() => break,
                }
            }
        }
    }
    drain(&state, runs).await;
}

/// Shutdown: running pipelines get `graceSeconds` to finish, then they are
/// cancelled; whatever still runs after that is marked cancelled.
async fn drain(state: &DaemonState, mut runs: JoinSet<()>) {
    let s = &state.shared;
    if runs.is_empty() {
        return;
    }
    let grace = state.config().grace();
    tracing::info!(
        running = runs.len(),
        ?grace,
        "waiting for running pipelines"
    );
    if tokio::time::timeout(grace, join_all(&mut runs))
        .await
        .is_ok()
    {
        return;
    }
    let tokens: Vec<CancellationToken> = s
        .active
        .lock()
        .map(|a| a.values().cloned().collect())
        .unwrap_or_default();
    tracing::warn!(
        running = tokens.len(),
        "grace period over; cancelling running pipelines"
    );
    tokens.iter().for_each(CancellationToken::cancel);
    if tokio::time::timeout(CANCEL_WAIT, join_all(&mut runs))
        .await
        .is_ok()
    {
        return;
    }
    runs.abort_all();
    let left: Vec<String> = s
        .active
        .lock()
        .map(|a| a.keys().cloned().collect())
        .unwrap_or_default();
    for id in left {
        let end = RunEnd {
            state: RunState::Cancelled,
            failure: None,
            summary: "cancelled: the daemon shut down",
            record_id: None,
        };
        match s.queue.finish(&id, end, s.clock.now()).await {
            Ok(_) => s.metrics.run_finished(RunState::Cancelled),
            Err(e) => tracing::error!(run = %id, error = %e, "cannot mark run cancelled"),
        }
    }
}

async fn join_all(runs: &mut JoinSet<()>) {
    while runs.join_next().await.is_some() {}
}

/// Drives one claimed run to its end.
async fn run_one(state: DaemonState, claimed: Claimed, permit: OwnedSemaphorePermit) {
    let s = state.shared.clone();
    let Claimed { run, fence } = claimed;
    let cancel = CancellationToken::new();
    if let Ok(mut active) = s.active.lock() {
        active.insert(run.id.clone(), cancel.clone());
    }
    let (sink, rx) = LogSink::channel();
    let (close, closed) = oneshot::channel();
    let writer = tokio::spawn(write_log(state.clone(), run.id.clone(), rx, closed));
    let queued = queued_instant(s.clock.now(), run.queued_at);
    let outcome = drive(s.runner.as_ref(), (&run, fence), queued, sink, cancel).await;
    let _ = close.send(());
    let _ = writer.await;
    let status = RunState::from(outcome.status);
    let end = RunEnd {
        state: status,
        failure: outcome.failure,
        summary: &outcome.summary,
        record_id: outcome.record_id.as_deref(),
    };
    let finished = finish(&state, &run.id, end).await;
    if let Ok(mut active) = s.active.lock() {
        active.remove(&run.id);
    }
    match finished {
        Ok(_) => {
            s.metrics.run_finished(status);
            tracing::info!(run = %run.id, pipeline = %run.pipeline, status = status.as_str(),
                summary = %outcome.summary, "run finished");
        }
        Err(e) if e.is_fenced() => tracing::warn!(run = %run.id, error = %chain(&e),
            "this node lost the run before it ended; its end was not recorded"),
        Err(e) => {
            tracing::error!(run = %run.id, error = %chain(&e), "giving up recording the end of a run");
            s.queue.abandon(&run.id);
        }
    }
    if let Ok(Some(row)) = s.queue.get(&run.id).await {
        state.broadcast_end(row);
    }
    drop(permit);
    s.wake.notify_one();
}

/// Records a run's end, retrying with backoff for up to [`LOG_RETRY_FOR`]
/// while the store may still take it; a fenced refusal is final.
async fn finish(
    state: &DaemonState,
    run_id: &str,
    end: RunEnd<'_>,
) -> Result<bool, super::queue::QueueError> {
    let s = &state.shared;
    let start = Instant::now();
    let mut pause = Duration::from_millis(50);
    loop {
        match s.queue.finish(run_id, end, s.clock.now()).await {
            Err(e) if !e.is_fenced() && start.elapsed() < LOG_RETRY_FOR => {
                tracing::warn!(run = %run_id, error = %chain(&e), "cannot record the end yet; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            done => return done,
        }
    }
}

/// The monotonic instant of `queued_at`, a wall time read `now` ago.
fn queued_instant(now: DateTime<Utc>, queued_at: DateTime<Utc>) -> Instant {
    let age = (now - queued_at).to_std().unwrap_or_default();
    Instant::now().checked_sub(age).unwrap_or_else(Instant::now)
}

/// The check-first step (scheduled refreshes) and the run itself.
async fn drive(
    runner: &dyn PipelineRunner,
    (run, fence): (&RunRow, Option<crate::record::Fence>),
    queued: Instant,
    sink: LogSink,
    cancel: CancellationToken,
) -> RunOutcome {
    if run.check_first {
        match runner.needs_build(&run.pipeline, queued, &sink).await {
            Ok(BuildNeed::UpToDate) => {
                sink.line("parents and inputs unchanged; nothing to build");
                return RunOutcome {
                    status: Status::UpToDate,
                    summary: "up to date: parents and inputs unchanged".into(),
                    record_id: None,
                    failure: None,
                };
            }
            Ok(BuildNeed::Needed(reason)) => sink.line(format!("build needed: {reason}")),
            Err(e) => {
                let summary = format!("checking dependencies failed: {}", chain(&e));
                sink.line(summary.clone());
                return RunOutcome {
                    status: Status::Failed,
                    summary,
                    record_id: None,
                    failure: Some(FailureKind::Infrastructure),
                };
            }
        }
    }
    let branch = match run.branch.as_deref().map(crate::branch::BranchName::parse) {
        None => None,
        Some(Ok(b)) => Some(b),
        Some(Err(e)) => {
            let summary = format!("the queued branch cannot be built: {e}");
            sink.line(summary.clone());
            return RunOutcome {
                status: Status::Failed,
                summary,
                record_id: None,
                failure: Some(FailureKind::Invalid),
            };
        }
    };
    let request = RunRequest {
        run_id: run.id.clone(),
        pipeline: run.pipeline.clone(),
        queued,
        branch,
        fence,
    };
    runner.run(request, sink, cancel).await
}

/// Stores a run's log events in batches, then broadcasts them (stored
/// first, so a follower that subscribes and then replays misses nothing).
/// Ends when `closed` fires, after draining what was already sent.
async fn write_log(
    state: DaemonState,
    run_id: String,
    mut rx: mpsc::UnboundedReceiver<LogEvent>,
    mut closed: oneshot::Receiver<()>,
) {
    let s = &state.shared;
    let mut started: HashMap<String, DateTime<Utc>> = HashMap::new();
    let mut closing = false;
    loop {
        let mut batch = Vec::new();
        if !closing {
            tokio::select! {
                biased;
                Some(e) = rx.recv() => batch.push(e),
                _ = &mut closed => closing = true,
            }
        }
        while batch.len() < LOG_BATCH {
            match rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            if closing {
                return;
            }
            continue;
        }
        let Some(stored) = store_batch(&state, &run_id, batch).await else {
            // Fenced: this node lost the run; stop it and drop its log.
            state.cancel_local(&run_id);
            rx.close();
            while rx.recv().await.is_some() {}
            return;
        };
        for e in stored {
            observe_stage(&state, &mut started, &e.kind, e.stage.as_deref(), e.at);
            let _ = s.events.send(Arc::new(LiveEvent {
                run_id: run_id.clone(),
                kind: LiveKind::Log(e),
            }));
        }
    }
}

/// Stores one batch, retrying with backoff for up to [`LOG_RETRY_FOR`]:
/// a failed write is never dropped while the database may still take it.
/// This task is the run's only log writer, so order is kept. `None`: the
/// queue refused it as fenced (this node lost the run).
async fn store_batch(
    state: &DaemonState,
    run_id: &str,
    batch: Vec<LogEvent>,
) -> Option<Vec<StoredEvent>> {
    let s = &state.shared;
    let start = tokio::time::Instant::now();
    let mut pause = Duration::from_millis(50);
    loop {
        match s
            .queue
            .append_events(run_id, batch.clone(), s.clock.now())
            .await
        {
            Ok(stored) => return Some(stored),
            Err(e) if e.is_fenced() => {
                tracing::warn!(run = %run_id, error = %chain(&e), lines = batch.len(),
                    "log lines refused: this node lost the run; stopping it");
                return None;
            }
            Err(e) if start.elapsed() < LOG_RETRY_FOR => {
                tracing::warn!(run = %run_id, error = %e, lines = batch.len(),
                    "cannot store log lines yet; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            Err(e) => {
                tracing::error!(run = %run_id, error = %e, lines = batch.len(),
                    "giving up storing log lines");
                return Some(Vec::new());
            }
        }
    }
}

fn observe_stage(
    state: &DaemonState,
    started: &mut HashMap<String, DateTime<Utc>>,
    kind: &EventKind,
    stage: Option<&str>,
    at: DateTime<Utc>,
) {
    let Some(stage) = stage else { return };
    match kind {
        EventKind::StageStarted => {
            started.insert(stage.to_string(), at);
        }
        EventKind::StagePassed | EventKind::StageFailed => {
            if let Some(t0) = started.remove(stage) {
                let secs = (at - t0).num_milliseconds() as f64 / 1000.0;
                state.shared.metrics.stage_observed(stage, secs);
            }
        }
        EventKind::Line => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_time_becomes_an_instant_as_long_ago() {
        let now: DateTime<Utc> = "2026-05-01T03:00:05Z".parse().unwrap();
        let q = queued_instant(now, "2026-05-01T03:00:00Z".parse().unwrap());
        let age = Instant::now() - q;
        assert!(
            age >= Duration::from_secs(5) && age < Duration::from_secs(6),
            "{age:?}"
        );
        let t = Instant::now();
        let future = queued_instant(now, "2026-05-01T03:00:09Z".parse().unwrap());
        assert!(future >= t, "a queue time ahead of the clock counts as now");
    }
}

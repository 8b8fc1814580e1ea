//! The seam between the daemon and the pipeline: the daemon drives a
//! [`PipelineRunner`] and never chains stages itself. The real runner calls
//! the same pipeline function as `kiln run` ([`super::pipeline_runner`]);
//! tests use a double.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::record::Status;
use crate::registry::RegistryStats;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Why a runner could not make the [`PipelineRunner::needs_build`] check.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunnerError {
    /// The pipeline's freshness check failed (load, resolve, render or the
    /// record store).
    #[error(transparent)]
    Pipeline(#[from] crate::pipeline::PipelineError),
    /// Promoting an approved build failed.
    #[error(transparent)]
    Approve(#[from] crate::pipeline::ApproveError),
}

/// What [`PipelineRunner::run`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    /// How it ended: the same [`Status`] a record and `kiln run` report.
    pub status: Status,
    /// One line for people (`pushed web:1.0.0-3`, `test: probe timed out`).
    pub summary: String,
    /// The record the run appended, if any.
    pub record_id: Option<String>,
    /// What kind of failure ended a failed run (its exit code).
    pub failure: Option<crate::pipeline::FailureKind>,
}

/// What the daemon asks a runner to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRequest {
    /// The daemon's run id; label containers with it so
    /// [`PipelineRunner::cleanup_run`] can find them after a crash.
    pub run_id: String,
    /// The pipeline (recipe name).
    pub pipeline: String,
    /// When the run was queued: registry lookups shared with other runs
    /// must have been asked at or after this instant.
    pub queued: Instant,
    /// The branch of a branch pipeline run (validated when queued).
    pub branch: Option<crate::branch::BranchName>,
    /// A cluster run's claim: the run's record writes must still hold it
    /// (`None` on one host).
    pub fence: Option<crate::record::Fence>,
}

/// The answer of [`PipelineRunner::needs_build`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildNeed {
    /// Parents and inputs are unchanged: nothing to do.
    UpToDate,
    /// A build is needed, and why (`parent kiln/base:1 moved to sha256:…`).
    Needed(String),
}

/// The pipeline, as the daemon drives it.
#[async_trait]
pub trait PipelineRunner: Send + Sync + 'static {
    /// Runs one pipeline end to end (load → … → record). Log lines and stage
    /// boundaries go to `log`; stop promptly once `cancel` fires and return
    /// [`Status::Cancelled`].
    async fn run(&self, run: RunRequest, log: LogSink, cancel: CancellationToken) -> RunOutcome;

    /// The cheap check before a scheduled refresh: check the parents (HEAD
    /// first, lookups shared with runs queued no later than `queued`) and
    /// compute the build key, without building. Waits for rate-limited
    /// registries are written to `log`.
    async fn needs_build(
        &self,
        pipeline: &str,
        queued: Instant,
        log: &LogSink,
    ) -> Result<BuildNeed, RunnerError>;

    /// Lookup and rate-limit figures per registry, for `/metrics`.
    fn registry_stats(&self) -> Vec<RegistryStats> {
        Vec::new()
    }

    /// Removes whatever an interrupted run left behind (containers labelled
    /// with its run id). Called at startup for runs a killed daemon left
    /// `running`.
    async fn cleanup_run(&self, run_id: &str);

    /// Promotes a build just approved (by `by`) to the promote targets its
    /// record names. A runner without registries promotes nothing.
    async fn promote_approved(
        &self,
        record: &crate::record::ChainedRecord,
        by: &str,
    ) -> Result<Vec<crate::pipeline::PromotionOutcome>, RunnerError> {
        let _ = (record, by);
        Ok(Vec::new())
    }
}

/// What a log event says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A line of output.
    Line,
    /// A stage began.
    StageStarted,
    /// A stage succeeded.
    StagePassed,
    /// A stage failed.
    StageFailed,
}

impl EventKind {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Line => "line",
            EventKind::StageStarted => "stage_started",
            EventKind::StagePassed => "stage_passed",
            EventKind::StageFailed => "stage_failed",
        }
    }

    /// Parses [`EventKind::as_str`].
    pub fn parse(s: &str) -> Option<EventKind> {
        [
            EventKind::Line,
            EventKind::StageStarted,
            EventKind::StagePassed,
            EventKind::StageFailed,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// One event a runner emits, before the daemon numbers and stamps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEvent {
    /// What it is.
    pub kind: EventKind,
    /// The stage it belongs to, if known.
    pub stage: Option<String>,
    /// The text (a log line, or the stage's note).
    pub text: String,
}

/// Where a runner writes its log. Cheap to clone; never blocks; events sent
/// after the run ended are dropped.
#[derive(Debug, Clone)]
pub struct LogSink {
    tx: Option<mpsc::UnboundedSender<LogEvent>>,
    stage: Arc<std::sync::Mutex<Option<String>>>,
}

impl LogSink {
    /// A sink and the receiving end of its events.
    pub fn channel() -> (LogSink, mpsc::UnboundedReceiver<LogEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let sink = LogSink {
            tx: Some(tx),
            stage: Arc::default(),
        };
        (sink, rx)
    }

    /// A sink that drops everything.
    pub fn discard() -> LogSink {
        LogSink {
            tx: None,
            stage: Arc::default(),
        }
    }

    fn send(&self, kind: EventKind, stage: Option<String>, text: String) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(LogEvent { kind, stage, text });
        }
    }

    fn current_stage(&self) -> Option<String> {
        self.stage.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// One line of output, attributed to the current stage.
    pub fn line(&self, text: impl Into<String>) {
        self.send(EventKind::Line, self.current_stage(), text.into());
    }

    /// Marks the start of a stage (`resolve`, `build`, `test`, …).
    pub fn stage_started(&self, stage: &str) {
        if let Ok(mut s) = self.stage.lock() {
            *s = Some(stage.to_string());
        }
        self.send(EventKind::StageStarted, Some(stage.into()), String::new());
    }

    /// Marks the end of a stage, with a short note.
    pub fn stage_finished(&self, stage: &str, ok: bool, note: impl Into<String>) {
        let kind = if ok {
            EventKind::StagePassed
        } else {
            EventKind::StageFailed
        };
        self.send(kind, Some(stage.into()), note.into());
    }
}

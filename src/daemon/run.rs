//! Plain data about runs: a run's row, its state machine, its stored log
//! events and the per-stage view derived from them. No IO.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::runner::EventKind;
use crate::record::Status;

/// Where a run is in its life. `queued → running → {passed, failed,
/// up_to_date, cancelled, awaiting_approval}`; a run a killed daemon left `running` becomes
/// `interrupted` at the next start (and a retry is queued).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Waiting for a worker.
    Queued,
    /// A worker is driving it.
    Running,
    /// Finished: passed.
    Passed,
    /// Finished: failed.
    Failed,
    /// Finished: nothing to build.
    UpToDate,
    /// Finished: cancelled (API or shutdown).
    Cancelled,
    /// The daemon died while it ran.
    Interrupted,
    /// Finished: passed and pushed to staging; waits for `kiln approve`.
    AwaitingApproval,
}

impl RunState {
    /// Every state, for parsing and metrics.
    pub const ALL: [RunState; 8] = [
        RunState::Queued,
        RunState::Running,
        RunState::Passed,
        RunState::Failed,
        RunState::UpToDate,
        RunState::Cancelled,
        RunState::Interrupted,
        RunState::AwaitingApproval,
    ];

    /// The name stored in the database and shown everywhere.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::Running => "running",
            RunState::Passed => "passed",
            RunState::Failed => "failed",
            RunState::UpToDate => "up_to_date",
            RunState::Cancelled => "cancelled",
            RunState::Interrupted => "interrupted",
            RunState::AwaitingApproval => "awaiting_approval",
        }
    }

    /// Parses [`RunState::as_str`].
    pub fn parse(s: &str) -> Option<RunState> {
        RunState::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether the run has ended.
    pub fn is_finished(self) -> bool {
        !matches!(self, RunState::Queued | RunState::Running)
    }
}

/// A finished run's state is how its pipeline run ended.
impl From<Status> for RunState {
    fn from(s: Status) -> RunState {
        match s {
            Status::Passed => RunState::Passed,
            Status::Failed => RunState::Failed,
            Status::UpToDate => RunState::UpToDate,
            Status::Cancelled => RunState::Cancelled,
            Status::AwaitingApproval => RunState::AwaitingApproval,
        }
    }
}

/// Why a run was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TriggerKind {
    /// Someone asked (API / `kiln trigger`).
    Manual,
    /// The pipeline's cron schedule came due.
    Schedule,
    /// Re-queued after the daemon died during an earlier run.
    Retry,
    /// Queued on start because the schedule's slot passed while the daemon
    /// was down.
    CatchUp,
}

impl TriggerKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerKind::Manual => "manual",
            TriggerKind::Schedule => "schedule",
            TriggerKind::Retry => "retry",
            TriggerKind::CatchUp => "catch_up",
        }
    }

    /// Parses [`TriggerKind::as_str`].
    pub fn parse(s: &str) -> Option<TriggerKind> {
        [
            TriggerKind::Manual,
            TriggerKind::Schedule,
            TriggerKind::Retry,
            TriggerKind::CatchUp,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }
}

/// One run, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunRow {
    /// Run id.
    pub id: String,
    /// Pipeline.
    pub pipeline: String,
    /// Why it was queued.
    pub trigger: TriggerKind,
    /// Ask [`super::runner::PipelineRunner::needs_build`] before running.
    pub check_first: bool,
    /// Where it is.
    pub status: RunState,
    /// One line about how it ended.
    pub summary: Option<String>,
    /// The record it appended.
    pub record_id: Option<String>,
    /// The interrupted run this one retries.
    pub retry_of: Option<String>,
    /// When it was queued.
    pub queued_at: DateTime<Utc>,
    /// When a worker claimed it.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// The branch of a branch pipeline run (`POST …/trigger?branch=`);
    /// absent for the main pipeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// What kind of failure ended a failed run: `invalid`, `tests_failed`,
    /// `infrastructure` or `failed` (`kiln trigger --wait` exits with the
    /// code `kiln run` would).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<crate::pipeline::FailureKind>,
    /// The node that ran it (claimed it last): a cluster node's id, or this
    /// host's node id; absent while queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// A log event as stored and streamed: numbered within its run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredEvent {
    /// Position in the run's log, from 1.
    pub seq: i64,
    /// When the daemon received it.
    pub at: DateTime<Utc>,
    /// What it is.
    pub kind: EventKind,
    /// Its stage.
    pub stage: Option<String>,
    /// Its text.
    pub text: String,
}

/// One stage of a run, derived from its stage events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StageInfo {
    /// Stage name.
    pub name: String,
    /// `running`, `passed` or `failed`.
    #[schema(value_type = String)]
    pub status: &'static str,
    /// Start.
    pub started_at: DateTime<Utc>,
    /// End.
    pub finished_at: Option<DateTime<Utc>>,
    /// Duration in milliseconds, once finished.
    pub duration_ms: Option<i64>,
}

/// Folds stage events (in order) into one entry per stage.
pub fn stages(events: &[StoredEvent]) -> Vec<StageInfo> {
    let mut out: Vec<StageInfo> = Vec::new();
    for e in events {
        let Some(stage) = &e.stage else { continue };
        match e.kind {
            EventKind::Line => {}
            EventKind::StageStarted => out.push(StageInfo {
                name: stage.clone(),
                status: "running",
                started_at: e.at,
                finished_at: None,
                duration_ms: None,
            }),
            EventKind::StagePassed | EventKind::StageFailed => {
                if let Some(s) = out
                    .iter_mut()
                    .rev()
                    .find(|s| &s.name == stage && s.finished_at.is_none())
                {
                    s.status = if e.kind == EventKind::StagePassed {
                        "passed"
                    } else {
                        "failed"
                    };
                    s.finished_at = Some(e.at);
                    s.duration_ms = Some((e.at - s.started_at).num_milliseconds());
                }
            }
        }
    }
    out
}

/// A fresh run id: `r` + UTC timestamp (sorts by time) + 64 random bits.
pub fn new_run_id(now: DateTime<Utc>) -> String {
    format!("r{}{:016x}", now.format("%Y%m%d%H%M%S"), fastrand::u64(..))
}

//! What the pages show, gathered from the daemon state as plain serializable
//! data (the templates only lay it out): pipelines with their schedule, next
//! run, last run's stages and approved digests; a run with its stages and
//! stored log; records with the chain's verification.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::daemon::catalog::ScheduleInfo;
use crate::daemon::run::{RunRow, StageInfo, StoredEvent, stages};
use crate::daemon::{DaemonError, DaemonState};
use crate::record::ChainedRecord;

/// Most records the records page lists.
pub const RECORDS_SHOWN: usize = 100;

/// One pipeline's row on the overview.
#[derive(Debug, Serialize)]
pub struct PipelineView {
    /// Recipe name.
    pub name: String,
    /// Recipe version, when it loads.
    pub version: Option<String>,
    /// Why the recipe does not load.
    pub error: Option<String>,
    /// Its schedule, if any.
    pub schedule: Option<ScheduleInfo>,
    /// When the schedule next fires.
    pub next_run_at: Option<DateTime<Utc>>,
    /// The newest run.
    pub last_run: Option<RunRow>,
    /// The last run's stages, in order.
    pub last_stages: Vec<StageInfo>,
    /// What downstream teams should pull.
    pub approved: Option<ApprovedView>,
}

/// The approved build of a pipeline: what a downstream team copies.
#[derive(Debug, Serialize)]
pub struct ApprovedView {
    /// `pipeline:version-build`.
    pub build: String,
    /// When it finished.
    pub finished_at: DateTime<Utc>,
    /// `REGISTRY/REPOSITORY@sha256:…` per target.
    pub references: Vec<String>,
}

/// Every pipeline of the catalog, in catalog order.
pub async fn pipelines(state: &DaemonState) -> Result<Vec<PipelineView>, DaemonError> {
    let now = state.clock().now();
    let mut out = Vec::new();
    for p in &state.catalog().pipelines {
        let last_run = state.queue().list(Some(p.name.clone()), 1).await?.pop();
        let last_stages = match &last_run {
            Some(run) => stages(&state.queue().stage_events(&run.id).await?),
            None => Vec::new(),
        };
        let approved = state
            .records()
            .approved(&p.name)
            .await?
            .map(|a| ApprovedView {
                build: a.record.record.build_id().to_string(),
                finished_at: a.record.record.finished_at,
                references: a.references,
            });
        out.push(PipelineView {
            name: p.name.clone(),
            version: p.version.clone(),
            error: p.error.clone(),
            next_run_at: p.schedule.as_ref().and_then(|s| s.next_after(now)),
            schedule: p.schedule.clone(),
            last_run,
            last_stages,
            approved,
        });
    }
    Ok(out)
}

/// A build waiting for a person's decision.
#[derive(Debug, Serialize)]
pub struct AwaitingBuild {
    /// The record id the decision is about.
    pub id: String,
    /// `pipeline:version-build`.
    pub build: String,
    /// `REGISTRY/REPOSITORY@sha256:…` per target.
    pub references: Vec<String>,
}

/// The builds awaiting approval, oldest first.
pub async fn approvals(state: &DaemonState) -> Result<Vec<AwaitingBuild>, DaemonError> {
    let waiting = state.records().awaiting_approval().await?;
    Ok(waiting
        .into_iter()
        .map(|c| AwaitingBuild {
            id: c.record.id.0.clone(),
            build: c.record.build_id().to_string(),
            references: c
                .record
                .targets
                .iter()
                .map(|t| t.pinned_reference())
                .collect(),
        })
        .collect())
}

/// A run page.
#[derive(Debug, Serialize)]
pub struct RunView {
    /// The run.
    pub run: RunRow,
    /// Its stages so far.
    pub stages: Vec<StageInfo>,
    /// The stored log so far; the page follows the rest live.
    pub events: Vec<StoredEvent>,
}

/// The run `id`, with its stages and the log stored so far.
pub async fn run(state: &DaemonState, id: &str) -> Result<RunView, DaemonError> {
    let run = state.queue().get(id).await?;
    let run = run.ok_or_else(|| DaemonError::UnknownRun { id: id.to_string() })?;
    let events = state.queue().events_after(id, 0).await?;
    Ok(RunView {
        stages: stages(&events),
        run,
        events,
    })
}

/// The records page: newest first, each marked against the chain walk.
#[derive(Debug, Serialize)]
pub struct RecordsView {
    /// Records in the chain.
    pub checked: u64,
    /// The chain head's hash when intact.
    pub head: Option<String>,
    /// `seq`, build and problem of the first record that fails verification.
    pub first_bad: Option<(i64, String, String)>,
    /// The newest records.
    pub records: Vec<RecordRow>,
}

/// One record on the records page.
#[derive(Debug, Serialize)]
pub struct RecordRow {
    /// Chain position.
    pub seq: i64,
    /// `pipeline:version-build`.
    pub build: String,
    /// How the run ended.
    pub status: &'static str,
    /// When it finished.
    pub finished_at: DateTime<Utc>,
    /// The record's chain hash.
    pub hash: String,
    /// Whether the chain walk vouches for it (it precedes any broken link).
    pub chain_ok: bool,
    /// `REGISTRY/REPOSITORY@sha256:…` per target.
    pub references: Vec<String>,
}

/// The newest [`RECORDS_SHOWN`] records and the whole chain's verification.
pub async fn records(state: &DaemonState) -> Result<RecordsView, DaemonError> {
    let records = state.records();
    let report = records.verify().await?;
    let list = records.list(None, Some(RECORDS_SHOWN)).await?;
    let bad_seq = report.first_bad.as_ref().map(|b| b.seq);
    Ok(RecordsView {
        checked: report.checked,
        head: report.head.map(|h| h.to_string()),
        first_bad: report
            .first_bad
            .map(|b| (b.seq, b.build, b.problem.to_string())),
        records: list.iter().map(|c| record_row(c, bad_seq)).collect(),
    })
}

fn record_row(c: &ChainedRecord, bad_seq: Option<i64>) -> RecordRow {
    let r = &c.record;
    RecordRow {
        seq: c.seq,
        build: r.build_id().to_string(),
        status: r.status.as_str(),
        finished_at: r.finished_at,
        hash: c.hash.to_string(),
        chain_ok: bad_seq.is_none_or(|bad| c.seq < bad),
        references: r.targets.iter().map(|t| t.pinned_reference()).collect(),
    }
}

//! The real [`PipelineRunner`]: the daemon's runs call [`Pipeline::run`], the
//! same function as `kiln run`, and its scheduled checks call
//! [`Pipeline::freshness`].

use std::sync::Arc;

use async_trait::async_trait;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::runner::{BuildNeed, LogSink, PipelineRunner, RunOutcome, RunRequest, RunnerError};
use crate::build::BuildEvent;
use crate::distribute::PushEvent;
use crate::pipeline::{
    FailureKind, Freshness, Pipeline, PipelineError, PipelineEvent, RunOptions, chain,
};
use crate::record::Status;
use crate::registry::{LookupScope, RegistryStats, ThrottleWait};

/// Drives the pipeline for the daemon.
#[derive(Clone)]
pub struct PipelineRunnerImpl {
    pipeline: Pipeline,
}

impl PipelineRunnerImpl {
    /// A runner over `pipeline`.
    pub fn new(pipeline: Pipeline) -> Self {
        PipelineRunnerImpl { pipeline }
    }
}

/// Lookups shared with runs queued no later than `queued`; waits for a
/// rate-limited registry are logged.
fn scope(queued: Instant, log: &LogSink) -> LookupScope {
    let log = log.clone();
    LookupScope {
        since: queued,
        on_wait: Some(Arc::new(move |w: &ThrottleWait| {
            log.line(format!(
                "waited {:.1} s for registry `{}`, which {}",
                w.waited.as_secs_f64(),
                w.registry,
                w.reason
            ))
        })),
    }
}

/// One readable log line per pipeline event (none for the noisy ones).
fn log_event(log: &LogSink, e: PipelineEvent) {
    match e {
        PipelineEvent::StageStarted(s) => log.stage_started(s.as_str()),
        PipelineEvent::Notice(line) => log.line(line),
        PipelineEvent::StageFinished {
            stage,
            elapsed,
            note,
        } => log.stage_finished(
            stage.as_str(),
            true,
            format!("{note} ({:.2}s)", elapsed.as_secs_f64()),
        ),
        PipelineEvent::Build(b) => match b {
            BuildEvent::Step {
                number,
                total,
                instruction,
                ..
            } => log.line(format!("[{number}/{total}] {instruction}")),
            BuildEvent::Output { line } => log.line(format!("  | {line}")),
            BuildEvent::Skipped { build_key, .. } => log.line(format!(
                "image with build key {build_key} exists; not rebuilt"
            )),
            BuildEvent::Error { message } => log.line(format!("error: {message}")),
            _ => {}
        },
        PipelineEvent::Check {
            name,
            passed,
            detail,
        } => log.line(format!(
            "{} {name}{}",
            if passed { "ok  " } else { "FAIL" },
            if passed || detail.is_empty() {
                String::new()
            } else {
                format!(": {detail}")
            }
        )),
        PipelineEvent::Push(p) => match p {
            PushEvent::BlobUploaded {
                repository,
                digest,
                bytes,
            } => log.line(format!(
                "uploaded {} to {repository} ({bytes} bytes)",
                digest.short()
            )),
            PushEvent::TagPushed {
                repository,
                tag,
                digest,
            } => log.line(format!("tagged {repository}:{tag} -> {digest}")),
            _ => {}
        },
    }
}

#[async_trait]
impl PipelineRunner for PipelineRunnerImpl {
    async fn run(&self, run: RunRequest, log: LogSink, cancel: CancellationToken) -> RunOutcome {
        let sink_log = log.clone();
        let opts = RunOptions {
            // The daemon always checks its parents (HEAD first, as of the
            // run's queue time, see `lookups`): a service picks up moved parents.
            update_parents: true,
            no_cache: false,
            cancel,
            events: Arc::new(move |e| log_event(&sink_log, e)),
            lookups: Some(scope(run.queued, &log)),
            branch: run.branch.clone(),
            fence: run.fence.clone(),
            daemon_run: Some(run.run_id.clone()),
        };
        match self.pipeline.run(&run.pipeline, &opts).await {
            Ok(s) => {
                let summary = match &s.record {
                    Some(r) => format!("{} {}", r.record.build_id(), s.approved.join(" ")),
                    None => format!("up to date: {}", s.approved.join(" ")),
                };
                RunOutcome {
                    status: s.status,
                    summary,
                    record_id: s.record.map(|r| r.record.id.to_string()),
                    failure: None,
                }
            }
            Err(PipelineError::Cancelled { stage }) => {
                log.stage_finished(stage.as_str(), false, "cancelled");
                RunOutcome {
                    status: Status::Cancelled,
                    summary: format!("cancelled during {stage}"),
                    record_id: None,
                    failure: Some(FailureKind::Failed),
                }
            }
            Err(PipelineError::Stage {
                stage,
                source,
                record,
            }) => {
                let message = chain(&source);
                log.stage_finished(stage.as_str(), false, message.clone());
                RunOutcome {
                    status: Status::Failed,
                    summary: format!("{stage}: {message}"),
                    record_id: record.map(|r| r.record.id.to_string()),
                    failure: Some(FailureKind::of_stage(&source)),
                }
            }
            Err(e @ PipelineError::Unrecorded { stage, .. }) => {
                let message = chain(&e);
                log.stage_finished(stage.as_str(), false, message.clone());
                RunOutcome {
                    status: Status::Failed,
                    summary: message,
                    record_id: None,
                    failure: Some(FailureKind::of(&e)),
                }
            }
            Err(e) => {
                log.line(e.to_string());
                RunOutcome {
                    status: Status::Failed,
                    summary: e.to_string(),
                    record_id: None,
                    failure: Some(FailureKind::of(&e)),
                }
            }
        }
    }

    async fn needs_build(
        &self,
        pipeline: &str,
        queued: Instant,
        log: &LogSink,
    ) -> Result<BuildNeed, RunnerError> {
        let scope = scope(queued, log);
        match self.pipeline.freshness_in(pipeline, &scope).await? {
            Freshness::UpToDate { .. } => Ok(BuildNeed::UpToDate),
            Freshness::Stale { reason, .. } => Ok(BuildNeed::Needed(reason)),
        }
    }

    fn registry_stats(&self) -> Vec<RegistryStats> {
        self.pipeline.registry.stats()
    }

    async fn promote_approved(
        &self,
        record: &crate::record::ChainedRecord,
        by: &str,
    ) -> Result<Vec<crate::pipeline::PromotionOutcome>, RunnerError> {
        Ok(self.pipeline.approvals().promote_all(record, by).await?)
    }

    async fn cleanup_run(&self, run_id: &str) {
        // The queue's recovery proved the run dead: its containers go,
        // whatever host name or pid their owner label names (a node
        // restarted in a container as PID 1, or under another host name).
        // Then the leftovers of dead processes on this host, as before
        // (runs of kilns that did not label the daemon run).
        let docker = &self.pipeline.docker;
        let removed = match crate::test_phase::cleanup_run(docker, run_id).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(run_id, error = %e, "cleanup after an interrupted run failed");
                0
            }
        };
        let removed = match crate::test_phase::cleanup_leftovers(docker).await {
            Ok(n) => removed + n,
            Err(e) => {
                tracing::warn!(run_id, error = %e, "cleanup of leftover containers failed");
                removed
            }
        };
        if removed > 0 {
            tracing::info!(run_id, removed, "removed containers of an interrupted run");
        }
    }
}

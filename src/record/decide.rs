//! The approval gate's rules, once for every backend: which builds may be
//! decided on ([`Records::decide`]: not a branch build, awaiting approval,
//! a rejection says why) and the one-decision rule, which the backend checks
//! inside the append's transaction ([`super::RecordStore::append_decision`])
//! and its schema enforces with a unique index.

use chrono::SecondsFormat;

use super::backend::DecisionAppend;
use super::error::RecordError;
use super::event::{ChainedEvent, Decision, Event, EventKind};
use super::model::{ChainedRecord, Status};
use super::records::Records;
use super::store::Selector;

/// Why an approval decision was refused (nothing was appended).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecisionRefused {
    /// The build's record is not `awaiting_approval`.
    #[error("build `{build}` is not awaiting approval (its record says `{status}`)")]
    NotAwaiting {
        /// `pipeline:version-build`.
        build: String,
        /// The record's status.
        status: Status,
    },
    /// A decision is already recorded.
    #[error("build `{build}` was already {decision} by `{by}` at {at}")]
    AlreadyDecided {
        /// `pipeline:version-build`.
        build: String,
        /// The recorded decision.
        decision: Decision,
        /// Who decided.
        by: String,
        /// When.
        at: String,
    },
    /// A branch build is never approved (nor rejected): it is never served.
    #[error(
        "build `{build}` was built on branch `{branch}`; branch builds are never approved or promoted"
    )]
    Branch {
        /// `pipeline:version-build`.
        build: String,
        /// Its branch.
        branch: String,
    },
    /// A rejection needs a note.
    #[error("rejecting build `{build}` needs a note saying why")]
    NoteRequired {
        /// `pipeline:version-build`.
        build: String,
    },
}

impl Records {
    /// Appends an approval decision on `build`, by `by`: only for a build
    /// whose record is `awaiting_approval` and which has no decision yet
    /// (checked in the same transaction as the append).
    pub async fn decide(
        &self,
        build: &Selector,
        decision: Decision,
        by: &str,
        note: Option<String>,
    ) -> Result<(ChainedRecord, ChainedEvent), RecordError> {
        let record = self.get(build).await?;
        let label = record.record.build_id().to_string();
        if let Some(why) = refusal(&record, &label, decision, note.as_deref()) {
            return Err(RecordError::Decision(Box::new(why)));
        }
        let event = Event::new(
            record.record.id.clone(),
            label.clone(),
            by.to_string(),
            EventKind::Approval { decision, note },
        );
        match self.append_decision(&event).await? {
            DecisionAppend::Appended(appended) => Ok((record, appended)),
            DecisionAppend::AlreadyDecided(prior) => {
                let EventKind::Approval { decision, .. } = prior.event.kind else {
                    unreachable!("append_decision returns approvals")
                };
                Err(RecordError::Decision(Box::new(
                    DecisionRefused::AlreadyDecided {
                        build: label,
                        decision,
                        by: prior.event.by,
                        at: prior.event.at.to_rfc3339_opts(SecondsFormat::Secs, true),
                    },
                )))
            }
        }
    }

    /// The approval decision on `record_id`, if one is recorded.
    pub async fn decision_of(&self, record_id: &str) -> Result<Option<ChainedEvent>, RecordError> {
        Ok(self
            .events_of(record_id)
            .await?
            .into_iter()
            .find(|e| matches!(e.event.kind, EventKind::Approval { .. })))
    }
}

/// Why `record` may not be decided on (before looking for a prior decision).
fn refusal(
    record: &ChainedRecord,
    label: &str,
    decision: Decision,
    note: Option<&str>,
) -> Option<DecisionRefused> {
    let build = label.to_string();
    if let Some(branch) = &record.record.branch {
        let branch = branch.clone();
        return Some(DecisionRefused::Branch { build, branch });
    }
    if record.record.status != Status::AwaitingApproval {
        let status = record.record.status;
        return Some(DecisionRefused::NotAwaiting { build, status });
    }
    if decision == Decision::Reject && note.is_none_or(|n| n.trim().is_empty()) {
        return Some(DecisionRefused::NoteRequired { build });
    }
    None
}

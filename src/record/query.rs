//! Questions the rest of kiln asks the record store, written once over
//! [`RecordStore`]'s primitives for every backend: which images are
//! approved for a pipeline, whether a build key already passed, which
//! builds wait for a decision, and a branch's records.
//!
//! Approved = a record whose (re-checked, and with a key configured, signed)
//! row says the tests passed and every push was verified, with status
//! `passed`, or `awaiting_approval` with a recorded `approve` decision.

use serde::Serialize;

use super::backend::Filter;
use super::error::RecordError;
use super::event::{ChainedEvent, Decision, EventKind};
use super::model::{ChainedRecord, Status};
use super::records::Records;
use crate::digest::Digest;

/// The approved build of a pipeline and what to pull.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Approved {
    /// `REGISTRY/REPOSITORY@sha256:…` per target, in target order, then per
    /// promotion.
    pub references: Vec<String>,
    /// The record they come from.
    pub record: ChainedRecord,
    /// The approval event, when the recipe required one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<ChainedEvent>,
    /// Promotions of the build, oldest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub promotions: Vec<ChainedEvent>,
}

impl Records {
    /// Records newest first, optionally of one pipeline, at most `limit`.
    pub async fn list(
        &self,
        pipeline: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<ChainedRecord>, RecordError> {
        self.records(&Filter::newest(pipeline, limit)).await
    }

    /// The newest approved build of `pipeline` (module doc), with the digest
    /// references to pull. Newer failed, unverified, undecided or rejected
    /// records do not hide an older approved one.
    pub async fn approved(&self, pipeline: &str) -> Result<Option<Approved>, RecordError> {
        for candidate in self.candidates_newest_first(pipeline, None).await? {
            if let Some(a) = self.serve(candidate).await? {
                return Ok(Some(a));
            }
        }
        Ok(None)
    }

    /// Whether the build `record` is approved now; `Approved` when it is.
    pub async fn approval_state(
        &self,
        record: ChainedRecord,
    ) -> Result<Option<Approved>, RecordError> {
        self.serve(record).await
    }

    /// The newest approved record of `pipeline` built with `build_key`: when
    /// one exists, the pipeline can skip the build and record `up_to_date`.
    pub async fn latest_passing_with_key(
        &self,
        pipeline: &str,
        build_key: &Digest,
    ) -> Result<Option<ChainedRecord>, RecordError> {
        for candidate in self
            .candidates_newest_first(pipeline, Some(build_key))
            .await?
        {
            if let Some(a) = self.serve(candidate).await? {
                return Ok(Some(a.record));
            }
        }
        Ok(None)
    }

    /// The newest passed, verified record of `pipeline` with `build_key`
    /// built on `branch` (never approvable; a branch's up-to-date check).
    pub async fn latest_passing_on_branch(
        &self,
        pipeline: &str,
        build_key: &Digest,
        branch: &str,
    ) -> Result<Option<ChainedRecord>, RecordError> {
        let candidates = self
            .candidates_newest_first(pipeline, Some(build_key))
            .await?;
        Ok(candidates
            .into_iter()
            .find(|c| c.record.branch.as_deref() == Some(branch) && c.record.passed_and_verified()))
    }

    /// Every record built on a branch (all branches when `None`), oldest first.
    pub async fn branch_records(
        &self,
        branch: Option<&str>,
    ) -> Result<Vec<ChainedRecord>, RecordError> {
        let all = self.records(&Filter::default()).await?;
        Ok(all
            .into_iter()
            .filter(|c| match (&c.record.branch, branch) {
                (Some(b), Some(want)) => b == want,
                (Some(_), None) => true,
                (None, _) => false,
            })
            .collect())
    }

    /// The newest record of `pipeline` built with `build_key` that is
    /// approved (`Some(Approved)`) or still awaits a decision (`None`): a run
    /// with that key has nothing to do. Rejected builds do not count.
    #[allow(clippy::type_complexity)]
    pub async fn latest_with_key(
        &self,
        pipeline: &str,
        build_key: &Digest,
    ) -> Result<Option<(ChainedRecord, Option<Approved>)>, RecordError> {
        for candidate in self
            .candidates_newest_first(pipeline, Some(build_key))
            .await?
        {
            if let Some(a) = self.serve(candidate.clone()).await? {
                return Ok(Some((candidate, Some(a))));
            }
            if self.is_waiting(&candidate).await? {
                return Ok(Some((candidate, None)));
            }
        }
        Ok(None)
    }

    /// Every build waiting at the approval gate (tested, verified, on no
    /// branch, no decision yet), oldest first.
    pub async fn awaiting_approval(&self) -> Result<Vec<ChainedRecord>, RecordError> {
        let rows = self
            .records(&Filter {
                statuses: vec![Status::AwaitingApproval],
                ..Filter::default()
            })
            .await?;
        let mut out = Vec::new();
        for c in rows {
            if self.is_waiting(&c).await? {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// Whether `c` awaits a decision that could approve it.
    async fn is_waiting(&self, c: &ChainedRecord) -> Result<bool, RecordError> {
        Ok(c.record.branch.is_none()
            && c.record.status == Status::AwaitingApproval
            && c.record.tested_and_verified()
            && self.decision_of(&c.record.id.0).await?.is_none())
    }

    async fn serve(&self, c: ChainedRecord) -> Result<Option<Approved>, RecordError> {
        // A branch build is never handed to downstream teams.
        if c.record.branch.is_some() || !c.record.tested_and_verified() {
            return Ok(None);
        }
        let events = self.events_of(&c.record.id.0).await?;
        let approval = events
            .iter()
            .find(|e| matches!(e.event.kind, EventKind::Approval { .. }))
            .cloned();
        let approved = match c.record.status {
            Status::Passed => true,
            Status::AwaitingApproval => matches!(
                approval.as_ref().map(|e| &e.event.kind),
                Some(EventKind::Approval {
                    decision: Decision::Approve,
                    ..
                })
            ),
            _ => false,
        };
        if !approved {
            return Ok(None);
        }
        let promotions: Vec<ChainedEvent> = events
            .into_iter()
            .filter(|e| matches!(e.event.kind, EventKind::Promotion(_)))
            .collect();
        let mut references: Vec<String> = c
            .record
            .targets
            .iter()
            .map(|t| t.pinned_reference())
            .collect();
        for p in &promotions {
            if let EventKind::Promotion(p) = &p.event.kind
                && !references.contains(&p.pinned_reference())
            {
                references.push(p.pinned_reference());
            }
        }
        Ok(Some(Approved {
            references,
            record: c,
            approval,
            promotions,
        }))
    }

    /// Passed and awaiting-approval records of a pipeline, newest first,
    /// optionally with one key. The columns only narrow the search: every
    /// row is re-checked against its hashed JSON (and signature) before it is
    /// returned.
    async fn candidates_newest_first(
        &self,
        pipeline: &str,
        build_key: Option<&Digest>,
    ) -> Result<Vec<ChainedRecord>, RecordError> {
        self.records(&Filter {
            pipeline: Some(pipeline.to_string()),
            statuses: vec![Status::Passed, Status::AwaitingApproval],
            build_key: build_key.cloned(),
            newest_first: true,
            limit: None,
        })
        .await
    }
}

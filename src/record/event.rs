//! Events about a recorded build — an approval decision, a promotion — as
//! plain serde data. Events are chain entries like records: hashed into the
//! same chain, signed with the same key, append-only. No IO.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::model::RecordId;
use crate::digest::Digest;
use crate::load::Target;

/// One event about the build recorded as `record`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Unique id (32 hex characters).
    pub id: String,
    /// The record the event is about.
    pub record: RecordId,
    /// `pipeline:version-build` of that record.
    pub build: String,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Who: the API token's name, or `local:USER` for the CLI.
    pub by: String,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What an [`Event`] says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    /// An approver's decision on a build awaiting approval (one per build).
    Approval {
        /// Approve or reject.
        decision: Decision,
        /// Why (required for a rejection).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// The build's manifest copied, digest for digest, to another registry.
    Promotion(Promotion),
}

impl EventKind {
    /// The `kind` column.
    pub fn as_str(&self) -> &'static str {
        match self {
            EventKind::Approval { .. } => "approval",
            EventKind::Promotion(_) => "promotion",
        }
    }
}

/// An approval decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// The build may be served and promoted.
    Approve,
    /// The build is never served or promoted.
    Reject,
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Decision::Approve => "approved",
            Decision::Reject => "rejected",
        })
    }
}

/// A finished, verified promotion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Promotion {
    /// `REGISTRY/REPOSITORY@sha256:…` copied from.
    pub source: String,
    /// The destination as the recipe names it.
    pub target: Target,
    /// Destination registry host.
    pub registry: String,
    /// Destination repository.
    pub repository: String,
    /// Tags at the destination.
    pub tags: Vec<String>,
    /// The manifest digest, the same at both ends (verified).
    pub manifest_digest: Digest,
    /// Signature and attestation tags copied along (`sha256-<hex>.sig`, `.att`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attached: Vec<String>,
    /// Blob bytes uploaded to the destination (mounted or present blobs
    /// upload nothing).
    pub bytes_uploaded: u64,
}

impl Promotion {
    /// `REGISTRY/REPOSITORY@sha256:…` at the destination.
    pub fn pinned_reference(&self) -> String {
        format!(
            "{}/{}@{}",
            self.registry, self.repository, self.manifest_digest
        )
    }
}

impl Event {
    /// A new event about `record` (`build`), now.
    pub fn new(record: RecordId, build: String, by: String, kind: EventKind) -> Self {
        Event {
            id: RecordId::random().0,
            record,
            build,
            at: Utc::now(),
            by,
            kind,
        }
    }
}

/// An event as stored: its place in the chain.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChainedEvent {
    /// Position among events.
    pub seq: i64,
    /// Hash of the chain entry before it.
    pub prev_hash: Digest,
    /// sha256 of (previous hash text + canonical JSON).
    pub hash: Digest,
    /// The event.
    pub event: Event,
}

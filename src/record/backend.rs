//! [`RecordStore`]: the primitive operations every record backend offers —
//! SQLite (`sqlite.rs`, one host) and PostgreSQL (`pg/`, a cluster). What
//! kiln asks of the records (approved builds, up-to-date checks, decisions)
//! is written once over these, in `query.rs` and `decide.rs`.
//!
//! **Architecture Invariant:** every read re-checks the entries it returns
//! (hash, columns, signature with a key), whatever the backend; writes are
//! atomic with their checks (allocation, link, one decision per record).

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use super::cleanup::CleanupRecord;
use super::error::RecordError;
use super::event::{ChainedEvent, Event};
use super::fence::Fence;
use super::model::{ChainedRecord, Record, Status};
use super::signature::ChainKeys;
use super::store::{Allocation, Selector};
use super::verify::VerifyReport;
use crate::digest::Digest;

/// Which records to read. The columns only narrow the search; every row is
/// re-checked against its hashed JSON before it is returned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this pipeline's records.
    pub pipeline: Option<String>,
    /// Only records with one of these statuses (empty: any).
    pub statuses: Vec<Status>,
    /// Only records with this build key.
    pub build_key: Option<Digest>,
    /// Newest first (`true`) or in chain order.
    pub newest_first: bool,
    /// At most this many.
    pub limit: Option<usize>,
}

impl Filter {
    /// Newest first, optionally of one pipeline, at most `limit` (`kiln
    /// records`, `GET /v1/records`).
    pub fn newest(pipeline: Option<&str>, limit: Option<usize>) -> Filter {
        Filter {
            pipeline: pipeline.map(str::to_string),
            newest_first: true,
            limit,
            ..Filter::default()
        }
    }

    /// The statuses as their column text.
    pub fn status_texts(&self) -> Vec<&'static str> {
        self.statuses.iter().map(|s| s.as_str()).collect()
    }
}

/// What [`RecordStore::append_decision`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum DecisionAppend {
    /// The decision was appended.
    Appended(ChainedEvent),
    /// The record already had this decision (re-checked); nothing appended.
    AlreadyDecided(ChainedEvent),
}

/// One record backend. Cheap to share (`Arc<dyn RecordStore>`, see
/// [`super::Records`]); every call is independent.
#[async_trait]
pub trait RecordStore: Send + Sync + std::fmt::Debug {
    /// The database file, or the PostgreSQL target without its password,
    /// for messages (the `path` of [`RecordError`]s).
    fn location(&self) -> PathBuf;

    /// The keys entries are signed and checked with.
    fn keys(&self) -> &ChainKeys;

    /// The same database, signing and checking with `keys`.
    fn with_keys(&self, keys: ChainKeys) -> Arc<dyn RecordStore>;

    /// The same database, every write of which first checks that `fence`
    /// still holds (see [`super::Records::fenced`]).
    fn fenced(&self, fence: Fence) -> Arc<dyn RecordStore>;

    /// Whether the database exists yet (a SQLite file is created by the
    /// first write, never by a read).
    async fn exists(&self) -> Result<bool, RecordError>;

    /// The next build number of (pipeline, version) and a fresh run id;
    /// never handed out twice.
    async fn allocate(
        &self,
        pipeline: &str,
        version: &semver::Version,
    ) -> Result<Allocation, RecordError>;

    /// Appends an allocated, not yet recorded record after the chain head.
    async fn append(&self, record: &Record) -> Result<ChainedRecord, RecordError>;

    /// Appends an event (approval or promotion) after the chain head.
    async fn append_event(&self, event: &Event) -> Result<ChainedEvent, RecordError>;

    /// Appends an approval event only when its record has no decision yet,
    /// checked in the append's transaction.
    async fn append_decision(&self, event: &Event) -> Result<DecisionAppend, RecordError>;

    /// Fails when an append with these keys would put an unsigned entry
    /// into a signed chain ([`RecordError::SigningKeyRequired`]).
    async fn check_appendable(&self) -> Result<(), RecordError>;

    /// One record by id or build ([`RecordError::NotFound`] otherwise).
    async fn get(&self, selector: &Selector) -> Result<ChainedRecord, RecordError>;

    /// The records `filter` selects.
    async fn records(&self, filter: &Filter) -> Result<Vec<ChainedRecord>, RecordError>;

    /// The events about `record_id`, oldest first.
    async fn events_of(&self, record_id: &str) -> Result<Vec<ChainedEvent>, RecordError>;

    /// Walks the whole chain and reports the first bad entry.
    async fn verify(&self) -> Result<VerifyReport, RecordError>;

    /// Appends a branch cleanup record.
    async fn append_cleanup(&self, cleanup: &CleanupRecord) -> Result<(), RecordError>;

    /// The cleanups of `branch` (all when `None`), oldest first.
    async fn cleanups(&self, branch: Option<&str>) -> Result<Vec<CleanupRecord>, RecordError>;
}

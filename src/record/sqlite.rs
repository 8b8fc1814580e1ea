//! [`RecordStore`] on one SQLite file: each call opens its own [`Store`]
//! (one connection: WAL mode, 30 s busy timeout, so other threads and
//! processes are arbitrated by SQLite as before) inside `spawn_blocking`.
//!
//! Reads never create the file: on a missing file they answer as an empty
//! store does (`kiln records`, `kiln approved` and the daemon's scheduled
//! freshness check stay read-only and take milliseconds). The first write
//! creates it.
//!
//! Fencing: kiln never fences a SQLite write (a SQLite store serves one
//! host, whose daemon lock already keeps one daemon per file), so
//! [`RecordStore::fenced`] returns the store unchanged.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use super::backend::{DecisionAppend, Filter, RecordStore};
use super::cleanup::CleanupRecord;
use super::error::RecordError;
use super::event::{ChainedEvent, Event};
use super::fence::Fence;
use super::model::{ChainedRecord, Record};
use super::signature::ChainKeys;
use super::store::{Allocation, Selector, Store};
use super::verify::{self, VerifyReport};

/// The record store in the SQLite file at `path`.
#[derive(Debug, Clone)]
pub struct SqliteRecords {
    path: PathBuf,
    keys: ChainKeys,
}

impl SqliteRecords {
    /// The store at `path` (nothing is opened until a call).
    pub fn new(path: impl Into<PathBuf>, keys: ChainKeys) -> Self {
        SqliteRecords {
            path: path.into(),
            keys,
        }
    }

    /// Runs `f` on a freshly opened store (creating the file) in a
    /// blocking task.
    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, RecordError> + Send + 'static,
    ) -> Result<T, RecordError> {
        let (path, keys) = (self.path.clone(), self.keys.clone());
        tokio::task::spawn_blocking(move || f(&mut Store::open(&path)?.with_keys(keys)))
            .await
            .map_err(|source| RecordError::Task {
                path: self.path.clone(),
                source,
            })?
    }

    /// [`SqliteRecords::call`] for a read: `empty` when the file does not
    /// exist, so no read creates it.
    async fn read<T: Send + 'static>(
        &self,
        empty: impl FnOnce() -> Result<T, RecordError>,
        f: impl FnOnce(&mut Store) -> Result<T, RecordError> + Send + 'static,
    ) -> Result<T, RecordError> {
        if !self.path.exists() {
            return empty();
        }
        self.call(f).await
    }
}

#[async_trait]
impl RecordStore for SqliteRecords {
    fn location(&self) -> PathBuf {
        self.path.clone()
    }

    fn keys(&self) -> &ChainKeys {
        &self.keys
    }

    fn with_keys(&self, keys: ChainKeys) -> Arc<dyn RecordStore> {
        Arc::new(SqliteRecords::new(self.path.clone(), keys))
    }

    fn fenced(&self, _fence: Fence) -> Arc<dyn RecordStore> {
        Arc::new(self.clone())
    }

    async fn exists(&self) -> Result<bool, RecordError> {
        Ok(self.path.exists())
    }

    async fn allocate(
        &self,
        pipeline: &str,
        version: &semver::Version,
    ) -> Result<Allocation, RecordError> {
        let (pipeline, version) = (pipeline.to_string(), version.clone());
        self.call(move |s| s.allocate(&pipeline, &version)).await
    }

    async fn append(&self, record: &Record) -> Result<ChainedRecord, RecordError> {
        let record = record.clone();
        self.call(move |s| s.append(&record)).await
    }

    async fn append_event(&self, event: &Event) -> Result<ChainedEvent, RecordError> {
        let event = event.clone();
        self.call(move |s| s.append_event(&event)).await
    }

    async fn append_decision(&self, event: &Event) -> Result<DecisionAppend, RecordError> {
        let event = event.clone();
        self.call(move |s| s.append_decision(&event)).await
    }

    async fn check_appendable(&self) -> Result<(), RecordError> {
        self.read(|| Ok(()), |s| s.check_appendable()).await
    }

    async fn get(&self, selector: &Selector) -> Result<ChainedRecord, RecordError> {
        let sel = selector.clone();
        let missing = || {
            Err(RecordError::NotFound {
                selector: selector.to_string(),
            })
        };
        self.read(missing, move |s| s.get(&sel)).await
    }

    async fn records(&self, filter: &Filter) -> Result<Vec<ChainedRecord>, RecordError> {
        let filter = filter.clone();
        self.read(|| Ok(Vec::new()), move |s| s.records(&filter))
            .await
    }

    async fn events_of(&self, record_id: &str) -> Result<Vec<ChainedEvent>, RecordError> {
        let id = record_id.to_string();
        self.read(|| Ok(Vec::new()), move |s| s.events_of(&id))
            .await
    }

    async fn verify(&self) -> Result<VerifyReport, RecordError> {
        let keys = self.keys.clone();
        let empty = move || Ok(verify::walk(Vec::new(), &keys, |_| None));
        self.read(empty, |s| s.verify()).await
    }

    async fn append_cleanup(&self, cleanup: &CleanupRecord) -> Result<(), RecordError> {
        let cleanup = cleanup.clone();
        self.call(move |s| s.append_cleanup(&cleanup)).await
    }

    async fn cleanups(&self, branch: Option<&str>) -> Result<Vec<CleanupRecord>, RecordError> {
        let branch = branch.map(str::to_string);
        self.read(|| Ok(Vec::new()), move |s| s.cleanups(branch.as_deref()))
            .await
    }
}

//! [`RecordStore`] for [`PgStore`]: each operation is the store's own.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use super::PgStore;
use crate::record::backend::{DecisionAppend, Filter, RecordStore};
use crate::record::cleanup::CleanupRecord;
use crate::record::error::RecordError;
use crate::record::event::{ChainedEvent, Event};
use crate::record::fence::Fence;
use crate::record::model::{ChainedRecord, Record};
use crate::record::signature::ChainKeys;
use crate::record::store::{Allocation, Selector};
use crate::record::verify::VerifyReport;

#[async_trait]
impl RecordStore for PgStore {
    fn location(&self) -> PathBuf {
        PgStore::location(self)
    }

    fn keys(&self) -> &ChainKeys {
        PgStore::keys(self)
    }

    fn with_keys(&self, keys: ChainKeys) -> Arc<dyn RecordStore> {
        Arc::new(self.clone().with_keys(keys))
    }

    fn fenced(&self, fence: Fence) -> Arc<dyn RecordStore> {
        Arc::new(PgStore::fenced(self, fence))
    }

    async fn exists(&self) -> Result<bool, RecordError> {
        Ok(true)
    }

    async fn allocate(
        &self,
        pipeline: &str,
        version: &semver::Version,
    ) -> Result<Allocation, RecordError> {
        PgStore::allocate(self, pipeline, version).await
    }

    async fn append(&self, record: &Record) -> Result<ChainedRecord, RecordError> {
        PgStore::append(self, record).await
    }

    async fn append_event(&self, event: &Event) -> Result<ChainedEvent, RecordError> {
        PgStore::append_event(self, event).await
    }

    async fn append_decision(&self, event: &Event) -> Result<DecisionAppend, RecordError> {
        PgStore::append_decision(self, event).await
    }

    async fn check_appendable(&self) -> Result<(), RecordError> {
        PgStore::check_appendable(self).await
    }

    async fn get(&self, selector: &Selector) -> Result<ChainedRecord, RecordError> {
        PgStore::get(self, selector).await
    }

    async fn records(&self, filter: &Filter) -> Result<Vec<ChainedRecord>, RecordError> {
        PgStore::records(self, filter).await
    }

    async fn events_of(&self, record_id: &str) -> Result<Vec<ChainedEvent>, RecordError> {
        PgStore::events_of(self, record_id).await
    }

    async fn verify(&self) -> Result<VerifyReport, RecordError> {
        PgStore::verify(self).await
    }

    async fn append_cleanup(&self, cleanup: &CleanupRecord) -> Result<(), RecordError> {
        PgStore::append_cleanup(self, cleanup).await
    }

    async fn cleanups(&self, branch: Option<&str>) -> Result<Vec<CleanupRecord>, RecordError> {
        PgStore::cleanups(self, branch).await
    }
}

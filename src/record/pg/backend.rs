//! [`RecordStore`] for [`PgStore`]: each operation is the store's own, run
//! on the store's runtime ([`crate::postgres::Engine`]).

use std::future::Future;
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
        let (p, v) = (pipeline.to_string(), version.clone());
        self.on_engine(|s| async move { s.allocate(&p, &v).await })
            .await
    }

    async fn append(&self, record: &Record) -> Result<ChainedRecord, RecordError> {
        let r = record.clone();
        self.on_engine(|s| async move { s.append(&r).await }).await
    }

    async fn append_event(&self, event: &Event) -> Result<ChainedEvent, RecordError> {
        let e = event.clone();
        self.on_engine(|s| async move { s.append_event(&e).await })
            .await
    }

    async fn append_decision(&self, event: &Event) -> Result<DecisionAppend, RecordError> {
        let e = event.clone();
        self.on_engine(|s| async move { s.append_decision(&e).await })
            .await
    }

    async fn check_appendable(&self) -> Result<(), RecordError> {
        self.on_engine(|s| async move { s.check_appendable().await })
            .await
    }

    async fn get(&self, selector: &Selector) -> Result<ChainedRecord, RecordError> {
        let sel = selector.clone();
        self.on_engine(|s| async move { s.get(&sel).await }).await
    }

    async fn records(&self, filter: &Filter) -> Result<Vec<ChainedRecord>, RecordError> {
        let f = filter.clone();
        self.on_engine(|s| async move { s.records(&f).await }).await
    }

    async fn events_of(&self, record_id: &str) -> Result<Vec<ChainedEvent>, RecordError> {
        let id = record_id.to_string();
        self.on_engine(|s| async move { s.events_of(&id).await })
            .await
    }

    async fn verify(&self) -> Result<VerifyReport, RecordError> {
        self.on_engine(|s| async move { s.verify().await }).await
    }

    async fn append_cleanup(&self, cleanup: &CleanupRecord) -> Result<(), RecordError> {
        let c = cleanup.clone();
        self.on_engine(|s| async move { s.append_cleanup(&c).await })
            .await
    }

    async fn cleanups(&self, branch: Option<&str>) -> Result<Vec<CleanupRecord>, RecordError> {
        let b = branch.map(str::to_string);
        self.on_engine(|s| async move { s.cleanups(b.as_deref()).await })
            .await
    }
}

impl PgStore {
    /// Runs `op` on a clone of this store on the store's runtime.
    pub(super) async fn on_engine<T, F, Fut>(&self, op: F) -> Result<T, RecordError>
    where
        T: Send + 'static,
        F: FnOnce(PgStore) -> Fut,
        Fut: Future<Output = Result<T, RecordError>> + Send + 'static,
    {
        let work = op(self.clone());
        self.engine
            .run(work)
            .await
            .map_err(|source| RecordError::Task {
                path: self.location(),
                source,
            })?
    }
}

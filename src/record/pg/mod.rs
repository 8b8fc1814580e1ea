//! The record store on PostgreSQL (issue 15): the same hash chain as the
//! SQLite store (`store.rs`), shared by several kiln nodes. Pure functions
//! are shared with it (canonical JSON and link hash in `chain.rs`, row checks
//! and the chain walk in `verify.rs`, signing in `signature.rs`); only the
//! SQL differs.
//!
//! **Architecture Invariant:** the database enforces the chain for every
//! writer: insert triggers lock the one-row `chain_head` and refuse an entry
//! that does not link to it, statement triggers refuse UPDATE, DELETE and
//! TRUNCATE on the chain tables, and the head moves only inside an append.
//! Canonical JSON is stored as `text` (never `jsonb`, which reorders keys).
//!
//! Used through [`crate::record::Records`] when `--state` names a
//! PostgreSQL database (`backend.rs` implements the trait).

mod append;
mod backend;
mod cleanup;
mod read;
pub mod schema;

use std::path::PathBuf;
use std::sync::Arc;

use deadpool_postgres::{Object, Pool};

use super::error::RecordError;
use super::fence::Fence;
use super::signature::ChainKeys;
use super::verify::Problem;
use crate::postgres::Engine;

/// A record store on a PostgreSQL database (a pool of connections, driven
/// on a runtime of its own: the trait's operations run there).
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    engine: Arc<Engine>,
    /// `postgres://USER@HOST:PORT/DB`, for messages.
    target: String,
    /// Signs appended entries and checks read ones (none: unsigned).
    keys: ChainKeys,
    /// The cluster claim every write checks first (none: unfenced).
    fence: Option<Fence>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://USER[:PASSWORD]@HOST:PORT/DB[?options=…]`)
    /// and migrates the schema (in the connection's `search_path`).
    pub async fn connect(url: &str) -> Result<PgStore, RecordError> {
        let engine = Engine::new("kiln-records").map_err(|source| RecordError::CreateRuntime {
            target: crate::state::redact_password(url),
            source,
        })?;
        let (pool, target) =
            crate::postgres::pool(url).map_err(|source| RecordError::Postgres {
                operation: "parsing the PostgreSQL URL",
                target: "the PostgreSQL URL".into(),
                source,
            })?;
        let store = PgStore {
            pool,
            engine: Arc::new(engine),
            target,
            keys: ChainKeys::default(),
            fence: None,
        };
        store
            .on_engine(|s| async move { s.migrate().await })
            .await?;
        Ok(store)
    }

    /// Signs every entry appended from now on and checks every entry read
    /// with `keys`.
    pub fn with_keys(mut self, keys: ChainKeys) -> Self {
        self.keys = keys;
        self
    }

    /// The keys entries are signed and checked with.
    pub fn keys(&self) -> &ChainKeys {
        &self.keys
    }

    /// The same store (sharing the pool) whose every write first checks
    /// that `fence` still holds ([`RecordError::Fenced`] otherwise).
    pub fn fenced(&self, fence: Fence) -> Self {
        PgStore {
            fence: Some(fence),
            ..self.clone()
        }
    }

    /// `postgres://USER@HOST:PORT/DB` (no password).
    pub fn target(&self) -> &str {
        &self.target
    }

    async fn migrate(&self) -> Result<(), RecordError> {
        let mut client = self.client().await?;
        match schema::migrate(&mut client)
            .await
            .map_err(self.db_error("migrating the schema"))?
        {
            super::schema::Migrated::Current => Ok(()),
            super::schema::Migrated::TooNew(found) => Err(RecordError::SchemaTooNew {
                path: self.location(),
                found,
                supported: schema::latest(),
            }),
        }
    }

    /// A pooled connection.
    async fn client(&self) -> Result<Object, RecordError> {
        self.pool
            .get()
            .await
            .map_err(|source| RecordError::PostgresPool {
                target: self.target.clone(),
                source,
            })
    }

    /// Wraps a database error with what kiln was doing and the target.
    fn db_error(&self, operation: &'static str) -> impl Fn(tokio_postgres::Error) -> RecordError {
        let target = self.target.clone();
        move |source| RecordError::Postgres {
            operation,
            target: target.clone(),
            source,
        }
    }

    /// [`RecordError::Tampered`] for the entry at `seq`.
    fn tampered(&self, seq: i64) -> impl Fn(Problem) -> RecordError {
        let path = self.location();
        move |problem| RecordError::Tampered {
            seq,
            path: path.clone(),
            problem,
        }
    }

    /// The target where [`RecordError`] variants shared with the SQLite
    /// store want a path.
    fn location(&self) -> PathBuf {
        PathBuf::from(&self.target)
    }
}

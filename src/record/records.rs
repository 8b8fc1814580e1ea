//! [`Records`]: the handle the pipeline, the daemon and the CLI hold on the
//! record store, whichever backend `--state` chose (a SQLite file or a
//! PostgreSQL database). Cheap to clone; derives handles with other keys
//! ([`Records::with_keys`]) or fenced by a cluster claim
//! ([`Records::fenced`]).

use std::path::PathBuf;
use std::sync::Arc;

use super::backend::RecordStore;
use super::error::RecordError;
use super::fence::Fence;
use super::pg::PgStore;
use super::signature::ChainKeys;
use super::sqlite::SqliteRecords;
use crate::state::StateLocation;

/// A record store handle (`Arc<dyn RecordStore>`); its primitive
/// operations are the trait's (through `Deref`), the questions kiln asks are
/// methods here (`query.rs`, `decide.rs`).
#[derive(Debug, Clone)]
pub struct Records(Arc<dyn RecordStore>);

impl Records {
    /// Opens the store at `location`, signing and checking with `keys`. A
    /// SQLite file is opened (and created) only by the first write;
    /// PostgreSQL is connected to and migrated now.
    pub async fn open(location: &StateLocation, keys: ChainKeys) -> Result<Records, RecordError> {
        match location {
            StateLocation::Sqlite(path) => Ok(Records::sqlite(path.clone(), keys)),
            StateLocation::Postgres(url) => {
                let store = PgStore::connect(url).await?.with_keys(keys);
                Ok(Records(Arc::new(store)))
            }
        }
    }

    /// The SQLite store at `path` (nothing is opened yet).
    pub fn sqlite(path: impl Into<PathBuf>, keys: ChainKeys) -> Records {
        Records(Arc::new(SqliteRecords::new(path, keys)))
    }

    /// A handle on `store`.
    pub fn new(store: Arc<dyn RecordStore>) -> Records {
        Records(store)
    }

    /// The same store, signing and checking with `keys`.
    pub fn with_keys(&self, keys: ChainKeys) -> Records {
        Records(self.0.with_keys(keys))
    }

    /// The same store for a cluster run's writes: on PostgreSQL every
    /// `allocate`, `append`, `append_event` and `append_decision` first
    /// checks, in its own transaction, that `fence`'s claim still holds
    /// (`Fence::HOLDS_SQL`, the run's row held `FOR SHARE` until commit),
    /// and fails with [`RecordError::Fenced`], writing nothing, when it does
    /// not. Reads are not fenced. On SQLite this is the store unchanged: kiln
    /// never fences a single host's writes (see `sqlite.rs`).
    pub fn fenced(&self, fence: Fence) -> Records {
        Records(self.0.fenced(fence))
    }

    /// [`Records::fenced`] when there is a fence, else the same handle.
    pub fn fenced_by(&self, fence: Option<&Fence>) -> Records {
        match fence {
            Some(f) => self.fenced(f.clone()),
            None => self.clone(),
        }
    }
}

impl std::ops::Deref for Records {
    type Target = dyn RecordStore;

    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

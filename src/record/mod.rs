//! Stage 7 — record: the immutable build record store. Every finished run
//! becomes one [`Record`] appended to a hash chain, in SQLite
//! (`<project>/.kiln/state/kiln.db`, the default) or on PostgreSQL (`pg`,
//! shared by a kiln cluster), as `--state` says; "approved" images and
//! provenance are read from it. Callers hold a [`Records`] handle over the
//! [`RecordStore`] trait both backends implement.
//!
//! **Architecture Invariant:** records are append-only, enforced by triggers
//! in the schema, not only in Rust; every record carries the previous record's
//! hash, and every read re-checks the row's own hash.

mod backend;
mod chain;
pub mod cleanup;
mod decide;
pub mod error;
pub mod event;
mod event_store;
pub mod fence;
#[cfg(test)]
mod fixture;
pub mod model;
pub mod pg;
pub mod provenance;
mod query;
mod records;
pub mod schema;
pub mod signature;
mod sqlite;
mod store;
#[cfg(test)]
mod tests;
pub mod verify;

use std::path::{Path, PathBuf};

pub use backend::{DecisionAppend, Filter, RecordStore};
pub use chain::{canonical_json, link_hash};
pub use decide::DecisionRefused;
pub use error::RecordError;
pub use event::{ChainedEvent, Decision, Event, EventKind, Promotion};
pub use fence::Fence;
pub use model::*;
pub use query::Approved;
pub use records::Records;
pub use signature::ChainKeys;
pub use sqlite::SqliteRecords;
pub use store::{Allocation, Selector, Store};
pub use verify::{BadRecord, Problem, VerifyReport};

/// The state folder of a project: `<project>/.kiln/state`.
pub fn state_dir(project_root: &Path) -> PathBuf {
    project_root.join(".kiln").join("state")
}

/// The record database of a project: `<project>/.kiln/state/kiln.db`.
pub fn db_path(project_root: &Path) -> PathBuf {
    state_dir(project_root).join("kiln.db")
}

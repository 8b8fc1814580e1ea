//! Stage 7 — record: the immutable build record store. Every finished run
//! becomes one [`Record`] appended to a hash chain in SQLite
//! (`<project>/.kiln/state/kiln.db`); "approved" images and provenance are
//! read from it. `pg` keeps the same chain on PostgreSQL for a kiln cluster
//! (issue 15; not wired into the CLI, pipeline or daemon yet).
//!
//! **Architecture Invariant:** records are append-only, enforced by triggers
//! in the schema, not only in Rust; every record carries the previous record's
//! hash, and every read re-checks the row's own hash.

mod chain;
pub mod cleanup;
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
pub mod schema;
pub mod signature;
mod store;
#[cfg(test)]
mod tests;
pub mod verify;

use std::path::{Path, PathBuf};

pub use chain::{canonical_json, link_hash};
pub use error::RecordError;
pub use event::{ChainedEvent, Decision, Event, EventKind, Promotion};
pub use event_store::DecisionRefused;
pub use fence::Fence;
pub use model::*;
pub use query::Approved;
pub use signature::ChainKeys;
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

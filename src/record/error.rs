//! Errors of the record store, with the database path or record they concern.
//! For the PostgreSQL store (`record::pg`), a `path` is its connection target
//! (`postgres://USER@HOST:PORT/DB`, never with a password).

use std::path::PathBuf;

use super::model::RecordId;

/// Why a record-store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The state folder could not be created.
    #[error("error creating state folder `{path}`")]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The chain holds signed entries but no signing key is configured: an
    /// unsigned entry would break it for good (it is append-only).
    #[error(
        "`{path}` holds entries signed with key `{key_id}`, and no signing key is configured: \
         an unsigned entry would break the signed chain for good; run kiln with the operator \
         config that holds the signing key (--config or KILN_CONFIG)"
    )]
    SigningKeyRequired {
        /// The database file.
        path: PathBuf,
        /// The key the chain is signed with.
        key_id: String,
    },
    /// Signing a new entry's hash failed.
    #[error("error signing a new entry of `{path}`")]
    Sign {
        /// The database file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: crate::sign::kms::KmsError,
    },
    /// A database call failed.
    #[error("error {operation} in `{path}`")]
    Database {
        /// What kiln was doing, e.g. "appending a record".
        operation: &'static str,
        /// The database file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// A PostgreSQL call failed (`record::pg`).
    #[error("error {operation} in `{target}`")]
    Postgres {
        /// What kiln was doing, e.g. "appending a record".
        operation: &'static str,
        /// `postgres://USER@HOST:PORT/DB`, never with a password.
        target: String,
        /// The cause.
        #[source]
        source: tokio_postgres::Error,
    },
    /// No PostgreSQL connection could be had from the pool.
    #[error("error connecting to `{target}`")]
    PostgresPool {
        /// `postgres://USER@HOST:PORT/DB`, never with a password.
        target: String,
        /// The cause.
        #[source]
        source: deadpool_postgres::PoolError,
    },
    /// The database was written by a newer kiln.
    #[error("database `{path}` has schema version {found}; this kiln supports up to {supported}")]
    SchemaTooNew {
        /// The database file.
        path: PathBuf,
        /// `PRAGMA user_version` found.
        found: i64,
        /// Highest version this build knows.
        supported: i64,
    },
    /// The record could not be turned into JSON.
    #[error("error encoding record `{id}` as JSON")]
    Encode {
        /// The record.
        id: RecordId,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A stored row fails its own integrity check when read.
    #[error("stored record #{seq} in `{path}` was altered: {problem}; run `kiln records --verify`")]
    Tampered {
        /// Chain position.
        seq: i64,
        /// The database file.
        path: PathBuf,
        /// What does not match.
        problem: super::verify::Problem,
    },
    /// A record for this build already exists.
    #[error("build `{build}` is already recorded")]
    AlreadyRecorded {
        /// `pipeline:version-build`.
        build: String,
    },
    /// The record's id and build number were not handed out by
    /// [`super::Store::allocate`].
    #[error("build `{build}` (id `{id}`) was not allocated by this store")]
    NotAllocated {
        /// `pipeline:version-build`.
        build: String,
        /// The record id.
        id: RecordId,
    },
    /// A branch cleanup record could not be written or read back.
    #[error("error encoding or reading the cleanup record of branch `{branch}`")]
    Cleanup {
        /// The branch.
        branch: String,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// No record matches what was asked for.
    #[error("no record `{selector}`")]
    NotFound {
        /// The id or `pipeline:version-build` asked for.
        selector: String,
    },
    /// An approval decision was refused; nothing was appended.
    #[error(transparent)]
    Decision(Box<super::decide::DecisionRefused>),
    /// A fenced write ([`super::Records::fenced`]) found that its cluster
    /// run's claim no longer holds; the transaction wrote nothing.
    #[error(
        "cluster run `{run}` (claim epoch {epoch}) is no longer held by this node: its lease \
         lapsed and it was reaped or claimed again; nothing was written"
    )]
    Fenced {
        /// The cluster run.
        run: String,
        /// The epoch of the claim the write carried.
        epoch: i64,
    },
    /// A store task (a SQLite call on the blocking pool, a PostgreSQL call on
    /// the store's runtime) did not complete.
    #[error("the record store task on `{path}` did not complete")]
    Task {
        /// The database file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: tokio::task::JoinError,
    },
    /// The PostgreSQL store's runtime could not be started.
    #[error("cannot start the record store's runtime for `{target}`")]
    CreateRuntime {
        /// `postgres://…` (password redacted).
        target: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Provenance needs at least one pushed image.
    #[error("record `{build}` pushed no images, so it has no provenance subject")]
    NoSubjects {
        /// `pipeline:version-build`.
        build: String,
    },
}

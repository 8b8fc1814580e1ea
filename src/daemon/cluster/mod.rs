//! The cluster's shared run queue on PostgreSQL (issue 15): nodes register
//! and heartbeat, runs are claimed exactly once under a lease timed by the
//! database clock, every write of a claimed run is fenced by the claim's
//! epoch, a reaper on any node re-queues runs whose lease lapsed, and each
//! schedule slot fires once across all nodes.
//!
//! **Architecture Invariants** (kept by the database, not only in Rust):
//! - a run is claimed by one node at a time: the claim is one `UPDATE` of a
//!   row selected `FOR UPDATE SKIP LOCKED`, and only a node whose platforms
//!   include the run's platform and whose checkout digest is the run's may
//!   take it;
//! - leases are timed by `now()` on the server, never by a node's clock;
//! - every claim and every reap bumps the run's `epoch`; a write carrying
//!   another epoch (a paused or partitioned node that lost its lease) changes
//!   nothing and is [`ClusterError::Fenced`]; the log table's insert trigger
//!   refuses such lines too;
//! - a schedule slot is an insert-once row (`fired_slots`): the node whose
//!   insert wins queues the run, in the same transaction.
//!
//! [`ClusterQueue`] is the daemon's [`super::queue::RunQueue`] on it.

mod agent;
mod claims;
mod nodes;
mod queue;
mod reads;
mod runs;
pub mod schema;
mod slots;

use deadpool_postgres::{Object, Pool};

pub use claims::{Claim, Enqueue, Finish, Reaped};
pub use nodes::NodeInfo;
pub use queue::{ClusterQueue, ClusterSettings};
pub use runs::EventText;
pub use slots::Fired;

/// Why a cluster call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The URL does not parse.
    #[error("`{url}` is not a PostgreSQL URL (postgres://USER@HOST:PORT/DB)")]
    Url {
        /// The URL, without a password.
        url: String,
        /// The parser's reason.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A statement failed.
    #[error("{operation} on {target} failed")]
    Db {
        /// What was being done.
        operation: &'static str,
        /// `postgres://USER@HOST:PORT/DB`.
        target: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// No pooled connection.
    #[error("no connection to {target}")]
    Pool {
        /// `postgres://USER@HOST:PORT/DB`.
        target: String,
        /// The pool's error.
        #[source]
        source: deadpool_postgres::PoolError,
    },
    /// The write carried a stale epoch: the lease was lost.
    #[error(
        "run {run}: epoch {epoch} is not the run's current claim (its lease lapsed and it was reaped or claimed again); nothing written"
    )]
    Fenced {
        /// The run.
        run: String,
        /// The epoch the write carried.
        epoch: i64,
    },
    /// The cluster schema was migrated by a newer kiln: this node would run
    /// against tables it does not know, so it refuses to start.
    #[error(
        "cluster schema on {target} has version {found}; this kiln supports up to {supported} (upgrade this node)"
    )]
    SchemaTooNew {
        /// `postgres://USER@HOST:PORT/DB`.
        target: String,
        /// The version recorded in `cluster_schema`.
        found: i64,
        /// The highest version this build knows.
        supported: i64,
    },
    /// The node's own runtime could not be started.
    #[error("cannot start the cluster node's runtime")]
    Runtime {
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A call on the node's runtime panicked or was cancelled.
    #[error("a cluster database call did not complete")]
    Task,
}

/// One node's handle on the cluster database.
#[derive(Clone)]
pub struct Cluster {
    pool: Pool,
    target: String,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Connects to `url` and migrates the queue's schema (in the
    /// connection's `search_path`).
    pub async fn connect(url: &str) -> Result<Cluster, ClusterError> {
        let (pool, target) = crate::postgres::pool(url).map_err(|source| ClusterError::Url {
            url: redacted(url),
            source,
        })?;
        let cluster = Cluster { pool, target };
        schema::migrate(&cluster).await?;
        Ok(cluster)
    }

    /// Another handle on the database at `url` (the one `self` connected
    /// to and migrated) with a pool of `size` connections of its own: the
    /// node's housekeeping uses it so that its heartbeats never wait for a
    /// connection behind log batches and API reads.
    pub(super) fn dedicated(url: &str, size: usize) -> Result<Cluster, ClusterError> {
        let (pool, target) =
            crate::postgres::pool_of(url, size).map_err(|source| ClusterError::Url {
                url: redacted(url),
                source,
            })?;
        Ok(Cluster { pool, target })
    }

    /// `postgres://USER@HOST:PORT/DB` (no password), for messages.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// A pooled connection.
    async fn client(&self) -> Result<Object, ClusterError> {
        self.pool.get().await.map_err(|source| ClusterError::Pool {
            target: self.target.clone(),
            source,
        })
    }

    /// Maps a driver error of `operation`.
    fn db(&self, operation: &'static str) -> impl Fn(tokio_postgres::Error) -> ClusterError + '_ {
        move |source| ClusterError::Db {
            operation,
            target: self.target.clone(),
            source,
        }
    }
}

/// The URL with any password replaced.
fn redacted(url: &str) -> String {
    crate::state::redact_password(url)
}

//! The run queue behind the daemon: runs, their claims and their log
//! events. [`RunQueue`] is what the worker, scheduler, API, SSE, status page
//! and metrics use; two backends implement it — [`Queue`] on one host's
//! SQLite file ([`sqlite`]), and the cluster's shared PostgreSQL queue
//! (`crate::daemon::cluster::ClusterQueue`). Nothing else knows which one
//! runs.

mod sqlite;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::{Notify, mpsc};

use super::cluster::{ClusterError, NodeInfo};
use super::run::{RunRow, RunState, StoredEvent, TriggerKind};
use super::runner::LogEvent;
use crate::pipeline::FailureKind;
use crate::record::{Fence, RecordError};

pub use sqlite::Queue;

/// Why a queue operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// Opening or migrating the database failed.
    #[error("error opening the run queue")]
    Open(#[from] RecordError),
    /// A database call failed.
    #[error("error {operation} in `{path}`")]
    Database {
        /// What the daemon was doing.
        operation: &'static str,
        /// The database file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// The blocking task running the query panicked or was cancelled.
    #[error("the database task for {operation} did not complete")]
    Task {
        /// What the daemon was doing.
        operation: &'static str,
    },
    /// The cluster's queue failed, or refused a stale write
    /// ([`QueueError::is_fenced`]).
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// A write for a run this node does not hold (never claimed here, or
    /// its claim already ended).
    #[error("run `{run}` is not held by node `{node}`; nothing written")]
    NotHeld {
        /// The run.
        run: String,
        /// This node.
        node: String,
    },
}

impl QueueError {
    /// Whether the write was refused because this node no longer holds the
    /// run (its lease lapsed and the run was reaped or claimed again): the
    /// run must stop here and write nothing more.
    pub fn is_fenced(&self) -> bool {
        matches!(
            self,
            QueueError::Cluster(ClusterError::Fenced { .. }) | QueueError::NotHeld { .. }
        )
    }
}

/// What queueing a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// A new run was queued.
    Created(RunRow),
    /// The pipeline already had a queued or running run; this is it.
    Joined(RunRow),
}

impl Enqueued {
    /// The run, new or joined.
    pub fn run(&self) -> &RunRow {
        match self {
            Enqueued::Created(r) | Enqueued::Joined(r) => r,
        }
    }
}

/// A run to queue.
#[derive(Debug, Clone, Copy)]
pub struct NewRun<'a> {
    /// The recipe.
    pub pipeline: &'a str,
    /// The branch of a branch pipeline run (`None`: the main pipeline).
    pub branch: Option<&'a str>,
    /// Why.
    pub trigger: TriggerKind,
    /// Ask the runner whether anything moved before building.
    pub check_first: bool,
    /// Its queue time (a scheduled run's slot instant).
    pub queued_at: DateTime<Utc>,
    /// The platform the recipe builds, when it loads (a cluster run is
    /// claimed only by a node whose engine builds it).
    pub platform: Option<&'a str>,
}

impl<'a> NewRun<'a> {
    /// A run of the main pipeline (no branch).
    pub fn main(
        pipeline: &'a str,
        (trigger, check_first): (TriggerKind, bool),
        queued_at: DateTime<Utc>,
        platform: Option<&'a str>,
    ) -> NewRun<'a> {
        NewRun {
            pipeline,
            branch: None,
            trigger,
            check_first,
            queued_at,
            platform,
        }
    }
}

/// A run this node claimed, and the fence its record writes must carry (a
/// cluster claim; `None` on one host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// The run, now `running`.
    pub run: RunRow,
    /// The claim every later write of the run must still hold.
    pub fence: Option<Fence>,
}

/// How a claimed run ended.
#[derive(Debug, Clone, Copy)]
pub struct RunEnd<'a> {
    /// Its final state.
    pub state: RunState,
    /// The kind of failure of a failed run.
    pub failure: Option<FailureKind>,
    /// One line for people.
    pub summary: &'a str,
    /// The record it appended.
    pub record_id: Option<&'a str>,
}

/// A run this node left behind when it last stopped: marked `interrupted`
/// (now, or earlier by another node's reaper), to be cleaned up here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// The interrupted run.
    pub run: RunRow,
    /// The retry queued now (`None`: queued earlier by a reaper, or the
    /// pipeline already had an active run).
    pub retry: Option<RunRow>,
}

/// Something the queue's own background work found, for the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueEvent {
    /// This node no longer holds the run (lease lapsed, reaped, or renewals
    /// failed for a whole lease): stop it here, write nothing more.
    Lost {
        /// The run.
        run: String,
        /// Why, for the log.
        why: String,
    },
    /// Someone asked (through any node's API) to cancel a run this node
    /// executes.
    CancelRequested {
        /// The run.
        run: String,
    },
    /// A run whose lease lapsed was marked interrupted by this node's
    /// reaper, and retried.
    Reaped {
        /// The interrupted run.
        run: String,
        /// The node that held it.
        node: Option<String>,
        /// Its retry.
        retry: Option<String>,
    },
}

/// One node of `GET /v1/nodes`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeView {
    /// The node id (`kiln serve --node-id`, `cluster.nodeId`, or the host
    /// name).
    pub id: String,
    /// Its Docker engine (`DOCKER_HOST`).
    pub docker_host: String,
    /// The platforms its engine builds (`linux/amd64`, …).
    pub platforms: Vec<String>,
    /// Its labels (`cluster.labels`).
    pub labels: std::collections::BTreeMap<String, String>,
    /// sha256 of the project checkout it loaded ([`super::checkout`]).
    pub checkout: String,
    /// Seconds since its last heartbeat (0 for the single local node).
    pub heartbeat_age_seconds: f64,
    /// Its runs by state (`running`, `passed`, …).
    pub runs: std::collections::BTreeMap<String, i64>,
}

impl NodeView {
    /// The view of `node`, heartbeat `age` seconds ago, with its run counts.
    pub fn of(
        node: &NodeInfo,
        age: f64,
        runs: std::collections::BTreeMap<String, i64>,
    ) -> NodeView {
        NodeView {
            id: node.id.clone(),
            docker_host: node.docker_host.clone(),
            platforms: node.platforms.clone(),
            labels: serde_json::from_str(&node.labels).unwrap_or_default(),
            checkout: node.checkout.clone(),
            heartbeat_age_seconds: age,
            runs,
        }
    }
}

/// The run queue, as the daemon uses it. Each call is atomic in its
/// backend; every write for a claimed run goes through [`RunQueue::finish`]
/// and [`RunQueue::append_events`], which a cluster backend fences.
#[async_trait]
pub trait RunQueue: Send + Sync + 'static {
    /// Queues a run, or joins the pipeline's (and branch's) active one.
    /// Joining a queued check-first run without `check_first` makes it a
    /// full run.
    async fn enqueue(&self, run: NewRun<'_>) -> Result<Enqueued, QueueError>;

    /// Queues the run of a schedule slot (`slot`) once across every daemon
    /// sharing the queue; `None` when another node fired that slot.
    async fn fire_slot(
        &self,
        run: NewRun<'_>,
        slot: DateTime<Utc>,
    ) -> Result<Option<Enqueued>, QueueError>;

    /// Claims the oldest queued run this node can build.
    async fn claim(&self, now: DateTime<Utc>) -> Result<Option<Claimed>, QueueError>;

    /// Appends log events to a run this node claimed, numbering them after
    /// the last one. Returns them as stored. A cluster backend refuses them
    /// ([`QueueError::is_fenced`]) once the node lost the run.
    async fn append_events(
        &self,
        run_id: &str,
        events: Vec<LogEvent>,
        now: DateTime<Utc>,
    ) -> Result<Vec<StoredEvent>, QueueError>;

    /// Ends a run this node claimed. `Ok(false)`: it had already ended.
    async fn finish(
        &self,
        run_id: &str,
        end: RunEnd<'_>,
        now: DateTime<Utc>,
    ) -> Result<bool, QueueError>;

    /// Gives up a claimed run whose end could not be written: a cluster
    /// node stops renewing its lease, so it lapses and the run is retried.
    fn abandon(&self, run_id: &str) {
        let _ = run_id;
    }

    /// Ends a queued run as `cancelled`. `Ok(false)`: it was not queued.
    async fn cancel_queued(
        &self,
        run_id: &str,
        summary: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, QueueError>;

    /// Asks the node executing `run_id` to cancel it (it learns it from
    /// [`QueueEvent::CancelRequested`]). `Ok(false)`: it is not running.
    async fn request_cancel(&self, run_id: &str) -> Result<bool, QueueError>;

    /// At start: the runs this node left behind, marked `interrupted`, with
    /// the retries queued for them.
    async fn recover(&self, now: DateTime<Utc>) -> Result<Vec<Recovered>, QueueError>;

    /// One run.
    async fn get(&self, id: &str) -> Result<Option<RunRow>, QueueError>;

    /// Runs newest first, optionally of one pipeline.
    async fn list(&self, pipeline: Option<String>, limit: usize)
    -> Result<Vec<RunRow>, QueueError>;

    /// When the newest run of `pipeline` was queued (any trigger).
    async fn last_queued_at(&self, pipeline: &str) -> Result<Option<DateTime<Utc>>, QueueError>;

    /// The number of queued and of running runs.
    async fn depth(&self) -> Result<(i64, i64), QueueError>;

    /// A run's log events with `seq > after`, in order.
    async fn events_after(&self, run_id: &str, after: i64) -> Result<Vec<StoredEvent>, QueueError>;

    /// A run's stage events (no log lines), in order.
    async fn stage_events(&self, run_id: &str) -> Result<Vec<StoredEvent>, QueueError>;

    /// The nodes sharing this queue (one host: itself).
    async fn nodes(&self) -> Result<Vec<NodeView>, QueueError>;

    /// Starts the queue's own background work (a cluster node: heartbeat,
    /// reaper, wake-ups from other nodes on `wake`); what it finds comes
    /// out of the returned channel. Runs until [`RunQueue::stop`].
    async fn start(&self, wake: Arc<Notify>) -> mpsc::UnboundedReceiver<QueueEvent> {
        let _ = wake;
        mpsc::unbounded_channel().1
    }

    /// Stops the background work (after the last run of this node ended:
    /// heartbeats keep its leases until then).
    async fn stop(&self) {}

    /// The file whose lock makes this process the queue's only daemon (one
    /// host); `None` when many daemons share the queue.
    fn lock_path(&self) -> Option<&Path>;

    /// How often a log follower re-reads the store for events other
    /// processes write (`None`: every event is written, and broadcast, by
    /// this process).
    fn follow_poll(&self) -> Option<Duration> {
        None
    }
}

/// Opens the run queue `location` names for `node`: one host's SQLite file,
/// or the cluster's PostgreSQL database (registering the node there).
pub async fn open(
    location: &crate::state::StateLocation,
    node: NodeInfo,
    settings: super::cluster::ClusterSettings,
) -> Result<Arc<dyn RunQueue>, QueueError> {
    use crate::state::StateLocation;
    Ok(match location {
        StateLocation::Sqlite(path) => Arc::new(Queue::open(path)?.with_node(node)),
        StateLocation::Postgres(url) => {
            Arc::new(super::cluster::ClusterQueue::connect(url, node, settings).await?)
        }
    })
}

/// The runs at `location`, newest first, optionally of one pipeline: what
/// `kiln --state … runs` prints without a daemon. Registers nothing; a
/// SQLite file that does not exist yet holds no runs.
pub async fn read_runs(
    location: &crate::state::StateLocation,
    pipeline: Option<String>,
    limit: usize,
) -> Result<Vec<RunRow>, QueueError> {
    use crate::state::StateLocation;
    match location {
        StateLocation::Sqlite(path) if !path.exists() => Ok(Vec::new()),
        StateLocation::Sqlite(path) => Queue::open(path)?.list(pipeline, limit).await,
        StateLocation::Postgres(url) => {
            let cluster = super::cluster::Cluster::connect(url).await?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            Ok(cluster.list(pipeline.as_deref(), limit).await?)
        }
    }
}

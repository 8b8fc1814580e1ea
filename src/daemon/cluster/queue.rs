//! The daemon's [`RunQueue`] on the cluster's PostgreSQL queue: this node
//! claims runs it can build (platform and checkout), keeps each claim in
//! memory, and every write for a claimed run carries the claim's epoch, so
//! a write after the node lost the run is refused. Reads answer for the
//! whole cluster.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::agent::{Held, Housekeeping, wake_on_runs};
use super::{Claim, Cluster, ClusterError, Enqueue, Finish, Fired, NodeInfo};
use crate::daemon::queue::{
    Claimed, Enqueued, NewRun, NodeView, QueueError, QueueEvent, Recovered, RunEnd, RunQueue,
};
use crate::daemon::run::{RunRow, StoredEvent};
use crate::daemon::runner::LogEvent;
use crate::postgres::Engine;
use crate::record::Fence;

/// Most database calls of this node waiting at once (each holds a thread
/// of the blocking pool while it waits).
const IN_FLIGHT: usize = 8;

/// How a node takes part in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterSettings {
    /// A claim's lease, renewed by heartbeats every third of it.
    pub lease: Duration,
    /// How often an idle node looks for runs without a notification.
    pub poll: Duration,
}

/// This node's handle on the shared run queue.
pub struct ClusterQueue {
    cluster: Cluster,
    node: Arc<NodeInfo>,
    url: String,
    settings: ClusterSettings,
    held: Held,
    turn: Semaphore,
    stop: CancellationToken,
    engine: Engine,
}

impl std::fmt::Debug for ClusterQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterQueue")
            .field("cluster", &self.cluster)
            .field("node", &self.node.id)
            .finish_non_exhaustive()
    }
}

impl ClusterQueue {
    /// Connects to `url` (migrating the schema), registers `node`, and
    /// returns the node's queue.
    pub async fn connect(
        url: &str,
        node: NodeInfo,
        settings: ClusterSettings,
    ) -> Result<ClusterQueue, ClusterError> {
        let engine =
            Engine::new("kiln-cluster").map_err(|source| ClusterError::Runtime { source })?;
        let (u, n) = (url.to_string(), node.clone());
        let cluster = engine
            .run(async move {
                let cluster = Cluster::connect(&u).await?;
                cluster.register(&n).await?;
                Ok::<_, ClusterError>(cluster)
            })
            .await
            .map_err(|_| ClusterError::Task)??;
        tracing::info!(node = %node.id, target = %cluster.target(), platforms = ?node.platforms,
            checkout = %node.checkout, "registered as a cluster node");
        Ok(ClusterQueue {
            cluster,
            node: Arc::new(node),
            url: url.to_string(),
            settings,
            held: Arc::default(),
            turn: Semaphore::new(IN_FLIGHT),
            stop: CancellationToken::new(),
            engine,
        })
    }

    /// Runs `work` with the cluster handle on the node's runtime.
    async fn call<T, F, Fut>(&self, work: F) -> Result<T, QueueError>
    where
        T: Send + 'static,
        F: FnOnce(Cluster) -> Fut,
        Fut: Future<Output = Result<T, ClusterError>> + Send + 'static,
    {
        let _turn = self.turn.acquire().await;
        let done = self.engine.run(work(self.cluster.clone())).await;
        Ok(done.map_err(|_| ClusterError::Task)??)
    }

    /// The claim this node holds on `run`.
    fn claim_of(&self, run: &str) -> Result<Claim, QueueError> {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.get(run).cloned().ok_or_else(|| QueueError::NotHeld {
            run: run.to_string(),
            node: self.node.id.clone(),
        })
    }

    /// The cluster's form of a run to queue, on this node's checkout.
    fn enqueue_of<'a>(&'a self, run: &NewRun<'a>) -> Enqueue<'a> {
        let platform = run
            .platform
            .or(self.node.platforms.first().map(String::as_str));
        Enqueue {
            pipeline: run.pipeline,
            branch: run.branch,
            platform: platform.unwrap_or("linux/amd64"),
            checkout: &self.node.checkout,
            trigger: run.trigger.as_str(),
            check_first: run.check_first,
            queued_at: Some(run.queued_at),
        }
    }

    async fn get_run(&self, id: &str) -> Result<Option<RunRow>, QueueError> {
        let id = id.to_string();
        self.call(|c| async move { c.run(&id).await }).await
    }
}

#[async_trait]
impl RunQueue for ClusterQueue {
    async fn enqueue(&self, run: NewRun<'_>) -> Result<Enqueued, QueueError> {
        let owned = OwnedEnqueue::from(self.enqueue_of(&run));
        let (created, row) = self
            .call(|c| async move { c.enqueue_or_join(owned.as_enqueue()).await })
            .await?;
        Ok(if created {
            Enqueued::Created(row)
        } else {
            Enqueued::Joined(row)
        })
    }

    async fn fire_slot(
        &self,
        run: NewRun<'_>,
        slot: DateTime<Utc>,
    ) -> Result<Option<Enqueued>, QueueError> {
        let owned = OwnedEnqueue::from(self.enqueue_of(&run));
        let node = self.node.id.clone();
        let secs = slot.timestamp();
        let fired = self
            .call(|c| async move {
                let run = owned.as_enqueue();
                Ok(match c.fire_slot(&node, secs, run).await? {
                    Fired::Queued(id) => c.run(&id).await?.map(Enqueued::Created),
                    Fired::Joined => c
                        .active_run(run.pipeline, run.branch)
                        .await?
                        .map(Enqueued::Joined),
                    Fired::Elsewhere => None,
                })
            })
            .await?;
        Ok(fired)
    }

    async fn claim(&self, _now: DateTime<Utc>) -> Result<Option<Claimed>, QueueError> {
        let (node, lease) = (self.node.clone(), self.settings.lease);
        let claimed = self
            .call(|c| async move {
                let Some(claim) = c.claim(&node, lease).await? else {
                    return Ok(None);
                };
                let run = c.run(&claim.run).await?;
                Ok(run.map(|r| (claim, r)))
            })
            .await?;
        let Some((claim, run)) = claimed else {
            return Ok(None);
        };
        let fence = Fence {
            run_id: claim.run.clone(),
            epoch: claim.epoch,
            node: claim.node.clone(),
        };
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.insert(claim.run.clone(), claim);
        Ok(Some(Claimed {
            run,
            fence: Some(fence),
        }))
    }

    async fn append_events(
        &self,
        run_id: &str,
        events: Vec<LogEvent>,
        now: DateTime<Utc>,
    ) -> Result<Vec<StoredEvent>, QueueError> {
        let claim = self.claim_of(run_id)?;
        let texts: Vec<(String, Option<String>, String)> = events
            .iter()
            .map(|e| (e.kind.as_str().to_string(), e.stage.clone(), e.text.clone()))
            .collect();
        let seqs = self
            .call(|c| async move {
                let batch: Vec<_> = texts
                    .iter()
                    .map(|(k, s, t)| (k.as_str(), s.as_deref(), t.as_str()))
                    .collect();
                c.log_batch(&claim, &batch, now).await
            })
            .await?;
        Ok(seqs
            .into_iter()
            .zip(events)
            .map(|(seq, e)| StoredEvent {
                seq,
                at: now,
                kind: e.kind,
                stage: e.stage,
                text: e.text,
            })
            .collect())
    }

    async fn finish(
        &self,
        run_id: &str,
        end: RunEnd<'_>,
        _now: DateTime<Utc>,
    ) -> Result<bool, QueueError> {
        let claim = self.claim_of(run_id)?;
        let status = end.state.as_str();
        let summary = end.summary.to_string();
        let failure = end.failure.map(|f| f.as_str());
        let record = end.record_id.map(str::to_string);
        let done = self
            .call(|c| async move {
                let end = Finish {
                    status,
                    summary: &summary,
                    failure,
                    record_id: record.as_deref(),
                };
                c.finish(&claim, end).await
            })
            .await;
        // Kept on a failure that may pass: the end is retried, and
        // heartbeats keep the lease meanwhile.
        if done.as_ref().is_ok() || done.as_ref().is_err_and(QueueError::is_fenced) {
            let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            held.remove(run_id);
        }
        done.map(|()| true)
    }

    fn abandon(&self, run_id: &str) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.remove(run_id);
    }

    async fn cancel_queued(
        &self,
        run_id: &str,
        summary: &str,
        _now: DateTime<Utc>,
    ) -> Result<bool, QueueError> {
        let (id, summary) = (run_id.to_string(), summary.to_string());
        self.call(|c| async move { c.cancel_queued(&id, &summary).await })
            .await
    }

    async fn request_cancel(&self, run_id: &str) -> Result<bool, QueueError> {
        let id = run_id.to_string();
        self.call(|c| async move { c.request_cancel(&id).await })
            .await
    }

    async fn recover(&self, _now: DateTime<Utc>) -> Result<Vec<Recovered>, QueueError> {
        let node = self.node.id.clone();
        let found = self
            .call(|c| async move {
                let mut out = Vec::new();
                for (run, retry) in c.recover_node(&node).await? {
                    let retry = match retry {
                        Some(id) => c.run(&id).await?,
                        None => None,
                    };
                    out.push(Recovered { run, retry });
                }
                Ok(out)
            })
            .await?;
        Ok(found)
    }

    async fn get(&self, id: &str) -> Result<Option<RunRow>, QueueError> {
        self.get_run(id).await
    }

    async fn list(
        &self,
        pipeline: Option<String>,
        limit: usize,
    ) -> Result<Vec<RunRow>, QueueError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.call(|c| async move { c.list(pipeline.as_deref(), limit).await })
            .await
    }

    async fn last_queued_at(&self, pipeline: &str) -> Result<Option<DateTime<Utc>>, QueueError> {
        let pipeline = pipeline.to_string();
        self.call(|c| async move { c.last_queued_at(&pipeline).await })
            .await
    }

    async fn depth(&self) -> Result<(i64, i64), QueueError> {
        self.call(|c| async move { c.depth().await }).await
    }

    async fn events_after(&self, run_id: &str, after: i64) -> Result<Vec<StoredEvent>, QueueError> {
        let id = run_id.to_string();
        self.call(|c| async move { c.events(&id, after, false).await })
            .await
    }

    async fn stage_events(&self, run_id: &str) -> Result<Vec<StoredEvent>, QueueError> {
        let id = run_id.to_string();
        self.call(|c| async move { c.events(&id, 0, true).await })
            .await
    }

    async fn nodes(&self) -> Result<Vec<NodeView>, QueueError> {
        let (nodes, mut counts) = self
            .call(|c| async move { Ok((c.nodes().await?, c.run_counts().await?)) })
            .await?;
        Ok(nodes
            .into_iter()
            .map(|(info, age)| {
                let runs = counts.remove(&info.id).unwrap_or_default();
                NodeView::of(&info, age, runs)
            })
            .collect())
    }

    async fn start(&self, wake: Arc<Notify>) -> mpsc::UnboundedReceiver<QueueEvent> {
        let (events, rx) = mpsc::unbounded_channel();
        // Its own two connections (the heartbeat and the other chores run
        // side by side); the URL parsed when the node connected.
        let own = Cluster::dedicated(&self.url, 2).unwrap_or_else(|_| self.cluster.clone());
        let housekeeping = Housekeeping {
            cluster: own,
            node: self.node.id.clone(),
            lease: self.settings.lease,
            held: self.held.clone(),
            events,
            wake: wake.clone(),
        };
        self.engine.spawn(housekeeping.run(self.stop.clone()));
        let (url, poll, stop) = (self.url.clone(), self.settings.poll, self.stop.clone());
        self.engine.spawn(wake_on_runs(url, wake, poll, stop));
        rx
    }

    async fn stop(&self) {
        self.stop.cancel();
    }

    fn lock_path(&self) -> Option<&Path> {
        None
    }

    fn follow_poll(&self) -> Option<Duration> {
        Some(Duration::from_millis(500))
    }
}

/// An [`Enqueue`] the node's runtime can own.
struct OwnedEnqueue {
    pipeline: String,
    branch: Option<String>,
    platform: String,
    checkout: String,
    trigger: String,
    check_first: bool,
    queued_at: Option<DateTime<Utc>>,
}

impl From<Enqueue<'_>> for OwnedEnqueue {
    fn from(e: Enqueue<'_>) -> Self {
        OwnedEnqueue {
            pipeline: e.pipeline.to_string(),
            branch: e.branch.map(str::to_string),
            platform: e.platform.to_string(),
            checkout: e.checkout.to_string(),
            trigger: e.trigger.to_string(),
            check_first: e.check_first,
            queued_at: e.queued_at,
        }
    }
}

impl OwnedEnqueue {
    fn as_enqueue(&self) -> Enqueue<'_> {
        Enqueue {
            pipeline: &self.pipeline,
            branch: self.branch.as_deref(),
            platform: &self.platform,
            checkout: &self.checkout,
            trigger: &self.trigger,
            check_first: self.check_first,
            queued_at: self.queued_at,
        }
    }
}

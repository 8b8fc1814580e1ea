//! The daemon's shared state: configuration, catalog, queue, record store,
//! runner, clock, and the channels that tie the worker, scheduler and API
//! together. Each field that is a channel or a limit says why it exists.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, Semaphore, broadcast};
use tokio_util::sync::CancellationToken;

use super::catalog::Catalog;
use super::clock::Clock;
use super::config::{ConfigError, DaemonConfig};
use super::metrics::Metrics;
use super::node::NodeOptions;
use super::queue::{Enqueued, NewRun, QueueError, RunQueue};
use super::run::{RunRow, RunState, StoredEvent, TriggerKind};
use super::runner::PipelineRunner;
use crate::project::Project;
use crate::record::{RecordError, Records};
use crate::state::StateLocation;

/// Why a daemon operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// The run queue failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The configuration could not be (re)loaded.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The record store failed.
    #[error(transparent)]
    Records(#[from] RecordError),
    /// No recipe has this name.
    #[error("no pipeline `{name}`")]
    UnknownPipeline {
        /// The name asked for.
        name: String,
    },
    /// No run has this id.
    #[error("no run `{id}`")]
    UnknownRun {
        /// The id asked for.
        id: String,
    },
    /// The run has already ended.
    #[error("run `{id}` already ended ({state})")]
    RunFinished {
        /// The run.
        id: String,
        /// How it ended.
        state: &'static str,
    },
    /// A blocking task failed.
    #[error("the record store task did not complete")]
    Task,
    /// The branch asked for is not a valid branch name.
    #[error(transparent)]
    BadBranch(#[from] crate::branch::BranchError),
    /// The build in the URL is not `pipeline:version-build` or a record id.
    #[error(transparent)]
    BadBuild(#[from] crate::record::BuildIdParseError),
    /// The decision is recorded, but promoting the approved build failed.
    #[error("the decision is recorded, but promotion failed")]
    Promotion(#[source] Box<super::runner::RunnerError>),
    /// The project's checkout digest could not be computed.
    #[error("cannot compute the checkout digest of the project")]
    Checkout {
        /// The file that could not be read.
        #[source]
        source: crate::project::PathError,
    },
    /// Another daemon runs on the same state file.
    #[error(transparent)]
    Lock(#[from] super::lock::LockError),
    /// The HTTP server failed.
    #[error("error serving the API")]
    Serve {
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// A live event of some run, broadcast to log followers.
#[derive(Debug, Clone)]
pub struct LiveEvent {
    /// The run.
    pub run_id: String,
    /// What happened.
    pub kind: LiveKind,
}

/// What happened in a [`LiveEvent`].
#[derive(Debug, Clone)]
pub enum LiveKind {
    /// A log event was stored.
    Log(StoredEvent),
    /// The run ended (its final row).
    End(RunRow),
}

/// Everything `kiln serve` needs to build a [`DaemonState`].
pub struct DaemonOptions {
    /// The project (recipes/ …).
    pub project: Project,
    /// The configuration.
    pub config: DaemonConfig,
    /// Where it came from; re-read by `POST /v1/config/reload`.
    pub config_path: Option<PathBuf>,
    /// Where the runs are kept: one host's SQLite file (shared with its
    /// records), or a cluster's PostgreSQL database (this process is then a
    /// node of the cluster).
    pub state: StateLocation,
    /// This process as a node (id, engine, platforms).
    pub node: NodeOptions,
    /// The record store on `state`, with the keys that sign decisions and
    /// check every record served (the pipeline's).
    pub records: Records,
    /// The pipeline.
    pub runner: Arc<dyn PipelineRunner>,
    /// Wall time.
    pub clock: Arc<dyn Clock>,
}

/// The daemon's state, cheap to clone.
#[derive(Clone)]
pub struct DaemonState {
    pub(super) shared: Arc<Shared>,
}

pub(super) struct Shared {
    pub project: Project,
    pub config_path: Option<PathBuf>,
    pub config: RwLock<Arc<DaemonConfig>>,
    pub catalog: RwLock<Arc<Catalog>>,
    /// The run queue; which backend is known only where it is opened.
    pub queue: Arc<dyn RunQueue>,
    /// The record store the API and the page read and decisions are
    /// appended to (`--state`), with the operator's keys.
    pub records: Records,
    pub runner: Arc<dyn PipelineRunner>,
    pub clock: Arc<dyn Clock>,
    /// Wakes the dispatcher when a run is queued (a stored permit means a
    /// trigger between "queue empty" and "wait" is not lost).
    pub wake: Arc<Notify>,
    /// Stored log events and run ends, for SSE followers. Followers that lag
    /// re-read from SQLite, so a small buffer loses nothing.
    pub events: broadcast::Sender<Arc<LiveEvent>>,
    /// Cancellation of each running run, for `POST …/cancel` and shutdown.
    pub active: Mutex<HashMap<String, CancellationToken>>,
    /// Caps how many runs execute at once (`concurrency`).
    pub limit: Arc<Semaphore>,
    /// Fired once on shutdown: stops the server, scheduler, dispatcher and
    /// log followers.
    pub shutdown: CancellationToken,
    /// Stops the current scheduler tasks when the catalog is reloaded.
    pub scheduler: Mutex<Option<CancellationToken>>,
    pub metrics: Metrics,
}

impl DaemonState {
    /// Loads the recipes, opens the run queue (migrating it; a cluster
    /// node registers itself with its checkout digest).
    pub async fn open(o: DaemonOptions) -> Result<DaemonState, DaemonError> {
        let project = o.project.clone();
        let (catalog, checkout) = tokio::task::spawn_blocking(move || {
            (
                Catalog::load(&project),
                super::checkout::of_project(&project),
            )
        })
        .await
        .map_err(|_| DaemonError::Task)?;
        let checkout = checkout.map_err(|source| DaemonError::Checkout { source })?;
        let cluster = &o.config.cluster;
        let node = o
            .node
            .info(cluster.node_id.as_deref(), &cluster.labels, checkout);
        let queue = super::queue::open(&o.state, node, cluster.settings()).await?;
        let (events, _) = broadcast::channel(1024);
        Ok(DaemonState {
            shared: Arc::new(Shared {
                limit: Arc::new(Semaphore::new(o.config.concurrency)),
                project: o.project,
                config_path: o.config_path,
                config: RwLock::new(Arc::new(o.config)),
                catalog: RwLock::new(Arc::new(catalog)),
                queue,
                records: o.records,
                runner: o.runner,
                clock: o.clock,
                wake: Arc::new(Notify::new()),
                events,
                active: Mutex::default(),
                shutdown: CancellationToken::new(),
                scheduler: Mutex::default(),
                metrics: Metrics::default(),
            }),
        })
    }

    /// The current configuration.
    pub fn config(&self) -> Arc<DaemonConfig> {
        self.shared
            .config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The current pipelines.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.shared
            .catalog
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The run queue.
    pub fn queue(&self) -> &dyn RunQueue {
        self.shared.queue.as_ref()
    }

    /// The clock.
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.shared.clock.clone()
    }

    /// Asks the daemon to shut down (same as the shutdown future completing).
    pub fn shutdown(&self) {
        self.shared.shutdown.cancel();
    }

    pub(super) fn shutdown_token(&self) -> CancellationToken {
        self.shared.shutdown.clone()
    }

    /// Queues a run of `pipeline`, or joins the one already queued/running.
    pub async fn trigger(
        &self,
        pipeline: &str,
        kind: TriggerKind,
        check_first: bool,
    ) -> Result<Enqueued, DaemonError> {
        let now = self.shared.clock.now();
        self.trigger_at(pipeline, kind, check_first, now).await
    }

    /// A manual run of `pipeline` on `branch` (tags suffixed, never
    /// approvable; see [`crate::branch`]), or the branch's active run.
    pub async fn trigger_branch(
        &self,
        pipeline: &str,
        branch: &crate::branch::BranchName,
    ) -> Result<Enqueued, DaemonError> {
        let now = self.shared.clock.now();
        self.enqueue(pipeline, Some(branch), TriggerKind::Manual, false, now)
            .await
    }

    /// [`DaemonState::trigger`] with the queue time given: the scheduler
    /// passes the slot instant, so every run of one slot has the same queue
    /// time and can share registry lookups begun at or after it.
    pub async fn trigger_at(
        &self,
        pipeline: &str,
        kind: TriggerKind,
        check_first: bool,
        now: DateTime<Utc>,
    ) -> Result<Enqueued, DaemonError> {
        self.enqueue(pipeline, None, kind, check_first, now).await
    }

    async fn enqueue(
        &self,
        pipeline: &str,
        branch: Option<&crate::branch::BranchName>,
        kind: TriggerKind,
        check_first: bool,
        now: DateTime<Utc>,
    ) -> Result<Enqueued, DaemonError> {
        let platform = self.platform_of(pipeline)?;
        let mut run = NewRun::main(pipeline, (kind, check_first), now, platform.as_deref());
        run.branch = branch.map(|b| b.as_str());
        let result = self.shared.queue.enqueue(run).await?;
        self.announce(&result, kind);
        Ok(result)
    }

    /// Queues the run of schedule slot `slot` of `pipeline` (queue time
    /// `queued_at`) once across every daemon sharing the queue; `None` when
    /// another node fired it.
    pub async fn fire_slot(
        &self,
        pipeline: &str,
        (kind, check_first): (TriggerKind, bool),
        slot: DateTime<Utc>,
        queued_at: DateTime<Utc>,
    ) -> Result<Option<Enqueued>, DaemonError> {
        let platform = self.platform_of(pipeline)?;
        let run = NewRun::main(
            pipeline,
            (kind, check_first),
            queued_at,
            platform.as_deref(),
        );
        let result = self.shared.queue.fire_slot(run, slot).await?;
        if let Some(r) = &result {
            self.announce(r, kind);
        }
        Ok(result)
    }

    /// The platform `pipeline` builds (`None` when its recipe does not
    /// load); an unknown pipeline is an error.
    fn platform_of(&self, pipeline: &str) -> Result<Option<String>, DaemonError> {
        match self.catalog().get(pipeline) {
            Some(info) => Ok(info.platform.clone()),
            None => Err(DaemonError::UnknownPipeline {
                name: pipeline.to_string(),
            }),
        }
    }

    /// Logs a queued or joined run and wakes the dispatcher for a new one.
    fn announce(&self, result: &Enqueued, kind: TriggerKind) {
        match result {
            Enqueued::Created(run) => {
                tracing::info!(run = %run.id, pipeline = %run.pipeline, trigger = kind.as_str(),
                    "run queued");
                self.shared.wake.notify_one();
            }
            Enqueued::Joined(run) => {
                tracing::info!(run = %run.id, pipeline = %run.pipeline,
                    "trigger joined the active run");
            }
        }
    }

    /// Cancels a run: a queued one ends at once, a running one is told to
    /// stop through its cancellation token.
    pub async fn cancel(&self, id: &str) -> Result<RunRow, DaemonError> {
        let run = self.shared.queue.get(id).await?;
        let run = run.ok_or_else(|| DaemonError::UnknownRun { id: id.to_string() })?;
        match run.status {
            RunState::Queued => {
                let now = self.shared.clock.now();
                let summary = "cancelled before it started";
                if self.shared.queue.cancel_queued(id, summary, now).await? {
                    self.shared.metrics.run_finished(RunState::Cancelled);
                    let run = self.shared.queue.get(id).await?.unwrap_or(run);
                    self.broadcast_end(run.clone());
                    return Ok(run);
                }
                Ok(self.shared.queue.get(id).await?.unwrap_or(run))
            }
            RunState::Running => {
                // Another node runs it: ask it through the queue.
                if !self.cancel_local(id) {
                    self.shared.queue.request_cancel(id).await?;
                }
                Ok(run)
            }
            state => Err(DaemonError::RunFinished {
                id: id.to_string(),
                state: state.as_str(),
            }),
        }
    }

    /// Re-reads the config file (tokens, grace) and the recipes, and
    /// restarts the scheduler. `listen` and `concurrency` need a restart.
    pub async fn reload(&self) -> Result<(), DaemonError> {
        if let Some(path) = &self.shared.config_path {
            let config = DaemonConfig::load(path)?;
            *self
                .shared
                .config
                .write()
                .unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
        }
        let project = self.shared.project.clone();
        let catalog = tokio::task::spawn_blocking(move || Catalog::load(&project))
            .await
            .map_err(|_| DaemonError::Task)?;
        *self
            .shared
            .catalog
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Arc::new(catalog);
        super::scheduler::restart(self, false);
        tracing::info!("configuration and recipes reloaded");
        Ok(())
    }

    /// The record store (a cheap handle).
    pub fn records(&self) -> Records {
        self.shared.records.clone()
    }

    /// Records an approval decision by `by` on `build` (signed with the
    /// daemon's key) and, for an approval, promotes the build through the
    /// runner. Returns the decision and the promotions.
    pub async fn decide(
        &self,
        build: &str,
        decision: crate::record::Decision,
        by: String,
        note: Option<String>,
    ) -> Result<crate::pipeline::Decided, DaemonError> {
        let selector: crate::record::Selector = build.parse()?;
        let (record, event) = self
            .records()
            .decide(&selector, decision, &by, note)
            .await?;
        let promotions = match decision {
            crate::record::Decision::Approve => self
                .shared
                .runner
                .promote_approved(&record, &by)
                .await
                .map_err(|e| DaemonError::Promotion(Box::new(e)))?,
            crate::record::Decision::Reject => Vec::new(),
        };
        Ok(crate::pipeline::Decided {
            record,
            decision: event,
            promotions,
        })
    }

    /// Cancels run `id` if it runs in this process; whether it does.
    pub(super) fn cancel_local(&self, id: &str) -> bool {
        let active = self.shared.active.lock().unwrap_or_else(|p| p.into_inner());
        match active.get(id) {
            Some(token) => {
                token.cancel();
                true
            }
            None => false,
        }
    }

    pub(super) fn broadcast_end(&self, run: RunRow) {
        let _ = self.shared.events.send(Arc::new(LiveEvent {
            run_id: run.id.clone(),
            kind: LiveKind::End(run),
        }));
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Lookup and rate-limit figures of the runner's registry client.
    pub fn registry_stats(&self) -> Vec<crate::registry::RegistryStats> {
        self.shared.runner.registry_stats()
    }
}

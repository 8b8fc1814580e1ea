//! The run queue of one host: runs and their log events in SQLite (the
//! tables of migration 2 in [`crate::record::schema`]). Every state change is one transaction:
//! runs are queued, claimed and finished atomically, and a partial unique
//! index keeps at most one queued/running run per pipeline and branch, so a
//! second trigger joins the active run instead of starting a duplicate.
//!
//! The functions are synchronous (rusqlite); [`Queue`] runs them on the
//! blocking pool over one connection.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use async_trait::async_trait;

use super::{Claimed, Enqueued, NewRun, NodeView, QueueError, Recovered, RunEnd, RunQueue};
use crate::daemon::cluster::NodeInfo;
use crate::daemon::run::{RunRow, RunState, StoredEvent, TriggerKind, new_run_id};
use crate::daemon::runner::{EventKind, LogEvent};
use crate::pipeline::FailureKind;
use crate::record::Store;

/// The run queue: one SQLite connection, used from the blocking pool.
#[derive(Debug, Clone)]
pub struct Queue {
    conn: Arc<Mutex<Connection>>,
    /// Callers wait for the one connection here, not on a blocking thread:
    /// a slot of N runs would otherwise park up to N pool threads (and
    /// their memory) on the connection's lock.
    turn: Arc<tokio::sync::Semaphore>,
    path: PathBuf,
    /// This host as a node (`GET /v1/nodes`; the node of its started runs).
    node: Option<Arc<NodeInfo>>,
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn parse_ts(s: Option<String>) -> Option<DateTime<Utc>> {
    s.and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
        .map(|t| t.with_timezone(&Utc))
}

const RUN_COLUMNS: &str = "id, pipeline, trigger, check_first, status, summary, record_id, \
                           retry_of, queued_at, started_at, finished_at, branch, failure";

fn run_from_sql(r: &Row<'_>) -> rusqlite::Result<RunRow> {
    let bad = |i, what: &str| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("unknown {what}").into(),
        )
    };
    Ok(RunRow {
        id: r.get(0)?,
        pipeline: r.get(1)?,
        trigger: TriggerKind::parse(&r.get::<_, String>(2)?).ok_or_else(|| bad(2, "trigger"))?,
        check_first: r.get(3)?,
        status: RunState::parse(&r.get::<_, String>(4)?).ok_or_else(|| bad(4, "status"))?,
        summary: r.get(5)?,
        record_id: r.get(6)?,
        retry_of: r.get(7)?,
        queued_at: parse_ts(r.get(8)?).ok_or_else(|| bad(8, "timestamp"))?,
        started_at: parse_ts(r.get(9)?),
        finished_at: parse_ts(r.get(10)?),
        branch: r.get(11)?,
        failure: r
            .get::<_, Option<String>>(12)?
            .map(|f| FailureKind::parse(&f).ok_or_else(|| bad(12, "failure")))
            .transpose()?,
        node: None,
    })
}

fn get(conn: &Connection, id: &str) -> rusqlite::Result<Option<RunRow>> {
    conn.query_row(
        &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"),
        [id],
        run_from_sql,
    )
    .optional()
}

fn insert(
    conn: &Connection,
    pipeline: &str,
    branch: Option<&str>,
    trigger: TriggerKind,
    check_first: bool,
    retry_of: Option<&str>,
    now: DateTime<Utc>,
) -> rusqlite::Result<RunRow> {
    let id = new_run_id(now);
    conn.execute(
        "INSERT INTO runs (id, pipeline, trigger, check_first, status, retry_of, queued_at, branch) \
         VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?6, ?7)",
        params![
            id,
            pipeline,
            trigger.as_str(),
            check_first,
            retry_of,
            ts(now),
            branch
        ],
    )?;
    get(conn, &id).map(|r| r.expect("row just inserted"))
}

impl Queue {
    /// Opens the database at `path` (creating and migrating it through
    /// [`Store::open`]) for the queue.
    pub fn open(path: &Path) -> Result<Queue, QueueError> {
        drop(Store::open(path)?);
        let err = |operation| {
            move |source| QueueError::Database {
                operation,
                path: path.to_path_buf(),
                source,
            }
        };
        let conn = Connection::open(path).map_err(err("opening the database"))?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(err("setting the busy timeout"))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err("switching to WAL mode"))?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err("setting synchronous mode"))?;
        Ok(Queue {
            conn: Arc::new(Mutex::new(conn)),
            turn: Arc::new(tokio::sync::Semaphore::new(1)),
            path: path.to_path_buf(),
            node: None,
        })
    }

    /// This queue with `node` as the host's identity: the node of the runs
    /// it starts, and the one node it lists.
    pub fn with_node(mut self, node: NodeInfo) -> Queue {
        self.node = Some(Arc::new(node));
        self
    }

    /// `run` with this host as the node of a started run.
    fn stamped(&self, mut run: RunRow) -> RunRow {
        if run.started_at.is_some() {
            run.node = self.node.as_ref().map(|n| n.id.clone());
        }
        run
    }

    /// Runs `f` on the connection, on the blocking pool.
    async fn call<T: Send + 'static>(
        &self,
        operation: &'static str,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, QueueError> {
        let _turn = self.turn.acquire().await;
        let conn = self.conn.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard).map_err(|source| QueueError::Database {
                operation,
                path,
                source,
            })
        })
        .await
        .map_err(|_| QueueError::Task { operation })?
    }

    /// Queues a run of `pipeline` (main branch), or joins the active one.
    pub async fn enqueue(
        &self,
        pipeline: &str,
        trigger: TriggerKind,
        check_first: bool,
        now: DateTime<Utc>,
    ) -> Result<Enqueued, QueueError> {
        self.enqueue_on(pipeline, None, trigger, check_first, now)
            .await
    }

    /// [`Queue::enqueue`] for `branch` (`None`: the main pipeline): runs of
    /// different branches of one pipeline queue side by side.
    pub async fn enqueue_on(
        &self,
        pipeline: &str,
        branch: Option<&str>,
        trigger: TriggerKind,
        check_first: bool,
        now: DateTime<Utc>,
    ) -> Result<Enqueued, QueueError> {
        let mut run = NewRun::main(pipeline, (trigger, check_first), now, None);
        run.branch = branch;
        RunQueue::enqueue(self, run).await
    }

    /// Claims the oldest queued run: marks it `running` and returns it.
    pub async fn claim_next(&self, now: DateTime<Utc>) -> Result<Option<RunRow>, QueueError> {
        Ok(self.claim(now).await?.map(|c| c.run))
    }

    /// Ends a queued or running run in `state` (with the kind of failure of
    /// a failed one). Returns `false` if it had already ended.
    pub async fn finish(
        &self,
        id: &str,
        (state, failure): (RunState, Option<FailureKind>),
        summary: &str,
        record_id: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<bool, QueueError> {
        let (id, summary) = (id.to_string(), summary.to_string());
        let failure = failure.map(FailureKind::as_str);
        self.call("finishing a run", move |conn| {
            let n = conn.execute(
                "UPDATE runs SET status = ?2, summary = ?3, record_id = ?4, finished_at = ?5, \
                 failure = ?6 WHERE id = ?1 AND status IN ('queued', 'running')",
                params![id, state.as_str(), summary, record_id, ts(now), failure],
            )?;
            Ok(n == 1)
        })
        .await
    }

    async fn events(
        &self,
        run_id: &str,
        after: i64,
        stages_only: bool,
    ) -> Result<Vec<StoredEvent>, QueueError> {
        let run_id = run_id.to_string();
        self.call("reading run log lines", move |conn| {
            conn.prepare_cached(
                "SELECT seq, at, kind, stage, text FROM run_events \
                 WHERE run_id = ?1 AND seq > ?2 AND (?3 = 0 OR kind != 'line') ORDER BY seq",
            )?
            .query_map(params![run_id, after, stages_only], |r| {
                Ok(StoredEvent {
                    seq: r.get(0)?,
                    at: parse_ts(r.get(1)?).unwrap_or_default(),
                    kind: EventKind::parse(&r.get::<_, String>(2)?).unwrap_or(EventKind::Line),
                    stage: r.get(3)?,
                    text: r.get(4)?,
                })
            })?
            .collect()
        })
        .await
    }

    /// Runs `f` on the connection (tests: put rows in the state a killed
    /// daemon leaves).
    pub async fn with_connection<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, QueueError> {
        self.call("running a statement", f).await
    }
}

/// The active run of `pipeline` and `branch` joined (upgraded to a full run
/// when `check_first` is off), or a new one queued.
fn enqueue_tx(conn: &mut Connection, run: &OwnedRun) -> rusqlite::Result<Enqueued> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let active = tx
        .query_row(
            &format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE pipeline = ?1 \
                 AND branch IS ?2 AND status IN ('queued', 'running')"
            ),
            params![run.pipeline, run.branch],
            run_from_sql,
        )
        .optional()?;
    let result = match active {
        // A build request upgrades a queued "check first" refresh.
        Some(active)
            if active.status == RunState::Queued && active.check_first && !run.check_first =>
        {
            tx.execute(
                "UPDATE runs SET check_first = 0 WHERE id = ?1",
                [&active.id],
            )?;
            Enqueued::Joined(get(&tx, &active.id)?.expect("row exists"))
        }
        Some(active) => Enqueued::Joined(active),
        None => Enqueued::Created(insert(
            &tx,
            &run.pipeline,
            run.branch.as_deref(),
            run.trigger,
            run.check_first,
            None,
            run.queued_at,
        )?),
    };
    tx.commit()?;
    Ok(result)
}

/// A [`NewRun`] the blocking pool can own.
struct OwnedRun {
    pipeline: String,
    branch: Option<String>,
    trigger: TriggerKind,
    check_first: bool,
    queued_at: DateTime<Utc>,
}

impl From<NewRun<'_>> for OwnedRun {
    fn from(r: NewRun<'_>) -> Self {
        OwnedRun {
            pipeline: r.pipeline.to_string(),
            branch: r.branch.map(str::to_string),
            trigger: r.trigger,
            check_first: r.check_first,
            queued_at: r.queued_at,
        }
    }
}

/// Marks the oldest queued run `running`.
fn claim_tx(conn: &mut Connection, now: DateTime<Utc>) -> rusqlite::Result<Option<RunRow>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let id: Option<String> = tx
        .query_row(
            "SELECT id FROM runs WHERE status = 'queued' ORDER BY seq LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    let Some(id) = id else { return Ok(None) };
    tx.execute(
        "UPDATE runs SET status = 'running', started_at = ?2 WHERE id = ?1",
        params![id, ts(now)],
    )?;
    let run = get(&tx, &id)?;
    tx.commit()?;
    Ok(run)
}

/// Every run left `running` becomes `interrupted`, with a retry queued.
fn recover_tx(conn: &mut Connection, now: DateTime<Utc>) -> rusqlite::Result<Vec<Recovered>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let stale: Vec<RunRow> = tx
        .prepare(&format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE status = 'running' ORDER BY seq"
        ))?
        .query_map([], run_from_sql)?
        .collect::<rusqlite::Result<_>>()?;
    let mut out = Vec::new();
    for old in stale {
        tx.execute(
            "UPDATE runs SET status = 'interrupted', finished_at = ?2, \
             summary = 'the daemon stopped while this run was running' WHERE id = ?1",
            params![old.id, ts(now)],
        )?;
        let branch = old.branch.as_deref();
        let (trigger, check) = (TriggerKind::Retry, old.check_first);
        let retry = insert(
            &tx,
            &old.pipeline,
            branch,
            trigger,
            check,
            Some(&old.id),
            now,
        )?;
        let run = get(&tx, &old.id)?.expect("row exists");
        out.push(Recovered {
            run,
            retry: Some(retry),
        });
    }
    tx.commit()?;
    Ok(out)
}

/// Appends events after the run's last number, in one `IMMEDIATE`
/// transaction: it reads the last number and then writes, and a deferred
/// one that starts reading while a pipeline's record store writes the same
/// file fails at once with `SQLITE_BUSY` (the busy timeout does not apply
/// to a read turning into a write).
fn append_tx(
    conn: &mut Connection,
    run_id: &str,
    events: Vec<LogEvent>,
    now: DateTime<Utc>,
) -> rusqlite::Result<Vec<StoredEvent>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut seq: i64 = tx.query_row(
        "SELECT COALESCE(MAX(seq), 0) FROM run_events WHERE run_id = ?1",
        [run_id],
        |r| r.get(0),
    )?;
    let mut stored = Vec::with_capacity(events.len());
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO run_events (run_id, seq, at, kind, stage, text) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for e in events {
            seq += 1;
            let kind = e.kind.as_str();
            stmt.execute(params![run_id, seq, ts(now), kind, e.stage, e.text])?;
            stored.push(StoredEvent {
                seq,
                at: now,
                kind: e.kind,
                stage: e.stage,
                text: e.text,
            });
        }
    }
    tx.commit()?;
    Ok(stored)
}

/// This host's runs by state.
fn counts(conn: &mut Connection) -> rusqlite::Result<std::collections::BTreeMap<String, i64>> {
    conn.prepare_cached(
        "SELECT status, count(*) FROM runs WHERE started_at IS NOT NULL GROUP BY status",
    )?
    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
    .collect()
}

#[async_trait]
impl RunQueue for Queue {
    async fn enqueue(&self, run: NewRun<'_>) -> Result<Enqueued, QueueError> {
        let run = OwnedRun::from(run);
        let done = self.call("queueing a run", move |c| enqueue_tx(c, &run));
        Ok(match done.await? {
            Enqueued::Created(r) => Enqueued::Created(self.stamped(r)),
            Enqueued::Joined(r) => Enqueued::Joined(self.stamped(r)),
        })
    }

    async fn fire_slot(
        &self,
        run: NewRun<'_>,
        _slot: DateTime<Utc>,
    ) -> Result<Option<Enqueued>, QueueError> {
        // One daemon per file: its scheduler alone fires the slot.
        RunQueue::enqueue(self, run).await.map(Some)
    }

    async fn claim(&self, now: DateTime<Utc>) -> Result<Option<Claimed>, QueueError> {
        let run = self
            .call("claiming a run", move |c| claim_tx(c, now))
            .await?;
        Ok(run.map(|r| Claimed {
            run: self.stamped(r),
            fence: None,
        }))
    }

    async fn append_events(
        &self,
        run_id: &str,
        events: Vec<LogEvent>,
        now: DateTime<Utc>,
    ) -> Result<Vec<StoredEvent>, QueueError> {
        let run_id = run_id.to_string();
        self.call("writing run log lines", move |c| {
            append_tx(c, &run_id, events, now)
        })
        .await
    }

    async fn finish(
        &self,
        run_id: &str,
        end: RunEnd<'_>,
        now: DateTime<Utc>,
    ) -> Result<bool, QueueError> {
        let record = end.record_id.map(str::to_string);
        Queue::finish(
            self,
            run_id,
            (end.state, end.failure),
            end.summary,
            record,
            now,
        )
        .await
    }

    async fn cancel_queued(
        &self,
        run_id: &str,
        summary: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, QueueError> {
        let (id, summary) = (run_id.to_string(), summary.to_string());
        self.call("cancelling a queued run", move |conn| {
            let n = conn.execute(
                "UPDATE runs SET status = 'cancelled', summary = ?2, finished_at = ?3 \
                 WHERE id = ?1 AND status = 'queued'",
                params![id, summary, ts(now)],
            )?;
            Ok(n == 1)
        })
        .await
    }

    async fn request_cancel(&self, _run_id: &str) -> Result<bool, QueueError> {
        // Every running run of this file runs in this process, whose
        // cancellation tokens the daemon holds.
        Ok(false)
    }

    async fn recover(&self, now: DateTime<Utc>) -> Result<Vec<Recovered>, QueueError> {
        let found = self.call("recovering interrupted runs", move |c| recover_tx(c, now));
        Ok(found
            .await?
            .into_iter()
            .map(|r| Recovered {
                run: self.stamped(r.run),
                retry: r.retry,
            })
            .collect())
    }

    async fn get(&self, id: &str) -> Result<Option<RunRow>, QueueError> {
        let id = id.to_string();
        let run = self
            .call("reading a run", move |conn| get(conn, &id))
            .await?;
        Ok(run.map(|r| self.stamped(r)))
    }

    async fn list(
        &self,
        pipeline: Option<String>,
        limit: usize,
    ) -> Result<Vec<RunRow>, QueueError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let runs = self.call("listing runs", move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE (?1 IS NULL OR pipeline = ?1) \
                 ORDER BY seq DESC LIMIT ?2"
            ))?
            .query_map(params![pipeline, limit], run_from_sql)?
            .collect::<rusqlite::Result<Vec<_>>>()
        });
        Ok(runs.await?.into_iter().map(|r| self.stamped(r)).collect())
    }

    async fn last_queued_at(&self, pipeline: &str) -> Result<Option<DateTime<Utc>>, QueueError> {
        let pipeline = pipeline.to_string();
        self.call("reading the last run", move |conn| {
            conn.query_row(
                "SELECT queued_at FROM runs WHERE pipeline = ?1 ORDER BY seq DESC LIMIT 1",
                [pipeline],
                |r| r.get::<_, String>(0),
            )
            .optional()
            .map(parse_ts)
        })
        .await
    }

    async fn depth(&self) -> Result<(i64, i64), QueueError> {
        self.call("counting runs", |conn| {
            conn.query_row(
                "SELECT COALESCE(SUM(status = 'queued'), 0), COALESCE(SUM(status = 'running'), 0) \
                 FROM runs WHERE status IN ('queued', 'running')",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })
        .await
    }

    async fn events_after(&self, run_id: &str, after: i64) -> Result<Vec<StoredEvent>, QueueError> {
        self.events(run_id, after, false).await
    }

    async fn stage_events(&self, run_id: &str) -> Result<Vec<StoredEvent>, QueueError> {
        self.events(run_id, 0, true).await
    }

    async fn nodes(&self) -> Result<Vec<NodeView>, QueueError> {
        let Some(node) = self.node.clone() else {
            return Ok(Vec::new());
        };
        let runs = self.call("counting runs", counts).await?;
        Ok(vec![NodeView::of(&node, 0.0, runs)])
    }

    fn lock_path(&self) -> Option<&Path> {
        Some(&self.path)
    }
}

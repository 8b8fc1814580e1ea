//! The persistent run queue and run log in SQLite (the tables of migration 2
//! in [`crate::record::schema`]). Every state change is one transaction:
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

use super::run::{RunRow, RunState, StoredEvent, TriggerKind, new_run_id};
use super::runner::{EventKind, LogEvent};
use crate::pipeline::FailureKind;
use crate::record::{RecordError, Store};

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
        path: PathBuf,
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
}

/// What [`Queue::enqueue`] did.
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

/// The run queue: one SQLite connection, used from the blocking pool.
#[derive(Debug, Clone)]
pub struct Queue {
    conn: Arc<Mutex<Connection>>,
    /// Callers wait for the one connection here, not on a blocking thread:
    /// a slot of N runs would otherwise park up to N pool threads (and
    /// their memory) on the connection's lock.
    turn: Arc<tokio::sync::Semaphore>,
    path: PathBuf,
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
        })
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

    /// Queues a run of `pipeline`, or joins the one already queued/running.
    /// Joining a queued check-first run without `check_first` makes it a
    /// full run.
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
        let pipeline = pipeline.to_string();
        let branch = branch.map(str::to_string);
        self.call("queueing a run", move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let active = tx
                .query_row(
                    &format!(
                        "SELECT {RUN_COLUMNS} FROM runs WHERE pipeline = ?1 \
                         AND branch IS ?2 AND status IN ('queued', 'running')"
                    ),
                    params![pipeline, branch],
                    run_from_sql,
                )
                .optional()?;
            let result = match active {
                // A build request upgrades a queued "check first" refresh.
                Some(run) if run.status == RunState::Queued && run.check_first && !check_first => {
                    tx.execute("UPDATE runs SET check_first = 0 WHERE id = ?1", [&run.id])?;
                    Enqueued::Joined(get(&tx, &run.id)?.expect("row exists"))
                }
                Some(run) => Enqueued::Joined(run),
                None => {
                    let b = branch.as_deref();
                    Enqueued::Created(insert(&tx, &pipeline, b, trigger, check_first, None, now)?)
                }
            };
            tx.commit()?;
            Ok(result)
        })
        .await
    }

    /// Claims the oldest queued run: marks it `running` and returns it.
    pub async fn claim_next(&self, now: DateTime<Utc>) -> Result<Option<RunRow>, QueueError> {
        self.call("claiming a run", move |conn| {
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
        })
        .await
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

    /// Crash recovery: every run left `running` becomes `interrupted`, and a
    /// retry (`retry_of` the old id) is queued for its pipeline, all in one
    /// transaction. Returns (interrupted, retry) pairs.
    pub async fn recover(&self, now: DateTime<Utc>) -> Result<Vec<(RunRow, RunRow)>, QueueError> {
        self.call("recovering interrupted runs", move |conn| {
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
                let retry = insert(
                    &tx,
                    &old.pipeline,
                    old.branch.as_deref(),
                    TriggerKind::Retry,
                    old.check_first,
                    Some(&old.id),
                    now,
                )?;
                let old = get(&tx, &old.id)?.expect("row exists");
                out.push((old, retry));
            }
            tx.commit()?;
            Ok(out)
        })
        .await
    }

    /// One run.
    pub async fn get(&self, id: &str) -> Result<Option<RunRow>, QueueError> {
        let id = id.to_string();
        self.call("reading a run", move |conn| get(conn, &id)).await
    }

    /// Runs newest first, optionally of one pipeline.
    pub async fn list(
        &self,
        pipeline: Option<String>,
        limit: usize,
    ) -> Result<Vec<RunRow>, QueueError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.call("listing runs", move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE (?1 IS NULL OR pipeline = ?1) \
                 ORDER BY seq DESC LIMIT ?2"
            ))?
            .query_map(params![pipeline, limit], run_from_sql)?
            .collect()
        })
        .await
    }

    /// When the newest run of `pipeline` was queued (any trigger).
    pub async fn last_queued_at(
        &self,
        pipeline: &str,
    ) -> Result<Option<DateTime<Utc>>, QueueError> {
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

    /// The number of queued and of running runs.
    pub async fn depth(&self) -> Result<(i64, i64), QueueError> {
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

    /// Appends events to a run's log, numbering them after the last one, in
    /// one transaction. Returns them as stored.
    ///
    /// The transaction is `IMMEDIATE`: it reads the last number and then
    /// writes, and a deferred one that starts reading while a pipeline's
    /// record store writes the same file fails at once with `SQLITE_BUSY`
    /// (the busy timeout does not apply to a read turning into a write).
    pub async fn append_events(
        &self,
        run_id: &str,
        events: Vec<LogEvent>,
        now: DateTime<Utc>,
    ) -> Result<Vec<StoredEvent>, QueueError> {
        let run_id = run_id.to_string();
        self.call("writing run log lines", move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut seq: i64 = tx.query_row(
                "SELECT COALESCE(MAX(seq), 0) FROM run_events WHERE run_id = ?1",
                [&run_id],
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
                    stmt.execute(params![
                        run_id,
                        seq,
                        ts(now),
                        e.kind.as_str(),
                        e.stage,
                        e.text
                    ])?;
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
        })
        .await
    }

    /// A run's log events with `seq > after`, in order.
    pub async fn events_after(
        &self,
        run_id: &str,
        after: i64,
    ) -> Result<Vec<StoredEvent>, QueueError> {
        self.events(run_id, after, false).await
    }

    /// A run's stage events (no log lines), in order.
    pub async fn stage_events(&self, run_id: &str) -> Result<Vec<StoredEvent>, QueueError> {
        self.events(run_id, 0, true).await
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

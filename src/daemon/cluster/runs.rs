//! The daemon's writes to the shared queue besides claims: queue-or-join
//! (one active run per pipeline and branch), fenced log batches, cancels,
//! and a restarting node's recovery of the runs it left behind.

use chrono::{DateTime, Utc};
use tokio_postgres::error::SqlState;

use super::claims::{Claim, Enqueue, RETRY_COLUMNS, insert_run, queue_retry};
use super::reads::{RUN_COLUMNS, run_from_row};
use super::{Cluster, ClusterError};
use crate::daemon::run::RunRow;

/// A log event to append: `(kind, stage, text)`.
pub type EventText<'a> = (&'a str, Option<&'a str>, &'a str);

impl Cluster {
    /// Queues `run`, or joins the pipeline's (and branch's) active run —
    /// upgrading a queued check-first run when `run` is a full one.
    /// Returns whether a run was created, and the run.
    pub async fn enqueue_or_join(&self, run: Enqueue<'_>) -> Result<(bool, RunRow), ClusterError> {
        let mut client = self.client().await?;
        let err = self.db("queueing a run");
        loop {
            let tx = client.transaction().await.map_err(&err)?;
            let joined = tx
                .query_opt(
                    &format!(
                        "UPDATE cluster_runs SET check_first = CASE WHEN status = 'queued' \
                         THEN check_first AND $3 ELSE check_first END \
                         WHERE pipeline = $1 AND coalesce(branch, '') = coalesce($2, '') \
                         AND status IN ('queued', 'running') RETURNING {RUN_COLUMNS}"
                    ),
                    &[&run.pipeline, &run.branch, &run.check_first],
                )
                .await
                .map_err(&err)?;
            if let Some(row) = joined {
                tx.commit().await.map_err(&err)?;
                return Ok((false, run_from_row(&row)));
            }
            // `None`: another node queued one between the two statements.
            if let Some(id) = insert_run(&tx, run, None).await.map_err(&err)? {
                let row = run_in(&tx, &id).await.map_err(&err)?;
                tx.commit().await.map_err(&err)?;
                return Ok((true, row));
            }
        }
    }

    /// The active (queued or running) run of `pipeline` and `branch`.
    pub async fn active_run(
        &self,
        pipeline: &str,
        branch: Option<&str>,
    ) -> Result<Option<RunRow>, ClusterError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT {RUN_COLUMNS} FROM cluster_runs WHERE pipeline = $1 \
                     AND coalesce(branch, '') = coalesce($2, '') \
                     AND status IN ('queued', 'running')"
                ),
                &[&pipeline, &branch],
            )
            .await
            .map_err(self.db("reading the active run"))?;
        Ok(row.as_ref().map(run_from_row))
    }

    /// Appends `events` to a claimed run's log after its last line, stamped
    /// `at`, in one statement; [`ClusterError::Fenced`] (nothing written)
    /// unless `claim` is the run's current claim. Returns their numbers.
    pub async fn log_batch(
        &self,
        claim: &Claim,
        events: &[EventText<'_>],
        at: DateTime<Utc>,
    ) -> Result<Vec<i64>, ClusterError> {
        let kinds: Vec<&str> = events.iter().map(|e| e.0).collect();
        let stages: Vec<Option<&str>> = events.iter().map(|e| e.1).collect();
        let texts: Vec<&str> = events.iter().map(|e| e.2).collect();
        let client = self.client().await?;
        let done = client
            .query(
                "INSERT INTO cluster_run_events (run, seq, epoch, node, kind, stage, text, at) \
                 SELECT $1, m.s + t.n, $2, $3, t.kind, t.stage, t.text, \
                 to_timestamp($7::int8 / 1000.0) \
                 FROM (SELECT coalesce(max(seq), 0) AS s FROM cluster_run_events \
                       WHERE run = $1) m, \
                 unnest($4::text[], $5::text[], $6::text[]) WITH ORDINALITY \
                 AS t(kind, stage, text, n) RETURNING seq",
                &[
                    &claim.run,
                    &claim.epoch,
                    &claim.node,
                    &kinds,
                    &stages,
                    &texts,
                    &at.timestamp_millis(),
                ],
            )
            .await;
        match done {
            Ok(rows) => {
                let mut seqs: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
                seqs.sort_unstable();
                Ok(seqs)
            }
            Err(e) if e.code() == Some(&SqlState::RAISE_EXCEPTION) => Err(ClusterError::Fenced {
                run: claim.run.clone(),
                epoch: claim.epoch,
            }),
            Err(e) => Err(self.db("appending log lines")(e)),
        }
    }

    /// Ends a queued run as `cancelled`; `false` when it was not queued.
    pub async fn cancel_queued(&self, id: &str, summary: &str) -> Result<bool, ClusterError> {
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE cluster_runs SET status = 'cancelled', summary = $2, \
                 finished_at = now() WHERE id = $1 AND status = 'queued'",
                &[&id, &summary],
            )
            .await
            .map_err(self.db("cancelling a queued run"))?;
        Ok(n == 1)
    }

    /// Asks the holder of a running run to cancel it; `false` when it is
    /// not running.
    pub async fn request_cancel(&self, id: &str) -> Result<bool, ClusterError> {
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE cluster_runs SET cancel_requested = true \
                 WHERE id = $1 AND status = 'running'",
                &[&id],
            )
            .await
            .map_err(self.db("asking for a cancel"))?;
        Ok(n == 1)
    }

    /// The runs `node` holds whose cancel was asked for.
    pub async fn cancels_for(&self, node: &str) -> Result<Vec<String>, ClusterError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id FROM cluster_runs WHERE node = $1 AND status = 'running' \
                 AND cancel_requested",
                &[&node],
            )
            .await
            .map_err(self.db("reading asked cancels"))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// At a node's start: the runs it left `running` become `interrupted`
    /// (a new epoch fences the previous incarnation) with a retry each, and
    /// the runs reapers interrupted under it are marked cleaned up. Returns
    /// `(run, retry queued now)` for both, for the node to clean its engine.
    pub async fn recover_node(
        &self,
        node: &str,
    ) -> Result<Vec<(RunRow, Option<String>)>, ClusterError> {
        let mut client = self.client().await?;
        let err = self.db("recovering the node's runs");
        let tx = client.transaction().await.map_err(&err)?;
        let left = tx
            .query(
                &format!(
                    "UPDATE cluster_runs SET status = 'interrupted', epoch = epoch + 1, \
                 finished_at = now(), lease_until = NULL, cleaned_at = now(), \
                 summary = 'node ' || node || ' restarted while this run was running; retried' \
                 WHERE node = $1 AND status = 'running' RETURNING {RETRY_COLUMNS}",
                ),
                &[&node],
            )
            .await
            .map_err(&err)?;
        let mut out = Vec::new();
        for r in &left {
            out.push(queue_retry(&tx, r).await.map_err(&err)?);
        }
        let reaped = tx
            .query(
                "UPDATE cluster_runs SET cleaned_at = now() \
                 WHERE node = $1 AND status = 'interrupted' AND cleaned_at IS NULL RETURNING id",
                &[&node],
            )
            .await
            .map_err(&err)?;
        out.extend(reaped.iter().map(|r| (r.get(0), None)));
        let mut runs = Vec::new();
        for (id, retry) in out {
            runs.push((run_in(&tx, &id).await.map_err(&err)?, retry));
        }
        tx.commit().await.map_err(&err)?;
        Ok(runs)
    }
}

/// Run `id`, read inside `tx`.
async fn run_in(
    tx: &tokio_postgres::Transaction<'_>,
    id: &str,
) -> Result<RunRow, tokio_postgres::Error> {
    let sql = format!("SELECT {RUN_COLUMNS} FROM cluster_runs WHERE id = $1");
    Ok(run_from_row(&tx.query_one(&sql, &[&id]).await?))
}

//! Runs in the shared queue: queued by any node, claimed exactly once by a
//! node that can build them, written only under the claim's epoch, and
//! re-queued by any node's reaper when the claim's lease lapses.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_postgres::Transaction;
use tokio_postgres::error::SqlState;

use super::nodes::NodeInfo;
use super::{Cluster, ClusterError};
use crate::daemon::run::new_run_id;

/// A run to queue.
#[derive(Debug, Clone, Copy)]
pub struct Enqueue<'a> {
    /// The recipe.
    pub pipeline: &'a str,
    /// The branch of a branch pipeline run.
    pub branch: Option<&'a str>,
    /// The platform it builds; only nodes whose engine builds it claim it.
    pub platform: &'a str,
    /// Digest of the project checkout it must run on.
    pub checkout: &'a str,
    /// Why (`manual`, `schedule`, `retry`, `catch_up`).
    pub trigger: &'a str,
    /// Ask whether anything moved before building.
    pub check_first: bool,
    /// Its queue time (a scheduled run's slot); `None`: the database's now.
    pub queued_at: Option<DateTime<Utc>>,
}

/// A run a node claimed: what it needs to drive it and to write for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The run id.
    pub run: String,
    /// The recipe.
    pub pipeline: String,
    /// Its branch, if any.
    pub branch: Option<String>,
    /// The node holding it.
    pub node: String,
    /// The claim's epoch: every write for the run carries it.
    pub epoch: i64,
}

/// How a claimed run ended.
#[derive(Debug, Clone, Copy)]
pub struct Finish<'a> {
    /// `passed`, `failed`, `up_to_date`, `cancelled` or `awaiting_approval`.
    pub status: &'a str,
    /// One line for people.
    pub summary: &'a str,
    /// The kind of failure of a failed run.
    pub failure: Option<&'a str>,
    /// The record it appended.
    pub record_id: Option<&'a str>,
}

/// A run whose lease lapsed: marked interrupted, and its retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reaped {
    /// The interrupted run.
    pub run: String,
    /// The node that held it.
    pub node: Option<String>,
    /// The retry queued for it (`None`: the pipeline had a run queued).
    pub retry: Option<String>,
}

impl Cluster {
    /// Queues a run; `None` when the pipeline (and branch) already has one
    /// queued or running.
    pub async fn enqueue(&self, run: Enqueue<'_>) -> Result<Option<String>, ClusterError> {
        let mut client = self.client().await?;
        let err = self.db("queueing a run");
        let tx = client.transaction().await.map_err(&err)?;
        let id = insert_run(&tx, run, None).await.map_err(&err)?;
        tx.commit().await.map_err(&err)?;
        Ok(id)
    }

    /// Claims the oldest queued run `node` can build, with a lease of
    /// `lease` from the database's clock; `None` when there is none.
    pub async fn claim(
        &self,
        node: &NodeInfo,
        lease: Duration,
    ) -> Result<Option<Claim>, ClusterError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "UPDATE cluster_runs r SET status = 'running', node = $1, epoch = r.epoch + 1, \
                 lease_until = now() + make_interval(secs => $4), started_at = now() \
                 FROM (SELECT id FROM cluster_runs WHERE status = 'queued' \
                       AND platform = ANY($2) AND checkout = $3 \
                       ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED) c \
                 WHERE r.id = c.id RETURNING r.id, r.pipeline, r.branch, r.epoch",
                &[
                    &node.id,
                    &node.platforms,
                    &node.checkout,
                    &lease.as_secs_f64(),
                ],
            )
            .await
            .map_err(self.db("claiming a run"))?;
        Ok(row.map(|r| Claim {
            run: r.get(0),
            pipeline: r.get(1),
            branch: r.get(2),
            node: node.id.clone(),
            epoch: r.get(3),
        }))
    }

    /// Appends log line `seq` of a claimed run; refused (by the table's
    /// trigger) unless `claim` is the run's current claim.
    pub async fn log(
        &self,
        claim: &Claim,
        seq: i64,
        (kind, stage, text): (&str, Option<&str>, &str),
    ) -> Result<(), ClusterError> {
        let client = self.client().await?;
        let done = client
            .execute(
                "INSERT INTO cluster_run_events (run, seq, epoch, node, kind, stage, text) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &claim.run,
                    &seq,
                    &claim.epoch,
                    &claim.node,
                    &kind,
                    &stage,
                    &text,
                ],
            )
            .await;
        match done {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(&SqlState::RAISE_EXCEPTION) => Err(fenced(claim)),
            Err(e) => Err(self.db("appending a log line")(e)),
        }
    }

    /// Ends a claimed run; [`ClusterError::Fenced`] (nothing written) unless
    /// `claim` is its current claim and the lease has not lapsed.
    pub async fn finish(&self, claim: &Claim, end: Finish<'_>) -> Result<(), ClusterError> {
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE cluster_runs SET status = $4, summary = $5, failure = $6, \
                 record_id = $7, finished_at = now(), lease_until = NULL \
                 WHERE id = $1 AND epoch = $2 AND node = $3 AND status = 'running' \
                 AND lease_until >= now()",
                &[
                    &claim.run,
                    &claim.epoch,
                    &claim.node,
                    &end.status,
                    &end.summary,
                    &end.failure,
                    &end.record_id,
                ],
            )
            .await
            .map_err(self.db("finishing a run"))?;
        if n == 1 { Ok(()) } else { Err(fenced(claim)) }
    }

    /// Marks every running run whose lease lapsed `interrupted` (a new
    /// epoch, so the old holder can write nothing more) and queues a retry
    /// for each, in one transaction — except a run whose record was already
    /// appended (`Fence::RECORDED_SQL`): its build is recorded, so it is
    /// not retried. Any node may call it, any number of times.
    pub async fn reap(&self) -> Result<Vec<Reaped>, ClusterError> {
        let mut client = self.client().await?;
        let err = self.db("reaping lapsed leases");
        let tx = client.transaction().await.map_err(&err)?;
        tx.execute(
            "UPDATE cluster_runs SET status = 'interrupted', epoch = epoch + 1, \
             finished_at = now(), lease_until = NULL, \
             summary = 'the lease of node ' || coalesce(node, '?') || \
             ' lapsed after its record ' || record_id || ' was written; not retried' \
             WHERE status = 'running' AND lease_until < now() AND record_id IS NOT NULL",
            &[],
        )
        .await
        .map_err(&err)?;
        let lapsed = tx
            .query(
                &format!(
                    "UPDATE cluster_runs SET status = 'interrupted', epoch = epoch + 1, \
                 finished_at = now(), lease_until = NULL, \
                 summary = 'the lease of node ' || coalesce(node, '?') || ' lapsed; retried' \
                 WHERE status = 'running' AND lease_until < now() AND record_id IS NULL \
                 RETURNING {RETRY_COLUMNS}, node"
                ),
                &[],
            )
            .await
            .map_err(&err)?;
        let mut out = Vec::new();
        for r in &lapsed {
            let (run, retry) = queue_retry(&tx, r).await.map_err(&err)?;
            out.push(Reaped {
                run,
                node: r.get(6),
                retry,
            });
        }
        tx.commit().await.map_err(&err)?;
        Ok(out)
    }

    /// Runs newest first: `(id, pipeline, status, node, epoch)`.
    pub async fn runs(
        &self,
        limit: i64,
    ) -> Result<Vec<(String, String, String, Option<String>, i64)>, ClusterError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, pipeline, status, node, epoch FROM cluster_runs \
                 ORDER BY queued_at DESC, id DESC LIMIT $1",
                &[&limit],
            )
            .await
            .map_err(self.db("listing runs"))?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
            .collect())
    }
}

/// The columns of an interrupted run [`queue_retry`] reads, in order.
pub(super) const RETRY_COLUMNS: &str = "id, pipeline, branch, platform, checkout, check_first";

/// Queues the retry of the interrupted run `r` (its [`RETRY_COLUMNS`]
/// first); returns the run's id and the retry's (`None`: the pipeline had
/// an active run).
pub(super) async fn queue_retry(
    tx: &Transaction<'_>,
    r: &tokio_postgres::Row,
) -> Result<(String, Option<String>), tokio_postgres::Error> {
    let (id, pipeline, branch, platform, checkout): (
        String,
        String,
        Option<String>,
        String,
        String,
    ) = (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
    let again = Enqueue {
        pipeline: &pipeline,
        branch: branch.as_deref(),
        platform: &platform,
        checkout: &checkout,
        trigger: "retry",
        check_first: r.get(5),
        queued_at: None,
    };
    let retry = insert_run(tx, again, Some(&id)).await?;
    Ok((id, retry))
}

/// Inserts a queued run (and wakes idle nodes); `None` when the pipeline
/// and branch already have an active run.
pub(super) async fn insert_run(
    tx: &Transaction<'_>,
    run: Enqueue<'_>,
    retry_of: Option<&str>,
) -> Result<Option<String>, tokio_postgres::Error> {
    let id = new_run_id(run.queued_at.unwrap_or_else(Utc::now));
    let queued_ms = run.queued_at.map(|t| t.timestamp_millis());
    let n = tx
        .execute(
            "INSERT INTO cluster_runs (id, pipeline, branch, platform, checkout, trigger, \
             status, retry_of, check_first, queued_at) VALUES ($1, $2, $3, $4, $5, $6, \
             'queued', $7, $8, coalesce(to_timestamp($9::int8 / 1000.0), clock_timestamp())) \
             ON CONFLICT DO NOTHING",
            &[
                &id,
                &run.pipeline,
                &run.branch,
                &run.platform,
                &run.checkout,
                &run.trigger,
                &retry_of,
                &run.check_first,
                &queued_ms,
            ],
        )
        .await?;
    if n == 0 {
        return Ok(None);
    }
    // Only a wake-up call for idle nodes; the table is the truth.
    tx.execute("SELECT pg_notify('kiln_runs', $1)", &[&id])
        .await?;
    Ok(Some(id))
}

fn fenced(claim: &Claim) -> ClusterError {
    ClusterError::Fenced {
        run: claim.run.clone(),
        epoch: claim.epoch,
    }
}

//! What any node's API reads from the shared queue: runs (one, a list, the
//! newest queue time of a pipeline), their log events, the queue's depth
//! and every node's run counts. Times travel as Unix milliseconds, the
//! precision the SQLite queue keeps.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use tokio_postgres::Row;

use super::{Cluster, ClusterError};
use crate::daemon::run::{RunRow, RunState, StoredEvent, TriggerKind};
use crate::daemon::runner::EventKind;
use crate::pipeline::FailureKind;

/// The columns [`run_from_row`] reads, in order.
pub(super) const RUN_COLUMNS: &str = "id, pipeline, trigger, check_first, status, summary, \
    record_id, retry_of, (extract(epoch FROM queued_at) * 1000)::int8, \
    (extract(epoch FROM started_at) * 1000)::int8, \
    (extract(epoch FROM finished_at) * 1000)::int8, branch, failure, node";

fn millis(ms: Option<i64>) -> Option<DateTime<Utc>> {
    ms.and_then(DateTime::from_timestamp_millis)
}

/// A run row; unknown names (a newer node's) read as the closest known.
pub(super) fn run_from_row(r: &Row) -> RunRow {
    RunRow {
        id: r.get(0),
        pipeline: r.get(1),
        trigger: TriggerKind::parse(r.get(2)).unwrap_or(TriggerKind::Manual),
        check_first: r.get(3),
        status: RunState::parse(r.get(4)).unwrap_or(RunState::Failed),
        summary: r.get(5),
        record_id: r.get(6),
        retry_of: r.get(7),
        queued_at: millis(r.get(8)).unwrap_or_default(),
        started_at: millis(r.get(9)),
        finished_at: millis(r.get(10)),
        branch: r.get(11),
        failure: r.get::<_, Option<&str>>(12).and_then(FailureKind::parse),
        node: r.get(13),
    }
}

impl Cluster {
    /// One run.
    pub async fn run(&self, id: &str) -> Result<Option<RunRow>, ClusterError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!("SELECT {RUN_COLUMNS} FROM cluster_runs WHERE id = $1"),
                &[&id],
            )
            .await
            .map_err(self.db("reading a run"))?;
        Ok(row.as_ref().map(run_from_row))
    }

    /// Runs newest first, optionally of one pipeline.
    pub async fn list(
        &self,
        pipeline: Option<&str>,
        limit: i64,
    ) -> Result<Vec<RunRow>, ClusterError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {RUN_COLUMNS} FROM cluster_runs \
                     WHERE ($1::text IS NULL OR pipeline = $1) ORDER BY seq DESC LIMIT $2"
                ),
                &[&pipeline, &limit],
            )
            .await
            .map_err(self.db("listing runs"))?;
        Ok(rows.iter().map(run_from_row).collect())
    }

    /// When the newest run of `pipeline` was queued.
    pub async fn last_queued_at(
        &self,
        pipeline: &str,
    ) -> Result<Option<DateTime<Utc>>, ClusterError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT (extract(epoch FROM queued_at) * 1000)::int8 FROM cluster_runs \
                 WHERE pipeline = $1 ORDER BY seq DESC LIMIT 1",
                &[&pipeline],
            )
            .await
            .map_err(self.db("reading the last run"))?;
        Ok(row.and_then(|r| millis(r.get(0))))
    }

    /// The number of queued and of running runs, cluster-wide.
    pub async fn depth(&self) -> Result<(i64, i64), ClusterError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT count(*) FILTER (WHERE status = 'queued'), \
                 count(*) FILTER (WHERE status = 'running') FROM cluster_runs \
                 WHERE status IN ('queued', 'running')",
                &[],
            )
            .await
            .map_err(self.db("counting runs"))?;
        Ok((row.get(0), row.get(1)))
    }

    /// A run's log events with `seq > after` (only stage events when
    /// `stages_only`), in order.
    pub async fn events(
        &self,
        run: &str,
        after: i64,
        stages_only: bool,
    ) -> Result<Vec<StoredEvent>, ClusterError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT seq, (extract(epoch FROM at) * 1000)::int8, kind, stage, text \
                 FROM cluster_run_events WHERE run = $1 AND seq > $2 \
                 AND (NOT $3 OR kind <> 'line') ORDER BY seq",
                &[&run, &after, &stages_only],
            )
            .await
            .map_err(self.db("reading run log lines"))?;
        Ok(rows
            .iter()
            .map(|r| StoredEvent {
                seq: r.get(0),
                at: millis(r.get(1)).unwrap_or_default(),
                kind: EventKind::parse(r.get(2)).unwrap_or(EventKind::Line),
                stage: r.get(3),
                text: r.get(4),
            })
            .collect())
    }

    /// Every node's runs by state.
    pub async fn run_counts(
        &self,
    ) -> Result<BTreeMap<String, BTreeMap<String, i64>>, ClusterError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT node, status, count(*) FROM cluster_runs \
                 WHERE node IS NOT NULL GROUP BY node, status",
                &[],
            )
            .await
            .map_err(self.db("counting runs per node"))?;
        let mut out: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
        for r in &rows {
            out.entry(r.get(0)).or_default().insert(r.get(1), r.get(2));
        }
        Ok(out)
    }
}

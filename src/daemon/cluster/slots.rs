//! Schedule slots across nodes: every node's scheduler computes the same
//! due slots; the first node to insert `(pipeline, slot)` into
//! `fired_slots` queues the run in the same transaction, the others' inserts
//! change nothing. No leader, no clock agreement needed beyond the slot's
//! own time.

use super::claims::{Enqueue, insert_run};
use super::{Cluster, ClusterError};

/// What firing a slot did on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fired {
    /// This node fired it and queued this run.
    Queued(String),
    /// This node fired it, but the pipeline already had an active run.
    Joined,
    /// Another node fired it first.
    Elsewhere,
}

impl Cluster {
    /// Fires the slot at `slot` (Unix seconds) of `run.pipeline` once
    /// across the cluster.
    pub async fn fire_slot(
        &self,
        node: &str,
        slot: i64,
        run: Enqueue<'_>,
    ) -> Result<Fired, ClusterError> {
        let mut client = self.client().await?;
        let err = self.db("firing a schedule slot");
        let tx = client.transaction().await.map_err(&err)?;
        let won = tx
            .execute(
                "INSERT INTO fired_slots (pipeline, slot, node) \
                 VALUES ($1, to_timestamp($2::float8), $3) ON CONFLICT DO NOTHING",
                &[&run.pipeline, &(slot as f64), &node],
            )
            .await
            .map_err(&err)?;
        if won == 0 {
            return Ok(Fired::Elsewhere);
        }
        let fired = match insert_run(&tx, run, None).await.map_err(&err)? {
            Some(id) => {
                tx.execute(
                    "UPDATE fired_slots SET run = $3 \
                     WHERE pipeline = $1 AND slot = to_timestamp($2::float8)",
                    &[&run.pipeline, &(slot as f64), &id],
                )
                .await
                .map_err(&err)?;
                Fired::Queued(id)
            }
            None => Fired::Joined,
        };
        tx.commit().await.map_err(&err)?;
        Ok(fired)
    }
}

//! Nodes: each kiln node registers what it can build (its engine, the
//! platforms that engine builds, labels, the digest of the project checkout
//! it loaded) and heartbeats; a heartbeat also renews the leases of the runs
//! the node still holds.

use std::time::Duration;

use super::{Cluster, ClusterError};

/// What a node tells the cluster about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Stable node id (host name, or configured).
    pub id: String,
    /// Its Docker engine (`DOCKER_HOST`).
    pub docker_host: String,
    /// Platforms its engine builds (`linux/amd64`, …).
    pub platforms: Vec<String>,
    /// Labels, as JSON text.
    pub labels: String,
    /// Digest of the project checkout it loaded.
    pub checkout: String,
}

impl Cluster {
    /// Registers `node` (or updates it after a restart) and heartbeats.
    pub async fn register(&self, node: &NodeInfo) -> Result<(), ClusterError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO nodes (id, docker_host, platforms, labels, checkout) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO UPDATE SET \
                 docker_host = $2, platforms = $3, labels = $4, checkout = $5, \
                 heartbeat_at = now()",
                &[
                    &node.id,
                    &node.docker_host,
                    &node.platforms,
                    &node.labels,
                    &node.checkout,
                ],
            )
            .await
            .map_err(self.db("registering the node"))?;
        Ok(())
    }

    /// Heartbeats `node` and renews, by `lease` from the database's clock,
    /// the lease of every run it still holds; returns those runs with their
    /// epochs. A run the node thinks it holds but that is not returned was
    /// reaped: the node must stop it and write nothing more.
    pub async fn heartbeat(
        &self,
        node: &str,
        lease: Duration,
    ) -> Result<Vec<(String, i64)>, ClusterError> {
        self.renew(node, None, lease).await
    }

    /// [`Cluster::heartbeat`] renewing only the leases of `runs` — the runs
    /// the daemon still drives: a run whose end could not be written is not
    /// kept alive by heartbeats, its lease lapses and it is retried.
    pub async fn heartbeat_runs(
        &self,
        node: &str,
        runs: &[String],
        lease: Duration,
    ) -> Result<Vec<(String, i64)>, ClusterError> {
        self.renew(node, Some(runs), lease).await
    }

    async fn renew(
        &self,
        node: &str,
        runs: Option<&[String]>,
        lease: Duration,
    ) -> Result<Vec<(String, i64)>, ClusterError> {
        let client = self.client().await?;
        let err = self.db("heartbeating");
        client
            .execute(
                "UPDATE nodes SET heartbeat_at = now() WHERE id = $1",
                &[&node],
            )
            .await
            .map_err(&err)?;
        let rows = client
            .query(
                "UPDATE cluster_runs SET lease_until = now() + make_interval(secs => $2) \
                 WHERE node = $1 AND status = 'running' AND lease_until >= now() \
                 AND ($3::text[] IS NULL OR id = ANY($3)) RETURNING id, epoch",
                &[&node, &lease.as_secs_f64(), &runs],
            )
            .await
            .map_err(&err)?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Every node: id, engine and seconds since its last heartbeat.
    pub async fn nodes(&self) -> Result<Vec<(NodeInfo, f64)>, ClusterError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, docker_host, platforms, labels, checkout, \
                 extract(epoch FROM now() - heartbeat_at)::float8 FROM nodes ORDER BY id",
                &[],
            )
            .await
            .map_err(self.db("listing nodes"))?;
        Ok(rows
            .iter()
            .map(|r| {
                let info = NodeInfo {
                    id: r.get(0),
                    docker_host: r.get(1),
                    platforms: r.get(2),
                    labels: r.get(3),
                    checkout: r.get(4),
                };
                (info, r.get(5))
            })
            .collect())
    }
}

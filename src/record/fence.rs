//! Fencing a cluster run's record writes (issue 15): a node writes a run's
//! build number, record and events only while it holds the run's claim. The
//! claim is the run's row in the cluster queue (`daemon::cluster`) with the
//! epoch the node's claim got; the PostgreSQL store checks it inside the
//! same transaction as the write, holding the row `FOR SHARE`, so a reaper
//! cannot take the run away between the check and the commit.

/// The claim a cluster run's writes must still hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The cluster run's id.
    pub run_id: String,
    /// The epoch of the claim.
    pub epoch: i64,
    /// The node holding the claim.
    pub node: String,
}

impl Fence {
    /// The check run inside a fenced write: one row when the claim holds
    /// (`$1` run, `$2` epoch, `$3` node), none when the lease lapsed, the run
    /// was reaped or claimed again, or it already finished.
    pub const HOLDS_SQL: &'static str = "SELECT 1 FROM cluster_runs \
        WHERE id = $1 AND epoch = $2 AND node = $3 AND status = 'running' \
        AND lease_until > now() FOR SHARE";

    /// Run inside a fenced record append, after [`Fence::HOLDS_SQL`]: the
    /// run's row names its record (`$1` run, `$2` epoch, `$3` record id), so
    /// a reaper that finds the lease lapsed before the run ended knows the
    /// build is recorded and does not queue a retry that would record it
    /// twice.
    pub const RECORDED_SQL: &'static str =
        "UPDATE cluster_runs SET record_id = $3 WHERE id = $1 AND epoch = $2";
}

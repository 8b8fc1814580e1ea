//! The queue's tables on PostgreSQL, versioned like the SQLite schema:
//! migrations are appended, never edited; `cluster_schema` holds how many
//! ran. Concurrent nodes migrate one at a time (an advisory lock).

use super::{Cluster, ClusterError};

/// Every migration, in order.
pub const MIGRATIONS: &[&str] = &[
    // 1: nodes, runs with claims (node, epoch, lease), their log lines, and
    // the schedule slots that fired.
    r#"
CREATE TABLE nodes (
    id text PRIMARY KEY,
    docker_host text NOT NULL,
    platforms text[] NOT NULL,
    labels text NOT NULL DEFAULT '{}',
    checkout text NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE cluster_runs (
    id text PRIMARY KEY,
    pipeline text NOT NULL,
    branch text,
    platform text NOT NULL,
    checkout text NOT NULL,
    trigger text NOT NULL,
    status text NOT NULL CHECK (status IN ('queued', 'running', 'passed', 'failed',
        'up_to_date', 'cancelled', 'interrupted', 'awaiting_approval')),
    summary text,
    failure text,
    record_id text,
    retry_of text REFERENCES cluster_runs (id),
    node text REFERENCES nodes (id),
    epoch bigint NOT NULL DEFAULT 0,
    lease_until timestamptz,
    queued_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    started_at timestamptz,
    finished_at timestamptz
);
CREATE UNIQUE INDEX cluster_runs_one_active ON cluster_runs (pipeline, coalesce(branch, ''))
    WHERE status IN ('queued', 'running');
CREATE INDEX cluster_runs_queued ON cluster_runs (queued_at) WHERE status = 'queued';
CREATE TABLE cluster_run_events (
    run text NOT NULL REFERENCES cluster_runs (id),
    seq bigint NOT NULL,
    epoch bigint NOT NULL,
    node text NOT NULL,
    kind text NOT NULL,
    stage text,
    text text NOT NULL,
    at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run, seq)
);
CREATE FUNCTION cluster_event_fenced() RETURNS trigger AS $$
BEGIN
    PERFORM 1 FROM cluster_runs
        WHERE id = NEW.run AND epoch = NEW.epoch AND node = NEW.node AND status = 'running';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'kiln: stale epoch % for run %', NEW.epoch, NEW.run
            USING ERRCODE = 'P0001';
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER cluster_run_events_fenced BEFORE INSERT ON cluster_run_events
    FOR EACH ROW EXECUTE FUNCTION cluster_event_fenced();
CREATE TABLE fired_slots (
    pipeline text NOT NULL,
    slot timestamptz NOT NULL,
    node text NOT NULL,
    run text REFERENCES cluster_runs (id),
    fired_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pipeline, slot)
);
"#,
    // 2: what the daemon's queue needs besides claims (issue 15, step 2):
    // arrival order (`seq`, so claims do not depend on node clocks), the
    // check-first flag, a cancel asked of the holding node, when the holder
    // cleaned up after an interrupted run, and the indexes of the API's reads.
    r#"
ALTER TABLE cluster_runs ADD COLUMN seq bigserial;
ALTER TABLE cluster_runs ADD COLUMN check_first boolean NOT NULL DEFAULT false;
ALTER TABLE cluster_runs ADD COLUMN cancel_requested boolean NOT NULL DEFAULT false;
ALTER TABLE cluster_runs ADD COLUMN cleaned_at timestamptz;
CREATE UNIQUE INDEX cluster_runs_seq ON cluster_runs (seq);
CREATE INDEX cluster_runs_claimable ON cluster_runs (seq) WHERE status = 'queued';
CREATE INDEX cluster_runs_pipeline ON cluster_runs (pipeline, seq);
CREATE INDEX cluster_runs_node ON cluster_runs (node, status);
"#,
];

/// The schema version this build writes.
pub fn latest() -> i64 {
    MIGRATIONS.len() as i64
}

/// Applies the migrations not applied yet, all in one transaction (with
/// the version rows), under an advisory lock so nodes starting together
/// migrate once. A schema newer than [`latest`] (a newer kiln migrated it)
/// is [`ClusterError::SchemaTooNew`]: nothing is changed.
pub(super) async fn migrate(cluster: &Cluster) -> Result<(), ClusterError> {
    let mut client = cluster.client().await?;
    let err = cluster.db("migrating the cluster schema");
    let tx = client.transaction().await.map_err(&err)?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('kiln cluster schema'))",
        &[],
    )
    .await
    .map_err(&err)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS cluster_schema (version integer NOT NULL)")
        .await
        .map_err(&err)?;
    let done: i64 = tx
        .query_one("SELECT count(*) FROM cluster_schema", &[])
        .await
        .map_err(&err)?
        .get(0);
    if done > latest() {
        return Err(ClusterError::SchemaTooNew {
            target: cluster.target.clone(),
            found: done,
            supported: latest(),
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done as usize) {
        tx.batch_execute(sql).await.map_err(&err)?;
        let version = i as i32 + 1;
        tx.execute("INSERT INTO cluster_schema VALUES ($1)", &[&version])
            .await
            .map_err(&err)?;
    }
    tx.commit().await.map_err(&err)
}

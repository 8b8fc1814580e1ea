//! The database schema and its migrations, versioned with `PRAGMA user_version`.
//!
//! **Invariant:** migrations are only ever appended to [`MIGRATIONS`]; a
//! shipped migration is never edited. Append-only rules live in triggers, so
//! they hold for every writer, not just kiln.

use rusqlite::{Connection, TransactionBehavior};

/// Migration `i` takes the schema from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: build-number allocations and the record chain.
    r#"
CREATE TABLE builds (
    pipeline     TEXT    NOT NULL,
    version      TEXT    NOT NULL,
    build        INTEGER NOT NULL CHECK (build > 0),
    id           TEXT    NOT NULL UNIQUE,
    allocated_at TEXT    NOT NULL,
    PRIMARY KEY (pipeline, version, build)
);
CREATE TRIGGER builds_no_update BEFORE UPDATE ON builds
BEGIN SELECT RAISE(ABORT, 'kiln build numbers are append-only: UPDATE is not allowed'); END;
CREATE TRIGGER builds_no_delete BEFORE DELETE ON builds
BEGIN SELECT RAISE(ABORT, 'kiln build numbers are append-only: DELETE is not allowed'); END;

CREATE TABLE records (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT    NOT NULL UNIQUE,
    pipeline    TEXT    NOT NULL,
    version     TEXT    NOT NULL,
    build       INTEGER NOT NULL,
    status      TEXT    NOT NULL,
    build_key   TEXT,
    finished_at TEXT    NOT NULL,
    json        TEXT    NOT NULL,
    prev_hash   TEXT,
    hash        TEXT    NOT NULL UNIQUE,
    UNIQUE (pipeline, version, build)
);
CREATE INDEX records_by_pipeline ON records (pipeline, seq);
CREATE INDEX records_by_key ON records (pipeline, build_key, seq);
CREATE TRIGGER records_no_update BEFORE UPDATE ON records
BEGIN SELECT RAISE(ABORT, 'kiln records are append-only: UPDATE is not allowed'); END;
CREATE TRIGGER records_no_delete BEFORE DELETE ON records
BEGIN SELECT RAISE(ABORT, 'kiln records are append-only: DELETE is not allowed'); END;
CREATE TRIGGER records_insert_checks BEFORE INSERT ON records
BEGIN
    SELECT RAISE(ABORT, 'kiln record was not allocated')
    WHERE NOT EXISTS (SELECT 1 FROM builds b WHERE b.id = NEW.id
        AND b.pipeline = NEW.pipeline AND b.version = NEW.version AND b.build = NEW.build);
    SELECT RAISE(ABORT, 'kiln record does not link to the last record')
    WHERE NEW.prev_hash IS NOT (SELECT hash FROM records ORDER BY seq DESC LIMIT 1);
END;
"#,
    // 2: the daemon's run queue and run events (mutable state, not records:
    // no append-only triggers). At most one queued/running run per pipeline.
    r#"
CREATE TABLE runs (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT    NOT NULL UNIQUE,
    pipeline    TEXT    NOT NULL,
    trigger     TEXT    NOT NULL,
    check_first INTEGER NOT NULL DEFAULT 0,
    status      TEXT    NOT NULL CHECK (status IN ('queued', 'running', 'passed', 'failed',
                        'up_to_date', 'cancelled', 'interrupted')),
    summary     TEXT,
    record_id   TEXT,
    retry_of    TEXT REFERENCES runs (id),
    queued_at   TEXT    NOT NULL,
    started_at  TEXT,
    finished_at TEXT
);
CREATE UNIQUE INDEX runs_one_active ON runs (pipeline) WHERE status IN ('queued', 'running');
CREATE INDEX runs_by_status ON runs (status, seq);
CREATE INDEX runs_by_pipeline ON runs (pipeline, seq);

CREATE TABLE run_events (
    run_id TEXT    NOT NULL REFERENCES runs (id),
    seq    INTEGER NOT NULL,
    at     TEXT    NOT NULL,
    kind   TEXT    NOT NULL CHECK (kind IN ('line', 'stage_started', 'stage_passed', 'stage_failed')),
    stage  TEXT,
    text   TEXT    NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
"#,
];

/// The schema version this build writes.
pub fn latest() -> i64 {
    MIGRATIONS.len() as i64
}

/// What [`migrate`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Migrated {
    /// The schema is at [`latest`] (possibly after migrating).
    Current,
    /// The database is newer than this build.
    TooNew(i64),
}

/// Brings the schema up to [`latest`] inside one immediate transaction, so
/// concurrent openers of a fresh file migrate it exactly once.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<Migrated> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > latest() {
        return Ok(Migrated::TooNew(found));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
    }
    tx.commit()?;
    Ok(Migrated::Current)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrating_twice_is_a_no_op_and_newer_schemas_are_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), Migrated::Current);
        assert_eq!(migrate(&mut conn).unwrap(), Migrated::Current);
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, latest());
        conn.pragma_update(None, "user_version", latest() + 1)
            .unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), Migrated::TooNew(latest() + 1));
    }
}

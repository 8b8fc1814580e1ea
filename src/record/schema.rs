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
    // 3: signed chain entries and events (approval, promotion) in the chain.
    // The chain is records by seq, each followed by the events appended while
    // it was the newest record (`after_record`), in event seq order; every
    // entry links to the one before it. Signatures are keyed by the hash they
    // sign, so signing is an insert too. Runs may end `awaiting_approval`
    // (runs are mutable state: the table is rebuilt to widen its CHECK).
    r#"
CREATE TABLE events (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT    NOT NULL UNIQUE,
    kind         TEXT    NOT NULL CHECK (kind IN ('approval', 'promotion')),
    record_id    TEXT    NOT NULL REFERENCES records (id),
    after_record INTEGER NOT NULL,
    at           TEXT    NOT NULL,
    json         TEXT    NOT NULL,
    prev_hash    TEXT    NOT NULL,
    hash         TEXT    NOT NULL UNIQUE
);
CREATE INDEX events_by_record ON events (record_id, seq);
CREATE UNIQUE INDEX events_one_decision ON events (record_id) WHERE kind = 'approval';
CREATE VIEW chain_head AS
    SELECT hash FROM (SELECT hash, seq AS a, 0 AS b FROM records
                      UNION ALL SELECT hash, after_record AS a, seq AS b FROM events)
    ORDER BY a DESC, b DESC LIMIT 1;
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'kiln events are append-only: UPDATE is not allowed'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'kiln events are append-only: DELETE is not allowed'); END;
CREATE TRIGGER events_insert_checks BEFORE INSERT ON events
BEGIN
    SELECT RAISE(ABORT, 'kiln event names no record')
    WHERE NOT EXISTS (SELECT 1 FROM records r WHERE r.id = NEW.record_id);
    SELECT RAISE(ABORT, 'kiln event does not follow the newest record')
    WHERE NEW.after_record IS NOT (SELECT MAX(seq) FROM records);
    SELECT RAISE(ABORT, 'kiln event does not link to the last chain entry')
    WHERE NEW.prev_hash IS NOT (SELECT hash FROM chain_head);
END;
DROP TRIGGER records_insert_checks;
CREATE TRIGGER records_insert_checks BEFORE INSERT ON records
BEGIN
    SELECT RAISE(ABORT, 'kiln record was not allocated')
    WHERE NOT EXISTS (SELECT 1 FROM builds b WHERE b.id = NEW.id
        AND b.pipeline = NEW.pipeline AND b.version = NEW.version AND b.build = NEW.build);
    SELECT RAISE(ABORT, 'kiln record does not link to the last chain entry')
    WHERE NEW.prev_hash IS NOT (SELECT hash FROM chain_head);
END;

CREATE TABLE signatures (
    hash      TEXT NOT NULL PRIMARY KEY,
    key_id    TEXT NOT NULL,
    signature TEXT NOT NULL
);
CREATE TRIGGER signatures_no_update BEFORE UPDATE ON signatures
BEGIN SELECT RAISE(ABORT, 'kiln signatures are append-only: UPDATE is not allowed'); END;
CREATE TRIGGER signatures_no_delete BEFORE DELETE ON signatures
BEGIN SELECT RAISE(ABORT, 'kiln signatures are append-only: DELETE is not allowed'); END;

CREATE TABLE runs_v3 (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT    NOT NULL UNIQUE,
    pipeline    TEXT    NOT NULL,
    trigger     TEXT    NOT NULL,
    check_first INTEGER NOT NULL DEFAULT 0,
    status      TEXT    NOT NULL CHECK (status IN ('queued', 'running', 'passed', 'failed',
                        'up_to_date', 'cancelled', 'interrupted', 'awaiting_approval')),
    summary     TEXT,
    record_id   TEXT,
    retry_of    TEXT REFERENCES runs (id),
    queued_at   TEXT    NOT NULL,
    started_at  TEXT,
    finished_at TEXT
);
INSERT INTO runs_v3 SELECT * FROM runs;
DROP TABLE runs;
ALTER TABLE runs_v3 RENAME TO runs;
CREATE UNIQUE INDEX runs_one_active ON runs (pipeline) WHERE status IN ('queued', 'running');
CREATE INDEX runs_by_status ON runs (status, seq);
CREATE INDEX runs_by_pipeline ON runs (pipeline, seq);
"#,
    // 4: branch cleanups (`kiln cleanup --branch`), append-only like records.
    r#"
CREATE TABLE cleanups (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    branch TEXT    NOT NULL,
    at     TEXT    NOT NULL,
    json   TEXT    NOT NULL
);
CREATE INDEX cleanups_by_branch ON cleanups (branch, seq);
CREATE TRIGGER cleanups_no_update BEFORE UPDATE ON cleanups
BEGIN SELECT RAISE(ABORT, 'cleanups are append-only'); END;
CREATE TRIGGER cleanups_no_delete BEFORE DELETE ON cleanups
BEGIN SELECT RAISE(ABORT, 'cleanups are append-only'); END;
"#,
    // 5: branch runs in the daemon's queue: one active run per pipeline and
    // branch (the main pipeline is the empty branch).
    r#"
ALTER TABLE runs ADD COLUMN branch TEXT;
DROP INDEX runs_one_active;
CREATE UNIQUE INDEX runs_one_active ON runs (pipeline, ifnull(branch, ''))
    WHERE status IN ('queued', 'running');
"#,
    // 6: the kind of failure of a failed run (its exit code through the
    // daemon: `kiln trigger --wait`).
    r#"
ALTER TABLE runs ADD COLUMN failure TEXT;
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

    /// A version-2 file with runs and a record upgrades in place: the runs
    /// survive the table rebuild (and may end `awaiting_approval`), and the
    /// next entry must link to the old record.
    #[test]
    fn version_2_upgrades_keeping_runs_and_the_chain() {
        let mut conn = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..2] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 2).unwrap();
        conn.execute_batch(
            "INSERT INTO runs (id, pipeline, trigger, status, queued_at) VALUES ('r1', 'web', 'manual', 'passed', 'now');
             INSERT INTO builds VALUES ('web', '1.0.0', 1, 'a', 'now');
             INSERT INTO records (id, pipeline, version, build, status, finished_at, json, prev_hash, hash)
                 VALUES ('a', 'web', '1.0.0', 1, 'passed', 'now', '{}', NULL, 'h1');",
        )
        .unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), Migrated::Current);
        let status: String = conn
            .query_row("SELECT status FROM runs WHERE id = 'r1'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(status, "passed");
        conn.execute(
            "INSERT INTO runs (id, pipeline, trigger, status, queued_at) VALUES ('r2', 'web', 'manual', 'awaiting_approval', 'now')",
            [],
        )
        .unwrap();
        let head: String = conn
            .query_row("SELECT hash FROM chain_head", [], |r| r.get(0))
            .unwrap();
        assert_eq!(head, "h1");
        let unlinked = conn.execute(
            "INSERT INTO events (id, kind, record_id, after_record, at, json, prev_hash, hash)
                 VALUES ('e', 'approval', 'a', 1, 'now', '{}', 'other', 'h2')",
            [],
        );
        assert!(unlinked.unwrap_err().to_string().contains("does not link"));
        conn.execute(
            "INSERT INTO events (id, kind, record_id, after_record, at, json, prev_hash, hash)
                 VALUES ('e', 'approval', 'a', 1, 'now', '{}', 'h1', 'h2')",
            [],
        )
        .unwrap();
        let head: String = conn
            .query_row("SELECT hash FROM chain_head", [], |r| r.get(0))
            .unwrap();
        assert_eq!(head, "h2", "the event is the head now");
    }
}

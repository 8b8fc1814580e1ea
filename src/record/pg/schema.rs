//! The PostgreSQL schema and its migrations, versioned in `schema_version`
//! (one row per applied migration).
//!
//! **Invariant:** migrations are only ever appended to [`MIGRATIONS`]; a
//! shipped migration is never edited. The chain's rules live in triggers,
//! so they hold for every writer, not just kiln.

use tokio_postgres::Client;

pub use super::super::schema::Migrated;

/// Migration `i` takes the schema from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: build-number allocations and the chain: records, events (approval,
    // promotion), signatures, and the one-row head every append locks.
    r#"
CREATE FUNCTION kiln_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'kiln % are append-only: % is not allowed', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation';
END $$;

CREATE TABLE builds (
    pipeline     text   NOT NULL,
    version      text   NOT NULL,
    build        bigint NOT NULL CHECK (build > 0),
    id           text   NOT NULL UNIQUE,
    allocated_at text   NOT NULL,
    PRIMARY KEY (pipeline, version, build)
);

-- The newest chain entry's hash and the last record and event positions.
CREATE TABLE chain_head (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    hash     text,
    records  bigint  NOT NULL DEFAULT 0,
    events   bigint  NOT NULL DEFAULT 0
);
INSERT INTO chain_head DEFAULT VALUES;

-- `seq` is assigned by the insert trigger from the head.
CREATE TABLE records (
    seq         bigint PRIMARY KEY,
    id          text   NOT NULL UNIQUE REFERENCES builds (id),
    pipeline    text   NOT NULL,
    version     text   NOT NULL,
    build       bigint NOT NULL,
    status      text   NOT NULL,
    build_key   text,
    finished_at text   NOT NULL,
    json        text   NOT NULL,
    prev_hash   text   UNIQUE NULLS NOT DISTINCT,
    hash        text   NOT NULL UNIQUE,
    UNIQUE (pipeline, version, build)
);
CREATE INDEX records_by_pipeline ON records (pipeline, seq);
CREATE INDEX records_by_key ON records (pipeline, build_key, seq);

-- `seq` and `after_record` are assigned by the insert trigger from the head.
CREATE TABLE events (
    seq          bigint PRIMARY KEY,
    id           text   NOT NULL UNIQUE,
    kind         text   NOT NULL CHECK (kind IN ('approval', 'promotion')),
    record_id    text   NOT NULL REFERENCES records (id),
    after_record bigint NOT NULL,
    at           text   NOT NULL,
    json         text   NOT NULL,
    prev_hash    text   NOT NULL UNIQUE,
    hash         text   NOT NULL UNIQUE
);
CREATE INDEX events_by_record ON events (record_id, seq);
CREATE UNIQUE INDEX events_one_decision ON events (record_id) WHERE kind = 'approval';

CREATE TABLE signatures (
    hash      text NOT NULL PRIMARY KEY,
    key_id    text NOT NULL,
    signature text NOT NULL
);

CREATE TRIGGER builds_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON builds
    FOR EACH STATEMENT EXECUTE FUNCTION kiln_append_only();
CREATE TRIGGER records_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON records
    FOR EACH STATEMENT EXECUTE FUNCTION kiln_append_only();
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION kiln_append_only();
CREATE TRIGGER signatures_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON signatures
    FOR EACH STATEMENT EXECUTE FUNCTION kiln_append_only();

-- The head moves only from the insert triggers below (trigger depth 2).
CREATE FUNCTION kiln_head_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'UPDATE' OR pg_trigger_depth() < 2 THEN
        RAISE EXCEPTION 'kiln chain_head moves only when an entry is appended: % is not allowed',
            TG_OP USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER chain_head_guard BEFORE UPDATE OR DELETE ON chain_head
    FOR EACH ROW EXECUTE FUNCTION kiln_head_guard();
CREATE TRIGGER chain_head_no_truncate BEFORE TRUNCATE ON chain_head
    FOR EACH STATEMENT EXECUTE FUNCTION kiln_head_guard();

CREATE FUNCTION kiln_record_links() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
DECLARE
    head chain_head%ROWTYPE;
BEGIN
    SELECT * INTO head FROM chain_head FOR UPDATE;
    IF NOT EXISTS (SELECT 1 FROM builds b WHERE b.id = NEW.id AND b.pipeline = NEW.pipeline
                   AND b.version = NEW.version AND b.build = NEW.build) THEN
        RAISE EXCEPTION 'kiln record was not allocated' USING ERRCODE = 'restrict_violation';
    END IF;
    IF NEW.prev_hash IS DISTINCT FROM head.hash THEN
        RAISE EXCEPTION 'kiln record does not link to the last chain entry'
            USING ERRCODE = 'restrict_violation';
    END IF;
    NEW.seq := head.records + 1;
    UPDATE chain_head SET hash = NEW.hash, records = NEW.seq;
    RETURN NEW;
END $$;
CREATE TRIGGER records_link BEFORE INSERT ON records
    FOR EACH ROW EXECUTE FUNCTION kiln_record_links();

CREATE FUNCTION kiln_event_links() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
DECLARE
    head chain_head%ROWTYPE;
BEGIN
    SELECT * INTO head FROM chain_head FOR UPDATE;
    IF head.hash IS NULL OR NEW.prev_hash IS DISTINCT FROM head.hash THEN
        RAISE EXCEPTION 'kiln event does not link to the last chain entry'
            USING ERRCODE = 'restrict_violation';
    END IF;
    NEW.seq := head.events + 1;
    NEW.after_record := head.records;
    UPDATE chain_head SET hash = NEW.hash, events = NEW.seq;
    RETURN NEW;
END $$;
CREATE TRIGGER events_link BEFORE INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION kiln_event_links();
"#,
    // 2: branch cleanups (`kiln cleanup --branch`), append-only like the
    // chain; the status index serves the approval gate's waiting list.
    r#"
CREATE TABLE cleanups (
    seq    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    branch text NOT NULL,
    at     text NOT NULL,
    json   text NOT NULL
);
CREATE INDEX cleanups_by_branch ON cleanups (branch, seq);
CREATE TRIGGER cleanups_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON cleanups
    FOR EACH STATEMENT EXECUTE FUNCTION kiln_append_only();
CREATE INDEX records_by_status ON records (status, seq);
"#,
];

/// The schema version this build writes.
pub fn latest() -> i64 {
    MIGRATIONS.len() as i64
}

/// Brings the schema in the connection's `search_path` up to [`latest`] in
/// one transaction, under an advisory lock on that schema's name, so
/// concurrent openers (nodes starting together) migrate it exactly once.
pub async fn migrate(client: &mut Client) -> Result<Migrated, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('kiln schema ' || current_schema(), 0))",
        &[],
    )
    .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_version (
             version    bigint PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let found: i64 = tx
        .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])
        .await?
        .get(0);
    if found > latest() {
        return Ok(Migrated::TooNew(found));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.batch_execute(sql).await?;
        let version = i as i64 + 1;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES ($1)",
            &[&version],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Migrated::Current)
}

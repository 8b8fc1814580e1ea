//! The SQLite record store: build-number allocation, appending records to the
//! hash chain, and reading them back (each row re-checked on read).
//!
//! The API is synchronous (rusqlite is). Async callers run it inside
//! `tokio::task::spawn_blocking`, opening one [`Store`] per task: a store owns
//! one connection, and SQLite (WAL mode, busy timeout) arbitrates between
//! connections and processes.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::backend::Filter;
use super::chain::{canonical_json, link_hash};
use super::error::RecordError;
use super::model::{BuildId, BuildNumber, ChainedRecord, Record, RecordId};
use super::schema::{self, Migrated};
use super::signature::ChainKeys;
use super::verify::{self, Columns, Row, VerifyReport};
use crate::digest::Digest;

/// How long a call waits for another writer before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// An open record database.
#[derive(Debug)]
pub struct Store {
    pub(super) conn: Connection,
    path: PathBuf,
    /// Signs appended entries and checks read ones (none: unsigned).
    keys: ChainKeys,
}

/// A build number handed out by [`Store::allocate`], with the run's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// The run id; the record must carry it.
    pub id: RecordId,
    /// `pipeline:version-build`.
    pub build: BuildId,
    /// When the number was handed out.
    pub allocated_at: DateTime<Utc>,
}

impl Allocation {
    /// Build `number` of (`pipeline`, `version`), handed out at `at` to run `id`.
    pub(super) fn new(
        id: RecordId,
        pipeline: &str,
        version: &semver::Version,
        number: i64,
        at: DateTime<Utc>,
    ) -> Self {
        Allocation {
            id,
            build: BuildId {
                pipeline: pipeline.to_string(),
                version: version.clone(),
                build: BuildNumber(u32::try_from(number).unwrap_or(u32::MAX)),
            },
            allocated_at: at,
        }
    }
}

/// Which record to fetch: an id, or `pipeline:version-build`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// A record id.
    Id(RecordId),
    /// A build.
    Build(BuildId),
}

impl FromStr for Selector {
    type Err = super::model::BuildIdParseError;

    /// Text with a `:` is a build (`web:1.0.0-3`); anything else is an id.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.contains(':') {
            s.parse().map(Selector::Build)
        } else {
            Ok(Selector::Id(RecordId(s.to_string())))
        }
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Selector::Id(id) => id.fmt(f),
            Selector::Build(b) => b.fmt(f),
        }
    }
}

/// `PRAGMA journal_mode = WAL`. On a fresh file several first opens race for
/// the exclusive lock the switch needs, and SQLite answers `SQLITE_BUSY` at
/// once (the busy handler is not consulted), so the switch is retried for up
/// to the busy timeout.
fn switch_to_wal(conn: &Connection) -> rusqlite::Result<String> {
    let started = std::time::Instant::now();
    loop {
        match conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && started.elapsed() < BUSY_TIMEOUT =>
            {
                std::thread::sleep(Duration::from_millis(5 + fastrand::u64(0..20)));
            }
            other => return other,
        }
    }
}

impl Store {
    /// Opens (creating file, parent folders and schema as needed) the database
    /// at `path`, in WAL mode, migrated to the current schema.
    pub fn open(path: impl AsRef<Path>) -> Result<Store, RecordError> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| RecordError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let err = |operation| {
            let path = path.clone();
            move |source| RecordError::Database {
                operation,
                path,
                source,
            }
        };
        let mut conn = Connection::open(&path).map_err(err("opening the database"))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(err("setting the busy timeout"))?;
        let mode = switch_to_wal(&conn).map_err(err("switching to WAL mode"))?;
        tracing::debug!(path = %path.display(), %mode, "opened record database");
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err("setting synchronous mode"))?;
        match schema::migrate(&mut conn).map_err(err("migrating the schema"))? {
            Migrated::Current => Ok(Store {
                conn,
                path,
                keys: ChainKeys::default(),
            }),
            Migrated::TooNew(found) => Err(RecordError::SchemaTooNew {
                path,
                found,
                supported: schema::latest(),
            }),
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Signs every entry appended from now on and checks every entry read
    /// with `keys` (see `signature.rs`).
    pub fn with_keys(mut self, keys: ChainKeys) -> Self {
        self.keys = keys;
        self
    }

    /// [`Store::with_keys`] on an open store.
    pub fn set_keys(&mut self, keys: ChainKeys) {
        self.keys = keys;
    }

    /// The keys entries are signed and checked with.
    pub fn keys(&self) -> &ChainKeys {
        &self.keys
    }

    /// Fails when appending with this store's keys would put an unsigned
    /// entry into a signed chain: callers check before doing work they
    /// could not record.
    pub fn check_appendable(&self) -> Result<(), RecordError> {
        require_signer(&self.conn, &self.keys, &self.path)
    }

    pub(super) fn conn(&self) -> &Connection {
        &self.conn
    }

    pub(super) fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// Wraps a rusqlite error with what kiln was doing and the file.
    pub(super) fn db_error(
        &self,
        operation: &'static str,
    ) -> impl Fn(rusqlite::Error) -> RecordError + use<> {
        let path = self.path.clone();
        move |source| RecordError::Database {
            operation,
            path: path.clone(),
            source,
        }
    }

    /// Hands out the next build number for (pipeline, version) and a fresh run
    /// id. The read and the insert happen in one immediate (write-locked)
    /// transaction, so concurrent runs — threads or processes — never get the
    /// same number, and a number is never handed out twice.
    pub fn allocate(
        &mut self,
        pipeline: &str,
        version: &semver::Version,
    ) -> Result<Allocation, RecordError> {
        let err = self.db_error("allocating a build number");
        let version_text = version.to_string();
        let id = RecordId::random();
        let now = Utc::now();
        let result = (|| {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let next: i64 = tx.query_row(
                "SELECT COALESCE(MAX(build), 0) + 1 FROM builds WHERE pipeline = ?1 AND version = ?2",
                params![pipeline, version_text],
                |r| r.get(0),
            )?;
            tx.execute(
                "INSERT INTO builds (pipeline, version, build, id, allocated_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![pipeline, version_text, next, id.0, now.to_rfc3339_opts(SecondsFormat::AutoSi, true)],
            )?;
            tx.commit()?;
            Ok(next)
        })();
        let next = result.map_err(err)?;
        Ok(Allocation::new(id, pipeline, version, next, now))
    }

    /// Appends a finished record to the chain and returns it with its hashes.
    /// The record's id and build must come from [`Store::allocate`]; each
    /// build is recorded once.
    pub fn append(&mut self, record: &Record) -> Result<ChainedRecord, RecordError> {
        let json = canonical_json(record).map_err(|source| RecordError::Encode {
            id: record.id.clone(),
            source,
        })?;
        let cols = Columns::of(record);
        let build = record.build_id().to_string();
        let err = self.db_error("appending a record");
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        let key = params![cols.id, cols.pipeline, cols.version, cols.build];
        let exists = |sql: &str| {
            tx.query_row(sql, key, |_| Ok(()))
                .optional()
                .map(|r| r.is_some())
                .map_err(&err)
        };
        if exists(
            "SELECT 1 FROM records WHERE id = ?1 OR (pipeline = ?2 AND version = ?3 AND build = ?4)",
        )? {
            return Err(RecordError::AlreadyRecorded { build });
        }
        if !exists(
            "SELECT 1 FROM builds WHERE id = ?1 AND pipeline = ?2 AND version = ?3 AND build = ?4",
        )? {
            let id = record.id.clone();
            return Err(RecordError::NotAllocated { build, id });
        }
        let prev_hash = chain_head(&tx, &self.path)?;
        let hash = link_hash(prev_hash.as_ref(), &json);
        tx.execute(
            "INSERT INTO records (id, pipeline, version, build, status, build_key, finished_at, \
             json, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                cols.id,
                cols.pipeline,
                cols.version,
                cols.build,
                cols.status,
                cols.build_key,
                cols.finished_at,
                json,
                prev_hash.as_ref().map(Digest::to_string),
                hash.to_string()
            ],
        )
        .map_err(&err)?;
        // Before the signature's insert, which moves `last_insert_rowid`.
        let seq = tx.last_insert_rowid();
        insert_signature(&tx, &self.keys, &hash, &self.path)?;
        tx.commit().map_err(&err)?;
        Ok(ChainedRecord {
            seq,
            prev_hash,
            hash,
            record: record.clone(),
        })
    }

    /// Records newest first, optionally of one pipeline, at most `limit`.
    pub fn list(
        &self,
        pipeline: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<ChainedRecord>, RecordError> {
        self.records(&Filter::newest(pipeline, limit))
    }

    /// The records `filter` selects, each re-checked.
    pub fn records(&self, filter: &Filter) -> Result<Vec<ChainedRecord>, RecordError> {
        let limit = filter
            .limit
            .map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let statuses = (!filter.statuses.is_empty())
            .then(|| serde_json::Value::from(filter.status_texts()).to_string());
        let order = if filter.newest_first { "DESC" } else { "ASC" };
        self.select(
            "reading records",
            &format!(
                "WHERE (?1 IS NULL OR pipeline = ?1) \
                 AND (?2 IS NULL OR status IN (SELECT value FROM json_each(?2))) \
                 AND (?3 IS NULL OR build_key = ?3) ORDER BY seq {order} LIMIT ?4"
            ),
            params![
                filter.pipeline,
                statuses,
                filter.build_key.as_ref().map(Digest::to_string),
                limit
            ],
        )
    }

    /// One record by id or build.
    pub fn get(&self, selector: &Selector) -> Result<ChainedRecord, RecordError> {
        let found = match selector {
            Selector::Id(id) => self.select("reading a record", "WHERE id = ?1", params![id.0])?,
            Selector::Build(b) => self.select(
                "reading a record",
                "WHERE pipeline = ?1 AND version = ?2 AND build = ?3",
                params![b.pipeline, b.version.to_string(), b.build.0],
            )?,
        };
        found
            .into_iter()
            .next()
            .ok_or_else(|| RecordError::NotFound {
                selector: selector.to_string(),
            })
    }

    /// Walks the whole chain from the first record and reports the first one
    /// whose hash, link or columns do not match.
    pub fn verify(&self) -> Result<VerifyReport, RecordError> {
        let entries = self.entries()?;
        Ok(verify::walk(entries, &self.keys, |h| self.signature_of(h)))
    }

    /// Rows matching `filter` (SQL after `FROM records`), each checked
    /// against its own hash on the way out.
    pub(super) fn select(
        &self,
        operation: &'static str,
        filter: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<ChainedRecord>, RecordError> {
        let sql = format!("SELECT {} FROM records {filter}", Row::COLUMNS);
        let rows = self
            .conn
            .prepare(&sql)
            .and_then(|mut stmt| {
                stmt.query_map(params, Row::from_sql)?
                    .collect::<rusqlite::Result<Vec<Row>>>()
            })
            .map_err(self.db_error(operation))?;
        rows.into_iter()
            .map(|row| {
                let seq = row.seq;
                let tampered = |problem| RecordError::Tampered {
                    seq,
                    path: self.path.clone(),
                    problem,
                };
                let chained = row.check().map_err(tampered)?;
                self.check_signature(&chained.hash).map_err(tampered)?;
                Ok(chained)
            })
            .collect()
    }
}

/// The hash of the newest chain entry (record or event) inside `tx`.
pub(super) fn chain_head(
    tx: &rusqlite::Transaction<'_>,
    path: &Path,
) -> Result<Option<Digest>, RecordError> {
    let text: Option<String> = tx
        .query_row("SELECT hash FROM chain_head", [], |r| r.get(0))
        .optional()
        .map_err(|source| RecordError::Database {
            operation: "reading the chain head",
            path: path.to_path_buf(),
            source,
        })?;
    text.map(|t| {
        t.parse::<Digest>().map_err(|_| RecordError::Tampered {
            seq: 0,
            path: path.to_path_buf(),
            problem: verify::Problem::MalformedHash(t.escape_debug().to_string()),
        })
    })
    .transpose()
}

/// Refuses to append without a signing key to a chain whose entries are
/// signed ([`RecordError::SigningKeyRequired`]).
pub(super) fn require_signer(
    conn: &Connection,
    keys: &ChainKeys,
    path: &Path,
) -> Result<(), RecordError> {
    if keys.signs() {
        return Ok(());
    }
    let signed: Option<String> = conn
        .query_row("SELECT key_id FROM signatures LIMIT 1", [], |r| r.get(0))
        .optional()
        .map_err(|source| RecordError::Database {
            operation: "checking for signed entries",
            path: path.to_path_buf(),
            source,
        })?;
    match signed {
        Some(key_id) => Err(RecordError::SigningKeyRequired {
            path: path.to_path_buf(),
            key_id,
        }),
        None => Ok(()),
    }
}

/// Stores the signature of a new entry's `hash`, when `keys` sign.
pub(super) fn insert_signature(
    tx: &rusqlite::Transaction<'_>,
    keys: &ChainKeys,
    hash: &Digest,
    path: &Path,
) -> Result<(), RecordError> {
    require_signer(tx, keys, path)?;
    let signed = keys.sign(hash).map_err(|source| RecordError::Sign {
        path: path.to_path_buf(),
        source,
    })?;
    let Some(sig) = signed else {
        return Ok(());
    };
    tx.execute(
        "INSERT INTO signatures (hash, key_id, signature) VALUES (?1, ?2, ?3)",
        params![hash.to_string(), sig.key_id, sig.signature],
    )
    .map(|_| ())
    .map_err(|source| RecordError::Database {
        operation: "storing a signature",
        path: path.to_path_buf(),
        source,
    })
}

//! Integrity checks on stored rows: each row against itself (hash, columns)
//! on every read, and the whole chain (links between rows) in
//! [`super::Store::verify`].
//!
//! The chain is tamper-evident, not tamper-proof: whoever can write the file
//! can rewrite the tail of the chain and recompute every hash after an edit.
//! Keep the [`VerifyReport::head`] hash somewhere else to detect that too.

use std::fmt;

use chrono::SecondsFormat;

use super::chain::link_hash;
use super::model::{ChainedRecord, Record};
use crate::digest::Digest;

/// What is wrong with a stored record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The stored hash is not sha256(previous hash + JSON).
    HashMismatch {
        /// Hash in the row.
        stored: String,
        /// Hash of the row's content.
        computed: Digest,
    },
    /// The row's previous-hash link is not the hash of the row before it.
    BrokenLink {
        /// Hash of the row before (`None`: this is the first row).
        expected: Option<String>,
        /// Link stored in this row.
        found: Option<String>,
    },
    /// A hash column does not hold a digest.
    MalformedHash(String),
    /// The JSON does not decode as a record.
    Undecodable(String),
    /// An indexed column disagrees with the hashed JSON.
    ColumnMismatch(&'static str),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::HashMismatch { stored, computed } => write!(
                f,
                "stored hash {stored} does not match its content (content hashes to {computed})"
            ),
            Problem::BrokenLink { expected, found } => write!(
                f,
                "previous-hash link is {} but the record before it hashes to {} \
                 (that record was rewritten, or records between them were removed)",
                found.as_deref().unwrap_or("empty"),
                expected
                    .as_deref()
                    .unwrap_or("nothing (this is the first record)")
            ),
            Problem::MalformedHash(h) => write!(f, "hash column holds `{h}`, not a digest"),
            Problem::Undecodable(e) => write!(f, "record JSON does not decode: {e}"),
            Problem::ColumnMismatch(c) => {
                write!(f, "column `{c}` disagrees with the hashed record JSON")
            }
        }
    }
}

/// The result of walking the whole chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records checked before the walk ended.
    pub checked: u64,
    /// Hash of the last record (when the chain is intact).
    pub head: Option<Digest>,
    /// The first record that failed, if any.
    pub first_bad: Option<BadRecord>,
}

/// A record that failed verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    /// Chain position.
    pub seq: i64,
    /// Record id as stored.
    pub id: String,
    /// `pipeline:version-build` as stored in the columns.
    pub build: String,
    /// What is wrong.
    pub problem: Problem,
}

/// One `records` row exactly as stored.
#[derive(Debug, Clone)]
pub(super) struct Row {
    pub seq: i64,
    pub id: String,
    pub pipeline: String,
    pub version: String,
    pub build: i64,
    pub status: String,
    pub build_key: Option<String>,
    pub finished_at: String,
    pub json: String,
    pub prev_hash: Option<String>,
    pub hash: String,
}

impl Row {
    /// The columns in [`Row::from_sql`] order.
    pub const COLUMNS: &'static str =
        "seq, id, pipeline, version, build, status, build_key, finished_at, json, prev_hash, hash";

    /// Reads a row selected with [`Row::COLUMNS`].
    pub fn from_sql(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
        Ok(Row {
            seq: r.get(0)?,
            id: r.get(1)?,
            pipeline: r.get(2)?,
            version: r.get(3)?,
            build: r.get(4)?,
            status: r.get(5)?,
            build_key: r.get(6)?,
            finished_at: r.get(7)?,
            json: r.get(8)?,
            prev_hash: r.get(9)?,
            hash: r.get(10)?,
        })
    }

    /// `pipeline:version-build` from the columns.
    pub fn build_label(&self) -> String {
        format!("{}:{}-{}", self.pipeline, self.version, self.build)
    }

    /// Checks the row against itself: the hash covers the previous-hash link
    /// and the JSON, and the indexed columns say what the JSON says.
    pub fn check(self) -> Result<ChainedRecord, Problem> {
        let hash: Digest = parse_hash(&self.hash)?;
        let prev_hash = self.prev_hash.as_deref().map(parse_hash).transpose()?;
        let computed = link_hash(prev_hash.as_ref(), &self.json);
        if computed != hash {
            return Err(Problem::HashMismatch {
                stored: self.hash,
                computed,
            });
        }
        let record: Record =
            serde_json::from_str(&self.json).map_err(|e| Problem::Undecodable(e.to_string()))?;
        let columns = Columns::of(&record);
        let mismatch = [
            ("id", columns.id == self.id),
            ("pipeline", columns.pipeline == self.pipeline),
            ("version", columns.version == self.version),
            ("build", columns.build == self.build),
            ("status", columns.status == self.status),
            ("build_key", columns.build_key == self.build_key),
            ("finished_at", columns.finished_at == self.finished_at),
        ]
        .into_iter()
        .find(|(_, ok)| !ok);
        if let Some((column, _)) = mismatch {
            return Err(Problem::ColumnMismatch(column));
        }
        Ok(ChainedRecord {
            seq: self.seq,
            prev_hash,
            hash,
            record,
        })
    }
}

fn parse_hash(text: &str) -> Result<Digest, Problem> {
    text.parse()
        .map_err(|_| Problem::MalformedHash(text.escape_debug().to_string()))
}

/// The indexed column values derived from a record.
pub(super) struct Columns<'a> {
    pub id: &'a str,
    pub pipeline: &'a str,
    pub version: String,
    pub build: i64,
    pub status: &'static str,
    pub build_key: Option<String>,
    pub finished_at: String,
}

impl<'a> Columns<'a> {
    pub fn of(record: &'a Record) -> Self {
        Columns {
            id: &record.id.0,
            pipeline: &record.pipeline,
            version: record.version.to_string(),
            build: i64::from(record.build.0),
            status: record.status.as_str(),
            build_key: record.build_key.as_ref().map(Digest::to_string),
            finished_at: record
                .finished_at
                .to_rfc3339_opts(SecondsFormat::AutoSi, true),
        }
    }
}

/// Walks rows in chain order and reports the first that fails.
pub(super) fn walk(rows: impl IntoIterator<Item = Row>) -> VerifyReport {
    let mut report = VerifyReport {
        checked: 0,
        head: None,
        first_bad: None,
    };
    let mut expected: Option<String> = None;
    for row in rows {
        let (seq, id, build) = (row.seq, row.id.clone(), row.build_label());
        let bad = |problem| BadRecord {
            seq,
            id: id.clone(),
            build: build.clone(),
            problem,
        };
        if row.prev_hash != expected {
            report.first_bad = Some(bad(Problem::BrokenLink {
                expected,
                found: row.prev_hash,
            }));
            report.head = None;
            return report;
        }
        expected = Some(row.hash.clone());
        match row.check() {
            Ok(chained) => {
                report.checked += 1;
                report.head = Some(chained.hash);
            }
            Err(problem) => {
                report.first_bad = Some(bad(problem));
                report.head = None;
                return report;
            }
        }
    }
    report
}

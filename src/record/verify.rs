//! Integrity checks on stored rows: each row against itself (hash, columns,
//! signature when a key is configured) on every read, and the whole chain
//! (links between records and events) in [`super::Store::verify`].
//!
//! Without a signing key the chain is tamper-evident, not tamper-proof:
//! whoever can write the file can rewrite the tail and recompute every hash.
//! With one, a rewritten entry has no valid signature (`signature.rs`).

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
    /// A key is configured and the entry carries no signature.
    Unsigned {
        /// The configured key's fingerprint.
        key_id: String,
    },
    /// The entry is signed by another key than the configured one.
    OtherKey {
        /// The signer's fingerprint.
        found: String,
        /// The configured key's fingerprint.
        expected: String,
    },
    /// The stored signature does not verify for this entry's hash.
    BadSignature {
        /// The key it claims.
        key_id: String,
    },
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
            Problem::Unsigned { key_id } => write!(
                f,
                "it carries no signature, but records are signed with key {key_id} \
                 (rewritten without the key?)"
            ),
            Problem::OtherKey { found, expected } => {
                write!(f, "it is signed by key {found}, not by key {expected}")
            }
            Problem::BadSignature { key_id } => write!(
                f,
                "its signature by key {key_id} does not verify (the entry or its signature was altered)"
            ),
        }
    }
}

/// The result of walking the whole chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records checked before the walk ended.
    pub checked: u64,
    /// Events (approvals, promotions) checked before the walk ended.
    pub events: u64,
    /// Entries checked that carry a signature row.
    pub signed: u64,
    /// The key signatures were checked with (`None`: not checked).
    pub key_id: Option<String>,
    /// Hash of the last record (when the chain is intact).
    pub head: Option<Digest>,
    /// The first record that failed, if any.
    pub first_bad: Option<BadRecord>,
}

/// A chain entry that failed verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    /// `record`, or the event's kind (`approval`, `promotion`).
    pub kind: String,
    /// Position among records (or among events).
    pub seq: i64,
    /// Record id as stored.
    pub id: String,
    /// `pipeline:version-build` as stored in the columns (for an event, of
    /// the record it is about).
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

/// One entry of the chain as stored.
pub(super) enum Entry {
    /// A `records` row.
    Record(Row),
    /// An `events` row.
    Event(super::event_store::EventRow),
}

impl Entry {
    fn prev_hash(&self) -> Option<&String> {
        match self {
            Entry::Record(r) => r.prev_hash.as_ref(),
            Entry::Event(e) => Some(&e.prev_hash),
        }
    }

    fn hash(&self) -> &str {
        match self {
            Entry::Record(r) => &r.hash,
            Entry::Event(e) => &e.hash,
        }
    }

    /// Kind, seq, id and build for a report.
    fn describe(&self) -> (String, i64, String, String) {
        match self {
            Entry::Record(r) => ("record".into(), r.seq, r.id.clone(), r.build_label()),
            Entry::Event(e) => (e.kind.clone(), e.seq, e.id.clone(), e.build_label()),
        }
    }

    /// The entry's own check; its hash when it passes.
    fn check(self) -> Result<(bool, Digest), Problem> {
        match self {
            Entry::Record(r) => r.check().map(|c| (false, c.hash)),
            Entry::Event(e) => e.check().map(|c| (true, c.hash)),
        }
    }
}

/// Entries in chain order: records by seq, each followed by the events
/// appended while it was the newest record (`(after_record, event)` pairs,
/// sorted by `after_record` then seq).
pub(super) fn chain_order(
    records: Vec<Row>,
    events: Vec<(i64, super::event_store::EventRow)>,
) -> Vec<Entry> {
    let mut events = events.into_iter().peekable();
    let mut out = Vec::with_capacity(records.len() + events.len());
    for record in records {
        let seq = record.seq;
        out.push(Entry::Record(record));
        while let Some((_, e)) = events.next_if(|(after, _)| *after <= seq) {
            out.push(Entry::Event(e));
        }
    }
    out.extend(events.map(|(_, e)| Entry::Event(e)));
    out
}

/// Walks entries in chain order, checking links, each entry and its
/// signature (`signature_of` finds the stored one), and reports the first
/// that fails.
pub(super) fn walk(
    entries: impl IntoIterator<Item = Entry>,
    keys: &super::signature::ChainKeys,
    signature_of: impl Fn(&str) -> Option<super::signature::StoredSignature>,
) -> VerifyReport {
    let mut report = VerifyReport {
        checked: 0,
        events: 0,
        signed: 0,
        key_id: keys.verifier().map(|k| k.id().to_string()),
        head: None,
        first_bad: None,
    };
    let mut expected: Option<String> = None;
    for entry in entries {
        let (kind, seq, id, build) = entry.describe();
        let fail = |report: &mut VerifyReport, problem| {
            report.first_bad = Some(BadRecord {
                kind,
                seq,
                id,
                build,
                problem,
            });
            report.head = None;
        };
        if entry.prev_hash() != expected.as_ref() {
            let found = entry.prev_hash().cloned();
            fail(&mut report, Problem::BrokenLink { expected, found });
            return report;
        }
        let stored = signature_of(entry.hash());
        expected = Some(entry.hash().to_string());
        let checked = entry
            .check()
            .and_then(|(event, hash)| keys.check(&hash, stored.as_ref()).map(|()| (event, hash)));
        match checked {
            Ok((event, hash)) => {
                if event {
                    report.events += 1;
                } else {
                    report.checked += 1;
                }
                report.signed += u64::from(stored.is_some());
                report.head = Some(hash);
            }
            Err(problem) => {
                fail(&mut report, problem);
                return report;
            }
        }
    }
    report
}

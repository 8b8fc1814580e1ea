//! Events in the SQLite store: appending an approval decision or a
//! promotion to the chain (linked and signed like records, in one immediate
//! transaction with the checks that make it valid), and reading a record's
//! events back, each re-checked. The decision's rules are `decide.rs`'s.

use chrono::SecondsFormat;
use rusqlite::{OptionalExtension, Transaction, TransactionBehavior, params};

use super::backend::DecisionAppend;
use super::chain::{canonical_json, link_hash};
use super::error::RecordError;
use super::event::{ChainedEvent, Event};
use super::signature::StoredSignature;
use super::store::Store;
use super::verify::{Entry, Problem, Row};
use crate::digest::Digest;

/// One `events` row exactly as stored.
#[derive(Debug, Clone)]
pub(super) struct EventRow {
    pub seq: i64,
    pub id: String,
    pub kind: String,
    pub record_id: String,
    pub json: String,
    pub prev_hash: String,
    pub hash: String,
}

impl EventRow {
    /// The columns in [`EventRow::from_sql`] order.
    pub const COLUMNS: &'static str = "seq, id, kind, record_id, json, prev_hash, hash";

    fn from_sql(r: &rusqlite::Row<'_>) -> rusqlite::Result<EventRow> {
        Ok(EventRow {
            seq: r.get(0)?,
            id: r.get(1)?,
            kind: r.get(2)?,
            record_id: r.get(3)?,
            json: r.get(4)?,
            prev_hash: r.get(5)?,
            hash: r.get(6)?,
        })
    }

    /// The build the event is about, from its JSON (the record id if the
    /// JSON does not decode).
    pub fn build_label(&self) -> String {
        serde_json::from_str::<serde_json::Value>(&self.json)
            .ok()
            .and_then(|v| v["build"].as_str().map(str::to_string))
            .unwrap_or_else(|| self.record_id.clone())
    }

    /// Hash over link + JSON, and the columns equal to the JSON.
    pub fn check(self) -> Result<ChainedEvent, Problem> {
        let parse = |t: &str| {
            t.parse::<Digest>()
                .map_err(|_| Problem::MalformedHash(t.escape_debug().to_string()))
        };
        let (hash, prev_hash) = (parse(&self.hash)?, parse(&self.prev_hash)?);
        let computed = link_hash(Some(&prev_hash), &self.json);
        if computed != hash {
            return Err(Problem::HashMismatch {
                stored: self.hash,
                computed,
            });
        }
        let event: Event =
            serde_json::from_str(&self.json).map_err(|e| Problem::Undecodable(e.to_string()))?;
        let mismatch = [
            ("id", event.id == self.id),
            ("kind", event.kind.as_str() == self.kind),
            ("record_id", event.record.0 == self.record_id),
        ]
        .into_iter()
        .find(|(_, ok)| !ok);
        if let Some((column, _)) = mismatch {
            return Err(Problem::ColumnMismatch(column));
        }
        Ok(ChainedEvent {
            seq: self.seq,
            prev_hash,
            hash,
            event,
        })
    }
}

impl Store {
    /// Appends `event` after the chain head, signed when the store signs.
    pub fn append_event(&mut self, event: &Event) -> Result<ChainedEvent, RecordError> {
        let err = self.db_error("appending an event");
        let keys = self.keys().clone();
        let path = self.path().to_path_buf();
        let tx = self
            .conn_mut()
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        let appended = insert_event(&tx, event, &keys, &path)?;
        tx.commit().map_err(&err)?;
        Ok(appended)
    }

    /// Appends the approval `event` only when its record has no decision
    /// yet, checked in the append's (immediate) transaction; the
    /// `events_one_decision` index refuses a second one in the schema too.
    pub fn append_decision(&mut self, event: &Event) -> Result<DecisionAppend, RecordError> {
        let err = self.db_error("appending an approval");
        let (keys, path) = (self.keys().clone(), self.path().to_path_buf());
        let tx = self
            .conn_mut()
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        if let Some(prior) = decision_in(&tx, &event.record.0, &path)? {
            return Ok(DecisionAppend::AlreadyDecided(prior));
        }
        let appended = insert_event(&tx, event, &keys, &path)?;
        tx.commit().map_err(&err)?;
        Ok(DecisionAppend::Appended(appended))
    }

    /// The events about `record_id`, oldest first, each re-checked (hash,
    /// columns, signature).
    pub fn events_of(&self, record_id: &str) -> Result<Vec<ChainedEvent>, RecordError> {
        let sql = format!(
            "SELECT {} FROM events WHERE record_id = ?1 ORDER BY seq",
            EventRow::COLUMNS
        );
        let rows = self
            .conn()
            .prepare(&sql)
            .and_then(|mut s| {
                s.query_map(params![record_id], EventRow::from_sql)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(self.db_error("reading events"))?;
        rows.into_iter()
            .map(|row| {
                let seq = row.seq;
                let tampered = |problem| RecordError::Tampered {
                    seq,
                    path: self.path().to_path_buf(),
                    problem,
                };
                let event = row.check().map_err(tampered)?;
                self.check_signature(&event.hash).map_err(tampered)?;
                Ok(event)
            })
            .collect()
    }

    /// The signature stored for `hash`, checked against the store's key.
    pub(super) fn check_signature(&self, hash: &Digest) -> Result<(), Problem> {
        let stored = self.signature_of(&hash.to_string());
        self.keys().check(hash, stored.as_ref())
    }

    /// The signature row for `hash` (`None` also when it cannot be read:
    /// a missing signature is what a check reports).
    pub(super) fn signature_of(&self, hash: &str) -> Option<StoredSignature> {
        self.conn()
            .query_row(
                "SELECT key_id, signature FROM signatures WHERE hash = ?1",
                params![hash],
                |r| {
                    Ok(StoredSignature {
                        key_id: r.get(0)?,
                        signature: r.get(1)?,
                    })
                },
            )
            .optional()
            .ok()
            .flatten()
    }

    /// Every chain entry in chain order: records by seq, each followed by
    /// the events appended while it was the newest record.
    pub(super) fn entries(&self) -> Result<Vec<Entry>, RecordError> {
        let err = self.db_error("verifying the record chain");
        let conn = self.conn();
        let records = conn
            .prepare(&format!(
                "SELECT {} FROM records ORDER BY seq",
                Row::COLUMNS
            ))
            .and_then(|mut s| {
                s.query_map([], Row::from_sql)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(&err)?;
        let sql = format!(
            "SELECT {}, after_record FROM events ORDER BY after_record, seq",
            EventRow::COLUMNS
        );
        let events = conn
            .prepare(&sql)
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get::<_, i64>(7)?, EventRow::from_sql(r)?)))?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(&err)?;
        Ok(super::verify::chain_order(records, events))
    }
}

/// The approval event on `record_id` inside `tx`, if any.
fn decision_in(
    tx: &Transaction<'_>,
    record_id: &str,
    path: &std::path::Path,
) -> Result<Option<ChainedEvent>, RecordError> {
    let sql = format!(
        "SELECT {} FROM events WHERE record_id = ?1 AND kind = 'approval'",
        EventRow::COLUMNS
    );
    let row = tx
        .query_row(&sql, params![record_id], EventRow::from_sql)
        .optional()
        .map_err(|source| RecordError::Database {
            operation: "reading an approval",
            path: path.to_path_buf(),
            source,
        })?;
    row.map(|r| {
        let seq = r.seq;
        r.check().map_err(|problem| RecordError::Tampered {
            seq,
            path: path.to_path_buf(),
            problem,
        })
    })
    .transpose()
}

/// Inserts `event` (and its signature) after the chain head inside `tx`.
fn insert_event(
    tx: &Transaction<'_>,
    event: &Event,
    keys: &super::signature::ChainKeys,
    path: &std::path::Path,
) -> Result<ChainedEvent, RecordError> {
    let err = |source| RecordError::Database {
        operation: "appending an event",
        path: path.to_path_buf(),
        source,
    };
    let json = canonical_json(event).map_err(|source| RecordError::Encode {
        id: event.record.clone(),
        source,
    })?;
    let prev = super::store::chain_head(tx, path)?.ok_or_else(|| RecordError::NotFound {
        selector: event.record.to_string(),
    })?;
    let hash = link_hash(Some(&prev), &json);
    tx.execute(
        "INSERT INTO events (id, kind, record_id, after_record, at, json, prev_hash, hash) \
         VALUES (?1, ?2, ?3, (SELECT MAX(seq) FROM records), ?4, ?5, ?6, ?7)",
        params![
            event.id,
            event.kind.as_str(),
            event.record.0,
            event.at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            json,
            prev.to_string(),
            hash.to_string()
        ],
    )
    .map_err(err)?;
    let seq = tx.last_insert_rowid();
    super::store::insert_signature(tx, keys, &hash, path)?;
    Ok(ChainedEvent {
        seq,
        prev_hash: prev,
        hash,
        event: event.clone(),
    })
}

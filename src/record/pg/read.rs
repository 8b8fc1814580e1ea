//! Reading the chain back: every row re-checked on the way out (hash over
//! link and JSON, columns against the JSON, signature with a key) by the
//! checks the SQLite store uses (`verify.rs`), and the whole-chain walk.

use std::collections::HashMap;

use deadpool_postgres::Transaction;
use tokio_postgres::IsolationLevel;
use tokio_postgres::types::ToSql;

use super::PgStore;
use crate::digest::Digest;
use crate::record::backend::Filter;
use crate::record::error::RecordError;
use crate::record::event::ChainedEvent;
use crate::record::event_store::EventRow;
use crate::record::model::ChainedRecord;
use crate::record::signature::StoredSignature;
use crate::record::store::Selector;
use crate::record::verify::{self, Entry, Problem, Row, VerifyReport};

/// A row with the signature stored for its hash, if any.
type Signed<T> = (T, Option<StoredSignature>);

impl PgStore {
    /// The records `filter` selects, each re-checked.
    pub async fn records(&self, filter: &Filter) -> Result<Vec<ChainedRecord>, RecordError> {
        let limit = filter.limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
        let statuses = filter.status_texts();
        let key = filter.build_key.as_ref().map(Digest::to_string);
        let order = if filter.newest_first { "DESC" } else { "ASC" };
        let sql = format!(
            "WHERE ($1::text IS NULL OR pipeline = $1) \
             AND (cardinality($2::text[]) = 0 OR status = ANY($2)) \
             AND ($3::text IS NULL OR build_key = $3) ORDER BY seq {order} LIMIT $4"
        );
        self.select(&sql, &[&filter.pipeline, &statuses, &key, &limit])
            .await
    }

    /// The approval event on `record_id` inside `tx`, if any, re-checked.
    pub(super) async fn decision_in(
        &self,
        tx: &Transaction<'_>,
        record_id: &str,
    ) -> Result<Option<ChainedEvent>, RecordError> {
        let err = self.db_error("reading an approval");
        let sql = format!(
            "{} WHERE record_id = $1 AND kind = 'approval'",
            event_query()
        );
        let Some(r) = tx.query_opt(&sql, &[&record_id]).await.map_err(&err)? else {
            return Ok(None);
        };
        let ((_, row), sig) = event_row(&r).map_err(&err)?;
        let seq = row.seq;
        self.recheck(seq, row.check().map(|e| (e.hash.clone(), e)), sig)
            .map(Some)
    }

    /// One record by id or build.
    pub async fn get(&self, selector: &Selector) -> Result<ChainedRecord, RecordError> {
        let found = match selector {
            Selector::Id(id) => self.select("WHERE id = $1", &[&id.0]).await?,
            Selector::Build(b) => {
                let (version, build) = (b.version.to_string(), i64::from(b.build.0));
                let filter = "WHERE pipeline = $1 AND version = $2 AND build = $3";
                self.select(filter, &[&b.pipeline, &version, &build])
                    .await?
            }
        };
        found
            .into_iter()
            .next()
            .ok_or_else(|| RecordError::NotFound {
                selector: selector.to_string(),
            })
    }

    /// The events about `record_id`, oldest first, each re-checked.
    pub async fn events_of(&self, record_id: &str) -> Result<Vec<ChainedEvent>, RecordError> {
        let sql = format!("{} WHERE record_id = $1 ORDER BY seq", event_query());
        let rows = self.client().await?.query(&sql, &[&record_id]).await;
        let rows = rows.map_err(self.db_error("reading events"))?;
        rows.iter()
            .map(|r| {
                let ((_, row), sig) = event_row(r).map_err(self.db_error("reading events"))?;
                let seq = row.seq;
                self.recheck(seq, row.check().map(|e| (e.hash.clone(), e)), sig)
            })
            .collect()
    }

    /// Walks the whole chain (records and events, in one snapshot) from the
    /// first entry and reports the first whose hash, link, columns or
    /// signature do not match.
    pub async fn verify(&self) -> Result<VerifyReport, RecordError> {
        let err = self.db_error("verifying the record chain");
        let mut client = self.client().await?;
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(&err)?;
        let records = tx.query(&record_query("ORDER BY seq"), &[]).await;
        let records = records.map_err(&err)?;
        let sql = format!("{} ORDER BY after_record, seq", event_query());
        let events = tx.query(&sql, &[]).await.map_err(&err)?;
        tx.commit().await.map_err(&err)?;
        let (entries, signatures) = decode_chain(&records, &events).map_err(&err)?;
        Ok(verify::walk(entries, &self.keys, |h| {
            signatures.get(h).cloned()
        }))
    }

    /// Records matching `filter` (SQL after the `FROM`), each re-checked.
    async fn select(
        &self,
        filter: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<ChainedRecord>, RecordError> {
        let err = self.db_error("reading records");
        let rows = self
            .client()
            .await?
            .query(&record_query(filter), params)
            .await;
        rows.map_err(&err)?
            .iter()
            .map(|r| {
                let (row, sig) = record_row(r).map_err(&err)?;
                let seq = row.seq;
                self.recheck(seq, row.check().map(|c| (c.hash.clone(), c)), sig)
            })
            .collect()
    }

    /// An entry read at `seq`: its own check's result (with its hash), then
    /// the signature stored for it, checked with the store's keys.
    fn recheck<T>(
        &self,
        seq: i64,
        checked: Result<(Digest, T), Problem>,
        sig: Option<StoredSignature>,
    ) -> Result<T, RecordError> {
        let (hash, entry) = checked.map_err(self.tampered(seq))?;
        self.keys
            .check(&hash, sig.as_ref())
            .map_err(self.tampered(seq))?;
        Ok(entry)
    }
}

/// The chain entries in chain order, and the signatures by hash.
fn decode_chain(
    records: &[tokio_postgres::Row],
    events: &[tokio_postgres::Row],
) -> Result<(Vec<Entry>, HashMap<String, StoredSignature>), tokio_postgres::Error> {
    let mut signatures = HashMap::new();
    let mut keep = |hash: &str, sig: Option<StoredSignature>| {
        if let Some(s) = sig {
            signatures.insert(hash.to_string(), s);
        }
    };
    let mut record_rows = Vec::with_capacity(records.len());
    for r in records {
        let (row, sig) = record_row(r)?;
        keep(&row.hash, sig);
        record_rows.push(row);
    }
    let mut event_rows = Vec::with_capacity(events.len());
    for r in events {
        let (row, sig) = event_row(r)?;
        keep(&row.1.hash, sig);
        event_rows.push(row);
    }
    Ok((verify::chain_order(record_rows, event_rows), signatures))
}

/// Records with their signatures, then `rest` (a filter and order).
fn record_query(rest: &str) -> String {
    format!(
        "SELECT {}, key_id, signature FROM records LEFT JOIN signatures USING (hash) {rest}",
        Row::COLUMNS
    )
}

/// Events with `after_record` and their signatures.
fn event_query() -> String {
    format!(
        "SELECT {}, after_record, key_id, signature FROM events LEFT JOIN signatures USING (hash)",
        EventRow::COLUMNS
    )
}

/// A [`record_query`] row.
fn record_row(r: &tokio_postgres::Row) -> Result<Signed<Row>, tokio_postgres::Error> {
    let row = Row {
        seq: r.try_get(0)?,
        id: r.try_get(1)?,
        pipeline: r.try_get(2)?,
        version: r.try_get(3)?,
        build: r.try_get(4)?,
        status: r.try_get(5)?,
        build_key: r.try_get(6)?,
        finished_at: r.try_get(7)?,
        json: r.try_get(8)?,
        prev_hash: r.try_get(9)?,
        hash: r.try_get(10)?,
    };
    Ok((row, signature_at(r, 11)?))
}

/// An [`event_query`] row: (`after_record`, the event row) and signature.
fn event_row(r: &tokio_postgres::Row) -> Result<Signed<(i64, EventRow)>, tokio_postgres::Error> {
    let row = EventRow {
        seq: r.try_get(0)?,
        id: r.try_get(1)?,
        kind: r.try_get(2)?,
        record_id: r.try_get(3)?,
        json: r.try_get(4)?,
        prev_hash: r.try_get(5)?,
        hash: r.try_get(6)?,
    };
    Ok(((r.try_get(7)?, row), signature_at(r, 8)?))
}

/// The signature columns `(key_id, signature)` from index `i`.
fn signature_at(
    r: &tokio_postgres::Row,
    i: usize,
) -> Result<Option<StoredSignature>, tokio_postgres::Error> {
    let key_id: Option<String> = r.try_get(i)?;
    let signature: Option<String> = r.try_get(i + 1)?;
    Ok(key_id
        .zip(signature)
        .map(|(key_id, signature)| StoredSignature { key_id, signature }))
}

//! Writing to the chain: build numbers, records and events. Every append is
//! one transaction that locks the chain head (`SELECT … FOR UPDATE`), links
//! the entry to it, inserts it and its signature, and commits; concurrent
//! writers on any node queue on that row lock. A fenced store's writes
//! first check the cluster run's claim in the same transaction.

use chrono::{SecondsFormat, Utc};
use deadpool_postgres::Transaction;
use tokio_postgres::types::ToSql;

use super::PgStore;
use crate::digest::Digest;
use crate::record::backend::DecisionAppend;
use crate::record::chain::{canonical_json, link_hash};
use crate::record::error::RecordError;
use crate::record::event::{ChainedEvent, Event};
use crate::record::fence::Fence;
use crate::record::model::{ChainedRecord, Record, RecordId};
use crate::record::store::Allocation;
use crate::record::verify::{Columns, Problem};

impl PgStore {
    /// Hands out the next build number for (pipeline, version) and a fresh
    /// run id. An advisory lock on (pipeline, version), held until commit,
    /// serializes allocators on every node, so no number is handed out twice.
    pub async fn allocate(
        &self,
        pipeline: &str,
        version: &semver::Version,
    ) -> Result<Allocation, RecordError> {
        let err = self.db_error("allocating a build number");
        let (id, now) = (RecordId::random(), Utc::now());
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(&err)?;
        self.check_fence(&tx).await?;
        let lock = format!("kiln build {pipeline}\n{version}");
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[&lock],
        )
        .await
        .map_err(&err)?;
        let row = tx
            .query_one(
                "INSERT INTO builds (pipeline, version, build, id, allocated_at) \
                 SELECT $1, $2, COALESCE(MAX(build), 0) + 1, $3, $4 FROM builds \
                 WHERE pipeline = $1 AND version = $2 RETURNING build",
                &[
                    &pipeline,
                    &version.to_string(),
                    &id.0,
                    &now.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                ],
            )
            .await
            .map_err(&err)?;
        tx.commit().await.map_err(&err)?;
        Ok(Allocation::new(id, pipeline, version, row.get(0), now))
    }

    /// Appends a finished record after the chain head and returns it with
    /// its hashes. Its id and build must come from [`PgStore::allocate`];
    /// each build is recorded once.
    pub async fn append(&self, record: &Record) -> Result<ChainedRecord, RecordError> {
        let json = canonical_json(record).map_err(|source| RecordError::Encode {
            id: record.id.clone(),
            source,
        })?;
        let err = self.db_error("appending a record");
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(&err)?;
        self.check_fence(&tx).await?;
        if let Some(f) = &self.fence {
            tx.execute(Fence::RECORDED_SQL, &[&f.run_id, &f.epoch, &record.id.0])
                .await
                .map_err(self.db_error("naming the cluster run's record"))?;
        }
        let prev_hash = self.lock_head(&tx).await?;
        self.check_allocated(&tx, record).await?;
        let hash = link_hash(prev_hash.as_ref(), &json);
        let c = Columns::of(record);
        let seq = self
            .insert_entry(
                tx,
                "INSERT INTO records (seq, id, pipeline, version, build, status, build_key, \
                 finished_at, json, prev_hash, hash) \
                 VALUES (0, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING seq",
                &[
                    &c.id,
                    &c.pipeline,
                    &c.version,
                    &c.build,
                    &c.status,
                    &c.build_key,
                    &c.finished_at,
                    &json,
                    &prev_hash.as_ref().map(Digest::to_string),
                    &hash.to_string(),
                ],
                &hash,
            )
            .await?;
        Ok(ChainedRecord {
            seq,
            prev_hash,
            hash,
            record: record.clone(),
        })
    }

    /// Appends `event` (an approval or promotion) after the chain head.
    pub async fn append_event(&self, event: &Event) -> Result<ChainedEvent, RecordError> {
        let err = self.db_error("appending an event");
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(&err)?;
        let prev = self.lock_event_head(&tx, event).await?;
        self.insert_event(tx, event, prev).await
    }

    /// Appends the approval `event` only when its record has no decision
    /// yet. The check runs after the chain head is locked, in the append's
    /// transaction: a concurrent decider holds that lock until it commits,
    /// so the check sees its decision (and `events_one_decision`, a unique
    /// index, refuses a second one whatever the writer).
    pub async fn append_decision(&self, event: &Event) -> Result<DecisionAppend, RecordError> {
        let err = self.db_error("appending an approval");
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(&err)?;
        let prev = self.lock_event_head(&tx, event).await?;
        if let Some(prior) = self.decision_in(&tx, &event.record.0).await? {
            return Ok(DecisionAppend::AlreadyDecided(prior));
        }
        Ok(DecisionAppend::Appended(
            self.insert_event(tx, event, prev).await?,
        ))
    }

    /// The fence check, then the chain head locked (an event needs a record
    /// before it).
    async fn lock_event_head(
        &self,
        tx: &Transaction<'_>,
        event: &Event,
    ) -> Result<Digest, RecordError> {
        self.check_fence(tx).await?;
        self.lock_head(tx)
            .await?
            .ok_or_else(|| RecordError::NotFound {
                selector: event.record.to_string(),
            })
    }

    /// Inserts `event` after `prev` (the locked head), signs and commits.
    async fn insert_event(
        &self,
        tx: Transaction<'_>,
        event: &Event,
        prev: Digest,
    ) -> Result<ChainedEvent, RecordError> {
        let json = canonical_json(event).map_err(|source| RecordError::Encode {
            id: event.record.clone(),
            source,
        })?;
        let hash = link_hash(Some(&prev), &json);
        let seq = self
            .insert_entry(
                tx,
                "INSERT INTO events (seq, id, kind, record_id, after_record, at, json, \
                 prev_hash, hash) VALUES (0, $1, $2, $3, 0, $4, $5, $6, $7) RETURNING seq",
                &[
                    &event.id,
                    &event.kind.as_str(),
                    &event.record.0,
                    &event.at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                    &json,
                    &prev.to_string(),
                    &hash.to_string(),
                ],
                &hash,
            )
            .await?;
        Ok(ChainedEvent {
            seq,
            prev_hash: prev,
            hash,
            event: event.clone(),
        })
    }

    /// With a fence, refuses ([`RecordError::Fenced`]) unless the cluster
    /// run's claim still holds; the run's row stays held `FOR SHARE` until
    /// the transaction ends, so no reaper takes it in between.
    async fn check_fence(&self, tx: &Transaction<'_>) -> Result<(), RecordError> {
        let Some(f) = &self.fence else {
            return Ok(());
        };
        let held = tx
            .query_opt(Fence::HOLDS_SQL, &[&f.run_id, &f.epoch, &f.node])
            .await
            .map_err(self.db_error("checking the cluster run's claim"))?;
        match held {
            Some(_) => Ok(()),
            None => Err(RecordError::Fenced {
                run: f.run_id.clone(),
                epoch: f.epoch,
            }),
        }
    }

    /// Ends an append: inserts the entry (`sql`, returning its `seq`) and
    /// the signature of its `hash`, and commits.
    async fn insert_entry(
        &self,
        tx: Transaction<'_>,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        hash: &Digest,
    ) -> Result<i64, RecordError> {
        let err = self.db_error("appending to the chain");
        let row = tx.query_one(sql, params).await.map_err(&err)?;
        self.insert_signature(&tx, hash).await?;
        tx.commit().await.map_err(&err)?;
        Ok(row.get(0))
    }

    /// Fails when appending with this store's keys would put an unsigned
    /// entry into a signed chain ([`RecordError::SigningKeyRequired`]).
    pub async fn check_appendable(&self) -> Result<(), RecordError> {
        let err = self.db_error("checking for signed entries");
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(&err)?;
        self.require_signer(&tx).await?;
        tx.commit().await.map_err(err)
    }

    /// Locks the chain head until commit and returns its hash (`None`: the
    /// chain is empty); refuses when an unsigned entry would be appended to
    /// a signed chain.
    async fn lock_head(&self, tx: &Transaction<'_>) -> Result<Option<Digest>, RecordError> {
        let row = tx
            .query_one("SELECT hash FROM chain_head FOR UPDATE", &[])
            .await
            .map_err(self.db_error("locking the chain head"))?;
        self.require_signer(tx).await?;
        let text: Option<String> = row.get(0);
        text.map(|t| {
            t.parse::<Digest>()
                .map_err(|_| self.tampered(0)(Problem::MalformedHash(t.escape_debug().to_string())))
        })
        .transpose()
    }

    /// [`RecordError::AlreadyRecorded`] or [`RecordError::NotAllocated`]
    /// before the insert trigger would refuse with a less precise message.
    async fn check_allocated(
        &self,
        tx: &Transaction<'_>,
        record: &Record,
    ) -> Result<(), RecordError> {
        let c = Columns::of(record);
        let row = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM records WHERE id = $1 \
                     OR (pipeline = $2 AND version = $3 AND build = $4)), \
                 EXISTS (SELECT 1 FROM builds WHERE id = $1 \
                     AND pipeline = $2 AND version = $3 AND build = $4)",
                &[&c.id, &c.pipeline, &c.version, &c.build],
            )
            .await
            .map_err(self.db_error("checking a record's allocation"))?;
        let build = record.build_id().to_string();
        match (row.get(0), row.get(1)) {
            (true, _) => Err(RecordError::AlreadyRecorded { build }),
            (false, false) => Err(RecordError::NotAllocated {
                build,
                id: record.id.clone(),
            }),
            (false, true) => Ok(()),
        }
    }

    /// Refuses to append without a signing key to a chain whose entries are
    /// signed.
    async fn require_signer(&self, tx: &Transaction<'_>) -> Result<(), RecordError> {
        if self.keys.signs() {
            return Ok(());
        }
        let signed = tx
            .query_opt("SELECT key_id FROM signatures LIMIT 1", &[])
            .await
            .map_err(self.db_error("checking for signed entries"))?;
        match signed {
            Some(row) => Err(RecordError::SigningKeyRequired {
                path: self.location(),
                key_id: row.get(0),
            }),
            None => Ok(()),
        }
    }

    /// Stores the signature of a new entry's `hash`, when the store signs.
    async fn insert_signature(
        &self,
        tx: &Transaction<'_>,
        hash: &Digest,
    ) -> Result<(), RecordError> {
        let signed = self
            .keys
            .sign_async(hash)
            .await
            .map_err(|source| RecordError::Sign {
                path: self.location(),
                source,
            })?;
        let Some(sig) = signed else {
            return Ok(());
        };
        tx.execute(
            "INSERT INTO signatures (hash, key_id, signature) VALUES ($1, $2, $3)",
            &[&hash.to_string(), &sig.key_id, &sig.signature],
        )
        .await
        .map(|_| ())
        .map_err(self.db_error("storing a signature"))
    }
}

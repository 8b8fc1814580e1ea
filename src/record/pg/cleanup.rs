//! Branch cleanup records on PostgreSQL (`kiln cleanup --branch`): the
//! `cleanups` table of migration 2, append-only by trigger like the chain's
//! tables (cleanups are not chain entries: they are neither linked nor
//! signed, as on SQLite).

use chrono::SecondsFormat;

use super::PgStore;
use crate::record::cleanup::CleanupRecord;
use crate::record::error::RecordError;

impl PgStore {
    /// Appends a cleanup record.
    pub async fn append_cleanup(&self, c: &CleanupRecord) -> Result<(), RecordError> {
        let json = serde_json::to_string(c).map_err(|source| RecordError::Cleanup {
            branch: c.branch.clone(),
            source,
        })?;
        let at = c.at.to_rfc3339_opts(SecondsFormat::AutoSi, true);
        self.client()
            .await?
            .execute(
                "INSERT INTO cleanups (branch, at, json) VALUES ($1, $2, $3)",
                &[&c.branch, &at, &json],
            )
            .await
            .map_err(self.db_error("appending a cleanup record"))?;
        Ok(())
    }

    /// The cleanups of `branch` (all when `None`), oldest first.
    pub async fn cleanups(&self, branch: Option<&str>) -> Result<Vec<CleanupRecord>, RecordError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT branch, json FROM cleanups WHERE ($1::text IS NULL OR branch = $1) \
                 ORDER BY seq",
                &[&branch],
            )
            .await
            .map_err(self.db_error("reading cleanup records"))?;
        rows.iter()
            .map(|r| {
                let (branch, json): (String, String) = (r.get(0), r.get(1));
                serde_json::from_str(&json)
                    .map_err(|source| RecordError::Cleanup { branch, source })
            })
            .collect()
    }
}

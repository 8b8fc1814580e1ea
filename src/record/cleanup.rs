//! Branch cleanups (`kiln cleanup --branch NAME`): what was removed and
//! what was left, appended to the `cleanups` table, which triggers keep
//! append-only like the records.

use chrono::{DateTime, Utc};
use rusqlite::params;
use serde::{Deserialize, Serialize};

use super::error::RecordError;
use super::store::Store;

/// One cleanup of one branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CleanupRecord {
    /// The branch.
    pub branch: String,
    /// When it ran.
    pub at: DateTime<Utc>,
    /// The branch builds it covered (`pipeline:version-build`).
    pub builds: Vec<String>,
    /// `host/repository:tag` removed (or already gone).
    pub removed: Vec<String>,
    /// `host/repository:tag` that could not be removed, with why.
    pub left: Vec<(String, String)>,
}

impl Store {
    /// Appends a cleanup record.
    pub fn append_cleanup(&mut self, c: &CleanupRecord) -> Result<(), RecordError> {
        let json = serde_json::to_string(c).map_err(|source| RecordError::Cleanup {
            branch: c.branch.clone(),
            source,
        })?;
        self.conn
            .execute(
                "INSERT INTO cleanups (branch, at, json) VALUES (?1, ?2, ?3)",
                params![c.branch, c.at.to_rfc3339(), json],
            )
            .map_err(self.db_error("appending a cleanup record"))?;
        Ok(())
    }

    /// The cleanups of `branch` (all when `None`), oldest first.
    pub fn cleanups(&self, branch: Option<&str>) -> Result<Vec<CleanupRecord>, RecordError> {
        let err = self.db_error("reading cleanup records");
        let mut stmt = self
            .conn
            .prepare(
                "SELECT branch, json FROM cleanups WHERE (?1 IS NULL OR branch = ?1) ORDER BY seq",
            )
            .map_err(&err)?;
        let rows = stmt
            .query_map(params![branch], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(&err)?;
        rows.into_iter()
            .map(|(branch, json): (String, String)| {
                serde_json::from_str(&json)
                    .map_err(|source| RecordError::Cleanup { branch, source })
            })
            .collect()
    }
}

//! Questions the rest of kiln asks the record store: which images are
//! approved for a pipeline, and whether a build key already passed.

use rusqlite::params;
use serde::Serialize;

use super::error::RecordError;
use super::model::{ChainedRecord, Status};
use super::store::Store;
use crate::digest::Digest;

/// The approved build of a pipeline and what to pull.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Approved {
    /// `REGISTRY/REPOSITORY@sha256:…` per target, in target order.
    pub references: Vec<String>,
    /// The record they come from.
    pub record: ChainedRecord,
}

impl Store {
    /// The newest record of `pipeline` whose tests passed and whose pushes
    /// were all verified (see [`super::Record::is_approvable`]), with the
    /// digest references to pull. Newer failed or unverified records do not
    /// hide an older approved one.
    pub fn approved(&self, pipeline: &str) -> Result<Option<Approved>, RecordError> {
        let candidates = self.passed_newest_first(pipeline, None)?;
        Ok(candidates
            .into_iter()
            .find(|c| c.record.is_approvable())
            .map(|record| Approved {
                references: record
                    .record
                    .targets
                    .iter()
                    .map(|t| t.pinned_reference())
                    .collect(),
                record,
            }))
    }

    /// The newest approvable record of `pipeline` built with `build_key`: when
    /// one exists, the pipeline can skip the build and record `up_to_date`.
    pub fn latest_passing_with_key(
        &self,
        pipeline: &str,
        build_key: &Digest,
    ) -> Result<Option<ChainedRecord>, RecordError> {
        let candidates = self.passed_newest_first(pipeline, Some(build_key))?;
        Ok(candidates.into_iter().find(|c| c.record.is_approvable()))
    }

    /// Passed records of a pipeline, newest first, optionally with one key.
    /// The columns only narrow the search: every row is re-checked against
    /// its hashed JSON before it is returned.
    fn passed_newest_first(
        &self,
        pipeline: &str,
        build_key: Option<&Digest>,
    ) -> Result<Vec<ChainedRecord>, RecordError> {
        self.select(
            "querying passed records",
            "WHERE pipeline = ?1 AND status = ?2 AND (?3 IS NULL OR build_key = ?3) \
             ORDER BY seq DESC",
            params![
                pipeline,
                Status::Passed.as_str(),
                build_key.map(Digest::to_string)
            ],
        )
    }
}

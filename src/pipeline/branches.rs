//! Branch pipelines' bookkeeping: `kiln branches` (the branches the record
//! store knows, with their builds and cleanups) and `kiln cleanup --branch
//! NAME` (remove every tag the branch's records pushed, through
//! `distribute::cleanup`, then append a cleanup record). Tags of records
//! without a branch are never candidates.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::Pipeline;
use crate::branch::BranchName;
use crate::distribute::cleanup::{self, BranchTag};
use crate::record::cleanup::CleanupRecord;
use crate::record::{ChainKeys, RecordError, Records};

/// Why a branch listing or cleanup failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BranchesError {
    /// The record store failed.
    #[error(transparent)]
    Store(#[from] RecordError),
    /// No record names the branch.
    #[error("no build was recorded on branch `{branch}`")]
    Unknown {
        /// The branch.
        branch: String,
    },
}

/// One branch, as the records know it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BranchInfo {
    /// The branch name.
    pub branch: String,
    /// Its builds, `pipeline:version-build (status)`, oldest first.
    pub builds: Vec<String>,
    /// `host/repository:tag` its builds pushed.
    pub tags: Vec<String>,
    /// When its last build finished.
    pub last_build: DateTime<Utc>,
    /// When it was last cleaned up, if ever.
    pub cleaned_at: Option<DateTime<Utc>>,
}

/// Every branch with a recorded build in `records`, by name. Branch
/// bookkeeping reads without signature checks (branch builds are never
/// served), as it always has.
pub async fn branches(records: &Records) -> Result<Vec<BranchInfo>, BranchesError> {
    let unchecked = records.with_keys(ChainKeys::default());
    let cleanups = unchecked.cleanups(None).await?;
    let records = unchecked.branch_records(None).await?;
    let mut out: BTreeMap<String, BranchInfo> = BTreeMap::new();
    for c in records {
        let r = c.record;
        let Some(branch) = r.branch.clone() else {
            continue;
        };
        let info = out.entry(branch.clone()).or_insert_with(|| BranchInfo {
            branch,
            builds: Vec::new(),
            tags: Vec::new(),
            last_build: r.finished_at,
            cleaned_at: None,
        });
        info.builds.push(format!("{} ({})", r.build_id(), r.status));
        info.last_build = info.last_build.max(r.finished_at);
        for t in &r.targets {
            info.tags.extend(
                t.tags
                    .iter()
                    .map(|tag| format!("{}/{}:{tag}", t.registry, t.repository)),
            );
        }
    }
    for c in cleanups {
        if let Some(info) = out.get_mut(&c.branch) {
            info.cleaned_at = Some(info.cleaned_at.map_or(c.at, |a| a.max(c.at)));
        }
    }
    Ok(out.into_values().collect())
}

impl Pipeline {
    /// Removes every tag `branch`'s records pushed (never a tag without the
    /// branch's suffix) and appends the cleanup record, which lists what was
    /// removed and what was left.
    pub async fn cleanup_branch(
        &self,
        branch: &BranchName,
    ) -> Result<CleanupRecord, BranchesError> {
        let name = branch.to_string();
        let store = self.records.with_keys(ChainKeys::default());
        let records = store.branch_records(Some(&name)).await?;
        if records.is_empty() {
            return Err(BranchesError::Unknown { branch: name });
        }
        let mut tags = Vec::new();
        for t in records.iter().flat_map(|c| &c.record.targets) {
            tags.extend(t.tags.iter().map(|tag| BranchTag {
                target: t.target.clone(),
                tag: tag.clone(),
                digest: t.manifest_digest.clone(),
            }));
        }
        let removal =
            cleanup::remove_branch_tags(&self.registry, &tags, &branch.tag_suffix()).await;
        let rec = CleanupRecord {
            branch: name,
            at: Utc::now(),
            builds: records
                .iter()
                .map(|c| c.record.build_id().to_string())
                .collect(),
            removed: removal.removed,
            left: removal.left,
        };
        store.append_cleanup(&rec).await?;
        Ok(rec)
    }
}

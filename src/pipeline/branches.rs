//! Branch pipelines' bookkeeping: `kiln branches` (the branches the record
//! store knows, with their builds and cleanups) and `kiln cleanup --branch
//! NAME` (remove every tag the branch's records pushed, through
//! `distribute::cleanup`, then append a cleanup record). Tags of records
//! without a branch are never candidates.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};

use super::Pipeline;
use crate::branch::BranchName;
use crate::distribute::cleanup::{self, BranchTag};
use crate::record::cleanup::CleanupRecord;
use crate::record::{self, RecordError, Store};

/// Why a branch listing or cleanup failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BranchesError {
    /// The record store failed.
    #[error(transparent)]
    Store(#[from] RecordError),
    /// The store task panicked or was cancelled.
    #[error("the record store task failed")]
    Task(#[from] tokio::task::JoinError),
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

async fn with_store<T: Send + 'static>(
    db: PathBuf,
    f: impl FnOnce(&mut Store) -> Result<T, RecordError> + Send + 'static,
) -> Result<T, BranchesError> {
    Ok(tokio::task::spawn_blocking(move || f(&mut Store::open(&db)?)).await??)
}

/// Every branch with a recorded build, by name.
pub async fn branches(project_root: &std::path::Path) -> Result<Vec<BranchInfo>, BranchesError> {
    let db = record::db_path(project_root);
    let (records, cleanups) =
        with_store(db, |s| Ok((s.branch_records(None)?, s.cleanups(None)?))).await?;
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
        let n = name.clone();
        let records = with_store(self.db_path(), move |s| s.branch_records(Some(&n))).await?;
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
        let r = rec.clone();
        with_store(self.db_path(), move |s| s.append_cleanup(&r)).await?;
        Ok(rec)
    }
}

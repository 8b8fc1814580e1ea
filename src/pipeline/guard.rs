//! What keeps runs of one pipeline from stepping on each other, and a killed
//! push from being forgotten.
//!
//! **One run per pipeline per project:** [`lock_recipe`] holds
//! `.kiln/state/locks/<recipe>.lock` ([`crate::file_lock`]) for the whole run;
//! a second `kiln run` (or the daemon) waits, then finds the first run's
//! passing record and is up to date instead of building, pushing and
//! recording the same key again under another digest.
//!
//! **The push journal:** before the first push request, the run writes the
//! record it *would* leave if it died — status `failed`, naming every tag it
//! is about to create — to `.kiln/state/pending/<recipe>.json`; appending the
//! run's real record removes it. A run killed in between (SIGKILL after the
//! manifest `PUT`) leaves the file; the next run of the pipeline, under the
//! lock, appends it ([`reconcile`]), so tags never exist without a record.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::error::PipelineError;
use super::events::{PipelineEvent, Stage};
use super::record_of::{self, Outputs};
use super::run::RunOptions;
use crate::distribute::{self, PushRequest};
use crate::file_lock::{self, Attempt, HeldLock};
use crate::load::{LoadedRecipe, Target};
use crate::record::{self, Allocation, Failure, Record, RecordError, Records, Status};

/// How often a waiting run retries the lock.
const LOCK_POLL: Duration = Duration::from_millis(100);

/// Why the pipeline lock was not taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GuardError {
    /// The lock file could not be opened or locked.
    #[error("cannot lock `{path}`")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Cancelled while waiting for another run.
    #[error("cancelled while waiting for another run of `{recipe}`")]
    Cancelled {
        /// The pipeline.
        recipe: String,
    },
}

fn lock_path(root: &Path, recipe: &str) -> PathBuf {
    record::state_dir(root)
        .join("locks")
        .join(format!("{recipe}.lock"))
}

fn pending_path(root: &Path, recipe: &str) -> PathBuf {
    record::state_dir(root)
        .join("pending")
        .join(format!("{recipe}.json"))
}

/// Takes the pipeline's lock (waiting for another run), then records what a
/// killed run left in its push journal: what [`super::Pipeline::run`] does
/// first, holding the returned lock until it returns.
pub(super) async fn enter(
    root: &Path,
    recipe: &str,
    opts: &RunOptions,
    records: &Records,
) -> Result<HeldLock, PipelineError> {
    let notice = |line| (opts.events)(PipelineEvent::Notice(line));
    let stage_error = |stage, source| PipelineError::Stage {
        stage,
        source,
        record: None,
    };
    let lock = match lock_recipe(root, recipe, &opts.cancel, notice).await {
        Ok(l) => l,
        Err(GuardError::Cancelled { .. }) => {
            return Err(PipelineError::Cancelled { stage: Stage::Load });
        }
        Err(e) => return Err(stage_error(Stage::Load, e.into())),
    };
    match reconcile(root, recipe, records).await {
        Ok(Some(note)) => notice(note),
        Ok(None) => {}
        Err(e) => return Err(stage_error(Stage::Record, e.into())),
    }
    Ok(lock)
}

/// Takes the pipeline's lock, waiting (and saying once whom for) while
/// another run holds it.
async fn lock_recipe(
    root: &Path,
    recipe: &str,
    cancel: &CancellationToken,
    notice: impl Fn(String),
) -> Result<HeldLock, GuardError> {
    let path = lock_path(root, recipe);
    let mut told = false;
    loop {
        let attempt = file_lock::try_lock(&path).map_err(|source| GuardError::Lock {
            path: path.clone(),
            source,
        })?;
        match attempt {
            Attempt::Held(held) => return Ok(held),
            Attempt::Busy { holder } if !told => {
                notice(format!(
                    "waiting for another run of `{recipe}` to finish ({holder})"
                ));
                told = true;
            }
            Attempt::Busy { .. } => {}
        }
        tokio::select! {
            () = tokio::time::sleep(LOCK_POLL) => {}
            () = cancel.cancelled() => return Err(GuardError::Cancelled { recipe: recipe.into() }),
        }
    }
}

fn target_name(t: &Target) -> String {
    match t {
        Target::Oci {
            registry,
            repository,
        } => format!("{registry}/{repository}"),
        Target::Ecr {
            region,
            repository,
            registry_id,
        } => match registry_id {
            Some(id) => format!("ecr {id} {region}/{repository}"),
            None => format!("ecr {region}/{repository}"),
        },
    }
}

/// `these tags may exist and are not approved: host/repo:tag, …` — every
/// tag `req` creates, for the record of a push that stopped before it could
/// tell which exist.
pub(super) fn tags_may_exist(req: &PushRequest) -> String {
    let tags = distribute::render_tags(req).unwrap_or_default();
    let refs: Vec<String> = req
        .distribute
        .targets
        .iter()
        .flat_map(|t| {
            tags.iter()
                .map(move |tag| format!("{}:{tag}", target_name(t)))
        })
        .collect();
    format!(
        "these tags may exist and are not approved: {}",
        refs.join(", ")
    )
}

/// Writes the record a killed push must leave behind (see the module docs).
pub(super) fn journal(
    root: &Path,
    recipe: &LoadedRecipe,
    allocation: &Allocation,
    outputs: &Outputs,
    req: &PushRequest,
    started_at: DateTime<Utc>,
) -> std::io::Result<()> {
    let failure = Failure {
        stage: "distribute".into(),
        message: format!(
            "the run stopped during the push (process killed) before its record was written; {}",
            tags_may_exist(req)
        ),
    };
    let rec = record_of::record(
        recipe,
        allocation,
        Status::Failed,
        outputs,
        Some(failure),
        started_at,
    );
    let text = serde_json::to_vec_pretty(&rec).map_err(std::io::Error::other)?;
    let path = pending_path(root, &recipe.name);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    crate::atomic_file::write(&path, &text, crate::atomic_file::USER_FILE)
}

/// Drops the journal once the run's own record is appended.
pub(super) fn clear(root: &Path, recipe: &str) {
    let path = pending_path(root, recipe);
    if let Err(e) = std::fs::remove_file(&path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "cannot remove the push journal");
    }
}

/// Appends the record a killed run of `recipe` left in its journal, if any
/// (call under the pipeline lock). Returns the appended record's build and
/// message for the user, `None` when there was nothing to do.
async fn reconcile(
    root: &Path,
    recipe: &str,
    records: &Records,
) -> Result<Option<String>, ReconcileError> {
    // Nothing is built that could not be recorded: a signed chain needs the key.
    records.check_appendable().await?;
    let path = pending_path(root, recipe);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(ReconcileError::Read { path, source }),
    };
    let rec: Record = serde_json::from_slice(&bytes).map_err(|source| ReconcileError::Parse {
        path: path.clone(),
        source,
    })?;
    let note = match records.append(&rec).await {
        Ok(c) => Some(format!(
            "recorded {} as failed: {}",
            c.record.build_id(),
            rec.failure.as_ref().map_or("", |f| f.message.as_str())
        )),
        // The run died after its own record was appended.
        Err(RecordError::AlreadyRecorded { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    clear(root, recipe);
    Ok(note)
}

/// Why a killed run's journal could not be reconciled.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReconcileError {
    /// The journal could not be read.
    #[error("cannot read the push journal `{path}`")]
    Read {
        /// The journal.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The journal is not a record.
    #[error("the push journal `{path}` is not a record")]
    Parse {
        /// The journal.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The record store failed.
    #[error(transparent)]
    Store(#[from] RecordError),
}

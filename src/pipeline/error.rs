//! Why a pipeline run failed: the stage and the stage's own typed error,
//! kept typed to the CLI and the daemon, which print the chain once
//! ([`chain`]).

use super::events::Stage;
use super::guard::{GuardError, ReconcileError};
use super::pins::LockProblem;
use crate::build::BuildError;
use crate::diagnostic::Diagnostics;
use crate::distribute::DistributeError;
use crate::record::{ChainedRecord, RecordError};
use crate::registry::RegistryError;
use crate::test_phase::TestPhaseError;

/// A failed run. The failure is recorded (when it got far enough to have a
/// pipeline name) before this is returned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// The recipe, its components or its template are invalid.
    #[error("the recipe is invalid:\n{0}")]
    Invalid(#[from] Diagnostics),
    /// A stage failed.
    #[error("{stage} failed")]
    Stage {
        /// Where.
        stage: Stage,
        /// The stage's error.
        #[source]
        source: StageError,
        /// The failed record, when one was written.
        record: Option<Box<ChainedRecord>>,
    },
    /// A stage failed, and appending the failed record failed too.
    #[error("{stage} failed: {}, and the failure could not be recorded", chain(.failure))]
    Unrecorded {
        /// Where.
        stage: Stage,
        /// The stage's error.
        failure: Box<StageError>,
        /// Why it is not recorded.
        #[source]
        source: Box<StageError>,
    },
    /// The recipe breaks the operator's policy (checked at load; nothing
    /// was built or recorded).
    #[error("the recipe violates the operator's policy; nothing was built:\n{0}")]
    Policy(crate::operator::policy::Violations),
    /// The run was cancelled.
    #[error("cancelled during {stage}")]
    Cancelled {
        /// Where.
        stage: Stage,
    },
}

impl PipelineError {
    /// The stage's error, for a failure that reached a stage.
    pub fn stage_error(&self) -> Option<&StageError> {
        match self {
            PipelineError::Stage { source, .. } => Some(source),
            PipelineError::Unrecorded { failure, .. } => Some(failure),
            _ => None,
        }
    }
}

/// What went wrong inside a stage: one variant per stage error type, plus
/// the pipeline's own checks between stages.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StageError {
    /// The pipeline's run lock (load).
    #[error(transparent)]
    Lock(#[from] GuardError),
    /// A killed run's push journal could not be reconciled (record).
    #[error(transparent)]
    Reconcile(#[from] ReconcileError),
    /// Pinning the parents (resolve).
    #[error(transparent)]
    Resolve(#[from] LockProblem),
    /// Preparing the context or building (render, build).
    #[error(transparent)]
    Build(#[from] BuildError),
    /// Fetching S3Download objects into the build context (render).
    #[error(transparent)]
    S3(Box<crate::s3::S3Error>),
    /// Signing the pushed digests (sign).
    #[error(transparent)]
    Sign(Box<crate::sign::attach::SignError>),
    /// Making the SBOM of the built image (sign).
    #[error(transparent)]
    Sbom(Box<crate::sbom::SbomError>),
    /// Finding credentials for the build's pulls (build).
    #[error(transparent)]
    PullCredentials(#[from] RegistryError),
    /// The recipe's tests cannot run against this image (test).
    #[error(transparent)]
    TestInput(#[from] Diagnostics),
    /// The test phase could not run (test).
    #[error(transparent)]
    Test(#[from] TestPhaseError),
    /// The tests ran and some failed (test).
    #[error("tests failed: {passed} of {total} checks passed")]
    TestsFailed {
        /// Checks that passed.
        passed: usize,
        /// All checks.
        total: usize,
    },
    /// The push failed (distribute).
    #[error(transparent)]
    Distribute(#[from] DistributeError),
    /// The push journal could not be written before the push (distribute).
    #[error("cannot write the push journal")]
    Journal(#[source] std::io::Error),
    /// Cancelled after the push began: tags may exist.
    #[error("cancelled during the push; {tags}")]
    PushCancelled {
        /// What may have been tagged ([`super::guard::tags_may_exist`]).
        tags: String,
    },
    /// The registry reports another digest than the one pushed.
    #[error("the pushed digest could not be verified at {}", .targets.join(", "))]
    Unverified {
        /// `REGISTRY/REPOSITORY` of each unverified target.
        targets: Vec<String>,
    },
    /// The record store failed.
    #[error(transparent)]
    Store(#[from] RecordError),
    /// Looking for a passing record failed.
    #[error("the record store cannot be read")]
    StoreRead(#[source] Box<StageError>),
    /// A blocking task panicked or was aborted.
    #[error("{what} failed")]
    Task {
        /// The task.
        what: &'static str,
        /// The cause.
        #[source]
        source: tokio::task::JoinError,
    },
    /// Stopped through the run's cancellation token.
    #[error("cancelled")]
    Cancelled,
    /// The built image breaks the operator's policy (gate).
    #[error("the image violates the operator's policy: {}", .0.0.iter().map(|v| v.diagnostic.message.as_str()).collect::<Vec<_>>().join("; "))]
    Policy(crate::operator::policy::Violations),
    /// The findings scan or a scanner hook could not run (gate).
    #[error(transparent)]
    Findings(Box<crate::findings::FindingsError>),
    /// Findings at or above the threshold, not ignored (gate).
    #[error(
        "the findings gate blocked the push: {} finding{} at or above `{threshold}`: {}{}",
        .findings.len(),
        if .findings.len() == 1 { "" } else { "s" },
        .findings.join("; "),
        .expired.iter().map(|e| format!("; {e}")).collect::<String>()
    )]
    FindingsBlocked {
        /// The threshold.
        threshold: crate::findings::Severity,
        /// Each blocking finding, described.
        findings: Vec<String>,
        /// Expired ignore entries, as `.kiln-ignore.yaml:LINE: …`.
        expired: Vec<String>,
    },
}

/// Renders an error with its chain of sources, `: `-separated, skipping a
/// source whose text is already there.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stage_error_prints_its_chain_once() {
        let io = std::io::Error::other("disk full");
        let e = PipelineError::Stage {
            stage: Stage::Distribute,
            source: StageError::Journal(io),
            record: None,
        };
        assert_eq!(
            chain(&e),
            "distribute failed: cannot write the push journal: disk full"
        );
    }

    #[test]
    fn an_unrecorded_failure_names_both_errors() {
        let e = PipelineError::Unrecorded {
            stage: Stage::Test,
            failure: Box::new(StageError::TestsFailed {
                passed: 1,
                total: 2,
            }),
            source: Box::new(StageError::Store(RecordError::CreateDir {
                path: ".kiln/state".into(),
                source: std::io::Error::other("read-only"),
            })),
        };
        let text = chain(&e);
        assert!(text.starts_with("test failed: tests failed: 1 of 2 checks passed"));
        assert!(text.contains("could not be recorded"), "{text}");
        assert!(text.ends_with("read-only"), "{text}");
        assert!(matches!(
            e.stage_error(),
            Some(StageError::TestsFailed { .. })
        ));
    }
}

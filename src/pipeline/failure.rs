//! What kind of failure ended a run, for exit codes (`kiln run`, and
//! `kiln trigger --wait` through the daemon's run row): one classification
//! of [`PipelineError`], shared by the CLI and the daemon.

use serde::{Deserialize, Serialize};

use super::{PipelineError, StageError};
use crate::build::BuildError;

/// The kind of a failed run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// A project file or the policy refused the recipe.
    Invalid,
    /// The image was tested and checks failed.
    TestsFailed,
    /// A push, or the infrastructure (Docker, registry, ECR, S3), failed.
    Infrastructure,
    /// Anything else (a build step failed, a run was cancelled, …).
    Failed,
}

impl FailureKind {
    /// The name stored in the daemon's run row.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Invalid => "invalid",
            FailureKind::TestsFailed => "tests_failed",
            FailureKind::Infrastructure => "infrastructure",
            FailureKind::Failed => "failed",
        }
    }

    /// Parses [`FailureKind::as_str`].
    pub fn parse(s: &str) -> Option<FailureKind> {
        [
            FailureKind::Invalid,
            FailureKind::TestsFailed,
            FailureKind::Infrastructure,
            FailureKind::Failed,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }

    /// The kind of a pipeline error.
    pub fn of(e: &PipelineError) -> FailureKind {
        match e {
            PipelineError::Invalid(_) | PipelineError::Policy(_) => FailureKind::Invalid,
            _ => e.stage_error().map_or(FailureKind::Failed, Self::of_stage),
        }
    }

    /// The kind of a stage's error.
    pub fn of_stage(e: &StageError) -> FailureKind {
        match e {
            StageError::TestsFailed { .. } => FailureKind::TestsFailed,
            StageError::TestInput(_) => FailureKind::Invalid,
            StageError::Build(b) => Self::of_build(b),
            StageError::Resolve(_)
            | StageError::S3(_)
            | StageError::Sign(_)
            | StageError::PullCredentials(_)
            | StageError::Test(_)
            | StageError::Distribute(_)
            | StageError::Unverified { .. } => FailureKind::Infrastructure,
            _ => FailureKind::Failed,
        }
    }

    /// The kind of a build error: the engine or a pull failing is
    /// infrastructure; a failing step or a refused Dockerfile is the recipe's.
    pub fn of_build(e: &BuildError) -> FailureKind {
        match e {
            BuildError::Pull { .. } | BuildError::Docker { .. } | BuildError::NoImage { .. } => {
                FailureKind::Infrastructure
            }
            _ => FailureKind::Failed,
        }
    }
}

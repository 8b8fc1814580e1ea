//! Which documented exit code a library error ends a command with
//! ([`Outcome`]): the CLI's one mapping from typed errors to codes, as
//! nextest's `process_exit_code` does.

use kiln::build::BuildError;
use kiln::daemon::client::ClientError;
use kiln::pipeline::{PipelineError, StageError};

use super::Outcome;

/// A failed pipeline run: invalid files, failed tests, infrastructure, or
/// any other failure.
pub fn pipeline(e: &PipelineError) -> Outcome {
    match e {
        PipelineError::Invalid(_) | PipelineError::Policy(_) => Outcome::Invalid,
        _ => e.stage_error().map_or(Outcome::Failed, stage),
    }
}

/// A stage's error.
pub fn stage(e: &StageError) -> Outcome {
    match e {
        StageError::TestsFailed { .. } => Outcome::TestsFailed,
        StageError::TestInput(_) => Outcome::Invalid,
        StageError::Build(b) => build(b),
        StageError::Resolve(_)
        | StageError::S3(_)
        | StageError::Sign(_)
        | StageError::PullCredentials(_)
        | StageError::Test(_)
        | StageError::Distribute(_)
        | StageError::Unverified { .. } => Outcome::Infrastructure,
        _ => Outcome::Failed,
    }
}

/// A daemon call: an unreachable or failing daemon is infrastructure; a
/// refused token or an unknown name is a plain failure.
pub fn client(e: &ClientError) -> Outcome {
    match e {
        ClientError::Unreachable { .. } | ClientError::BadAnswer { .. } => Outcome::Infrastructure,
        ClientError::Status { status, .. } if *status >= 500 => Outcome::Infrastructure,
        ClientError::BadServer { .. } => Outcome::Usage,
        _ => Outcome::Failed,
    }
}

/// A build: the engine or a pull failing is infrastructure; a failing
/// Dockerfile step or a refused Dockerfile is the recipe's failure.
pub fn build(e: &BuildError) -> Outcome {
    match e {
        BuildError::Pull { .. } | BuildError::Docker { .. } | BuildError::NoImage { .. } => {
            Outcome::Infrastructure
        }
        _ => Outcome::Failed,
    }
}

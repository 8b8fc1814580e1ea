//! Which documented exit code a library error ends a command with
//! ([`Outcome`]): the CLI's one mapping from typed errors to codes, as
//! nextest's `process_exit_code` does. Pipeline failures are classified by
//! the library ([`FailureKind`]), so a run through the daemon
//! (`kiln trigger --wait`) ends with the same code as `kiln run`.

use kiln::build::BuildError;
use kiln::daemon::client::ClientError;
use kiln::pipeline::{FailureKind, PipelineError};

use super::Outcome;

/// A failed pipeline run: invalid files, failed tests, infrastructure, or
/// any other failure.
pub fn pipeline(e: &PipelineError) -> Outcome {
    failure(FailureKind::of(e))
}

/// The code of a kind of failure.
pub fn failure(kind: FailureKind) -> Outcome {
    match kind {
        FailureKind::Invalid => Outcome::Invalid,
        FailureKind::TestsFailed => Outcome::TestsFailed,
        FailureKind::Infrastructure => Outcome::Infrastructure,
        FailureKind::Failed => Outcome::Failed,
    }
}

/// A daemon call: an unreachable or failing daemon is infrastructure; a
/// refused token or an unknown name is a plain failure.
pub fn client(e: &ClientError) -> Outcome {
    match e {
        ClientError::Unreachable { .. }
        | ClientError::CaAsServerCertificate { .. }
        | ClientError::BadAnswer { .. } => Outcome::Infrastructure,
        ClientError::Status { status, .. } if *status >= 500 => Outcome::Infrastructure,
        ClientError::BadServer { .. } => Outcome::Usage,
        _ => Outcome::Failed,
    }
}

/// A build: the engine or a pull failing is infrastructure; a failing
/// Dockerfile step or a refused Dockerfile is the recipe's failure.
pub fn build(e: &BuildError) -> Outcome {
    failure(FailureKind::of_build(e))
}

//! Why a pipeline run failed: the stage and the stage's own error.

use super::events::Stage;

/// A failed run. The failure is recorded (when it got far enough to have a
/// pipeline name) before this is returned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// The recipe, its components or its template are invalid.
    #[error("the recipe is invalid:\n{0}")]
    Invalid(#[from] crate::diagnostic::Diagnostics),
    /// A stage failed.
    #[error("{stage} failed: {message}")]
    Stage {
        /// Where.
        stage: Stage,
        /// The stage's error, rendered (with its sources).
        message: String,
        /// The failed record, when one was written.
        record: Option<Box<crate::record::ChainedRecord>>,
    },
    /// The run was cancelled.
    #[error("cancelled during {stage}")]
    Cancelled {
        /// Where.
        stage: Stage,
    },
}

/// Renders an error with its chain of sources, `: `-separated.
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

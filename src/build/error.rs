//! Why a build failed, with the recipe, step and image it concerns.

use super::context::ContextError;

/// A failed build.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The build context could not be made.
    #[error("cannot make the build context of recipe `{recipe}`")]
    Context {
        /// Recipe.
        recipe: String,
        /// Cause.
        #[source]
        source: ContextError,
    },
    /// A parent image could not be pulled.
    #[error("cannot pull parent image `{image}` of recipe `{recipe}`")]
    Pull {
        /// Recipe.
        recipe: String,
        /// The pinned reference.
        image: String,
        /// Cause.
        #[source]
        source: bollard::errors::Error,
    },
    /// An Engine API request failed outside a build step.
    #[error("docker engine request `{operation}` failed while building recipe `{recipe}`")]
    Docker {
        /// Recipe.
        recipe: String,
        /// What kiln asked for (`list images`, `build`, `tag`, …).
        operation: &'static str,
        /// Cause.
        #[source]
        source: bollard::errors::Error,
    },
    /// A Dockerfile step failed (typically a `RUN` exiting non-zero).
    #[error(
        "step {step}/{total} `{instruction}` in stage {} of recipe `{recipe}` failed{}: {message}",
        stage_label(*stage, stage_name.as_deref()),
        exit_code.map(|c| format!(" with exit code {c}")).unwrap_or_default()
    )]
    StepFailed {
        /// Recipe.
        recipe: String,
        /// 1-based stage index.
        stage: usize,
        /// Stage name (`AS …`).
        stage_name: Option<String>,
        /// Step number.
        step: u32,
        /// Steps in total.
        total: u32,
        /// The instruction.
        instruction: String,
        /// Exit code of the command, when the daemon reports one.
        exit_code: Option<i32>,
        /// The daemon's message.
        message: String,
        /// The step's last output lines.
        last_lines: Vec<String>,
    },
    /// The daemon refused the build before any step ran (bad Dockerfile, …).
    #[error("the docker engine refused to build recipe `{recipe}`: {message}")]
    Refused {
        /// Recipe.
        recipe: String,
        /// The daemon's message.
        message: String,
    },
    /// The build stream ended without an image id.
    #[error("the build of recipe `{recipe}` ended without an image id")]
    NoImage {
        /// Recipe.
        recipe: String,
    },
    /// The build was cancelled.
    #[error("the build of recipe `{recipe}` was cancelled")]
    Cancelled {
        /// Recipe.
        recipe: String,
    },
}

fn stage_label(stage: usize, name: Option<&str>) -> String {
    match name {
        Some(n) => format!("{stage} (`{n}`)"),
        None => stage.to_string(),
    }
}

impl BuildError {
    /// The last output lines of the failed step, if a step failed.
    pub fn last_lines(&self) -> &[String] {
        match self {
            BuildError::StepFailed { last_lines, .. } => last_lines,
            _ => &[],
        }
    }
}

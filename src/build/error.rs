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
        source: Box<ContextError>,
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
    #[error("{0}")]
    StepFailed(Box<StepFailure>),
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
    /// The engine built another platform than the recipe's.
    #[error(
        "the docker engine built a {got} image for recipe `{recipe}`, whose platform is {wanted}; the image was removed"
    )]
    WrongPlatform {
        /// Recipe.
        recipe: String,
        /// The recipe's platform.
        wanted: String,
        /// What the engine built.
        got: String,
    },
    /// The engine cannot run the recipe's platform (no emulation for it).
    #[error(
        "the docker engine cannot build platform {platform} for recipe `{recipe}`: it cannot run {platform} programs (no emulator such as qemu-user-static registered in binfmt_misc): {message}"
    )]
    UnsupportedPlatform {
        /// Recipe.
        recipe: String,
        /// The recipe's platform.
        platform: String,
        /// The engine's message.
        message: String,
    },
    /// The BuildKit session could not be opened.
    #[error("cannot open the BuildKit session for recipe `{recipe}`")]
    Session {
        /// Recipe.
        recipe: String,
        /// Cause.
        #[source]
        source: super::session::SessionError,
    },
    /// A build secret's value could not be had.
    #[error(transparent)]
    Secret(Box<super::secrets::SecretError>),
    /// The build was cancelled.
    #[error("the build of recipe `{recipe}` was cancelled")]
    Cancelled {
        /// Recipe.
        recipe: String,
    },
}

/// Where and how a Dockerfile step failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepFailure {
    /// Recipe.
    pub recipe: String,
    /// 1-based stage index.
    pub stage: usize,
    /// Stage name (`AS …`).
    pub stage_name: Option<String>,
    /// Step number.
    pub step: u32,
    /// Steps in total.
    pub total: u32,
    /// The instruction.
    pub instruction: String,
    /// Exit code of the command, when the daemon reports one.
    pub exit_code: Option<i32>,
    /// The daemon's message.
    pub message: String,
    /// The step's last output lines.
    pub last_lines: Vec<String>,
}

impl std::fmt::Display for StepFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "step {}/{} `{}` in stage {} of recipe `{}` failed",
            self.step,
            self.total,
            self.instruction,
            stage_label(self.stage, self.stage_name.as_deref()),
            self.recipe
        )?;
        if let Some(c) = self.exit_code {
            write!(f, " with exit code {c}")?;
        }
        write!(f, ": {}", self.message)
    }
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
            BuildError::StepFailed(f) => &f.last_lines,
            _ => &[],
        }
    }
}

impl From<super::secrets::SecretError> for BuildError {
    fn from(e: super::secrets::SecretError) -> Self {
        BuildError::Secret(Box::new(e))
    }
}

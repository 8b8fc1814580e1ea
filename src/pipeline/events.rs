//! What the pipeline reports while it runs: stage boundaries plus the
//! stages' own progress events. The CLI prints them; the daemon stores them.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::build::BuildEvent;
use crate::distribute::PushEvent;

/// A pipeline stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Read and validate the recipe.
    Load,
    /// Pin parent images.
    Resolve,
    /// Render the Dockerfile and context.
    Render,
    /// Build the image.
    Build,
    /// Run and probe the image.
    Test,
    /// The operator's policy on the built image and the findings gate.
    Gate,
    /// Push and verify.
    Distribute,
    /// Attach signatures to the pushed digests (only with a signing key).
    Sign,
    /// Append the record.
    Record,
}

impl Stage {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Load => "load",
            Stage::Resolve => "resolve",
            Stage::Render => "render",
            Stage::Build => "build",
            Stage::Test => "test",
            Stage::Gate => "gate",
            Stage::Distribute => "distribute",
            Stage::Sign => "sign",
            Stage::Record => "record",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One progress event.
#[derive(Debug, Clone)]
pub enum PipelineEvent {
    /// A stage began.
    StageStarted(Stage),
    /// A stage ended.
    StageFinished {
        /// Which.
        stage: Stage,
        /// How long it took.
        elapsed: Duration,
        /// One line about the result.
        note: String,
    },
    /// Builder progress.
    Build(BuildEvent),
    /// A test check finished: name, passed, detail.
    Check {
        /// Check name.
        name: String,
        /// Whether it passed.
        passed: bool,
        /// Details.
        detail: String,
    },
    /// Push progress.
    Push(PushEvent),
    /// A line for the user outside any stage (waiting for another run of
    /// the pipeline, a killed run's push reconciled).
    Notice(String),
}

/// Where events go; cheap to clone, callable from any task.
pub type EventSink = Arc<dyn Fn(PipelineEvent) + Send + Sync>;

/// A sink that drops everything.
pub fn discard() -> EventSink {
    Arc::new(|_| {})
}

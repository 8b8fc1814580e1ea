//! The pipeline: the only module that chains the stages
//! (load → resolve → render → build → test → gate → distribute → sign → record). The CLI's
//! `kiln run` and the daemon call the same [`Pipeline::run`].

pub mod approve;
pub mod branches;
mod error;
mod events;
mod failure;
mod freshness;
mod gate;
mod guard;
pub mod pins;
pub mod pins_many;
mod pull_credentials;
mod recipe_test;
mod record_of;
mod run;
mod sign_stage;
pub mod tested_image;

pub use approve::{Approvals, ApproveError, Decided, PromotionOutcome};
pub use error::{PipelineError, StageError, chain};
pub use events::{EventSink, PipelineEvent, Stage, discard};
pub use failure::FailureKind;
pub use freshness::Freshness;
pub use guard::{GuardError, ReconcileError};
pub use pull_credentials::pull_credentials;
pub use run::{Pipeline, RunOptions, RunSummary};

//! kiln: a self-hosted container image build pipeline.
//!
//! One direction of flow: load → resolve → render/plan → build → test →
//! distribute → record. Each stage is a module with a typed input and output;
//! only the pipeline module chains them. See ARCHITECTURE.md for the map.
#![warn(missing_docs)]

pub mod affected;
pub mod atomic_file;
pub mod branch;
pub mod build;
pub mod daemon;
pub mod diagnostic;
pub mod digest;
pub mod distribute;
pub mod docker;
pub mod export;
pub mod file_lock;
pub mod findings;
pub mod import;
pub mod load;
pub mod operator;
pub mod pipeline;
mod postgres;
pub mod project;
pub mod recipe_test;
pub mod record;
pub mod redact;
pub mod reference;
pub mod registry;
pub mod render;
pub mod resolve;
pub mod s3;
pub mod sbom;
pub mod schedule;
pub mod shutdown;
pub mod sign;
pub mod state;
pub mod test_phase;
pub mod yaml;

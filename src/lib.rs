//! kiln: a self-hosted container image build pipeline.
//!
//! One direction of flow: load → resolve → render/plan → build → test →
//! distribute → record. Each stage is a module with a typed input and output;
//! only [`pipeline`] chains them. See ARCHITECTURE.md for the map.
#![warn(missing_docs)]

pub mod digest;
pub mod reference;
pub mod registry;
pub mod resolve;

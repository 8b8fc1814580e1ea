//! The pipeline: the only module that chains the stages
//! (load → resolve → render → build → test → distribute → record). The CLI's
//! `kiln run` and the daemon call the same [`run`] function.

pub mod pins;

//! The daemon in-process on 127.0.0.1:0: scheduler under paused tokio time
//! and a fake clock, the HTTP API with a test-double runner, restart
//! recovery over a real SQLite file.

mod api;
mod harness;
mod log_store;
mod queue;
mod recovery;
mod scale;
mod schedule;
#[path = "../support/mod.rs"]
mod support;

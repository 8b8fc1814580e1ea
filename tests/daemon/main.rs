//! The daemon in-process on 127.0.0.1:0: scheduler under paused tokio time
//! and a fake clock, the HTTP API with a test-double runner, restart
//! recovery over a real SQLite file.

mod api;
mod approval;
mod browser;
mod cluster;
mod harness;
mod log_store;
mod openapi;
mod page;
mod queue;
mod recovery;
mod scale;
mod schedule;
mod sse_client;
#[path = "../support/mod.rs"]
mod support;

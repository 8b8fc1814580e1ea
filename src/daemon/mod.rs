//! The kiln daemon (`kiln serve`): pipelines refreshed on a schedule, runs
//! triggered over an HTTP API, approved digests served to downstream teams.
//!
//! Shaped like mini-redis: [`serve`] takes a bound listener, the state and a
//! shutdown future. Pieces: [`config`] and [`auth`] (tokens by hash),
//! [`clock`] (controllable time), [`catalog`] (the recipes), [`scheduler`]
//! (cron → queued runs), [`queue`] (the run queue: SQLite on one host, or
//! the [`cluster`]'s PostgreSQL queue with [`node`] and [`checkout`] saying
//! who this process is), [`worker`] (claims runs
//! and drives the [`runner::PipelineRunner`]), [`sse`] (replay-then-follow of
//! run logs), [`metrics`], [`api`] and [`page`] (the status page), the only
//! modules that know HTTP on the server side, [`tls`] (HTTPS); [`client`] is
//! the other end, for the CLI.
//!
//! **Architecture Invariant:** the daemon never chains pipeline stages; it
//! drives a [`runner::PipelineRunner`], which calls the same pipeline
//! function as `kiln run`.

pub mod api;
pub mod auth;
pub mod catalog;
pub mod checkout;
pub mod client;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod lock;
pub mod metrics;
pub mod node;
pub mod openapi;
pub mod page;
pub mod pipeline_runner;
pub mod queue;
pub mod run;
pub mod runner;
pub mod scheduler;
pub mod setup;
pub mod sse;
mod state;
pub mod tls;
pub mod worker;

use std::future::Future;

use tokio::net::TcpListener;

use page::session::CookiePolicy;

pub use state::{DaemonError, DaemonOptions, DaemonState, LiveEvent, LiveKind};

/// Runs the daemon on `listener` until `shutdown` completes (or
/// [`DaemonState::shutdown`] is called): recovers runs a killed daemon left
/// behind, starts the scheduler and the worker, serves the API, then drains —
/// no new connections or claims, running pipelines get `graceSeconds` to
/// finish before they are cancelled.
pub async fn serve(
    listener: TcpListener,
    state: DaemonState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    serve_on(listener, CookiePolicy { secure: false }, state, shutdown).await
}

/// [`serve`] over HTTPS: every connection is TLS with `tls`, and the status
/// page's cookies are `Secure`.
pub async fn serve_tls(
    listener: TcpListener,
    tls: std::sync::Arc<rustls::ServerConfig>,
    state: DaemonState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    let listener =
        tls::TlsListener::new(listener, tls).map_err(|source| DaemonError::Serve { source })?;
    serve_on(listener, CookiePolicy { secure: true }, state, shutdown).await
}

async fn serve_on<L>(
    listener: L,
    cookies: CookiePolicy,
    state: DaemonState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError>
where
    L: axum::serve::Listener<Addr = std::net::SocketAddr>,
{
    // Held until this function returns: recovery must never take a live
    // daemon's runs for a crashed one's. A cluster's queue has no file:
    // its nodes recover only their own runs, and leases fence the rest.
    let lock = match state.queue().lock_path() {
        Some(path) => Some(lock::DaemonLock::acquire(path)?),
        None => None,
    };
    if let Some(lock) = &lock {
        tracing::debug!(path = %lock.path().display(), "daemon lock taken");
    }
    let stop = state.shutdown_token();
    worker::recover(&state).await?;
    let found = state.queue().start(state.shared.wake.clone()).await;
    let watcher = tokio::spawn(worker::watch(state.clone(), found));
    let dispatcher = tokio::spawn(worker::dispatch(state.clone()));
    scheduler::restart(&state, state.config().catch_up_missed_slots);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "kiln daemon listening on {addr}");
    }
    let signal = {
        let stop = stop.clone();
        async move {
            tokio::select! {
                () = shutdown => tracing::info!("shutdown requested"),
                () = stop.cancelled() => {}
            }
            stop.cancel();
        }
    };
    let served = axum::serve(listener, api::router_with(state.clone(), cookies))
        .with_graceful_shutdown(signal)
        .await;
    stop.cancel();
    let _ = dispatcher.await;
    // Heartbeats kept this node's leases through the drain; now stop them.
    state.queue().stop().await;
    watcher.abort();
    drop(lock);
    served.map_err(|source| DaemonError::Serve { source })
}

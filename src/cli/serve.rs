//! `kiln serve [--daemon-config FILE] [--listen ADDR]`: the daemon, until SIGTERM or
//! Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use kiln::daemon::clock::SystemClock;
use kiln::daemon::config::DaemonConfig;
use kiln::daemon::pipeline_runner::PipelineRunnerImpl;
use kiln::daemon::{DaemonOptions, DaemonState};
use kiln::project::Project;

use super::Outcome;
use super::records::report;

/// Arguments of `kiln serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The daemon config (default: `config/kiln.yaml` in the project, if
    /// present). Not the operator config (global `--config`).
    #[arg(long = "daemon-config", value_name = "FILE")]
    pub daemon_config: Option<PathBuf>,
    /// Listen here instead of the configured address (`127.0.0.1:0` picks a port).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
}

/// Loads the config, binds, and serves until a shutdown signal.
pub async fn run(project: &Project, args: Args, operator: kiln::sign::OperatorConfig) -> Outcome {
    let (path, explicit) = match args.daemon_config {
        Some(p) => (p, true),
        None => (project.dir("config").join("kiln.yaml"), false),
    };
    let config = if explicit || path.exists() {
        match DaemonConfig::load(&path) {
            Ok(c) => c,
            Err(e) => {
                report(&e);
                return Outcome::Usage;
            }
        }
    } else {
        tracing::warn!(path = %path.display(), "no daemon config; using defaults");
        DaemonConfig::default()
    };
    if config.tokens.is_empty() {
        tracing::warn!("no API tokens configured: every call but /healthz will be refused");
    }
    let listen = args.listen.unwrap_or(config.listen);
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {listen}: {e}");
            return Outcome::Failed;
        }
    };
    let docker = match kiln::docker::connect().await {
        Ok(d) => d,
        Err(e) => {
            report(&e);
            return Outcome::Failed;
        }
    };
    let registry = match kiln::registry::RegistryClient::new(config.registries.client_config()) {
        Ok(r) => r,
        Err(e) => {
            report(&e);
            return Outcome::Failed;
        }
    };
    let pipeline = kiln::pipeline::Pipeline {
        project: project.clone(),
        docker,
        registry,
        signing: operator.signing.map(Arc::new),
    };
    let state = DaemonState::open(DaemonOptions {
        database: kiln::record::db_path(project.root()),
        project: project.clone(),
        config,
        config_path: path.exists().then_some(path),
        runner: Arc::new(PipelineRunnerImpl::new(pipeline)),
        clock: Arc::new(SystemClock),
    });
    let state = match state {
        Ok(s) => s,
        Err(e) => {
            report(&e);
            return Outcome::Failed;
        }
    };
    match kiln::daemon::serve(listener, state, kiln::shutdown::requested()).await {
        Ok(()) => Outcome::Ok,
        Err(e) => {
            report(&e);
            Outcome::Failed
        }
    }
}

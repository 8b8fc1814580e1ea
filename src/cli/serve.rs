//! `kiln serve [--daemon-config FILE] [--listen ADDR]`: the daemon, until SIGTERM or
//! Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;

use kiln::daemon::setup::{self, SetupError};
use kiln::project::Project;

use super::Outcome;
use super::report;

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

/// Starts the daemon ([`kiln::daemon::setup::open`]) and serves until a
/// shutdown signal.
pub async fn run(
    project: &Project,
    args: Args,
    operator: kiln::operator::OperatorConfig,
) -> Outcome {
    let (listener, state) = match setup::open(
        project,
        args.daemon_config.as_deref(),
        args.listen,
        operator.signing,
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            report(&e);
            return match e {
                SetupError::Config(_) => Outcome::Usage,
                _ => Outcome::Failed,
            };
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

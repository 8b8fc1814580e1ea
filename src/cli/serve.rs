//! `kiln serve [--listen ADDR] [--tls-cert FILE --tls-key FILE]
//! [--insecure-http] [--node-id ID]`: the daemon, until SIGTERM or
//! Ctrl-C; the global `--state` makes it a cluster node. Its settings (listen, tokens, registries, policy, …) come from the operator config
//! (global `--config FILE` / `KILN_CONFIG`).

use std::net::SocketAddr;
use std::path::PathBuf;

use kiln::daemon::setup::{self, SetupError};
use kiln::project::Project;

use super::{Outcome, fail};

/// Arguments of `kiln serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Listen here instead of the configured address (`IP:PORT` or
    /// `HOST:PORT`; `127.0.0.1:0` picks a port).
    #[arg(long, value_name = "ADDR", value_parser = setup::parse_listen)]
    pub listen: Option<SocketAddr>,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Allow plain HTTP on a non-loopback address (tokens cross the network
    /// unencrypted; only behind a TLS-terminating proxy).
    #[arg(long, conflicts_with = "tls_cert")]
    pub insecure_http: bool,
    /// This node's id in a cluster (default: the config's `cluster.nodeId`,
    /// else the host name).
    #[arg(long, value_name = "ID")]
    pub node_id: Option<String>,
}

/// Starts the daemon ([`kiln::daemon::setup::open`]) and serves until a
/// shutdown signal.
pub async fn run(
    project: &Project,
    args: Args,
    operator: kiln::operator::OperatorConfig,
) -> Outcome {
    let listen = setup::ListenOptions {
        addr: args.listen,
        tls: args.tls_cert.zip(args.tls_key),
        insecure_http: args.insecure_http,
    };
    let state = setup::StateOptions {
        node_id: args.node_id,
    };
    let server = match setup::open(project, operator, listen, state).await {
        Ok(s) => s,
        Err(e) => {
            let outcome = match e {
                SetupError::PlainHttp { .. } | SetupError::Tls(_) => Outcome::Usage,
                SetupError::Docker(_) => Outcome::Infrastructure,
                _ => Outcome::Failed,
            };
            return fail(outcome, &e);
        }
    };
    match server.run(kiln::shutdown::requested()).await {
        Ok(()) => Outcome::Ok,
        Err(e) => fail(Outcome::Failed, &e),
    }
}

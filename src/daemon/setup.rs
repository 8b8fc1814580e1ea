//! What `kiln serve` does before [`super::serve`], given the loaded operator
//! config ([`crate::operator`]): load the TLS files, bind the listener,
//! connect to Docker and the registries, and open the state with the real
//! pipeline runner — on a PostgreSQL state store as a cluster node driving
//! this process's engine, after removing what a previous incarnation of the
//! node left on it.
//!
//! **Architecture Invariant:** tokens never cross a network in plain text:
//! the daemon refuses to listen on a non-loopback address without TLS
//! unless the operator says `--insecure-http`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;

use super::clock::SystemClock;
use super::node::NodeOptions;
use super::pipeline_runner::PipelineRunnerImpl;
use super::tls::TlsError;
use super::{DaemonError, DaemonOptions, DaemonState};
use crate::docker::ConnectError;
use crate::pipeline::Pipeline;
use crate::project::Project;
use crate::record::{ChainKeys, Records};
use crate::registry::{RegistryClient, RegistryError};

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// No Docker engine answers.
    #[error(transparent)]
    Docker(#[from] ConnectError),
    /// The registry client cannot be built from the config.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The state database cannot be opened.
    #[error(transparent)]
    State(#[from] DaemonError),
    /// A non-loopback address without TLS (and without `--insecure-http`).
    #[error(
        "refusing to listen on {addr} without TLS: API tokens would cross the network in plain text; give --tls-cert FILE --tls-key FILE, listen on 127.0.0.1, or pass --insecure-http"
    )]
    PlainHttp {
        /// The address.
        addr: SocketAddr,
    },
    /// The TLS certificate or key cannot be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// How `kiln serve` listens.
#[derive(Debug, Clone, Default)]
pub struct ListenOptions {
    /// Overrides the configured address.
    pub addr: Option<SocketAddr>,
    /// PEM certificate chain and private key: serve HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Allow plain HTTP on a non-loopback address.
    pub insecure_http: bool,
}

/// Who `kiln serve` is in a cluster (the state store itself is the global
/// `--state`, in the operator config).
#[derive(Debug, Clone, Default)]
pub struct StateOptions {
    /// `--node-id`; default: the config's `cluster.nodeId`, else the host
    /// name.
    pub node_id: Option<String>,
}

/// Parses a listen address: `IP:PORT`, or `HOST:PORT` with the host
/// resolved now (`localhost:8080` listens on its first address, loopback).
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    use std::net::ToSocketAddrs as _;
    let mut found = text
        .to_socket_addrs()
        .map_err(|e| format!("`{text}` is not HOST:PORT or IP:PORT ({e})"))?;
    found
        .next()
        .ok_or_else(|| format!("`{text}` resolves to no address"))
}

/// A daemon ready to serve.
pub struct Server {
    /// The bound address.
    pub listener: TcpListener,
    /// HTTPS, when `--tls-cert`/`--tls-key` were given.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The state.
    pub state: DaemonState,
}

impl Server {
    /// Serves until `shutdown` ([`super::serve`] or [`super::serve_tls`]).
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), DaemonError> {
        match self.tls {
            Some(tls) => super::serve_tls(self.listener, tls, self.state, shutdown).await,
            None => super::serve(self.listener, self.state, shutdown).await,
        }
    }
}

/// Everything [`super::serve`] needs, for the project at `project`, from
/// the loaded operator config; `listen` may override the configured address.
pub async fn open(
    project: &Project,
    operator: crate::operator::OperatorConfig,
    listen: ListenOptions,
    state: StateOptions,
) -> Result<Server, SetupError> {
    let location = operator.state_location(project.root());
    let config = operator.daemon;
    if config.tokens.is_empty() {
        tracing::warn!("no API tokens configured: every call but /healthz will be refused");
    }
    let addr = listen.addr.unwrap_or(config.listen);
    if listen.tls.is_none() && !listen.insecure_http && !addr.ip().is_loopback() {
        return Err(SetupError::PlainHttp { addr });
    }
    let tls = match &listen.tls {
        Some((cert, key)) => Some(super::tls::load(cert, key)?),
        None => None,
    };
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| SetupError::Listen { addr, source })?;
    let records = Records::open(&location, ChainKeys::default())
        .await
        .map_err(DaemonError::from)?;
    let docker = crate::docker::connect().await?;
    // The engine's own platform; the machine's when it does not say.
    let node = NodeOptions {
        id: state.node_id,
        docker_host: None,
        platforms: crate::docker::engine_platforms(&docker).await,
    };
    let pipeline = Pipeline {
        project: project.clone(),
        docker,
        registry: RegistryClient::new(config.registries.client_config())?,
        signing: operator.signing.map(Arc::new),
        governance: Arc::new(operator.governance),
        records,
    };
    let records = pipeline.records(None);
    let state = DaemonState::open(DaemonOptions {
        records,
        state: location,
        node,
        project: project.clone(),
        config,
        config_path: operator.path,
        runner: Arc::new(PipelineRunnerImpl::new(pipeline)),
        clock: Arc::new(SystemClock),
    })
    .await?;
    Ok(Server {
        listener,
        tls,
        state,
    })
}

#[cfg(test)]
mod tests {
    use super::parse_listen;

    #[test]
    fn listen_takes_ip_or_host_and_port() {
        assert_eq!(
            parse_listen("127.0.0.1:8080").unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert!(parse_listen("localhost:8080").unwrap().ip().is_loopback());
        let e = parse_listen("localhost").unwrap_err();
        assert!(e.contains("`localhost` is not HOST:PORT"), "{e}");
    }
}

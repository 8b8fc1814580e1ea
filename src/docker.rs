//! Connecting to a Docker Engine the way the docker CLI does: `DOCKER_HOST`
//! (unix socket by default, `tcp://` with TLS when `DOCKER_TLS_VERIFY` is set,
//! certificates from `DOCKER_CERT_PATH` or `~/.docker`), then negotiating the
//! API version so both old (20.10) and current engines answer.
//!
//! Shared by every stage that drives the daemon (build, test).

use std::path::PathBuf;

use bollard::{API_DEFAULT_VERSION, Docker};

/// Seconds a single Engine API request may take before its response starts.
pub const REQUEST_TIMEOUT_SECS: u64 = 120;

/// Why no Engine API connection could be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// `DOCKER_HOST` uses a scheme kiln does not speak.
    #[error("unsupported DOCKER_HOST `{host}` (use unix://, tcp:// or https://)")]
    UnsupportedHost {
        /// The value.
        host: String,
    },
    /// No home folder to find `~/.docker` certificates in.
    #[error("DOCKER_TLS_VERIFY is set but neither DOCKER_CERT_PATH nor a home folder is known")]
    NoCertPath,
    /// The client could not be set up (socket missing, bad certificates).
    #[error("cannot connect to the docker engine at `{host}`")]
    Client {
        /// The host.
        host: String,
        /// The cause.
        #[source]
        source: bollard::errors::Error,
    },
    /// The engine did not answer the version request.
    #[error(
        "the docker engine at `{host}` did not answer (is it running? try scripts/services up)"
    )]
    Negotiate {
        /// The host.
        host: String,
        /// The cause.
        #[source]
        source: bollard::errors::Error,
    },
}

/// Where and how to connect, as read from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `unix:///…`, `tcp://host:port` or `https://…`.
    pub host: String,
    /// Client certificate folder when TLS is on (`key.pem`, `cert.pem`, `ca.pem`).
    pub tls: Option<PathBuf>,
}

impl Endpoint {
    /// Reads `DOCKER_HOST`, `DOCKER_TLS_VERIFY` and `DOCKER_CERT_PATH`.
    pub fn from_env() -> Result<Self, ConnectError> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let host = var("DOCKER_HOST").unwrap_or_else(|| "unix:///var/run/docker.sock".into());
        let tls_wanted = var("DOCKER_TLS_VERIFY").is_some() || host.starts_with("https://");
        let tls = if tls_wanted && !host.starts_with("unix://") {
            let dir = match var("DOCKER_CERT_PATH") {
                Some(p) => PathBuf::from(p),
                None => std::env::var_os("HOME")
                    .map(PathBuf::from)
                    .ok_or(ConnectError::NoCertPath)?
                    .join(".docker"),
            };
            Some(dir)
        } else {
            None
        };
        Ok(Endpoint { host, tls })
    }
}

/// Connects to `endpoint` (no request is made yet).
pub fn client(endpoint: &Endpoint) -> Result<Docker, ConnectError> {
    let host = endpoint.host.as_str();
    let wrap = |source| ConnectError::Client {
        host: host.to_string(),
        source,
    };
    let timeout = REQUEST_TIMEOUT_SECS;
    if host.starts_with("unix://") {
        return Docker::connect_with_unix(host, timeout, API_DEFAULT_VERSION).map_err(wrap);
    }
    if !(host.starts_with("tcp://") || host.starts_with("http://") || host.starts_with("https://"))
    {
        return Err(ConnectError::UnsupportedHost {
            host: host.to_string(),
        });
    }
    match &endpoint.tls {
        Some(dir) => Docker::connect_with_ssl(
            host,
            &dir.join("key.pem"),
            &dir.join("cert.pem"),
            &dir.join("ca.pem"),
            timeout,
            API_DEFAULT_VERSION,
        )
        .map_err(wrap),
        None => Docker::connect_with_http(host, timeout, API_DEFAULT_VERSION).map_err(wrap),
    }
}

/// Connects using the environment and negotiates the API version with the
/// engine (this makes one request, so it also proves the engine answers).
pub async fn connect() -> Result<Docker, ConnectError> {
    let endpoint = Endpoint::from_env()?;
    let docker = client(&endpoint)?;
    docker
        .negotiate_version()
        .await
        .map_err(|source| ConnectError::Negotiate {
            host: endpoint.host.clone(),
            source,
        })
}

/// The platforms the engine builds natively (`linux/amd64`, …), from its
/// `version` answer; none when it does not say or does not answer (logged).
pub async fn engine_platforms(docker: &Docker) -> Vec<String> {
    match docker.version().await {
        Ok(v) => {
            v.os.zip(v.arch)
                .map(|(os, arch)| format!("{os}/{arch}"))
                .into_iter()
                .collect()
        }
        Err(e) => {
            tracing::warn!(error = %e, "the engine did not say which platform it builds");
            Vec::new()
        }
    }
}

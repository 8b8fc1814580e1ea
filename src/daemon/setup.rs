//! What `kiln serve` does before [`super::serve`]: find and load the config,
//! bind the listener, connect to Docker and the registries, and open the
//! state with the real pipeline runner.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;

use super::clock::SystemClock;
use super::config::{ConfigError, DaemonConfig};
use super::pipeline_runner::PipelineRunnerImpl;
use super::{DaemonError, DaemonOptions, DaemonState};
use crate::docker::ConnectError;
use crate::pipeline::Pipeline;
use crate::project::Project;
use crate::registry::{RegistryClient, RegistryError};

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// The config file is missing (when named) or invalid: a usage error.
    #[error(transparent)]
    Config(#[from] ConfigError),
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
}

/// The config: `explicit` (which must exist), else `config/kiln.yaml` in
/// the project when present, else the defaults. Returns the file it came
/// from, which `POST /v1/config/reload` re-reads.
pub fn load_config(
    project: &Project,
    explicit: Option<&Path>,
) -> Result<(DaemonConfig, Option<PathBuf>), ConfigError> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => project.dir("config").join("kiln.yaml"),
    };
    let config = if explicit.is_some() || path.exists() {
        DaemonConfig::load(&path)?
    } else {
        tracing::warn!(path = %path.display(), "no daemon config; using defaults");
        DaemonConfig::default()
    };
    if config.tokens.is_empty() {
        tracing::warn!("no API tokens configured: every call but /healthz will be refused");
    }
    Ok((config, path.exists().then_some(path)))
}

/// Everything [`super::serve`] needs, for the project at `project`;
/// `listen` overrides the configured address.
pub async fn open(
    project: &Project,
    config: Option<&Path>,
    listen: Option<SocketAddr>,
    signing: Option<crate::sign::SigningKey>,
) -> Result<(TcpListener, DaemonState), SetupError> {
    let (config, config_path) = load_config(project, config)?;
    let addr = listen.unwrap_or(config.listen);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| SetupError::Listen { addr, source })?;
    let pipeline = Pipeline {
        project: project.clone(),
        docker: crate::docker::connect().await?,
        registry: RegistryClient::new(config.registries.client_config())?,
        signing: signing.map(Arc::new),
    };
    let state = DaemonState::open(DaemonOptions {
        database: crate::record::db_path(project.root()),
        project: project.clone(),
        config,
        config_path,
        runner: Arc::new(PipelineRunnerImpl::new(pipeline)),
        clock: Arc::new(SystemClock),
    })?;
    Ok((listener, state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_project_without_config_gets_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let project = Project::open(dir.path()).unwrap();
        let (config, path) = load_config(&project, None).unwrap();
        assert_eq!(config.listen, DaemonConfig::default().listen);
        assert_eq!(path, None, "nothing to reload");
    }

    #[test]
    fn a_named_config_that_is_missing_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let project = Project::open(dir.path()).unwrap();
        let missing = dir.path().join("nope.yaml");
        assert!(load_config(&project, Some(&missing)).is_err());
    }

    #[test]
    fn the_project_config_is_found_and_kept_for_reload() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("config")).unwrap();
        let file = dir.path().join("config/kiln.yaml");
        std::fs::write(&file, "listen: 127.0.0.1:7999\n").unwrap();
        let project = Project::open(dir.path()).unwrap();
        let (config, path) = load_config(&project, None).unwrap();
        assert_eq!(config.listen, "127.0.0.1:7999".parse().unwrap());
        assert_eq!(path, Some(project.dir("config").join("kiln.yaml")));
    }
}

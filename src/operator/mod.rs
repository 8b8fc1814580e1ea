//! The operator config (`--config PATH` / `KILN_CONFIG`, else
//! `/etc/kiln/kiln.yaml` when it exists, else — loudly — the project's
//! `config/kiln.yaml`): settings that belong to whoever runs kiln, not to the
//! recipes — the daemon's listen address, concurrency and API tokens, registry
//! lookups, insecure registries and the credentials file, the signing key, the
//! policy (`policy.rs`), the findings gate (`findings.rs`) and what test
//! containers may ask for. Read by the CLI and the daemon alike; one strict
//! schema ([`crate::daemon::config::DaemonConfig`], positioned errors).
//!
//! A config named with `--config` (or installed in `/etc/kiln`) is the only
//! one read: the project's `config/kiln.yaml` is then ignored (and said so),
//! so a change to the recipe repository can never add a token or loosen the
//! policy. The file and the key it names must lie outside the project folder;
//! the project fallback exists for compatibility and may not name a key.

pub mod build;
pub mod findings;
pub mod policy;
pub mod policy_check;
pub mod record_keys;

mod signing;

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::daemon::config::{ConfigError, DaemonConfig};
use crate::sign::key::{KeyError, SigningKey};
use crate::sign::kms::KmsError;
use crate::state::StateLocation;
use crate::test_phase::TestPolicy;

/// Where the operator config is read from when neither `--config` nor
/// `KILN_CONFIG` is given (only if the file exists).
pub const DEFAULT_PATH: &str = "/etc/kiln/kiln.yaml";

/// The project file used as the operator config when nothing else is found.
pub const PROJECT_FALLBACK: &str = "config/kiln.yaml";

/// `signing:` as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningFile {
    /// A PEM PKCS#8 ECDSA P-256 private key file, relative to the config
    /// file, or an AWS KMS key `awskms:///alias/NAME` (`/KEY-ID`, `/ARN`).
    pub key: Spanned<String>,
}

/// Where the operator config came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConfigSource {
    /// No file: defaults (no tokens, no policy, no key).
    #[default]
    Defaults,
    /// `--config` / `KILN_CONFIG`.
    Explicit,
    /// [`DEFAULT_PATH`].
    System,
    /// The project's [`PROJECT_FALLBACK`], with a warning.
    Project,
}

/// The config file to read and how it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The file (`None`: defaults).
    pub path: Option<PathBuf>,
    /// How it was found.
    pub source: ConfigSource,
}

/// What the pipeline enforces for the operator on every run.
#[derive(Debug, Clone, Default)]
pub struct Governance {
    /// `policy:` (checked at load and again before distribute).
    pub policy: policy::Policy,
    /// `findings:` (the gate between test and distribute).
    pub findings: findings::FindingsConfig,
    /// `testContainers:` (what structure tests may ask for).
    pub test_containers: TestPolicy,
}

/// The loaded operator config.
#[derive(Debug, Default)]
pub struct OperatorConfig {
    /// The file it came from (`None`: no config, defaults).
    pub path: Option<PathBuf>,
    /// How it was found.
    pub source: ConfigSource,
    /// The daemon's settings (listen, tokens, registries, …).
    pub daemon: DaemonConfig,
    /// kiln's signing key, when `signing.key` is set.
    pub signing: Option<SigningKey>,
    /// Policy, findings gate and test-container allowances.
    pub governance: Governance,
    /// Default builder and allowed secret sources (`build:`).
    pub build: crate::load::build_settings::BuildPolicy,
    /// Where records live (`state:`, a SQLite path resolved against the
    /// config file's folder); the CLI's `--state` replaces it. `None`: the
    /// project's SQLite file ([`OperatorConfig::state_location`]).
    pub state: Option<StateLocation>,
}

/// Why the operator config could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OperatorConfigError {
    /// The file cannot be read or is invalid (positioned).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The config or its key lies inside the project folder.
    #[error(
        "operator config `{config}`: `{path}` is inside the project folder `{project}`; keys and operator settings never live in a project"
    )]
    InProject {
        /// The config file.
        config: PathBuf,
        /// The offending path (the config itself or the key).
        path: PathBuf,
        /// The project folder.
        project: PathBuf,
    },
    /// The signing key named by the config cannot be used.
    #[error("operator config `{config}` line {line}: signing key")]
    Key {
        /// The config file.
        config: PathBuf,
        /// The line of `signing.key`.
        line: u64,
        /// Why the key cannot be used (names the key file).
        #[source]
        source: KeyError,
    },
    /// The KMS key named by the config cannot be used (nothing is pushed).
    #[error("operator config `{config}` line {line}: signing key")]
    Kms {
        /// The config file.
        config: PathBuf,
        /// The line of `signing.key`.
        line: u64,
        /// Why (names the key).
        #[source]
        source: KmsError,
    },
}

impl OperatorConfig {
    /// The config file to read: `explicit` (`--config` / `KILN_CONFIG`), else
    /// [`DEFAULT_PATH`] when it exists, else the project's
    /// [`PROJECT_FALLBACK`] when it exists, else none.
    pub fn locate(explicit: Option<&Path>, project: &Path) -> Located {
        let (path, source) = match explicit {
            Some(p) => (Some(p.to_path_buf()), ConfigSource::Explicit),
            None if Path::new(DEFAULT_PATH).exists() => {
                (Some(PathBuf::from(DEFAULT_PATH)), ConfigSource::System)
            }
            None => match project.join(PROJECT_FALLBACK) {
                p if p.exists() => (Some(p), ConfigSource::Project),
                _ => (None, ConfigSource::Defaults),
            },
        };
        Located { path, source }
    }

    /// Loads the located config and its signing key; `project` is the
    /// project folder, which an explicit or system config and every key must
    /// lie outside of. Warns (tracing) when the project's file is used, or
    /// when it exists but is ignored.
    pub async fn load(located: &Located, project: &Path) -> Result<Self, OperatorConfigError> {
        let fallback = project.join(PROJECT_FALLBACK);
        let Some(path) = located.path.as_deref() else {
            return Ok(Self::default());
        };
        if located.source == ConfigSource::Project {
            tracing::warn!(
                "USING THE PROJECT'S `{}` AS THE OPERATOR CONFIG: a file in the recipe repository holds \
                 the API tokens, the policy and the registry settings, so anyone who can change the \
                 repository can change them. Move it outside the project and start kiln with \
                 `--config FILE` (or KILN_CONFIG, or install it as {DEFAULT_PATH})",
                path.display()
            );
        } else {
            refuse_in_project(path, path, project)?;
            if fallback.exists() {
                tracing::warn!(
                    "the project's `{}` is ignored: the operator config `{}` is used, and a project file never overrides it",
                    fallback.display(),
                    path.display()
                );
            }
        }
        let daemon = DaemonConfig::load(path)?;
        let signing = match &daemon.signing {
            None => None,
            Some(_) if located.source == ConfigSource::Project => {
                return Err(OperatorConfigError::InProject {
                    config: path.to_path_buf(),
                    path: path.to_path_buf(),
                    project: project.to_path_buf(),
                });
            }
            Some(s) => Some(signing::load(path, project, &s.key).await?),
        };
        let governance = Governance {
            policy: daemon.policy.clone(),
            findings: daemon.findings.clone(),
            test_containers: daemon.test_containers,
        };
        let build = daemon
            .build
            .clone()
            .map(build::BuildFile::policy)
            .unwrap_or_default();
        let state = daemon.state_location().map(|s| relative_to(path, s));
        Ok(Self {
            path: Some(path.to_path_buf()),
            source: located.source,
            daemon,
            signing,
            governance,
            build,
            state,
        })
    }

    /// The record store to use: `state:` (or `--state`), else the SQLite
    /// file of the project at `root`.
    pub fn state_location(&self, root: &Path) -> StateLocation {
        self.state
            .clone()
            .unwrap_or_else(|| StateLocation::project_default(root))
    }
}

/// `state` with a relative SQLite path taken from the folder of `config`.
fn relative_to(config: &Path, state: StateLocation) -> StateLocation {
    match state {
        StateLocation::Sqlite(p) if p.is_relative() => {
            StateLocation::Sqlite(config.parent().unwrap_or(Path::new(".")).join(p))
        }
        other => other,
    }
}

/// Refuses `path` when it resolves to somewhere inside `project`.
pub(super) fn refuse_in_project(
    config: &Path,
    path: &Path,
    project: &Path,
) -> Result<(), OperatorConfigError> {
    let (Ok(p), Ok(root)) = (std::path::absolute(path), std::fs::canonicalize(project)) else {
        return Ok(());
    };
    let p = std::fs::canonicalize(&p).unwrap_or(p);
    if p.starts_with(&root) {
        return Err(OperatorConfigError::InProject {
            config: config.to_path_buf(),
            path: path.to_path_buf(),
            project: project.to_path_buf(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    fn explicit(path: &Path) -> Located {
        Located {
            path: Some(path.to_path_buf()),
            source: ConfigSource::Explicit,
        }
    }

    /// Loads an operator config with `text`, outside a fresh project.
    fn load(text: &str) -> OperatorConfigError {
        let (p, ops) = (project(), project());
        let path = ops.path().join("kiln.yaml");
        std::fs::write(&path, text).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(OperatorConfig::load(&explicit(&path), p.path()))
            .unwrap_err()
    }

    #[tokio::test]
    async fn no_config_means_no_key() {
        let p = project();
        let none = OperatorConfig::locate(None, p.path());
        let c = OperatorConfig::load(&none, p.path()).await.unwrap();
        assert!(c.signing.is_none());
        assert_eq!(c.source, ConfigSource::Defaults);
    }

    #[test]
    fn unknown_field_is_positioned() {
        let e = load("signing:\n  kee: x.pem\n");
        let text = crate::pipeline::chain(&e);
        assert!(text.contains(":2:"), "{text}");
    }

    #[test]
    fn missing_key_names_the_key_file() {
        let e = load("signing:\n  key: nope.key\n");
        let text = crate::pipeline::chain(&e);
        assert!(
            text.contains("nope.key") && text.contains("line 2"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn key_inside_the_project_is_refused() {
        let (p, ops) = (project(), project());
        SigningKey::generate(p.path()).unwrap();
        let path = ops.path().join("kiln.yaml");
        let key = p.path().join("kiln.key");
        std::fs::write(&path, format!("signing:\n  key: {}\n", key.display())).unwrap();
        let e = OperatorConfig::load(&explicit(&path), p.path())
            .await
            .unwrap_err();
        assert!(matches!(e, OperatorConfigError::InProject { .. }), "{e}");
    }

    #[tokio::test]
    async fn the_project_fallback_is_found_but_may_not_name_a_key() {
        let (p, ops) = (project(), project());
        std::fs::create_dir(p.path().join("config")).unwrap();
        let file = p.path().join(PROJECT_FALLBACK);
        std::fs::write(&file, "listen: 127.0.0.1:7999\n").unwrap();
        let found = OperatorConfig::locate(None, p.path());
        assert_eq!(found.source, ConfigSource::Project);
        let c = OperatorConfig::load(&found, p.path()).await.unwrap();
        assert_eq!(c.daemon.listen, "127.0.0.1:7999".parse().unwrap());
        SigningKey::generate(ops.path()).unwrap();
        let key = ops.path().join("kiln.key");
        std::fs::write(&file, format!("signing:\n  key: {}\n", key.display())).unwrap();
        let e = OperatorConfig::load(&found, p.path()).await.unwrap_err();
        assert!(matches!(e, OperatorConfigError::InProject { .. }), "{e}");
    }

    #[tokio::test]
    async fn an_explicit_config_wins_over_the_project_file() {
        let (p, ops) = (project(), project());
        std::fs::create_dir(p.path().join("config")).unwrap();
        std::fs::write(p.path().join(PROJECT_FALLBACK), "concurrency: 9\n").unwrap();
        let path = ops.path().join("kiln.yaml");
        std::fs::write(&path, "concurrency: 3\n").unwrap();
        let found = OperatorConfig::locate(Some(&path), p.path());
        let c = OperatorConfig::load(&found, p.path()).await.unwrap();
        assert_eq!(c.daemon.concurrency, 3);
    }
}

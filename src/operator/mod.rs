//! The operator config (`--config PATH` / `KILN_CONFIG`, default
//! `/etc/kiln/kiln.yaml` when it exists): settings that belong to whoever runs
//! kiln, not to the recipes — for now the signing key. Read by the CLI and the
//! daemon alike; strict YAML through [`crate::yaml`]. Each section (signing,
//! policy, …) is decoded here and gets its own file under `src/operator/` when
//! it grows logic of its own.
//!
//! The file and the key it names must lie outside the project folder: a key
//! committed with the recipes would be a key anyone with the repository holds.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::diagnostic::Diagnostic;
use crate::sign::key::{KeyError, SigningKey};

/// Where the operator config is read from when neither `--config` nor
/// `KILN_CONFIG` is given (only if the file exists).
pub const DEFAULT_PATH: &str = "/etc/kiln/kiln.yaml";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OperatorFile {
    #[serde(default)]
    signing: Option<SigningFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SigningFile {
    /// A PEM PKCS#8 ECDSA P-256 private key file, relative to the config file.
    key: Spanned<String>,
}

/// The loaded operator config.
#[derive(Debug, Default)]
pub struct OperatorConfig {
    /// The file it came from (`None`: no config, defaults).
    pub path: Option<PathBuf>,
    /// kiln's signing key, when `signing.key` is set.
    pub signing: Option<SigningKey>,
}

/// Why the operator config could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OperatorConfigError {
    /// The config file could not be read.
    #[error("cannot read operator config `{path}`")]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid (positioned).
    #[error("{0}")]
    Invalid(Box<Diagnostic>),
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
}

impl OperatorConfig {
    /// The config file to read: `explicit` (`--config` / `KILN_CONFIG`), else
    /// [`DEFAULT_PATH`] when it exists, else none.
    pub fn locate(explicit: Option<&Path>) -> Option<PathBuf> {
        match explicit {
            Some(p) => Some(p.to_path_buf()),
            None => Some(PathBuf::from(DEFAULT_PATH)).filter(|p| p.exists()),
        }
    }

    /// Loads `path` (if any) and its signing key; `project` is the project
    /// folder, which neither the config nor the key may be inside.
    pub fn load(path: Option<&Path>, project: &Path) -> Result<Self, OperatorConfigError> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        refuse_in_project(path, path, project)?;
        let source = std::fs::read_to_string(path).map_err(|source| OperatorConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let file: OperatorFile = crate::yaml::decode(path, &source)
            .map_err(|d| OperatorConfigError::Invalid(Box::new(d)))?;
        let signing = match file.signing {
            None => None,
            Some(s) => {
                let key_path = path.parent().unwrap_or(Path::new(".")).join(&s.key.value);
                refuse_in_project(path, &key_path, project)?;
                let key =
                    SigningKey::load(&key_path).map_err(|source| OperatorConfigError::Key {
                        config: path.to_path_buf(),
                        line: s.key.referenced.line(),
                        source,
                    })?;
                Some(key)
            }
        };
        Ok(Self {
            path: Some(path.to_path_buf()),
            signing,
        })
    }
}

/// Refuses `path` when it resolves to somewhere inside `project`.
fn refuse_in_project(
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

    /// Loads an operator config with `text`, outside a fresh project.
    fn load(text: &str) -> OperatorConfigError {
        let (p, ops) = (project(), project());
        let path = ops.path().join("kiln.yaml");
        std::fs::write(&path, text).unwrap();
        OperatorConfig::load(Some(&path), p.path()).unwrap_err()
    }

    #[test]
    fn no_config_means_no_key() {
        let p = project();
        let c = OperatorConfig::load(None, p.path()).unwrap();
        assert!(c.signing.is_none());
    }

    #[test]
    fn unknown_field_is_positioned() {
        let e = load("signing:\n  kee: x.pem\n");
        let OperatorConfigError::Invalid(d) = e else {
            panic!("{e}")
        };
        assert_eq!(d.line, 2, "{d}");
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

    #[test]
    fn key_inside_the_project_is_refused() {
        let (p, ops) = (project(), project());
        SigningKey::generate(p.path()).unwrap();
        let path = ops.path().join("kiln.yaml");
        let key = p.path().join("kiln.key");
        std::fs::write(&path, format!("signing:\n  key: {}\n", key.display())).unwrap();
        let e = OperatorConfig::load(Some(&path), p.path()).unwrap_err();
        assert!(matches!(e, OperatorConfigError::InProject { .. }), "{e}");
    }
}

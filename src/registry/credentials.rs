//! Where registry credentials come from: explicit configuration, the Docker
//! config file (`auths`, `credHelpers`, `credsStore` via
//! `docker-credential-<name> get`), or ECR's `GetAuthorizationToken`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use base64::Engine as _;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

/// A username and password (or token) for HTTP basic auth or a token realm.
#[derive(Clone, PartialEq, Eq)]
pub struct BasicCredentials {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

impl std::fmt::Debug for BasicCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BasicCredentials({}, <redacted>)", self.username)
    }
}

impl BasicCredentials {
    /// The `Authorization: Basic …` header value.
    pub fn header_value(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// How to get credentials for one registry host.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum CredentialSource {
    /// No credentials.
    Anonymous,
    /// Fixed credentials.
    Basic(BasicCredentials),
    /// ECR `GetAuthorizationToken` for `account` in `region`.
    Ecr {
        /// AWS region.
        region: String,
        /// Registry (account) id.
        account: String,
    },
}

/// Why credentials could not be obtained.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// The Docker config file could not be read.
    #[error("cannot read docker config `{path}`")]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The Docker config file is not valid JSON.
    #[error("cannot parse docker config `{path}`")]
    ParseConfig {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// An `auth` field is not base64 of `user:password`.
    #[error("the `auth` entry for `{key}` is not base64 of `user:password`")]
    BadAuthField {
        /// The `auths` key.
        key: String,
    },
    /// A credential helper could not be run.
    #[error("cannot run credential helper `{program}`")]
    HelperSpawn {
        /// The program name.
        program: String,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// A credential helper exited unsuccessfully.
    #[error("credential helper `{program}` failed with {status}: {stderr}")]
    HelperFailed {
        /// The program name.
        program: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Its standard error, trimmed.
        stderr: String,
    },
    /// A credential helper printed something that is not its JSON answer.
    #[error("credential helper `{program}` printed an unusable answer")]
    HelperOutput {
        /// The program name.
        program: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// ECR's GetAuthorizationToken failed or returned no usable token.
    #[error("ecr GetAuthorizationToken failed in region `{region}`")]
    Ecr {
        /// AWS region.
        region: String,
        /// The underlying failure.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The credential parts of `~/.docker/config.json`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DockerConfig {
    /// `auths`: registry → `{ "auth": base64(user:pass) }`.
    #[serde(default)]
    pub auths: BTreeMap<String, AuthEntry>,
    /// `credHelpers`: registry → helper name.
    #[serde(default, rename = "credHelpers")]
    pub cred_helpers: BTreeMap<String, String>,
    /// `credsStore`: the default helper name.
    #[serde(default, rename = "credsStore")]
    pub creds_store: Option<String>,
}

/// One `auths` entry.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuthEntry {
    /// base64 of `user:password`.
    #[serde(default)]
    pub auth: Option<String>,
    /// Some tools write these instead of `auth`.
    #[serde(default)]
    pub username: Option<String>,
    /// See `username`.
    #[serde(default)]
    pub password: Option<String>,
}

/// The default Docker config path: `$DOCKER_CONFIG/config.json`, else
/// `$HOME/.docker/config.json`.
pub fn default_docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
}

/// Reads a Docker config; a missing file is an empty config.
pub fn load_docker_config(path: &Path) -> Result<DockerConfig, CredentialError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map_err(|source| CredentialError::ParseConfig {
                path: path.to_path_buf(),
                source,
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DockerConfig::default()),
        Err(source) => Err(CredentialError::ReadConfig {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Normalises an `auths` key (`https://host/v1/`, `http://host`, `host`) to a
/// host; Docker Hub's legacy key maps to `docker.io`.
fn auths_key_host(key: &str) -> &str {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = k.split('/').next().unwrap_or(k);
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io",
        h => h,
    }
}

impl DockerConfig {
    /// Credentials for `registry` from this config: a `credHelpers` entry
    /// wins, then an `auths` entry, then `credsStore`.
    pub async fn lookup(
        &self,
        registry: &str,
    ) -> Result<Option<BasicCredentials>, CredentialError> {
        if let Some(helper) = self.cred_helpers.get(registry) {
            return run_helper(helper, registry).await;
        }
        for (key, entry) in &self.auths {
            if auths_key_host(key) != registry {
                continue;
            }
            if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
                return decode_auth(key, auth).map(Some);
            }
            if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
                return Ok(Some(BasicCredentials {
                    username: u.clone(),
                    password: p.clone(),
                }));
            }
        }
        match &self.creds_store {
            Some(store) => run_helper(store, registry).await,
            None => Ok(None),
        }
    }
}

fn decode_auth(key: &str, auth: &str) -> Result<BasicCredentials, CredentialError> {
    let bad = || CredentialError::BadAuthField {
        key: key.to_string(),
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (u, p) = text.split_once(':').ok_or_else(bad)?;
    Ok(BasicCredentials {
        username: u.to_string(),
        password: p.to_string(),
    })
}

#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

/// Runs `docker-credential-<name> get` with the registry on stdin. A helper
/// that reports "credentials not found" yields `None`.
async fn run_helper(
    name: &str,
    registry: &str,
) -> Result<Option<BasicCredentials>, CredentialError> {
    let program = format!("docker-credential-{name}");
    let spawn_err = |source| CredentialError::HelperSpawn {
        program: program.clone(),
        source,
    };
    let mut child = tokio::process::Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(spawn_err)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(registry.as_bytes())
            .await
            .map_err(spawn_err)?;
    }
    let out = child.wait_with_output().await.map_err(spawn_err)?;
    if !out.status.success() {
        let stdout = String::from_utf8_lossy(&out.stdout);
        if stdout.contains("credentials not found") {
            return Ok(None);
        }
        return Err(CredentialError::HelperFailed {
            program,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    let answer: HelperAnswer = serde_json::from_slice(&out.stdout)
        .map_err(|source| CredentialError::HelperOutput { program, source })?;
    Ok(Some(BasicCredentials {
        username: answer.username,
        password: answer.secret,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> DockerConfig {
        serde_json::from_str(json).unwrap()
    }

    #[tokio::test]
    async fn auths_entries_match_by_host_in_any_key_form() {
        let c = config(
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"dTpw"},
                          "http://127.0.0.1:5000/v2/":{"auth":"YWxpY2U6czNjcjN0"},
                          "ghcr.io":{"username":"bob","password":"pw"}}}"#,
        );
        let alice = c.lookup("127.0.0.1:5000").await.unwrap().unwrap();
        assert_eq!(
            (alice.username.as_str(), alice.password.as_str()),
            ("alice", "s3cr3t")
        );
        assert_eq!(c.lookup("docker.io").await.unwrap().unwrap().username, "u");
        assert_eq!(c.lookup("ghcr.io").await.unwrap().unwrap().password, "pw");
        assert_eq!(c.lookup("quay.io").await.unwrap(), None);
    }

    #[tokio::test]
    async fn bad_auth_field_is_an_error_naming_the_key() {
        let c = config(r#"{"auths":{"reg.example":{"auth":"bm9jb2xvbg=="}}}"#);
        let e = c.lookup("reg.example").await.unwrap_err();
        assert!(
            matches!(e, CredentialError::BadAuthField { ref key } if key == "reg.example"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn missing_helper_is_a_spawn_error() {
        let c = config(r#"{"credHelpers":{"reg.example":"kiln-no-such-helper"}}"#);
        let e = c.lookup("reg.example").await.unwrap_err();
        assert!(matches!(e, CredentialError::HelperSpawn { .. }), "{e}");
    }

    #[test]
    fn basic_header_and_redacted_debug() {
        let c = BasicCredentials {
            username: "a".into(),
            password: "b".into(),
        };
        assert_eq!(c.header_value(), "Basic YTpi");
        assert_eq!(format!("{c:?}"), "BasicCredentials(a, <redacted>)");
    }
}

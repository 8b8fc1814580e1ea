//! The operator config file's schema (historically the daemon's
//! `config/kiln.yaml`; found by [`crate::operator::OperatorConfig::locate`]):
//! listen address, concurrency, shutdown grace, API tokens (stored as sha256
//! hashes only), registries (`registries:`: shared lookups, insecure hosts,
//! the credentials file), and the operator sections `signing`, `policy`,
//! `findings` and `testContainers`, whose types and checks live in
//! `src/operator/`. Decoded strictly through [`crate::yaml::decode`]; unknown
//! fields are errors.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::auth::Role;
use crate::diagnostic::Diagnostic;

/// The default listen address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8420";

/// The daemon configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DaemonConfig {
    /// Address the HTTP API binds to.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Most runs executing at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// On shutdown, how long running pipelines may take to finish before
    /// they are cancelled.
    #[serde(default = "default_grace")]
    pub grace_seconds: u64,
    /// API tokens, by hash.
    #[serde(default)]
    pub tokens: Vec<TokenEntry>,
    /// Registry lookups shared by the runs of a slot.
    #[serde(default)]
    pub registries: RegistryLookups,
    /// On start, queue one run of each scheduled pipeline that missed a
    /// cron slot since its last run (daemon down at the slot). One, never a
    /// burst, however many slots were missed.
    #[serde(default = "default_catch_up")]
    pub catch_up_missed_slots: bool,
    /// `signing:` — the signing key (loaded by [`crate::operator`]).
    #[serde(default)]
    pub signing: Option<crate::operator::SigningFile>,
    /// `policy:` — what recipes and images must satisfy.
    #[serde(default)]
    pub policy: crate::operator::policy::Policy,
    /// `findings:` — the findings gate.
    #[serde(default)]
    pub findings: crate::operator::findings::FindingsConfig,
    /// `testContainers:` — what structure tests may ask for.
    #[serde(default)]
    pub test_containers: crate::test_phase::TestPolicy,
    /// `build:` — default builder and allowed build-secret sources.
    #[serde(default)]
    pub build: Option<crate::operator::build::BuildFile>,
    /// `state:` — where records live: `sqlite:PATH` (relative to the config
    /// file) or `postgres://USER@HOST:PORT/DB`; `--state` overrides it.
    #[serde(default)]
    pub state: Option<serde_saphyr::Spanned<String>>,
    /// `cluster:` — this daemon as a node of a PostgreSQL state store.
    #[serde(default)]
    pub cluster: ClusterConfig,
}

/// `cluster:` — how this daemon takes part in a cluster (used only with a
/// PostgreSQL state store).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClusterConfig {
    /// The node id (`kiln serve --node-id` wins); default: the host name.
    #[serde(default)]
    pub node_id: Option<String>,
    /// Labels shown by `GET /v1/nodes`.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// A claim's lease, renewed by heartbeats every third of it (at least
    /// 2). Default 30.
    #[serde(default = "default_lease")]
    pub lease_seconds: u64,
    /// How often an idle node looks for runs another node queued when no
    /// notification came (at least 1). Default 5.
    #[serde(default = "default_poll")]
    pub poll_seconds: u64,
}

fn default_lease() -> u64 {
    30
}

fn default_poll() -> u64 {
    5
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            node_id: None,
            labels: Default::default(),
            lease_seconds: default_lease(),
            poll_seconds: default_poll(),
        }
    }
}

impl ClusterConfig {
    /// The lease and poll interval.
    pub fn settings(&self) -> super::cluster::ClusterSettings {
        super::cluster::ClusterSettings {
            lease: Duration::from_secs(self.lease_seconds),
            poll: Duration::from_secs(self.poll_seconds),
        }
    }

    fn validate(&self) -> Result<(), String> {
        if self.lease_seconds < 2 {
            return Err("`cluster.leaseSeconds` must be at least 2".into());
        }
        if self.poll_seconds == 0 {
            return Err("`cluster.pollSeconds` must be at least 1".into());
        }
        match &self.node_id {
            Some(id) if id.is_empty() || id.len() > 100 || id.chars().any(char::is_control) => Err(
                "`cluster.nodeId` must be 1 to 100 characters without control characters".into(),
            ),
            _ => Ok(()),
        }
    }
}

/// `registries:` — how scheduled runs share registry lookups.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RegistryLookups {
    /// How long a lookup answer is shared (seconds, at least 1). Default 60.
    #[serde(default = "default_lookup_ttl")]
    pub lookup_ttl_seconds: u64,
    /// Most lookups in flight per registry host. Default 8.
    #[serde(default = "default_lookup_concurrency")]
    pub concurrency_per_registry: usize,
    /// Longest a run waits for a rate-limited registry before failing. Default 900.
    #[serde(default = "default_max_throttle_wait")]
    pub max_throttle_wait_seconds: u64,
    /// Hosts (`host[:port]`) reached over plain HTTP besides loopback.
    #[serde(default)]
    pub insecure: Vec<String>,
    /// The Docker config file registry credentials are read from (default
    /// `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`).
    #[serde(default)]
    pub docker_config: Option<PathBuf>,
}

fn default_lookup_ttl() -> u64 {
    60
}

fn default_lookup_concurrency() -> usize {
    8
}

fn default_max_throttle_wait() -> u64 {
    900
}

impl Default for RegistryLookups {
    fn default() -> Self {
        RegistryLookups {
            lookup_ttl_seconds: default_lookup_ttl(),
            concurrency_per_registry: default_lookup_concurrency(),
            max_throttle_wait_seconds: default_max_throttle_wait(),
            insecure: Vec::new(),
            docker_config: None,
        }
    }
}

impl RegistryLookups {
    /// The registry client configuration these settings give.
    pub fn client_config(&self) -> crate::registry::RegistryConfig {
        crate::registry::RegistryConfig {
            lookup_ttl: Duration::from_secs(self.lookup_ttl_seconds),
            lookup_concurrency: self.concurrency_per_registry,
            max_throttle_wait: Duration::from_secs(self.max_throttle_wait_seconds),
            insecure_registries: self.insecure.iter().cloned().collect(),
            docker_config: self.docker_config.clone(),
            ..Default::default()
        }
    }
}

/// One API token: who, what it may do, and the sha256 of the token text.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// A name for logs and audit (never the token).
    pub name: String,
    /// What the token may do.
    pub role: Role,
    /// Lowercase hex sha256 of the token (`kiln token hash` prints it).
    pub sha256: String,
}

fn default_listen() -> SocketAddr {
    DEFAULT_LISTEN.parse().expect("valid default address")
}

fn default_concurrency() -> usize {
    2
}

fn default_grace() -> u64 {
    30
}

fn default_catch_up() -> bool {
    true
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            listen: default_listen(),
            concurrency: default_concurrency(),
            grace_seconds: default_grace(),
            tokens: Vec::new(),
            registries: RegistryLookups::default(),
            catch_up_missed_slots: default_catch_up(),
            signing: None,
            policy: Default::default(),
            findings: Default::default(),
            test_containers: Default::default(),
            build: None,
            state: None,
            cluster: ClusterConfig::default(),
        }
    }
}

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read operator config `{path}`")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The YAML does not match the schema.
    #[error("{0}")]
    Invalid(Box<Diagnostic>),
    /// `state:` is not a state store.
    #[error("operator config `{path}` line {line}: `state`")]
    State {
        /// The file.
        path: PathBuf,
        /// The line of `state:`.
        line: u64,
        /// Why (the value without its password).
        #[source]
        source: crate::state::StateLocationError,
    },
    /// A value is out of range.
    #[error("operator config `{path}`: {problem}")]
    Value {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

impl DaemonConfig {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<DaemonConfig, ConfigError> {
        let source = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &source)
    }

    /// Parses config text (`path` is only used in messages).
    pub fn parse(path: &Path, source: &str) -> Result<DaemonConfig, ConfigError> {
        let config: DaemonConfig =
            crate::yaml::decode(path, source).map_err(|d| ConfigError::Invalid(Box::new(d)))?;
        let bad = |problem: String| ConfigError::Value {
            path: path.to_path_buf(),
            problem,
        };
        if config.concurrency == 0 {
            return Err(bad("`concurrency` must be at least 1".into()));
        }
        if config.registries.lookup_ttl_seconds == 0 {
            return Err(bad(
                "`registries.lookupTtlSeconds` must be at least 1".into()
            ));
        }
        if config.registries.concurrency_per_registry == 0 {
            return Err(bad(
                "`registries.concurrencyPerRegistry` must be at least 1".into(),
            ));
        }
        if let Some(state) = &config.state
            && let Err(source) = state.value.parse::<crate::state::StateLocation>()
        {
            let line = state.referenced.line();
            let path = path.to_path_buf();
            return Err(ConfigError::State { path, line, source });
        }
        if let Err(problem) = config.policy.validate() {
            return Err(bad(problem));
        }
        if let Err(problem) = config.findings.validate() {
            return Err(bad(problem));
        }
        if let Err(problem) = config.cluster.validate() {
            return Err(bad(problem));
        }
        let mut names = std::collections::BTreeSet::new();
        for t in &config.tokens {
            let hex_ok = t.sha256.len() == 64
                && t.sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if !hex_ok {
                return Err(bad(format!(
                    "token `{}`: `sha256` must be 64 lowercase hex digits (the hash \
                     `kiln token hash` prints, never the token itself)",
                    t.name
                )));
            }
            if !names.insert(t.name.as_str()) {
                return Err(bad(format!("token name `{}` is used twice", t.name)));
            }
        }
        Ok(config)
    }

    /// `state:` parsed ([`DaemonConfig::parse`] refused a bad one); a
    /// relative SQLite path stays as written (the operator config resolves
    /// it against the config file's folder).
    pub fn state_location(&self) -> Option<crate::state::StateLocation> {
        self.state.as_ref().and_then(|s| s.value.parse().ok())
    }

    /// [`DaemonConfig::grace_seconds`] as a duration.
    pub fn grace(&self) -> Duration {
        Duration::from_secs(self.grace_seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_strictness() {
        let c = DaemonConfig::parse(Path::new("k.yaml"), "concurrency: 3\n").unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.concurrency, 3);
        assert_eq!(c.grace_seconds, 30);
        let e = DaemonConfig::parse(Path::new("k.yaml"), "listn: 1.2.3.4:5\n").unwrap_err();
        assert!(e.to_string().contains("listn"), "{e}");
        let raw = "tokens:\n  - {name: a, role: admin, sha256: hunter2}\n";
        let e = DaemonConfig::parse(Path::new("k.yaml"), raw).unwrap_err();
        assert!(e.to_string().contains("64 lowercase hex"), "{e}");
        let e = DaemonConfig::parse(Path::new("k.yaml"), "concurrency: 0\n").unwrap_err();
        assert!(e.to_string().contains("at least 1"), "{e}");
        assert_eq!(c.registries.client_config().lookup_concurrency, 8);
        let raw = "registries:\n  lookupTtlSeconds: 5\n";
        let c = DaemonConfig::parse(Path::new("k.yaml"), raw).unwrap();
        assert_eq!(
            c.registries.client_config().lookup_ttl,
            Duration::from_secs(5)
        );
        let raw = "registries:\n  lookupTtlSeconds: 0\n";
        let e = DaemonConfig::parse(Path::new("k.yaml"), raw).unwrap_err();
        assert!(e.to_string().contains("lookupTtlSeconds"), "{e}");
        let raw = "registries:\n  ttl: 5\n";
        let e = DaemonConfig::parse(Path::new("k.yaml"), raw).unwrap_err();
        assert!(e.to_string().contains("ttl"), "{e}");
    }

    #[test]
    fn the_cluster_section_is_strict() {
        let raw = "cluster:\n  nodeId: build-1\n  labels: {rack: a}\n  leaseSeconds: 6\n";
        let c = DaemonConfig::parse(Path::new("k.yaml"), raw).unwrap();
        assert_eq!(c.cluster.node_id.as_deref(), Some("build-1"));
        assert_eq!(c.cluster.labels["rack"], "a");
        assert_eq!(c.cluster.settings().lease, Duration::from_secs(6));
        assert_eq!(c.cluster.poll_seconds, 5);
        let raw = "concurrency: 2\ncluster:\n  leaseSecs: 6\n";
        let e = DaemonConfig::parse(Path::new("k.yaml"), raw).unwrap_err();
        let shown = e.to_string();
        assert!(
            shown.contains("k.yaml:3") && shown.contains("leaseSecs"),
            "{shown}"
        );
        let raw = "cluster:\n  leaseSeconds: 1\n";
        let e = DaemonConfig::parse(Path::new("k.yaml"), raw).unwrap_err();
        assert!(e.to_string().contains("cluster.leaseSeconds"), "{e}");
    }

    #[test]
    fn the_shipped_example_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kiln.yaml");
        let c = DaemonConfig::load(&path).unwrap();
        assert_eq!(c.tokens.len(), 4);
        for t in &c.tokens {
            let dev = format!("kiln-dev-{}", t.name.trim_start_matches("dev-"));
            assert_eq!(super::super::auth::hash_token(&dev), t.sha256, "{}", t.name);
        }
    }
}

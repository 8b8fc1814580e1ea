//! Client configuration and the one place that decides between HTTP and
//! HTTPS for a registry host.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use super::credentials::CredentialSource;
use super::retry::RetryPolicy;

/// How a [`RegistryClient`](super::RegistryClient) talks to registries.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Hosts (`host[:port]`) reached over plain HTTP, in addition to loopback.
    pub insecure_registries: BTreeSet<String>,
    /// Whether loopback hosts (127.0.0.0/8, `localhost`, `[::1]`) use plain
    /// HTTP, as Docker does. Default `true`.
    pub loopback_insecure: bool,
    /// Per-host credential sources that override discovery.
    pub credentials: BTreeMap<String, CredentialSource>,
    /// The Docker config file to read credentials from; `None` means
    /// `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`.
    pub docker_config: Option<PathBuf>,
    /// Retry policy for 429, 5xx, timeouts and connection resets.
    pub retry: RetryPolicy,
    /// Timeout for establishing a connection.
    pub connect_timeout: Duration,
    /// Timeout for a whole request, body included (not used for blob streams).
    pub request_timeout: Duration,
    /// Longest a streamed request may make no progress: no answer yet after
    /// the request was sent, no body bytes taken by an upload, no bytes of a
    /// blob download. Default 120 s: a registry may take a while to commit a
    /// large blob to object storage after the last byte.
    pub idle_timeout: Duration,
    /// Resolve ECR hosts through the ECR API (`BatchGetImage`) instead of the
    /// distribution API. Default `true`; see `docs/arch-registry.md`.
    pub ecr_via_api: bool,
    /// How long a lookup answer (`HEAD` digest, platform pin) is shared by
    /// later lookups (`registry::lookup`). Default 60 s.
    pub lookup_ttl: Duration,
    /// Most lookups in flight per registry host. Default 8.
    pub lookup_concurrency: usize,
    /// Longest a request waits for a rate-limit pause before failing with
    /// `RegistryError::Throttled`. Default 15 min.
    pub max_throttle_wait: Duration,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            insecure_registries: BTreeSet::new(),
            loopback_insecure: true,
            credentials: BTreeMap::new(),
            docker_config: None,
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(120),
            ecr_via_api: true,
            lookup_ttl: Duration::from_secs(60),
            lookup_concurrency: 8,
            max_throttle_wait: Duration::from_secs(15 * 60),
        }
    }
}

/// URL scheme used for a registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `https://`
    Https,
    /// `http://` (only for insecure or loopback registries)
    Http,
}

impl Scheme {
    /// `http` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Https => "https",
            Scheme::Http => "http",
        }
    }
}

/// Whether `host` (`host[:port]`) is a loopback address or `localhost`.
pub fn is_loopback_host(host: &str) -> bool {
    let bare = if host.starts_with('[') {
        host.split_once(']').map(|(h, _)| &h[1..]).unwrap_or(host)
    } else {
        host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
    };
    if bare == "localhost" {
        return true;
    }
    bare.parse::<std::net::IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

/// The only scheme decision: plain HTTP for configured-insecure hosts and
/// (unless turned off) loopback hosts, HTTPS for everything else.
pub fn scheme_for(host: &str, config: &RegistryConfig) -> Scheme {
    if config.insecure_registries.contains(host)
        || (config.loopback_insecure && is_loopback_host(host))
    {
        Scheme::Http
    } else {
        Scheme::Https
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_plain_http_by_default_and_others_are_not() {
        let c = RegistryConfig::default();
        for h in [
            "127.0.0.1:5000",
            "127.8.9.1",
            "localhost:5000",
            "[::1]:5000",
            "[::1]",
        ] {
            assert_eq!(scheme_for(h, &c), Scheme::Http, "{h}");
        }
        for h in [
            "docker.io",
            "ghcr.io",
            "10.0.0.1:5000",
            "localhost.example.com",
            "128.0.0.1",
        ] {
            assert_eq!(scheme_for(h, &c), Scheme::Https, "{h}");
        }
    }

    #[test]
    fn insecure_list_and_loopback_switch() {
        let mut c = RegistryConfig::default();
        c.insecure_registries.insert("reg.lan:5000".into());
        c.loopback_insecure = false;
        assert_eq!(scheme_for("reg.lan:5000", &c), Scheme::Http);
        assert_eq!(scheme_for("reg.lan", &c), Scheme::Https);
        assert_eq!(scheme_for("127.0.0.1:5000", &c), Scheme::Https);
    }
}

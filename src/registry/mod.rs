//! OCI distribution API client: manifests (HEAD/GET, digest verified
//! locally), platform selection from indexes, blobs, auth (anonymous, basic,
//! bearer, Docker config, credential helpers, ECR), retries, rate-limit
//! pauses per host, and shared (single-flight, short-TTL) lookups.
//!
//! [`RegistryClient`] is cheap to clone (one `Arc`) and safe to share
//! between tasks. Only this module speaks HTTP to registries.

mod auth;
mod blob;
mod challenge;
mod config;
mod credentials;
mod ecr;
mod error;
mod growing;
mod location;
mod lookup;
mod manifest;
mod media;
mod platform;
mod push_request;
mod retry;
mod tags;
mod throttle;
mod transport;
mod upload;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub use blob::BlobStream;
pub use challenge::{Challenge, parse_challenges};
pub use config::{RegistryConfig, Scheme, is_loopback_host, scheme_for};
pub use credentials::{BasicCredentials, CredentialError, CredentialSource, DockerConfig};
pub use ecr::{ECR_TIMEOUTS, EcrHost, EcrTimeouts, parse_ecr_host, sdk_config as ecr_sdk_config};
pub use error::{ErrorCode, RegistryError, RegistryErrorEntry, parse_error_envelope};
pub use growing::{GROWING_CHUNK, GrowingBlob, Growth};
pub use lookup::{LookupCounts, LookupScope, OnWait, RegistryStats};
pub use manifest::{Manifest, ManifestHead, ResolvedManifest};
pub use media::{
    ACCEPTED_MANIFEST_TYPES, DOCKER_LIST, DOCKER_MANIFEST, ManifestKind, OCI_INDEX, OCI_MANIFEST,
    manifest_kind,
};
pub use platform::{IndexDocument, IndexEntry, Platform, PlatformParseError, select_platform};
pub use retry::{RetryPolicy, parse_retry_after};
pub use throttle::{ThrottleStats, ThrottleWait};
pub use upload::{MONOLITHIC_MAX, UploadOutcome};

use transport::Inner;

/// A registry client. Clones share connections, token caches and the
/// request counter.
#[derive(Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("requests", &self.requests_made())
            .finish_non_exhaustive()
    }
}

impl RegistryClient {
    /// Builds a client from `config`.
    pub fn new(config: RegistryConfig) -> Result<Self, RegistryError> {
        let builder = || {
            reqwest::Client::builder()
                .connect_timeout(config.connect_timeout)
                .redirect(location::redirect_policy(&config))
                .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
        };
        let build = |b: reqwest::ClientBuilder| {
            b.build()
                .map_err(|source| RegistryError::ClientBuild { source })
        };
        let http = build(builder().read_timeout(config.idle_timeout))?;
        let push_http = build(builder())?;
        Ok(RegistryClient {
            inner: Arc::new(Inner {
                http,
                push_http,
                config,
                auth: auth::AuthState::default(),
                requests: AtomicU64::new(0),
                lookups: lookup::Lookups::default(),
                throttle: throttle::Throttle::default(),
            }),
        })
    }

    /// A client with the default configuration.
    pub fn with_defaults() -> Result<Self, RegistryError> {
        Self::new(RegistryConfig::default())
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &RegistryConfig {
        &self.inner.config
    }

    /// The credentials this client uses for `registry` (`host[:port]`), from
    /// the same sources as its requests: configuration, the Docker config
    /// (`auths`, `credHelpers`, `credsStore`) or an ECR token. `None` when
    /// the registry is anonymous.
    pub async fn credentials_for(
        &self,
        registry: &str,
    ) -> Result<Option<BasicCredentials>, RegistryError> {
        self.inner
            .auth
            .basic_credentials(registry, &self.inner.config, &self.inner.requests)
            .await
    }

    /// Requests made so far by this client and its clones: HTTP attempts,
    /// token fetches and ECR API calls.
    pub fn requests_made(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }
}

//! Answering a 401: picks the challenge (bearer over basic), finds
//! credentials for the host, fetches bearer tokens from the realm, and caches
//! the resulting `Authorization` values until they expire.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use reqwest::header::AUTHORIZATION;
use serde::Deserialize;
use tokio::sync::{Mutex, OnceCell};

use super::challenge::Challenge;
use super::config::RegistryConfig;
use super::credentials::{
    BasicCredentials, CredentialSource, DockerConfig, default_docker_config_path,
    load_docker_config,
};
use super::ecr::{Ecr, EcrHost, parse_ecr_host};
use super::error::{RegistryError, parse_error_envelope};

/// Credentials plus whether asking again could give different ones.
pub(crate) struct Found {
    creds: BasicCredentials,
    /// True when just fetched or static: a refresh would not help.
    fresh: bool,
    expires_at: Option<SystemTime>,
}

/// An `Authorization` value ready to send.
pub(crate) struct Authorization {
    pub(crate) header: String,
    /// True when refreshing could not produce a different value.
    pub(crate) fresh: bool,
}

#[derive(Clone)]
struct Cached {
    header: String,
    expires_at: Option<SystemTime>,
}

/// Per-client auth state.
#[derive(Default)]
pub(crate) struct AuthState {
    /// `Authorization` values by (registry, scope); basic auth uses scope "".
    cache: Mutex<HashMap<(String, String), Cached>>,
    docker_config: OnceCell<DockerConfig>,
    pub(crate) ecr: Ecr,
}

#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl AuthState {
    /// A still-valid cached `Authorization` for this registry and scope.
    pub(crate) async fn cached(&self, registry: &str, scope: &str) -> Option<String> {
        let cache = self.cache.lock().await;
        let now = SystemTime::now() + Duration::from_secs(10);
        [scope, ""]
            .iter()
            .filter_map(|s| cache.get(&(registry.to_string(), s.to_string())))
            .find(|c| c.expires_at.is_none_or(|t| t > now))
            .map(|c| c.header.clone())
    }

    /// The credentials kiln would use for `registry` (configured, Docker
    /// config or ECR token), for handing to another client such as dockerd.
    pub(crate) async fn basic_credentials(
        &self,
        registry: &str,
        config: &RegistryConfig,
        counter: &AtomicU64,
    ) -> Result<Option<BasicCredentials>, RegistryError> {
        let found = self.credentials(registry, config, counter, false).await?;
        Ok(found.map(|f| f.creds))
    }

    /// [`Self::lookup`], with the secret registered for log redaction.
    async fn credentials(
        &self,
        registry: &str,
        config: &RegistryConfig,
        counter: &AtomicU64,
        force: bool,
    ) -> Result<Option<Found>, RegistryError> {
        let found = self.lookup(registry, config, counter, force).await?;
        if let Some(f) = &found {
            crate::redact::register(&f.creds.password);
        }
        Ok(found)
    }

    async fn lookup(
        &self,
        registry: &str,
        config: &RegistryConfig,
        counter: &AtomicU64,
        force: bool,
    ) -> Result<Option<Found>, RegistryError> {
        let wrap = |source| RegistryError::Credentials {
            registry: registry.to_string(),
            source,
        };
        let ecr_host = match config.credentials.get(registry) {
            Some(CredentialSource::Anonymous) => return Ok(None),
            Some(CredentialSource::Basic(c)) => {
                return Ok(Some(Found {
                    creds: c.clone(),
                    fresh: true,
                    expires_at: None,
                }));
            }
            Some(CredentialSource::Ecr { region, account }) => Some(EcrHost {
                account: account.clone(),
                region: region.clone(),
            }),
            None => parse_ecr_host(registry),
        };
        if let Some(host) = ecr_host {
            let (token, fresh) = self.ecr.credentials(&host, force).await.map_err(wrap)?;
            if fresh {
                counter.fetch_add(1, Ordering::Relaxed); // one GetAuthorizationToken
            }
            return Ok(Some(Found {
                creds: token.credentials,
                fresh,
                expires_at: token.expires_at,
            }));
        }
        let docker = self
            .docker_config
            .get_or_try_init(|| async {
                match config
                    .docker_config
                    .clone()
                    .or_else(default_docker_config_path)
                {
                    Some(path) => load_docker_config(&path),
                    None => Ok(DockerConfig::default()),
                }
            })
            .await
            .map_err(wrap)?;
        Ok(docker
            .lookup(registry)
            .await
            .map_err(wrap)?
            .map(|creds| Found {
                creds,
                fresh: true,
                expires_at: None,
            }))
    }

    /// Produces an `Authorization` value answering `challenges`, or `None`
    /// when the registry wants basic auth and no credentials are known.
    /// `force` bypasses cached tokens (used for the single refresh on 401).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn authorize(
        &self,
        http: &reqwest::Client,
        counter: &AtomicU64,
        config: &RegistryConfig,
        registry: &str,
        scope: &str,
        challenges: &[Challenge],
        force: bool,
    ) -> Result<Option<Authorization>, RegistryError> {
        let bearer = challenges.iter().find(|c| c.scheme == "bearer");
        let found = self.credentials(registry, config, counter, force).await?;
        let Some(bearer) = bearer.filter(|b| b.param("realm").is_some()) else {
            // Basic (or unknown scheme): send the credentials directly.
            let Some(found) = found else { return Ok(None) };
            let header = found.creds.header_value();
            self.remember(registry, "", &header, found.expires_at).await;
            return Ok(Some(Authorization {
                header,
                fresh: found.fresh,
            }));
        };
        let realm = bearer.param("realm").unwrap_or_default().to_string();
        let scope = bearer.param("scope").unwrap_or(scope);
        let mut query = vec![("scope", scope)];
        if let Some(service) = bearer.param("service") {
            query.push(("service", service));
        }
        let url = reqwest::Url::parse_with_params(&realm, &query).map_err(|_| {
            RegistryError::BadRealm {
                registry: registry.to_string(),
                realm: realm.clone(),
            }
        })?;
        // Credentials go to the realm: plain HTTP only where the registry
        // rules allow it (loopback or configured insecure), like any request.
        let realm_host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            _ => String::new(),
        };
        let plain_ok =
            super::config::scheme_for(&realm_host, config) == super::config::Scheme::Http;
        if url.scheme() != "https" && !(url.scheme() == "http" && plain_ok) {
            return Err(RegistryError::BadRealm {
                registry: registry.to_string(),
                realm: format!(
                    "{realm} (credentials are only sent over https to a non-loopback realm)"
                ),
            });
        }
        let mut req = http.get(url);
        if let Some(f) = &found {
            req = req.header(AUTHORIZATION, f.creds.header_value());
        }
        counter.fetch_add(1, Ordering::Relaxed);
        let resp = req
            .send()
            .await
            .map_err(|source| RegistryError::Transport {
                what: "token",
                reference: realm.clone(),
                attempts: 1,
                source,
            })?;
        let status = resp.status();
        let body = super::transport::read_limited(resp, super::transport::MAX_BUFFERED_BODY)
            .await
            .map_err(|source| RegistryError::Transport {
                what: "token",
                reference: realm.clone(),
                attempts: 1,
                source,
            })?
            .ok_or_else(|| RegistryError::TooLarge {
                what: "token",
                reference: realm.clone(),
                limit: super::transport::MAX_BUFFERED_BODY,
            })?;
        if !status.is_success() {
            let first = parse_error_envelope(&body).into_iter().next();
            return Err(RegistryError::Status {
                what: "token",
                reference: realm,
                status: status.as_u16(),
                code: first.as_ref().map(|e| e.code.clone()),
                message: first.map(|e| e.message).unwrap_or_default(),
                attempts: 1,
                retry_after: None,
            });
        }
        let answer: TokenAnswer =
            serde_json::from_slice(&body).map_err(|source| RegistryError::TokenParse {
                realm: realm.clone(),
                source,
            })?;
        let token = answer.token.or(answer.access_token).unwrap_or_default();
        crate::redact::register(&token);
        let header = format!("Bearer {token}");
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(60).max(1));
        let expires_at = Some(SystemTime::now() + lifetime);
        self.remember(registry, scope, &header, expires_at).await;
        Ok(Some(Authorization {
            header,
            fresh: found.is_none_or(|f| f.fresh),
        }))
    }

    async fn remember(
        &self,
        registry: &str,
        scope: &str,
        header: &str,
        expires_at: Option<SystemTime>,
    ) {
        // A token that is already expired is used once and never cached.
        if expires_at.is_some_and(|t| t <= SystemTime::now()) {
            return;
        }
        self.cache.lock().await.insert(
            (registry.to_string(), scope.to_string()),
            Cached {
                header: header.to_string(),
                expires_at,
            },
        );
    }
}

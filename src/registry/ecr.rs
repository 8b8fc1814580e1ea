//! Amazon ECR: recognising `<account>.dkr.ecr.<region>.amazonaws.com`, getting
//! basic-auth credentials from `GetAuthorizationToken`, and reading manifests
//! through `BatchGetImage`.
//!
//! The SDK uses the default credential chain and honours
//! `AWS_ENDPOINT_URL_ECR` itself, which is how tests point it at moto.
//! Manifests of ECR hosts are read through the ECR API rather than the
//! distribution endpoint: the API needs only IAM credentials (no token dance),
//! returns the manifest bytes and ECR's own `imageDigest` in one call, and it
//! is the surface that moto implements (moto has no `/v2/` endpoint).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use aws_sdk_ecr::types::ImageIdentifier;
use base64::Engine as _;
use tokio::sync::Mutex;

use super::credentials::{BasicCredentials, CredentialError};
use super::error::RegistryError;
use super::media::ACCEPTED_MANIFEST_TYPES;
use crate::digest::Digest;
use crate::reference::ImageReference;

/// The account and region encoded in an ECR registry host.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EcrHost {
    /// The 12-digit account id (ECR's `registryId`).
    pub account: String,
    /// The AWS region.
    pub region: String,
}

/// Parses `<account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]`.
pub fn parse_ecr_host(host: &str) -> Option<EcrHost> {
    let host = host.strip_suffix(".cn").unwrap_or(host);
    let rest = host.strip_suffix(".amazonaws.com")?;
    let (account, rest) = rest.split_once('.')?;
    let region = rest
        .strip_prefix("dkr.ecr.")
        .or_else(|| rest.strip_prefix("dkr.ecr-fips."))?;
    let account_ok = account.len() == 12 && account.bytes().all(|c| c.is_ascii_digit());
    let region_ok = !region.is_empty()
        && !region.contains('.')
        && region
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-');
    (account_ok && region_ok).then(|| EcrHost {
        account: account.to_string(),
        region: region.to_string(),
    })
}

/// A credential with its expiry; a past expiry means "use once".
#[derive(Debug, Clone)]
pub(crate) struct EcrToken {
    pub(crate) credentials: BasicCredentials,
    pub(crate) expires_at: Option<SystemTime>,
}

impl EcrToken {
    fn is_fresh(&self) -> bool {
        self.expires_at
            .is_some_and(|t| t > SystemTime::now() + Duration::from_secs(60))
    }
}

/// SDK clients per region and cached authorization tokens per host.
#[derive(Default)]
pub(crate) struct Ecr {
    clients: Mutex<HashMap<String, aws_sdk_ecr::Client>>,
    tokens: Mutex<HashMap<EcrHost, EcrToken>>,
}

/// A manifest read through the ECR API.
pub(crate) struct EcrManifest {
    pub(crate) bytes: Vec<u8>,
    pub(crate) media_type: Option<String>,
    pub(crate) reported_digest: Option<Digest>,
}

/// Bounds on every ECR API call (the SDK has none by default, so a
/// `PutImage` that never answers would hang a run): connect, first byte,
/// one attempt, and the whole operation with its retries.
pub const ECR_TIMEOUTS: EcrTimeouts = EcrTimeouts {
    connect: Duration::from_secs(10),
    read: Duration::from_secs(60),
    attempt: Duration::from_secs(120),
    operation: Duration::from_secs(300),
};

/// See [`ECR_TIMEOUTS`].
#[derive(Debug, Clone, Copy)]
pub struct EcrTimeouts {
    /// Establishing a connection.
    pub connect: Duration,
    /// From the request sent to the first byte of the answer.
    pub read: Duration,
    /// One attempt (a layer part is at most 8 MiB).
    pub attempt: Duration,
    /// The whole operation, retries included.
    pub operation: Duration,
}

/// The SDK configuration for `region`: the default credential and endpoint
/// chain (`AWS_ENDPOINT_URL_ECR` included) plus [`ECR_TIMEOUTS`], or
/// `KILN_ECR_TIMEOUT_SECS` (one value for read, attempt and operation) when
/// set, for tests and slow links.
pub async fn sdk_config(region: &str) -> aws_config::SdkConfig {
    let t = ECR_TIMEOUTS;
    let (read, attempt, operation) = match std::env::var("KILN_ECR_TIMEOUT_SECS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        Some(s) => (
            Duration::from_secs(s),
            Duration::from_secs(s),
            Duration::from_secs(s),
        ),
        None => (t.read, t.attempt, t.operation),
    };
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(t.connect)
        .read_timeout(read)
        .operation_attempt_timeout(attempt)
        .operation_timeout(operation)
        .build();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_string()))
        .timeout_config(timeouts)
        .load()
        .await
}

impl Ecr {
    async fn client(&self, region: &str) -> aws_sdk_ecr::Client {
        let mut clients = self.clients.lock().await;
        if let Some(c) = clients.get(region) {
            return c.clone();
        }
        let c = aws_sdk_ecr::Client::new(&sdk_config(region).await);
        clients.insert(region.to_string(), c.clone());
        c
    }

    /// Basic credentials for `host`: the cached token while it is fresh,
    /// else a new one from `GetAuthorizationToken`. `force` skips the cache.
    /// Returns whether the token was freshly fetched.
    pub(crate) async fn credentials(
        &self,
        host: &EcrHost,
        force: bool,
    ) -> Result<(EcrToken, bool), CredentialError> {
        if !force && let Some(t) = self.tokens.lock().await.get(host).filter(|t| t.is_fresh()) {
            return Ok((t.clone(), false));
        }
        let token = self.fetch_token(host).await?;
        self.tokens.lock().await.insert(host.clone(), token.clone());
        Ok((token, true))
    }

    async fn fetch_token(&self, host: &EcrHost) -> Result<EcrToken, CredentialError> {
        let err = |e: Box<dyn std::error::Error + Send + Sync>| CredentialError::Ecr {
            region: host.region.clone(),
            source: e,
        };
        let out = self
            .client(&host.region)
            .await
            .get_authorization_token()
            .send()
            .await
            .map_err(|e| err(Box::new(e)))?;
        let data = out
            .authorization_data()
            .first()
            .ok_or_else(|| err("no authorizationData in the answer".into()))?;
        let raw = data
            .authorization_token()
            .ok_or_else(|| err("no authorizationToken in the answer".into()))?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(raw)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| err("authorizationToken is not base64 text".into()))?;
        let (user, pass) = decoded
            .split_once(':')
            .ok_or_else(|| err("authorizationToken is not `user:password`".into()))?;
        let expires_at = data
            .expires_at()
            .and_then(|t| SystemTime::try_from(*t).ok());
        Ok(EcrToken {
            credentials: BasicCredentials {
                username: user.to_string(),
                password: pass.to_string(),
            },
            expires_at,
        })
    }

    /// Reads one manifest by tag or digest with `BatchGetImage`.
    pub(crate) async fn batch_get_manifest(
        &self,
        host: &EcrHost,
        reference: &ImageReference,
    ) -> Result<EcrManifest, RegistryError> {
        let id = match &reference.digest {
            Some(d) => ImageIdentifier::builder().image_digest(d.to_string()),
            None => {
                ImageIdentifier::builder().image_tag(reference.tag_or_latest().unwrap_or("latest"))
            }
        }
        .build();
        let mut req = self
            .client(&host.region)
            .await
            .batch_get_image()
            .registry_id(&host.account)
            .repository_name(&reference.repository)
            .image_ids(id);
        for t in ACCEPTED_MANIFEST_TYPES {
            req = req.accepted_media_types(*t);
        }
        let out = req.send().await.map_err(|e| RegistryError::Ecr {
            operation: "BatchGetImage",
            reference: reference.to_string(),
            source: Box::new(e),
        })?;
        if let Some(image) = out.images().first() {
            let reported_digest = match image.image_id().and_then(|i| i.image_digest()) {
                Some(d) => Some(d.parse().map_err(|source| RegistryError::BadDigest {
                    reference: reference.to_string(),
                    source,
                })?),
                None => None,
            };
            return Ok(EcrManifest {
                bytes: image
                    .image_manifest()
                    .unwrap_or_default()
                    .as_bytes()
                    .to_vec(),
                media_type: image.image_manifest_media_type().map(str::to_string),
                reported_digest,
            });
        }
        let failure = out.failures().first();
        Err(RegistryError::EcrImage {
            reference: reference.to_string(),
            code: failure
                .and_then(|f| f.failure_code().cloned())
                .unwrap_or(aws_sdk_ecr::types::ImageFailureCode::ImageNotFound),
            reason: failure
                .and_then(|f| f.failure_reason())
                .unwrap_or("no image and no failure in the answer")
                .to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_ecr_hosts() {
        assert_eq!(
            parse_ecr_host("123456789012.dkr.ecr.eu-west-1.amazonaws.com"),
            Some(EcrHost {
                account: "123456789012".into(),
                region: "eu-west-1".into()
            })
        );
        assert_eq!(
            parse_ecr_host("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn")
                .unwrap()
                .region,
            "cn-north-1"
        );
        assert!(parse_ecr_host("123456789012.dkr.ecr-fips.us-east-1.amazonaws.com").is_some());
        for bad in [
            "docker.io",
            "12345.dkr.ecr.us-east-1.amazonaws.com",
            "123456789012.dkr.ecr.amazonaws.com",
            "123456789012.dkr.ecr.us-east-1.evil.com",
            "123456789012.s3.us-east-1.amazonaws.com",
        ] {
            assert_eq!(parse_ecr_host(bad), None, "{bad}");
        }
    }

    #[test]
    fn past_or_missing_expiry_is_not_fresh() {
        let creds = BasicCredentials {
            username: "AWS".into(),
            password: "x".into(),
        };
        let past = EcrToken {
            credentials: creds.clone(),
            expires_at: Some(SystemTime::now() - Duration::from_secs(5)),
        };
        let none = EcrToken {
            credentials: creds.clone(),
            expires_at: None,
        };
        let future = EcrToken {
            credentials: creds,
            expires_at: Some(SystemTime::now() + Duration::from_secs(3600)),
        };
        assert!(!past.is_fresh());
        assert!(!none.is_fresh());
        assert!(future.is_fresh());
    }
}

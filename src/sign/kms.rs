//! Signing with an AWS KMS asymmetric key (`signing: {key: awskms:///…}` in
//! the operator config): `awskms:///alias/NAME`, `awskms:///KEY-ID` or
//! `awskms:///arn:aws:kms:REGION:ACCOUNT:key/ID` (the ARN's region wins over
//! the default chain's). The key must be `ECC_NIST_P256` with usage
//! `SIGN_VERIFY` and enabled; `DescribeKey` checks that and `GetPublicKey`
//! fetches the public half once, before anything is pushed. The private key
//! never leaves KMS.
//!
//! `Sign` gets messages of at most 4096 bytes as `RAW` and longer ones as
//! their SHA-256 `DIGEST` (KMS's limit). Every signature is verified with
//! the public key before it is used; an endpoint that signs a `DIGEST` as
//! raw bytes (moto 5.2 does) fails that check, and only then is the whole
//! message sent `RAW` (which AWS itself refuses above 4096 bytes).
//! `AWS_ENDPOINT_URL_KMS` redirects the SDK (tests reach moto that way).

use std::time::Duration;

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeySpec, KeyState, KeyUsageType, MessageType, SigningAlgorithmSpec};
use p256::ecdsa::VerifyingKey;
use p256::pkcs8::DecodePublicKey as _;
use sha2::Digest as _;

/// The URI scheme of a KMS key in the operator config.
pub const SCHEME: &str = "awskms://";
/// Longest message KMS signs as `RAW`.
const MAX_RAW: usize = 4096;

/// A KMS signing key, checked and with its public key fetched.
pub struct KmsKey {
    /// The URI as configured.
    pub uri: String,
    key_id: String,
    client: aws_sdk_kms::Client,
    public: VerifyingKey,
}

impl std::fmt::Debug for KmsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsKey").field("uri", &self.uri).finish()
    }
}

/// Why a KMS key cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KmsError {
    /// The URI is not `awskms:///ID`.
    #[error(
        "`{uri}` is not a KMS key URI: {reason} (write awskms:///alias/NAME, awskms:///KEY-ID or awskms:///arn:aws:kms:…)"
    )]
    BadUri {
        /// The URI.
        uri: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// KMS has no such key or alias.
    #[error("KMS key `{key}` does not exist")]
    NotFound {
        /// The key id, alias or ARN.
        key: String,
    },
    /// A key of another spec or usage.
    #[error(
        "KMS key `{key}` is a {spec} key for {usage}; kiln signs with an ECC_NIST_P256 key whose usage is SIGN_VERIFY (ECDSA_SHA_256)"
    )]
    WrongKey {
        /// The key.
        key: String,
        /// Its key spec.
        spec: String,
        /// Its key usage.
        usage: String,
    },
    /// The key is not enabled.
    #[error("KMS key `{key}` is {state}, not Enabled")]
    NotEnabled {
        /// The key.
        key: String,
        /// Its state.
        state: String,
    },
    /// A KMS call failed.
    #[error("KMS {operation} of `{key}` failed")]
    Call {
        /// The key.
        key: String,
        /// The operation.
        operation: &'static str,
        /// The service's error.
        #[source]
        source: Box<aws_sdk_kms::Error>,
    },
    /// `GetPublicKey` returned no usable P-256 key.
    #[error("KMS key `{key}`: its public key is not a P-256 SubjectPublicKeyInfo")]
    BadPublicKey {
        /// The key.
        key: String,
    },
    /// A KMS key was asked to sign outside a multi-threaded tokio runtime.
    #[error("KMS key `{key}` cannot sign here: the call needs kiln's tokio runtime")]
    NoRuntime {
        /// The key.
        key: String,
    },
    /// KMS returned a signature its own public key does not verify.
    #[error("KMS key `{key}` returned a signature its public key does not verify")]
    BadSignature {
        /// The key.
        key: String,
    },
}

/// The key id (alias, id or ARN) in `uri`, and the ARN's region.
fn parse_uri(uri: &str) -> Result<(String, Option<String>), KmsError> {
    let bad = |reason| KmsError::BadUri {
        uri: uri.to_string(),
        reason,
    };
    let rest = uri
        .strip_prefix(SCHEME)
        .ok_or(bad("it does not start with awskms://"))?;
    let id = rest.strip_prefix('/').ok_or(bad(
        "kiln takes no endpoint in the URI (set AWS_ENDPOINT_URL_KMS instead)",
    ))?;
    if id.is_empty() || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("the key id is empty or has whitespace"));
    }
    let region = id
        .strip_prefix("arn:")
        .and_then(|arn| arn.split(':').nth(2))
        .filter(|r| !r.is_empty())
        .map(str::to_string);
    if id.starts_with("arn:") && region.is_none() {
        return Err(bad("the ARN names no region"));
    }
    Ok((id.to_string(), region))
}

impl KmsKey {
    /// Checks the key named by `uri` and fetches its public key.
    pub async fn connect(uri: &str) -> Result<Self, KmsError> {
        let (key_id, region) = parse_uri(uri)?;
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(10))
            .operation_attempt_timeout(Duration::from_secs(30))
            .operation_timeout(Duration::from_secs(90))
            .build();
        let mut loader =
            aws_config::defaults(aws_config::BehaviorVersion::latest()).timeout_config(timeouts);
        if let Some(r) = region {
            loader = loader.region(aws_config::Region::new(r));
        }
        let client = aws_sdk_kms::Client::new(&loader.load().await);
        let call = |operation| {
            let key = key_id.clone();
            move |source: aws_sdk_kms::Error| KmsError::Call {
                key,
                operation,
                source: Box::new(source),
            }
        };
        let described = client.describe_key().key_id(&key_id).send().await;
        let described = match described {
            Ok(d) => d,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_not_found_exception()) =>
            {
                return Err(KmsError::NotFound { key: key_id });
            }
            Err(e) => return Err(call("DescribeKey")(e.into())),
        };
        let meta = described.key_metadata();
        let spec = meta.and_then(|m| m.key_spec());
        let usage = meta.and_then(|m| m.key_usage());
        if spec != Some(&KeySpec::EccNistP256) || usage != Some(&KeyUsageType::SignVerify) {
            let name = |s: Option<&str>| s.unwrap_or("unknown").to_string();
            return Err(KmsError::WrongKey {
                key: key_id,
                spec: name(spec.map(KeySpec::as_str)),
                usage: name(usage.map(KeyUsageType::as_str)),
            });
        }
        if let Some(state) = meta.and_then(|m| m.key_state())
            && state != &KeyState::Enabled
        {
            return Err(KmsError::NotEnabled {
                key: key_id,
                state: state.as_str().to_string(),
            });
        }
        let public = client
            .get_public_key()
            .key_id(&key_id)
            .send()
            .await
            .map_err(|e| call("GetPublicKey")(e.into()))?;
        let public = public
            .public_key()
            .and_then(|b| VerifyingKey::from_public_key_der(b.as_ref()).ok())
            .ok_or_else(|| KmsError::BadPublicKey {
                key: key_id.clone(),
            })?;
        Ok(Self {
            uri: uri.to_string(),
            key_id,
            client,
            public,
        })
    }

    /// The public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.public
    }

    /// ECDSA-P256-SHA256 signature of `message` (ASN.1 DER), verified with
    /// the public key before it is returned.
    pub async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KmsError> {
        if message.len() > MAX_RAW {
            let digest = sha2::Sha256::digest(message);
            let sig = self.sign_as(&digest, MessageType::Digest).await?;
            if self.verifies(message, &sig) {
                return Ok(sig);
            }
        }
        let sig = self.sign_as(message, MessageType::Raw).await?;
        if self.verifies(message, &sig) {
            return Ok(sig);
        }
        Err(KmsError::BadSignature {
            key: self.key_id.clone(),
        })
    }

    fn verifies(&self, message: &[u8], der: &[u8]) -> bool {
        use p256::ecdsa::signature::Verifier as _;
        p256::ecdsa::Signature::from_der(der)
            .is_ok_and(|sig| self.public.verify(message, &sig).is_ok())
    }

    async fn sign_as(&self, message: &[u8], kind: MessageType) -> Result<Vec<u8>, KmsError> {
        let out = self
            .client
            .sign()
            .key_id(&self.key_id)
            .message(Blob::new(message))
            .message_type(kind)
            .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
            .send()
            .await
            .map_err(|e| KmsError::Call {
                key: self.key_id.clone(),
                operation: "Sign",
                source: Box::new(e.into()),
            })?;
        Ok(out
            .signature()
            .map(|b| b.as_ref().to_vec())
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        assert_eq!(
            parse_uri("awskms:///alias/kiln").unwrap(),
            ("alias/kiln".into(), None)
        );
        let arn = "awskms:///arn:aws:kms:eu-west-1:123456789012:key/abcd";
        assert_eq!(parse_uri(arn).unwrap().1.as_deref(), Some("eu-west-1"));
        for bad in [
            "awskms://host/alias/x",
            "awskms:///",
            "kms:///alias/x",
            "awskms:///arn:aws:kms::1:key/x",
        ] {
            assert!(
                matches!(parse_uri(bad), Err(KmsError::BadUri { .. })),
                "{bad}"
            );
        }
    }
}

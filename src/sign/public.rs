//! kiln's public key, for checking signatures without the private key
//! (`kiln records --verify --key kiln.pub`): a PKIX `PUBLIC KEY` PEM of an
//! ECDSA P-256 key, and its fingerprint, the id that names the signer in the
//! record store.

use std::path::{Path, PathBuf};

use p256::pkcs8::{DecodePublicKey as _, EncodePublicKey as _};

use super::SigningKey;
use crate::digest::Digest;

/// An ECDSA P-256 verifying key and its fingerprint.
#[derive(Debug, Clone)]
pub struct PublicKey {
    key: p256::ecdsa::VerifyingKey,
    id: String,
    source: String,
}

/// Two public keys are equal when their keys are, wherever they came from.
impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for PublicKey {}

/// Why a public key file cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublicKeyError {
    /// The file could not be read.
    #[error("cannot read public key file `{path}`")]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// Not a PKIX PEM ECDSA P-256 public key.
    #[error(
        "public key file `{path}` is not a PEM `PUBLIC KEY` of an ECDSA P-256 key (what `kiln key generate` writes as kiln.pub)"
    )]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The decoder's error.
        #[source]
        source: p256::pkcs8::spki::Error,
    },
}

impl PublicKey {
    /// Reads a PKIX `PUBLIC KEY` PEM file.
    pub fn load(path: &Path) -> Result<Self, PublicKeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PublicKeyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let key = p256::ecdsa::VerifyingKey::from_public_key_pem(&text).map_err(|source| {
            PublicKeyError::Invalid {
                path: path.to_path_buf(),
                source,
            }
        })?;
        Ok(Self::new(key, path.display().to_string()))
    }

    /// The public half of `key`.
    pub fn of(signing: &SigningKey) -> Self {
        let key = p256::ecdsa::VerifyingKey::from_public_key_pem(&signing.public_pem())
            .expect("kiln's own public PEM decodes");
        let source = format!("the public key of {}", signing.location().display());
        Self::new(key, source)
    }

    fn new(key: p256::ecdsa::VerifyingKey, source: String) -> Self {
        let der = key
            .to_public_key_der()
            .expect("a P-256 public key encodes as PKIX");
        let id = Digest::of(der.as_bytes()).to_string();
        Self { key, id, source }
    }

    /// Where the key came from: its file, or the signing key it is the
    /// public half of (for messages).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The fingerprint: `sha256:` of the PKIX DER encoding (what
    /// `openssl pkey -pubin -outform DER | sha256sum` prints).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether `der` is a valid ECDSA-P256-SHA256 signature of `message`.
    pub fn verifies(&self, message: &[u8], der: &[u8]) -> bool {
        use p256::ecdsa::signature::Verifier as _;
        p256::ecdsa::Signature::from_der(der)
            .is_ok_and(|sig| self.key.verify(message, &sig).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_pub_file_verifies_what_the_key_signs_and_ids_match() {
        let dir = tempfile::tempdir().unwrap();
        let (k, p) = SigningKey::generate(dir.path()).unwrap();
        let key = SigningKey::load(&k).unwrap();
        let public = PublicKey::load(&p).unwrap();
        assert_eq!(public, PublicKey::of(&key));
        assert!(public.id().starts_with("sha256:"));
        let sig = key.sign(b"m").await.unwrap();
        assert!(public.verifies(b"m", &sig));
        assert!(!public.verifies(b"n", &sig));
        let e = PublicKey::load(&k).unwrap_err();
        assert!(e.to_string().contains("kiln.key"), "{e}");
    }
}

//! Signed chain entries: with the operator's signing key, the hash of every
//! record and event appended is signed (ECDSA P-256) and the signature stored
//! beside it, keyed by that hash, in the append-only `signatures` table. With
//! a public key, every entry read or verified must carry a valid signature by
//! that key. Without one, entries are unsigned and nothing is checked (the
//! chain alone is tamper-evident, not tamper-proof).

use std::sync::Arc;

use base64::Engine as _;

use super::verify::Problem;
use crate::digest::Digest;
use crate::sign::kms::KmsError;
use crate::sign::{PublicKey, SigningKey};

/// What is signed for an entry: a fixed prefix (so a record signature can
/// never pass for an image signature made with the same key) and the
/// entry's hash text.
pub fn message(hash: &Digest) -> Vec<u8> {
    format!("kiln chain entry v1\n{hash}").into_bytes()
}

/// The keys a store signs and checks entries with.
#[derive(Debug, Clone, Default)]
pub struct ChainKeys {
    signer: Option<Arc<SigningKey>>,
    verifier: Option<PublicKey>,
}

/// A stored signature row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSignature {
    /// Fingerprint of the key that signed ([`PublicKey::id`]).
    pub key_id: String,
    /// Base64 ASN.1 DER signature of [`message`].
    pub signature: String,
}

impl StoredSignature {
    /// The row for signature `der` made by `key`.
    fn new(key: &SigningKey, der: &[u8]) -> Self {
        StoredSignature {
            key_id: PublicKey::of(key).id().to_string(),
            signature: base64::engine::general_purpose::STANDARD.encode(der),
        }
    }
}

impl ChainKeys {
    /// Signs new entries with `key` and checks every entry with its public half.
    pub fn signing(key: Arc<SigningKey>) -> Self {
        ChainKeys {
            verifier: Some(PublicKey::of(&key)),
            signer: Some(key),
        }
    }

    /// Checks every entry with `key`; signs nothing.
    pub fn verifying(key: PublicKey) -> Self {
        ChainKeys {
            signer: None,
            verifier: Some(key),
        }
    }

    /// The signing key, when entries are signed.
    pub fn signer(&self) -> Option<&Arc<SigningKey>> {
        self.signer.as_ref()
    }

    /// Whether new entries are signed.
    pub fn signs(&self) -> bool {
        self.signer.is_some()
    }

    /// The key entries are checked with, if any.
    pub fn verifier(&self) -> Option<&PublicKey> {
        self.verifier.as_ref()
    }

    /// The signature row for a new entry with `hash`, when signing.
    pub fn sign(&self, hash: &Digest) -> Result<Option<StoredSignature>, KmsError> {
        let Some(key) = self.signer.as_ref() else {
            return Ok(None);
        };
        let der = key.sign_blocking(&message(hash))?;
        Ok(Some(StoredSignature::new(key, &der)))
    }

    /// [`ChainKeys::sign`] for async callers: a KMS key is awaited, not
    /// blocked on.
    pub async fn sign_async(&self, hash: &Digest) -> Result<Option<StoredSignature>, KmsError> {
        let Some(key) = self.signer.as_ref() else {
            return Ok(None);
        };
        let der = key.sign(&message(hash)).await?;
        Ok(Some(StoredSignature::new(key, &der)))
    }

    /// Checks the signature stored for `hash` (`None`: no row). Without a
    /// verifier every entry passes.
    pub fn check(&self, hash: &Digest, stored: Option<&StoredSignature>) -> Result<(), Problem> {
        let Some(key) = &self.verifier else {
            return Ok(());
        };
        let Some(s) = stored else {
            return Err(Problem::Unsigned {
                key_id: key.id().to_string(),
            });
        };
        if s.key_id != key.id() {
            return Err(Problem::OtherKey {
                found: s.key_id.clone(),
                expected: key.id().to_string(),
            });
        }
        let der = base64::engine::general_purpose::STANDARD
            .decode(&s.signature)
            .unwrap_or_default();
        if !key.verifies(&message(hash), &der) {
            return Err(Problem::BadSignature {
                key_id: s.key_id.clone(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_for_their_hash_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let (k, _) = SigningKey::generate(dir.path()).unwrap();
        let keys = ChainKeys::signing(Arc::new(SigningKey::load(&k).unwrap()));
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        let sig = keys.sign(&a).unwrap().unwrap();
        assert_eq!(keys.check(&a, Some(&sig)), Ok(()));
        assert!(matches!(
            keys.check(&b, Some(&sig)),
            Err(Problem::BadSignature { .. })
        ));
        assert!(matches!(
            keys.check(&a, None),
            Err(Problem::Unsigned { .. })
        ));
        let other = tempfile::tempdir().unwrap();
        let (k2, _) = SigningKey::generate(other.path()).unwrap();
        let keys2 = ChainKeys::signing(Arc::new(SigningKey::load(&k2).unwrap()));
        assert!(matches!(
            keys2.check(&a, Some(&sig)),
            Err(Problem::OtherKey { .. })
        ));
        assert_eq!(ChainKeys::default().check(&a, None), Ok(()));
        assert!(ChainKeys::default().sign(&a).unwrap().is_none());
    }
}

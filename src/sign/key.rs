//! kiln's signing key: ECDSA P-256, PKCS#8 PEM on disk (`kiln key generate`
//! writes it, mode 0600, beside a PKIX `PUBLIC KEY` PEM that cosign and
//! skopeo take). Signatures are ECDSA-P256-SHA256 in ASN.1 DER, as cosign
//! writes them.
//!
//! `Debug` shows the file, never the key; nothing here logs.

use std::fmt;
use std::path::{Path, PathBuf};

use p256::ecdsa::signature::Signer as _;
use p256::pkcs8::{
    DecodePrivateKey as _, EncodePrivateKey as _, EncodePublicKey as _, LineEnding, PrivateKeyInfo,
    SecretDocument,
};

/// The private key file `kiln key generate` writes.
pub const KEY_FILE: &str = "kiln.key";
/// The public key file `kiln key generate` writes.
pub const PUB_FILE: &str = "kiln.pub";

const EC_PUBLIC_KEY_OID: &str = "1.2.840.10045.2.1";
const P256_OID: &str = "1.2.840.10045.3.1.7";

/// A loaded signing key and the file it came from.
pub struct SigningKey {
    path: PathBuf,
    backend: Backend,
}

/// Where the private key lives.
enum Backend {
    /// In this process, read from a PEM file.
    Local(p256::ecdsa::SigningKey),
    /// In AWS KMS; only signatures come back.
    Kms(Box<crate::sign::kms::KmsKey>),
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Why a key file cannot be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key file could not be read.
    #[error("cannot read key file `{path}`")]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not PEM.
    #[error("key file `{path}` is not a PEM file")]
    NotPem {
        /// The file.
        path: PathBuf,
        /// The decoder's error.
        #[source]
        source: p256::pkcs8::der::Error,
    },
    /// PEM, but not a PKCS#8 `PRIVATE KEY`.
    #[error(
        "key file `{path}` holds a `{label}` PEM block; kiln takes a PKCS#8 `PRIVATE KEY` (convert with `openssl pkcs8 -topk8 -nocrypt`, or use `kiln key generate`)"
    )]
    NotPkcs8 {
        /// The file.
        path: PathBuf,
        /// The PEM label found.
        label: String,
    },
    /// A PKCS#8 key of another algorithm or curve.
    #[error("key file `{path}` is not an ECDSA P-256 key (algorithm {algorithm})")]
    NotP256 {
        /// The file.
        path: PathBuf,
        /// The algorithm (and curve) OIDs found.
        algorithm: String,
    },
    /// A P-256 PKCS#8 document whose key is malformed.
    #[error("key file `{path}` holds a malformed P-256 key")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The decoder's error.
        #[source]
        source: p256::pkcs8::Error,
    },
    /// `kiln key generate` never overwrites a key.
    #[error("`{path}` already exists; kiln never overwrites a key")]
    Exists {
        /// The existing file.
        path: PathBuf,
    },
    /// Writing a generated key failed.
    #[error("cannot write `{path}`")]
    Write {
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
}

impl SigningKey {
    /// Reads a PKCS#8 PEM ECDSA P-256 private key.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text =
            zeroize_string(
                std::fs::read_to_string(path).map_err(|source| KeyError::Read {
                    path: path.to_path_buf(),
                    source,
                })?,
            );
        let (label, doc) =
            SecretDocument::from_pem(text.as_str()).map_err(|source| KeyError::NotPem {
                path: path.to_path_buf(),
                source,
            })?;
        if label != "PRIVATE KEY" {
            return Err(KeyError::NotPkcs8 {
                path: path.to_path_buf(),
                label: label.to_string(),
            });
        }
        check_algorithm(path, doc.as_bytes())?;
        let key = p256::ecdsa::SigningKey::from_pkcs8_der(doc.as_bytes()).map_err(|source| {
            KeyError::Malformed {
                path: path.to_path_buf(),
                source,
            }
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            backend: Backend::Local(key),
        })
    }

    /// The KMS key `uri` (`awskms:///…`), checked (spec, usage, state) and
    /// with its public key fetched.
    pub async fn kms(uri: &str) -> Result<Self, crate::sign::kms::KmsError> {
        let key = crate::sign::kms::KmsKey::connect(uri).await?;
        Ok(Self {
            path: PathBuf::from(uri),
            backend: Backend::Kms(Box::new(key)),
        })
    }

    /// Writes a new key pair to `dir/kiln.key` (0600) and `dir/kiln.pub`
    /// (0644), creating `dir`; refuses to overwrite either file.
    pub fn generate(dir: &Path) -> Result<(PathBuf, PathBuf), KeyError> {
        let key_path = dir.join(KEY_FILE);
        let pub_path = dir.join(PUB_FILE);
        for p in [&key_path, &pub_path] {
            if p.symlink_metadata().is_ok() {
                return Err(KeyError::Exists { path: p.clone() });
            }
        }
        let write_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| KeyError::Write { path, source }
        };
        std::fs::create_dir_all(dir).map_err(write_err(dir))?;
        let key = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
        let pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .expect("a fresh P-256 key encodes as PKCS#8");
        crate::atomic_file::write(&key_path, pem.as_bytes(), 0o600)
            .map_err(write_err(&key_path))?;
        let signer = Self {
            path: key_path.clone(),
            backend: Backend::Local(key),
        };
        crate::atomic_file::write(&pub_path, signer.public_pem().as_bytes(), 0o644)
            .map_err(write_err(&pub_path))?;
        Ok((key_path, pub_path))
    }

    /// The key file this key was read from (for KMS: the `awskms:///` URI).
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn verifying(&self) -> p256::ecdsa::VerifyingKey {
        match &self.backend {
            Backend::Local(k) => *k.verifying_key(),
            Backend::Kms(k) => k.verifying_key(),
        }
    }

    /// The key file, or the `awskms:///` URI of a KMS key.
    pub fn location(&self) -> &Path {
        &self.path
    }

    /// The public key as a PKIX `PUBLIC KEY` PEM (what cosign's `--key` and
    /// containers-policy.json's `keyPath` take).
    pub fn public_pem(&self) -> String {
        self.verifying()
            .to_public_key_pem(LineEnding::LF)
            .expect("a P-256 public key encodes as PKIX")
    }

    /// Whether `der` is this key's ECDSA-P256-SHA256 signature of `message`.
    pub fn verifies(&self, message: &[u8], der: &[u8]) -> bool {
        use p256::ecdsa::signature::Verifier as _;
        p256::ecdsa::Signature::from_der(der)
            .is_ok_and(|sig| self.verifying().verify(message, &sig).is_ok())
    }

    /// ECDSA-P256-SHA256 signature of `message`, ASN.1 DER.
    pub async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, crate::sign::kms::KmsError> {
        match &self.backend {
            Backend::Local(k) => {
                let sig: p256::ecdsa::Signature = k.sign(message);
                Ok(sig.to_der().as_bytes().to_vec())
            }
            Backend::Kms(k) => k.sign(message).await,
        }
    }

    /// [`SigningKey::sign`] for synchronous callers (the record store signs
    /// inside its transaction). A KMS key blocks the calling thread on the
    /// current tokio runtime, which must be multi-threaded or the caller a
    /// `spawn_blocking` task.
    pub fn sign_blocking(&self, message: &[u8]) -> Result<Vec<u8>, crate::sign::kms::KmsError> {
        match &self.backend {
            Backend::Local(k) => {
                let sig: p256::ecdsa::Signature = k.sign(message);
                Ok(sig.to_der().as_bytes().to_vec())
            }
            Backend::Kms(k) => {
                let no_runtime = || crate::sign::kms::KmsError::NoRuntime {
                    key: self.location().display().to_string(),
                };
                let handle = tokio::runtime::Handle::try_current().map_err(|_| no_runtime())?;
                if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
                    return Err(no_runtime());
                }
                tokio::task::block_in_place(|| handle.block_on(k.sign(message)))
            }
        }
    }
}

/// Refuses PKCS#8 documents that are not id-ecPublicKey on P-256, naming
/// what they are.
fn check_algorithm(path: &Path, der: &[u8]) -> Result<(), KeyError> {
    let info = PrivateKeyInfo::try_from(der).map_err(|source| KeyError::Malformed {
        path: path.to_path_buf(),
        source,
    })?;
    let alg = info.algorithm.oid.to_string();
    let curve = info.algorithm.parameters_oid().ok().map(|o| o.to_string());
    if alg == EC_PUBLIC_KEY_OID && curve.as_deref() == Some(P256_OID) {
        return Ok(());
    }
    Err(KeyError::NotP256 {
        path: path.to_path_buf(),
        algorithm: match curve {
            Some(c) => format!("{alg}, curve {c}"),
            None => alg,
        },
    })
}

/// Wraps the key file's text so it is wiped when dropped.
fn zeroize_string(s: String) -> p256::elliptic_curve::zeroize::Zeroizing<String> {
    p256::elliptic_curve::zeroize::Zeroizing::new(s)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use p256::ecdsa::signature::Verifier as _;
    use p256::pkcs8::DecodePublicKey as _;

    use super::*;

    #[tokio::test]
    async fn generated_key_loads_signs_and_verifies_with_the_pub_file() {
        let dir = tempfile::tempdir().unwrap();
        let (k, p) = SigningKey::generate(dir.path()).unwrap();
        let mode = std::fs::metadata(&k).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let key = SigningKey::load(&k).unwrap();
        let sig = key.sign(b"payload").await.unwrap();
        let pub_pem = std::fs::read_to_string(&p).unwrap();
        assert!(
            pub_pem.starts_with("-----BEGIN PUBLIC KEY-----"),
            "{pub_pem}"
        );
        let vk = p256::ecdsa::VerifyingKey::from_public_key_pem(&pub_pem).unwrap();
        let sig = p256::ecdsa::Signature::from_der(&sig).unwrap();
        vk.verify(b"payload", &sig).unwrap();
        assert!(!format!("{key:?}").contains("PRIVATE"));
    }

    #[test]
    fn generate_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        SigningKey::generate(dir.path()).unwrap();
        let e = SigningKey::generate(dir.path()).unwrap_err();
        assert!(matches!(e, KeyError::Exists { .. }), "{e}");
    }

    #[test]
    fn public_key_pem_is_refused_as_a_private_key() {
        let dir = tempfile::tempdir().unwrap();
        let (_, p) = SigningKey::generate(dir.path()).unwrap();
        let e = SigningKey::load(&p).unwrap_err();
        assert!(matches!(e, KeyError::NotPkcs8 { .. }), "{e}");
        assert!(e.to_string().contains("kiln.pub"), "{e}");
    }
}

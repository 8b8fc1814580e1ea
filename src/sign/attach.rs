//! The sign stage: after a verified push, attach a cosign signature to each
//! OCI target's manifest digest under `sha256-<hex>.sig` in the same
//! repository, through [`RegistryClient`] (only `registry` speaks HTTP).
//!
//! Once per digest: when the signature tag already holds a signature of this
//! digest that kiln's key verifies, nothing is pushed; when it holds only
//! other signatures the stage fails, since re-signing would move the tag.

use std::io::{Seek as _, Write as _};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use bytes::Bytes;
use futures_util::StreamExt as _;

use crate::digest::Digest;
use crate::reference::ImageReference;
use crate::registry::{RegistryClient, RegistryError};
use crate::sign::SigningKey;
use crate::sign::cosign::{self, Artifact};

/// Largest payload blob read back when checking an existing signature.
const MAX_PAYLOAD: usize = 64 * 1024;

/// What to sign: a manifest digest in one repository.
#[derive(Debug, Clone)]
pub struct SignTarget {
    /// Registry host (`host[:port]`).
    pub registry: String,
    /// Repository within the registry.
    pub repository: String,
    /// The pushed, verified manifest digest.
    pub digest: Digest,
}

/// A signature attached (or found) for one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedTarget {
    /// `host/repository:sha256-<hex>.sig`.
    pub signature_ref: String,
    /// The digest of the signature manifest under that tag.
    pub signature_manifest: Digest,
    /// False when a signature by this key was already there.
    pub pushed: bool,
}

/// Why a signature could not be attached.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// A registry call failed.
    #[error("signing `{reference}`: {action} failed")]
    Registry {
        /// The signature reference.
        reference: String,
        /// What was being done.
        action: &'static str,
        /// The registry's error.
        #[source]
        source: RegistryError,
    },
    /// The tag exists without a signature of ours: never moved.
    #[error(
        "`{reference}` already holds signatures of `{digest}` that kiln's key does not verify; kiln never moves a tag"
    )]
    TagTaken {
        /// The signature reference.
        reference: String,
        /// The signed image digest.
        digest: Digest,
    },
    /// The signature manifest read back differs from the one sent.
    #[error(
        "`{reference}` reads back as `{found}`, not the signature manifest `{sent}` kiln pushed"
    )]
    NotVerified {
        /// The signature reference.
        reference: String,
        /// The digest of the bytes sent.
        sent: Digest,
        /// The digest read back.
        found: Digest,
    },
    /// The key (KMS) could not sign.
    #[error("signing `{reference}`")]
    Sign {
        /// The signature or attestation reference.
        reference: String,
        /// Why.
        #[source]
        source: crate::sign::kms::KmsError,
    },
    /// Spooling a blob to a temp file failed.
    #[error("cannot spool a signature blob for `{reference}`")]
    Spool {
        /// The signature reference.
        reference: String,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
}

/// Signs `target.digest` in its repository unless kiln's signature of it is
/// already there. `optional` goes into the payload's `optional` object.
pub async fn sign_target(
    client: &RegistryClient,
    key: &SigningKey,
    target: &SignTarget,
    optional: serde_json::Value,
) -> Result<SignedTarget, SignError> {
    let (repo, sig_ref, reference) = tagged(target, cosign::signature_tag(&target.digest));
    if let Some((bytes, digest)) = existing(client, &sig_ref, &reference).await? {
        if holds_our_signature(client, key, &repo, &bytes, &target.digest).await {
            return Ok(kept(reference, digest));
        }
        return Err(taken(reference, target));
    }
    let payload = cosign::payload(&repo.name(), &target.digest, optional);
    let signature = key.sign(&payload).await.map_err(|source| SignError::Sign {
        reference: reference.clone(),
        source,
    })?;
    let artifact = Artifact::signature(payload, &signature);
    let sent = push_artifact(client, &sig_ref, &artifact, &reference).await?;
    Ok(SignedTarget {
        signature_ref: reference,
        signature_manifest: sent,
        pushed: true,
    })
}

/// The target's repository, `tag` in it, and that reference as text.
pub(crate) fn tagged(target: &SignTarget, tag: String) -> (ImageReference, ImageReference, String) {
    let repo = ImageReference::parse(&format!("{}/{}", target.registry, target.repository))
        .expect("a pushed target names a valid repository");
    let reference = format!("{}:{tag}", repo.name());
    let tag_ref = ImageReference {
        tag: Some(tag),
        digest: None,
        ..repo.clone()
    };
    (repo, tag_ref, reference)
}

/// The answer when the tag already holds kiln's own manifest: nothing
/// pushed.
pub(crate) fn kept(reference: String, manifest: Digest) -> SignedTarget {
    SignedTarget {
        signature_ref: reference,
        signature_manifest: manifest,
        pushed: false,
    }
}

/// The error when the tag holds something else: it is never moved.
pub(crate) fn taken(reference: String, target: &SignTarget) -> SignError {
    SignError::TagTaken {
        reference,
        digest: target.digest.clone(),
    }
}

/// The manifest under `tag_ref` (bytes and digest), `None` when the tag
/// does not exist.
pub(crate) async fn existing(
    client: &RegistryClient,
    tag_ref: &ImageReference,
    reference: &str,
) -> Result<Option<(Vec<u8>, Digest)>, SignError> {
    match client.get_manifest(tag_ref).await {
        Ok(m) => Ok(Some((m.bytes.to_vec(), m.digest))),
        Err(e) if e.is_not_found() => Ok(None),
        Err(source) => Err(SignError::Registry {
            reference: reference.to_string(),
            action: "reading the tag",
            source,
        }),
    }
}

/// Uploads the artifact's blobs, `PUT`s its manifest under `tag_ref` and
/// reads it back; returns the manifest digest.
pub(crate) async fn push_artifact(
    client: &RegistryClient,
    tag_ref: &ImageReference,
    artifact: &Artifact,
    reference: &str,
) -> Result<Digest, SignError> {
    let reg = |action: &'static str| {
        move |source| SignError::Registry {
            reference: reference.to_string(),
            action,
            source,
        }
    };
    for blob in &artifact.blobs {
        upload_small_blob(client, tag_ref, blob, reference).await?;
    }
    let sent = Digest::of(&artifact.manifest);
    let body = Bytes::from(artifact.manifest.clone());
    client
        .put_manifest(tag_ref, cosign::OCI_MANIFEST, body)
        .await
        .map_err(reg("pushing the manifest"))?;
    let back = client
        .get_manifest(tag_ref)
        .await
        .map_err(reg("reading the manifest back"))?;
    if back.digest != sent {
        return Err(SignError::NotVerified {
            reference: reference.to_string(),
            sent,
            found: back.digest,
        });
    }
    Ok(sent)
}

/// Uploads `bytes` as a blob unless the repository has it.
pub(crate) async fn upload_small_blob(
    client: &RegistryClient,
    repo: &ImageReference,
    bytes: &[u8],
    reference: &str,
) -> Result<(), SignError> {
    let digest = Digest::of(bytes);
    let reg = |action: &'static str| {
        move |source| SignError::Registry {
            reference: reference.to_string(),
            action,
            source,
        }
    };
    if client
        .blob_exists(repo, &digest)
        .await
        .map_err(reg("checking a signature blob"))?
    {
        return Ok(());
    }
    let spool = |source| SignError::Spool {
        reference: reference.to_string(),
        source,
    };
    let mut file = tempfile::tempfile().map_err(spool)?;
    file.write_all(bytes).map_err(spool)?;
    file.rewind().map_err(spool)?;
    client
        .upload_blob_file(
            repo,
            &digest,
            bytes.len() as u64,
            &Arc::new(file),
            Arc::new(AtomicU64::new(0)),
        )
        .await
        .map_err(reg("uploading a signature blob"))?;
    Ok(())
}

/// Whether `manifest` has a layer whose payload names `digest` and whose
/// signature `key` verifies. Unreadable layers count as not ours.
async fn holds_our_signature(
    client: &RegistryClient,
    key: &SigningKey,
    repo: &ImageReference,
    manifest: &[u8],
    digest: &Digest,
) -> bool {
    for layer in cosign::signature_layers(manifest) {
        let Some(payload) = read_small_blob(client, repo, &layer.payload, MAX_PAYLOAD).await else {
            continue;
        };
        if cosign::payload_names(&payload, digest) && key.verifies(&payload, &layer.signature) {
            return true;
        }
    }
    false
}

/// A verified blob of at most `max` bytes, or `None`.
pub(crate) async fn read_small_blob(
    client: &RegistryClient,
    repo: &ImageReference,
    digest: &Digest,
    max: usize,
) -> Option<Vec<u8>> {
    let mut stream = client.get_blob(repo, digest).await.ok()?;
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.ok()?);
        if out.len() > max {
            return None;
        }
    }
    digest.verify(&out).then_some(out)
}

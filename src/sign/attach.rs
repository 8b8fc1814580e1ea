//! The sign stage: after a verified push, attach a cosign signature to each
//! target's manifest digest under `sha256-<hex>.sig` in the same repository
//! (OCI or ECR), through a [`Place`] (only `registry` and `distribute` speak
//! to registries).
//!
//! Once per digest: when the signature tag already holds a signature of this
//! digest that kiln's key verifies, nothing is pushed; when it holds only
//! other signatures the stage fails, since re-signing would move the tag.

use futures_util::StreamExt as _;

use crate::digest::Digest;
use crate::load::Target;
use crate::reference::ImageReference;
use crate::registry::{RegistryClient, RegistryError};
use crate::sign::SigningKey;
use crate::sign::cosign::{self, Artifact, LayerDoc};
use crate::sign::place::Place;

/// Largest payload blob read back when checking an existing signature.
const MAX_PAYLOAD: usize = 64 * 1024;

/// What to sign: a manifest digest in one target's repository.
#[derive(Debug, Clone)]
pub struct SignTarget {
    /// The target (OCI registry and repository, or ECR repository).
    pub target: Target,
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
    /// Writing to the target (OCI or ECR) failed.
    #[error("signing `{reference}`: {action} failed")]
    Target {
        /// The signature or attestation reference.
        reference: String,
        /// What was being done.
        action: &'static str,
        /// The push error.
        #[source]
        source: Box<crate::distribute::DistributeError>,
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
    let place = Place::open(client, &target.target).await?;
    sign_in(&place, key, &target.digest, optional).await
}

/// [`sign_target`] in an open [`Place`].
pub async fn sign_in(
    place: &Place<'_>,
    key: &SigningKey,
    digest: &Digest,
    optional: serde_json::Value,
) -> Result<SignedTarget, SignError> {
    let tag = cosign::signature_tag(digest);
    let (sig_ref, reference) = place.tagged(tag.clone());
    if let Some((bytes, manifest)) = existing(place, &sig_ref, &reference).await? {
        if holds_our_signature(place, key, &bytes, digest).await {
            return Ok(kept(reference, manifest));
        }
        return Err(taken(reference, digest));
    }
    let payload = cosign::payload(&place.repo().name(), digest, optional);
    let signature = key.sign(&payload).await.map_err(|source| SignError::Sign {
        reference: reference.clone(),
        source,
    })?;
    let artifact = Artifact::signature(payload, &signature);
    let sent = place.push(&tag, &artifact).await?;
    Ok(SignedTarget {
        signature_ref: reference,
        signature_manifest: sent,
        pushed: true,
    })
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
pub(crate) fn taken(reference: String, digest: &Digest) -> SignError {
    SignError::TagTaken {
        reference,
        digest: digest.clone(),
    }
}

/// The manifest under `tag_ref` (bytes and digest), `None` when the tag
/// does not exist.
pub(crate) async fn existing(
    place: &Place<'_>,
    tag_ref: &ImageReference,
    reference: &str,
) -> Result<Option<(Vec<u8>, Digest)>, SignError> {
    place
        .manifest(tag_ref)
        .await
        .map_err(|source| SignError::Registry {
            reference: reference.to_string(),
            action: "reading the tag",
            source,
        })
}

/// Whether `manifest` has a layer whose payload names `digest` and whose
/// signature `key` verifies. Unreadable layers count as not ours.
async fn holds_our_signature(
    place: &Place<'_>,
    key: &SigningKey,
    manifest: &[u8],
    digest: &Digest,
) -> bool {
    for layer in cosign::signature_layers(manifest) {
        let payload = match layer.inline {
            Some(p) => Some(p),
            None => {
                read_small_blob(place.client(), place.repo(), &layer.payload, MAX_PAYLOAD).await
            }
        };
        let Some(payload) = payload else { continue };
        if cosign::payload_names(&payload, digest) && key.verifies(&payload, &layer.signature) {
            return true;
        }
    }
    false
}

/// A layer's blob of at most `max` bytes: the one embedded in its
/// descriptor when that hashes to its digest, else read and verified from
/// `repo`; `None` when neither is there.
pub(crate) async fn read_layer(
    client: &RegistryClient,
    repo: &ImageReference,
    layer: &LayerDoc,
    max: usize,
) -> Option<Vec<u8>> {
    if let Some(bytes) = layer.inline().filter(|b| b.len() <= max) {
        return Some(bytes);
    }
    let digest = layer.digest.parse().ok()?;
    read_small_blob(client, repo, &digest, max).await
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

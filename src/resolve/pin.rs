//! Pinning one reference: tag → verified digest(s) for a platform; a
//! reference that already carries a digest is checked to exist, not re-resolved.

use crate::digest::Digest;
use crate::reference::ImageReference;
use crate::registry::{ManifestKind, Platform, RegistryClient, RegistryError, manifest_kind};

/// A parent image pinned for one platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedImage {
    /// The reference as the recipe wrote it (normalised).
    pub written: ImageReference,
    /// `registry/repository@<platform manifest digest>`: what a build uses.
    pub pinned: ImageReference,
    /// The index / manifest list digest, when the reference names one.
    pub index_digest: Option<Digest>,
    /// The single-platform image manifest digest.
    pub manifest_digest: Digest,
    /// The platform it was resolved for.
    pub platform: Platform,
}

impl PinnedImage {
    /// The digest the reference itself points at: the index digest for a
    /// multi-platform image, else the manifest digest. A tag "moved" when
    /// this changes.
    pub fn digest(&self) -> &Digest {
        self.index_digest.as_ref().unwrap_or(&self.manifest_digest)
    }
}

/// Pins `reference` for `platform`. Digests are always computed from bytes
/// fetched (`GET`); the one exception is a reference already pinned to a
/// single-platform manifest, which is confirmed with a `HEAD` by digest.
pub async fn pin(
    client: &RegistryClient,
    reference: &ImageReference,
    platform: &Platform,
) -> Result<PinnedImage, RegistryError> {
    if let Some(digest) = &reference.digest {
        let head = client.head_manifest(reference).await?;
        if head.media_type.as_deref().and_then(manifest_kind) == Some(ManifestKind::Image) {
            return Ok(PinnedImage {
                written: reference.clone(),
                pinned: reference.pinned(digest.clone()),
                index_digest: None,
                manifest_digest: digest.clone(),
                platform: platform.clone(),
            });
        }
    }
    let r = client.resolve_platform(reference, platform).await?;
    Ok(PinnedImage {
        written: reference.clone(),
        pinned: reference.pinned(r.manifest_digest.clone()),
        index_digest: r.index_digest,
        manifest_digest: r.manifest_digest,
        platform: platform.clone(),
    })
}

//! Promotion: copies a pushed image registry to registry — the exact
//! manifest bytes, its config and layer blobs, and the signature
//! (`sha256-<hex>.sig`) and attestation (`.att`) tags of its digest — never
//! from the local Docker image, so the digest at the destination is the
//! digest that was tested. Blobs are mounted when source and destination
//! share a registry host, skipped when present, else downloaded (verified)
//! and uploaded through the same sinks as a push (OCI or ECR).
//!
//! Tags never move: every destination tag is checked before anything is
//! uploaded; a tag on another digest is [`DistributeError::TagConflict`], a
//! tag on the same digest is left alone. Each tag is read back and must hash
//! to the source digest.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;

use super::error::DistributeError;
use super::manifest::{BuiltManifest, MANIFEST_MEDIA_TYPE};
use super::parent::{CopyError, download_blob};
use super::sink::Sink;
use crate::digest::Digest;
use crate::load::Target;
use crate::reference::ImageReference;
use crate::registry::{Manifest, RegistryClient};

/// What to promote: a pushed manifest and where it goes.
#[derive(Debug, Clone)]
pub struct PromoteRequest {
    /// The source repository (`host/repository`, no tag or digest).
    pub source: ImageReference,
    /// The manifest digest to copy.
    pub digest: Digest,
    /// The destination.
    pub to: Target,
    /// Tags to give it at the destination.
    pub tags: Vec<String>,
    /// Copy the source's `.sig` along. Off when the caller signs the
    /// digest at the destination itself: a copied signature names the
    /// source repository, which a verifier of the destination refuses.
    pub copy_signature: bool,
}

/// A finished promotion.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Promoted {
    /// Destination registry host.
    pub registry: String,
    /// Destination repository.
    pub repository: String,
    /// The tags it has there.
    pub tags: Vec<String>,
    /// The digest, read back at the destination.
    pub manifest_digest: Digest,
    /// Attachment tags copied along (or already there).
    pub attached: Vec<String>,
    /// Blob bytes uploaded.
    pub bytes_uploaded: u64,
    /// Blobs mounted from the source repository.
    pub blobs_mounted: u32,
    /// Manifests `PUT` (0: everything was already there).
    pub manifests_put: u32,
}

/// One manifest to place under one tag.
struct Placement {
    tag: String,
    manifest: Manifest,
    /// Whether the destination already has the tag on this digest.
    present: bool,
}

#[derive(Deserialize)]
struct Descriptor {
    digest: Digest,
    size: u64,
}

#[derive(Deserialize)]
struct ManifestDoc {
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

/// Promotes `req.digest` from `req.source` to `req.to` (module doc).
pub async fn promote(
    client: &RegistryClient,
    req: &PromoteRequest,
) -> Result<Promoted, DistributeError> {
    let sink = Sink::open(&req.to, client).await?;
    let image = read_source(client, &req.source, &req.digest, &req.to).await?;
    let mut placements = Vec::new();
    for tag in &req.tags {
        placements.push(place(&sink, tag, image.clone()).await?);
    }
    let mut attached = Vec::new();
    let suffixes: &[&str] = if req.copy_signature {
        &[".sig", ".att"]
    } else {
        &[".att"]
    };
    for suffix in suffixes {
        let tag = format!("{}-{}{suffix}", req.digest.algorithm(), req.digest.hex());
        let reference = ImageReference {
            tag: Some(tag.clone()),
            ..req.source.clone()
        };
        match client.get_manifest(&reference).await {
            Ok(m) => {
                check_media_type(&reference, &m, &req.to)?;
                attached.push(tag.clone());
                placements.push(place(&sink, &tag, m).await?);
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(source_error(&req.to, &reference, e)),
        }
    }
    let (bytes_uploaded, blobs_mounted) = copy_blobs(client, &sink, req, &placements).await?;
    let mut manifests_put = 0;
    for p in placements.iter().filter(|p| !p.present) {
        let built = BuiltManifest {
            bytes: p.manifest.bytes.clone(),
            digest: p.manifest.digest.clone(),
            config_digest: parse(&p.manifest, &req.source, &req.to)?.config.digest,
        };
        sink.put_manifest(&p.tag, &built).await?;
        manifests_put += 1;
    }
    for p in &placements {
        let back = sink.read_back(&p.tag).await?;
        if back != p.manifest.digest {
            return Err(DistributeError::DigestMismatch {
                repository: sink.name(),
                what: format!("the manifest promoted as tag {}", p.tag),
                expected: p.manifest.digest.clone(),
                reported: back,
            });
        }
    }
    Ok(Promoted {
        registry: sink.host().to_string(),
        repository: sink.repository().to_string(),
        tags: req.tags.clone(),
        manifest_digest: req.digest.clone(),
        attached,
        bytes_uploaded,
        blobs_mounted,
        manifests_put,
    })
}

/// The source manifest by digest (verified by the registry client).
async fn read_source(
    client: &RegistryClient,
    source: &ImageReference,
    digest: &Digest,
    to: &Target,
) -> Result<Manifest, DistributeError> {
    let reference = ImageReference {
        digest: Some(digest.clone()),
        tag: None,
        ..source.clone()
    };
    let m = client
        .get_manifest(&reference)
        .await
        .map_err(|e| source_error(to, &reference, e))?;
    check_media_type(&reference, &m, to)?;
    Ok(m)
}

/// Checks the destination tag before anything moves.
async fn place(sink: &Sink, tag: &str, manifest: Manifest) -> Result<Placement, DistributeError> {
    let present = match sink.tag(tag).await? {
        None => false,
        Some(d) if d == manifest.digest => true,
        Some(existing) => {
            return Err(DistributeError::TagConflict {
                target: Box::new(sink.target().clone()),
                repository: sink.name(),
                tag: tag.to_string(),
                existing,
                pushed: manifest.digest,
            });
        }
    };
    Ok(Placement {
        tag: tag.to_string(),
        manifest,
        present,
    })
}

/// Every blob the placements need at the destination: mounted on the same
/// host, else downloaded and uploaded. Returns (bytes uploaded, mounts).
async fn copy_blobs(
    client: &RegistryClient,
    sink: &Sink,
    req: &PromoteRequest,
    placements: &[Placement],
) -> Result<(u64, u32), DistributeError> {
    let mut blobs: Vec<Descriptor> = Vec::new();
    for p in placements.iter().filter(|p| !p.present) {
        let doc = parse(&p.manifest, &req.source, &req.to)?;
        for d in std::iter::once(doc.config).chain(doc.layers) {
            if !blobs.iter().any(|b| b.digest == d.digest) {
                blobs.push(d);
            }
        }
    }
    let digests: Vec<Digest> = blobs.iter().map(|b| b.digest.clone()).collect();
    let present = sink.present(&digests).await?;
    let same_host = matches!(req.to, Target::Oci { .. }) && sink.host() == req.source.registry;
    let (sent, mut mounted) = (Arc::new(AtomicU64::new(0)), 0);
    for blob in blobs.iter().filter(|b| !present.contains(&b.digest)) {
        if same_host && sink.mount(&blob.digest, &req.source).await? {
            mounted += 1;
            continue;
        }
        let spool = std::env::temp_dir();
        let file = download_blob(client, &req.source, &blob.digest, &spool)
            .await
            .map_err(|e| match e {
                CopyError::Registry(source) => source_error(&req.to, &req.source, source),
                CopyError::Io(source) => DistributeError::Io {
                    what: "spooling a promoted blob",
                    image: req.source.to_string(),
                    source,
                },
            })?;
        sink.upload(&blob.digest, blob.size, &Arc::new(file), sent.clone())
            .await?;
    }
    Ok((sent.load(Ordering::Relaxed), mounted))
}

fn parse(
    m: &Manifest,
    source: &ImageReference,
    to: &Target,
) -> Result<ManifestDoc, DistributeError> {
    serde_json::from_slice(&m.bytes).map_err(|e| DistributeError::NotPromotable {
        target: Box::new(to.clone()),
        reference: format!("{}@{}", source.name(), m.digest),
        reason: format!("its manifest does not decode ({e})"),
    })
}

/// Only OCI image manifests (what kiln pushes and signs) are promoted.
fn check_media_type(
    reference: &ImageReference,
    m: &Manifest,
    to: &Target,
) -> Result<(), DistributeError> {
    if m.media_type == MANIFEST_MEDIA_TYPE {
        return Ok(());
    }
    Err(DistributeError::NotPromotable {
        target: Box::new(to.clone()),
        reference: reference.to_string(),
        reason: format!(
            "its media type is `{}`; kiln promotes OCI image manifests",
            m.media_type
        ),
    })
}

fn source_error(
    to: &Target,
    reference: &ImageReference,
    source: crate::registry::RegistryError,
) -> DistributeError {
    DistributeError::Registry {
        target: Box::new(to.clone()),
        repository: reference.name(),
        what: format!("reading the promotion source {reference}"),
        source: Box::new(source),
    }
}

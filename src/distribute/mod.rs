//! The distribute stage: pushes a tested image from the Docker daemon to
//! every target (OCI registries and ECR), verifies the digest each registry
//! serves, and never moves a tag.
//!
//! Flow: `inspect` (image id, diff_ids) → plan (blob cache, parent layers,
//! what each target already has) → export (`docker save` stream) with the
//! layers compressed *as they stream* (blocks on a thread per core, memory
//! bounded by the blocks in flight) → upload (as soon as a layer is
//! compressed — on a cold push to an OCI target, while it is compressed;
//! N blobs at once per target) → config → tag check → manifest
//! `PUT` → read back by tag. A warm push (every blob present, config cached)
//! skips export and compression entirely.
//!
//! Media types: OCI (see [`manifest`]). Compression (see [`Codec`]): gzip
//! level 1 by default (about 2× faster than level 6 for a few percent size),
//! "adaptive" (blocks that do not shrink are stored), or zstd per recipe
//! (`compression: zstd` on the targets). All are pure functions of the
//! bytes, so digests are reproducible; the setting keys the blob cache.

mod cache;
pub mod cleanup;
mod compress;
mod ecr;
mod error;
pub(crate) mod export;
pub mod manifest;
mod oci;
mod parent;
mod pipeline;
pub mod promote;
mod push;
mod sink;
mod tagging;

use std::path::PathBuf;

pub use cache::{BlobCache, CachedBlob};
pub use compress::{
    Codec, CompressPool, Compressed, GZIP_LAYER, Streamed, ZSTD_LAYER, compress_stream,
};
pub use error::DistributeError;
pub use export::{ChannelReader, Exported, Walk, walk_export};
pub use manifest::{BuiltManifest, LayerBlob, MANIFEST_MEDIA_TYPE, build_manifest};
pub use parent::{ParentLayer, parent_layers};
pub use promote::{PromoteRequest, Promoted, promote};
pub use push::distribute;
pub(crate) use sink::Sink;

use crate::digest::Digest;
use crate::load::{DistributeConfig, Target};
use crate::load::{render_tag, tag_vars};
use crate::reference::{ImageReference, is_valid_tag};

/// The tag template used when a recipe names none.
pub const DEFAULT_TAG_TEMPLATE: &str = "{{ version }}-{{ build }}";

/// What to push and where.
#[derive(Debug, Clone)]
pub struct PushRequest {
    /// The image in the daemon: id (`sha256:…`) or name.
    pub image: String,
    /// Pipeline (recipe) name, for tag templates.
    pub name: String,
    /// Recipe version, for tag templates.
    pub version: semver::Version,
    /// Build number allocated by the record store.
    pub build: u64,
    /// Targets and tag templates.
    pub distribute: DistributeConfig,
    /// The pinned parent image (`repo@sha256:…`), whose compressed layers
    /// are reused for the layers our image shares with it.
    pub parent: Option<ImageReference>,
    /// The project state folder (`<project>/.kiln/state`) holding the blob
    /// cache; `None` disables the cache.
    pub state_dir: Option<PathBuf>,
    /// Tuning.
    pub options: PushOptions,
}

/// Tuning knobs; the defaults suit most hosts.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Blob uploads in flight per target. Default 5, like docker.
    pub concurrency: usize,
    /// gzip level 0–9 (gzip targets). Default 1. Changes digests, so it
    /// keys the cache.
    pub compression_level: u32,
    /// Store (level 0) gzip blocks that do not compress (random or already
    /// compressed data), judged from each block's first 64 KiB. Default `true`.
    pub adaptive: bool,
    /// Compression threads; 0 = one per core.
    pub compress_threads: usize,
    /// Where compressed layers are spooled; `None` = the system temp folder.
    pub spool_dir: Option<PathBuf>,
    /// Bytes of the `docker save` stream read so far (progress; shared so a
    /// caller can watch the export, and see it stop when the push is dropped).
    pub export_read: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            concurrency: 5,
            compression_level: 1,
            adaptive: true,
            compress_threads: 0,
            spool_dir: None,
            export_read: Default::default(),
        }
    }
}

/// The result of a push: one manifest, pushed to every target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedImage {
    /// The config digest (= the daemon's image id).
    pub config_digest: Digest,
    /// The manifest digest, computed locally, verified on every target.
    pub manifest_digest: Digest,
    /// Whether the image had to be exported from the daemon (false on a warm push).
    pub exported: bool,
    /// Layers compressed by this push.
    pub layers_compressed: usize,
    /// Per-target results, in the recipe's order.
    pub targets: Vec<PushedTarget>,
}

/// What happened on one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedTarget {
    /// The target as the recipe names it.
    pub target: Target,
    /// The registry host (for ECR `<id>.dkr.ecr.<region>.amazonaws.com`).
    pub registry_host: String,
    /// The repository.
    pub repository: String,
    /// Every tag that now points at the manifest.
    pub tags: Vec<String>,
    /// The tags this push created (the others already pointed at it).
    pub tags_added: Vec<String>,
    /// The manifest digest read back from the registry.
    pub manifest_digest: Digest,
    /// Whether the read-back digest equals the locally computed one.
    pub verified: bool,
    /// Blob bytes sent (manifest excluded).
    pub bytes_uploaded: u64,
    /// Blobs the target already had.
    pub blobs_skipped: usize,
    /// Blobs uploaded.
    pub blobs_uploaded: usize,
    /// Blobs mounted from another repository of the same registry.
    pub blobs_mounted: usize,
}

/// Progress, reported as it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PushEvent {
    /// The image was exported from the daemon (cold path).
    Exporting {
        /// Layers that will be compressed.
        layers_to_compress: usize,
    },
    /// A layer was compressed.
    LayerCompressed {
        /// Uncompressed digest.
        diff_id: Digest,
        /// Compressed digest.
        digest: Digest,
        /// Compressed size.
        size: u64,
    },
    /// A target already had a blob.
    BlobSkipped {
        /// `host/repository`.
        repository: String,
        /// The blob.
        digest: Digest,
    },
    /// A blob was mounted from another repository.
    BlobMounted {
        /// `host/repository`.
        repository: String,
        /// The blob.
        digest: Digest,
        /// The source repository.
        from: String,
    },
    /// A blob was uploaded.
    BlobUploaded {
        /// `host/repository`.
        repository: String,
        /// The blob.
        digest: Digest,
        /// Bytes sent for it (retries included).
        bytes: u64,
    },
    /// A tag was created.
    TagPushed {
        /// `host/repository`.
        repository: String,
        /// The tag.
        tag: String,
        /// The manifest digest.
        digest: Digest,
    },
    /// A tag already pointed at the manifest.
    TagUnchanged {
        /// `host/repository`.
        repository: String,
        /// The tag.
        tag: String,
    },
}

/// Renders the tag templates (default `{{ version }}-{{ build }}`),
/// deduplicated, in order.
pub fn render_tags(req: &PushRequest) -> Result<Vec<String>, DistributeError> {
    let vars = tag_vars(&req.name, &req.version, req.build);
    let templates: Vec<&str> = if req.distribute.tags.is_empty() {
        vec![DEFAULT_TAG_TEMPLATE]
    } else {
        req.distribute.tags.iter().map(String::as_str).collect()
    };
    let mut tags = Vec::new();
    for t in templates {
        let tag = render_tag(t, &vars).map_err(|reason| DistributeError::Tag {
            template: t.to_string(),
            reason,
        })?;
        if !is_valid_tag(&tag) {
            return Err(DistributeError::Tag {
                template: t.to_string(),
                reason: format!("`{tag}` is not a valid tag"),
            });
        }
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(tags: &[&str]) -> PushRequest {
        PushRequest {
            image: "sha256:x".into(),
            name: "web".into(),
            version: semver::Version::new(1, 0, 0),
            build: 4,
            distribute: DistributeConfig {
                tags: tags.iter().map(|t| t.to_string()).collect(),
                ..DistributeConfig::default()
            },
            parent: None,
            state_dir: None,
            options: PushOptions::default(),
        }
    }

    #[test]
    fn tags_render_from_templates_with_the_default_and_dedup() {
        assert_eq!(render_tags(&req(&[])).unwrap(), vec!["1.0.0-4"]);
        assert_eq!(
            render_tags(&req(&[
                "{{ version }}-{{ build }}",
                "{{major}}.{{minor}}-{{build}}",
                "{{ version }}-{{ build }}"
            ]))
            .unwrap(),
            vec!["1.0.0-4", "1.0-4"]
        );
        assert!(matches!(
            render_tags(&req(&["{{ nope }}"])),
            Err(DistributeError::Tag { .. })
        ));
        assert!(matches!(
            render_tags(&req(&["a b"])),
            Err(DistributeError::Tag { .. })
        ));
    }
}

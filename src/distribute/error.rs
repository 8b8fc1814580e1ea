//! Why a push failed. Every variant names what it was about: the image, the
//! target, the repository, the digest or the tag.

use std::path::PathBuf;

use crate::digest::Digest;
use crate::load::Target;
use crate::registry::RegistryError;

/// A failure of the distribute stage.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DistributeError {
    /// The Docker daemon refused an inspect or export.
    #[error("docker {operation} of image `{image}` failed")]
    Docker {
        /// `inspect` or `export`.
        operation: &'static str,
        /// The image asked for.
        image: String,
        /// The bollard error.
        #[source]
        source: bollard::errors::Error,
    },
    /// The daemon's answer lacks something a push needs.
    #[error("image `{image}` cannot be pushed: {reason}")]
    BadImage {
        /// The image asked for.
        image: String,
        /// What is missing or inconsistent.
        reason: String,
    },
    /// Reading the exported image or writing spool files failed.
    #[error("{what} failed for image `{image}`")]
    Io {
        /// What was being done (`reading the export`, `compressing a layer`, …).
        what: &'static str,
        /// The image.
        image: String,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The blob cache in the state folder could not be written.
    #[error("cannot write the blob cache `{path}`")]
    Cache {
        /// The cache file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// A tag template did not render to a valid tag.
    #[error("tag template `{template}` is invalid: {reason}")]
    Tag {
        /// The template as written.
        template: String,
        /// Why.
        reason: String,
    },
    /// A tag already points at another manifest; nothing was changed.
    #[error(
        "tag `{tag}` of `{repository}` already points to {existing}; refusing to move it to {pushed}"
    )]
    TagConflict {
        /// The target.
        target: Box<Target>,
        /// The repository (with registry host).
        repository: String,
        /// The tag.
        tag: String,
        /// The digest the tag points to.
        existing: Digest,
        /// The digest this push would have tagged.
        pushed: Digest,
    },
    /// A registry operation on a target failed.
    #[error("pushing {what} to `{repository}` failed")]
    Registry {
        /// The target.
        target: Box<Target>,
        /// The repository (with registry host).
        repository: String,
        /// What was being pushed or checked (`blob sha256:…`, `manifest`, `tag 1.0.0-3`).
        what: String,
        /// The registry error.
        #[source]
        source: Box<RegistryError>,
    },
    /// An ECR API call failed.
    #[error("ecr {operation} on `{repository}` failed{}", .digest.as_ref().map(|d| format!(" for {d}")).unwrap_or_default())]
    Ecr {
        /// The API operation.
        operation: &'static str,
        /// The repository.
        repository: String,
        /// The blob, when the call was about one.
        digest: Option<Digest>,
        /// The SDK error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A pushed image cannot be promoted as it is.
    #[error("`{reference}` cannot be promoted to {}: {reason}", .target.label())]
    NotPromotable {
        /// The destination.
        target: Box<Target>,
        /// The source manifest.
        reference: String,
        /// Why.
        reason: String,
    },
    /// A registry stored different bytes than kiln sent.
    #[error("`{repository}` reports {reported} for {what}, but kiln computed {expected}")]
    DigestMismatch {
        /// The repository (with registry host).
        repository: String,
        /// What (`blob`, `manifest read back by tag 1.0.0-3`).
        what: String,
        /// The digest computed locally.
        expected: Digest,
        /// The digest the registry reported or served.
        reported: Digest,
    },
    /// Tagging failed on a target after tags were created on others (or on
    /// it); those were removed where the registry allows. `left` is exactly
    /// what still exists — recorded in the failed run, never approved.
    #[error("tagging failed; {}", rollback_text(.removed, .left))]
    Tagging {
        /// Why tagging failed.
        #[source]
        cause: Box<DistributeError>,
        /// `host/repository:tag` created by this push and removed again.
        removed: Vec<String>,
        /// `host/repository:tag` created by this push that still exist.
        left: Vec<String>,
    },
    /// Some targets failed (others may have succeeded; see each error).
    #[error("{} of {total} targets failed: {}", .failures.len(), .failures.iter().map(|f| f.to_string()).collect::<Vec<_>>().join("; "))]
    Targets {
        /// Targets attempted.
        total: usize,
        /// Each failure.
        failures: Vec<DistributeError>,
    },
}

fn rollback_text(removed: &[String], left: &[String]) -> String {
    let mut parts = Vec::new();
    if removed.is_empty() && left.is_empty() {
        parts.push("no tag was created".to_string());
    }
    if !removed.is_empty() {
        parts.push(format!(
            "removed the tags it had created: {}",
            removed.join(", ")
        ));
    }
    if !left.is_empty() {
        parts.push(format!(
            "these tags were created and could not be removed (they exist, unapproved): {}",
            left.join(", ")
        ));
    }
    parts.join("; ")
}

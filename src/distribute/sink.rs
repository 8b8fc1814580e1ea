//! One target, whatever its kind: dispatches to [`OciSink`] or [`EcrSink`].

use std::collections::HashSet;
use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use super::ecr::EcrSink;
use super::error::DistributeError;
use super::manifest::BuiltManifest;
use super::oci::OciSink;
use crate::digest::Digest;
use crate::load::Target;
use crate::reference::ImageReference;
use crate::registry::{GrowingBlob, RegistryClient};

/// A target ready to receive blobs.
pub(crate) enum Sink {
    Oci(OciSink),
    Ecr(EcrSink),
}

impl Sink {
    /// Connects to a target (for ECR: finds or creates the repository).
    pub(crate) async fn open(
        target: &Target,
        client: &RegistryClient,
    ) -> Result<Sink, DistributeError> {
        Ok(match target {
            Target::Oci {
                registry,
                repository,
            } => Sink::Oci(OciSink::new(target, client, registry, repository)),
            Target::Ecr {
                region,
                repository,
                registry_id,
            } => {
                Sink::Ecr(EcrSink::open(target, region, repository, registry_id.as_deref()).await?)
            }
        })
    }

    pub(crate) fn target(&self) -> &Target {
        match self {
            Sink::Oci(s) => &s.target,
            Sink::Ecr(s) => &s.target,
        }
    }

    pub(crate) fn host(&self) -> &str {
        match self {
            Sink::Oci(s) => &s.repo.registry,
            Sink::Ecr(s) => &s.host,
        }
    }

    pub(crate) fn repository(&self) -> &str {
        match self {
            Sink::Oci(s) => &s.repo.repository,
            Sink::Ecr(s) => &s.repository,
        }
    }

    /// `host/repository`.
    pub(crate) fn name(&self) -> String {
        format!("{}/{}", self.host(), self.repository())
    }

    pub(crate) async fn present(
        &self,
        digests: &[Digest],
    ) -> Result<HashSet<Digest>, DistributeError> {
        match self {
            Sink::Oci(s) => s.present(digests).await,
            Sink::Ecr(s) => s.present(digests).await,
        }
    }

    pub(crate) async fn upload(
        &self,
        digest: &Digest,
        size: u64,
        file: &Arc<File>,
        sent: Arc<AtomicU64>,
    ) -> Result<(), DistributeError> {
        match self {
            Sink::Oci(s) => s.upload(digest, size, file, sent).await,
            Sink::Ecr(s) => s.upload(digest, size, file, sent).await,
        }
    }

    /// Whether layers are uploaded while they are compressed
    /// ([`Sink::upload_growing`]): OCI targets; ECR's layer parts are
    /// uploaded from the finished file.
    pub(crate) fn streams(&self) -> bool {
        matches!(self, Sink::Oci(_))
    }

    /// Uploads a blob as it is written; `Ok(None)` when it was abandoned.
    /// Only for targets that [`Sink::streams`].
    pub(crate) async fn upload_growing(
        &self,
        blob: GrowingBlob,
        sent: Arc<AtomicU64>,
    ) -> Result<Option<Digest>, DistributeError> {
        match self {
            Sink::Oci(s) => s.upload_growing(blob, sent).await,
            Sink::Ecr(_) => unreachable!("ECR targets do not stream"),
        }
    }

    /// Cross-repository mount; always `false` for ECR.
    pub(crate) async fn mount(
        &self,
        digest: &Digest,
        from: &ImageReference,
    ) -> Result<bool, DistributeError> {
        match self {
            Sink::Oci(s) => s.mount(digest, from).await,
            Sink::Ecr(_) => Ok(false),
        }
    }

    pub(crate) async fn tag(&self, tag: &str) -> Result<Option<Digest>, DistributeError> {
        match self {
            Sink::Oci(s) => s.tag(tag).await,
            Sink::Ecr(s) => s.tag(tag).await,
        }
    }

    pub(crate) async fn put_manifest(
        &self,
        tag: &str,
        m: &BuiltManifest,
    ) -> Result<(), DistributeError> {
        match self {
            Sink::Oci(s) => s.put_manifest(tag, m).await,
            Sink::Ecr(s) => s.put_manifest(tag, m).await,
        }
    }

    /// Whether the manifest `digest` exists in the repository (ECR: not
    /// needed, tags are removed one by one; always `true`).
    pub(crate) async fn has_manifest(&self, digest: &Digest) -> Result<bool, DistributeError> {
        match self {
            Sink::Oci(s) => s.has_manifest(digest).await,
            Sink::Ecr(_) => Ok(true),
        }
    }

    /// A tag other than `except` that points at `digest`, if any (ECR: not
    /// needed, its tag removal never takes other tags; always `None`).
    pub(crate) async fn digest_held_elsewhere(
        &self,
        digest: &Digest,
        except: &[String],
    ) -> Result<Option<String>, DistributeError> {
        match self {
            Sink::Oci(s) => s.digest_held_elsewhere(digest, except).await,
            Sink::Ecr(_) => Ok(None),
        }
    }

    /// Removes a tag this push created; `Ok(false)` when the target cannot.
    pub(crate) async fn untag(
        &self,
        tag: &str,
        digest: &Digest,
        fresh: bool,
    ) -> Result<bool, DistributeError> {
        match self {
            Sink::Oci(s) => s.untag(tag, digest, fresh).await,
            Sink::Ecr(s) => s.untag(tag).await,
        }
    }

    pub(crate) async fn read_back(&self, tag: &str) -> Result<Digest, DistributeError> {
        match self {
            Sink::Oci(s) => s.read_back(tag).await,
            Sink::Ecr(s) => s.read_back(tag).await,
        }
    }
}

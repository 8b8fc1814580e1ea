//! OCI distribution targets, through [`RegistryClient`]: `HEAD` for blobs
//! and tags, uploads with resume, cross-repository mounts, manifest `PUT` and
//! a read-back `GET` whose digest is computed locally.

use std::collections::HashSet;
use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use futures_util::{StreamExt, TryStreamExt};

use super::error::DistributeError;
use super::manifest::{BuiltManifest, MANIFEST_MEDIA_TYPE};
use crate::digest::Digest;
use crate::load::Target;
use crate::reference::ImageReference;
use crate::registry::{GrowingBlob, RegistryClient, RegistryError};

/// One OCI repository being pushed to.
pub(crate) struct OciSink {
    pub(crate) target: Target,
    pub(crate) client: RegistryClient,
    /// The repository (tag and digest unset).
    pub(crate) repo: ImageReference,
}

impl OciSink {
    pub(crate) fn new(
        target: &Target,
        client: &RegistryClient,
        registry: &str,
        repository: &str,
    ) -> Self {
        OciSink {
            target: target.clone(),
            client: client.clone(),
            repo: ImageReference {
                registry: registry.to_string(),
                repository: repository.to_string(),
                tag: None,
                digest: None,
            },
        }
    }

    fn err(&self, what: String, source: RegistryError) -> DistributeError {
        DistributeError::Registry {
            target: Box::new(self.target.clone()),
            repository: self.repo.name(),
            what,
            source: Box::new(source),
        }
    }

    fn tagged(&self, tag: &str) -> ImageReference {
        ImageReference {
            tag: Some(tag.to_string()),
            ..self.repo.clone()
        }
    }

    fn pinned(&self, digest: &Digest) -> ImageReference {
        ImageReference {
            digest: Some(digest.clone()),
            ..self.repo.clone()
        }
    }

    /// Which of `digests` the repository already has (`HEAD`, 8 at a time).
    pub(crate) async fn present(
        &self,
        digests: &[Digest],
    ) -> Result<HashSet<Digest>, DistributeError> {
        futures_util::stream::iter(digests.iter().cloned())
            .map(|d| async move {
                match self.client.blob_exists(&self.repo, &d).await {
                    Ok(true) => Ok(Some(d)),
                    Ok(false) => Ok(None),
                    Err(e) => Err(self.err(format!("blob {d}"), e)),
                }
            })
            .buffer_unordered(8)
            .try_filter_map(|d| async move { Ok(d) })
            .try_collect()
            .await
    }

    pub(crate) async fn upload(
        &self,
        digest: &Digest,
        size: u64,
        file: &Arc<File>,
        sent: Arc<AtomicU64>,
    ) -> Result<(), DistributeError> {
        self.client
            .upload_blob_file(&self.repo, digest, size, file, sent)
            .await
            .map(|_| ())
            .map_err(|e| self.err(format!("blob {digest}"), e))
    }

    /// Uploads a blob while it is written (see [`GrowingBlob`]).
    pub(crate) async fn upload_growing(
        &self,
        blob: GrowingBlob,
        sent: Arc<AtomicU64>,
    ) -> Result<Option<Digest>, DistributeError> {
        self.client
            .upload_growing_blob(&self.repo, blob, sent)
            .await
            .map_err(|e| self.err("streamed blob".to_string(), e))
    }

    /// Mounts `digest` from `from` when it is a repository of this registry.
    pub(crate) async fn mount(
        &self,
        digest: &Digest,
        from: &ImageReference,
    ) -> Result<bool, DistributeError> {
        if from.registry != self.repo.registry || from.repository == self.repo.repository {
            return Ok(false);
        }
        self.client
            .mount_blob(&self.repo, digest, &from.repository)
            .await
            .map_err(|e| self.err(format!("mount of blob {digest}"), e))
    }

    /// The digest `tag` points to, if the tag exists.
    pub(crate) async fn tag(&self, tag: &str) -> Result<Option<Digest>, DistributeError> {
        match self.client.head_manifest(&self.tagged(tag)).await {
            Ok(h) => Ok(Some(h.digest)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(self.err(format!("tag {tag}"), e)),
        }
    }

    pub(crate) async fn put_manifest(
        &self,
        tag: &str,
        m: &BuiltManifest,
    ) -> Result<(), DistributeError> {
        let reported = self
            .client
            .put_manifest(&self.tagged(tag), MANIFEST_MEDIA_TYPE, m.bytes.clone())
            .await
            .map_err(|e| self.err(format!("manifest for tag {tag}"), e))?;
        match reported {
            Some(d) if d != m.digest => Err(DistributeError::DigestMismatch {
                repository: self.repo.name(),
                what: format!("the manifest put as tag {tag}"),
                expected: m.digest.clone(),
                reported: d,
            }),
            _ => Ok(()),
        }
    }

    /// Whether the repository has the manifest `digest` under any name.
    pub(crate) async fn has_manifest(&self, digest: &Digest) -> Result<bool, DistributeError> {
        match self.client.head_manifest(&self.pinned(digest)).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(self.err(format!("manifest {digest}"), e)),
        }
    }

    /// Removes `tag`, which this push created for `digest`: `DELETE` by tag
    /// (OCI 1.1), else — only when `fresh`, i.e. the repository had no such
    /// manifest before this push, so no older tag can point to it — `DELETE`
    /// by digest. `Ok(false)`: the tag could not be removed.
    pub(crate) async fn untag(
        &self,
        tag: &str,
        digest: &Digest,
        fresh: bool,
    ) -> Result<bool, DistributeError> {
        let err = |e| self.err(format!("removal of tag {tag}"), e);
        if self
            .client
            .delete_manifest(&self.tagged(tag))
            .await
            .map_err(err)?
        {
            return Ok(true);
        }
        if !fresh {
            return Ok(false);
        }
        self.client
            .delete_manifest(&self.pinned(digest))
            .await
            .map_err(err)
    }

    /// A tag other than `except` that points at `digest` (tag list, then one
    /// `HEAD` per tag), if any.
    pub(crate) async fn digest_held_elsewhere(
        &self,
        digest: &Digest,
        except: &[String],
    ) -> Result<Option<String>, DistributeError> {
        let tags = self
            .client
            .list_tags(&self.repo)
            .await
            .map_err(|e| self.err("tag list".to_string(), e))?;
        for t in tags.into_iter().filter(|t| !except.contains(t)) {
            if self.tag(&t).await?.as_ref() == Some(digest) {
                return Ok(Some(t));
            }
        }
        Ok(None)
    }

    /// `GET` by tag; the digest is computed from the bytes served.
    pub(crate) async fn read_back(&self, tag: &str) -> Result<Digest, DistributeError> {
        self.client
            .get_manifest(&self.tagged(tag))
            .await
            .map(|m| m.digest)
            .map_err(|e| self.err(format!("read-back of tag {tag}"), e))
    }
}

//! Amazon ECR targets through aws-sdk-ecr: the repository is created when
//! missing (IMMUTABLE tags, scan on push), layers go through
//! `InitiateLayerUpload`/`UploadLayerPart`/`CompleteLayerUpload` (parts read
//! from the spool file one at a time), the manifest through `PutImage` with
//! `imageDigest`, and the read-back through `BatchGetImage`.
//!
//! The SDK honours `AWS_ENDPOINT_URL_ECR`, which is how tests reach moto.

use std::collections::HashSet;
use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_ecr::error::ProvideErrorMetadata;
use aws_sdk_ecr::primitives::Blob;
use aws_sdk_ecr::types::{ImageIdentifier, ImageScanningConfiguration, ImageTagMutability};

use super::error::DistributeError;
use super::manifest::{BuiltManifest, MANIFEST_MEDIA_TYPE};
use crate::digest::Digest;
use crate::load::Target;

/// Largest part sent, even when ECR allows more (bounds memory per upload).
const MAX_PART: u64 = 8 * 1024 * 1024;
/// Smallest part ECR accepts (except the last).
const MIN_PART: u64 = 5 * 1024 * 1024;

/// One ECR repository being pushed to.
pub(crate) struct EcrSink {
    pub(crate) target: Target,
    client: aws_sdk_ecr::Client,
    pub(crate) registry_id: String,
    pub(crate) repository: String,
    /// `<registryId>.dkr.ecr.<region>.amazonaws.com`, from the repository URI.
    pub(crate) host: String,
}

fn boxed<E: std::error::Error + Send + Sync + 'static>(
    e: E,
) -> Box<dyn std::error::Error + Send + Sync> {
    Box::new(e)
}

impl EcrSink {
    /// Finds or creates the repository.
    pub(crate) async fn open(
        target: &Target,
        region: &str,
        repository: &str,
        registry_id: Option<&str>,
    ) -> Result<Self, DistributeError> {
        let client = aws_sdk_ecr::Client::new(&crate::registry::ecr_sdk_config(region).await);
        let err = |operation, source| DistributeError::Ecr {
            operation,
            repository: repository.to_string(),
            digest: None,
            source,
        };
        let found = client
            .describe_repositories()
            .set_registry_id(registry_id.map(str::to_string))
            .repository_names(repository)
            .send()
            .await;
        let repo = match found {
            Ok(out) => out.repositories().first().cloned(),
            Err(e) if e.code() == Some("RepositoryNotFoundException") => None,
            Err(e) => return Err(err("DescribeRepositories", boxed(e))),
        };
        let repo = match repo {
            Some(r) => r,
            None => client
                .create_repository()
                .set_registry_id(registry_id.map(str::to_string))
                .repository_name(repository)
                .image_tag_mutability(ImageTagMutability::Immutable)
                .image_scanning_configuration(
                    ImageScanningConfiguration::builder()
                        .scan_on_push(true)
                        .build(),
                )
                .send()
                .await
                .map_err(|e| err("CreateRepository", boxed(e)))?
                .repository()
                .cloned()
                .ok_or_else(|| err("CreateRepository", "no repository in the answer".into()))?,
        };
        if repo.image_tag_mutability() != Some(&ImageTagMutability::Immutable) {
            tracing::warn!(
                repository,
                "ECR repository has mutable tags; kiln never moves a tag, but others could — set it to IMMUTABLE"
            );
        }
        let uri = repo.repository_uri().unwrap_or_default();
        Ok(EcrSink {
            target: target.clone(),
            client,
            registry_id: repo.registry_id().unwrap_or_default().to_string(),
            repository: repository.to_string(),
            host: uri.split('/').next().unwrap_or_default().to_string(),
        })
    }

    fn err(
        &self,
        operation: &'static str,
        digest: Option<&Digest>,
        source: Box<dyn std::error::Error + Send + Sync>,
    ) -> DistributeError {
        DistributeError::Ecr {
            operation,
            repository: format!("{}/{}", self.host, self.repository),
            digest: digest.cloned(),
            source,
        }
    }

    /// Which of `digests` the repository has (`BatchCheckLayerAvailability`).
    pub(crate) async fn present(
        &self,
        digests: &[Digest],
    ) -> Result<HashSet<Digest>, DistributeError> {
        let mut have = HashSet::new();
        for chunk in digests.chunks(100) {
            let out = self
                .client
                .batch_check_layer_availability()
                .registry_id(&self.registry_id)
                .repository_name(&self.repository)
                .set_layer_digests(Some(chunk.iter().map(|d| d.to_string()).collect()))
                .send()
                .await
                .map_err(|e| self.err("BatchCheckLayerAvailability", None, boxed(e)))?;
            for l in out.layers() {
                let available = l
                    .layer_availability()
                    .is_some_and(|a| a.as_str() == "AVAILABLE");
                if let (true, Some(d)) = (available, l.layer_digest().and_then(|d| d.parse().ok()))
                {
                    have.insert(d);
                }
            }
        }
        Ok(have)
    }

    /// Uploads `file` in parts, sequentially; checks ECR's layer digest.
    pub(crate) async fn upload(
        &self,
        digest: &Digest,
        size: u64,
        file: &Arc<File>,
        sent: Arc<AtomicU64>,
    ) -> Result<(), DistributeError> {
        let start = self
            .client
            .initiate_layer_upload()
            .registry_id(&self.registry_id)
            .repository_name(&self.repository)
            .send()
            .await
            .map_err(|e| self.err("InitiateLayerUpload", Some(digest), boxed(e)))?;
        let upload_id = start.upload_id().unwrap_or_default().to_string();
        let part =
            (start.part_size().unwrap_or(MIN_PART as i64).max(0) as u64).clamp(MIN_PART, MAX_PART);
        let mut at = 0u64;
        while at < size {
            let len = part.min(size - at);
            let f = file.clone();
            let buf = tokio::task::spawn_blocking(move || {
                use std::os::unix::fs::FileExt;
                let mut buf = vec![0u8; len as usize];
                f.read_exact_at(&mut buf, at).map(|()| buf)
            })
            .await
            .map_err(|e| self.err("UploadLayerPart", Some(digest), boxed(e)))?
            .map_err(|e| self.err("UploadLayerPart", Some(digest), boxed(e)))?;
            self.client
                .upload_layer_part()
                .registry_id(&self.registry_id)
                .repository_name(&self.repository)
                .upload_id(&upload_id)
                .part_first_byte(at as i64)
                .part_last_byte((at + len - 1) as i64)
                .layer_part_blob(Blob::new(buf))
                .send()
                .await
                .map_err(|e| self.err("UploadLayerPart", Some(digest), boxed(e)))?;
            sent.fetch_add(len, Ordering::Relaxed);
            at += len;
        }
        let done = self
            .client
            .complete_layer_upload()
            .registry_id(&self.registry_id)
            .repository_name(&self.repository)
            .upload_id(&upload_id)
            .layer_digests(digest.to_string())
            .send()
            .await;
        let reported = match done {
            Ok(out) => out.layer_digest().unwrap_or_default().to_string(),
            Err(e) if e.code() == Some("LayerAlreadyExistsException") => return Ok(()),
            Err(e) => return Err(self.err("CompleteLayerUpload", Some(digest), boxed(e))),
        };
        match reported.parse::<Digest>() {
            Ok(d) if &d == digest => Ok(()),
            Ok(d) => Err(DistributeError::DigestMismatch {
                repository: format!("{}/{}", self.host, self.repository),
                what: "an uploaded layer".into(),
                expected: digest.clone(),
                reported: d,
            }),
            Err(e) => Err(self.err("CompleteLayerUpload", Some(digest), boxed(e))),
        }
    }

    /// The digest of the manifest `tag` names (sha256 of the bytes returned).
    pub(crate) async fn tag(&self, tag: &str) -> Result<Option<Digest>, DistributeError> {
        let out = self
            .client
            .batch_get_image()
            .registry_id(&self.registry_id)
            .repository_name(&self.repository)
            .image_ids(ImageIdentifier::builder().image_tag(tag).build())
            // Whatever kind of manifest the tag names, it is taken.
            .accepted_media_types(MANIFEST_MEDIA_TYPE)
            .accepted_media_types("application/vnd.oci.image.index.v1+json")
            .accepted_media_types("application/vnd.docker.distribution.manifest.v2+json")
            .accepted_media_types("application/vnd.docker.distribution.manifest.list.v2+json")
            .send()
            .await
            .map_err(|e| self.err("BatchGetImage", None, boxed(e)))?;
        if let Some(m) = out.images().first().and_then(|i| i.image_manifest()) {
            return Ok(Some(Digest::of(m.as_bytes())));
        }
        // Only "no such image" means the tag is free.
        for f in out.failures() {
            let code = f
                .failure_code()
                .map(|c| c.as_str().to_string())
                .unwrap_or_default();
            if code != "ImageNotFound" {
                let reason = f.failure_reason().unwrap_or_default();
                return Err(self.err(
                    "BatchGetImage",
                    None,
                    format!("tag `{tag}`: {code} {reason}").into(),
                ));
            }
        }
        Ok(None)
    }

    /// `PutImage` with our digest; an existing tag is mapped to a conflict.
    pub(crate) async fn put_manifest(
        &self,
        tag: &str,
        m: &BuiltManifest,
    ) -> Result<(), DistributeError> {
        let text = std::str::from_utf8(&m.bytes).expect("manifests are JSON text");
        let out = self
            .client
            .put_image()
            .registry_id(&self.registry_id)
            .repository_name(&self.repository)
            .image_manifest(text)
            .image_manifest_media_type(MANIFEST_MEDIA_TYPE)
            .image_tag(tag)
            .image_digest(m.digest.to_string())
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ImageAlreadyExistsException") => Ok(()),
            Err(e) if e.code() == Some("ImageTagAlreadyExistsException") => {
                let existing = self.tag(tag).await?.unwrap_or_else(|| m.digest.clone());
                Err(DistributeError::TagConflict {
                    target: Box::new(self.target.clone()),
                    repository: format!("{}/{}", self.host, self.repository),
                    tag: tag.to_string(),
                    existing,
                    pushed: m.digest.clone(),
                })
            }
            Err(e) => Err(self.err("PutImage", Some(&m.digest), boxed(e))),
        }
    }

    /// `BatchDeleteImage` of `tag` alone: ECR removes the tag, and the image
    /// only when no other tag names it. `Ok(false)` when ECR reports a
    /// failure for it.
    pub(crate) async fn untag(&self, tag: &str) -> Result<bool, DistributeError> {
        let out = self
            .client
            .batch_delete_image()
            .registry_id(&self.registry_id)
            .repository_name(&self.repository)
            .image_ids(ImageIdentifier::builder().image_tag(tag).build())
            .send()
            .await
            .map_err(|e| self.err("BatchDeleteImage", None, boxed(e)))?;
        for f in out.failures() {
            tracing::warn!(repository = %self.repository, tag,
                code = ?f.failure_code(), reason = ?f.failure_reason(), "ecr did not remove the tag");
        }
        Ok(out.failures().is_empty())
    }

    pub(crate) async fn read_back(&self, tag: &str) -> Result<Digest, DistributeError> {
        self.tag(tag).await?.ok_or_else(|| {
            self.err(
                "BatchGetImage",
                None,
                format!("tag {tag} not found after PutImage").into(),
            )
        })
    }
}

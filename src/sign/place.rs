//! Where a digest's attachments live: the image's own repository, OCI or
//! ECR. Manifests are read through [`RegistryClient`] (for ECR hosts that is
//! `BatchGetImage`); blobs and manifests are written through the distribute
//! stage's [`Sink`] (the distribution API, or ECR's layer-upload API and
//! `PutImage`), so an attachment reaches every kind of target a push does.

use std::io::{Seek as _, Write as _};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use bytes::Bytes;

use crate::digest::Digest;
use crate::distribute::{BuiltManifest, DistributeError, Sink};
use crate::load::Target;
use crate::reference::ImageReference;
use crate::registry::{RegistryClient, RegistryError};
use crate::sign::attach::SignError;
use crate::sign::cosign::Artifact;

/// One repository attachments are read from and written to.
pub struct Place<'a> {
    client: &'a RegistryClient,
    sink: Sink,
    repo: ImageReference,
}

impl<'a> Place<'a> {
    /// Connects to `target`'s repository (for ECR: finds or creates it).
    pub async fn open(client: &'a RegistryClient, target: &Target) -> Result<Self, SignError> {
        let sink = Sink::open(target, client)
            .await
            .map_err(|source| SignError::Target {
                reference: target.label(),
                action: "opening the repository",
                source: Box::new(source),
            })?;
        let repo =
            ImageReference::parse(&sink.name()).expect("a pushed target names a valid repository");
        Ok(Self { client, sink, repo })
    }

    /// The repository (`host/path`, no tag).
    pub fn repo(&self) -> &ImageReference {
        &self.repo
    }

    /// The client reads go through.
    pub fn client(&self) -> &RegistryClient {
        self.client
    }

    /// `tag` in this repository, and that reference as text.
    pub fn tagged(&self, tag: String) -> (ImageReference, String) {
        let reference = format!("{}:{tag}", self.repo.name());
        let tag_ref = ImageReference {
            tag: Some(tag),
            digest: None,
            ..self.repo.clone()
        };
        (tag_ref, reference)
    }

    /// The manifest `tag_ref` names (bytes and digest), `None` when the tag
    /// does not exist.
    pub async fn manifest(
        &self,
        tag_ref: &ImageReference,
    ) -> Result<Option<(Vec<u8>, Digest)>, RegistryError> {
        existing_manifest(self.client, tag_ref).await
    }

    /// Uploads the artifact's blobs, puts its manifest under `tag` and reads
    /// it back; returns the manifest digest.
    pub async fn push(&self, tag: &str, artifact: &Artifact) -> Result<Digest, SignError> {
        let reference = format!("{}:{tag}", self.repo.name());
        let fail = |action: &'static str| {
            let reference = reference.clone();
            move |source: DistributeError| SignError::Target {
                reference,
                action,
                source: Box::new(source),
            }
        };
        for blob in &artifact.blobs {
            self.upload_small(blob, &reference).await?;
        }
        let manifest = BuiltManifest {
            bytes: Bytes::from(artifact.manifest.clone()),
            digest: Digest::of(&artifact.manifest),
            config_digest: Digest::of(artifact.blobs.last().map_or(&[][..], |b| b)),
        };
        self.sink
            .put_manifest(tag, &manifest)
            .await
            .map_err(fail("pushing the manifest"))?;
        let back = self
            .sink
            .read_back(tag)
            .await
            .map_err(fail("reading the manifest back"))?;
        if back != manifest.digest {
            return Err(SignError::NotVerified {
                reference,
                sent: manifest.digest,
                found: back,
            });
        }
        Ok(manifest.digest)
    }

    /// Uploads `bytes` as a blob unless the repository has it.
    async fn upload_small(&self, bytes: &[u8], reference: &str) -> Result<(), SignError> {
        let digest = Digest::of(bytes);
        let fail = |action: &'static str| {
            move |source: DistributeError| SignError::Target {
                reference: reference.to_string(),
                action,
                source: Box::new(source),
            }
        };
        let present = self
            .sink
            .present(std::slice::from_ref(&digest))
            .await
            .map_err(fail("checking a signature blob"))?;
        if present.contains(&digest) {
            return Ok(());
        }
        let spool = |source| SignError::Spool {
            reference: reference.to_string(),
            source,
        };
        let mut file = tempfile::tempfile().map_err(spool)?;
        file.write_all(bytes).map_err(spool)?;
        file.rewind().map_err(spool)?;
        let sent = Arc::new(AtomicU64::new(0));
        self.sink
            .upload(&digest, bytes.len() as u64, &Arc::new(file), sent)
            .await
            .map_err(fail("uploading a signature blob"))
    }
}

/// The manifest `tag_ref` names (bytes and digest), `None` when it does not
/// exist.
pub(crate) async fn existing_manifest(
    client: &RegistryClient,
    tag_ref: &ImageReference,
) -> Result<Option<(Vec<u8>, Digest)>, RegistryError> {
    match client.get_manifest(tag_ref).await {
        Ok(m) => Ok(Some((m.bytes.to_vec(), m.digest))),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

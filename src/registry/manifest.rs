//! Manifests: `HEAD` for a claimed digest, `GET` with the digest computed
//! locally and checked against `Docker-Content-Digest` (and against the
//! requested digest when asking by digest), and platform resolution through
//! an index.

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderMap};

use super::RegistryClient;
use super::ecr::parse_ecr_host;
use super::error::RegistryError;
use super::media::{ACCEPTED_MANIFEST_TYPES, ManifestKind, manifest_kind, media_type_in_body};
use super::platform::{IndexDocument, Platform, platform_matches, select_platform};
use super::transport::Request;
use crate::digest::Digest;
use crate::reference::ImageReference;

const DIGEST_HEADER: &str = "docker-content-digest";

/// What a `HEAD` says about a manifest. The digest is the registry's claim:
/// fit for comparison, never for pinning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestHead {
    /// The registry's `Docker-Content-Digest` (verified locally for ECR).
    pub digest: Digest,
    /// The media type, when the registry sent a manifest type.
    pub media_type: Option<String>,
    /// The manifest size in bytes, when known.
    pub size: Option<u64>,
}

/// A manifest whose digest was computed from its bytes.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// sha256 of `bytes`.
    pub digest: Digest,
    /// The manifest media type.
    pub media_type: String,
    /// The exact bytes served.
    pub bytes: Bytes,
}

impl Manifest {
    /// Index or image manifest.
    pub fn kind(&self) -> Option<ManifestKind> {
        manifest_kind(&self.media_type)
    }
}

/// A reference resolved for one platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedManifest {
    /// The reference that was resolved, as asked.
    pub reference: ImageReference,
    /// The index digest, when the reference named an index / manifest list.
    pub index_digest: Option<Digest>,
    /// The digest of the single-platform image manifest.
    pub manifest_digest: Digest,
    /// The platform the index stated for the chosen manifest (`None` when
    /// the reference named a single-platform manifest directly).
    pub platform: Option<Platform>,
}

fn header_digest(
    headers: &HeaderMap,
    reference: &ImageReference,
) -> Result<Option<Digest>, RegistryError> {
    match headers.get(DIGEST_HEADER).and_then(|v| v.to_str().ok()) {
        Some(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|source| RegistryError::BadDigest {
                reference: reference.to_string(),
                source,
            }),
        None => Ok(None),
    }
}

fn check(
    reference: &ImageReference,
    expected: &Digest,
    expected_from: &'static str,
    actual: &Digest,
    actual_from: &'static str,
) -> Result<(), RegistryError> {
    if expected == actual {
        return Ok(());
    }
    Err(RegistryError::DigestMismatch {
        reference: reference.to_string(),
        expected_from,
        expected: expected.clone(),
        actual: actual.clone(),
        actual_from,
    })
}

impl RegistryClient {
    fn manifest_request<'a>(&self, r: &'a ImageReference, method: Method) -> Request<'a> {
        Request {
            what: "manifest",
            reference: r.to_string(),
            registry: &r.registry,
            repository: &r.repository,
            method,
            path: format!("{}/manifests/{}", r.repository, r.manifest_reference()),
            accept: Some(ACCEPTED_MANIFEST_TYPES.join(", ")),
        }
    }

    fn via_ecr_api(&self, r: &ImageReference) -> Option<super::ecr::EcrHost> {
        self.inner
            .config
            .ecr_via_api
            .then(|| parse_ecr_host(&r.registry))
            .flatten()
    }

    /// `HEAD` of a manifest: one request, the registry's digest claim. When
    /// `reference` has a digest, the claim must equal it.
    pub async fn head_manifest(
        &self,
        reference: &ImageReference,
    ) -> Result<ManifestHead, RegistryError> {
        if self.via_ecr_api(reference).is_some() {
            let m = self.get_manifest(reference).await?;
            return Ok(ManifestHead {
                size: Some(m.bytes.len() as u64),
                digest: m.digest,
                media_type: Some(m.media_type),
            });
        }
        let answer = self
            .inner
            .fetch(&self.manifest_request(reference, Method::HEAD))
            .await?;
        let digest = header_digest(&answer.headers, reference)?.ok_or_else(|| {
            RegistryError::MissingDigest {
                reference: reference.to_string(),
            }
        })?;
        if let Some(want) = &reference.digest {
            check(
                reference,
                want,
                "requested digest",
                &digest,
                "Docker-Content-Digest header",
            )?;
        }
        let media_type = answer
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .filter(|t| manifest_kind(t).is_some())
            .map(str::to_string);
        let size = answer
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        Ok(ManifestHead {
            digest,
            media_type,
            size,
        })
    }

    /// `GET` of a manifest. Its digest is computed from the bytes; it must
    /// equal the requested digest (if any) and the registry's reported digest
    /// (if any), or the call fails with [`RegistryError::DigestMismatch`].
    pub async fn get_manifest(
        &self,
        reference: &ImageReference,
    ) -> Result<Manifest, RegistryError> {
        let (bytes, content_type, reported, reported_from) =
            if let Some(host) = self.via_ecr_api(reference) {
                self.inner
                    .requests
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let m = self
                    .inner
                    .auth
                    .ecr
                    .batch_get_manifest(&host, reference)
                    .await?;
                (
                    Bytes::from(m.bytes),
                    m.media_type,
                    m.reported_digest,
                    "ECR imageDigest",
                )
            } else {
                let answer = self
                    .inner
                    .fetch(&self.manifest_request(reference, Method::GET))
                    .await?;
                let reported = header_digest(&answer.headers, reference)?;
                let ct = answer
                    .headers
                    .get(CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                (answer.body, ct, reported, "Docker-Content-Digest header")
            };
        let digest = Digest::of(&bytes);
        if let Some(want) = &reference.digest {
            check(
                reference,
                want,
                "requested digest",
                &digest,
                "computed from the bytes",
            )?;
        }
        if let Some(claim) = &reported {
            check(
                reference,
                claim,
                reported_from,
                &digest,
                "computed from the bytes",
            )?;
        }
        let media_type = content_type
            .filter(|t| manifest_kind(t).is_some())
            .or_else(|| media_type_in_body(&bytes))
            .unwrap_or_default();
        if manifest_kind(&media_type).is_none() {
            return Err(RegistryError::UnsupportedMediaType {
                reference: reference.to_string(),
                media_type,
            });
        }
        Ok(Manifest {
            digest,
            media_type,
            bytes,
        })
    }

    /// The platform a single-platform manifest's config states (`os` and
    /// `architecture`, `variant` when given); `None` when it states none.
    async fn image_platform(
        &self,
        reference: &ImageReference,
        manifest: &[u8],
    ) -> Result<Option<Platform>, RegistryError> {
        use futures_util::StreamExt as _;
        #[derive(serde::Deserialize)]
        struct Config {
            digest: Digest,
        }
        #[derive(serde::Deserialize)]
        struct Doc {
            config: Config,
        }
        let parse = |source| RegistryError::ManifestParse {
            reference: reference.to_string(),
            source,
        };
        let doc: Doc = serde_json::from_slice(manifest).map_err(parse)?;
        let mut blob = self.get_blob(reference, &doc.config.digest).await?;
        let mut bytes = Vec::new();
        while let Some(chunk) = blob.next().await {
            bytes.extend_from_slice(&chunk?);
        }
        let stated: Option<Platform> = serde_json::from_slice(&bytes).ok();
        Ok(stated.filter(|p| !p.os.is_empty() && !p.architecture.is_empty()))
    }

    /// Resolves `reference` for `platform`: a single-platform manifest is
    /// taken when its config states that platform (or none), else refused;
    /// an index is searched for the platform and the chosen
    /// manifest fetched by digest (and so verified).
    pub async fn resolve_platform(
        &self,
        reference: &ImageReference,
        platform: &Platform,
    ) -> Result<ResolvedManifest, RegistryError> {
        let top = self.get_manifest(reference).await?;
        if top.kind() == Some(ManifestKind::Image) {
            // Through the ECR API there is no blob read here (kiln reads
            // ECR manifests with BatchGetImage): the build checks there.
            let own = match self.via_ecr_api(reference) {
                Some(_) => None,
                None => self.image_platform(reference, &top.bytes).await?,
            };
            if let Some(p) = own.as_ref().filter(|p| !platform_matches(p, platform)) {
                // Never pin (and build on) another platform's image silently.
                return Err(RegistryError::NoMatchingPlatform {
                    reference: reference.to_string(),
                    platform: platform.to_string(),
                    available: vec![p.to_string()],
                });
            }
            return Ok(ResolvedManifest {
                reference: reference.clone(),
                index_digest: None,
                manifest_digest: top.digest,
                platform: own,
            });
        }
        let index: IndexDocument =
            serde_json::from_slice(&top.bytes).map_err(|source| RegistryError::ManifestParse {
                reference: reference.to_string(),
                source,
            })?;
        let Some(entry) = select_platform(&index.manifests, platform) else {
            return Err(RegistryError::NoMatchingPlatform {
                reference: reference.to_string(),
                platform: platform.to_string(),
                available: index
                    .manifests
                    .iter()
                    .filter_map(|m| m.platform.as_ref().map(|p| p.to_string()))
                    .collect(),
            });
        };
        let child_ref = reference.pinned(entry.digest.clone());
        let child = self.get_manifest(&child_ref).await?;
        if child.kind() != Some(ManifestKind::Image) {
            return Err(RegistryError::UnsupportedMediaType {
                reference: child_ref.to_string(),
                media_type: child.media_type,
            });
        }
        Ok(ResolvedManifest {
            reference: reference.clone(),
            index_digest: Some(top.digest),
            manifest_digest: child.digest,
            platform: entry.platform.clone(),
        })
    }
}

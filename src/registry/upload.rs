//! Pushing: blob uploads (monolithic `POST`+`PUT` for small blobs, `POST` +
//! streaming `PATCH` + `PUT` with resume from the registry's `Range` for large
//! ones), cross-repository mounts, and manifest `PUT`s.
//!
//! Upload bodies are streamed from files, never held in memory. Requests ask
//! for `pull,push` scope; a 401 is answered through the same auth state as
//! reads.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use reqwest::header::{CONTENT_RANGE, CONTENT_TYPE};
use reqwest::{Method, StatusCode};

use super::RegistryClient;
use super::error::{ErrorCode, RegistryError};
use super::retry::{is_retryable_error, is_retryable_status};
use crate::digest::Digest;
use crate::reference::ImageReference;

use super::push_request::Body;

/// Blobs up to this size go in one `PUT`; larger ones are `PATCH`ed so a
/// broken connection can resume from the registry's `Range`.
pub const MONOLITHIC_MAX: u64 = 4 * 1024 * 1024;

/// What one blob upload did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UploadOutcome {
    /// Body bytes sent, retries and resumed parts included.
    pub bytes_sent: u64,
    /// Times the upload resumed (or restarted) after a failure.
    pub resumes: u32,
}

impl RegistryClient {
    /// `POST /v2/<repo>/blobs/uploads/`: the upload URL.
    pub(super) async fn start_upload(
        &self,
        repo: &ImageReference,
        reference: &str,
    ) -> Result<String, RegistryError> {
        let url = format!(
            "{}/v2/{}/blobs/uploads/",
            self.base_url(&repo.registry),
            repo.repository
        );
        let resp = self
            .push_request(repo, "blob upload", Method::POST, &url, &[], &Body::Empty)
            .await?;
        self.upload_location(repo, reference, resp).await
    }

    /// Mounts `digest` from repository `from` of the same registry. `Ok(true)`
    /// when the registry mounted it; `Ok(false)` when it declined (the
    /// upload session it opened instead is cancelled).
    pub async fn mount_blob(
        &self,
        repo: &ImageReference,
        digest: &Digest,
        from: &str,
    ) -> Result<bool, RegistryError> {
        let url = format!(
            "{}/v2/{}/blobs/uploads/?mount={digest}&from={from}",
            self.base_url(&repo.registry),
            repo.repository
        );
        let resp = self
            .push_request(repo, "blob mount", Method::POST, &url, &[], &Body::Empty)
            .await?;
        match resp.status() {
            StatusCode::CREATED => Ok(true),
            StatusCode::ACCEPTED => {
                if let Ok(loc) = self.location(repo, &resp, "blob mount") {
                    let _ = self
                        .push_request(repo, "blob upload", Method::DELETE, &loc, &[], &Body::Empty)
                        .await;
                }
                Ok(false)
            }
            _ => Err(self
                .status_error("blob mount", format!("{}@{digest}", repo.name()), resp)
                .await),
        }
    }

    /// Uploads `file` (exactly `size` bytes hashing to `digest`)
    /// as a blob of `repo`. Small blobs go in one `PUT`; large ones are
    /// `PATCH`ed and, after a broken connection or 5xx, resumed from the
    /// offset the registry reports (or restarted when it lost the session),
    /// up to the client's retry policy. A digest the registry rejects is
    /// retried too (the file is re-read), then reported.
    pub async fn upload_blob_file(
        &self,
        repo: &ImageReference,
        digest: &Digest,
        size: u64,
        file: &Arc<std::fs::File>,
        sent: Arc<AtomicU64>,
    ) -> Result<UploadOutcome, RegistryError> {
        let reference = format!("{}@{digest}", repo.name());
        let policy = self.inner.config.retry.clone();
        let max = policy.max_attempts.max(1);
        let before = sent.load(Ordering::Relaxed);
        let mut resumes = 0u32;
        let mut session: Option<String> = None;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let result = self
                .upload_attempt(repo, &reference, digest, size, file, &sent, &mut session)
                .await;
            match result {
                Ok(()) => {
                    return Ok(UploadOutcome {
                        bytes_sent: sent.load(Ordering::Relaxed) - before,
                        resumes,
                    });
                }
                Err(e) if attempt < max && retryable(&e) => {
                    tracing::debug!(%reference, attempt, error = %e, "blob upload failed; resuming");
                    if matches!(
                        e.code(),
                        Some(
                            ErrorCode::DigestInvalid
                                | ErrorCode::BlobUploadUnknown
                                | ErrorCode::BlobUploadInvalid
                                | ErrorCode::SizeInvalid
                        )
                    ) {
                        session = None;
                    }
                    resumes += 1;
                    tokio::time::sleep(policy.delay(attempt, e.retry_after())).await;
                }
                Err(mut e) => {
                    if let RegistryError::Status { attempts, .. }
                    | RegistryError::Transport { attempts, .. } = &mut e
                    {
                        *attempts = attempt;
                    }
                    return Err(e);
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn upload_attempt(
        &self,
        repo: &ImageReference,
        reference: &str,
        digest: &Digest,
        size: u64,
        file: &Arc<std::fs::File>,
        sent: &Arc<AtomicU64>,
        session: &mut Option<String>,
    ) -> Result<(), RegistryError> {
        // Where to continue: ask the registry how much of an open session it has.
        let mut offset = 0;
        if let Some(loc) = session.clone() {
            match self.upload_status(repo, reference, &loc).await {
                Ok(Some((next, at))) => {
                    offset = at;
                    *session = Some(next);
                }
                _ => *session = None,
            }
        }
        let mut loc = match session.clone() {
            Some(l) => l,
            None => {
                let l = self.start_upload(repo, reference).await?;
                *session = Some(l.clone());
                offset = 0;
                l
            }
        };
        let octet = ("content-type", "application/octet-stream".to_string());
        if size > MONOLITHIC_MAX && offset < size {
            let body = Body::File {
                file,
                offset,
                len: size - offset,
                sent: sent.clone(),
            };
            let range = (CONTENT_RANGE.as_str(), format!("{offset}-{}", size - 1));
            let resp = self
                .push_request(
                    repo,
                    "blob upload",
                    Method::PATCH,
                    &loc,
                    &[octet.clone(), range],
                    &body,
                )
                .await?;
            loc = self.upload_location(repo, reference, resp).await?;
            *session = Some(loc.clone());
            offset = size;
        }
        let sep = if loc.contains('?') { '&' } else { '?' };
        let url = format!("{loc}{sep}digest={digest}");
        let body = if offset < size {
            Body::File {
                file,
                offset,
                len: size - offset,
                sent: sent.clone(),
            }
        } else {
            Body::Empty
        };
        let resp = self
            .push_request(repo, "blob upload", Method::PUT, &url, &[octet], &body)
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(self
                .status_error("blob upload", reference.to_string(), resp)
                .await);
        }
        *session = None;
        Ok(())
    }

    /// `GET <upload url>`: the refreshed URL and the next offset to send, or
    /// `None` when the registry no longer knows the session.
    async fn upload_status(
        &self,
        repo: &ImageReference,
        reference: &str,
        loc: &str,
    ) -> Result<Option<(String, u64)>, RegistryError> {
        let resp = self
            .push_request(repo, "blob upload", Method::GET, loc, &[], &Body::Empty)
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if resp.status() != StatusCode::NO_CONTENT {
            return Err(self
                .status_error("blob upload", reference.to_string(), resp)
                .await);
        }
        let next = self
            .location(repo, &resp, "blob upload")
            .unwrap_or_else(|_| loc.to_string());
        let at = resp
            .headers()
            .get("range")
            .and_then(|v| v.to_str().ok())
            .and_then(|r| r.split_once('-'))
            .and_then(|(_, end)| end.trim().parse::<u64>().ok())
            .map(|end| end + 1)
            .unwrap_or(0);
        Ok(Some((next, at)))
    }

    /// `PUT`s `bytes` as the manifest `reference` (tag or digest) with
    /// `media_type`, retrying transport errors and 5xx. Returns the
    /// registry's `Docker-Content-Digest`, when sent.
    pub async fn put_manifest(
        &self,
        reference: &ImageReference,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<Option<Digest>, RegistryError> {
        let url = format!(
            "{}/v2/{}/manifests/{}",
            self.base_url(&reference.registry),
            reference.repository,
            reference.manifest_reference()
        );
        let policy = self.inner.config.retry.clone();
        let max = policy.max_attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self
                .push_request(
                    reference,
                    "manifest",
                    Method::PUT,
                    &url,
                    &[(CONTENT_TYPE.as_str(), media_type.to_string())],
                    &Body::Bytes(bytes.clone()),
                )
                .await;
            let err = match result {
                Ok(resp) if resp.status() == StatusCode::CREATED => {
                    return resp
                        .headers()
                        .get("docker-content-digest")
                        .and_then(|v| v.to_str().ok())
                        .map(|v| {
                            v.trim().parse().map_err(|source| RegistryError::BadDigest {
                                reference: reference.to_string(),
                                source,
                            })
                        })
                        .transpose();
                }
                Ok(resp) => {
                    self.status_error("manifest", reference.to_string(), resp)
                        .await
                }
                Err(e) => e,
            };
            let throttled = err.code() == Some(&ErrorCode::TooManyRequests);
            if attempt < max && retryable(&err) && (err.code().is_none() || throttled) {
                tokio::time::sleep(policy.delay(attempt, err.retry_after())).await;
                continue;
            }
            return Err(err);
        }
    }

    /// `DELETE`s the manifest `reference` (a tag: OCI 1.1 tag deletion; a
    /// digest: the manifest and every tag on it). `Ok(false)` when the
    /// registry does not support it (405, or distribution 2.x's 400
    /// `DIGEST_INVALID`/`UNSUPPORTED` for a tag); other failures are errors.
    pub async fn delete_manifest(&self, reference: &ImageReference) -> Result<bool, RegistryError> {
        let url = format!(
            "{}/v2/{}/manifests/{}",
            self.base_url(&reference.registry),
            reference.repository,
            reference.manifest_reference()
        );
        let resp = self
            .push_request(
                reference,
                "manifest",
                Method::DELETE,
                &url,
                &[],
                &Body::Empty,
            )
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::METHOD_NOT_ALLOWED => Ok(false),
            _ => match self
                .status_error("manifest", reference.to_string(), resp)
                .await
            {
                RegistryError::Status {
                    status: 400,
                    code: Some(ErrorCode::DigestInvalid | ErrorCode::Unsupported),
                    ..
                } => Ok(false),
                e => Err(e),
            },
        }
    }
}

/// Whether an upload failure is worth another attempt.
fn retryable(e: &RegistryError) -> bool {
    match e {
        RegistryError::Stalled { .. } => true,
        RegistryError::Transport { source, .. } => is_retryable_error(source),
        RegistryError::Status { status, code, .. } => {
            is_retryable_status(StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST))
                || matches!(
                    code,
                    Some(
                        ErrorCode::DigestInvalid
                            | ErrorCode::BlobUploadUnknown
                            | ErrorCode::BlobUploadInvalid
                    )
                )
        }
        _ => false,
    }
}

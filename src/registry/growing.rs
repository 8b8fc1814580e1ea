//! Uploading a blob while it is still being written (a layer being
//! compressed): `POST`, then one `PATCH` per [`GROWING_CHUNK`] as the file
//! grows, then `PUT ?digest=` once the writer knows the digest. No retries:
//! a failure is returned, and the caller uploads the finished file the usual
//! way ([`RegistryClient::upload_blob_file`], with resume).

use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use reqwest::header::CONTENT_RANGE;
use reqwest::{Method, StatusCode};
use tokio::sync::watch;

use super::RegistryClient;
use super::error::RegistryError;
use super::push_request::Body;
use crate::digest::Digest;
use crate::reference::ImageReference;

/// Bytes a `PATCH` waits for before it is sent (the last one may be shorter).
pub const GROWING_CHUNK: u64 = 8 * 1024 * 1024;

/// How far the writer of a growing blob is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Growth {
    /// This many bytes are in the file (readable at their offsets).
    Writing(u64),
    /// The file is complete: `size` bytes hashing to `digest`.
    Done {
        /// The blob's digest.
        digest: Digest,
        /// The blob's size.
        size: u64,
    },
    /// The writer gave up, or the blob is not wanted after all.
    Abandoned,
}

/// A blob being written to `file`, and the writer's progress.
#[derive(Debug, Clone)]
pub struct GrowingBlob {
    /// The file the writer appends to.
    pub file: Arc<File>,
    /// The writer's progress.
    pub growth: watch::Receiver<Growth>,
}

impl GrowingBlob {
    /// Waits until `GROWING_CHUNK` bytes past `offset` are written, or the
    /// writer ends. `None`: abandoned (or the writer vanished).
    async fn next_end(&mut self, offset: u64) -> Option<(u64, Option<Digest>)> {
        let ready = |g: &Growth| match g {
            Growth::Writing(n) => *n >= offset + GROWING_CHUNK,
            _ => true,
        };
        let g = self.growth.wait_for(ready).await.ok()?.clone();
        match g {
            Growth::Writing(n) => Some((n, None)),
            Growth::Done { digest, size } => Some((size, Some(digest))),
            Growth::Abandoned => None,
        }
    }
}

impl RegistryClient {
    /// Uploads `blob` to `repo` as it is written. `Ok(Some(digest))` once
    /// the registry committed it; `Ok(None)` when the writer abandoned it
    /// (the upload session is cancelled).
    pub async fn upload_growing_blob(
        &self,
        repo: &ImageReference,
        mut blob: GrowingBlob,
        sent: Arc<AtomicU64>,
    ) -> Result<Option<Digest>, RegistryError> {
        let what = "blob upload";
        let reference = format!("{}@(streamed)", repo.name());
        let mut loc = self.start_upload(repo, &reference).await?;
        let mut offset = 0;
        loop {
            let Some((end, digest)) = blob.next_end(offset).await else {
                let _ = self
                    .push_request(repo, what, Method::DELETE, &loc, &[], &Body::Empty)
                    .await;
                return Ok(None);
            };
            if end > offset {
                loc = self
                    .patch_range(repo, &reference, &loc, &blob.file, (offset, end), &sent)
                    .await?;
                offset = end;
            }
            let Some(digest) = digest else { continue };
            let sep = if loc.contains('?') { '&' } else { '?' };
            let url = format!("{loc}{sep}digest={digest}");
            let resp = self
                .push_request(repo, what, Method::PUT, &url, &[], &Body::Empty)
                .await?;
            if resp.status() != StatusCode::CREATED {
                return Err(self.status_error(what, reference, resp).await);
            }
            return Ok(Some(digest));
        }
    }

    /// `PATCH`es bytes `start..end` of `file`; returns the next upload URL.
    async fn patch_range(
        &self,
        repo: &ImageReference,
        reference: &str,
        loc: &str,
        file: &Arc<File>,
        (start, end): (u64, u64),
        sent: &Arc<AtomicU64>,
    ) -> Result<String, RegistryError> {
        let headers = [
            ("content-type", "application/octet-stream".to_string()),
            (CONTENT_RANGE.as_str(), format!("{start}-{}", end - 1)),
        ];
        let body = Body::File {
            file,
            offset: start,
            len: end - start,
            sent: sent.clone(),
        };
        let resp = self
            .push_request(repo, "blob upload", Method::PATCH, loc, &headers, &body)
            .await?;
        self.upload_location(repo, reference, resp).await
    }
}

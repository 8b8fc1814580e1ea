//! Blobs: existence checks (`HEAD`) and verified streaming downloads.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use reqwest::Method;

use super::RegistryClient;
use super::error::RegistryError;
use super::transport::Request;
use crate::digest::{Digest, DigestWriter};
use crate::reference::ImageReference;

/// A blob download. Yields chunks; after the last chunk it checks the digest
/// and yields a [`RegistryError::DigestMismatch`] instead of ending cleanly
/// if the bytes do not hash to the requested digest.
pub struct BlobStream {
    inner: Pin<Box<dyn Stream<Item = Result<Bytes, reqwest::Error>> + Send>>,
    hasher: Option<DigestWriter>,
    expected: Digest,
    reference: String,
    /// `Content-Length`, when the registry sent one.
    pub size: Option<u64>,
}

impl Stream for BlobStream {
    type Item = Result<Bytes, RegistryError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(hasher) = this.hasher.as_mut() else {
            return Poll::Ready(None);
        };
        match this.inner.poll_next_unpin(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                hasher.update(&chunk);
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(source))) => {
                this.hasher = None;
                Poll::Ready(Some(Err(RegistryError::Transport {
                    what: "blob",
                    reference: this.reference.clone(),
                    attempts: 1,
                    source,
                })))
            }
            Poll::Ready(None) => {
                let (actual, _) = this.hasher.take().expect("checked above").finish();
                if actual == this.expected {
                    Poll::Ready(None)
                } else {
                    Poll::Ready(Some(Err(RegistryError::DigestMismatch {
                        reference: this.reference.clone(),
                        expected_from: "requested digest",
                        expected: this.expected.clone(),
                        actual,
                        actual_from: "computed from the bytes",
                    })))
                }
            }
        }
    }
}

impl RegistryClient {
    fn blob_request<'a>(
        &self,
        repo: &'a ImageReference,
        digest: &Digest,
        method: Method,
    ) -> Request<'a> {
        Request {
            what: "blob",
            reference: format!("{}@{digest}", repo.name()),
            registry: &repo.registry,
            repository: &repo.repository,
            method,
            path: format!("{}/blobs/{digest}", repo.repository),
            accept: None,
        }
    }

    /// Whether the repository of `repo` (its tag and digest are ignored) has
    /// the blob `digest`. A 404 is `Ok(false)`; other failures are errors.
    pub async fn blob_exists(
        &self,
        repo: &ImageReference,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        match self
            .inner
            .fetch(&self.blob_request(repo, digest, Method::HEAD))
            .await
        {
            Ok(_) => Ok(true),
            Err(RegistryError::Status { status: 404, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Streams the blob `digest` from the repository of `repo`. Retries cover
    /// getting the response; the stream itself is not resumed on failure.
    pub async fn get_blob(
        &self,
        repo: &ImageReference,
        digest: &Digest,
    ) -> Result<BlobStream, RegistryError> {
        let req = self.blob_request(repo, digest, Method::GET);
        let resp = self.inner.open(&req).await?;
        Ok(BlobStream {
            size: resp.content_length(),
            inner: Box::pin(resp.bytes_stream()),
            hasher: Some(DigestWriter::new()),
            expected: digest.clone(),
            reference: req.reference,
        })
    }
}

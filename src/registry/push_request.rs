//! The request plumbing of pushes: URLs, `Location` handling, bodies
//! streamed from files with positional reads, and one request with push
//! scope that answers a 401 through the shared auth state.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_LENGTH, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode};

use super::RegistryClient;
use super::challenge::parse_challenges;
use super::config::scheme_for;
use super::error::{RegistryError, parse_error_envelope};
use crate::reference::ImageReference;

/// A request body source: the request is rebuilt for every attempt.
pub(crate) enum Body<'a> {
    Empty,
    Bytes(Bytes),
    File {
        file: &'a Arc<std::fs::File>,
        offset: u64,
        len: u64,
        sent: Arc<AtomicU64>,
    },
}

fn api_host(registry: &str) -> &str {
    if registry == crate::reference::DOCKER_HUB {
        "registry-1.docker.io"
    } else {
        registry
    }
}

/// Streams `len` bytes of `file` from `offset` with positional reads (no
/// shared cursor, so every attempt can build its own body).
pub(crate) fn file_body(
    file: Arc<std::fs::File>,
    offset: u64,
    len: u64,
    sent: Arc<AtomicU64>,
) -> reqwest::Body {
    const CHUNK: u64 = 256 * 1024;
    let stream = futures_util::stream::try_unfold(offset, move |at| {
        let file = file.clone();
        let sent = sent.clone();
        async move {
            let end = offset + len;
            if at >= end {
                return Ok(None);
            }
            let want = CHUNK.min(end - at) as usize;
            let chunk = tokio::task::spawn_blocking(move || {
                use std::os::unix::fs::FileExt;
                let mut buf = vec![0u8; want];
                file.read_exact_at(&mut buf, at).map(|()| buf)
            })
            .await
            .map_err(std::io::Error::other)??;
            sent.fetch_add(want as u64, Ordering::Relaxed);
            Ok::<_, std::io::Error>(Some((Bytes::from(chunk), at + want as u64)))
        }
    });
    reqwest::Body::wrap_stream(stream)
}

impl RegistryClient {
    pub(crate) fn base_url(&self, registry: &str) -> String {
        format!(
            "{}://{}",
            scheme_for(registry, &self.inner.config).as_str(),
            api_host(registry)
        )
    }

    pub(crate) fn absolute(&self, registry: &str, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else {
            format!("{}{location}", self.base_url(registry))
        }
    }

    /// One request with push scope: answers a 401 once through the auth
    /// state, no other retries (callers decide, since bodies are streams).
    pub(crate) async fn push_request(
        &self,
        repo: &ImageReference,
        what: &'static str,
        method: Method,
        url: &str,
        headers: &[(&'static str, String)],
        body: &Body<'_>,
    ) -> Result<Response, RegistryError> {
        let scope = format!("repository:{}:pull,push", repo.repository);
        let mut auth = self.inner.auth.cached(&repo.registry, &scope).await;
        let mut refreshed = false;
        loop {
            self.inner.requests.fetch_add(1, Ordering::Relaxed);
            let mut rb = self.inner.http.request(method.clone(), url);
            for (k, v) in headers {
                rb = rb.header(*k, v);
            }
            if let Some(a) = &auth {
                rb = rb.header(AUTHORIZATION, a);
            }
            rb = match body {
                Body::Empty => rb.header(CONTENT_LENGTH, "0"),
                Body::Bytes(b) => rb.body(b.clone()),
                Body::File {
                    file,
                    offset,
                    len,
                    sent,
                } => rb.header(CONTENT_LENGTH, len.to_string()).body(file_body(
                    (*file).clone(),
                    *offset,
                    *len,
                    sent.clone(),
                )),
            };
            let resp = rb.send().await.map_err(|source| RegistryError::Transport {
                what,
                reference: url.to_string(),
                attempts: 1,
                source,
            })?;
            if resp.status() == StatusCode::UNAUTHORIZED && !refreshed {
                refreshed = true;
                let challenges = resp
                    .headers()
                    .get_all(WWW_AUTHENTICATE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(parse_challenges)
                    .collect::<Vec<_>>();
                let got = self
                    .inner
                    .auth
                    .authorize(
                        &self.inner.http,
                        &self.inner.requests,
                        &self.inner.config,
                        &repo.registry,
                        &scope,
                        &challenges,
                        auth.is_some(),
                    )
                    .await?;
                if let Some(a) = got {
                    auth = Some(a.header);
                    continue;
                }
            }
            return Ok(resp);
        }
    }

    pub(crate) async fn status_error(
        what: &'static str,
        reference: String,
        resp: Response,
    ) -> RegistryError {
        let status = resp.status().as_u16();
        let body = super::transport::read_limited(resp, super::transport::MAX_ERROR_BODY)
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        let first = parse_error_envelope(&body).into_iter().next();
        RegistryError::Status {
            what,
            reference,
            status,
            code: first.as_ref().map(|e| e.code.clone()),
            message: first.map(|e| e.message).unwrap_or_default(),
            attempts: 1,
        }
    }

    pub(crate) fn location(
        &self,
        repo: &ImageReference,
        resp: &Response,
        what: &'static str,
    ) -> Result<String, RegistryError> {
        resp.headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(|l| self.absolute(&repo.registry, l))
            .ok_or_else(|| RegistryError::Status {
                what,
                reference: repo.name(),
                status: resp.status().as_u16(),
                code: None,
                message: "the answer has no Location header".into(),
                attempts: 1,
            })
    }
}

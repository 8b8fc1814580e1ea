//! The request plumbing of pushes: URLs, `Location` handling (the rule is in
//! `location.rs`), bodies streamed from files with positional reads, and one
//! request with push scope that answers a 401 through the shared auth state
//! and gives up when it makes no progress for `idle_timeout`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_LENGTH, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode};

use super::RegistryClient;
use super::challenge::parse_challenges;
use super::config::scheme_for;
use super::error::{RegistryError, parse_error_envelope};
use super::location;
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
/// shared cursor, so every attempt can build its own body). Each chunk
/// taken is added to `sent` (shared tallies) and `progress` (this request's).
pub(crate) fn file_body(
    file: Arc<std::fs::File>,
    offset: u64,
    len: u64,
    sent: Arc<AtomicU64>,
    progress: Arc<AtomicU64>,
) -> reqwest::Body {
    const CHUNK: u64 = 256 * 1024;
    let stream = futures_util::stream::try_unfold(offset, move |at| {
        let file = file.clone();
        let (sent, progress) = (sent.clone(), progress.clone());
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
            progress.fetch_add(want as u64, Ordering::Relaxed);
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

    /// One request with push scope: answers a 401 once through the auth
    /// state, no other retries (callers decide, since bodies are streams).
    /// `Authorization` goes only to the registry's own origin; a `Location`
    /// elsewhere gets the request without it.
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
        let own_origin = location::same_origin(url, &self.base_url(&repo.registry));
        let mut auth = match own_origin {
            true => self.inner.auth.cached(&repo.registry, &scope).await,
            false => None,
        };
        let mut refreshed = !own_origin;
        loop {
            self.inner.requests.fetch_add(1, Ordering::Relaxed);
            let mut rb = self.inner.push_http.request(method.clone(), url);
            for (k, v) in headers {
                rb = rb.header(*k, v);
            }
            if let Some(a) = &auth {
                rb = rb.header(AUTHORIZATION, a);
            }
            let progress = Arc::new(AtomicU64::new(0));
            rb = self.with_body(rb, body, &progress);
            let watched = matches!(body, Body::File { .. }).then_some(&*progress);
            let resp = self
                .send_watched(rb, watched, what, url)
                .await?
                .map_err(|source| RegistryError::Transport {
                    what,
                    reference: location::redacted(url),
                    attempts: 1,
                    source: source.without_url(),
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

    /// `rb` with `body` and its time bound; a file body also counts the
    /// bytes taken into `progress`, which [`Self::send_watched`] watches.
    fn with_body(
        &self,
        rb: reqwest::RequestBuilder,
        body: &Body<'_>,
        progress: &Arc<AtomicU64>,
    ) -> reqwest::RequestBuilder {
        let config = &self.inner.config;
        match body {
            // An empty body may be the commit of a large upload: the
            // registry's work, so the idle bound, not the request bound.
            Body::Empty => rb.header(CONTENT_LENGTH, "0").timeout(config.idle_timeout),
            Body::Bytes(b) => rb.body(b.clone()).timeout(config.request_timeout),
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
                progress.clone(),
            )),
        }
    }

    /// Sends `rb`; gives up with [`RegistryError::Stalled`] when, for a
    /// whole `idle_timeout`, no answer came and `progress` (body bytes
    /// taken) did not move. Without `progress` the request's own timeout
    /// bounds it.
    async fn send_watched(
        &self,
        rb: reqwest::RequestBuilder,
        progress: Option<&AtomicU64>,
        what: &'static str,
        url: &str,
    ) -> Result<Result<Response, reqwest::Error>, RegistryError> {
        let idle = self.inner.config.idle_timeout;
        let send = rb.send();
        tokio::pin!(send);
        let Some(progress) = progress else {
            return Ok(send.await);
        };
        let mut last = progress.load(Ordering::Relaxed);
        loop {
            tokio::select! {
                answer = &mut send => return Ok(answer),
                () = tokio::time::sleep(idle) => {
                    let now = progress.load(Ordering::Relaxed);
                    if now == last {
                        return Err(RegistryError::Stalled {
                            what,
                            reference: location::redacted(url),
                            idle,
                        });
                    }
                    last = now;
                }
            }
        }
    }

    /// The error for a failed answer: status, the first envelope entry and
    /// `Retry-After`. The body read is bounded in size and time.
    pub(crate) async fn status_error(
        &self,
        what: &'static str,
        reference: String,
        resp: Response,
    ) -> RegistryError {
        let status = resp.status().as_u16();
        let retry_after = super::transport::retry_after_of(resp.headers());
        let body = tokio::time::timeout(
            self.inner.config.request_timeout,
            super::transport::read_limited(resp, super::transport::MAX_ERROR_BODY),
        )
        .await
        .ok()
        .and_then(Result::ok)
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
            retry_after,
        }
    }

    /// The answer to an upload step (`POST`, `PATCH`): `202 Accepted` with
    /// the session's next location, else the registry's error.
    pub(crate) async fn upload_location(
        &self,
        repo: &ImageReference,
        reference: &str,
        resp: Response,
    ) -> Result<String, RegistryError> {
        if resp.status() != StatusCode::ACCEPTED {
            return Err(self
                .status_error("blob upload", reference.to_string(), resp)
                .await);
        }
        self.location(repo, &resp, "blob upload")
    }

    pub(crate) fn location(
        &self,
        repo: &ImageReference,
        resp: &Response,
        what: &'static str,
    ) -> Result<String, RegistryError> {
        let found = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| RegistryError::Status {
                what,
                reference: repo.name(),
                status: resp.status().as_u16(),
                code: None,
                message: "the answer has no Location header".into(),
                attempts: 1,
                retry_after: None,
            })?;
        location::resolve(
            &repo.registry,
            what,
            &self.base_url(&repo.registry),
            found,
            &self.inner.config,
        )
    }
}

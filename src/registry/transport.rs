//! One request, done right: scheme choice, auth on 401 (at most one refresh),
//! bounded retries with backoff on 429/5xx/timeouts/resets, error envelopes
//! turned into [`RegistryError::Status`], and every attempt counted.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode};

use super::auth::AuthState;
use super::challenge::parse_challenges;
use super::config::{RegistryConfig, scheme_for};
use super::error::{RegistryError, parse_error_envelope};
use super::retry::{is_retryable_error, is_retryable_status, parse_retry_after};

/// Shared state behind a [`RegistryClient`](super::RegistryClient).
pub(crate) struct Inner {
    /// Reads and token fetches: `idle_timeout` from sending to the first
    /// byte and between body reads.
    pub(crate) http: reqwest::Client,
    /// Pushes: no client read timeout (it would run from the start of a long
    /// upload); `push_request` watches progress instead.
    pub(crate) push_http: reqwest::Client,
    pub(crate) config: RegistryConfig,
    pub(crate) auth: AuthState,
    /// Every HTTP request and ECR API call made, retries and token fetches
    /// included; read by benchmarks and tests.
    pub(crate) requests: AtomicU64,
    /// Shared lookups (`lookup.rs`).
    pub(crate) lookups: super::lookup::Lookups,
    /// Rate-limit pauses per host (`throttle.rs`), honoured by every request.
    pub(crate) throttle: super::throttle::Throttle,
}

/// What to send.
pub(crate) struct Request<'a> {
    /// `manifest` or `blob`, for error messages.
    pub(crate) what: &'static str,
    /// The reference as shown in errors.
    pub(crate) reference: String,
    pub(crate) registry: &'a str,
    pub(crate) repository: &'a str,
    pub(crate) method: Method,
    /// Path after `/v2/`, e.g. `kiln/base/manifests/1`.
    pub(crate) path: String,
    pub(crate) accept: Option<String>,
}

/// A successful answer with its body read.
pub(crate) struct Answer {
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

enum Sent {
    Buffered(Answer),
    Open(Response),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum AuthStage {
    /// Nothing sent yet, or an unverified cached value.
    Initial,
    /// Sent a value that a refresh might improve.
    Stale,
    /// Sent the best value there is; another 401 is final.
    Final,
}

/// Maps `docker.io` to the host that serves its API.
fn api_host(registry: &str) -> &str {
    if registry == crate::reference::DOCKER_HUB {
        "registry-1.docker.io"
    } else {
        registry
    }
}

impl Inner {
    /// Sends `req` and reads the whole body inside the retry loop, so a
    /// connection reset mid-body is retried like any other transport error.
    pub(crate) async fn fetch(&self, req: &Request<'_>) -> Result<Answer, RegistryError> {
        match self.send(req, true).await? {
            Sent::Buffered(answer) => Ok(answer),
            Sent::Open(_) => unreachable!("send(buffer = true) always buffers"),
        }
    }

    /// Sends `req` and returns the response once its status is a success;
    /// the body is left to the caller (blob streams).
    pub(crate) async fn open(&self, req: &Request<'_>) -> Result<Response, RegistryError> {
        match self.send(req, false).await? {
            Sent::Open(resp) => Ok(resp),
            Sent::Buffered(_) => unreachable!("send(buffer = false) never buffers"),
        }
    }

    fn transport(&self, req: &Request<'_>, attempts: u32, source: reqwest::Error) -> RegistryError {
        RegistryError::Transport {
            what: req.what,
            reference: req.reference.clone(),
            attempts,
            // URLs can carry signed query strings (redirects to blob storage);
            // they must not reach logs or records.
            source: source.without_url(),
        }
    }

    /// The loop. With `buffer`, a successful response's body is read inside
    /// the loop so body errors (resets mid-response) are retried.
    async fn send(&self, req: &Request<'_>, buffer: bool) -> Result<Sent, RegistryError> {
        let policy = &self.config.retry;
        let max = policy.max_attempts.max(1);
        let url = format!(
            "{}://{}/v2/{}",
            scheme_for(req.registry, &self.config).as_str(),
            api_host(req.registry),
            req.path
        );
        let scope = format!("repository:{}:pull", req.repository);
        let mut auth = self.auth.cached(req.registry, &scope).await;
        let mut stage = AuthStage::Initial;
        let mut attempts = 0u32;
        loop {
            // A paused host gets no request until its pause ends.
            self.throttle
                .wait(req.registry, self.config.max_throttle_wait)
                .await?;
            attempts += 1;
            self.requests.fetch_add(1, Ordering::Relaxed);
            let mut rb = self.http.request(req.method.clone(), &url);
            if buffer {
                rb = rb.timeout(self.config.request_timeout);
            }
            if let Some(a) = &req.accept {
                rb = rb.header(ACCEPT, a);
            }
            if let Some(a) = &auth {
                rb = rb.header(AUTHORIZATION, a);
            }
            let resp = match rb.send().await {
                Ok(r) => r,
                Err(e) if is_retryable_error(&e) && attempts < max => {
                    tracing::debug!(url, attempts, error = %e, "retrying after transport error");
                    tokio::time::sleep(policy.delay(attempts, None)).await;
                    continue;
                }
                Err(e) => return Err(self.transport(req, attempts, e)),
            };
            let status = resp.status();
            self.throttle.observe(req.registry, status, resp.headers());
            if status == StatusCode::UNAUTHORIZED && stage != AuthStage::Final {
                let challenges = resp
                    .headers()
                    .get_all(WWW_AUTHENTICATE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(parse_challenges)
                    .collect::<Vec<_>>();
                let force = stage == AuthStage::Stale;
                let got = self
                    .auth
                    .authorize(
                        &self.http,
                        &self.requests,
                        &self.config,
                        req.registry,
                        &scope,
                        &challenges,
                        force,
                    )
                    .await?;
                if let Some(a) = got {
                    stage = if a.fresh || force {
                        AuthStage::Final
                    } else {
                        AuthStage::Stale
                    };
                    auth = Some(a.header);
                    attempts -= 1; // an auth round trip is not a failed attempt
                    continue;
                }
            }
            if is_retryable_status(status) && attempts < max {
                let retry_after = retry_after_of(resp.headers());
                tracing::debug!(url, attempts, %status, ?retry_after, "retrying");
                drop(resp);
                tokio::time::sleep(policy.delay(attempts, retry_after)).await;
                continue;
            }
            if !status.is_success() {
                let retry_after = retry_after_of(resp.headers());
                let body = read_limited(resp, MAX_ERROR_BODY)
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                let first = parse_error_envelope(&body).into_iter().next();
                return Err(RegistryError::Status {
                    what: req.what,
                    reference: req.reference.clone(),
                    status: status.as_u16(),
                    code: first.as_ref().map(|e| e.code.clone()),
                    message: first.map(|e| e.message).unwrap_or_default(),
                    attempts,
                    retry_after,
                });
            }
            if !buffer {
                return Ok(Sent::Open(resp));
            }
            let headers = resp.headers().clone();
            match read_limited(resp, MAX_BUFFERED_BODY).await {
                Ok(Some(body)) => return Ok(Sent::Buffered(Answer { headers, body })),
                Ok(None) => {
                    return Err(RegistryError::TooLarge {
                        what: req.what,
                        reference: req.reference.clone(),
                        limit: MAX_BUFFERED_BODY,
                    });
                }
                Err(e) if is_retryable_error(&e) && attempts < max => {
                    tracing::debug!(url, attempts, error = %e, "retrying after body error");
                    tokio::time::sleep(policy.delay(attempts, None)).await;
                }
                Err(e) => return Err(self.transport(req, attempts, e)),
            }
        }
    }
}

/// The `Retry-After` of an answer (delay-seconds), if any.
pub(crate) fn retry_after_of(headers: &HeaderMap) -> Option<std::time::Duration> {
    headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after)
}

/// Largest response kiln reads whole (manifests, indexes, token answers).
pub(crate) const MAX_BUFFERED_BODY: usize = 4 * 1024 * 1024;
/// Largest error body kiln reads (the rest is dropped).
pub(crate) const MAX_ERROR_BODY: usize = 64 * 1024;

/// Reads a body of at most `limit` bytes; `None` when it is longer (an
/// untrusted server cannot make kiln hold more than that).
pub(crate) async fn read_limited(
    mut resp: reqwest::Response,
    limit: usize,
) -> Result<Option<bytes::Bytes>, reqwest::Error> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Ok(None);
    }
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = resp.chunk().await? {
        if buf.len() + chunk.len() > limit {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Some(buf.freeze()))
}

#[cfg(test)]
mod limit_tests {
    use super::read_limited;

    fn response(body: Vec<u8>) -> reqwest::Response {
        reqwest::Response::from(http::Response::new(body))
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_refused() {
        let ok = read_limited(response(vec![7; 10]), 10).await.unwrap();
        assert_eq!(ok.as_deref(), Some(&[7u8; 10][..]));
        assert!(
            read_limited(response(vec![7; 11]), 10)
                .await
                .unwrap()
                .is_none()
        );
    }
}

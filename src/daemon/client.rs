//! The daemon's HTTP client, used by `kiln trigger`, `runs`, `logs` and
//! `approved --server`: one method per call, URLs built with the `url` crate
//! (path segments and query values percent-encoded, so a name like
//! `a b&limit=1` stays one value), JSON answers, and a Server-Sent Events
//! reader for run logs (eventsource-stream over reqwest's byte stream, so a
//! character split across chunks arrives whole; a dropped stream is resumed
//! with `Last-Event-ID`). The server side is `api.rs`.

use std::ops::ControlFlow;
use std::time::Duration;

use eventsource_stream::Eventsource as _;
use futures_util::StreamExt as _;
use reqwest::Url;
use serde_json::Value;

/// Reconnections of a followed log in a row without an event in between
/// before the client gives up.
const MAX_RESUMES: u32 = 5;

/// Why a daemon call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// `--server` is not an http(s) URL.
    #[error("invalid daemon URL `{server}`: expected http://host:port or https://…")]
    BadServer {
        /// The URL as given.
        server: String,
    },
    /// `--cacert` cannot be read as PEM certificates.
    #[error("cannot read CA certificates from {}", file.display())]
    CaCert {
        /// The `--cacert` file.
        file: std::path::PathBuf,
        /// The read or PEM error.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// `--cacert` holds no certificate, or one the TLS stack refuses.
    #[error("{} holds no usable PEM CA certificate", file.display())]
    CaCertUnusable {
        /// The `--cacert` file.
        file: std::path::PathBuf,
        /// The TLS stack's reason, when it gave one.
        #[source]
        source: Option<reqwest::Error>,
    },
    /// The daemon did not answer.
    #[error("cannot reach the kiln daemon at {server}")]
    Unreachable {
        /// The daemon URL.
        server: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The daemon presents a CA certificate as its own (what
    /// `openssl req -x509` writes by default), which TLS clients refuse.
    #[error(
        "the kiln daemon at {server} presents a CA certificate (basicConstraints CA:TRUE) as its own, which TLS clients refuse; give `kiln serve --tls-cert` a server certificate (`openssl req -x509 … -addext basicConstraints=critical,CA:FALSE`), or one issued by the CA in --cacert"
    )]
    CaAsServerCertificate {
        /// The daemon URL.
        server: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// 401: no token or a wrong one.
    #[error("the daemon refused the token ({message}); set --token or KILN_TOKEN")]
    Unauthorized {
        /// The daemon's `error` text.
        message: String,
    },
    /// 403: the token's role is too low.
    #[error("not allowed: {message}")]
    Forbidden {
        /// The daemon's `error` text.
        message: String,
    },
    /// Any other error status.
    #[error("{message} (HTTP {status})")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The daemon's `error` text, or `no details`.
        message: String,
    },
    /// A success answer that is not JSON, or a log stream that broke.
    #[error("bad answer from the daemon at {server}")]
    BadAnswer {
        /// The daemon URL.
        server: String,
        /// The read or decode error.
        #[source]
        source: reqwest::Error,
    },
    /// A followed log kept breaking: [`MAX_RESUMES`] resumptions in a row
    /// brought no event.
    #[error("the log stream of run `{run}` from {server} kept breaking after event {last_event}")]
    LogBroken {
        /// The daemon URL.
        server: String,
        /// The run.
        run: String,
        /// The id of the last event received (`none` before the first).
        last_event: String,
        /// The last stream error (none when the daemon closed the stream
        /// before the run's end).
        #[source]
        source: Option<Box<eventsource_stream::EventStreamError<reqwest::Error>>>,
    },
}

/// A client for one daemon.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
}

impl Client {
    /// A client for `server` (`http://host:port`, optionally with a path
    /// prefix), authenticating with `token`.
    pub fn new(server: &str, token: Option<String>) -> Result<Client, ClientError> {
        Client::with_ca(server, token, None)
    }

    /// [`Client::new`] trusting only the PEM certificates in `cacert` (a
    /// daemon with a self-signed or private-CA certificate), when given.
    pub fn with_ca(
        server: &str,
        token: Option<String>,
        cacert: Option<&std::path::Path>,
    ) -> Result<Client, ClientError> {
        let bad = || ClientError::BadServer {
            server: server.to_string(),
        };
        let base = Url::parse(server).map_err(|_| bad())?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(bad());
        }
        let mut http = reqwest::Client::builder();
        if let Some(file) = cacert {
            http = http.tls_certs_only(ca_certificates(file)?);
        }
        let http = http.build().map_err(|e| ClientError::CaCertUnusable {
            file: cacert.unwrap_or(std::path::Path::new("-")).to_path_buf(),
            source: Some(e),
        })?;
        Ok(Client { http, base, token })
    }

    /// The URL of `segments` (each percent-encoded as one path segment)
    /// under the server URL, with `query` pairs encoded.
    pub fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut url = self.base.clone();
        url.set_query(None);
        url.path_segments_mut()
            .expect("checked in new: the server URL can be a base")
            .pop_if_empty()
            .extend(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// `GET /v1/runs`: newest first, at most `limit`, optionally one pipeline's.
    pub async fn runs(&self, pipeline: Option<&str>, limit: usize) -> Result<Value, ClientError> {
        let limit = limit.to_string();
        let mut query = vec![("limit", limit.as_str())];
        if let Some(p) = pipeline {
            query.push(("pipeline", p));
        }
        self.json(reqwest::Method::GET, self.url(&["v1", "runs"], &query))
            .await
    }

    /// `GET /v1/pipelines/{pipeline}/approved`.
    pub async fn approved(&self, pipeline: &str) -> Result<Value, ClientError> {
        let url = self.url(&["v1", "pipelines", pipeline, "approved"], &[]);
        self.json(reqwest::Method::GET, url).await
    }

    /// `POST /v1/pipelines/{pipeline}/runs[?branch=]`: the queued (or
    /// joined) run of the main pipeline, or of `branch`'s.
    pub async fn trigger(
        &self,
        pipeline: &str,
        branch: Option<&str>,
    ) -> Result<Value, ClientError> {
        let query: Vec<(&str, &str)> = branch.map(|b| ("branch", b)).into_iter().collect();
        let url = self.url(&["v1", "pipelines", pipeline, "runs"], &query);
        self.json(reqwest::Method::POST, url).await
    }

    /// Reads a run's log stream, calling `on_event(name, data)` for each
    /// event until it returns `Break`. Returns the run from the `end` event,
    /// if the stream had one. A followed stream that drops before `end` is
    /// reopened with `Last-Event-ID`, so no event is lost or repeated.
    pub async fn log(
        &self,
        run_id: &str,
        follow: bool,
        mut on_event: impl FnMut(&str, &Value) -> ControlFlow<()>,
    ) -> Result<Option<Value>, ClientError> {
        let follow_text = follow.to_string();
        let url = self.url(&["v1", "runs", run_id, "log"], &[("follow", &follow_text)]);
        let mut last_id: Option<String> = None;
        let mut resumes = 0;
        loop {
            let mut request = self.request(reqwest::Method::GET, url.clone());
            if let Some(id) = &last_id {
                request = request.header("Last-Event-ID", id);
            }
            let broke = match self.answer(request).await {
                Ok(resp) => {
                    let mut events = resp.bytes_stream().eventsource();
                    let mut broke = None;
                    while let Some(item) = events.next().await {
                        let event = match item {
                            Ok(event) => event,
                            Err(e) => {
                                broke = Some(e);
                                break;
                            }
                        };
                        resumes = 0;
                        if !event.id.is_empty() {
                            last_id = Some(event.id.clone());
                        }
                        let data: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
                        if event.event == "end" {
                            return Ok(Some(data));
                        }
                        if on_event(&event.event, &data).is_break() {
                            return Ok(None);
                        }
                    }
                    broke
                }
                Err(ClientError::Unreachable { source, .. }) if resumes > 0 => {
                    Some(eventsource_stream::EventStreamError::Transport(source))
                }
                Err(e) => return Err(e),
            };
            if !follow && broke.is_none() {
                return Ok(None);
            }
            resumes += 1;
            if resumes > MAX_RESUMES {
                return Err(ClientError::LogBroken {
                    server: self.base.to_string(),
                    run: run_id.to_string(),
                    last_event: last_id.unwrap_or_else(|| "none".into()),
                    source: broke.map(Box::new),
                });
            }
            tracing::debug!(run = run_id, last = ?last_id, "log stream dropped; resuming");
            tokio::time::sleep(Duration::from_millis(100 << resumes.min(4))).await;
        }
    }

    fn bad_answer(&self, source: reqwest::Error) -> ClientError {
        ClientError::BadAnswer {
            server: self.base.to_string(),
            source,
        }
    }

    async fn json(&self, method: reqwest::Method, url: Url) -> Result<Value, ClientError> {
        let resp = self.send(method, url).await?;
        resp.json().await.map_err(|source| self.bad_answer(source))
    }

    /// A request with the token.
    fn request(&self, method: reqwest::Method, url: Url) -> reqwest::RequestBuilder {
        let req = self.http.request(method, url);
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        url: Url,
    ) -> Result<reqwest::Response, ClientError> {
        self.answer(self.request(method, url)).await
    }

    /// The error for a request that got no answer.
    fn unreachable(&self, source: reqwest::Error) -> ClientError {
        let server = self.base.to_string();
        if crate::pipeline::chain(&source).contains("CaUsedAsEndEntity") {
            return ClientError::CaAsServerCertificate { server, source };
        }
        ClientError::Unreachable { server, source }
    }

    /// Sends `req`; a non-success status becomes its [`ClientError`].
    async fn answer(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, ClientError> {
        let resp = req
            .send()
            .await
            .map_err(|source| self.unreachable(source.without_url()))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body: Value = resp.json().await.unwrap_or_default();
        let message = body["error"].as_str().unwrap_or("no details").to_string();
        Err(match status.as_u16() {
            401 => ClientError::Unauthorized { message },
            403 => ClientError::Forbidden { message },
            status => ClientError::Status { status, message },
        })
    }
}

/// The PEM certificates of `file`, for reqwest.
fn ca_certificates(file: &std::path::Path) -> Result<Vec<reqwest::Certificate>, ClientError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;
    let ders = CertificateDer::pem_file_iter(file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|source| ClientError::CaCert {
            file: file.to_path_buf(),
            source,
        })?;
    let unusable = |source| ClientError::CaCertUnusable {
        file: file.to_path_buf(),
        source,
    };
    if ders.is_empty() {
        return Err(unusable(None));
    }
    ders.iter()
        .map(|d| reqwest::Certificate::from_der(d).map_err(|e| unusable(Some(e))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_values_are_encoded_as_one_segment_or_value() {
        let c = Client::new("http://127.0.0.1:8420/", None).unwrap();
        let u = c.url(
            &["v1", "runs"],
            &[("limit", "20"), ("pipeline", "a b&limit=1")],
        );
        assert_eq!(
            u.as_str(),
            "http://127.0.0.1:8420/v1/runs?limit=20&pipeline=a+b%26limit%3D1"
        );
        let u = c.url(&["v1", "pipelines", "../x?y#z", "runs"], &[]);
        assert_eq!(
            u.as_str(),
            "http://127.0.0.1:8420/v1/pipelines/..%2Fx%3Fy%23z/runs"
        );
        let prefixed = Client::new("https://ci.example/kiln", None).unwrap();
        assert_eq!(
            prefixed.url(&["v1", "runs"], &[]).as_str(),
            "https://ci.example/kiln/v1/runs"
        );
        for bad in ["127.0.0.1:8420", "ftp://x", "not a url"] {
            assert!(Client::new(bad, None).is_err(), "{bad}");
        }
    }
}

//! The daemon's HTTP client, used by `kiln trigger`, `runs`, `logs` and
//! `approved --server`: one method per call, URLs built with the `url` crate
//! (path segments and query values percent-encoded, so a name like
//! `a b&limit=1` stays one value), JSON answers, and a Server-Sent Events
//! reader for run logs. The server side is `api.rs`.

use futures_util::StreamExt as _;
use reqwest::Url;
use serde_json::Value;

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
    /// The daemon did not answer.
    #[error("cannot reach the kiln daemon at {server}")]
    Unreachable {
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
        let bad = || ClientError::BadServer {
            server: server.to_string(),
        };
        let base = Url::parse(server).map_err(|_| bad())?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(bad());
        }
        Ok(Client {
            http: reqwest::Client::new(),
            base,
            token,
        })
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

    /// `POST /v1/pipelines/{pipeline}/runs`: the queued (or joined) run.
    pub async fn trigger(&self, pipeline: &str) -> Result<Value, ClientError> {
        let url = self.url(&["v1", "pipelines", pipeline, "runs"], &[]);
        self.json(reqwest::Method::POST, url).await
    }

    /// Reads a run's log stream, calling `on_event(name, data)` for each
    /// event. Returns the run from the `end` event, if the stream had one.
    pub async fn log(
        &self,
        run_id: &str,
        follow: bool,
        mut on_event: impl FnMut(&str, &Value),
    ) -> Result<Option<Value>, ClientError> {
        let follow = follow.to_string();
        let url = self.url(&["v1", "runs", run_id, "log"], &[("follow", &follow)]);
        let resp = self.send(reqwest::Method::GET, url).await?;
        let mut stream = resp.bytes_stream();
        let mut buf = String::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|source| self.bad_answer(source))?;
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                let (name, data) = parse_event(&block);
                let data: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
                if name == "end" {
                    return Ok(Some(data));
                }
                if !name.is_empty() {
                    on_event(&name, &data);
                }
            }
        }
        Ok(None)
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

    async fn send(
        &self,
        method: reqwest::Method,
        url: Url,
    ) -> Result<reqwest::Response, ClientError> {
        let mut req = self.http.request(method, url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req
            .send()
            .await
            .map_err(|source| ClientError::Unreachable {
                server: self.base.to_string(),
                source: source.without_url(),
            })?;
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

/// The `event:` name and joined `data:` lines of one SSE block.
fn parse_event(block: &str) -> (String, String) {
    let mut name = String::new();
    let mut data = Vec::new();
    for line in block.lines() {
        if let Some(v) = line.strip_prefix("event:") {
            name = v.trim_start().to_string();
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push(v.strip_prefix(' ').unwrap_or(v));
        }
    }
    (name, data.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sse_blocks() {
        let (n, d) = parse_event("event: line\nid: 3\ndata: {\"a\":1}\n\n");
        assert_eq!((n.as_str(), d.as_str()), ("line", "{\"a\":1}"));
        let (n, _) = parse_event(": keep-alive\n\n");
        assert!(n.is_empty());
    }

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

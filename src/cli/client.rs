//! The HTTP client the daemon commands share (`kiln trigger`, `runs`, `logs`,
//! `approved --server`): server and token from flags or `KILN_SERVER` /
//! `KILN_TOKEN`, JSON calls, and a Server-Sent Events reader for run logs.

use futures_util::StreamExt as _;
use serde_json::Value;

/// Where the daemon is and how to authenticate.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// The daemon's URL.
    #[arg(long, env = "KILN_SERVER", default_value = "http://127.0.0.1:8420")]
    pub server: String,
    /// API token (prefer the KILN_TOKEN environment variable).
    #[arg(long, env = "KILN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// A connected client.
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    /// A client for `server`, authenticating with `token`.
    pub fn new(server: &str, token: Option<String>) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: server.trim_end_matches('/').to_string(),
            token,
        }
    }

    /// From `--server` / `--token`.
    pub fn from_args(args: &ServerArgs) -> Client {
        Client::new(&args.server, args.token.clone())
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, String> {
        let resp = req
            .send()
            .await
            .map_err(|e| format!("cannot reach the kiln daemon at {}: {e}", self.base))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body: Value = resp.json().await.unwrap_or_default();
        let message = body["error"].as_str().unwrap_or("no details").to_string();
        Err(match status.as_u16() {
            401 => format!("the daemon refused the token ({message}); set --token or KILN_TOKEN"),
            403 => format!("not allowed: {message}"),
            _ => format!("{message} (HTTP {status})"),
        })
    }

    /// GET `path` as JSON.
    pub async fn get(&self, path: &str) -> Result<Value, String> {
        let resp = self.send(self.request(reqwest::Method::GET, path)).await?;
        resp.json()
            .await
            .map_err(|e| format!("bad JSON from the daemon: {e}"))
    }

    /// POST to `path`; the JSON answer.
    pub async fn post(&self, path: &str) -> Result<Value, String> {
        let resp = self.send(self.request(reqwest::Method::POST, path)).await?;
        resp.json()
            .await
            .map_err(|e| format!("bad JSON from the daemon: {e}"))
    }

    /// Reads a run's log stream, calling `on_event(name, data)` for each
    /// event. Returns the run from the `end` event, if the stream had one.
    pub async fn log(
        &self,
        run_id: &str,
        follow: bool,
        mut on_event: impl FnMut(&str, &Value),
    ) -> Result<Option<Value>, String> {
        let path = format!("/v1/runs/{run_id}/log?follow={follow}");
        let resp = self.send(self.request(reqwest::Method::GET, &path)).await?;
        let mut stream = resp.bytes_stream();
        let mut buf = String::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| format!("the log stream broke: {e}"))?;
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

/// Prints one log event the way `kiln logs` and `kiln trigger --wait` do.
pub fn print_event(name: &str, e: &Value) {
    let stage = e["stage"].as_str().unwrap_or("-");
    let text = e["text"].as_str().unwrap_or("");
    match name {
        "line" => println!("[{stage}] {text}"),
        "stage_started" => println!("==> {stage}"),
        "stage_passed" => println!("<== {stage} passed {text}"),
        "stage_failed" => println!("<== {stage} FAILED {text}"),
        _ => {}
    }
}

/// The exit outcome for a finished run: passed and up to date are success.
pub fn outcome_of(run: &Value) -> super::Outcome {
    match run["status"].as_str() {
        Some("passed" | "up_to_date") => super::Outcome::Ok,
        _ => super::Outcome::Failed,
    }
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
}

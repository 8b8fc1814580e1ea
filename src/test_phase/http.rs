//! One HTTP GET against the published test port, checked against an
//! expectation; used by the readiness probe and by `httpTests`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use regex::Regex;

/// Per-request timeout.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// What a response must look like.
#[derive(Debug, Clone)]
pub struct HttpExpect {
    /// Path (with query), starting with `/`.
    pub path: String,
    /// Expected status.
    pub status: u16,
    /// The body must contain this text.
    pub body_contains: Option<String>,
    /// The body must match this regex.
    pub body_regex: Option<Regex>,
    /// Request headers.
    pub headers: BTreeMap<String, String>,
}

fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(0)
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a plain HTTP client always builds")
    })
}

/// Largest probe response body kiln reads.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// GETs `path` on `addr`; `Err` says what did not match.
pub async fn get(addr: SocketAddr, expect: &HttpExpect) -> Result<(), String> {
    let url = format!("http://{addr}{}", expect.path);
    let mut req = client().get(&url);
    for (k, v) in &expect.headers {
        req = req.header(k, v);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| format!("GET {}: {e}", expect.path))?;
    let status = resp.status().as_u16();
    // The image under test is untrusted: read at most MAX_BODY bytes.
    let mut resp = resp;
    let mut bytes = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("GET {}: reading the body: {e}", expect.path))?
    {
        if bytes.len() + chunk.len() > MAX_BODY {
            return Err(format!(
                "GET {} answered a body over {MAX_BODY} bytes",
                expect.path
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    let body = String::from_utf8_lossy(&bytes).into_owned();
    if status != expect.status {
        return Err(format!(
            "GET {} answered {status}, expected {}; body: {}",
            expect.path,
            expect.status,
            excerpt(&body)
        ));
    }
    if let Some(text) = &expect.body_contains
        && !body.contains(text.as_str())
    {
        return Err(format!(
            "GET {} body does not contain `{text}`; body: {}",
            expect.path,
            excerpt(&body)
        ));
    }
    if let Some(re) = &expect.body_regex
        && !re.is_match(&body)
    {
        return Err(format!(
            "GET {} body does not match `{}`; body: {}",
            expect.path,
            re.as_str(),
            excerpt(&body)
        ));
    }
    Ok(())
}

fn excerpt(body: &str) -> String {
    const MAX: usize = 200;
    if body.len() <= MAX {
        return body.trim_end().to_string();
    }
    let mut end = MAX;
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &body[..end])
}

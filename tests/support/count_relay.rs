//! A counting HTTP/1.1 relay in front of the real registry: it records the
//! method and path of every request (keep-alive connections included),
//! can add a fixed delay per request (a far-away registry), and can answer
//! chosen requests itself (a 429 with `Retry-After`, a 403) instead of
//! forwarding them.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request the relay saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub at: Instant,
    /// The status the relay answered itself, if it did.
    pub injected: Option<u16>,
}

/// Answer matching requests with `status` instead of forwarding them.
#[derive(Debug, Clone)]
pub struct Rule {
    /// `HEAD`, `GET`, … or any method.
    pub method: Option<&'static str>,
    pub path_contains: String,
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    /// How many requests it answers (then it is spent).
    pub times: usize,
}

impl Rule {
    /// A registry error answer (`{"errors":[{"code":…}]}`) for every request
    /// whose path contains `path_contains`.
    pub fn refuse(path_contains: &str, status: u16, code: &str) -> Rule {
        Rule {
            method: None,
            path_contains: path_contains.into(),
            status,
            headers: vec![("Content-Type", "application/json".into())],
            body: format!(r#"{{"errors":[{{"code":"{code}","message":"refused by the relay"}}]}}"#),
            times: usize::MAX,
        }
    }
}

struct Shared {
    seen: Mutex<Vec<Seen>>,
    rules: Mutex<Vec<Rule>>,
    /// A response header removed from every `HEAD` answer.
    strip_on_head: Mutex<Option<&'static str>>,
    delay: Duration,
    upstream: String,
}

pub struct CountRelay {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl CountRelay {
    /// Listens on 127.0.0.1:0 and relays to `upstream` (`host:port`),
    /// sleeping `delay` before each request is answered.
    pub async fn start(upstream: &str, delay: Duration) -> CountRelay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            seen: Mutex::default(),
            rules: Mutex::default(),
            strip_on_head: Mutex::default(),
            delay,
            upstream: upstream.to_string(),
        });
        let s = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let _ = serve(Conn::new(client), &s).await;
                });
            }
        });
        CountRelay { addr, shared, task }
    }

    /// `127.0.0.1:<port>`, usable as a registry host.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn add_rule(&self, rule: Rule) {
        self.shared.rules.lock().unwrap().push(rule);
    }

    /// Removes header `name` from every `HEAD` answer (a registry whose
    /// `HEAD` carries no `Docker-Content-Digest`).
    pub fn strip_on_head(&self, name: &'static str) {
        *self.shared.strip_on_head.lock().unwrap() = Some(name);
    }

    pub fn clear_rules(&self) {
        self.shared.rules.lock().unwrap().clear();
    }

    /// Every request so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// Forgets the requests seen so far.
    pub fn reset(&self) {
        self.shared.seen.lock().unwrap().clear();
    }

    /// Manifest requests with `method` whose path contains `path_contains`.
    pub fn manifests(&self, method: &str, path_contains: &str) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.method == method && s.path.contains("/manifests/"))
            .filter(|s| s.path.contains(path_contains))
            .count()
    }
}

impl Drop for CountRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A stream with a read buffer, so bytes past one message are kept for the next.
struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn new(s: TcpStream) -> Conn {
        Conn { s, buf: Vec::new() }
    }

    /// Reads more bytes; false at end of stream.
    async fn fill(&mut self) -> std::io::Result<bool> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.s.read(&mut chunk).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    }

    /// Takes bytes up to and including `end`.
    async fn take_until(&mut self, end: &[u8]) -> std::io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(i) = self.buf.windows(end.len()).position(|w| w == end) {
                return Ok(Some(self.buf.drain(..i + end.len()).collect()));
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    async fn take(&mut self, n: usize) -> std::io::Result<Vec<u8>> {
        while self.buf.len() < n {
            if !self.fill().await? {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// A chunked body, framing included, up to its final empty line.
    async fn take_chunked(&mut self) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let line = self
                .take_until(b"\r\n")
                .await?
                .ok_or(std::io::ErrorKind::UnexpectedEof)?;
            let text = String::from_utf8_lossy(&line);
            let size = usize::from_str_radix(text.trim().split(';').next().unwrap_or("0"), 16)
                .map_err(|_| std::io::ErrorKind::InvalidData)?;
            out.extend_from_slice(&line);
            if size == 0 {
                loop {
                    let t = self
                        .take_until(b"\r\n")
                        .await?
                        .ok_or(std::io::ErrorKind::UnexpectedEof)?;
                    out.extend_from_slice(&t);
                    if t == b"\r\n" {
                        return Ok(out);
                    }
                }
            }
            out.extend(self.take(size + 2).await?);
        }
    }

    /// The body that follows `head`, framing included; `None` = until close.
    async fn take_body(&mut self, head: &str, no_body: bool) -> std::io::Result<Option<Vec<u8>>> {
        if no_body {
            return Ok(Some(Vec::new()));
        }
        if let Some(v) = header(head, "transfer-encoding")
            && v.to_ascii_lowercase().contains("chunked")
        {
            return Ok(Some(self.take_chunked().await?));
        }
        match header(head, "content-length") {
            Some(n) => Ok(Some(self.take(n.trim().parse().unwrap_or(0)).await?)),
            None => Ok(None),
        }
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

fn without_header(head: &str, name: &str) -> String {
    let keep = |l: &&str| {
        !l.split_once(':')
            .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case(name))
    };
    let lines: Vec<&str> = head.split("\r\n").filter(keep).collect();
    lines.join("\r\n")
}

fn matching_rule(s: &Shared, method: &str, path: &str) -> Option<Rule> {
    let mut rules = s.rules.lock().unwrap();
    let i = rules.iter().position(|r| {
        r.times > 0 && r.method.is_none_or(|m| m == method) && path.contains(&r.path_contains)
    })?;
    rules[i].times -= 1;
    Some(rules[i].clone())
}

async fn serve(mut client: Conn, s: &Shared) -> std::io::Result<()> {
    let mut upstream: Option<Conn> = None;
    loop {
        let Some(head) = client.take_until(b"\r\n\r\n").await? else {
            return Ok(());
        };
        let text = String::from_utf8_lossy(&head).into_owned();
        let mut first = text.lines().next().unwrap_or("").split_whitespace();
        let method = first.next().unwrap_or("").to_string();
        let path = first.next().unwrap_or("").to_string();
        let body = client.take_body(&text, false).await?.unwrap_or_default();
        let rule = matching_rule(s, &method, &path);
        s.seen.lock().unwrap().push(Seen {
            method: method.clone(),
            path: path.clone(),
            at: Instant::now(),
            injected: rule.as_ref().map(|r| r.status),
        });
        if !s.delay.is_zero() {
            tokio::time::sleep(s.delay).await;
        }
        if let Some(r) = rule {
            let mut out = format!("HTTP/1.1 {} Injected\r\n", r.status);
            for (k, v) in &r.headers {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
            out.push_str(&format!("Content-Length: {}\r\n\r\n", r.body.len()));
            if method != "HEAD" {
                out.push_str(&r.body);
            }
            client.s.write_all(out.as_bytes()).await?;
            continue;
        }
        let up = match &mut upstream {
            Some(u) => u,
            None => upstream.insert(Conn::new(TcpStream::connect(&s.upstream).await?)),
        };
        up.s.write_all(&head).await?;
        up.s.write_all(&body).await?;
        let resp_head = up
            .take_until(b"\r\n\r\n")
            .await?
            .ok_or(std::io::ErrorKind::UnexpectedEof)?;
        let resp_text = String::from_utf8_lossy(&resp_head).into_owned();
        let status: u16 = resp_text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let no_body = method == "HEAD" || status == 204 || status == 304 || status < 200;
        let strip = *s.strip_on_head.lock().unwrap();
        let resp_head = match strip.filter(|_| method == "HEAD") {
            Some(name) => without_header(&resp_text, name).into_bytes(),
            None => resp_head,
        };
        client.s.write_all(&resp_head).await?;
        match up.take_body(&resp_text, no_body).await? {
            Some(b) => client.s.write_all(&b).await?,
            None => {
                // Delimited by close: pass the rest through and end.
                client.s.write_all(&up.buf).await?;
                tokio::io::copy(&mut up.s, &mut client.s).await?;
                return client.s.shutdown().await;
            }
        }
    }
}

//! A scripted HTTP/1.1 proxy for push faults, in front of a real registry:
//! per request (matched by method and path) it forwards, forwards with the
//! `Location` answer header pointed at another host, stalls (reads the
//! request, never answers), or answers a fixed status with headers. Also a
//! `Catcher`: a foreign host that records every request head it gets.
//! Every request gets its own upstream connection (`Connection: close`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What to do with a matching request.
#[derive(Debug, Clone)]
pub enum Action {
    /// Forward, then rewrite an absolute or relative `Location` answer to
    /// `http://<host>` + its path and query.
    ForeignLocation(String),
    /// Read the request, then hold the connection open without answering.
    Stall,
    /// Answer this status with these headers and an empty body.
    Answer(u16, Vec<(String, String)>),
}

/// A rule: `method` and a substring of the request head (path or a
/// header); applies `times` times.
#[derive(Debug, Clone)]
pub struct Rule {
    pub method: &'static str,
    pub contains: &'static str,
    pub action: Action,
    pub times: usize,
}

impl Rule {
    /// Stall every `method` request whose head contains `contains`.
    pub fn stall(method: &'static str, contains: &'static str) -> Rule {
        Rule {
            method,
            contains,
            action: Action::Stall,
            times: usize::MAX,
        }
    }
}

/// One request the proxy saw: request line, head and when.
#[derive(Debug, Clone)]
pub struct Seen {
    pub line: String,
    pub head: String,
    pub at: std::time::Instant,
    /// Whether a rule acted on it.
    pub hit: bool,
}

pub struct PushProxy {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl PushProxy {
    pub async fn start(upstream: &str, rules: Vec<Rule>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let rules = Arc::new(Mutex::new(rules));
        let (up, s) = (upstream.to_string(), seen.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (up, s, r) = (up.clone(), s.clone(), rules.clone());
                tokio::spawn(async move {
                    let _ = handle(client, &up, &r, &s).await;
                });
            }
        });
        PushProxy { addr, seen, task }
    }

    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Request heads seen so far.
    pub fn heads(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.head.clone())
            .collect()
    }
}

impl Drop for PushProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A request head and the body bytes read with it.
struct Head {
    text: String,
    rest: Vec<u8>,
}

async fn read_head(s: &mut TcpStream) -> std::io::Result<Head> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(i + 4);
            return Ok(Head {
                text: String::from_utf8_lossy(&buf).into_owned(),
                rest,
            });
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Reads the rest of a `Content-Length` body.
async fn read_body(s: &mut TcpStream, head: &mut Head) -> std::io::Result<Vec<u8>> {
    let len: usize = header(&head.text, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = std::mem::take(&mut head.rest);
    let mut chunk = vec![0u8; 64 * 1024];
    while body.len() < len {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(body)
}

fn pick(rules: &Mutex<Vec<Rule>>, head: &str) -> Option<Action> {
    let mut rules = rules.lock().unwrap();
    let (method, rest) = head.split_once(' ')?;
    let rule = rules
        .iter_mut()
        .find(|r| r.times > 0 && r.method == method && rest.contains(r.contains))?;
    rule.times -= 1;
    Some(rule.action.clone())
}

async fn handle(
    mut client: TcpStream,
    upstream: &str,
    rules: &Mutex<Vec<Rule>>,
    seen: &Mutex<Vec<Seen>>,
) -> std::io::Result<()> {
    let mut head = read_head(&mut client).await?;
    let line = head.text.lines().next().unwrap_or_default().to_string();
    let action = pick(rules, &head.text);
    seen.lock().unwrap().push(Seen {
        line,
        head: head.text.clone(),
        at: std::time::Instant::now(),
        hit: action.is_some(),
    });
    let body = read_body(&mut client, &mut head).await?;
    match action {
        Some(Action::Stall) => {
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            return Ok(());
        }
        Some(Action::Answer(status, headers)) => {
            let mut answer = format!("HTTP/1.1 {status} Fault\r\nContent-Length: 0\r\n");
            for (k, v) in headers {
                answer.push_str(&format!("{k}: {v}\r\n"));
            }
            answer.push_str("Connection: close\r\n\r\n");
            client.write_all(answer.as_bytes()).await?;
            return client.shutdown().await;
        }
        _ => {}
    }
    let head_text = head
        .text
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect::<Vec<_>>()
        .join("\r\n");
    let head_text =
        head_text.trim_end_matches("\r\n").to_string() + "\r\nConnection: close\r\n\r\n";
    let mut up = TcpStream::connect(upstream).await?;
    up.write_all(head_text.as_bytes()).await?;
    up.write_all(&body).await?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer).await?;
    if let Some(Action::ForeignLocation(host)) = action {
        answer = rewrite_location(&answer, &host);
    }
    client.write_all(&answer).await?;
    client.shutdown().await
}

/// Points the answer's `Location` at `http://<host>`, keeping path and query.
fn rewrite_location(answer: &[u8], host: &str) -> Vec<u8> {
    let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return answer.to_vec();
    };
    let head = String::from_utf8_lossy(&answer[..end]);
    let lines: Vec<String> = head
        .split("\r\n")
        .map(|l| match l.split_once(':') {
            Some((k, v)) if k.eq_ignore_ascii_case("location") => {
                let v = v.trim();
                let path = match v.find("://") {
                    Some(i) => &v[i + 3 + v[i + 3..].find('/').unwrap_or(v.len() - i - 3)..],
                    None => v,
                };
                format!("Location: http://{host}{path}")
            }
            _ => l.to_string(),
        })
        .collect();
    let mut out = lines.join("\r\n").into_bytes();
    out.extend_from_slice(&answer[end..]);
    out
}

/// A foreign host: records every request head and answers `status`.
pub struct Catcher {
    pub addr: SocketAddr,
    pub heads: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Catcher {
    pub async fn start(status: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let h = heads.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let h = h.clone();
                tokio::spawn(async move {
                    let Ok(mut head) = read_head(&mut s).await else {
                        return;
                    };
                    let _ = read_body(&mut s, &mut head).await;
                    h.lock().unwrap().push(head.text);
                    let answer = format!(
                        "HTTP/1.1 {status} Caught\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    let _ = s.write_all(answer.as_bytes()).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        Catcher { addr, heads, task }
    }

    pub fn host(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for Catcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

//! A fault-injecting TCP proxy in front of the real registry. Each accepted
//! connection takes the next scripted [`Fault`] (then `Pass` forever). Every
//! fault answers one request and closes the connection, so a client's retry
//! arrives on a new connection and meets the next script entry.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What to do with one connection.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Forward both ways untouched.
    Pass,
    /// Answer with this status and extra headers, empty body.
    Status(u16, Vec<(&'static str, String)>),
    /// Forward the request, send the response head and half the body, then
    /// reset the connection (RST).
    ResetMidResponse,
    /// Forward the request and flip one byte in the middle of the body.
    CorruptBody,
}

pub struct FaultProxy {
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on 127.0.0.1:0 and forwards to `upstream` (`host:port`).
    pub async fn start(upstream: &str, script: Vec<Fault>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let connections = Arc::new(AtomicUsize::new(0));
        let upstream = upstream.to_string();
        let count = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let fault = script.lock().unwrap().pop_front().unwrap_or(Fault::Pass);
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let _ = handle(client, &upstream, fault).await;
                });
            }
        });
        FaultProxy {
            addr,
            connections,
            task,
        }
    }

    /// `127.0.0.1:<port>`, usable as a registry host.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads until a full HTTP head (`\r\n\r\n`) is buffered; returns the buffer
/// and the head's end offset.
async fn read_head(s: &mut TcpStream) -> std::io::Result<(Vec<u8>, usize)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            return Ok((buf, i + 4));
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn content_length(head: &[u8]) -> usize {
    String::from_utf8_lossy(head)
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0)
}

/// Forwards the client's first request and reads the whole upstream answer.
async fn exchange(
    client: &mut TcpStream,
    upstream: &str,
) -> std::io::Result<(Vec<u8>, usize, bool)> {
    let (req, _) = read_head(client).await?;
    let is_head = req.starts_with(b"HEAD ");
    let mut up = TcpStream::connect(upstream).await?;
    up.write_all(&req).await?;
    let (mut resp, head_end) = read_head(&mut up).await?;
    let want = if is_head {
        0
    } else {
        content_length(&resp[..head_end])
    };
    let mut chunk = [0u8; 8192];
    while resp.len() < head_end + want {
        let n = up.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        resp.extend_from_slice(&chunk[..n]);
    }
    Ok((resp, head_end, is_head))
}

fn with_connection_close(resp: &[u8], head_end: usize) -> Vec<u8> {
    let mut out = resp[..head_end - 2].to_vec();
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out.extend_from_slice(&resp[head_end..]);
    out
}

async fn handle(mut client: TcpStream, upstream: &str, fault: Fault) -> std::io::Result<()> {
    match fault {
        Fault::Pass => {
            let mut up = TcpStream::connect(upstream).await?;
            tokio::io::copy_bidirectional(&mut client, &mut up).await?;
        }
        Fault::Status(code, headers) => {
            read_head(&mut client).await?;
            let mut out = format!("HTTP/1.1 {code} Injected\r\n");
            for (k, v) in headers {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
            out.push_str("Content-Length: 0\r\nConnection: close\r\n\r\n");
            client.write_all(out.as_bytes()).await?;
            client.shutdown().await?;
        }
        Fault::ResetMidResponse => {
            let (resp, head_end, _) = exchange(&mut client, upstream).await?;
            let cut = head_end + (resp.len() - head_end) / 2;
            client.write_all(&resp[..cut]).await?;
            client.flush().await?;
            tokio::time::sleep(Duration::from_millis(50)).await;
            client.set_zero_linger()?;
            drop(client); // RST
        }
        Fault::CorruptBody => {
            let (mut resp, head_end, _) = exchange(&mut client, upstream).await?;
            if resp.len() > head_end {
                let mid = head_end + (resp.len() - head_end) / 2;
                resp[mid] ^= 0x01;
            }
            client
                .write_all(&with_connection_close(&resp, head_end))
                .await?;
            client.shutdown().await?;
        }
    }
    Ok(())
}

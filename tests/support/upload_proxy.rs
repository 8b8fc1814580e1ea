//! A proxy that damages blob *upload* bodies (PATCH/PUT to
//! `/blobs/uploads/`): cut the connection after N body bytes, or flip one
//! byte — or stall or refuse manifest `PUT`s (tagging). Every request gets its own upstream connection with
//! `Connection: close`, so each request meets the fault budget afresh.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What to do to upload bodies.
#[derive(Debug, Clone, Copy)]
pub enum UploadFault {
    /// Close both connections after this many body bytes.
    CutAfter(u64),
    /// Flip the byte in the middle of the body.
    FlipByte,
    /// Never answer a manifest `PUT` (a registry that stalls while tagging).
    HoldManifestPut,
    /// Refuse every manifest `PUT` with 400 `MANIFEST_INVALID`.
    RefuseManifestPut,
}

pub struct UploadProxy {
    pub addr: SocketAddr,
    /// Upload bodies damaged so far.
    pub damaged: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl UploadProxy {
    /// Damages the first `times` upload bodies with `fault`, then passes.
    pub async fn start(upstream: &str, fault: UploadFault, times: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let damaged = Arc::new(AtomicUsize::new(0));
        let (up, d) = (upstream.to_string(), damaged.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (up, d) = (up.clone(), d.clone());
                tokio::spawn(async move {
                    let _ = handle(client, &up, fault, times, &d).await;
                });
            }
        });
        UploadProxy {
            addr,
            damaged,
            task,
        }
    }

    pub fn host(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for UploadProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read_head(s: &mut TcpStream) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(i + 4);
            return Ok((buf, rest));
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn handle(
    mut client: TcpStream,
    upstream: &str,
    fault: UploadFault,
    times: usize,
    damaged: &AtomicUsize,
) -> std::io::Result<()> {
    {
        let (head, mut body_start) = read_head(&mut client).await?;
        let text = String::from_utf8_lossy(&head).to_string();
        let first = text.lines().next().unwrap_or_default().to_string();
        let len: u64 = text
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        if first.starts_with("PUT ") && first.contains("/manifests/") {
            match fault {
                UploadFault::HoldManifestPut => std::future::pending::<()>().await,
                UploadFault::RefuseManifestPut => {
                    let body = r#"{"errors":[{"code":"MANIFEST_INVALID","message":"refused by the test proxy"}]}"#;
                    let answer = format!(
                        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    client.write_all(answer.as_bytes()).await?;
                    return client.shutdown().await;
                }
                _ => {}
            }
        }
        let upload = (first.starts_with("PATCH ") || first.starts_with("PUT "))
            && first.contains("/blobs/uploads/")
            && len > 0;
        let hit = upload && damaged.load(Ordering::SeqCst) < times;
        if hit {
            damaged.fetch_add(1, Ordering::SeqCst);
        }
        let head = text
            .split("\r\n")
            .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
            .collect::<Vec<_>>()
            .join("\r\n");
        let head = head.trim_end_matches("\r\n").to_string() + "\r\nConnection: close\r\n\r\n";
        let mut up = TcpStream::connect(upstream).await?;
        up.write_all(head.as_bytes()).await?;
        let mut sent = 0u64;
        let mut chunk = vec![0u8; 64 * 1024];
        while sent < len {
            let mut data = if body_start.is_empty() {
                let n = client.read(&mut chunk).await?;
                if n == 0 {
                    return Ok(());
                }
                chunk[..n].to_vec()
            } else {
                std::mem::take(&mut body_start)
            };
            data.truncate((len - sent) as usize);
            match fault {
                UploadFault::CutAfter(n) if hit && sent + data.len() as u64 >= n => {
                    let keep = (n - sent.min(n)) as usize;
                    up.write_all(&data[..keep]).await?;
                    up.flush().await?;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    return Ok(()); // both sockets dropped mid-body
                }
                UploadFault::FlipByte if hit => {
                    let mid = len / 2;
                    if mid >= sent && mid < sent + data.len() as u64 {
                        data[(mid - sent) as usize] ^= 0x01;
                    }
                }
                _ => {}
            }
            up.write_all(&data).await?;
            sent += data.len() as u64;
        }
        // Relay the whole answer (upstream closes after it), then close.
        let mut answer = Vec::new();
        up.read_to_end(&mut answer).await?;
        client.write_all(&answer).await?;
        client.shutdown().await?;
    }
    Ok(())
}

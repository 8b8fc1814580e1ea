//! A TCP proxy that can cut a client off its server and heal again: a
//! network partition between one cluster node and PostgreSQL. `cut` closes
//! every open connection and refuses new ones until `heal`; `blackhole` is
//! the silent partition: connections stay open (and new ones are accepted)
//! but no byte is forwarded either way until `heal`, as when packets are
//! dropped and nobody closes anything.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub struct CutProxy {
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    /// `true` while bytes are held back (a blackhole).
    holes: watch::Sender<bool>,
    /// Cancelled on `cut`: ends every forwarding task (closing both ends).
    open: std::sync::Mutex<CancellationToken>,
    task: tokio::task::JoinHandle<()>,
}

impl CutProxy {
    /// Listens on 127.0.0.1:0 and forwards to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> Arc<CutProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        Arc::new_cyclic(|weak: &std::sync::Weak<CutProxy>| {
            let weak = weak.clone();
            let upstream = upstream.to_string();
            let task = tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let Some(proxy) = weak.upgrade() else { return };
                    if proxy.cut.load(Ordering::SeqCst) {
                        continue; // dropped: the client sees a closed connection
                    }
                    let open = proxy.open.lock().unwrap().clone();
                    let holes = proxy.holes.subscribe();
                    tokio::spawn(forward(client, upstream.clone(), open, holes));
                }
            });
            CutProxy {
                addr,
                cut: Arc::default(),
                holes: watch::Sender::new(false),
                open: std::sync::Mutex::new(CancellationToken::new()),
                task,
            }
        })
    }

    /// Closes every connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        let mut open = self.open.lock().unwrap();
        open.cancel();
        *open = CancellationToken::new();
    }

    /// Stops forwarding bytes without closing anything: clients see their
    /// requests go unanswered (new connections are accepted, and hang).
    pub fn blackhole(&self) {
        self.holes.send_replace(true);
    }

    /// Lets connections through again (held bytes are delivered, as TCP
    /// retransmits after a partition heals).
    pub fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
        self.holes.send_replace(false);
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(
    client: TcpStream,
    upstream: String,
    open: CancellationToken,
    holes: watch::Receiver<bool>,
) {
    let mut held = holes.clone();
    if held.wait_for(|h| !*h).await.is_err() {
        return;
    }
    let Ok(server) = TcpStream::connect(&upstream).await else {
        return;
    };
    let (client_in, client_out) = client.into_split();
    let (server_in, server_out) = server.into_split();
    tokio::select! {
        () = pump(client_in, server_out, holes.clone()) => {}
        () = pump(server_in, client_out, holes) => {}
        () = open.cancelled() => {}
    }
}

/// Copies `from` to `to`, holding each chunk while the proxy is a
/// blackhole.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut holes: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if holes.wait_for(|h| !*h).await.is_err() {
                    return;
                }
                if to.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

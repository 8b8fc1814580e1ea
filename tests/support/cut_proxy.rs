//! A TCP proxy that can cut a client off its server and heal again: a
//! network partition between one cluster node and PostgreSQL. `cut` closes
//! every open connection and refuses new ones until `heal`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub struct CutProxy {
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
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
                    tokio::spawn(forward(client, upstream.clone(), open));
                }
            });
            CutProxy {
                addr,
                cut: Arc::default(),
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

    /// Lets connections through again.
    pub fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(mut client: TcpStream, upstream: String, open: CancellationToken) {
    let Ok(mut server) = TcpStream::connect(&upstream).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        () = open.cancelled() => {}
    }
}

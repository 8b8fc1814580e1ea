//! Waits until the test container really serves, Testcontainers-style: a log
//! line, then the TCP port or an HTTP probe — all within one deadline, while
//! watching for the container to exit (which fails at once, not at the
//! timeout).
//!
//! **TCP probes and docker-proxy.** With the userland proxy, the published
//! host port accepts connections before anything listens in the container, so
//! a successful `connect` to it proves nothing. kiln therefore probes the
//! container's own bridge address (`NetworkSettings.Networks.*.IPAddress`) on
//! the container port: the kernel in the container's network namespace
//! answers the SYN, with a RST when nothing listens. Where that address is not
//! routable (a remote engine, a VM-backed Docker Desktop), kiln falls back to
//! the published port and confirms the connection is served: docker-proxy
//! closes the client side at once when its own dial to the container fails,
//! so a connection that is still open after [`PROXY_CONFIRM`] (or that
//! carries data) is served, one closed at once is not.
//!
//! **Ready means stayed ready.** A probe must succeed twice, [`POLL`] apart,
//! while the container runs: a process that accepts once and dies (`nc -l`)
//! is not ready; it fails as "exited before ready" with its exit code.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::query_parameters::{LogsOptionsBuilder, WaitContainerOptionsBuilder};
use futures_util::StreamExt;
use regex::Regex;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::http::{self, HttpExpect};
use super::report::ReadinessOutcome;
use super::run::{self, PortAccess};

/// Interval between probes.
pub const POLL: Duration = Duration::from_millis(10);
/// How long a proxied connection must stay open to count as served.
pub const PROXY_CONFIRM: Duration = Duration::from_millis(25);
/// Connect timeout of one direct probe.
const DIRECT_CONNECT: Duration = Duration::from_millis(200);
/// Log lines shown on failure.
pub const LOG_TAIL: usize = 20;

/// What readiness waits for.
#[derive(Debug, Clone)]
pub(crate) struct Wait<'a> {
    pub log_line: Option<&'a Regex>,
    pub http: Option<&'a HttpExpect>,
    pub port: Option<PortAccess>,
    pub timeout: Duration,
}

impl Wait<'_> {
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(r) = self.log_line {
            parts.push(format!("a log line matching `{}`", r.as_str()));
        }
        match (self.http, self.port) {
            (Some(h), Some(p)) => parts.push(format!(
                "HTTP {} on port {} to answer {}",
                h.path, p.container_port, h.status
            )),
            (None, Some(p)) => {
                parts.push(format!("port {} to accept connections", p.container_port))
            }
            _ => {}
        }
        if parts.is_empty() {
            "the container to run".into()
        } else {
            parts.join(", then ")
        }
    }
}

/// Waits for readiness; `started` is when the container was started.
pub(crate) async fn wait_ready(
    docker: &Docker,
    id: &str,
    wait: &Wait<'_>,
    started: Instant,
) -> ReadinessOutcome {
    let deadline = started + wait.timeout;
    let ready = async {
        if let Some(re) = wait.log_line {
            log_line(docker, id, re).await;
        }
        if let Some(port) = wait.port {
            probe_until_stable(port, wait.http).await;
        }
    };
    tokio::select! {
        biased;
        exit = exited(docker, id) => {
            let logs = run::last_log_lines(docker, id, LOG_TAIL).await;
            ReadinessOutcome::Exited { exit_code: exit, after: started.elapsed(), logs }
        }
        () = ready => ReadinessOutcome::Ready { latency: started.elapsed() },
        () = tokio::time::sleep_until(deadline.into()) => {
            let logs = run::last_log_lines(docker, id, LOG_TAIL).await;
            ReadinessOutcome::TimedOut { timeout: wait.timeout, waiting_for: wait.describe(), logs }
        }
    }
}

/// Resolves with the exit code once the container is not running.
async fn exited(docker: &Docker, id: &str) -> i64 {
    let options = WaitContainerOptionsBuilder::default()
        .condition("not-running")
        .build();
    let mut stream = docker.wait_container(id, Some(options));
    let code = match stream.next().await {
        Some(Ok(r)) => Some(r.status_code),
        Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Some(code),
        _ => None,
    };
    match code {
        Some(c) => c,
        None => run::state(docker, id).await.map(|s| s.1).unwrap_or(-1),
    }
}

/// Resolves when a log line (stdout or stderr) matches `re`.
async fn log_line(docker: &Docker, id: &str, re: &Regex) {
    let options = LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .follow(true)
        .build();
    let mut logs = docker.logs(id, Some(options));
    let mut partial = String::new();
    while let Some(item) = logs.next().await {
        let Ok(chunk) = item else { break };
        partial.push_str(&chunk.to_string());
        while let Some(nl) = partial.find('\n') {
            let line: String = partial.drain(..=nl).collect();
            if re.is_match(line.trim_end_matches(['\r', '\n'])) {
                return;
            }
        }
        if re.is_match(&partial) {
            return;
        }
    }
    // The stream ended: the container stopped; the exit watcher reports it.
    std::future::pending::<()>().await
}

/// Probes until two probes in a row, [`POLL`] apart, succeed.
async fn probe_until_stable(port: PortAccess, http: Option<&HttpExpect>) {
    let mut tcp = TcpProbe::new(port);
    let mut streak = 0;
    loop {
        let ok = match http {
            Some(h) => http::get(port.host, h).await.is_ok(),
            None => tcp.probe().await,
        };
        streak = if ok { streak + 1 } else { 0 };
        if streak >= 2 {
            return;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A TCP probe that is not fooled by docker-proxy (see the module docs).
#[derive(Debug)]
pub(crate) struct TcpProbe {
    direct: Option<SocketAddr>,
    host: SocketAddr,
}

impl TcpProbe {
    pub(crate) fn new(port: PortAccess) -> Self {
        TcpProbe {
            direct: port.direct,
            host: port.host,
        }
    }

    /// Whether something in the container serves the port now.
    pub(crate) async fn probe(&mut self) -> bool {
        if let Some(addr) = self.direct {
            match tokio::time::timeout(DIRECT_CONNECT, TcpStream::connect(addr)).await {
                Ok(Ok(_)) => return true,
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => return false,
                // Not routable from here: use the published port from now on.
                _ => {
                    tracing::debug!(
                        "container address {addr} not reachable; probing via {}",
                        self.host
                    );
                    self.direct = None;
                }
            }
        }
        served_via_proxy(self.host).await
    }
}

/// Whether a published port is really served, as seen through docker-proxy:
/// connects, then counts the connection as served when it stays open for
/// [`PROXY_CONFIRM`] or carries data (the proxy closes it at once when
/// nothing listens in the container).
pub async fn served_via_proxy(addr: SocketAddr) -> bool {
    let Ok(Ok(mut stream)) = tokio::time::timeout(DIRECT_CONNECT, TcpStream::connect(addr)).await
    else {
        return false;
    };
    let mut buf = [0u8; 1];
    match tokio::time::timeout(PROXY_CONFIRM, stream.read(&mut buf)).await {
        Err(_) => true,      // still open: the proxy reached a listener
        Ok(Ok(n)) => n > 0,  // data: served; EOF: the proxy gave up
        Ok(Err(_)) => false, // reset
    }
}

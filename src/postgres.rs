//! Connecting to PostgreSQL (issue 15): the record store (`record::pg`) and
//! the cluster's run queue (`daemon::cluster`) each keep one pool per node,
//! on a small runtime of its own ([`Engine`]); messages name the target
//! without its password.

use std::future::Future;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::runtime::{Handle, Runtime};
use tokio::task::JoinError;
use tokio_postgres::{Config, NoTls};

/// Connections one pool keeps open.
const POOL_SIZE: usize = 4;
/// How long a call waits for a pooled connection (or for a new one).
const WAIT_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle time before TCP keepalive probes start on a connection, and the
/// time between probes: a peer that vanished without closing (a silent
/// partition, a lost NAT entry) is noticed instead of waited on for the
/// kernel's default two hours.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// How long sent data may stay unacknowledged before the kernel drops the
/// connection (Linux `TCP_USER_TIMEOUT`): a query on a partitioned
/// connection fails in this time instead of after ~15 minutes of
/// retransmissions.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);

/// A pool for `url` (`postgres://USER[:PASSWORD]@HOST:PORT/DB[?options=…]`)
/// and its target as `postgres://USER@HOST:PORT/DB`. Connects lazily.
pub(crate) fn pool(url: &str) -> Result<(Pool, String), tokio_postgres::Error> {
    pool_of(url, POOL_SIZE)
}

/// [`pool`] with `size` connections.
pub(crate) fn pool_of(url: &str, size: usize) -> Result<(Pool, String), tokio_postgres::Error> {
    let mut config: Config = url.parse()?;
    detect_dead_peers(&mut config, url);
    let target = describe(&config);
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(size)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(WAIT_TIMEOUT))
        .create_timeout(Some(WAIT_TIMEOUT))
        .build()
        .expect("a pool with a runtime and no hooks always builds");
    Ok((pool, target))
}

/// Turns TCP keepalives on and sets `TCP_USER_TIMEOUT`, unless the URL sets
/// them itself (`keepalives…`, `tcp_user_timeout` parameters): without them
/// a query on a connection whose peer silently vanished waits for many
/// minutes.
fn detect_dead_peers(config: &mut Config, url: &str) {
    if !url.contains("keepalives") {
        config
            .keepalives(true)
            .keepalives_idle(KEEPALIVE_IDLE)
            .keepalives_interval(KEEPALIVE_INTERVAL)
            .keepalives_retries(3);
    }
    if !url.contains("tcp_user_timeout") {
        config.tcp_user_timeout(TCP_USER_TIMEOUT);
    }
}

/// `postgres://USER@HOST:PORT/DB` of `config`, without the password.
fn describe(config: &Config) -> String {
    use tokio_postgres::config::Host;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("");
    let db = config.get_dbname().unwrap_or(user);
    format!("postgres://{user}@{host}:{port}/{db}")
}

/// A one-thread runtime the database work of a pool runs on; shut down (in
/// the background) when dropped.
///
/// Its own runtime so that database calls, their timeouts and their
/// connections' tasks do not depend on how busy the caller's runtime is
/// (builds, log floods) nor on its clock (a paused test clock would fire
/// the pool's timeouts at once).
pub(crate) struct Engine {
    runtime: Option<Runtime>,
    handle: Handle,
}

impl Engine {
    /// One worker thread named `name`.
    pub(crate) fn new(name: &str) -> std::io::Result<Engine> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(name)
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        Ok(Engine {
            runtime: Some(runtime),
            handle,
        })
    }

    /// Runs `work` on this runtime and waits for it from the caller's
    /// blocking pool (so a paused test clock does not jump while the
    /// database answers, as with the SQLite stores).
    pub(crate) async fn run<T, F>(&self, work: F) -> Result<T, JoinError>
    where
        T: Send + 'static,
        F: Future<Output = T> + Send + 'static,
    {
        let handle = self.handle.clone();
        tokio::task::spawn_blocking(move || handle.block_on(work)).await
    }

    /// Starts `task` on this runtime.
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.handle.spawn(task);
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_detect_a_vanished_peer_unless_the_url_says_otherwise() {
        let url = "postgres://kiln@127.0.0.1:5432/kiln";
        let mut config: Config = url.parse().unwrap();
        detect_dead_peers(&mut config, url);
        assert!(config.get_keepalives());
        assert_eq!(config.get_keepalives_idle(), KEEPALIVE_IDLE);
        assert_eq!(config.get_tcp_user_timeout(), Some(&TCP_USER_TIMEOUT));
        let url = "postgres://kiln@127.0.0.1:5432/kiln?keepalives=0&tcp_user_timeout=5";
        let mut config: Config = url.parse().unwrap();
        detect_dead_peers(&mut config, url);
        assert!(!config.get_keepalives());
        assert_eq!(config.get_tcp_user_timeout(), Some(&Duration::from_secs(5)));
    }
}

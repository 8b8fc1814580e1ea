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

/// A pool for `url` (`postgres://USER[:PASSWORD]@HOST:PORT/DB[?options=…]`)
/// and its target as `postgres://USER@HOST:PORT/DB`. Connects lazily.
pub(crate) fn pool(url: &str) -> Result<(Pool, String), tokio_postgres::Error> {
    let config: Config = url.parse()?;
    let target = describe(&config);
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(POOL_SIZE)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(WAIT_TIMEOUT))
        .create_timeout(Some(WAIT_TIMEOUT))
        .build()
        .expect("a pool with a runtime and no hooks always builds");
    Ok((pool, target))
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

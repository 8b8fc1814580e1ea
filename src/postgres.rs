//! Connecting to PostgreSQL (issue 15): the record store (`record::pg`) and
//! the cluster's run queue (`daemon::cluster`) each keep one pool per node;
//! messages name the target without its password.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
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
        .runtime(Runtime::Tokio1)
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

//! The test PostgreSQL (`scripts/services up`): a fresh schema per test, so
//! tests are independent and run in parallel on one database.

/// A schema of its own on the test database, and the URLs that reach it.
pub struct TestSchema {
    /// The schema's name.
    pub name: String,
    /// The server URL, with `search_path` set to the schema.
    pub url: String,
}

/// `KILN_TEST_POSTGRES_URL`; panics with instructions when it is missing
/// (tests fail, never skip, when the services are missing).
pub fn postgres_url() -> String {
    super::services_env("KILN_TEST_POSTGRES_URL").unwrap_or_else(|| {
        panic!(
            "KILN_TEST_POSTGRES_URL is not set and not in target/services.env: \
             run `scripts/services up` (KILN_REQUIRE_SERVICES=1 runs never skip this test)"
        )
    })
}

/// A plain connection to `url`, driven on the current runtime.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!("PostgreSQL at {url} does not answer ({e}); run `scripts/services up`")
        });
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            eprintln!("postgres connection: {e}");
        }
    });
    client
}

impl TestSchema {
    /// Creates `t_<nonce>` on the test database.
    pub async fn new() -> TestSchema {
        let base = postgres_url();
        let name = format!("t_{}", super::nonce());
        connect(&base)
            .await
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .unwrap();
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-csearch_path%3D{name}");
        TestSchema { name, url }
    }

    /// A plain connection in the schema (as an operator with psql would
    /// have: the test role may drop triggers).
    pub async fn admin(&self) -> tokio_postgres::Client {
        connect(&self.url).await
    }

    /// Drops the schema and everything in it (call at the end of a passing
    /// test; a failing one leaves it to look at).
    pub async fn remove(self) {
        connect(&postgres_url())
            .await
            .batch_execute(&format!("DROP SCHEMA {} CASCADE", self.name))
            .await
            .unwrap();
    }
}

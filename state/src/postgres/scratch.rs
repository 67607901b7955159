//! Throwaway databases for tests and the benchmark: each gets a database of its own on the server
//! (`yizhan_test_<uuid>`), dropped when the guard is, after a failure too.

use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::NoTls;

use crate::model::StoreError;

/// The server tests use when `YIZHAN_TEST_POSTGRES` names none: the local one, trust auth.
pub const TEST_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A database created for one test (or benchmark run); [`ScratchDatabase::url`] names it.
#[derive(Debug)]
pub struct ScratchDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl ScratchDatabase {
    /// Creates a fresh database on the server of `YIZHAN_TEST_POSTGRES` (or [`TEST_POSTGRES_URL`]).
    pub async fn create() -> Result<Self, StoreError> {
        let admin_url = std::env::var("YIZHAN_TEST_POSTGRES").unwrap_or_else(|_| TEST_POSTGRES_URL.to_string());
        Self::create_on(&admin_url).await
    }

    /// Creates a fresh database on the server of `admin_url` (a database URL whose user may
    /// create databases).
    pub async fn create_on(admin_url: &str) -> Result<Self, StoreError> {
        let name = format!("yizhan_test_{}", uuid::Uuid::now_v7().simple());
        run(admin_url, &format!("CREATE DATABASE {name}")).await?;
        let mut config = tokio_postgres::Config::from_str(admin_url)
            .map_err(|e| StoreError::BadUrl(format!("{}: {e}", crate::redact::url_credentials(admin_url))))?;
        config.dbname(&name);
        let url = url_of(&config, &name);
        Ok(Self { admin_url: admin_url.to_string(), name, url })
    }

    /// The `postgres://` URL of the database, for `YIZHAN_STATE`.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// The URL of database `name` on the server (and as the user) of `config`.
fn url_of(config: &tokio_postgres::Config, name: &str) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|host| match host {
            tokio_postgres::config::Host::Tcp(host) => host.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "127.0.0.1".to_string());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("postgres");
    let password = config.get_password().map(|p| format!(":{}", String::from_utf8_lossy(p))).unwrap_or_default();
    format!("postgres://{user}{password}@{host}:{port}/{name}")
}

/// Runs one statement on its own connection.
async fn run(url: &str, sql: &str) -> Result<(), StoreError> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    let driver = tokio::spawn(connection);
    let result = client.batch_execute(sql).await;
    drop(client);
    let _ = driver.await;
    Ok(result?)
}

/// Drops the database, disconnecting whoever is still on it. Drop cannot await and may run on
/// the test's runtime (or while it unwinds), so the drop runs on a thread of its own.
impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let (admin_url, sql) = (self.admin_url.clone(), format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        let dropping = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async { tokio::time::timeout(Duration::from_secs(30), run(&admin_url, &sql)).await.ok() })
        });
        if !matches!(dropping.join(), Ok(Some(Ok(())))) {
            eprintln!("could not drop the scratch database {}", self.name);
        }
    }
}

//! Connections to PostgreSQL: the URL, the pool (its schema migrated on first use) and the
//! transaction runner that retries a deadlock victim. Shared by the store, the directory and the
//! parking lot.

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod};
use tokio_postgres::NoTls;

use crate::model::StoreError;

/// How long opening a connection may take before the store reports the server unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a transaction aborted as a deadlock victim or serialization failure is run again.
pub(crate) const TX_RETRIES: usize = 5;

/// Whether `url` names a PostgreSQL state store.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// A pool of connections to the database named by `url`, the schema migrated to this version.
pub(crate) async fn connect(url: &str, size: usize) -> Result<Pool, StoreError> {
    let mut config = tokio_postgres::Config::from_str(url)
        .map_err(|e| StoreError::BadUrl(format!("{}: {e}", crate::redact::url_credentials(url))))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("yizhan");
    }
    let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    let pool =
        Pool::builder(manager).max_size(size).build().map_err(|e| StoreError::Task(format!("postgres pool: {e}")))?;
    let mut client = pool.get().await?;
    super::migrate::migrate(&mut client).await?;
    Ok(pool)
}

impl From<PoolError> for StoreError {
    fn from(error: PoolError) -> Self {
        match error {
            PoolError::Backend(e) => StoreError::Postgres(e),
            other => StoreError::Task(format!("postgres pool: {other}")),
        }
    }
}

/// Whether PostgreSQL aborted the transaction for another one's sake: running it again is safe.
pub(crate) fn is_retryable(error: &StoreError) -> bool {
    use tokio_postgres::error::SqlState;
    match error {
        StoreError::Postgres(e) => {
            matches!(e.code(), Some(code) if *code == SqlState::T_R_DEADLOCK_DETECTED
                || *code == SqlState::T_R_SERIALIZATION_FAILURE)
        }
        _ => false,
    }
}

/// Runs `$body` (an expression of type `Result<T, StoreError>` using the transaction `$tx`) in a
/// transaction on a pooled connection, and commits; a deadlock victim is run again.
macro_rules! in_transaction {
    ($pool:expr, |$tx:ident| $body:expr) => {{
        let mut tries = 0;
        loop {
            let mut client = $pool.get().await?;
            let $tx = client.transaction().await?;
            let result: Result<_, StoreError> = async { $body }.await;
            let result = match result {
                Ok(value) => $tx.commit().await.map(|()| value).map_err(StoreError::from),
                // Dropping the transaction rolls it back.
                Err(e) => Err(e),
            };
            match result {
                Err(e) if tries < crate::postgres::pool::TX_RETRIES && crate::postgres::pool::is_retryable(&e) => {
                    tries += 1
                }
                other => break other,
            }
        }
    }};
}
pub(crate) use in_transaction;

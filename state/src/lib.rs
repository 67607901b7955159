//! The state store: one record per idempotency key, written by workers, read by the HTTP API.
//!
//! A worker *claims* a key before it calls the provider and *finishes* it after. A claim carries a
//! lease that the worker renews while the job runs; a claim whose lease ran out belonged to a worker
//! that died mid-job, so whether the provider saw the call is unknown (`ambiguous`).
//!
//! Campaigns (a template fanned out to many jobs) are stored here too, with exact counters that
//! move in the same write as their jobs' records, and the tenant registry; the parking lot holds
//! a paused campaign's jobs until it is resumed. Delivery receipts are matched to their jobs by
//! the provider's message id (`sid`), indexed in the same write as the job's success.
//!
//! Three backends share one contract and one test suite: SQLite (`sqlite://PATH`, single node),
//! Redis (`redis://HOST:PORT/DB`, a fleet) and PostgreSQL (`postgres://USER@HOST:PORT/DB`, a fleet
//! whose records live in a database it already runs). Times are passed in by the caller
//! (milliseconds since the Unix epoch) so that leases are testable without sleeping; fleet clocks
//! must agree to well within the lease.

mod batching;
mod directory;
mod model;
mod parking;
mod postgres;
pub mod redact;
mod redis_conn;
mod redis_store;
mod sqlite;
mod tenants;

use std::sync::Arc;
use std::time::Duration;

pub use directory::{DirectoryStore, RedisDirectory, SqliteDirectory};
pub use model::{
    CAMPAIGN_COUNTS, CampaignControl, CampaignRecord, CampaignStatus, CancelOutcome, Claim, ClaimRequest,
    DEFAULT_RETENTION, Delivery, DeliveryDone, DeliveryState, EARLY_RECEIPT_TTL, ExpectedReceipts, Finish,
    FinishedState, JobStatus, Millis, PendingReceipt, RECORD_STATUSES, Receipt, ReceiptsRecorded, StateStore,
    StoreError, WaitReason, now_millis,
};
pub use parking::{Parked, ParkingLot, RedisParking, SqliteParking, Taken};
pub use postgres::{
    PostgresDirectory, PostgresParking, PostgresStore, ScratchDatabase, TEST_POSTGRES_URL, is_postgres_url,
};
pub use redis_conn::{RedisConnection, WAIT_TIMEOUT, config_pause_key, is_redis_url, redis_connect};
pub use redis_store::RedisStore;
pub use sqlite::SqliteStore;

/// Opens the store named by a URL: `sqlite://PATH` (relative or absolute; `sqlite::memory:` for an
/// in-memory store), `redis://HOST:PORT/DB` or `postgres://USER@HOST:PORT/DB`. `namespace`
/// separates deployments that share one store (the queue prefix).
pub async fn open(url: &str, namespace: &str) -> Result<Arc<dyn StateStore>, StoreError> {
    open_with_retention(url, namespace, DEFAULT_RETENTION).await
}

/// Like [`open`], keeping records `retention` after their last change instead of [`DEFAULT_RETENTION`].
pub async fn open_with_retention(
    url: &str,
    namespace: &str,
    retention: Duration,
) -> Result<Arc<dyn StateStore>, StoreError> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        Ok(Arc::new(SqliteStore::open(path, namespace, retention).await?))
    } else if url == "sqlite::memory:" {
        Ok(Arc::new(SqliteStore::open(":memory:", namespace, retention).await?))
    } else if is_redis_url(url) {
        Ok(Arc::new(RedisStore::open(url, namespace, retention).await?))
    } else if is_postgres_url(url) {
        Ok(Arc::new(PostgresStore::open(url, namespace, retention).await?))
    } else {
        Err(StoreError::BadUrl(redact::url_credentials(url)))
    }
}

/// Opens the directory store of the state store at `url` (the URLs of [`open`]), under `namespace`.
pub async fn open_directory(url: &str, namespace: &str) -> Result<Arc<dyn DirectoryStore>, StoreError> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        Ok(Arc::new(SqliteDirectory::open(path, namespace)?))
    } else if url == "sqlite::memory:" {
        Ok(Arc::new(SqliteDirectory::open(":memory:", namespace)?))
    } else if is_redis_url(url) {
        Ok(Arc::new(RedisDirectory::open(url, namespace).await?))
    } else if is_postgres_url(url) {
        Ok(Arc::new(PostgresDirectory::open(url, namespace).await?))
    } else {
        Err(StoreError::BadUrl(redact::url_credentials(url)))
    }
}

/// Opens the parking lot of the state store at `url` (the URLs of [`open`]), under `namespace`.
pub async fn open_parking(url: &str, namespace: &str) -> Result<Arc<dyn ParkingLot>, StoreError> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        Ok(Arc::new(SqliteParking::open(path, namespace)?))
    } else if url == "sqlite::memory:" {
        Ok(Arc::new(SqliteParking::open(":memory:", namespace)?))
    } else if is_redis_url(url) {
        Ok(Arc::new(RedisParking::open(url, namespace).await?))
    } else if is_postgres_url(url) {
        Ok(Arc::new(PostgresParking::open(url, namespace).await?))
    } else {
        Err(StoreError::BadUrl(redact::url_credentials(url)))
    }
}

//! The state store's contract and the types it speaks in, shared by both backends.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// The wall clock as [`Millis`]; 0 if the clock is before 1970.
pub fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or_default()
}

/// A state store operation that failed; the caller cannot tell whether a write took effect.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL names no backend; it is carried with its password redacted.
    #[error("unsupported state store URL {0:?}: expected sqlite://PATH or redis://HOST:PORT/DB")]
    BadUrl(String),
    /// SQLite refused the statement or could not open the file.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The Redis server is unreachable or refused the command.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A stored record does not parse (written by another version, or edited by hand).
    #[error("corrupt record for key {key:?}: {reason}")]
    Corrupt {
        /// The idempotency key of the record.
        key: String,
        /// Which field is wrong and how.
        reason: String,
    },
    /// The thread or task that runs the blocking SQLite calls failed or stopped.
    #[error("state store task failed: {0}")]
    Task(String),
}

/// A request to run attempt `attempt` of job `job_id` under idempotency key `key`.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    /// The job's idempotency key (its id when it has none): at most one provider side effect per key.
    pub key: String,
    /// The job's id, indexed to the key so that the status of a duplicate can be answered.
    pub job_id: Uuid,
    /// The delivery's attempt number, 1 for the first.
    pub attempt: u32,
    /// The claiming worker instance.
    pub owner: String,
    /// The caller's clock; the lease runs from here.
    pub now: Millis,
    /// How long the claim holds without a renewal before it counts as orphaned.
    pub lease: Duration,
    /// A copy replayed from the dead-letter queue by an operator: it may take over a `dead` key as
    /// a fresh attempt (a `succeeded` key stays finished, so a replay never repeats a success).
    pub replay: bool,
}

/// The answer to a claim.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// The caller holds the key until `now + lease` (renewable) and should run the job.
    /// `progress` is what earlier attempts recorded (for example the numbers already sent).
    /// `orphaned_attempt` is set when the previous holder's lease ran out mid-run: that attempt's
    /// outcome is unknown, so the caller must apply the config's `on_ambiguous`.
    Acquired {
        /// What earlier attempts recorded; None when none did.
        progress: Option<Value>,
        /// The attempt whose holder's lease ran out; None when no attempt was cut short.
        orphaned_attempt: Option<u32>,
    },
    /// The key already finished (succeeded or dead): the delivery is a duplicate.
    Finished {
        /// How the key finished.
        state: FinishedState,
    },
    /// Another worker holds a live lease on the key; look again in `retry_in`.
    Busy {
        /// The time left on the holder's lease, at least 1 ms.
        retry_in: Duration,
    },
    /// This very attempt already decided to retry, but the retry copy was not confirmed published
    /// (the worker died in between): publish the retry copy for attempt `attempt + 1` now.
    RetryUnpublished {
        /// The attempt that failed; the copy to publish is `attempt + 1`.
        attempt: u32,
        /// The progress recorded with that decision (the copy finds it again when it claims the key).
        progress: Option<Value>,
    },
    /// A stale copy: the job already moved on to a later attempt (or its retry copy was
    /// published), or the key belongs to another job that is waiting for its retry.
    Stale,
}

/// The final state of a key; serialized as `succeeded` or `dead`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishedState {
    /// The provider call succeeded; the key never runs again, not even on a replay.
    Succeeded,
    /// The job was dead-lettered; an operator's replay may claim the key again.
    Dead,
}

/// How an attempt ended, recorded by the key's holder.
#[derive(Debug, Clone, PartialEq)]
pub enum Finish {
    /// Will be retried: attempt `attempt` failed transiently; the retry copy (attempt + 1) goes out
    /// after this is recorded, and [`StateStore::retry_published`] marks it confirmed.
    Retrying {
        /// The attempt that failed, 1 for the first.
        attempt: u32,
        /// What the attempt got done (e.g. numbers already sent), for the next one; None keeps the stored progress.
        progress: Option<Value>,
        /// Why it failed, secrets redacted; shown by the status API.
        error: String,
        /// When the retry copy comes back from its delay queue.
        next_attempt_at: Millis,
    },
    /// Done; `result` is a read action's data (or a write's receipt).
    Succeeded {
        /// The attempt that succeeded.
        attempt: u32,
        /// None when the action returns nothing worth keeping.
        result: Option<Value>,
    },
    /// Parked in the dead-letter queue. `kind` is `permanent`, `exhausted`, `invalid` or `ambiguous`.
    Dead {
        /// The last attempt.
        attempt: u32,
        /// `permanent`, `exhausted`, `invalid` or `ambiguous`.
        kind: String,
        /// Why, secrets redacted; also in the dead letter's `x-yizhan-error-*` headers.
        error: String,
        /// What was done before it died; None keeps the stored progress.
        progress: Option<Value>,
    },
}

/// A job's status as the HTTP API reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    /// The job id asked about.
    pub id: Uuid,
    /// `running`, `retrying`, `succeeded` or `dead` (`queued` is the API's answer for an unknown id).
    pub status: String,
    /// The number of the latest attempt (1 for the first).
    pub attempts: u32,
    /// A succeeded job's result (a read action's data or a write's receipt); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// The last failure, secrets redacted, while `retrying` or once `dead`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For `dead` only: `permanent`, `exhausted`, `invalid` or `ambiguous`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<String>,
    /// For `retrying` only: when the next attempt is due, in ms since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<Millis>,
    /// Set when this job was a duplicate of another job with the same idempotency key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<Uuid>,
}

/// The state store contract; see the module docs.
///
/// Claim rules, by the key's current record:
/// - none: `Acquired` (record: running, attempt, owner, lease).
/// - succeeded: `Finished`.
/// - dead: `Finished`, unless `replay`: then `Acquired` as the request's attempt, progress kept.
/// - running, lease live: `Busy` (retry_in = time left on the lease, at least 1 ms).
/// - running, lease over: `Acquired { orphaned_attempt: Some(previous attempt) }`, progress kept.
/// - retrying at attempt n, same job: attempt > n → `Acquired` (progress kept); attempt == n and the
///   retry copy not marked published → `RetryUnpublished`; otherwise `Stale`.
/// - retrying, another job id: `Stale`.
///
/// Every claim also indexes `job_id → key`, so that [`StateStore::status`] answers for duplicates.
/// Records are kept for the store's retention (default 7 days) after their last change.
#[async_trait::async_trait]
pub trait StateStore: Send + Sync + 'static {
    /// Claims the request's key for its attempt, by the rules above; atomic across the fleet.
    async fn claim(&self, request: &ClaimRequest) -> Result<Claim, StoreError>;

    /// Extends the leases of `keys` held by `owner` to `now + lease`; keys no longer held are skipped.
    async fn renew(&self, owner: &str, keys: &[String], now: Millis, lease: Duration) -> Result<(), StoreError>;

    /// Records how the holder's attempt ended.
    async fn finish(&self, key: &str, owner: &str, finish: &Finish, now: Millis) -> Result<(), StoreError>;

    /// Marks that the retry copy for attempt `attempt + 1` was confirmed by the broker.
    async fn retry_published(&self, key: &str, attempt: u32) -> Result<(), StoreError>;

    /// The status of a job by id, `None` when no worker has seen it yet.
    async fn status(&self, job_id: Uuid) -> Result<Option<JobStatus>, StoreError>;

    /// Records job ids the API accepted (the broker confirmed them), in one round trip for the
    /// batch, so that an id no worker has taken yet is told apart from one never submitted.
    async fn accept(&self, job_ids: &[Uuid], now: Millis) -> Result<(), StoreError>;

    /// Whether the API accepted `job_id` (within the retention).
    async fn accepted(&self, job_id: Uuid) -> Result<bool, StoreError>;

    /// Deletes records unchanged for longer than the retention. Redis expires keys by itself.
    async fn prune(&self, now: Millis) -> Result<u64, StoreError>;
}

/// How long records are kept after their last change, unless the store is opened with another.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

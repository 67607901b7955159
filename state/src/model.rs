//! The state store's contract and the types it speaks in, shared by both backends.

use std::collections::BTreeMap;
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
    #[error(
        "unsupported state store URL {0:?}: expected sqlite://PATH, redis://HOST:PORT/DB or postgres://USER@HOST:PORT/DB"
    )]
    BadUrl(String),
    /// SQLite refused the statement or could not open the file.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The Redis server is unreachable or refused the command.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The PostgreSQL server is unreachable or refused the statement.
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
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
    /// This backend does not offer the operation (named).
    #[error("this state store does not support {0}")]
    Unsupported(&'static str),
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
    /// The campaign the job belongs to. A record created by this claim remembers it, and its
    /// status changes move that campaign's counters; a duplicate is counted against it. None for a
    /// plain job (no extra work on the hot path).
    pub campaign: Option<Uuid>,
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
    /// The key already finished (succeeded, dead, cancelled or capped), or the job was cancelled
    /// before it ran (a tombstone: `state` is `Cancelled`): the delivery is not to run.
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

/// The final state of a key; serialized as `succeeded`, `dead`, `cancelled` or `capped`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishedState {
    /// The provider call succeeded; the key never runs again, not even on a replay.
    Succeeded,
    /// The job was dead-lettered; an operator's replay may claim the key again.
    Dead,
    /// The job (or its campaign) was cancelled before it reached the provider; final.
    Cancelled,
    /// Every recipient was over its frequency cap (`on_cap = "drop"`); final.
    Capped,
}

/// Why a job waits without it counting as an attempt; decides the status it is recorded with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitReason {
    /// Its config is paused or out of tokens: recorded `retrying`.
    RateLimit,
    /// Its `send_at` is ahead: recorded `scheduled`.
    Scheduled,
    /// Quiet hours, or a recipient cap with `on_cap = "defer"`: recorded `deferred`.
    Deferred,
}

impl WaitReason {
    /// The status a record waiting for this reason has: `retrying`, `scheduled` or `deferred`.
    pub fn status(self) -> &'static str {
        match self {
            Self::RateLimit => "retrying",
            Self::Scheduled => "scheduled",
            Self::Deferred => "deferred",
        }
    }
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
    /// Not run yet and not an attempt: the job waits until `until` (parked, or in a delay queue)
    /// and comes back as attempt `attempt + 1`. Recorded as [`WaitReason::status`]; a claim treats
    /// it exactly like `Retrying` (a later attempt acquires, [`StateStore::retry_published`] marks
    /// the copy stored). `reason` is shown as the status's `error`, `until` as `next_attempt_at`.
    Waiting {
        /// The previous attempt, 0 before the first.
        attempt: u32,
        /// What earlier attempts got done; None keeps the stored progress.
        progress: Option<Value>,
        /// Why it waits, for the status API (for example "quiet hours until 08:00 Asia/Shanghai").
        reason: String,
        /// When it comes back, in ms since the Unix epoch.
        until: Millis,
        /// Which waiting status it is recorded with.
        why: WaitReason,
    },
    /// Done; `result` is a read action's data (or a write's receipt).
    Succeeded {
        /// The attempt that succeeded.
        attempt: u32,
        /// None when the action returns nothing worth keeping.
        result: Option<Value>,
        /// The delivery receipts to expect (none for most actions), indexed in the same write
        /// as the success so that a receipt finds its job.
        receipts: ExpectedReceipts,
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
    /// Cancelled before it reached the provider (its campaign was cancelled); final.
    Cancelled {
        /// The attempt that was about to run (recorded as the status's `attempts`).
        attempt: u32,
    },
    /// Every recipient was over its frequency cap and `on_cap = "drop"`; final, no dead letter.
    Capped {
        /// The attempt that found them capped.
        attempt: u32,
        /// What to report (for example the capped recipients with code `capped`).
        result: Option<Value>,
    },
}

/// A job's status as the HTTP API reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    /// The job id asked about.
    pub id: Uuid,
    /// `scheduled`, `deferred`, `running`, `retrying`, `succeeded`, `dead`, `cancelled` or `capped`
    /// (`queued` is the API's answer for an accepted id no worker has recorded yet).
    pub status: String,
    /// The number of the latest attempt (1 for the first).
    pub attempts: u32,
    /// A succeeded job's result (a read action's data or a write's receipt); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// The last failure, secrets redacted, while `retrying` or once `dead`; why it waits while
    /// `scheduled` or `deferred`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For `dead` only: `permanent`, `exhausted`, `invalid` or `ambiguous`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<String>,
    /// For `retrying`, `scheduled` and `deferred`: when the next attempt is due, in ms since the
    /// Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<Millis>,
    /// Set when this job was a duplicate of another job with the same idempotency key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<Uuid>,
    /// The campaign of the key's record (the campaign of the job that created it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<Uuid>,
    /// Each recipient's delivery as the provider's receipts tell it, for a succeeded job whose
    /// config collects receipts; None otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<BTreeMap<String, Delivery>>,
}

/// What the receipts of a recipient's message said so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Sent; no final receipt yet.
    Pending,
    /// The provider reports it reached the recipient.
    Delivered,
    /// The provider reports it did not (the message was sent, but never arrived).
    Failed,
}

impl DeliveryState {
    /// `pending`, `delivered` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    /// The state named `text` (as [`DeliveryState::as_str`] writes it).
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(Self::Pending),
            "delivered" => Some(Self::Delivered),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// One recipient's delivery, as `GET /v1/jobs/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// `pending`, `delivered` or `failed`.
    pub state: DeliveryState,
    /// The provider's status code or description (`DELIVRD`, `UNDELIV`...), once final.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// When the provider says it happened, in ms since the Unix epoch, once final.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Millis>,
}

impl Delivery {
    /// A receipt that came before its message's success was recorded, as stored (`state`, `code`,
    /// `at`); none when its state is not one we know.
    pub(crate) fn early(state: &str, code: Option<String>, at: Millis) -> Option<Delivery> {
        DeliveryState::parse(state).map(|state| Delivery { state, code, at: Some(at) })
    }
}

/// A success's `delivery` field, built message by message by the stores that index receipts:
/// each recipient's early receipt, or pending; and how many of those were final.
#[derive(Debug, Default)]
pub(crate) struct Deliveries {
    by_recipient: BTreeMap<String, Delivery>,
    /// Early receipts that said delivered.
    pub(crate) delivered: i64,
    /// Early receipts that said failed.
    pub(crate) undelivered: i64,
}

impl Deliveries {
    /// `recipient`'s message, with the receipt that came first (`early`) or pending.
    pub(crate) fn add(&mut self, recipient: &str, early: Option<Delivery>) {
        let delivery = early.unwrap_or(Delivery { state: DeliveryState::Pending, code: None, at: None });
        match delivery.state {
            DeliveryState::Delivered => self.delivered += 1,
            DeliveryState::Failed => self.undelivered += 1,
            DeliveryState::Pending => {}
        }
        self.by_recipient.insert(recipient.to_owned(), delivery);
    }

    /// The JSON the record's `delivery` column holds.
    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(&self.by_recipient).expect("a map of strings serialises")
    }
}

/// The receipts a success expects: one per message the provider accepted, by the provider's id
/// for it (`sid`: an SMS `SerialNo`, an SES `MessageId` and address).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExpectedReceipts {
    /// `(sid, recipient)`: the recipient as the job wrote it.
    pub sids: Vec<(String, String)>,
    /// The queue of a config whose receipts are asked for one by one (SES
    /// `GetSendEmailStatus`): its sids are listed by [`StateStore::take_pending_receipts`] until
    /// final. None when receipts come on their own (pushed, or pulled from the provider's queue).
    pub pull: Option<String>,
    /// The job's completion callback (opaque JSON, `{"url", "secret"?}`), kept so that the
    /// callback can be sent again once every receipt is final. A secret: never shown.
    pub callback: Option<String>,
}

impl ExpectedReceipts {
    /// Whether there is nothing to expect (the success is written as before).
    pub fn is_empty(&self) -> bool {
        self.sids.is_empty()
    }
}

/// A delivery receipt from a provider, matched to its message by `sid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The provider's id of the message (the `SerialNo` a `SendSms` answered).
    pub sid: String,
    /// Delivered, or failed (`Pending` is not a receipt and is ignored).
    pub state: DeliveryState,
    /// The provider's code or description (`DELIVRD`).
    pub code: Option<String>,
    /// When the recipient got it (or the provider gave up), ms since the Unix epoch.
    pub at: Millis,
}

/// A job whose receipts all became final in a [`StateStore::record_receipts`] call, and that has
/// a completion callback to send again.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryDone {
    /// The job's status, `delivery` included.
    pub status: JobStatus,
    /// The callback as [`ExpectedReceipts::callback`] stored it.
    pub callback: String,
}

/// What [`StateStore::record_receipts`] did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReceiptsRecorded {
    /// Receipts that changed a recipient's delivery (a duplicate, or one after the first final
    /// receipt of its message, changes nothing).
    pub counted: u64,
    /// Receipts whose message is unknown yet (the success that sent it may not be recorded yet):
    /// kept for [`EARLY_RECEIPT_TTL`] and applied when it is.
    pub early: u64,
    /// Jobs whose every receipt is now final and that have a callback.
    pub done: Vec<DeliveryDone>,
}

/// A message whose receipt is asked for, from [`StateStore::take_pending_receipts`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingReceipt {
    /// The provider's id of the message.
    pub sid: String,
    /// The recipient, as the job wrote it.
    pub recipient: String,
    /// When the success was recorded, ms since the Unix epoch.
    pub sent_at: Millis,
}

/// How long a receipt for an unknown message is kept, waiting for the success that sent it to
/// be recorded; a receipt of a message yizhan did not send is dropped after it.
pub const EARLY_RECEIPT_TTL: Duration = Duration::from_secs(24 * 3600);

/// The answer to [`StateStore::cancel_job`].
#[derive(Debug, Clone, PartialEq)]
pub enum CancelOutcome {
    /// The job will not run: its waiting record became `cancelled`, or (no record yet) a tombstone
    /// makes its first claim answer `Finished { state: Cancelled }`. Cancelling again answers
    /// this again.
    Cancelled,
    /// Too late: the job runs or ran (or is a duplicate of a job that did); the API answers 409
    /// with this status.
    Started(Box<JobStatus>),
    /// No record and never accepted.
    Unknown,
}

/// The statuses a record can have, in the order the API lists them.
pub const RECORD_STATUSES: [&str; 8] =
    ["scheduled", "deferred", "running", "retrying", "succeeded", "dead", "cancelled", "capped"];

/// The keys of [`CampaignStatus::counts`]: `queued` (derived), every record status, `duplicate`.
pub const CAMPAIGN_COUNTS: [&str; 10] =
    ["queued", "scheduled", "deferred", "running", "retrying", "succeeded", "dead", "cancelled", "capped", "duplicate"];

/// The counts that end a job: a campaign is done when they add up to its total.
const FINAL_COUNTS: [&str; 5] = ["succeeded", "dead", "cancelled", "capped", "duplicate"];

/// A campaign as stored: what the producer needs to append recipients and answer status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignRecord {
    /// The campaign's id (UUIDv7).
    pub id: Uuid,
    /// The tenant that owns it.
    pub tenant: String,
    /// Its idempotency key: one campaign per `(tenant, key)`.
    pub key: String,
    /// The campaign head as the producer serialized it (template, params, priority, ...).
    pub head: Value,
    /// Its `send_at`, in ms since the Unix epoch.
    pub send_at: Option<Millis>,
    /// When it was created, in ms since the Unix epoch.
    pub created_at: Millis,
}

/// The operator's control of a campaign, stored; `Cancelled` is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CampaignControl {
    /// Its jobs run (the default).
    Running,
    /// None of its jobs reaches a provider until resumed.
    Paused,
    /// None of its unsent jobs ever runs; final.
    Cancelled,
}

impl CampaignControl {
    /// `running`, `paused` or `cancelled`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Cancelled => "cancelled",
        }
    }

    /// The control named `text` (as [`CampaignControl::as_str`] writes it).
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "running" => Some(Self::Running),
            "paused" => Some(Self::Paused),
            "cancelled" => Some(Self::Cancelled),
            _ => None,
        }
    }
}

/// A campaign's progress as the API reports it, from exact counters (no scan).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignStatus {
    /// Recipients of its jobs whose receipt says delivered.
    #[serde(default)]
    pub delivered: u64,
    /// Recipients of its jobs whose receipt says failed.
    #[serde(default)]
    pub undelivered: u64,
    /// The campaign's id.
    pub id: Uuid,
    /// The head's `name`, when it has one.
    pub name: Option<String>,
    /// The tenant that owns it.
    pub tenant: String,
    /// `cancelled`, `paused`, `done`, `scheduled` or `running`, the first that applies (see
    /// [`CampaignStatus::derive`]).
    pub status: String,
    /// Jobs recorded by [`StateStore::add_to_campaign`].
    pub total: u64,
    /// Every key of [`CAMPAIGN_COUNTS`], zeros included; `queued` is the total minus the rest.
    pub counts: BTreeMap<String, u64>,
    /// Its `send_at`, in ms since the Unix epoch.
    pub send_at: Option<Millis>,
    /// When it was created, in ms since the Unix epoch.
    pub created_at: Millis,
}

impl CampaignStatus {
    /// The status of `record` from its stored control, total and counters (`stored` holds the
    /// record statuses, `duplicate`, `delivered` and `undelivered`; missing ones are 0) at
    /// `now`: cancelled > paused > done
    /// (total > 0 and the final counts reach it) > scheduled (send_at ahead) > running.
    pub fn derive(
        record: &CampaignRecord,
        control: CampaignControl,
        total: u64,
        stored: &BTreeMap<String, i64>,
        now: Millis,
    ) -> Self {
        let mut counts: BTreeMap<String, u64> = CAMPAIGN_COUNTS
            .iter()
            .map(|name| (name.to_string(), stored.get(*name).copied().unwrap_or(0).max(0).unsigned_abs()))
            .collect();
        let seen: u64 = counts.iter().filter(|(name, _)| name.as_str() != "queued").map(|(_, n)| *n).sum();
        counts.insert("queued".to_string(), total.saturating_sub(seen));
        let finished: u64 = FINAL_COUNTS.iter().map(|name| counts[*name]).sum();
        let status = match control {
            CampaignControl::Cancelled => "cancelled",
            CampaignControl::Paused => "paused",
            CampaignControl::Running if total > 0 && finished >= total => "done",
            CampaignControl::Running if record.send_at.is_some_and(|at| at > now) => "scheduled",
            CampaignControl::Running => "running",
        };
        let stored_count = |name: &str| stored.get(name).copied().unwrap_or(0).max(0).unsigned_abs();
        Self {
            delivered: stored_count("delivered"),
            undelivered: stored_count("undelivered"),
            id: record.id,
            name: record.head.get("name").and_then(Value::as_str).map(str::to_string),
            tenant: record.tenant.clone(),
            status: status.to_string(),
            total,
            counts,
            send_at: record.send_at,
            created_at: record.created_at,
        }
    }
}

/// The state store contract; see the module docs.
///
/// Claim rules, by the key's current record:
/// - none: `Acquired` (record: running, attempt, owner, lease).
/// - succeeded: `Finished`.
/// - dead: `Finished`, unless `replay`: then `Acquired` as the request's attempt, progress kept.
/// - running, lease live: `Busy` (retry_in = time left on the lease, at least 1 ms).
/// - running, lease over: `Acquired { orphaned_attempt: Some(previous attempt) }`, progress kept.
/// - cancelled or capped: `Finished`.
/// - waiting (retrying, scheduled or deferred) at attempt n, same job: attempt > n → `Acquired`
///   (progress kept); attempt == n and the copy not marked published → `RetryUnpublished`;
///   otherwise `Stale`.
/// - waiting, another job id: `Stale`.
///
/// A job cancelled by [`StateStore::cancel_job`] before it had a record (a tombstone) answers
/// `Finished { state: Cancelled }` whatever the key's record: with none, its claim writes the
/// key's record `cancelled` (attempt 0) for it.
///
/// Every claim also indexes `job_id → key`, so that [`StateStore::status`] answers for duplicates.
/// Records are kept for the store's retention (default 7 days) after their last change (a waiting
/// record at least until the retention after its `next_attempt_at`).
///
/// Campaign counters, exact and changed in the same transaction (SQLite) or script (Redis) as the
/// record: a record created by a claim with `campaign` remembers it, and every status change of it
/// moves one count from the old status to the new one (creation only adds). A claim answering
/// `Finished` or `Stale` for a job of a campaign that is not the record's own job counts
/// `duplicate` once per job id, however often it is redelivered. A record naming an unknown
/// campaign counts nothing.
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

    /// [`StateStore::accept`], also recording that the jobs belong to `tenant` (only a tenant
    /// other than `default` is recorded), so that a scoped API token reads only its tenant's jobs.
    /// A store without owner records accepts only (its jobs then read as tenant `default`'s).
    async fn accept_owned(&self, tenant: &str, job_ids: &[Uuid], now: Millis) -> Result<(), StoreError> {
        let _ = tenant;
        self.accept(job_ids, now).await
    }

    /// The tenant [`StateStore::accept_owned`] recorded for `job_id` (within the retention); None
    /// for tenant `default`'s jobs and unknown ones.
    async fn owner(&self, job_id: Uuid) -> Result<Option<String>, StoreError> {
        let _ = job_id;
        Ok(None)
    }

    /// Deletes records unchanged for longer than the retention. Redis expires keys by itself.
    async fn prune(&self, now: Millis) -> Result<u64, StoreError>;

    /// Cancels one job that has not started: a waiting record (retrying, scheduled, deferred) of
    /// this job becomes `cancelled` (its campaign's counts move); an accepted job without a record
    /// gets a tombstone (see the claim rules); a running or final one is `Started`.
    async fn cancel_job(&self, job_id: Uuid, now: Millis) -> Result<CancelOutcome, StoreError>;

    /// Creates a campaign (control `running`, total 0), unless one with the same `(tenant, key)`
    /// exists: then that one is returned unchanged, with its total.
    async fn create_campaign(&self, record: &CampaignRecord) -> Result<(CampaignRecord, u64), StoreError>;

    /// Adds `jobs` to the campaign's total (after they were confirmed); false for an unknown id.
    async fn add_to_campaign(&self, id: Uuid, jobs: u64) -> Result<bool, StoreError>;

    /// The campaign and its status, None for an unknown id. O(1): counters, not a scan.
    async fn campaign(&self, id: Uuid) -> Result<Option<(CampaignRecord, CampaignStatus)>, StoreError>;

    /// Sets the campaign's control and answers its status (None: unknown id). A cancelled
    /// campaign stays cancelled: any control of it changes nothing.
    async fn control_campaign(&self, id: Uuid, control: CampaignControl) -> Result<Option<CampaignStatus>, StoreError>;

    /// The controls of the known campaigns among `ids`, in one round trip (unknown ids are left out).
    async fn campaign_controls(&self, ids: &[Uuid]) -> Result<Vec<(Uuid, CampaignControl)>, StoreError>;

    /// Campaigns newest first by id (UUIDv7 ids: creation order), at most `limit`, only those whose
    /// id is below `before` when given: the console's list, a page at a time, read through an
    /// index (never a scan of jobs). A backend without such an index answers
    /// [`StoreError::Unsupported`].
    async fn campaigns(&self, before: Option<Uuid>, limit: usize) -> Result<Vec<CampaignStatus>, StoreError> {
        let _ = (before, limit);
        Err(StoreError::Unsupported("listing campaigns"))
    }

    /// Adds tenants to the registry (already registered ones are ignored).
    async fn register_tenants(&self, tenants: &[String]) -> Result<(), StoreError>;

    /// Every registered tenant, sorted.
    async fn tenants(&self) -> Result<Vec<String>, StoreError>;

    /// Records delivery receipts in one write. Idempotent per sid: the first final receipt of a
    /// message wins, a duplicate or a later one counts nothing. A receipt whose sid is unknown is
    /// kept (the first one) for [`EARLY_RECEIPT_TTL`] and applied when the success that sent
    /// the message is recorded. Each counted receipt moves its campaign's `delivered` or
    /// `undelivered` count in the same write.
    async fn record_receipts(&self, receipts: &[Receipt], now: Millis) -> Result<ReceiptsRecorded, StoreError>;

    /// Up to `limit` messages of pull queue `queue` ([`ExpectedReceipts::pull`]) whose receipt
    /// is still pending and due at `now`, oldest due first; each becomes due again at
    /// `next_due`, so that a message is asked about once per interval until its receipt is final.
    async fn take_pending_receipts(
        &self,
        queue: &str,
        now: Millis,
        next_due: Millis,
        limit: usize,
    ) -> Result<Vec<PendingReceipt>, StoreError>;

    /// Takes or keeps the lease `name` for `owner` until `now + ttl`: true when `owner` holds it
    /// (it was free, expired, or already its own). One holder across the fleet at a time.
    async fn lease(&self, name: &str, owner: &str, now: Millis, ttl: Duration) -> Result<bool, StoreError>;
}

/// How long records are kept after their last change, unless the store is opened with another.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// A key's record as a claim reads it (the SQL backends' row; Redis decides in its script).
#[derive(Debug)]
pub(crate) struct StoredKey {
    pub(crate) job_id: String,
    pub(crate) state: String,
    pub(crate) attempt: i64,
    pub(crate) lease_until: Option<i64>,
    pub(crate) retry_published: bool,
    pub(crate) progress: Option<String>,
}

/// What a claim on an existing record does, decided without I/O: the answer, whether the claimer
/// takes the key (with this attempt), and whether a campaign counts the job a duplicate.
#[derive(Debug)]
pub(crate) struct ClaimDecision {
    pub(crate) answer: Claim,
    pub(crate) acquire_attempt: Option<i64>,
    pub(crate) count_duplicate: bool,
}

impl StoredKey {
    /// The claim rule of the SQL backends, one place for both: a finished key answers its end
    /// (a dead one is taken again by a replay), a running key is busy until its lease runs out
    /// and then taken as orphaned, a waiting key is taken by its own job's next attempt.
    pub(crate) fn decide(&self, request: &ClaimRequest, job_id: &str) -> Result<ClaimDecision, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt { key: request.key.clone(), reason };
        let stored_attempt =
            u32::try_from(self.attempt).map_err(|_| corrupt(format!("attempt {} out of range", self.attempt)))?;
        let progress = || parse_json(&request.key, "progress", self.progress.as_deref());
        let finished = |state| (Claim::Finished { state }, None);
        let (answer, acquire_attempt) = match self.state.as_str() {
            "succeeded" => finished(FinishedState::Succeeded),
            "dead" if request.replay => {
                (Claim::Acquired { progress: progress()?, orphaned_attempt: None }, Some(request.attempt))
            }
            "dead" => finished(FinishedState::Dead),
            "cancelled" => finished(FinishedState::Cancelled),
            "capped" => finished(FinishedState::Capped),
            "running" => {
                let lease_until = self.lease_until.unwrap_or(0);
                if lease_until > request.now {
                    let left = lease_until.saturating_sub(request.now).max(1);
                    (Claim::Busy { retry_in: Duration::from_millis(left.unsigned_abs()) }, None)
                } else {
                    let orphaned = Claim::Acquired { progress: progress()?, orphaned_attempt: Some(stored_attempt) };
                    (orphaned, Some(request.attempt.max(stored_attempt)))
                }
            }
            state if is_waiting(state) => {
                if self.job_id != job_id {
                    (Claim::Stale, None)
                } else if request.attempt > stored_attempt {
                    (Claim::Acquired { progress: progress()?, orphaned_attempt: None }, Some(request.attempt))
                } else if request.attempt == stored_attempt && !self.retry_published {
                    (Claim::RetryUnpublished { attempt: stored_attempt, progress: progress()? }, None)
                } else {
                    (Claim::Stale, None)
                }
            }
            other => return Err(corrupt(format!("unknown state {other:?}"))),
        };
        let count_duplicate = matches!(answer, Claim::Finished { .. } | Claim::Stale) && self.job_id != job_id;
        Ok(ClaimDecision { answer, acquire_attempt: acquire_attempt.map(i64::from), count_duplicate })
    }
}

/// The states a claim treats like `retrying`: the job waits for its next copy.
pub(crate) fn is_waiting(state: &str) -> bool {
    matches!(state, "retrying" | "scheduled" | "deferred")
}

/// A stored JSON column, or why the record is corrupt.
pub(crate) fn parse_json(key: &str, field: &str, text: Option<&str>) -> Result<Option<Value>, StoreError> {
    match text {
        None => Ok(None),
        Some(text) => serde_json::from_str(text)
            .map(Some)
            .map_err(|e| StoreError::Corrupt { key: key.to_string(), reason: format!("{field} is not JSON: {e}") }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOB: &str = "0190c0de-0000-7000-8000-000000000001";

    #[test]
    fn deliveries_count_the_final_early_receipts_and_leave_the_rest_pending() {
        let mut deliveries = Deliveries::default();
        deliveries.add("+8613800000001", Delivery::early("delivered", Some("DELIVRD".into()), 5));
        deliveries.add("+8613800000002", Delivery::early("failed", Some("UNDELIV".into()), 6));
        deliveries.add("+8613800000003", None);
        deliveries.add("+8613800000004", Delivery::early("bogus", None, 7));
        assert_eq!((deliveries.delivered, deliveries.undelivered), (1, 1));
        assert_eq!(
            deliveries.to_json(),
            r#"{"+8613800000001":{"state":"delivered","code":"DELIVRD","at":5},"+8613800000002":{"state":"failed","code":"UNDELIV","at":6},"+8613800000003":{"state":"pending"},"+8613800000004":{"state":"pending"}}"#
        );
    }

    fn request(attempt: u32, replay: bool) -> ClaimRequest {
        ClaimRequest {
            key: "k".into(),
            job_id: JOB.parse().unwrap(),
            attempt,
            owner: "w".into(),
            now: 1_000,
            lease: Duration::from_secs(30),
            replay,
            campaign: None,
        }
    }

    fn stored(state: &str, job_id: &str, attempt: i64, lease_until: Option<i64>, retry_published: bool) -> StoredKey {
        let (job_id, state) = (job_id.to_string(), state.to_string());
        StoredKey { job_id, state, attempt, lease_until, retry_published, progress: Some("{\"sent\":[1]}".into()) }
    }

    #[test]
    fn a_running_key_is_busy_until_its_lease_runs_out_then_taken_as_orphaned() {
        let busy = stored("running", "other", 2, Some(1_500), false).decide(&request(1, false), JOB).unwrap();
        assert_eq!(busy.answer, Claim::Busy { retry_in: Duration::from_millis(500) });
        assert_eq!((busy.acquire_attempt, busy.count_duplicate), (None, false));

        let orphaned = stored("running", "other", 2, Some(999), false).decide(&request(1, false), JOB).unwrap();
        let progress = Some(serde_json::json!({"sent": [1]}));
        assert_eq!(orphaned.answer, Claim::Acquired { progress, orphaned_attempt: Some(2) });
        assert_eq!(orphaned.acquire_attempt, Some(2), "the higher of the two attempts");
    }

    #[test]
    fn a_waiting_key_is_taken_by_its_own_jobs_next_attempt_only() {
        let next = stored("retrying", JOB, 1, None, true).decide(&request(2, false), JOB).unwrap();
        assert!(matches!(next.answer, Claim::Acquired { orphaned_attempt: None, .. }));
        assert_eq!(next.acquire_attempt, Some(2));

        let unpublished = stored("retrying", JOB, 2, None, false).decide(&request(2, false), JOB).unwrap();
        assert!(matches!(unpublished.answer, Claim::RetryUnpublished { attempt: 2, .. }));
        assert_eq!(unpublished.acquire_attempt, None);

        let copy = stored("retrying", JOB, 2, None, true).decide(&request(2, false), JOB).unwrap();
        assert_eq!((copy.answer, copy.count_duplicate), (Claim::Stale, false));

        let foreign = stored("scheduled", "other", 1, None, true).decide(&request(5, false), JOB).unwrap();
        assert_eq!((foreign.answer, foreign.count_duplicate), (Claim::Stale, true));
    }

    #[test]
    fn finished_keys_answer_their_end_and_only_a_replay_takes_a_dead_one() {
        let done = stored("succeeded", "other", 1, None, false).decide(&request(1, true), JOB).unwrap();
        assert_eq!(done.answer, Claim::Finished { state: FinishedState::Succeeded });
        assert!(done.count_duplicate && done.acquire_attempt.is_none());

        let dead = stored("dead", JOB, 3, None, false).decide(&request(1, false), JOB).unwrap();
        assert_eq!((dead.answer, dead.count_duplicate), (Claim::Finished { state: FinishedState::Dead }, false));

        let replayed = stored("dead", JOB, 3, None, false).decide(&request(1, true), JOB).unwrap();
        assert_eq!(replayed.acquire_attempt, Some(1));
    }

    #[test]
    fn an_unknown_state_or_attempt_is_corrupt() {
        assert!(stored("exploded", JOB, 1, None, false).decide(&request(1, false), JOB).is_err());
        assert!(stored("running", JOB, -1, None, false).decide(&request(1, false), JOB).is_err());
    }
}

//! The SQLite backend: one file (or `:memory:`), one dedicated thread owning the connection.
//!
//! Throughput: callers send requests over a bounded channel to the store's thread; the thread takes
//! the first waiting request plus everything else already queued (up to [`MAX_BATCH`]) and runs the
//! whole batch in ONE `BEGIN IMMEDIATE` transaction, each request inside its own savepoint so that
//! one failing request does not undo the others. Replies go out only after the `COMMIT`, so no
//! caller acts on a claim that is not durable. Under load the cost of a commit (the WAL append and
//! its lock) is shared by every request in the batch; with a single caller the batch is one request.

use std::collections::BTreeMap;
use std::fmt;
use std::thread;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::model::{
    CampaignControl, CampaignRecord, CampaignStatus, CancelOutcome, Claim, ClaimRequest, Deliveries, Delivery,
    DeliveryDone, DeliveryState, EARLY_RECEIPT_TTL, ExpectedReceipts, Finish, FinishedState, JobStatus, Millis,
    PendingReceipt, RECORD_STATUSES, Receipt, ReceiptsRecorded, StateStore, StoreError, StoredKey, is_waiting,
    now_millis, parse_json,
};
use crate::tenants;

mod counting;
use counting::Counting;

/// The most requests run in one transaction.
const MAX_BATCH: usize = 1024;
/// Requests waiting for the store's thread before senders wait.
const QUEUE_CAPACITY: usize = 8192;
/// How long a transaction waits for another process holding the file's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The tables. `yizhan_keys.campaign` came with campaigns, `delivery` and `notify` (and the
/// campaign counters `n_delivered`, `n_undelivered`) with receipts: [`add_missing_columns`] adds
/// them to older files. `yizhan_sids` indexes the provider's message ids of succeeded jobs,
/// `yizhan_early_receipts` holds receipts that came before their message's success was recorded.
const TABLES: &str = "
CREATE TABLE IF NOT EXISTS yizhan_keys (
    namespace       TEXT    NOT NULL,
    key             TEXT    NOT NULL,
    job_id          TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    attempt         INTEGER NOT NULL,
    owner           TEXT,
    lease_until     INTEGER,
    retry_published INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    progress        TEXT,
    result          TEXT,
    error           TEXT,
    error_kind      TEXT,
    updated_at      INTEGER NOT NULL,
    campaign        TEXT,
    delivery        TEXT,
    notify          TEXT,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS yizhan_keys_updated ON yizhan_keys (namespace, updated_at);
CREATE TABLE IF NOT EXISTS yizhan_jobs (
    namespace  TEXT    NOT NULL,
    job_id     TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, job_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS yizhan_jobs_updated ON yizhan_jobs (namespace, updated_at);
CREATE TABLE IF NOT EXISTS yizhan_accepted (
    namespace   TEXT    NOT NULL,
    job_id      TEXT    NOT NULL,
    accepted_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, job_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS yizhan_accepted_at ON yizhan_accepted (namespace, accepted_at);
CREATE TABLE IF NOT EXISTS yizhan_tombstones (
    namespace TEXT    NOT NULL,
    job_id    TEXT    NOT NULL,
    at        INTEGER NOT NULL,
    PRIMARY KEY (namespace, job_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS yizhan_tombstones_at ON yizhan_tombstones (namespace, at);
CREATE TABLE IF NOT EXISTS yizhan_counted (
    namespace TEXT    NOT NULL,
    job_id    TEXT    NOT NULL,
    at        INTEGER NOT NULL,
    PRIMARY KEY (namespace, job_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS yizhan_counted_at ON yizhan_counted (namespace, at);
CREATE TABLE IF NOT EXISTS yizhan_campaigns (
    namespace   TEXT    NOT NULL,
    id          TEXT    NOT NULL,
    tenant      TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    head        TEXT    NOT NULL,
    send_at     INTEGER,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    total       INTEGER NOT NULL DEFAULT 0,
    control     TEXT    NOT NULL DEFAULT 'running',
    PRIMARY KEY (namespace, id),
    UNIQUE (namespace, tenant, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS yizhan_campaign_counts (
    namespace   TEXT    NOT NULL,
    id          TEXT    NOT NULL,
    updated_at  INTEGER NOT NULL,
    n_scheduled INTEGER NOT NULL DEFAULT 0,
    n_deferred  INTEGER NOT NULL DEFAULT 0,
    n_running   INTEGER NOT NULL DEFAULT 0,
    n_retrying  INTEGER NOT NULL DEFAULT 0,
    n_succeeded INTEGER NOT NULL DEFAULT 0,
    n_dead      INTEGER NOT NULL DEFAULT 0,
    n_cancelled INTEGER NOT NULL DEFAULT 0,
    n_capped    INTEGER NOT NULL DEFAULT 0,
    n_duplicate INTEGER NOT NULL DEFAULT 0,
    n_delivered INTEGER NOT NULL DEFAULT 0,
    n_undelivered INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (namespace, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS yizhan_sids (
    namespace TEXT    NOT NULL,
    sid       TEXT    NOT NULL,
    key       TEXT    NOT NULL,
    recipient TEXT    NOT NULL,
    pull      TEXT,
    due       INTEGER,
    at        INTEGER NOT NULL,
    PRIMARY KEY (namespace, sid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS yizhan_sids_at ON yizhan_sids (namespace, at);
CREATE INDEX IF NOT EXISTS yizhan_sids_pull ON yizhan_sids (namespace, pull, due) WHERE pull IS NOT NULL;
CREATE TABLE IF NOT EXISTS yizhan_early_receipts (
    namespace TEXT    NOT NULL,
    sid       TEXT    NOT NULL,
    state     TEXT    NOT NULL,
    code      TEXT,
    at        INTEGER NOT NULL,
    stored_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, sid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS yizhan_early_receipts_at ON yizhan_early_receipts (namespace, stored_at);
CREATE TABLE IF NOT EXISTS yizhan_leases (
    namespace TEXT    NOT NULL,
    name      TEXT    NOT NULL,
    owner     TEXT    NOT NULL,
    until     INTEGER NOT NULL,
    PRIMARY KEY (namespace, name)
) WITHOUT ROWID;
";

/// The SQLite state store. Several deployments may share one file: records are keyed by
/// `(namespace, key)`.
pub struct SqliteStore {
    requests: mpsc::Sender<Request>,
    path: String,
    namespace: String,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` (`:memory:` for a private in-memory one),
    /// in WAL mode with `synchronous=NORMAL`, and starts the store's thread.
    pub async fn open(path: &str, namespace: &str, retention: Duration) -> Result<Self, StoreError> {
        let (requests, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let (ready_tx, ready_rx) = oneshot::channel();
        let (ns, retention_ms) = (namespace.to_string(), duration_ms(retention));
        let db_path = path.to_string();
        thread::Builder::new()
            .name("yizhan-state-sqlite".to_string())
            .spawn(move || match open_connection(&db_path, ns, retention_ms) {
                Ok((conn, ctx)) => {
                    if ready_tx.send(Ok(())).is_ok() {
                        serve(conn, &ctx, receiver);
                    }
                }
                Err(e) => {
                    // The opener may have gone away; nothing else to tell.
                    let _ = ready_tx.send(Err(e));
                }
            })
            .map_err(|e| StoreError::Task(format!("cannot start the sqlite thread: {e}")))?;
        ready_rx.await.map_err(|_| stopped())??;
        Ok(Self { requests, path: path.to_string(), namespace: namespace.to_string() })
    }

    async fn call(&self, op: Op) -> Result<Reply, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.requests.send(Request { op, reply }).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> StoreError {
    StoreError::Task("the sqlite thread stopped".to_string())
}

fn unexpected_reply() -> StoreError {
    StoreError::Task("the sqlite thread answered the wrong request".to_string())
}

#[async_trait::async_trait]
impl StateStore for SqliteStore {
    async fn claim(&self, request: &ClaimRequest) -> Result<Claim, StoreError> {
        match self.call(Op::Claim(request.clone())).await? {
            Reply::Claim(claim) => Ok(claim),
            _ => Err(unexpected_reply()),
        }
    }

    async fn renew(&self, owner: &str, keys: &[String], now: Millis, lease: Duration) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let op = Op::Renew {
            owner: owner.to_string(),
            keys: keys.to_vec(),
            lease_until: now.saturating_add(duration_ms(lease)),
            now,
        };
        match self.call(op).await? {
            Reply::Done => Ok(()),
            _ => Err(unexpected_reply()),
        }
    }

    async fn finish(&self, key: &str, _owner: &str, finish: &Finish, now: Millis) -> Result<(), StoreError> {
        let op = Op::Finish { key: key.to_string(), finish: finish.clone(), now };
        match self.call(op).await? {
            Reply::Done => Ok(()),
            _ => Err(unexpected_reply()),
        }
    }

    async fn retry_published(&self, key: &str, attempt: u32) -> Result<(), StoreError> {
        let op = Op::RetryPublished { key: key.to_string(), attempt };
        match self.call(op).await? {
            Reply::Done => Ok(()),
            _ => Err(unexpected_reply()),
        }
    }

    async fn status(&self, job_id: Uuid) -> Result<Option<JobStatus>, StoreError> {
        match self.call(Op::Status(job_id)).await? {
            Reply::Status(status) => Ok(status),
            _ => Err(unexpected_reply()),
        }
    }

    async fn accept(&self, job_ids: &[Uuid], now: Millis) -> Result<(), StoreError> {
        if job_ids.is_empty() {
            return Ok(());
        }
        match self.call(Op::Accept { job_ids: job_ids.to_vec(), now }).await? {
            Reply::Done => Ok(()),
            _ => Err(unexpected_reply()),
        }
    }

    async fn accepted(&self, job_id: Uuid) -> Result<bool, StoreError> {
        match self.call(Op::Accepted(job_id)).await? {
            Reply::Accepted(accepted) => Ok(accepted),
            _ => Err(unexpected_reply()),
        }
    }

    async fn accept_owned(&self, tenant: &str, job_ids: &[Uuid], now: Millis) -> Result<(), StoreError> {
        if job_ids.is_empty() {
            return Ok(());
        }
        match self.call(Op::AcceptOwned { tenant: tenant.to_string(), job_ids: job_ids.to_vec(), now }).await? {
            Reply::Done => Ok(()),
            _ => Err(unexpected_reply()),
        }
    }

    async fn owner(&self, job_id: Uuid) -> Result<Option<String>, StoreError> {
        match self.call(Op::Owner(job_id)).await? {
            Reply::Owner(owner) => Ok(owner),
            _ => Err(unexpected_reply()),
        }
    }

    async fn prune(&self, now: Millis) -> Result<u64, StoreError> {
        match self.call(Op::Prune(now)).await? {
            Reply::Pruned(n) => Ok(n),
            _ => Err(unexpected_reply()),
        }
    }

    async fn cancel_job(&self, job_id: Uuid, now: Millis) -> Result<CancelOutcome, StoreError> {
        match self.call(Op::CancelJob { job_id, now }).await? {
            Reply::Cancel(outcome) => Ok(outcome),
            _ => Err(unexpected_reply()),
        }
    }

    async fn create_campaign(&self, record: &CampaignRecord) -> Result<(CampaignRecord, u64), StoreError> {
        match self.call(Op::CreateCampaign { record: record.clone(), now: now_millis() }).await? {
            Reply::Created(record, total) => Ok((record, total)),
            _ => Err(unexpected_reply()),
        }
    }

    async fn add_to_campaign(&self, id: Uuid, jobs: u64) -> Result<bool, StoreError> {
        match self.call(Op::AddToCampaign { id, jobs, now: now_millis() }).await? {
            Reply::Found(found) => Ok(found),
            _ => Err(unexpected_reply()),
        }
    }

    async fn campaign(&self, id: Uuid) -> Result<Option<(CampaignRecord, CampaignStatus)>, StoreError> {
        match self.call(Op::Campaign { id, now: now_millis() }).await? {
            Reply::Campaign(found) => Ok(found),
            _ => Err(unexpected_reply()),
        }
    }

    async fn control_campaign(&self, id: Uuid, control: CampaignControl) -> Result<Option<CampaignStatus>, StoreError> {
        match self.call(Op::ControlCampaign { id, control, now: now_millis() }).await? {
            Reply::Campaign(found) => Ok(found.map(|(_, status)| status)),
            _ => Err(unexpected_reply()),
        }
    }

    async fn campaign_controls(&self, ids: &[Uuid]) -> Result<Vec<(Uuid, CampaignControl)>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        match self.call(Op::CampaignControls(ids.to_vec())).await? {
            Reply::Controls(controls) => Ok(controls),
            _ => Err(unexpected_reply()),
        }
    }

    async fn campaigns(&self, before: Option<Uuid>, limit: usize) -> Result<Vec<CampaignStatus>, StoreError> {
        match self.call(Op::Campaigns { before, limit, now: now_millis() }).await? {
            Reply::CampaignList(list) => Ok(list),
            _ => Err(unexpected_reply()),
        }
    }

    async fn register_tenants(&self, tenants: &[String]) -> Result<(), StoreError> {
        if tenants.is_empty() {
            return Ok(());
        }
        match self.call(Op::RegisterTenants(tenants.to_vec())).await? {
            Reply::Done => Ok(()),
            _ => Err(unexpected_reply()),
        }
    }

    async fn tenants(&self) -> Result<Vec<String>, StoreError> {
        match self.call(Op::Tenants).await? {
            Reply::Tenants(tenants) => Ok(tenants),
            _ => Err(unexpected_reply()),
        }
    }

    async fn record_receipts(&self, receipts: &[Receipt], now: Millis) -> Result<ReceiptsRecorded, StoreError> {
        if receipts.is_empty() {
            return Ok(ReceiptsRecorded::default());
        }
        match self.call(Op::RecordReceipts { receipts: receipts.to_vec(), now }).await? {
            Reply::Receipts(recorded) => Ok(recorded),
            _ => Err(unexpected_reply()),
        }
    }

    async fn take_pending_receipts(
        &self,
        queue: &str,
        now: Millis,
        next_due: Millis,
        limit: usize,
    ) -> Result<Vec<PendingReceipt>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        match self.call(Op::TakePending { queue: queue.to_string(), now, next_due, limit }).await? {
            Reply::Pending(pending) => Ok(pending),
            _ => Err(unexpected_reply()),
        }
    }

    async fn lease(&self, name: &str, owner: &str, now: Millis, ttl: Duration) -> Result<bool, StoreError> {
        let op = Op::Lease { name: name.to_string(), owner: owner.to_string(), now, ttl_ms: duration_ms(ttl) };
        match self.call(op).await? {
            Reply::Found(held) => Ok(held),
            _ => Err(unexpected_reply()),
        }
    }
}

struct Ctx {
    ns: String,
    retention_ms: i64,
    /// The campaign changes of the batch being run.
    counting: Counting,
}

impl Ctx {
    /// The context of the store's connection `conn`, which it makes count campaign changes.
    fn new(conn: &Connection, ns: String, retention_ms: i64) -> Result<Ctx, StoreError> {
        Ok(Ctx { ns, retention_ms, counting: Counting::install(conn)? })
    }
}

/// The store thread's connection and its context.
fn open_connection(path: &str, ns: String, retention_ms: i64) -> Result<(Connection, Ctx), StoreError> {
    let conn = connect(path)?;
    let ctx = Ctx::new(&conn, ns, retention_ms)?;
    Ok((conn, ctx))
}

enum Op {
    Claim(ClaimRequest),
    Renew { owner: String, keys: Vec<String>, now: Millis, lease_until: Millis },
    Finish { key: String, finish: Finish, now: Millis },
    RetryPublished { key: String, attempt: u32 },
    Status(Uuid),
    Accept { job_ids: Vec<Uuid>, now: Millis },
    Accepted(Uuid),
    AcceptOwned { tenant: String, job_ids: Vec<Uuid>, now: Millis },
    Owner(Uuid),
    Prune(Millis),
    CancelJob { job_id: Uuid, now: Millis },
    CreateCampaign { record: CampaignRecord, now: Millis },
    AddToCampaign { id: Uuid, jobs: u64, now: Millis },
    Campaign { id: Uuid, now: Millis },
    ControlCampaign { id: Uuid, control: CampaignControl, now: Millis },
    CampaignControls(Vec<Uuid>),
    Campaigns { before: Option<Uuid>, limit: usize, now: Millis },
    RegisterTenants(Vec<String>),
    Tenants,
    RecordReceipts { receipts: Vec<Receipt>, now: Millis },
    TakePending { queue: String, now: Millis, next_due: Millis, limit: usize },
    Lease { name: String, owner: String, now: Millis, ttl_ms: i64 },
}

enum Reply {
    Claim(Claim),
    Done,
    Status(Option<JobStatus>),
    Accepted(bool),
    Owner(Option<String>),
    Pruned(u64),
    Cancel(CancelOutcome),
    Created(CampaignRecord, u64),
    Found(bool),
    Campaign(Option<(CampaignRecord, CampaignStatus)>),
    Controls(Vec<(Uuid, CampaignControl)>),
    CampaignList(Vec<CampaignStatus>),
    Tenants(Vec<String>),
    Receipts(ReceiptsRecorded),
    Pending(Vec<PendingReceipt>),
}

struct Request {
    op: Op,
    reply: oneshot::Sender<Result<Reply, StoreError>>,
}

/// A connection of its own to the store's file, for the tables off the hot path (the directory,
/// the parking lot): calls run one at a time on the blocking threads.
pub(crate) struct SideConnection {
    conn: std::sync::Arc<std::sync::Mutex<Connection>>,
    pub(crate) namespace: String,
    /// What it serves, for errors.
    what: &'static str,
}

impl SideConnection {
    /// `conn`, its schema already in place, for `namespace`.
    pub(crate) fn new(conn: Connection, namespace: &str, what: &'static str) -> Self {
        SideConnection {
            conn: std::sync::Arc::new(std::sync::Mutex::new(conn)),
            namespace: namespace.to_string(),
            what,
        }
    }

    /// Runs `f` on the connection off the async threads.
    pub(crate) async fn with<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &str) -> Result<T, StoreError> + Send + 'static,
    {
        let (conn, namespace, what) = (self.conn.clone(), self.namespace.clone(), self.what);
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().map_err(|_| StoreError::Task(format!("{what} connection poisoned")))?;
            f(&mut conn, &namespace)
        })
        .await
        .map_err(|e| StoreError::Task(format!("{what} task failed: {e}")))?
    }
}

/// Opens the database (WAL, `synchronous=NORMAL`, the store's schema); the parking lot shares it.
pub(crate) fn connect(path: &str) -> Result<Connection, StoreError> {
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // An in-memory database answers "memory": WAL does not apply to it.
    let _mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.execute_batch(TABLES)?;
    add_missing_columns(&mut conn, "yizhan_keys", &[("campaign", "TEXT"), ("delivery", "TEXT"), ("notify", "TEXT")])?;
    add_missing_columns(
        &mut conn,
        "yizhan_campaign_counts",
        &[("n_delivered", "INTEGER NOT NULL DEFAULT 0"), ("n_undelivered", "INTEGER NOT NULL DEFAULT 0")],
    )?;
    conn.execute_batch(tenants::SQLITE_SCHEMA)?;
    Ok(conn)
}

/// Adds the columns a file written by an older version lacks, in a write transaction so that
/// two processes opening it at once do not both add them.
pub(crate) fn add_missing_columns(
    conn: &mut Connection,
    table: &str,
    columns: &[(&str, &str)],
) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let present: Vec<String> = {
        let mut info = tx.prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))?;
        info.query_map([], |row| row.get(0))?.collect::<Result<_, _>>()?
    };
    for (name, kind) in columns {
        if !present.iter().any(|p| p == name) {
            tx.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {name} {kind}"))?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// The store's thread: batches queued requests until every sender is gone.
fn serve(mut conn: Connection, ctx: &Ctx, mut receiver: mpsc::Receiver<Request>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = receiver.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        run_batch(&mut conn, ctx, &mut batch);
    }
}

fn insert_accepted(conn: &Connection, ctx: &Ctx, job_ids: &[Uuid], now: Millis) -> Result<(), StoreError> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO yizhan_accepted (namespace, job_id, accepted_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (namespace, job_id) DO UPDATE SET accepted_at = excluded.accepted_at",
    )?;
    for job_id in job_ids {
        insert.execute(params![ctx.ns, job_id.to_string(), now])?;
    }
    Ok(())
}

fn run_batch(conn: &mut Connection, ctx: &Ctx, batch: &mut Vec<Request>) {
    let read_only = batch.iter().all(|r| {
        matches!(
            r.op,
            Op::Status(_)
                | Op::Accepted(_)
                | Op::Owner(_)
                | Op::Campaign { .. }
                | Op::CampaignControls(_)
                | Op::Tenants
        )
    });
    let behavior = if read_only { TransactionBehavior::Deferred } else { TransactionBehavior::Immediate };
    let outcome = match without_savepoints(conn, ctx, behavior, batch) {
        Some(outcome) => outcome,
        None => with_savepoints(conn, ctx, behavior, batch),
    };
    match outcome {
        Ok(results) => {
            for (request, result) in batch.drain(..).zip(results) {
                // A caller that gave up waiting is no longer interested.
                let _ = request.reply.send(result);
            }
        }
        Err(failed) => {
            for request in batch.drain(..) {
                let _ = request.reply.send(Err(failed.error()));
            }
        }
    }
}

/// The replies of a committed batch, or why none of it was recorded.
type BatchOutcome = Result<Vec<Result<Reply, StoreError>>, BatchFailure>;

/// Why a whole batch failed: its transaction could not begin or commit, or SQLite rolled it back.
enum BatchFailure {
    Sqlite(rusqlite::Error),
    RolledBack(String),
}

impl BatchFailure {
    /// One error for each request of the batch (`rusqlite::Error` is not `Clone`).
    fn error(&self) -> StoreError {
        match self {
            BatchFailure::Sqlite(e) => copy_error(e),
            BatchFailure::RolledBack(reason) => StoreError::Task(format!("sqlite transaction rolled back: {reason}")),
        }
    }
}

/// Runs the batch with no savepoints, committed if every request succeeds; None (rolled back,
/// nothing answered) if one fails. A savepoint per request copies every page the request
/// touches to a sub-journal, about a tenth of the worker's CPU per job, and requests almost
/// never fail.
fn without_savepoints(
    conn: &mut Connection,
    ctx: &Ctx,
    behavior: TransactionBehavior,
    batch: &[Request],
) -> Option<BatchOutcome> {
    // A pass counts its own changes only: none are left of a pass rolled back.
    ctx.counting.forget();
    let tx = match conn.transaction_with_behavior(behavior) {
        Ok(tx) => tx,
        Err(e) => return Some(Err(BatchFailure::Sqlite(e))),
    };
    let mut results = Vec::with_capacity(batch.len());
    for request in batch {
        // Dropping `tx` rolls the pass back.
        results.push(Ok(execute(&tx, ctx, &request.op).ok()?));
    }
    if let Err(e) = ctx.counting.add_to_counters(&tx) {
        return Some(Err(BatchFailure::RolledBack(e.to_string())));
    }
    Some(tx.commit().map(|()| results).map_err(BatchFailure::Sqlite))
}

/// Runs the batch with a savepoint per request, so that a failing request undoes itself alone.
fn with_savepoints(conn: &mut Connection, ctx: &Ctx, behavior: TransactionBehavior, batch: &[Request]) -> BatchOutcome {
    ctx.counting.forget();
    let mut tx = conn.transaction_with_behavior(behavior).map_err(BatchFailure::Sqlite)?;
    let mut results = Vec::with_capacity(batch.len());
    for request in batch {
        let mark = ctx.counting.mark();
        let result = in_savepoint(&mut tx, ctx, &request.op);
        if result.is_err() {
            ctx.counting.restore(mark);
        }
        if tx.is_autocommit()
            && let Err(e) = &result
        {
            // SQLite rolled the whole transaction back (I/O error, full disk, ...): nothing in this
            // batch was recorded.
            return Err(BatchFailure::RolledBack(e.to_string()));
        }
        results.push(result);
    }
    ctx.counting.add_to_counters(&tx).map_err(|e| BatchFailure::RolledBack(e.to_string()))?;
    tx.commit().map_err(BatchFailure::Sqlite)?;
    Ok(results)
}

/// Runs one request in a savepoint, so that its failure rolls back that request alone. The
/// savepoint statements are cached: rusqlite's `Savepoint` parses its SQL anew for every request,
/// which cost more than the request itself.
fn in_savepoint(tx: &mut rusqlite::Transaction<'_>, ctx: &Ctx, op: &Op) -> Result<Reply, StoreError> {
    tx.prepare_cached("SAVEPOINT request")?.execute([])?;
    match execute(tx, ctx, op) {
        Ok(reply) => {
            tx.prepare_cached("RELEASE request")?.execute([])?;
            Ok(reply)
        }
        Err(e) => {
            // After a rollback of the whole transaction there is no savepoint left to undo.
            if !tx.is_autocommit() {
                tx.prepare_cached("ROLLBACK TO request")?.execute([])?;
                tx.prepare_cached("RELEASE request")?.execute([])?;
            }
            Err(e)
        }
    }
}

/// A copy of `e` (`rusqlite::Error` is not `Clone`).
fn copy_error(e: &rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(code, message) => {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(*code, message.clone()))
        }
        other => StoreError::Task(format!("sqlite: {other}")),
    }
}

fn execute(conn: &Connection, ctx: &Ctx, op: &Op) -> Result<Reply, StoreError> {
    match op {
        Op::Claim(request) => claim(conn, ctx, request).map(Reply::Claim),
        Op::Renew { owner, keys, now, lease_until } => {
            let mut renew = conn.prepare_cached(
                "UPDATE yizhan_keys SET lease_until = ?4, updated_at = ?5
                 WHERE namespace = ?1 AND key = ?2 AND owner = ?3 AND state = 'running'",
            )?;
            for key in keys {
                renew.execute(params![ctx.ns, key, owner, lease_until, now])?;
            }
            Ok(Reply::Done)
        }
        Op::Finish { key, finish, now } => {
            finish_key(conn, ctx, key, finish, *now)?;
            Ok(Reply::Done)
        }
        Op::RetryPublished { key, attempt } => {
            conn.prepare_cached(
                "UPDATE yizhan_keys SET retry_published = 1
                 WHERE namespace = ?1 AND key = ?2 AND state IN ('retrying', 'scheduled', 'deferred')
                   AND attempt = ?3",
            )?
            .execute(params![ctx.ns, key, i64::from(*attempt)])?;
            Ok(Reply::Done)
        }
        Op::Status(job_id) => status(conn, ctx, *job_id).map(Reply::Status),
        Op::Accept { job_ids, now } => {
            insert_accepted(conn, ctx, job_ids, *now)?;
            Ok(Reply::Done)
        }
        Op::AcceptOwned { tenant, job_ids, now } => {
            tenants::sqlite_own(conn, &ctx.ns, tenant, job_ids, *now)?;
            insert_accepted(conn, ctx, job_ids, *now)?;
            Ok(Reply::Done)
        }
        Op::Owner(job_id) => tenants::sqlite_owner(conn, &ctx.ns, *job_id).map(Reply::Owner),
        Op::Accepted(job_id) => {
            let found = conn
                .prepare_cached("SELECT 1 FROM yizhan_accepted WHERE namespace = ?1 AND job_id = ?2")?
                .exists(params![ctx.ns, job_id.to_string()])?;
            Ok(Reply::Accepted(found))
        }
        Op::Prune(now) => {
            let cutoff = now.saturating_sub(ctx.retention_ms);
            // A waiting record is kept until the retention after it is due (send_at up to 30 days).
            let pruned = conn
                .prepare_cached(
                    "DELETE FROM yizhan_keys WHERE namespace = ?1 AND updated_at < ?2
                       AND (next_attempt_at IS NULL OR next_attempt_at < ?2)",
                )?
                .execute(params![ctx.ns, cutoff])?;
            conn.prepare_cached(
                "DELETE FROM yizhan_jobs WHERE namespace = ?1 AND updated_at < ?2
                   AND NOT EXISTS (SELECT 1 FROM yizhan_keys k
                                   WHERE k.namespace = ?1 AND k.key = yizhan_jobs.key)",
            )?
            .execute(params![ctx.ns, cutoff])?;
            conn.prepare_cached("DELETE FROM yizhan_accepted WHERE namespace = ?1 AND accepted_at < ?2")?
                .execute(params![ctx.ns, cutoff])?;
            tenants::sqlite_prune_owners(conn, &ctx.ns, cutoff)?;
            conn.prepare_cached("DELETE FROM yizhan_tombstones WHERE namespace = ?1 AND at < ?2")?
                .execute(params![ctx.ns, cutoff])?;
            conn.prepare_cached("DELETE FROM yizhan_counted WHERE namespace = ?1 AND at < ?2")?
                .execute(params![ctx.ns, cutoff])?;
            conn.prepare_cached("DELETE FROM yizhan_sids WHERE namespace = ?1 AND at < ?2")?
                .execute(params![ctx.ns, cutoff])?;
            let early_cutoff = now.saturating_sub(duration_ms(EARLY_RECEIPT_TTL));
            conn.prepare_cached("DELETE FROM yizhan_early_receipts WHERE namespace = ?1 AND stored_at < ?2")?
                .execute(params![ctx.ns, early_cutoff])?;
            conn.prepare_cached("DELETE FROM yizhan_leases WHERE namespace = ?1 AND until < ?2")?
                .execute(params![ctx.ns, cutoff])?;
            // Campaigns are few: no index on their times, a scan here.
            conn.prepare_cached(
                "DELETE FROM yizhan_campaigns WHERE namespace = ?1 AND updated_at < ?2
                   AND (send_at IS NULL OR send_at < ?2)
                   AND NOT EXISTS (SELECT 1 FROM yizhan_campaign_counts c
                                   WHERE c.namespace = ?1 AND c.id = yizhan_campaigns.id AND c.updated_at >= ?2)",
            )?
            .execute(params![ctx.ns, cutoff])?;
            conn.prepare_cached(
                "DELETE FROM yizhan_campaign_counts WHERE namespace = ?1
                   AND NOT EXISTS (SELECT 1 FROM yizhan_campaigns c
                                   WHERE c.namespace = ?1 AND c.id = yizhan_campaign_counts.id)",
            )?
            .execute(params![ctx.ns])?;
            Ok(Reply::Pruned(pruned as u64))
        }
        Op::CancelJob { job_id, now } => cancel_job(conn, ctx, *job_id, *now).map(Reply::Cancel),
        Op::CreateCampaign { record, now } => {
            let (record, total) = create_campaign(conn, ctx, record, *now)?;
            Ok(Reply::Created(record, total))
        }
        Op::AddToCampaign { id, jobs, now } => {
            let jobs = i64::try_from(*jobs).unwrap_or(i64::MAX);
            let changed = conn
                .prepare_cached(
                    "UPDATE yizhan_campaigns SET total = total + ?3, updated_at = MAX(updated_at, ?4)
                     WHERE namespace = ?1 AND id = ?2",
                )?
                .execute(params![ctx.ns, id.to_string(), jobs, now])?;
            Ok(Reply::Found(changed > 0))
        }
        Op::Campaign { id, now } => campaign(conn, ctx, *id, *now).map(Reply::Campaign),
        Op::Campaigns { before, limit, now } => {
            // The primary key (namespace, id) read backwards: a page costs `limit` rows.
            let limit = i64::try_from(*limit).unwrap_or(i64::MAX);
            let ids: Vec<String> = match before {
                Some(before) => conn
                    .prepare_cached(
                        "SELECT id FROM yizhan_campaigns WHERE namespace = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3",
                    )?
                    .query_map(params![ctx.ns, before.to_string(), limit], |row| row.get(0))?
                    .collect::<Result<_, _>>()?,
                None => conn
                    .prepare_cached("SELECT id FROM yizhan_campaigns WHERE namespace = ?1 ORDER BY id DESC LIMIT ?2")?
                    .query_map(params![ctx.ns, limit], |row| row.get(0))?
                    .collect::<Result<_, _>>()?,
            };
            let mut list = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some((_, status)) = campaign(conn, ctx, parse_campaign_id(&id)?, *now)? {
                    list.push(status);
                }
            }
            Ok(Reply::CampaignList(list))
        }
        Op::ControlCampaign { id, control, now } => {
            conn.prepare_cached(
                "UPDATE yizhan_campaigns SET control = ?3, updated_at = MAX(updated_at, ?4)
                 WHERE namespace = ?1 AND id = ?2 AND control <> 'cancelled'",
            )?
            .execute(params![ctx.ns, id.to_string(), control.as_str(), now])?;
            campaign(conn, ctx, *id, *now).map(Reply::Campaign)
        }
        Op::CampaignControls(ids) => {
            let mut select =
                conn.prepare_cached("SELECT control FROM yizhan_campaigns WHERE namespace = ?1 AND id = ?2")?;
            let mut controls = Vec::with_capacity(ids.len());
            for id in ids {
                let control: Option<String> =
                    select.query_row(params![ctx.ns, id.to_string()], |row| row.get(0)).optional()?;
                if let Some(control) = control {
                    controls.push((*id, parse_control(*id, &control)?));
                }
            }
            Ok(Reply::Controls(controls))
        }
        Op::RegisterTenants(names) => {
            tenants::sqlite_register(conn, &ctx.ns, names)?;
            Ok(Reply::Done)
        }
        Op::Tenants => tenants::sqlite_list(conn, &ctx.ns).map(Reply::Tenants),
        Op::RecordReceipts { receipts, now } => record_receipts(conn, ctx, receipts, *now).map(Reply::Receipts),
        Op::TakePending { queue, now, next_due, limit } => {
            take_pending(conn, ctx, queue, *now, *next_due, *limit).map(Reply::Pending)
        }
        Op::Lease { name, owner, now, ttl_ms } => {
            let taken = conn
                .prepare_cached(
                    "INSERT INTO yizhan_leases (namespace, name, owner, until) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (namespace, name) DO UPDATE SET owner = excluded.owner, until = excluded.until
                     WHERE yizhan_leases.owner = excluded.owner OR yizhan_leases.until <= ?5",
                )?
                .execute(params![ctx.ns, name, owner, now.saturating_add(*ttl_ms), now])?;
            Ok(Reply::Found(taken > 0))
        }
    }
}

fn claim(conn: &Connection, ctx: &Ctx, request: &ClaimRequest) -> Result<Claim, StoreError> {
    let job_id = request.job_id.to_string();
    conn.prepare_cached(
        "INSERT INTO yizhan_jobs (namespace, job_id, key, updated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (namespace, job_id) DO UPDATE SET key = excluded.key, updated_at = excluded.updated_at",
    )?
    .execute(params![ctx.ns, job_id, request.key, request.now])?;

    let current = conn
        .prepare_cached(
            "SELECT job_id, state, attempt, lease_until, retry_published, progress
             FROM yizhan_keys WHERE namespace = ?1 AND key = ?2",
        )?
        .query_row(params![ctx.ns, request.key], |row| {
            Ok(StoredKey {
                job_id: row.get(0)?,
                state: row.get(1)?,
                attempt: row.get(2)?,
                lease_until: row.get(3)?,
                retry_published: row.get::<_, i64>(4)? != 0,
                progress: row.get(5)?,
            })
        })
        .optional()?;

    // Was the job cancelled before it had a record? Only a job that is not the record's own can
    // have a tombstone: a lookup in a (mostly empty) table, for a new key or a duplicate.
    let cancelled = Claim::Finished { state: FinishedState::Cancelled };
    let foreign = current.as_ref().is_none_or(|current| current.job_id != job_id);
    if foreign
        && conn
            .prepare_cached("SELECT 1 FROM yizhan_tombstones WHERE namespace = ?1 AND job_id = ?2")?
            .exists(params![ctx.ns, job_id])?
    {
        if current.is_some() {
            count_duplicate(conn, ctx, request, &job_id)?;
        } else {
            insert_cancelled(conn, ctx, request, &job_id)?;
        }
        return Ok(cancelled);
    }
    let Some(current) = current else {
        acquire(conn, ctx, request, &job_id, i64::from(request.attempt))?;
        return Ok(Claim::Acquired { progress: None, orphaned_attempt: None });
    };
    let decision = current.decide(request, &job_id)?;
    if let Some(attempt) = decision.acquire_attempt {
        acquire(conn, ctx, request, &job_id, attempt)?;
    }
    if decision.count_duplicate {
        count_duplicate(conn, ctx, request, &job_id)?;
    }
    Ok(decision.answer)
}

/// Counts a campaign's job that will not run because its key belongs to another job, once per
/// job id however often it is delivered.
fn count_duplicate(conn: &Connection, ctx: &Ctx, request: &ClaimRequest, job_id: &str) -> Result<(), StoreError> {
    let Some(campaign) = request.campaign else {
        return Ok(());
    };
    let first = conn
        .prepare_cached("INSERT OR IGNORE INTO yizhan_counted (namespace, job_id, at) VALUES (?1, ?2, ?3)")?
        .execute(params![ctx.ns, job_id, request.now])?;
    if first > 0 {
        conn.prepare_cached(
            "UPDATE yizhan_campaign_counts SET n_duplicate = n_duplicate + 1, updated_at = MAX(updated_at, ?3)
             WHERE namespace = ?1 AND id = ?2",
        )?
        .execute(params![ctx.ns, campaign.to_string(), request.now])?;
    }
    Ok(())
}

/// The key's record for a job cancelled before it had one (counted `cancelled` by the trigger).
fn insert_cancelled(conn: &Connection, ctx: &Ctx, request: &ClaimRequest, job_id: &str) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO yizhan_keys (namespace, key, job_id, state, attempt, updated_at, campaign)
         VALUES (?1, ?2, ?3, 'cancelled', 0, ?4, ?5)",
    )?
    .execute(params![ctx.ns, request.key, job_id, request.now, request.campaign.map(|c| c.to_string())])?;
    Ok(())
}

/// Makes `request` the key's holder, keeping progress, the last error and the record's campaign.
fn acquire(conn: &Connection, ctx: &Ctx, request: &ClaimRequest, job_id: &str, attempt: i64) -> Result<(), StoreError> {
    let lease_until = request.now.saturating_add(duration_ms(request.lease));
    conn.prepare_cached(
        "INSERT INTO yizhan_keys
            (namespace, key, job_id, state, attempt, owner, lease_until, retry_published, updated_at, campaign)
         VALUES (?1, ?2, ?3, 'running', ?4, ?5, ?6, 0, ?7, ?8)
         ON CONFLICT (namespace, key) DO UPDATE SET
            job_id = excluded.job_id, state = 'running', attempt = excluded.attempt,
            owner = excluded.owner, lease_until = excluded.lease_until, retry_published = 0,
            next_attempt_at = NULL, updated_at = excluded.updated_at",
    )?
    .execute(params![
        ctx.ns,
        request.key,
        job_id,
        attempt,
        request.owner,
        lease_until,
        request.now,
        request.campaign.map(|c| c.to_string())
    ])?;
    Ok(())
}

/// Records how an attempt ended. A key with no record (pruned or never claimed) is left alone.
/// A `None` progress keeps the recorded progress.
fn finish_key(conn: &Connection, ctx: &Ctx, key: &str, finish: &Finish, now: Millis) -> Result<(), StoreError> {
    let waiting = "UPDATE yizhan_keys SET state = ?8, attempt = ?3,
            progress = COALESCE(?4, progress), error = ?5, next_attempt_at = ?6,
            retry_published = 0, owner = NULL, lease_until = NULL, updated_at = ?7
         WHERE namespace = ?1 AND key = ?2";
    match finish {
        Finish::Retrying { attempt, progress, error, next_attempt_at } => {
            conn.prepare_cached(waiting)?.execute(params![
                ctx.ns,
                key,
                i64::from(*attempt),
                to_json(progress.as_ref()),
                error,
                next_attempt_at,
                now,
                "retrying"
            ])?
        }
        Finish::Waiting { attempt, progress, reason, until, why } => conn.prepare_cached(waiting)?.execute(params![
            ctx.ns,
            key,
            i64::from(*attempt),
            to_json(progress.as_ref()),
            reason,
            until,
            now,
            why.status()
        ])?,
        Finish::Succeeded { attempt, result, receipts } => {
            let delivery = index_receipts(conn, ctx, key, receipts, now)?;
            conn.prepare_cached(
                "UPDATE yizhan_keys SET state = 'succeeded', attempt = ?3, result = ?4,
                    error = NULL, error_kind = NULL, next_attempt_at = NULL,
                    owner = NULL, lease_until = NULL, updated_at = ?5, delivery = ?6, notify = ?7
                 WHERE namespace = ?1 AND key = ?2",
            )?
            .execute(params![
                ctx.ns,
                key,
                i64::from(*attempt),
                to_json(result.as_ref()),
                now,
                delivery,
                receipts.callback.as_deref().filter(|_| !receipts.is_empty())
            ])?
        }
        Finish::Capped { attempt, result } => conn
            .prepare_cached(
                "UPDATE yizhan_keys SET state = 'capped', attempt = ?3, result = ?4,
                    error = NULL, error_kind = NULL, next_attempt_at = NULL,
                    owner = NULL, lease_until = NULL, updated_at = ?5
                 WHERE namespace = ?1 AND key = ?2",
            )?
            .execute(params![ctx.ns, key, i64::from(*attempt), to_json(result.as_ref()), now])?,
        Finish::Dead { attempt, kind, error, progress } => conn
            .prepare_cached(
                "UPDATE yizhan_keys SET state = 'dead', attempt = ?3, error_kind = ?4, error = ?5,
                    progress = COALESCE(?6, progress), next_attempt_at = NULL,
                    owner = NULL, lease_until = NULL, updated_at = ?7
                 WHERE namespace = ?1 AND key = ?2",
            )?
            .execute(params![ctx.ns, key, i64::from(*attempt), kind, error, to_json(progress.as_ref()), now])?,
        Finish::Cancelled { attempt } => conn
            .prepare_cached(
                "UPDATE yizhan_keys SET state = 'cancelled', attempt = ?3,
                    error = NULL, error_kind = NULL, next_attempt_at = NULL,
                    owner = NULL, lease_until = NULL, updated_at = ?4
                 WHERE namespace = ?1 AND key = ?2",
            )?
            .execute(params![ctx.ns, key, i64::from(*attempt), now])?,
    };
    // The jobs of a key stay findable as long as its record: pruning asks for the record, so that
    // finishing need not write to `yizhan_jobs` too.
    Ok(())
}

fn status(conn: &Connection, ctx: &Ctx, job_id: Uuid) -> Result<Option<JobStatus>, StoreError> {
    struct Row {
        key: String,
        job_id: String,
        state: String,
        attempt: i64,
        result: Option<String>,
        error: Option<String>,
        error_kind: Option<String>,
        next_attempt_at: Option<i64>,
        campaign: Option<String>,
        delivery: Option<String>,
    }
    let row = conn
        .prepare_cached(
            "SELECT k.key, k.job_id, k.state, k.attempt, k.result, k.error, k.error_kind,
                    k.next_attempt_at, k.campaign, k.delivery
             FROM yizhan_jobs j
             JOIN yizhan_keys k ON k.namespace = j.namespace AND k.key = j.key
             WHERE j.namespace = ?1 AND j.job_id = ?2",
        )?
        .query_row(params![ctx.ns, job_id.to_string()], |row| {
            Ok(Row {
                key: row.get(0)?,
                job_id: row.get(1)?,
                state: row.get(2)?,
                attempt: row.get(3)?,
                result: row.get(4)?,
                error: row.get(5)?,
                error_kind: row.get(6)?,
                next_attempt_at: row.get(7)?,
                campaign: row.get(8)?,
                delivery: row.get(9)?,
            })
        })
        .optional()?;
    let Some(row) = row else {
        let tombstone = conn
            .prepare_cached("SELECT 1 FROM yizhan_tombstones WHERE namespace = ?1 AND job_id = ?2")?
            .exists(params![ctx.ns, job_id.to_string()])?;
        return Ok(tombstone.then(|| tombstone_status(job_id)));
    };
    let corrupt = |reason: String| StoreError::Corrupt { key: row.key.clone(), reason };
    let owner_job = Uuid::parse_str(&row.job_id).map_err(|e| corrupt(format!("job id {:?}: {e}", row.job_id)))?;
    let attempts = u32::try_from(row.attempt).map_err(|_| corrupt(format!("attempt {} out of range", row.attempt)))?;
    if !RECORD_STATUSES.contains(&row.state.as_str()) {
        return Err(corrupt(format!("unknown state {:?}", row.state)));
    }
    let campaign = row
        .campaign
        .as_deref()
        .map(|c| Uuid::parse_str(c).map_err(|e| corrupt(format!("campaign {c:?}: {e}"))))
        .transpose()?;
    Ok(Some(JobStatus {
        id: job_id,
        status: row.state.clone(),
        attempts,
        result: parse_json(&row.key, "result", row.result.as_deref())?,
        error: row.error.clone(),
        error_kind: row.error_kind.clone(),
        next_attempt_at: row.next_attempt_at,
        duplicate_of: (owner_job != job_id).then_some(owner_job),
        campaign,
        delivery: parse_delivery(&row.key, row.delivery.as_deref())?,
    }))
}

/// The status of a job cancelled before any worker recorded it.
pub(crate) fn tombstone_status(job_id: Uuid) -> JobStatus {
    JobStatus {
        id: job_id,
        status: "cancelled".to_string(),
        attempts: 0,
        result: None,
        error: None,
        error_kind: None,
        next_attempt_at: None,
        duplicate_of: None,
        campaign: None,
        delivery: None,
    }
}

fn cancel_job(conn: &Connection, ctx: &Ctx, job_id: Uuid, now: Millis) -> Result<CancelOutcome, StoreError> {
    let id = job_id.to_string();
    let record: Option<(String, String, String)> = conn
        .prepare_cached(
            "SELECT k.key, k.job_id, k.state FROM yizhan_jobs j
             JOIN yizhan_keys k ON k.namespace = j.namespace AND k.key = j.key
             WHERE j.namespace = ?1 AND j.job_id = ?2",
        )?
        .query_row(params![ctx.ns, id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .optional()?;
    if let Some((key, owner, state)) = record {
        if owner == id && is_waiting(&state) {
            conn.prepare_cached(
                "UPDATE yizhan_keys SET state = 'cancelled', next_attempt_at = NULL, error = NULL,
                    owner = NULL, lease_until = NULL, updated_at = ?3
                 WHERE namespace = ?1 AND key = ?2",
            )?
            .execute(params![ctx.ns, key, now])?;
            return Ok(CancelOutcome::Cancelled);
        }
        if owner == id && state == "cancelled" {
            return Ok(CancelOutcome::Cancelled);
        }
        let status = status(conn, ctx, job_id)?.ok_or_else(|| StoreError::Task("the record vanished".into()))?;
        return Ok(CancelOutcome::Started(Box::new(status)));
    }
    let accepted = conn
        .prepare_cached("SELECT 1 FROM yizhan_accepted WHERE namespace = ?1 AND job_id = ?2")?
        .exists(params![ctx.ns, id])?;
    if !accepted {
        return Ok(CancelOutcome::Unknown);
    }
    conn.prepare_cached(
        "INSERT INTO yizhan_tombstones (namespace, job_id, at) VALUES (?1, ?2, ?3)
         ON CONFLICT (namespace, job_id) DO UPDATE SET at = excluded.at",
    )?
    .execute(params![ctx.ns, id, now])?;
    Ok(CancelOutcome::Cancelled)
}

fn create_campaign(
    conn: &Connection,
    ctx: &Ctx,
    record: &CampaignRecord,
    now: Millis,
) -> Result<(CampaignRecord, u64), StoreError> {
    conn.prepare_cached(
        "INSERT INTO yizhan_campaigns (namespace, id, tenant, key, head, send_at, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING",
    )?
    .execute(params![
        ctx.ns,
        record.id.to_string(),
        record.tenant,
        record.key,
        record.head.to_string(),
        record.send_at,
        record.created_at,
        now
    ])?;
    // Counters of a campaign created anew (an existing one keeps its own).
    conn.prepare_cached(
        "INSERT OR IGNORE INTO yizhan_campaign_counts (namespace, id, updated_at)
         SELECT namespace, id, updated_at FROM yizhan_campaigns WHERE namespace = ?1 AND id = ?2",
    )?
    .execute(params![ctx.ns, record.id.to_string()])?;
    let id: String = conn
        .prepare_cached("SELECT id FROM yizhan_campaigns WHERE namespace = ?1 AND tenant = ?2 AND key = ?3")?
        .query_row(params![ctx.ns, record.tenant, record.key], |row| row.get(0))
        .optional()?
        .ok_or_else(|| StoreError::Corrupt {
            key: format!("campaign {}", record.id),
            reason: "the campaign id is taken by another (tenant, key)".to_string(),
        })?;
    let id = parse_campaign_id(&id)?;
    let (stored, _, total, _) =
        read_campaign(conn, ctx, id)?.ok_or_else(|| StoreError::Task("the campaign vanished".into()))?;
    Ok((stored, total))
}

/// The counters of a campaign besides its record statuses.
pub(crate) const STORED_COUNTS: [&str; 3] = ["duplicate", "delivered", "undelivered"];

/// A campaign row: the record, its control, total and stored counters (the record statuses and
/// [`STORED_COUNTS`]).
type CampaignRow = (CampaignRecord, CampaignControl, u64, BTreeMap<String, i64>);

fn read_campaign(conn: &Connection, ctx: &Ctx, id: Uuid) -> Result<Option<CampaignRow>, StoreError> {
    let counters: Vec<String> =
        RECORD_STATUSES.iter().chain(&STORED_COUNTS).map(|name| format!("n.n_{name}")).collect();
    let sql = format!(
        "SELECT c.tenant, c.key, c.head, c.send_at, c.created_at, c.total, c.control, {}
         FROM yizhan_campaigns c JOIN yizhan_campaign_counts n ON n.namespace = c.namespace AND n.id = c.id
         WHERE c.namespace = ?1 AND c.id = ?2",
        counters.join(", ")
    );
    let row = conn
        .prepare_cached(&sql)?
        .query_row(params![ctx.ns, id.to_string()], |row| {
            let mut counts = BTreeMap::new();
            for (i, name) in RECORD_STATUSES.iter().chain(&STORED_COUNTS).enumerate() {
                counts.insert(name.to_string(), row.get::<_, i64>(7 + i)?);
            }
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, Option<i64>>(3)?,
                row.get::<_, i64>(4)?,
                row.get::<_, i64>(5)?,
                row.get::<_, String>(6)?,
                counts,
            ))
        })
        .optional()?;
    let Some((tenant, key, head, send_at, created_at, total, control, counts)) = row else {
        return Ok(None);
    };
    let head = parse_json(&format!("campaign {id}"), "head", Some(&head))?.unwrap_or_default();
    let record = CampaignRecord { id, tenant, key, head, send_at, created_at };
    Ok(Some((record, parse_control(id, &control)?, total.max(0).unsigned_abs(), counts)))
}

fn campaign(
    conn: &Connection,
    ctx: &Ctx,
    id: Uuid,
    now: Millis,
) -> Result<Option<(CampaignRecord, CampaignStatus)>, StoreError> {
    Ok(read_campaign(conn, ctx, id)?.map(|(record, control, total, counts)| {
        let status = CampaignStatus::derive(&record, control, total, &counts, now);
        (record, status)
    }))
}

pub(crate) fn parse_control(id: Uuid, text: &str) -> Result<CampaignControl, StoreError> {
    CampaignControl::parse(text).ok_or_else(|| StoreError::Corrupt {
        key: format!("campaign {id}"),
        reason: format!("unknown control {text:?}"),
    })
}

pub(crate) fn parse_campaign_id(text: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text)
        .map_err(|e| StoreError::Corrupt { key: format!("campaign {text}"), reason: format!("bad id: {e}") })
}

/// Indexes a success's message ids (`yizhan_sids`), applies the receipts that came before it,
/// and returns the record's `delivery` (JSON), None when it expects no receipts.
fn index_receipts(
    conn: &Connection,
    ctx: &Ctx,
    key: &str,
    receipts: &ExpectedReceipts,
    now: Millis,
) -> Result<Option<String>, StoreError> {
    if receipts.is_empty() {
        return Ok(None);
    }
    let mut deliveries = Deliveries::default();
    for (sid, recipient) in &receipts.sids {
        let early = conn
            .prepare_cached("SELECT state, code, at FROM yizhan_early_receipts WHERE namespace = ?1 AND sid = ?2")?
            .query_row(params![ctx.ns, sid], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, Option<String>>(1)?, row.get::<_, i64>(2)?))
            })
            .optional()?;
        let early = early.and_then(|(state, code, at)| Delivery::early(&state, code, at));
        // A message whose receipt is already here is not asked about.
        let pull = receipts.pull.as_deref().filter(|_| early.is_none());
        conn.prepare_cached(
            "INSERT INTO yizhan_sids (namespace, sid, key, recipient, pull, due, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
             ON CONFLICT (namespace, sid) DO UPDATE SET key = excluded.key, recipient = excluded.recipient,
                pull = excluded.pull, due = excluded.due, at = excluded.at",
        )?
        .execute(params![ctx.ns, sid, key, recipient, pull, now])?;
        if early.is_some() {
            conn.prepare_cached("DELETE FROM yizhan_early_receipts WHERE namespace = ?1 AND sid = ?2")?
                .execute(params![ctx.ns, sid])?;
        }
        deliveries.add(recipient, early);
    }
    if deliveries.delivered + deliveries.undelivered > 0 {
        let campaign: Option<String> = conn
            .prepare_cached("SELECT campaign FROM yizhan_keys WHERE namespace = ?1 AND key = ?2")?
            .query_row(params![ctx.ns, key], |row| row.get(0))
            .optional()?
            .flatten();
        count_deliveries(conn, ctx, campaign.as_deref(), deliveries.delivered, deliveries.undelivered, now)?;
    }
    Ok(Some(deliveries.to_json()))
}

/// Moves a campaign's `delivered` and `undelivered` counts (nothing without a campaign).
fn count_deliveries(
    conn: &Connection,
    ctx: &Ctx,
    campaign: Option<&str>,
    delivered: i64,
    undelivered: i64,
    now: Millis,
) -> Result<(), StoreError> {
    let Some(campaign) = campaign else {
        return Ok(());
    };
    conn.prepare_cached(
        "UPDATE yizhan_campaign_counts SET n_delivered = n_delivered + ?3, n_undelivered = n_undelivered + ?4,
            updated_at = MAX(updated_at, ?5)
         WHERE namespace = ?1 AND id = ?2",
    )?
    .execute(params![ctx.ns, campaign, delivered, undelivered, now])?;
    Ok(())
}

/// What a receipt needs of its record: job id, delivery, callback, campaign.
type ReceiptTarget = (String, Option<String>, Option<String>, Option<String>);

fn record_receipts(
    conn: &Connection,
    ctx: &Ctx,
    receipts: &[Receipt],
    now: Millis,
) -> Result<ReceiptsRecorded, StoreError> {
    let mut recorded = ReceiptsRecorded::default();
    let mut done: Vec<(String, String)> = Vec::new();
    for receipt in receipts.iter().filter(|r| r.state != DeliveryState::Pending) {
        let indexed: Option<(String, String, Option<String>)> = conn
            .prepare_cached("SELECT key, recipient, pull FROM yizhan_sids WHERE namespace = ?1 AND sid = ?2")?
            .query_row(params![ctx.ns, receipt.sid], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .optional()?;
        let Some((key, recipient, pull)) = indexed else {
            // The first receipt of an unknown message waits for its success.
            recorded.early += conn
                .prepare_cached(
                    "INSERT OR IGNORE INTO yizhan_early_receipts (namespace, sid, state, code, at, stored_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![ctx.ns, receipt.sid, receipt.state.as_str(), receipt.code, receipt.at, now])?
                as u64;
            continue;
        };
        let record: Option<ReceiptTarget> = conn
            .prepare_cached(
                "SELECT job_id, delivery, notify, campaign FROM yizhan_keys WHERE namespace = ?1 AND key = ?2",
            )?
            .query_row(params![ctx.ns, key], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))
            .optional()?;
        let Some((job_id, delivery, notify, campaign)) = record else {
            continue;
        };
        let Some(mut delivery) = parse_delivery(&key, delivery.as_deref())? else {
            continue;
        };
        match delivery.get_mut(&recipient) {
            Some(entry) if entry.state == DeliveryState::Pending => {
                *entry = Delivery { state: receipt.state, code: receipt.code.clone(), at: Some(receipt.at) };
            }
            // A duplicate, or a receipt after the first final one: counts nothing.
            _ => continue,
        }
        recorded.counted += 1;
        let json = serde_json::to_string(&delivery).expect("a map of strings serialises");
        conn.prepare_cached(
            "UPDATE yizhan_keys SET delivery = ?3, updated_at = MAX(updated_at, ?4) WHERE namespace = ?1 AND key = ?2",
        )?
        .execute(params![ctx.ns, key, json, now])?;
        if pull.is_some() {
            conn.prepare_cached("UPDATE yizhan_sids SET pull = NULL, due = NULL WHERE namespace = ?1 AND sid = ?2")?
                .execute(params![ctx.ns, receipt.sid])?;
        }
        let delivered = i64::from(receipt.state == DeliveryState::Delivered);
        count_deliveries(conn, ctx, campaign.as_deref(), delivered, 1 - delivered, now)?;
        if let Some(callback) = notify
            && delivery.values().all(|d| d.state != DeliveryState::Pending)
        {
            done.push((job_id, callback));
        }
    }
    for (job_id, callback) in done {
        let id = Uuid::parse_str(&job_id)
            .map_err(|e| StoreError::Corrupt { key: job_id.clone(), reason: format!("job id: {e}") })?;
        if let Some(status) = status(conn, ctx, id)? {
            recorded.done.push(DeliveryDone { status, callback });
        }
    }
    Ok(recorded)
}

fn take_pending(
    conn: &Connection,
    ctx: &Ctx,
    queue: &str,
    now: Millis,
    next_due: Millis,
    limit: usize,
) -> Result<Vec<PendingReceipt>, StoreError> {
    let pending: Vec<PendingReceipt> = conn
        .prepare_cached(
            "SELECT sid, recipient, at FROM yizhan_sids
             WHERE namespace = ?1 AND pull = ?2 AND due <= ?3 ORDER BY due LIMIT ?4",
        )?
        .query_map(params![ctx.ns, queue, now, i64::try_from(limit).unwrap_or(i64::MAX)], |row| {
            Ok(PendingReceipt { sid: row.get(0)?, recipient: row.get(1)?, sent_at: row.get(2)? })
        })?
        .collect::<Result<_, _>>()?;
    let mut due = conn.prepare_cached("UPDATE yizhan_sids SET due = ?3 WHERE namespace = ?1 AND sid = ?2")?;
    for entry in &pending {
        due.execute(params![ctx.ns, entry.sid, next_due])?;
    }
    Ok(pending)
}

pub(crate) fn parse_delivery(key: &str, text: Option<&str>) -> Result<Option<BTreeMap<String, Delivery>>, StoreError> {
    text.map(|text| {
        serde_json::from_str(text)
            .map_err(|e| StoreError::Corrupt { key: key.to_string(), reason: format!("delivery is not JSON: {e}") })
    })
    .transpose()
}

pub(crate) fn to_json(value: Option<&Value>) -> Option<String> {
    value.map(Value::to_string)
}

pub(crate) fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(key: &str, campaign: Option<Uuid>) -> (Request, oneshot::Receiver<Result<Reply, StoreError>>) {
        let (reply, answer) = oneshot::channel();
        let op = Op::Claim(ClaimRequest {
            key: key.to_string(),
            job_id: Uuid::now_v7(),
            attempt: 1,
            owner: "w1".to_string(),
            now: 1_000,
            lease: Duration::from_secs(30),
            replay: false,
            campaign,
        });
        (Request { op, reply }, answer)
    }

    /// A batch runs without savepoints until a request fails; then it runs again with one per
    /// request, so the failure undoes itself alone and its neighbours are recorded.
    #[test]
    fn a_failing_request_undoes_itself_alone() {
        let mut conn = connect(":memory:").unwrap();
        let ctx = Ctx::new(&conn, "t".to_string(), 60_000).unwrap();
        conn.execute(
            "INSERT INTO yizhan_keys (namespace, key, job_id, state, attempt, updated_at)
             VALUES ('t', 'bad', '0190f3d4-0000-7000-8000-000000000000', 'bogus', 1, 0)",
            [],
        )
        .unwrap();
        let (requests, answers): (Vec<_>, Vec<_>) = ["a", "bad", "c"].map(|key| claim(key, None)).into_iter().unzip();
        let mut batch = requests;
        run_batch(&mut conn, &ctx, &mut batch);
        let answers: Vec<_> = answers.into_iter().map(|mut a| a.try_recv().expect("answered")).collect();
        assert!(matches!(answers[0], Ok(Reply::Claim(Claim::Acquired { .. }))), "{:?}", answers[0].as_ref().err());
        assert!(matches!(answers[1], Err(StoreError::Corrupt { .. })), "{:?}", answers[1].as_ref().err());
        assert!(matches!(answers[2], Ok(Reply::Claim(Claim::Acquired { .. }))), "{:?}", answers[2].as_ref().err());
        let running: i64 = conn
            .query_row("SELECT COUNT(*) FROM yizhan_keys WHERE namespace = 't' AND state = 'running'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(running, 2, "both neighbours are recorded once");
    }

    /// A campaign's counters row (all zero), as creating the campaign makes it.
    fn new_counters(conn: &Connection) -> Uuid {
        let campaign = Uuid::now_v7();
        conn.execute(
            "INSERT INTO yizhan_campaign_counts (namespace, id, updated_at) VALUES ('t', ?1, 0)",
            [campaign.to_string()],
        )
        .unwrap();
        campaign
    }

    fn running_count(conn: &Connection, campaign: Uuid) -> i64 {
        conn.query_row(
            "SELECT n_running FROM yizhan_campaign_counts WHERE namespace = 't' AND id = ?1",
            [campaign.to_string()],
            |r| r.get(0),
        )
        .unwrap()
    }

    /// A campaign's counters take the requests of a batch that were recorded, not the one that
    /// failed, even when they all ran in the pass that was undone.
    #[test]
    fn a_failing_request_is_not_counted_in_its_campaign() {
        let mut conn = connect(":memory:").unwrap();
        let ctx = Ctx::new(&conn, "t".to_string(), 60_000).unwrap();
        let campaign = new_counters(&conn);
        // A record whose state is no status fails the claim that reads it.
        conn.execute(
            "INSERT INTO yizhan_keys (namespace, key, job_id, state, attempt, updated_at, campaign)
             VALUES ('t', 'bad', '0190f3d4-0000-7000-8000-000000000000', 'bogus', 1, 0, ?1)",
            [campaign.to_string()],
        )
        .unwrap();
        let in_campaign = |key| claim(key, Some(campaign));
        let (mut batch, _answers): (Vec<_>, Vec<_>) = ["a", "bad", "c"].map(in_campaign).into_iter().unzip();
        run_batch(&mut conn, &ctx, &mut batch);
        assert_eq!(running_count(&conn, campaign), 2, "a and c, each once");
        let (mut batch, _answers): (Vec<_>, Vec<_>) = ["d"].map(in_campaign).into_iter().unzip();
        run_batch(&mut conn, &ctx, &mut batch);
        assert_eq!(running_count(&conn, campaign), 3, "nothing of the failed pass is left to count again");
    }

    /// A request that fails after its record changed (here a trigger aborts it once the counting
    /// trigger has seen the change) takes its change back from the counters with its savepoint.
    #[test]
    fn a_request_failing_after_its_change_is_not_counted() {
        let mut conn = connect(":memory:").unwrap();
        let ctx = Ctx::new(&conn, "t".to_string(), 60_000).unwrap();
        let campaign = new_counters(&conn);
        // Created after the counting triggers, so it fires after them.
        conn.execute_batch(
            "CREATE TEMP TRIGGER boom AFTER INSERT ON main.yizhan_keys WHEN NEW.key = 'boom'
             BEGIN SELECT RAISE(ABORT, 'boom'); END;",
        )
        .unwrap();
        let in_campaign = |key| claim(key, Some(campaign));
        let (mut batch, answers): (Vec<_>, Vec<_>) = ["a", "boom", "c"].map(in_campaign).into_iter().unzip();
        run_batch(&mut conn, &ctx, &mut batch);
        let answers: Vec<_> = answers.into_iter().map(|mut a| a.try_recv().expect("answered")).collect();
        assert!(answers[1].is_err(), "the aborted claim fails");
        assert_eq!(running_count(&conn, campaign), 2, "a and c; not the aborted claim");
    }

    /// A file from an older version has triggers that counted by themselves: opened by this
    /// version it counts each change once.
    #[test]
    fn the_old_counting_triggers_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite");
        let path = path.to_str().unwrap();
        let campaign = Uuid::now_v7();
        {
            let old = connect(path).unwrap();
            old.execute_batch(
                "CREATE TRIGGER yizhan_keys_campaign_insert AFTER INSERT ON yizhan_keys
                 WHEN NEW.campaign IS NOT NULL
                 BEGIN
                     UPDATE yizhan_campaign_counts SET n_running = n_running + (NEW.state = 'running')
                     WHERE namespace = NEW.namespace AND id = NEW.campaign;
                 END;",
            )
            .unwrap();
            old.execute(
                "INSERT INTO yizhan_campaign_counts (namespace, id, updated_at) VALUES ('t', ?1, 0)",
                [campaign.to_string()],
            )
            .unwrap();
        }
        let mut conn = connect(path).unwrap();
        let ctx = Ctx::new(&conn, "t".to_string(), 60_000).unwrap();
        let (request, _answer) = claim("a", Some(campaign));
        run_batch(&mut conn, &ctx, &mut vec![request]);
        assert_eq!(running_count(&conn, campaign), 1);
    }

    /// Without a failure, one transaction records the whole batch.
    #[test]
    fn a_batch_is_recorded_whole() {
        let mut conn = connect(":memory:").unwrap();
        let ctx = Ctx::new(&conn, "t".to_string(), 60_000).unwrap();
        let (requests, answers): (Vec<_>, Vec<_>) = ["a", "b", "a"].map(|key| claim(key, None)).into_iter().unzip();
        let mut batch = requests;
        run_batch(&mut conn, &ctx, &mut batch);
        let answers: Vec<_> = answers.into_iter().map(|mut a| a.try_recv().expect("answered")).collect();
        assert!(matches!(answers[0], Ok(Reply::Claim(Claim::Acquired { .. }))));
        assert!(matches!(answers[1], Ok(Reply::Claim(Claim::Acquired { .. }))));
        assert!(matches!(answers[2], Ok(Reply::Claim(Claim::Busy { .. }))), "the second claim of a sees the first");
    }
}

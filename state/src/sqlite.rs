//! The SQLite backend: one file (or `:memory:`), one dedicated thread owning the connection.
//!
//! Throughput: callers send requests over a bounded channel to the store's thread; the thread takes
//! the first waiting request plus everything else already queued (up to [`MAX_BATCH`]) and runs the
//! whole batch in ONE `BEGIN IMMEDIATE` transaction, each request inside its own savepoint so that
//! one failing request does not undo the others. Replies go out only after the `COMMIT`, so no
//! caller acts on a claim that is not durable. Under load the cost of a commit (the WAL append and
//! its lock) is shared by every request in the batch; with a single caller the batch is one request.

use std::fmt;
use std::thread;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::model::{Claim, ClaimRequest, Finish, FinishedState, JobStatus, Millis, StateStore, StoreError};

/// The most requests run in one transaction.
const MAX_BATCH: usize = 1024;
/// Requests waiting for the store's thread before senders wait.
const QUEUE_CAPACITY: usize = 8192;
/// How long a transaction waits for another process holding the file's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const SCHEMA: &str = "
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
        let ctx = Ctx { ns: namespace.to_string(), retention_ms: duration_ms(retention) };
        let db_path = path.to_string();
        thread::Builder::new()
            .name("yizhan-state-sqlite".to_string())
            .spawn(move || match connect(&db_path) {
                Ok(conn) => {
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

    async fn prune(&self, now: Millis) -> Result<u64, StoreError> {
        match self.call(Op::Prune(now)).await? {
            Reply::Pruned(n) => Ok(n),
            _ => Err(unexpected_reply()),
        }
    }
}

struct Ctx {
    ns: String,
    retention_ms: i64,
}

enum Op {
    Claim(ClaimRequest),
    Renew { owner: String, keys: Vec<String>, now: Millis, lease_until: Millis },
    Finish { key: String, finish: Finish, now: Millis },
    RetryPublished { key: String, attempt: u32 },
    Status(Uuid),
    Accept { job_ids: Vec<Uuid>, now: Millis },
    Accepted(Uuid),
    Prune(Millis),
}

enum Reply {
    Claim(Claim),
    Done,
    Status(Option<JobStatus>),
    Accepted(bool),
    Pruned(u64),
}

struct Request {
    op: Op,
    reply: oneshot::Sender<Result<Reply, StoreError>>,
}

/// Opens the database (WAL, `synchronous=NORMAL`, the store's schema); the parking lot shares it.
pub(crate) fn connect(path: &str) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // An in-memory database answers "memory": WAL does not apply to it.
    let _mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
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

fn run_batch(conn: &mut Connection, ctx: &Ctx, batch: &mut Vec<Request>) {
    let read_only = batch.iter().all(|r| matches!(r.op, Op::Status(_) | Op::Accepted(_)));
    let behavior = if read_only { TransactionBehavior::Deferred } else { TransactionBehavior::Immediate };
    let mut tx = match conn.transaction_with_behavior(behavior) {
        Ok(tx) => tx,
        Err(e) => {
            for request in batch.drain(..) {
                let _ = request.reply.send(Err(copy_error(&e)));
            }
            return;
        }
    };
    let mut results = Vec::with_capacity(batch.len());
    for request in batch.iter() {
        let result = in_savepoint(&mut tx, ctx, &request.op);
        if result.is_err() && tx.is_autocommit() {
            // SQLite rolled the whole transaction back (I/O error, full disk, ...): nothing in this
            // batch was recorded.
            let reason = match &result {
                Err(e) => e.to_string(),
                Ok(_) => String::new(),
            };
            drop(tx);
            for request in batch.drain(..) {
                let error = StoreError::Task(format!("sqlite transaction rolled back: {reason}"));
                let _ = request.reply.send(Err(error));
            }
            return;
        }
        results.push(result);
    }
    match tx.commit() {
        Ok(()) => {
            for (request, result) in batch.drain(..).zip(results) {
                // A caller that gave up waiting is no longer interested.
                let _ = request.reply.send(result);
            }
        }
        Err(e) => {
            for request in batch.drain(..) {
                let _ = request.reply.send(Err(copy_error(&e)));
            }
        }
    }
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

/// One error for each request of a failed batch (`rusqlite::Error` is not `Clone`).
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
                 WHERE namespace = ?1 AND key = ?2 AND state = 'retrying' AND attempt = ?3",
            )?
            .execute(params![ctx.ns, key, i64::from(*attempt)])?;
            Ok(Reply::Done)
        }
        Op::Status(job_id) => status(conn, ctx, *job_id).map(Reply::Status),
        Op::Accept { job_ids, now } => {
            let mut insert = conn.prepare_cached(
                "INSERT INTO yizhan_accepted (namespace, job_id, accepted_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (namespace, job_id) DO UPDATE SET accepted_at = excluded.accepted_at",
            )?;
            for job_id in job_ids {
                insert.execute(params![ctx.ns, job_id.to_string(), now])?;
            }
            Ok(Reply::Done)
        }
        Op::Accepted(job_id) => {
            let found = conn
                .prepare_cached("SELECT 1 FROM yizhan_accepted WHERE namespace = ?1 AND job_id = ?2")?
                .exists(params![ctx.ns, job_id.to_string()])?;
            Ok(Reply::Accepted(found))
        }
        Op::Prune(now) => {
            let cutoff = now.saturating_sub(ctx.retention_ms);
            let pruned = conn
                .prepare_cached("DELETE FROM yizhan_keys WHERE namespace = ?1 AND updated_at < ?2")?
                .execute(params![ctx.ns, cutoff])?;
            conn.prepare_cached(
                "DELETE FROM yizhan_jobs WHERE namespace = ?1 AND updated_at < ?2
                   AND NOT EXISTS (SELECT 1 FROM yizhan_keys k
                                   WHERE k.namespace = ?1 AND k.key = yizhan_jobs.key)",
            )?
            .execute(params![ctx.ns, cutoff])?;
            conn.prepare_cached("DELETE FROM yizhan_accepted WHERE namespace = ?1 AND accepted_at < ?2")?
                .execute(params![ctx.ns, cutoff])?;
            Ok(Reply::Pruned(pruned as u64))
        }
    }
}

/// What a claim needs of the current record.
struct Current {
    job_id: String,
    state: String,
    attempt: i64,
    lease_until: Option<i64>,
    retry_published: bool,
    progress: Option<String>,
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
            Ok(Current {
                job_id: row.get(0)?,
                state: row.get(1)?,
                attempt: row.get(2)?,
                lease_until: row.get(3)?,
                retry_published: row.get::<_, i64>(4)? != 0,
                progress: row.get(5)?,
            })
        })
        .optional()?;

    let Some(current) = current else {
        acquire(conn, ctx, request, &job_id, i64::from(request.attempt))?;
        return Ok(Claim::Acquired { progress: None, orphaned_attempt: None });
    };
    let corrupt = |reason: String| StoreError::Corrupt { key: request.key.clone(), reason };
    let stored_attempt =
        u32::try_from(current.attempt).map_err(|_| corrupt(format!("attempt {} out of range", current.attempt)))?;
    let progress = || parse_json(&request.key, "progress", current.progress.as_deref());
    match current.state.as_str() {
        "succeeded" => Ok(Claim::Finished { state: FinishedState::Succeeded }),
        "dead" if request.replay => {
            let progress = progress()?;
            acquire(conn, ctx, request, &job_id, i64::from(request.attempt))?;
            Ok(Claim::Acquired { progress, orphaned_attempt: None })
        }
        "dead" => Ok(Claim::Finished { state: FinishedState::Dead }),
        "running" => {
            let lease_until = current.lease_until.unwrap_or(0);
            if lease_until > request.now {
                let left = lease_until.saturating_sub(request.now).max(1);
                return Ok(Claim::Busy { retry_in: Duration::from_millis(left.unsigned_abs()) });
            }
            let progress = progress()?;
            let attempt = i64::from(request.attempt.max(stored_attempt));
            acquire(conn, ctx, request, &job_id, attempt)?;
            Ok(Claim::Acquired { progress, orphaned_attempt: Some(stored_attempt) })
        }
        "retrying" => {
            if current.job_id != job_id {
                Ok(Claim::Stale)
            } else if request.attempt > stored_attempt {
                let progress = progress()?;
                acquire(conn, ctx, request, &job_id, i64::from(request.attempt))?;
                Ok(Claim::Acquired { progress, orphaned_attempt: None })
            } else if request.attempt == stored_attempt && !current.retry_published {
                Ok(Claim::RetryUnpublished { attempt: stored_attempt, progress: progress()? })
            } else {
                Ok(Claim::Stale)
            }
        }
        other => Err(corrupt(format!("unknown state {other:?}"))),
    }
}

/// Makes `request` the key's holder, keeping progress and the last error.
fn acquire(conn: &Connection, ctx: &Ctx, request: &ClaimRequest, job_id: &str, attempt: i64) -> Result<(), StoreError> {
    let lease_until = request.now.saturating_add(duration_ms(request.lease));
    conn.prepare_cached(
        "INSERT INTO yizhan_keys
            (namespace, key, job_id, state, attempt, owner, lease_until, retry_published, updated_at)
         VALUES (?1, ?2, ?3, 'running', ?4, ?5, ?6, 0, ?7)
         ON CONFLICT (namespace, key) DO UPDATE SET
            job_id = excluded.job_id, state = 'running', attempt = excluded.attempt,
            owner = excluded.owner, lease_until = excluded.lease_until, retry_published = 0,
            next_attempt_at = NULL, updated_at = excluded.updated_at",
    )?
    .execute(params![ctx.ns, request.key, job_id, attempt, request.owner, lease_until, request.now])?;
    Ok(())
}

/// Records how an attempt ended. A key with no record (pruned or never claimed) is left alone.
/// A `None` progress keeps the recorded progress.
fn finish_key(conn: &Connection, ctx: &Ctx, key: &str, finish: &Finish, now: Millis) -> Result<(), StoreError> {
    match finish {
        Finish::Retrying { attempt, progress, error, next_attempt_at } => conn
            .prepare_cached(
                "UPDATE yizhan_keys SET state = 'retrying', attempt = ?3,
                    progress = COALESCE(?4, progress), error = ?5, next_attempt_at = ?6,
                    retry_published = 0, owner = NULL, lease_until = NULL, updated_at = ?7
                 WHERE namespace = ?1 AND key = ?2",
            )?
            .execute(params![
                ctx.ns,
                key,
                i64::from(*attempt),
                to_json(progress.as_ref()),
                error,
                next_attempt_at,
                now
            ])?,
        Finish::Succeeded { attempt, result } => conn
            .prepare_cached(
                "UPDATE yizhan_keys SET state = 'succeeded', attempt = ?3, result = ?4,
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
    }
    let row = conn
        .prepare_cached(
            "SELECT k.key, k.job_id, k.state, k.attempt, k.result, k.error, k.error_kind,
                    k.next_attempt_at
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
            })
        })
        .optional()?;
    let Some(row) = row else {
        return Ok(None);
    };
    let corrupt = |reason: String| StoreError::Corrupt { key: row.key.clone(), reason };
    let owner_job = Uuid::parse_str(&row.job_id).map_err(|e| corrupt(format!("job id {:?}: {e}", row.job_id)))?;
    let attempts = u32::try_from(row.attempt).map_err(|_| corrupt(format!("attempt {} out of range", row.attempt)))?;
    if !matches!(row.state.as_str(), "running" | "retrying" | "succeeded" | "dead") {
        return Err(corrupt(format!("unknown state {:?}", row.state)));
    }
    Ok(Some(JobStatus {
        id: job_id,
        status: row.state.clone(),
        attempts,
        result: parse_json(&row.key, "result", row.result.as_deref())?,
        error: row.error.clone(),
        error_kind: row.error_kind.clone(),
        next_attempt_at: row.next_attempt_at,
        duplicate_of: (owner_job != job_id).then_some(owner_job),
    }))
}

fn to_json(value: Option<&Value>) -> Option<String> {
    value.map(Value::to_string)
}

pub(crate) fn parse_json(key: &str, field: &str, text: Option<&str>) -> Result<Option<Value>, StoreError> {
    match text {
        None => Ok(None),
        Some(text) => serde_json::from_str(text)
            .map(Some)
            .map_err(|e| StoreError::Corrupt { key: key.to_string(), reason: format!("{field} is not JSON: {e}") }),
    }
}

pub(crate) fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

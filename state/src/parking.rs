//! The parking lot: messages held back until a time, durably, in the state store.
//!
//! A job that cannot run yet (its config is paused or out of tokens; later, a scheduled send or
//! quiet hours) is *parked* here and its delivery acknowledged, instead of riding a delay queue
//! round and round: a thousand jobs waiting out a one-minute pause cost a thousand writes and a
//! thousand publishes when it ends, not a publish every two seconds each. Nothing is held in a
//! worker's memory, so a restart loses nothing.
//!
//! Workers *take* what is due: taking moves the entry's due time one lease ahead and gives it a
//! fresh token, so that another worker does not take it too; the taker publishes it and then
//! *releases* it, which deletes it only if the token is still its own. A taker that dies between
//! the two leaves the entry to be taken again when the lease runs out: a second copy at worst,
//! which the job's idempotency key absorbs, never a lost one. Parking an entry again (the job came
//! back and must wait once more) replaces it and changes its token, so a late release from the
//! previous round cannot delete it.

use std::fmt;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use redis::Script;
use redis::aio::ConnectionManager;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::{Deserialize, Serialize};

use crate::model::{DEFAULT_RETENTION, Millis, StoreError};
use crate::redis_store::RedisStore;

/// A message held back until `due`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parked {
    /// Unique per held message: parking the same id again replaces the entry.
    pub id: String,
    /// When it may go (milliseconds since the Unix epoch).
    pub due: Millis,
    /// Where it goes back to: the routing key on the jobs exchange (its lane).
    pub routing_key: String,
    /// The message body, unchanged.
    pub body: Vec<u8>,
    /// The message's headers, serialized by the caller (opaque here).
    pub headers: String,
    /// Why it waits, for status and operators (`rate_limit`, `paused`, ...).
    pub reason: String,
}

/// An entry taken for publishing; hand `token` back to [`ParkingLot::release`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    /// The entry as stored when taken (`due` as it was before this take hid it).
    pub entry: Parked,
    /// Changes each time the entry is taken or parked again, so a stale release deletes nothing.
    pub token: i64,
}

/// Durable timers for messages; see the module docs.
#[async_trait::async_trait]
pub trait ParkingLot: Send + Sync + 'static {
    /// Holds `entry` until its due time (replacing an entry of the same id).
    async fn park(&self, entry: &Parked) -> Result<(), StoreError>;

    /// Up to `limit` entries due at `now`, earliest first; each is hidden from other takers for
    /// `lease`.
    async fn take_due(&self, now: Millis, limit: usize, lease: Duration) -> Result<Vec<Taken>, StoreError>;

    /// Deletes taken entries once published, each only if it was not parked or taken again since.
    async fn release(&self, taken: &[(String, i64)]) -> Result<(), StoreError>;

    /// How many entries wait (due or not).
    async fn waiting(&self) -> Result<u64, StoreError>;
}

/// Opens the parking lot of the state store named by `url` (see [`crate::open`]).
pub async fn open_parking(url: &str, namespace: &str) -> Result<Arc<dyn ParkingLot>, StoreError> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        Ok(Arc::new(SqliteParking::open(path, namespace)?))
    } else if url == "sqlite::memory:" {
        Ok(Arc::new(SqliteParking::open(":memory:", namespace)?))
    } else if url.starts_with("redis://") || url.starts_with("rediss://") {
        let store = RedisStore::open(url, namespace, DEFAULT_RETENTION).await?;
        Ok(Arc::new(RedisParking { conn: store.connection(), namespace: namespace.to_string() }))
    } else {
        Err(StoreError::BadUrl(crate::redact::url_credentials(url)))
    }
}

/// SQLite: a table next to the store's, on a connection of its own (parking is off the hot path).
pub struct SqliteParking {
    conn: Arc<Mutex<Connection>>,
    namespace: String,
}

impl fmt::Debug for SqliteParking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteParking").field("namespace", &self.namespace).finish_non_exhaustive()
    }
}

const PARKING_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS yizhan_parked (
    namespace   TEXT    NOT NULL,
    id          TEXT    NOT NULL,
    due         INTEGER NOT NULL,
    token       INTEGER NOT NULL,
    routing_key TEXT    NOT NULL,
    body        BLOB    NOT NULL,
    headers     TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    PRIMARY KEY (namespace, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS yizhan_parked_due ON yizhan_parked (namespace, due);
";

impl SqliteParking {
    /// Opens (creating if needed) the database file at `path` (`:memory:` for a private in-memory one).
    pub fn open(path: &str, namespace: &str) -> Result<Self, StoreError> {
        let conn = crate::sqlite::connect(path)?;
        conn.execute_batch(PARKING_SCHEMA)?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)), namespace: namespace.to_string() })
    }

    /// Runs `f` on the connection off the async threads.
    async fn with<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &str) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = self.conn.clone();
        let namespace = self.namespace.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().map_err(|_| StoreError::Task("parking connection poisoned".into()))?;
            f(&mut conn, &namespace)
        })
        .await
        .map_err(|e| StoreError::Task(format!("parking task failed: {e}")))?
    }
}

#[async_trait::async_trait]
impl ParkingLot for SqliteParking {
    async fn park(&self, entry: &Parked) -> Result<(), StoreError> {
        let entry = entry.clone();
        self.with(move |conn, ns| {
            conn.execute(
                "INSERT INTO yizhan_parked (namespace, id, due, token, routing_key, body, headers, reason)
                 VALUES (?1, ?2, ?3, 1, ?4, ?5, ?6, ?7)
                 ON CONFLICT (namespace, id) DO UPDATE SET due = excluded.due, token = token + 1,
                   routing_key = excluded.routing_key, body = excluded.body, headers = excluded.headers,
                   reason = excluded.reason",
                params![ns, entry.id, entry.due, entry.routing_key, entry.body, entry.headers, entry.reason],
            )?;
            Ok(())
        })
        .await
    }

    async fn take_due(&self, now: Millis, limit: usize, lease: Duration) -> Result<Vec<Taken>, StoreError> {
        let hidden_until = now + lease.as_millis() as Millis;
        self.with(move |conn, ns| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut taken = Vec::new();
            {
                let mut select = tx.prepare_cached(
                    "SELECT id, due, token, routing_key, body, headers, reason FROM yizhan_parked
                     WHERE namespace = ?1 AND due <= ?2 ORDER BY due LIMIT ?3",
                )?;
                let rows = select.query_map(params![ns, now, limit as i64], |row| {
                    Ok(Taken {
                        entry: Parked {
                            id: row.get(0)?,
                            due: row.get(1)?,
                            routing_key: row.get(3)?,
                            body: row.get(4)?,
                            headers: row.get(5)?,
                            reason: row.get(6)?,
                        },
                        token: row.get::<_, i64>(2)? + 1,
                    })
                })?;
                for row in rows {
                    taken.push(row?);
                }
                let mut hide = tx.prepare_cached(
                    "UPDATE yizhan_parked SET due = ?3, token = token + 1 WHERE namespace = ?1 AND id = ?2",
                )?;
                for t in &taken {
                    hide.execute(params![ns, t.entry.id, hidden_until])?;
                }
            }
            tx.commit()?;
            Ok(taken)
        })
        .await
    }

    async fn release(&self, taken: &[(String, i64)]) -> Result<(), StoreError> {
        let taken = taken.to_vec();
        self.with(move |conn, ns| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            {
                let mut delete =
                    tx.prepare_cached("DELETE FROM yizhan_parked WHERE namespace = ?1 AND id = ?2 AND token = ?3")?;
                for (id, token) in &taken {
                    delete.execute(params![ns, id, token])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn waiting(&self) -> Result<u64, StoreError> {
        self.with(|conn, ns| {
            let n: Option<i64> = conn
                .query_row("SELECT COUNT(*) FROM yizhan_parked WHERE namespace = ?1", params![ns], |row| row.get(0))
                .optional()?;
            Ok(n.unwrap_or(0) as u64)
        })
        .await
    }
}

/// Redis: a sorted set of ids by due time, a hash of entries and a hash of tokens, changed by
/// scripts so that each operation is atomic.
pub struct RedisParking {
    conn: ConnectionManager,
    namespace: String,
}

impl fmt::Debug for RedisParking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisParking").field("namespace", &self.namespace).finish_non_exhaustive()
    }
}

/// KEYS: due set, entries, tokens. ARGV: id, due, entry JSON.
static PARK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
return 1
",
    )
});

/// KEYS: due set, entries, tokens. ARGV: now, limit, hidden until. Returns id, entry, token triples.
static TAKE_DUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(ids) do
  local entry = redis.call('HGET', KEYS[2], id)
  if entry then
    redis.call('ZADD', KEYS[1], ARGV[3], id)
    out[#out + 1] = entry
    out[#out + 1] = redis.call('HINCRBY', KEYS[3], id, 1)
  else
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[3], id)
  end
end
return out
",
    )
});

/// KEYS: due set, entries, tokens. ARGV: id, token pairs.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
for i = 1, #ARGV, 2 do
  local id = ARGV[i]
  if redis.call('HGET', KEYS[3], id) == ARGV[i + 1] then
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    redis.call('HDEL', KEYS[3], id)
  end
end
return 0
",
    )
});

impl RedisParking {
    fn keys(&self) -> [String; 3] {
        let ns = &self.namespace;
        [format!("{ns}:parked:due"), format!("{ns}:parked:entries"), format!("{ns}:parked:tokens")]
    }
}

fn corrupt(reason: String) -> StoreError {
    StoreError::Corrupt { key: "parked".into(), reason }
}

#[async_trait::async_trait]
impl ParkingLot for RedisParking {
    async fn park(&self, entry: &Parked) -> Result<(), StoreError> {
        let json = serde_json::to_string(entry).map_err(|e| corrupt(e.to_string()))?;
        let [due, entries, tokens] = self.keys();
        let _: i64 = PARK
            .key(due)
            .key(entries)
            .key(tokens)
            .arg(&entry.id)
            .arg(entry.due)
            .arg(json)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    async fn take_due(&self, now: Millis, limit: usize, lease: Duration) -> Result<Vec<Taken>, StoreError> {
        let [due, entries, tokens] = self.keys();
        let raw: Vec<redis::Value> = TAKE_DUE
            .key(due)
            .key(entries)
            .key(tokens)
            .arg(now)
            .arg(limit)
            .arg(now + lease.as_millis() as Millis)
            .invoke_async(&mut self.conn.clone())
            .await?;
        raw.chunks(2)
            .map(|pair| {
                let [entry, token] = pair else { return Err(corrupt("odd reply".into())) };
                let entry: String = redis::from_redis_value(entry.clone()).map_err(|e| corrupt(e.to_string()))?;
                let token: i64 = redis::from_redis_value(token.clone()).map_err(|e| corrupt(e.to_string()))?;
                let entry: Parked = serde_json::from_str(&entry).map_err(|e| corrupt(e.to_string()))?;
                Ok(Taken { entry, token })
            })
            .collect()
    }

    async fn release(&self, taken: &[(String, i64)]) -> Result<(), StoreError> {
        if taken.is_empty() {
            return Ok(());
        }
        let [due, entries, tokens] = self.keys();
        let mut invocation = RELEASE.key(due);
        invocation.key(entries).key(tokens);
        for (id, token) in taken {
            invocation.arg(id).arg(token);
        }
        let _: i64 = invocation.invoke_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    async fn waiting(&self) -> Result<u64, StoreError> {
        let [due, ..] = self.keys();
        let n: u64 = redis::cmd("ZCARD").arg(due).query_async(&mut self.conn.clone()).await?;
        Ok(n)
    }
}

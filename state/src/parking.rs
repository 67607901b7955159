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
//!
//! A *held* entry (a job of a paused campaign) is never due until [`ParkingLot::wake`] makes its
//! campaign's entries due, in chunks of one statement or script each, so that a million held
//! entries cost the caller one call and never block the store for long.

use std::fmt;
use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;
use rusqlite::{OptionalExtension, TransactionBehavior, params};
use serde::{Deserialize, Serialize};

use crate::model::{DEFAULT_RETENTION, Millis, StoreError};
use crate::redis_conn::RedisConnection;
use crate::redis_store::RedisStore;
use crate::sqlite::SideConnection;

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
    /// The campaign the job belongs to, so that [`ParkingLot::wake`] finds it.
    #[serde(default)]
    pub campaign: Option<String>,
    /// Held until [`ParkingLot::wake`] (its campaign is paused): never due before, whatever `due`
    /// says; woken, it is due at the wake's `now`. Needs a `campaign`.
    #[serde(default)]
    pub held: bool,
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

    /// How many entries wait (due or not, held ones included).
    async fn waiting(&self) -> Result<u64, StoreError>;

    /// Makes the campaign's held entries (with `held_only`; otherwise all its entries, held or
    /// waiting for a later time) due at `now`; answers how many changed. One call for any number
    /// of entries: the work goes in bounded chunks so that the store is never blocked for long.
    async fn wake(&self, campaign: &str, held_only: bool, now: Millis) -> Result<u64, StoreError>;

    /// The campaigns that have held entries (possibly one already woken a moment ago).
    async fn held_campaigns(&self) -> Result<Vec<String>, StoreError>;
}

/// Entries made due per statement (SQLite) or script (Redis) by a wake.
pub(crate) const WAKE_CHUNK: usize = 10_000;

/// SQLite: a table next to the store's, on a connection of its own (parking is off the hot path).
pub struct SqliteParking {
    side: SideConnection,
}

impl fmt::Debug for SqliteParking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteParking").field("namespace", &self.side.namespace).finish_non_exhaustive()
    }
}

/// The due time a held entry is stored with: never reached.
pub(crate) const HELD_DUE: Millis = Millis::MAX;

/// The tables; `campaign`, `held` and `parked_due` (the due time it was parked with, which a
/// take does not move) came with campaigns ([`PARKING_INDEXES`] needs them, so older files get
/// them first).
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
    campaign    TEXT,
    held        INTEGER NOT NULL DEFAULT 0,
    parked_due  INTEGER,
    PRIMARY KEY (namespace, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS yizhan_parked_due ON yizhan_parked (namespace, due);
CREATE TABLE IF NOT EXISTS yizhan_parked_held (
    namespace TEXT NOT NULL,
    campaign  TEXT NOT NULL,
    PRIMARY KEY (namespace, campaign)
) WITHOUT ROWID;
";

/// Only campaign entries are indexed by campaign (plain ones pay nothing); `parked_due` is in the
/// index so that a chunked wake skips the entries it already made due.
const PARKING_INDEXES: &str = "
CREATE INDEX IF NOT EXISTS yizhan_parked_campaign ON yizhan_parked (namespace, campaign, held, parked_due)
    WHERE campaign IS NOT NULL;
";

impl SqliteParking {
    /// Opens (creating if needed) the database file at `path` (`:memory:` for a private in-memory one).
    pub fn open(path: &str, namespace: &str) -> Result<Self, StoreError> {
        let mut conn = crate::sqlite::connect(path)?;
        conn.execute_batch(PARKING_SCHEMA)?;
        crate::sqlite::add_missing_columns(
            &mut conn,
            "yizhan_parked",
            &[("campaign", "TEXT"), ("held", "INTEGER NOT NULL DEFAULT 0"), ("parked_due", "INTEGER")],
        )?;
        conn.execute_batch(PARKING_INDEXES)?;
        Ok(Self { side: SideConnection::new(conn, namespace, "parking") })
    }
}

#[async_trait::async_trait]
impl ParkingLot for SqliteParking {
    async fn park(&self, entry: &Parked) -> Result<(), StoreError> {
        let entry = entry.clone();
        let held = entry.held && entry.campaign.is_some();
        self.side
            .with(move |conn, ns| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                tx.prepare_cached(
                    "INSERT INTO yizhan_parked
                   (namespace, id, due, token, routing_key, body, headers, reason, campaign, held, parked_due)
                 VALUES (?1, ?2, ?3, 1, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (namespace, id) DO UPDATE SET due = excluded.due, token = token + 1,
                   routing_key = excluded.routing_key, body = excluded.body, headers = excluded.headers,
                   reason = excluded.reason, campaign = excluded.campaign, held = excluded.held,
                   parked_due = excluded.parked_due",
                )?
                .execute(params![
                    ns,
                    entry.id,
                    if held { HELD_DUE } else { entry.due },
                    entry.routing_key,
                    entry.body,
                    entry.headers,
                    entry.reason,
                    entry.campaign,
                    held,
                    entry.due
                ])?;
                match (held, &entry.campaign) {
                    (true, Some(campaign)) => {
                        tx.prepare_cached(
                            "INSERT OR IGNORE INTO yizhan_parked_held (namespace, campaign) VALUES (?1, ?2)",
                        )?
                        .execute(params![ns, campaign])?;
                    }
                    // It may have been its campaign's last held entry.
                    (false, Some(campaign)) => {
                        tx.prepare_cached(
                            "DELETE FROM yizhan_parked_held WHERE namespace = ?1 AND campaign = ?2
                           AND NOT EXISTS (SELECT 1 FROM yizhan_parked
                                           WHERE namespace = ?1 AND campaign = ?2 AND held = 1)",
                        )?
                        .execute(params![ns, campaign])?;
                    }
                    (_, None) => {}
                }
                tx.commit()?;
                Ok(())
            })
            .await
    }

    async fn take_due(&self, now: Millis, limit: usize, lease: Duration) -> Result<Vec<Taken>, StoreError> {
        let hidden_until = now + lease.as_millis() as Millis;
        self.side
            .with(move |conn, ns| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let mut taken = Vec::new();
                {
                    let mut select = tx.prepare_cached(
                        "SELECT id, due, token, routing_key, body, headers, reason, campaign FROM yizhan_parked
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
                                campaign: row.get(7)?,
                                held: false,
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
        self.side
            .with(move |conn, ns| {
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
        self.side
            .with(|conn, ns| {
                let n: Option<i64> = conn
                    .query_row("SELECT COUNT(*) FROM yizhan_parked WHERE namespace = ?1", params![ns], |row| row.get(0))
                    .optional()?;
                Ok(n.unwrap_or(0) as u64)
            })
            .await
    }

    async fn wake(&self, campaign: &str, held_only: bool, now: Millis) -> Result<u64, StoreError> {
        let mut woken = 0;
        // Held entries first, then (for `held_only = false`) those waiting for a later time; a
        // chunk per transaction, so that workers park and take in between.
        for held in [true, false] {
            if !held && held_only {
                break;
            }
            loop {
                let campaign = campaign.to_string();
                let changed = self
                    .side
                    .with(move |conn, ns| {
                        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                        let changed = if held {
                            tx.prepare_cached(
                                "UPDATE yizhan_parked SET due = ?3, held = 0, parked_due = ?3
                                 WHERE namespace = ?1 AND id IN (
                                     SELECT id FROM yizhan_parked
                                     WHERE namespace = ?1 AND campaign = ?2 AND held = 1 LIMIT ?4)",
                            )?
                            .execute(params![ns, campaign, now, WAKE_CHUNK as i64])?
                        } else {
                            tx.prepare_cached(
                                // By the time it was parked for: one taken (hidden) is not
                                // made due again under its taker.
                                "UPDATE yizhan_parked SET due = ?3, parked_due = ?3
                                 WHERE namespace = ?1 AND id IN (
                                     SELECT id FROM yizhan_parked
                                     WHERE namespace = ?1 AND campaign = ?2 AND held = 0 AND parked_due > ?3
                                     LIMIT ?4)",
                            )?
                            .execute(params![ns, campaign, now, WAKE_CHUNK as i64])?
                        };
                        if held && changed < WAKE_CHUNK {
                            // The last chunk: nothing of it is held any more (a later park
                            // registers it again).
                            tx.prepare_cached("DELETE FROM yizhan_parked_held WHERE namespace = ?1 AND campaign = ?2")?
                                .execute(params![ns, campaign])?;
                        }
                        tx.commit()?;
                        Ok(changed)
                    })
                    .await?;
                woken += changed as u64;
                if changed < WAKE_CHUNK {
                    break;
                }
            }
        }
        Ok(woken)
    }

    async fn held_campaigns(&self) -> Result<Vec<String>, StoreError> {
        self.side
            .with(|conn, ns| {
                let mut select = conn
                    .prepare_cached("SELECT campaign FROM yizhan_parked_held WHERE namespace = ?1 ORDER BY campaign")?;
                let campaigns = select.query_map(params![ns], |row| row.get(0))?.collect::<Result<_, _>>()?;
                Ok(campaigns)
            })
            .await
    }
}

/// Redis: a sorted set of ids by due time, a hash of entries and a hash of tokens, changed by
/// scripts so that each operation is atomic. A campaign's entries are also listed by campaign:
/// `held:<campaign>` (a sorted set of held ids, never in the due set), `of:<campaign>` (its other
/// entries, scored by the due time they were parked with) and the hash `campaigns` (id →
/// campaign); the set `held_campaigns` names the campaigns with held entries.
pub struct RedisParking {
    conn: RedisConnection,
    namespace: String,
}

impl RedisParking {
    /// The parking lot in the Redis at `url`, under `namespace`.
    pub async fn open(url: &str, namespace: &str) -> Result<Self, StoreError> {
        let store = RedisStore::open(url, namespace, DEFAULT_RETENTION).await?;
        Ok(Self { conn: store.connection(), namespace: namespace.to_string() })
    }
}

impl fmt::Debug for RedisParking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisParking").field("namespace", &self.namespace).finish_non_exhaustive()
    }
}

/// KEYS: due set, entries, tokens, campaigns, held campaigns. ARGV: id, due, entry JSON,
/// campaign ('' for none), held ('1' or '0'), key prefix.
static PARK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local id, due, json, campaign, held, prefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local old = redis.call('HGET', KEYS[4], id)
if old then
  redis.call('ZREM', prefix .. 'of:' .. old, id)
  local old_held = prefix .. 'held:' .. old
  if redis.call('ZREM', old_held, id) == 1 and redis.call('ZCARD', old_held) == 0 then
    redis.call('SREM', KEYS[5], old)
  end
end
redis.call('HSET', KEYS[2], id, json)
redis.call('HINCRBY', KEYS[3], id, 1)
if campaign == '' then
  if old then
    redis.call('HDEL', KEYS[4], id)
  end
  redis.call('ZADD', KEYS[1], due, id)
  return 1
end
redis.call('HSET', KEYS[4], id, campaign)
if held == '1' then
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZADD', prefix .. 'held:' .. campaign, due, id)
  redis.call('SADD', KEYS[5], campaign)
else
  redis.call('ZADD', KEYS[1], due, id)
  redis.call('ZADD', prefix .. 'of:' .. campaign, due, id)
end
return 1
",
    )
});

/// KEYS: due set, entries, tokens. ARGV: now, limit, hidden until. Returns entry, token, due
/// triples.
static TAKE_DUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for i = 1, #ids, 2 do
  local id = ids[i]
  local entry = redis.call('HGET', KEYS[2], id)
  if entry then
    redis.call('ZADD', KEYS[1], ARGV[3], id)
    out[#out + 1] = entry
    out[#out + 1] = redis.call('HINCRBY', KEYS[3], id, 1)
    out[#out + 1] = ids[i + 1]
  else
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[3], id)
  end
end
return out
",
    )
});

/// KEYS: due set, entries, tokens, campaigns. ARGV: key prefix, then id, token pairs.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  if redis.call('HGET', KEYS[3], id) == ARGV[i + 1] then
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    redis.call('HDEL', KEYS[3], id)
    local campaign = redis.call('HGET', KEYS[4], id)
    if campaign then
      redis.call('ZREM', ARGV[1] .. 'of:' .. campaign, id)
      redis.call('HDEL', KEYS[4], id)
    end
  end
end
return 0
",
    )
});

/// One chunk of a wake. KEYS: due set, held campaigns. ARGV: key prefix, campaign, held only
/// ('1' or '0'), now, chunk size. Returns {entries made due, 1 when more may remain}.
static WAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local prefix, campaign, held_only, now, chunk = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local held_key = prefix .. 'held:' .. campaign
local moved = 0
local held = redis.call('ZPOPMIN', held_key, chunk)
for i = 1, #held, 2 do
  redis.call('ZADD', KEYS[1], now, held[i])
  moved = moved + 1
end
if moved == chunk then
  return {moved, 1}
end
if redis.call('ZCARD', held_key) == 0 then
  redis.call('SREM', KEYS[2], campaign)
end
if held_only == '1' then
  return {moved, 0}
end
local of_key = prefix .. 'of:' .. campaign
local room = chunk - moved
local later = redis.call('ZRANGEBYSCORE', of_key, '(' .. now, '+inf', 'LIMIT', 0, room)
for _, id in ipairs(later) do
  local score = redis.call('ZSCORE', KEYS[1], id)
  if score and tonumber(score) > tonumber(now) then
    redis.call('ZADD', KEYS[1], now, id)
    moved = moved + 1
  end
  redis.call('ZADD', of_key, now, id)
end
if #later == room then
  return {moved, 1}
end
return {moved, 0}
",
    )
});

impl RedisParking {
    fn keys(&self) -> [String; 3] {
        let ns = &self.namespace;
        [format!("{ns}:parked:due"), format!("{ns}:parked:entries"), format!("{ns}:parked:tokens")]
    }

    fn prefix(&self) -> String {
        format!("{}:parked:", self.namespace)
    }

    fn campaigns_key(&self) -> String {
        format!("{}:parked:campaigns", self.namespace)
    }

    fn held_campaigns_key(&self) -> String {
        format!("{}:parked:held_campaigns", self.namespace)
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
        let held = entry.held && entry.campaign.is_some();
        let _: i64 = PARK
            .key(due)
            .key(entries)
            .key(tokens)
            .key(self.campaigns_key())
            .key(self.held_campaigns_key())
            .arg(&entry.id)
            .arg(entry.due)
            .arg(json)
            .arg(entry.campaign.as_deref().unwrap_or_default())
            .arg(if held { "1" } else { "0" })
            .arg(self.prefix())
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
        raw.chunks(3)
            .map(|triple| {
                let [entry, token, due] = triple else { return Err(corrupt("short reply".into())) };
                let entry: String = redis::from_redis_value(entry.clone()).map_err(|e| corrupt(e.to_string()))?;
                let token: i64 = redis::from_redis_value(token.clone()).map_err(|e| corrupt(e.to_string()))?;
                let due: String = redis::from_redis_value(due.clone()).map_err(|e| corrupt(e.to_string()))?;
                let due: f64 = due.parse().map_err(|_| corrupt(format!("due {due:?} is not a number")))?;
                let mut entry: Parked = serde_json::from_str(&entry).map_err(|e| corrupt(e.to_string()))?;
                // As SQLite reports it: when it became due (a woken entry: the wake's time).
                entry.due = due as Millis;
                entry.held = false;
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
        invocation.key(entries).key(tokens).key(self.campaigns_key()).arg(self.prefix());
        for (id, token) in taken {
            invocation.arg(id).arg(token);
        }
        let _: i64 = invocation.invoke_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    async fn waiting(&self) -> Result<u64, StoreError> {
        let [_, entries, _] = self.keys();
        let n: u64 = redis::cmd("HLEN").arg(entries).query_async(&mut self.conn.clone()).await?;
        Ok(n)
    }

    async fn wake(&self, campaign: &str, held_only: bool, now: Millis) -> Result<u64, StoreError> {
        let [due, ..] = self.keys();
        let mut woken = 0;
        loop {
            let (moved, more): (u64, i64) = WAKE
                .key(&due)
                .key(self.held_campaigns_key())
                .arg(self.prefix())
                .arg(campaign)
                .arg(if held_only { "1" } else { "0" })
                .arg(now)
                .arg(WAKE_CHUNK)
                .invoke_async(&mut self.conn.clone())
                .await?;
            woken += moved;
            if more == 0 {
                return Ok(woken);
            }
        }
    }

    async fn held_campaigns(&self) -> Result<Vec<String>, StoreError> {
        let mut campaigns: Vec<String> =
            redis::cmd("SMEMBERS").arg(self.held_campaigns_key()).query_async(&mut self.conn.clone()).await?;
        campaigns.sort();
        Ok(campaigns)
    }
}

//! What directory sync keeps between runs (issue 21): per sync config the last snapshot of the
//! source (what the target is known to hold), the operations applied by a run that has not
//! finished yet, leases (one run per config across the fleet) and once-per-period claims (one
//! scheduled run per period).
//!
//! A run applies the operations it derives from the snapshot, marking each one applied as it goes;
//! [`DirectoryStore::finish_run`] then saves the new snapshot and forgets the marks in one write. A
//! run that was interrupted derives the same operations again (the snapshot did not move) and skips
//! the marked ones, so every operation is applied once.
//!
//! Two backends, as for the rest of the store: SQLite tables next to the store's, or Redis keys
//! under the namespace.

use std::collections::HashSet;
use std::fmt;

use std::time::Duration;

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use crate::model::{DEFAULT_RETENTION, Millis, StoreError, now_millis};
use crate::redis_conn::RedisConnection;
use crate::redis_store::RedisStore;
use crate::sqlite::SideConnection;

/// Snapshots, applied operations, leases and period claims of directory sync.
#[async_trait::async_trait]
pub trait DirectoryStore: Send + Sync + fmt::Debug {
    /// The snapshot `finish_run` last saved for `config`; None before the first finished run.
    async fn snapshot(&self, config: &str) -> Result<Option<String>, StoreError>;

    /// The operations of `config` marked applied since its last finished run.
    async fn applied(&self, config: &str) -> Result<HashSet<String>, StoreError>;

    /// Marks operation `op` of `config` applied (idempotent).
    async fn mark_applied(&self, config: &str, op: &str) -> Result<(), StoreError>;

    /// Saves `snapshot` as the config's last snapshot and forgets its applied marks, in one write.
    async fn finish_run(&self, config: &str, snapshot: &str) -> Result<(), StoreError>;

    /// Takes the lease `name` for `owner` for `ttl`, or renews it when `owner` holds it already;
    /// false while another owner holds it and it has not run out.
    async fn lease(&self, name: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError>;

    /// Gives the lease `name` up if `owner` holds it.
    async fn release(&self, name: &str, owner: &str) -> Result<(), StoreError>;

    /// True for the first caller to claim `name` within `ttl` (a scheduled period), false for the
    /// others.
    async fn claim_once(&self, name: &str, ttl: Duration) -> Result<bool, StoreError>;
}

pub(crate) fn ttl_ms(ttl: Duration) -> Millis {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1)
}

const SQLITE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS yizhan_directory_snapshots (
    namespace TEXT NOT NULL,
    config    TEXT NOT NULL,
    snapshot  TEXT NOT NULL,
    PRIMARY KEY (namespace, config)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS yizhan_directory_applied (
    namespace TEXT NOT NULL,
    config    TEXT NOT NULL,
    op        TEXT NOT NULL,
    PRIMARY KEY (namespace, config, op)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS yizhan_directory_leases (
    namespace  TEXT NOT NULL,
    name       TEXT NOT NULL,
    owner      TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, name)
) WITHOUT ROWID;
";

/// SQLite: three small tables on a connection of their own (a run writes a few hundred rows).
pub struct SqliteDirectory {
    side: SideConnection,
}

impl fmt::Debug for SqliteDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteDirectory").field("namespace", &self.side.namespace).finish_non_exhaustive()
    }
}

impl SqliteDirectory {
    /// Opens (creating if needed) the tables in the database file at `path`.
    pub fn open(path: &str, namespace: &str) -> Result<Self, StoreError> {
        let conn = crate::sqlite::connect(path)?;
        conn.execute_batch(SQLITE_SCHEMA)?;
        Ok(Self { side: SideConnection::new(conn, namespace, "directory") })
    }
}

#[async_trait::async_trait]
impl DirectoryStore for SqliteDirectory {
    async fn snapshot(&self, config: &str) -> Result<Option<String>, StoreError> {
        let config = config.to_string();
        self.side
            .with(move |conn, ns| {
                Ok(conn
                    .prepare_cached(
                        "SELECT snapshot FROM yizhan_directory_snapshots WHERE namespace = ?1 AND config = ?2",
                    )?
                    .query_row(params![ns, config], |row| row.get(0))
                    .optional()?)
            })
            .await
    }

    async fn applied(&self, config: &str) -> Result<HashSet<String>, StoreError> {
        let config = config.to_string();
        self.side
            .with(move |conn, ns| {
                let mut select = conn
                    .prepare_cached("SELECT op FROM yizhan_directory_applied WHERE namespace = ?1 AND config = ?2")?;
                let ops = select.query_map(params![ns, config], |row| row.get(0))?.collect::<Result<_, _>>()?;
                Ok(ops)
            })
            .await
    }

    async fn mark_applied(&self, config: &str, op: &str) -> Result<(), StoreError> {
        let (config, op) = (config.to_string(), op.to_string());
        self.side
            .with(move |conn, ns| {
                conn.prepare_cached(
                    "INSERT OR IGNORE INTO yizhan_directory_applied (namespace, config, op) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![ns, config, op])?;
                Ok(())
            })
            .await
    }

    async fn finish_run(&self, config: &str, snapshot: &str) -> Result<(), StoreError> {
        let (config, snapshot) = (config.to_string(), snapshot.to_string());
        self.side
            .with(move |conn, ns| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                tx.prepare_cached(
                    "INSERT INTO yizhan_directory_snapshots (namespace, config, snapshot) VALUES (?1, ?2, ?3)
                 ON CONFLICT (namespace, config) DO UPDATE SET snapshot = excluded.snapshot",
                )?
                .execute(params![ns, config, snapshot])?;
                tx.prepare_cached("DELETE FROM yizhan_directory_applied WHERE namespace = ?1 AND config = ?2")?
                    .execute(params![ns, config])?;
                tx.commit()?;
                Ok(())
            })
            .await
    }

    async fn lease(&self, name: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        let (name, owner) = (name.to_string(), owner.to_string());
        let now = now_millis();
        let expires_at = now.saturating_add(ttl_ms(ttl));
        self.side.with(move |conn, ns| {
            let changed = conn
                .prepare_cached(
                    "INSERT INTO yizhan_directory_leases (namespace, name, owner, expires_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (namespace, name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
                     WHERE owner = excluded.owner OR expires_at <= ?5",
                )?
                .execute(params![ns, name, owner, expires_at, now])?;
            Ok(changed == 1)
        })
        .await
    }

    async fn release(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        let (name, owner) = (name.to_string(), owner.to_string());
        self.side
            .with(move |conn, ns| {
                conn.prepare_cached(
                    "DELETE FROM yizhan_directory_leases WHERE namespace = ?1 AND name = ?2 AND owner = ?3",
                )?
                .execute(params![ns, name, owner])?;
                Ok(())
            })
            .await
    }

    async fn claim_once(&self, name: &str, ttl: Duration) -> Result<bool, StoreError> {
        let name = name.to_string();
        let now = now_millis();
        let expires_at = now.saturating_add(ttl_ms(ttl));
        self.side
            .with(move |conn, ns| {
                // A claim is a lease nobody renews: the owner is the claim itself.
                let changed = conn
                .prepare_cached(
                    "INSERT INTO yizhan_directory_leases (namespace, name, owner, expires_at) VALUES (?1, ?2, '', ?3)
                     ON CONFLICT (namespace, name) DO UPDATE SET expires_at = excluded.expires_at
                     WHERE expires_at <= ?4",
                )?
                .execute(params![ns, name, expires_at, now])?;
                Ok(changed == 1)
            })
            .await
    }
}

/// Redis: `{ns}:directory:snapshot:{config}` (string), `{ns}:directory:applied:{config}` (set),
/// `{ns}:directory:lease:{name}` (string with an expiry).
pub struct RedisDirectory {
    conn: RedisConnection,
    namespace: String,
}

impl RedisDirectory {
    /// The directory store in the Redis at `url`, under `namespace`.
    pub async fn open(url: &str, namespace: &str) -> Result<Self, StoreError> {
        let store = RedisStore::open(url, namespace, DEFAULT_RETENTION).await?;
        Ok(Self { conn: store.connection(), namespace: namespace.to_string() })
    }
}

impl fmt::Debug for RedisDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisDirectory").field("namespace", &self.namespace).finish_non_exhaustive()
    }
}

impl RedisDirectory {
    fn key(&self, what: &str, name: &str) -> String {
        format!("{}:directory:{what}:{name}", self.namespace)
    }
}

/// Takes or renews a lease: set when absent or held by the same owner.
const LEASE_SCRIPT: &str = r"
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
";

/// Gives a lease up only when the caller holds it.
const RELEASE_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

#[async_trait::async_trait]
impl DirectoryStore for RedisDirectory {
    async fn snapshot(&self, config: &str) -> Result<Option<String>, StoreError> {
        Ok(redis::cmd("GET").arg(self.key("snapshot", config)).query_async(&mut self.conn.clone()).await?)
    }

    async fn applied(&self, config: &str) -> Result<HashSet<String>, StoreError> {
        Ok(redis::cmd("SMEMBERS").arg(self.key("applied", config)).query_async(&mut self.conn.clone()).await?)
    }

    async fn mark_applied(&self, config: &str, op: &str) -> Result<(), StoreError> {
        redis::cmd("SADD").arg(self.key("applied", config)).arg(op).query_async::<()>(&mut self.conn.clone()).await?;
        Ok(())
    }

    async fn finish_run(&self, config: &str, snapshot: &str) -> Result<(), StoreError> {
        redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(self.key("snapshot", config))
            .arg(snapshot)
            .ignore()
            .cmd("DEL")
            .arg(self.key("applied", config))
            .ignore()
            .query_async::<()>(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    async fn lease(&self, name: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        let taken: i64 = redis::Script::new(LEASE_SCRIPT)
            .key(self.key("lease", name))
            .arg(owner)
            .arg(ttl_ms(ttl))
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(taken == 1)
    }

    async fn release(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        redis::Script::new(RELEASE_SCRIPT)
            .key(self.key("lease", name))
            .arg(owner)
            .invoke_async::<i64>(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    async fn claim_once(&self, name: &str, ttl: Duration) -> Result<bool, StoreError> {
        let set: Option<String> = redis::cmd("SET")
            .arg(self.key("lease", name))
            .arg("")
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms(ttl))
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(set.is_some())
    }
}

//! The tenant registry: which tenants have their own queues, so that every worker consumes them.
//! A SQLite table or a Redis set per namespace; entries never expire (a tenant's queue outlives
//! any retention). Also the owners of accepted jobs of tenants other than `default` (kept as long
//! as the accepted marks), which scope the API's reads.

use rusqlite::{Connection, params};

use crate::model::StoreError;
use crate::redis_conn::RedisConnection;

/// The registry's table, created with the store's.
pub(crate) const SQLITE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS yizhan_tenants (
    namespace TEXT NOT NULL,
    tenant    TEXT NOT NULL,
    PRIMARY KEY (namespace, tenant)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS yizhan_owners (
    namespace   TEXT    NOT NULL,
    job_id      TEXT    NOT NULL,
    tenant      TEXT    NOT NULL,
    accepted_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, job_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS yizhan_owners_at ON yizhan_owners (namespace, accepted_at);
";

pub(crate) fn sqlite_register(conn: &Connection, namespace: &str, tenants: &[String]) -> Result<(), StoreError> {
    let mut insert = conn.prepare_cached("INSERT OR IGNORE INTO yizhan_tenants (namespace, tenant) VALUES (?1, ?2)")?;
    for tenant in tenants {
        insert.execute(params![namespace, tenant])?;
    }
    Ok(())
}

pub(crate) fn sqlite_list(conn: &Connection, namespace: &str) -> Result<Vec<String>, StoreError> {
    let mut select = conn.prepare_cached("SELECT tenant FROM yizhan_tenants WHERE namespace = ?1 ORDER BY tenant")?;
    let tenants = select.query_map(params![namespace], |row| row.get(0))?.collect::<Result<_, _>>()?;
    Ok(tenants)
}

fn redis_key(namespace: &str) -> String {
    format!("{namespace}:tenants")
}

pub(crate) async fn redis_register(
    conn: &RedisConnection,
    namespace: &str,
    tenants: &[String],
) -> Result<(), StoreError> {
    if tenants.is_empty() {
        return Ok(());
    }
    redis::cmd("SADD").arg(redis_key(namespace)).arg(tenants).query_async::<()>(&mut conn.clone()).await?;
    Ok(())
}

pub(crate) async fn redis_list(conn: &RedisConnection, namespace: &str) -> Result<Vec<String>, StoreError> {
    let mut tenants: Vec<String> =
        redis::cmd("SMEMBERS").arg(redis_key(namespace)).query_async(&mut conn.clone()).await?;
    tenants.sort();
    Ok(tenants)
}

pub(crate) fn sqlite_own(
    conn: &Connection,
    namespace: &str,
    tenant: &str,
    job_ids: &[uuid::Uuid],
    now: i64,
) -> Result<(), StoreError> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO yizhan_owners (namespace, job_id, tenant, accepted_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (namespace, job_id) DO UPDATE SET tenant = excluded.tenant, accepted_at = excluded.accepted_at",
    )?;
    for job_id in job_ids {
        insert.execute(params![namespace, job_id.to_string(), tenant, now])?;
    }
    Ok(())
}

pub(crate) fn sqlite_owner(
    conn: &Connection,
    namespace: &str,
    job_id: uuid::Uuid,
) -> Result<Option<String>, StoreError> {
    use rusqlite::OptionalExtension;
    let owner = conn
        .prepare_cached("SELECT tenant FROM yizhan_owners WHERE namespace = ?1 AND job_id = ?2")?
        .query_row(params![namespace, job_id.to_string()], |row| row.get(0))
        .optional()?;
    Ok(owner)
}

pub(crate) fn sqlite_prune_owners(conn: &Connection, namespace: &str, cutoff: i64) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM yizhan_owners WHERE namespace = ?1 AND accepted_at < ?2")?
        .execute(params![namespace, cutoff])?;
    Ok(())
}

/// The Redis key of a job's owner: `{namespace}:owner:{job id}`.
pub(crate) fn redis_owner_key(namespace: &str, job_id: uuid::Uuid) -> String {
    format!("{namespace}:owner:{job_id}")
}

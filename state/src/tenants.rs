//! The tenant registry: which tenants have their own queues, so that every worker consumes them.
//! A SQLite table or a Redis set per namespace; entries never expire (a tenant's queue outlives
//! any retention).

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

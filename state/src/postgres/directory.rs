//! Directory sync's snapshots, applied marks and leases in PostgreSQL: the SQLite tables, one
//! statement (or one transaction) per call.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use deadpool_postgres::{GenericClient, Pool};

use super::pool::{connect, in_transaction};
use crate::directory::{DirectoryStore, ttl_ms};
use crate::model::{StoreError, now_millis};

/// A run writes a few hundred rows: two connections.
const POOL_SIZE: usize = 2;

/// The directory store of a PostgreSQL state store.
pub struct PostgresDirectory {
    pool: Pool,
    namespace: String,
}

impl fmt::Debug for PostgresDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresDirectory").field("namespace", &self.namespace).finish_non_exhaustive()
    }
}

impl PostgresDirectory {
    /// Connects to the database at `url` (migrating its schema).
    pub async fn open(url: &str, namespace: &str) -> Result<Self, StoreError> {
        Ok(Self { pool: connect(url, POOL_SIZE).await?, namespace: namespace.to_string() })
    }
}

#[async_trait::async_trait]
impl DirectoryStore for PostgresDirectory {
    async fn snapshot(&self, config: &str) -> Result<Option<String>, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT snapshot FROM yizhan_directory_snapshots WHERE namespace = $1 AND config = $2",
                &[&self.namespace, &config],
            )
            .await?;
        Ok(row.map(|row| row.get(0)))
    }

    async fn applied(&self, config: &str) -> Result<HashSet<String>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT op FROM yizhan_directory_applied WHERE namespace = $1 AND config = $2",
                &[&self.namespace, &config],
            )
            .await?;
        Ok(rows.into_iter().map(|row| row.get(0)).collect())
    }

    async fn mark_applied(&self, config: &str, op: &str) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO yizhan_directory_applied (namespace, config, op) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
                &[&self.namespace, &config, &op],
            )
            .await?;
        Ok(())
    }

    async fn finish_run(&self, config: &str, snapshot: &str) -> Result<(), StoreError> {
        let ns = self.namespace.as_str();
        in_transaction!(self.pool, |tx| {
            tx.execute(
                "INSERT INTO yizhan_directory_snapshots (namespace, config, snapshot) VALUES ($1, $2, $3)
                 ON CONFLICT (namespace, config) DO UPDATE SET snapshot = excluded.snapshot",
                &[&ns, &config, &snapshot],
            )
            .await?;
            tx.execute("DELETE FROM yizhan_directory_applied WHERE namespace = $1 AND config = $2", &[&ns, &config])
                .await?;
            Ok(())
        })
    }

    async fn lease(&self, name: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        let now = now_millis();
        let expires_at = now.saturating_add(ttl_ms(ttl));
        let client = self.pool.get().await?;
        let changed = client
            .execute(
                "INSERT INTO yizhan_directory_leases (namespace, name, owner, expires_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (namespace, name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
                 WHERE yizhan_directory_leases.owner = excluded.owner OR yizhan_directory_leases.expires_at <= $5",
                &[&self.namespace, &name, &owner, &expires_at, &now],
            )
            .await?;
        Ok(changed == 1)
    }

    async fn release(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "DELETE FROM yizhan_directory_leases WHERE namespace = $1 AND name = $2 AND owner = $3",
                &[&self.namespace, &name, &owner],
            )
            .await?;
        Ok(())
    }

    async fn claim_once(&self, name: &str, ttl: Duration) -> Result<bool, StoreError> {
        let now = now_millis();
        let expires_at = now.saturating_add(ttl_ms(ttl));
        let client = self.pool.get().await?;
        // A claim is a lease nobody renews: the owner is the claim itself.
        let changed = client
            .execute(
                "INSERT INTO yizhan_directory_leases (namespace, name, owner, expires_at) VALUES ($1, $2, '', $3)
                 ON CONFLICT (namespace, name) DO UPDATE SET expires_at = excluded.expires_at
                 WHERE yizhan_directory_leases.expires_at <= $4",
                &[&self.namespace, &name, &expires_at, &now],
            )
            .await?;
        Ok(changed == 1)
    }
}

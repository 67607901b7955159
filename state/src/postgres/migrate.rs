//! Schema migrations: the files of `state/migrations/postgres/`, compiled in, applied in order at
//! open. All of them run in one transaction that first takes a transaction-scoped advisory lock,
//! so that workers starting together apply each migration exactly once (the others wait, then find
//! it recorded), and a failed migration leaves the schema as it was. `yizhan_schema_version`
//! records each applied version.

use deadpool_postgres::GenericClient;
use tracing::{info, warn};

use crate::model::StoreError;

/// Every migration, in order: (version, name, SQL). A new one is appended, never edited.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "init", include_str!("../../migrations/postgres/001_init.sql")),
    (2, "owners", include_str!("../../migrations/postgres/002_owners.sql")),
];

/// The advisory lock key of the migrations ("yizhan" in ASCII), the same in every process.
const MIGRATION_LOCK: i64 = 0x7969_7a68_616e;

/// Brings the database's schema up to the newest migration this build knows.
pub(super) async fn migrate(client: &mut deadpool_postgres::Client) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS yizhan_schema_version (
             version    INTEGER     PRIMARY KEY,
             name       TEXT        NOT NULL,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let current: i32 = tx.query_one("SELECT COALESCE(MAX(version), 0) FROM yizhan_schema_version", &[]).await?.get(0);
    let newest = MIGRATIONS.last().map_or(0, |(version, _, _)| *version);
    if current > newest {
        // Written by a newer build: its migrations only add, so this one can still work with it.
        warn!(current, newest, "the database schema is newer than this build's");
    }
    for (version, name, sql) in MIGRATIONS.iter().filter(|(version, _, _)| *version > current) {
        tx.batch_execute(sql).await?;
        tx.execute("INSERT INTO yizhan_schema_version (version, name) VALUES ($1, $2)", &[version, name]).await?;
        info!(version, name, "applied a state store migration");
    }
    tx.commit().await?;
    Ok(())
}

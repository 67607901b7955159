//! The PostgreSQL backend (`postgres://` or `postgresql://`): the records that decide "never send
//! twice" in a database the operator already runs, backs up and replicates.
//!
//! Why `tokio-postgres` (with a `deadpool-postgres` pool) and not `sqlx`: it is the lighter client
//! (no macros that need a database at build time, no query builder), its prepared statements are
//! cached per connection, and requests issued together on one connection are pipelined (sent
//! before the first answer comes back), which is how a claim's first three statements cost one
//! round trip.
//!
//! Semantics are the SQLite backend's, table for table (`migrations/postgres/`): every operation
//! runs in one READ COMMITTED transaction, and whatever decides between workers is serialised on
//! the key's row: a claim locks the record with `SELECT ... FOR UPDATE` (a new key is inserted with
//! `ON CONFLICT DO NOTHING`, and the loser of that race reads the winner's row), the other writes
//! are single conditional statements (`UPDATE ... WHERE`, `INSERT ... ON CONFLICT ... WHERE`).
//! Campaign counters move in the same transaction, by trigger. A transaction that PostgreSQL
//! aborts as a deadlock victim or serialization failure is run again (it changed nothing).
//!
//! Batches: what the SQLite backend writes for many ids at once (renewals, accepted ids, tenants,
//! campaign controls, parking releases) is one statement over an array here; claims and finishes
//! made at the same time share a transaction (see [`batch`]).

mod batch;
mod directory;
mod migrate;
mod parking;
mod pool;
mod records;
mod scratch;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use deadpool_postgres::{GenericClient, Pool};
use uuid::Uuid;

pub use directory::PostgresDirectory;
pub use parking::PostgresParking;
pub use pool::is_postgres_url;
use pool::{connect, in_transaction};
use records::count_deliveries;
pub use scratch::{ScratchDatabase, TEST_POSTGRES_URL};

use crate::model::{
    CampaignControl, CampaignRecord, CampaignStatus, CancelOutcome, Claim, ClaimRequest, Delivery, DeliveryDone,
    DeliveryState, EARLY_RECEIPT_TTL, Finish, JobStatus, Millis, PendingReceipt, RECORD_STATUSES, Receipt,
    ReceiptsRecorded, StateStore, StoreError, is_waiting, now_millis, parse_json,
};
use crate::sqlite::{STORED_COUNTS, duration_ms, parse_campaign_id, parse_control, parse_delivery, tombstone_status};

/// Connections of a store's pool: enough for a worker's concurrent claims and finishes (each holds
/// one for a few round trips) without crowding the server's `max_connections` across a fleet.
const POOL_SIZE: usize = 16;
/// The PostgreSQL state store; several deployments may share one database (rows are keyed by
/// namespace).
pub struct PostgresStore {
    pool: Pool,
    namespace: String,
    retention_ms: i64,
    /// Started on first use, on the runtime that uses the store.
    batcher: OnceLock<batch::Batcher>,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore").field("namespace", &self.namespace).finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user[:password]@host[:port]/db`, libpq's
    /// URL form; plain TCP, no TLS) and migrates its schema.
    pub async fn open(url: &str, namespace: &str, retention: Duration) -> Result<Self, StoreError> {
        let pool = connect(url, POOL_SIZE).await?;
        Ok(Self {
            pool,
            namespace: namespace.to_string(),
            retention_ms: duration_ms(retention),
            batcher: OnceLock::new(),
        })
    }

    fn batcher(&self) -> &batch::Batcher {
        self.batcher.get_or_init(|| batch::Batcher::start(self.pool.clone(), Arc::from(self.namespace.as_str())))
    }
}

async fn status(client: &impl GenericClient, ns: &str, job_id: Uuid) -> Result<Option<JobStatus>, StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT k.key, k.job_id, k.state, k.attempt, k.result, k.error, k.error_kind,
                    k.next_attempt_at, k.campaign, k.delivery
             FROM yizhan_jobs j
             JOIN yizhan_keys k ON k.namespace = j.namespace AND k.key = j.key
             WHERE j.namespace = $1 AND j.job_id = $2",
        )
        .await?;
    let id = job_id.to_string();
    let Some(row) = client.query_opt(&statement, &[&ns, &id]).await? else {
        let tombstone =
            client.prepare_cached("SELECT 1 FROM yizhan_tombstones WHERE namespace = $1 AND job_id = $2").await?;
        let found = client.query_opt(&tombstone, &[&ns, &id]).await?.is_some();
        return Ok(found.then(|| tombstone_status(job_id)));
    };
    let key: String = row.get(0);
    let (owner, state, attempt): (String, String, i64) = (row.get(1), row.get(2), row.get(3));
    let corrupt = |reason: String| StoreError::Corrupt { key: key.clone(), reason };
    let owner_job = Uuid::parse_str(&owner).map_err(|e| corrupt(format!("job id {owner:?}: {e}")))?;
    let attempts = u32::try_from(attempt).map_err(|_| corrupt(format!("attempt {attempt} out of range")))?;
    if !RECORD_STATUSES.contains(&state.as_str()) {
        return Err(corrupt(format!("unknown state {state:?}")));
    }
    let campaign: Option<String> = row.get(8);
    let campaign = campaign
        .as_deref()
        .map(|c| Uuid::parse_str(c).map_err(|e| corrupt(format!("campaign {c:?}: {e}"))))
        .transpose()?;
    let (result, delivery): (Option<String>, Option<String>) = (row.get(4), row.get(9));
    Ok(Some(JobStatus {
        id: job_id,
        status: state,
        attempts,
        result: parse_json(&key, "result", result.as_deref())?,
        error: row.get(5),
        error_kind: row.get(6),
        next_attempt_at: row.get(7),
        duplicate_of: (owner_job != job_id).then_some(owner_job),
        campaign,
        delivery: parse_delivery(&key, delivery.as_deref())?,
    }))
}

async fn cancel_job(tx: &impl GenericClient, ns: &str, job_id: Uuid, now: Millis) -> Result<CancelOutcome, StoreError> {
    let id = job_id.to_string();
    let select = tx
        .prepare_cached(
            "SELECT k.key, k.job_id, k.state FROM yizhan_jobs j
             JOIN yizhan_keys k ON k.namespace = j.namespace AND k.key = j.key
             WHERE j.namespace = $1 AND j.job_id = $2
             FOR UPDATE OF k",
        )
        .await?;
    if let Some(row) = tx.query_opt(&select, &[&ns, &id]).await? {
        let (key, owner, state): (String, String, String) = (row.get(0), row.get(1), row.get(2));
        if owner == id && is_waiting(&state) {
            let cancel = tx
                .prepare_cached(
                    "UPDATE yizhan_keys SET state = 'cancelled', next_attempt_at = NULL, error = NULL,
                        owner = NULL, lease_until = NULL, updated_at = $3
                     WHERE namespace = $1 AND key = $2",
                )
                .await?;
            tx.execute(&cancel, &[&ns, &key, &now]).await?;
            return Ok(CancelOutcome::Cancelled);
        }
        if owner == id && state == "cancelled" {
            return Ok(CancelOutcome::Cancelled);
        }
        let status = status(tx, ns, job_id).await?.ok_or_else(|| StoreError::Task("the record vanished".into()))?;
        return Ok(CancelOutcome::Started(Box::new(status)));
    }
    let accepted = tx.prepare_cached("SELECT 1 FROM yizhan_accepted WHERE namespace = $1 AND job_id = $2").await?;
    if tx.query_opt(&accepted, &[&ns, &id]).await?.is_none() {
        return Ok(CancelOutcome::Unknown);
    }
    let tombstone = tx
        .prepare_cached(
            "INSERT INTO yizhan_tombstones (namespace, job_id, at) VALUES ($1, $2, $3)
             ON CONFLICT (namespace, job_id) DO UPDATE SET at = excluded.at",
        )
        .await?;
    tx.execute(&tombstone, &[&ns, &id, &now]).await?;
    Ok(CancelOutcome::Cancelled)
}

async fn create_campaign(
    tx: &impl GenericClient,
    ns: &str,
    record: &CampaignRecord,
    now: Millis,
) -> Result<(CampaignRecord, u64), StoreError> {
    let insert = tx
        .prepare_cached(
            "INSERT INTO yizhan_campaigns (namespace, id, tenant, key, head, send_at, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        )
        .await?;
    let (id, head) = (record.id.to_string(), record.head.to_string());
    tx.execute(&insert, &[&ns, &id, &record.tenant, &record.key, &head, &record.send_at, &record.created_at, &now])
        .await?;
    // Counters of a campaign created anew (an existing one keeps its own).
    let counters = tx
        .prepare_cached(
            "INSERT INTO yizhan_campaign_counts (namespace, id, updated_at)
             SELECT namespace, id, updated_at FROM yizhan_campaigns WHERE namespace = $1 AND id = $2
             ON CONFLICT DO NOTHING",
        )
        .await?;
    tx.execute(&counters, &[&ns, &id]).await?;
    let select =
        tx.prepare_cached("SELECT id FROM yizhan_campaigns WHERE namespace = $1 AND tenant = $2 AND key = $3").await?;
    let stored: String = tx
        .query_opt(&select, &[&ns, &record.tenant, &record.key])
        .await?
        .ok_or_else(|| StoreError::Corrupt {
            key: format!("campaign {}", record.id),
            reason: "the campaign id is taken by another (tenant, key)".to_string(),
        })?
        .get(0);
    let id = parse_campaign_id(&stored)?;
    let (stored, _, total, _) =
        read_campaign(tx, ns, id).await?.ok_or_else(|| StoreError::Task("the campaign vanished".into()))?;
    Ok((stored, total))
}

/// A campaign row: the record, its control, total and stored counters.
type CampaignRow = (CampaignRecord, CampaignControl, u64, BTreeMap<String, i64>);

async fn read_campaign(client: &impl GenericClient, ns: &str, id: Uuid) -> Result<Option<CampaignRow>, StoreError> {
    let counters: Vec<String> =
        RECORD_STATUSES.iter().chain(&STORED_COUNTS).map(|name| format!("n.n_{name}")).collect();
    let sql = format!(
        "SELECT c.tenant, c.key, c.head, c.send_at, c.created_at, c.total, c.control, {}
         FROM yizhan_campaigns c JOIN yizhan_campaign_counts n ON n.namespace = c.namespace AND n.id = c.id
         WHERE c.namespace = $1 AND c.id = $2",
        counters.join(", ")
    );
    let statement = client.prepare_cached(&sql).await?;
    let Some(row) = client.query_opt(&statement, &[&ns, &id.to_string()]).await? else {
        return Ok(None);
    };
    let mut counts = BTreeMap::new();
    for (i, name) in RECORD_STATUSES.iter().chain(&STORED_COUNTS).enumerate() {
        counts.insert(name.to_string(), row.get::<_, i64>(7 + i));
    }
    let head: String = row.get(2);
    let head = parse_json(&format!("campaign {id}"), "head", Some(&head))?.unwrap_or_default();
    let record =
        CampaignRecord { id, tenant: row.get(0), key: row.get(1), head, send_at: row.get(3), created_at: row.get(4) };
    let (total, control): (i64, String) = (row.get(5), row.get(6));
    Ok(Some((record, parse_control(id, &control)?, total.max(0).unsigned_abs(), counts)))
}

async fn campaign(
    client: &impl GenericClient,
    ns: &str,
    id: Uuid,
    now: Millis,
) -> Result<Option<(CampaignRecord, CampaignStatus)>, StoreError> {
    Ok(read_campaign(client, ns, id).await?.map(|(record, control, total, counts)| {
        let status = CampaignStatus::derive(&record, control, total, &counts, now);
        (record, status)
    }))
}

async fn record_receipts(
    tx: &impl GenericClient,
    ns: &str,
    receipts: &[Receipt],
    now: Millis,
) -> Result<ReceiptsRecorded, StoreError> {
    let (find_sid, keep_early, find_key, set_delivery, stop_pull) = tokio::try_join!(
        tx.prepare_cached("SELECT key, recipient, pull FROM yizhan_sids WHERE namespace = $1 AND sid = $2"),
        tx.prepare_cached(
            "INSERT INTO yizhan_early_receipts (namespace, sid, state, code, at, stored_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        ),
        tx.prepare_cached(
            "SELECT job_id, delivery, notify, campaign FROM yizhan_keys WHERE namespace = $1 AND key = $2 FOR UPDATE",
        ),
        tx.prepare_cached(
            "UPDATE yizhan_keys SET delivery = $3, updated_at = GREATEST(updated_at, $4)
             WHERE namespace = $1 AND key = $2",
        ),
        tx.prepare_cached("UPDATE yizhan_sids SET pull = NULL, due = NULL WHERE namespace = $1 AND sid = $2"),
    )?;
    let mut recorded = ReceiptsRecorded::default();
    let mut done: Vec<(String, String)> = Vec::new();
    for receipt in receipts.iter().filter(|r| r.state != DeliveryState::Pending) {
        let Some(indexed) = tx.query_opt(&find_sid, &[&ns, &receipt.sid]).await? else {
            // The first receipt of an unknown message waits for its success.
            let state = receipt.state.as_str();
            recorded.early +=
                tx.execute(&keep_early, &[&ns, &receipt.sid, &state, &receipt.code, &receipt.at, &now]).await?;
            continue;
        };
        let (key, recipient, pull): (String, String, Option<String>) = (indexed.get(0), indexed.get(1), indexed.get(2));
        let Some(record) = tx.query_opt(&find_key, &[&ns, &key]).await? else {
            continue;
        };
        let (job_id, delivery, notify, campaign): (String, Option<String>, Option<String>, Option<String>) =
            (record.get(0), record.get(1), record.get(2), record.get(3));
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
        tx.execute(&set_delivery, &[&ns, &key, &json, &now]).await?;
        if pull.is_some() {
            tx.execute(&stop_pull, &[&ns, &receipt.sid]).await?;
        }
        let delivered = i64::from(receipt.state == DeliveryState::Delivered);
        count_deliveries(tx, ns, campaign.as_deref(), delivered, 1 - delivered, now).await?;
        if let Some(callback) = notify
            && delivery.values().all(|d| d.state != DeliveryState::Pending)
        {
            done.push((job_id, callback));
        }
    }
    for (job_id, callback) in done {
        let id = Uuid::parse_str(&job_id)
            .map_err(|e| StoreError::Corrupt { key: job_id.clone(), reason: format!("job id: {e}") })?;
        if let Some(status) = status(tx, ns, id).await? {
            recorded.done.push(DeliveryDone { status, callback });
        }
    }
    Ok(recorded)
}

async fn prune(tx: &impl GenericClient, ns: &str, now: Millis, retention_ms: i64) -> Result<u64, StoreError> {
    let cutoff = now.saturating_sub(retention_ms);
    // A waiting record is kept until the retention after it is due (send_at up to 30 days).
    let pruned = tx
        .execute(
            "DELETE FROM yizhan_keys WHERE namespace = $1 AND updated_at < $2
               AND (next_attempt_at IS NULL OR next_attempt_at < $2)",
            &[&ns, &cutoff],
        )
        .await?;
    for sql in [
        "DELETE FROM yizhan_jobs j WHERE j.namespace = $1 AND j.updated_at < $2
           AND NOT EXISTS (SELECT 1 FROM yizhan_keys k WHERE k.namespace = $1 AND k.key = j.key)",
        "DELETE FROM yizhan_accepted WHERE namespace = $1 AND accepted_at < $2",
        "DELETE FROM yizhan_owners WHERE namespace = $1 AND accepted_at < $2",
        "DELETE FROM yizhan_tombstones WHERE namespace = $1 AND at < $2",
        "DELETE FROM yizhan_counted WHERE namespace = $1 AND at < $2",
        "DELETE FROM yizhan_sids WHERE namespace = $1 AND at < $2",
        "DELETE FROM yizhan_leases WHERE namespace = $1 AND expires_at < $2",
        // Campaigns are few: no index on their times, a scan here.
        "DELETE FROM yizhan_campaigns c WHERE c.namespace = $1 AND c.updated_at < $2
           AND (c.send_at IS NULL OR c.send_at < $2)
           AND NOT EXISTS (SELECT 1 FROM yizhan_campaign_counts n
                           WHERE n.namespace = $1 AND n.id = c.id AND n.updated_at >= $2)",
    ] {
        tx.execute(sql, &[&ns, &cutoff]).await?;
    }
    let early_cutoff = now.saturating_sub(duration_ms(EARLY_RECEIPT_TTL));
    tx.execute("DELETE FROM yizhan_early_receipts WHERE namespace = $1 AND stored_at < $2", &[&ns, &early_cutoff])
        .await?;
    tx.execute(
        "DELETE FROM yizhan_campaign_counts n WHERE n.namespace = $1
           AND NOT EXISTS (SELECT 1 FROM yizhan_campaigns c WHERE c.namespace = $1 AND c.id = n.id)",
        &[&ns],
    )
    .await?;
    Ok(pruned)
}

#[async_trait::async_trait]
impl StateStore for PostgresStore {
    async fn claim(&self, request: &ClaimRequest) -> Result<Claim, StoreError> {
        self.batcher().claim(request.clone()).await
    }

    async fn renew(&self, owner: &str, keys: &[String], now: Millis, lease: Duration) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let lease_until = now.saturating_add(duration_ms(lease));
        // Sorted, so that two renewals lock shared rows in one order.
        let keys: Vec<&String> = keys.iter().collect::<BTreeSet<_>>().into_iter().collect();
        let client = self.pool.get().await?;
        let statement = client
            .prepare_cached(
                "UPDATE yizhan_keys SET lease_until = $4, updated_at = $5
                 WHERE namespace = $1 AND key = ANY($2) AND owner = $3 AND state = 'running'",
            )
            .await?;
        client.execute(&statement, &[&self.namespace, &keys, &owner, &lease_until, &now]).await?;
        Ok(())
    }

    async fn finish(&self, key: &str, _owner: &str, finish: &Finish, now: Millis) -> Result<(), StoreError> {
        self.batcher().finish(key.to_string(), finish.clone(), now).await
    }

    async fn retry_published(&self, key: &str, attempt: u32) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        let statement = client
            .prepare_cached(
                "UPDATE yizhan_keys SET retry_published = TRUE
                 WHERE namespace = $1 AND key = $2 AND state IN ('retrying', 'scheduled', 'deferred')
                   AND attempt = $3",
            )
            .await?;
        client.execute(&statement, &[&self.namespace, &key, &i64::from(attempt)]).await?;
        Ok(())
    }

    async fn status(&self, job_id: Uuid) -> Result<Option<JobStatus>, StoreError> {
        let client = self.pool.get().await?;
        status(&client, &self.namespace, job_id).await
    }

    async fn accept(&self, job_ids: &[Uuid], now: Millis) -> Result<(), StoreError> {
        if job_ids.is_empty() {
            return Ok(());
        }
        // Distinct and sorted: one upsert may not touch a row twice, and two batches lock in one order.
        let ids: Vec<String> = job_ids.iter().collect::<BTreeSet<_>>().into_iter().map(Uuid::to_string).collect();
        let client = self.pool.get().await?;
        let statement = client
            .prepare_cached(
                "INSERT INTO yizhan_accepted (namespace, job_id, accepted_at)
                 SELECT $1, id, $3 FROM unnest($2::text[]) AS id
                 ON CONFLICT (namespace, job_id) DO UPDATE SET accepted_at = excluded.accepted_at",
            )
            .await?;
        client.execute(&statement, &[&self.namespace, &ids, &now]).await?;
        Ok(())
    }

    async fn accept_owned(&self, tenant: &str, job_ids: &[Uuid], now: Millis) -> Result<(), StoreError> {
        if job_ids.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = job_ids.iter().collect::<BTreeSet<_>>().into_iter().map(Uuid::to_string).collect();
        let client = self.pool.get().await?;
        // One statement, so one commit: the owners and the accepted marks.
        let statement = client
            .prepare_cached(
                "WITH owned AS (
                     INSERT INTO yizhan_owners (namespace, job_id, tenant, accepted_at)
                     SELECT $1, id, $4, $3 FROM unnest($2::text[]) AS id
                     ON CONFLICT (namespace, job_id) DO UPDATE
                     SET tenant = excluded.tenant, accepted_at = excluded.accepted_at)
                 INSERT INTO yizhan_accepted (namespace, job_id, accepted_at)
                 SELECT $1, id, $3 FROM unnest($2::text[]) AS id
                 ON CONFLICT (namespace, job_id) DO UPDATE SET accepted_at = excluded.accepted_at",
            )
            .await?;
        client.execute(&statement, &[&self.namespace, &ids, &now, &tenant]).await?;
        Ok(())
    }

    async fn owner(&self, job_id: Uuid) -> Result<Option<String>, StoreError> {
        let client = self.pool.get().await?;
        let statement =
            client.prepare_cached("SELECT tenant FROM yizhan_owners WHERE namespace = $1 AND job_id = $2").await?;
        Ok(client.query_opt(&statement, &[&self.namespace, &job_id.to_string()]).await?.map(|row| row.get(0)))
    }

    async fn campaigns(&self, before: Option<Uuid>, limit: usize) -> Result<Vec<CampaignStatus>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let (ns, now) = (self.namespace.as_str(), now_millis());
        // The primary key (namespace, id) read backwards: a page costs `limit` rows. No id sorts
        // above "~" (UUIDs are hex and dashes), so no `before` reads from the newest.
        let before = before.map_or_else(|| "~".to_string(), |id| id.to_string());
        in_transaction!(self.pool, |tx| {
            let statement = tx
                .prepare_cached(
                    "SELECT id FROM yizhan_campaigns WHERE namespace = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
                )
                .await?;
            let mut list = Vec::new();
            for row in tx.query(&statement, &[&ns, &before, &limit]).await? {
                let id: String = row.get(0);
                if let Some((_, status)) = campaign(&tx, ns, parse_campaign_id(&id)?, now).await? {
                    list.push(status);
                }
            }
            Ok(list)
        })
    }

    async fn accepted(&self, job_id: Uuid) -> Result<bool, StoreError> {
        let client = self.pool.get().await?;
        let statement =
            client.prepare_cached("SELECT 1 FROM yizhan_accepted WHERE namespace = $1 AND job_id = $2").await?;
        Ok(client.query_opt(&statement, &[&self.namespace, &job_id.to_string()]).await?.is_some())
    }

    async fn prune(&self, now: Millis) -> Result<u64, StoreError> {
        let (ns, retention_ms) = (self.namespace.as_str(), self.retention_ms);
        in_transaction!(self.pool, |tx| prune(&tx, ns, now, retention_ms).await)
    }

    async fn cancel_job(&self, job_id: Uuid, now: Millis) -> Result<CancelOutcome, StoreError> {
        let ns = self.namespace.as_str();
        in_transaction!(self.pool, |tx| cancel_job(&tx, ns, job_id, now).await)
    }

    async fn create_campaign(&self, record: &CampaignRecord) -> Result<(CampaignRecord, u64), StoreError> {
        let (ns, now) = (self.namespace.as_str(), now_millis());
        in_transaction!(self.pool, |tx| create_campaign(&tx, ns, record, now).await)
    }

    async fn add_to_campaign(&self, id: Uuid, jobs: u64) -> Result<bool, StoreError> {
        let jobs = i64::try_from(jobs).unwrap_or(i64::MAX);
        let client = self.pool.get().await?;
        let statement = client
            .prepare_cached(
                "UPDATE yizhan_campaigns SET total = total + $3, updated_at = GREATEST(updated_at, $4)
                 WHERE namespace = $1 AND id = $2",
            )
            .await?;
        let changed = client.execute(&statement, &[&self.namespace, &id.to_string(), &jobs, &now_millis()]).await?;
        Ok(changed > 0)
    }

    async fn campaign(&self, id: Uuid) -> Result<Option<(CampaignRecord, CampaignStatus)>, StoreError> {
        let client = self.pool.get().await?;
        campaign(&client, &self.namespace, id, now_millis()).await
    }

    async fn control_campaign(&self, id: Uuid, control: CampaignControl) -> Result<Option<CampaignStatus>, StoreError> {
        let (ns, now) = (self.namespace.as_str(), now_millis());
        in_transaction!(self.pool, |tx| {
            let statement = tx
                .prepare_cached(
                    "UPDATE yizhan_campaigns SET control = $3, updated_at = GREATEST(updated_at, $4)
                     WHERE namespace = $1 AND id = $2 AND control <> 'cancelled'",
                )
                .await?;
            tx.execute(&statement, &[&ns, &id.to_string(), &control.as_str(), &now]).await?;
            Ok(campaign(&tx, ns, id, now).await?.map(|(_, status)| status))
        })
    }

    async fn campaign_controls(&self, ids: &[Uuid]) -> Result<Vec<(Uuid, CampaignControl)>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let texts: Vec<String> = ids.iter().map(Uuid::to_string).collect();
        let client = self.pool.get().await?;
        let statement = client
            .prepare_cached("SELECT id, control FROM yizhan_campaigns WHERE namespace = $1 AND id = ANY($2)")
            .await?;
        let found: BTreeMap<String, String> = client
            .query(&statement, &[&self.namespace, &texts])
            .await?
            .into_iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        // In the order asked.
        let mut controls = Vec::with_capacity(found.len());
        for (id, text) in ids.iter().zip(&texts) {
            if let Some(control) = found.get(text) {
                controls.push((*id, parse_control(*id, control)?));
            }
        }
        Ok(controls)
    }

    async fn register_tenants(&self, tenants: &[String]) -> Result<(), StoreError> {
        if tenants.is_empty() {
            return Ok(());
        }
        let client = self.pool.get().await?;
        let statement = client
            .prepare_cached(
                "INSERT INTO yizhan_tenants (namespace, tenant) SELECT $1, t FROM unnest($2::text[]) AS t
                 ON CONFLICT DO NOTHING",
            )
            .await?;
        client.execute(&statement, &[&self.namespace, &tenants]).await?;
        Ok(())
    }

    async fn tenants(&self) -> Result<Vec<String>, StoreError> {
        let client = self.pool.get().await?;
        let statement =
            client.prepare_cached("SELECT tenant FROM yizhan_tenants WHERE namespace = $1 ORDER BY tenant").await?;
        Ok(client.query(&statement, &[&self.namespace]).await?.into_iter().map(|row| row.get(0)).collect())
    }

    async fn record_receipts(&self, receipts: &[Receipt], now: Millis) -> Result<ReceiptsRecorded, StoreError> {
        if receipts.is_empty() {
            return Ok(ReceiptsRecorded::default());
        }
        let ns = self.namespace.as_str();
        in_transaction!(self.pool, |tx| record_receipts(&tx, ns, receipts, now).await)
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
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let client = self.pool.get().await?;
        // Locked rows are another taker's: skipped, not waited for. The CTE is evaluated once (a
        // LIMIT in a subquery of an UPDATE may be evaluated again, taking more than the limit).
        let statement = client
            .prepare_cached(
                "WITH taken AS MATERIALIZED (
                     SELECT sid, due FROM yizhan_sids WHERE namespace = $1 AND pull = $2 AND due <= $3
                     ORDER BY due LIMIT $5 FOR UPDATE SKIP LOCKED)
                 UPDATE yizhan_sids s SET due = $4
                 FROM taken WHERE s.namespace = $1 AND s.sid = taken.sid
                 RETURNING s.sid, s.recipient, s.at, taken.due",
            )
            .await?;
        let mut rows: Vec<(i64, PendingReceipt)> = client
            .query(&statement, &[&self.namespace, &queue, &now, &next_due, &limit])
            .await?
            .into_iter()
            .map(|row| (row.get(3), PendingReceipt { sid: row.get(0), recipient: row.get(1), sent_at: row.get(2) }))
            .collect();
        rows.sort_by_key(|(due, _)| *due);
        Ok(rows.into_iter().map(|(_, pending)| pending).collect())
    }

    async fn lease(&self, name: &str, owner: &str, now: Millis, ttl: Duration) -> Result<bool, StoreError> {
        let until = now.saturating_add(duration_ms(ttl));
        let client = self.pool.get().await?;
        let statement = client
            .prepare_cached(
                "INSERT INTO yizhan_leases (namespace, name, owner, expires_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (namespace, name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
                 WHERE yizhan_leases.owner = excluded.owner OR yizhan_leases.expires_at <= $5",
            )
            .await?;
        Ok(client.execute(&statement, &[&self.namespace, &name, &owner, &until, &now]).await? > 0)
    }
}

//! The parking lot in PostgreSQL: the SQLite layout (`yizhan_parked`, `yizhan_parked_held`), with
//! takes that skip rows another worker is taking (`FOR UPDATE SKIP LOCKED`) instead of waiting.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use deadpool_postgres::{GenericClient, Pool};

use super::pool::{connect, in_transaction};
use crate::model::{Millis, StoreError};
use crate::parking::{HELD_DUE, Parked, ParkingLot, Taken, WAKE_CHUNK};

/// Parking is off the hot path: a few connections.
const POOL_SIZE: usize = 4;

/// The parking lot of a PostgreSQL state store.
pub struct PostgresParking {
    pool: Pool,
    namespace: String,
}

impl fmt::Debug for PostgresParking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresParking").field("namespace", &self.namespace).finish_non_exhaustive()
    }
}

impl PostgresParking {
    /// Connects to the database at `url` (migrating its schema).
    pub async fn open(url: &str, namespace: &str) -> Result<Self, StoreError> {
        Ok(Self { pool: connect(url, POOL_SIZE).await?, namespace: namespace.to_string() })
    }
}

/// Parks `entry` in one statement (one round trip and one commit): the entry, and its campaign's
/// place among the campaigns with held entries. All parts of the statement read one snapshot, in
/// which this entry is still as it was before: the check for other held entries leaves it out.
async fn park(client: &impl GenericClient, ns: &str, entry: &Parked) -> Result<(), StoreError> {
    let held = entry.held && entry.campaign.is_some();
    let statement = client
        .prepare_cached(
            "WITH parked AS (
                 INSERT INTO yizhan_parked
                   (namespace, id, due, token, routing_key, body, headers, reason, campaign, held, parked_due)
                 VALUES ($1, $2, $3, 1, $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT (namespace, id) DO UPDATE SET due = excluded.due, token = yizhan_parked.token + 1,
                   routing_key = excluded.routing_key, body = excluded.body, headers = excluded.headers,
                   reason = excluded.reason, campaign = excluded.campaign, held = excluded.held,
                   parked_due = excluded.parked_due
                 RETURNING 1),
             registered AS (
                 INSERT INTO yizhan_parked_held (namespace, campaign) SELECT $1, $8 WHERE $9
                 ON CONFLICT DO NOTHING),
             -- It may have been its campaign's last held entry.
             unregistered AS (
                 DELETE FROM yizhan_parked_held h WHERE NOT $9 AND h.namespace = $1 AND h.campaign = $8
                   AND NOT EXISTS (SELECT 1 FROM yizhan_parked
                                   WHERE namespace = $1 AND campaign = $8 AND held AND id <> $2))
             SELECT COUNT(*) FROM parked",
        )
        .await?;
    let due = if held { HELD_DUE } else { entry.due };
    client
        .query_one(
            &statement,
            &[
                &ns,
                &entry.id,
                &due,
                &entry.routing_key,
                &entry.body,
                &entry.headers,
                &entry.reason,
                &entry.campaign,
                &held,
                &entry.due,
            ],
        )
        .await?;
    Ok(())
}

#[async_trait::async_trait]
impl ParkingLot for PostgresParking {
    async fn park(&self, entry: &Parked) -> Result<(), StoreError> {
        park(&self.pool.get().await?, &self.namespace, entry).await
    }

    async fn take_due(&self, now: Millis, limit: usize, lease: Duration) -> Result<Vec<Taken>, StoreError> {
        let hidden_until = now.saturating_add(crate::sqlite::duration_ms(lease));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let client = self.pool.get().await?;
        // One statement: entries another worker is taking right now are skipped, not waited for.
        let statement = client
            .prepare_cached(
                "WITH taken AS MATERIALIZED (
                     SELECT id, due FROM yizhan_parked WHERE namespace = $1 AND due <= $2
                     ORDER BY due LIMIT $4 FOR UPDATE SKIP LOCKED)
                 UPDATE yizhan_parked p SET due = $3, token = p.token + 1
                 FROM taken WHERE p.namespace = $1 AND p.id = taken.id
                 RETURNING p.id, taken.due, p.token, p.routing_key, p.body, p.headers, p.reason, p.campaign",
            )
            .await?;
        let mut taken: Vec<Taken> = client
            .query(&statement, &[&self.namespace, &now, &hidden_until, &limit])
            .await?
            .into_iter()
            .map(|row| Taken {
                entry: Parked {
                    id: row.get(0),
                    due: row.get(1),
                    routing_key: row.get(3),
                    body: row.get(4),
                    headers: row.get(5),
                    reason: row.get(6),
                    campaign: row.get(7),
                    held: false,
                },
                token: row.get(2),
            })
            .collect();
        // RETURNING keeps no order: earliest first, as taken.
        taken.sort_by(|a, b| (a.entry.due, &a.entry.id).cmp(&(b.entry.due, &b.entry.id)));
        Ok(taken)
    }

    async fn release(&self, taken: &[(String, i64)]) -> Result<(), StoreError> {
        if taken.is_empty() {
            return Ok(());
        }
        // Sorted by id, so that concurrent releases lock in one order (one token per id: the last).
        let by_id: BTreeMap<&str, i64> = taken.iter().map(|(id, token)| (id.as_str(), *token)).collect();
        let (ids, tokens): (Vec<&str>, Vec<i64>) = by_id.into_iter().unzip();
        let client = self.pool.get().await?;
        let statement = client
            .prepare_cached(
                "DELETE FROM yizhan_parked p USING unnest($2::text[], $3::bigint[]) AS t(id, token)
                 WHERE p.namespace = $1 AND p.id = t.id AND p.token = t.token",
            )
            .await?;
        client.execute(&statement, &[&self.namespace, &ids, &tokens]).await?;
        Ok(())
    }

    async fn waiting(&self) -> Result<u64, StoreError> {
        let client = self.pool.get().await?;
        let statement = client.prepare_cached("SELECT COUNT(*) FROM yizhan_parked WHERE namespace = $1").await?;
        let n: i64 = client.query_one(&statement, &[&self.namespace]).await?.get(0);
        Ok(n.max(0).unsigned_abs())
    }

    async fn wake(&self, campaign: &str, held_only: bool, now: Millis) -> Result<u64, StoreError> {
        let chunk = i64::try_from(WAKE_CHUNK).unwrap_or(i64::MAX);
        let ns = self.namespace.as_str();
        let mut woken = 0;
        // Held entries first, then (for `held_only = false`) those waiting for a later time; a
        // chunk per transaction, so that workers park and take in between.
        for held in [true, false] {
            if !held && held_only {
                break;
            }
            loop {
                let changed = in_transaction!(self.pool, |tx| {
                    let changed = if held {
                        tx.execute(
                            "WITH chunk AS MATERIALIZED (
                                 SELECT id FROM yizhan_parked
                                 WHERE namespace = $1 AND campaign = $2 AND held LIMIT $4 FOR UPDATE)
                             UPDATE yizhan_parked p SET due = $3, held = FALSE, parked_due = $3
                             FROM chunk WHERE p.namespace = $1 AND p.id = chunk.id",
                            &[&ns, &campaign, &now, &chunk],
                        )
                        .await?
                    } else {
                        // By the time it was parked for: one taken (hidden) is not made due
                        // again under its taker.
                        tx.execute(
                            "WITH chunk AS MATERIALIZED (
                                 SELECT id FROM yizhan_parked
                                 WHERE namespace = $1 AND campaign = $2 AND NOT held AND parked_due > $3
                                 LIMIT $4 FOR UPDATE)
                             UPDATE yizhan_parked p SET due = $3, parked_due = $3
                             FROM chunk WHERE p.namespace = $1 AND p.id = chunk.id",
                            &[&ns, &campaign, &now, &chunk],
                        )
                        .await?
                    };
                    if held && changed < WAKE_CHUNK as u64 {
                        // The last chunk: nothing of it is held any more (a later park registers
                        // it again).
                        tx.execute(
                            "DELETE FROM yizhan_parked_held WHERE namespace = $1 AND campaign = $2",
                            &[&ns, &campaign],
                        )
                        .await?;
                    }
                    Ok(changed)
                })?;
                woken += changed;
                if changed < WAKE_CHUNK as u64 {
                    break;
                }
            }
        }
        Ok(woken)
    }

    async fn held_campaigns(&self) -> Result<Vec<String>, StoreError> {
        let client = self.pool.get().await?;
        let statement = client
            .prepare_cached("SELECT campaign FROM yizhan_parked_held WHERE namespace = $1 ORDER BY campaign")
            .await?;
        Ok(client.query(&statement, &[&self.namespace]).await?.into_iter().map(|row| row.get(0)).collect())
    }
}

//! A key's record: claims and finishes (with the message ids a success indexes for receipts),
//! each run in the caller's transaction, alone or in a batch (see [`super::batch`]).

use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;

use crate::model::{
    Claim, ClaimRequest, Deliveries, Delivery, ExpectedReceipts, Finish, FinishedState, Millis, StoreError, StoredKey,
};
use crate::sqlite::{duration_ms, to_json};

pub(super) async fn claim(tx: &impl GenericClient, ns: &str, request: &ClaimRequest) -> Result<Claim, StoreError> {
    let job_id = request.job_id.to_string();
    let (index_job, select, tombstone) = tokio::try_join!(
        tx.prepare_cached(
            "INSERT INTO yizhan_jobs (namespace, job_id, key, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (namespace, job_id) DO UPDATE SET key = excluded.key, updated_at = excluded.updated_at",
        ),
        tx.prepare_cached(
            "SELECT job_id, state, attempt, lease_until, retry_published, progress
             FROM yizhan_keys WHERE namespace = $1 AND key = $2 FOR UPDATE",
        ),
        tx.prepare_cached("SELECT 1 FROM yizhan_tombstones WHERE namespace = $1 AND job_id = $2"),
    )?;
    loop {
        // One round trip: the three go out together on the connection.
        let index_params: [&(dyn ToSql + Sync); 4] = [&ns, &job_id, &request.key, &request.now];
        let (select_params, tombstone_params): ([&(dyn ToSql + Sync); 2], [&(dyn ToSql + Sync); 2]) =
            ([&ns, &request.key], [&ns, &job_id]);
        let (_, current, tombstoned) = tokio::try_join!(
            tx.execute(&index_job, &index_params),
            tx.query_opt(&select, &select_params),
            tx.query_opt(&tombstone, &tombstone_params),
        )?;
        let current = current.map(|row| StoredKey {
            job_id: row.get(0),
            state: row.get(1),
            attempt: row.get(2),
            lease_until: row.get(3),
            retry_published: row.get(4),
            progress: row.get(5),
        });
        // Only a job that is not the record's own can have a tombstone.
        let foreign = current.as_ref().is_none_or(|current| current.job_id != job_id);
        let cancelled = Claim::Finished { state: FinishedState::Cancelled };
        if foreign && tombstoned.is_some() {
            if current.is_some() {
                count_duplicate(tx, ns, request, &job_id).await?;
            } else if !insert_cancelled(tx, ns, request, &job_id).await? {
                continue;
            }
            return Ok(cancelled);
        }
        let Some(current) = current else {
            if insert_running(tx, ns, request, &job_id).await? {
                return Ok(Claim::Acquired { progress: None, orphaned_attempt: None });
            }
            // Another worker created the record meanwhile (and committed): decide on its row.
            continue;
        };
        let decision = current.decide(request, &job_id)?;
        if let Some(attempt) = decision.acquire_attempt {
            acquire(tx, ns, request, &job_id, attempt).await?;
        }
        if decision.count_duplicate {
            count_duplicate(tx, ns, request, &job_id).await?;
        }
        return Ok(decision.answer);
    }
}

/// Counts a campaign's job that will not run because its key belongs to another job, once per
/// job id however often it is delivered.
async fn count_duplicate(
    tx: &impl GenericClient,
    ns: &str,
    request: &ClaimRequest,
    job_id: &str,
) -> Result<(), StoreError> {
    let Some(campaign) = request.campaign else {
        return Ok(());
    };
    let statement = tx
        .prepare_cached(
            "WITH first AS (
                INSERT INTO yizhan_counted (namespace, job_id, at) VALUES ($1, $2, $3)
                ON CONFLICT DO NOTHING RETURNING 1)
             UPDATE yizhan_campaign_counts SET n_duplicate = n_duplicate + 1, updated_at = GREATEST(updated_at, $3)
             WHERE namespace = $1 AND id = $4 AND EXISTS (SELECT 1 FROM first)",
        )
        .await?;
    tx.execute(&statement, &[&ns, &job_id, &request.now, &campaign.to_string()]).await?;
    Ok(())
}

/// The key's record for a job cancelled before it had one (counted `cancelled` by the trigger);
/// false when another worker created the record first.
async fn insert_cancelled(
    tx: &impl GenericClient,
    ns: &str,
    request: &ClaimRequest,
    job_id: &str,
) -> Result<bool, StoreError> {
    let statement = tx
        .prepare_cached(
            "INSERT INTO yizhan_keys (namespace, key, job_id, state, attempt, updated_at, campaign)
             VALUES ($1, $2, $3, 'cancelled', 0, $4, $5) ON CONFLICT DO NOTHING",
        )
        .await?;
    let campaign = request.campaign.map(|c| c.to_string());
    Ok(tx.execute(&statement, &[&ns, &request.key, &job_id, &request.now, &campaign]).await? == 1)
}

/// Creates the key's record held by `request`; false when another worker created it first.
async fn insert_running(
    tx: &impl GenericClient,
    ns: &str,
    request: &ClaimRequest,
    job_id: &str,
) -> Result<bool, StoreError> {
    let statement = tx
        .prepare_cached(
            "INSERT INTO yizhan_keys
                (namespace, key, job_id, state, attempt, owner, lease_until, retry_published, updated_at, campaign)
             VALUES ($1, $2, $3, 'running', $4, $5, $6, FALSE, $7, $8) ON CONFLICT DO NOTHING",
        )
        .await?;
    let lease_until = request.now.saturating_add(duration_ms(request.lease));
    let campaign = request.campaign.map(|c| c.to_string());
    let attempt = i64::from(request.attempt);
    let inserted = tx
        .execute(
            &statement,
            &[&ns, &request.key, &job_id, &attempt, &request.owner, &lease_until, &request.now, &campaign],
        )
        .await?;
    Ok(inserted == 1)
}

/// Makes `request` the holder of the key's (locked) record, keeping progress, the last error and
/// the record's campaign.
async fn acquire(
    tx: &impl GenericClient,
    ns: &str,
    request: &ClaimRequest,
    job_id: &str,
    attempt: i64,
) -> Result<(), StoreError> {
    let statement = tx
        .prepare_cached(
            "UPDATE yizhan_keys SET job_id = $3, state = 'running', attempt = $4, owner = $5, lease_until = $6,
                retry_published = FALSE, next_attempt_at = NULL, updated_at = $7
             WHERE namespace = $1 AND key = $2",
        )
        .await?;
    let lease_until = request.now.saturating_add(duration_ms(request.lease));
    tx.execute(&statement, &[&ns, &request.key, &job_id, &attempt, &request.owner, &lease_until, &request.now]).await?;
    Ok(())
}

/// Records how an attempt ended. A key with no record (pruned or never claimed) is left alone;
/// a `None` progress keeps the recorded progress.
pub(super) async fn finish_key(
    tx: &impl GenericClient,
    ns: &str,
    key: &str,
    finish: &Finish,
    now: Millis,
) -> Result<(), StoreError> {
    const WAITING: &str = "UPDATE yizhan_keys SET state = $8, attempt = $3,
            progress = COALESCE($4, progress), error = $5, next_attempt_at = $6,
            retry_published = FALSE, owner = NULL, lease_until = NULL, updated_at = $7
         WHERE namespace = $1 AND key = $2";
    match finish {
        Finish::Retrying { attempt, progress, error, next_attempt_at } => {
            let statement = tx.prepare_cached(WAITING).await?;
            let (attempt, progress) = (i64::from(*attempt), to_json(progress.as_ref()));
            tx.execute(&statement, &[&ns, &key, &attempt, &progress, error, next_attempt_at, &now, &"retrying"]).await?
        }
        Finish::Waiting { attempt, progress, reason, until, why } => {
            let statement = tx.prepare_cached(WAITING).await?;
            let (attempt, progress) = (i64::from(*attempt), to_json(progress.as_ref()));
            tx.execute(&statement, &[&ns, &key, &attempt, &progress, reason, until, &now, &why.status()]).await?
        }
        Finish::Succeeded { attempt, result, receipts } => {
            let delivery = index_receipts(tx, ns, key, receipts, now).await?;
            let statement = tx
                .prepare_cached(
                    "UPDATE yizhan_keys SET state = 'succeeded', attempt = $3, result = $4,
                        error = NULL, error_kind = NULL, next_attempt_at = NULL,
                        owner = NULL, lease_until = NULL, updated_at = $5, delivery = $6, notify = $7
                     WHERE namespace = $1 AND key = $2",
                )
                .await?;
            let (attempt, result) = (i64::from(*attempt), to_json(result.as_ref()));
            let notify = receipts.callback.as_deref().filter(|_| !receipts.is_empty());
            tx.execute(&statement, &[&ns, &key, &attempt, &result, &now, &delivery, &notify]).await?
        }
        Finish::Capped { attempt, result } => {
            let statement = tx
                .prepare_cached(
                    "UPDATE yizhan_keys SET state = 'capped', attempt = $3, result = $4,
                        error = NULL, error_kind = NULL, next_attempt_at = NULL,
                        owner = NULL, lease_until = NULL, updated_at = $5
                     WHERE namespace = $1 AND key = $2",
                )
                .await?;
            let (attempt, result) = (i64::from(*attempt), to_json(result.as_ref()));
            tx.execute(&statement, &[&ns, &key, &attempt, &result, &now]).await?
        }
        Finish::Dead { attempt, kind, error, progress } => {
            let statement = tx
                .prepare_cached(
                    "UPDATE yizhan_keys SET state = 'dead', attempt = $3, error_kind = $4, error = $5,
                        progress = COALESCE($6, progress), next_attempt_at = NULL,
                        owner = NULL, lease_until = NULL, updated_at = $7
                     WHERE namespace = $1 AND key = $2",
                )
                .await?;
            let (attempt, progress) = (i64::from(*attempt), to_json(progress.as_ref()));
            tx.execute(&statement, &[&ns, &key, &attempt, kind, error, &progress, &now]).await?
        }
        Finish::Cancelled { attempt } => {
            let statement = tx
                .prepare_cached(
                    "UPDATE yizhan_keys SET state = 'cancelled', attempt = $3,
                        error = NULL, error_kind = NULL, next_attempt_at = NULL,
                        owner = NULL, lease_until = NULL, updated_at = $4
                     WHERE namespace = $1 AND key = $2",
                )
                .await?;
            tx.execute(&statement, &[&ns, &key, &i64::from(*attempt), &now]).await?
        }
    };
    Ok(())
}

/// Moves a campaign's `delivered` and `undelivered` counts (nothing without a campaign).
pub(super) async fn count_deliveries(
    tx: &impl GenericClient,
    ns: &str,
    campaign: Option<&str>,
    delivered: i64,
    undelivered: i64,
    now: Millis,
) -> Result<(), StoreError> {
    let Some(campaign) = campaign else {
        return Ok(());
    };
    let statement = tx
        .prepare_cached(
            "UPDATE yizhan_campaign_counts SET n_delivered = n_delivered + $3, n_undelivered = n_undelivered + $4,
                updated_at = GREATEST(updated_at, $5)
             WHERE namespace = $1 AND id = $2",
        )
        .await?;
    tx.execute(&statement, &[&ns, &campaign, &delivered, &undelivered, &now]).await?;
    Ok(())
}

/// Indexes a success's message ids (`yizhan_sids`), applies the receipts that came before it,
/// and returns the record's `delivery` (JSON), None when it expects no receipts.
async fn index_receipts(
    tx: &impl GenericClient,
    ns: &str,
    key: &str,
    receipts: &ExpectedReceipts,
    now: Millis,
) -> Result<Option<String>, StoreError> {
    if receipts.is_empty() {
        return Ok(None);
    }
    // Early receipts are taken (deleted) as they are read.
    let (take_early, index) = tokio::try_join!(
        tx.prepare_cached(
            "DELETE FROM yizhan_early_receipts WHERE namespace = $1 AND sid = $2 RETURNING state, code, at"
        ),
        tx.prepare_cached(
            "INSERT INTO yizhan_sids (namespace, sid, key, recipient, pull, due, at)
             VALUES ($1, $2, $3, $4, $5, $6, $6)
             ON CONFLICT (namespace, sid) DO UPDATE SET key = excluded.key, recipient = excluded.recipient,
                pull = excluded.pull, due = excluded.due, at = excluded.at",
        ),
    )?;
    let mut deliveries = Deliveries::default();
    for (sid, recipient) in &receipts.sids {
        let early = tx
            .query_opt(&take_early, &[&ns, sid])
            .await?
            .and_then(|row| Delivery::early(row.get(0), row.get(1), row.get(2)));
        // A message whose receipt is already here is not asked about.
        let pull = receipts.pull.as_deref().filter(|_| early.is_none());
        tx.execute(&index, &[&ns, sid, &key, recipient, &pull, &now]).await?;
        deliveries.add(recipient, early);
    }
    if deliveries.delivered + deliveries.undelivered > 0 {
        let select = tx.prepare_cached("SELECT campaign FROM yizhan_keys WHERE namespace = $1 AND key = $2").await?;
        let campaign: Option<String> = tx.query_opt(&select, &[&ns, &key]).await?.and_then(|row| row.get(0));
        count_deliveries(tx, ns, campaign.as_deref(), deliveries.delivered, deliveries.undelivered, now).await?;
    }
    Ok(Some(deliveries.to_json()))
}

//! One contract suite, run against every backend: SQLite on a file, SQLite in memory, Redis at
//! `redis://127.0.0.1:6379/0` (each test in its own random namespace, so tests run in parallel and
//! nothing is flushed), and PostgreSQL at 127.0.0.1:5432 (each test in a database of its own,
//! dropped when it ends, passed or failed). Leases are driven by the caller-supplied `now`: nothing sleeps.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tempfile::TempDir;
use uuid::Uuid;
use yizhan_state::{
    CAMPAIGN_COUNTS, CampaignControl, CampaignRecord, CancelOutcome, Claim, ClaimRequest, Delivery, DeliveryState,
    ExpectedReceipts, Finish, FinishedState, Millis, PendingReceipt, PostgresStore, Receipt, RedisStore,
    ScratchDatabase, SqliteStore, StateStore, WaitReason, now_millis,
};

const REDIS_URL: &str = "redis://127.0.0.1:6379/0";
const LEASE: Duration = Duration::from_secs(30);
const LEASE_MS: Millis = 30_000;
const RETENTION: Duration = Duration::from_secs(3600);

enum Backend {
    SqliteFile(TempDir),
    SqliteMemory,
    Redis,
    Postgres(ScratchDatabase),
}

impl Backend {
    fn sqlite_file() -> Self {
        Self::SqliteFile(tempfile::tempdir().expect("temp dir"))
    }

    fn sqlite_memory() -> Self {
        Self::SqliteMemory
    }

    fn redis() -> Self {
        Self::Redis
    }

    async fn postgres() -> Self {
        Self::Postgres(ScratchDatabase::create().await.expect("create a database (is PostgreSQL on 127.0.0.1:5432?)"))
    }

    /// A store in namespace `ns` (for a file, the same file every time).
    async fn store_in(&self, ns: &str) -> Arc<dyn StateStore> {
        match self {
            Self::SqliteFile(dir) => {
                let path = dir.path().join("state.db");
                let path = path.to_str().expect("utf-8 temp path");
                Arc::new(SqliteStore::open(path, ns, RETENTION).await.expect("open sqlite"))
            }
            Self::SqliteMemory => {
                Arc::new(SqliteStore::open(":memory:", ns, RETENTION).await.expect("open sqlite :memory:"))
            }
            Self::Redis => Arc::new(
                RedisStore::open(REDIS_URL, ns, RETENTION)
                    .await
                    .expect("open redis (is it running on 127.0.0.1:6379?)"),
            ),
            Self::Postgres(db) => Arc::new(PostgresStore::open(db.url(), ns, RETENTION).await.expect("open postgres")),
        }
    }

    async fn store(&self) -> Arc<dyn StateStore> {
        self.store_in(&unique("test")).await
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", Uuid::now_v7())
}

fn job() -> Uuid {
    Uuid::now_v7()
}

fn request(key: &str, job_id: Uuid, attempt: u32, owner: &str, now: Millis) -> ClaimRequest {
    ClaimRequest {
        key: key.to_string(),
        job_id,
        attempt,
        owner: owner.to_string(),
        now,
        lease: LEASE,
        replay: false,
        campaign: None,
    }
}

fn acquired() -> Claim {
    Claim::Acquired { progress: None, orphaned_attempt: None }
}

fn retrying(attempt: u32, progress: Option<serde_json::Value>, next_attempt_at: Millis) -> Finish {
    Finish::Retrying { attempt, progress, error: format!("attempt {attempt} timed out"), next_attempt_at }
}

async fn claim_new_key_acquires(backend: &Backend) {
    let store = backend.store().await;
    let (key, id, t0) = (unique("k"), job(), now_millis());
    assert_eq!(store.claim(&request(&key, id, 1, "w1", t0)).await.unwrap(), acquired());
    let status = store.status(id).await.unwrap().expect("status of a claimed job");
    assert_eq!(status.id, id);
    assert_eq!(status.status, "running");
    assert_eq!(status.attempts, 1);
    assert_eq!(status.duplicate_of, None);
    assert_eq!(status.result, None);
    assert_eq!(status.error, None);
}

async fn claim_finished_key_is_finished(backend: &Backend) {
    let store = backend.store().await;
    let t0 = now_millis();

    let (ok_key, ok_job) = (unique("k"), job());
    store.claim(&request(&ok_key, ok_job, 1, "w1", t0)).await.unwrap();
    let finish = Finish::Succeeded { attempt: 1, result: Some(json!({"id": 7})), receipts: Default::default() };
    store.finish(&ok_key, "w1", &finish, t0 + 5).await.unwrap();
    let succeeded = Claim::Finished { state: FinishedState::Succeeded };
    // The same delivery again, a later attempt, another job, long after any lease.
    let late = t0 + 10 * LEASE_MS;
    assert_eq!(store.claim(&request(&ok_key, ok_job, 1, "w2", late)).await.unwrap(), succeeded);
    assert_eq!(store.claim(&request(&ok_key, ok_job, 2, "w2", late)).await.unwrap(), succeeded);
    assert_eq!(store.claim(&request(&ok_key, job(), 1, "w2", late)).await.unwrap(), succeeded);

    let (dead_key, dead_job) = (unique("k"), job());
    store.claim(&request(&dead_key, dead_job, 1, "w1", t0)).await.unwrap();
    let finish = Finish::Dead {
        attempt: 1,
        kind: "permanent".to_string(),
        error: "422 from provider".to_string(),
        progress: None,
    };
    store.finish(&dead_key, "w1", &finish, t0 + 5).await.unwrap();
    let dead = Claim::Finished { state: FinishedState::Dead };
    assert_eq!(store.claim(&request(&dead_key, dead_job, 1, "w2", late)).await.unwrap(), dead);
    assert_eq!(store.claim(&request(&dead_key, job(), 1, "w2", late)).await.unwrap(), dead);
}

/// A copy replayed from the dead-letter queue takes over a dead key as a fresh attempt with its
/// progress; a succeeded key stays finished even for a replay, so a success is never repeated.
async fn replay_reclaims_dead_but_not_succeeded(backend: &Backend) {
    let store = backend.store().await;
    let t0 = now_millis();
    let replay = |key: &str, id: Uuid, now: Millis| ClaimRequest { replay: true, ..request(key, id, 1, "w2", now) };

    let (dead_key, dead_job) = (unique("k"), job());
    store.claim(&request(&dead_key, dead_job, 3, "w1", t0)).await.unwrap();
    let finish = Finish::Dead {
        attempt: 3,
        kind: "permanent".to_string(),
        error: "bad key".to_string(),
        progress: Some(json!({"sent": ["+1"]})),
    };
    store.finish(&dead_key, "w1", &finish, t0 + 5).await.unwrap();
    let claim = store.claim(&replay(&dead_key, dead_job, t0 + 10)).await.unwrap();
    assert_eq!(claim, Claim::Acquired { progress: Some(json!({"sent": ["+1"]})), orphaned_attempt: None });
    let status = store.status(dead_job).await.unwrap().unwrap();
    assert_eq!((status.status.as_str(), status.attempts), ("running", 1));
    // The replayed attempt holds the key like any other: a second copy meanwhile is busy.
    assert!(matches!(store.claim(&replay(&dead_key, dead_job, t0 + 11)).await.unwrap(), Claim::Busy { .. }));
    store
        .finish(&dead_key, "w2", &Finish::Succeeded { attempt: 1, result: None, receipts: Default::default() }, t0 + 20)
        .await
        .unwrap();
    let succeeded = Claim::Finished { state: FinishedState::Succeeded };
    assert_eq!(store.claim(&replay(&dead_key, dead_job, t0 + 30)).await.unwrap(), succeeded);

    let (ok_key, ok_job) = (unique("k"), job());
    store.claim(&request(&ok_key, ok_job, 1, "w1", t0)).await.unwrap();
    store
        .finish(&ok_key, "w1", &Finish::Succeeded { attempt: 1, result: None, receipts: Default::default() }, t0 + 5)
        .await
        .unwrap();
    assert_eq!(store.claim(&replay(&ok_key, ok_job, t0 + 10)).await.unwrap(), succeeded);
}

async fn claim_live_lease_is_busy(backend: &Backend) {
    let store = backend.store().await;
    let (key, id, t0) = (unique("k"), job(), now_millis());
    assert_eq!(store.claim(&request(&key, id, 1, "w1", t0)).await.unwrap(), acquired());

    let busy = |ms: u64| Claim::Busy { retry_in: Duration::from_millis(ms) };
    // Retry in what is left of the lease, at least 1 ms.
    assert_eq!(store.claim(&request(&key, id, 1, "w2", t0)).await.unwrap(), busy(30_000));
    assert_eq!(store.claim(&request(&key, id, 1, "w2", t0 + 10_000)).await.unwrap(), busy(20_000));
    assert_eq!(store.claim(&request(&key, job(), 1, "w3", t0 + 29_999)).await.unwrap(), busy(1));
    // The holder itself (a redelivery to the same worker) is told the same.
    assert_eq!(store.claim(&request(&key, id, 1, "w1", t0 + 1)).await.unwrap(), busy(29_999));
    // A lease set in the caller's future (clock skew) still answers at least 1 ms.
    assert_eq!(store.claim(&request(&key, id, 2, "w2", t0 - 5)).await.unwrap(), busy(30_005));
    let status = store.status(id).await.unwrap().unwrap();
    assert_eq!((status.status.as_str(), status.attempts), ("running", 1));
}

async fn claim_after_lease_expiry_is_orphaned(backend: &Backend) {
    let store = backend.store().await;
    let (key, id, t0) = (unique("k"), job(), now_millis());
    store.claim(&request(&key, id, 1, "w1", t0)).await.unwrap();
    let progress = json!({"sent": [1, 2, 3]});
    store.finish(&key, "w1", &retrying(1, Some(progress.clone()), t0 + 1_000), t0 + 100).await.unwrap();
    store.retry_published(&key, 1).await.unwrap();
    let t1 = t0 + 1_000;
    assert_eq!(
        store.claim(&request(&key, id, 2, "w2", t1)).await.unwrap(),
        Claim::Acquired { progress: Some(progress.clone()), orphaned_attempt: None }
    );
    // w2 dies: its lease runs out at exactly t1 + LEASE.
    let expiry = t1 + LEASE_MS;
    assert_eq!(
        store.claim(&request(&key, id, 2, "w3", expiry)).await.unwrap(),
        Claim::Acquired { progress: Some(progress.clone()), orphaned_attempt: Some(2) }
    );
    // w3 now holds a fresh lease.
    assert_eq!(
        store.claim(&request(&key, id, 2, "w4", expiry + 1)).await.unwrap(),
        Claim::Busy { retry_in: Duration::from_millis(29_999) }
    );
    // A stale copy (attempt 1) taking over an orphan keeps the higher attempt.
    let later = expiry + LEASE_MS;
    assert_eq!(
        store.claim(&request(&key, id, 1, "w5", later)).await.unwrap(),
        Claim::Acquired { progress: Some(progress), orphaned_attempt: Some(2) }
    );
    let status = store.status(id).await.unwrap().unwrap();
    assert_eq!((status.status.as_str(), status.attempts), ("running", 2));
}

async fn retrying_next_attempt_acquires_with_progress(backend: &Backend) {
    let store = backend.store().await;
    let (key, id, t0) = (unique("k"), job(), now_millis());
    store.claim(&request(&key, id, 1, "w1", t0)).await.unwrap();
    let progress = json!({"sent": 40, "cursor": "abc"});
    store.finish(&key, "w1", &retrying(1, Some(progress.clone()), t0 + 60_000), t0 + 10).await.unwrap();
    let status = store.status(id).await.unwrap().unwrap();
    assert_eq!(status.status, "retrying");
    assert_eq!(status.attempts, 1);
    assert_eq!(status.next_attempt_at, Some(t0 + 60_000));
    assert_eq!(status.error.as_deref(), Some("attempt 1 timed out"));

    // The retry copy may arrive before or after the confirmation; either way attempt 2 runs.
    assert_eq!(
        store.claim(&request(&key, id, 2, "w2", t0 + 60_000)).await.unwrap(),
        Claim::Acquired { progress: Some(progress.clone()), orphaned_attempt: None }
    );
    let status = store.status(id).await.unwrap().unwrap();
    assert_eq!((status.status.as_str(), status.attempts), ("running", 2));
    assert_eq!(status.next_attempt_at, None);

    // A Retrying without progress keeps what was recorded.
    store.finish(&key, "w2", &retrying(2, None, t0 + 120_000), t0 + 60_010).await.unwrap();
    assert_eq!(
        store.claim(&request(&key, id, 3, "w3", t0 + 120_000)).await.unwrap(),
        Claim::Acquired { progress: Some(progress), orphaned_attempt: None }
    );
}

async fn retrying_same_attempt_unpublished_is_retry_unpublished(backend: &Backend) {
    let store = backend.store().await;
    let (key, id, t0) = (unique("k"), job(), now_millis());
    store.claim(&request(&key, id, 1, "w1", t0)).await.unwrap();
    let progress = json!({"sent": 1});
    store.finish(&key, "w1", &retrying(1, Some(progress.clone()), t0 + 5_000), t0 + 10).await.unwrap();
    // The worker died before the retry copy was confirmed; attempt 1 is redelivered.
    let expected = Claim::RetryUnpublished { attempt: 1, progress: Some(progress) };
    assert_eq!(store.claim(&request(&key, id, 1, "w2", t0 + 20)).await.unwrap(), expected);
    // Asking again changes nothing.
    assert_eq!(store.claim(&request(&key, id, 1, "w3", t0 + 30)).await.unwrap(), expected);
    // Marking another attempt as published does not mark this one.
    store.retry_published(&key, 2).await.unwrap();
    assert_eq!(store.claim(&request(&key, id, 1, "w3", t0 + 40)).await.unwrap(), expected);
}

async fn retrying_same_attempt_published_is_stale(backend: &Backend) {
    let store = backend.store().await;
    let (key, id, t0) = (unique("k"), job(), now_millis());
    store.claim(&request(&key, id, 1, "w1", t0)).await.unwrap();
    store.finish(&key, "w1", &retrying(1, None, t0 + 5_000), t0 + 10).await.unwrap();
    store.retry_published(&key, 1).await.unwrap();
    assert_eq!(store.claim(&request(&key, id, 1, "w2", t0 + 20)).await.unwrap(), Claim::Stale);
    // The published retry copy still runs.
    assert_eq!(store.claim(&request(&key, id, 2, "w2", t0 + 5_000)).await.unwrap(), acquired());
}

async fn retrying_older_attempt_is_stale(backend: &Backend) {
    let store = backend.store().await;
    let (key, id, t0) = (unique("k"), job(), now_millis());
    store.claim(&request(&key, id, 1, "w1", t0)).await.unwrap();
    store.finish(&key, "w1", &retrying(1, None, t0 + 1), t0 + 1).await.unwrap();
    store.retry_published(&key, 1).await.unwrap();
    store.claim(&request(&key, id, 2, "w1", t0 + 2)).await.unwrap();
    store.finish(&key, "w1", &retrying(2, None, t0 + 3), t0 + 3).await.unwrap();
    // Attempt 2's retry copy is not confirmed yet, yet a copy of attempt 1 is stale.
    assert_eq!(store.claim(&request(&key, id, 1, "w2", t0 + 4)).await.unwrap(), Claim::Stale);
    assert_eq!(
        store.claim(&request(&key, id, 2, "w2", t0 + 5)).await.unwrap(),
        Claim::RetryUnpublished { attempt: 2, progress: None }
    );
}

async fn retrying_other_job_is_stale(backend: &Backend) {
    let store = backend.store().await;
    let (key, id, other, t0) = (unique("k"), job(), job(), now_millis());
    store.claim(&request(&key, id, 1, "w1", t0)).await.unwrap();
    store.finish(&key, "w1", &retrying(1, None, t0 + 1_000), t0 + 1).await.unwrap();
    for attempt in [1, 2, 5] {
        assert_eq!(store.claim(&request(&key, other, attempt, "w2", t0 + 2)).await.unwrap(), Claim::Stale);
    }
    store.retry_published(&key, 1).await.unwrap();
    assert_eq!(store.claim(&request(&key, other, 2, "w2", t0 + 3)).await.unwrap(), Claim::Stale);
    // The other job is reported as a duplicate of the waiting one.
    let status = store.status(other).await.unwrap().unwrap();
    assert_eq!(status.duplicate_of, Some(id));
    assert_eq!(status.status, "retrying");
}

async fn renew_extends_only_own_leases(backend: &Backend) {
    let store = backend.store().await;
    let (key, id, t0) = (unique("k"), job(), now_millis());
    let other_key = unique("k");
    store.claim(&request(&key, id, 1, "w1", t0)).await.unwrap();
    store.claim(&request(&other_key, job(), 1, "w2", t0)).await.unwrap();

    // w1 renews at t0 + 20 s: its lease now runs to t0 + 50 s. Unknown keys are skipped.
    let keys = vec![key.clone(), unique("never-claimed")];
    store.renew("w1", &keys, t0 + 20_000, LEASE).await.unwrap();
    store.renew("w1", &[], t0 + 20_000, LEASE).await.unwrap();
    // ...which would have expired at t0 + 30 s without the renewal.
    assert_eq!(
        store.claim(&request(&key, id, 1, "w3", t0 + 40_000)).await.unwrap(),
        Claim::Busy { retry_in: Duration::from_millis(10_000) }
    );

    // w1 renewing a key it does not hold changes nothing: w2's lease ends at t0 + 30 s.
    store.renew("w1", std::slice::from_ref(&other_key), t0 + 25_000, LEASE).await.unwrap();
    assert_eq!(
        store.claim(&request(&other_key, job(), 1, "w3", t0 + 30_000)).await.unwrap(),
        Claim::Acquired { progress: None, orphaned_attempt: Some(1) }
    );
    // w2 lost the key: its late renewal must not steal w3's lease back.
    store.renew("w2", std::slice::from_ref(&other_key), t0 + 31_000, LEASE).await.unwrap();
    assert_eq!(
        store.claim(&request(&other_key, job(), 1, "w4", t0 + 60_000)).await.unwrap(),
        Claim::Acquired { progress: None, orphaned_attempt: Some(1) }
    );

    // A renewal after the attempt finished does not revive a lease.
    store.finish(&key, "w1", &retrying(1, None, t0 + 45_000), t0 + 41_000).await.unwrap();
    store.renew("w1", std::slice::from_ref(&key), t0 + 42_000, LEASE).await.unwrap();
    assert_eq!(
        store.claim(&request(&key, id, 1, "w3", t0 + 43_000)).await.unwrap(),
        Claim::RetryUnpublished { attempt: 1, progress: None }
    );
}

async fn status_for_original_and_duplicate(backend: &Backend) {
    let store = backend.store().await;
    let (key, original, duplicate, t0) = (unique("k"), job(), job(), now_millis());
    store.claim(&request(&key, original, 1, "w1", t0)).await.unwrap();
    assert!(matches!(store.claim(&request(&key, duplicate, 1, "w2", t0 + 1)).await.unwrap(), Claim::Busy { .. }));
    let status = store.status(duplicate).await.unwrap().unwrap();
    assert_eq!(status.id, duplicate);
    assert_eq!(status.status, "running");
    assert_eq!(status.duplicate_of, Some(original));

    let result = json!({"rows": [{"id": 1}], "total": 1});
    let finish = Finish::Succeeded { attempt: 1, result: Some(result.clone()), receipts: Default::default() };
    store.finish(&key, "w1", &finish, t0 + 100).await.unwrap();

    let status = store.status(original).await.unwrap().unwrap();
    assert_eq!(status.id, original);
    assert_eq!(status.status, "succeeded");
    assert_eq!(status.attempts, 1);
    assert_eq!(status.result, Some(result.clone()));
    assert_eq!(status.duplicate_of, None);
    assert_eq!(status.error, None);

    let status = store.status(duplicate).await.unwrap().unwrap();
    assert_eq!(status.id, duplicate);
    assert_eq!(status.status, "succeeded");
    assert_eq!(status.result, Some(result));
    assert_eq!(status.duplicate_of, Some(original));

    // A duplicate arriving after the end is indexed too.
    let third = job();
    store.claim(&request(&key, third, 1, "w3", t0 + 200)).await.unwrap();
    let status = store.status(third).await.unwrap().unwrap();
    assert_eq!(status.duplicate_of, Some(original));
}

async fn status_reports_errors(backend: &Backend) {
    let store = backend.store().await;
    let (key, id, t0) = (unique("k"), job(), now_millis());
    store.claim(&request(&key, id, 1, "w1", t0)).await.unwrap();
    store.finish(&key, "w1", &retrying(1, None, t0 + 9_000), t0 + 10).await.unwrap();
    store.retry_published(&key, 1).await.unwrap();
    store.claim(&request(&key, id, 2, "w2", t0 + 9_000)).await.unwrap();
    let finish = Finish::Dead {
        attempt: 2,
        kind: "exhausted".to_string(),
        error: "503 twice".to_string(),
        progress: Some(json!({"sent": 2})),
    };
    store.finish(&key, "w2", &finish, t0 + 9_100).await.unwrap();
    let status = store.status(id).await.unwrap().unwrap();
    assert_eq!(status.status, "dead");
    assert_eq!(status.attempts, 2);
    assert_eq!(status.error_kind.as_deref(), Some("exhausted"));
    assert_eq!(status.error.as_deref(), Some("503 twice"));
    assert_eq!(status.next_attempt_at, None);
    assert_eq!(status.result, None);
}

async fn status_unknown_job_is_none(backend: &Backend) {
    let store = backend.store().await;
    assert_eq!(store.status(job()).await.unwrap(), None);
}

async fn accepted_ids_are_recorded_per_namespace(backend: &Backend) {
    let ns = unique("ns");
    let store = backend.store_in(&ns).await;
    let other = backend.store_in(&unique("other")).await;
    let ids: Vec<Uuid> = (0..3).map(|_| job()).collect();
    store.accept(&ids, now_millis()).await.unwrap();
    store.accept(&[], now_millis()).await.unwrap();
    for id in &ids {
        assert!(store.accepted(*id).await.unwrap());
        assert!(!other.accepted(*id).await.unwrap());
    }
    assert!(!store.accepted(job()).await.unwrap());
}

async fn finish_by_late_writer_is_recorded(backend: &Backend) {
    let store = backend.store().await;
    let (key, id, t0) = (unique("k"), job(), now_millis());
    store.claim(&request(&key, id, 1, "w1", t0)).await.unwrap();
    // w1 stalls past its lease; w2 takes over; then w1 reports success after all.
    let takeover = store.claim(&request(&key, id, 1, "w2", t0 + LEASE_MS)).await.unwrap();
    assert!(matches!(takeover, Claim::Acquired { orphaned_attempt: Some(1), .. }));
    let finish = Finish::Succeeded { attempt: 1, result: None, receipts: Default::default() };
    store.finish(&key, "w1", &finish, t0 + LEASE_MS + 5).await.unwrap();
    let status = store.status(id).await.unwrap().unwrap();
    assert_eq!(status.status, "succeeded");
    assert_eq!(status.result, None);
    // Finishing or confirming a key nobody claimed is not an error, and creates nothing.
    let ghost = unique("ghost");
    store.finish(&ghost, "w1", &finish, t0).await.unwrap();
    store.retry_published(&ghost, 1).await.unwrap();
    assert_eq!(store.claim(&request(&ghost, job(), 1, "w1", t0)).await.unwrap(), acquired());
}

async fn namespaces_are_isolated(backend: &Backend) {
    let (ns_a, ns_b) = (unique("ns-a"), unique("ns-b"));
    let a = backend.store_in(&ns_a).await;
    let b = backend.store_in(&ns_b).await;
    let (key, id_a, id_b, t0) = (unique("k"), job(), job(), now_millis());
    assert_eq!(a.claim(&request(&key, id_a, 1, "w1", t0)).await.unwrap(), acquired());
    assert_eq!(b.claim(&request(&key, id_b, 1, "w1", t0)).await.unwrap(), acquired());
    assert_eq!(b.status(id_a).await.unwrap(), None);
    assert_eq!(a.status(id_b).await.unwrap(), None);
    a.finish(&key, "w1", &Finish::Succeeded { attempt: 1, result: None, receipts: Default::default() }, t0 + 1)
        .await
        .unwrap();
    assert_eq!(b.status(id_b).await.unwrap().unwrap().status, "running");
    assert_eq!(a.status(id_a).await.unwrap().unwrap().status, "succeeded");
    // The same namespace, opened again, sees the same records (shared file or Redis).
    if !matches!(backend, Backend::SqliteMemory) {
        let a_again = backend.store_in(&ns_a).await;
        assert_eq!(a_again.status(id_a).await.unwrap().unwrap().status, "succeeded");
    }
}

async fn concurrent_claims_have_one_winner(backend: &Backend) {
    let store = backend.store().await;
    let (key, t0) = (unique("k"), now_millis());
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let store = Arc::clone(&store);
            let request = request(&key, job(), 1, &format!("w{i}"), t0);
            tokio::spawn(async move { store.claim(&request).await })
        })
        .collect();
    let mut acquired_count = 0;
    let mut busy_count = 0;
    for task in tasks {
        match task.await.expect("claim task").expect("claim") {
            Claim::Acquired { progress: None, orphaned_attempt: None } => acquired_count += 1,
            Claim::Busy { retry_in } => {
                assert_eq!(retry_in, LEASE);
                busy_count += 1;
            }
            other => panic!("unexpected claim answer {other:?}"),
        }
    }
    assert_eq!((acquired_count, busy_count), (1, 49));
}

fn campaign_record(tenant: &str, send_at: Option<Millis>) -> CampaignRecord {
    CampaignRecord {
        id: Uuid::now_v7(),
        tenant: tenant.to_string(),
        key: unique("campaign-key"),
        head: json!({"name": "spring sale", "connector": "tencent_sms", "action": "send_sms"}),
        send_at,
        created_at: now_millis(),
    }
}

/// A campaign with `jobs` jobs recorded, as the producer makes it.
async fn new_campaign(store: &Arc<dyn StateStore>, jobs: u64) -> Uuid {
    let (record, total) = store.create_campaign(&campaign_record("default", None)).await.unwrap();
    assert_eq!(total, 0);
    assert!(store.add_to_campaign(record.id, jobs).await.unwrap());
    record.id
}

fn in_campaign(campaign: Uuid, key: &str, job_id: Uuid, attempt: u32, now: Millis) -> ClaimRequest {
    ClaimRequest { campaign: Some(campaign), ..request(key, job_id, attempt, "w1", now) }
}

/// The campaign's non-zero counts, `queued` included.
async fn counts(store: &Arc<dyn StateStore>, campaign: Uuid) -> Vec<(String, u64)> {
    let (_, status) = store.campaign(campaign).await.unwrap().expect("a known campaign");
    let listed: Vec<&str> = status.counts.keys().map(String::as_str).collect();
    let mut expected = CAMPAIGN_COUNTS.to_vec();
    expected.sort_unstable();
    assert_eq!(listed, expected, "every count is listed, zeros included");
    status.counts.into_iter().filter(|(_, n)| *n > 0).collect()
}

fn these(pairs: &[(&str, u64)]) -> Vec<(String, u64)> {
    let mut pairs: Vec<(String, u64)> = pairs.iter().map(|(s, n)| (s.to_string(), *n)).collect();
    pairs.sort();
    pairs
}

fn waiting(attempt: u32, why: WaitReason, until: Millis) -> Finish {
    Finish::Waiting { attempt, progress: None, reason: format!("waits for {why:?}"), until, why }
}

/// Every status change of a campaign's record moves exactly one count, in the same write.
async fn campaign_counts_follow_every_transition(backend: &Backend) {
    let store = backend.store().await;
    let campaign = new_campaign(&store, 3).await;
    let t0 = now_millis();
    assert_eq!(counts(&store, campaign).await, these(&[("queued", 3)]));

    // A: running → retrying → running → succeeded.
    let (a_key, a) = (unique("k"), job());
    assert_eq!(store.claim(&in_campaign(campaign, &a_key, a, 1, t0)).await.unwrap(), acquired());
    assert_eq!(counts(&store, campaign).await, these(&[("queued", 2), ("running", 1)]));
    store.finish(&a_key, "w1", &retrying(1, None, t0 + 1_000), t0 + 10).await.unwrap();
    assert_eq!(counts(&store, campaign).await, these(&[("queued", 2), ("retrying", 1)]));
    assert_eq!(store.claim(&in_campaign(campaign, &a_key, a, 2, t0 + 1_000)).await.unwrap(), acquired());
    assert_eq!(counts(&store, campaign).await, these(&[("queued", 2), ("running", 1)]));
    // A lease taken over (running → running) moves nothing.
    let takeover = store.claim(&in_campaign(campaign, &a_key, a, 2, t0 + 1_000 + LEASE_MS)).await.unwrap();
    assert!(matches!(takeover, Claim::Acquired { orphaned_attempt: Some(2), .. }));
    assert_eq!(counts(&store, campaign).await, these(&[("queued", 2), ("running", 1)]));
    store
        .finish(&a_key, "w1", &Finish::Succeeded { attempt: 2, result: None, receipts: Default::default() }, t0 + 2_000)
        .await
        .unwrap();
    assert_eq!(counts(&store, campaign).await, these(&[("queued", 2), ("succeeded", 1)]));
    let status = store.status(a).await.unwrap().unwrap();
    assert_eq!((status.status.as_str(), status.campaign), ("succeeded", Some(campaign)));

    // B: scheduled (before its first attempt) → cancelled; its copy then finds it cancelled.
    let (b_key, b) = (unique("k"), job());
    store.claim(&in_campaign(campaign, &b_key, b, 1, t0)).await.unwrap();
    store.finish(&b_key, "w1", &waiting(0, WaitReason::Scheduled, t0 + 60_000), t0 + 5).await.unwrap();
    assert_eq!(counts(&store, campaign).await, these(&[("queued", 1), ("succeeded", 1), ("scheduled", 1)]));
    let status = store.status(b).await.unwrap().unwrap();
    assert_eq!((status.status.as_str(), status.attempts), ("scheduled", 0));
    assert_eq!(status.next_attempt_at, Some(t0 + 60_000));
    assert_eq!(status.error.as_deref(), Some("waits for Scheduled"));
    assert_eq!(store.cancel_job(b, t0 + 10).await.unwrap(), CancelOutcome::Cancelled);
    assert_eq!(counts(&store, campaign).await, these(&[("queued", 1), ("succeeded", 1), ("cancelled", 1)]));
    let status = store.status(b).await.unwrap().unwrap();
    assert_eq!((status.status.as_str(), status.next_attempt_at), ("cancelled", None));
    let cancelled = Claim::Finished { state: FinishedState::Cancelled };
    assert_eq!(store.claim(&in_campaign(campaign, &b_key, b, 1, t0 + 60_000)).await.unwrap(), cancelled);
    assert_eq!(store.cancel_job(b, t0 + 20).await.unwrap(), CancelOutcome::Cancelled, "cancelling twice is fine");

    // C: deferred → running → capped.
    let (c_key, c) = (unique("k"), job());
    store.claim(&in_campaign(campaign, &c_key, c, 1, t0)).await.unwrap();
    store.finish(&c_key, "w1", &waiting(0, WaitReason::Deferred, t0 + 30_000), t0 + 5).await.unwrap();
    assert_eq!(store.status(c).await.unwrap().unwrap().status, "deferred");
    assert_eq!(
        counts(&store, campaign).await,
        these(&[("succeeded", 1), ("cancelled", 1), ("deferred", 1)]),
        "a record counts as soon as it exists: nothing is queued any more"
    );
    assert_eq!(store.claim(&in_campaign(campaign, &c_key, c, 1, t0 + 30_000)).await.unwrap(), acquired());
    let capped = Finish::Capped { attempt: 1, result: Some(json!({"capped": ["+8613800000000"]})) };
    store.finish(&c_key, "w1", &capped, t0 + 30_010).await.unwrap();
    assert_eq!(counts(&store, campaign).await, these(&[("succeeded", 1), ("cancelled", 1), ("capped", 1)]));
    let status = store.status(c).await.unwrap().unwrap();
    assert_eq!(status.status, "capped");
    assert_eq!(status.result, Some(json!({"capped": ["+8613800000000"]})));
    assert_eq!(
        store.claim(&in_campaign(campaign, &c_key, c, 2, t0 + 40_000)).await.unwrap(),
        Claim::Finished { state: FinishedState::Capped }
    );
    assert_eq!(store.campaign(campaign).await.unwrap().unwrap().1.status, "done");

    // Dead counts too, and a cancelled record stays final (no replay takes it over).
    let campaign = new_campaign(&store, 2).await;
    let (d_key, d) = (unique("k"), job());
    store.claim(&in_campaign(campaign, &d_key, d, 1, t0)).await.unwrap();
    let dead = Finish::Dead { attempt: 1, kind: "permanent".into(), error: "bad sign".into(), progress: None };
    store.finish(&d_key, "w1", &dead, t0 + 5).await.unwrap();
    let (e_key, e) = (unique("k"), job());
    store.claim(&in_campaign(campaign, &e_key, e, 1, t0)).await.unwrap();
    store.finish(&e_key, "w1", &Finish::Cancelled { attempt: 1 }, t0 + 5).await.unwrap();
    assert_eq!(counts(&store, campaign).await, these(&[("dead", 1), ("cancelled", 1)]));
    let replay = ClaimRequest { replay: true, ..in_campaign(campaign, &e_key, e, 1, t0 + 10) };
    assert_eq!(store.claim(&replay).await.unwrap(), cancelled);
}

/// The waiting statuses behave like `retrying` for claims: a later attempt acquires, the same one
/// asks for its copy until it is marked published.
async fn waiting_is_claimed_like_retrying(backend: &Backend) {
    let store = backend.store().await;
    for why in [WaitReason::RateLimit, WaitReason::Scheduled, WaitReason::Deferred] {
        let (key, id, t0) = (unique("k"), job(), now_millis());
        store.claim(&request(&key, id, 1, "w1", t0)).await.unwrap();
        let progress = json!({"sent": ["+1"]});
        let finish = Finish::Waiting {
            attempt: 0,
            progress: Some(progress.clone()),
            reason: "quiet hours".into(),
            until: t0 + 5_000,
            why,
        };
        store.finish(&key, "w1", &finish, t0 + 1).await.unwrap();
        assert_eq!(store.status(id).await.unwrap().unwrap().status, why.status());
        assert_eq!(
            store.claim(&request(&key, id, 0, "w2", t0 + 2)).await.unwrap(),
            Claim::RetryUnpublished { attempt: 0, progress: Some(progress.clone()) }
        );
        assert_eq!(store.claim(&request(&key, job(), 1, "w2", t0 + 2)).await.unwrap(), Claim::Stale, "another job");
        store.retry_published(&key, 0).await.unwrap();
        assert_eq!(store.claim(&request(&key, id, 0, "w2", t0 + 3)).await.unwrap(), Claim::Stale);
        assert_eq!(
            store.claim(&request(&key, id, 1, "w2", t0 + 5_000)).await.unwrap(),
            Claim::Acquired { progress: Some(progress), orphaned_attempt: None }
        );
        let status = store.status(id).await.unwrap().unwrap();
        assert_eq!((status.status.as_str(), status.attempts, status.campaign), ("running", 1, None));
    }
}

/// A job cancelled before any worker recorded it: a tombstone, then its claim settles it.
async fn cancel_before_the_claim_leaves_a_tombstone(backend: &Backend) {
    let store = backend.store().await;
    let campaign = new_campaign(&store, 3).await;
    let t0 = now_millis();
    let cancelled = Claim::Finished { state: FinishedState::Cancelled };

    assert_eq!(store.cancel_job(job(), t0).await.unwrap(), CancelOutcome::Unknown, "never accepted");

    let (key, id) = (unique("k"), job());
    store.accept(&[id], t0).await.unwrap();
    assert_eq!(store.cancel_job(id, t0 + 1).await.unwrap(), CancelOutcome::Cancelled);
    assert_eq!(store.cancel_job(id, t0 + 2).await.unwrap(), CancelOutcome::Cancelled);
    let status = store.status(id).await.unwrap().expect("a cancelled job has a status");
    assert_eq!((status.status.as_str(), status.attempts), ("cancelled", 0));
    assert_eq!(counts(&store, campaign).await, these(&[("queued", 3)]), "counted when its claim comes");
    assert_eq!(store.claim(&in_campaign(campaign, &key, id, 1, t0 + 3)).await.unwrap(), cancelled);
    assert_eq!(counts(&store, campaign).await, these(&[("queued", 2), ("cancelled", 1)]));
    // Redelivered: still cancelled, counted once; the key's record is the cancelled one.
    assert_eq!(store.claim(&in_campaign(campaign, &key, id, 1, t0 + 4)).await.unwrap(), cancelled);
    assert_eq!(counts(&store, campaign).await, these(&[("queued", 2), ("cancelled", 1)]));
    let status = store.status(id).await.unwrap().unwrap();
    assert_eq!((status.status.as_str(), status.campaign), ("cancelled", Some(campaign)));
    assert_eq!(store.claim(&in_campaign(campaign, &key, job(), 1, t0 + 5)).await.unwrap(), cancelled);
    assert_eq!(counts(&store, campaign).await, these(&[("queued", 1), ("cancelled", 1), ("duplicate", 1)]));

    // A tombstoned job whose key another job holds never runs; it counts as that key's duplicate.
    let (held_key, holder, late) = (unique("k"), job(), job());
    store.claim(&request(&held_key, holder, 1, "w1", t0)).await.unwrap();
    store.accept(&[late], t0).await.unwrap();
    assert_eq!(store.cancel_job(late, t0 + 1).await.unwrap(), CancelOutcome::Cancelled);
    let after_lease = t0 + 2 * LEASE_MS;
    assert_eq!(store.claim(&in_campaign(campaign, &held_key, late, 1, after_lease)).await.unwrap(), cancelled);
    assert_eq!(store.claim(&in_campaign(campaign, &held_key, late, 1, after_lease)).await.unwrap(), cancelled);
    assert_eq!(counts(&store, campaign).await, these(&[("cancelled", 1), ("duplicate", 2)]));
    let status = store.status(holder).await.unwrap().unwrap();
    assert_eq!(status.status, "running", "the holder's record is left alone");

    // Too late: running, finished, or a duplicate of another job.
    let (run_key, running) = (unique("k"), job());
    store.claim(&request(&run_key, running, 1, "w1", t0)).await.unwrap();
    match store.cancel_job(running, t0 + 1).await.unwrap() {
        CancelOutcome::Started(status) => assert_eq!((status.id, status.status.as_str()), (running, "running")),
        other => panic!("a running job cannot be cancelled: {other:?}"),
    }
    store
        .finish(&run_key, "w1", &Finish::Succeeded { attempt: 1, result: None, receipts: Default::default() }, t0 + 2)
        .await
        .unwrap();
    match store.cancel_job(running, t0 + 3).await.unwrap() {
        CancelOutcome::Started(status) => assert_eq!(status.status, "succeeded"),
        other => panic!("a succeeded job cannot be cancelled: {other:?}"),
    }
    let (wait_key, waiting_job, duplicate) = (unique("k"), job(), job());
    store.claim(&request(&wait_key, waiting_job, 1, "w1", t0)).await.unwrap();
    store.finish(&wait_key, "w1", &retrying(1, None, t0 + 60_000), t0 + 1).await.unwrap();
    assert_eq!(store.claim(&request(&wait_key, duplicate, 1, "w2", t0 + 2)).await.unwrap(), Claim::Stale);
    match store.cancel_job(duplicate, t0 + 3).await.unwrap() {
        CancelOutcome::Started(status) => assert_eq!(status.duplicate_of, Some(waiting_job)),
        other => panic!("a duplicate does not cancel the job it duplicates: {other:?}"),
    }
    assert_eq!(store.cancel_job(waiting_job, t0 + 4).await.unwrap(), CancelOutcome::Cancelled, "retrying");
    assert_eq!(store.claim(&request(&wait_key, waiting_job, 2, "w1", t0 + 60_000)).await.unwrap(), cancelled);
}

/// A job of a campaign that does not run because its key belongs to another job counts as a
/// duplicate once, however often it is delivered and whatever answer it got first.
async fn duplicates_are_counted_once(backend: &Backend) {
    let store = backend.store().await;
    let campaign = new_campaign(&store, 5).await;
    let t0 = now_millis();
    let (key, first) = (unique("k"), job());
    store.claim(&in_campaign(campaign, &key, first, 1, t0)).await.unwrap();

    // Busy while the first runs: not counted yet (it comes back).
    let second = job();
    assert!(matches!(store.claim(&in_campaign(campaign, &key, second, 1, t0 + 1)).await.unwrap(), Claim::Busy { .. }));
    assert_eq!(counts(&store, campaign).await, these(&[("queued", 4), ("running", 1)]));

    // Waiting: another job is stale, counted.
    store.finish(&key, "w1", &retrying(1, None, t0 + 1_000), t0 + 2).await.unwrap();
    assert_eq!(store.claim(&in_campaign(campaign, &key, second, 1, t0 + 3)).await.unwrap(), Claim::Stale);
    assert_eq!(store.claim(&in_campaign(campaign, &key, second, 1, t0 + 4)).await.unwrap(), Claim::Stale);
    assert_eq!(counts(&store, campaign).await, these(&[("queued", 3), ("retrying", 1), ("duplicate", 1)]));
    // The job's own stale copy is no duplicate.
    store.retry_published(&key, 1).await.unwrap();
    assert_eq!(store.claim(&in_campaign(campaign, &key, first, 1, t0 + 5)).await.unwrap(), Claim::Stale);
    assert_eq!(counts(&store, campaign).await, these(&[("queued", 3), ("retrying", 1), ("duplicate", 1)]));

    store.claim(&in_campaign(campaign, &key, first, 2, t0 + 1_000)).await.unwrap();
    store
        .finish(&key, "w1", &Finish::Succeeded { attempt: 2, result: None, receipts: Default::default() }, t0 + 1_001)
        .await
        .unwrap();
    let succeeded = Claim::Finished { state: FinishedState::Succeeded };
    // Redeliveries of the first job and of the counted one change nothing; a third job counts.
    assert_eq!(store.claim(&in_campaign(campaign, &key, first, 2, t0 + 2_000)).await.unwrap(), succeeded);
    assert_eq!(store.claim(&in_campaign(campaign, &key, second, 1, t0 + 2_000)).await.unwrap(), succeeded);
    let third = job();
    for _ in 0..3 {
        assert_eq!(store.claim(&in_campaign(campaign, &key, third, 1, t0 + 2_001)).await.unwrap(), succeeded);
    }
    assert_eq!(counts(&store, campaign).await, these(&[("queued", 2), ("succeeded", 1), ("duplicate", 2)]));
    // A plain job and a job of an unknown campaign count nowhere.
    assert_eq!(store.claim(&request(&key, job(), 1, "w1", t0 + 2_002)).await.unwrap(), succeeded);
    assert_eq!(store.claim(&in_campaign(Uuid::now_v7(), &key, job(), 1, t0 + 2_002)).await.unwrap(), succeeded);
    assert_eq!(counts(&store, campaign).await, these(&[("queued", 2), ("succeeded", 1), ("duplicate", 2)]));
    let (other_key, unknown) = (unique("k"), Uuid::now_v7());
    assert_eq!(store.claim(&in_campaign(unknown, &other_key, job(), 1, t0)).await.unwrap(), acquired());
    assert!(store.campaign(unknown).await.unwrap().is_none());
}

/// Many workers finishing a campaign's jobs at once: the counters stay exact.
async fn concurrent_campaign_jobs_count_exactly(backend: &Backend) {
    let store = backend.store().await;
    let campaign = new_campaign(&store, 60).await;
    let t0 = now_millis();
    let tasks: Vec<_> = (0..60)
        .map(|i| {
            let store = Arc::clone(&store);
            // 40 distinct keys and 20 duplicates of the first 20.
            let key = format!("k-{}", i % 40);
            tokio::spawn(async move {
                let id = Uuid::now_v7();
                let mut claim = store.claim(&in_campaign(campaign, &key, id, 1, t0)).await.unwrap();
                while let Claim::Busy { .. } = claim {
                    tokio::task::yield_now().await;
                    claim = store.claim(&in_campaign(campaign, &key, id, 1, t0)).await.unwrap();
                }
                if claim == acquired() {
                    store
                        .finish(
                            &key,
                            "w",
                            &Finish::Succeeded { attempt: 1, result: None, receipts: Default::default() },
                            t0 + 1,
                        )
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    let (_, status) = store.campaign(campaign).await.unwrap().unwrap();
    assert_eq!((status.counts["succeeded"], status.counts["duplicate"], status.counts["queued"]), (40, 20, 0));
    assert_eq!(status.status, "done");
}

/// cancelled > paused > done > scheduled > running; `(tenant, key)` makes creation idempotent.
async fn campaign_status_and_controls(backend: &Backend) {
    let store = backend.store().await;
    let t0 = now_millis();
    let later = campaign_record("acme", Some(t0 + 3_600_000));
    let (created, total) = store.create_campaign(&later).await.unwrap();
    assert_eq!((created.clone(), total), (later.clone(), 0));
    let (_, status) = store.campaign(later.id).await.unwrap().unwrap();
    assert_eq!((status.status.as_str(), status.total), ("scheduled", 0));
    assert_eq!(status.name.as_deref(), Some("spring sale"));
    assert_eq!((status.tenant.as_str(), status.send_at, status.created_at), ("acme", later.send_at, later.created_at));

    // The same (tenant, key) again: the stored campaign, unchanged, with its total.
    assert!(store.add_to_campaign(later.id, 2).await.unwrap());
    let again = CampaignRecord { id: Uuid::now_v7(), head: json!({"name": "other"}), ..later.clone() };
    assert_eq!(store.create_campaign(&again).await.unwrap(), (later.clone(), 2));
    // Another tenant with the same key is another campaign.
    let other_tenant = CampaignRecord { id: Uuid::now_v7(), tenant: "globex".into(), ..later.clone() };
    assert_eq!(store.create_campaign(&other_tenant).await.unwrap(), (other_tenant.clone(), 0));
    assert_eq!(store.campaign(later.id).await.unwrap().unwrap().0, later);

    let status = store.control_campaign(later.id, CampaignControl::Paused).await.unwrap().unwrap();
    assert_eq!((status.status.as_str(), status.total), ("paused", 2));
    let status = store.control_campaign(later.id, CampaignControl::Running).await.unwrap().unwrap();
    assert_eq!(status.status, "scheduled");

    let now = store.create_campaign(&campaign_record("acme", None)).await.unwrap().0;
    assert_eq!(store.campaign(now.id).await.unwrap().unwrap().1.status, "running", "no send_at");
    let past = store.create_campaign(&campaign_record("acme", Some(t0 - 1_000))).await.unwrap().0;
    assert_eq!(store.campaign(past.id).await.unwrap().unwrap().1.status, "running", "send_at passed");

    // Done once the final counts reach the total; paused still wins.
    assert!(store.add_to_campaign(now.id, 1).await.unwrap());
    let key = unique("k");
    store.claim(&in_campaign(now.id, &key, job(), 1, t0)).await.unwrap();
    assert_eq!(store.campaign(now.id).await.unwrap().unwrap().1.status, "running");
    store
        .finish(&key, "w1", &Finish::Succeeded { attempt: 1, result: None, receipts: Default::default() }, t0 + 1)
        .await
        .unwrap();
    assert_eq!(store.campaign(now.id).await.unwrap().unwrap().1.status, "done");
    assert_eq!(store.control_campaign(now.id, CampaignControl::Paused).await.unwrap().unwrap().status, "paused");
    assert_eq!(store.control_campaign(now.id, CampaignControl::Running).await.unwrap().unwrap().status, "done");

    // Cancelled is final and wins over everything.
    let status = store.control_campaign(now.id, CampaignControl::Cancelled).await.unwrap().unwrap();
    assert_eq!(status.status, "cancelled");
    for control in [CampaignControl::Running, CampaignControl::Paused] {
        let status = store.control_campaign(now.id, control).await.unwrap().unwrap();
        assert_eq!(status.status, "cancelled", "{control:?} of a cancelled campaign changes nothing");
    }

    let unknown = Uuid::now_v7();
    assert!(store.campaign(unknown).await.unwrap().is_none());
    assert!(!store.add_to_campaign(unknown, 1).await.unwrap());
    assert!(store.control_campaign(unknown, CampaignControl::Paused).await.unwrap().is_none());
    let controls = store.campaign_controls(&[later.id, unknown, now.id, past.id]).await.unwrap();
    assert_eq!(
        controls,
        vec![
            (later.id, CampaignControl::Running),
            (now.id, CampaignControl::Cancelled),
            (past.id, CampaignControl::Running)
        ]
    );
    assert!(store.campaign_controls(&[]).await.unwrap().is_empty());
}

async fn tenants_are_registered_per_namespace(backend: &Backend) {
    let ns = unique("test");
    let store = backend.store_in(&ns).await;
    let other = backend.store_in(&unique("other")).await;
    assert!(store.tenants().await.unwrap().is_empty());
    store.register_tenants(&["globex".to_string(), "acme".to_string()]).await.unwrap();
    store.register_tenants(&["acme".to_string(), "initech".to_string()]).await.unwrap();
    store.register_tenants(&[]).await.unwrap();
    assert_eq!(store.tenants().await.unwrap(), ["acme", "globex", "initech"]);
    assert!(other.tenants().await.unwrap().is_empty());
    if let Backend::Redis = backend {
        // The registry never expires: the test removes its own.
        let client = redis::Client::open(REDIS_URL).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let _: () = redis::cmd("DEL").arg(format!("{ns}:tenants")).query_async(&mut conn).await.unwrap();
    }
}

fn expecting(sids: &[(&str, &str)], pull: Option<&str>, callback: Option<&str>) -> ExpectedReceipts {
    ExpectedReceipts {
        sids: sids.iter().map(|(sid, to)| (sid.to_string(), to.to_string())).collect(),
        pull: pull.map(str::to_string),
        callback: callback.map(str::to_string),
    }
}

fn receipt(sid: &str, state: DeliveryState, code: &str, at: Millis) -> Receipt {
    Receipt { sid: sid.to_string(), state, code: Some(code.to_string()), at }
}

fn delivered(code: &str, at: Millis) -> Delivery {
    Delivery { state: DeliveryState::Delivered, code: Some(code.to_string()), at: Some(at) }
}

fn failed(code: &str, at: Millis) -> Delivery {
    Delivery { state: DeliveryState::Failed, code: Some(code.to_string()), at: Some(at) }
}

fn pending() -> Delivery {
    Delivery { state: DeliveryState::Pending, code: None, at: None }
}

/// Claims `key` for a new job of `campaign` and finishes it succeeded, expecting `receipts`.
async fn succeed_with(
    store: &Arc<dyn StateStore>,
    campaign: Option<Uuid>,
    key: &str,
    receipts: ExpectedReceipts,
    now: Millis,
) -> Uuid {
    let id = job();
    let claim = ClaimRequest { campaign, ..request(key, id, 1, "w1", now) };
    assert_eq!(store.claim(&claim).await.unwrap(), acquired());
    store.finish(key, "w1", &Finish::Succeeded { attempt: 1, result: None, receipts }, now + 1).await.unwrap();
    id
}

async fn delivery_of(store: &Arc<dyn StateStore>, id: Uuid) -> Vec<(String, Delivery)> {
    let status = store.status(id).await.unwrap().expect("a recorded job");
    status.delivery.expect("the job expects receipts").into_iter().collect()
}

async fn delivery_counts(store: &Arc<dyn StateStore>, campaign: Uuid) -> (u64, u64) {
    let (_, status) = store.campaign(campaign).await.unwrap().expect("a known campaign");
    (status.delivered, status.undelivered)
}

/// A success indexes its message ids in the same write; each message's first final receipt
/// counts, once, for the job and its campaign; duplicates and later receipts count nothing.
async fn receipts_are_matched_and_counted_once(backend: &Backend) {
    let store = backend.store().await;
    let campaign = new_campaign(&store, 3).await;
    let t0 = now_millis();
    let (a1, a2, b1) = (unique("sid"), unique("sid"), unique("sid"));
    let a = succeed_with(
        &store,
        Some(campaign),
        &unique("ka"),
        expecting(&[(&a1, "+8613800000001"), (&a2, "+8613800000002")], None, None),
        t0,
    )
    .await;
    let b = succeed_with(
        &store,
        Some(campaign),
        &unique("kb"),
        expecting(&[(&b1, "+8613800000003")], None, Some(r#"{"url":"https://hooks.example.com/x"}"#)),
        t0,
    )
    .await;
    let plain = succeed_with(&store, Some(campaign), &unique("kc"), ExpectedReceipts::default(), t0).await;
    assert_eq!(
        delivery_of(&store, a).await,
        [("+8613800000001".to_string(), pending()), ("+8613800000002".to_string(), pending())]
    );
    assert_eq!(store.status(plain).await.unwrap().unwrap().delivery, None, "no receipts expected, none shown");

    let batch = [
        receipt(&a2, DeliveryState::Failed, "UNDELIV", t0 + 20),
        receipt(&a1, DeliveryState::Delivered, "DELIVRD", t0 + 10),
        receipt(&a1, DeliveryState::Delivered, "DELIVRD", t0 + 10),
        receipt(&b1, DeliveryState::Delivered, "DELIVRD", t0 + 30),
    ];
    let recorded = store.record_receipts(&batch, t0 + 100).await.unwrap();
    assert_eq!((recorded.counted, recorded.early), (3, 0));
    // B's receipts are all final and it has a callback: it is reported, A (no callback) is not.
    assert_eq!(recorded.done.len(), 1);
    assert_eq!(recorded.done[0].status.id, b);
    assert_eq!(recorded.done[0].callback, r#"{"url":"https://hooks.example.com/x"}"#);
    assert_eq!(
        recorded.done[0].status.delivery.clone().unwrap().into_iter().collect::<Vec<_>>(),
        [("+8613800000003".to_string(), delivered("DELIVRD", t0 + 30))]
    );
    assert_eq!(
        delivery_of(&store, a).await,
        [
            ("+8613800000001".to_string(), delivered("DELIVRD", t0 + 10)),
            ("+8613800000002".to_string(), failed("UNDELIV", t0 + 20))
        ]
    );
    assert_eq!(delivery_counts(&store, campaign).await, (2, 1));

    // Late and duplicated receipts, in any order, change nothing and count nothing.
    let late = [
        receipt(&a2, DeliveryState::Delivered, "DELIVRD", t0 + 5),
        receipt(&b1, DeliveryState::Failed, "UNDELIV", t0 + 40),
        receipt(&b1, DeliveryState::Delivered, "DELIVRD", t0 + 30),
    ];
    let recorded = store.record_receipts(&late, t0 + 200).await.unwrap();
    assert_eq!((recorded.counted, recorded.early, recorded.done.len()), (0, 0, 0));
    assert_eq!(delivery_of(&store, a).await[1].1, failed("UNDELIV", t0 + 20));
    assert_eq!(delivery_counts(&store, campaign).await, (2, 1));
    // The record statuses move as before.
    assert_eq!(counts(&store, campaign).await, these(&[("succeeded", 3)]));
}

/// A receipt can beat the success that sent its message: it waits (the first one only) and is
/// applied, and counted, when the success is recorded.
async fn early_receipts_wait_for_their_success(backend: &Backend) {
    let store = backend.store().await;
    let campaign = new_campaign(&store, 1).await;
    let t0 = now_millis();
    let (early, later) = (unique("sid"), unique("sid"));
    let recorded = store
        .record_receipts(
            &[
                receipt(&early, DeliveryState::Failed, "UNDELIV", t0),
                receipt(&early, DeliveryState::Delivered, "DELIVRD", t0 + 1),
            ],
            t0,
        )
        .await
        .unwrap();
    assert_eq!((recorded.counted, recorded.early), (0, 1));
    assert_eq!(delivery_counts(&store, campaign).await, (0, 0));

    let id = succeed_with(
        &store,
        Some(campaign),
        &unique("k"),
        expecting(&[(&early, "+8613800000001"), (&later, "+8613800000002")], None, Some("{}")),
        t0 + 10,
    )
    .await;
    assert_eq!(
        delivery_of(&store, id).await,
        [("+8613800000001".to_string(), failed("UNDELIV", t0)), ("+8613800000002".to_string(), pending())]
    );
    assert_eq!(delivery_counts(&store, campaign).await, (0, 1));
    // Already applied: its duplicate counts nothing; the other receipt completes the job.
    let recorded = store
        .record_receipts(
            &[
                receipt(&early, DeliveryState::Delivered, "DELIVRD", t0 + 2),
                receipt(&later, DeliveryState::Delivered, "DELIVRD", t0 + 20),
            ],
            t0 + 30,
        )
        .await
        .unwrap();
    assert_eq!((recorded.counted, recorded.early), (1, 0));
    assert_eq!(recorded.done.iter().map(|d| d.status.id).collect::<Vec<_>>(), [id]);
    assert_eq!(delivery_counts(&store, campaign).await, (1, 1));
}

/// The messages of a pull queue are handed out once per interval until their receipt is final.
async fn pending_receipts_are_taken_until_final(backend: &Backend) {
    let store = backend.store().await;
    let queue = unique("tencent_ses/default");
    let t0 = now_millis();
    let (s1, s2) = (unique("mid"), unique("mid"));
    succeed_with(
        &store,
        None,
        &unique("k"),
        expecting(&[(&s1, "a@example.com"), (&s2, "b@example.com")], Some(&queue), None),
        t0,
    )
    .await;
    let sids = |pending: Vec<PendingReceipt>| {
        let mut sids: Vec<String> = pending.into_iter().map(|p| p.sid).collect();
        sids.sort();
        sids
    };
    let mut both = vec![s1.clone(), s2.clone()];
    both.sort();
    let first = store.take_pending_receipts(&queue, t0 + 1, t0 + 1_000, 10).await.unwrap();
    assert!(first.iter().all(|p| p.sent_at == t0 + 1), "{first:?}");
    assert!(first.iter().any(|p| p.sid == s1 && p.recipient == "a@example.com"), "{first:?}");
    assert_eq!(sids(first), both);
    assert!(store.take_pending_receipts(&queue, t0 + 2, t0 + 1_000, 10).await.unwrap().is_empty(), "not due again yet");
    assert!(store.take_pending_receipts(&unique("other"), t0 + 2_000, t0 + 3_000, 10).await.unwrap().is_empty());
    assert_eq!(store.take_pending_receipts(&queue, t0 + 1_000, t0 + 2_000, 1).await.unwrap().len(), 1, "limit");

    store.record_receipts(&[receipt(&s1, DeliveryState::Delivered, "1", t0 + 5)], t0 + 5).await.unwrap();
    assert_eq!(sids(store.take_pending_receipts(&queue, t0 + 5_000, t0 + 6_000, 10).await.unwrap()), [s2]);
}

/// A lease has one holder until it runs out; its holder keeps it by taking it again.
async fn leases_have_one_holder(backend: &Backend) {
    let store = backend.store().await;
    let name = unique("receipts/tencent_sms/default");
    let t0 = now_millis();
    assert!(store.lease(&name, "w1", t0, Duration::from_secs(30)).await.unwrap());
    assert!(!store.lease(&name, "w2", t0 + 1, Duration::from_secs(30)).await.unwrap());
    assert!(store.lease(&name, "w1", t0 + 2, Duration::from_millis(200)).await.unwrap(), "renewed");
    assert!(store.lease(&unique("other"), "w2", t0 + 3, Duration::from_secs(30)).await.unwrap());
    // Once w1's lease runs out, w2 takes it.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !store.lease(&name, "w2", now_millis(), Duration::from_secs(30)).await.unwrap() {
        assert!(std::time::Instant::now() < deadline, "the lease never ran out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!store.lease(&name, "w1", now_millis(), Duration::from_secs(30)).await.unwrap());
}

macro_rules! contract {
    ($($test:ident),* $(,)?) => {
        mod sqlite_file {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(&super::Backend::sqlite_file()).await;
                }
            )*
        }
        mod sqlite_memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(&super::Backend::sqlite_memory()).await;
                }
            )*
        }
        mod redis_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(&super::Backend::redis()).await;
                }
            )*
        }
        mod postgres_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(&super::Backend::postgres().await).await;
                }
            )*
        }
    };
}

contract!(
    claim_new_key_acquires,
    claim_finished_key_is_finished,
    replay_reclaims_dead_but_not_succeeded,
    claim_live_lease_is_busy,
    claim_after_lease_expiry_is_orphaned,
    retrying_next_attempt_acquires_with_progress,
    retrying_same_attempt_unpublished_is_retry_unpublished,
    retrying_same_attempt_published_is_stale,
    retrying_older_attempt_is_stale,
    retrying_other_job_is_stale,
    renew_extends_only_own_leases,
    status_for_original_and_duplicate,
    status_reports_errors,
    status_unknown_job_is_none,
    accepted_ids_are_recorded_per_namespace,
    finish_by_late_writer_is_recorded,
    namespaces_are_isolated,
    concurrent_claims_have_one_winner,
    campaign_counts_follow_every_transition,
    waiting_is_claimed_like_retrying,
    cancel_before_the_claim_leaves_a_tombstone,
    duplicates_are_counted_once,
    concurrent_campaign_jobs_count_exactly,
    campaign_status_and_controls,
    tenants_are_registered_per_namespace,
    receipts_are_matched_and_counted_once,
    early_receipts_wait_for_their_success,
    pending_receipts_are_taken_until_final,
    leases_have_one_holder,
);

/// The console's campaign list: newest first by id, a page at a time, each campaign once however
/// often it is submitted.
async fn campaigns_are_listed_newest_first(backend: &Backend) {
    let store = backend.store().await;
    assert!(store.campaigns(None, 10).await.unwrap().is_empty());
    let mut ids = Vec::new();
    for _ in 0..5 {
        let record = campaign_record("default", None);
        let (created, _) = store.create_campaign(&record).await.unwrap();
        // Submitted again: the same campaign, listed once.
        assert_eq!(store.create_campaign(&record).await.unwrap().0.id, created.id);
        ids.push(created.id);
    }
    let newest_first: Vec<Uuid> = ids.iter().rev().copied().collect();
    let first = store.campaigns(None, 3).await.unwrap();
    assert_eq!(first.iter().map(|c| c.id).collect::<Vec<_>>(), newest_first[..3]);
    assert_eq!(first[0].name.as_deref(), Some("spring sale"));
    let rest = store.campaigns(Some(first[2].id), 10).await.unwrap();
    assert_eq!(rest.iter().map(|c| c.id).collect::<Vec<_>>(), newest_first[3..]);
    assert!(store.campaigns(Some(ids[0]), 10).await.unwrap().is_empty());
}

mod campaign_list {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::campaigns_are_listed_newest_first(&super::Backend::sqlite_file()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis() {
        super::campaigns_are_listed_newest_first(&super::Backend::redis()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::campaigns_are_listed_newest_first(&super::Backend::postgres().await).await;
    }
}

/// The owner of an accepted job of a tenant (issue 22's scoped tokens), recorded with the accept.
async fn owners_are_recorded_with_the_accept(backend: &Backend) {
    let store = backend.store().await;
    let (mine, unknown, t0) = (job(), job(), now_millis());
    store.accept_owned("acme", &[mine, mine], t0).await.unwrap();
    store.accept_owned("acme", &[], t0).await.unwrap();
    assert!(store.accepted(mine).await.unwrap());
    assert_eq!(store.owner(mine).await.unwrap().as_deref(), Some("acme"));
    assert_eq!(store.owner(unknown).await.unwrap(), None);
    assert!(!store.accepted(unknown).await.unwrap());
}

mod owners {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::owners_are_recorded_with_the_accept(&super::Backend::sqlite_file()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis() {
        super::owners_are_recorded_with_the_accept(&super::Backend::redis()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::owners_are_recorded_with_the_accept(&super::Backend::postgres().await).await;
    }
}

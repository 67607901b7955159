//! One contract suite, run against every backend: SQLite on a file, SQLite in memory, and Redis at
//! `redis://127.0.0.1:6379/0` (each test in its own random namespace, so tests run in parallel and
//! nothing is flushed). Leases are driven by the caller-supplied `now`: nothing sleeps.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tempfile::TempDir;
use uuid::Uuid;
use yizhan_state::{
    Claim, ClaimRequest, Finish, FinishedState, Millis, RedisStore, SqliteStore, StateStore, now_millis,
};

const REDIS_URL: &str = "redis://127.0.0.1:6379/0";
const LEASE: Duration = Duration::from_secs(30);
const LEASE_MS: Millis = 30_000;
const RETENTION: Duration = Duration::from_secs(3600);

enum Backend {
    SqliteFile(TempDir),
    SqliteMemory,
    Redis,
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
    ClaimRequest { key: key.to_string(), job_id, attempt, owner: owner.to_string(), now, lease: LEASE, replay: false }
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
    let finish = Finish::Succeeded { attempt: 1, result: Some(json!({"id": 7})) };
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
    store.finish(&dead_key, "w2", &Finish::Succeeded { attempt: 1, result: None }, t0 + 20).await.unwrap();
    let succeeded = Claim::Finished { state: FinishedState::Succeeded };
    assert_eq!(store.claim(&replay(&dead_key, dead_job, t0 + 30)).await.unwrap(), succeeded);

    let (ok_key, ok_job) = (unique("k"), job());
    store.claim(&request(&ok_key, ok_job, 1, "w1", t0)).await.unwrap();
    store.finish(&ok_key, "w1", &Finish::Succeeded { attempt: 1, result: None }, t0 + 5).await.unwrap();
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
    let finish = Finish::Succeeded { attempt: 1, result: Some(result.clone()) };
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
    let finish = Finish::Succeeded { attempt: 1, result: None };
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
    a.finish(&key, "w1", &Finish::Succeeded { attempt: 1, result: None }, t0 + 1).await.unwrap();
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
);

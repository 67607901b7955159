//! Redis claims and finishes made at the same time go out as one batched script call: each is
//! still answered as if it ran alone. Each test works in a namespace of its own, deleted when the
//! test ends, passed or failed.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{acquired, claim_each_key_three_times_at_once, new_campaign, request};
use uuid::Uuid;
use yizhan_state::{
    Claim, DeliveryState, ExpectedReceipts, Finish, FinishedState, RedisStore, StateStore, StoreError, now_millis,
};

const REDIS_URL: &str = "redis://127.0.0.1:6379/0";
const RETENTION: Duration = Duration::from_secs(3600);

/// A namespace whose keys are deleted when the test ends, passed or panicked (as the harness
/// does): Drop cannot await and may run on the test's runtime, so the deletion runs on a thread
/// of its own with its own connection, bounded by a timeout.
struct Namespace(String);

impl Namespace {
    fn new() -> Self {
        Self(format!("t-batch-{}", Uuid::now_v7().simple()))
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let namespace = self.0.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let _ = runtime
                .block_on(async { tokio::time::timeout(Duration::from_secs(10), delete_namespace(&namespace)).await });
        });
        let _ = thread.join();
    }
}

async fn delete_namespace(namespace: &str) {
    let Ok(client) = redis::Client::open(REDIS_URL) else { return };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else { return };
    let Ok(keys) = redis::cmd("KEYS").arg(format!("{namespace}:*")).query_async::<Vec<String>>(&mut conn).await else {
        return;
    };
    if !keys.is_empty() {
        let _: Result<(), _> = redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
    }
}

/// A raw connection, to write what the store never would.
async fn raw() -> redis::aio::MultiplexedConnection {
    redis::Client::open(REDIS_URL).unwrap().get_multiplexed_async_connection().await.unwrap()
}

async fn store(namespace: &Namespace) -> Arc<RedisStore> {
    Arc::new(RedisStore::open(REDIS_URL, &namespace.0, RETENTION).await.expect("open redis (is it on 127.0.0.1:6379?)"))
}

fn succeeded(receipts: ExpectedReceipts) -> Finish {
    Finish::Succeeded { attempt: 1, result: Some(serde_json::json!({"ok": true})), receipts }
}

/// 100 keys × 3 claimers at once: one claimer per key acquires it, the others find it busy; the
/// winners' finishes (some expecting receipts, so the batch's items differ in length) all land,
/// and each key ends finished once, its campaign counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_and_finishes_are_answered_one_by_one() {
    let namespace = Namespace::new();
    let store = store(&namespace).await;
    let campaign = new_campaign(store.as_ref(), 100).await;
    let t0 = now_millis();
    let keys: Vec<(String, Uuid)> = (0..100).map(|i| (format!("k-{i}"), Uuid::now_v7())).collect();
    let winners = claim_each_key_three_times_at_once(&store, &keys, t0, campaign).await;

    // Every tenth job expects two receipts, pulled from one queue.
    let pull = "sms";
    let expected = |index: usize| {
        if !index.is_multiple_of(10) {
            return ExpectedReceipts::default();
        }
        ExpectedReceipts {
            sids: vec![
                (format!("sid-{index}-a"), format!("r{index}a")),
                (format!("sid-{index}-b"), format!("r{index}b")),
            ],
            pull: Some(pull.to_string()),
            callback: Some(format!("https://example.test/cb/{index}")),
        }
    };
    let finishes: Vec<_> = keys
        .iter()
        .enumerate()
        .map(|(index, (key, _))| {
            let (store, key, owner) = (Arc::clone(&store), key.clone(), winners[index].clone());
            let finish = succeeded(expected(index));
            tokio::spawn(async move { store.finish(&key, &owner, &finish, t0 + 10).await })
        })
        .collect();
    for finish in finishes {
        finish.await.unwrap().unwrap();
    }

    for (index, (key, job)) in keys.iter().enumerate() {
        let status = store.status(*job).await.unwrap().expect("a finished job has a status");
        assert_eq!((status.status.as_str(), status.attempts), ("succeeded", 1), "key {index}");
        assert_eq!(status.result, Some(serde_json::json!({"ok": true})));
        assert_eq!(status.campaign, Some(campaign));
        let delivery = status.delivery.unwrap_or_default();
        let recipients: Vec<&String> = delivery.keys().collect();
        if index.is_multiple_of(10) {
            assert_eq!(recipients, [&format!("r{index}a"), &format!("r{index}b")], "key {index}");
            assert!(delivery.values().all(|d| d.state == DeliveryState::Pending));
        } else {
            assert!(recipients.is_empty(), "key {index}: {recipients:?}");
        }
        let again = store.claim(&request(key, *job, "late", t0 + 20, Some(campaign))).await.unwrap();
        assert_eq!(again, Claim::Finished { state: FinishedState::Succeeded }, "key {index}");
    }
    let (_, status) = store.campaign(campaign).await.unwrap().unwrap();
    assert_eq!((status.counts["succeeded"], status.counts["running"]), (100, 0));
    assert_eq!(status.status, "done");
    let pending = store.take_pending_receipts(pull, t0 + 10, t0 + 60_000, 100).await.unwrap();
    assert_eq!(pending.len(), 20, "two receipts for each of ten jobs");
}

/// Claims queued together, one of them on a record with an unknown state and one on a key that
/// is not a hash: those two fail, each with its own error, and their neighbours are answered as
/// usual; so with finishes. The test runs on one thread, so every spawned call is queued before
/// the batcher runs and they go out as one script call.
#[tokio::test]
async fn a_corrupt_record_fails_only_its_own_claim() {
    let namespace = Namespace::new();
    let store = store(&namespace).await;
    let mut conn = raw().await;
    let t0 = now_millis();
    let keys: Vec<(String, Uuid)> = (0..20).map(|i| (format!("k-{i}"), Uuid::now_v7())).collect();
    let (corrupt, not_a_hash) = (5, 10);
    let ns = &namespace.0;
    let (key, job) = &keys[corrupt];
    assert_eq!(store.claim(&request(key, *job, "w0", t0, None)).await.unwrap(), acquired());
    let _: () = redis::cmd("HSET")
        .arg(format!("{ns}:key:{key}"))
        .arg("state")
        .arg("bogus")
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(format!("{ns}:key:{}", keys[not_a_hash].0))
        .arg("x")
        .query_async(&mut conn)
        .await
        .unwrap();

    let later = t0 + 1;
    let claims: Vec<_> = keys
        .iter()
        .map(|(key, job)| {
            let (store, request) = (Arc::clone(&store), request(key, *job, "w1", later, None));
            tokio::spawn(async move { store.claim(&request).await })
        })
        .collect();
    for (index, claim) in claims.into_iter().enumerate() {
        let answer = claim.await.unwrap();
        let key = &keys[index].0;
        match index {
            i if i == corrupt => match answer {
                Err(StoreError::Corrupt { key: named, reason }) => {
                    assert_eq!(&named, key);
                    assert!(reason.contains("bogus"), "{reason}");
                }
                other => panic!("the corrupt record's claim answered {other:?}"),
            },
            i if i == not_a_hash => match answer {
                Err(StoreError::Redis(error)) => assert!(error.to_string().contains("WRONGTYPE"), "{error}"),
                other => panic!("the claim of a key that is not a hash answered {other:?}"),
            },
            _ => assert_eq!(answer.unwrap(), acquired(), "key {index}"),
        }
    }

    let finishes: Vec<_> = keys
        .iter()
        .enumerate()
        .filter(|(index, _)| *index != corrupt)
        .map(|(index, (key, _))| {
            let (store, key) = (Arc::clone(&store), key.clone());
            tokio::spawn(
                async move { (index, store.finish(&key, "w1", &succeeded(Default::default()), later + 1).await) },
            )
        })
        .collect();
    for finish in finishes {
        let (index, answer) = finish.await.unwrap();
        if index == not_a_hash {
            match answer {
                Err(StoreError::Redis(error)) => assert!(error.to_string().contains("WRONGTYPE"), "{error}"),
                other => panic!("the finish of a key that is not a hash answered {other:?}"),
            }
        } else {
            answer.unwrap();
            let status = store.status(keys[index].1).await.unwrap().unwrap();
            assert_eq!(status.status, "succeeded", "key {index}");
        }
    }
}

/// One batch of claims and one of finishes over two campaigns and an unknown one: each
/// campaign's counters move by its own jobs only (the script sums them per campaign and writes
/// them at its end), an unknown campaign gets no hash, and a duplicate claimed twice in one batch
/// is counted once. The test runs on one thread, so every spawned call of a step is queued before
/// the batcher runs.
#[tokio::test]
async fn one_batch_moves_each_campaigns_counters_by_its_own_jobs() {
    let namespace = Namespace::new();
    let store = store(&namespace).await;
    let (a, b, unknown) =
        (new_campaign(store.as_ref(), 6).await, new_campaign(store.as_ref(), 4).await, Uuid::now_v7());
    let t0 = now_millis();
    let jobs: Vec<(String, Uuid, Uuid)> = (0..6)
        .map(|i| (format!("a-{i}"), Uuid::now_v7(), a))
        .chain((0..4).map(|i| (format!("b-{i}"), Uuid::now_v7(), b)))
        .chain([("u-0".to_string(), Uuid::now_v7(), unknown)])
        .collect();
    let claims: Vec<_> = jobs
        .iter()
        .map(|(key, job, campaign)| {
            let (store, request) = (Arc::clone(&store), request(key, *job, "w", t0, Some(*campaign)));
            tokio::spawn(async move { store.claim(&request).await })
        })
        .collect();
    for claim in claims {
        assert_eq!(claim.await.unwrap().unwrap(), acquired());
    }
    let counts = |campaign: Uuid| {
        let store = Arc::clone(&store);
        async move {
            let (_, status) = store.campaign(campaign).await.unwrap().expect("the campaign exists");
            status.counts.into_iter().filter(|(_, n)| *n > 0).collect::<std::collections::BTreeMap<_, _>>()
        }
    };
    assert_eq!(counts(a).await, [("running".to_string(), 6)].into());
    assert_eq!(counts(b).await, [("running".to_string(), 4)].into());

    let finish_of = |key: &str| match key {
        "a-4" => Finish::Dead { attempt: 1, kind: "permanent".into(), error: "no".into(), progress: None },
        "a-5" => Finish::Retrying { attempt: 1, progress: None, error: "later".into(), next_attempt_at: t0 + 60_000 },
        _ => succeeded(Default::default()),
    };
    let finishes: Vec<_> = jobs
        .iter()
        .map(|(key, _, _)| {
            let (store, key, finish) = (Arc::clone(&store), key.clone(), finish_of(key));
            tokio::spawn(async move { store.finish(&key, "w", &finish, t0 + 1).await })
        })
        .collect();
    for finish in finishes {
        finish.await.unwrap().unwrap();
    }

    // A second job under a-0's key, delivered twice, and one under b-0's key.
    let (again_a, again_b) = (Uuid::now_v7(), Uuid::now_v7());
    let duplicates: Vec<_> = [("a-0", again_a, a), ("a-0", again_a, a), ("b-0", again_b, b)]
        .into_iter()
        .map(|(key, job, campaign)| {
            let (store, request) = (Arc::clone(&store), request(key, job, "w", t0 + 2, Some(campaign)));
            tokio::spawn(async move { store.claim(&request).await })
        })
        .collect();
    for claim in duplicates {
        assert_eq!(claim.await.unwrap().unwrap(), Claim::Finished { state: FinishedState::Succeeded });
    }

    let owned = |pairs: &[(&str, u64)]| pairs.iter().map(|(k, n)| (k.to_string(), *n)).collect();
    assert_eq!(counts(a).await, owned(&[("dead", 1), ("duplicate", 1), ("retrying", 1), ("succeeded", 4)]));
    assert_eq!(counts(b).await, owned(&[("duplicate", 1), ("succeeded", 4)]));
    assert!(store.campaign(unknown).await.unwrap().is_none(), "counting creates no campaign");
    let mut conn = raw().await;
    let exists: bool =
        redis::cmd("EXISTS").arg(format!("{}:campaign:{unknown}", namespace.0)).query_async(&mut conn).await.unwrap();
    assert!(!exists, "counting writes no hash for an unknown campaign");
}

/// A campaign whose key is not a hash (written by something else) fails the claims that count in
/// it, each with Redis's error, and only those: the same batch's claims of another campaign are
/// acquired and counted. The test runs on one thread, so the claims go out as one script call.
#[tokio::test]
async fn a_corrupt_campaign_fails_only_its_own_jobs() {
    let namespace = Namespace::new();
    let store = store(&namespace).await;
    let (corrupt, sound) = (new_campaign(store.as_ref(), 3).await, new_campaign(store.as_ref(), 3).await);
    let _: () = redis::cmd("SET")
        .arg(format!("{}:campaign:{corrupt}", namespace.0))
        .arg("x")
        .query_async(&mut raw().await)
        .await
        .unwrap();
    let t0 = now_millis();
    let claims: Vec<_> = (0..6)
        .map(|i| {
            let campaign = if i % 2 == 0 { corrupt } else { sound };
            let (store, request) =
                (Arc::clone(&store), request(&format!("k-{i}"), Uuid::now_v7(), "w", t0, Some(campaign)));
            tokio::spawn(async move { (campaign, store.claim(&request).await) })
        })
        .collect();
    for claim in claims {
        match claim.await.unwrap() {
            (campaign, Err(StoreError::Redis(error))) if campaign == corrupt => {
                assert!(error.to_string().contains("WRONGTYPE"), "{error}")
            }
            (campaign, answer) => {
                assert_eq!(campaign, sound, "a claim of the corrupt campaign answered {answer:?}");
                assert_eq!(answer.unwrap(), acquired());
            }
        }
    }
    let (_, status) = store.campaign(sound).await.unwrap().unwrap();
    assert_eq!((status.counts["running"], status.counts["queued"]), (3, 0));
}

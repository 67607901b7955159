//! PostgreSQL claims and finishes made at the same time share a transaction: each is still
//! answered as if it ran alone. Each test works in a database of its own, dropped when the test
//! ends, passed or failed.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{acquired, claim_each_key_three_times_at_once, new_campaign, request};
use uuid::Uuid;
use yizhan_state::{
    Claim, ExpectedReceipts, Finish, FinishedState, PostgresStore, ScratchDatabase, StateStore, StoreError, now_millis,
};

const RETENTION: Duration = Duration::from_secs(3600);
const NS: &str = "t-batch";

async fn database() -> ScratchDatabase {
    ScratchDatabase::create().await.expect("create a database (is PostgreSQL on 127.0.0.1:5432?)")
}

async fn store(database: &ScratchDatabase) -> Arc<PostgresStore> {
    Arc::new(PostgresStore::open(database.url(), NS, RETENTION).await.expect("open postgres"))
}

/// A connection of its own, to read and write what the store would not.
async fn raw(database: &ScratchDatabase) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(database.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// Transactions that wrote the namespace's records: rows written by one share its `xmin`.
async fn writing_transactions(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one("SELECT COUNT(DISTINCT xmin::text) FROM yizhan_keys WHERE namespace = $1", &[&NS])
        .await
        .unwrap()
        .get(0)
}

/// 100 keys × 3 claimers at once (queued before the batcher runs: one thread): one claimer per
/// key acquires it, the others find it busy, and a few transactions wrote all 100 records; the
/// winners' finishes land the same way, each key finished once and counted once in its campaign.
#[tokio::test]
async fn concurrent_claims_and_finishes_share_transactions() {
    let database = database().await;
    let store = store(&database).await;
    let client = raw(&database).await;
    let campaign = new_campaign(store.as_ref(), 100).await;
    let t0 = now_millis();
    let keys: Vec<(String, Uuid)> = (0..100).map(|i| (format!("k-{i}"), Uuid::now_v7())).collect();
    let winners = claim_each_key_three_times_at_once(&store, &keys, t0, campaign).await;
    let claimed_in = writing_transactions(&client).await;
    assert!(claimed_in <= 10, "300 claims queued together were recorded in {claimed_in} transactions");
    let (_, status) = store.campaign(campaign).await.unwrap().unwrap();
    assert_eq!((status.counts["running"], status.counts["queued"]), (100, 0));

    let finishes: Vec<_> = keys
        .iter()
        .enumerate()
        .map(|(index, (key, _))| {
            let (store, key, owner) = (Arc::clone(&store), key.clone(), winners[index].clone());
            let finish = Finish::Succeeded {
                attempt: 1,
                result: Some(serde_json::json!({"ok": true})),
                receipts: ExpectedReceipts::default(),
            };
            tokio::spawn(async move { store.finish(&key, &owner, &finish, t0 + 10).await })
        })
        .collect();
    for finish in finishes {
        finish.await.unwrap().unwrap();
    }
    let finished_in = writing_transactions(&client).await;
    assert!(finished_in <= 10, "100 finishes queued together were recorded in {finished_in} transactions");

    for (index, (key, job)) in keys.iter().enumerate() {
        let status = store.status(*job).await.unwrap().expect("a finished job has a status");
        assert_eq!((status.status.as_str(), status.attempts), ("succeeded", 1), "key {index}");
        let again = store.claim(&request(key, *job, "late", t0 + 20, Some(campaign))).await.unwrap();
        assert_eq!(again, Claim::Finished { state: FinishedState::Succeeded }, "key {index}");
    }
    let (_, status) = store.campaign(campaign).await.unwrap().unwrap();
    assert_eq!((status.counts["succeeded"], status.counts["running"]), (100, 0));
    assert_eq!(status.status, "done");
}

/// Claims queued together, one of them on a record with an unknown state: that one fails with its
/// own error, and its neighbours, rolled back with it, are answered as usual (each on its own).
#[tokio::test]
async fn a_corrupt_record_fails_only_its_own_claim() {
    let database = database().await;
    let store = store(&database).await;
    let client = raw(&database).await;
    let t0 = now_millis();
    let keys: Vec<(String, Uuid)> = (0..20).map(|i| (format!("k-{i}"), Uuid::now_v7())).collect();
    let corrupt = 5;
    let (key, job) = &keys[corrupt];
    assert_eq!(store.claim(&request(key, *job, "w0", t0, None)).await.unwrap(), acquired());
    client
        .execute("UPDATE yizhan_keys SET state = 'bogus' WHERE namespace = $1 AND key = $2", &[&NS, key])
        .await
        .unwrap();

    let claims: Vec<_> = keys
        .iter()
        .map(|(key, _)| {
            let (store, request) = (Arc::clone(&store), request(key, Uuid::now_v7(), "w1", t0 + 1, None));
            tokio::spawn(async move { store.claim(&request).await })
        })
        .collect();
    for (index, claim) in claims.into_iter().enumerate() {
        let answer = claim.await.unwrap();
        if index == corrupt {
            assert!(matches!(answer, Err(StoreError::Corrupt { .. })), "key {index}: {answer:?}");
        } else {
            assert_eq!(answer.unwrap(), acquired(), "key {index}");
        }
    }
    let held: i64 = client
        .query_one("SELECT COUNT(*) FROM yizhan_keys WHERE namespace = $1 AND owner = 'w1'", &[&NS])
        .await
        .unwrap()
        .get(0);
    assert_eq!(held, 19, "each neighbour recorded once");
}

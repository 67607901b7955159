//! What is particular to one backend: SQLite retention and files, Redis expiry, URL handling and
//! keeping passwords out of errors.

mod common;

use std::time::Duration;

use common::{LEASE, acquired, request};
use uuid::Uuid;
use yizhan_state::{
    CampaignRecord, Claim, ClaimRequest, Finish, Parked, ParkingLot, RedisStore, SqliteParking, SqliteStore,
    StateStore, StoreError, WaitReason, now_millis, open, open_with_retention,
};

const REDIS_URL: &str = "redis://127.0.0.1:6379/0";

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", Uuid::now_v7())
}

#[tokio::test]
async fn sqlite_prune_deletes_records_older_than_retention() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("state.db").display());
    let hour = Duration::from_secs(3600);
    let store = open_with_retention(&url, "ns", hour).await.unwrap();
    let t0 = now_millis();
    let (old_key, old_job) = (unique("old"), Uuid::now_v7());
    let (new_key, new_job) = (unique("new"), Uuid::now_v7());
    store.claim(&request(&old_key, old_job, "w1", t0, None)).await.unwrap();
    let done = Finish::Succeeded { attempt: 1, result: None, receipts: Default::default() };
    store.finish(&old_key, "w1", &done, t0 + 1_000).await.unwrap();
    store.claim(&request(&new_key, new_job, "w1", t0 + 10_000, None)).await.unwrap();

    // Unchanged for exactly the retention: kept.
    assert_eq!(store.prune(t0 + 1_000 + 3_600_000).await.unwrap(), 0);
    assert!(store.status(old_job).await.unwrap().is_some());
    // One millisecond more: gone, and the key can be claimed afresh.
    assert_eq!(store.prune(t0 + 1_001 + 3_600_000).await.unwrap(), 1);
    assert_eq!(store.status(old_job).await.unwrap(), None);
    assert!(store.status(new_job).await.unwrap().is_some());
    assert_eq!(store.claim(&request(&old_key, Uuid::now_v7(), "w2", t0 + 3_700_000, None)).await.unwrap(), acquired());
}

#[tokio::test]
async fn sqlite_prune_keeps_a_job_findable_while_its_record_is_recent() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("state.db").display());
    let hour = 3_600_000;
    let store = open_with_retention(&url, "ns", Duration::from_secs(3600)).await.unwrap();
    let (key, job, t0) = (unique("slow"), Uuid::now_v7(), now_millis());
    // Claimed, then finished two hours later (retries): the claim is older than the retention,
    // the record is not.
    store.claim(&request(&key, job, "w1", t0, None)).await.unwrap();
    store
        .finish(
            &key,
            "w1",
            &Finish::Succeeded { attempt: 1, result: None, receipts: Default::default() },
            t0 + 2 * hour,
        )
        .await
        .unwrap();
    assert_eq!(store.prune(t0 + 2 * hour + 1_000).await.unwrap(), 0);
    assert!(store.status(job).await.unwrap().is_some());
    assert_eq!(store.prune(t0 + 3 * hour + 1).await.unwrap(), 1);
    assert_eq!(store.status(job).await.unwrap(), None);
}

#[tokio::test]
async fn sqlite_prune_spares_other_namespaces() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let path = path.to_str().unwrap();
    let retention = Duration::from_secs(60);
    let a = SqliteStore::open(path, "a", retention).await.unwrap();
    let b = SqliteStore::open(path, "b", retention).await.unwrap();
    let (key, job_a, job_b, t0) = (unique("k"), Uuid::now_v7(), Uuid::now_v7(), now_millis());
    a.claim(&request(&key, job_a, "w1", t0, None)).await.unwrap();
    b.claim(&request(&key, job_b, "w1", t0, None)).await.unwrap();
    assert_eq!(a.prune(t0 + 3_600_000).await.unwrap(), 1);
    assert_eq!(a.status(job_a).await.unwrap(), None);
    assert!(b.status(job_b).await.unwrap().is_some());
}

#[tokio::test]
async fn sqlite_records_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let path = path.to_str().unwrap();
    let (key, job, t0) = (unique("k"), Uuid::now_v7(), now_millis());
    let first = SqliteStore::open(path, "ns", Duration::from_secs(60)).await.unwrap();
    assert_eq!(first.claim(&request(&key, job, "w1", t0, None)).await.unwrap(), acquired());
    drop(first);
    let second = SqliteStore::open(path, "ns", Duration::from_secs(60)).await.unwrap();
    assert!(matches!(
        second.claim(&request(&key, Uuid::now_v7(), "w2", t0 + 1, None)).await.unwrap(),
        Claim::Busy { .. }
    ));
    assert_eq!(second.status(job).await.unwrap().unwrap().status, "running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_two_stores_on_one_file_agree() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let path = path.to_str().unwrap();
    let a = std::sync::Arc::new(SqliteStore::open(path, "ns", Duration::from_secs(60)).await.unwrap());
    let b = std::sync::Arc::new(SqliteStore::open(path, "ns", Duration::from_secs(60)).await.unwrap());
    let (key, t0) = (unique("k"), now_millis());
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            let request = request(&key, Uuid::now_v7(), &format!("w{i}"), t0, None);
            tokio::spawn(async move { store.claim(&request).await })
        })
        .collect();
    let mut winners = 0;
    for task in tasks {
        if task.await.unwrap().unwrap() == acquired() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
}

#[tokio::test]
async fn sqlite_urls_open() {
    let store = open("sqlite::memory:", "ns").await.unwrap();
    let (key, job, t0) = (unique("k"), Uuid::now_v7(), now_millis());
    assert_eq!(store.claim(&request(&key, job, "w1", t0, None)).await.unwrap(), acquired());
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("x.db").display());
    open(&url, "ns").await.unwrap();
    assert!(dir.path().join("x.db").exists());
}

/// A file written before campaigns (no `campaign` column on records, no `campaign`, `held`,
/// `parked_due` on parked entries) opens, keeps its rows and takes campaign jobs.
#[tokio::test]
async fn sqlite_files_from_before_campaigns_are_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let (old_key, old_job, t0) = (unique("old"), Uuid::now_v7(), now_millis());
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE yizhan_keys (
                namespace TEXT NOT NULL, key TEXT NOT NULL, job_id TEXT NOT NULL, state TEXT NOT NULL,
                attempt INTEGER NOT NULL, owner TEXT, lease_until INTEGER,
                retry_published INTEGER NOT NULL DEFAULT 0, next_attempt_at INTEGER, progress TEXT,
                result TEXT, error TEXT, error_kind TEXT, updated_at INTEGER NOT NULL,
                PRIMARY KEY (namespace, key)) WITHOUT ROWID;
             CREATE TABLE yizhan_jobs (namespace TEXT NOT NULL, job_id TEXT NOT NULL, key TEXT NOT NULL,
                updated_at INTEGER NOT NULL, PRIMARY KEY (namespace, job_id)) WITHOUT ROWID;
             CREATE TABLE yizhan_parked (namespace TEXT NOT NULL, id TEXT NOT NULL, due INTEGER NOT NULL,
                token INTEGER NOT NULL, routing_key TEXT NOT NULL, body BLOB NOT NULL, headers TEXT NOT NULL,
                reason TEXT NOT NULL, PRIMARY KEY (namespace, id)) WITHOUT ROWID;",
        )
        .unwrap();
        conn.execute(
            "INSERT INTO yizhan_keys (namespace, key, job_id, state, attempt, updated_at)
             VALUES ('ns', ?1, ?2, 'succeeded', 1, ?3)",
            rusqlite::params![old_key, old_job.to_string(), t0],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO yizhan_jobs (namespace, job_id, key, updated_at) VALUES ('ns', ?1, ?2, ?3)",
            rusqlite::params![old_job.to_string(), old_key, t0],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO yizhan_parked VALUES ('ns', 'old-entry', 5, 1, 'bulk', x'7b7d', '{}', 'rate_limit')",
            [],
        )
        .unwrap();
    }
    let path = path.to_str().unwrap();
    let store = SqliteStore::open(path, "ns", Duration::from_secs(3600)).await.unwrap();
    let status = store.status(old_job).await.unwrap().unwrap();
    assert_eq!((status.status.as_str(), status.campaign), ("succeeded", None));

    let record = CampaignRecord {
        id: Uuid::now_v7(),
        tenant: "default".into(),
        key: unique("c"),
        head: serde_json::json!({}),
        send_at: None,
        created_at: t0,
    };
    let (campaign, _) = store.create_campaign(&record).await.unwrap();
    store.add_to_campaign(campaign.id, 1).await.unwrap();
    let job = Uuid::now_v7();
    let claim = ClaimRequest { campaign: Some(campaign.id), ..request(&unique("new"), job, "w1", t0, None) };
    assert_eq!(store.claim(&claim).await.unwrap(), acquired());
    assert_eq!(store.status(job).await.unwrap().unwrap().campaign, Some(campaign.id));
    assert_eq!(store.campaign(campaign.id).await.unwrap().unwrap().1.counts["running"], 1);

    let parking = SqliteParking::open(path, "ns").unwrap();
    let taken = parking.take_due(10, 10, LEASE).await.unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!((taken[0].entry.id.as_str(), taken[0].entry.campaign.as_deref()), ("old-entry", None));
    let held = Parked {
        id: "held".into(),
        due: 0,
        routing_key: "bulk".into(),
        body: b"{}".to_vec(),
        headers: "{}".into(),
        reason: "paused".into(),
        campaign: Some(campaign.id.to_string()),
        held: true,
    };
    parking.park(&held).await.unwrap();
    assert_eq!(parking.held_campaigns().await.unwrap(), [campaign.id.to_string()]);
    // A second opening finds everything in place.
    SqliteStore::open(path, "ns", Duration::from_secs(3600)).await.unwrap();
    SqliteParking::open(path, "ns").unwrap();
}

#[tokio::test]
async fn sqlite_prune_keeps_scheduled_records_until_after_their_time() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("state.db").display());
    let hour = 3_600_000;
    let store = open_with_retention(&url, "ns", Duration::from_secs(3600)).await.unwrap();
    let (key, job, t0) = (unique("later"), Uuid::now_v7(), now_millis());
    store.claim(&request(&key, job, "w1", t0, None)).await.unwrap();
    let until = t0 + 10 * hour;
    let waiting =
        Finish::Waiting { attempt: 0, progress: None, reason: "send_at".into(), until, why: WaitReason::Scheduled };
    store.finish(&key, "w1", &waiting, t0).await.unwrap();
    assert_eq!(store.prune(t0 + 5 * hour).await.unwrap(), 0, "still waiting for its time");
    assert_eq!(store.status(job).await.unwrap().unwrap().status, "scheduled");
    assert_eq!(store.prune(until + hour + 1).await.unwrap(), 1);
}

#[tokio::test]
async fn sqlite_prune_keeps_campaigns_while_they_are_active_or_scheduled() {
    let store = open_with_retention("sqlite::memory:", "ns", Duration::from_secs(3600)).await.unwrap();
    let (t0, hour) = (now_millis(), 3_600_000);
    let campaign = |send_at: Option<i64>| CampaignRecord {
        id: Uuid::now_v7(),
        tenant: "default".into(),
        key: unique("c"),
        head: serde_json::json!({}),
        send_at,
        created_at: t0,
    };
    let idle = store.create_campaign(&campaign(None)).await.unwrap().0.id;
    let scheduled = store.create_campaign(&campaign(Some(t0 + 3 * hour))).await.unwrap().0.id;
    let active = store.create_campaign(&campaign(None)).await.unwrap().0.id;
    let claim =
        ClaimRequest { campaign: Some(active), ..request(&unique("k"), Uuid::now_v7(), "w1", t0 + 2 * hour, None) };
    store.claim(&claim).await.unwrap();

    store.prune(t0 + hour + 60_000).await.unwrap();
    assert!(store.campaign(idle).await.unwrap().is_none());
    assert!(store.campaign(scheduled).await.unwrap().is_some());
    assert_eq!(store.campaign(active).await.unwrap().unwrap().1.counts["running"], 1);
    store.prune(t0 + 4 * hour + 60_000).await.unwrap();
    assert!(store.campaign(scheduled).await.unwrap().is_none());
    assert!(store.campaign(active).await.unwrap().is_none());
}

#[tokio::test]
async fn redis_scheduled_records_outlive_the_retention_until_their_time() {
    let ns = unique("test");
    let store = RedisStore::open(REDIS_URL, &ns, Duration::from_secs(600)).await.unwrap();
    let (key, job, t0) = (unique("later"), Uuid::now_v7(), now_millis());
    store.claim(&request(&key, job, "w1", t0, None)).await.unwrap();
    let until = t0 + 3_600_000;
    let waiting =
        Finish::Waiting { attempt: 0, progress: None, reason: "send_at".into(), until, why: WaitReason::Scheduled };
    store.finish(&key, "w1", &waiting, t0).await.unwrap();
    let client = redis::Client::open(REDIS_URL).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    for redis_key in [format!("{ns}:key:{key}"), format!("{ns}:job:{job}")] {
        let ttl: i64 = redis::cmd("PTTL").arg(&redis_key).query_async(&mut conn).await.unwrap();
        assert!(ttl > 3_600_000 && ttl <= 4_200_000, "{redis_key} has PTTL {ttl}");
    }
    // A campaign scheduled an hour ahead outlives the retention too.
    let record = CampaignRecord {
        id: Uuid::now_v7(),
        tenant: "default".into(),
        key: unique("c"),
        head: serde_json::json!({}),
        send_at: Some(until),
        created_at: t0,
    };
    store.create_campaign(&record).await.unwrap();
    let campaign_key = format!("{ns}:campaign:{}", record.id);
    let index_key = format!("{ns}:campaign_key:default:{}", record.key);
    for redis_key in [&campaign_key, &index_key] {
        let ttl: i64 = redis::cmd("PTTL").arg(redis_key).query_async(&mut conn).await.unwrap();
        assert!(ttl > 3_600_000 && ttl <= 4_200_000, "{redis_key} has PTTL {ttl}");
    }
    let _: () = redis::cmd("DEL").arg(&campaign_key).arg(&index_key).query_async(&mut conn).await.unwrap();
    let _: () = redis::cmd("DEL")
        .arg(format!("{ns}:key:{key}"))
        .arg(format!("{ns}:job:{job}"))
        .query_async(&mut conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn sqlite_open_fails_for_a_missing_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no/such/dir/state.db");
    let err = SqliteStore::open(path.to_str().unwrap(), "ns", Duration::from_secs(60)).await.unwrap_err();
    assert!(matches!(err, StoreError::Sqlite(_)), "{err:?}");
}

#[tokio::test]
async fn redis_prune_is_a_no_op_and_keys_expire() {
    let ns = unique("test");
    let retention = Duration::from_secs(600);
    let store = RedisStore::open(REDIS_URL, &ns, retention).await.unwrap();
    let (key, job, t0) = (unique("k"), Uuid::now_v7(), now_millis());
    store.claim(&request(&key, job, "w1", t0, None)).await.unwrap();
    let done = Finish::Succeeded { attempt: 1, result: None, receipts: Default::default() };
    store.finish(&key, "w1", &done, t0 + 1).await.unwrap();
    assert_eq!(store.prune(t0 + 10 * 3_600_000).await.unwrap(), 0);

    let client = redis::Client::open(REDIS_URL).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    for redis_key in [format!("{ns}:key:{key}"), format!("{ns}:job:{job}")] {
        let ttl: i64 = redis::cmd("PTTL").arg(&redis_key).query_async(&mut conn).await.unwrap();
        assert!(ttl > 0 && ttl <= 600_000, "{redis_key} has PTTL {ttl}");
    }
    assert!(format!("{store:?}").contains("127.0.0.1:6379"));
}

#[tokio::test]
async fn passwords_never_appear_in_errors() {
    let cases = [
        // Nothing listens on port 1: fails at connect time.
        "redis://:supersecret@127.0.0.1:1/0",
        "redis://user:supersecret@127.0.0.1:1/0",
        // Not a state store URL at all.
        "bogus://:supersecret@x",
        // A Redis URL the client cannot use.
        "redis://:supersecret@127.0.0.1:6379/notadb",
        // The local Redis has no such user or password: AUTH fails.
        "redis://nobody:supersecret@127.0.0.1:6379/0",
        "redis://:supersecret@127.0.0.1:6379/0",
    ];
    for url in cases {
        match open(url, "ns").await {
            Err(err) => {
                let display = err.to_string();
                let debug = format!("{err:?}");
                assert!(!display.contains("supersecret"), "{url}: {display}");
                assert!(!debug.contains("supersecret"), "{url}: {debug}");
            }
            Ok(_) => panic!("{url} should not open"),
        }
    }
    let err = RedisStore::open("redis://:supersecret@127.0.0.1:1/0", "ns", LEASE).await.unwrap_err();
    assert!(matches!(err, StoreError::Redis(_)), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("supersecret"));
    let err = open("bogus://:supersecret@x", "ns").await.err().unwrap();
    assert!(matches!(err, StoreError::BadUrl(_)), "{err:?}");
}

//! The directory store's contract (snapshots, applied marks, leases, once-per-period claims) on
//! SQLite, Redis (each test in its own namespace) and PostgreSQL (a database of its own).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use yizhan_state::{DirectoryStore, ScratchDatabase, open_directory};

const REDIS: &str = "redis://127.0.0.1:6379/0";

async fn contract(store: Arc<dyn DirectoryStore>) {
    assert_eq!(store.snapshot("hr").await.unwrap(), None);
    assert!(store.applied("hr").await.unwrap().is_empty());
    store.mark_applied("hr", "op-1").await.unwrap();
    store.mark_applied("hr", "op-1").await.unwrap();
    store.mark_applied("hr", "op-2").await.unwrap();
    store.mark_applied("other", "op-3").await.unwrap();
    let applied = store.applied("hr").await.unwrap();
    assert_eq!(applied, HashSet::from(["op-1".to_string(), "op-2".to_string()]));
    store.finish_run("hr", "{\"members\":{}}").await.unwrap();
    assert_eq!(store.snapshot("hr").await.unwrap().as_deref(), Some("{\"members\":{}}"));
    assert!(store.applied("hr").await.unwrap().is_empty(), "a finished run forgets its marks");
    assert_eq!(store.applied("other").await.unwrap().len(), 1, "other configs keep theirs");
    store.finish_run("hr", "{}").await.unwrap();
    assert_eq!(store.snapshot("hr").await.unwrap().as_deref(), Some("{}"));

    let ttl = Duration::from_millis(300);
    assert!(store.lease("run:hr", "a", ttl).await.unwrap());
    assert!(!store.lease("run:hr", "b", ttl).await.unwrap(), "held by a");
    assert!(store.lease("run:hr", "a", ttl).await.unwrap(), "a renews");
    store.release("run:hr", "b").await.unwrap();
    assert!(!store.lease("run:hr", "b", ttl).await.unwrap(), "b cannot release a's lease");
    store.release("run:hr", "a").await.unwrap();
    assert!(store.lease("run:hr", "b", Duration::from_millis(300)).await.unwrap());
    assert!(!store.lease("run:hr", "a", ttl).await.unwrap(), "held by b until it runs out");
    // The lease's own expiry is under test: polled until a takes it over, within a bound.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !store.lease("run:hr", "a", ttl).await.unwrap() {
        assert!(std::time::Instant::now() < deadline, "an expired lease is taken over");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    assert!(store.claim_once("tick:hr:1", ttl).await.unwrap());
    assert!(!store.claim_once("tick:hr:1", ttl).await.unwrap());
    assert!(store.claim_once("tick:hr:2", ttl).await.unwrap());
}

#[tokio::test]
async fn sqlite_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("state.db").display());
    contract(open_directory(&url, "t-dir-sqlite").await.unwrap()).await;
    // Another namespace in the same file sees nothing.
    let other = open_directory(&url, "t-dir-other").await.unwrap();
    assert_eq!(other.snapshot("hr").await.unwrap(), None);
}

#[tokio::test]
async fn postgres_keeps_the_contract() {
    let database = ScratchDatabase::create().await.unwrap();
    contract(open_directory(database.url(), "t-dir-postgres").await.unwrap()).await;
    let other = open_directory(database.url(), "t-dir-other").await.unwrap();
    assert_eq!(other.snapshot("hr").await.unwrap(), None);
}

#[tokio::test]
async fn redis_keeps_the_contract() {
    let namespace = format!("t-dir-redis-{}", uuid::Uuid::now_v7().simple());
    let store = open_directory(REDIS, &namespace).await.unwrap();
    contract(store).await;
    let client = redis::Client::open(REDIS).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{namespace}:*")).query_async(&mut conn).await.unwrap();
    if !keys.is_empty() {
        redis::cmd("DEL").arg(keys).query_async::<()>(&mut conn).await.unwrap();
    }
}

//! The parking lot's contract, on SQLite (a file shared by two handles, as two workers on one node
//! would share it) and on Redis (each test in its own namespace). Times are passed in: nothing sleeps.

use std::sync::Arc;
use std::time::Duration;

use tempfile::TempDir;
use yizhan_state::{Parked, ParkingLot, open_parking};

const REDIS_URL: &str = "redis://127.0.0.1:6379/0";
const LEASE: Duration = Duration::from_secs(30);

fn namespace() -> String {
    format!("parking-test-{}", uuid::Uuid::now_v7().simple())
}

/// Two handles on one parking lot, as two workers of a fleet have.
async fn two_handles(backend: &str, dir: &TempDir) -> (Arc<dyn ParkingLot>, Arc<dyn ParkingLot>) {
    let ns = namespace();
    let url = match backend {
        "sqlite" => format!("sqlite://{}", dir.path().join("state.db").display()),
        _ => REDIS_URL.to_string(),
    };
    let a = open_parking(&url, &ns).await.expect("open parking");
    let b = open_parking(&url, &ns).await.expect("open parking again");
    (a, b)
}

fn entry(id: &str, due: i64) -> Parked {
    Parked {
        id: id.to_string(),
        due,
        routing_key: "bulk".to_string(),
        body: format!("{{\"id\":\"{id}\"}}").into_bytes(),
        headers: "{}".to_string(),
        reason: "rate_limit".to_string(),
    }
}

async fn contract(backend: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = two_handles(backend, &dir).await;
    let t0 = 1_000_000;

    // Nothing is due before its time; due entries come earliest first, whole.
    a.park(&entry("late", t0 + 100_000)).await.unwrap();
    a.park(&entry("early", t0 + 1_000)).await.unwrap();
    a.park(&entry("middle", t0 + 2_000)).await.unwrap();
    assert_eq!(a.waiting().await.unwrap(), 3);
    assert!(a.take_due(t0, 10, LEASE).await.unwrap().is_empty(), "nothing due yet");
    let taken = a.take_due(t0 + 2_000, 10, LEASE).await.unwrap();
    let ids: Vec<&str> = taken.iter().map(|t| t.entry.id.as_str()).collect();
    assert_eq!(ids, ["early", "middle"]);
    assert_eq!(taken[0].entry, entry("early", t0 + 1_000), "taken as parked");

    // A taken entry is hidden from the other worker for the lease, then comes back to anyone.
    assert!(b.take_due(t0 + 2_000, 10, LEASE).await.unwrap().is_empty(), "hidden while taken");
    let lease_ms = LEASE.as_millis() as i64;
    let again = b.take_due(t0 + 2_000 + lease_ms, 10, LEASE).await.unwrap();
    let ids: Vec<&str> = again.iter().map(|t| t.entry.id.as_str()).collect();
    assert_eq!(ids, ["early", "middle"], "a taker that died leaves them to be taken again");

    // A stale release (the first taker's) deletes nothing; the current taker's does.
    let stale: Vec<(String, i64)> = taken.iter().map(|t| (t.entry.id.clone(), t.token)).collect();
    a.release(&stale).await.unwrap();
    assert_eq!(a.waiting().await.unwrap(), 3, "a stale token releases nothing");
    let current: Vec<(String, i64)> = again.iter().map(|t| (t.entry.id.clone(), t.token)).collect();
    b.release(&current).await.unwrap();
    assert_eq!(a.waiting().await.unwrap(), 1, "released entries are gone");

    // Parking an entry again while it is taken (the job came back and must wait once more)
    // replaces it; the release from the earlier round does not delete the new wait.
    let late = a.take_due(t0 + 100_000, 10, LEASE).await.unwrap();
    assert_eq!(late.len(), 1);
    a.park(&entry("late", t0 + 160_000)).await.unwrap();
    a.release(&[(late[0].entry.id.clone(), late[0].token)]).await.unwrap();
    assert_eq!(a.waiting().await.unwrap(), 1, "the new wait survived the old release");
    assert!(a.take_due(t0 + 159_999, 10, LEASE).await.unwrap().is_empty(), "due at its new time");
    assert_eq!(a.take_due(t0 + 160_000, 10, LEASE).await.unwrap().len(), 1);

    // `limit` bounds a pass.
    for i in 0..5 {
        a.park(&entry(&format!("bulk-{i}"), t0)).await.unwrap();
    }
    assert_eq!(a.take_due(t0, 3, LEASE).await.unwrap().len(), 3);
    assert_eq!(a.take_due(t0, 3, LEASE).await.unwrap().len(), 2);
}

#[tokio::test]
async fn sqlite_parking_lot_holds_hides_and_releases() {
    contract("sqlite").await;
}

#[tokio::test]
async fn redis_parking_lot_holds_hides_and_releases() {
    contract("redis").await;
}

#[tokio::test]
async fn namespaces_do_not_see_each_other() {
    let a = open_parking(REDIS_URL, &namespace()).await.unwrap();
    let b = open_parking(REDIS_URL, &namespace()).await.unwrap();
    a.park(&entry("x", 1)).await.unwrap();
    assert!(b.take_due(10, 10, LEASE).await.unwrap().is_empty());
    assert_eq!(a.take_due(10, 10, LEASE).await.unwrap().len(), 1);
}

//! The parking lot's contract, on SQLite (a file shared by two handles, as two workers on one node
//! would share it), on Redis (each test in its own namespace) and on PostgreSQL (each test in a
//! database of its own). Times are passed in: nothing sleeps.

use std::sync::Arc;
use std::time::Duration;

use tempfile::TempDir;
use yizhan_state::{Parked, ParkingLot, ScratchDatabase, Taken, open_parking};

const REDIS_URL: &str = "redis://127.0.0.1:6379/0";
const LEASE: Duration = Duration::from_secs(30);

fn namespace() -> String {
    format!("parking-test-{}", uuid::Uuid::now_v7().simple())
}

/// Where a test's parking lot lives: a temp dir for SQLite, a database of its own for PostgreSQL.
struct Place {
    dir: TempDir,
    database: Option<ScratchDatabase>,
}

impl Place {
    async fn new(backend: &str) -> Place {
        let database = match backend {
            "postgres" => Some(ScratchDatabase::create().await.expect("create a postgres database")),
            _ => None,
        };
        Place { dir: tempfile::tempdir().expect("temp dir"), database }
    }
}

/// Two handles on one parking lot, as two workers of a fleet have.
async fn two_handles(backend: &str, place: &Place) -> (Arc<dyn ParkingLot>, Arc<dyn ParkingLot>) {
    let ns = namespace();
    let url = match (backend, &place.database) {
        ("sqlite", _) => format!("sqlite://{}", place.dir.path().join("state.db").display()),
        (_, Some(database)) => database.url().to_string(),
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
        campaign: None,
        held: false,
    }
}

async fn contract(backend: &str) {
    let dir = Place::new(backend).await;
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
async fn postgres_parking_lot_holds_hides_and_releases() {
    contract("postgres").await;
}

fn campaign_entry(id: &str, campaign: &str, held: bool, due: i64) -> Parked {
    Parked { campaign: Some(campaign.to_string()), held, reason: "paused".to_string(), ..entry(id, due) }
}

fn ids(taken: &[Taken]) -> Vec<&str> {
    let mut ids: Vec<&str> = taken.iter().map(|t| t.entry.id.as_str()).collect();
    ids.sort_unstable();
    ids
}

/// Held entries wait for a wake whatever their due time; a wake makes a campaign's held entries
/// (or all its entries) due at once, and `held_campaigns` names the campaigns still holding some.
async fn hold_and_wake(backend: &str) {
    let dir = Place::new(backend).await;
    let (a, b) = two_handles(backend, &dir).await;
    let t0 = 1_000_000;
    let far = t0 + 86_400_000;

    for id in ["c1-a", "c1-b", "c1-c"] {
        a.park(&campaign_entry(id, "c1", true, t0)).await.unwrap();
    }
    b.park(&campaign_entry("c2-a", "c2", true, t0)).await.unwrap();
    a.park(&campaign_entry("c1-later", "c1", false, far)).await.unwrap();
    a.park(&entry("plain", t0)).await.unwrap();
    assert_eq!(a.waiting().await.unwrap(), 6, "held entries wait too");
    assert_eq!(b.held_campaigns().await.unwrap(), ["c1", "c2"]);

    let taken = a.take_due(far, 10, LEASE).await.unwrap();
    assert_eq!(ids(&taken), ["c1-later", "plain"], "held entries are never due");
    a.release(&taken.iter().map(|t| (t.entry.id.clone(), t.token)).collect::<Vec<_>>()).await.unwrap();
    a.park(&campaign_entry("c1-later", "c1", false, far)).await.unwrap();

    // Resume c1: its held entries are due at the wake's time; its scheduled one keeps its time.
    let now = t0 + 5_000;
    assert_eq!(b.wake("c1", true, now).await.unwrap(), 3);
    assert_eq!(a.held_campaigns().await.unwrap(), ["c2"]);
    assert!(a.take_due(now - 1, 10, LEASE).await.unwrap().is_empty());
    let taken = a.take_due(now, 10, LEASE).await.unwrap();
    assert_eq!(ids(&taken), ["c1-a", "c1-b", "c1-c"]);
    for t in &taken {
        assert_eq!((t.entry.due, t.entry.held, t.entry.campaign.as_deref()), (now, false, Some("c1")));
    }
    a.release(&taken.iter().map(|t| (t.entry.id.clone(), t.token)).collect::<Vec<_>>()).await.unwrap();
    assert_eq!(b.wake("c1", true, now).await.unwrap(), 0, "nothing held any more");

    // Cancel c1: everything of it is due now, including what waited for a later time.
    assert_eq!(b.wake("c1", false, now).await.unwrap(), 1);
    assert_eq!(ids(&a.take_due(now, 10, LEASE).await.unwrap()), ["c1-later"]);
    assert_eq!(b.wake("c1", false, now).await.unwrap(), 0, "taken entries are left to their taker");

    // Parked again without the hold (the job came back once its campaign resumed): not held.
    a.park(&campaign_entry("c2-a", "c2", false, now)).await.unwrap();
    assert!(a.held_campaigns().await.unwrap().is_empty());
    assert_eq!(ids(&a.take_due(now, 10, LEASE).await.unwrap()), ["c2-a"]);
    // And held again after it was due: hidden until woken.
    a.park(&campaign_entry("c2-b", "c2", false, now)).await.unwrap();
    a.park(&campaign_entry("c2-b", "c2", true, now)).await.unwrap();
    assert!(a.take_due(far, 10, LEASE).await.unwrap().iter().all(|t| t.entry.id != "c2-b"));
    assert_eq!(a.held_campaigns().await.unwrap(), ["c2"]);
    assert_eq!(a.wake("c2", false, far).await.unwrap(), 1);
    assert_eq!(ids(&a.take_due(far, 10, LEASE).await.unwrap()), ["c2-b"]);

    // Everything taken once its lease ran out, and released: nothing is left behind.
    let rest = a.take_due(far + 2 * LEASE.as_millis() as i64, 100, LEASE).await.unwrap();
    a.release(&rest.iter().map(|t| (t.entry.id.clone(), t.token)).collect::<Vec<_>>()).await.unwrap();
    assert_eq!(a.waiting().await.unwrap(), 0);
    assert!(a.held_campaigns().await.unwrap().is_empty());
}

/// More held entries than one wake chunk: one call wakes them all.
async fn wake_goes_in_chunks(backend: &str) {
    let dir = Place::new(backend).await;
    let (a, _) = two_handles(backend, &dir).await;
    const HELD: usize = 12_345;
    const LATER: usize = 10_500;
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in 0..8 {
        let lot = Arc::clone(&a);
        tasks.spawn(async move {
            for i in (chunk..HELD).step_by(8) {
                lot.park(&campaign_entry(&format!("held-{i}"), "big", true, 1)).await.unwrap();
            }
            for i in (chunk..LATER).step_by(8) {
                lot.park(&campaign_entry(&format!("later-{i}"), "big", false, 1_000_000)).await.unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("park task");
    }
    assert_eq!(a.waiting().await.unwrap(), (HELD + LATER) as u64);
    assert_eq!(a.wake("big", true, 10).await.unwrap(), HELD as u64);
    assert!(a.held_campaigns().await.unwrap().is_empty());
    assert_eq!(a.wake("big", false, 10).await.unwrap(), LATER as u64);
    let mut due = 0;
    loop {
        let taken = a.take_due(10, 5_000, LEASE).await.unwrap();
        if taken.is_empty() {
            break;
        }
        due += taken.len();
        a.release(&taken.iter().map(|t| (t.entry.id.clone(), t.token)).collect::<Vec<_>>()).await.unwrap();
    }
    assert_eq!(due, HELD + LATER);
    assert_eq!(a.waiting().await.unwrap(), 0);
}

#[tokio::test]
async fn sqlite_parking_lot_holds_and_wakes_campaigns() {
    hold_and_wake("sqlite").await;
}

#[tokio::test]
async fn redis_parking_lot_holds_and_wakes_campaigns() {
    hold_and_wake("redis").await;
}

#[tokio::test]
async fn postgres_parking_lot_holds_and_wakes_campaigns() {
    hold_and_wake("postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_wake_goes_in_chunks() {
    wake_goes_in_chunks("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_wake_goes_in_chunks() {
    wake_goes_in_chunks("redis").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_wake_goes_in_chunks() {
    wake_goes_in_chunks("postgres").await;
}

#[tokio::test]
async fn namespaces_do_not_see_each_other() {
    let a = open_parking(REDIS_URL, &namespace()).await.unwrap();
    let b = open_parking(REDIS_URL, &namespace()).await.unwrap();
    a.park(&entry("x", 1)).await.unwrap();
    assert!(b.take_due(10, 10, LEASE).await.unwrap().is_empty());
    assert_eq!(a.take_due(10, 10, LEASE).await.unwrap().len(), 1);
}

//! Workers that die or are stopped mid-run: nothing is lost, and nothing is sent twice except
//! what the contract allows (jobs in flight at a SIGKILL, under `on_ambiguous = "retry"`).

use std::collections::HashMap;
use std::time::Duration;

use yizhan_sandbox::{Fault, Provider, SandboxConfig};
use yizhan_tests::{Harness, LONG_WAIT, Store, number, sms_job};

const CONCURRENCY: &str = "16";

const STRICT_CONFIG: &str = r#"
[connectors.tencent_sms.strict]
secret_id = "AKIDsandbox0000000000000000000000000"
secret_key = "${YIZHAN_TEST_SMS_KEY}"
sdk_app_id = "1400000000"
endpoint = "ENDPOINT"
on_ambiguous = "dead_letter"
"#;

fn sms_per_number(h: &Harness) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for sms in h.sandbox().sent_sms() {
        *counts.entry(sms.phone).or_default() += 1;
    }
    counts
}

/// Starts `n` one-number SMS jobs with the provider answering slowly (after it sent the SMS), so
/// that jobs are in flight when the worker dies.
async fn slow_backlog(h: &Harness, n: usize, config: &str) -> Vec<uuid::Uuid> {
    h.sandbox()
        .push_fault(Fault::delay(Provider::Tencent, Duration::from_millis(100)).after_processing().always())
        .unwrap();
    let jobs: Vec<_> = (0..n)
        .map(|i| {
            let mut job = sms_job(&[&number(i)], None);
            job.config = config.to_string();
            job
        })
        .collect();
    h.submit(&jobs).await
}

async fn wait_settled(h: &Harness, ids: &[uuid::Uuid]) -> HashMap<String, usize> {
    let store = h.store().await;
    let mut statuses = HashMap::new();
    yizhan_tests::eventually("every job settled", LONG_WAIT, || {
        let store = store.clone();
        let ids = ids.to_vec();
        async move {
            for id in &ids {
                match store.status(*id).await.unwrap() {
                    Some(s) if s.status == "succeeded" || s.status == "dead" => {}
                    _ => return false,
                }
            }
            true
        }
    })
    .await;
    for id in ids {
        let status = store.status(*id).await.unwrap().unwrap();
        *statuses.entry(status.status).or_insert(0) += 1;
    }
    statuses
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_run_loses_nothing_and_repeats_only_jobs_in_flight() {
    sigkill_mid_run("kill-retry", Store::Redis).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_run_with_postgres_loses_nothing_and_repeats_only_jobs_in_flight() {
    sigkill_mid_run("kill-retry-pg", Store::Postgres).await;
}

async fn sigkill_mid_run(test: &str, store: Store) {
    let h = Harness::start(test, store, SandboxConfig::default_accounts(), "").await;
    let ids = slow_backlog(&h, 600, "default").await;
    let mut worker = h.spawn_worker(&["--concurrency", CONCURRENCY]).await;
    h.sandbox().wait_for_sms(150, LONG_WAIT).await.unwrap();
    worker.signal_and_wait("KILL");

    let _worker = h.spawn_worker(&["--concurrency", CONCURRENCY]).await;
    let statuses = wait_settled(&h, &ids).await;
    assert_eq!(statuses.get("succeeded"), Some(&600), "{statuses:?}");
    let counts = sms_per_number(&h);
    assert_eq!(counts.len(), 600, "every number got its SMS");
    let repeated = counts.values().filter(|&&c| c > 1).count();
    assert!(repeated <= 16, "{repeated} numbers got a second SMS; at most the 16 in flight may");
    assert!(counts.values().all(|&c| c <= 2));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_under_dead_letter_policy_sends_nothing_twice_and_parks_the_ambiguous() {
    let h = Harness::start("kill-dl", Store::Sqlite, SandboxConfig::default_accounts(), "").await;
    let config = STRICT_CONFIG.replace("ENDPOINT", &h.sandbox.url());
    std::fs::write(&h.config_path, std::fs::read_to_string(&h.config_path).unwrap() + &config).unwrap();
    let ids = slow_backlog(&h, 600, "strict").await;
    let mut worker = h.spawn_worker(&["--concurrency", CONCURRENCY]).await;
    h.sandbox().wait_for_sms(150, LONG_WAIT).await.unwrap();
    worker.signal_and_wait("KILL");

    let _worker = h.spawn_worker(&["--concurrency", CONCURRENCY]).await;
    let statuses = wait_settled(&h, &ids).await;
    let dead = statuses.get("dead").copied().unwrap_or(0);
    assert!((1..=16).contains(&dead), "only jobs in flight at the kill are ambiguous: {statuses:?}");
    assert_eq!(statuses.get("succeeded").copied().unwrap_or(0) + dead, 600);
    let parked = h.take_dead(dead, LONG_WAIT).await;
    assert!(parked.iter().all(|d| d.kind == "ambiguous"), "{parked:?}");
    let counts = sms_per_number(&h);
    assert!(counts.values().all(|&c| c == 1), "nothing is ever sent twice under dead_letter");
    assert!(counts.len() >= 600 - dead, "every job not parked got its SMS");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_in_flight_jobs_and_exits_zero() {
    sigterm_drains("term", Store::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_with_postgres_drains_in_flight_jobs_and_exits_zero() {
    sigterm_drains("term-pg", Store::Postgres).await;
}

async fn sigterm_drains(test: &str, store: Store) {
    let h = Harness::start(test, store, SandboxConfig::default_accounts(), "").await;
    let ids = slow_backlog(&h, 200, "default").await;
    let mut worker = h.spawn_worker(&["--concurrency", "8"]).await;
    h.sandbox().wait_for_sms(40, LONG_WAIT).await.unwrap();
    assert_eq!(worker.signal_and_wait("TERM"), Some(0), "log:\n{}", worker.log_text());
    let sent_at_stop = h.sandbox().sent_sms().len();
    assert!(sent_at_stop < 200, "the worker stopped taking jobs");

    let _worker = h.spawn_worker(&["--concurrency", "8"]).await;
    let statuses = wait_settled(&h, &ids).await;
    assert_eq!(statuses.get("succeeded"), Some(&200), "{statuses:?}");
    let counts = sms_per_number(&h);
    assert_eq!(counts.len(), 200);
    assert!(counts.values().all(|&c| c == 1), "a drained worker leaves no duplicate");
}

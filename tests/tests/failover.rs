//! Failover (issue 19.3): a config whose provider cannot be reached hands its jobs to its
//! `fallback`, a second account of the same provider, keeping each job's idempotency key.

use std::collections::HashMap;

use yizhan_sandbox::SandboxConfig;
use yizhan_tests::{Harness, Store, WAIT, number, sms_job};

/// The primary's endpoint refuses connections (nothing listens on port 1): 200 jobs are sent
/// through the fallback, each number once, and each result names the fallback config.
#[tokio::test(flavor = "multi_thread")]
async fn jobs_of_an_unreachable_config_are_sent_through_its_fallback() {
    let primary = format!(
        r#"
[connectors.tencent_sms.primary]
secret_id = "{secret_id}"
secret_key = "${{YIZHAN_TEST_SMS_KEY}}"
sdk_app_id = "{app}"
endpoint = "http://127.0.0.1:1"
fallback = "default"
"#,
        secret_id = yizhan_sandbox::DEFAULT_SECRET_ID,
        app = yizhan_sandbox::DEFAULT_SDK_APP_ID,
    );
    let h = Harness::start("failover", Store::Redis, SandboxConfig::default_accounts(), &primary).await;
    let worker = h.spawn_worker(&[]).await;
    let jobs: Vec<_> = (0..200)
        .map(|i| {
            let mut job = sms_job(&[&number(i)], None);
            job.config = "primary".into();
            job
        })
        .collect();
    let ids = h.submit(&jobs).await;
    h.sandbox().wait_for_sms(200, WAIT).await.unwrap();

    let store = h.store().await;
    yizhan_tests::eventually("all 200 jobs succeeded", WAIT, || {
        let (store, ids) = (store.clone(), ids.clone());
        async move {
            for id in ids {
                if store.status(id).await.unwrap().is_none_or(|s| s.status != "succeeded") {
                    return false;
                }
            }
            true
        }
    })
    .await;
    for id in &ids {
        let status = store.status(*id).await.unwrap().unwrap();
        assert_eq!(status.result.as_ref().unwrap()["config"], "default", "{status:?}");
    }
    let mut per_number: HashMap<String, usize> = HashMap::new();
    for sms in h.sandbox().sent_sms() {
        *per_number.entry(sms.phone.clone()).or_default() += 1;
    }
    assert_eq!(per_number.len(), 200);
    assert!(per_number.values().all(|n| *n == 1), "a number got two SMS: {per_number:?}");
    assert!(worker.jobs_total("failed_over").await >= 200);
    assert!(h.sandbox().rejected().is_empty(), "{:?}", h.sandbox().rejected());
}

/// A fallback naming a config that does not exist stops the worker at start with the path.
#[tokio::test(flavor = "multi_thread")]
async fn a_fallback_to_nowhere_stops_the_worker_with_its_path() {
    let extra = "[connectors.wecom_robot.other]\nkey = \"k\"\nfallback = \"missing\"\n";
    let h = Harness::start("failover-bad", Store::Sqlite, SandboxConfig::default_accounts(), extra).await;
    let stderr = h.worker_refused_at_start().await;
    assert!(
        stderr.contains("connectors.wecom_robot.other.fallback: no wecom_robot config named \"missing\""),
        "{stderr}"
    );
}

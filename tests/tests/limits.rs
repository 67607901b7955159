//! Rate limits across a fleet, and no head-of-line blocking between connector configs.

use yizhan_sandbox::{Provider, SandboxConfig};
use yizhan_tests::{Harness, Store, WAIT, number, sms_job};

/// The same property as "two workers on a 20/min robot send at most 20 in any rolling minute",
/// at 10/s so that it runs in seconds: two worker processes share the config's limit through Redis.
#[tokio::test(flavor = "multi_thread")]
async fn two_workers_share_one_limit_through_redis() {
    let extra = r#"
[connectors.tencent_sms.limited]
secret_id = "AKIDsandbox0000000000000000000000000"
secret_key = "${YIZHAN_TEST_SMS_KEY}"
sdk_app_id = "1400000000"
endpoint = "{sandbox}"
rate_limit = "10/s"
"#;
    let h = Harness::start("fleet-limit", Store::Redis, SandboxConfig::default_accounts(), extra).await;
    let _a = h.spawn_worker(&["--concurrency", "8"]).await;
    let _b = h.spawn_worker(&["--concurrency", "8"]).await;
    let jobs: Vec<_> = (0..30)
        .map(|i| {
            let mut job = sms_job(&[&number(i)], None);
            job.config = "limited".into();
            job
        })
        .collect();
    h.submit(&jobs).await;
    h.sandbox().wait_for_sms(30, WAIT).await.unwrap();
    let mut times: Vec<i64> = h.sandbox().requests_for(Provider::Tencent).iter().map(|r| r.received_at_ms).collect();
    times.sort_unstable();
    assert_eq!(times.len(), 30, "each job called the provider once");
    let mut start = 0;
    for end in 0..times.len() {
        while times[end] - times[start] >= 1000 {
            start += 1;
        }
        assert!(end - start < 11, "{} requests within one second: {times:?}", end - start + 1);
    }
    assert!(times[29] - times[0] >= 2800, "30 requests at 10/s take about 3 s: {times:?}");
}

/// A config with no token for a minute does not hold the worker's slots: another config's jobs,
/// submitted after, go through at once while the slow ones wait parked in the state store.
#[tokio::test(flavor = "multi_thread")]
async fn a_config_waiting_for_tokens_never_stalls_another() {
    let extra = r#"
[connectors.tencent_sms.slow]
secret_id = "AKIDsandbox0000000000000000000000000"
secret_key = "${YIZHAN_TEST_SMS_KEY}"
sdk_app_id = "1400000000"
endpoint = "{sandbox}"
rate_limit = "1/min"
"#;
    let h = Harness::start("no-hol", Store::Sqlite, SandboxConfig::default_accounts(), extra).await;
    let worker = h.spawn_worker(&["--concurrency", "2"]).await;
    let slow: Vec<_> = (0..6)
        .map(|i| {
            let mut job = sms_job(&[&number(i)], None);
            job.config = "slow".into();
            job
        })
        .collect();
    h.submit(&slow).await;
    let fast: Vec<_> = (100..120).map(|i| sms_job(&[&number(i)], None)).collect();
    h.submit(&fast).await;
    // One slow job gets the minute's token; the 20 others all go through meanwhile.
    h.sandbox().wait_for_sms(21, WAIT).await.unwrap();
    let sent: Vec<String> = h.sandbox().sent_sms().into_iter().map(|s| s.phone).collect();
    let slow_sent = sent.iter().filter(|p| (0..6).any(|i| **p == number(i))).count();
    assert_eq!(slow_sent, 1, "the slow config sent one in its first minute: {sent:?}");
    assert_eq!(worker.jobs_total("retried").await, 0, "waiting for a token is not a failed attempt");
}

/// A provider's throttle answer (WeCom 45009: "blocked for 60 s") pauses that config on every
/// worker of the fleet, while another config's jobs keep flowing; the paused jobs wait, not fail.
#[tokio::test(flavor = "multi_thread")]
async fn a_throttle_answer_pauses_the_config_fleet_wide_and_others_flow() {
    let h = Harness::start("throttle", Store::Redis, SandboxConfig::default_accounts(), "").await;
    let sandbox = h.sandbox();
    sandbox.push_fault(yizhan_sandbox::Fault::wecom_errcode(45009)).unwrap();
    let _a = h.spawn_worker(&["--concurrency", "4"]).await;
    let _b = h.spawn_worker(&["--concurrency", "4"]).await;
    let robot = |text: &str| yizhan_tests::job("wecom_robot", "ops", "send_text", serde_json::json!({"content": text}));

    let first = h.submit(&[robot("throttled")]).await[0];
    let store = h.store().await;
    yizhan_tests::eventually("the throttled job is retrying", WAIT, || {
        let store = store.clone();
        async move { store.status(first).await.unwrap().is_some_and(|s| s.status == "retrying") }
    })
    .await;

    let later: Vec<_> = (0..6).map(|i| robot(&format!("later {i}"))).collect();
    let later_ids = h.submit(&later).await;
    let sms: Vec<_> = (0..20).map(|i| sms_job(&[&number(i)], None)).collect();
    h.submit(&sms).await;
    sandbox.wait_for_sms(20, WAIT).await.unwrap();
    yizhan_tests::eventually("every robot job looked at and put back", WAIT, || {
        let store = store.clone();
        let ids = later_ids.clone();
        async move {
            for id in ids {
                if store.status(id).await.unwrap().is_none_or(|s| s.status != "retrying") {
                    return false;
                }
            }
            true
        }
    })
    .await;
    assert!(sandbox.all_robot_messages().is_empty(), "the robot is paused on both workers");
    let robot_requests = sandbox.requests_for(Provider::WecomRobot).len();
    assert_eq!(robot_requests, 1, "only the throttled call reached WeCom during the pause");
}

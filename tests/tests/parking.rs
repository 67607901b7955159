//! A paused config costs (almost) nothing while it waits: its jobs are parked in the state store
//! until the pause ends, instead of going round a delay lane every two seconds.

use std::time::{Duration, Instant};

use serde_json::json;
use yizhan_sandbox::{DEFAULT_WECOM_CORP, Fault, Provider, SandboxConfig};
use yizhan_tests::{Harness, LONG_WAIT, Store, eventually, job};
use yizhan_worker::pipeline::MAX_INLINE_WAIT;

const JOBS: usize = 1000;
/// WeCom's 45009 asks for a minute.
const PAUSE: Duration = Duration::from_secs(60);

fn config() -> String {
    let (corp, app, _) = DEFAULT_WECOM_CORP;
    format!(
        r#"
[connectors.wecom.branch]
corp_id = "{corp}"
app_secret = "{app}"
agentid = 1000003
endpoint = "{{sandbox}}"
"#
    )
}

fn message(i: usize) -> yizhan_schemas::Job {
    job(
        "wecom",
        "branch",
        "send_app_message",
        json!({"touser": format!("staff{i}"), "msgtype": "text", "text": {"content": format!("notice {i}")}}),
    )
}

async fn paused_config_parks_its_jobs(store: Store) {
    let h = Harness::start("parking", store, SandboxConfig::default_accounts(), &config()).await;
    let sandbox = h.sandbox();
    let worker = h.spawn_worker(&[]).await;

    sandbox.push_fault(Fault::error_code(Provider::Wecom, 45009).for_action("message/send")).unwrap();
    h.submit(&[message(JOBS)]).await;
    let watched = sandbox.clone();
    eventually("the 45009 was answered", LONG_WAIT, move || {
        let sandbox = watched.clone();
        async move { sandbox.stats().pending_faults == 0 }
    })
    .await;
    let paused_at = Instant::now();
    let log_lines_before = worker.log_text().lines().count();

    let jobs: Vec<_> = (0..JOBS).map(message).collect();
    h.submit(&jobs).await;
    eventually("every job was parked", LONG_WAIT, || async {
        worker.metric_sum("yizhan_jobs_parked_total").await >= JOBS as u64
    })
    .await;
    assert!(paused_at.elapsed() < PAUSE, "the jobs were parked within the pause");
    let delivered = sandbox.stats().wecom_messages;
    assert_eq!(delivered, 0, "nothing reached WeCom during the pause");
    let parked = worker.metric_sum("yizhan_jobs_parked_total").await;
    assert!(parked <= JOBS as u64 + 1, "each job was parked once, not again and again: {parked}");
    let log_lines = worker.log_text().lines().count() - log_lines_before;
    assert!(log_lines < 50, "{log_lines} log lines for {JOBS} waiting jobs");

    // Every job delivered once after the pause, the throttled one included.
    let watched = sandbox.clone();
    eventually("every job was delivered", LONG_WAIT, move || {
        let sandbox = watched.clone();
        async move { sandbox.stats().wecom_messages > JOBS as u64 }
    })
    .await;
    // A parked job comes back up to the worker's inline wait early and waits out the rest holding a slot.
    assert!(paused_at.elapsed() >= PAUSE - MAX_INLINE_WAIT, "delivered after the pause");
    let messages = sandbox.wecom_messages();
    let mut users: Vec<String> = messages.iter().map(|m| m["touser"].to_string()).collect();
    users.sort();
    users.dedup();
    assert_eq!(users.len(), JOBS + 1, "each member got one message");
    assert_eq!(messages.len(), JOBS + 1, "a message delivered twice");
    let released = worker.metric_sum("yizhan_parked_released_total").await;
    assert!(released <= 2 * JOBS as u64, "each job came back about once after the pause: {released}");
    assert_eq!(worker.jobs_total("retried").await, 1, "waiting out a pause is not a failed attempt");
    // What the worker published for these jobs: a parked job is not published until released, a
    // retry is one publish to a delay lane. The issue's bound for the whole pause is 3,000.
    let publishes = released + worker.jobs_total("retried").await;
    assert!(publishes < 3000, "{publishes} broker publishes for {JOBS} jobs waiting out a pause");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_config_parks_its_jobs_with_sqlite() {
    paused_config_parks_its_jobs(Store::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_config_parks_its_jobs_with_redis() {
    paused_config_parks_its_jobs(Store::Redis).await;
}

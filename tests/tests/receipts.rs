//! Delivery receipts (issue 19): 500 SMS jobs of a campaign, their receipts pushed by the
//! provider to `yizhan-producer serve` (some twice, out of order, 10 numbers `FAIL`), and the same
//! pulled by the workers with `PullSmsSendStatus`: every job shows each number `delivered` or
//! `failed`, each counted once for its campaign; a job with a callback gets it again once its
//! receipts are final, with `delivery`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use uuid::Uuid;
use yizhan_sandbox::{Provider, ReceiptPlan, SandboxConfig, SandboxState};
use yizhan_schemas::{Job, MissingId, validate_job_value};
use yizhan_state::{CampaignRecord, StateStore, now_millis};
use yizhan_tests::api::Api;
use yizhan_tests::{Harness, Store, WAIT, eventually, number};

const RECEIPT_TOKEN: &str = "receipt-token-0123456789abcdef";
const JOBS: usize = 500;
const FAILING: usize = 10;
const WITH_CALLBACK: usize = 3;
/// Every 7th report twice.
const DUPLICATE_EVERY: u32 = 7;

/// The receipt calls of these tests.
trait ReceiptCalls {
    /// `GET /v1/jobs/{id}`'s body, which must be 200.
    async fn job_status(&self, id: Uuid) -> Value;
    fn receipt_url(&self, config: &str, token: &str) -> String;
}

impl ReceiptCalls for Api {
    async fn job_status(&self, id: Uuid) -> Value {
        let (status, body) = self.job(&id.to_string()).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    fn receipt_url(&self, config: &str, token: &str) -> String {
        format!("{}/v1/receipts/tencent_sms/{config}?token={token}", self.base)
    }
}

/// Collects the completion callbacks POSTed to it.
#[derive(Clone, Default)]
struct Receiver {
    bodies: Arc<Mutex<Vec<Value>>>,
}

async fn receive(State(receiver): State<Receiver>, Json(body): Json<Value>) -> &'static str {
    receiver.bodies.lock().unwrap().push(body);
    "ok"
}

/// The receiver's `host:port` and URL.
async fn start_receiver(receiver: Receiver) -> (String, String) {
    let app = axum::Router::new().route("/done", axum::routing::post(receive)).with_state(receiver);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr.clone(), format!("http://{addr}/done"))
}

fn config(mode: &str) -> String {
    let receipts = match mode {
        "push" => format!("receipts = \"push\"\nreceipt_token = \"{RECEIPT_TOKEN}\""),
        _ => "receipts = \"pull\"\npull_interval = \"300ms\"".to_string(),
    };
    format!(
        r#"
[connectors.tencent_sms.receipts]
secret_id = "{secret_id}"
secret_key = "${{YIZHAN_TEST_SMS_KEY}}"
sdk_app_id = "{app}"
endpoint = "{{sandbox}}"
rate_limit = "3000/s"
{receipts}
"#,
        secret_id = yizhan_sandbox::DEFAULT_SECRET_ID,
        app = yizhan_sandbox::DEFAULT_SDK_APP_ID,
    )
}

/// A campaign of `JOBS` jobs, recorded as the producer records one.
async fn campaign(store: &Arc<dyn StateStore>) -> Uuid {
    let record = CampaignRecord {
        id: Uuid::now_v7(),
        tenant: "default".into(),
        key: format!("receipts-{}", Uuid::now_v7()),
        head: json!({"name": "receipts"}),
        send_at: None,
        created_at: now_millis(),
    };
    let (record, _) = store.create_campaign(&record).await.unwrap();
    assert!(store.add_to_campaign(record.id, JOBS as u64).await.unwrap());
    record.id
}

/// One SMS job per number of the campaign; the first few carry a callback.
fn jobs(campaign: Uuid, callback: &str) -> Vec<Job> {
    (0..JOBS)
        .map(|i| {
            let mut value = json!({
                "connector": "tencent_sms", "config": "receipts", "action": "send_sms", "campaign": campaign,
                "params": {"phone_numbers": [number(i)], "sign_name": "Yizhan", "template_id": "1001",
                           "template_params": ["123456"]},
            });
            if i < WITH_CALLBACK {
                value["callback"] = json!({"url": callback});
            }
            validate_job_value(&value, MissingId::Assign).expect("valid job")
        })
        .collect()
}

async fn delivery_counts(store: &Arc<dyn StateStore>, campaign: Uuid) -> (u64, u64) {
    let (_, status) = store.campaign(campaign).await.unwrap().unwrap();
    (status.delivered, status.undelivered)
}

/// Every report the sandbox made (one per SMS, every 7th twice) was handed out.
fn reports_made(sandbox: &SandboxState) -> u64 {
    let sent = sandbox.stats().sms_sent;
    sent + sent / u64::from(DUPLICATE_EVERY)
}

/// Runs 500 jobs with receipts coming as `mode` says; checks every job and the campaign's counts.
async fn five_hundred_jobs(test: &str, store: Store, mode: &str) {
    let h = Harness::start(test, store, SandboxConfig::default_accounts(), &config(mode)).await;
    let api = Api::start(&h).await;
    let receiver = Receiver::default();
    let (receiver_addr, callback_url) = start_receiver(receiver.clone()).await;
    let failing: Vec<String> = (JOBS - FAILING..JOBS).map(number).collect();
    let sandbox = h.sandbox();
    sandbox.set_receipt_plan(ReceiptPlan {
        callback_url: (mode == "push").then(|| api.receipt_url("receipts", RECEIPT_TOKEN)),
        delay_ms: 100,
        jitter_ms: 1_500,
        duplicate_every: DUPLICATE_EVERY,
        batch: 40,
        fail: failing.clone(),
    });
    let state = h.store().await;
    let campaign = campaign(&state).await;
    let allow = format!("--callback-allow={receiver_addr}");
    let _workers = if mode == "pull" {
        // Two workers: one pulls for the config at a time (the lease).
        vec![h.spawn_worker(&[&allow]).await, h.spawn_worker(&[&allow]).await]
    } else {
        vec![h.spawn_worker(&[&allow]).await]
    };
    let jobs = jobs(campaign, &callback_url);
    let ids = h.submit(&jobs).await;
    sandbox.wait_for_sms(JOBS, WAIT).await.unwrap();

    // Every report handed out and recorded: pushed ones are counted once the API answered; a
    // pulled page is recorded before the puller asks again.
    let pulls = || {
        sandbox
            .requests_for(Provider::Tencent)
            .iter()
            .filter(|r| r.header("x-tc-action") == Some("PullSmsSendStatus"))
            .count()
    };
    eventually("every report handed out", WAIT, || async {
        let stats = sandbox.stats();
        sandbox.receipts_pending() == 0 && stats.receipts_pushed + stats.receipts_pulled >= reports_made(&sandbox)
    })
    .await;
    if mode == "pull" {
        let asked = pulls();
        eventually("the puller asks again after recording", WAIT, || async { pulls() > asked }).await;
    }
    let stats = sandbox.stats();
    assert_eq!(stats.sms_sent, JOBS as u64, "each number texted once");
    assert_eq!(stats.receipts_pushed + stats.receipts_pulled, reports_made(&sandbox), "{stats:?}");
    assert!(reports_made(&sandbox) > JOBS as u64, "some reports came twice");
    assert_eq!(delivery_counts(&state, campaign).await, ((JOBS - FAILING) as u64, FAILING as u64), "counted once");

    // Every job shows its number delivered or failed, with the provider's code and time.
    for (i, id) in ids.iter().enumerate() {
        let status = api.job_status(*id).await;
        assert_eq!(status["status"], "succeeded", "{status}");
        let delivery = status["delivery"].as_object().unwrap_or_else(|| panic!("no delivery: {status}"));
        assert_eq!(delivery.len(), 1, "{status}");
        let entry = &delivery[&number(i)];
        let (state, code) = if failing.contains(&number(i)) { ("failed", "UNDELIV") } else { ("delivered", "DELIVRD") };
        assert_eq!((entry["state"].as_str(), entry["code"].as_str()), (Some(state), Some(code)), "{status}");
        assert!(entry["at"].as_i64().is_some_and(|at| at > 1_600_000_000_000), "{status}");
    }
    let (_, campaign_status) = state.campaign(campaign).await.unwrap().unwrap();
    assert_eq!(campaign_status.counts["succeeded"], JOBS as u64);

    // The jobs with a callback got it again once their receipts were final, with `delivery`.
    eventually("the delivery callbacks", WAIT, || async {
        receiver.bodies.lock().unwrap().iter().filter(|b| b.get("delivery").is_some()).count() >= WITH_CALLBACK
    })
    .await;
    let bodies = receiver.bodies.lock().unwrap().clone();
    let mut delivered: BTreeMap<String, Value> = BTreeMap::new();
    for body in bodies.iter().filter(|b| b.get("delivery").is_some()) {
        delivered.insert(body["id"].as_str().unwrap().to_string(), body["delivery"].clone());
    }
    for (i, id) in ids.iter().enumerate().take(WITH_CALLBACK) {
        let delivery =
            &delivered.get(&id.to_string()).unwrap_or_else(|| panic!("no delivery callback for {id}: {bodies:?}"));
        assert_eq!(delivery[number(i)]["state"], "delivered", "{delivery}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_hundred_jobs_with_pushed_receipts_count_each_once() {
    five_hundred_jobs("receipts-push", Store::Sqlite, "push").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_hundred_jobs_with_pulled_receipts_count_each_once() {
    five_hundred_jobs("receipts-pull", Store::Redis, "pull").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_receipt_endpoint_checks_its_token_and_body() {
    let h = Harness::start("receipts-api", Store::Sqlite, SandboxConfig::default_accounts(), &config("push")).await;
    let api = Api::start(&h).await;
    let report = json!([{"user_receive_time": "2025-01-01 08:00:00", "nationcode": "86", "mobile": "13800000001",
                         "report_status": "SUCCESS", "errmsg": "DELIVRD", "description": "ok", "sid": "unknown:1"}]);
    let post = |url: String, body: Value| {
        let client = reqwest::Client::new();
        async move {
            let response = client.post(url).json(&body).send().await.unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    // The provider's expected answer; a report of a message not known yet is kept, not refused.
    assert_eq!(
        post(api.receipt_url("receipts", RECEIPT_TOKEN), report.clone()).await,
        (200, json!({"result": 0, "errmsg": "OK"}))
    );
    for url in [
        api.receipt_url("receipts", "wrong-token-0123456789abcdef"),
        api.receipt_url("default", RECEIPT_TOKEN),
        format!("{}/v1/receipts/tencent_sms/receipts", api.base),
    ] {
        let (status, body) = post(url, report.clone()).await;
        assert_eq!((status, body["result"].as_i64()), (401, Some(1)), "{body}");
        assert!(!body.to_string().contains(RECEIPT_TOKEN));
    }
    let (status, body) = post(api.receipt_url("receipts", RECEIPT_TOKEN), json!({"sid": "x"})).await;
    assert_eq!((status, body["result"].as_i64()), (400, Some(1)), "{body}");
    let log = std::fs::read_dir(h.dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("api-"));
    for entry in log {
        assert!(!std::fs::read_to_string(entry.path()).unwrap().contains(RECEIPT_TOKEN), "the token is never logged");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_receipt_settings_stop_the_worker_with_their_path() {
    for (fields, expected) in [
        ("receipts = \"push\"", "connectors.tencent_sms.receipts.receipt_token: is required"),
        (
            "receipts = \"push\"\nreceipt_token = \"short\"",
            "connectors.tencent_sms.receipts.receipt_token: must be at least 16",
        ),
        ("receipts = \"pul\"", "connectors.tencent_sms.receipts.receipts: \"pul\" is not push or pull"),
        ("pull_interval = \"1s\"", "connectors.tencent_sms.receipts.pull_interval: has no effect"),
    ] {
        let extra = format!(
            "[connectors.tencent_sms.receipts]\nsecret_id = \"AKID\"\nsecret_key = \"k\"\nsdk_app_id = \"1400000000\"\n{fields}\n"
        );
        let h = Harness::start("receipts-bad", Store::Sqlite, SandboxConfig::default_accounts(), &extra).await;
        let stderr = h.worker_refused_at_start().await;
        assert!(stderr.contains(expected), "{fields}: {stderr}");
        assert!(!stderr.contains("short\""), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mails_are_asked_about_until_their_status_is_final() {
    const MAILS: usize = 20;
    let extra = format!(
        r#"
[connectors.tencent_ses.mail]
secret_id = "{secret_id}"
secret_key = "${{YIZHAN_TEST_SMS_KEY}}"
endpoint = "{{sandbox}}"
receipts = "pull"
pull_interval = "200ms"
"#,
        secret_id = yizhan_sandbox::DEFAULT_SECRET_ID,
    );
    let h = Harness::start("receipts-ses", Store::Sqlite, SandboxConfig::default_accounts(), &extra).await;
    let address = |i: usize| format!("user{i}@example.com");
    let bouncing = [address(3), address(11)];
    // Queued for a while first: the worker asks again until each status is final.
    h.sandbox().set_receipt_plan(ReceiptPlan { delay_ms: 800, fail: bouncing.to_vec(), ..ReceiptPlan::default() });
    let _worker = h.spawn_worker(&[]).await;
    let jobs: Vec<Job> = (0..MAILS)
        .map(|i| {
            let value = json!({"connector": "tencent_ses", "config": "mail", "action": "send_email",
                "params": {"from_email_address": format!("noreply@{}", yizhan_sandbox::DEFAULT_SES_DOMAIN),
                           "destination": [address(i)], "subject": "receipts", "text": "hello"}});
            validate_job_value(&value, MissingId::Assign).expect("valid job")
        })
        .collect();
    let ids = h.submit(&jobs).await;
    let store = h.store().await;
    let final_state = |delivery: &Option<BTreeMap<String, yizhan_state::Delivery>>| {
        delivery
            .as_ref()
            .and_then(|d| d.values().next().cloned())
            .filter(|d| d.state != yizhan_state::DeliveryState::Pending)
    };
    eventually("every mail's status final", WAIT, || async {
        for id in &ids {
            match store.status(*id).await.unwrap() {
                Some(status) if final_state(&status.delivery).is_some() => {}
                _ => return false,
            }
        }
        true
    })
    .await;
    for (i, id) in ids.iter().enumerate() {
        let status = store.status(*id).await.unwrap().unwrap();
        let delivery = status.delivery.unwrap();
        let entry = &delivery[&address(i)];
        let wanted = if bouncing.contains(&address(i)) {
            yizhan_state::DeliveryState::Failed
        } else {
            yizhan_state::DeliveryState::Delivered
        };
        assert_eq!(entry.state, wanted, "{i}: {entry:?}");
    }
    let asked = h.sandbox().requests_for(Provider::Tencent);
    let queries = asked.iter().filter(|r| r.header("x-tc-action") == Some("GetSendEmailStatus")).count();
    assert!(queries > MAILS, "queued mails were asked about again ({queries} queries)");
    assert!(h.sandbox().rejected().is_empty(), "{:?}", h.sandbox().rejected());
}

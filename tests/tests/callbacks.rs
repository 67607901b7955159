//! Completion callbacks end to end: jobs with a `callback` through the real worker to a local
//! receiver (axum on port 0), signatures checked here with an HMAC of our own; the allow-list
//! (`YIZHAN_CALLBACK_ALLOW`) enforced by the API and by the worker; a worker's shutdown finishing
//! the POST in flight; callbacks going on after a broker restart.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use uuid::Uuid;
use yizhan_sandbox::SandboxConfig;
use yizhan_schemas::{Job, Priority};
use yizhan_tests::rabbit::RabbitNode;
use yizhan_tests::{Harness, Store, WAIT, binary, eventually, holds_within, number, sms_job};

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: Vec<u8>,
    /// What the receiver answered.
    status: u16,
}

/// A callback receiver: answers 500 to its first `failures` requests, then 200 (after `delay`).
#[derive(Clone)]
struct Receiver {
    port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    /// Requests that arrived, answered or not yet.
    started: Arc<std::sync::atomic::AtomicUsize>,
}

impl Receiver {
    async fn start(failures: usize, delay: Duration) -> Receiver {
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let started: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
        let (kept, count) = (received.clone(), started.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let (kept, count) = (kept.clone(), count.clone());
                async move {
                    let n = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    // A slow receiver, as the worker sees it (not a wait for anything in the test).
                    tokio::time::sleep(delay).await;
                    let status = if n < failures { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::OK };
                    kept.lock().unwrap().push(Received { headers, body: body.to_vec(), status: status.as_u16() });
                    status
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { port, received, started }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook?token=query-token", self.port)
    }

    fn allow(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    fn started(&self) -> usize {
        self.started.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// `sha256=<hex HMAC-SHA256(secret, body)>`, computed here.
fn expected_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn secret_of(i: usize) -> String {
    format!("cb-secret-{i:04}-do-not-log")
}

/// An SMS job to `number(i)` with a callback to `url`, signed with [`secret_of`]`(i)`.
fn job_with_callback(i: usize, url: &str) -> Job {
    let mut job = sms_job(&[&number(i)], None);
    job.callback = Some(yizhan_schemas::Callback { url: url.to_string(), secret: Some(secret_of(i)) });
    job
}

fn header<'a>(received: &'a Received, name: &str) -> &'a str {
    received.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// The acceptance: 200 jobs with callbacks to a receiver that answers 500 to its first 50
/// requests. Every job's final state arrives at least once, every body's signature verifies with
/// its job's secret, every SMS is sent once, and no secret shows in the log or the metrics.
#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_callbacks_arrive_signed_through_a_receiver_failing_its_first_fifty() {
    let h = Harness::start("callbacks-200", Store::Redis, SandboxConfig::default_accounts(), "").await;
    let receiver = Receiver::start(50, Duration::ZERO).await;
    let worker = h.spawn_worker(&["--concurrency", "32", "--callback-allow", &receiver.allow()]).await;
    let jobs: Vec<Job> = (0..200).map(|i| job_with_callback(i, &receiver.url())).collect();
    let secrets: HashMap<Uuid, String> = jobs.iter().enumerate().map(|(i, job)| (job.id, secret_of(i))).collect();
    let ids = h.submit(&jobs).await;
    assert_eq!(ids.len(), 200);

    let succeeded = |received: &[Received]| -> HashSet<Uuid> {
        received
            .iter()
            .filter(|r| r.status == 200)
            .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
            .filter(|body| body["status"] == "succeeded")
            .filter_map(|body| body["id"].as_str()?.parse().ok())
            .collect()
    };
    eventually("every job's final state received", WAIT, || async { succeeded(&receiver.received()).len() == 200 })
        .await;

    let received = receiver.received();
    assert!(received.len() >= 250, "50 refused, then each of the 200 delivered: {}", received.len());
    assert_eq!(received.iter().filter(|r| r.status == 500).count(), 50);
    for r in &received {
        let body: Value = serde_json::from_slice(&r.body).expect("a JSON body");
        let id: Uuid = body["id"].as_str().unwrap().parse().unwrap();
        let secret = &secrets[&id];
        assert_eq!(header(r, "x-yizhan-signature"), expected_signature(secret, &r.body), "signature of {id}");
        assert_eq!(header(r, "content-type"), "application/json");
        assert!(Uuid::parse_str(header(r, "x-yizhan-delivery")).is_ok(), "a delivery id");
        assert_eq!((body["status"].as_str(), body["attempts"].as_u64()), (Some("succeeded"), Some(1)), "{body}");
        assert_eq!(body["result"]["numbers"][0]["code"], "Ok", "{body}");
        assert!(!String::from_utf8_lossy(&r.body).contains("do-not-log"), "no secret in the body");
    }
    // A retried callback keeps its delivery id: the 50 refused ones were delivered again with it.
    let delivered: HashSet<&str> =
        received.iter().filter(|r| r.status == 200).map(|r| header(r, "x-yizhan-delivery")).collect();
    assert!(received.iter().filter(|r| r.status == 500).all(|r| delivered.contains(header(r, "x-yizhan-delivery"))));

    // Each job's SMS went out once: a failing receiver never resends a job.
    let mut sent: HashMap<String, usize> = HashMap::new();
    for sms in h.sandbox().sent_sms() {
        *sent.entry(sms.phone.clone()).or_default() += 1;
    }
    assert_eq!(sent.len(), 200);
    assert!(sent.values().all(|n| *n == 1), "{sent:?}");
    assert!(h.sandbox().rejected().is_empty());
    assert!(worker.metric_sum("yizhan_callbacks_total").await >= 250);
    assert_eq!(h.queue_depth(&h.names().dead()).await, 0, "nothing dead-lettered");
    let store = h.store().await;
    for id in &ids {
        assert_eq!(store.status(*id).await.unwrap().unwrap().status, "succeeded");
    }
    assert!(!worker.metrics_text().await.contains("do-not-log"));
    assert!(!worker.log_text().contains("do-not-log"), "no secret in the log");
}

/// A running `yizhan-producer serve`.
struct Api {
    child: Child,
    base: String,
    client: reqwest::Client,
}

const TOKEN: &str = "callbacks-test-token";

impl Api {
    async fn start(h: &Harness, callback_allow: &str) -> Api {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = h.dir.path().join(format!("api-{port}.log"));
        let child = Command::new(binary("yizhan-producer"))
            .envs(h.env())
            .env("YIZHAN_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("YIZHAN_API_TOKENS", TOKEN)
            .env("YIZHAN_CALLBACK_ALLOW", callback_allow)
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn yizhan-producer serve");
        let api = Api { child, base: format!("http://127.0.0.1:{port}"), client: reqwest::Client::new() };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(response) = api.client.get(format!("{}/readyz", api.base)).send().await
                && response.status().is_success()
            {
                return api;
            }
            assert!(Instant::now() < deadline, "API not up: {}", std::fs::read_to_string(&log).unwrap_or_default());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let response =
            self.client.post(format!("{}{path}", self.base)).bearer_auth(TOKEN).json(body).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sms_value(i: usize, url: &str) -> Value {
    json!({"connector": "tencent_sms", "config": "default", "action": "send_sms",
           "params": {"phone_numbers": [number(i)], "sign_name": "Yizhan", "template_id": "1001", "template_params": ["1"]},
           "callback": {"url": url, "secret": secret_of(i)}})
}

/// The API refuses a callback to a host its `YIZHAN_CALLBACK_ALLOW` does not name (400 at
/// `$.callback.url`, nothing enqueued); a worker whose list does not name it never calls it, even
/// for a job the API took (or a publisher put straight on the broker): the callback is
/// dead-lettered, kind `callback`, with no secret in its headers, and the job itself still sent once.
#[tokio::test(flavor = "multi_thread")]
async fn a_host_outside_the_allow_list_is_refused_by_the_api_and_never_called_by_the_worker() {
    let h = Harness::start("callbacks-allow", Store::Sqlite, SandboxConfig::default_accounts(), "").await;
    let receiver = Receiver::start(0, Duration::ZERO).await;
    let api = Api::start(&h, &receiver.allow()).await;

    let elsewhere = format!("http://localhost:{}/hook", receiver.port);
    let (status, body) = api.post("/v1/jobs", &json!([sms_value(0, &receiver.url()), sms_value(1, &elsewhere)])).await;
    assert_eq!(status, 400, "{body}");
    let errors = body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{body}");
    assert_eq!((errors[0]["index"].as_u64(), errors[0]["path"].as_str()), (Some(1), Some("$.callback.url")));
    let reason = errors[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("localhost:{}", receiver.port)) && reason.contains("YIZHAN_CALLBACK_ALLOW"),
        "{reason}"
    );
    assert!(!body.to_string().contains("do-not-log"));
    let campaign = json!({"connector": "tencent_sms", "config": "default", "action": "send_sms",
        "params": {"sign_name": "Yizhan", "template_id": "1001", "template_params": ["1"]},
        "recipients": [{"to": number(2)}], "callback": {"url": elsewhere, "secret": "k"}});
    let (status, body) = api.post("/v1/campaigns", &campaign).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"][0]["path"], "$.callback.url", "{body}");
    let mut lanes = 0;
    for p in Priority::ALL {
        lanes += h.queue_depth(&h.names().lane(p)).await;
    }
    assert_eq!(lanes, 0, "nothing enqueued");

    // The API allows the receiver; this worker allows nothing (the default).
    let (status, body) = api.post("/v1/jobs", &sms_value(3, &receiver.url())).await;
    assert_eq!(status, 202, "{body}");
    let accepted: Uuid = body["ids"][0].as_str().unwrap().parse().unwrap();
    let direct = job_with_callback(4, &elsewhere);
    h.submit(std::slice::from_ref(&direct)).await;
    let worker = h.spawn_worker(&[]).await;

    let dead = h.take_dead(2, WAIT).await;
    let mut ids: Vec<Uuid> = dead.iter().map(|d| d.job()["body"]["id"].as_str().unwrap().parse().unwrap()).collect();
    ids.sort();
    let mut expected = vec![accepted, direct.id];
    expected.sort();
    assert_eq!(ids, expected);
    for letter in &dead {
        assert_eq!(letter.kind, "callback", "{letter:?}");
        assert!(letter.error.ends_with("is not an allowed callback host (YIZHAN_CALLBACK_ALLOW)"), "{}", letter.error);
        assert!(!letter.error.contains("do-not-log") && !letter.error.contains("query-token"), "{}", letter.error);
        assert_eq!(letter.job()["body"]["status"], "succeeded");
    }
    assert_eq!(receiver.started(), 0, "the receiver was never called");
    h.sandbox().wait_for_sms(2, WAIT).await.unwrap();
    assert_eq!(h.sandbox().sent_sms().len(), 2, "each job sent once");
    assert!(!worker.log_text().contains("do-not-log"));
}

/// A worker told to stop finishes the POST in flight and acknowledges it: the receiver is called
/// once, and nothing is left in `<prefix>.callbacks`.
#[tokio::test(flavor = "multi_thread")]
async fn a_stopping_worker_finishes_the_callback_in_flight() {
    let h = Harness::start("callbacks-drain", Store::Sqlite, SandboxConfig::default_accounts(), "").await;
    let receiver = Receiver::start(0, Duration::from_millis(1500)).await;
    let mut worker = h.spawn_worker(&["--callback-allow", &receiver.allow()]).await;
    h.submit(&[job_with_callback(0, &receiver.url())]).await;
    eventually("the POST started", WAIT, || async { receiver.started() == 1 }).await;
    assert_eq!(worker.signal_and_wait("TERM"), Some(0));
    let received = receiver.received();
    assert_eq!(received.len(), 1, "answered before the worker left");
    assert_eq!(received[0].status, 200);
    assert_eq!(h.queue_depth(&h.names().callbacks()).await, 0, "acknowledged, not left for a redelivery");
    assert_eq!(h.queue_depth(&h.names().dead()).await, 0);
}

/// The broker restarts under a running worker (a private node): callbacks published before and
/// after it are all delivered.
#[tokio::test(flavor = "multi_thread")]
async fn callbacks_go_on_after_a_broker_restart() {
    let mut node = RabbitNode::start().await;
    let h =
        Harness::start_on("callbacks-restart", Store::Sqlite, SandboxConfig::default_accounts(), "", &node.amqp_url())
            .await;
    let receiver = Receiver::start(0, Duration::ZERO).await;
    let worker = h.spawn_worker(&["--callback-allow", &receiver.allow()]).await;
    let before: Vec<Job> = (0..20).map(|i| job_with_callback(i, &receiver.url())).collect();
    h.submit(&before).await;
    eventually("the first callbacks", WAIT, || async { receiver.received().len() >= 20 }).await;

    node.stop_node().await;
    node.start_node().await;
    let after: Vec<Job> = (20..40).map(|i| job_with_callback(i, &receiver.url())).collect();
    h.submit(&after).await;
    let ids: HashSet<Uuid> = before.iter().chain(&after).map(|job| job.id).collect();
    let got = || -> HashSet<Uuid> {
        receiver
            .received()
            .iter()
            .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok()?["id"].as_str()?.parse().ok())
            .collect()
    };
    let all = holds_within(WAIT, || {
        let done = got() == ids;
        async move { done }
    })
    .await;
    // It failed once under the full suite with nothing to go on: say which are missing, and
    // what the worker logged (its warnings say whether it lost the broker and came back).
    let received = got();
    let missing = |jobs: &[Job]| jobs.iter().filter(|job| !received.contains(&job.id)).count();
    assert!(
        all,
        "callbacks missing {WAIT:?} after the restart: {} of the first 20, {} of the 20 after; the worker's log:\n{}",
        missing(&before),
        missing(&after),
        worker.log_text()
    );
}

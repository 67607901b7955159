//! The HTTP API (`yizhan-producer serve`) and the dead-letter tooling (`yizhan-producer dlq`)
//! against the real broker, worker, state store and the provider sandbox.
//!
//! A broker outage is tested against a producer pointed at a closed port: stopping the shared broker
//! would break every other test, so a real outage-and-recovery test needs a private broker node.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use yizhan_sandbox::{DEFAULT_ROBOT_KEYS, SandboxConfig};
use yizhan_schemas::Priority;
use yizhan_tests::{Harness, LONG_WAIT, Store, binary, eventually, number};

const TOKEN: &str = "api-test-token";

/// A running `yizhan-producer serve`.
struct Api {
    child: Child,
    base: String,
    log: std::path::PathBuf,
    client: reqwest::Client,
}

impl Api {
    /// Starts the API with the harness's settings (`amqp_url` overrides the broker URL); waits for
    /// `/healthz`, and for `/readyz` when `ready` is set.
    async fn start(h: &Harness, amqp_url: Option<&str>, ready: bool) -> Api {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = h.dir.path().join(format!("api-{port}.log"));
        let mut command = Command::new(binary("yizhan-producer"));
        command
            .envs(h.env())
            .env("YIZHAN_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("YIZHAN_API_TOKENS", "${API_TEST_TOKEN}")
            .env("API_TEST_TOKEN", TOKEN)
            .env("YIZHAN_HTTP_MAX_BODY", "1048576")
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        if let Some(url) = amqp_url {
            command.env("YIZHAN_AMQP_URL", url);
        }
        let api = Api {
            child: command.spawn().expect("spawn yizhan-producer serve"),
            base: format!("http://127.0.0.1:{port}"),
            log,
            client: reqwest::Client::new(),
        };
        let path = if ready { "/readyz" } else { "/healthz" };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(response) = api.client.get(format!("{}{path}", api.base)).send().await
                && response.status().is_success()
            {
                break;
            }
            assert!(Instant::now() < deadline, "API not up; log:\n{}", std::fs::read_to_string(&api.log).unwrap());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        api
    }

    async fn post(&self, body: &Value) -> (u16, Value) {
        let response =
            self.client.post(format!("{}/v1/jobs", self.base)).bearer_auth(TOKEN).json(body).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn status(&self, id: &str) -> Value {
        let response = self.client.get(format!("{}/v1/jobs/{id}", self.base)).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    async fn wait_status(&self, id: &str, wanted: &str) -> Value {
        eventually(&format!("job {id} {wanted}"), LONG_WAIT, || async { self.status(id).await["status"] == wanted })
            .await;
        self.status(id).await
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sms(n: &str) -> Value {
    json!({"connector": "tencent_sms", "config": "default", "action": "send_sms",
           "params": {"phone_numbers": [n], "sign_name": "Yizhan", "template_id": "1001", "template_params": ["1"]}})
}

fn robot_text(config: &str, content: &str) -> Value {
    json!({"connector": "wecom_robot", "config": config, "action": "send_text", "params": {"content": content}})
}

async fn lanes_depth(h: &Harness) -> u32 {
    let mut total = 0;
    for p in Priority::ALL {
        total += h.queue_depth(&h.names().lane(p)).await;
    }
    total
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_jobs_in_batches_of_100_are_confirmed_and_sent_once() {
    let h = Harness::start("api-1000", Store::Sqlite, SandboxConfig::default_accounts(), "").await;
    let api = Api::start(&h, None, true).await;
    let _worker = h.spawn_worker(&[]).await;
    let mut ids = Vec::new();
    for batch in 0..10 {
        let jobs: Vec<Value> = (0..100).map(|i| sms(&number(batch * 100 + i))).collect();
        let (status, body) = api.post(&json!(jobs)).await;
        assert_eq!(status, 202, "{body}");
        ids.extend(body["ids"].as_array().unwrap().iter().map(|id| id.as_str().unwrap().to_string()));
    }
    assert_eq!(ids.len(), 1000);
    h.sandbox().wait_for_sms(1000, LONG_WAIT).await.unwrap();
    for i in 0..1000 {
        assert_eq!(h.sandbox().sms_count_for(&number(i)), 1, "{}", number(i));
    }
    api.wait_status(&ids[999], "succeeded").await;
    assert_eq!(h.sandbox().sent_sms().len(), 1000);
    let metrics = api.client.get(format!("{}/metrics", api.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("yizhan_producer_jobs_total{outcome=\"accepted\"} 1000"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mixed_batch_enqueues_nothing_and_explains_each_invalid_item() {
    let h = Harness::start("api-mixed", Store::Sqlite, SandboxConfig::default_accounts(), "").await;
    let api = Api::start(&h, None, true).await;
    let mut bad_params = sms("+8613800000001");
    bad_params["params"]["phone_numbers"] = json!([]);
    let batch = json!([sms("+8613800000000"), {"connector": "no_such_kind", "config": "x", "action": "y", "params": {}}, bad_params]);
    let (status, body) = api.post(&batch).await;
    assert_eq!(status, 400, "{body}");
    let errors = body["errors"].as_array().unwrap();
    let indexes: Vec<u64> = errors.iter().map(|e| e["index"].as_u64().unwrap()).collect();
    assert!(indexes.contains(&1) && indexes.contains(&2) && !indexes.contains(&0), "{body}");
    for error in errors {
        assert!(error["path"].as_str().unwrap().starts_with('$'), "{error}");
        assert!(!error["reason"].as_str().unwrap().is_empty(), "{error}");
    }
    assert!(errors.iter().any(|e| e["index"] == 2 && e["path"].as_str().unwrap().contains("phone_numbers")), "{body}");
    // Publishing is confirmed before a 202, so a lane that is empty now got nothing from the 400.
    let (status, _) = api.post(&sms("+8613800000009")).await;
    assert_eq!(status, 202);
    assert_eq!(lanes_depth(&h).await, 1, "only the valid single job was enqueued");
}

#[tokio::test(flavor = "multi_thread")]
async fn status_goes_from_queued_to_succeeded_with_the_result_or_dead_with_the_reason() {
    let extra = "[connectors.wecom_robot.broken]\nkey = \"wrong-key\"\nendpoint = \"{sandbox}\"\n";
    let h = Harness::start("api-status", Store::Sqlite, SandboxConfig::default_accounts(), extra).await;
    let api = Api::start(&h, None, true).await;
    let b64 = base64::engine::general_purpose::STANDARD;
    let upload = json!({"connector": "wecom_robot", "config": "ops", "action": "upload_file",
                        "params": {"filename": "r.csv", "content_base64": b64.encode(b"a,b\n1,2\n")}});
    let (status, body) = api.post(&json!([upload, robot_text("broken", "hello")])).await;
    assert_eq!(status, 202, "{body}");
    let upload_id = body["ids"][0].as_str().unwrap().to_string();
    let dead_id = body["ids"][1].as_str().unwrap().to_string();
    // No worker yet: nobody took the job.
    assert_eq!(api.status(&upload_id).await, json!({"id": upload_id, "status": "queued", "attempts": 0}));

    let _worker = h.spawn_worker(&[]).await;
    let done = api.wait_status(&upload_id, "succeeded").await;
    assert_eq!(done["attempts"], 1);
    assert!(done["result"]["media_id"].as_str().is_some_and(|m| !m.is_empty()), "{done}");
    let dead = api.wait_status(&dead_id, "dead").await;
    assert_eq!(dead["error_kind"], "permanent");
    assert!(dead["error"].as_str().unwrap().contains("93000"), "{dead}");
    assert!(!dead.to_string().contains("wrong-key"), "the robot key is a secret: {dead}");

    let malformed = api.client.get(format!("{}/v1/jobs/42", api.base)).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(malformed.status(), 400);
}

/// Only jobs the API accepted are `queued` before a worker takes them; an id never submitted is
/// 404, and so is a job another client published straight to AMQP until a worker takes it.
#[tokio::test(flavor = "multi_thread")]
async fn unknown_ids_are_404_and_accepted_jobs_queued_until_taken() {
    let h = Harness::start("api-404", Store::Redis, SandboxConfig::default_accounts(), "").await;
    let api = Api::start(&h, None, true).await;
    let get = |id: String| {
        let request = api.client.get(format!("{}/v1/jobs/{id}", api.base)).bearer_auth(TOKEN);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(get(uuid::Uuid::now_v7().to_string()).await, 404);

    let batch: Vec<Value> = (0..50).map(|i| sms(&number(i))).collect();
    let (status, body) = api.post(&Value::Array(batch)).await;
    assert_eq!(status, 202, "{body}");
    let ids: Vec<String> = body["ids"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    for id in &ids {
        assert_eq!(api.status(id).await, json!({"id": id, "status": "queued", "attempts": 0}));
    }
    // A job published straight to the broker: the API never saw it.
    let raw_id = uuid::Uuid::now_v7();
    let mut raw = sms(&number(99));
    raw["id"] = json!(raw_id);
    h.publish_raw(raw.to_string().as_bytes(), Priority::Normal).await;
    assert_eq!(get(raw_id.to_string()).await, 404);

    let _worker = h.spawn_worker(&[]).await;
    for id in &ids {
        api.wait_status(id, "succeeded").await;
    }
    api.wait_status(&raw_id.to_string(), "succeeded").await;
    assert_eq!(get(uuid::Uuid::now_v7().to_string()).await, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_without_a_valid_token_get_401_and_oversized_bodies_413() {
    let h = Harness::start("api-auth", Store::Sqlite, SandboxConfig::default_accounts(), "").await;
    let api = Api::start(&h, None, true).await;
    let url = format!("{}/v1/jobs", api.base);
    let none = api.client.post(&url).json(&sms("+8613800000000")).send().await.unwrap();
    assert_eq!(none.status(), 401);
    let wrong = api.client.post(&url).bearer_auth("nope").json(&sms("+8613800000000")).send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let catalog = api.client.get(format!("{}/v1/catalog", api.base)).send().await.unwrap();
    assert_eq!(catalog.status(), 401);
    let catalog = api.client.get(format!("{}/v1/catalog", api.base)).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(catalog.status(), 200);
    assert!(catalog.json::<Value>().await.unwrap()["tencent_sms"]["send_sms"]["effect"] == "write");
    let big = json!({"connector": "wecom_robot", "config": "ops", "action": "send_text",
                     "params": {"content": "x".repeat(2 * 1024 * 1024)}});
    let response = api.client.post(&url).bearer_auth(TOKEN).json(&big).send().await.unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(lanes_depth(&h).await, 0);
    let log = std::fs::read_to_string(&api.log).unwrap();
    assert!(!log.contains(TOKEN), "the token never appears in logs");
}

#[tokio::test(flavor = "multi_thread")]
async fn post_answers_503_while_the_broker_is_unreachable() {
    let h = Harness::start("api-down", Store::Sqlite, SandboxConfig::default_accounts(), "").await;
    let api = Api::start(&h, Some("amqp://guest:secret-pw@127.0.0.1:1/%2f"), false).await;
    let (status, body) = api.post(&sms("+8613800000000")).await;
    assert_eq!(status, 503, "{body}");
    assert!(!body.to_string().contains("secret-pw"), "{body}");
    let ready = api.client.get(format!("{}/readyz", api.base)).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    // Validation still answers first: an invalid job is a 400, not a 503.
    let (status, _) = api.post(&json!({"connector": "nope"})).await;
    assert_eq!(status, 400);
    let log = std::fs::read_to_string(&api.log).unwrap();
    assert!(!log.contains("secret-pw"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn dlq_replay_after_fixing_the_config_delivers_once_and_purge_empties_it() {
    let extra = "[connectors.wecom_robot.broken]\nkey = \"wrong-key\"\nendpoint = \"{sandbox}\"\n";
    let h = Harness::start("api-dlq", Store::Sqlite, SandboxConfig::default_accounts(), extra).await;
    let api = Api::start(&h, None, true).await;
    let worker = h.spawn_worker(&[]).await;
    let (status, body) = api.post(&json!([robot_text("broken", "first"), robot_text("broken", "second")])).await;
    assert_eq!(status, 202, "{body}");
    let first = body["ids"][0].as_str().unwrap().to_string();
    let dead_queue = h.names().dead();
    eventually("both dead-lettered", LONG_WAIT, || async { h.queue_depth(&dead_queue).await == 2 }).await;

    let (code, out, err) = h.producer(&["dlq", "list", "--json"], "");
    assert_eq!(code, 0, "{err}");
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{out}");
    for letter in listed.as_array().unwrap() {
        assert_eq!(letter["kind"], "permanent");
        assert!(letter["reason"].as_str().unwrap().contains("93000"), "{letter}");
        assert_eq!(letter["connector"], "wecom_robot");
    }
    assert_eq!(h.queue_depth(&dead_queue).await, 2, "listing keeps every message");
    let (code, out, _) = h.producer(&["dlq", "list", "--json", "--kind", "invalid"], "");
    assert_eq!((code, out.trim()), (0, "[]"));
    let (code, out, _) = h.producer(&["dlq", "show", &first], "");
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["job"]["params"]["content"], "first");

    // Fix the config and restart the worker, then replay the first job only.
    let config = std::fs::read_to_string(&h.config_path).unwrap().replace("wrong-key", DEFAULT_ROBOT_KEYS[0]);
    std::fs::write(&h.config_path, config).unwrap();
    drop(worker);
    let worker = h.spawn_worker(&[]).await;
    let (code, out, err) = h.producer(&["dlq", "replay", &first], "");
    assert_eq!((code, out.trim()), (0, first.as_str()), "{err}");
    api.wait_status(&first, "succeeded").await;
    assert_eq!(h.sandbox().robot_messages(DEFAULT_ROBOT_KEYS[0]).len(), 1);
    assert_eq!(h.queue_depth(&dead_queue).await, 1, "the other one stays parked");

    // A dead copy of a job that in fact succeeded is replayed as a duplicate, never sent again.
    let copy = listed.as_array().unwrap().iter().find(|l| l["id"] == first.as_str()).unwrap()["job"].to_string();
    let publisher = yizhan_broker::Publisher::open(&h.connection).await.unwrap();
    publisher
        .publish(yizhan_broker::Message {
            exchange: &dead_queue,
            routing_key: "",
            body: copy.as_bytes(),
            message_id: Some(&first),
            headers: Default::default(),
            expiration_ms: None,
        })
        .await
        .unwrap();
    let (code, _, err) = h.producer(&["dlq", "replay", &first], "");
    assert_eq!(code, 0, "{err}");
    eventually("the replayed copy is a duplicate", LONG_WAIT, || async { worker.jobs_total("duplicate").await == 1 })
        .await;
    assert_eq!(h.sandbox().robot_messages(DEFAULT_ROBOT_KEYS[0]).len(), 1);

    // Purge: refused without a terminal and without --yes, done with --yes.
    let (code, _, _) = h.producer(&["dlq", "purge"], "y\n");
    assert_eq!(code, 1);
    assert_eq!(h.queue_depth(&dead_queue).await, 1);
    let (code, _, err) = h.producer(&["dlq", "purge", "--yes"], "");
    assert_eq!(code, 0, "{err}");
    assert_eq!(h.queue_depth(&dead_queue).await, 0);
}

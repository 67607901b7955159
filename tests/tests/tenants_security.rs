//! Issue 22, black-box on the real binaries: scoped API tokens keep tenants apart (403 for another
//! config, 404 for another tenant's jobs and dead letters), per-tenant quotas answer 429 with
//! `Retry-After` without slowing another tenant, and SIGHUP / `POST /v1/admin/reload` swap the
//! connector config of a running worker (secrets rotate, no job lost, a broken file refused).

use std::time::Duration;

use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, options::ConfirmSelectOptions};
use reqwest::Method;
use serde_json::{Value, json};
use yizhan_sandbox::{DEFAULT_SDK_APP_ID, DEFAULT_SECRET_ID, SandboxConfig};
use yizhan_tests::api::{Api, TOKEN};
use yizhan_tests::{Harness, Store, eventually};

const ALPHA: &str = "alpha-token-0123456789";
const BETA: &str = "beta-token-0123456789";
const ADMIN: &str = "admin-token-0123456789";

/// Alpha may use the robot config, beta the SMS config; neither may administer.
fn token_file(h: &Harness, quotas: &str) -> String {
    let path = h.dir.path().join("tokens.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[[tokens]]
name = "alpha-ci"
token = "{ALPHA}"
tenant = "alpha"
configs = ["wecom_robot.*"]
can = ["submit", "read", "dlq", "campaigns"]

[[tokens]]
name = "beta-app"
token = "${{BETA_TOKEN}}"
tenant = "beta"
configs = ["tencent_sms.default"]
can = ["submit", "read", "dlq"]

[[tokens]]
name = "ops-admin"
token = "{ADMIN}"
tenant = "ops"
can = ["admin"]
{quotas}
"#
        ),
    )
    .unwrap();
    path.display().to_string()
}

fn robot_job() -> Value {
    json!({"connector": "wecom_robot", "config": "ops", "action": "send_text", "params": {"content": "deploy done"}})
}

fn sms_job(phone: &str) -> Value {
    json!({"connector": "tencent_sms", "config": "default", "action": "send_sms",
        "params": {"phone_numbers": [phone], "sign_name": "Yizhan", "template_id": "1001", "template_params": ["1"]}})
}

async fn start_api(h: &Harness, quotas: &str) -> Api {
    let file = token_file(h, quotas);
    Api::start_with(h, &[("YIZHAN_API_TOKEN_FILE", &file), ("BETA_TOKEN", BETA)]).await
}

/// Every lane of `tenant` ("default": the original lanes), summed.
async fn queued(h: &Harness, tenant: &str) -> u32 {
    let mut total = 0;
    for lane in yizhan_schemas::Priority::ALL {
        total += h.queue_depth(&h.names().tenant_lane(lane, tenant)).await;
    }
    total
}

/// Puts a dead letter of `tenant`'s job in `<prefix>.dead`, as a worker would.
async fn dead_letter(h: &Harness, tenant: &str) -> String {
    let id = uuid::Uuid::now_v7().to_string();
    let mut job = robot_job();
    job["id"] = json!(id);
    job["tenant"] = json!(tenant);
    let channel = h.connection.create_channel().await.unwrap();
    channel.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let mut headers = FieldTable::default();
    headers.insert("x-yizhan-error-kind".into(), AMQPValue::LongString(LongString::from("permanent")));
    headers.insert("x-yizhan-error".into(), AMQPValue::LongString(LongString::from("provider said no")));
    let dead = h.names().dead();
    channel
        .basic_publish(
            dead.as_str().into(),
            "".into(),
            BasicPublishOptions::default(),
            &serde_json::to_vec(&job).unwrap(),
            BasicProperties::default().with_message_id(id.as_str().into()).with_headers(headers),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    id
}

fn letter_ids(body: &Value) -> Vec<String> {
    body["letters"].as_array().unwrap().iter().map(|l| l["id"].as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn scoped_tokens_keep_tenants_apart_and_plain_tokens_work_as_before() {
    let h = Harness::start("tenantscope", Store::Sqlite, SandboxConfig::default_accounts(), "").await;
    let api = start_api(&h, "").await;

    // Alpha cannot submit to beta's SMS config, alone or within a batch: 403 naming the config.
    let (status, body) = api.call_as(ALPHA, Method::POST, "/v1/jobs", Some(&sms_job("+8613800000001"))).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["errors"][0]["path"], "$.config");
    assert!(body["errors"][0]["reason"].as_str().unwrap().contains("tencent_sms.default"), "{body}");
    let batch = json!([robot_job(), sms_job("+8613800000001")]);
    let (status, body) = api.call_as(ALPHA, Method::POST, "/v1/jobs", Some(&batch)).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["errors"][0]["index"], 1);
    // A tenant in the body that is not the token's is refused.
    let mut other_tenant = robot_job();
    other_tenant["tenant"] = json!("beta");
    let (status, body) = api.call_as(ALPHA, Method::POST, "/v1/jobs", Some(&other_tenant)).await;
    assert_eq!((status, body["errors"][0]["path"].as_str()), (403, Some("$.tenant")), "{body}");
    assert_eq!(queued(&h, "alpha").await + queued(&h, "default").await + queued(&h, "beta").await, 0);

    // Accepted jobs are stamped with the token's tenant: they wait in its own lanes.
    let (status, body) = api.call_as(ALPHA, Method::POST, "/v1/jobs", Some(&robot_job())).await;
    assert_eq!(status, 202, "{body}");
    let alpha_job = body["ids"][0].as_str().unwrap().to_string();
    let (status, body) = api.call_as(BETA, Method::POST, "/v1/jobs", Some(&sms_job("+8613800000002"))).await;
    assert_eq!(status, 202, "{body}");
    let beta_job = body["ids"][0].as_str().unwrap().to_string();
    assert_eq!((queued(&h, "alpha").await, queued(&h, "beta").await, queued(&h, "default").await), (1, 1, 0));

    // Reads: each tenant its own; another's job is as unknown as one never submitted.
    let read = |token: &'static str, id: String| {
        let api = &api;
        async move { api.call_as(token, Method::GET, &format!("/v1/jobs/{id}"), None).await }
    };
    assert_eq!(read(ALPHA, alpha_job.clone()).await.0, 200);
    let (status, hidden) = read(ALPHA, beta_job.clone()).await;
    let (_, never) = read(ALPHA, uuid::Uuid::now_v7().to_string()).await;
    assert_eq!((status, &hidden), (404, &never), "no existence leak");
    assert_eq!(read(BETA, beta_job.clone()).await.0, 200);
    assert_eq!(read(BETA, alpha_job.clone()).await.0, 404);
    let (status, _) = api.call_as(ALPHA, Method::DELETE, &format!("/v1/jobs/{beta_job}"), None).await;
    assert_eq!(status, 404, "alpha cannot cancel beta's job");
    assert_eq!(read(BETA, beta_job.clone()).await.1["status"], "queued");

    // Scopes: beta has no campaigns, nobody but the admin token reloads.
    let campaign = json!({"connector": "tencent_sms", "config": "default", "action": "send_sms",
        "params": {"sign_name": "Yizhan", "template_id": "1001", "template_params": ["1"]}, "recipients": []});
    assert_eq!(api.call_as(BETA, Method::POST, "/v1/campaigns", Some(&campaign)).await.0, 403);
    assert_eq!(api.call_as(ALPHA, Method::POST, "/v1/admin/reload", None).await.0, 403);
    assert_eq!(api.call_as("not-a-token", Method::GET, "/v1/catalog", None).await.0, 401);

    // Dead letters: alpha sees, replays and purges only its own.
    let alpha_dead = dead_letter(&h, "alpha").await;
    let beta_dead = dead_letter(&h, "beta").await;
    let (status, body) = api.call_as(ALPHA, Method::GET, "/v1/dlq", None).await;
    assert_eq!((status, letter_ids(&body)), (200, vec![alpha_dead.clone()]), "{body}");
    let replay = json!({"ids": [beta_dead.clone()]});
    let (status, body) = api.call_as(ALPHA, Method::POST, "/v1/dlq/replay", Some(&replay)).await;
    assert_eq!((status, body["replayed"].as_array().map(Vec::len)), (200, Some(0)), "{body}");
    assert_eq!(queued(&h, "beta").await, 1, "beta's dead letter was not replayed");
    let (_, body) = api.call_as(BETA, Method::GET, "/v1/dlq", None).await;
    assert_eq!(letter_ids(&body), vec![beta_dead.clone()]);
    let (status, body) = api.call_as(ALPHA, Method::POST, "/v1/dlq/purge", None).await;
    assert_eq!((status, &body["purged"]), (200, &json!(1)), "{body}");
    let (_, body) = api.call(Method::GET, "/v1/dlq", None).await;
    assert_eq!(letter_ids(&body), vec![beta_dead.clone()], "the plain token sees what is left: beta's");
    let (status, body) = api.call_as(BETA, Method::POST, "/v1/dlq/replay", Some(&json!({"ids": [beta_dead]}))).await;
    assert_eq!((status, body["replayed"].as_array().map(Vec::len)), (200, Some(1)), "{body}");
    assert_eq!(queued(&h, "beta").await, 2);

    // A plain token keeps today's meaning: any config, any tenant, every job readable.
    let mut gamma = sms_job("+8613800000003");
    gamma["tenant"] = json!("gamma");
    let (status, body) = api.post("/v1/jobs", &gamma).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(queued(&h, "gamma").await, 1);
    assert_eq!(api.job(&alpha_job).await.0, 200);
    assert_eq!(api.job(&beta_job).await.0, 200);

    // No token value in the API's log.
    let log = std::fs::read_to_string(&api.log).unwrap();
    for secret in [ALPHA, BETA, ADMIN, TOKEN] {
        assert!(!log.contains(secret), "the log shows a token");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_over_its_quota_gets_429_and_another_is_unaffected() {
    let h = Harness::start("tenantquota", Store::Sqlite, SandboxConfig::default_accounts(), "").await;
    let quotas = "[tenants.alpha]\nsubmits_per_second = 2\n\n[tenants.beta]\nmax_queued = 3\n";
    let api = start_api(&h, quotas).await;

    let two = json!([robot_job(), robot_job()]);
    assert_eq!(api.call_as(ALPHA, Method::POST, "/v1/jobs", Some(&two)).await.0, 202);
    let over = api.request_as(ALPHA, Method::POST, "/v1/jobs", Some(&robot_job())).await;
    assert_eq!(over.status(), 429);
    let retry_after: u64 = over.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry_after), "Retry-After: {retry_after}");
    assert_eq!(queued(&h, "alpha").await, 2, "nothing of the refused request was enqueued");

    // Beta is not slowed by alpha; its own limit is the jobs waiting in its queues.
    for i in 0..3 {
        let (status, body) =
            api.call_as(BETA, Method::POST, "/v1/jobs", Some(&sms_job(&format!("+86138000001{i:02}")))).await;
        assert_eq!(status, 202, "{body}");
    }
    let full = api.request_as(BETA, Method::POST, "/v1/jobs", Some(&sms_job("+8613800000199"))).await;
    assert_eq!(full.status(), 429);
    assert!(full.headers().contains_key("retry-after"));
    assert_eq!(queued(&h, "beta").await, 3);

    // Alpha's bucket refills: it may submit again after Retry-After.
    eventually("alpha may submit again", Duration::from_secs(5), || async {
        api.call_as(ALPHA, Method::POST, "/v1/jobs", Some(&robot_job())).await.0 == 202
    })
    .await;
}

const NEW_SECRET_ID: &str = "AKIDrotated00000000000000000000000000";
const NEW_SECRET_KEY: &str = "rotated-sandbox-secret-key";

/// The SecretIds of the SMS requests that carried `phone`.
fn secret_ids_for(h: &Harness, phone: &str) -> Vec<String> {
    h.sandbox()
        .requests_for(yizhan_sandbox::Provider::Tencent)
        .into_iter()
        .filter(|r| String::from_utf8_lossy(&r.body).contains(phone))
        .filter_map(|r| {
            let auth = r.headers.iter().find(|(name, _)| name == "authorization")?.1.clone();
            let credential = auth.split("Credential=").nth(1)?;
            Some(credential.split('/').next()?.to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_rotates_the_sms_secret_and_a_broken_file_is_refused() {
    let sandbox =
        SandboxConfig::default_accounts().tencent_account(NEW_SECRET_ID, NEW_SECRET_KEY, &[DEFAULT_SDK_APP_ID]);
    let h = Harness::start("tenantreload", Store::Sqlite, sandbox, "").await;
    let mut worker = h.spawn_worker(&[]).await;
    let api = start_api(&h, "").await;
    let original = std::fs::read_to_string(&h.config_path).unwrap();

    // Jobs before, during and after the reload.
    let phones: Vec<String> = (0..40).map(|i| format!("+86139000000{i:02}")).collect();
    let submit = |range: std::ops::Range<usize>| {
        let jobs: Vec<Value> = phones[range].iter().map(|p| sms_job(p)).collect();
        let api = &api;
        async move {
            let (status, body) = api.post("/v1/jobs", &Value::Array(jobs)).await;
            assert_eq!(status, 202, "{body}");
        }
    };
    submit(0..20).await;
    let rotated = original
        .replace(DEFAULT_SECRET_ID, NEW_SECRET_ID)
        .replace("secret_key = \"${YIZHAN_TEST_SMS_KEY}\"", &format!("secret_key = \"{NEW_SECRET_KEY}\""));
    assert_ne!(rotated, original);
    std::fs::write(&h.config_path, &rotated).unwrap();
    std::process::Command::new("kill").args(["-HUP", &worker.child.id().to_string()]).status().unwrap();
    submit(20..30).await;
    // Once a job went out with the new secret, every later one does.
    eventually("an SMS signed with the rotated secret", Duration::from_secs(20), || async {
        phones.iter().any(|p| secret_ids_for(&h, p).iter().any(|id| id == NEW_SECRET_ID))
    })
    .await;
    submit(30..40).await;
    eventually("all 40 SMS sent", Duration::from_secs(30), || async {
        phones.iter().all(|p| h.sandbox().sms_count_for(p) == 1)
    })
    .await;
    for phone in &phones[30..40] {
        assert_eq!(secret_ids_for(&h, phone), vec![NEW_SECRET_ID.to_string()], "{phone}");
    }
    assert_eq!(h.queue_depth(&h.names().dead()).await, 0, "no job lost or dead-lettered around the reload");

    // A broken file is refused with the path of the error; the worker keeps running on the old one.
    let broken = rotated.replace("rate_limit = \"6000/min\"", "rate_limit = \"lots\"");
    std::fs::write(&h.config_path, &broken).unwrap();
    std::process::Command::new("kill").args(["-HUP", &worker.child.id().to_string()]).status().unwrap();
    eventually("the refusal in the worker's log", Duration::from_secs(10), || async {
        worker.log_text().contains("reload refused")
    })
    .await;
    let log = worker.log_text();
    assert!(log.contains("connectors.wecom_robot.ops"), "the error names the config path:\n{log}");
    assert!(!log.contains(NEW_SECRET_KEY) && !log.contains(yizhan_sandbox::DEFAULT_SECRET_KEY), "no secret in the log");
    let (status, body) = api.post("/v1/jobs", &sms_job("+8613900000099")).await;
    assert_eq!(status, 202, "{body}");
    eventually("the job after the refused reload sent", Duration::from_secs(20), || async {
        h.sandbox().sms_count_for("+8613900000099") == 1
    })
    .await;
    assert_eq!(secret_ids_for(&h, "+8613900000099"), vec![NEW_SECRET_ID.to_string()]);

    // The admin endpoint refuses a broken token file with its path, and tells the workers to
    // reload: a config removed from the file dead-letters its jobs as `invalid` when taken.
    let tokens = h.dir.path().join("tokens.toml");
    let good_tokens = std::fs::read_to_string(&tokens).unwrap();
    std::fs::write(&tokens, good_tokens.replace("tenant = \"alpha\"", "tenant = \"Not A Tenant\"")).unwrap();
    let (status, body) = api.call_as(ADMIN, Method::POST, "/v1/admin/reload", None).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("tokens[0].tenant"), "{body}");
    assert_eq!(api.call_as(ALPHA, Method::GET, "/v1/catalog", None).await.0, 200, "the old tokens stay");
    std::fs::write(&tokens, &good_tokens).unwrap();
    let without_robot = rotated.split("[connectors.wecom_robot.ops]").next().unwrap().to_string();
    std::fs::write(&h.config_path, &without_robot).unwrap();
    let (status, body) = api.call_as(ADMIN, Method::POST, "/v1/admin/reload", None).await;
    assert_eq!((status, &body["workers_notified"]), (200, &json!(true)), "{body}");
    // The worker may take a job or two before the message reaches it; from then on the robot's
    // jobs are dead-lettered `invalid` (they name a config it no longer has).
    let dead = h.names().dead();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let before = h.sandbox().all_robot_messages().len();
        assert_eq!(api.post("/v1/jobs", &robot_job()).await.0, 202);
        eventually("the robot job sent or dead-lettered", Duration::from_secs(10), || async {
            h.sandbox().all_robot_messages().len() > before || h.queue_depth(&dead).await > 0
        })
        .await;
        if h.queue_depth(&dead).await > 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the removed config still runs:\n{}", worker.log_text());
    }
    let letter = &h.take_dead(1, Duration::from_secs(5)).await[0];
    assert_eq!(letter.kind, "invalid", "{letter:?}");
    assert!(letter.error.contains("ops"), "{letter:?}");
    assert!(worker.log_text().contains("reload refused"));
    assert_eq!(worker.signal_and_wait("TERM"), Some(0));
}

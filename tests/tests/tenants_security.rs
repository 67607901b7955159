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
use yizhan_tests::webhook::Webhook;
use yizhan_tests::{Harness, Store, eventually};

const ALPHA: &str = "alpha-token-0123456789";
const BETA: &str = "beta-token-0123456789";
const ADMIN: &str = "admin-token-0123456789";
const GAMMA: &str = "gamma-token-0123456789";

/// Alpha may use the robot config, beta the SMS config, gamma the SMS config for campaigns only;
/// none may administer.
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
name = "gamma-marketing"
token = "{GAMMA}"
tenant = "gamma"
configs = ["tencent_sms.default"]
can = ["campaigns"]

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
    assert!((1..=4).contains(&retry_after), "Retry-After: {retry_after}");
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

/// A campaign of gamma's with `recipients` numbers.
fn campaign(key: &str, recipients: std::ops::Range<usize>) -> Value {
    json!({"name": "quota", "idempotency_key": key, "connector": "tencent_sms", "config": "default",
        "action": "send_sms", "params": {"sign_name": "Yizhan", "template_id": "1001", "template_params": ["1"]},
        "recipients": recipient_list(recipients)})
}

fn recipient_list(range: std::ops::Range<usize>) -> Value {
    range.map(|i| json!({"to": format!("+86137000{i:05}")})).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn campaign_recipients_count_against_the_tenants_quotas() {
    let h = Harness::start("tenantcampquota", Store::Sqlite, SandboxConfig::default_accounts(), "").await;
    let quotas =
        "[tenants.gamma]\nsubmits_per_second = 2\nmax_queued = 10\n\n[tenants.alpha]\nsubmits_per_second = 5\n";
    let api = start_api(&h, quotas).await;

    // A campaign larger than the bucket (8 > 2) is admitted while the bucket is full, whole. Its
    // debt lasts 4 s at 2/s: long enough that the refusals below hold on a loaded machine.
    let (status, body) = api.call_as(GAMMA, Method::POST, "/v1/campaigns", Some(&campaign("q-1", 0..8))).await;
    assert_eq!((status, &body["jobs"]), (202, &json!(8)), "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    assert_eq!(queued(&h, "gamma").await, 8);

    // It left the bucket in debt: a chunk right after it is refused, nothing of it enqueued, and
    // so is a new campaign (which is not created either).
    let recipients = format!("/v1/campaigns/{id}/recipients");
    let over =
        api.request_as(GAMMA, Method::POST, &recipients, Some(&json!({"recipients": recipient_list(8..9)}))).await;
    assert_eq!(over.status(), 429);
    let retry_after: u64 = over.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=4).contains(&retry_after), "Retry-After: {retry_after}");
    let body: Value = over.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("2 submissions per second"), "{body}");
    let over = api.request_as(GAMMA, Method::POST, "/v1/campaigns", Some(&campaign("q-2", 100..101))).await;
    assert_eq!(over.status(), 429);
    assert!(over.headers().contains_key("retry-after"));
    assert_eq!(queued(&h, "gamma").await, 8, "nothing of the refused requests was enqueued");

    // Another tenant with the same quota is not slowed by gamma's debt.
    let (status, body) = api.call_as(ALPHA, Method::POST, "/v1/jobs", Some(&json!([robot_job(), robot_job()]))).await;
    assert_eq!(status, 202, "{body}");

    // Once the debt is paid, chunks go on; the jobs waiting count against max_queued (10).
    eventually("gamma may add recipients again", Duration::from_secs(10), || async {
        let chunk = json!({"recipients": recipient_list(8..10)});
        api.call_as(GAMMA, Method::POST, &recipients, Some(&chunk)).await.0 == 202
    })
    .await;
    assert_eq!(queued(&h, "gamma").await, 10);
    let full =
        api.request_as(GAMMA, Method::POST, &recipients, Some(&json!({"recipients": recipient_list(10..11)}))).await;
    assert_eq!(full.status(), 429);
    assert!(full.headers().contains_key("retry-after"));
    let body: Value = full.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("10 jobs queued"), "{body}");
    // A chunk that could never fit says to split it.
    let (status, body) = api.call_as(GAMMA, Method::POST, "/v1/campaigns", Some(&campaign("q-3", 200..211))).await;
    assert_eq!(status, 429, "{body}");
    assert!(body["error"].as_str().unwrap().contains("max_queued of 10"), "{body}");
    assert_eq!(queued(&h, "gamma").await, 10);
    let (_, status) = api.call_as(GAMMA, Method::GET, &format!("/v1/campaigns/{id}"), None).await;
    assert_eq!(status["total"], 10, "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sms_receipt_tokens_rotate_on_reload_and_sighup() {
    const FIRST: &str = "receipt-token-first-000001";
    const SECOND: &str = "receipt-token-second-00002";
    const THIRD: &str = "receipt-token-third-000003";
    let extra = format!(
        "\n[connectors.tencent_sms.pushed]\nsecret_id = \"{}\"\nsecret_key = \"${{YIZHAN_TEST_SMS_KEY}}\"\n\
         sdk_app_id = \"{}\"\nendpoint = \"{{sandbox}}\"\nreceipts = \"push\"\nreceipt_token = \"{FIRST}\"\n",
        DEFAULT_SECRET_ID, DEFAULT_SDK_APP_ID
    );
    let h = Harness::start("tenantreceipts", Store::Sqlite, SandboxConfig::default_accounts(), &extra).await;
    let api = start_api(&h, "").await;
    // A final report of a message not known yet: kept, answered as the provider expects.
    let report = json!([{"user_receive_time": "2025-01-01 08:00:00", "nationcode": "86", "mobile": "13800000001",
        "report_status": "SUCCESS", "errmsg": "DELIVRD", "description": "ok", "sid": "rotation:1"}]);
    let client = reqwest::Client::new();
    let receipt = |token: &'static str| {
        let (client, report) = (client.clone(), report.clone());
        let url = format!("{}/v1/receipts/tencent_sms/pushed?token={token}", api.base);
        async move { client.post(url).json(&report).send().await.unwrap().status().as_u16() }
    };
    assert_eq!((receipt(FIRST).await, receipt(SECOND).await), (200, 401));

    // POST /v1/admin/reload: the rotated token is accepted, the old one refused.
    let original = std::fs::read_to_string(&h.config_path).unwrap();
    std::fs::write(&h.config_path, original.replace(FIRST, SECOND)).unwrap();
    let (status, body) = api.call_as(ADMIN, Method::POST, "/v1/admin/reload", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((receipt(FIRST).await, receipt(SECOND).await), (401, 200));

    // A broken receipt section is refused with its path; the tokens in force stay.
    std::fs::write(&h.config_path, original.replace(&format!("\"{FIRST}\""), "\"${UNSET_RECEIPT_TOKEN}\"")).unwrap();
    let (status, body) = api.call_as(ADMIN, Method::POST, "/v1/admin/reload", None).await;
    assert_eq!(status, 400, "{body}");
    let reason = body["error"].as_str().unwrap();
    assert!(reason.contains("connectors.tencent_sms.pushed.receipt_token"), "{body}");
    assert!(reason.contains("UNSET_RECEIPT_TOKEN is not set"), "{body}");
    assert_eq!(receipt(SECOND).await, 200);

    // SIGHUP to the API does the same.
    std::fs::write(&h.config_path, original.replace(FIRST, THIRD)).unwrap();
    std::process::Command::new("kill").args(["-HUP", &api.pid().to_string()]).status().unwrap();
    eventually("the token of the reloaded file accepted", Duration::from_secs(10), || async {
        receipt(THIRD).await == 200
    })
    .await;
    assert_eq!((receipt(FIRST).await, receipt(SECOND).await), (401, 401));

    // Each reload left an audit line naming who; no token value is in the log.
    let log = std::fs::read_to_string(&api.log).unwrap();
    let audits: Vec<&str> = log.lines().filter(|l| l.contains("yizhan_audit") && l.contains("reload")).collect();
    assert!(audits.iter().any(|l| l.contains("ops-admin")), "an audit line for the admin's reload:\n{log}");
    assert!(audits.iter().any(|l| l.contains("SIGHUP")), "an audit line for the SIGHUP reload:\n{log}");
    for secret in [FIRST, SECOND, THIRD, ADMIN] {
        assert!(!log.contains(secret), "the log shows a token");
    }
}

/// Runs directory sync `hr` once (one attempt); its final status.
async fn sync_run(h: &Harness) -> yizhan_state::JobStatus {
    let mut run = yizhan_tests::job("directory_sync", "hr", "run", json!({}));
    run.max_attempts = 1;
    h.finish(run, Duration::from_secs(30)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_directory_sync_started_after_a_reload_uses_the_new_config_and_secrets() {
    const OLD_HOOK_SECRET: &str = "old-webhook-secret-0001";
    const NEW_HOOK_SECRET: &str = "new-webhook-secret-0002";
    const WRONG_CONTACTS_SECRET: &str = "not-the-contacts-secret";
    let (old_hook, new_hook) = (Webhook::start().await, Webhook::start().await);
    let (old_url, new_url) = (old_hook.url.clone(), new_hook.url.clone());
    let (corp, _, contacts_secret) = yizhan_sandbox::DEFAULT_WECOM_CORP;
    // The source's secret starts wrong: the first run fails on it.
    let config = format!(
        r#"
[connectors.wecom.hr]
corp_id = "{corp}"
contacts_secret = "{WRONG_CONTACTS_SECRET}"
endpoint = "{{sandbox}}"

[connectors.directory_sync.hr]
source = "wecom.hr"
target = "webhook"
webhook_url = "{old_url}"
webhook_secret = "{OLD_HOOK_SECRET}"
"#
    );
    let h = Harness::start("tenantdirsync", Store::Sqlite, SandboxConfig::default_accounts(), &config).await;
    h.sandbox().edit_wecom_directory(|d| {
        d.put_department("1", "Demo", "0", 1);
        for i in 0..3 {
            let id = format!("m{i}");
            let member = yizhan_sandbox::directory::Member::new(&id, &id, "1", &format!("{id}@example.com"), None);
            d.put_member(member);
        }
    });
    let mut worker = h.spawn_worker(&[]).await;
    let failed = sync_run(&h).await;
    assert_eq!(failed.status, "dead", "{failed:?}");
    assert!(old_hook.is_empty());

    // The secret rotates and the sync moves to another webhook and secret; SIGHUP.
    let text = std::fs::read_to_string(&h.config_path).unwrap();
    let rotated = text
        .replace(WRONG_CONTACTS_SECRET, contacts_secret)
        .replace(&old_url, &new_url)
        .replace(OLD_HOOK_SECRET, NEW_HOOK_SECRET);
    std::fs::write(&h.config_path, rotated).unwrap();
    std::process::Command::new("kill").args(["-HUP", &worker.child.id().to_string()]).status().unwrap();
    eventually("the worker reloaded", Duration::from_secs(10), || async {
        worker.log_text().contains("connector configs reloaded")
    })
    .await;

    // The next run reads the source with the new secret and applies to the new webhook, signed
    // with the new secret: every record of the directory (ours among them) once.
    let done = sync_run(&h).await;
    assert_eq!(done.status, "succeeded", "{done:?}");
    let received = new_hook.calls();
    let proposed = done.result.as_ref().and_then(|r| r["proposed"].as_u64()).unwrap();
    assert!(proposed >= 4, "{:?}", done.result);
    assert_eq!(received.len() as u64, proposed, "{:?}", done.result);
    assert!(received.iter().any(|(_, body)| String::from_utf8_lossy(body).contains("m2@example.com")));
    for (signature, body) in &received {
        let expected = yizhan_worker::connectors::directory_sync::target::signature(NEW_HOOK_SECRET, body);
        assert_eq!(signature, &expected, "signed with the new webhook secret");
    }
    assert!(old_hook.is_empty(), "nothing went to the old webhook");
    let log = worker.log_text();
    for secret in [OLD_HOOK_SECRET, NEW_HOOK_SECRET, contacts_secret, WRONG_CONTACTS_SECRET] {
        assert!(!log.contains(secret), "the worker's log shows a secret");
    }
    assert_eq!(worker.signal_and_wait("TERM"), Some(0));
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

/// The SecretIds of the `PullSmsSendStatus` requests so far, oldest first.
fn pull_secret_ids(h: &Harness) -> Vec<String> {
    h.sandbox()
        .requests_for(yizhan_sandbox::Provider::Tencent)
        .into_iter()
        .filter(|r| r.headers.iter().any(|(name, value)| name == "x-tc-action" && value == "PullSmsSendStatus"))
        .filter_map(|r| {
            let auth = r.headers.iter().find(|(name, _)| name == "authorization")?.1.clone();
            Some(auth.split("Credential=").nth(1)?.split('/').next()?.to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn receipt_pulls_after_a_reload_are_signed_with_the_rotated_secret() {
    let sandbox =
        SandboxConfig::default_accounts().tencent_account(NEW_SECRET_ID, NEW_SECRET_KEY, &[DEFAULT_SDK_APP_ID]);
    let extra = format!(
        "\n[connectors.tencent_sms.pulled]\nsecret_id = \"{DEFAULT_SECRET_ID}\"\n\
         secret_key = \"${{YIZHAN_TEST_SMS_KEY}}\"\nsdk_app_id = \"{DEFAULT_SDK_APP_ID}\"\n\
         endpoint = \"{{sandbox}}\"\nreceipts = \"pull\"\npull_interval = \"200ms\"\n"
    );
    let h = Harness::start("tenantpull", Store::Sqlite, sandbox, &extra).await;
    let mut worker = h.spawn_worker(&[]).await;
    eventually("a pull signed with the first secret", Duration::from_secs(10), || async {
        pull_secret_ids(&h).iter().any(|id| id == DEFAULT_SECRET_ID)
    })
    .await;

    let rotated = std::fs::read_to_string(&h.config_path)
        .unwrap()
        .replace(DEFAULT_SECRET_ID, NEW_SECRET_ID)
        .replace("secret_key = \"${YIZHAN_TEST_SMS_KEY}\"", &format!("secret_key = \"{NEW_SECRET_KEY}\""));
    std::fs::write(&h.config_path, rotated).unwrap();
    std::process::Command::new("kill").args(["-HUP", &worker.child.id().to_string()]).status().unwrap();
    eventually("the worker reloaded", Duration::from_secs(10), || async {
        worker.log_text().contains("connector configs reloaded")
    })
    .await;
    // A pull may have been under way during the reload; the ones after it use the new secret.
    let before = pull_secret_ids(&h).len();
    eventually("two pulls after the reload", Duration::from_secs(10), || async {
        pull_secret_ids(&h).len() >= before + 2
    })
    .await;
    let after = pull_secret_ids(&h);
    assert!(after[before + 1..].iter().all(|id| id == NEW_SECRET_ID), "{after:?}");
    assert!(!h.sandbox().rejected().iter().any(|(provider, _)| provider == "tencent"), "no pull was refused");
    assert_eq!(worker.signal_and_wait("TERM"), Some(0));
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
    // The jobs submitted during the reload go out with either secret: on a busy machine all of
    // them went before the worker had read the file, and waiting for one signed with the new
    // secret then waited for ever. Once the worker says it reloaded, every later job uses it.
    eventually("the worker reloaded", Duration::from_secs(20), || async {
        worker.log_text().contains("connector configs reloaded")
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

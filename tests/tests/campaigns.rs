//! Campaigns (issue 17) and cancelling one job (issue 18) through the real `yizhan-producer serve`
//! and `yizhan-producer campaign`, with real workers, the broker, the state store and the sandbox.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use yizhan_sandbox::SandboxConfig;
use yizhan_schemas::Priority;
use yizhan_tests::api::{Api, TOKEN};
use yizhan_tests::{Harness, LONG_WAIT, Store, WAIT, eventually, now_ms, number, rfc3339_millis};

/// A config sending at most 500 SMS a second, so that a 5,000-recipient campaign is still running
/// when the test pauses or cancels it.
fn paced() -> String {
    format!(
        "[connectors.tencent_sms.paced]\nsecret_id = \"{}\"\nsecret_key = \"${{YIZHAN_TEST_SMS_KEY}}\"\n\
         sdk_app_id = \"{}\"\nendpoint = \"{{sandbox}}\"\nrate_limit = \"500/s\"\n",
        yizhan_sandbox::DEFAULT_SECRET_ID,
        yizhan_sandbox::DEFAULT_SDK_APP_ID,
    )
}

/// The campaign calls of these tests.
trait CampaignCalls {
    async fn campaign(&self, id: &str) -> Value;
    async fn control(&self, id: &str, action: &str) -> (u16, Value);
    async fn wait_campaign(&self, id: &str, what: &str, wanted: impl Fn(&Value) -> bool) -> Value;
    /// The `yizhan-producer campaign ...` arguments that reach this API.
    fn cli<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str>;
}

impl CampaignCalls for Api {
    async fn campaign(&self, id: &str) -> Value {
        let (status, body) = self.call(reqwest::Method::GET, &format!("/v1/campaigns/{id}"), None).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn control(&self, id: &str, action: &str) -> (u16, Value) {
        self.call(reqwest::Method::POST, &format!("/v1/campaigns/{id}/{action}"), None).await
    }

    async fn wait_campaign(&self, id: &str, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        eventually(&format!("campaign {id}: {what}"), LONG_WAIT, || async { wanted(&self.campaign(id).await) }).await;
        self.campaign(id).await
    }

    fn cli<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        [&["campaign", "--api", self.base.as_str(), "--token", TOKEN][..], args].concat()
    }
}

/// A campaign head for template 1002 (`Hello {1}, your order {2} has shipped.`).
fn head(config: &str, key: &str) -> Value {
    json!({
        "name": "shipping notice", "idempotency_key": key,
        "connector": "tencent_sms", "config": config, "action": "send_sms",
        "params": {"sign_name": "Yizhan", "template_id": "1002", "template_params": ["customer", "-"]},
    })
}

/// Recipient `i`: its own number and its own template params.
fn recipient(i: usize) -> Value {
    json!({"to": number(i), "params": {"template_params": [format!("name{i}"), format!("order{i}")]}})
}

fn with_recipients(mut head: Value, range: std::ops::Range<usize>) -> Value {
    head["recipients"] = range.map(recipient).collect();
    head
}

async fn lanes_depth(h: &Harness) -> u32 {
    let mut total = 0;
    for p in Priority::ALL {
        total += h.queue_depth(&h.names().lane(p)).await;
    }
    total
}

/// Every number of `range` got exactly one SMS, with its own params.
fn assert_each_once_with_its_params(h: &Harness, range: std::ops::Range<usize>) {
    let sent = h.sandbox().sent_sms();
    for i in range {
        let to = number(i);
        let mine: Vec<_> = sent.iter().filter(|s| s.phone == to).collect();
        assert_eq!(mine.len(), 1, "{to} got {} SMS", mine.len());
        assert_eq!(mine[0].template_params, vec![format!("name{i}"), format!("order{i}")], "{to}");
        assert_eq!(mine[0].template_id, "1002");
    }
}

/// An RFC 3339 UTC time `ahead` from now.
fn rfc3339_in(ahead: Duration) -> String {
    rfc3339_millis(now_ms() + ahead.as_millis() as i64)
}

fn count(campaign: &Value, status: &str) -> u64 {
    campaign["counts"][status].as_u64().unwrap_or_else(|| panic!("no count {status}: {campaign}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_recipients_each_get_their_own_sms_once_and_a_resubmission_sends_nothing() {
    let h = Harness::start("camp-1000", Store::Redis, SandboxConfig::default_accounts(), "").await;
    let api = Api::start(&h).await;
    let _worker = h.spawn_worker(&[]).await;
    let campaign = with_recipients(head("default", "spring-1000"), 0..1000);
    let (status, body) = api.post("/v1/campaigns", &campaign).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["jobs"], 1000);
    let id = body["id"].as_str().unwrap().to_string();

    let done = api.wait_campaign(&id, "done", |c| c["status"] == "done").await;
    assert_eq!(done["total"], 1000, "{done}");
    assert_eq!(count(&done, "succeeded"), 1000, "{done}");
    assert_eq!(count(&done, "queued") + count(&done, "dead") + count(&done, "duplicate"), 0, "{done}");
    assert_eq!(done["name"], "shipping notice");
    assert_each_once_with_its_params(&h, 0..1000);

    // The same campaign again: its id, nothing enqueued, nothing sent.
    let (status, again) = api.post("/v1/campaigns", &campaign).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again, json!({"id": id, "jobs": 0}));
    assert_eq!(lanes_depth(&h).await, 0, "a 200 enqueues nothing");
    assert_eq!(h.sandbox().sent_sms().len(), 1000);
    assert_eq!(api.campaign(&id).await["total"], 1000);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_recipients_are_named_and_nothing_is_enqueued() {
    let h = Harness::start("camp-bad", Store::Sqlite, SandboxConfig::default_accounts(), "").await;
    let api = Api::start(&h).await;
    let mut campaign = with_recipients(head("default", "bad-1"), 0..10);
    campaign["recipients"][3]["to"] = json!("not a number");
    campaign["recipients"][7]["params"]["template_params"] = json!("not an array");
    let (status, body) = api.post("/v1/campaigns", &campaign).await;
    assert_eq!(status, 400, "{body}");
    let errors = body["errors"].as_array().unwrap();
    let indexes: std::collections::BTreeSet<u64> = errors.iter().map(|e| e["index"].as_u64().unwrap()).collect();
    assert_eq!(indexes, [3, 7].into(), "{body}");
    assert!(errors.iter().any(|e| e["index"] == 3 && e["path"] == "$.recipients[3].to"), "{body}");
    assert!(
        errors.iter().any(|e| e["index"] == 7 && e["path"].as_str().unwrap().starts_with("$.recipients[7].params")),
        "{body}"
    );
    assert!(errors.iter().all(|e| !e["reason"].as_str().unwrap().is_empty()), "{body}");
    // Publishing is confirmed before any 2xx, so lanes empty now got nothing from the 400.
    assert_eq!(lanes_depth(&h).await, 0);

    // The head's own errors carry no index; an appended chunk is checked the same way.
    let mut bad_head = head("default", "bad-2");
    bad_head["params"]["template_id"] = json!(1002);
    let (status, body) = api.post("/v1/campaigns", &bad_head).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["errors"].as_array().unwrap().iter().all(|e| e.get("index").is_none()), "{body}");
    let (status, body) = api.post("/v1/campaigns", &head("default", "bad-3")).await;
    assert_eq!((status, body["jobs"].as_u64()), (202, Some(0)), "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let chunk = json!({"recipients": [recipient(1), {"to": "12"}]});
    let (status, body) = api.post(&format!("/v1/campaigns/{id}/recipients"), &chunk).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"][0]["index"], 1, "{body}");
    assert_eq!(lanes_depth(&h).await, 0);
    assert_eq!(api.campaign(&id).await["total"], 0);
    let (status, _) = api.post(&format!("/v1/campaigns/{}/recipients", uuid::Uuid::now_v7()), &chunk).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_submits_a_csv_in_chunks_and_a_second_submission_sends_nothing() {
    let h = Harness::start("camp-cli", Store::Sqlite, SandboxConfig::default_accounts(), "").await;
    let api = Api::start(&h).await;
    let _worker = h.spawn_worker(&[]).await;
    let head_path = h.dir.path().join("campaign.json");
    // Two recipients in the head itself, 248 in the CSV (one with a quoted comma).
    std::fs::write(&head_path, with_recipients(head("default", "cli-csv"), 0..2).to_string()).unwrap();
    let mut csv = String::from("to,template_params[],template_params[]\n");
    for i in 2..250 {
        csv.push_str(&format!("{},name{i},order{i}\n", number(i)));
    }
    csv.push_str(&format!("{},\"Wang, Jr.\",order250\n", number(250)));
    let csv_path = h.dir.path().join("recipients.csv");
    std::fs::write(&csv_path, csv).unwrap();
    let (head_arg, csv_arg) = (head_path.display().to_string(), csv_path.display().to_string());

    let args = api.cli(&["submit", &head_arg, "--recipients", &csv_arg, "--chunk", "40"]);
    let (code, stdout, stderr) = h.producer(&args, "");
    assert_eq!(code, 0, "{stderr}");
    let id = stdout.trim().to_string();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "stdout is the campaign id: {stdout}");
    assert!(stderr.contains("251 jobs enqueued"), "{stderr}");

    let done = api.wait_campaign(&id, "done", |c| c["status"] == "done").await;
    assert_eq!((done["total"].as_u64(), count(&done, "succeeded")), (Some(251), 251), "{done}");
    assert_each_once_with_its_params(&h, 0..250);
    let wang: Vec<_> = h.sandbox().sent_sms().into_iter().filter(|s| s.phone == number(250)).collect();
    assert_eq!(wang.len(), 1);
    assert_eq!(wang[0].template_params, ["Wang, Jr.", "order250"]);

    let (code, stdout, stderr) = h.producer(&api.cli(&["status", &id]), "");
    assert_eq!(code, 0, "{stderr}");
    let status: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!((status["status"].as_str(), status["total"].as_u64()), (Some("done"), Some(251)), "{stdout}");

    // Again: the campaign exists, nothing is sent.
    let (code, stdout, stderr) = h.producer(&args, "");
    assert_eq!((code, stdout.trim()), (0, id.as_str()), "{stderr}");
    assert!(stderr.contains("submitted before"), "{stderr}");
    assert_eq!(lanes_depth(&h).await, 0);
    assert_eq!(h.sandbox().sent_sms().len(), 251);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_checks_every_line_before_sending_anything() {
    let h = Harness::start("camp-cli-bad", Store::Sqlite, SandboxConfig::default_accounts(), "").await;
    let api = Api::start(&h).await;
    let head_path = h.dir.path().join("campaign.json");
    std::fs::write(&head_path, head("default", "cli-bad").to_string()).unwrap();
    let mut lines: Vec<String> = (0..120).map(|i| recipient(i).to_string()).collect();
    lines[100] = json!({"to": "12"}).to_string();
    lines[110] = "{not json".to_string();
    let path = h.dir.path().join("recipients.jsonl");
    std::fs::write(&path, lines.join("\n")).unwrap();
    let (head_arg, path_arg) = (head_path.display().to_string(), path.display().to_string());
    let (code, stdout, stderr) =
        h.producer(&api.cli(&["submit", &head_arg, "--recipients", &path_arg, "--chunk", "50"]), "");
    assert_eq!(code, 1, "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("recipients.jsonl line 101: $.to:"), "{stderr}");
    assert!(stderr.contains("recipients.jsonl line 111: $: not JSON"), "{stderr}");
    assert!(stderr.contains("nothing was sent"), "{stderr}");
    assert_eq!(lanes_depth(&h).await, 0);

    let (code, _, stderr) = h.producer(&api.cli(&["status", &uuid::Uuid::now_v7().to_string()]), "");
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("not found"), "{stderr}");
}

/// A job cancelled before any worker took it is never sent; one that ran answers 409 with its
/// status; an unknown id 404.
#[tokio::test(flavor = "multi_thread")]
async fn delete_cancels_a_job_that_has_not_started() {
    let h = Harness::start("camp-delete", Store::Redis, SandboxConfig::default_accounts(), "").await;
    let api = Api::start(&h).await;
    let job = |n: &str| {
        json!({"connector": "tencent_sms", "config": "default", "action": "send_sms",
               "params": {"phone_numbers": [n], "sign_name": "Yizhan", "template_id": "1001", "template_params": ["1"]}})
    };
    let (status, body) = api.post("/v1/jobs", &json!([job(&number(1)), job(&number(2))])).await;
    assert_eq!(status, 202, "{body}");
    let (cancelled, sent) =
        (body["ids"][0].as_str().unwrap().to_string(), body["ids"][1].as_str().unwrap().to_string());
    let (status, body) = api.call(reqwest::Method::DELETE, &format!("/v1/jobs/{cancelled}"), None).await;
    assert_eq!((status, &body["status"]), (200, &json!("cancelled")), "{body}");
    assert_eq!(api.job(&cancelled).await.1["status"], "cancelled", "before any worker took it");
    assert_eq!(api.job(&sent).await.1["status"], "queued");

    let _worker = h.spawn_worker(&[]).await;
    eventually("the other job succeeded", WAIT, || async { api.job(&sent).await.1["status"] == "succeeded" }).await;
    eventually("the cancelled job settled", WAIT, || async { api.job(&cancelled).await.1["status"] == "cancelled" })
        .await;
    assert_eq!(h.sandbox().sms_count_for(&number(1)), 0, "a cancelled job is never sent");
    assert_eq!(h.sandbox().sms_count_for(&number(2)), 1);

    let (status, body) = api.call(reqwest::Method::DELETE, &format!("/v1/jobs/{sent}"), None).await;
    assert_eq!((status, &body["status"]), (409, &json!("succeeded")), "{body}");
    let (status, _) = api.call(reqwest::Method::DELETE, &format!("/v1/jobs/{}", uuid::Uuid::now_v7()), None).await;
    assert_eq!(status, 404);
}

// ---- These need the workers' campaign support (pause, cancel, send_at in the pipeline). ----

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_campaign_sends_nothing_until_resumed_then_completes_once_each() {
    let h = Harness::start("camp-pause", Store::Redis, SandboxConfig::default_accounts(), &paced()).await;
    let api = Api::start(&h).await;
    let _workers = [h.spawn_worker(&[]).await, h.spawn_worker(&[]).await];
    let (status, body) = api.post("/v1/campaigns", &with_recipients(head("paced", "pause-5000"), 0..5000)).await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    h.sandbox().wait_for_sms(500, LONG_WAIT).await.unwrap();

    let (status, paused) = api.control(&id, "pause").await;
    assert_eq!((status, paused["status"].as_str()), (200, Some("paused")), "{paused}");
    // Every worker holds within 2 s of the answer (a worker trusts its cached control up to 1 s):
    // once those 2 s are over and no job of it is running, nothing more may be sent. "Running"
    // alone can read 0 between two jobs of a worker that has not seen the pause yet. The 5 s
    // that follow are the window of silence, observed as such.
    let paused_at = std::time::Instant::now();
    eventually("the pause took hold (2 s, and no job of it running)", Duration::from_secs(2) + WAIT / 20, || async {
        paused_at.elapsed() >= Duration::from_secs(2) && count(&api.campaign(&id).await, "running") == 0
    })
    .await;
    let held_at = h.sandbox().sent_sms().len();
    assert!(held_at < 5000, "the campaign finished before the pause took hold; pace it slower");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(h.sandbox().sent_sms().len(), held_at, "SMS were sent while the campaign was paused");
    assert_eq!(api.campaign(&id).await["status"], "paused");

    let (status, resumed) = api.control(&id, "resume").await;
    assert_eq!((status, resumed["status"].as_str()), (200, Some("running")), "{resumed}");
    let done = api.wait_campaign(&id, "done", |c| c["status"] == "done").await;
    assert_eq!(count(&done, "succeeded"), 5000, "{done}");
    assert_each_once_with_its_params(&h, 0..5000);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_campaign_sends_nothing_more_and_its_counts_add_up() {
    let h = Harness::start("camp-cancel", Store::Redis, SandboxConfig::default_accounts(), &paced()).await;
    let api = Api::start(&h).await;
    let _worker = h.spawn_worker(&[]).await;
    let (status, body) = api.post("/v1/campaigns", &with_recipients(head("paced", "cancel-5000"), 0..5000)).await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    h.sandbox().wait_for_sms(500, LONG_WAIT).await.unwrap();

    let (status, cancelled) = api.control(&id, "cancel").await;
    assert_eq!((status, cancelled["status"].as_str()), (200, Some("cancelled")), "{cancelled}");
    let settled = api
        .wait_campaign(&id, "every job final", |c| {
            c["counts"]["queued"] == 0 && c["counts"]["running"] == 0 && c["counts"]["retrying"] == 0
        })
        .await;
    let sent = h.sandbox().sent_sms().len() as u64;
    assert!(sent < 5000, "the campaign finished before the cancel took hold; pace it slower");
    assert_eq!(count(&settled, "succeeded"), sent, "{settled}");
    assert_eq!(count(&settled, "succeeded") + count(&settled, "cancelled"), 5000, "{settled}");
    assert_eq!(settled["status"], "cancelled");
    assert_eq!(h.sandbox().sent_sms().len() as u64, sent, "nothing more after the rest settled");

    // Final: resume is refused, cancel again is fine, appending is refused.
    let (status, body) = api.control(&id, "resume").await;
    assert_eq!((status, body["status"].as_str()), (409, Some("cancelled")), "{body}");
    assert_eq!(api.control(&id, "cancel").await.0, 200);
    let (status, _) = api.post(&format!("/v1/campaigns/{id}/recipients"), &json!({"recipients": [recipient(1)]})).await;
    assert_eq!(status, 409);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scheduled_campaign_cancelled_before_its_time_sends_nothing() {
    let h = Harness::start("camp-sched", Store::Redis, SandboxConfig::default_accounts(), "").await;
    let api = Api::start(&h).await;
    let _worker = h.spawn_worker(&[]).await;
    let send_at = Instant::now() + Duration::from_secs(30);
    let mut campaign = with_recipients(head("default", "scheduled-10"), 0..10);
    campaign["send_at"] = json!(rfc3339_in(Duration::from_secs(30)));
    let (status, body) = api.post("/v1/campaigns", &campaign).await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let scheduled = api.wait_campaign(&id, "every job scheduled", |c| c["counts"]["scheduled"] == 10).await;
    assert_eq!(scheduled["status"], "scheduled", "{scheduled}");

    let (status, _) = api.control(&id, "cancel").await;
    assert_eq!(status, 200);
    // Cancel wakes the parked jobs: they settle now, not at send_at.
    let settled = api.wait_campaign(&id, "every job cancelled", |c| c["counts"]["cancelled"] == 10).await;
    assert!(Instant::now() < send_at, "settled only at send_at: {settled}");
    assert_eq!(h.sandbox().sent_sms().len(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_cancels_a_scheduled_job() {
    let h = Harness::start("camp-del-sched", Store::Redis, SandboxConfig::default_accounts(), "").await;
    let api = Api::start(&h).await;
    let _worker = h.spawn_worker(&[]).await;
    let send_at = rfc3339_in(Duration::from_secs(60));
    let job = json!({"connector": "tencent_sms", "config": "default", "action": "send_sms", "send_at": send_at,
                     "params": {"phone_numbers": [number(1)], "sign_name": "Yizhan", "template_id": "1001", "template_params": ["1"]}});
    let (status, body) = api.post("/v1/jobs", &job).await;
    assert_eq!(status, 202, "{body}");
    let id = body["ids"][0].as_str().unwrap().to_string();
    eventually("the job is scheduled", WAIT, || async { api.job(&id).await.1["status"] == "scheduled" }).await;
    let (_, scheduled) = api.job(&id).await;
    assert!(scheduled["next_attempt_at"].is_string(), "{scheduled}");

    let (status, body) = api.call(reqwest::Method::DELETE, &format!("/v1/jobs/{id}"), None).await;
    assert_eq!((status, &body["status"]), (200, &json!("cancelled")), "{body}");
    assert_eq!(api.job(&id).await.1["status"], "cancelled");
    assert_eq!(h.sandbox().sent_sms().len(), 0);
}

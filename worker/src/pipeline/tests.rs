//! Every branch of the pipeline, in process: a fake publisher, the SQLite store and parking lot in
//! memory, the local limiter and a scripted connector. No broker, no provider, nothing sleeps.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde_json::json;
use uuid::Uuid;
use yizhan_state::{Finish, Millis, SqliteParking, SqliteStore};

use super::*;
use crate::connectors::Success;
use crate::ratelimit::LocalLimiter;

/// What the fake broker was asked to publish.
#[derive(Debug, Clone, PartialEq)]
struct Sent {
    exchange: String,
    routing_key: String,
    attempt: Option<u32>,
    error_kind: Option<String>,
    body: Vec<u8>,
}

#[derive(Default)]
struct FakeBroker {
    sent: Mutex<Vec<Sent>>,
    refuse: AtomicBool,
}

impl FakeBroker {
    fn sent(&self) -> Vec<Sent> {
        self.sent.lock().unwrap().clone()
    }
}

fn header(headers: &FieldTable, name: &str) -> Option<AMQPValue> {
    headers.inner().get(&ShortString::from(name)).cloned()
}

#[async_trait::async_trait]
impl Publish for FakeBroker {
    async fn publish_all(&self, messages: &[Message<'_>]) -> Vec<Result<(), PublishError>> {
        messages
            .iter()
            .map(|m| {
                if self.refuse.load(Ordering::SeqCst) {
                    return Err(PublishError::Nacked);
                }
                let attempt = match header(&m.headers, ATTEMPT_HEADER) {
                    Some(AMQPValue::LongUInt(n)) => Some(n),
                    _ => None,
                };
                let error_kind = match header(&m.headers, "x-yizhan-error-kind") {
                    Some(AMQPValue::LongString(s)) => Some(s.to_string()),
                    _ => None,
                };
                self.sent.lock().unwrap().push(Sent {
                    exchange: m.exchange.to_string(),
                    routing_key: m.routing_key.to_string(),
                    attempt,
                    error_kind,
                    body: m.body.to_vec(),
                });
                Ok(())
            })
            .collect()
    }
}

/// Answers each call with the next scripted result.
#[derive(Default)]
struct ScriptedConnector {
    answers: Mutex<VecDeque<Result<Success, Failure>>>,
    calls: AtomicUsize,
    /// The params of each call, in order.
    params: Mutex<Vec<Value>>,
}

#[async_trait::async_trait]
impl Connector for ScriptedConnector {
    async fn execute(&self, call: Call<'_>) -> Result<Success, Failure> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.params.lock().unwrap().push(call.params.clone());
        self.answers.lock().unwrap().pop_front().expect("a scripted answer for every call")
    }
}

struct Fixture {
    pipeline: Pipeline,
    broker: Arc<FakeBroker>,
    connector: Arc<ScriptedConnector>,
    limiter: Arc<LocalLimiter>,
}

const SMS: (&str, &str) = ("tencent_sms", "default");
const SES: (&str, &str) = ("tencent_ses", "default");

async fn fixture(on_ambiguous: OnAmbiguous, answers: Vec<Result<Success, Failure>>) -> Fixture {
    fixture_with(on_ambiguous, answers, TimeRules::default()).await
}

/// A fixture whose configs have `rules` (quiet hours, recipient caps).
async fn fixture_with(on_ambiguous: OnAmbiguous, answers: Vec<Result<Success, Failure>>, rules: TimeRules) -> Fixture {
    let ns = format!("pipeline-{}", Uuid::now_v7().simple());
    let store = SqliteStore::open(":memory:", &ns, Duration::from_secs(3600)).await.unwrap();
    let parking = SqliteParking::open(":memory:", &ns).unwrap();
    let broker = Arc::new(FakeBroker::default());
    let connector = Arc::new(ScriptedConnector {
        answers: Mutex::new(answers.into()),
        calls: AtomicUsize::new(0),
        params: Mutex::new(Vec::new()),
    });
    let limiter = Arc::new(LocalLimiter::default());
    let mut connectors = HashMap::new();
    for (kind, name) in [SMS, SES] {
        connectors.insert(
            (kind.to_string(), name.to_string()),
            Configured {
                connector: connector.clone(),
                quotas: vec![Quota::parse("10/s").unwrap()],
                per_recipient: HashMap::new(),
                on_ambiguous,
                rules: rules.clone(),
                fallback: None,
            },
        );
    }
    let pipeline = Pipeline {
        names: Names::new("unit"),
        retry_delays: vec![Duration::from_secs(5), Duration::from_secs(30)],
        connectors: arc_swap::ArcSwap::from_pointee(connectors),
        store: Arc::new(store),
        parking: Arc::new(parking),
        limiter: limiter.clone(),
        publisher: broker.clone(),
        acks: Arc::new(Acks::default()),
        metrics: Metrics::new(),
        owner: "unit-worker".to_string(),
        lease: Duration::from_secs(30),
        held: Mutex::new(HashSet::new()),
        campaigns: CampaignControls::default(),
        caps: Arc::new(crate::caps::LocalCaps::default()),
    };
    Fixture { pipeline, broker, connector, limiter }
}

fn sms_job(id: Uuid) -> Vec<u8> {
    json!({
        "id": id, "connector": "tencent_sms", "config": "default", "action": "send_sms", "max_attempts": 3,
        "params": {"phone_numbers": ["+8613800000000"], "sign_name": "Yizhan", "template_id": "1001", "template_params": ["1"]}
    })
    .to_string()
    .into_bytes()
}

fn read_job(id: Uuid) -> Vec<u8> {
    json!({"id": id, "connector": "tencent_ses", "config": "default", "action": "list_email_identities", "params": {}})
        .to_string()
        .into_bytes()
}

fn attempt_headers(attempt: u32) -> FieldTable {
    let mut headers = FieldTable::default();
    headers.insert(ATTEMPT_HEADER.into(), AMQPValue::LongUInt(attempt));
    headers
}

impl Fixture {
    async fn deliver(&self, body: &[u8], attempt: u32) -> Result<Option<(String, String)>, Unsettled> {
        let headers = attempt_headers(attempt);
        self.pipeline.process(Incoming { body, headers: Some(&headers), routing_key: None }).await
    }

    async fn status(&self, id: Uuid) -> String {
        self.pipeline.store.status(id).await.unwrap().map(|s| s.status).unwrap_or_default()
    }

    fn calls(&self) -> usize {
        self.connector.calls.load(Ordering::SeqCst)
    }

    fn counted(&self, outcome: &str) -> bool {
        self.pipeline.metrics.render().lines().any(|l| {
            l.starts_with("yizhan_jobs_total{") && l.contains(&format!("outcome=\"{outcome}\"")) && l.ends_with(" 1")
        })
    }
}

fn ok() -> Result<Success, Failure> {
    Ok(Success { result: Some(json!({"serial": "s-1"})), receipts: Default::default() })
}

#[tokio::test]
async fn success_is_recorded_and_a_second_delivery_is_a_duplicate() {
    let f = fixture(OnAmbiguous::Retry, vec![ok()]).await;
    let id = Uuid::now_v7();
    f.deliver(&sms_job(id), 1).await.unwrap();
    assert_eq!(f.status(id).await, "succeeded");
    assert!(f.counted("succeeded"));
    f.deliver(&sms_job(id), 1).await.unwrap();
    assert_eq!(f.calls(), 1, "the duplicate never reached the provider");
    assert!(f.counted("duplicate"));
    assert!(f.broker.sent().is_empty(), "nothing to publish for a success");
}

#[tokio::test]
async fn a_transient_failure_is_retried_through_its_delay_lane() {
    let f = fixture(OnAmbiguous::Retry, vec![Err(Failure::transient("HTTP 503"))]).await;
    let id = Uuid::now_v7();
    f.deliver(&sms_job(id), 1).await.unwrap();
    let sent = f.broker.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].exchange, f.pipeline.names.delay(Duration::from_secs(5)), "the first retry waits 5 s");
    assert_eq!((sent[0].routing_key.as_str(), sent[0].attempt), ("normal", Some(2)));
    assert_eq!(f.status(id).await, "retrying");
    assert!(f.counted("retried"));
    // The same attempt delivered again (its ack was lost) is stale: the retry copy is out.
    f.deliver(&sms_job(id), 1).await.unwrap();
    assert_eq!((f.calls(), f.broker.sent().len()), (1, 1));
}

#[tokio::test]
async fn the_last_attempt_failing_transiently_is_dead_lettered_as_exhausted() {
    let f = fixture(OnAmbiguous::Retry, vec![Err(Failure::transient("HTTP 503"))]).await;
    let id = Uuid::now_v7();
    f.deliver(&sms_job(id), 3).await.unwrap();
    let sent = f.broker.sent();
    assert_eq!(sent[0].exchange, f.pipeline.names.dead());
    assert_eq!(sent[0].error_kind.as_deref(), Some("exhausted"));
    assert_eq!(sent[0].body, sms_job(id), "the original message, unchanged");
    assert_eq!(f.status(id).await, "dead");
    assert!(f.counted("dead_lettered"));
}

#[tokio::test]
async fn a_permanent_failure_is_dead_lettered_at_once() {
    let f = fixture(OnAmbiguous::Retry, vec![Err(Failure::permanent("InvalidParameter: bad sign"))]).await;
    let id = Uuid::now_v7();
    f.deliver(&sms_job(id), 1).await.unwrap();
    assert_eq!(f.broker.sent()[0].error_kind.as_deref(), Some("permanent"));
    assert_eq!(f.status(id).await, "dead");
}

#[tokio::test]
async fn invalid_messages_and_unknown_configs_are_dead_lettered_as_invalid() {
    let f = fixture(OnAmbiguous::Retry, vec![]).await;
    f.deliver(b"{not json", 1).await.unwrap();
    let mut job: Value = serde_json::from_slice(&sms_job(Uuid::now_v7())).unwrap();
    job["config"] = json!("nowhere");
    f.deliver(job.to_string().as_bytes(), 1).await.unwrap();
    let kinds: Vec<_> = f.broker.sent().into_iter().map(|s| s.error_kind).collect();
    assert_eq!(kinds, [Some("invalid".to_string()), Some("invalid".to_string())]);
    assert_eq!(f.calls(), 0);
    let invalid: u64 = f
        .pipeline
        .metrics
        .render()
        .lines()
        .filter(|l| l.starts_with("yizhan_jobs_total{") && l.contains("outcome=\"invalid\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(invalid, 2);
}

#[tokio::test]
async fn a_lost_answer_of_a_write_follows_on_ambiguous_and_of_a_read_is_retried() {
    let lost = || Err(Failure::Ambiguous { reason: "read timeout".into() });
    let f = fixture(OnAmbiguous::DeadLetter, vec![lost(), lost()]).await;
    f.deliver(&sms_job(Uuid::now_v7()), 1).await.unwrap();
    f.deliver(&read_job(Uuid::now_v7()), 1).await.unwrap();
    let sent = f.broker.sent();
    assert_eq!(sent[0].error_kind.as_deref(), Some("ambiguous"), "a write is parked for a person");
    assert_eq!((sent[1].error_kind.as_deref(), sent[1].attempt), (None, Some(2)), "a read is simply retried");

    let f = fixture(OnAmbiguous::Retry, vec![lost()]).await;
    f.deliver(&sms_job(Uuid::now_v7()), 1).await.unwrap();
    assert_eq!(f.broker.sent()[0].attempt, Some(2), "on_ambiguous = retry executes it again");
}

/// Claims the job's key for attempt 1 as another worker, at `now`.
async fn claim_as(f: &Fixture, id: Uuid, owner: &str, now: Millis) {
    let request = ClaimRequest {
        key: id.to_string(),
        job_id: id,
        attempt: 1,
        owner: owner.into(),
        now,
        lease: Duration::from_secs(30),
        replay: false,
        campaign: None,
    };
    f.pipeline.store.claim(&request).await.unwrap();
}

/// Claims the job's key as a worker that then died: its lease ran out long ago.
async fn orphan(f: &Fixture, id: Uuid) {
    claim_as(f, id, "dead-worker", now_millis() - 120_000).await;
}

#[tokio::test]
async fn an_orphaned_claim_of_a_write_is_dead_lettered_or_executed_again_by_policy() {
    let f = fixture(OnAmbiguous::DeadLetter, vec![]).await;
    let id = Uuid::now_v7();
    orphan(&f, id).await;
    f.deliver(&sms_job(id), 1).await.unwrap();
    assert_eq!(f.calls(), 0, "never sent twice");
    assert_eq!(f.broker.sent()[0].error_kind.as_deref(), Some("ambiguous"));
    assert_eq!(f.status(id).await, "dead");

    let f = fixture(OnAmbiguous::Retry, vec![ok()]).await;
    let id = Uuid::now_v7();
    orphan(&f, id).await;
    f.deliver(&sms_job(id), 1).await.unwrap();
    assert_eq!(f.calls(), 1, "executed again at once");
    assert_eq!(f.status(id).await, "succeeded");
}

#[tokio::test]
async fn a_retry_whose_copy_was_never_published_is_completed_without_executing() {
    let f = fixture(OnAmbiguous::Retry, vec![]).await;
    let id = Uuid::now_v7();
    let key = id.to_string();
    claim_as(&f, id, "dead-worker", now_millis()).await;
    let retrying = Finish::Retrying { attempt: 1, progress: None, error: "HTTP 503".into(), next_attempt_at: 0 };
    f.pipeline.store.finish(&key, "dead-worker", &retrying, now_millis()).await.unwrap();
    // The worker died before publishing the retry copy; its delivery comes back.
    f.deliver(&sms_job(id), 1).await.unwrap();
    assert_eq!(f.calls(), 0);
    let sent = f.broker.sent();
    assert_eq!((sent[0].exchange.clone(), sent[0].attempt), (f.pipeline.names.delay(Duration::from_secs(5)), Some(2)));
    // Marked published: the same delivery again is stale and publishes nothing more.
    f.deliver(&sms_job(id), 1).await.unwrap();
    assert_eq!(f.broker.sent().len(), 1);
}

#[tokio::test]
async fn a_key_another_worker_runs_is_looked_at_again_later() {
    let f = fixture(OnAmbiguous::Retry, vec![]).await;
    let id = Uuid::now_v7();
    claim_as(&f, id, "busy-worker", now_millis()).await;
    f.deliver(&sms_job(id), 1).await.unwrap();
    assert_eq!(f.calls(), 0);
    let sent = f.broker.sent();
    assert_eq!(sent[0].exchange, f.pipeline.names.delay(Duration::from_secs(30)), "after the lease");
    assert_eq!(sent[0].attempt, Some(1), "the same attempt: it was not tried");
}

#[tokio::test]
async fn a_job_its_config_cannot_take_is_parked_then_released_to_its_lane() {
    let f = fixture(OnAmbiguous::Retry, vec![ok()]).await;
    let config = (SMS.0.to_string(), SMS.1.to_string());
    f.limiter.pause(&config, Duration::from_secs(60)).await.unwrap();
    let id = Uuid::now_v7();
    f.deliver(&sms_job(id), 1).await.unwrap();
    assert_eq!(f.calls(), 0);
    assert!(f.broker.sent().is_empty(), "no broker traffic while it waits");
    assert_eq!(f.status(id).await, "retrying", "waiting, with its next attempt time");
    assert!(f.pipeline.metrics.render().contains("yizhan_jobs_parked_total{connector=\"tencent_sms\"} 1"));
    assert_eq!(f.pipeline.release_due().await.unwrap(), 0, "not due before the pause ends");
    let taken = f.pipeline.parking.take_due(now_millis() + 61_000, 10, Duration::from_secs(1)).await.unwrap();
    assert_eq!(taken.len(), 1, "parked until the pause's end");
    // Back a second early, to wait for the pause's end in place.
    assert!(taken[0].entry.due >= now_millis() + 58_000);

    // Due: published back to its own lane as the same attempt, then gone from the parking lot.
    let mut due = taken[0].entry.clone();
    due.due = now_millis();
    f.pipeline.parking.park(&due).await.unwrap();
    assert_eq!(f.pipeline.release_due().await.unwrap(), 1);
    let sent = f.broker.sent();
    assert_eq!(sent[0].exchange, f.pipeline.names.jobs_exchange());
    assert_eq!((sent[0].routing_key.as_str(), sent[0].attempt), ("normal", Some(1)));
    assert_eq!(sent[0].body, sms_job(id));
    assert_eq!(f.pipeline.parking.waiting().await.unwrap(), 0);
}

#[tokio::test]
async fn waiting_jobs_come_back_one_token_apart() {
    let f = fixture(OnAmbiguous::Retry, vec![]).await;
    let config = (SMS.0.to_string(), SMS.1.to_string());
    f.limiter.pause(&config, Duration::from_secs(60)).await.unwrap();
    for _ in 0..3 {
        f.deliver(&sms_job(Uuid::now_v7()), 1).await.unwrap();
    }
    let mut dues: Vec<i64> = f
        .pipeline
        .parking
        .take_due(now_millis() + 120_000, 10, Duration::from_secs(1))
        .await
        .unwrap()
        .iter()
        .map(|t| t.entry.due)
        .collect();
    dues.sort_unstable();
    assert_eq!(dues.len(), 3);
    // 10/s: a token every 101.5 ms.
    assert!(dues[1] - dues[0] >= 100 && dues[2] - dues[1] >= 100, "turns are a token apart: {dues:?}");
}

#[tokio::test]
async fn a_refused_publish_leaves_the_delivery_unsettled_for_a_requeue() {
    let f = fixture(OnAmbiguous::Retry, vec![Err(Failure::transient("HTTP 503")), ok()]).await;
    f.broker.refuse.store(true, Ordering::SeqCst);
    let id = Uuid::now_v7();
    assert!(matches!(f.deliver(&sms_job(id), 1).await, Err(Unsettled::Publish(_))));
    // Requeued and delivered again: the decided retry is completed, not executed a second time.
    f.broker.refuse.store(false, Ordering::SeqCst);
    f.deliver(&sms_job(id), 1).await.unwrap();
    assert_eq!(f.calls(), 1);
    assert_eq!(f.broker.sent()[0].attempt, Some(2));
}

// Campaigns and time rules: what holds a job back before its call, none of it an attempt.

fn sms_to(id: Uuid, key: &str, numbers: &[&str], extra: Value) -> Vec<u8> {
    let mut job = json!({
        "id": id, "idempotency_key": key, "connector": "tencent_sms", "config": "default", "action": "send_sms",
        "priority": "bulk",
        "params": {"phone_numbers": numbers, "sign_name": "Yizhan", "template_id": "1001", "template_params": ["1"]}
    });
    if let (Some(job), Value::Object(extra)) = (job.as_object_mut(), extra) {
        job.extend(extra);
    }
    job.to_string().into_bytes()
}

async fn parked(f: &Fixture) -> u64 {
    f.pipeline.parking.waiting().await.unwrap()
}

fn rules(quiet_hours: Option<&str>, caps: Option<&str>, on_cap: &str) -> TimeRules {
    let mut text = String::from(
        "[connectors.tencent_sms.default]\nsecret_id = \"x\"\nsecret_key = \"y\"\nsdk_app_id = \"1400000000\"\n",
    );
    if let Some(window) = quiet_hours {
        text.push_str(&format!("quiet_hours = \"{window}\"\n"));
    }
    if let Some(caps) = caps {
        text.push_str(&format!("recipient_caps = \"{caps}\"\non_cap = \"{on_cap}\"\n"));
    }
    let config = crate::config::Config::parse(&text, &|_| None).expect("a valid config");
    config.connectors.values().next().unwrap().common.time_rules().clone()
}

/// A quiet window that holds now, whatever the time of day (ends within the next minute or two).
fn quiet_now() -> String {
    let now = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC);
    let start = now.time();
    let end = now.checked_add(jiff::SignedDuration::from_mins(2)).unwrap().time();
    format!("{:02}:{:02}-{:02}:{:02}", start.hour(), start.minute(), end.hour(), end.minute())
}

#[tokio::test]
async fn a_job_with_send_at_ahead_is_scheduled_in_the_parking_lot_not_attempted() {
    let f = fixture(OnAmbiguous::Retry, vec![]).await;
    let id = Uuid::now_v7();
    let at = jiff::Timestamp::now().checked_add(jiff::SignedDuration::from_secs(3600)).unwrap();
    f.deliver(&sms_to(id, "k-send-at", &["+8613800000000"], json!({"send_at": at.to_string()})), 1).await.unwrap();
    assert_eq!(f.calls(), 0);
    let status = f.pipeline.store.status(id).await.unwrap().unwrap();
    assert_eq!(status.status, "scheduled");
    assert_eq!(status.next_attempt_at, Some(at.as_millisecond()), "the status tells when");
    assert_eq!(parked(&f).await, 1, "held durably in the parking lot, not in memory");
    assert!(f.pipeline.parking.take_due(now_millis(), 10, Duration::from_secs(30)).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_send_at_in_the_past_runs_at_once() {
    let f = fixture(OnAmbiguous::Retry, vec![ok()]).await;
    let id = Uuid::now_v7();
    let at = jiff::Timestamp::now().checked_sub(jiff::SignedDuration::from_secs(5)).unwrap();
    f.deliver(&sms_to(id, "k-past", &["+8613800000000"], json!({"send_at": at.to_string()})), 1).await.unwrap();
    assert_eq!((f.calls(), f.status(id).await.as_str()), (1, "succeeded"));
}

#[tokio::test]
async fn quiet_hours_defer_bulk_jobs_and_let_high_ones_through() {
    let f = fixture_with(OnAmbiguous::Retry, vec![ok()], rules(Some(&quiet_now()), None, "drop")).await;
    let bulk = Uuid::now_v7();
    f.deliver(&sms_to(bulk, "k-bulk", &["+8613800000000"], json!({})), 1).await.unwrap();
    assert_eq!(f.calls(), 0, "a bulk job waits for the window's end");
    let status = f.pipeline.store.status(bulk).await.unwrap().unwrap();
    assert_eq!(status.status, "deferred");
    assert!(status.next_attempt_at.unwrap() > now_millis());
    assert!(f.counted("deferred"));
    assert_eq!(parked(&f).await, 1);

    let high = Uuid::now_v7();
    f.deliver(&sms_to(high, "k-high", &["+8613800000000"], json!({"priority": "high"})), 1).await.unwrap();
    assert_eq!((f.calls(), f.status(high).await.as_str()), (1, "succeeded"), "verification codes go through");
}

#[tokio::test]
async fn recipient_caps_drop_the_capped_jobs_without_a_call_or_dead_letter() {
    let answers = vec![ok(), ok()];
    let f = fixture_with(OnAmbiguous::Retry, answers, rules(None, Some("2/min"), "drop")).await;
    let ids: Vec<Uuid> = (0..5).map(|_| Uuid::now_v7()).collect();
    for (i, id) in ids.iter().enumerate() {
        f.deliver(&sms_to(*id, &format!("k-cap-{i}"), &["+8613800000000"], json!({})), 1).await.unwrap();
    }
    assert_eq!(f.calls(), 2, "two SMS under 2/min");
    let mut statuses = Vec::new();
    for id in &ids {
        statuses.push(f.status(*id).await);
    }
    assert_eq!(statuses, ["succeeded", "succeeded", "capped", "capped", "capped"]);
    assert!(f.broker.sent().is_empty(), "no retry, no dead letter");
    assert!(f.pipeline.metrics.render().contains("outcome=\"capped\"} 3"));
    // A redelivery of an admitted job is not counted again: it is a duplicate, not capped.
    f.deliver(&sms_to(ids[0], "k-cap-0", &["+8613800000000"], json!({})), 1).await.unwrap();
    assert_eq!(f.status(ids[0]).await, "succeeded");
}

#[tokio::test]
async fn only_the_capped_numbers_of_a_shared_send_are_left_out_and_reported() {
    let f = fixture_with(OnAmbiguous::Retry, vec![ok(), ok()], rules(None, Some("1/h"), "drop")).await;
    f.deliver(&sms_to(Uuid::now_v7(), "k-first", &["+8613800000001"], json!({})), 1).await.unwrap();
    let id = Uuid::now_v7();
    f.deliver(&sms_to(id, "k-many", &["+8613800000001", "+8613800000002", "+8613800000003"], json!({})), 1)
        .await
        .unwrap();
    let sent = f.connector.params.lock().unwrap()[1]["phone_numbers"].clone();
    assert_eq!(sent, json!(["+8613800000002", "+8613800000003"]), "the capped number is left out");
    let status = f.pipeline.store.status(id).await.unwrap().unwrap();
    assert_eq!(status.status, "succeeded");
    assert_eq!(status.result.unwrap()["capped"], json!([{"to": "+8613800000001", "code": "capped"}]));
}

#[tokio::test]
async fn on_cap_defer_waits_until_the_cap_allows() {
    let f = fixture_with(OnAmbiguous::Retry, vec![ok()], rules(None, Some("1/h"), "defer")).await;
    f.deliver(&sms_to(Uuid::now_v7(), "k-a", &["+8613800000001"], json!({})), 1).await.unwrap();
    let id = Uuid::now_v7();
    f.deliver(&sms_to(id, "k-b", &["+8613800000001"], json!({})), 1).await.unwrap();
    assert_eq!(f.calls(), 1);
    let status = f.pipeline.store.status(id).await.unwrap().unwrap();
    assert_eq!(status.status, "deferred");
    let wait = status.next_attempt_at.unwrap() - now_millis();
    assert!((3_590_000..=3_600_000).contains(&wait), "deferred by about an hour, not {wait} ms");
}

async fn campaign(f: &Fixture, control: yizhan_state::CampaignControl) -> Uuid {
    let id = Uuid::now_v7();
    let record = yizhan_state::CampaignRecord {
        id,
        tenant: "default".into(),
        key: format!("c-{id}"),
        head: json!({"name": "spring"}),
        send_at: None,
        created_at: now_millis(),
    };
    f.pipeline.store.create_campaign(&record).await.unwrap();
    f.pipeline.store.add_to_campaign(id, 1).await.unwrap();
    f.pipeline.store.control_campaign(id, control).await.unwrap();
    id
}

#[tokio::test]
async fn a_paused_campaigns_job_is_held_unclaimed_and_woken_by_resume() {
    let f = fixture(OnAmbiguous::Retry, vec![]).await;
    let campaign = campaign(&f, yizhan_state::CampaignControl::Paused).await;
    let id = Uuid::now_v7();
    f.deliver(&sms_to(id, "k-paused", &["+8613800000000"], json!({"campaign": campaign})), 1).await.unwrap();
    assert_eq!(f.calls(), 0);
    assert_eq!(f.pipeline.store.status(id).await.unwrap(), None, "not claimed: it stays queued");
    assert_eq!(f.pipeline.wake_resumed().await.unwrap(), 0, "still paused: still held");
    assert!(
        f.pipeline.parking.take_due(now_millis() + 86_400_000, 10, Duration::from_secs(30)).await.unwrap().is_empty()
    );

    f.pipeline.store.control_campaign(campaign, yizhan_state::CampaignControl::Running).await.unwrap();
    assert_eq!(f.pipeline.wake_resumed().await.unwrap(), 1, "a held job outliving the pause is woken");
    assert_eq!(f.pipeline.release_due().await.unwrap(), 1);
    assert_eq!(f.broker.sent()[0].routing_key, "bulk", "back to its lane");
}

#[tokio::test]
async fn a_cancelled_campaigns_job_ends_cancelled_without_a_call() {
    let f = fixture(OnAmbiguous::Retry, vec![]).await;
    let campaign = campaign(&f, yizhan_state::CampaignControl::Cancelled).await;
    let id = Uuid::now_v7();
    f.deliver(&sms_to(id, "k-cancelled", &["+8613800000000"], json!({"campaign": campaign})), 1).await.unwrap();
    assert_eq!(f.calls(), 0);
    assert_eq!(f.status(id).await, "cancelled");
    assert!(f.counted("cancelled"));
    assert!(f.pipeline.metrics.render().contains("yizhan_campaign_jobs_total{outcome=\"cancelled\"} 1"));
    let (_, status) = f.pipeline.store.campaign(campaign).await.unwrap().unwrap();
    assert_eq!((status.counts["cancelled"], status.counts["queued"]), (1, 0));
}

#[tokio::test]
async fn a_job_cancelled_before_any_worker_took_it_never_runs() {
    let f = fixture(OnAmbiguous::Retry, vec![]).await;
    let id = Uuid::now_v7();
    f.pipeline.store.accept(&[id], now_millis()).await.unwrap();
    assert_eq!(f.pipeline.store.cancel_job(id, now_millis()).await.unwrap(), yizhan_state::CancelOutcome::Cancelled);
    f.deliver(&sms_to(id, "k-tomb", &["+8613800000000"], json!({})), 1).await.unwrap();
    assert_eq!(f.calls(), 0);
    assert_eq!(f.status(id).await, "cancelled");
    assert!(f.counted("cancelled"));
}

// Failover: a second config of the same kind takes what the first cannot, never both.

/// The fixture's SMS config with a fallback `backup` (its own scripted connector), after
/// `attempts` transient attempts or a pause longer than 30 s.
fn with_backup(f: &mut Fixture, answers: Vec<Result<Success, Failure>>, attempts: u32) -> Arc<ScriptedConnector> {
    let backup = Arc::new(ScriptedConnector {
        answers: Mutex::new(answers.into()),
        calls: AtomicUsize::new(0),
        params: Mutex::new(Vec::new()),
    });
    let mut configs = (**f.pipeline.connectors.load()).clone();
    let primary = configs.get_mut(&(SMS.0.to_string(), SMS.1.to_string())).unwrap();
    primary.fallback = Some(Fallback { config: "backup".into(), after: Duration::from_secs(30), attempts });
    let quotas = primary.quotas.clone();
    configs.insert(
        (SMS.0.to_string(), "backup".to_string()),
        Configured {
            connector: backup.clone(),
            quotas,
            per_recipient: HashMap::new(),
            on_ambiguous: OnAmbiguous::Retry,
            rules: TimeRules::default(),
            fallback: None,
        },
    );
    f.pipeline.connectors.store(Arc::new(configs));
    backup
}

fn unreachable() -> Result<Success, Failure> {
    Err(Failure::Unreachable { reason: "cannot connect to the provider: connection refused".into() })
}

#[tokio::test]
async fn an_unreachable_provider_sends_the_job_through_the_fallback_at_once() {
    let mut f = fixture(OnAmbiguous::Retry, vec![unreachable()]).await;
    let backup = with_backup(&mut f, vec![ok()], 3);
    let id = Uuid::now_v7();
    f.deliver(&sms_job(id), 1).await.unwrap();
    assert_eq!((f.calls(), backup.calls.load(Ordering::SeqCst)), (1, 1));
    let status = f.pipeline.store.status(id).await.unwrap().unwrap();
    assert_eq!((status.status.as_str(), status.attempts), ("succeeded", 1));
    assert_eq!(status.result.unwrap()["config"], "backup", "the result names the config that sent it");
    assert!(f.counted("failed_over"));
}

#[tokio::test]
async fn after_fallback_attempts_transient_failures_the_next_attempt_goes_to_the_fallback() {
    let mut f = fixture(OnAmbiguous::Retry, vec![Err(Failure::transient("InternalError"))]).await;
    let backup = with_backup(&mut f, vec![ok()], 1);
    let id = Uuid::now_v7();
    f.deliver(&sms_job(id), 1).await.unwrap();
    assert_eq!(f.status(id).await, "retrying", "the first attempt is the primary's");
    f.deliver(&sms_job(id), 2).await.unwrap();
    assert_eq!((f.calls(), backup.calls.load(Ordering::SeqCst)), (1, 1), "the second is the fallback's");
    assert_eq!(f.status(id).await, "succeeded");
}

#[tokio::test]
async fn a_lost_answer_is_never_sent_again_through_the_fallback_at_once() {
    let mut f = fixture(OnAmbiguous::Retry, vec![Err(Failure::Ambiguous { reason: "read timeout".into() })]).await;
    let backup = with_backup(&mut f, vec![], 3);
    f.deliver(&sms_job(Uuid::now_v7()), 1).await.unwrap();
    assert_eq!(backup.calls.load(Ordering::SeqCst), 0, "the primary may have sent it: no second send elsewhere");
}

#[tokio::test]
async fn a_primary_paused_longer_than_fallback_after_sends_through_the_fallback() {
    let mut f = fixture(OnAmbiguous::Retry, vec![]).await;
    let backup = with_backup(&mut f, vec![ok()], 3);
    let primary = (SMS.0.to_string(), SMS.1.to_string());
    f.limiter.pause(&primary, Duration::from_secs(60)).await.unwrap();
    let id = Uuid::now_v7();
    f.deliver(&sms_job(id), 1).await.unwrap();
    assert_eq!((f.calls(), backup.calls.load(Ordering::SeqCst)), (0, 1));
    assert_eq!(f.status(id).await, "succeeded");

    // A pause shorter than fallback_after is waited out on the primary.
    let mut f = fixture(OnAmbiguous::Retry, vec![]).await;
    let backup = with_backup(&mut f, vec![], 3);
    f.limiter.pause(&primary, Duration::from_secs(10)).await.unwrap();
    f.deliver(&sms_job(Uuid::now_v7()), 1).await.unwrap();
    assert_eq!(backup.calls.load(Ordering::SeqCst), 0);
    assert_eq!(parked(&f).await, 1);
}

#[tokio::test]
async fn a_retry_goes_back_to_the_lane_the_job_came_from() {
    let f = fixture(OnAmbiguous::Retry, vec![Err(Failure::transient("HTTP 503"))]).await;
    // A raw AMQP client set a tenant in the body but published to the plain lane.
    let mut job: Value = serde_json::from_slice(&sms_job(Uuid::now_v7())).unwrap();
    job["tenant"] = json!("acme");
    let headers = attempt_headers(1);
    let body = job.to_string().into_bytes();
    f.pipeline.process(Incoming { body: &body, headers: Some(&headers), routing_key: Some("normal") }).await.unwrap();
    assert_eq!(f.broker.sent()[0].routing_key, "normal", "not acme's lane, which may not exist");
}

#[tokio::test]
async fn with_sharded_lanes_a_retry_waits_and_comes_back_on_its_keys_shard() {
    let mut f = fixture(OnAmbiguous::Retry, vec![Err(Failure::transient("HTTP 503"))]).await;
    f.pipeline.names = Names::new("unit").with_shards(4);
    let key = "spring-2025:+8613800000000"; // shard 3 of 4 (broker's fixed vectors)
    let body = sms_to(Uuid::now_v7(), key, &["+8613800000000"], json!({"tenant": "acme"}));
    let headers = attempt_headers(1);
    let incoming = Incoming { body: &body, headers: Some(&headers), routing_key: Some("bulk.acme.s.1") };
    f.pipeline.process(incoming).await.unwrap();
    let sent = f.broker.sent();
    assert_eq!(sent[0].exchange, "unit.delay.5s.s.3", "its key's shard of the delay");
    assert_eq!(sent[0].routing_key, "bulk.acme.s.3", "to its key's shard, whichever it came from");
}

// Completion callbacks: published (confirmed) after a final record, before the ack; none for a
// job without one.

fn with_callback(body: &[u8]) -> Vec<u8> {
    let mut job: Value = serde_json::from_slice(body).unwrap();
    job["callback"] = json!({"url": "https://hooks.example.com/done", "secret": "s3cr3t-key"});
    job.to_string().into_bytes()
}

/// The callback messages published, in order.
fn callbacks(f: &Fixture) -> Vec<yizhan_schemas::CallbackMessage> {
    f.broker
        .sent()
        .iter()
        .filter(|s| s.routing_key == yizhan_broker::CALLBACK_ROUTING_KEY)
        .map(|s| {
            assert_eq!(s.exchange, "unit.jobs", "through the jobs exchange to <prefix>.callbacks");
            serde_json::from_slice(&s.body).unwrap()
        })
        .collect()
}

#[test]
fn a_callback_follows_the_record_of_a_final_state_only() {
    let backoff = Backoff { delays: &[Duration::from_secs(5)] };
    // (A success is checked through the shell below, with the connector's answer.)
    let capped = decide::settle(Settle::Capped { result: Some(json!({"capped": 1})) }, 2, &backoff, 0);
    let effects = decide::with_callback(capped, false);
    assert!(matches!(effects[0], Effect::Record(Finish::Capped { .. })));
    assert_eq!(
        effects[1],
        Effect::Callback(Completion::Final {
            status: FinishedState::Capped,
            attempts: 2,
            result: Some(json!({"capped": 1})),
            error: None
        })
    );
    assert!(matches!(effects[2], Effect::Settled { .. }));

    let dead = Settle::Dead { kind: DeadKind::Permanent, reason: "bad sign".into(), progress: None };
    let effects = decide::with_callback(decide::settle(dead, 1, &backoff, 0), false);
    assert!(matches!(effects[0], Effect::DeadLetter { .. }) && matches!(effects[1], Effect::Record(_)));
    assert_eq!(
        effects[2],
        Effect::Callback(Completion::Final {
            status: FinishedState::Dead,
            attempts: 1,
            result: None,
            error: Some("bad sign".into())
        })
    );
    let effects = decide::with_callback(decide::settle(Settle::Cancelled, 1, &backoff, 0), false);
    let cancelled = Completion::Final { status: FinishedState::Cancelled, attempts: 1, result: None, error: None };
    assert_eq!(effects[1], Effect::Callback(cancelled));

    // Waiting is not final: nothing to report.
    let retry = Settle::Retry { progress: None, reason: "503".into(), retry_after: None };
    let effects = decide::settle(retry, 1, &backoff, 0);
    assert_eq!(decide::with_callback(effects.clone(), false), effects);
    let not_yet = Settle::NotYet { until: 10, progress: None, why: WaitReason::Scheduled, reason: "later".into() };
    let effects = decide::settle(not_yet, 1, &backoff, 0);
    assert_eq!(decide::with_callback(effects.clone(), false), effects);

    // A key finished before this delivery: the store says how, before the outcome.
    let Claimed::Done(effects) = decide::on_claim(Claim::Finished { state: FinishedState::Cancelled }, 1, &backoff)
    else {
        panic!("done")
    };
    let effects = decide::with_callback(effects, true);
    assert_eq!(effects[0], Effect::Callback(Completion::Stored));
    assert!(matches!(effects[1], Effect::Settled { .. }));
    let Claimed::Done(stale) = decide::on_claim(Claim::Stale, 1, &backoff) else { panic!("done") };
    assert_eq!(decide::with_callback(stale.clone(), false), stale, "a stale copy reports nothing");
}

#[tokio::test]
async fn a_job_with_a_callback_publishes_its_final_state_and_one_without_publishes_none() {
    let f = fixture(OnAmbiguous::Retry, vec![ok(), ok()]).await;
    f.deliver(&sms_job(Uuid::now_v7()), 1).await.unwrap();
    assert!(f.broker.sent().is_empty(), "no callback, no message");

    let id = Uuid::now_v7();
    f.deliver(&with_callback(&sms_job(id)), 1).await.unwrap();
    let sent = callbacks(&f);
    assert_eq!(sent.len(), 1);
    let message = &sent[0];
    assert_eq!(
        (message.url.as_str(), message.secret.as_deref()),
        ("https://hooks.example.com/done", Some("s3cr3t-key"))
    );
    assert_eq!(message.body.id, id);
    assert_eq!((message.body.status.as_str(), message.body.attempts), ("succeeded", 1));
    assert_eq!(message.body.result, Some(json!({"serial": "s-1"})));
    assert_eq!(f.status(id).await, "succeeded", "recorded before the callback went out");
    assert!(!String::from_utf8(message.body_bytes()).unwrap().contains("s3cr3t-key"));
}

#[tokio::test]
async fn a_dead_job_reports_its_error_after_its_dead_letter() {
    let f = fixture(OnAmbiguous::Retry, vec![Err(Failure::permanent("InvalidParameter: bad sign"))]).await;
    let id = Uuid::now_v7();
    f.deliver(&with_callback(&sms_job(id)), 1).await.unwrap();
    let sent = f.broker.sent();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].error_kind.as_deref(), Some("permanent"));
    let message = &callbacks(&f)[0];
    assert_eq!(message.body.status, "dead");
    assert_eq!(message.body.error.as_deref(), Some("InvalidParameter: bad sign"));
    assert!(message.body.result.is_none());
}

#[tokio::test]
async fn a_retry_reports_nothing_until_the_job_ends() {
    let f = fixture(OnAmbiguous::Retry, vec![Err(Failure::transient("HTTP 503")), ok()]).await;
    let id = Uuid::now_v7();
    let job = with_callback(&sms_job(id));
    f.deliver(&job, 1).await.unwrap();
    assert!(callbacks(&f).is_empty());
    f.deliver(&job, 2).await.unwrap();
    let sent = callbacks(&f);
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].body.status.as_str(), sent[0].body.attempts), ("succeeded", 2));
}

#[tokio::test]
async fn a_job_cancelled_before_it_ran_reports_cancelled() {
    let f = fixture(OnAmbiguous::Retry, vec![]).await;
    let id = Uuid::now_v7();
    f.pipeline.store.accept(&[id], now_millis()).await.unwrap();
    f.pipeline.store.cancel_job(id, now_millis()).await.unwrap();
    f.deliver(&with_callback(&sms_job(id)), 1).await.unwrap();
    assert_eq!(f.calls(), 0);
    let sent = callbacks(&f);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].body.status, "cancelled");
}

#[tokio::test]
async fn an_unconfirmed_callback_is_published_again_by_the_redelivery() {
    let f = fixture(OnAmbiguous::Retry, vec![ok()]).await;
    let id = Uuid::now_v7();
    let job = with_callback(&sms_job(id));
    f.broker.refuse.store(true, Ordering::SeqCst);
    assert!(f.deliver(&job, 1).await.is_err(), "not settled: requeued");
    assert_eq!(f.status(id).await, "succeeded");
    f.broker.refuse.store(false, Ordering::SeqCst);
    // The redelivery finds the key finished: the job is not sent again, its callback is.
    f.deliver(&job, 1).await.unwrap();
    assert_eq!(f.calls(), 1);
    let sent = callbacks(&f);
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0].body.status.as_str(), sent[0].body.result.clone()),
        ("succeeded", Some(json!({"serial": "s-1"})))
    );

    // A duplicate (another job id, the same key) reports nothing: the key's own job did.
    let mut duplicate: Value = serde_json::from_slice(&job).unwrap();
    duplicate["id"] = json!(Uuid::now_v7());
    duplicate["idempotency_key"] = json!(id.to_string());
    f.deliver(duplicate.to_string().as_bytes(), 1).await.unwrap();
    assert_eq!(callbacks(&f).len(), 1);
}

#[test]
fn a_success_records_the_receipts_it_expects_in_the_same_write() {
    let backoff = Backoff { delays: &[Duration::from_secs(5)] };
    let receipts = yizhan_state::ExpectedReceipts {
        sids: vec![("2019:1".into(), "+8613800000001".into())],
        pull: None,
        callback: Some(r#"{"url":"https://hooks.example.com/x"}"#.into()),
    };
    let succeeded = Settle::Succeeded { result: Some(json!({"numbers": []})), receipts: receipts.clone() };
    let effects = decide::settle(succeeded, 1, &backoff, 0);
    assert_eq!(
        effects[0],
        Effect::Record(Finish::Succeeded { attempt: 1, result: Some(json!({"numbers": []})), receipts })
    );
    assert_eq!(effects.iter().filter(|e| matches!(e, Effect::Record(_))).count(), 1, "one write");
}

fn sent_with_receipt(serial: &str) -> Result<Success, Failure> {
    let receipts = crate::connectors::Receipts { sids: vec![(serial.into(), "+8613800000000".into())], poll: false };
    Ok(Success { result: Some(json!({"serial": serial})), receipts })
}

#[tokio::test]
async fn a_success_whose_receipts_came_first_reports_them_in_its_callback() {
    let f = fixture(OnAmbiguous::Retry, vec![sent_with_receipt("s-early"), sent_with_receipt("s-late")]).await;
    let early = yizhan_state::Receipt {
        sid: "s-early".into(),
        state: yizhan_state::DeliveryState::Delivered,
        code: Some("DELIVRD".into()),
        at: 5,
    };
    assert_eq!(f.pipeline.store.record_receipts(&[early], 5).await.unwrap().early, 1);

    let first = Uuid::now_v7();
    f.deliver(&with_callback(&sms_job(first)), 1).await.unwrap();
    let second = Uuid::now_v7();
    let mut later: Value = serde_json::from_slice(&with_callback(&sms_job(second))).unwrap();
    later["idempotency_key"] = json!("another key");
    f.deliver(later.to_string().as_bytes(), 1).await.unwrap();

    let sent = callbacks(&f);
    assert_eq!(sent.len(), 2);
    let delivery = sent[0].body.delivery.clone().expect("the receipt that came first is final already");
    assert_eq!(delivery["+8613800000000"]["state"], "delivered");
    assert_eq!(sent[1].body.delivery, None, "still pending: reported again once its receipt comes");
    let status = f.pipeline.store.status(second).await.unwrap().unwrap();
    assert_eq!(status.delivery.unwrap()["+8613800000000"].state, yizhan_state::DeliveryState::Pending);
}

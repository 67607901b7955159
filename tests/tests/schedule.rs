//! Issue 18 end to end, with the real binaries, the broker, the state store and the sandbox:
//! `send_at` (also across a worker kill and a broker restart, and cancelled with `DELETE`), quiet
//! hours, recipient caps (one worker, and two sharing Redis), and bad settings refused at start.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use yizhan_sandbox::{SandboxConfig, SandboxState};
use yizhan_schemas::{Job, MissingId, validate_job_value};
use yizhan_state::StateStore;
use yizhan_tests::api::Api;
use yizhan_tests::rabbit::RabbitNode;
use yizhan_tests::{Harness, Store, WAIT, Worker, binary, eventually, now_ms, number, rfc3339_millis};

/// How late after its time a job may reach the provider (the issue's bound).
const ON_TIME: Duration = Duration::from_secs(2);
/// How often the tests look at the sandbox while a job must not be sent yet.
const WATCH_EVERY: Duration = Duration::from_millis(10);

/// A second SMS config with the sandbox's account and `rules` (quiet hours, caps) added.
fn sms_config(name: &str, rules: &str) -> String {
    format!(
        r#"
[connectors.tencent_sms.{name}]
secret_id = "{secret_id}"
secret_key = "${{YIZHAN_TEST_SMS_KEY}}"
sdk_app_id = "{app}"
endpoint = "{{sandbox}}"
{rules}
"#,
        secret_id = yizhan_sandbox::DEFAULT_SECRET_ID,
        app = yizhan_sandbox::DEFAULT_SDK_APP_ID,
    )
}

/// An SMS job to `to` through config `config`, validated as the producer does.
fn sms(config: &str, to: &[&str], priority: &str, send_at: Option<i64>) -> Job {
    let mut value = json!({
        "connector": "tencent_sms", "config": config, "action": "send_sms", "priority": priority,
        "params": {"phone_numbers": to, "sign_name": "Yizhan", "template_id": "1001", "template_params": ["123456"]},
    });
    if let Some(at) = send_at {
        value["send_at"] = json!(rfc3339_millis(at));
    }
    validate_job_value(&value, MissingId::Assign).unwrap_or_else(|e| panic!("invalid test job: {e:?}"))
}

/// `at` is `expected`, or at most a few milliseconds later: the worker reckons the wait from its
/// clock when it decides, and the time it records from its clock a moment later.
fn assert_time(at: Option<i64>, expected: i64, what: &str) {
    let at = at.unwrap_or_else(|| panic!("{what}: no time"));
    assert!((expected..expected + 100).contains(&at), "{what}: {} ms off", at - expected);
}

/// Polls the job's status until it is `status`; returns it.
async fn wait_status(store: &dyn StateStore, id: uuid::Uuid, status: &str) -> yizhan_state::JobStatus {
    eventually(&format!("job {id} is {status}"), WAIT, || async {
        store.status(id).await.unwrap().is_some_and(|s| s.status == status)
    })
    .await;
    store.status(id).await.unwrap().unwrap()
}

/// Watches `to`'s SMS: none may arrive before `not_before` (ms), and one must by `not_before` +
/// [`ON_TIME`]. Returns how long after `not_before` it was first seen.
async fn sent_on_time(sandbox: &SandboxState, to: &str, not_before: i64) -> Duration {
    loop {
        let now = now_ms();
        let sent = sandbox.sms_count_for(to);
        if now < not_before {
            assert_eq!(sent, 0, "{to} was sent {} ms before its time", not_before - now);
        } else if sent > 0 {
            return Duration::from_millis((now - not_before) as u64);
        } else {
            let late = Duration::from_millis((now - not_before) as u64);
            assert!(late <= ON_TIME, "{to} still not sent {late:?} after its time");
        }
        tokio::time::sleep(WATCH_EVERY).await;
    }
}

/// Starts a worker with more environment than the harness gives; waits until it is ready.
async fn spawn_worker_with(h: &Harness, env: &[(&str, String)]) -> Worker {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log = h.dir.path().join(format!("worker-{port}.log"));
    let child = Command::new(binary("yizhan-worker"))
        .envs(h.env())
        .env("YIZHAN_METRICS_ADDR", format!("127.0.0.1:{port}"))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn yizhan-worker");
    let worker = Worker { child, metrics: format!("http://127.0.0.1:{port}"), log };
    eventually("the worker is ready", WAIT, || async {
        reqwest::get(format!("{}/readyz", worker.metrics)).await.is_ok_and(|r| r.status().is_success())
    })
    .await;
    worker
}

// ---- send_at ----

/// A job scheduled a few seconds ahead is parked as `scheduled` with its time, is not sent before
/// it, and goes out within [`ON_TIME`] after it, as its first attempt.
#[tokio::test(flavor = "multi_thread")]
async fn a_scheduled_job_goes_out_at_its_time_not_before() {
    let h = Harness::start("sched", Store::Redis, SandboxConfig::default_accounts(), "").await;
    let worker = h.spawn_worker(&[]).await;
    let store = h.store().await;
    let to = number(1);
    let send_at = now_ms() + 6_000;
    let ids = h.submit(&[sms("default", &[&to], "normal", Some(send_at))]).await;

    let scheduled = wait_status(store.as_ref(), ids[0], "scheduled").await;
    assert_time(scheduled.next_attempt_at, send_at, "scheduled for its send_at");
    let late = sent_on_time(&h.sandbox(), &to, send_at).await;
    println!("sent {late:?} after its send_at");

    let done = wait_status(store.as_ref(), ids[0], "succeeded").await;
    assert_eq!(done.attempts, 1, "waiting for send_at is not an attempt");
    assert_eq!(h.sandbox().sms_count_for(&to), 1);
    assert_eq!(worker.jobs_total("retried").await, 0);
}

/// The wait survives its worker's death and a broker restart: nothing of it is held in a process
/// or in the broker, and a new worker sends it on time.
#[tokio::test(flavor = "multi_thread")]
async fn a_scheduled_job_survives_a_killed_worker_and_a_broker_restart() {
    let mut node = RabbitNode::start().await;
    let h = Harness::start_on("sched-restart", Store::Sqlite, SandboxConfig::default_accounts(), "", &node.amqp_url())
        .await;
    let mut worker = h.spawn_worker(&[]).await;
    let store = h.store().await;
    let to = number(2);
    // Long enough for the kill, the broker's restart and a new worker: the issue's 20 s, and 5 s
    // more for a loaded machine (a CI run took 29.5 s).
    let send_at = now_ms() + 25_000;
    let ids = h.submit(&[sms("default", &[&to], "bulk", Some(send_at))]).await;
    let scheduled = wait_status(store.as_ref(), ids[0], "scheduled").await;
    assert_time(scheduled.next_attempt_at, send_at, "scheduled for its send_at");

    worker.signal_and_wait("KILL");
    node.stop_node().await;
    node.start_node().await;
    let worker = h.spawn_worker(&[]).await;
    let restarted = now_ms();
    if restarted < send_at {
        assert_eq!(store.status(ids[0]).await.unwrap().unwrap().status, "scheduled");
        let late = sent_on_time(&h.sandbox(), &to, send_at).await;
        println!("restarted {} ms before send_at; sent {late:?} after it", send_at - restarted);
    } else {
        // A machine too busy to restart before send_at: the job is due when the new worker is
        // ready, and goes out at once, still once and as its first attempt.
        let late = sent_on_time(&h.sandbox(), &to, restarted).await;
        println!("restarted {} ms after send_at; sent {late:?} after the new worker was ready", restarted - send_at);
    }
    assert_eq!(wait_status(store.as_ref(), ids[0], "succeeded").await.attempts, 1);
    assert_eq!(h.sandbox().sms_count_for(&to), 1, "sent once");
    drop(worker);
}

/// `DELETE /v1/jobs/{id}` on a scheduled job: it is never sent, also once its time has come and
/// its parked copy is back at a worker.
#[tokio::test(flavor = "multi_thread")]
async fn a_scheduled_job_cancelled_with_delete_is_never_sent() {
    let h = Harness::start("sched-delete", Store::Redis, SandboxConfig::default_accounts(), "").await;
    let api = Api::start(&h).await;
    let worker = h.spawn_worker(&[]).await;
    let (cancelled_to, kept_to) = (number(3), number(4));
    let send_at = now_ms() + 4_000;
    let jobs = json!([
        sms("default", &[&cancelled_to], "normal", Some(send_at)),
        sms("default", &[&kept_to], "normal", Some(send_at)),
    ]);
    let (status, body) = api.call(reqwest::Method::POST, "/v1/jobs", Some(&jobs)).await;
    assert_eq!(status, 202, "{body}");
    let (cancelled, kept) =
        (body["ids"][0].as_str().unwrap().to_string(), body["ids"][1].as_str().unwrap().to_string());
    eventually("both jobs are scheduled", WAIT, || async {
        api.job(&cancelled).await.1["status"] == "scheduled" && api.job(&kept).await.1["status"] == "scheduled"
    })
    .await;
    assert!(api.job(&cancelled).await.1["next_attempt_at"].is_string(), "a scheduled job shows its time");

    let (status, body) = api.call(reqwest::Method::DELETE, &format!("/v1/jobs/{cancelled}"), None).await;
    assert_eq!((status, &body["status"]), (200, &json!("cancelled")), "{body}");

    // The other job of the same time shows when the cancelled one's copy came back too.
    sent_on_time(&h.sandbox(), &kept_to, send_at).await;
    eventually("the cancelled job's copy was settled without a call", WAIT, || async {
        worker.jobs_total("cancelled").await == 1
    })
    .await;
    assert_eq!(h.sandbox().sms_count_for(&cancelled_to), 0, "a cancelled job was sent");
    assert_eq!(api.job(&cancelled).await.1["status"], "cancelled");
    eventually("the other job succeeded", WAIT, || async { api.job(&kept).await.1["status"] == "succeeded" }).await;
}

// ---- quiet hours ----

/// Quiet hours that cover now and end `ahead` from now. A window is `HH:MM-HH:MM`, so it ends on
/// a minute of local time; so as not to wait up to a minute for the next one, the window's time
/// zone is one of the test's own, whose offset from UTC has seconds, chosen so that a local minute
/// begins `ahead` from now. (Real zones have whole-minute offsets; the worker reads zones by
/// name through jiff, which takes them from `TZDIR` when it is set.)
struct QuietWindow {
    /// The `quiet_hours` value: from 30 minutes before the end to the end, local time.
    window: String,
    /// The end, in ms since the epoch (a whole second).
    end: i64,
    /// The zone's offset east of UTC, in seconds (0-59).
    offset: i64,
}

impl QuietWindow {
    fn ending_in(ahead: Duration) -> QuietWindow {
        let end_s = (now_ms() + ahead.as_millis() as i64).div_euclid(1000) + 1;
        let offset = (60 - end_s.rem_euclid(60)) % 60;
        let end_minute = (end_s + offset) / 60 % 1440;
        let start_minute = (end_minute + 1440 - 30) % 1440;
        let hhmm = |m: i64| format!("{:02}:{:02}", m / 60, m % 60);
        QuietWindow { window: format!("{}-{}", hhmm(start_minute), hhmm(end_minute)), end: end_s * 1000, offset }
    }

    /// Writes the zone as `<dir>/Yizhan/Quiet`, for `TZDIR=<dir>` and `timezone = "Yizhan/Quiet"`.
    fn write_zone(&self, dir: &std::path::Path) {
        std::fs::create_dir_all(dir.join("Yizhan")).unwrap();
        std::fs::write(dir.join("Yizhan/Quiet"), fixed_offset_tzif(self.offset as i32)).unwrap();
    }
}

/// A TZif file (RFC 8536, version 2) of a zone always `offset` seconds east of UTC: no
/// transitions, one local time type, and the same rule as a POSIX TZ footer.
fn fixed_offset_tzif(offset: i32) -> Vec<u8> {
    let block = |out: &mut Vec<u8>| {
        out.extend_from_slice(b"TZif2");
        out.extend_from_slice(&[0; 15]);
        // isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt
        for count in [0u32, 0, 0, 0, 1, 4] {
            out.extend_from_slice(&count.to_be_bytes());
        }
        // The local time type: UT offset, not DST, designation at index 0.
        out.extend_from_slice(&offset.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(b"LOC\0");
    };
    let mut out = Vec::new();
    block(&mut out); // version 1 data
    block(&mut out); // version 2 data (64-bit times; there are none)
    // POSIX offsets count west of UTC.
    out.extend_from_slice(format!("\nLOC-00:00:{offset:02}\n").as_bytes());
    out
}

/// Inside quiet hours a `bulk` job is deferred (status `deferred` with the window's end, outcome
/// `deferred`, no attempt) while a `high` one to the same config goes at once; the deferred job
/// goes out within [`ON_TIME`] of the window's end.
#[tokio::test(flavor = "multi_thread")]
async fn quiet_hours_defer_bulk_to_their_end_and_let_high_through() {
    // Long enough for the worker to start and take both jobs before the window ends.
    let quiet = QuietWindow::ending_in(Duration::from_secs(12));
    let rules = format!("quiet_hours = \"{}\"\ntimezone = \"Yizhan/Quiet\"", quiet.window);
    let h = Harness::start("quiet", Store::Sqlite, SandboxConfig::default_accounts(), &sms_config("marketing", &rules))
        .await;
    let zones = h.dir.path().join("zoneinfo");
    quiet.write_zone(&zones);
    let worker = spawn_worker_with(&h, &[("TZDIR", zones.display().to_string())]).await;
    let store = h.store().await;
    let (bulk_to, high_to) = (number(5), number(6));
    let ids =
        h.submit(&[sms("marketing", &[&bulk_to], "bulk", None), sms("marketing", &[&high_to], "high", None)]).await;

    let deferred = wait_status(store.as_ref(), ids[0], "deferred").await;
    assert_time(deferred.next_attempt_at, quiet.end, "deferred to the window's end");
    h.sandbox().wait_for_sms(1, WAIT).await.unwrap();
    assert_eq!(h.sandbox().sms_count_for(&high_to), 1, "the high job went through");
    assert_eq!(wait_status(store.as_ref(), ids[1], "succeeded").await.attempts, 1);
    assert!(now_ms() < quiet.end, "the window ended before the jobs were seen: the test needs more lead time");
    assert_eq!(worker.jobs_total("deferred").await, 1);

    let late = sent_on_time(&h.sandbox(), &bulk_to, quiet.end).await;
    println!("the deferred job went {late:?} after the window's end");
    assert_eq!(wait_status(store.as_ref(), ids[0], "succeeded").await.attempts, 1, "deferral is not an attempt");
    assert_eq!(worker.jobs_total("deferred").await, 1, "deferred once");
}

// ---- recipient caps ----

const TWO_A_MINUTE: &str = "recipient_caps = \"2/min\"\non_cap = \"drop\"";

/// Waits until every job is final; returns how many ended `succeeded` and `capped`.
async fn settled(store: &dyn StateStore, ids: &[uuid::Uuid]) -> (usize, usize) {
    let mut statuses = Vec::new();
    for id in ids {
        let id = *id;
        eventually(&format!("job {id} is final"), WAIT, || async {
            store.status(id).await.unwrap().is_some_and(|s| matches!(s.status.as_str(), "succeeded" | "capped"))
        })
        .await;
        statuses.push(store.status(id).await.unwrap().unwrap());
    }
    let count = |status: &str| statuses.iter().filter(|s| s.status == status).count();
    (count("succeeded"), count("capped"))
}

/// `2/min` with `on_cap = "drop"`: of five jobs to one number two are sent and three end
/// `capped` (no retry, no dead letter); in a job to several numbers only the capped one is left
/// out, listed with code `capped` in the result.
#[tokio::test(flavor = "multi_thread")]
async fn recipient_caps_drop_what_is_over_the_cap() {
    let h =
        Harness::start("caps", Store::Sqlite, SandboxConfig::default_accounts(), &sms_config("capped", TWO_A_MINUTE))
            .await;
    let worker = h.spawn_worker(&[]).await;
    let store = h.store().await;
    let to = number(7);
    let jobs: Vec<_> = (0..5).map(|_| sms("capped", &[&to], "normal", None)).collect();
    let ids = h.submit(&jobs).await;

    assert_eq!(settled(store.as_ref(), &ids).await, (2, 3), "two sent, three capped");
    assert_eq!(h.sandbox().sms_count_for(&to), 2);
    assert_eq!(worker.jobs_total("capped").await, 3);
    assert_eq!(worker.jobs_total("retried").await + worker.jobs_total("dead_lettered").await, 0);
    assert_eq!(h.queue_depth(&h.names().dead()).await, 0, "capped is not a dead letter");

    let other = number(8);
    let ids = h.submit(&[sms("capped", &[&to, &other], "normal", None)]).await;
    let done = wait_status(store.as_ref(), ids[0], "succeeded").await;
    assert_eq!(h.sandbox().sms_count_for(&other), 1, "the number within its cap was sent to");
    assert_eq!(h.sandbox().sms_count_for(&to), 2, "the capped number was left out");
    let result = done.result.unwrap_or_default();
    assert_eq!(result["capped"], json!([{"to": to, "code": "capped"}]), "{result}");
}

/// Two workers sharing Redis count caps together: each of four numbers gets five jobs, spread
/// over both workers, and still only two SMS.
#[tokio::test(flavor = "multi_thread")]
async fn recipient_caps_hold_across_two_workers_sharing_redis() {
    let h = Harness::start(
        "caps-fleet",
        Store::Redis,
        SandboxConfig::default_accounts(),
        &sms_config("capped", TWO_A_MINUTE),
    )
    .await;
    let workers = [h.spawn_worker(&[]).await, h.spawn_worker(&[]).await];
    let store = h.store().await;
    let numbers: Vec<String> = (10..14).map(number).collect();
    let jobs: Vec<_> =
        (0..5).flat_map(|_| numbers.iter().map(|to| sms("capped", &[to.as_str()], "normal", None))).collect();
    let ids = h.submit(&jobs).await;

    assert_eq!(settled(store.as_ref(), &ids).await, (8, 12), "two sent per number, the rest capped");
    for to in &numbers {
        assert_eq!(h.sandbox().sms_count_for(to), 2, "{to}");
    }
    let mut capped = 0;
    for worker in &workers {
        let took = worker.jobs_total("succeeded").await + worker.jobs_total("capped").await;
        assert!(took > 0, "both workers took jobs");
        capped += worker.jobs_total("capped").await;
    }
    assert_eq!(capped, 12);
}

// ---- bad settings ----

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_quiet_hours_or_recipient_caps_stops_the_worker_with_its_path() {
    let bad_window = sms_config("marketing", "quiet_hours = \"25:00-08:00\"");
    let h = Harness::start("bad-quiet", Store::Sqlite, SandboxConfig::default_accounts(), &bad_window).await;
    let stderr = h.worker_refused_at_start().await;
    assert!(stderr.contains("connectors.tencent_sms.marketing.quiet_hours"), "{stderr}");
    assert!(stderr.contains("25:00 is not a time of day"), "{stderr}");

    let bad_cap = sms_config("marketing", "recipient_caps = \"3/fortnight\"");
    let h = Harness::start("bad-caps", Store::Sqlite, SandboxConfig::default_accounts(), &bad_cap).await;
    let stderr = h.worker_refused_at_start().await;
    assert!(stderr.contains("connectors.tencent_sms.marketing.recipient_caps"), "{stderr}");
    assert!(stderr.contains("fortnight"), "{stderr}");
}

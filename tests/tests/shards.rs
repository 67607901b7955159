//! Sharded lanes (issue 20, item 4): with `YIZHAN_LANE_SHARDS=4` the producer spreads a lane's
//! jobs over four queues by a hash of their idempotency key — every copy of one key in one queue,
//! each queue exactly what the hash predicts, tenants and priorities alike — and a worker with
//! the same setting consumes every shard, each job executed once. A retry comes back to its own
//! shard, and a job published by a client that knows nothing of shards (plain routing key) is
//! still consumed. A campaign posted to an API with the same setting spreads over the shards, and
//! pausing and resuming it works as unsharded. That one shard keeps today's names is a unit test
//! of `yizhan-broker`.

use std::collections::HashMap;
use std::time::Duration;

use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use serde_json::json;
use yizhan_broker::{Names, shard_of};
use yizhan_producer::Producer;
use yizhan_sandbox::{DEFAULT_ROBOT_KEYS, Fault, Provider, SandboxConfig};
use yizhan_schemas::{DEFAULT_TENANT, Job, Priority};
use yizhan_tests::api::Api;
use yizhan_tests::{Harness, RETRY_DELAYS, Store, WAIT, eventually, job, number, sms_job};

const SHARDS: u16 = 4;
const SHARDS_ENV: [(&str, &str); 1] = [("YIZHAN_LANE_SHARDS", "4")];
/// A tenant besides `default`, so that its lanes are sharded too.
const TENANT: &str = "acme";

/// Deletes the shard queues and delay exchanges the harness does not know of (it deletes shard
/// 0's, which have the unsharded names), passed or panicked.
struct ShardCleanup {
    amqp_url: String,
    names: Names,
}

impl ShardCleanup {
    fn new(h: &Harness) -> ShardCleanup {
        ShardCleanup { amqp_url: h.amqp_url.clone(), names: names(h) }
    }
}

impl Drop for ShardCleanup {
    fn drop(&mut self) {
        let names = &self.names;
        let mut queues = Vec::new();
        for shard in 1..names.shards() {
            for priority in Priority::ALL {
                for tenant in [DEFAULT_TENANT, TENANT] {
                    queues.push(names.lane_shard(priority, tenant, shard));
                }
            }
        }
        let mut delays = yizhan_broker::parse_delays(RETRY_DELAYS).unwrap();
        delays.push(yizhan_worker::pipeline::NOT_YET_LANE);
        let exchanges: Vec<String> =
            delays.iter().flat_map(|d| (1..names.shards()).map(|shard| names.delay_shard(*d, shard))).collect();
        queues.extend(exchanges.iter().cloned());
        let amqp_url = self.amqp_url.clone();
        let cleanup = async move {
            let Ok(connection) =
                yizhan_broker::connect(&amqp_url, "yizhan-test-cleanup", yizhan_broker::Recovery::FailFast).await
            else {
                return;
            };
            if let Ok(channel) = connection.create_channel().await {
                for queue in &queues {
                    let _ = channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await;
                }
                for exchange in &exchanges {
                    let _ = channel.exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default()).await;
                }
            }
            let _ = connection.close(200, "cleaned up".into()).await;
        };
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let _ = runtime.block_on(async { tokio::time::timeout(Duration::from_secs(10), cleanup).await });
        });
        let _ = thread.join();
    }
}

/// The test's names with [`SHARDS`] shards, as the binaries given [`SHARDS_ENV`] have them.
fn names(h: &Harness) -> Names {
    h.names().with_shards(SHARDS)
}

/// A producer with the shards, registering tenants in the test's state store (as `serve` does).
async fn producer(h: &Harness) -> Producer {
    let delays = yizhan_broker::parse_delays(RETRY_DELAYS).unwrap();
    Producer::connect(&h.amqp_url, names(h), &delays, yizhan_broker::Recovery::FailFast)
        .await
        .expect("producer")
        .with_tenants(h.store().await)
}

/// Every lane queue of both tenants, every shard.
fn all_queues(names: &Names) -> Vec<String> {
    Priority::ALL
        .into_iter()
        .flat_map(|priority| [DEFAULT_TENANT, TENANT].map(|tenant| names.lane_shards(priority, tenant)))
        .flatten()
        .collect()
}

/// The queue a job must be in: its lane and tenant's, on the shard of its idempotency key.
fn expected_queue(names: &Names, job: &Job) -> String {
    names.lane_shard(job.priority, &job.tenant, shard_of(&job.idempotency_key, SHARDS))
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_spread_over_the_shards_by_key_and_each_runs_once() {
    let h = Harness::start("shards-spread", Store::Sqlite, SandboxConfig::default_accounts(), "").await;
    let _cleanup = ShardCleanup::new(&h);
    let names = names(&h);

    // 240 distinct keys over both tenants and the three lanes, then five copies of one key.
    let priorities = Priority::ALL;
    let mut jobs: Vec<Job> = (0..240)
        .map(|i| {
            let mut job = sms_job(&[&number(i)], None);
            job.priority = priorities[i % 3];
            if i % 2 == 1 {
                job.tenant = TENANT.to_string();
            }
            job
        })
        .collect();
    let same_key = format!("{}-same", h.prefix);
    jobs.extend((0..5).map(|_| sms_job(&[&number(1000)], Some(&same_key))));

    let producer = producer(&h).await;
    for result in producer.submit_all(&jobs).await {
        result.expect("confirmed");
    }

    // Every queue holds exactly what the hash of its jobs' keys predicts.
    let mut expected: HashMap<String, u32> = HashMap::new();
    for job in &jobs {
        *expected.entry(expected_queue(&names, job)).or_default() += 1;
    }
    let mut per_shard = [0u32; SHARDS as usize];
    for queue in all_queues(&names) {
        let depth = h.queue_depth(&queue).await;
        assert_eq!(depth, expected.get(&queue).copied().unwrap_or(0), "jobs in {queue}");
        let shard = (0..SHARDS).find(|s| queue.ends_with(&format!(".s.{s}"))).unwrap_or(0);
        per_shard[usize::from(shard)] += depth;
    }
    println!("jobs per shard: {per_shard:?}");
    assert!(per_shard.iter().all(|&n| n > 0), "every shard gets some: {per_shard:?}");
    assert_eq!(per_shard.iter().sum::<u32>(), 245);
    let same_queue = expected_queue(&names, &jobs[240]);
    assert!(expected[&same_queue] >= 5, "the five copies of one key in one queue ({same_queue})");

    let worker = h.spawn_worker_with(&["--concurrency", "32"], &SHARDS_ENV).await;
    h.sandbox().wait_for_sms(241, WAIT).await.unwrap();
    eventually("every job settled", WAIT, || async {
        worker.jobs_total("succeeded").await == 241 && worker.jobs_total("duplicate").await == 4
    })
    .await;
    for i in (0..240).chain([1000]) {
        assert_eq!(h.sandbox().sms_count_for(&number(i)), 1, "one SMS to {}", number(i));
    }
    for queue in all_queues(&names) {
        eventually(&format!("{queue} drained"), WAIT, || async { h.queue_depth(&queue).await == 0 }).await;
    }
}

/// A robot job whose idempotency key falls on `shard`.
fn robot_job_on_shard(h: &Harness, shard: u16) -> Job {
    let key = (0..).map(|i| format!("{}-retry-{i}", h.prefix)).find(|k| shard_of(k, SHARDS) == shard).unwrap();
    let mut job = job("wecom_robot", "ops", "send_text", json!({"content": "sharded retry"}));
    job.idempotency_key = key;
    job
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retry_comes_back_to_its_own_shard() {
    let h = Harness::start("shards-retry", Store::Sqlite, SandboxConfig::default_accounts(), "").await;
    let _cleanup = ShardCleanup::new(&h);
    let names = names(&h);
    let robot = DEFAULT_ROBOT_KEYS[0];
    let mut worker = h.spawn_worker_with(&[], &SHARDS_ENV).await;

    // A transient failure while the worker stops: its retry copy, through shard 2 of the delay
    // lane, must come back to shard 2 of the lane. The provider holds the call long enough for
    // the worker to have stopped consuming before the copy is due.
    h.sandbox().push_fault(Fault::http_status(Provider::WecomRobot, 502).times(1)).unwrap();
    h.sandbox().set_delay(Provider::WecomRobot, Duration::from_millis(500));
    let job = robot_job_on_shard(&h, 2);
    producer(&h).await.submit(&job).await.expect("confirmed");
    eventually("the failing call under way", WAIT, || async { worker.metric_sum("yizhan_jobs_in_flight").await == 1 })
        .await;
    assert_eq!(worker.signal_and_wait("TERM"), Some(0), "drains and exits 0: {}", worker.log_text());
    h.sandbox().set_delay(Provider::WecomRobot, Duration::ZERO);
    let own = names.lane_shard(Priority::Normal, DEFAULT_TENANT, 2);
    eventually("the retry copy back in its shard", WAIT, || async { h.queue_depth(&own).await == 1 }).await;
    for queue in all_queues(&names).iter().filter(|q| **q != own) {
        assert_eq!(h.queue_depth(queue).await, 0, "nothing in {queue}");
    }

    let worker = h.spawn_worker_with(&[], &SHARDS_ENV).await;
    eventually("the retry sent", WAIT, || async { h.sandbox().robot_messages(robot).len() == 1 }).await;
    eventually("recorded", WAIT, || async { worker.jobs_total("succeeded").await == 1 }).await;
    assert_eq!(h.queue_depth(&own).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_published_without_shards_is_consumed_and_retried_on_its_keys_shard() {
    let h = Harness::start("shards-plain", Store::Sqlite, SandboxConfig::default_accounts(), "").await;
    let _cleanup = ShardCleanup::new(&h);
    let names = names(&h);
    let robot = DEFAULT_ROBOT_KEYS[0];
    let mut worker = h.spawn_worker_with(&[], &SHARDS_ENV).await;

    // A client that knows nothing of shards publishes with the plain routing key `normal`: the
    // job lands in shard 0 (the unsharded queue), which sharded workers consume too.
    let first = robot_job_on_shard(&h, 0);
    h.publish_raw(&first.to_message(), Priority::Normal).await;
    eventually("the plain job sent", WAIT, || async { h.sandbox().robot_messages(robot).len() == 1 }).await;

    // Its key falls on shard 3: a retry moves it there (the shard its other copies use).
    let second = robot_job_on_shard(&h, 3);
    h.sandbox().push_fault(Fault::http_status(Provider::WecomRobot, 502).times(1)).unwrap();
    h.sandbox().set_delay(Provider::WecomRobot, Duration::from_millis(500));
    h.publish_raw(&second.to_message(), Priority::Normal).await;
    eventually("the failing call under way", WAIT, || async { worker.metric_sum("yizhan_jobs_in_flight").await == 1 })
        .await;
    assert_eq!(worker.signal_and_wait("TERM"), Some(0), "drains and exits 0: {}", worker.log_text());
    h.sandbox().set_delay(Provider::WecomRobot, Duration::ZERO);
    let shard3 = names.lane_shard(Priority::Normal, DEFAULT_TENANT, 3);
    eventually("the retry copy on its key's shard", WAIT, || async { h.queue_depth(&shard3).await == 1 }).await;
    assert_eq!(h.queue_depth(&names.lane(Priority::Normal)).await, 0, "not back in shard 0");

    let worker = h.spawn_worker_with(&[], &SHARDS_ENV).await;
    eventually("the retry sent", WAIT, || async { h.sandbox().robot_messages(robot).len() == 2 }).await;
    eventually("recorded", WAIT, || async { worker.jobs_total("succeeded").await == 1 }).await;
}

/// A paced SMS config, so that a campaign is still running when it is paused.
fn paced() -> String {
    format!(
        "[connectors.tencent_sms.paced]\nsecret_id = \"{}\"\nsecret_key = \"${{YIZHAN_TEST_SMS_KEY}}\"\n\
         sdk_app_id = \"{}\"\nendpoint = \"{{sandbox}}\"\nrate_limit = \"500/s\"\n",
        yizhan_sandbox::DEFAULT_SECRET_ID,
        yizhan_sandbox::DEFAULT_SDK_APP_ID,
    )
}

/// Jobs waiting in each shard of tenant `default`'s lanes (summed over the lanes).
async fn shard_depths(h: &Harness, names: &Names) -> Vec<u32> {
    let mut depths = Vec::new();
    for shard in 0..SHARDS {
        let mut depth = 0;
        for priority in Priority::ALL {
            depth += h.queue_depth(&names.lane_shard(priority, DEFAULT_TENANT, shard)).await;
        }
        depths.push(depth);
    }
    depths
}

/// The campaign as `GET /v1/campaigns/{id}` shows it.
async fn campaign(api: &Api, id: &str) -> serde_json::Value {
    let (status, body) = api.call(reqwest::Method::GET, &format!("/v1/campaigns/{id}"), None).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// `POST /v1/campaigns/{id}/{action}` (pause, resume).
async fn control(api: &Api, id: &str, action: &str) -> (u16, serde_json::Value) {
    api.call(reqwest::Method::POST, &format!("/v1/campaigns/{id}/{action}"), None).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sharded_campaign_spreads_pauses_and_resumes_and_sends_each_once() {
    const RECIPIENTS: usize = 2000;
    let h = Harness::start("shards-campaign", Store::Redis, SandboxConfig::default_accounts(), &paced()).await;
    let _cleanup = ShardCleanup::new(&h);
    let names = names(&h);
    let api = Api::start_with(&h, &SHARDS_ENV).await;
    let recipients: Vec<_> = (0..RECIPIENTS).map(|i| json!({"to": number(i)})).collect();
    let head = json!({
        "name": "sharded", "idempotency_key": format!("{}-campaign", h.prefix),
        "connector": "tencent_sms", "config": "paced", "action": "send_sms",
        "params": {"sign_name": "Yizhan", "template_id": "1001", "template_params": ["123456"]},
        "recipients": recipients,
    });
    let (status, body) = api.post("/v1/campaigns", &head).await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_string();

    // Before any worker: the campaign's jobs wait in every shard (of whichever lane).
    eventually("every job enqueued", WAIT, || async {
        shard_depths(&h, &names).await.iter().sum::<u32>() as usize == RECIPIENTS
    })
    .await;
    let depths = shard_depths(&h, &names).await;
    println!("campaign jobs per shard: {depths:?}");
    assert!(depths.iter().all(|&n| n > 0), "every shard gets some: {depths:?}");

    let _workers = [h.spawn_worker_with(&[], &SHARDS_ENV).await, h.spawn_worker_with(&[], &SHARDS_ENV).await];
    h.sandbox().wait_for_sms(200, WAIT).await.unwrap();
    let (status, paused) = control(&api, &id, "pause").await;
    assert_eq!((status, paused["status"].as_str()), (200, Some("paused")), "{paused}");
    // Every worker holds within 2 s of the answer (each reads a campaign's control at most once
    // a second): from then on, once no job of it is running, nothing more may be sent.
    let paused_at = std::time::Instant::now();
    eventually("the pause took hold (no job of it running)", WAIT, || async {
        paused_at.elapsed() >= Duration::from_secs(2) && campaign(&api, &id).await["counts"]["running"] == 0
    })
    .await;
    // Held in every shard: jobs wait and none runs. (The window of silence after a pause is
    // campaigns.rs's pause test; shards change where jobs wait, not how a pause is read.)
    let held_at = h.sandbox().sent_sms().len();
    assert!(held_at < RECIPIENTS, "the campaign finished before the pause took hold");
    let counts = campaign(&api, &id).await["counts"].clone();
    assert_eq!(counts["running"], 0, "{counts}");
    assert_eq!(h.sandbox().sent_sms().len(), held_at, "SMS were sent while the campaign was paused");

    let (status, resumed) = control(&api, &id, "resume").await;
    assert_eq!((status, resumed["status"].as_str()), (200, Some("running")), "{resumed}");
    eventually("the campaign done", WAIT, || async { campaign(&api, &id).await["status"] == "done" }).await;
    assert_eq!(campaign(&api, &id).await["counts"]["succeeded"], RECIPIENTS);
    let sent = h.sandbox().sent_sms();
    assert_eq!(sent.len(), RECIPIENTS, "one SMS each");
    let distinct: std::collections::HashSet<_> = sent.iter().map(|s| s.phone.clone()).collect();
    assert_eq!(distinct.len(), RECIPIENTS, "no number twice");
}

/// The console's overview lists every shard of a lane, each with its depth: an operator sees a
/// backlog on shard 3 as well as on shard 0.
#[tokio::test(flavor = "multi_thread")]
async fn the_console_overview_lists_every_shard() {
    let h = Harness::start("shards-console", Store::Sqlite, SandboxConfig::default_accounts(), "").await;
    let _cleanup = ShardCleanup::new(&h);
    let names = names(&h);
    let api = Api::start_with(&h, &SHARDS_ENV).await;
    // Two jobs on shard 3 of the normal lane, none elsewhere, and no worker.
    let producer = producer(&h).await;
    let jobs: Vec<Job> = (0..)
        .map(|i| sms_job(&[&number(i)], None))
        .filter(|job| shard_of(&job.idempotency_key, SHARDS) == 3)
        .take(2)
        .collect();
    for result in producer.submit_all(&jobs).await {
        result.expect("confirmed");
    }
    let shard3 = names.lane_shard(Priority::Normal, DEFAULT_TENANT, 3);
    eventually("2 jobs on shard 3", WAIT, || async { h.queue_depth(&shard3).await == 2 }).await;

    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let session = api.session_cookie(&http).await;
    let page = http.get(format!("{}/ui", api.base)).header("cookie", &session).send().await.unwrap();
    let page = page.text().await.unwrap();
    for queue in names.lane_shards(Priority::Normal, DEFAULT_TENANT) {
        assert!(page.contains(&format!("data-queue=\"{queue}\"")), "{queue} is not on the overview");
    }
    let row = page.split(&format!("data-queue=\"{shard3}\"")).nth(1).expect("shard 3's row");
    let ready = row.split("data-col=\"ready\">").nth(1).and_then(|cell| cell.split('<').next());
    assert_eq!(ready, Some("2"), "shard 3's ready count: {row:.300}");
}

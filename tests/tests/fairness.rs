//! Fairness between tenants (issue 17): each tenant has its own lanes, and workers take the
//! tenants of a lane in turn. Tenant A's backlog submitted first does not hold tenant B's jobs
//! behind it: with two workers, B's last job finishes within twice the time B's jobs take alone,
//! plus 1 s (a FIFO lane would make B wait for A's whole backlog, ~100 s here). A restarted
//! worker takes up a tenant's lanes again, found in the tenant registry; retries and replayed
//! dead letters go back to the tenant's lanes; and a tenant's consumers come back with the
//! connection after a broker restart.

use std::time::{Duration, Instant};

use serde_json::json;
use uuid::Uuid;
use yizhan_sandbox::{DEFAULT_ROBOT_KEYS, Fault, Provider, SandboxConfig};
use yizhan_schemas::{Job, MissingId, Priority, validate_job_value};
use yizhan_tests::rabbit::RabbitNode;
use yizhan_tests::{Harness, Store, WAIT, Worker, eventually};

/// Tenant A's backlog.
const A_JOBS: usize = 20_000;
/// Tenant B's jobs, submitted right after A's.
const B_JOBS: usize = 400;
/// Workers sharing the lanes (and Redis).
const WORKERS: usize = 2;
/// `--concurrency` of each worker.
const CONCURRENCY: &str = "4";
/// `--prefetch`: far more than the concurrency, so that each tenant's consumer always has
/// deliveries waiting and the order the worker takes them in decides who goes (with a window
/// near the concurrency, the window alone would keep a tenant from taking every slot).
const PREFETCH: &str = "64";
/// What the robot provider takes to answer: with the concurrency, it sets the pace (~200 jobs/s),
/// so that B alone takes about two seconds and the run is bound by the provider, not the CPU.
const LATENCY: Duration = Duration::from_millis(40);

/// Tenant A's robot and tenant B's: the sandbox records messages per robot key, so B's progress
/// is counted apart from A's. Neither config is rate limited: the provider's latency sets the pace.
const CONFIG: &str = r#"
[connectors.wecom_robot.robot_a]
key = "sandbox-robot-key"
endpoint = "{sandbox}"
rate_limit = "100000/s"

[connectors.wecom_robot.robot_b]
key = "sandbox-robot-key-2"
endpoint = "{sandbox}"
rate_limit = "100000/s"
"#;

/// `count` bulk text messages of `tenant` through config `config`, ids assigned.
fn jobs(tenant: &str, config: &str, count: usize) -> Vec<Job> {
    let template = validate_job_value(
        &json!({"connector": "wecom_robot", "config": config, "action": "send_text", "tenant": tenant,
                "priority": "bulk", "params": {"content": format!("from {tenant}")}}),
        MissingId::Assign,
    )
    .expect("valid job");
    (0..count)
        .map(|_| {
            let id = Uuid::now_v7();
            Job { id, idempotency_key: id.to_string(), ..template.clone() }
        })
        .collect()
}

/// Submits `jobs` (all through robot B) and returns how long until the last of them reached
/// the provider, counted from before the submission.
async fn time_to_last(h: &Harness, jobs: &[Job]) -> Duration {
    let before = h.sandbox().robot_messages(DEFAULT_ROBOT_KEYS[1]).len();
    let started = Instant::now();
    h.submit(jobs).await;
    let target = before + jobs.len();
    h.sandbox()
        .wait_until("tenant B's jobs sent", WAIT, |s| s.robot_messages(DEFAULT_ROBOT_KEYS[1]).len() >= target)
        .await
        .unwrap();
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenants_backlog_does_not_hold_another_tenants_jobs_behind_it() {
    let sandbox = SandboxConfig::default_accounts().robot_rate_limit(None);
    let h = Harness::start("fairness", Store::Redis, sandbox, CONFIG).await;
    h.sandbox().set_delay(Provider::WecomRobot, LATENCY);
    let args = ["--concurrency", CONCURRENCY, "--prefetch", PREFETCH];
    let fleet: Vec<Worker> = futures::future::join_all((0..WORKERS).map(|_| h.spawn_worker(&args))).await;

    // B alone (a tenant new to the workers, as B is below).
    let alone = time_to_last(&h, &jobs("b-alone", "robot_b", B_JOBS)).await;

    // A's backlog first, then B.
    let backlog = jobs("a", "robot_a", A_JOBS);
    h.submit(&backlog).await;
    let shared = time_to_last(&h, &jobs("b", "robot_b", B_JOBS)).await;
    let a_done = h.sandbox().robot_messages(DEFAULT_ROBOT_KEYS[0]).len();
    let bound = alone * 2 + Duration::from_secs(1);
    println!(
        "fairness, {WORKERS} workers at concurrency {CONCURRENCY} (prefetch {PREFETCH}), provider latency {LATENCY:?}: \
         {B_JOBS} jobs of B alone {alone:.2?}; behind {A_JOBS} of A {shared:.2?} (bound {bound:.2?}); \
         A sent {a_done} meanwhile"
    );
    assert!(a_done < A_JOBS / 2, "A's backlog was still there while B ran (else this proves nothing): {a_done}");
    assert!(a_done > 0, "A was served too");
    assert!(shared <= bound, "B behind A's backlog took {shared:.2?}, more than 2 × {alone:.2?} + 1 s");
    for worker in &fleet {
        assert_eq!(worker.jobs_total("duplicate").await, 0, "no job delivered twice");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_worker_consumes_a_tenants_lanes_again_and_retries_stay_in_them() {
    let sandbox = SandboxConfig::default_accounts().robot_rate_limit(None);
    let h = Harness::start("tenant-restart", Store::Sqlite, sandbox, CONFIG).await;
    let names = h.names();
    let tenant_lane = names.tenant_lane(Priority::Bulk, "acme");
    let robot = DEFAULT_ROBOT_KEYS[1];
    let sent = |n: usize| {
        let sandbox = h.sandbox();
        async move { sandbox.robot_messages(robot).len() >= n }
    };

    let mut worker = h.spawn_worker(&[]).await;
    h.submit(&jobs("acme", "robot_b", 3)).await;
    eventually("the tenant's first jobs sent", WAIT, || sent(3)).await;

    // A transient failure while the worker stops: its retry copy must come back to the tenant's
    // lane (through the delay lane, which keeps the routing key), not to tenant default's. The
    // provider holds the call long enough for the worker to have stopped consuming before the
    // copy is due.
    h.sandbox().push_fault(Fault::http_status(Provider::WecomRobot, 502).times(1)).unwrap();
    h.sandbox().set_delay(Provider::WecomRobot, Duration::from_millis(500));
    h.submit(&jobs("acme", "robot_b", 1)).await;
    eventually("the failing call under way", WAIT, || async { worker.metric_sum("yizhan_jobs_in_flight").await == 1 })
        .await;
    assert_eq!(worker.signal_and_wait("TERM"), Some(0), "drains and exits 0: {}", worker.log_text());
    h.sandbox().set_delay(Provider::WecomRobot, Duration::ZERO);
    eventually("the retry copy back in the tenant's lane", WAIT, || async { h.queue_depth(&tenant_lane).await == 1 })
        .await;
    assert_eq!(h.queue_depth(&names.lane(Priority::Bulk)).await, 0, "nothing in tenant default's lane");

    // More of the tenant's jobs while no worker runs; a new worker finds the tenant in the
    // registry at start and takes its lanes up at once.
    h.submit(&jobs("acme", "robot_b", 2)).await;
    assert_eq!(h.queue_depth(&tenant_lane).await, 3);
    let worker = h.spawn_worker(&[]).await;
    eventually("the retry and the new jobs sent", WAIT, || sent(6)).await;
    assert_eq!(worker.jobs_total("succeeded").await, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replayed_dead_letter_goes_back_to_its_tenants_lane() {
    let extra = format!("{CONFIG}\n[connectors.wecom_robot.broken]\nkey = \"wrong-key\"\nendpoint = \"{{sandbox}}\"\n");
    let h = Harness::start("tenant-dlq", Store::Sqlite, SandboxConfig::default_accounts(), &extra).await;
    let names = h.names();
    let mut worker = h.spawn_worker(&[]).await;
    h.submit(&jobs("acme", "broken", 1)).await;
    eventually("the job dead-lettered", WAIT, || async { h.queue_depth(&names.dead()).await == 1 }).await;
    // A drained stop acks the dead-lettered delivery: killed, the worker could leave it unacked
    // and the broker would put the original back into the tenant's lane beside the replay.
    assert_eq!(worker.signal_and_wait("TERM"), Some(0));

    let (code, out, err) = h.producer(&["dlq", "list", "--json"], "");
    assert_eq!(code, 0, "{err}");
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed[0]["tenant"], "acme", "{out}");
    let (code, _, err) = h.producer(&["dlq", "replay", "--all"], "");
    assert_eq!(code, 0, "{err}");
    assert_eq!(h.queue_depth(&names.tenant_lane(Priority::Bulk, "acme")).await, 1, "back in the tenant's lane");
    assert_eq!(h.queue_depth(&names.lane(Priority::Bulk)).await, 0, "not in tenant default's");
    assert_eq!(h.queue_depth(&names.dead()).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenants_consumers_come_back_after_the_broker_restarts() {
    let mut node = RabbitNode::start().await;
    let sandbox = SandboxConfig::default_accounts().robot_rate_limit(None);
    let h = Harness::start_on("tenant-recovery", Store::Sqlite, sandbox, CONFIG, &node.amqp_url()).await;
    let robot = DEFAULT_ROBOT_KEYS[1];
    let sent = |n: usize| {
        let sandbox = h.sandbox();
        async move { sandbox.robot_messages(robot).len() >= n }
    };
    let worker = h.spawn_worker(&[]).await;
    h.submit(&jobs("acme", "robot_b", 2)).await;
    eventually("the tenant's jobs sent", WAIT, || sent(2)).await;

    let ready = |expected: u16| {
        let url = format!("{}/readyz", worker.metrics);
        async move { reqwest::get(url).await.is_ok_and(|r| r.status().as_u16() == expected) }
    };
    node.stop_node().await;
    eventually("/readyz answers 503 while the broker is down", WAIT, || ready(503)).await;
    node.start_node().await;
    eventually("/readyz answers 200 again", WAIT, || ready(200)).await;
    h.submit(&jobs("acme", "robot_b", 3)).await;
    h.submit(&jobs("default", "robot_b", 1)).await;
    eventually("the tenant's and tenant default's jobs after the restart sent", WAIT, || sent(6)).await;
    assert!(!worker.log_text().contains("consumer ended"), "{}", worker.log_text());
}

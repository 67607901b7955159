//! A fleet on a 3-node RabbitMQ cluster (issue 20.1), started once per run by
//! `scripts/rabbit-cluster.sh` (tests/src/shared.rs): `YIZHAN_AMQP_URL` lists the nodes, workers
//! and producers connect to a live one and move to another when theirs stops, and the queues are
//! quorum queues replicated over the cluster.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use yizhan_sandbox::{Provider, SandboxConfig};
use yizhan_tests::shared::RabbitCluster;
use yizhan_tests::{Harness, Store, WAIT, Worker, binary, eventually, holds_within, number};

const CONCURRENCY: usize = 8;
const TOKEN: &str = "cluster-test-token";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts `yizhan-<name>` with the harness's settings plus `extra`, logging the broker crate's
/// connections (which node) to `<dir>/<log>`.
fn spawn(h: &Harness, name: &str, args: &[&str], extra: &[(&str, String)], log: &str) -> (Child, std::path::PathBuf) {
    let log = h.dir.path().join(log);
    let child = Command::new(binary(name))
        .envs(h.env())
        .env("RUST_LOG", "warn,yizhan_broker=info")
        .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
    (child, log)
}

async fn ready(url: &str) -> bool {
    reqwest::get(url).await.is_ok_and(|r| r.status().is_success())
}

/// The nodes (AMQP ports) a process's log says it connected to, in order.
fn connected_ports(log: &std::path::Path) -> Vec<u16> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains("connected to the broker"))
        .filter_map(|line| line.split("127.0.0.1:").nth(1)?.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .collect()
}

/// The members of a quorum queue, as node 2 of the cluster reports them.
async fn members(cluster: &RabbitCluster, queue: &str) -> usize {
    let listing = cluster.ctl(2, &["list_queues", "name", "members"]).await;
    let line = listing.lines().find(|l| l.split('\t').next() == Some(queue)).unwrap_or_else(|| {
        panic!("queue {queue} not listed:\n{listing}");
    });
    line.matches("@localhost").count()
}

fn sms(i: usize, key: &str) -> Value {
    json!({"connector": "tencent_sms", "config": "default", "action": "send_sms", "idempotency_key": key,
           "params": {"phone_numbers": [number(i)], "sign_name": "Yizhan", "template_id": "1001", "template_params": ["1"]}})
}

/// The acceptance test of issue 20.1: 2,000 SMS jobs through the HTTP API while the node that
/// the worker and the producer are connected to is stopped mid-run. Nothing is lost, duplicates
/// stay within the worker's in-flight window, and the worker is ready again within 15 s.
#[tokio::test(flavor = "multi_thread")]
async fn stopping_the_node_of_the_worker_and_the_producer_loses_no_job() {
    let cluster = RabbitCluster::shared().await;
    let started = Instant::now();
    // Node 1 first: both processes connect to it.
    let h = Harness::start_on(
        "cluster",
        Store::Redis,
        SandboxConfig::default_accounts(),
        "",
        &cluster.url_list(&[1, 2, 3]),
    )
    .await;
    let sandbox = h.sandbox();
    // Slow enough that jobs are in flight and queued when the node goes.
    sandbox.set_delay(Provider::Tencent, Duration::from_millis(10));

    let metrics = free_port();
    let (worker, worker_log) = spawn(
        &h,
        "yizhan-worker",
        &["--concurrency", &CONCURRENCY.to_string()],
        &[("YIZHAN_METRICS_ADDR", format!("127.0.0.1:{metrics}")), ("YIZHAN_LEASE", "2s".into())],
        "worker.log",
    );
    let worker = Worker { child: worker, metrics: format!("http://127.0.0.1:{metrics}"), log: worker_log.clone() };
    let api_port = free_port();
    let (api, api_log) = spawn(
        &h,
        "yizhan-producer",
        &["serve"],
        &[("YIZHAN_HTTP_ADDR", format!("127.0.0.1:{api_port}")), ("YIZHAN_API_TOKENS", TOKEN.into())],
        "api.log",
    );
    let _api = KillOnDrop(api);
    let api = format!("http://127.0.0.1:{api_port}");
    eventually("the worker and the API are ready", WAIT, || async {
        ready(&format!("{}/readyz", worker.metrics)).await && ready(&format!("{api}/readyz")).await
    })
    .await;
    assert_eq!(connected_ports(&worker_log)[0], cluster.port(1), "the worker starts on node 1");
    assert_eq!(connected_ports(&api_log)[0], cluster.port(1), "the producer starts on node 1");
    let lane = h.names().lane(yizhan_schemas::Priority::Normal);
    assert_eq!(members(&cluster, &lane).await, 3, "a lane is replicated on every node by default");

    // The producer: 20 batches of 100, one every 150 ms, each posted again until accepted (the
    // idempotency keys absorb a batch stored by the broker whose answer was lost). The second half
    // waits for the node to have stopped, so that the stop is mid-run however long it takes.
    let client = reqwest::Client::new();
    let prefix = h.prefix.clone();
    let (node_stopped, stopped) = tokio::sync::oneshot::channel::<()>();
    let producer = tokio::spawn({
        let api = api.clone();
        async move {
            let mut pace = tokio::time::interval(Duration::from_millis(150));
            let mut refused = 0;
            let mut stopped = Some(stopped);
            for batch in 0..20 {
                if batch == 10 {
                    stopped.take().expect("once").await.expect("the test reports the stop");
                }
                pace.tick().await;
                let jobs: Vec<Value> =
                    (batch * 100..batch * 100 + 100).map(|i| sms(i, &format!("{prefix}-{i}"))).collect();
                let deadline = Instant::now() + WAIT;
                loop {
                    let answer = client.post(format!("{api}/v1/jobs")).bearer_auth(TOKEN).json(&jobs).send().await;
                    match answer {
                        Ok(response) if response.status() == 202 => break,
                        Ok(response) => {
                            assert_eq!(response.status(), 503, "only the outage refuses a batch");
                            refused += 1;
                        }
                        Err(_) => refused += 1,
                    }
                    assert!(Instant::now() < deadline, "batch {batch} refused for {WAIT:?}");
                    // A retry's backoff, while the API reconnects.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            refused
        }
    });

    sandbox.wait_for_sms(400, WAIT).await.unwrap();
    let stop = Instant::now();
    cluster.stop_node(1).await;
    // The 15 s run from the node being down: stopping it (rabbitmqctl boots a VM of its own) takes
    // 3 to 5 s on 2 cores, more with the whole suite running, and is not the worker's time.
    let down = Instant::now();
    assert!(sandbox.sent_sms().len() < 2000, "the node must stop mid-run");
    node_stopped.send(()).expect("the producer waits for the stop");
    let ready_again = holds_within(Duration::from_secs(15).saturating_sub(down.elapsed()), || async {
        ready(&format!("{}/readyz", worker.metrics)).await
            && connected_ports(&worker_log).last().is_some_and(|port| *port != cluster.port(1))
    })
    .await;
    assert!(
        ready_again,
        "the worker was not ready again on another node 15 s after node 1 was down; its log:\n{}",
        worker.log_text()
    );
    let (back, after_down) = (stop.elapsed(), down.elapsed());
    let refused = producer.await.unwrap();
    assert!(
        connected_ports(&api_log).last().is_some_and(|port| *port != cluster.port(1)),
        "the producer moved to another node: {:?}",
        connected_ports(&api_log)
    );

    sandbox.wait_for_sms(2000, WAIT).await.unwrap();
    let mut sent: HashMap<String, usize> = HashMap::new();
    let expected: std::collections::HashSet<String> = (0..2000).map(number).collect();
    eventually("every number got its SMS", WAIT, || {
        sent.clear();
        for sms in sandbox.sent_sms() {
            *sent.entry(sms.phone.clone()).or_default() += 1;
        }
        let done = expected.iter().all(|n| sent.contains_key(n));
        async move { done }
    })
    .await;
    let duplicates: usize = sent.values().map(|n| n - 1).sum();
    assert!(duplicates <= CONCURRENCY, "{duplicates} duplicates: more than the {CONCURRENCY} jobs in flight");
    assert!(sandbox.rejected().is_empty(), "{:?}", sandbox.rejected());
    println!(
        "2,000 jobs in {:?}; worker ready {back:?} after the stop began, {after_down:?} after the node was down; {refused} batch posts refused during the outage; {duplicates} duplicates",
        started.elapsed()
    );
    drop(worker);
    cluster.start_node(1).await;
}

/// A process given the nodes' URLs connects to a live one when the first is down; the group size
/// setting decides how many nodes a new queue lives on; a process given another size than the
/// one its queues were created with refuses to start and says why, and changes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn any_live_node_serves_and_the_group_size_applies_to_new_queues() {
    let cluster = RabbitCluster::shared().await;
    // Nothing listens on port 1: the first URL is a node that is down.
    let urls = format!("amqp://guest:guest@127.0.0.1:1/%2f,{}", cluster.url_list(&[2, 3]));
    let h = Harness::start_on("cluster-size", Store::Sqlite, SandboxConfig::default_accounts(), "", &urls).await;

    // A one-shot producer creates the topology with 2 replicas per queue and submits.
    let jobs: String = (0..20).map(|i| sms(i, &format!("{}-{i}", h.prefix)).to_string() + "\n").collect();
    let (code, _, stderr) = h.producer(&["submit", "--quorum-group-size", "2"], &jobs);
    assert_eq!(code, 0, "{stderr}");
    let lane = h.names().lane(yizhan_schemas::Priority::Normal);
    assert_eq!(members(&cluster, &lane).await, 2, "the producer's group size");
    assert_eq!(members(&cluster, &h.names().dead()).await, 2, "every quorum queue");

    // A worker with the same size consumes them.
    let metrics = free_port();
    let (worker, worker_log) = spawn(
        &h,
        "yizhan-worker",
        &["--quorum-group-size", "2"],
        &[("YIZHAN_METRICS_ADDR", format!("127.0.0.1:{metrics}"))],
        "worker.log",
    );
    let worker = Worker { child: worker, metrics: format!("http://127.0.0.1:{metrics}"), log: worker_log.clone() };
    h.sandbox().wait_for_sms(20, WAIT).await.unwrap();
    assert!(connected_ports(&worker_log).iter().all(|p| *p == cluster.port(2)), "{:?}", connected_ports(&worker_log));

    // Another size: the worker stops at start, naming the queue and the setting; the queues keep
    // their members and their messages.
    let refused = Command::new(binary("yizhan-worker"))
        .envs(h.env())
        .args(["--quorum-group-size", "3"])
        .env("YIZHAN_METRICS_ADDR", "127.0.0.1:0")
        .stdout(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains("YIZHAN_QUORUM_GROUP_SIZE") && stderr.contains(&h.prefix), "{stderr}");
    assert!(!stderr.contains("guest:guest"), "no password in errors: {stderr}");
    assert_eq!(members(&cluster, &lane).await, 2);
    let (code, _, stderr) = h.producer(&["submit", "--quorum-group-size", "2"], &sms(20, "after").to_string());
    assert_eq!(code, 0, "{stderr}");
    h.sandbox().wait_for_sms(21, WAIT).await.unwrap();
    drop(worker);
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

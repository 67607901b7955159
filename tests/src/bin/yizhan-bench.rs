//! `yizhan-bench`: yizhan's speed next to the broker's own ceiling, measured in one run.
//!
//! ```sh
//! cargo build --release --workspace --bins && target/release/yizhan-bench [--jobs 20000]
//! ```
//! Prints: the raw broker ceiling (lapin publishing with confirms while consuming with acks, same
//! message size, quorum queue, no work); yizhan end to end (N `tencent_sms` jobs submitted,
//! executed against the sandbox, recorded in the state store and acked) and its ratio to the
//! ceiling; p50/p99 from submit to the provider's receipt at half that rate; the worker's peak RSS
//! and its RSS at each tenth of the run (flat, or growing); rate-limit precision for one config with
//! 1, 2 and 4 workers sharing Redis; and where the CPU went, in µs per job, for the broker, the
//! worker, Redis and this process (producer and sandbox), since the machine's cores are shared.
//! `--ack-every 1` makes the ceiling ack one by one, as a worker that did not coalesce acks would.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use serde_json::{Value, json};
use yizhan_broker::{Message, Publisher, Recovery};
use yizhan_sandbox::{Provider, Sandbox, SandboxConfig};
use yizhan_schemas::{Job, MissingId, validate_job_value};

const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const REDIS: &str = "redis://127.0.0.1:6379/0";

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks: u64 = [11, 12].iter().filter_map(|i| fields.get(*i)?.parse::<u64>().ok()).sum();
    ticks as f64 / 100.0
}

/// The pid of the first process whose command name is `name` (the broker, Redis).
fn pid_of(name: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        (comm.trim() == name).then_some(pid)
    })
}

/// Where the CPU went during a run: broker, worker(s), Redis, this process (producer and sandbox).
struct CpuSplit {
    pids: Vec<(&'static str, Option<u32>)>,
    start: Vec<f64>,
}

impl CpuSplit {
    fn start(worker: u32) -> CpuSplit {
        let pids = vec![
            ("broker", pid_of("beam.smp")),
            ("worker", Some(worker)),
            ("redis", pid_of("redis-server")),
            ("producer+sandbox", Some(std::process::id())),
        ];
        let start = pids.iter().map(|(_, pid)| pid.map_or(0.0, cpu_seconds)).collect();
        CpuSplit { pids, start }
    }

    /// CPU µs per job of each process since `start`.
    fn per_job(&self, jobs: usize) -> String {
        self.pids
            .iter()
            .zip(&self.start)
            .filter_map(|((name, pid), start)| {
                let used = cpu_seconds((*pid)?) - start;
                Some(format!("{name} {:.0}", used * 1e6 / jobs as f64))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn now_us() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros()
}

#[tokio::main]
async fn main() {
    yizhan_broker::install_crypto_provider();
    let jobs = arg("--jobs", 20_000);
    println!("yizhan-bench: {jobs} jobs, {} cores", std::thread::available_parallelism().map_or(0, |n| n.get()));
    let sample = sms_job(0, None);
    let size = sample.to_message().len();

    let broker = pid_of("beam.smp");
    let cpu_before = (broker.map_or(0.0, cpu_seconds), cpu_seconds(std::process::id()));
    let ceiling = raw_ceiling(jobs, size).await;
    println!(
        "raw broker ceiling      {ceiling:>9.0} msg/s   (lapin, quorum queue, {size}-byte messages, confirms + acks)"
    );
    println!(
        "  CPU µs per message: broker {:.0}, lapin publisher+consumer {:.0}",
        (broker.map_or(0.0, cpu_seconds) - cpu_before.0) * 1e6 / jobs as f64,
        (cpu_seconds(std::process::id()) - cpu_before.1) * 1e6 / jobs as f64
    );

    let (rate, rss, cpu, rss_samples) = end_to_end(jobs, "sqlite").await;
    println!(
        "yizhan end to end       {rate:>9.0} jobs/s  ({:.1}% of the ceiling; SQLite state store)",
        100.0 * rate / ceiling
    );
    println!("  CPU µs per job: {cpu}");
    println!("worker peak RSS         {:>9.1} MiB", rss as f64 / 1024.0);
    let tenths: Vec<String> = rss_samples.iter().map(|kib| format!("{:.1}", *kib as f64 / 1024.0)).collect();
    println!("  RSS MiB at each tenth of the run: {}", tenths.join(" "));
    let (rate_redis, rss_redis, cpu, _) = end_to_end(jobs, "redis").await;
    println!(
        "yizhan end to end       {rate_redis:>9.0} jobs/s  ({:.1}% of the ceiling; Redis state store and limiter; RSS {:.1} MiB)",
        100.0 * rate_redis / ceiling,
        rss_redis as f64 / 1024.0
    );
    println!("  CPU µs per job: {cpu}");

    let (p50, p99) = latency((jobs / 4).max(1000), rate / 2.0).await;
    println!("latency at {:>6.0} jobs/s  p50 {p50:.1} ms, p99 {p99:.1} ms (submit → provider received)", rate / 2.0);

    for workers in [1, 2, 4] {
        let (configured, observed, max_window) = precision(workers).await;
        println!(
            "rate limit, {workers} worker(s)  configured {configured}/s, observed {observed:.1}/s ({:+.2}%), max in any 1 s window {max_window}",
            100.0 * (observed - configured as f64) / configured as f64
        );
    }
}

fn sms_job(i: usize, session_context: Option<String>) -> Job {
    let mut params = json!({"phone_numbers": [format!("+86139{i:08}")], "sign_name": "Yizhan", "template_id": "1001", "template_params": ["123456"]});
    if let Some(context) = session_context {
        params["session_context"] = json!(context);
    }
    validate_job_value(
        &json!({"connector": "tencent_sms", "config": "default", "action": "send_sms", "params": params}),
        MissingId::Assign,
    )
    .expect("valid job")
}

/// Publishes `n` messages with pipelined confirms while consuming them with batched acks.
async fn raw_ceiling(n: usize, size: usize) -> f64 {
    let connection = yizhan_broker::connect(AMQP, "bench-raw-consume", Recovery::FailFast).await.expect("broker");
    let publish_connection =
        yizhan_broker::connect(AMQP, "bench-raw-publish", Recovery::FailFast).await.expect("broker");
    let queue = format!("bench-raw-{}", uuid::Uuid::now_v7().simple());
    let channel = connection.create_channel().await.unwrap();
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), AMQPValue::LongString(LongString::from("quorum")));
    channel
        .queue_declare(queue.as_str().into(), QueueDeclareOptions { durable: true, ..Default::default() }, args)
        .await
        .unwrap();
    channel.basic_qos(500, BasicQosOptions::default()).await.unwrap();
    let mut consumer = channel
        .basic_consume(queue.as_str().into(), "bench".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .unwrap();
    let body = vec![b'x'; size];
    let publisher = Publisher::open(&publish_connection).await.unwrap();
    let start = Instant::now();
    let producer = tokio::spawn({
        let queue = queue.clone();
        async move {
            for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
                let messages: Vec<Message<'_>> = chunk
                    .iter()
                    .map(|_| Message {
                        exchange: "",
                        routing_key: &queue,
                        body: &body,
                        message_id: None,
                        headers: FieldTable::default(),
                        expiration_ms: None,
                    })
                    .collect();
                for result in publisher.publish_all(&messages).await {
                    result.expect("confirmed");
                }
            }
        }
    });
    let mut received = 0;
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery.unwrap();
        received += 1;
        if received % arg("--ack-every", 100) == 0 || received == n {
            delivery.ack(BasicAckOptions { multiple: true }).await.unwrap();
        }
        if received == n {
            break;
        }
    }
    let elapsed = start.elapsed();
    producer.await.unwrap();
    let _ = channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await;
    n as f64 / elapsed.as_secs_f64()
}

struct Stack {
    dir: tempfile::TempDir,
    prefix: String,
    sandbox: Sandbox,
    workers: Vec<(Child, String)>,
    state: String,
}

impl Stack {
    async fn start(rate_limit: &str, store: &str) -> Stack {
        let sandbox =
            Sandbox::start(SandboxConfig::default_accounts().record_limit(10_000_000), "127.0.0.1:0".parse().unwrap())
                .await
                .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let prefix = format!("bench-{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
        std::fs::write(
            dir.path().join("yizhan.toml"),
            format!(
                "[connectors.tencent_sms.default]\nsecret_id = \"{}\"\nsecret_key = \"{}\"\nsdk_app_id = \"{}\"\nendpoint = \"{}\"\nrate_limit = \"{rate_limit}\"\n",
                yizhan_sandbox::DEFAULT_SECRET_ID,
                yizhan_sandbox::DEFAULT_SECRET_KEY,
                yizhan_sandbox::DEFAULT_SDK_APP_ID,
                sandbox.url()
            ),
        )
        .unwrap();
        let state = if store == "redis" {
            REDIS.to_string()
        } else {
            format!("sqlite://{}", dir.path().join("state.db").display())
        };
        Stack { dir, prefix, sandbox, workers: Vec::new(), state }
    }

    async fn spawn_worker(&mut self) {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let exe = std::env::current_exe().unwrap().parent().unwrap().join("yizhan-worker");
        let child = Command::new(exe)
            .env("YIZHAN_PREFIX", &self.prefix)
            .env("YIZHAN_CONFIG", self.dir.path().join("yizhan.toml"))
            .env("YIZHAN_STATE", &self.state)
            .env("YIZHAN_METRICS_ADDR", format!("127.0.0.1:{port}"))
            .env("YIZHAN_CONCURRENCY", "256")
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("yizhan-worker next to yizhan-bench: cargo build --release --workspace --bins");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while reqwest::get(format!("{url}/readyz")).await.map(|r| !r.status().is_success()).unwrap_or(true) {
            assert!(Instant::now() < deadline, "worker did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.workers.push((child, url));
    }

    async fn succeeded(&self) -> u64 {
        let mut total = 0;
        for (_, url) in &self.workers {
            let text = reqwest::get(format!("{url}/metrics")).await.unwrap().text().await.unwrap();
            total += text
                .lines()
                .filter(|l| l.starts_with("yizhan_jobs_total{") && l.contains("outcome=\"succeeded\""))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                .sum::<u64>();
        }
        total
    }

    async fn producer(&self) -> yizhan_producer::Producer {
        yizhan_producer::Producer::connect(
            AMQP,
            &self.prefix,
            &yizhan_broker::parse_delays("5s,30s,2m,10m,1h").unwrap(),
            Recovery::FailFast,
        )
        .await
        .unwrap()
    }

    async fn wait_for(&self, n: u64) {
        while self.succeeded().await < n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for `n` successes, noting the first worker's resident memory (KiB) at each tenth.
    async fn wait_for_sampling_rss(&self, n: u64) -> Vec<u64> {
        let pid = self.workers[0].0.id();
        let mut samples = Vec::new();
        loop {
            let done = self.succeeded().await;
            while samples.len() < 10 && done >= n * (samples.len() as u64 + 1) / 10 {
                samples.push(vm_kib(pid, "VmRSS:"));
            }
            if done >= n {
                return samples;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn peak_rss_kib(&self) -> u64 {
        self.workers.iter().map(|(child, _)| vm_kib(child.id(), "VmHWM:")).max().unwrap_or(0)
    }

    async fn stop(mut self) {
        for (child, _) in &mut self.workers {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
        let connection = yizhan_broker::connect(AMQP, "bench-cleanup", Recovery::FailFast).await.unwrap();
        let channel = connection.create_channel().await.unwrap();
        let names = yizhan_broker::Names::new(self.prefix.clone());
        for queue in
            ["high", "normal", "bulk"].map(|l| format!("{}.jobs.{l}", self.prefix)).into_iter().chain([names.dead()])
        {
            let _ = channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await;
        }
        for delay in yizhan_broker::parse_delays("2s,5s,30s,2m,10m,1h").unwrap() {
            let _ = channel.queue_delete(names.delay(delay).as_str().into(), QueueDeleteOptions::default()).await;
        }
        self.sandbox.shutdown().await;
    }
}

/// A `/proc/<pid>/status` memory figure in KiB: `VmHWM:` (peak resident) or `VmRSS:` (resident now).
fn vm_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

/// N jobs submitted as fast as confirms allow while one worker executes them; jobs/s from the first
/// submit to the last recorded success.
async fn end_to_end(n: usize, store: &str) -> (f64, u64, String, Vec<u64>) {
    let mut stack = Stack::start("1000000/s", store).await;
    stack.spawn_worker().await;
    let producer = stack.producer().await;
    let jobs: Vec<Job> = (0..n).map(|i| sms_job(i, None)).collect();
    let cpu = CpuSplit::start(stack.workers[0].0.id());
    let start = Instant::now();
    for chunk in jobs.chunks(1000) {
        for result in producer.submit_all(chunk).await {
            result.expect("confirmed");
        }
    }
    let rss_samples = stack.wait_for_sampling_rss(n as u64).await;
    let rate = n as f64 / start.elapsed().as_secs_f64();
    let cpu = cpu.per_job(n);
    let rss = stack.peak_rss_kib();
    assert_eq!(stack.sandbox.state().stats().sms_sent, n as u64, "every job sent exactly once");
    stack.stop().await;
    (rate, rss, cpu, rss_samples)
}

/// Jobs submitted at `rate`; the time from submit to the provider's receipt, per job.
async fn latency(n: usize, rate: f64) -> (f64, f64) {
    let mut stack = Stack::start("1000000/s", "sqlite").await;
    stack.spawn_worker().await;
    let producer = stack.producer().await;
    let interval = Duration::from_secs_f64(1.0 / rate.max(1.0));
    let start = Instant::now();
    for i in 0..n {
        let due = start + interval * i as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        producer.submit(&sms_job(i, Some(now_us().to_string()))).await.expect("confirmed");
    }
    stack.wait_for(n as u64).await;
    let mut latencies: Vec<f64> = stack
        .sandbox
        .state()
        .requests_for(Provider::Tencent)
        .iter()
        .filter_map(|r| {
            let body: Value = serde_json::from_slice(&r.body).ok()?;
            let sent: u128 = body["SessionContext"].as_str()?.parse().ok()?;
            Some((r.received_at_ms as f64) - (sent as f64 / 1000.0))
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    stack.stop().await;
    let pick = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q) as usize].max(0.0);
    (pick(0.5), pick(0.99))
}

/// One config limited to 100/s, `workers` processes sharing Redis; observed rate and the most
/// requests in any one-second window, from the provider's receipts.
async fn precision(workers: usize) -> (u32, f64, usize) {
    const LIMIT: u32 = 100;
    let n = 600;
    let mut stack = Stack::start(&format!("{LIMIT}/s"), "redis").await;
    for _ in 0..workers {
        stack.spawn_worker().await;
    }
    let producer = stack.producer().await;
    let jobs: Vec<Job> = (0..n).map(|i| sms_job(i, None)).collect();
    for result in producer.submit_all(&jobs).await {
        result.expect("confirmed");
    }
    stack.wait_for(n as u64).await;
    let mut times: Vec<u64> =
        stack.sandbox.state().requests_for(Provider::Tencent).iter().map(|r| r.received_at_ms as u64).collect();
    times.sort_unstable();
    stack.stop().await;
    let span_s = (times[times.len() - 1] - times[0]) as f64 / 1000.0;
    let observed = (times.len() - 1) as f64 / span_s;
    let mut max_window = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end] - times[start] >= 1000 {
            start += 1;
        }
        max_window = max_window.max(end - start + 1);
    }
    (LIMIT, observed, max_window)
}

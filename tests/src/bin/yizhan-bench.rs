//! `yizhan-bench`: yizhan's speed next to the broker's own ceiling, measured in one run.
//!
//! ```sh
//! cargo build --release --workspace --bins && target/release/yizhan-bench [--jobs 100000]
//! ```
//! Prints: the raw broker ceiling (lapin publishing with confirms while consuming with acks, same
//! message size, quorum queue, no work); yizhan end to end (N `tencent_sms` jobs submitted,
//! executed against the sandbox, recorded in the state store and acked) and its ratio to the
//! ceiling, both the median of `--runs` (3) alternating runs, for a campaign (one template and
//! params, so jobs share `SendSms` calls) and, once, for verification codes (a code per job, so a
//! call per job); p50/p99 from submit to the provider's receipt at half the campaign's rate; the worker's peak RSS and its RSS at each tenth of the run (flat, or
//! growing); rate-limit precision for one config with 1, 2 and 4 workers sharing Redis; and where
//! the CPU went, in µs per job, for the broker, the worker, Redis and this process (producer and
//! sandbox), since the machine's cores are shared.
//!
//! `--compare-workers BEFORE,AFTER` runs only the end-to-end figures, alternating two worker
//! binaries (a change's before and after, built with `--release`) in one run; with
//! `--compare-store redis` (sqlite by default) on that state store.
//!
//! `--api-runs N` alternates the library's and the API's campaign N times (1); `--api-store
//! redis` runs both with Redis as the state store (sqlite).
//!
//! `--ack-every 1` makes the ceiling ack one by one, as a worker that did not coalesce acks would;
//! `--concurrency N` sets the worker's (256); `--only-rate-limit` skips the throughput part.

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

/// Whether run `name` is wanted: all are unless `--only a,b` names some (`sqlite-codes`,
/// `redis-campaign`, `redis-codes`, `postgres`, `api`, `latency`, `rate-limit`; the ceiling and the SQLite
/// campaign always run, as the others' yardsticks).
fn wanted(name: &str) -> bool {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == "--only").and_then(|i| args.get(i + 1)) {
        Some(list) => list.split(',').any(|n| n == name),
        None => true,
    }
}

fn arg(name: &str, default: usize) -> usize {
    arg_text(name, "").parse().unwrap_or(default)
}

/// The value after option `name`, or `default`.
fn arg_text(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).map_or(default, |v| v).to_string()
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

    /// The same, also counting process `pid` as `name`.
    fn and(mut self, name: &'static str, pid: u32) -> CpuSplit {
        self.pids.push((name, Some(pid)));
        self.start.push(cpu_seconds(pid));
        self
    }

    /// CPU µs per job of process `name` since `start`.
    fn used_us(&self, name: &str, jobs: usize) -> f64 {
        let Some(((_, pid), start)) = self.pids.iter().zip(&self.start).find(|((n, _), _)| *n == name) else {
            return 0.0;
        };
        pid.map_or(0.0, |pid| (cpu_seconds(pid) - start) * 1e6 / jobs as f64)
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

/// The allocator of the product's binaries: this process hosts the producer and the sandbox, whose
/// CPU counts in every figure; with glibc's malloc they spent a tenth of it in the allocator.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() {
    yizhan_broker::install_crypto_provider();
    let jobs = arg("--jobs", 100_000);
    println!("yizhan-bench: {jobs} jobs, {} cores", std::thread::available_parallelism().map_or(0, |n| n.get()));

    let args: Vec<String> = std::env::args().collect();
    if let Some(pair) = args.iter().position(|a| a == "--compare-workers").and_then(|i| args.get(i + 1)) {
        let (before, after) = pair.split_once(',').expect("--compare-workers BEFORE,AFTER (two worker binaries)");
        compare_workers(jobs, before.into(), after.into()).await;
        return;
    }
    if !std::env::args().any(|a| a == "--only-rate-limit") {
        throughput(jobs).await;
    }
    for workers in [1, 2, 4] {
        if !wanted("rate-limit") {
            break;
        }
        let p = precision(workers).await;
        println!(
            "rate limit, {workers} worker(s)  configured {}/s, observed {:.1}/s ({:+.2}%), max in any 1 s window {}, longest gap {} ms",
            p.configured,
            p.observed,
            100.0 * (p.observed - p.configured as f64) / p.configured as f64,
            p.max_window,
            p.longest_gap
        );
    }
}

/// The ceiling, the end-to-end rates, the worker's memory and the latency at half the rate.
async fn throughput(jobs: usize) {
    let size = sms_job(0, Jobs::Campaign).to_message().len();
    // The ceiling and the end-to-end rate alternate, `--runs` times (3 by default), and each is the
    // median of its runs: on a shared 2-core machine one short run of either can be 10% off.
    let runs = arg("--runs", 3).max(1);
    let mut ceilings = Vec::new();
    let mut e2e_runs = Vec::new();
    for _ in 0..runs {
        ceilings.push(raw_ceiling(jobs, size).await);
        e2e_runs.push(end_to_end(jobs, "sqlite", Jobs::Campaign).await);
    }
    let ceiling = median_by(&ceilings, |c| c.rate);
    let e2e = median_by(&e2e_runs, |e| e.rate);
    let each = |rates: Vec<f64>| rates.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", ");
    println!(
        "raw broker ceiling      {:>9.0} msg/s   (lapin, quorum queue, {size}-byte messages, confirms + acks)",
        ceiling.rate
    );
    if runs > 1 {
        println!("  median of {runs} runs: {}", each(ceilings.iter().map(|c| c.rate).collect()));
    }
    println!("  CPU µs per message: broker {:.0}, lapin publisher+consumer {:.0}", ceiling.broker_us, ceiling.lapin_us);
    println!(
        "yizhan end to end       {:>9.0} jobs/s  ({:.1}% of the ceiling; SQLite state store; a campaign)",
        e2e.rate,
        100.0 * e2e.rate / ceiling.rate
    );
    if runs > 1 {
        println!("  median of {runs} runs: {}", each(e2e_runs.iter().map(|e| e.rate).collect()));
    }
    println!("  {} SendSms calls for {jobs} jobs ({:.1} numbers per call)", e2e.calls, jobs as f64 / e2e.calls as f64);
    println!("  submitted at {:.0} jobs/s (with confirms, while the worker ran)", e2e.submit_rate);
    println!("  CPU µs per job: {}", e2e.cpu);
    let rss = e2e_runs.iter().map(|e| e.peak_rss_kib).max().unwrap_or(0);
    println!("worker peak RSS         {:>9.1} MiB (highest of the runs)", rss as f64 / 1024.0);
    let tenths: Vec<String> = e2e_runs[0].rss_tenths.iter().map(|kib| format!("{:.1}", *kib as f64 / 1024.0)).collect();
    println!("  RSS MiB at each tenth of the first run: {}", tenths.join(" "));
    let rate = e2e.rate;
    if wanted("sqlite-codes") {
        let codes = end_to_end(jobs, "sqlite", Jobs::Codes).await;
        println!(
            "yizhan end to end       {:>9.0} jobs/s  ({:.1}% of the ceiling; SQLite; verification codes, a call per job)",
            codes.rate,
            100.0 * codes.rate / ceiling.rate
        );
        println!("  CPU µs per job: {}", codes.cpu);
    }
    if wanted("redis-campaign") {
        let redis = end_to_end(jobs, "redis", Jobs::Campaign).await;
        println!(
            "yizhan end to end       {:>9.0} jobs/s  ({:.1}% of the ceiling; Redis state store and limiter; a campaign; RSS {:.1} MiB)",
            redis.rate,
            100.0 * redis.rate / ceiling.rate,
            redis.peak_rss_kib as f64 / 1024.0
        );
        println!("  {} SendSms calls; CPU µs per job: {}", redis.calls, redis.cpu);
    }
    if wanted("redis-codes") {
        let redis_codes = end_to_end(jobs, "redis", Jobs::Codes).await;
        println!(
            "yizhan end to end       {:>9.0} jobs/s  ({:.1}% of the ceiling; Redis state store and limiter; verification codes, a call per job)",
            redis_codes.rate,
            100.0 * redis_codes.rate / ceiling.rate
        );
        println!("  CPU µs per job: {}", redis_codes.cpu);
    }
    if wanted("postgres") {
        postgres_run(jobs, ceiling.rate).await;
    }
    if wanted("api") {
        // The same campaign two ways, of the same size (a million jobs cost the worker, the store and
        // the sandbox more per job than a hundred thousand): submitted by the library, as above, and
        // by the CLI through the API.
        let recipients = arg("--campaign-recipients", 1_000_000);
        // `--api-runs N` (1): the two alternate N times and each is the median of its runs.
        let api_runs = arg("--api-runs", 1).max(1);
        // `--api-store redis` (sqlite): the state store of both.
        let store = &arg_text("--api-store", "sqlite");
        let (mut plains, mut apis) = (Vec::new(), Vec::new());
        for _ in 0..api_runs {
            plains.push(if recipients == jobs && api_runs == 1 && store == "sqlite" {
                e2e.rate
            } else {
                end_to_end(recipients, store, Jobs::Campaign).await.rate
            });
            apis.push(campaign_through_api(recipients, store).await);
        }
        let plain = *median_by(&plains, |r| *r);
        let api = median_by(&apis, |e| e.rate);
        println!(
            "campaign via the API   {:>9.0} jobs/s  ({:.1}% of the same campaign's {plain:.0} submitted by the library; {recipients} recipients: `yizhan-producer campaign submit` → POST /v1/campaigns and /recipients → {store}; gap {:+.1}%)",
            api.rate,
            100.0 * api.rate / plain,
            100.0 * (api.rate - plain) / plain,
        );
        if api_runs > 1 {
            let each = |rates: Vec<f64>| rates.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", ");
            println!(
                "  median of {api_runs} alternating runs: library {}; API {}",
                each(plains.clone()),
                each(apis.iter().map(|e| e.rate).collect())
            );
        }
        println!(
            "  submitted at {:.0} recipients/s; {} SendSms calls; CPU µs per job: {}",
            api.submit_rate, api.calls, api.cpu
        );
    }

    for (kind, what) in [(Jobs::Campaign, "a campaign"), (Jobs::Codes, "verification codes")] {
        if !wanted("latency") {
            break;
        }
        let (p50, p99) = latency((jobs / 4).max(1000), rate / 2.0, kind).await;
        println!(
            "latency at {:>6.0} jobs/s  p50 {p50:.1} ms, p99 {p99:.1} ms (submit → provider received; {what})",
            rate / 2.0
        );
    }
}

/// Two worker binaries (a change's before and after) on the same jobs in one run, alternating
/// `--runs` times so that the machine's drift falls on both: the median rate, worker CPU per job
/// and peak RSS of each, for a campaign and for verification codes, with SQLite (or the
/// `--compare-store`).
async fn compare_workers(jobs: usize, before: std::path::PathBuf, after: std::path::PathBuf) {
    let runs = arg("--runs", 3).max(1);
    let store = &arg_text("--compare-store", "sqlite");
    for (kind, what) in [(Jobs::Campaign, "a campaign"), (Jobs::Codes, "verification codes")] {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            a.push(end_to_end_on(jobs, store, kind, Some(&before)).await);
            b.push(end_to_end_on(jobs, store, kind, Some(&after)).await);
        }
        let line = |name: &str, runs: &[EndToEnd]| {
            let rate = median_by(runs, |e| e.rate).rate;
            let cpu = median_by(runs, |e| e.worker_us).worker_us;
            let rss = runs.iter().map(|e| e.peak_rss_kib).max().unwrap_or(0) as f64 / 1024.0;
            let each: Vec<String> = runs.iter().map(|e| format!("{:.0}/{:.0}", e.rate, e.worker_us)).collect();
            println!(
                "{name:<7} {rate:>9.0} jobs/s, worker {cpu:.1} µs/job, peak RSS {rss:.1} MiB ({what}, {store}; runs jobs/s/µs: {})",
                each.join(" ")
            );
            for run in runs {
                println!("          CPU µs per job: {}", run.cpu);
            }
            (rate, cpu)
        };
        let (rate_a, cpu_a) = line("before", &a);
        let (rate_b, cpu_b) = line("after", &b);
        println!(
            "  after vs before: rate {:+.1}%, worker CPU per job {:+.1}% (medians of {runs} alternating runs of {jobs} jobs)",
            100.0 * (rate_b - rate_a) / rate_a,
            100.0 * (cpu_b - cpu_a) / cpu_a
        );
    }
}

/// A campaign with the records in PostgreSQL (limits local to the worker), printed like the Redis run.
/// `--postgres-jobs` (20,000 by default): a rate needs fewer jobs than the other runs, and this
/// store is the slowest on one machine.
async fn postgres_run(jobs: usize, ceiling: f64) {
    let jobs = arg("--postgres-jobs", jobs.min(20_000));
    let run = end_to_end(jobs, "postgres", Jobs::Campaign).await;
    println!(
        "yizhan end to end       {:>9.0} jobs/s  ({:.1}% of the ceiling; PostgreSQL state store, local limiter; a campaign of {jobs}; RSS {:.1} MiB)",
        run.rate,
        100.0 * run.rate / ceiling,
        run.peak_rss_kib as f64 / 1024.0
    );
    println!("  {} SendSms calls; CPU µs per job: {}", run.calls, run.cpu);
}

/// What the jobs of a run have in common.
#[derive(Clone, Copy, PartialEq)]
enum Jobs {
    /// A campaign: one template and params, a number per job. Such jobs can share `SendSms` calls.
    Campaign,
    /// Verification codes: a code of its own per job, so every job is a call of its own.
    Codes,
}

fn sms_job(i: usize, jobs: Jobs) -> Job {
    let code = match jobs {
        Jobs::Campaign => "123456".to_string(),
        Jobs::Codes => format!("{:06}", i % 1_000_000),
    };
    let params = json!({"phone_numbers": [format!("+86139{i:08}")], "sign_name": "Yizhan", "template_id": "1001", "template_params": [code]});
    validate_job_value(
        &json!({"connector": "tencent_sms", "config": "default", "action": "send_sms", "params": params}),
        MissingId::Assign,
    )
    .expect("valid job")
}

/// The middle element of `runs` by `key` (the upper middle for an even count).
fn median_by<T>(runs: &[T], key: impl Fn(&T) -> f64) -> &T {
    let mut order: Vec<&T> = runs.iter().collect();
    order.sort_by(|a, b| key(a).total_cmp(&key(b)));
    order[order.len() / 2]
}

struct Ceiling {
    rate: f64,
    /// CPU µs per message of the broker and of this process (lapin publishing and consuming).
    broker_us: f64,
    lapin_us: f64,
}

/// Publishes `n` messages with pipelined confirms while consuming them with batched acks.
async fn raw_ceiling(n: usize, size: usize) -> Ceiling {
    let broker = pid_of("beam.smp");
    let cpu_before = (broker.map_or(0.0, cpu_seconds), cpu_seconds(std::process::id()));
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
    let cpu_after = (broker.map_or(0.0, cpu_seconds), cpu_seconds(std::process::id()));
    let _ = channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await;
    Ceiling {
        rate: n as f64 / elapsed.as_secs_f64(),
        broker_us: (cpu_after.0 - cpu_before.0) * 1e6 / n as f64,
        lapin_us: (cpu_after.1 - cpu_before.1) * 1e6 / n as f64,
    }
}

struct Stack {
    dir: tempfile::TempDir,
    prefix: String,
    sandbox: Sandbox,
    workers: Vec<(Child, String)>,
    /// The worker binary: next to this one, or one named by `--compare-workers`.
    worker_exe: std::path::PathBuf,
    state: String,
    /// The run's own PostgreSQL database (`--state postgres`), dropped with the stack.
    _database: Option<yizhan_state::ScratchDatabase>,
    /// One client for the polling: `reqwest::get` would build a client, and load the system's root
    /// certificates, on every poll, stealing CPU from what is measured.
    http: reqwest::Client,
}

impl Stack {
    /// `keep_requests`: the sandbox records every request (their times), else only counts them,
    /// as a provider would not spend our CPU on recording (the throughput runs).
    async fn start(rate_limit: &str, store: &str, keep_requests: bool) -> Stack {
        let records = if keep_requests { 10_000_000 } else { 0 };
        let sandbox =
            Sandbox::start(SandboxConfig::default_accounts().record_limit(records), "127.0.0.1:0".parse().unwrap())
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
        let database = match store {
            "postgres" => Some(yizhan_state::ScratchDatabase::create().await.expect("a postgres database")),
            _ => None,
        };
        let state = match (store, &database) {
            ("redis", _) => REDIS.to_string(),
            (_, Some(database)) => database.url().to_string(),
            _ => format!("sqlite://{}", dir.path().join("state.db").display()),
        };
        let worker_exe = std::env::current_exe().unwrap().parent().unwrap().join("yizhan-worker");
        let http = reqwest::Client::new();
        Stack { dir, prefix, sandbox, workers: Vec::new(), worker_exe, state, _database: database, http }
    }

    async fn spawn_worker(&mut self) {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(&self.worker_exe)
            .env("YIZHAN_PREFIX", &self.prefix)
            .env("YIZHAN_CONFIG", self.dir.path().join("yizhan.toml"))
            .env("YIZHAN_STATE", &self.state)
            .env("YIZHAN_METRICS_ADDR", format!("127.0.0.1:{port}"))
            .env("YIZHAN_CONCURRENCY", arg("--concurrency", 256).to_string())
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("yizhan-worker next to yizhan-bench: cargo build --release --workspace --bins");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.http.get(format!("{url}/readyz")).send().await.map(|r| !r.status().is_success()).unwrap_or(true) {
            assert!(Instant::now() < deadline, "worker did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.workers.push((child, url));
    }

    async fn succeeded(&self) -> u64 {
        let mut total = 0;
        for (_, url) in &self.workers {
            let text = self.http.get(format!("{url}/metrics")).send().await.unwrap().text().await.unwrap();
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
        for queue in ["high", "normal", "bulk"]
            .map(|l| format!("{}.jobs.{l}", self.prefix))
            .into_iter()
            .chain([names.dead(), names.callbacks()])
        {
            let _ = channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await;
        }
        for delay in yizhan_broker::parse_delays("2s,5s,30s,2m,10m,1h").unwrap() {
            let _ = channel.queue_delete(names.delay(delay).as_str().into(), QueueDeleteOptions::default()).await;
        }
        if self.state == REDIS {
            delete_redis_namespace(&self.prefix).await;
        }
        self.sandbox.shutdown().await;
    }
}

/// Deletes the run's keys (`<prefix>:…`), a few at a time with SCAN: a run leaves a record per job,
/// and a Redis left with millions of them slows every later user of it.
async fn delete_redis_namespace(prefix: &str) {
    let Ok(client) = redis::Client::open(REDIS) else { return };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else { return };
    let mut cursor: u64 = 0;
    loop {
        let Ok((next, keys)): Result<(u64, Vec<String>), _> = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(10_000)
            .query_async(&mut conn)
            .await
        else {
            return;
        };
        if !keys.is_empty() {
            let _: Result<(), _> = redis::cmd("UNLINK").arg(keys).query_async(&mut conn).await;
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}

/// A `/proc/<pid>/status` memory figure in KiB: `VmHWM:` (peak resident) or `VmRSS:` (resident now).
fn vm_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

struct EndToEnd {
    /// Jobs per second from the first submit to the last recorded success.
    rate: f64,
    /// Jobs per second the producer submitted (confirmed) while the worker ran.
    submit_rate: f64,
    peak_rss_kib: u64,
    /// The worker's resident memory at each tenth of the run.
    rss_tenths: Vec<u64>,
    /// CPU µs per job of each process.
    cpu: String,
    /// CPU µs per job of the worker.
    worker_us: f64,
    /// `SendSms` calls the sandbox received.
    calls: usize,
}

/// N jobs submitted as fast as confirms allow while one worker executes them.
async fn end_to_end(n: usize, store: &str, kind: Jobs) -> EndToEnd {
    end_to_end_on(n, store, kind, None).await
}

/// [`end_to_end`] with the worker binary `worker` (None: the one next to this binary).
async fn end_to_end_on(n: usize, store: &str, kind: Jobs, worker: Option<&std::path::Path>) -> EndToEnd {
    let mut stack = Stack::start("1000000/s", store, false).await;
    if let Some(worker) = worker {
        stack.worker_exe = worker.to_path_buf();
    }
    stack.spawn_worker().await;
    let producer = stack.producer().await;
    let jobs: Vec<Job> = (0..n).map(|i| sms_job(i, kind)).collect();
    let cpu = CpuSplit::start(stack.workers[0].0.id());
    let start = Instant::now();
    for chunk in jobs.chunks(1000) {
        for result in producer.submit_all(chunk).await {
            result.expect("confirmed");
        }
    }
    let submit_rate = n as f64 / start.elapsed().as_secs_f64();
    let rss_tenths = stack.wait_for_sampling_rss(n as u64).await;
    let rate = n as f64 / start.elapsed().as_secs_f64();
    let worker_us = cpu.used_us("worker", n);
    let cpu = cpu.per_job(n);
    let peak_rss_kib = stack.peak_rss_kib();
    assert_eq!(stack.sandbox.state().stats().sms_sent, n as u64, "every job sent exactly once");
    let calls = stack.sandbox.state().stats().tencent_requests as usize;
    stack.stop().await;
    EndToEnd { rate, submit_rate, peak_rss_kib, rss_tenths, cpu, worker_us, calls }
}

/// A campaign of `n` recipients submitted the way a user would: the CLI streams a CSV through
/// the HTTP API (`POST /v1/campaigns`, then chunks to `/recipients`), which validates, fans out and
/// publishes with confirms, while one worker executes. Timed from the CLI's start to the last success.
async fn campaign_through_api(n: usize, store: &str) -> EndToEnd {
    let mut stack = Stack::start("1000000/s", store, false).await;
    stack.spawn_worker().await;
    let bin = std::env::current_exe().unwrap().parent().unwrap().join("yizhan-producer");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let api_url = format!("http://127.0.0.1:{port}");
    let mut api = Command::new(&bin)
        .arg("serve")
        .env("YIZHAN_PREFIX", &stack.prefix)
        .env("YIZHAN_CONFIG", stack.dir.path().join("yizhan.toml"))
        .env("YIZHAN_STATE", &stack.state)
        .env("YIZHAN_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("YIZHAN_API_TOKENS", "bench-token")
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("yizhan-producer next to yizhan-bench");
    let deadline = Instant::now() + Duration::from_secs(30);
    while stack.http.get(format!("{api_url}/readyz")).send().await.map(|r| !r.status().is_success()).unwrap_or(true) {
        assert!(Instant::now() < deadline, "the API did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let head = stack.dir.path().join("campaign.json");
    std::fs::write(
        &head,
        json!({"name": "bench", "connector": "tencent_sms", "config": "default", "action": "send_sms",
               "params": {"sign_name": "Yizhan", "template_id": "1001", "template_params": ["123456"]}})
        .to_string(),
    )
    .unwrap();
    let csv = stack.dir.path().join("recipients.csv");
    let mut text = String::with_capacity(n * 16 + 3);
    text.push_str("to\n");
    for i in 0..n {
        text.push_str(&format!("+86139{i:08}\n"));
    }
    std::fs::write(&csv, text).unwrap();

    let cpu = CpuSplit::start(stack.workers[0].0.id()).and("api", api.id());
    let start = Instant::now();
    let mut cli = Command::new(&bin)
        .args(["campaign", "submit"])
        .arg(&head)
        .arg("--recipients")
        .arg(&csv)
        .env("YIZHAN_API_URL", &api_url)
        .env("YIZHAN_API_TOKEN", "bench-token")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("yizhan-producer campaign submit");
    // The CLI's CPU, read while it runs (its /proc entry goes when it is reaped).
    let mut cli_cpu = 0.0;
    let submitted = loop {
        if let Some(status) = cli.try_wait().expect("the CLI runs") {
            break status;
        }
        cli_cpu = cpu_seconds(cli.id());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(submitted.success(), "campaign submit failed");
    let submit_rate = n as f64 / start.elapsed().as_secs_f64();
    stack.wait_for(n as u64).await;
    let rate = n as f64 / start.elapsed().as_secs_f64();
    let worker_us = cpu.used_us("worker", n);
    let cpu = format!("{}, cli {:.0}", cpu.per_job(n), cli_cpu * 1e6 / n as f64);
    let peak_rss_kib = stack.peak_rss_kib();
    assert_eq!(stack.sandbox.state().stats().sms_sent, n as u64, "every recipient sent exactly once");
    let calls = stack.sandbox.state().stats().tencent_requests as usize;
    let _ = Command::new("kill").arg("-TERM").arg(api.id().to_string()).status();
    let _ = api.wait();
    stack.stop().await;
    EndToEnd { rate, submit_rate, peak_rss_kib, rss_tenths: Vec::new(), cpu, worker_us, calls }
}

/// Jobs submitted at `rate`; the time from submit to the provider's receipt, per job (found by
/// its number in the requests the sandbox received).
async fn latency(n: usize, rate: f64, kind: Jobs) -> (f64, f64) {
    let mut stack = Stack::start("1000000/s", "sqlite", true).await;
    stack.spawn_worker().await;
    let producer = stack.producer().await;
    let interval = Duration::from_secs_f64(1.0 / rate.max(1.0));
    let mut submitted_us = Vec::with_capacity(n);
    let start = Instant::now();
    for i in 0..n {
        let due = start + interval * i as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        submitted_us.push(now_us());
        producer.submit(&sms_job(i, kind)).await.expect("confirmed");
    }
    stack.wait_for(n as u64).await;
    let mut latencies: Vec<f64> = Vec::with_capacity(n);
    for request in stack.sandbox.state().requests_for(Provider::Tencent) {
        let Ok(body) = serde_json::from_slice::<Value>(&request.body) else { continue };
        for number in body["PhoneNumberSet"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            let Some(i) = number.strip_prefix("+86139").and_then(|i| i.parse::<usize>().ok()) else { continue };
            latencies.push(request.received_at_ms as f64 - submitted_us[i] as f64 / 1000.0);
        }
    }
    latencies.sort_by(f64::total_cmp);
    stack.stop().await;
    let pick = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q) as usize].max(0.0);
    (pick(0.5), pick(0.99))
}

struct Precision {
    configured: u32,
    /// Calls per second from the first call to the last.
    observed: f64,
    /// The most calls in any one-second window.
    max_window: usize,
    /// The longest time without a call, in ms.
    longest_gap: u64,
}

/// One config limited to 100/s, `workers` processes sharing Redis, from the provider's receipts.
async fn precision(workers: usize) -> Precision {
    const LIMIT: u32 = 100;
    let n = 600;
    let mut stack = Stack::start(&format!("{LIMIT}/s"), "redis", true).await;
    for _ in 0..workers {
        stack.spawn_worker().await;
    }
    let producer = stack.producer().await;
    let jobs: Vec<Job> = (0..n).map(|i| sms_job(i, Jobs::Campaign)).collect();
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
    let longest_gap = times.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    Precision { configured: LIMIT, observed, max_window, longest_gap }
}

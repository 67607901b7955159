//! Harness for black-box tests: each test gets its own queue prefix, state store, config file and
//! sandbox, and drives the real `yizhan-worker` and `yizhan-producer` binaries against the real
//! broker (and Redis where asked). Build the binaries first: `cargo build --workspace --bins`.

pub mod api;
pub mod mail;
pub mod modgraph;
pub mod rabbit;
pub mod shared;
pub mod webhook;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicQosOptions, ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use serde_json::{Value, json};
use yizhan_broker::Names;
use yizhan_sandbox::{Sandbox, SandboxConfig, SandboxState};
use yizhan_schemas::{Job, MissingId, Priority, validate_job_value};

/// The shared test broker (guest/guest, default vhost).
pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// The shared Redis, database 0; each test's keys live under its prefix and are deleted on drop.
pub const REDIS_URL: &str = "redis://127.0.0.1:6379/0";
/// Short delays so that retries happen within a test.
pub const RETRY_DELAYS: &str = "200ms,400ms";
/// How long a test waits for a condition before failing: generous, since a wait ends as soon as its
/// condition holds (a test that needs longer names its own bound and says why).
pub const WAIT: Duration = Duration::from_secs(60);
/// The bound of the tests that outlast [`WAIT`] by design: a job waiting out a provider's
/// one-minute pause, thousands of messages at a paced rate, jobs outliving killed workers.
pub const LONG_WAIT: Duration = Duration::from_secs(180);

/// A path to one of the workspace's binaries, next to the test executable's `deps/` folder.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
    let path = dir.join(name);
    assert!(path.exists(), "{} is missing: run `cargo build --workspace --bins` first", path.display());
    path
}

/// Which state store the workers share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// A SQLite file in the test's temp dir, private to the test.
    Sqlite,
    /// The shared Redis at [`REDIS_URL`], namespaced by the test's prefix.
    Redis,
    /// A PostgreSQL database of the test's own on the local server
    /// ([`yizhan_state::ScratchDatabase`]), dropped with the harness.
    Postgres,
}

/// One test's world: prefix, temp dir, sandbox, config file, state store.
pub struct Harness {
    /// `YIZHAN_PREFIX`: `t-<test>-<12 hex>`, unique per run, naming every queue and key of the test.
    pub prefix: String,
    /// Holds the config, SQLite file and worker logs; deleted on drop.
    pub dir: tempfile::TempDir,
    /// The test's own fake providers; its URL is every connector's `endpoint`.
    pub sandbox: Sandbox,
    /// `YIZHAN_CONFIG`: the generated `yizhan.toml` in [`Harness::dir`].
    pub config_path: PathBuf,
    /// `YIZHAN_STATE`: a `sqlite://` path in `dir`, [`REDIS_URL`], or the test's PostgreSQL database.
    pub state_url: String,
    /// The test's PostgreSQL database ([`Store::Postgres`]); dropped after the harness's cleanup.
    pub database: Option<yizhan_state::ScratchDatabase>,
    /// The broker of this test: the shared one unless [`Harness::start_on`] named another.
    pub amqp_url: String,
    /// The test's own connection to that broker, for inspecting and publishing.
    pub connection: lapin::Connection,
}

impl Harness {
    /// `extra_config` is appended to the config file (for more connector configs or overrides);
    /// `{sandbox}` in it is replaced by the sandbox's URL (for `endpoint`).
    pub async fn start(test: &str, store: Store, sandbox_config: SandboxConfig, extra_config: &str) -> Harness {
        Harness::start_on(test, store, sandbox_config, extra_config, AMQP_URL).await
    }

    /// [`Harness::start`] against the broker at `amqp_url` (a private [`rabbit::RabbitNode`]).
    pub async fn start_on(
        test: &str,
        store: Store,
        sandbox_config: SandboxConfig,
        extra_config: &str,
        amqp_url: &str,
    ) -> Harness {
        // reqwest is built without a default TLS crypto provider; tests use one HTTP client or another.
        yizhan_broker::install_crypto_provider();
        let prefix = format!("t-{test}-{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
        let dir = tempfile::tempdir().expect("temp dir");
        let sandbox = Sandbox::start(sandbox_config, "127.0.0.1:0".parse().unwrap()).await.expect("sandbox");
        let config_path = dir.path().join("yizhan.toml");
        let url = sandbox.url();
        let extra_config = extra_config.replace("{sandbox}", &url);
        std::fs::write(
            &config_path,
            format!(
                r#"
[connectors.tencent_sms.default]
secret_id = "{secret_id}"
secret_key = "${{YIZHAN_TEST_SMS_KEY}}"
sdk_app_id = "{app}"
endpoint = "{url}"
# A lost SendSms answer's numbers wait this long for their receipts before being sent again.
status_settle = "1s"

[connectors.wecom_robot.ops]
key = "{robot}"
endpoint = "{url}"
rate_limit = "6000/min"
{extra_config}
"#,
                secret_id = yizhan_sandbox::DEFAULT_SECRET_ID,
                app = yizhan_sandbox::DEFAULT_SDK_APP_ID,
                robot = yizhan_sandbox::DEFAULT_ROBOT_KEYS[0],
            ),
        )
        .unwrap();
        let database = match store {
            Store::Postgres => Some(yizhan_state::ScratchDatabase::create().await.expect("a postgres database")),
            Store::Sqlite | Store::Redis => None,
        };
        let state_url = match (store, &database) {
            (Store::Postgres, Some(database)) => database.url().to_string(),
            (Store::Redis, _) => REDIS_URL.to_string(),
            _ => format!("sqlite://{}", dir.path().join("state.db").display()),
        };
        let connection = yizhan_broker::connect(amqp_url, "yizhan-test", yizhan_broker::Recovery::Automatic)
            .await
            .expect("broker up");
        Harness { prefix, dir, sandbox, config_path, state_url, database, amqp_url: amqp_url.to_string(), connection }
    }

    /// What the sandbox saw, and its faults (same as `self.sandbox.state()`).
    pub fn sandbox(&self) -> SandboxState {
        self.sandbox.state()
    }

    /// The broker names (exchanges, lanes, `dead`, delay queues) under this test's prefix.
    pub fn names(&self) -> Names {
        Names::new(self.prefix.clone())
    }

    /// The environment shared by both binaries (contract settings).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("YIZHAN_AMQP_URL", self.amqp_url.clone()),
            ("YIZHAN_PREFIX", self.prefix.clone()),
            ("YIZHAN_CONFIG", self.config_path.display().to_string()),
            ("YIZHAN_STATE", self.state_url.clone()),
            ("YIZHAN_RETRY_DELAYS", RETRY_DELAYS.to_string()),
            ("YIZHAN_TEST_SMS_KEY", yizhan_sandbox::DEFAULT_SECRET_KEY.to_string()),
            ("RUST_LOG", "warn".to_string()),
        ]
    }

    /// Runs a worker on this harness's config, which it must refuse: it exits non-zero; returns its stderr.
    pub async fn worker_refused_at_start(&self) -> String {
        let log = self.dir.path().join("refused.log");
        let mut child = Command::new(binary("yizhan-worker"))
            .envs(self.env())
            .env("YIZHAN_METRICS_ADDR", "127.0.0.1:0")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn yizhan-worker");
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the worker kept running with a bad config");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let stderr = std::fs::read_to_string(&log).unwrap();
        assert!(!status.success(), "the worker started with a bad config: {stderr}");
        stderr
    }

    /// Starts a worker process; waits until it consumes.
    pub async fn spawn_worker(&self, args: &[&str]) -> Worker {
        self.spawn_worker_with(args, &[]).await
    }

    /// [`Harness::spawn_worker`] with `env` on top of the harness's environment.
    pub async fn spawn_worker_with(&self, args: &[&str], env: &[(&str, &str)]) -> Worker {
        let port = free_port();
        let log = self.dir.path().join(format!("worker-{port}.log"));
        let child = Command::new(binary("yizhan-worker"))
            .envs(self.env())
            .env("YIZHAN_METRICS_ADDR", format!("127.0.0.1:{port}"))
            .env("YIZHAN_LEASE", "2s")
            .envs(env.iter().copied())
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn yizhan-worker");
        let worker = Worker { child, metrics: format!("http://127.0.0.1:{port}"), log };
        worker.wait_ready().await;
        worker
    }

    /// Runs `yizhan-producer` with `args` and `stdin`; returns (exit code, stdout, stderr).
    pub fn producer(&self, args: &[&str], stdin: &str) -> (i32, String, String) {
        use std::io::Write;
        let mut child = Command::new(binary("yizhan-producer"))
            .envs(self.env())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn yizhan-producer");
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into(),
            String::from_utf8_lossy(&out.stderr).into(),
        )
    }

    /// Submits jobs with the producer library (tenants other than `default` registered in the
    /// test's state store).
    pub async fn submit(&self, jobs: &[Job]) -> Vec<uuid::Uuid> {
        let delays = yizhan_broker::parse_delays(RETRY_DELAYS).unwrap();
        let producer = yizhan_producer::Producer::connect(
            &self.amqp_url,
            &self.prefix,
            &delays,
            yizhan_broker::Recovery::FailFast,
        )
        .await
        .expect("producer");
        // Only other tenants need the registry (as `yizhan-producer submit`): a test's own process
        // may not reach the store the way the workers do (rediss with the test's CA).
        let producer = if jobs.iter().any(|job| job.tenant != yizhan_schemas::DEFAULT_TENANT) {
            producer.with_tenants(self.store().await)
        } else {
            producer
        };
        producer.submit_all(jobs).await.into_iter().map(|r| r.expect("confirmed")).collect()
    }

    /// Publishes raw bytes straight to `<prefix>.jobs` (as a foreign AMQP client would).
    pub async fn publish_raw(&self, body: &[u8], priority: Priority) {
        let publisher = yizhan_broker::Publisher::open(&self.connection).await.unwrap();
        let exchange = self.names().jobs_exchange();
        publisher
            .publish(yizhan_broker::Message {
                exchange: &exchange,
                routing_key: priority.as_str(),
                body,
                message_id: None,
                headers: FieldTable::default(),
                expiration_ms: None,
            })
            .await
            .unwrap();
    }

    /// Messages in a queue right now (0 when it does not exist).
    pub async fn queue_depth(&self, queue: &str) -> u32 {
        let channel = self.connection.create_channel().await.unwrap();
        match channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions { passive: true, ..Default::default() },
                FieldTable::default(),
            )
            .await
        {
            Ok(q) => q.message_count(),
            Err(_) => 0,
        }
    }

    /// Takes `n` messages from `<prefix>.dead` as the broker delivers them (failing after `timeout`).
    pub async fn take_dead(&self, n: usize, timeout: Duration) -> Vec<DeadLetter> {
        let channel = self.connection.create_channel().await.unwrap();
        let queue = self.names().dead();
        // At most `n` in flight, acked one by one: the queue keeps any dead letter beyond those.
        channel.basic_qos(u16::try_from(n).unwrap_or(u16::MAX).max(1), BasicQosOptions::default()).await.unwrap();
        let mut consumer = channel
            .basic_consume(
                queue.as_str().into(),
                "take-dead".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        let mut out = Vec::new();
        let taking = async {
            while out.len() < n {
                let delivery = consumer.next().await.expect("consumer open").expect("delivery");
                out.push(DeadLetter::from(&delivery));
                delivery.ack(Default::default()).await.expect("ack");
            }
        };
        if tokio::time::timeout(timeout, taking).await.is_err() {
            panic!("only {} of {n} dead letters after {timeout:?}: {out:?}", out.len());
        }
        let _ = channel.close(200, "taken".into()).await;
        out
    }

    /// Opens the state store the workers share.
    pub async fn store(&self) -> std::sync::Arc<dyn yizhan_state::StateStore> {
        yizhan_state::open(&self.state_url, &self.prefix).await.unwrap()
    }

    /// Submits `job` and waits up to `timeout` until it has ended (succeeded or dead); its status
    /// then.
    pub async fn finish(&self, job: Job, timeout: Duration) -> yizhan_state::JobStatus {
        let id = self.submit(&[job]).await[0];
        let store = self.store().await;
        eventually("the job ends", timeout, || {
            let store = store.clone();
            async move { store.status(id).await.unwrap().is_some_and(|s| s.status == "succeeded" || s.status == "dead") }
        })
        .await;
        store.status(id).await.unwrap().unwrap()
    }

    /// [`Harness::finish`] for a job that must succeed: its result (`null` when it has none).
    pub async fn succeed(&self, job: Job, timeout: Duration) -> Value {
        let status = self.finish(job, timeout).await;
        assert_eq!(status.status, "succeeded", "{status:?}");
        status.result.unwrap_or(Value::Null)
    }
}

/// Deletes the test's exchanges, queues and Redis keys when the test ends, passed or panicked: a
/// failing test leaks nothing. Drop cannot await and may run on the test's runtime, so the
/// deletion runs on a thread of its own with its own connection, bounded by a timeout.
impl Drop for Harness {
    fn drop(&mut self) {
        let names = self.names();
        let mut queues: Vec<String> = Priority::ALL.iter().map(|p| names.lane(*p)).collect();
        queues.push(names.dead());
        queues.push(names.callbacks());
        // The retry delays the binaries are given, and the worker's own not-yet lane.
        let mut delays = yizhan_broker::parse_delays(RETRY_DELAYS).unwrap();
        delays.push(yizhan_worker::pipeline::NOT_YET_LANE);
        queues.extend(delays.into_iter().map(|delay| names.delay(delay)));
        let exchanges: Vec<String> = queues.iter().cloned().chain([names.jobs_exchange()]).collect();
        let amqp_url = self.amqp_url.clone();
        let redis_namespace = (self.state_url == REDIS_URL).then(|| self.prefix.clone());
        let (state_url, prefix) = (self.state_url.clone(), self.prefix.clone());
        let cleanup = async move {
            // The lanes of the tenants the test used, as the registry names them (read before the
            // Redis keys go).
            let mut queues = queues;
            if let Ok(store) = yizhan_state::open(&state_url, &prefix).await
                && let Ok(tenants) = store.tenants().await
            {
                for tenant in tenants.iter().filter(|t| *t != yizhan_schemas::DEFAULT_TENANT) {
                    queues.extend(Priority::ALL.iter().map(|p| names.tenant_lane(*p, tenant)));
                }
            }
            if let Ok(connection) =
                yizhan_broker::connect(&amqp_url, "yizhan-test-cleanup", yizhan_broker::Recovery::FailFast).await
                && let Ok(channel) = connection.create_channel().await
            {
                for queue in &queues {
                    let _ = channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await;
                }
                for exchange in &exchanges {
                    let _ = channel.exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default()).await;
                }
                let _ = connection.close(200, "cleaned up".into()).await;
            }
            if let Some(namespace) = redis_namespace {
                delete_redis_namespace(&namespace).await;
            }
        };
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            // A broker a test stopped (a private node) must not hold the test up.
            let _ = runtime.block_on(async { tokio::time::timeout(Duration::from_secs(10), cleanup).await });
        });
        let _ = thread.join();
    }
}

/// Deletes every key of the state store's `namespace` (`<namespace>:…`).
async fn delete_redis_namespace(namespace: &str) {
    let Ok(client) = redis::Client::open(REDIS_URL) else { return };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else { return };
    let keys: Vec<String> = match redis::cmd("KEYS").arg(format!("{namespace}:*")).query_async(&mut conn).await {
        Ok(keys) => keys,
        Err(_) => return,
    };
    if !keys.is_empty() {
        let _: Result<(), _> = redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
    }
}

/// A message taken from `<prefix>.dead`.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The original message body, unchanged.
    pub body: Vec<u8>,
    /// `x-yizhan-error-kind`: `permanent`, `exhausted`, `invalid` or `ambiguous` (`""` if absent).
    pub kind: String,
    /// `x-yizhan-error`: the reason, provider code included (`""` if absent).
    pub error: String,
    /// `x-yizhan-attempts`; 0 when absent.
    pub attempts: u32,
}

impl DeadLetter {
    /// The body as JSON; `Value::Null` when it is not JSON (an `invalid` message).
    pub fn job(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

impl From<&lapin::message::Delivery> for DeadLetter {
    fn from(delivery: &lapin::message::Delivery) -> Self {
        let headers = delivery.properties.headers().clone().unwrap_or_default();
        let text = |name: &str| match headers.inner().get(&ShortString::from(name)) {
            Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
            Some(other) => format!("{other:?}"),
            None => String::new(),
        };
        let attempts = match headers.inner().get(&ShortString::from("x-yizhan-attempts")) {
            Some(AMQPValue::LongUInt(n)) => *n,
            Some(AMQPValue::LongInt(n)) => *n as u32,
            Some(AMQPValue::LongLongInt(n)) => *n as u32,
            _ => 0,
        };
        DeadLetter {
            body: delivery.data.clone(),
            kind: text("x-yizhan-error-kind"),
            error: text("x-yizhan-error"),
            attempts,
        }
    }
}

/// A running worker process.
pub struct Worker {
    /// The `yizhan-worker` process; killed and reaped on drop.
    pub child: Child,
    /// Base URL of its metrics server (`http://127.0.0.1:PORT`), serving `/metrics` and `/readyz`.
    pub metrics: String,
    /// File receiving its stderr (the log, at `RUST_LOG=warn`).
    pub log: PathBuf,
}

impl Worker {
    async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(response) = client.get(format!("{}/readyz", self.metrics)).send().await
                && response.status().is_success()
            {
                return;
            }
            assert!(Instant::now() < deadline, "worker not ready; log:\n{}", self.log_text());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The log so far; empty if it cannot be read.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The Prometheus text of `/metrics` right now (panics if the worker does not answer).
    pub async fn metrics_text(&self) -> String {
        reqwest::get(format!("{}/metrics", self.metrics)).await.unwrap().text().await.unwrap()
    }

    /// The value of `yizhan_jobs_total` for an outcome, summed over connectors and actions.
    pub async fn jobs_total(&self, outcome: &str) -> u64 {
        let needle = format!("outcome=\"{outcome}\"");
        self.metrics_text()
            .await
            .lines()
            .filter(|l| l.starts_with("yizhan_jobs_total{") && l.contains(&needle))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    /// A metric's value summed over its label sets (counters and gauges).
    pub async fn metric_sum(&self, name: &str) -> u64 {
        self.metrics_text()
            .await
            .lines()
            .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' ')))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    /// Sends a signal by name (`TERM`, `KILL`) and waits for the exit; returns the exit code.
    pub fn signal_and_wait(&mut self, signal: &str) -> Option<i32> {
        Command::new("kill").arg(format!("-{signal}")).arg(self.child.id().to_string()).status().unwrap();
        self.child.wait().unwrap().code()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// An SMS job to the given numbers.
pub fn sms_job(numbers: &[&str], idempotency_key: Option<&str>) -> Job {
    let mut value = json!({
        "connector": "tencent_sms", "config": "default", "action": "send_sms",
        "params": {"phone_numbers": numbers, "sign_name": "Yizhan", "template_id": "1001", "template_params": ["123456"]},
    });
    if let Some(key) = idempotency_key {
        value["idempotency_key"] = json!(key);
    }
    validate_job_value(&value, MissingId::Assign).expect("valid job")
}

/// A job for any action, validated like the producer does.
pub fn job(connector: &str, config: &str, action: &str, params: Value) -> Job {
    validate_job_value(
        &json!({"connector": connector, "config": config, "action": action, "params": params}),
        MissingId::Assign,
    )
    .unwrap_or_else(|e| panic!("invalid test job: {e:?}"))
}

/// Polls `check` until it holds or `timeout` passes (the condition is what the test waits for).
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    assert!(holds_within(timeout, check).await, "timed out after {timeout:?} waiting for: {what}");
}

/// Polls `check` until it holds (true) or `timeout` passes (false), for a test that says more
/// than [`eventually`] when it fails.
pub async fn holds_within<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

/// Drains a consumer stream helper for tests that read lanes directly.
pub async fn next_delivery(consumer: &mut lapin::Consumer, timeout: Duration) -> Option<lapin::message::Delivery> {
    tokio::time::timeout(timeout, consumer.next()).await.ok().flatten().and_then(Result::ok)
}

/// A phone number for index `i` (distinct per test run by the prefix-free numbering).
pub fn number(i: usize) -> String {
    format!("+86138{i:08}")
}

/// Milliseconds since the Unix epoch, the unit of the store's times.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// RFC 3339 in UTC with milliseconds, for `send_at` (civil date from days since the epoch,
/// proleptic Gregorian).
pub fn rfc3339_millis(ms: i64) -> String {
    let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let s = ms_of_day / 1000;
    let (hour, minute, second, milli) = (s / 3600, s / 60 % 60, s % 60, ms_of_day % 1000);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{milli:03}Z")
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_millis_writes_utc_dates() {
        assert_eq!(super::rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::rfc3339_millis(951_827_696_789), "2000-02-29T12:34:56.789Z");
        assert_eq!(super::rfc3339_millis(1_735_689_599_001), "2024-12-31T23:59:59.001Z");
        assert_eq!(super::rfc3339_millis(-1), "1969-12-31T23:59:59.999Z");
    }
}

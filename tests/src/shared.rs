//! Servers shared by the tests of one test binary: a 3-node RabbitMQ cluster
//! (`scripts/rabbit-cluster.sh`), a Redis master with a replica and three sentinels
//! (`scripts/redis-sentinel.sh`) and a chromedriver (`scripts/chromedriver.sh`).
//!
//! The scripts start them once per test run and binary (the directory is named after nextest's
//! run id, or this process when run by `cargo test`): the first test to ask starts them, later
//! ones, in this process or in another test process of the same binary (nextest runs each test in
//! a process of its own), find them running, and bring back any server a test stopped. Each test
//! process registers as an owner; the script's watchdog stops every server and deletes the
//! directory once no owner has been alive for 5 s, however the tests ended (a failed assertion,
//! a timeout's SIGKILL). Tests that stop servers on purpose run one at a time: [`Lease`] holds
//! the fixture within a process, and nextest's test groups (`.config/nextest.toml`) across
//! processes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, MutexGuard, OnceCell};

/// How long a script may take to bring its servers up (a cluster's first start is the longest).
const UP_TIMEOUT: Duration = Duration::from_secs(150);

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts").join(name)
}

/// `<temp>/yizhan-<name>-<run>`: one per nextest run (all test processes of a binary share it),
/// or per process under `cargo test`.
fn fixture_dir(name: &str) -> PathBuf {
    let run = match std::env::var("NEXTEST_RUN_ID") {
        Ok(id) => id.chars().filter(char::is_ascii_alphanumeric).take(16).collect(),
        Err(_) => format!("pid{}", std::process::id()),
    };
    let binary = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.file_stem().map(|s| s.to_string_lossy().split('-').next().unwrap_or("t").to_string()))
        .unwrap_or_else(|| "t".into());
    std::env::temp_dir().join(format!("yizhan-{name}-{binary}-{run}"))
}

/// Runs `script ARGS…`; its stdout, trimmed. Panics with its stderr when it fails.
async fn run(script_name: &str, args: &[&str], timeout: Duration) -> String {
    let mut command = tokio::process::Command::new(script(script_name));
    command.args(args).kill_on_drop(true);
    let output = tokio::time::timeout(timeout, command.output())
        .await
        .unwrap_or_else(|_| panic!("{script_name} {args:?} took more than {timeout:?}"))
        .unwrap_or_else(|e| panic!("cannot run {script_name}: {e}"));
    assert!(
        output.status.success(),
        "{script_name} {args:?} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// A shared fixture, held by one test at a time in this process; everything it started is
/// running when the lease is handed out.
pub struct Lease<T: 'static> {
    /// The fixture.
    pub fixture: &'static T,
    _turn: MutexGuard<'static, ()>,
}

impl<T> std::ops::Deref for Lease<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.fixture
    }
}

async fn lease<T>(
    cell: &'static OnceCell<T>,
    turn: &'static Mutex<()>,
    script_name: &str,
    dir: &Path,
    make: impl FnOnce(String) -> T,
) -> Lease<T> {
    let guard = turn.lock().await;
    let owner = std::process::id().to_string();
    let dir_text = dir.display().to_string();
    let out = run(script_name, &["up", &dir_text, "--owner", &owner], UP_TIMEOUT).await;
    let fixture = cell.get_or_init(|| async move { make(out) }).await;
    Lease { fixture, _turn: guard }
}

/// A local 3-node RabbitMQ cluster (see `scripts/rabbit-cluster.sh`).
#[derive(Debug)]
pub struct RabbitCluster {
    /// The cluster's directory (nodes' data, logs, `urls`).
    pub dir: PathBuf,
    /// Each node's `amqp://` URL, node 1 first.
    pub urls: Vec<String>,
}

static CLUSTER: OnceCell<RabbitCluster> = OnceCell::const_new();
static CLUSTER_TURN: Mutex<()> = Mutex::const_new(());

impl RabbitCluster {
    /// The binary's cluster, all nodes running, for this test alone (in this process).
    pub async fn shared() -> Lease<RabbitCluster> {
        let dir = fixture_dir("rabbit-cluster");
        lease(&CLUSTER, &CLUSTER_TURN, "rabbit-cluster.sh", &dir.clone(), |out| RabbitCluster {
            urls: out.split(',').map(str::to_string).collect(),
            dir,
        })
        .await
    }

    /// The nodes' URLs in the order given (`YIZHAN_AMQP_URL` for the whole cluster).
    pub fn url_list(&self, order: &[usize]) -> String {
        order.iter().map(|i| self.urls[i - 1].as_str()).collect::<Vec<_>>().join(",")
    }

    /// The AMQP port of node `i` (1-based).
    pub fn port(&self, i: usize) -> u16 {
        self.urls[i - 1].rsplit(':').next().and_then(|p| p.split('/').next()?.parse().ok()).expect("port")
    }

    /// Stops node `i` (1-based) cleanly and waits until it is gone; its data stays.
    pub async fn stop_node(&self, i: usize) {
        run("rabbit-cluster.sh", &["stop-node", &self.dir.display().to_string(), &i.to_string()], UP_TIMEOUT).await;
    }

    /// Starts node `i` again and waits until it runs (it rejoins the cluster).
    pub async fn start_node(&self, i: usize) {
        run("rabbit-cluster.sh", &["start-node", &self.dir.display().to_string(), &i.to_string()], UP_TIMEOUT).await;
    }

    /// `rabbitmqctl ARGS` against node `i`; its output.
    pub async fn ctl(&self, i: usize, args: &[&str]) -> String {
        let dir = self.dir.display().to_string();
        let index = i.to_string();
        let mut all = vec!["ctl", dir.as_str(), index.as_str()];
        all.extend_from_slice(args);
        run("rabbit-cluster.sh", &all, Duration::from_secs(60)).await
    }
}

/// A local Redis master, one replica and three sentinels (see `scripts/redis-sentinel.sh`).
#[derive(Debug)]
pub struct RedisSentinel {
    /// The servers' directory.
    pub dir: PathBuf,
    /// `redis+sentinel://…/yizhan/0`, the `YIZHAN_STATE` of the setup.
    pub url: String,
}

static SENTINEL: OnceCell<RedisSentinel> = OnceCell::const_new();
static SENTINEL_TURN: Mutex<()> = Mutex::const_new(());

impl RedisSentinel {
    /// The binary's sentinel setup, every server running, for this test alone (in this process).
    pub async fn shared() -> Lease<RedisSentinel> {
        let dir = fixture_dir("redis-sentinel");
        lease(&SENTINEL, &SENTINEL_TURN, "redis-sentinel.sh", &dir.clone(), |url| RedisSentinel { url, dir }).await
    }

    /// Starts the servers that are down again (a Redis server as a replica of the master, in sync
    /// when this returns).
    pub async fn restore(&self) {
        let owner = std::process::id().to_string();
        run("redis-sentinel.sh", &["up", &self.dir.display().to_string(), "--owner", &owner], UP_TIMEOUT).await;
    }

    /// The master's port, as the sentinels see it now.
    pub async fn master_port(&self) -> u16 {
        let out = run("redis-sentinel.sh", &["master", &self.dir.display().to_string()], Duration::from_secs(10)).await;
        out.parse().unwrap_or_else(|_| panic!("not a port: {out:?}"))
    }

    /// Kills the master (SIGKILL); returns its port.
    pub async fn kill_master(&self) -> u16 {
        let out =
            run("redis-sentinel.sh", &["kill-master", &self.dir.display().to_string()], Duration::from_secs(10)).await;
        out.parse().unwrap_or_else(|_| panic!("not a port: {out:?}"))
    }

    /// Kills the replica (SIGKILL); returns its port.
    pub async fn kill_replica(&self) -> u16 {
        let out =
            run("redis-sentinel.sh", &["kill-replica", &self.dir.display().to_string()], Duration::from_secs(10)).await;
        out.parse().unwrap_or_else(|_| panic!("not a port: {out:?}"))
    }

    /// The sentinels' ports.
    pub fn sentinel_ports(&self) -> Vec<u16> {
        let hosts = self.url.trim_start_matches("redis+sentinel://").split('/').next().unwrap_or_default();
        hosts.split(',').filter_map(|h| h.rsplit(':').next()?.parse().ok()).collect()
    }

    /// Waits until the sentinels name a master other than `old` (the failover is over); its port.
    pub async fn await_new_master(&self, old: u16, timeout: Duration) -> u16 {
        let deadline = Instant::now() + timeout;
        loop {
            let port = self.master_port().await;
            if port != old {
                return port;
            }
            assert!(Instant::now() < deadline, "no failover from port {old} within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A chromedriver on 127.0.0.1 (see `scripts/chromedriver.sh`); each WebDriver session it opens
/// runs a headless Chromium of its own.
#[derive(Debug)]
pub struct ChromeDriver {
    /// `http://127.0.0.1:<port>`, the WebDriver endpoint.
    pub url: String,
}

static CHROMEDRIVER: OnceCell<ChromeDriver> = OnceCell::const_new();
static CHROMEDRIVER_TURN: Mutex<()> = Mutex::const_new(());

impl ChromeDriver {
    /// The binary's chromedriver, running, for this test alone (in this process).
    pub async fn shared() -> Lease<ChromeDriver> {
        let dir = fixture_dir("chromedriver");
        lease(&CHROMEDRIVER, &CHROMEDRIVER_TURN, "chromedriver.sh", &dir, |url| ChromeDriver { url }).await
    }
}

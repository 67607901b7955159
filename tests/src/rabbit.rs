//! A private RabbitMQ node for tests that stop or restart the broker.
//!
//! The shared broker on 127.0.0.1:5672 serves every test running in parallel, so it is never
//! stopped; a test that needs a broker outage starts its own node here: its own node name, AMQP
//! and distribution ports, data and log directories, an empty plugin list, and a config of its own
//! (the system's `/etc/rabbitmq` files are not read). The node registers with the machine's epmd
//! (only a name → port map; nothing shared is restarted), or with one on `epmd_port`.
//!
//! A cluster of nodes is `scripts/rabbit-cluster.sh`'s (see [`crate::shared::RabbitCluster`]). A
//! node is killed, with its whole process group, when dropped, so a failing test leaves nothing
//! running.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
const CTL: &str = "/usr/lib/rabbitmq/bin/rabbitmqctl";
/// The cookie of nodes started by [`RabbitNode::start`].
pub const TEST_COOKIE: &str = "YIZHANTESTCOOKIE";
const STARTUP: Duration = Duration::from_secs(90);

/// One RabbitMQ node run by the test.
pub struct RabbitNode {
    /// The Erlang node name, `yz-<unique>@localhost`.
    pub name: String,
    /// The AMQP port on 127.0.0.1.
    pub port: u16,
    /// The Erlang distribution port on localhost (inter-node and CLI traffic).
    pub dist_port: u16,
    /// The epmd the node registers with (`None`: the default, 4369).
    pub epmd_port: Option<u16>,
    /// The node's own directory: `home` (the cookie), `mnesia`, `log`, its config files.
    pub dir: PathBuf,
    child: Option<Child>,
    /// Held for `start`'s nodes, so that their directory goes with them.
    _temp: Option<tempfile::TempDir>,
}

impl RabbitNode {
    /// A single node in a temp dir of its own, running and ready.
    pub async fn start() -> RabbitNode {
        let temp = tempfile::tempdir().expect("temp dir");
        let mut node = RabbitNode::start_in(temp.path(), TEST_COOKIE, None).await;
        node._temp = Some(temp);
        node
    }

    /// A node with a fresh name and free ports, its files under `base/<name>`, running and ready.
    pub async fn start_in(base: &Path, cookie: &str, epmd_port: Option<u16>) -> RabbitNode {
        let short = &uuid::Uuid::now_v7().simple().to_string()[20..];
        let name = format!("yz-{short}@localhost");
        let dir = base.join(format!("yz-{short}"));
        let home = dir.join("home");
        std::fs::create_dir_all(&home).expect("node dir");
        let cookie_path = home.join(".erlang.cookie");
        std::fs::write(&cookie_path, cookie).expect("cookie");
        // Erlang refuses a cookie file others can read.
        set_mode(&cookie_path, 0o400);
        std::fs::write(dir.join("enabled_plugins"), "[].\n").unwrap();
        std::fs::write(dir.join("rabbitmq-env.conf"), "").unwrap();
        std::fs::write(dir.join("rabbitmq.conf"), "loopback_users = none\n").unwrap();
        let mut node =
            RabbitNode { name, port: free_port(), dist_port: free_port(), epmd_port, dir, child: None, _temp: None };
        node.start_node().await;
        node
    }

    /// `amqp://guest:guest@127.0.0.1:<port>/%2f`.
    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        let path = |p: &str| self.dir.join(p).display().to_string();
        let mut env = vec![
            ("HOME", path("home")),
            ("RABBITMQ_NODENAME", self.name.clone()),
            ("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1".into()),
            ("RABBITMQ_NODE_PORT", self.port.to_string()),
            ("RABBITMQ_DIST_PORT", self.dist_port.to_string()),
            ("RABBITMQ_MNESIA_BASE", path("mnesia")),
            ("RABBITMQ_LOG_BASE", path("log")),
            ("RABBITMQ_ENABLED_PLUGINS_FILE", path("enabled_plugins")),
            ("RABBITMQ_CONF_ENV_FILE", path("rabbitmq-env.conf")),
            ("RABBITMQ_CONFIG_FILE", path("rabbitmq.conf")),
            ("RABBITMQ_ADVANCED_CONFIG_FILE", path("advanced.config")),
            ("RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS", "-kernel inet_dist_use_interface {127,0,0,1}".into()),
            ("ERL_EPMD_ADDRESS", "127.0.0.1".into()),
        ];
        if let Some(port) = self.epmd_port {
            env.push(("ERL_EPMD_PORT", port.to_string()));
        }
        env
    }

    /// Starts the node's Erlang VM (same name, ports and data as before) and waits until RabbitMQ
    /// runs; durable and quorum queues come back with their messages.
    pub async fn start_node(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.out"))
            .expect("server log");
        let child = Command::new(SERVER)
            .envs(self.env())
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            // Its own process group: the start script runs the VM as a child, and drop kills both.
            .process_group(0)
            .spawn()
            .expect("spawn rabbitmq-server");
        self.child = Some(child);
        self.await_startup().await;
    }

    /// Stops the whole node (the VM exits) and waits for it; [`start_node`](Self::start_node)
    /// brings it back with the same data.
    pub async fn stop_node(&mut self) {
        self.ctl(&["stop"]).await;
        if let Some(mut child) = self.child.take() {
            let _ = tokio::task::spawn_blocking(move || child.wait()).await;
        }
    }

    /// Stops the RabbitMQ application (clients are disconnected; the VM stays up).
    pub async fn stop_app(&self) {
        self.ctl(&["stop_app"]).await;
    }

    /// Starts the application again after [`stop_app`](Self::stop_app) and waits until it runs.
    pub async fn start_app(&mut self) {
        self.ctl(&["start_app"]).await;
        self.await_startup().await;
    }

    /// Runs `rabbitmqctl -n <node> <args>`, panicking with its output when it fails.
    pub async fn ctl(&self, args: &[&str]) -> String {
        let out = self.try_ctl(args).await;
        match out {
            Ok(text) => text,
            Err(text) => {
                panic!("rabbitmqctl {args:?} on {} failed: {text}\nserver log:\n{}", self.name, self.log_tail())
            }
        }
    }

    async fn try_ctl(&self, args: &[&str]) -> Result<String, String> {
        let out = tokio::process::Command::new(CTL)
            .envs(self.env())
            .args(["-q", "-n", &self.name])
            .args(args)
            .output()
            .await
            .expect("run rabbitmqctl");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        if out.status.success() { Ok(text) } else { Err(text) }
    }

    /// Waits until RabbitMQ runs on the node. `await_startup` fails at once while the VM has not
    /// registered yet, so it is asked again until the VM is up or has exited.
    async fn await_startup(&mut self) {
        let deadline = Instant::now() + STARTUP;
        loop {
            if self.try_ctl(&["await_startup", "--timeout", "30"]).await.is_ok() {
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("{} exited ({status}) while starting:\n{}", self.name, self.log_tail());
            }
            assert!(Instant::now() < deadline, "{} did not start in {STARTUP:?}:\n{}", self.name, self.log_tail());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The end of the start script's output, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("server.out")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for RabbitNode {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The whole group: the start script and the Erlang VM under it.
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A free port on 127.0.0.1 below the ephemeral range, as `scripts/lib/owners.sh` picks them: a
/// node's ports must still be free when it starts again after a stop, and an outgoing connection
/// can take an ephemeral one in between (a restart failed with `eaddrinuse` in a full run).
fn free_port() -> u16 {
    loop {
        let port = rand::random_range(20_000..32_000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

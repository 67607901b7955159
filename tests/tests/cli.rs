//! The command lines of the real binaries: each binary takes only its own flags, and the producer
//! takes its flags after the subcommand (as users type them) as well as before it (as it used to).

use std::process::{Child, Command, Output, Stdio};

use yizhan_sandbox::SandboxConfig;
use yizhan_schemas::Priority;
use yizhan_tests::{Harness, Store, WAIT, binary, eventually, number, sms_job};

/// Flags only the worker reads.
const WORKER_FLAGS: [&str; 5] = ["--metrics-addr", "--concurrency", "--prefetch", "--lease", "--callback-concurrency"];
/// Flags only `yizhan-producer serve` reads.
const SERVE_FLAGS: [&str; 4] = ["--listen", "--api-tokens", "--http-max-body", "--http-max-batch"];
/// Flags both binaries read (contract "Settings").
const SHARED_FLAGS: [&str; 6] = ["--amqp-url", "--prefix", "--config", "--state", "--retry-delays", "--callback-allow"];

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(binary(program)).args(args).stdin(Stdio::null()).output().expect("binary runs")
}

fn help(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(out.status.success(), "{program} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Every flag here takes a value: its option line reads `--flag <VALUE>` (prose may name it too).
fn lists(text: &str, flag: &str) -> bool {
    text.contains(&format!("{flag} <"))
}

fn assert_lists(text: &str, flags: &[&str], what: &str) {
    for flag in flags {
        assert!(lists(text, flag), "{what} does not list {flag}:\n{text}");
    }
}

fn assert_omits(text: &str, flags: &[&str], what: &str) {
    for flag in flags {
        assert!(!lists(text, flag), "{what} lists {flag}:\n{text}");
    }
}

#[test]
fn the_worker_rejects_the_apis_listen_flag() {
    let out = run("yizhan-worker", &["--listen", "127.0.0.1:8080"]);
    assert_eq!(out.status.code(), Some(2), "clap's usage error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unexpected argument '--listen'"), "{stderr}");
}

#[test]
fn the_workers_help_lists_its_flags_and_the_shared_ones_only() {
    let text = help("yizhan-worker", &["--help"]);
    assert_lists(&text, &SHARED_FLAGS, "yizhan-worker --help");
    assert_lists(&text, &WORKER_FLAGS, "yizhan-worker --help");
    assert_omits(&text, &SERVE_FLAGS, "yizhan-worker --help");
}

#[test]
fn the_producers_help_lists_each_commands_flags_only() {
    let serve = help("yizhan-producer", &["serve", "--help"]);
    assert_lists(&serve, &SHARED_FLAGS, "serve --help");
    assert_lists(&serve, &SERVE_FLAGS, "serve --help");
    assert_omits(&serve, &WORKER_FLAGS, "serve --help");
    for command in [&["--help"][..], &["submit", "--help"], &["catalog", "--help"], &["dlq", "list", "--help"]] {
        let text = help("yizhan-producer", command);
        let what = format!("yizhan-producer {}", command.join(" "));
        assert_omits(&text, &WORKER_FLAGS, &what);
        assert_omits(&text, &SERVE_FLAGS, &what);
    }
    assert_lists(&help("yizhan-producer", &["submit", "--help"]), &SHARED_FLAGS, "submit --help");
}

#[test]
fn serve_flags_before_another_command_are_refused() {
    let out = run("yizhan-producer", &["--listen", "127.0.0.1:8080", "catalog"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--listen applies to `serve` only"), "{stderr}");
}

/// A `yizhan-producer serve` killed on drop.
struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_addr() -> String {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string()
}

#[tokio::test]
async fn serve_takes_its_flags_after_and_before_the_subcommand() {
    let h = Harness::start("cli-serve", Store::Sqlite, SandboxConfig::default(), "").await;
    let client = reqwest::Client::new();
    for position in ["after", "before"] {
        let addr = free_addr();
        let token = format!("cli-token-{position}");
        let flags = ["--listen", addr.as_str(), "--api-tokens", token.as_str()];
        let args: Vec<&str> = match position {
            "after" => [&["serve"][..], &flags].concat(),
            _ => [&flags[..], &["serve"]].concat(),
        };
        // The environment names another address and token: the flags must win over it.
        let _serving = Serving(
            Command::new(binary("yizhan-producer"))
                .envs(h.env())
                .env("YIZHAN_HTTP_ADDR", free_addr())
                .env("YIZHAN_API_TOKENS", "env-token")
                .args(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn yizhan-producer serve"),
        );
        let base = format!("http://{addr}");
        eventually(&format!("/healthz on --listen {position} serve"), WAIT, || async {
            client.get(format!("{base}/healthz")).send().await.is_ok_and(|r| r.status().is_success())
        })
        .await;
        let catalog = |token: &str| {
            let request = client.get(format!("{base}/v1/catalog")).bearer_auth(token);
            async move { request.send().await.unwrap().status() }
        };
        assert_eq!(catalog(&token).await, 200, "--api-tokens {position} serve");
        assert_eq!(catalog("env-token").await, 401, "the flag replaces the environment's tokens");
    }
}

#[tokio::test]
async fn submit_takes_the_prefix_before_and_after_the_subcommand() {
    let h = Harness::start("cli-submit", Store::Sqlite, SandboxConfig::default(), "").await;
    // The producer runs with the decoy's environment (YIZHAN_PREFIX included); --prefix must win.
    let decoy = Harness::start("cli-decoy", Store::Sqlite, SandboxConfig::default(), "").await;
    let job = serde_json::to_string(&sms_job(&[&number(0)], None)).unwrap() + "\n";
    let prefix = h.prefix.as_str();
    for args in [["--prefix", prefix, "submit", "-"], ["submit", "--prefix", prefix, "-"]] {
        let (code, stdout, stderr) = decoy.producer(&args, &job);
        assert_eq!(code, 0, "yizhan-producer {args:?}: {stderr}");
        assert_eq!(stdout.lines().count(), 1, "one accepted id: {stdout}");
    }
    let lane = Priority::Normal;
    assert_eq!(h.queue_depth(&h.names().lane(lane)).await, 2, "both jobs on the --prefix lane");
    assert_eq!(decoy.queue_depth(&decoy.names().lane(lane)).await, 0, "none under YIZHAN_PREFIX");
}

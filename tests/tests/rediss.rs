//! A `rediss://` state store: a private `redis-server` that speaks TLS only (`--port 0`), with a
//! CA and server certificate made by the test. Workers trust the CA through `SSL_CERT_FILE`; their
//! claims, finishes and rate limits all go over TLS.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use yizhan_sandbox::SandboxConfig;
use yizhan_tests::mail::write_certificates;
use yizhan_tests::{Harness, Store, WAIT, binary, eventually, number, sms_job};

/// A TLS-only redis-server on a free port, killed on drop.
struct TlsRedis {
    child: Child,
    port: u16,
    ca: PathBuf,
    log: PathBuf,
}

impl TlsRedis {
    fn start(dir: &Path) -> TlsRedis {
        let ca = write_certificates(dir, "yizhan test redis CA");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = dir.join("redis.log");
        let path = |name: &str| dir.join(name).display().to_string();
        let child = Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--tls-cert-file", &path("server.pem"), "--tls-key-file", &path("server.key")])
            .args(["--tls-ca-cert-file", &path("ca.pem"), "--tls-auth-clients", "no"])
            .args(["--save", "", "--appendonly", "no", "--dir", &dir.display().to_string()])
            .args(["--logfile", &log.display().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (Debian's is built with TLS)");
        let server = TlsRedis { child, port, ca, log };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen:\n{}", server.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}/0", self.port)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn workers_claim_finish_and_limit_over_rediss() {
    let mut h = Harness::start("rediss", Store::Sqlite, SandboxConfig::default_accounts(), "").await;
    let redis = TlsRedis::start(h.dir.path());
    h.state_url = redis.url();

    // Without the CA the server's certificate is refused, and the worker does not start.
    let refused = Command::new(binary("yizhan-worker"))
        .envs(h.env())
        .env("SSL_CERT_FILE", "/dev/null")
        .env("YIZHAN_METRICS_ADDR", "127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(!refused.status.success(), "a worker must not trust an unknown CA");
    let refused_log = String::from_utf8_lossy(&refused.stderr);
    assert!(refused_log.contains("state store") || refused_log.contains("redis"), "{refused_log}");

    // Trusting the CA: jobs are claimed, limited and finished over TLS, and a second job with
    // the same idempotency key is recognised as a duplicate.
    let ca = redis.ca.display().to_string();
    let worker = {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = h.dir.path().join("worker.log");
        let child = Command::new(binary("yizhan-worker"))
            .envs(h.env())
            .env("SSL_CERT_FILE", &ca)
            .env("YIZHAN_METRICS_ADDR", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        yizhan_tests::Worker { child, metrics: format!("http://127.0.0.1:{port}"), log }
    };
    eventually("the worker is ready", WAIT, || async {
        reqwest::get(format!("{}/readyz", worker.metrics)).await.is_ok_and(|r| r.status().is_success())
    })
    .await;

    let key = format!("{}-otp", h.prefix);
    let mut jobs: Vec<_> = (0..20).map(|i| sms_job(&[&number(i)], None)).collect();
    jobs.push(sms_job(&[&number(100)], Some(&key)));
    h.submit(&jobs).await;
    h.sandbox().wait_for_sms(21, WAIT).await.unwrap();
    eventually("21 jobs succeeded", WAIT, || async { worker.jobs_total("succeeded").await == 21 }).await;
    h.submit(&[sms_job(&[&number(100)], Some(&key))]).await;
    eventually("the copy is a duplicate", WAIT, || async { worker.jobs_total("duplicate").await == 1 }).await;
    assert_eq!(h.sandbox().sent_sms().len(), 21, "the duplicate was not sent");

    // The records are in the TLS server (nothing went to the shared plain Redis).
    let info = Command::new("redis-cli")
        .args(["--tls", "--cacert", &ca, "-h", "127.0.0.1", "-p", &redis.port.to_string(), "dbsize"])
        .output()
        .unwrap();
    let keys: u64 = String::from_utf8_lossy(&info.stdout).trim().parse().unwrap_or(0);
    assert!(keys >= 21, "records in the TLS Redis: {keys}; {}", String::from_utf8_lossy(&info.stderr));
    drop(worker);
    drop(redis);
}

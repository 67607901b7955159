//! The state store, the limiter and the recipient caps on a Redis with Sentinel (issue 20.2):
//! `redis+sentinel://…` URLs, real `redis-server` and `redis-sentinel` processes (one master, one
//! replica, three sentinels, started once per run by `scripts/redis-sentinel.sh`: see
//! tests/src/shared.rs), the master killed or failed over under load.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use yizhan_sandbox::{Provider, SandboxConfig};
use yizhan_tests::shared::RedisSentinel;
use yizhan_tests::{Harness, Store, WAIT, eventually, number, sms_job};

const CONCURRENCY: usize = 8;
/// The limited config's jobs: numbers from here on.
const LIMITED_FROM: usize = 850;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// The largest number of `times` (ms, sorted) within one second, over the 1 s windows that do not
/// overlap `skip` (ms, inclusive).
fn most_in_a_second(times: &[i64], skip: (i64, i64)) -> usize {
    let mut most = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end] - times[start] >= 1000 {
            start += 1;
        }
        let window = (times[start], times[end]);
        let overlaps = window.0 <= skip.1 && times[end].max(window.0 + 999) >= skip.0;
        if !overlaps {
            most = most.max(end - start + 1);
        }
    }
    most
}

/// The acceptance test of issue 20.2: 1,000 SMS jobs, 150 of them on a config limited to 10/s,
/// the master killed mid-run. Nothing is lost, duplicates stay within the in-flight window, and
/// the limit holds (at most 12 in any second) outside the failover.
#[tokio::test(flavor = "multi_thread")]
async fn killing_the_master_mid_run_loses_no_job_and_keeps_the_limit() {
    let sentinel = RedisSentinel::shared().await;
    let extra = format!(
        r#"
[connectors.tencent_sms.limited]
secret_id = "{}"
secret_key = "${{YIZHAN_TEST_SMS_KEY}}"
sdk_app_id = "{}"
endpoint = "{{sandbox}}"
rate_limit = "10/s"
"#,
        yizhan_sandbox::DEFAULT_SECRET_ID,
        yizhan_sandbox::DEFAULT_SDK_APP_ID
    );
    let mut h = Harness::start("sentinel", Store::Sqlite, SandboxConfig::default_accounts(), &extra).await;
    h.state_url = sentinel.url.clone();
    let sandbox = h.sandbox();
    // The unlimited jobs take seconds too, so that the master dies under both kinds of load.
    sandbox.set_delay(Provider::Tencent, Duration::from_millis(40));
    let worker = h.spawn_worker(&["--concurrency", &CONCURRENCY.to_string()]).await;

    let jobs: Vec<_> = (0..1000)
        .map(|i| {
            let mut job = sms_job(&[&number(i)], None);
            if i >= LIMITED_FROM {
                job.config = "limited".into();
            }
            job
        })
        .collect();
    let ids = h.submit(&jobs).await;
    sandbox.wait_for_sms(300, WAIT).await.unwrap();
    let killed_at = now_ms();
    let old = sentinel.kill_master().await;
    let new = sentinel.await_new_master(old, Duration::from_secs(30)).await;
    let failed_over_at = now_ms();
    assert!(sandbox.sent_sms().len() < 1000, "the master must die mid-run");

    let expected: HashSet<String> = (0..1000).map(number).collect();
    eventually("every number got its SMS", WAIT, || {
        let sent: HashSet<String> = sandbox.sent_sms().into_iter().map(|s| s.phone).collect();
        let done = expected.is_subset(&sent);
        async move { done }
    })
    .await;
    let store = h.store().await;
    let deadline = Instant::now() + WAIT;
    loop {
        let mut pending = Vec::new();
        for id in &ids {
            match store.status(*id).await {
                Ok(Some(status)) if status.status == "succeeded" => {}
                other => pending.push((*id, other.map(|s| s.map(|s| s.status)))),
            }
        }
        if pending.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} jobs not recorded succeeded, e.g. {:?}; worker log:\n{}",
            pending.len(),
            &pending[..pending.len().min(5)],
            worker.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let mut sent: HashMap<String, usize> = HashMap::new();
    for sms in sandbox.sent_sms() {
        *sent.entry(sms.phone).or_default() += 1;
    }
    let duplicates: usize = sent.values().map(|n| n - 1).sum();
    assert!(duplicates <= CONCURRENCY, "{duplicates} duplicates: more than the {CONCURRENCY} jobs in flight");
    assert!(sandbox.rejected().is_empty(), "{:?}", sandbox.rejected());

    let limited: HashSet<String> = (LIMITED_FROM..1000).map(number).collect();
    let mut times: Vec<i64> = sandbox
        .requests_for(Provider::Tencent)
        .iter()
        .filter(|r| limited.iter().any(|n| String::from_utf8_lossy(&r.body).contains(n.as_str())))
        .map(|r| r.received_at_ms)
        .collect();
    times.sort_unstable();
    assert!(times.len() >= limited.len(), "{} calls for {} limited jobs", times.len(), limited.len());
    let outside = most_in_a_second(&times, (killed_at, failed_over_at + 1000));
    let overall = most_in_a_second(&times, (i64::MAX, i64::MAX));
    assert!(outside <= 12, "{outside} calls of the 10/s config within one second outside the failover");
    println!(
        "master {old} killed, {new} promoted {} ms later; {duplicates} duplicates; the 10/s config: at most {outside} \
         calls a second outside the failover, {overall} overall; {} deliveries requeued meanwhile",
        failed_over_at - killed_at,
        worker.log_text().matches("requeueing it").count()
    );
}

/// `redis_connect` with a `redis+sentinel://` URL: a master whose replica dies goes on alone; a
/// write acknowledged before a failover is on the new master, calls go on there once the
/// sentinels name it; an unknown master name fails at connect.
#[tokio::test(flavor = "multi_thread")]
async fn a_connection_follows_the_master_the_sentinels_name() {
    let sentinel = RedisSentinel::shared().await;
    let namespace = format!("t-follow-{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let key = |name: &str| format!("{namespace}:{name}");
    let mut connection = yizhan_state::redis_connect(&sentinel.url).await.unwrap();
    let _: () = redis::cmd("SET").arg(key("before")).arg(1).query_async(&mut connection).await.unwrap();

    // Its replica killed, the master goes on alone: the write that waits for the replica fails
    // (after WAIT_TIMEOUT), and once the master is asked again (once a second) writes stop waiting.
    sentinel.kill_replica().await;
    let killed = Instant::now();
    eventually("writes go on without the replica", Duration::from_secs(10), || {
        let mut connection = connection.clone();
        let key = key("alone");
        async move { redis::cmd("SET").arg(key).arg(3).query_async::<()>(&mut connection).await.is_ok() }
    })
    .await;
    let alone = killed.elapsed();
    assert!(alone <= yizhan_state::WAIT_TIMEOUT * 3, "alone after {alone:?}");
    sentinel.restore().await;

    // A planned failover: the replica is promoted, and the master demoted a moment later.
    let old = sentinel.master_port().await;
    let mut admin = redis::Client::open(format!("redis://127.0.0.1:{}", sentinel.sentinel_ports()[0]))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("SENTINEL").arg("FAILOVER").arg("yizhan").query_async(&mut admin).await.unwrap();
    let new = sentinel.await_new_master(old, Duration::from_secs(30)).await;
    let moved = Instant::now();
    eventually("a write succeeds on the new master", Duration::from_secs(20), || {
        let mut connection = connection.clone();
        let key = key("after");
        async move { redis::cmd("SET").arg(key).arg(2).query_async::<()>(&mut connection).await.is_ok() }
    })
    .await;
    let after = moved.elapsed();
    let port: Vec<String> = redis::cmd("CONFIG").arg("GET").arg("port").query_async(&mut connection).await.unwrap();
    assert_eq!(port[1], new.to_string(), "the connection moved from {old} to the new master");
    let values: Vec<Option<i64>> =
        redis::cmd("MGET").arg(key("before")).arg(key("alone")).query_async(&mut connection).await.unwrap();
    assert_eq!(values, [Some(1), Some(3)], "the writes acknowledged before the failover survived it");
    println!(
        "writes went on alone {alone:?} after the replica died, and on the new master {after:?} after the failover"
    );
    let _: () = redis::cmd("DEL")
        .arg(key("before"))
        .arg(key("alone"))
        .arg(key("after"))
        .query_async(&mut connection)
        .await
        .unwrap();

    let unknown = format!("redis+sentinel://127.0.0.1:{}/nosuch/0", sentinel.sentinel_ports()[0]);
    let error = yizhan_state::redis_connect(&unknown).await.unwrap_err();
    assert_eq!(error.kind(), redis::ErrorKind::MasterNameNotFoundBySentinel, "{error}");
}

//! The broker restarted under a running worker, on a private RabbitMQ node (the shared broker is
//! never restarted): nothing is lost, duplicates stay within the in-flight window, and `/readyz`
//! and `yizhan_broker_connected` follow the connection back.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use yizhan_sandbox::{Provider, SandboxConfig};
use yizhan_tests::rabbit::RabbitNode;
use yizhan_tests::{Harness, Store, WAIT, Worker, eventually, number, sms_job};

const CONCURRENCY: usize = 8;

async fn readyz(worker: &Worker) -> Option<u16> {
    reqwest::get(format!("{}/readyz", worker.metrics)).await.ok().map(|r| r.status().as_u16())
}

async fn broker_connected(worker: &Worker) -> Option<i64> {
    worker
        .metrics_text()
        .await
        .lines()
        .find(|l| l.starts_with("yizhan_broker_connected "))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn broker_restart_loses_nothing_and_readiness_comes_back() {
    let mut node = RabbitNode::start().await;
    let h = Harness::start_on("recovery", Store::Sqlite, SandboxConfig::default_accounts(), "", &node.amqp_url()).await;
    let sandbox = h.sandbox();
    // Slow enough that jobs are in flight, and more are queued, when the broker goes.
    sandbox.set_delay(Provider::Tencent, Duration::from_millis(20));
    let worker = h.spawn_worker(&["--concurrency", &CONCURRENCY.to_string()]).await;

    let before: Vec<_> = (0..400).map(|i| sms_job(&[&number(i)], None)).collect();
    let mut ids = h.submit(&before).await;
    sandbox.wait_for_sms(40, WAIT).await.unwrap();

    node.stop_node().await;
    assert!(sandbox.sent_sms().len() < before.len(), "the broker must stop mid-run");
    eventually("/readyz answers 503 while the broker is down", WAIT, || async { readyz(&worker).await == Some(503) })
        .await;
    assert_eq!(broker_connected(&worker).await, Some(0));

    node.start_node().await;
    let back = Instant::now();
    eventually("/readyz answers 200 again", Duration::from_secs(10), || async { readyz(&worker).await == Some(200) })
        .await;
    println!("ready {:?} after the broker's return", back.elapsed());
    // The gauge follows the same connections; read a moment later it may see a connection that a
    // node still booting dropped once more, so it too gets the 10 s.
    eventually(
        "yizhan_broker_connected is 1 again",
        Duration::from_secs(10).saturating_sub(back.elapsed()),
        || async { broker_connected(&worker).await == Some(1) },
    )
    .await;

    // Consuming and publishing again: jobs submitted after the restart go through too.
    let after: Vec<_> = (400..450).map(|i| sms_job(&[&number(i)], None)).collect();
    ids.extend(h.submit(&after).await);

    let store = h.store().await;
    for id in &ids {
        let id = *id;
        let store = store.clone();
        eventually("every job succeeded", WAIT, || {
            let store = store.clone();
            async move { store.status(id).await.unwrap().is_some_and(|s| s.status == "succeeded") }
        })
        .await;
    }
    let mut sent: HashMap<String, usize> = HashMap::new();
    for sms in sandbox.sent_sms() {
        *sent.entry(sms.phone.clone()).or_default() += 1;
    }
    assert_eq!(sent.len(), 450, "every number got its SMS");
    let duplicates: usize = sent.values().map(|n| n - 1).sum();
    assert!(duplicates <= CONCURRENCY, "{duplicates} duplicates: more than the {CONCURRENCY} jobs in flight");
    assert!(sandbox.rejected().is_empty(), "{:?}", sandbox.rejected());
    assert_eq!(readyz(&worker).await, Some(200));
    drop(worker);
}

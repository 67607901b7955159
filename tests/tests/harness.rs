//! The harness cleans up after a test that panics: its queues, exchanges and Redis keys are gone.

use std::panic::AssertUnwindSafe;

use lapin::options::{ExchangeDeclareOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use yizhan_sandbox::SandboxConfig;
use yizhan_schemas::Priority;
use yizhan_tests::{AMQP_URL, Harness, REDIS_URL, RETRY_DELAYS, Store, number, sms_job};

/// Whether `queue` exists (a passive declare fails, and closes its channel, when it does not).
async fn queue_exists(connection: &lapin::Connection, queue: &str) -> bool {
    let channel = connection.create_channel().await.unwrap();
    let options = QueueDeclareOptions { passive: true, ..Default::default() };
    channel.queue_declare(queue.into(), options, FieldTable::default()).await.is_ok()
}

async fn exchange_exists(connection: &lapin::Connection, exchange: &str) -> bool {
    let channel = connection.create_channel().await.unwrap();
    let options = ExchangeDeclareOptions { passive: true, ..Default::default() };
    channel.exchange_declare(exchange.into(), lapin::ExchangeKind::Topic, options, FieldTable::default()).await.is_ok()
}

#[tokio::test]
async fn a_panicking_test_leaves_no_queue_exchange_or_redis_key() {
    let h = Harness::start("harness-guard", Store::Redis, SandboxConfig::default(), "").await;
    h.submit(&[sms_job(&[&number(0)], None)]).await;
    let names = h.names();
    let mut queues: Vec<String> = Priority::ALL.iter().map(|p| names.lane(*p)).collect();
    queues.push(names.dead());
    queues.extend(yizhan_broker::parse_delays(RETRY_DELAYS).unwrap().into_iter().map(|d| names.delay(d)));
    let key = format!("{}:probe", h.prefix);
    let redis = redis::Client::open(REDIS_URL).unwrap();
    let mut conn = redis.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SET").arg(&key).arg("1").query_async(&mut conn).await.unwrap();

    let probe = yizhan_broker::connect(AMQP_URL, "harness-probe", yizhan_broker::Recovery::FailFast).await.unwrap();
    for queue in &queues {
        assert!(queue_exists(&probe, queue).await, "{queue} was declared");
    }
    assert!(exchange_exists(&probe, &names.jobs_exchange()).await);

    let failed = std::panic::catch_unwind(AssertUnwindSafe(move || {
        let _h = h;
        panic!("the test fails with its harness alive");
    }));
    assert!(failed.is_err());

    for queue in &queues {
        assert!(!queue_exists(&probe, queue).await, "{queue} leaked");
    }
    assert!(!exchange_exists(&probe, &names.jobs_exchange()).await, "the jobs exchange leaked");
    let left: bool = redis::cmd("EXISTS").arg(&key).query_async(&mut conn).await.unwrap();
    assert!(!left, "{key} leaked");
}

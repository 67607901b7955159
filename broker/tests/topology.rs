//! Against the real broker: the topology declares twice without error, a delayed message comes back
//! to its own lane after the delay, an unroutable publish is reported, and a lane's delivery limit
//! dead-letters a message that keeps being rejected. A tenant's lanes are its own, and a delayed
//! copy of its job comes back to its lane, not to tenant `default`'s.

use std::time::Duration;

use futures::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicRejectOptions, ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use yizhan_broker::{Message, Names, PublishError, Publisher, Topology, connect, declare, declare_tenant};
use yizhan_schemas::Priority;

const URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

fn topology() -> Topology {
    let prefix = format!("test-topology-{}", uuid::Uuid::now_v7().simple());
    Topology { names: Names::new(prefix), delays: vec![Duration::from_millis(300)] }
}

async fn cleanup(channel: &lapin::Channel, topology: &Topology) {
    let names = &topology.names;
    let mut queues: Vec<String> = Priority::ALL.iter().map(|p| names.lane(*p)).collect();
    queues.push(names.dead());
    queues.extend(topology.delays.iter().map(|d| names.delay(*d)));
    for queue in &queues {
        let _ = channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await;
        let _ = channel.exchange_delete(queue.as_str().into(), ExchangeDeleteOptions::default()).await;
    }
    let _ = channel.exchange_delete(names.jobs_exchange().as_str().into(), ExchangeDeleteOptions::default()).await;
}

fn message<'a>(exchange: &'a str, routing_key: &'a str, body: &'a [u8]) -> Message<'a> {
    Message { exchange, routing_key, body, message_id: None, headers: FieldTable::default(), expiration_ms: None }
}

#[tokio::test]
async fn delayed_messages_return_to_their_lane_and_poison_ends_dead() {
    let topology = topology();
    let names = topology.names.clone();
    let connection = connect(URL, "topology-test", yizhan_broker::Recovery::Automatic).await.expect("broker up");
    let channel = connection.create_channel().await.unwrap();
    declare(&channel, &topology).await.unwrap();
    declare(&channel, &topology).await.expect("declaring twice is idempotent");
    let publisher = Publisher::open(&connection).await.unwrap();

    // A retry: published to the delay exchange with the lane as routing key and a jittered TTL.
    let delay = names.delay(topology.delays[0]);
    let mut retry = message(&delay, "high", b"{\"retry\":1}");
    retry.expiration_ms = Some(250);
    publisher.publish(retry).await.unwrap();
    let mut high = channel
        .basic_consume(
            names.lane(Priority::High).as_str().into(),
            "t".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let back = tokio::time::timeout(Duration::from_secs(10), high.next())
        .await
        .expect("back from the delay queue")
        .unwrap()
        .unwrap();
    assert_eq!(back.data, b"{\"retry\":1}");
    back.ack(Default::default()).await.unwrap();

    // Unroutable: nothing is bound for this routing key.
    let err = publisher.publish(message(&names.jobs_exchange(), "nowhere", b"{}")).await.unwrap_err();
    assert!(matches!(err, PublishError::Unroutable { .. }), "{err}");

    // Poison: rejected with requeue until the delivery limit sends it to <prefix>.dead.
    publisher.publish(message(&names.jobs_exchange(), "high", b"{\"poison\":1}")).await.unwrap();
    let mut rejections = 0;
    let mut dead = channel
        .basic_consume(names.dead().as_str().into(), "d".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .unwrap();
    let dead_lettered = async {
        loop {
            tokio::select! {
                delivery = high.next() => {
                    let delivery = delivery.unwrap().unwrap();
                    rejections += 1;
                    delivery.reject(BasicRejectOptions { requeue: true }).await.unwrap();
                    assert!(rejections <= 20, "the delivery limit did not stop the loop");
                }
                delivery = dead.next() => {
                    let delivery = delivery.unwrap().unwrap();
                    assert_eq!(delivery.data, b"{\"poison\":1}");
                    delivery.ack(Default::default()).await.unwrap();
                    break;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), dead_lettered).await.expect("poison message never dead-lettered");
    assert!(rejections >= 10, "dead-lettered after {rejections} deliveries");
    cleanup(&channel, &topology).await;
}

#[tokio::test]
async fn a_tenants_delayed_job_comes_back_to_the_tenants_lane() {
    let topology = topology();
    let names = topology.names.clone();
    let connection = connect(URL, "topology-test", yizhan_broker::Recovery::Automatic).await.expect("broker up");
    let channel = connection.create_channel().await.unwrap();
    declare(&channel, &topology).await.unwrap();
    declare_tenant(&channel, &names, "acme").await.unwrap();
    declare_tenant(&channel, &names, "acme").await.expect("declaring a tenant twice is idempotent");
    let publisher = Publisher::open(&connection).await.unwrap();

    let tenant_lane = names.tenant_lane(Priority::Bulk, "acme");
    assert_eq!(tenant_lane, format!("{}.jobs.bulk.acme", names.prefix));
    let routing_key = names.routing_key(Priority::Bulk, "acme");
    publisher.publish(message(&names.jobs_exchange(), &routing_key, b"{\"first\":1}")).await.unwrap();
    let delay = names.delay(topology.delays[0]);
    let mut retry = message(&delay, &routing_key, b"{\"retry\":1}");
    retry.expiration_ms = Some(100);
    publisher.publish(retry).await.unwrap();

    let consume = |queue: String, tag: &'static str| {
        let channel = channel.clone();
        async move {
            channel
                .basic_consume(queue.as_str().into(), tag.into(), BasicConsumeOptions::default(), FieldTable::default())
                .await
                .unwrap()
        }
    };
    let mut acme = consume(tenant_lane.clone(), "acme").await;
    for expected in [&b"{\"first\":1}"[..], b"{\"retry\":1}"] {
        let delivery = tokio::time::timeout(Duration::from_secs(10), acme.next())
            .await
            .expect("the tenant's job in the tenant's lane")
            .unwrap()
            .unwrap();
        assert_eq!(delivery.data, expected);
        assert_eq!(delivery.routing_key.as_str(), "bulk.acme");
        delivery.ack(Default::default()).await.unwrap();
    }
    let default_bulk = channel
        .queue_declare(
            names.lane(Priority::Bulk).as_str().into(),
            QueueDeclareOptions { passive: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert_eq!(default_bulk.message_count(), 0, "nothing of the tenant reaches tenant default's lane");

    cleanup(&channel, &topology).await;
    for priority in Priority::ALL {
        let _ = channel
            .queue_delete(names.tenant_lane(priority, "acme").as_str().into(), QueueDeleteOptions::default())
            .await;
    }
}

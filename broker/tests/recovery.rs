//! Against the real broker, through a TCP relay the test controls: a connection whose socket is
//! reset while frames wait in lapin's buffer to be written recovers by itself. lapin 4.12.3 kept
//! such frames queued for the dead socket and never left its I/O loop, so the connection stayed
//! "reconnecting" for ever (a worker lost its broker for good when a cluster node stopped); the
//! vendored copy clears them (vendor/README.md).

use std::time::Duration;

use futures::StreamExt;
use lapin::options::{BasicPublishOptions, BasicQosOptions};
use lapin::{BasicProperties, Event};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use yizhan_broker::{Recovery, connect};

const BROKER: &str = "127.0.0.1:5672";

/// Relays each client connection to the broker. While stalled, it reads nothing more from its
/// clients, so their sockets' buffers fill and lapin holds the rest; a reset aborts the clients'
/// connections with a TCP RST, and the connections that follow are relayed normally.
struct Relay {
    port: u16,
    stalled: watch::Sender<bool>,
    resets: watch::Sender<u32>,
}

impl Relay {
    async fn start() -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stalled, _) = watch::channel(false);
        let (resets, _) = watch::channel(0);
        let relay = Relay { port, stalled, resets };
        let (stall, reset) = (relay.stalled.clone(), relay.resets.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(pass(client, stall.subscribe(), reset.subscribe()));
            }
        });
        relay
    }

    fn stall(&self) {
        self.stalled.send_replace(true);
    }

    fn reset(&self) {
        self.stalled.send_replace(false);
        self.resets.send_modify(|n| *n += 1);
    }
}

async fn pass(mut client: TcpStream, mut stalled: watch::Receiver<bool>, mut reset: watch::Receiver<u32>) {
    let Ok(mut server) = TcpStream::connect(BROKER).await else { return };
    reset.mark_unchanged();
    let (mut up, mut down) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let stall = *stalled.borrow_and_update();
        tokio::select! {
            _ = reset.changed() => {
                // SO_LINGER 0: closing sends an RST, as a node's socket does when it goes.
                let _ = client.set_zero_linger();
                return;
            }
            _ = stalled.changed() => {}
            read = client.read(&mut up), if !stall => match read {
                Ok(n) if n > 0 => if server.write_all(&up[..n]).await.is_err() { return },
                _ => return,
            },
            read = server.read(&mut down) => match read {
                Ok(n) if n > 0 => if client.write_all(&down[..n]).await.is_err() { return },
                _ => return,
            },
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_reset_while_frames_wait_to_be_written_recovers() {
    let relay = Relay::start().await;
    let url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", relay.port);
    let connection = connect(&url, "recovery-test", Recovery::Automatic).await.expect("the relay reaches the broker");
    let channel = connection.create_channel().await.unwrap();

    // Publishes of 1 MiB to no queue (the broker drops them) while the relay reads nothing: each
    // returns once written to the socket, so they stop when the buffers are full, with the next
    // one serialized in lapin's buffer.
    relay.stall();
    let (published, mut completed) = watch::channel(0usize);
    let publisher = tokio::spawn({
        let channel = channel.clone();
        let routing_key = format!("nowhere-{}", uuid::Uuid::now_v7().simple());
        async move {
            let body = vec![b'x'; 1 << 20];
            while channel
                .basic_publish(
                    "".into(),
                    routing_key.as_str().into(),
                    BasicPublishOptions::default(),
                    &body,
                    BasicProperties::default(),
                )
                .await
                .is_ok()
            {
                published.send_modify(|n| *n += 1);
            }
        }
    });
    // The buffers are full once publishes stop completing: woken by each one, the wait ends when
    // none has completed for a second. (A machine that pauses longer than that only makes the
    // test reset earlier, which cannot make it fail.)
    let filled = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Ok(())) = tokio::time::timeout(Duration::from_secs(1), completed.changed()).await {}
    })
    .await;
    assert!(filled.is_ok(), "publishes kept completing for 30 s through a relay that reads nothing");
    assert!(*completed.borrow() > 0, "some publishes went through before the buffers filled");

    // The connection says when it is connected again; subscribed before the reset, so that
    // nothing is missed (the status still reads "connected" until lapin has seen the reset).
    let mut events = connection.events_listener();
    relay.reset();
    // lapin notices the reset, waits its backoff (at most 2 s) and reconnects through the relay.
    let reconnected = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(event) = events.next().await {
            if matches!(event, Event::Connected) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        reconnected,
        Ok(true),
        "the connection did not come back in 20 s after its socket was reset (reconnecting: {})",
        connection.status().reconnecting()
    );
    // Its channel is re-opened next: while it recovers, an operation on it fails with an error
    // that waits for the recovery.
    let reopened = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Err(error) = channel.basic_qos(1, BasicQosOptions::default()).await {
                if channel.wait_for_recovery(error).await.is_err() {
                    return false;
                }
            } else {
                return true;
            }
        }
    })
    .await;
    assert_eq!(reopened, Ok(true), "the channel was not re-opened in 10 s after the connection");
    publisher.abort();
    let _ = connection.close(200, "done".into()).await;
}

//! RabbitMQ for yizhan: the names and topology both binaries declare at start, connections with
//! automatic recovery, publishing with confirms, and the settings both binaries share.

mod callback;
mod publish;
mod settings;
mod topology;

pub use callback::{CALLBACK_ROUTING_KEY, CallbackAllow, OutgoingCallback, publish_callback};
pub use publish::{Message, PublishError, Publisher};
pub use settings::{Settings, parse_delays};
pub use topology::{Names, Topology, TopologyError, declare, declare_tenant};

use lapin::{Connection, ConnectionProperties};

/// Whether a connection comes back by itself after a broker restart or a dropped connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Long-lived processes: lapin's automatic recovery re-opens channels, consumers and QoS (and
    /// retries the first connection too).
    Automatic,
    /// One-shot commands: fail at once so that the caller can report it (exit code 2).
    FailFast,
}

/// Opens an AMQP connection (`amqp://` or `amqps://` URL); `name` is the connection name the
/// management UI shows, so operators can tell the worker and producer connections apart.
pub async fn connect(url: &str, name: &str, recovery: Recovery) -> Result<Connection, lapin::Error> {
    install_crypto_provider();
    let mut properties = ConnectionProperties::default().with_connection_name(name.into());
    if recovery == Recovery::Automatic {
        // lapin's default doubles the wait up to 60 s over 16 tries: a broker back after 20 s was
        // found only 11 s later. Every 2 s at most (jittered across a fleet), for about 10 minutes.
        properties = properties
            .configure_backoff(|b| {
                b.with_max_delay(std::time::Duration::from_secs(2)).with_max_times(300).with_jitter()
            })
            .enable_auto_recover();
    }
    Connection::connect(url, properties).await
}

/// rustls needs one process-wide crypto provider; ring is the one every crate here is built with.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

//! RabbitMQ for yizhan: the names and topology both binaries declare at start, connections with
//! automatic recovery, publishing with confirms, and the settings both binaries share.

mod publish;
mod settings;
mod topology;

pub use publish::{Message, PublishError, Publisher};
pub use settings::{Settings, parse_delays, redact_url};
pub use topology::{Names, Topology, TopologyError, declare};

use lapin::{Connection, ConnectionProperties};

/// Connects with lapin's automatic recovery on: channels, consumers and QoS come back after a
/// broker restart or a dropped connection.
pub async fn connect(url: &str, name: &str) -> Result<Connection, lapin::Error> {
    install_crypto_provider();
    let properties = ConnectionProperties::default().with_connection_name(name.into()).enable_auto_recover();
    Connection::connect(url, properties).await
}

/// rustls needs one process-wide crypto provider; ring is the one every crate here is built with.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

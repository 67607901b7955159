//! RabbitMQ for yizhan: the names and topology both binaries declare at start, connections to a
//! node or any live node of a cluster with automatic recovery, publishing with confirms, and the
//! settings both binaries share.

mod callback;
mod connect;
mod publish;
mod settings;
mod topology;

pub use callback::{CALLBACK_ROUTING_KEY, CallbackAllow, OutgoingCallback, publish_callback};
pub use connect::{Nodes, NodesError, Recovery, connect, install_crypto_provider};
pub use publish::{Message, PublishError, Publisher};
pub use settings::{Settings, parse_delays};
pub use topology::{Names, Topology, TopologyError, declare, declare_control_queue, declare_tenant, shard_of};

//! Connections to a RabbitMQ node or to any live node of a cluster.
//!
//! `YIZHAN_AMQP_URL` names one node (`amqp://…` or `amqps://…`) or several, comma-separated (the
//! nodes of one cluster). A connection goes to the first node that answers, in the order given;
//! when that node goes away, lapin's automatic recovery reconnects through the same list, starting
//! with the node after the one that was lost, and re-opens channels, QoS, consumers and the
//! declarations made on them (idempotent ones: see [`crate::declare`]). Queues are quorum queues
//! replicated across the cluster, so the messages of a lost node are served by the others.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lapin::tcp::{AMQPUriTcpExt, OwnedTLSConfig};
use lapin::uri::AMQPUri;
use lapin::{Connection, ConnectionProperties};
use tracing::{debug, info};

/// How long one node may take to accept the TCP (and TLS) connection before the next one is
/// tried, unless its URL sets `connection_timeout` (ms): a node that is down without refusing
/// (a host that is off, packets dropped) must not hold a failover for the system's TCP timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether a connection comes back by itself after a broker restart or a dropped connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Long-lived processes: lapin's automatic recovery re-opens channels, consumers and QoS, on
    /// any live node of the list (and retries the first connection too).
    Automatic,
    /// One-shot commands: every node of the list is tried once, then the error is returned so that
    /// the caller can report it (exit code 2).
    FailFast,
}

/// The nodes of `YIZHAN_AMQP_URL`: one URL, or several comma-separated ones (a cluster).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nodes {
    uris: Vec<AMQPUri>,
}

/// Why a `YIZHAN_AMQP_URL` value was refused. No variant carries a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodesError {
    /// The value is empty, or one of its comma-separated entries is.
    #[error("YIZHAN_AMQP_URL: entry {index} is empty (expected amqp://… or amqps://…, comma-separated)")]
    Empty {
        /// 1-based position of the entry.
        index: usize,
    },
    /// An entry is not an AMQP URL.
    #[error("YIZHAN_AMQP_URL: entry {index} is not an AMQP URL: {reason}")]
    Invalid {
        /// 1-based position of the entry.
        index: usize,
        /// The parser's reason.
        reason: String,
    },
    /// The entries disagree on user, password or virtual host: a connection authenticates once,
    /// whichever node it reaches, so they must be the nodes of one cluster with one login.
    #[error(
        "YIZHAN_AMQP_URL: entry {index} has another user, password or vhost than entry 1 (the URLs must name the nodes of one cluster)"
    )]
    Mismatch {
        /// 1-based position of the entry.
        index: usize,
    },
}

impl Nodes {
    /// Parses one URL or a comma-separated list. A comma inside a password must be
    /// percent-encoded (`%2C`).
    pub fn parse(text: &str) -> Result<Nodes, NodesError> {
        let mut uris: Vec<AMQPUri> = Vec::new();
        for (i, entry) in text.split(',').map(str::trim).enumerate() {
            let index = i + 1;
            if entry.is_empty() {
                return Err(NodesError::Empty { index });
            }
            let uri: AMQPUri =
                entry.parse().map_err(|reason: String| NodesError::Invalid { index, reason: scrub(&reason, entry) })?;
            if let Some(first) = uris.first()
                && (uri.authority.userinfo != first.authority.userinfo || uri.vhost != first.vhost)
            {
                return Err(NodesError::Mismatch { index });
            }
            uris.push(uri);
        }
        Ok(Nodes { uris })
    }

    /// `host:port` of each node, in order (no credentials), for logs and messages.
    pub fn addresses(&self) -> Vec<String> {
        self.uris.iter().map(address).collect()
    }

    /// How many nodes are listed (at least one).
    pub fn len(&self) -> usize {
        self.uris.len()
    }

    /// Never true: a parsed list has at least one node.
    pub fn is_empty(&self) -> bool {
        self.uris.is_empty()
    }
}

/// amq-protocol quotes a URL it cannot parse whole: keep its reason only when it carries no part
/// of the entry's userinfo.
fn scrub(reason: &str, entry: &str) -> String {
    let rest = entry.split_once("://").map_or(entry, |(_, rest)| rest);
    let userinfo = rest.rfind('@').map(|at| &rest[..at]);
    if reason.contains(entry) || userinfo.is_some_and(|info| reason.contains(info)) {
        "not a URL of the form amqp://user:password@host:port/vhost".to_string()
    } else {
        reason.to_string()
    }
}

/// rustls needs one process-wide crypto provider; ring is the one every crate here is built with.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn address(uri: &AMQPUri) -> String {
    format!("{}:{}", uri.authority.host, uri.authority.port)
}

/// Opens an AMQP connection to the first live node of `urls` (one URL, or several comma-separated:
/// see [`Nodes`]); `name` is the connection name the management UI shows, so operators can tell
/// the worker and producer connections apart.
pub async fn connect(urls: &str, name: &str, recovery: Recovery) -> Result<Connection, lapin::Error> {
    install_crypto_provider();
    let nodes = Nodes::parse(urls).map_err(|e| lapin::Error::from(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
    let mut properties = ConnectionProperties::default().with_connection_name(name.into());
    if recovery == Recovery::Automatic {
        // lapin's default doubles the wait up to 60 s over 16 tries: a broker back after 20 s was
        // found only 11 s later. Every 2 s at most (jittered across a fleet), for about 10 minutes;
        // each try walks the whole list, so a live node is found on the first.
        properties = properties
            .configure_backoff(|b| {
                b.with_max_delay(std::time::Duration::from_secs(2)).with_max_times(300).with_jitter()
            })
            .enable_auto_recover();
    }
    let uris = Arc::new(nodes.uris);
    // The node to try first: the one after the node last connected to, so that a reconnection
    // tries the lost node last.
    let start = Arc::new(AtomicUsize::new(0));
    let tls = OwnedTLSConfig::default();
    let runtime = lapin::runtime::default_runtime()?;
    let first = uris[0].clone();
    Connection::connector(
        first,
        runtime,
        async move |_first, runtime| {
            let from = start.load(Ordering::Relaxed);
            let mut last_error = None;
            for offset in 0..uris.len() {
                let index = (from + offset) % uris.len();
                let uri = &uris[index];
                let timeout = uri.query.connection_timeout.map_or(CONNECT_TIMEOUT, Duration::from_millis);
                let attempt = AMQPUriTcpExt::connect_with_config_async(uri, tls.as_ref(), &runtime);
                match tokio::time::timeout(timeout, attempt).await {
                    Ok(Ok(stream)) => {
                        start.store((index + 1) % uris.len(), Ordering::Relaxed);
                        info!(node = %address(uri), "connected to the broker");
                        return Ok(stream);
                    }
                    Ok(Err(e)) => {
                        debug!(node = %address(uri), error = %e, "broker node unreachable");
                        last_error = Some(e);
                    }
                    Err(_) => {
                        debug!(node = %address(uri), ?timeout, "broker node did not answer");
                        last_error = Some(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("{} did not accept the connection within {timeout:?}", address(uri)),
                        ));
                    }
                }
            }
            Err(lapin::Error::from(last_error.expect("a parsed list has a node")))
        },
        properties,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_url_or_a_list_of_one_cluster() {
        let one = Nodes::parse("amqp://guest:guest@127.0.0.1:5672/%2f").unwrap();
        assert_eq!(one.addresses(), ["127.0.0.1:5672"]);
        let three = Nodes::parse("amqp://u:p@a:5672/v, amqp://u:p@b:5673/v,amqps://u:p@c/v").unwrap();
        assert_eq!(three.addresses(), ["a:5672", "b:5673", "c:5671"]);
        assert_eq!(three.len(), 3);
    }

    #[test]
    fn bad_lists_are_refused_with_the_entry_and_without_the_password() {
        assert_eq!(Nodes::parse("amqp://a,,amqp://b"), Err(NodesError::Empty { index: 2 }));
        assert_eq!(Nodes::parse(""), Err(NodesError::Empty { index: 1 }));
        let invalid = Nodes::parse("amqp://u:secret@a/%2f,http://u:secret@b").unwrap_err();
        assert!(matches!(invalid, NodesError::Invalid { index: 2, .. }), "{invalid:?}");
        assert!(!invalid.to_string().contains("secret"), "{invalid}");
        let unparsable = Nodes::parse("u:secret@b").unwrap_err();
        assert!(matches!(unparsable, NodesError::Invalid { index: 1, .. }), "{unparsable:?}");
        assert!(!unparsable.to_string().contains("secret"), "{unparsable}");
        let mismatch = Nodes::parse("amqp://u:secret@a/%2f,amqp://u:other@b/%2f").unwrap_err();
        assert_eq!(mismatch, NodesError::Mismatch { index: 2 });
        assert!(!mismatch.to_string().contains("secret"));
        assert_eq!(Nodes::parse("amqp://u:p@a/one,amqp://u:p@b/two"), Err(NodesError::Mismatch { index: 2 }));
    }

    #[tokio::test]
    async fn a_list_whose_first_nodes_are_down_connects_to_a_live_one() {
        // Nothing listens on port 1; the shared test broker does on 5672.
        let urls = "amqp://guest:guest@127.0.0.1:1/%2f,amqp://guest:guest@127.0.0.1:5672/%2f";
        let connection = connect(urls, "connect-test", Recovery::FailFast).await.expect("the live node");
        assert!(connection.status().connected());
        let _ = connection.close(200, "done".into()).await;
        let down =
            connect("amqp://guest:guest@127.0.0.1:1/%2f,amqp://guest:guest@127.0.0.1:2/%2f", "t", Recovery::FailFast)
                .await
                .unwrap_err();
        assert!(down.to_string().to_lowercase().contains("refused"), "{down}");
    }
}

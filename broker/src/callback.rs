//! Completion callbacks on the broker: the hosts they may reach (`YIZHAN_CALLBACK_ALLOW`) and the
//! one way to publish one, so that every process that learns a job's final state (the worker's
//! pipeline, delivery receipts) sends the same message.
//!
//! A callback is published, confirmed, to `<prefix>.jobs` with routing key [`CALLBACK_ROUTING_KEY`],
//! which `<prefix>.callbacks` is bound with; a retry goes through a delay lane, which dead-letters
//! it back to `<prefix>.jobs` with the same key, so it comes back to `<prefix>.callbacks`.

use lapin::types::FieldTable;
use yizhan_schemas::{Callback, CallbackBody, CallbackMessage};

use crate::publish::{Message, PublishError, Publisher};
pub use crate::topology::CALLBACK_ROUTING_KEY;
use crate::topology::Names;

/// A callback message ready to publish: owns what [`Message`] borrows.
#[derive(Debug, Clone)]
pub struct OutgoingCallback {
    exchange: String,
    body: Vec<u8>,
    job_id: String,
}

impl OutgoingCallback {
    /// `message` for the jobs exchange of `names`.
    pub fn new(names: &Names, message: &CallbackMessage) -> Self {
        OutgoingCallback {
            exchange: names.jobs_exchange(),
            body: message.to_bytes(),
            job_id: message.body.id.to_string(),
        }
    }

    /// The message to publish (message id: the job's id; no headers: the secret is in the body,
    /// never in a header).
    pub fn message(&self) -> Message<'_> {
        Message {
            exchange: &self.exchange,
            routing_key: CALLBACK_ROUTING_KEY,
            body: &self.body,
            message_id: Some(&self.job_id),
            headers: FieldTable::default(),
            expiration_ms: None,
        }
    }
}

/// Publishes `body` as a new delivery to `callback` and waits for the broker's confirm; returns
/// the delivery's id (its `X-Yizhan-Delivery`).
pub async fn publish_callback(
    publisher: &Publisher,
    names: &Names,
    callback: &Callback,
    body: CallbackBody,
) -> Result<uuid::Uuid, PublishError> {
    let message = CallbackMessage::new(callback, body);
    let outgoing = OutgoingCallback::new(names, &message);
    publisher.publish(outgoing.message()).await?;
    Ok(message.delivery_id)
}

/// The hosts callbacks may reach (`YIZHAN_CALLBACK_ALLOW`): comma-separated patterns, each a host
/// (`hooks.example.com`: any port), its subdomains (`*.example.com`: `a.example.com`,
/// `a.b.example.com`, not `example.com`) or a host and port (`127.0.0.1:8080`, `[::1]:8080`).
/// Empty (the default): none, so every callback is refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallbackAllow {
    patterns: Vec<HostPattern>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct HostPattern {
    host: HostMatch,
    /// None: any port.
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatch {
    /// This host exactly (lower case).
    Exact(String),
    /// Any host ending with this, dot included (`.example.com`).
    Subdomains(String),
}

const PATTERN_FORMS: &str = "hooks.example.com, *.example.com or 127.0.0.1:8080";

impl CallbackAllow {
    /// Parses `YIZHAN_CALLBACK_ALLOW`; an error names the pattern and what a pattern looks like.
    pub fn parse(text: &str) -> Result<CallbackAllow, String> {
        let patterns = text
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| parse_pattern(p).ok_or_else(|| format!("{p:?} is not a host pattern ({PATTERN_FORMS})")))
            .collect::<Result<_, _>>()?;
        Ok(CallbackAllow { patterns })
    }

    /// Whether no host is allowed.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether a callback may reach `host` on `port`; `host` as a URL parser gives it (lower case,
    /// an IPv6 address in brackets).
    pub fn allows(&self, host: &str, port: u16) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        // An address has no subdomains: `*.0.0.1` must not allow 127.0.0.1.
        let is_address = host.starts_with('[') || host.parse::<std::net::Ipv4Addr>().is_ok();
        self.patterns.iter().any(|pattern| {
            pattern.port.is_none_or(|p| p == port)
                && match &pattern.host {
                    HostMatch::Exact(exact) => *exact == host,
                    HostMatch::Subdomains(suffix) => {
                        !is_address && host.len() > suffix.len() && host.ends_with(suffix.as_str())
                    }
                }
        })
    }
}

fn parse_pattern(pattern: &str) -> Option<HostPattern> {
    let pattern = pattern.to_ascii_lowercase();
    let (host, port) = if let Some(rest) = pattern.strip_prefix('[') {
        // An IPv6 address: `[::1]` or `[::1]:8080`.
        let (address, after) = rest.split_once(']')?;
        if address.is_empty() || !address.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.') {
            return None;
        }
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':')?.parse::<u16>().ok().filter(|p| *p > 0)?),
        };
        (format!("[{address}]"), port)
    } else {
        let (host, port) = match pattern.rsplit_once(':') {
            Some((host, port)) => (host, Some(port.parse::<u16>().ok().filter(|p| *p > 0)?)),
            None => (pattern.as_str(), None),
        };
        (host.trim_end_matches('.').to_string(), port)
    };
    let host = match host.strip_prefix("*.") {
        Some(domain) if is_domain(domain) => HostMatch::Subdomains(format!(".{domain}")),
        Some(_) => return None,
        None if host.starts_with('[') || is_domain(&host) => HostMatch::Exact(host),
        None => return None,
    };
    Some(HostPattern { host, port })
}

/// Dot-separated labels of letters, digits and `-` (IPv4 addresses included).
fn is_domain(text: &str) -> bool {
    !text.is_empty()
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_subdomains_and_ports_match_as_written() {
        let allow = CallbackAllow::parse(" hooks.example.com, *.corp.example.org ,127.0.0.1:8080,[::1]:9000").unwrap();
        assert!(allow.allows("hooks.example.com", 443));
        assert!(allow.allows("hooks.example.com", 8443), "no port: any port");
        assert!(allow.allows("HOOKS.example.com.", 443), "case and a trailing dot do not matter");
        assert!(!allow.allows("evil-hooks.example.com", 443));
        assert!(!allow.allows("hooks.example.com.evil.net", 443));
        assert!(allow.allows("a.corp.example.org", 443) && allow.allows("a.b.corp.example.org", 80));
        assert!(!allow.allows("corp.example.org", 443), "*. is the subdomains only");
        assert!(!allow.allows("xcorp.example.org", 443));
        assert!(allow.allows("127.0.0.1", 8080));
        assert!(!allow.allows("127.0.0.1", 8081), "a port pattern is that port only");
        assert!(!allow.allows("localhost", 8080));
        assert!(allow.allows("[::1]", 9000) && !allow.allows("[::1]", 9001));
        let numeric = CallbackAllow::parse("*.0.0.1").unwrap();
        assert!(!numeric.allows("127.0.0.1", 80), "an address is no subdomain");
        assert!(numeric.allows("a.0.0.1", 80));
    }

    #[test]
    fn nothing_is_allowed_by_default() {
        let allow = CallbackAllow::parse("").unwrap();
        assert!(allow.is_empty() && !allow.allows("127.0.0.1", 80));
        assert_eq!(allow, CallbackAllow::default());
    }

    #[test]
    fn bad_patterns_are_named() {
        for bad in ["*", "https://hooks.example.com", "hooks.example.com:http", "a b.com", "*.", "h:0", "[zz]:1", "x/y"]
        {
            let error = CallbackAllow::parse(&format!("ok.example.com,{bad}")).unwrap_err();
            assert!(error.starts_with(&format!("{bad:?} is not a host pattern")), "{bad}: {error}");
        }
    }
}

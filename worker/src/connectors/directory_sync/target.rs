//! Applying one operation to a target.
//!
//! - webhook: `POST` of the operation as JSON, `X-Yizhan-Signature: sha256=<hex HMAC-SHA256 of
//!   the body>` when the config has a `webhook_secret`, `X-Yizhan-Operation: <operation id>` (the
//!   same on a retry, for the receiver to drop duplicates); 2xx is done, 408/429/5xx and network
//!   errors are retried a few times, any other status fails the record.
//! - amqp: a persistent message on the topic exchange `<prefix>.directory`, routing key the
//!   operation (`CREATE`, `UPDATE`, `DELETE`, `DISABLE`), `message_id` the operation id, confirmed.

use std::time::Duration;

use hmac::{Hmac, Mac};
use lapin::types::FieldTable;
use serde_json::Value;
use sha2::Sha256;
use yizhan_broker::{Message, Publisher};

use crate::config::Secret;
use crate::connectors::http;

/// Signature header of webhook deliveries (the callbacks' scheme).
pub const SIGNATURE_HEADER: &str = "X-Yizhan-Signature";
/// The operation's id, stable across retries and repeated runs.
pub const OPERATION_HEADER: &str = "X-Yizhan-Operation";
/// Tries of one webhook delivery within a run.
const WEBHOOK_ATTEMPTS: u32 = 3;

/// How applying an operation failed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ApplyError {
    /// The target refused this record (a 4xx, a directory's error code): the record fails, the run
    /// goes on.
    Record(String),
    /// The target cannot be reached or keeps failing: the run stops and is retried (what was
    /// applied is not applied again).
    Unavailable(String),
}

/// `sha256=<hex>` of `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// POSTs `body` to `url`.
pub(crate) async fn webhook(
    client: &reqwest::Client,
    url: &str,
    secret: Option<&Secret>,
    operation_id: &str,
    body: &Value,
) -> Result<(), ApplyError> {
    let bytes = serde_json::to_vec(body).expect("JSON serialises");
    let mut last = String::new();
    for attempt in 1..=WEBHOOK_ATTEMPTS {
        let mut request = client
            .post(url)
            .header("content-type", "application/json")
            .header(OPERATION_HEADER, operation_id)
            .timeout(Duration::from_secs(10))
            .body(bytes.clone());
        if let Some(secret) = secret {
            request = request.header(SIGNATURE_HEADER, signature(secret.expose(), &bytes));
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => return Ok(()),
            Ok(response) => {
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                last = format!("webhook answered {status}: {}", http::snippet(text.as_bytes()));
                if !(status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408) {
                    return Err(ApplyError::Record(last));
                }
            }
            Err(e) => last = format!("webhook: {}", redact_url(&e.to_string())),
        }
        if attempt < WEBHOOK_ATTEMPTS {
            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
        }
    }
    Err(ApplyError::Unavailable(last))
}

/// A reqwest error names the URL, whose query may hold a token: keep scheme, host and path only.
fn redact_url(text: &str) -> String {
    text.split_whitespace()
        .map(|word| match word.find('?') {
            Some(at) if word.contains("://") => format!("{}?…", &word[..at]),
            _ => word.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Publishes `body` to `exchange` with the operation as routing key.
pub(crate) async fn amqp(
    publisher: &Publisher,
    exchange: &str,
    operation: &str,
    operation_id: &str,
    body: &Value,
) -> Result<(), ApplyError> {
    let bytes = serde_json::to_vec(body).expect("JSON serialises");
    publisher
        .publish(Message {
            exchange,
            routing_key: operation,
            body: &bytes,
            message_id: Some(operation_id),
            headers: FieldTable::default(),
            expiration_ms: None,
        })
        .await
        .map_err(|e| ApplyError::Unavailable(format!("publishing to {exchange}: {e}")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn signatures_are_hex_hmac_sha256_and_urls_lose_their_query() {
        // HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog"), a published test vector.
        assert_eq!(
            super::signature("key", b"The quick brown fox jumps over the lazy dog"),
            "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
        assert_eq!(super::redact_url("error sending http://h/p?token=abc"), "error sending http://h/p?…");
    }
}

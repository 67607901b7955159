//! Completion callbacks: where a job's final state is POSTed (the envelope's `callback`), the body
//! the receiver gets, and the message that carries both through `<prefix>.callbacks`.
//!
//! The callback's `secret` signs the body (`X-Yizhan-Signature`); it travels inside the job and
//! the callback message, and nowhere else: every `Debug` here redacts it.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Pattern of a callback URL: `http://` or `https://` and a host.
pub const CALLBACK_URL_PATTERN: &str = r"^https?://[^\s/?#]+([/?#]\S*)?$";

/// Why a callback URL that is not `http(s)://host...` is refused (at `$.callback.url`).
pub(crate) const CALLBACK_URL_RULE: &str = "must be an http:// or https:// URL with a host";

/// Where yizhan POSTs the job's final state, signed with `secret` when it has one.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Callback {
    /// An `http://` or `https://` URL. Its host must be one the operator allows
    /// (`YIZHAN_CALLBACK_ALLOW`), or the job is refused.
    #[schemars(length(min = 1, max = 2048), pattern(CALLBACK_URL_PATTERN))]
    pub url: String,
    /// Key of the `X-Yizhan-Signature: sha256=<hex HMAC-SHA256 of the body>` header; without one,
    /// no signature is sent. Never logged, stored in results or shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub secret: Option<String>,
}

impl fmt::Debug for Callback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Callback")
            .field("url", &self.url)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The body POSTed to a callback URL: a job's final state (`{id, campaign?, status, attempts,
/// result?, error?, delivery?}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallbackBody {
    /// The job's id.
    pub id: Uuid,
    /// The campaign the job belongs to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<Uuid>,
    /// `succeeded`, `dead`, `cancelled` or `capped`.
    pub status: String,
    /// Attempts made, as `GET /v1/jobs/{id}` reports them.
    pub attempts: u32,
    /// A succeeded (or capped) job's result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Why a dead job died (secrets redacted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Per recipient, the delivery receipts' state, once they are final.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Value>,
}

/// One callback on its way: what `<prefix>.callbacks` holds. Published by whoever learns a job's
/// final state, POSTed (and retried) by workers.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct CallbackMessage {
    /// `X-Yizhan-Delivery`: one per report of a final state; its retries keep it, so a receiver
    /// can drop a repeat.
    pub delivery_id: Uuid,
    /// Where to POST it.
    pub url: String,
    /// The signing key, when the job has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// What to POST.
    pub body: CallbackBody,
}

impl CallbackMessage {
    /// A new delivery (UUIDv7 id) of `body` to `callback`.
    pub fn new(callback: &Callback, body: CallbackBody) -> Self {
        CallbackMessage {
            delivery_id: Uuid::now_v7(),
            url: callback.url.clone(),
            secret: callback.secret.clone(),
            body,
        }
    }

    /// The message as published to the broker.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a callback message serialises")
    }

    /// The bytes POSTed to the receiver (and signed).
    pub fn body_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.body).expect("a callback body serialises")
    }
}

impl fmt::Debug for CallbackMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallbackMessage")
            .field("delivery_id", &self.delivery_id)
            .field("url", &self.url)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("body", &self.body)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let callback = Callback { url: "https://hooks.example.com/x".into(), secret: Some("s3cr3t-key".into()) };
        let body = CallbackBody {
            id: Uuid::now_v7(),
            campaign: None,
            status: "succeeded".into(),
            attempts: 1,
            result: None,
            error: None,
            delivery: None,
        };
        let message = CallbackMessage::new(&callback, body);
        for text in [format!("{callback:?}"), format!("{message:?}")] {
            assert!(!text.contains("s3cr3t-key") && text.contains("<redacted>"), "{text}");
        }
        // The body POSTed carries no secret either; the message does (the worker signs with it).
        assert!(!String::from_utf8(message.body_bytes()).unwrap().contains("s3cr3t-key"));
        let back: CallbackMessage = serde_json::from_slice(&message.to_bytes()).unwrap();
        assert_eq!(back, message);
    }

    #[test]
    fn the_body_leaves_out_what_it_lacks() {
        let id = Uuid::now_v7();
        let body = CallbackBody {
            id,
            campaign: None,
            status: "dead".into(),
            attempts: 3,
            result: None,
            error: Some("HTTP 400".into()),
            delivery: None,
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({"id": id, "status": "dead", "attempts": 3, "error": "HTTP 400"})
        );
    }
}

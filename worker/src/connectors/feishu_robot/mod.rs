//! `feishu_robot`: the Feishu custom bot webhook (docs/providers/feishu.md#bot-webhook).
//!
//! Every action is a [`Body::FeishuMessage`] entry: JSON `{"msg_type": M, "content": params}` (or,
//! for cards, `{"msg_type": "interactive", "card": params.card}`) to `{base}/open-apis/bot/v2/hook/ID`.
//! With a `secret`, every attempt adds `"timestamp"` (seconds) and `"sign"` to the body. `code` 0 is
//! success (no result). The hook id is a credential in the path: no reason quotes a URL, and every
//! reason is scrubbed of the id and the secret.

pub mod config;
pub mod error;
#[cfg(test)]
mod tests;

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Map, Value};
use sha2::Sha256;
use yizhan_schemas::{Body, Endpoint};

use self::config::FeishuRobotConfig;
use super::call::{Call, Connector, Failure, Success};
use super::http;
use super::json_api::{self, Answer};
use crate::config::{ConfigError, ConnectorConfig, Secret};

/// The scheme and host of Feishu's open platform; a config's `endpoint` replaces it.
pub const DEFAULT_BASE: &str = "https://open.feishu.cn";
/// Seconds to wait before retrying a rate-limited call (Feishu's gateway header).
pub const RATE_LIMIT_RESET: &str = "x-ogw-ratelimit-reset";

/// `base64(HmacSHA256(key = timestamp + "\n" + secret, msg = ""))`: the key/message inversion of
/// DingTalk's scheme is Feishu's own.
pub fn sign(timestamp_s: u64, secret: &str) -> String {
    let key = format!("{timestamp_s}\n{secret}");
    let mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key length");
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// A Feishu bot config.
#[derive(Debug)]
pub struct FeishuRobot {
    base: String,
    hook_id: Secret,
    secret: Option<Secret>,
    client: reqwest::Client,
    /// The clock of the signature's timestamp (fixed in tests).
    clock: fn() -> SystemTime,
}

impl FeishuRobot {
    /// Checks the config's fields and builds the connector on the worker's shared HTTP client.
    pub fn new(config: &ConnectorConfig, client: reqwest::Client) -> Result<Self, ConfigError> {
        let fields = FeishuRobotConfig::from_config(config)?;
        let base = json_api::checked_base(config, DEFAULT_BASE)?;
        Ok(FeishuRobot { base, hook_id: fields.hook_id, secret: fields.secret, client, clock: SystemTime::now })
    }

    fn secrets(&self) -> Vec<&str> {
        let mut secrets = vec![self.hook_id.expose()];
        secrets.extend(self.secret.as_ref().map(Secret::expose));
        secrets
    }

    async fn call(&self, call: Call<'_>) -> Result<Success, Failure> {
        let Endpoint::Http { method, path, body: Body::FeishuMessage { msg_type, card } } = call.action.endpoint else {
            return Err(Failure::permanent(format!("feishu_robot cannot execute {:?}", call.action.endpoint)));
        };
        let path = path.replace("{hook_id}", self.hook_id.expose());
        let url = reqwest::Url::parse(&format!("{}{path}", self.base))
            .map_err(|e| Failure::permanent(format!("cannot build the webhook URL: {e}")))?;
        let mut body = message(msg_type, card, call.params)?;
        if let Some(secret) = &self.secret {
            let timestamp = (self.clock)().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            body.insert("timestamp".into(), Value::String(timestamp.to_string()));
            body.insert("sign".into(), Value::String(sign(timestamp, secret.expose())));
        }
        let secrets = self.secrets();
        let response = self
            .client
            .request(json_api::method(method), url)
            .json(&body)
            .send()
            .await
            .map_err(|e| http::transport_failure(e, &secrets))?;
        let answer = Answer::read(response, &secrets).await?;
        classify_answer(&answer, &secrets).map(|_| Success { result: None, receipts: Default::default() })
    }
}

/// The bot's answer: its `code` (legacy `StatusCode`) decides whatever the HTTP status; an answer
/// without one goes through the shared status classification, 429 honouring `x-ogw-ratelimit-reset`.
fn classify_answer(answer: &Answer, secrets: &[&str]) -> Result<(), Failure> {
    let reset = answer.seconds_header(RATE_LIMIT_RESET);
    match answer.code("code").or_else(|| answer.code("StatusCode")) {
        Some(0) if answer.status.is_success() => Ok(()),
        Some(code) if code != 0 => {
            let msg = if answer.text("msg").is_empty() { answer.text("StatusMessage") } else { answer.text("msg") };
            Err(error::classify(code, msg, reset))
        }
        _ if answer.status == StatusCode::TOO_MANY_REQUESTS => {
            let reason = http::status_reason(answer.status, &answer.body, secrets);
            Err(Failure::Throttled { reason, retry_after: reset.or_else(|| http::retry_after(&answer.headers)) })
        }
        _ if !answer.status.is_success() => Err(answer.status_failure(secrets)),
        // A 200 we cannot read: the message may well have been posted.
        _ => Err(Failure::Ambiguous { reason: format!("answer without code: {}", http::snippet(&answer.body)) }),
    }
}

#[async_trait::async_trait]
impl Connector for FeishuRobot {
    async fn execute(&self, call: Call<'_>) -> Result<Success, Failure> {
        self.call(call).await.map_err(|failure| failure.redact_secrets(&self.secrets()))
    }
}

/// `{"msg_type": M, "content": params}`, or `{"msg_type": M, card: params[card]}`.
pub fn message(msg_type: &str, card: Option<&str>, params: &Value) -> Result<Map<String, Value>, Failure> {
    let params = params.as_object().ok_or_else(|| Failure::permanent("params must be an object"))?;
    let mut body = Map::new();
    body.insert("msg_type".into(), Value::String(msg_type.into()));
    match card {
        Some(field) => {
            let value = params.get(field).ok_or_else(|| Failure::permanent(format!("params.{field} is required")))?;
            body.insert(field.into(), value.clone());
        }
        None => {
            body.insert("content".into(), Value::Object(params.clone()));
        }
    }
    Ok(body)
}

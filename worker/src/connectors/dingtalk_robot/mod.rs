//! `dingtalk_robot`: the DingTalk custom robot webhook (docs/providers/dingtalk.md).
//!
//! Every action is a [`Body::DingtalkMessage`] entry: JSON `{"msgtype": M, M: params, "at": {...}}` to
//! `{base}/robot/send?access_token=TOKEN`, plus `&timestamp=MS&sign=SIGN` when the config has a
//! `secret` (signed afresh on every attempt: DingTalk refuses timestamps older than one hour).
//! `errcode` 0 is success (no result). Token, secret and signature travel in the query, so no reason
//! ever quotes a URL, and every reason is scrubbed of them.

pub mod config;
pub mod error;
#[cfg(test)]
mod tests;

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;
use yizhan_schemas::{Body, Endpoint};

use self::config::DingtalkRobotConfig;
use super::call::{Call, Connector, Failure, Success};
use super::http;
use super::json_api::{self, Answer};
use crate::config::{ConfigError, ConnectorConfig, Secret};

/// The scheme and host of DingTalk's open API; a config's `endpoint` replaces it.
pub const DEFAULT_BASE: &str = "https://oapi.dingtalk.com";

/// Params that go into `at`, with their wire names.
const AT_FIELDS: [(&str, &str); 3] =
    [("at_mobiles", "atMobiles"), ("at_user_ids", "atUserIds"), ("is_at_all", "isAtAll")];

/// `base64(HmacSHA256(key = secret, msg = timestamp + "\n" + secret))`; URL-encoding is left to the
/// query serialiser (`+` → `%2B`, `/` → `%2F`, `=` → `%3D`).
pub fn sign(timestamp_ms: u64, secret: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("{timestamp_ms}\n{secret}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// A DingTalk robot config.
#[derive(Debug)]
pub struct DingtalkRobot {
    base: String,
    access_token: Secret,
    secret: Option<Secret>,
    client: reqwest::Client,
    /// The clock of the signature's timestamp (fixed in tests).
    clock: fn() -> SystemTime,
}

impl DingtalkRobot {
    /// Checks the config's fields and builds the connector on the worker's shared HTTP client.
    pub fn new(config: &ConnectorConfig, client: reqwest::Client) -> Result<Self, ConfigError> {
        let fields = DingtalkRobotConfig::from_config(config)?;
        let base = json_api::checked_base(config, DEFAULT_BASE)?;
        Ok(DingtalkRobot {
            base,
            access_token: fields.access_token,
            secret: fields.secret,
            client,
            clock: SystemTime::now,
        })
    }

    fn secrets(&self) -> Vec<&str> {
        let mut secrets = vec![self.access_token.expose()];
        secrets.extend(self.secret.as_ref().map(Secret::expose));
        secrets
    }

    async fn call(&self, call: Call<'_>) -> Result<Success, Failure> {
        let Endpoint::Http { method, path, body: Body::DingtalkMessage { msgtype, renames } } = call.action.endpoint
        else {
            return Err(Failure::permanent(format!("dingtalk_robot cannot execute {:?}", call.action.endpoint)));
        };
        let url = reqwest::Url::parse(&format!("{}{path}", self.base))
            .map_err(|e| Failure::permanent(format!("cannot build the URL of {path}: {e}")))?;
        let mut query = vec![("access_token", self.access_token.expose().to_string())];
        if let Some(secret) = &self.secret {
            let timestamp =
                (self.clock)().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0));
            query.push(("timestamp", timestamp.to_string()));
            query.push(("sign", sign(timestamp, secret.expose())));
        }
        let secrets = self.secrets();
        let response = self
            .client
            .request(json_api::method(method), url)
            .query(&query)
            .json(&message(msgtype, renames, call.params)?)
            .send()
            .await
            .map_err(|e| http::transport_failure(e, &secrets))?;
        let answer = Answer::read(response, &secrets).await?;
        if !answer.status.is_success() {
            return Err(answer.status_failure(&secrets));
        }
        let Some(errcode) = answer.code("errcode") else {
            // A 200 we cannot read: the message may well have been posted.
            return Err(Failure::Ambiguous {
                reason: format!("answer without errcode: {}", http::snippet(&answer.body)),
            });
        };
        if errcode != 0 {
            return Err(error::classify(errcode, answer.text("errmsg")));
        }
        Ok(Success { result: None, receipts: Default::default() })
    }
}

#[async_trait::async_trait]
impl Connector for DingtalkRobot {
    async fn execute(&self, call: Call<'_>) -> Result<Success, Failure> {
        self.call(call).await.map_err(|failure| failure.redact_secrets(&self.secrets()))
    }
}

/// `{"msgtype": M, M: params (renamed, without at_*), "at": {...}}`; `at` only when mentioned.
pub fn message(msgtype: &str, renames: &[(&str, &str)], params: &Value) -> Result<Value, Failure> {
    let mut content = params.as_object().cloned().ok_or_else(|| Failure::permanent("params must be an object"))?;
    let mut at = Map::new();
    for (param, wire) in AT_FIELDS {
        if let Some(value) = content.remove(param) {
            at.insert(wire.into(), value);
        }
    }
    let mut body = Map::new();
    body.insert("msgtype".into(), Value::String(msgtype.into()));
    body.insert(msgtype.into(), rename(Value::Object(content), renames));
    if !at.is_empty() {
        body.insert("at".into(), Value::Object(at));
    }
    Ok(Value::Object(body))
}

fn rename(value: Value, renames: &[(&str, &str)]) -> Value {
    match value {
        Value::Object(object) => Value::Object(
            object
                .into_iter()
                .map(|(name, value)| {
                    let wire = renames.iter().find(|(param, _)| *param == name).map_or(name, |(_, w)| w.to_string());
                    (wire, rename(value, renames))
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(|item| rename(item, renames)).collect()),
        other => other,
    }
}

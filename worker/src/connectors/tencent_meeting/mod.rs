//! `tencent_meeting`: the Tencent Meeting REST API (docs/providers/tencent-meeting.md).
//!
//! Every action is an [`Endpoint::Rest`] entry: `{name}` path segments come out of the params, the
//! rest go as the query (GET) or the JSON body. Every attempt is signed afresh with a new nonce and
//! timestamp (a reused pair is refused as a replay, 190301). A 2xx answer's JSON is the result;
//! anything else is classified from its `error_info` by [`error::classify`].

pub mod config;
pub mod error;
pub mod sign;
#[cfg(test)]
mod tests;

use rand::Rng;
use reqwest::header::CONTENT_TYPE;
use serde_json::{Map, Value};
use yizhan_schemas::{Endpoint, Method};

use self::config::TencentMeetingConfig;
use self::sign::{MeetingSignInput, signature};
use super::call::{Call, Connector, Failure, Success};
use super::http;
use super::json_api::{self, Answer};
use crate::config::{ConfigError, ConnectorConfig, Secret};

/// The scheme and host of Tencent Meeting's REST API; a config's `endpoint` replaces it.
pub const DEFAULT_BASE: &str = "https://api.meeting.qq.com";
/// Sent (and part of no signature) on every request, as the official SDK does.
const JSON: &str = "application/json; charset=utf-8";

/// A Tencent Meeting app config.
#[derive(Debug)]
pub struct TencentMeeting {
    base: String,
    app_id: String,
    sdk_id: Option<String>,
    secret_id: String,
    secret_key: Secret,
    client: reqwest::Client,
}

impl TencentMeeting {
    /// Checks the config's fields and builds the connector on the worker's shared HTTP client.
    pub fn new(config: &ConnectorConfig, client: reqwest::Client) -> Result<Self, ConfigError> {
        let fields = TencentMeetingConfig::from_config(config)?;
        let base = json_api::checked_base(config, DEFAULT_BASE)?;
        Ok(TencentMeeting {
            base,
            app_id: fields.app_id,
            sdk_id: fields.sdk_id,
            secret_id: fields.secret_id,
            secret_key: fields.secret_key,
            client,
        })
    }

    fn secrets(&self) -> [&str; 1] {
        [self.secret_key.expose()]
    }

    async fn call(&self, call: Call<'_>) -> Result<Success, Failure> {
        let Endpoint::Rest { method, path, renames, fixed } = call.action.endpoint else {
            return Err(Failure::permanent(format!("tencent_meeting cannot execute {:?}", call.action.endpoint)));
        };
        let (uri, body) = request_parts(method, path, renames, fixed, call.params)?;
        let method_text = json_api::method(method);
        let timestamp = chrono::Utc::now().timestamp().to_string();
        let nonce = rand::rng().random_range(1..=999_999_999u64).to_string();
        let signed = signature(
            self.secret_key.expose(),
            &MeetingSignInput {
                method: method_text.as_str(),
                secret_id: &self.secret_id,
                nonce: &nonce,
                timestamp: &timestamp,
                uri: &uri,
                body: &body,
            },
        );
        let mut builder = self
            .client
            .request(method_text, format!("{}{uri}", self.base))
            .header(CONTENT_TYPE, JSON)
            .header("X-TC-Key", &self.secret_id)
            .header("X-TC-Timestamp", &timestamp)
            .header("X-TC-Nonce", &nonce)
            .header("X-TC-Signature", signed)
            .header("AppId", &self.app_id)
            // docs/providers/tencent-meeting.md#requests: required; 1 = the enterprise's user directory.
            .header("X-TC-Registered", "1");
        if let Some(sdk_id) = &self.sdk_id {
            builder = builder.header("SdkId", sdk_id);
        }
        if !body.is_empty() {
            builder = builder.body(body);
        }
        let response = builder.send().await.map_err(|e| http::transport_failure(e, &self.secrets()))?;
        let answer = Answer::read(response, &self.secrets()).await?;
        if !answer.status.is_success() {
            let info = answer.json.as_ref().and_then(|j| j.get("error_info")).and_then(Value::as_object);
            let Some(info) = info else {
                return Err(answer.status_failure(&self.secrets()));
            };
            let code = info.get("error_code").and_then(Value::as_i64);
            let message = info.get("message").and_then(Value::as_str).unwrap_or_default();
            return Err(error::classify(answer.status, code, message));
        }
        if answer.body.iter().all(u8::is_ascii_whitespace) {
            // Cancel answers an empty object or nothing at all.
            return Ok(Success { result: Some(Value::Object(Map::new())), receipts: Default::default() });
        }
        match serde_json::from_slice::<Value>(&answer.body) {
            Ok(value) => Ok(Success { result: Some(value), receipts: Default::default() }),
            Err(e) => {
                // The request may have been carried out: the pipeline's classify decides what follows.
                Err(Failure::Ambiguous { reason: format!("unreadable answer ({e}): {}", http::snippet(&answer.body)) })
            }
        }
    }
}

#[async_trait::async_trait]
impl Connector for TencentMeeting {
    async fn execute(&self, call: Call<'_>) -> Result<Success, Failure> {
        self.call(call).await.map_err(|failure| failure.redact_secrets(&self.secrets()))
    }
}

/// The request URI (path with sorted, encoded query) and body bytes of an [`Endpoint::Rest`] call.
fn request_parts(
    method: Method,
    path: &str,
    renames: &[(&str, &str)],
    fixed: &[(&str, i64)],
    params: &Value,
) -> Result<(String, Vec<u8>), Failure> {
    let mut params = params.as_object().cloned().ok_or_else(|| Failure::permanent("params must be an object"))?;
    let mut uri = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        let end = rest[start..].find('}').map(|e| start + e).unwrap_or(rest.len());
        let name = &rest[start + 1..end];
        let value = match params.remove(name) {
            Some(Value::String(s)) if !s.is_empty() => s,
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(Failure::permanent(format!("params.{name}: required in the path"))),
        };
        uri.push_str(&rest[..start]);
        uri.push_str(&encode(&value));
        rest = rest.get(end + 1..).unwrap_or_default();
    }
    uri.push_str(rest);
    let mut wire = Map::new();
    for (name, value) in params {
        let name = renames.iter().find(|(param, _)| *param == name).map_or(name, |(_, to)| to.to_string());
        wire.insert(name, value);
    }
    for (name, value) in fixed {
        wire.insert(name.to_string(), Value::from(*value));
    }
    if matches!(method, Method::Get | Method::Delete) {
        let pairs = json_api::query_pairs(&Value::Object(wire), &[])?;
        if !pairs.is_empty() {
            let query: Vec<String> = pairs.iter().map(|(n, v)| format!("{}={}", encode(n), encode(v))).collect();
            uri.push('?');
            uri.push_str(&query.join("&"));
        }
        Ok((uri, Vec::new()))
    } else {
        Ok((uri, serde_json::to_vec(&Value::Object(wire)).expect("JSON values serialise")))
    }
}

/// Percent-encoding of Go's `url.QueryEscape`, which the official SDK signs: unreserved bytes as
/// they are, space as `+`, everything else `%XX`.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(char::from(byte)),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

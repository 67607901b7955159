//! `wecom_robot`: the WeCom group robot webhook (docs/providers/wecom.md#group-robot).
//!
//! Any action of the kind's catalog table runs by interpreting its [`Endpoint::Http`] entry:
//! * [`Body::Message`] `{msgtype}` → JSON `{"msgtype": M, M: params}` to `{base}{path}?key=KEY`
//!   (for `image`, a missing `md5` is computed from the decoded `base64`);
//! * [`Body::Upload`] `{field, media_type}` → multipart to `{base}{path}?key=KEY&type=MEDIA_TYPE`,
//!   one part `field` named `params.filename` holding the decoded `params.content_base64`;
//! * [`Body::Params`] → the params as the JSON body.
//!
//! `errcode` 0 is success: an upload's result is `{"media_id", "type", "created_at"}`, a message
//! has no result. The key travels in the query, so no reason ever quotes a URL (see [`http`]).

pub mod config;
pub mod error;
#[cfg(test)]
mod tests;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use md5::{Digest as _, Md5};
use reqwest::multipart::{Form, Part};
use serde_json::{Map, Value};
use yizhan_schemas::{Body, Endpoint, Method};

use self::config::WecomRobotConfig;
use super::call::{Call, Connector, Failure, Success};
use super::http;
use crate::config::{ConfigError, ConnectorConfig, Secret};

/// The scheme and host of WeCom's server API (robot webhooks live under it); a config's `endpoint` replaces it.
pub const DEFAULT_BASE: &str = "https://qyapi.weixin.qq.com";

/// Standard alphabet, padded or not: producers differ, the bytes do not.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A WeCom group robot config.
#[derive(Debug)]
pub struct WecomRobot {
    /// Scheme, host and port (and any gateway prefix), without trailing slash.
    base: String,
    key: Secret,
    client: reqwest::Client,
}

impl WecomRobot {
    /// Checks the config's fields and builds the connector on the worker's shared HTTP client.
    pub fn new(config: &ConnectorConfig, client: reqwest::Client) -> Result<Self, ConfigError> {
        let fields = WecomRobotConfig::from_config(config)?;
        let base = http::base_url(config.common.endpoint.as_deref(), DEFAULT_BASE);
        let endpoint_error = |reason: String| ConfigError::field(format!("{}.endpoint", config.path()), reason);
        let url = reqwest::Url::parse(&base).map_err(|e| endpoint_error(format!("not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(endpoint_error("must be an http:// or https:// URL with a host".into()));
        }
        Ok(WecomRobot { base, key: fields.key, client })
    }

    fn secrets(&self) -> [&str; 1] {
        [self.key.expose()]
    }

    async fn call(&self, call: Call<'_>) -> Result<Success, Failure> {
        let Endpoint::Http { method, path, body } = call.action.endpoint else {
            return Err(Failure::permanent(format!("wecom_robot cannot execute {:?}", call.action.endpoint)));
        };
        let url = reqwest::Url::parse(&format!("{}{path}", self.base))
            .map_err(|e| Failure::permanent(format!("cannot build the URL of {path}: {e}")))?;
        let mut query = vec![("key", self.key.expose())];
        let builder = self.client.request(reqwest_method(method), url);
        let builder = match body {
            Body::Message { msgtype } => builder.json(&message(msgtype, call.params)?),
            Body::Params => builder.json(call.params),
            Body::Upload { field, media_type } => {
                query.push(("type", media_type));
                builder.multipart(upload_form(field, call.params)?)
            }
            other => return Err(Failure::permanent(format!("wecom_robot cannot send a {other:?} body"))),
        };
        let response = builder.query(&query).send().await.map_err(|e| http::transport_failure(e, &self.secrets()))?;
        if !response.status().is_success() {
            return Err(http::response_failure(response, &self.secrets()).await);
        }
        let bytes = response.bytes().await.map_err(|e| http::transport_failure(e, &self.secrets()))?;
        let answer: Map<String, Value> = match serde_json::from_slice(&bytes) {
            Ok(Value::Object(answer)) => answer,
            // A 200 we cannot read: the message may well have been posted.
            _ => {
                return Err(Failure::Ambiguous { reason: format!("unreadable answer: {}", http::snippet(&bytes)) });
            }
        };
        let Some(errcode) = answer.get("errcode").and_then(Value::as_i64) else {
            return Err(Failure::Ambiguous { reason: format!("answer without errcode: {}", http::snippet(&bytes)) });
        };
        if errcode != 0 {
            let errmsg = answer.get("errmsg").and_then(Value::as_str).unwrap_or_default();
            return Err(error::classify(errcode, errmsg));
        }
        Ok(Success { result: result(body, answer), receipts: Default::default() })
    }
}

#[async_trait::async_trait]
impl Connector for WecomRobot {
    async fn execute(&self, call: Call<'_>) -> Result<Success, Failure> {
        self.call(call).await.map_err(|failure| failure.redact_secrets(&self.secrets()))
    }
}

fn reqwest_method(method: Method) -> reqwest::Method {
    match method {
        Method::Get => reqwest::Method::GET,
        Method::Post => reqwest::Method::POST,
        Method::Put => reqwest::Method::PUT,
        Method::Delete => reqwest::Method::DELETE,
        Method::Patch => reqwest::Method::PATCH,
    }
}

/// WeCom's limits on `content`, in bytes of UTF-8 (the params schema can only count characters, so
/// 700 Chinese characters pass it at 2,100 bytes): docs/providers/wecom.md#robot-text-and-markdown.
pub const CONTENT_BYTES: [(&str, usize); 2] = [("text", 2048), ("markdown", 4096)];

/// `{"msgtype": M, M: params}`, with an image's `md5` filled in when absent. A text or markdown
/// over WeCom's byte limit is refused here: WeCom would refuse it too, after a call.
fn message(msgtype: &str, params: &Value) -> Result<Value, Failure> {
    let mut content = params.as_object().cloned().ok_or_else(|| Failure::permanent("params must be an object"))?;
    if let Some((_, max)) = CONTENT_BYTES.iter().find(|(t, _)| *t == msgtype) {
        let bytes = content.get("content").and_then(Value::as_str).map_or(0, str::len);
        if bytes > *max {
            return Err(Failure::permanent(format!(
                "params.content: {bytes} bytes of UTF-8, WeCom takes at most {max}"
            )));
        }
    }
    if msgtype == "image" && !content.contains_key("md5") {
        // WeCom checks the md5 of the raw image against the one sent.
        let image = decode(&content, "base64")?;
        content.insert("md5".into(), Value::String(hex::encode(Md5::digest(&image))));
    }
    let mut body = Map::new();
    body.insert("msgtype".into(), Value::String(msgtype.into()));
    body.insert(msgtype.into(), Value::Object(content));
    Ok(Value::Object(body))
}

/// The multipart form of an upload: one part `field`, file name `params.filename`.
fn upload_form(field: &'static str, params: &Value) -> Result<Form, Failure> {
    let params = params.as_object().ok_or_else(|| Failure::permanent("params must be an object"))?;
    let filename = string_param(params, "filename")?.to_string();
    let bytes = decode(params, "content_base64")?;
    let part = Part::bytes(bytes)
        .file_name(filename)
        .mime_str("application/octet-stream")
        .expect("a constant, valid MIME type");
    Ok(Form::new().part(field, part))
}

fn string_param<'a>(params: &'a Map<String, Value>, name: &str) -> Result<&'a str, Failure> {
    params
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| Failure::permanent(format!("params.{name}: a string is required")))
}

/// The bytes of the base64 param `name`; line breaks and spaces (from wrapping encoders) are ignored.
fn decode(params: &Map<String, Value>, name: &str) -> Result<Vec<u8>, Failure> {
    let text = string_param(params, name)?;
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    BASE64.decode(compact).map_err(|e| Failure::permanent(format!("params.{name}: invalid base64: {e}")))
}

/// The job result of a successful answer.
fn result(body: Body, mut answer: Map<String, Value>) -> Option<Value> {
    match body {
        Body::Message { .. }
        | Body::DingtalkMessage { .. }
        | Body::FeishuMessage { .. }
        | Body::Query { .. }
        | Body::Wrapped { .. } => None,
        Body::Upload { .. } | Body::UploadTyped { .. } => {
            let mut result = Map::new();
            for field in ["media_id", "type", "created_at"] {
                result.insert(field.into(), answer.remove(field).unwrap_or(Value::Null));
            }
            Some(Value::Object(result))
        }
        Body::Params => {
            answer.remove("errcode");
            answer.remove("errmsg");
            (!answer.is_empty()).then_some(Value::Object(answer))
        }
    }
}

//! `tencent_ses`: Tencent Cloud SES (API 3.0, service `ses`, version 2020-10-02), through the
//! [`super::tencent_cloud`] client SMS uses too.
//!
//! Identity actions send their params with PascalCase names (`email_identity` → `EmailIdentity`);
//! `send_email` maps `html`/`text` to `Simple` (base64-encoded, as the API requires),
//! `template` to `Template` (its data as the JSON string `TemplateData`) and `attachments` to
//! `Attachments` (`FileName`, `Content`). The result is the `Response` object as Tencent answered
//! it (`RequestId` included). Wire details: docs/providers/tencent-cloud.md#ses.

pub mod config;
pub mod error;
#[cfg(test)]
mod tests;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use yizhan_schemas::Endpoint;
use yizhan_schemas::catalog::SendEmail;

use self::config::TencentSesConfig;
use super::call::{Call, Connector, Failure, Success};
use super::http;
use super::tencent_cloud::error::{ApiError, failure};
use super::tencent_cloud::{self, Envelope, Service};
use crate::config::{ConfigError, ConnectorConfig};

/// docs/providers/tencent-cloud.md#ses-service-ses-version-2020-10-02
const SERVICE: Service = Service {
    name: "ses",
    version: "2020-10-02",
    default_base: "https://ses.tencentcloudapi.com",
    // API 3.0 answers every processed request with 200: anything else did not reach it.
    server_errors_may_have_acted: false,
};

/// A Tencent Cloud SES config.
#[derive(Debug)]
pub struct TencentSes {
    cloud: tencent_cloud::Client,
}

impl TencentSes {
    /// Checks the config's fields and builds the connector on the worker's shared HTTP client.
    pub fn new(config: &ConnectorConfig, client: reqwest::Client) -> Result<Self, ConfigError> {
        let fields = TencentSesConfig::from_config(config)?;
        let cloud =
            tencent_cloud::Client::new(config, SERVICE, fields.secret_id, fields.secret_key, fields.region, client)?;
        Ok(TencentSes { cloud })
    }

    fn secrets(&self) -> [&str; 1] {
        self.cloud.secrets()
    }

    async fn call(&self, call: Call<'_>) -> Result<Success, Failure> {
        let Endpoint::TencentCloud { action } = call.action.endpoint else {
            return Err(Failure::permanent(format!("tencent_ses cannot execute {:?}", call.action.endpoint)));
        };
        let request = if action == "SendEmail" { send_email_body(call.params)? } else { pascal_case(call.params)? };
        let body = serde_json::to_vec(&request).expect("JSON values serialise");
        let bytes = self.cloud.post(action, &body).await?;
        // The request may have been carried out: the pipeline's classify decides what follows.
        let unreadable = |detail: String| Failure::Ambiguous {
            reason: format!("unreadable {action} answer ({detail}): {}", http::snippet(&bytes)),
        };
        let envelope: Envelope<Value> = serde_json::from_slice(&bytes).map_err(|e| unreadable(e.to_string()))?;
        let Value::Object(mut response) = envelope.response else {
            return Err(unreadable("Response is not an object".into()));
        };
        if let Some(error) = response.remove("Error") {
            let error: ApiError = serde_json::from_value(error).map_err(|e| unreadable(e.to_string()))?;
            let request_id = response.get("RequestId").and_then(Value::as_str).unwrap_or_default();
            let reason = format!("{action}: {} (RequestId {request_id})", error::describe(&error.code, &error.message));
            return Err(failure(&error.code, error::classify(&error.code), reason));
        }
        Ok(Success { result: Some(Value::Object(response)) })
    }
}

#[async_trait::async_trait]
impl Connector for TencentSes {
    async fn execute(&self, call: Call<'_>) -> Result<Success, Failure> {
        self.call(call).await.map_err(|failure| failure.redact_secrets(&self.secrets()))
    }
}

/// `email_identity` → `EmailIdentity`, for every top-level param.
fn pascal_case(params: &Value) -> Result<Value, Failure> {
    let params = params.as_object().ok_or_else(|| Failure::permanent("params must be an object"))?;
    let mut out = Map::new();
    for (name, value) in params {
        let wire: String = name
            .split('_')
            .map(|word| {
                let mut chars = word.chars();
                chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
            })
            .collect();
        out.insert(wire, value.clone());
    }
    Ok(Value::Object(out))
}

/// The `SendEmail` request (docs/providers/tencent-cloud.md#sendemail).
fn send_email_body(params: &Value) -> Result<Value, Failure> {
    let params = SendEmail::deserialize(params).map_err(|e| Failure::permanent(format!("invalid params: {e}")))?;
    let simple = params.html.is_some() || params.text.is_some();
    if simple == params.template.is_some() {
        return Err(Failure::permanent("params: give either html/text or template, exactly one of the two"));
    }
    let mut body = Map::new();
    body.insert("FromEmailAddress".into(), json!(params.from_email_address));
    body.insert("Destination".into(), json!(params.destination));
    body.insert("Subject".into(), json!(params.subject));
    if let Some(reply_to) = params.reply_to_addresses {
        body.insert("ReplyToAddresses".into(), json!(reply_to));
    }
    if let Some(template) = params.template {
        // TemplateData is a JSON-encoded string, not an object.
        let data = serde_json::to_string(&template.template_data).expect("a JSON map serialises");
        body.insert("Template".into(), json!({"TemplateID": template.template_id, "TemplateData": data}));
    } else {
        // docs/providers/tencent-cloud.md#sendemail: Simple.Html and Simple.Text travel base64-encoded
        // (UTF-8); raw content is refused with InvalidParameterValue.EmailContentIsWrong.
        let mut simple = Map::new();
        if let Some(html) = params.html {
            simple.insert("Html".into(), json!(BASE64.encode(html)));
        }
        if let Some(text) = params.text {
            simple.insert("Text".into(), json!(BASE64.encode(text)));
        }
        body.insert("Simple".into(), Value::Object(simple));
    }
    if let Some(attachments) = params.attachments {
        let list: Vec<Value> =
            attachments.iter().map(|a| json!({"FileName": a.filename, "Content": a.content_base64})).collect();
        body.insert("Attachments".into(), Value::Array(list));
    }
    Ok(Value::Object(body))
}

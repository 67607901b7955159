//! `tencent_ses`: Tencent Cloud SES (API 3.0, service `ses`, version 2020-10-02), through the
//! [`super::tencent_cloud`] client SMS uses too.
//!
//! Identity actions send their params with PascalCase names (`email_identity` → `EmailIdentity`);
//! `send_email` maps `html`/`text` to `Simple` (base64-encoded, as the API requires),
//! `template` to `Template` (its data as the JSON string `TemplateData`) and `attachments` to
//! `Attachments` (`FileName`, `Content`). The result is the `Response` object as Tencent answered
//! it (`RequestId` included). Wire details: docs/providers/tencent-cloud.md#ses-service-ses-version-2020-10-02.
//!
//! With `receipts = "pull"`, a sent mail expects one receipt per `destination` address (sid
//! `<MessageId> <address>`), asked for with `GetSendEmailStatus` every `pull_interval` until final
//! (docs/providers/tencent-cloud.md#getsendemailstatus).

pub mod config;
pub mod error;
#[cfg(test)]
mod receipt_tests;
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
use super::receipts::{ReceiptMode, ReceiptPage, Receipts};
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

/// docs/providers/tencent-cloud.md#getsendemailstatus: at most 100 entries per answer.
const STATUS_LIMIT: u64 = 100;
/// Dates of `GetSendEmailStatus` are China's (UTC+8), like the service's quotas.
const CHINA_OFFSET_SECS: i32 = 8 * 3600;

/// A Tencent Cloud SES config.
#[derive(Debug)]
pub struct TencentSes {
    cloud: tencent_cloud::Client,
    /// `receipts = "pull"`: sent mails expect receipts, asked for one by one.
    receipts: Option<ReceiptMode>,
}

impl TencentSes {
    /// Checks the config's fields and builds the connector on the worker's shared HTTP client.
    pub fn new(config: &ConnectorConfig, client: reqwest::Client) -> Result<Self, ConfigError> {
        let fields = TencentSesConfig::from_config(config)?;
        let receipts = fields.receipt_mode(config)?;
        let cloud =
            tencent_cloud::Client::new(config, SERVICE, fields.secret_id, fields.secret_key, fields.region, client)?;
        Ok(TencentSes { cloud, receipts })
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
        Ok(Success { result: Some(Value::Object(response)), receipts: Default::default() })
    }
}

#[async_trait::async_trait]
impl Connector for TencentSes {
    async fn execute(&self, call: Call<'_>) -> Result<Success, Failure> {
        let success = self.call(call).await.map_err(|failure| failure.redact_secrets(&self.secrets()))?;
        Ok(self.with_receipts(call, success))
    }

    /// `GetSendEmailStatus` for each mail among `pending`; the final statuses, matched to their
    /// addresses (docs/providers/tencent-cloud.md#getsendemailstatus). A failed query ends the
    /// pull; its mails are asked about again next time.
    async fn pull_receipts(&self, pending: &[yizhan_state::PendingReceipt]) -> Result<ReceiptPage, Failure> {
        let mut mails: Vec<(&str, i64, Vec<(&str, &str)>)> = Vec::new();
        for entry in pending {
            let Some((message_id, _)) = entry.sid.split_once(' ') else { continue };
            match mails.iter_mut().find(|(id, _, _)| *id == message_id) {
                Some((_, _, addresses)) => addresses.push((entry.recipient.as_str(), entry.sid.as_str())),
                None => mails.push((message_id, entry.sent_at, vec![(entry.recipient.as_str(), entry.sid.as_str())])),
            }
        }
        let mut receipts = Vec::new();
        for (message_id, sent_at, addresses) in mails {
            let statuses =
                self.email_status(message_id, sent_at).await.map_err(|f| f.redact_secrets(&self.secrets()))?;
            for status in statuses {
                let Some((_, sid)) = addresses.iter().find(|(to, _)| to.eq_ignore_ascii_case(&status.to_email_address))
                else {
                    continue;
                };
                if let Some(receipt) = status.to_receipt(sid) {
                    receipts.push(receipt);
                }
            }
        }
        Ok(ReceiptPage { receipts, more: false })
    }
}

impl TencentSes {
    /// A sent mail's expected receipts: one per `destination` address, when the config pulls them.
    fn with_receipts(&self, call: Call<'_>, mut success: Success) -> Success {
        let is_send = matches!(call.action.endpoint, Endpoint::TencentCloud { action: "SendEmail" });
        if self.receipts.is_none() || !is_send {
            return success;
        }
        let message_id = success.result.as_ref().and_then(|r| r.get("MessageId")).and_then(Value::as_str);
        let Some(message_id) = message_id.filter(|id| !id.is_empty()) else {
            return success;
        };
        let addresses = call.params.get("destination").and_then(Value::as_array).into_iter().flatten();
        let sids = addresses.filter_map(Value::as_str).map(|to| (format!("{message_id} {to}"), to.to_string()));
        success.receipts = Receipts { sids: sids.collect(), poll: true };
        success
    }

    /// One `GetSendEmailStatus` for `message_id`, sent on the China date of `sent_at`.
    async fn email_status(&self, message_id: &str, sent_at: i64) -> Result<Vec<EmailStatus>, Failure> {
        let action = "GetSendEmailStatus";
        let china = chrono::FixedOffset::east_opt(CHINA_OFFSET_SECS).expect("UTC+8 is an offset");
        let date = chrono::DateTime::from_timestamp_millis(sent_at)
            .unwrap_or_default()
            .with_timezone(&china)
            .format("%Y-%m-%d")
            .to_string();
        let request = json!({"RequestDate": date, "Offset": 0, "Limit": STATUS_LIMIT, "MessageId": message_id});
        let body = serde_json::to_vec(&request).expect("JSON values serialise");
        // A read: its lost answer is asked again.
        let bytes = self.cloud.post(action, &body).await.map_err(Failure::lost_is_transient)?;
        let unreadable = |detail: String| {
            Failure::transient(format!("unreadable {action} answer ({detail}): {}", http::snippet(&bytes)))
        };
        let envelope: Envelope<StatusResponse> =
            serde_json::from_slice(&bytes).map_err(|e| unreadable(e.to_string()))?;
        let response = envelope.response;
        if let Some(error) = response.error {
            let request_id = response.request_id.unwrap_or_default();
            let reason = format!("{action}: {} (RequestId {request_id})", error::describe(&error.code, &error.message));
            return Err(failure(&error.code, error::classify(&error.code), reason));
        }
        Ok(response.email_status_list.unwrap_or_default())
    }
}

/// docs/providers/tencent-cloud.md#getsendemailstatus
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StatusResponse {
    #[serde(default)]
    error: Option<ApiError>,
    #[serde(default)]
    email_status_list: Option<Vec<EmailStatus>>,
    #[serde(default)]
    request_id: Option<String>,
}

/// One `SendEmailStatus` (docs/providers/tencent-cloud.md#getsendemailstatus).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EmailStatus {
    #[serde(default)]
    to_email_address: String,
    /// Tencent's own processing: 0 accepted, anything else refused (blacklist, quota...).
    #[serde(default)]
    send_status: i64,
    /// The recipient side: 0 queued, 1 delivered, 2 dropped, 3 bounced, 8 deferred.
    #[serde(default)]
    deliver_status: i64,
    #[serde(default)]
    deliver_message: Option<String>,
    /// Unix seconds of the delivery.
    #[serde(default)]
    deliver_time: Option<i64>,
}

impl EmailStatus {
    /// The receipt of `sid`, when the status is final: refused by Tencent (`SendStatus` not 0),
    /// delivered (`DeliverStatus` 1), dropped or bounced (2, 3); None while queued (0) or
    /// deferred (8).
    fn to_receipt(&self, sid: &str) -> Option<yizhan_state::Receipt> {
        use yizhan_state::DeliveryState::{Delivered, Failed};
        let message = self.deliver_message.clone().filter(|m| !m.is_empty());
        let (state, code) = match (self.send_status, self.deliver_status) {
            (0, 1) => (Delivered, message.unwrap_or_else(|| "DeliverStatus 1".to_string())),
            (0, status @ (2 | 3)) => (Failed, message.unwrap_or_else(|| format!("DeliverStatus {status}"))),
            (0, _) => return None,
            (refused, _) => (Failed, format!("SendStatus {refused}")),
        };
        // A delivery time in seconds; anything later than 5138 is taken as milliseconds already.
        let at = match self.deliver_time.filter(|t| *t > 0) {
            Some(t) if t < 100_000_000_000 => t.saturating_mul(1000),
            Some(t) => t,
            None => yizhan_state::now_millis(),
        };
        Some(yizhan_state::Receipt { sid: sid.to_string(), state, code: Some(code), at })
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

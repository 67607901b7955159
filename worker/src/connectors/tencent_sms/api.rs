//! The signed calls of a Tencent Cloud SMS config (`SendSms`, the status query) and their wire types.

use serde::{Deserialize, Serialize};
use yizhan_state::redact;

use super::error::{self, classify};
use crate::connectors::call::Failure;
use crate::connectors::http;
use crate::connectors::tencent_cloud::error::{ApiError, failure};
use crate::connectors::tencent_cloud::{self, Envelope};

/// `PullSmsSendStatusByPhoneNumber` returns at most 100 receipts
/// (docs/providers/tencent-cloud.md#pullsmssendstatusbyphonenumber).
const RECEIPT_LIMIT: u64 = 100;

/// The signed `SendSms` (and status query) calls of one config.
#[derive(Debug)]
pub struct Api {
    pub(super) cloud: tencent_cloud::Client,
}

impl Api {
    pub(super) fn secrets(&self) -> [&str; 1] {
        self.cloud.secrets()
    }

    /// One signed `SendSms` call; the parsed `Response` object or the failure (without progress:
    /// the call may carry several jobs, each adds its own).
    pub(super) async fn send(&self, body: &[u8]) -> Result<ApiResponse, Failure> {
        let bytes = self.cloud.post("SendSms", body).await?;
        let envelope: Envelope<ApiResponse> = serde_json::from_slice(&bytes).map_err(|e| Failure::Ambiguous {
            reason: redact::secrets(
                &format!("unreadable SendSms answer ({e}): {}", http::snippet(&bytes)),
                &self.secrets(),
            ),
        })?;
        Ok(envelope.response)
    }

    /// The receipts `phone` got from `sdk_app_id` since `begin` (Unix seconds), at most 100
    /// (docs/providers/tencent-cloud.md#pullsmssendstatusbyphonenumber). A read: a lost answer is
    /// only transient.
    pub(super) async fn receipts(&self, sdk_app_id: &str, phone: &str, begin: i64) -> Result<Vec<Receipt>, Failure> {
        let action = "PullSmsSendStatusByPhoneNumber";
        let request = PullStatusRequest {
            begin_time: u64::try_from(begin).unwrap_or_default(),
            offset: 0,
            limit: RECEIPT_LIMIT,
            phone_number: phone,
            sms_sdk_app_id: sdk_app_id,
        };
        let body = serde_json::to_vec(&request).expect("a struct of strings and numbers serialises");
        // Inside a SendSms job's attempt: its lost answer must not be taken for the send's own.
        let bytes = self.cloud.post(action, &body).await.map_err(Failure::lost_is_transient)?;
        let envelope: Envelope<PullStatusResponse> = serde_json::from_slice(&bytes).map_err(|e| {
            Failure::transient(redact::secrets(
                &format!("unreadable {action} answer ({e}): {}", http::snippet(&bytes)),
                &self.secrets(),
            ))
        })?;
        let response = envelope.response;
        if let Some(error) = response.error {
            let reason = redact::secrets(
                &format!(
                    "{action}: {}{}",
                    error::describe(&error.code, &error.message),
                    request_id(response.request_id.as_deref())
                ),
                &self.secrets(),
            );
            return Err(failure(&error.code, classify(&error.code), reason));
        }
        Ok(response.pull_sms_send_status_set.unwrap_or_default())
    }
}

impl Api {
    /// One page (at most [`RECEIPT_LIMIT`]) of the delivery receipts of `sdk_app_id` the provider
    /// holds: `PullSmsSendStatus` hands each one out once
    /// (docs/providers/tencent-cloud.md#pullsmssendstatus). A read: a lost answer is transient,
    /// though the receipts it carried are gone.
    pub(super) async fn pull_status(&self, sdk_app_id: &str) -> Result<Vec<Receipt>, Failure> {
        let action = "PullSmsSendStatus";
        let request = PullQueueRequest { limit: RECEIPT_LIMIT, sms_sdk_app_id: sdk_app_id };
        let body = serde_json::to_vec(&request).expect("a struct of strings and numbers serialises");
        let bytes = self.cloud.post(action, &body).await.map_err(Failure::lost_is_transient)?;
        let envelope: Envelope<PullStatusResponse> = serde_json::from_slice(&bytes).map_err(|e| {
            Failure::transient(redact::secrets(
                &format!("unreadable {action} answer ({e}): {}", http::snippet(&bytes)),
                &self.secrets(),
            ))
        })?;
        let response = envelope.response;
        if let Some(error) = response.error {
            let reason = redact::secrets(
                &format!(
                    "{action}: {}{}",
                    error::describe(&error.code, &error.message),
                    request_id(response.request_id.as_deref())
                ),
                &self.secrets(),
            );
            return Err(failure(&error.code, classify(&error.code), reason));
        }
        Ok(response.pull_sms_send_status_set.unwrap_or_default())
    }
}

/// The most receipts one `PullSmsSendStatus` returns (docs/providers/tencent-cloud.md#pullsmssendstatus).
pub(super) const PULL_PAGE: usize = RECEIPT_LIMIT as usize;

pub(super) fn request_id(id: Option<&str>) -> String {
    id.map(|id| format!(" (RequestId {id})")).unwrap_or_default()
}

/// The sent number a status's `PhoneNumber` refers to: the same string, else the same digits
/// (in case the provider normalises the form).
pub(super) fn match_number<'a>(returned: &str, sent: &[&'a str]) -> Option<&'a str> {
    let digits = |n: &str| n.chars().filter(char::is_ascii_digit).collect::<String>();
    sent.iter().copied().find(|n| *n == returned).or_else(|| {
        let wanted = digits(returned);
        sent.iter().copied().find(|n| digits(n) == wanted)
    })
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct SendSmsRequest<'a> {
    pub(super) phone_number_set: &'a [&'a str],
    pub(super) sms_sdk_app_id: &'a str,
    pub(super) template_id: &'a str,
    pub(super) sign_name: &'a str,
    pub(super) template_param_set: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) session_context: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) extend_code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) sender_id: Option<&'a str>,
}

/// docs/providers/tencent-cloud.md#pullsmssendstatusbyphonenumber
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PullStatusRequest<'a> {
    begin_time: u64,
    /// Fixed at 0 by the provider.
    offset: u64,
    limit: u64,
    phone_number: &'a str,
    sms_sdk_app_id: &'a str,
}

/// docs/providers/tencent-cloud.md#pullsmssendstatus
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PullQueueRequest<'a> {
    limit: u64,
    sms_sdk_app_id: &'a str,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PullStatusResponse {
    #[serde(default)]
    error: Option<ApiError>,
    #[serde(default)]
    pull_sms_send_status_set: Option<Vec<Receipt>>,
    #[serde(default)]
    request_id: Option<String>,
}

/// One `PullSmsSendStatus`: an SMS the number was sent (`ReportStatus` SUCCESS or FAIL).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct Receipt {
    #[serde(default)]
    pub(super) phone_number: String,
    #[serde(default)]
    pub(super) serial_no: Option<String>,
    #[serde(default)]
    pub(super) report_status: Option<String>,
    #[serde(default)]
    pub(super) session_context: Option<String>,
    /// Unix seconds: when the recipient got it (or the carrier gave up).
    #[serde(default)]
    pub(super) user_receive_time: Option<i64>,
    /// The carrier's status, such as `DELIVRD`.
    #[serde(default)]
    pub(super) description: Option<String>,
}

impl Receipt {
    /// The delivery receipt this is, when final: `ReportStatus` `SUCCESS` or `FAIL`, and a
    /// `SerialNo` to match (docs/providers/tencent-cloud.md#pullsmssendstatus).
    pub(super) fn to_receipt(&self) -> Option<yizhan_state::Receipt> {
        let state = match self.report_status.as_deref()? {
            "SUCCESS" => yizhan_state::DeliveryState::Delivered,
            "FAIL" => yizhan_state::DeliveryState::Failed,
            _ => return None,
        };
        let sid = self.serial_no.clone().filter(|sid| !sid.is_empty())?;
        let at = self.user_receive_time.map_or_else(yizhan_state::now_millis, |s| s.saturating_mul(1000));
        let code = self.description.clone().filter(|c| !c.is_empty()).or_else(|| self.report_status.clone());
        Some(yizhan_state::Receipt { sid, state, code, at })
    }

    /// A receipt of `number`, and not of a message with another session context (when both
    /// have one: the provider echoes it only where it is enabled).
    pub(super) fn is_for(&self, number: &str, session_context: Option<&str>) -> bool {
        let context_differs = matches!(
            (session_context, self.session_context.as_deref()),
            (Some(ours), Some(theirs)) if !ours.is_empty() && !theirs.is_empty() && ours != theirs
        );
        match_number(&self.phone_number, &[number]).is_some() && !context_differs
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ApiResponse {
    #[serde(default)]
    pub(super) error: Option<ApiError>,
    #[serde(default)]
    pub(super) send_status_set: Option<Vec<SendStatus>>,
    #[serde(default)]
    pub(super) request_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct SendStatus {
    pub(super) phone_number: String,
    pub(super) code: String,
    #[serde(default)]
    pub(super) message: Option<String>,
    #[serde(default)]
    pub(super) serial_no: Option<String>,
    #[serde(default)]
    pub(super) fee: Option<u64>,
}

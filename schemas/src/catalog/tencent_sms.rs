//! `tencent_sms`: Tencent Cloud SMS, API 3.0 (service `sms`, version 2021-01-11).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::recipient::{RecipientField, RecipientKind, RecipientShape};
use super::spec::{ActionSpec, Effect, Endpoint, KindSpec, schema};

pub(super) const KIND: KindSpec = KindSpec {
    name: "tencent_sms",
    title: "腾讯云短信 Tencent Cloud SMS",
    default_rate_limit: "3000/s",
    actions: &[ActionSpec {
        name: "send_sms",
        effect: Effect::Write,
        params: schema::<SendSms>,
        endpoint: Endpoint::TencentCloud { action: "SendSms" },
        bucket: "send_sms",
        per_recipient: None,
        recipient: Some(RecipientField {
            field: "phone_numbers",
            shape: RecipientShape::List,
            kind: RecipientKind::Phone,
        }),
    }],
};

/// `SendSms`: one template message to up to 200 numbers. A retry resends only the numbers whose
/// status was retryable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendSms {
    /// SMS application id (`SmsSdkAppId`); the config's `sdk_app_id` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub sdk_app_id: Option<String>,
    /// E.164 numbers such as `+8613800000000`, all mainland or all international.
    #[schemars(length(min = 1, max = 200), inner(pattern(r"^\+[1-9][0-9]{4,14}$")))]
    pub phone_numbers: Vec<String>,
    /// Approved signature content (`SignName`); required for mainland numbers.
    #[schemars(length(min = 1))]
    pub sign_name: String,
    /// Approved template id.
    #[schemars(length(min = 1), pattern(r"^[0-9]+$"))]
    pub template_id: String,
    /// One value per template variable.
    #[serde(default)]
    pub template_params: Vec<String>,
    /// Echoed back in the status of each number (< 512 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 511))]
    pub session_context: Option<String>,
    /// Extension appended to the sender number (`ExtendCode`); off by default, Tencent enables it on request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extend_code: Option<String>,
    /// Approved sender id (`SenderId`) of international messages; absent uses the shared one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_id: Option<String>,
}

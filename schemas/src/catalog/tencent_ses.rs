//! `tencent_ses`: Tencent Cloud SES (邮件推送), API 3.0 (service `ses`, version 2020-10-02).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::spec::{ActionSpec, Effect, Endpoint, KindSpec, schema};

pub(super) const KIND: KindSpec = KindSpec {
    name: "tencent_ses",
    title: "腾讯云邮件推送 Tencent Cloud SES",
    // SendEmail allows 20 requests/s per account (providers.md §1.8).
    default_rate_limit: "20/s",
    actions: &[
        ActionSpec {
            name: "create_email_identity",
            effect: Effect::Write,
            params: schema::<EmailIdentity>,
            endpoint: Endpoint::TencentCloud { action: "CreateEmailIdentity" },
            bucket: "api",
            per_recipient: None,
        },
        ActionSpec {
            name: "delete_email_identity",
            effect: Effect::Write,
            params: schema::<EmailIdentity>,
            endpoint: Endpoint::TencentCloud { action: "DeleteEmailIdentity" },
            bucket: "api",
            per_recipient: None,
        },
        ActionSpec {
            name: "get_email_identity",
            effect: Effect::Read,
            params: schema::<EmailIdentity>,
            endpoint: Endpoint::TencentCloud { action: "GetEmailIdentity" },
            bucket: "api",
            per_recipient: None,
        },
        ActionSpec {
            name: "list_email_identities",
            effect: Effect::Read,
            params: schema::<ListEmailIdentities>,
            endpoint: Endpoint::TencentCloud { action: "ListEmailIdentities" },
            bucket: "api",
            per_recipient: None,
        },
        ActionSpec {
            name: "update_email_identity",
            effect: Effect::Write,
            params: schema::<EmailIdentity>,
            endpoint: Endpoint::TencentCloud { action: "UpdateEmailIdentity" },
            bucket: "api",
            per_recipient: None,
        },
        ActionSpec {
            name: "send_email",
            effect: Effect::Write,
            params: schema::<SendEmail>,
            endpoint: Endpoint::TencentCloud { action: "SendEmail" },
            bucket: "api",
            per_recipient: None,
        },
    ],
};

/// A sending domain (`EmailIdentity`); Tencent recommends a third-level domain or deeper.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct EmailIdentity {
    #[schemars(length(min = 1, max = 253), pattern(r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$"))]
    pub email_identity: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ListEmailIdentities {}

/// `SendEmail`: one mail to up to 50 visible recipients. The body is `html` and/or `text`
/// (`Simple`, needs custom content enabled) or `template`, never both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendEmail {
    /// `noreply@mail.example.com` or `Alias <noreply@mail.example.com>`.
    #[schemars(length(min = 3))]
    pub from_email_address: String,
    #[schemars(length(min = 1, max = 50), inner(length(min = 3)))]
    pub destination: Vec<String>,
    #[schemars(length(min = 1, max = 100))]
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 3))]
    pub reply_to_addresses: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<EmailTemplate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 10))]
    pub attachments: Option<Vec<Attachment>>,
}

/// An approved template and its variables (sent as the JSON string `TemplateData`, ≤ 800 bytes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailTemplate {
    #[schemars(range(min = 1))]
    pub template_id: u64,
    #[serde(default)]
    pub template_data: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Attachment {
    #[schemars(length(min = 1, max = 255))]
    pub filename: String,
    /// The file, base64-encoded (≤ 4 MB of attachments per mail).
    #[schemars(length(min = 1))]
    pub content_base64: String,
}

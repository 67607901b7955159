//! `tencent_ses`: Tencent Cloud SES (邮件推送), API 3.0 (service `ses`, version 2020-10-02).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::recipient::{RecipientField, RecipientKind, RecipientShape};
use super::spec::{ActionSpec, Effect, Endpoint, KindSpec, schema};

pub(super) const KIND: KindSpec = KindSpec {
    name: "tencent_ses",
    title: "腾讯云邮件推送 Tencent Cloud SES",
    // SendEmail allows 20 requests/s per account (docs/providers/tencent-cloud.md#sendemail).
    default_rate_limit: "20/s",
    actions: &[
        ActionSpec {
            name: "create_email_identity",
            effect: Effect::Write,
            params: schema::<EmailIdentity>,
            endpoint: Endpoint::TencentCloud { action: "CreateEmailIdentity" },
            bucket: "api",
            per_recipient: None,
            recipient: None,
        },
        ActionSpec {
            name: "delete_email_identity",
            effect: Effect::Write,
            params: schema::<EmailIdentity>,
            endpoint: Endpoint::TencentCloud { action: "DeleteEmailIdentity" },
            bucket: "api",
            per_recipient: None,
            recipient: None,
        },
        ActionSpec {
            name: "get_email_identity",
            effect: Effect::Read,
            params: schema::<EmailIdentity>,
            endpoint: Endpoint::TencentCloud { action: "GetEmailIdentity" },
            bucket: "api",
            per_recipient: None,
            recipient: None,
        },
        ActionSpec {
            name: "list_email_identities",
            effect: Effect::Read,
            params: schema::<ListEmailIdentities>,
            endpoint: Endpoint::TencentCloud { action: "ListEmailIdentities" },
            bucket: "api",
            per_recipient: None,
            recipient: None,
        },
        ActionSpec {
            name: "update_email_identity",
            effect: Effect::Write,
            params: schema::<EmailIdentity>,
            endpoint: Endpoint::TencentCloud { action: "UpdateEmailIdentity" },
            bucket: "api",
            per_recipient: None,
            recipient: None,
        },
        ActionSpec {
            name: "send_email",
            effect: Effect::Write,
            params: schema::<SendEmail>,
            endpoint: Endpoint::TencentCloud { action: "SendEmail" },
            bucket: "api",
            per_recipient: None,
            recipient: Some(RecipientField {
                field: "destination",
                shape: RecipientShape::List,
                kind: RecipientKind::Email,
            }),
        },
    ],
};

/// A sending domain (`EmailIdentity`); Tencent recommends a third-level domain or deeper.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct EmailIdentity {
    /// The sending domain (`EmailIdentity`), such as `mail.example.com`; an account has at most 10.
    #[schemars(length(min = 1, max = 253), pattern(r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$"))]
    pub email_identity: String,
}

/// Params of `list_email_identities`: none; the answer lists every sending domain of the account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ListEmailIdentities {}

/// `SendEmail`: one mail to up to 50 visible recipients. The body is `html` and/or `text`
/// (`Simple`, needs custom content enabled) or `template`, never both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendEmail {
    /// Sender (`FromEmailAddress`): `noreply@mail.example.com` or `Alias <noreply@mail.example.com>`,
    /// of a verified identity's domain.
    #[schemars(length(min = 3))]
    pub from_email_address: String,
    /// Recipients (`Destination`), each `user@example.com`; at most 50, and each sees the others.
    #[schemars(length(min = 1, max = 50), inner(length(min = 3)))]
    pub destination: Vec<String>,
    /// Subject line (`Subject`), 1 to 100 characters.
    #[schemars(length(min = 1, max = 100))]
    pub subject: String,
    /// One address replies go to (`ReplyToAddresses`); absent: no Reply-To.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 3))]
    pub reply_to_addresses: Option<String>,
    /// HTML body, sent base64-encoded as `Simple.Html`; needs custom content enabled on the account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    /// Plain-text body, sent base64-encoded as `Simple.Text`; needs custom content enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// An approved template and its variables (`Template`), instead of `html`/`text`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<EmailTemplate>,
    /// Attachments (`Attachments`): at most 10, 4 MB in all; the whole request at most 8 MB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 10))]
    pub attachments: Option<Vec<Attachment>>,
}

/// An approved template and its variables (sent as the JSON string `TemplateData`, ≤ 800 bytes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailTemplate {
    /// Id of an approved template (`TemplateID`).
    #[schemars(range(min = 1))]
    pub template_id: u64,
    /// Values of the template's variables by name; sent as one JSON string of at most 800 bytes.
    #[serde(default)]
    pub template_data: BTreeMap<String, serde_json::Value>,
}

/// One file attached to a mail (`Attachments[]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Attachment {
    /// File name with extension (`FileName`), at most 255 characters; Tencent refuses some types.
    #[schemars(length(min = 1, max = 255))]
    pub filename: String,
    /// The file, base64-encoded (≤ 4 MB of attachments per mail).
    #[schemars(length(min = 1))]
    pub content_base64: String,
}

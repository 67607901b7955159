//! `qq_mail`: QQ 邮箱 over SMTP, IMAP and POP3 (any mail server, with the config's host overrides).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::recipient::{RecipientField, RecipientKind, RecipientShape};
use super::spec::{ActionSpec, Effect, Endpoint, KindSpec, MailOp, schema};

/// `YYYY-MM-DD` (midnight UTC) or an RFC 3339 date-time with an offset.
const DATE_OR_DATE_TIME: &str = r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2}))?$";

pub(super) const KIND: KindSpec = KindSpec {
    name: "qq_mail",
    title: "QQ 邮箱 QQ Mail (SMTP / IMAP / POP3)",
    // Tencent keeps its per-minute/hour/day thresholds secret and answers excess with `550 …
    // frequency limited`; the commonly quoted caps are 100 to 500 mails a day
    // (docs/providers/qq-mail.md#sending-limits).
    // 20 a minute per bucket (sending and each mailbox protocol apart) stays well under the bursts
    // that trigger those throttles; configs with a known quota set `rate_limit`.
    default_rate_limit: "20/min",
    actions: &[
        ActionSpec {
            name: "send_mail",
            effect: Effect::Write,
            params: schema::<SendMail>,
            endpoint: Endpoint::Mail(MailOp::Send),
            bucket: "smtp",
            per_recipient: None,
            // `to` only: `cc` and `bcc` are copies beside the recipient, the same for each.
            recipient: Some(RecipientField { field: "to", shape: RecipientShape::List, kind: RecipientKind::Email }),
        },
        ActionSpec {
            name: "receive_mail_pop3",
            effect: Effect::Read,
            params: schema::<ReceiveMailPop3>,
            endpoint: Endpoint::Mail(MailOp::ReceivePop3),
            bucket: "pop3",
            per_recipient: None,
            recipient: None,
        },
        ActionSpec {
            name: "receive_mail_imap",
            effect: Effect::Read,
            params: schema::<ReceiveMailImap>,
            endpoint: Endpoint::Mail(MailOp::ReceiveImap),
            bucket: "imap",
            per_recipient: None,
            recipient: None,
        },
    ],
};

/// One mail from the config's `address`. Addresses are `user@example.com` or
/// `Name <user@example.com>`; `bcc` recipients get the mail but no header names them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMail {
    /// Recipients in the `To` header, 1 to 100.
    #[schemars(length(min = 1, max = 100), inner(length(min = 3)))]
    pub to: Vec<String>,
    /// Recipients in the `Cc` header, at most 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100), inner(length(min = 3)))]
    pub cc: Option<Vec<String>>,
    /// Hidden recipients, at most 100: they get the mail, no header names them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100), inner(length(min = 3)))]
    pub bcc: Option<Vec<String>>,
    /// Address of the `Reply-To` header; absent: replies go to the sender (`From`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 3))]
    pub reply_to: Option<String>,
    /// The `Subject` header, any UTF-8 text.
    pub subject: String,
    /// Extra headers, `{name: value}` (`X-Campaign`, `List-Unsubscribe`); the ones this action
    /// sets itself (From, To, Subject, Message-ID, Content-Type…) are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    /// The body, in the media type `mime_type`, UTF-8.
    pub body: String,
    /// Media type of `body`.
    pub mime_type: MimeType,
    /// Chosen by the mailer when absent (7bit or quoted-printable for text, base64 for binary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer_encoding: Option<TransferEncoding>,
    /// Files attached after the body, at most 20.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 20))]
    pub attachments: Option<Vec<MailAttachment>>,
}

/// The media type of the body (UTF-8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum MimeType {
    /// Plain text.
    #[serde(rename = "text/plain")]
    TextPlain,
    /// An HTML document.
    #[serde(rename = "text/html")]
    TextHtml,
    /// An iCalendar invitation; its `METHOD:` line is repeated as the `method` parameter.
    #[serde(rename = "text/calendar")]
    TextCalendar,
}

impl MimeType {
    /// The media type as written in `Content-Type` and in params (`text/plain`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            MimeType::TextPlain => "text/plain",
            MimeType::TextHtml => "text/html",
            MimeType::TextCalendar => "text/calendar",
        }
    }
}

/// The Content-Transfer-Encoding of the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TransferEncoding {
    /// Base64: safe for any content, a third larger.
    #[serde(rename = "base64")]
    Base64,
    /// Raw UTF-8; a body with a line over 998 bytes falls back to the mailer's choice.
    #[serde(rename = "8bit")]
    EightBit,
    /// Quoted-printable: readable for mostly-ASCII text.
    #[serde(rename = "quoted-printable")]
    QuotedPrintable,
}

/// One attachment of a mail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MailAttachment {
    /// File name the recipient sees, 1 to 255 characters.
    #[schemars(length(min = 1, max = 255))]
    pub filename: String,
    /// `application/pdf`, `image/png; name=x.png`…
    #[schemars(length(min = 3))]
    pub content_type: String,
    /// The file, base64-encoded.
    pub content_base64: String,
}

/// Messages of the POP3 maildrop, oldest first.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceiveMailPop3 {
    /// Which messages to return; absent: all, up to 50.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Pop3Filter>,
    /// Delete the returned messages from the server (DELE, committed by QUIT).
    #[serde(default)]
    pub delete_after: bool,
}

/// Every given condition must hold. Text matches are case-insensitive substrings; dates compare
/// with the message's `Date` header.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pop3Filter {
    /// A substring of the sender's address or name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub from: Option<String>,
    /// A case-insensitive substring of the subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub subject_contains: Option<String>,
    /// Sent at or after: `YYYY-MM-DD` (midnight UTC) or an RFC 3339 date-time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DATE_OR_DATE_TIME))]
    pub since: Option<String>,
    /// Sent before: `YYYY-MM-DD` (midnight UTC) or an RFC 3339 date-time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DATE_OR_DATE_TIME))]
    pub until: Option<String>,
    /// At most this many messages (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 500))]
    pub max: Option<u32>,
}

/// Messages of an IMAP folder, oldest (lowest UID) first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceiveMailImap {
    /// Folder to read, as the server lists it (default `INBOX`).
    #[serde(default = "inbox")]
    #[schemars(length(min = 1))]
    pub folder: String,
    /// Which messages to return; absent: all, up to 50.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<ImapFilter>,
    /// Flag the returned messages `\Seen` (they are fetched with `BODY.PEEK` otherwise untouched).
    #[serde(default)]
    pub mark_seen: bool,
}

fn inbox() -> String {
    "INBOX".to_string()
}

/// Every given condition must hold, as for [`Pop3Filter`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImapFilter {
    /// A case-insensitive substring of the sender's address or name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub from: Option<String>,
    /// A case-insensitive substring of the subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub subject_contains: Option<String>,
    /// Sent at or after: `YYYY-MM-DD` (midnight UTC) or an RFC 3339 date-time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DATE_OR_DATE_TIME))]
    pub since: Option<String>,
    /// Only messages without the `\Seen` flag.
    #[serde(default)]
    pub unseen_only: bool,
    /// At most this many messages (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 500))]
    pub max: Option<u32>,
}

#[cfg(test)]
mod tests;

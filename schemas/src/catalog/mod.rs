//! The connector catalog: one table of [`ActionSpec`] entries per connector kind.
//!
//! Adding an action is adding one entry (and its test); workers interpret the entry's
//! [`Endpoint`], so no per-action code is written.

mod dingtalk_robot;
mod feishu;
mod feishu_robot;
mod juzibot;
mod qq_mail;
mod tencent_meeting;
mod tencent_ses;
mod tencent_sms;
pub mod wecom;
mod wecom_robot;

use schemars::{JsonSchema, Schema};
use serde::Serialize;
use serde_json::{Value, json};

pub use qq_mail::{
    ImapFilter, MailAttachment, MimeType, Pop3Filter, ReceiveMailImap, ReceiveMailPop3, SendMail, TransferEncoding,
};
pub use tencent_ses::{Attachment, EmailTemplate, SendEmail};
pub use tencent_sms::SendSms;
pub use wecom_robot::{Article, SendFile, SendImage, SendMarkdown, SendNews, SendText, UploadFile};

/// Whether an action changes something at the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// Returns data (stored as the job's result); safe to run again.
    Read,
    /// Has a side effect that must happen at most once per idempotency key.
    Write,
}

/// HTTP method of an [`Endpoint::Http`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
}

/// How a job's params become the provider request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// The params object is the JSON body.
    Params,
    /// `{"msgtype": M, M: params}`: the robots' message shape.
    Message { msgtype: &'static str },
    /// A multipart upload of the param `content_base64`, decoded, as form field `field`, named by the
    /// param `filename`; `media_type` goes in the `type` query parameter.
    Upload { field: &'static str, media_type: &'static str },
    /// DingTalk robot: `{"msgtype": M, M: params, "at": {...}}`. The params `at_mobiles`, `at_user_ids`
    /// and `is_at_all` move into `at`; param names are renamed per `renames` `(param, wire name)` at any
    /// depth (DingTalk spells `messageUrl` in links but `messageURL` in feed cards).
    DingtalkMessage { msgtype: &'static str, renames: &'static [(&'static str, &'static str)] },
    /// Feishu bot: `{"msg_type": M, "content": params}`; with `card`, `{"msg_type": M, "card": params.card}`.
    FeishuMessage { msg_type: &'static str, card: Option<&'static str> },
    /// The params as query parameters (no body), each renamed per `renames` `(param, wire name)`.
    Query { renames: &'static [(&'static str, &'static str)] },
    /// `{field: params}`, with the params named in `outside` left beside it (WeCom calendars and
    /// schedules: `{"calendar": {...}, "agentid": N}`).
    Wrapped { field: &'static str, outside: &'static [&'static str] },
}

/// Where and how an action calls its provider. Paths are the provider's own; the connector config's
/// `endpoint` only replaces scheme, host and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// Tencent Cloud API 3.0: `POST /` with header `X-TC-Action`, signed with TC3-HMAC-SHA256.
    TencentCloud { action: &'static str },
    /// A JSON-over-HTTP call.
    Http { method: Method, path: &'static str, body: Body },
    /// A REST call (Tencent Meeting): each `{name}` segment of `path` is filled from (and taken out
    /// of) the params; the remaining params, renamed per `renames` `(param, wire name)` and with
    /// the constant fields `fixed` added, go as the query of a GET or DELETE, else as the JSON body.
    Rest {
        method: Method,
        path: &'static str,
        renames: &'static [(&'static str, &'static str)],
        fixed: &'static [(&'static str, i64)],
    },
    /// A mail protocol operation (SMTP send, IMAP or POP3 receive) with the config's account.
    Mail(MailOp),
}

/// What an [`Endpoint::Mail`] action does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailOp {
    /// Submit one message over SMTP.
    Send,
    /// Fetch messages of a folder over IMAP.
    ReceiveImap,
    /// Fetch messages of the maildrop over POP3.
    ReceivePop3,
}

/// One action of a connector kind.
#[derive(Debug, Clone, Copy)]
pub struct ActionSpec {
    pub name: &'static str,
    pub effect: Effect,
    /// JSON Schema of the params, generated from the typed params struct.
    pub params: fn() -> Schema,
    pub endpoint: Endpoint,
    /// Rate-limit bucket within the connector config; every bucket of a config has its own limit.
    pub bucket: &'static str,
    /// A provider limit per recipient, on top of the bucket's (WeCom drops app messages past 30 a
    /// minute to one member without an error, so only the sender can hold it).
    pub per_recipient: Option<RecipientLimit>,
}

/// A limit per recipient of a message: each recipient named in the params has its own limit,
/// shared by every job and worker that writes to it.
#[derive(Debug, Clone, Copy)]
pub struct RecipientLimit {
    /// Params that name recipients, each a `|`-separated list (WeCom's `touser`, `toparty`, `totag`).
    pub fields: &'static [&'static str],
    /// Params whose values scope the limit (WeCom counts per app: `agentid`); absent ones count as
    /// the config's default.
    pub scope: &'static [&'static str],
    /// The limit of one recipient, as a `rate_limit` (`30/min`).
    pub rate: &'static str,
}

impl RecipientLimit {
    /// One key per distinct recipient named in `params` (`agentid=1000002/touser=zhangsan`).
    pub fn keys(&self, params: &Value) -> Vec<String> {
        let mut scope = String::new();
        for name in self.scope {
            if let Some(value) = params.get(*name).filter(|v| !v.is_null()) {
                let value = value.as_str().map_or_else(|| value.to_string(), str::to_string);
                scope.push_str(&format!("{name}={value}/"));
            }
        }
        let mut keys: Vec<String> = self
            .fields
            .iter()
            .filter_map(|field| Some((field, params.get(*field)?.as_str()?)))
            .flat_map(|(field, list)| list.split('|').map(str::trim).filter(|r| !r.is_empty()).map(move |r| (field, r)))
            .map(|(field, recipient)| format!("{scope}{field}={recipient}"))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }
}

impl ActionSpec {
    /// This entry with a limit per recipient.
    pub const fn limited_per_recipient(mut self, limit: RecipientLimit) -> Self {
        self.per_recipient = Some(limit);
        self
    }

    pub fn params_schema(&self) -> Value {
        serde_json::to_value((self.params)()).expect("schema serialises")
    }
}

/// One connector kind: its actions and defaults.
#[derive(Debug, Clone, Copy)]
pub struct KindSpec {
    pub name: &'static str,
    pub title: &'static str,
    /// Limits per connector config and bucket unless the config sets `rate_limit` (comma-separated
    /// when several hold at once, such as `100/min, 5/s`).
    pub default_rate_limit: &'static str,
    pub actions: &'static [ActionSpec],
}

impl KindSpec {
    pub fn action(&self, name: &str) -> Option<&'static ActionSpec> {
        self.actions.iter().find(|a| a.name == name)
    }
}

/// The schema of params type `T`, for [`ActionSpec::params`].
pub fn schema<T: JsonSchema>() -> Schema {
    schemars::schema_for!(T)
}

static KINDS: &[KindSpec] = &[
    tencent_sms::KIND,
    tencent_ses::KIND,
    tencent_meeting::KIND,
    wecom_robot::KIND,
    dingtalk_robot::KIND,
    feishu_robot::KIND,
    feishu::KIND,
    juzibot::KIND,
    qq_mail::KIND,
    wecom::KIND,
];

/// Every connector kind this build supports.
pub fn kinds() -> &'static [KindSpec] {
    KINDS
}

pub fn find_kind(name: &str) -> Option<&'static KindSpec> {
    KINDS.iter().find(|k| k.name == name)
}

pub fn find_action(kind: &str, action: &str) -> Option<&'static ActionSpec> {
    find_kind(kind)?.action(action)
}

/// The catalog as `yizhan-producer catalog` prints it:
/// `{kind: {action: {"effect", "params_schema"}}}`.
pub fn catalog_json() -> Value {
    let mut kinds = serde_json::Map::new();
    for kind in KINDS {
        let mut actions = serde_json::Map::new();
        for action in kind.actions {
            actions.insert(
                action.name.to_string(),
                json!({"effect": action.effect, "params_schema": action.params_schema()}),
            );
        }
        kinds.insert(kind.name.to_string(), Value::Object(actions));
    }
    Value::Object(kinds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_snake_case_and_schemas_closed() {
        let mut seen = std::collections::HashSet::new();
        for kind in kinds() {
            for action in kind.actions {
                assert!(seen.insert((kind.name, action.name)), "{}.{} twice", kind.name, action.name);
                assert!(action.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
                let schema = action.params_schema();
                assert_eq!(schema["type"], "object", "{}.{}", kind.name, action.name);
                assert_eq!(
                    schema["additionalProperties"], false,
                    "{}.{} must reject unknown params",
                    kind.name, action.name
                );
            }
        }
    }

    #[test]
    fn catalog_json_lists_effect_and_schema() {
        let catalog = catalog_json();
        assert_eq!(catalog["tencent_sms"]["send_sms"]["effect"], "write");
        assert_eq!(catalog["wecom_robot"]["upload_file"]["effect"], "write");
        assert_eq!(catalog["wecom_robot"].as_object().unwrap().len(), 6);
        assert!(
            catalog["tencent_sms"]["send_sms"]["params_schema"]["required"]
                .as_array()
                .unwrap()
                .contains(&json!("phone_numbers"))
        );
    }
}

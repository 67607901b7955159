//! The shape of a catalog entry: what an action is, where it calls and how its params travel.

use schemars::{JsonSchema, Schema};
use serde::Serialize;
use serde_json::Value;

use super::recipient::RecipientField;

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
    /// `GET`: no body; REST params go in the query.
    Get,
    /// `POST` with a JSON (or multipart) body.
    Post,
    /// `PUT` with a JSON body.
    Put,
    /// `DELETE`: no body; REST params go in the query.
    Delete,
    /// `PATCH` with a JSON body: changes only the fields given (Feishu contact updates).
    Patch,
}

/// How a job's params become the provider request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// The params object is the JSON body.
    Params,
    /// `{"msgtype": M, M: params}`: the robots' message shape.
    Message {
        /// The provider's message type, such as `text` or `markdown`.
        msgtype: &'static str,
    },
    /// A multipart upload of the param `content_base64`, decoded, as form field `field`, named by the
    /// param `filename`; `media_type` goes in the `type` query parameter.
    Upload {
        /// Multipart form field of the file (WeCom: `media`).
        field: &'static str,
        /// Value of the `type` query parameter (WeCom robot: `file`).
        media_type: &'static str,
    },
    /// DingTalk robot: `{"msgtype": M, M: params, "at": {...}}`. The params `at_mobiles`, `at_user_ids`
    /// and `is_at_all` move into `at`; param names are renamed per `renames` `(param, wire name)` at any
    /// depth (DingTalk spells `messageUrl` in links but `messageURL` in feed cards).
    DingtalkMessage {
        /// DingTalk's `msgtype`, such as `text`, `link` or `feedCard`.
        msgtype: &'static str,
        /// `(param, wire name)` pairs applied at any depth of the message object.
        renames: &'static [(&'static str, &'static str)],
    },
    /// Feishu bot: `{"msg_type": M, "content": params}`; with `card`, `{"msg_type": M, "card": params.card}`.
    FeishuMessage {
        /// Feishu's `msg_type`, such as `text`, `post` or `interactive`.
        msg_type: &'static str,
        /// The param holding the card, sent as top-level `card`; `None` sends the params as `content`.
        card: Option<&'static str>,
    },
    /// The params as query parameters (no body), each renamed per `renames` `(param, wire name)`.
    Query {
        /// `(param, wire name)` pairs; params not listed keep their names.
        renames: &'static [(&'static str, &'static str)],
    },
    /// Like [`Body::Upload`], with the `type` query parameter taken from the param `type` (WeCom
    /// temporary media: image, voice, video or file); without `type`, no query parameter.
    UploadTyped {
        /// Multipart form field of the file (WeCom: `media`).
        field: &'static str,
    },
    /// `{field: params}`, with the params named in `outside` left beside it (WeCom calendars and
    /// schedules: `{"calendar": {...}, "agentid": N}`).
    Wrapped {
        /// Name of the wrapping object (`calendar`, `schedule`).
        field: &'static str,
        /// Params kept at the top level beside the wrapper (`agentid`).
        outside: &'static [&'static str],
    },
}

/// Where and how an action calls its provider. Paths are the provider's own; the connector config's
/// `endpoint` only replaces scheme, host and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// Tencent Cloud API 3.0: `POST /` with header `X-TC-Action`, signed with TC3-HMAC-SHA256.
    TencentCloud {
        /// The API action, sent as `X-TC-Action` (such as `SendSms`); the params are the JSON body.
        action: &'static str,
    },
    /// A JSON-over-HTTP call.
    Http {
        /// HTTP method of the call.
        method: Method,
        /// The provider's path, such as `/cgi-bin/message/send`; credentials are added as the provider wants.
        path: &'static str,
        /// How the params become the request.
        body: Body,
    },
    /// A REST call (Tencent Meeting): each `{name}` segment of `path` is filled from (and taken out
    /// of) the params; the remaining params, renamed per `renames` `(param, wire name)` and with
    /// the constant fields `fixed` added, go as the query of a GET or DELETE, else as the JSON body.
    Rest {
        /// HTTP method of the call.
        method: Method,
        /// Path template such as `/v1/meetings/{meeting_id}`.
        path: &'static str,
        /// `(param, wire name)` pairs for the query or body fields.
        renames: &'static [(&'static str, &'static str)],
        /// Constant `(wire name, value)` fields added to every call (such as `operator_id_type` 1).
        fixed: &'static [(&'static str, i64)],
    },
    /// A mail protocol operation (SMTP send, IMAP or POP3 receive) with the config's account.
    Mail(MailOp),
    /// A directory sync run (`directory_sync.run`): the worker reads the source directory through
    /// the source config's actions and applies the changes to the target; no single provider call.
    DirectorySync,
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
    /// The action's name in jobs (`action`), snake_case and unique within its kind.
    pub name: &'static str,
    /// Whether the action writes (at most once per idempotency key) or only reads.
    pub effect: Effect,
    /// JSON Schema of the params, generated from the typed params struct.
    pub params: fn() -> Schema,
    /// The provider call the worker makes with the params.
    pub endpoint: Endpoint,
    /// Rate-limit bucket within the connector config; every bucket of a config has its own limit.
    pub bucket: &'static str,
    /// A provider limit per recipient, on top of the bucket's (WeCom drops app messages past 30 a
    /// minute to one member without an error, so only the sender can hold it).
    pub per_recipient: Option<RecipientLimit>,
    /// The param naming who receives the action, for actions that can be sent to many: a campaign
    /// fills it with each recipient and frequency caps count what it names. `None`: no recipient
    /// (reads, management calls) or none a campaign could vary.
    pub recipient: Option<RecipientField>,
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

    /// This entry with its recipient param.
    pub const fn sent_to(mut self, recipient: RecipientField) -> Self {
        self.recipient = Some(recipient);
        self
    }

    /// The params' JSON Schema as a value, as checked in under `schemas/json/<kind>/<action>.json`.
    pub fn params_schema(&self) -> Value {
        serde_json::to_value((self.params)()).expect("schema serialises")
    }
}

/// One connector kind: its actions and defaults.
#[derive(Debug, Clone, Copy)]
pub struct KindSpec {
    /// The kind's name in jobs (`connector`) and config files, such as `tencent_sms`.
    pub name: &'static str,
    /// Human-readable name of the provider API, for listings.
    pub title: &'static str,
    /// Limits per connector config and bucket unless the config sets `rate_limit` (comma-separated
    /// when several hold at once, such as `100/min, 5/s`).
    pub default_rate_limit: &'static str,
    /// The kind's actions; names are unique within the kind.
    pub actions: &'static [ActionSpec],
}

impl KindSpec {
    /// The action named `name`, or `None` when the kind has no such action.
    pub fn action(&self, name: &str) -> Option<&'static ActionSpec> {
        self.actions.iter().find(|a| a.name == name)
    }
}

/// The schema of params type `T`, for [`ActionSpec::params`].
pub fn schema<T: JsonSchema>() -> Schema {
    schemars::schema_for!(T)
}

use jiff::{SignedDuration, Timestamp};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::callback::Callback;

/// Pattern of a tenant name; it names queues (`<prefix>.jobs.<lane>.<tenant>`), hence the narrow alphabet.
pub const TENANT_PATTERN: &str = "^[a-z0-9][a-z0-9_-]{0,62}$";

/// Whether `name` is a valid tenant name ([`TENANT_PATTERN`]).
pub fn is_valid_tenant(name: &str) -> bool {
    let bytes = name.as_bytes();
    (1..=63).contains(&bytes.len())
        && matches!(bytes[0], b'a'..=b'z' | b'0'..=b'9')
        && bytes.iter().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
}

/// The tenant of jobs that name none.
pub const DEFAULT_TENANT: &str = "default";

/// How far ahead `send_at` may be: 30 days.
pub const MAX_SEND_AHEAD: SignedDuration = SignedDuration::from_hours(30 * 24);

/// Lane of a job; also its routing key on `<prefix>.jobs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Verification codes and other jobs a person is waiting for.
    High,
    /// The default lane: everything that is neither urgent nor a campaign.
    #[default]
    Normal,
    /// Campaigns: taken only when no `high` or `normal` job is waiting.
    Bulk,
}

impl Priority {
    /// Every lane, most urgent first (the order workers take them in).
    pub const ALL: [Priority; 3] = [Priority::High, Priority::Normal, Priority::Bulk];

    /// The lane's wire name, as in the envelope and the routing key (`high`, `normal`, `bulk`).
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Bulk => "bulk",
        }
    }
}

/// A job as producers write it: `id` and `idempotency_key` may be absent.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "yizhan job", description = "One connector action to execute.")]
pub struct JobInput {
    /// UUID; the producer assigns a UUIDv7 when absent. Direct AMQP publishers must set it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    /// At most one provider side effect per key; defaults to the id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub idempotency_key: Option<String>,
    /// A connector kind of the catalog, such as `tencent_sms`.
    pub connector: String,
    /// Name of a connector config of that kind in the worker's config file.
    #[schemars(length(min = 1, max = 128))]
    pub config: String,
    /// An action of the kind, such as `send_sms`.
    pub action: String,
    /// The action's params (see `schemas/json/<kind>/<action>.json`).
    pub params: serde_json::Map<String, serde_json::Value>,
    /// Lane the job waits in (default `normal`).
    #[serde(default)]
    pub priority: Priority,
    /// Attempts in all, the first included (default 8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub max_attempts: Option<u32>,
    /// Tenant the job belongs to (default `default`): lowercase letters, digits, `_` and `-`, at most
    /// 63, starting with a letter or digit. Tenants share the workers fairly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(TENANT_PATTERN))]
    pub tenant: Option<String>,
    /// The campaign the job was fanned out from; set by yizhan. A job naming an unknown campaign
    /// runs as a plain job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<Uuid>,
    /// Not executed before this time: RFC 3339 with an offset (`2025-06-01T10:00:00+08:00`), at most
    /// 30 days ahead; a past time means now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub send_at: Option<Timestamp>,
    /// Where to POST the job's final state (succeeded, dead, cancelled or capped), signed with
    /// `secret` when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    // The object itself, not "object or null": its errors then name `$.callback.url`.
    #[schemars(with = "Callback")]
    pub callback: Option<Callback>,
}

/// A validated job, with its id and idempotency key resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// The producer's or publisher's UUID; assigned (UUIDv7) by producers when the input had none.
    pub id: Uuid,
    /// Key of the at-most-once side effect: the input's, else the id as text.
    pub idempotency_key: String,
    /// Connector kind, known to the catalog (checked by validation).
    pub connector: String,
    /// Name of the connector config in the worker's config file (not checked here: workers resolve it).
    pub config: String,
    /// Action of the kind, known to the catalog (checked by validation).
    pub action: String,
    /// Params object, valid against the action's params schema.
    pub params: serde_json::Value,
    /// Lane the job was routed to.
    pub priority: Priority,
    /// Attempts in all, the first included: the input's, else [`Job::DEFAULT_MAX_ATTEMPTS`].
    pub max_attempts: u32,
    /// Tenant the job belongs to: the input's, else [`DEFAULT_TENANT`].
    #[serde(default = "default_tenant")]
    pub tenant: String,
    /// The campaign the job was fanned out from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<Uuid>,
    /// Not executed before this time, if set (a past time means now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_at: Option<Timestamp>,
    /// Where to POST the job's final state, if anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback: Option<Callback>,
}

impl Job {
    /// Attempts when the input sets no `max_attempts`.
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 8;

    /// The message body published to the broker: the envelope with every field explicit.
    pub fn to_message(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a job serialises")
    }
}

fn default_tenant() -> String {
    DEFAULT_TENANT.to_owned()
}

/// JSON Schema of the job envelope, as checked in under `schemas/json/envelope.json`.
pub fn envelope_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(JobInput)).expect("schema serialises")
}

//! yizhan's public data model: the job envelope, the connector catalog and their JSON Schemas.
//!
//! The catalog is declarative: every action is one [`ActionSpec`] entry (name, effect, typed params,
//! endpoint, rate-limit bucket) in its kind's table under [`catalog`]. Producers validate jobs with
//! [`validate_job`]; workers validate again, because any AMQP client may publish. A campaign (one
//! action to many recipients) is checked by [`validate_campaign`] and fanned out into jobs by [`expand`].

mod callback;
mod campaign;
pub mod catalog;
pub use catalog::catalog_json;
mod envelope;
mod validate;

pub use callback::{CALLBACK_URL_PATTERN, Callback, CallbackBody, CallbackMessage};
pub use campaign::{CampaignHead, CampaignInput, campaign_schema, expand, validate_campaign, validate_campaign_owned};
pub use catalog::{
    ActionSpec, Body, Effect, Endpoint, KindSpec, MailOp, Method, RecipientField, RecipientKind, RecipientLimit,
    RecipientShape, find_action, find_kind, kinds, normalize_recipient,
};
pub use envelope::{
    DEFAULT_TENANT, Job, JobInput, MAX_SEND_AHEAD, Priority, TENANT_PATTERN, envelope_schema, is_valid_tenant,
};
pub use validate::{FieldError, MissingId, validate_job, validate_job_value, validate_params};

/// Every checked-in schema file: (path relative to `schemas/json/`, pretty JSON).
pub fn schema_files() -> Vec<(String, String)> {
    let mut files = vec![
        ("envelope.json".to_string(), pretty(&envelope_schema())),
        ("campaign.json".to_string(), pretty(&campaign_schema())),
    ];
    for kind in kinds() {
        for action in kind.actions {
            let path = format!("{}/{}.json", kind.name, action.name);
            files.push((path, pretty(&action.params_schema())));
        }
    }
    files
}

fn pretty(value: &serde_json::Value) -> String {
    let mut text = serde_json::to_string_pretty(value).expect("schema serialises");
    text.push('\n');
    text
}

//! Campaigns: one template (an action and its params) sent to many recipients, each recipient one job.
//!
//! [`validate_campaign`] checks a campaign request once; [`expand`] turns recipients (the request's,
//! or a later chunk of them) into jobs. Expanding is on the path of million-recipient campaigns, so it
//! compiles nothing: the action's params validator is compiled once per process.

use std::borrow::Cow;
use std::sync::OnceLock;

use jiff::{SignedDuration, Timestamp};
use jsonschema::Validator;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::callback::Callback;
use crate::catalog::{ActionSpec, RecipientField, RecipientKind, RecipientShape, normalize_recipient};
use crate::envelope::{DEFAULT_TENANT, Job, Priority, TENANT_PATTERN};
use crate::validate::{
    FieldError, check_send_at, collect, explain_callback_url, explain_tenant, json_path, known_action, params_validator,
};

/// Longest idempotency key of a job (the envelope schema's limit, checked again by workers).
const MAX_JOB_KEY: usize = 256;

/// A campaign request as `POST /v1/campaigns` takes it (see `schemas/json/campaign.json`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "yizhan campaign",
    description = "One action and its params sent to many recipients: each recipient becomes one job."
)]
pub struct CampaignInput {
    /// A name for people (listings, status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 200))]
    pub name: Option<String>,
    /// Submitting a campaign twice with one key (per tenant) sends nothing twice; each job's key is
    /// `<key>:<normalized recipient>`. Defaults to the campaign's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub idempotency_key: Option<String>,
    /// Tenant of the campaign and its jobs (default `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(TENANT_PATTERN))]
    pub tenant: Option<String>,
    /// A connector kind of the catalog, such as `tencent_sms`.
    pub connector: String,
    /// Name of a connector config of that kind in the worker's config file.
    #[schemars(length(min = 1, max = 128))]
    pub config: String,
    /// An action of the kind that has a recipient field, such as `send_sms`.
    pub action: String,
    /// The action's params shared by every recipient, without the recipient field (each recipient's
    /// `to` fills it). Keys a recipient's `params` names are replaced for that recipient.
    pub params: Map<String, Value>,
    /// The recipients; may be empty and appended later (`POST /v1/campaigns/{id}/recipients`).
    #[serde(default)]
    #[schemars(with = "Vec<RecipientSchema>")]
    pub recipients: Vec<Value>,
    /// Lane of the campaign's jobs (default `bulk`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    /// No job of the campaign is executed before this time: RFC 3339 with an offset, at most 30 days
    /// ahead; a past time means now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub send_at: Option<Timestamp>,
    /// Attempts in all of each job, the first included (default 8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub max_attempts: Option<u32>,
    /// Where to POST each job's final state (every job of the campaign carries it), signed with
    /// `secret` when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    // The object itself, not "object or null": its errors then name `$.callback.url`.
    #[schemars(with = "Callback")]
    pub callback: Option<Callback>,
}

/// One recipient of a campaign: one job, to `to`.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields, rename = "Recipient")]
// Only describes the schema: `expand` reads recipients as JSON values, to name each bad field.
#[allow(dead_code)]
struct RecipientSchema {
    /// The recipient: a phone number (E.164, or an 11-digit mainland mobile), an e-mail address or a
    /// user id, as the action's recipient field takes it. It fills that field.
    #[schemars(length(min = 1))]
    to: String,
    /// Params replacing those top-level keys of the campaign's params for this recipient (such as
    /// `template_params`).
    params: Option<Map<String, Value>>,
}

/// A validated campaign without its recipients: what every job of it shares. Stored with the campaign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignHead {
    /// The campaign's id (UUIDv7), also every job's `campaign`.
    pub id: Uuid,
    /// The campaign's idempotency key: the request's, else the id as text.
    pub key: String,
    /// A name for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Tenant of the campaign and its jobs.
    pub tenant: String,
    /// Connector kind.
    pub connector: String,
    /// Connector config name.
    pub config: String,
    /// Action; it has a recipient field.
    pub action: String,
    /// Params shared by every recipient, without the recipient field.
    pub params: Map<String, Value>,
    /// Lane of the jobs.
    pub priority: Priority,
    /// Not executed before this time, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_at: Option<Timestamp>,
    /// Attempts in all of each job.
    pub max_attempts: u32,
    /// Where to POST each job's final state, if anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback: Option<Callback>,
}

/// JSON Schema of a campaign request, as checked in under `schemas/json/campaign.json`.
pub fn campaign_schema() -> Value {
    serde_json::to_value(schemars::schema_for!(CampaignInput)).expect("schema serialises")
}

fn campaign_validator() -> &'static Validator {
    static VALIDATOR: OnceLock<Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| jsonschema::validator_for(&campaign_schema()).expect("campaign schema compiles"))
}

/// Validates a campaign request: everything but its recipients, which are returned as they are for
/// [`expand`]. The action must have a recipient field; the params must leave it out, and with it
/// filled must be valid, except for top-level keys they lack that recipients may bring. The head gets
/// a new id (UUIDv7); its key is the request's `idempotency_key`, else the id.
pub fn validate_campaign(value: &Value) -> Result<(CampaignHead, Vec<Value>), Vec<FieldError>> {
    let Some(object) = value.as_object() else {
        return Err(vec![FieldError::new("$", "a campaign must be a JSON object")]);
    };
    // The head alone: the recipients (maybe a million) are checked one by one by `expand`.
    let head = object.iter().filter(|(k, _)| *k != "recipients").map(|(k, v)| (k.clone(), v.clone())).collect();
    check_campaign(head, object.get("recipients").map(Cow::Borrowed))
}

/// [`validate_campaign`] of a request the caller owns: the recipients are moved out, not copied
/// (a million of them take about a second to copy).
pub fn validate_campaign_owned(value: Value) -> Result<(CampaignHead, Vec<Value>), Vec<FieldError>> {
    let Value::Object(mut head) = value else {
        return Err(vec![FieldError::new("$", "a campaign must be a JSON object")]);
    };
    let recipients = head.remove("recipients");
    check_campaign(head, recipients.map(Cow::Owned))
}

fn check_campaign(
    head: Map<String, Value>,
    recipients: Option<Cow<'_, Value>>,
) -> Result<(CampaignHead, Vec<Value>), Vec<FieldError>> {
    let head = Value::Object(head);
    let mut errors = collect(campaign_validator(), &head, "");
    explain_tenant(&mut errors, &head);
    explain_callback_url(&mut errors, &head);
    let recipients = match recipients {
        None => Vec::new(),
        Some(Cow::Owned(Value::Array(recipients))) => recipients,
        Some(Cow::Borrowed(Value::Array(recipients))) => recipients.clone(),
        Some(_) => {
            errors.push(FieldError::new("$.recipients", "must be an array of recipients ({\"to\", \"params\"?})"));
            Vec::new()
        }
    };
    if errors.is_empty() {
        errors.extend(check_send_at(head.get("send_at"), SignedDuration::ZERO));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let input: CampaignInput = serde_json::from_value(head).map_err(|e| vec![FieldError::new("$", e.to_string())])?;
    let (kind, action) = known_action(&input.connector, &input.action)?;
    let field = recipient_field(kind, action)?;
    check_head_params(kind, action, field, &input.params)?;
    let id = Uuid::now_v7();
    let head = CampaignHead {
        id,
        key: input.idempotency_key.unwrap_or_else(|| id.to_string()),
        name: input.name,
        tenant: input.tenant.unwrap_or_else(|| DEFAULT_TENANT.to_owned()),
        connector: input.connector,
        config: input.config,
        action: input.action,
        params: input.params,
        priority: input.priority.unwrap_or(Priority::Bulk),
        send_at: input.send_at,
        max_attempts: input.max_attempts.unwrap_or(Job::DEFAULT_MAX_ATTEMPTS),
        callback: input.callback,
    };
    Ok((head, recipients))
}

fn recipient_field(kind: &str, action: &ActionSpec) -> Result<RecipientField, Vec<FieldError>> {
    action.recipient.ok_or_else(|| {
        let able: Vec<_> = crate::catalog::find_kind(kind)
            .into_iter()
            .flat_map(|k| k.actions)
            .filter(|a| a.recipient.is_some())
            .map(|a| a.name)
            .collect();
        let able = if able.is_empty() {
            format!("no action of {kind} has one")
        } else {
            format!("{kind}: {}", able.join(", "))
        };
        vec![FieldError::new(
            "$.action",
            format!("{kind}.{} has no recipient field, so a campaign cannot send it to many ({able})", action.name),
        )]
    })
}

/// A recipient that passes every schema (its own field's pattern included), standing in for the
/// recipients while the head's params are checked.
fn placeholder(kind: RecipientKind) -> &'static str {
    match kind {
        RecipientKind::Phone => "+8613800000000",
        RecipientKind::Email => "recipient@example.com",
        RecipientKind::UserId => "recipient",
    }
}

fn check_head_params(
    kind: &'static str,
    action: &'static ActionSpec,
    field: RecipientField,
    params: &Map<String, Value>,
) -> Result<(), Vec<FieldError>> {
    let field_path = json_path("/params", Some(field.field));
    if params.contains_key(field.field) {
        return Err(vec![FieldError::new(
            field_path,
            "is filled from each recipient's \"to\": leave it out of the campaign's params",
        )]);
    }
    let mut filled = params.clone();
    field.set(&mut filled, placeholder(field.kind));
    let filled = Value::Object(filled);
    let validator = params_validator(kind, action);
    if validator.is_valid(&filled) {
        return Ok(());
    }
    let errors: Vec<FieldError> = collect(validator, &filled, "/params")
        .into_iter()
        // A top-level key the head lacks may come with each recipient's params.
        .filter(|e| !(e.reason == "is required" && e.path.matches('.').count() == 2 && !e.path.contains('[')))
        .collect();
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

/// Turns recipients into the campaign's jobs. Recipient `i` is `{"to", "params"?}`, named in errors
/// as `$.recipients[<first_index + i>]`: `to` fills the action's recipient field (a phone number in
/// its E.164 form, others as written), `params` replaces those top-level keys of the head's params,
/// and the merged params must satisfy the action's schema. Each job has a new UUIDv7 id, the key
/// `<head.key>:<normalized to>`, `campaign` = the head's id, and the head's tenant, priority,
/// `send_at` and `max_attempts`. When any recipient is bad, no job is returned: every bad
/// recipient's errors are, in order.
pub fn expand(head: &CampaignHead, recipients: &[Value], first_index: usize) -> Result<Vec<Job>, Vec<FieldError>> {
    let (kind, action) = known_action(&head.connector, &head.action)?;
    let field = recipient_field(kind, action)?;
    let validator = params_validator(kind, action);
    let checks = Checks { whole: validator, field: field_check(kind, action, field, head, validator) };
    let mut jobs = Vec::with_capacity(recipients.len());
    let mut errors = Vec::new();
    for (i, recipient) in recipients.iter().enumerate() {
        match expand_one(head, field, &checks, recipient, first_index + i) {
            // Once any recipient is bad no job is returned; later ones are still checked, to name them all.
            Ok(job) if errors.is_empty() => jobs.push(job),
            Ok(_) => {}
            Err(mut bad) => errors.append(&mut bad),
        }
    }
    if errors.is_empty() { Ok(jobs) } else { Err(errors) }
}

/// How a recipient's merged params are checked.
struct Checks {
    /// The action's params schema, whole.
    whole: &'static Validator,
    /// The recipient field's schema alone, when checking it is checking the params of a recipient
    /// without params of its own (see [`field_check`]).
    field: Option<&'static Validator>,
}

/// The schema of the recipient field alone, usable for this head's recipients that bring no params:
/// their params are the head's with the field filled, and the head's were found valid whole with a
/// placeholder there, so where the action's schema relates no fields at its root (only `properties`,
/// `required`, `additionalProperties`), the field's value decides. A million recipients are then
/// checked against one small schema, not each against the whole.
fn field_check(
    kind: &'static str,
    action: &'static ActionSpec,
    field: RecipientField,
    head: &CampaignHead,
    whole: &Validator,
) -> Option<&'static Validator> {
    let check = field_validators().get(&(kind, action.name))?.as_ref()?;
    let mut filled = head.params.clone();
    field.set(&mut filled, placeholder(field.kind));
    whole.is_valid(&Value::Object(filled)).then_some(check)
}

type FieldValidators = std::collections::HashMap<(&'static str, &'static str), Option<Validator>>;

/// [`field_schema`] of every action with a recipient field, compiled once per process.
fn field_validators() -> &'static FieldValidators {
    static VALIDATORS: OnceLock<FieldValidators> = OnceLock::new();
    VALIDATORS.get_or_init(|| {
        let mut map = FieldValidators::new();
        for kind in crate::catalog::kinds() {
            for action in kind.actions {
                let Some(field) = action.recipient else { continue };
                let schema = field_schema(&action.params_schema(), field.field);
                let validator = schema.map(|schema| {
                    jsonschema::validator_for(&schema)
                        .unwrap_or_else(|e| panic!("{}.{} field schema compiles: {e}", kind.name, action.name))
                });
                map.insert((kind.name, action.name), validator);
            }
        }
        map
    })
}

/// The schema of property `field` of a params schema, standalone (with the root's definitions, which
/// its references name), when nothing at the root relates it to other fields; None otherwise.
fn field_schema(root: &Value, field: &str) -> Option<Value> {
    const UNRELATING: [&str; 9] = [
        "$schema",
        "$defs",
        "definitions",
        "title",
        "description",
        "type",
        "properties",
        "required",
        "additionalProperties",
    ];
    let root = root.as_object()?;
    if root.keys().any(|key| !UNRELATING.contains(&key.as_str())) {
        return None;
    }
    let Some(Value::Object(property)) = root.get("properties")?.get(field) else { return None };
    let mut schema = property.clone();
    for key in ["$schema", "$defs", "definitions"] {
        if let Some(value) = root.get(key) {
            if schema.contains_key(key) {
                return None;
            }
            schema.insert(key.to_owned(), value.clone());
        }
    }
    Some(Value::Object(schema))
}

fn expand_one(
    head: &CampaignHead,
    field: RecipientField,
    checks: &Checks,
    recipient: &Value,
    index: usize,
) -> Result<Job, Vec<FieldError>> {
    // Paths are built only for errors: most recipients have none.
    let at = |child: Option<&str>| json_path(&format!("/recipients/{index}"), child);
    let Some(recipient) = recipient.as_object() else {
        return Err(vec![FieldError::new(at(None), "a recipient must be a JSON object {\"to\", \"params\"?}")]);
    };
    let mut errors: Vec<FieldError> = recipient
        .keys()
        .filter(|k| *k != "to" && *k != "params")
        .map(|k| FieldError::new(at(Some(k)), "unknown field"))
        .collect();
    let to_path = || at(Some("to"));
    let to = match recipient.get("to") {
        None => Err("is required"),
        Some(Value::String(to)) => check_to(field, to.trim()).map(|()| to.trim()),
        Some(_) => Err("must be a string"),
    };
    let to = to.map_err(|reason| errors.push(FieldError::new(to_path(), reason))).ok();
    let overrides = match recipient.get("params") {
        None | Some(Value::Null) => None,
        Some(Value::Object(params)) => {
            if params.contains_key(field.field) {
                let path = json_path(&format!("/recipients/{index}/params"), Some(field.field));
                errors.push(FieldError::new(path, "is filled from \"to\": leave it out of the recipient's params"));
            }
            Some(params)
        }
        Some(_) => {
            errors.push(FieldError::new(at(Some("params")), "must be an object"));
            None
        }
    };
    let Some(to) = to.filter(|_| errors.is_empty()) else { return Err(errors) };

    let normalized = normalize_recipient(field.kind, to);
    let key = format!("{}:{normalized}", head.key);
    if key.chars().count() > MAX_JOB_KEY {
        let reason =
            format!("is too long: the job's idempotency key <campaign key>:<to> exceeds {MAX_JOB_KEY} characters");
        return Err(vec![FieldError::new(to_path(), reason)]);
    }
    // The head's params minus those the recipient replaces (not cloned only to be dropped), plus its own.
    let mut params: Map<String, Value> = match overrides {
        None => head.params.clone(),
        Some(overrides) => head
            .params
            .iter()
            .filter(|(k, _)| !overrides.contains_key(*k))
            .chain(overrides)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    };
    // Phones go out in E.164, which SMS wants; addresses and ids as written (keeping `Name <addr>`).
    field.set(&mut params, if field.kind == RecipientKind::Phone { &normalized } else { to });
    let params = Value::Object(params);
    let valid = match (overrides, checks.field) {
        (None, Some(check)) => check.is_valid(&params[field.field]),
        _ => checks.whole.is_valid(&params),
    };
    if !valid {
        let validator = checks.whole;
        let field_path = json_path("/params", Some(field.field));
        let errors = collect(validator, &params, "/params")
            .into_iter()
            .map(|e| {
                let rest = &e.path["$.params".len()..];
                let in_field =
                    e.path.strip_prefix(&field_path).is_some_and(|r| r.is_empty() || r.starts_with(['[', '.']));
                let path = if in_field { to_path() } else { format!("{}.params{rest}", at(None)) };
                FieldError { path, reason: e.reason }
            })
            .collect();
        return Err(errors);
    }
    Ok(Job {
        id: Uuid::now_v7(),
        idempotency_key: key,
        connector: head.connector.clone(),
        config: head.config.clone(),
        action: head.action.clone(),
        params,
        priority: head.priority,
        max_attempts: head.max_attempts,
        tenant: head.tenant.clone(),
        campaign: Some(head.id),
        send_at: head.send_at,
        callback: head.callback.clone(),
    })
}

/// What the schema cannot see once `to` is filled in: one recipient, not several or everyone.
fn check_to(field: RecipientField, to: &str) -> Result<(), &'static str> {
    if to.is_empty() {
        return Err("is empty");
    }
    if let RecipientShape::Joined(separator) = field.shape
        && to.contains(separator)
    {
        return Err("names several recipients; a campaign recipient is one");
    }
    if field.kind == RecipientKind::UserId && to.eq_ignore_ascii_case("@all") {
        return Err("@all names everyone; a campaign recipient is one member");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn sms_campaign(recipients: Value) -> Value {
        json!({
            "name": "spring sale", "idempotency_key": "spring-2025", "tenant": "acme",
            "connector": "tencent_sms", "config": "marketing", "action": "send_sms",
            "params": {"sign_name": "Yizhan", "template_id": "1001", "template_params": ["default"]},
            "recipients": recipients,
        })
    }

    fn errors(result: Result<impl std::fmt::Debug, Vec<FieldError>>) -> Vec<String> {
        result.unwrap_err().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn every_job_of_a_campaign_carries_its_callback() {
        let mut campaign = sms_campaign(json!([{"to": "+8613800000001"}, {"to": "+8613800000002"}]));
        campaign["callback"] = json!({"url": "https://hooks.example.com/c", "secret": "k"});
        let (head, recipients) = validate_campaign(&campaign).unwrap();
        let jobs = expand(&head, &recipients, 0).unwrap();
        assert!(jobs.iter().all(|job| job.callback == head.callback && head.callback.is_some()));
        // The stored head keeps it, so recipients appended later get it too.
        let stored: CampaignHead = serde_json::from_value(serde_json::to_value(&head).unwrap()).unwrap();
        assert_eq!(stored.callback, head.callback);

        campaign["callback"] = json!({"url": "mailto:ops@example.com"});
        let errs = errors(validate_campaign(&campaign));
        assert_eq!(errs, ["$.callback.url: must be an http:// or https:// URL with a host"]);
    }

    #[test]
    fn three_sms_recipients_become_three_jobs_with_their_own_params() {
        let (head, recipients) = validate_campaign(&sms_campaign(json!([
            {"to": "+8613800000001", "params": {"template_params": ["Alice"]}},
            {"to": "138 0000 0002", "params": {"template_params": ["Bob"]}},
            {"to": "8613800000003"},
        ])))
        .unwrap();
        assert_eq!(head.key, "spring-2025");
        assert_eq!(head.tenant, "acme");
        assert_eq!(head.priority, Priority::Bulk);
        assert_eq!(head.max_attempts, 8);
        assert_eq!(head.id.get_version_num(), 7);
        let jobs = expand(&head, &recipients, 0).unwrap();
        let keys: Vec<_> = jobs.iter().map(|j| j.idempotency_key.as_str()).collect();
        assert_eq!(keys, ["spring-2025:+8613800000001", "spring-2025:+8613800000002", "spring-2025:+8613800000003"]);
        let sent: Vec<_> = jobs.iter().map(|j| (&j.params["phone_numbers"], &j.params["template_params"])).collect();
        assert_eq!(
            sent,
            [
                (&json!(["+8613800000001"]), &json!(["Alice"])),
                (&json!(["+8613800000002"]), &json!(["Bob"])),
                (&json!(["+8613800000003"]), &json!(["default"])),
            ]
        );
        for job in &jobs {
            assert_eq!(job.campaign, Some(head.id));
            assert_eq!((job.tenant.as_str(), job.priority, job.config.as_str()), ("acme", Priority::Bulk, "marketing"));
            assert_eq!(job.params["sign_name"], "Yizhan");
            // What a worker receives validates again as a job.
            crate::validate::validate_job(&job.to_message(), crate::validate::MissingId::Reject).unwrap();
        }
        assert_ne!(jobs[0].id, jobs[1].id);
    }

    #[test]
    fn bad_recipients_are_named_by_index_and_path_and_nothing_is_produced() {
        let (head, _) = validate_campaign(&sms_campaign(json!([]))).unwrap();
        let recipients = json!([
            {"to": "+8613800000001"},
            {"to": "hello"},
            {"to": "+8613800000003", "params": {"template_params": "not a list", "sign_name": ""}},
            {"params": {}, "colour": "red"},
            {"to": "+8613800000005", "params": {"phone_numbers": ["+8613800000006"]}},
            "+8613800000006",
        ]);
        let errs = errors(expand(&head, recipients.as_array().unwrap(), 1000));
        assert_eq!(errs.len(), 7, "{errs:#?}");
        assert!(errs[0].starts_with("$.recipients[1001].to: value does not match"), "{}", errs[0]);
        assert!(errs[1].starts_with("$.recipients[1002].params.sign_name: "), "{}", errs[1]);
        assert!(errs[2].starts_with("$.recipients[1002].params.template_params: "), "{}", errs[2]);
        assert_eq!(errs[3], "$.recipients[1003].colour: unknown field");
        assert_eq!(errs[4], "$.recipients[1003].to: is required");
        assert!(errs[5].starts_with("$.recipients[1004].params.phone_numbers: is filled from \"to\""), "{}", errs[5]);
        assert!(errs[6].starts_with("$.recipients[1005]: a recipient must be a JSON object"), "{}", errs[6]);
    }

    #[test]
    fn the_head_needs_a_recipient_field_action_and_no_recipient_in_params() {
        let mut campaign = sms_campaign(json!([]));
        campaign["connector"] = json!("wecom");
        campaign["action"] = json!("list_departments");
        campaign["params"] = json!({});
        let errs = errors(validate_campaign(&campaign));
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("$.action: wecom.list_departments has no recipient field"), "{}", errs[0]);
        assert!(errs[0].contains("send_app_message"), "{}", errs[0]);

        let mut campaign = sms_campaign(json!([]));
        campaign["params"]["phone_numbers"] = json!(["+8613800000000"]);
        assert!(errors(validate_campaign(&campaign))[0].starts_with("$.params.phone_numbers: is filled from"));

        let mut campaign = sms_campaign(json!([]));
        campaign["params"]["template_id"] = json!("abc");
        campaign["action"] = json!("send_sms");
        assert!(errors(validate_campaign(&campaign))[0].starts_with("$.params.template_id: "));
    }

    #[test]
    fn keys_the_head_lacks_may_come_with_each_recipient() {
        let mut campaign = sms_campaign(json!([]));
        campaign["params"].as_object_mut().unwrap().remove("template_id");
        let (head, _) = validate_campaign(&campaign).unwrap();
        let jobs = expand(&head, &[json!({"to": "+8613800000001", "params": {"template_id": "42"}})], 0).unwrap();
        assert_eq!(jobs[0].params["template_id"], "42");
        let errs = errors(expand(&head, &[json!({"to": "+8613800000001"})], 7));
        assert_eq!(errs, ["$.recipients[7].params.template_id: is required"]);
    }

    #[test]
    fn envelope_fields_of_the_head_are_checked() {
        let mut campaign = sms_campaign(json!([]));
        campaign["tenant"] = json!("Acme Corp");
        campaign["send_at"] = json!("2025-06-01T10:00:00");
        campaign["recipients"] = json!({"to": "+8613800000001"});
        let errs = errors(validate_campaign(&campaign));
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].starts_with("$.tenant: must be 1 to 63 of a-z"), "{}", errs[0]);
        assert!(errs[1].starts_with("$.recipients: must be an array"), "{}", errs[1]);
        campaign["tenant"] = json!("acme");
        campaign["recipients"] = json!([]);
        assert!(
            errors(validate_campaign(&campaign))[0].starts_with("$.send_at: is not an RFC 3339 time with an offset")
        );
        let later = Timestamp::now() + SignedDuration::from_hours(2);
        campaign["send_at"] = json!(later.to_string());
        campaign["priority"] = json!("normal");
        let (head, _) = validate_campaign(&campaign).unwrap();
        assert_eq!((head.send_at, head.priority), (Some(later), Priority::Normal));
        let jobs = expand(&head, &[json!({"to": "13800000001"})], 0).unwrap();
        assert_eq!((jobs[0].send_at, jobs[0].priority), (Some(later), Priority::Normal));
        // Without a key, the campaign's id is its key.
        campaign.as_object_mut().unwrap().remove("idempotency_key");
        let (head, _) = validate_campaign(&campaign).unwrap();
        assert_eq!(head.key, head.id.to_string());
    }

    #[test]
    fn wecom_and_mail_recipients_fill_their_fields() {
        let campaign = json!({"connector": "wecom", "config": "corp", "action": "send_app_message",
            "params": {"msgtype": "text", "text": {"content": "hi"}}});
        let (head, _) = validate_campaign(&campaign).unwrap();
        let jobs = expand(&head, &[json!({"to": "ZhangSan"})], 0).unwrap();
        assert_eq!(jobs[0].params["touser"], "ZhangSan");
        assert_eq!(jobs[0].idempotency_key, format!("{}:ZhangSan", head.id));
        let errs = errors(expand(&head, &[json!({"to": "a|b"}), json!({"to": "@all"})], 0));
        assert!(errs[0].starts_with("$.recipients[0].to: names several recipients"), "{errs:?}");
        assert!(errs[1].starts_with("$.recipients[1].to: @all names everyone"), "{errs:?}");

        let campaign = json!({"idempotency_key": "newsletter", "connector": "qq_mail", "config": "news",
            "action": "send_mail", "params": {"subject": "News", "body": "hi", "mime_type": "text/plain"}});
        let (head, _) = validate_campaign(&campaign).unwrap();
        let jobs = expand(&head, &[json!({"to": "Zhang San <ZS@Example.com>"})], 0).unwrap();
        assert_eq!(jobs[0].params["to"], json!(["Zhang San <ZS@Example.com>"]));
        assert_eq!(jobs[0].idempotency_key, "newsletter:zs@example.com");
    }

    /// Recipients without params are checked against their field's schema alone: the verdicts and
    /// errors must be those of the whole schema (which a recipient with `"params": {}` still gets).
    #[test]
    fn checking_the_recipient_field_alone_agrees_with_the_whole_schema() {
        let heads = [
            sms_campaign(json!([])),
            json!({"connector": "wecom", "config": "corp", "action": "send_app_message",
                   "params": {"msgtype": "text", "text": {"content": "hi"}}}),
            json!({"connector": "qq_mail", "config": "news", "action": "send_mail",
                   "params": {"subject": "News", "body": "hi", "mime_type": "text/plain"}}),
        ];
        let tos =
            ["+8613800000001", "13800000002", "0086 138-0000-0003", "+1", "not a phone", "a@b", "x".repeat(300).leak()];
        let mut fast = 0;
        for head in heads {
            let (head, _) = validate_campaign(&head).unwrap();
            let (kind, action) = known_action(&head.connector, &head.action).unwrap();
            let field = action.recipient.unwrap();
            fast += usize::from(field_check(kind, action, field, &head, params_validator(kind, action)).is_some());
            for to in tos {
                let alone = expand(&head, &[json!({"to": to})], 0).map(|jobs| jobs[0].params.clone());
                let whole = expand(&head, &[json!({"to": to, "params": {}})], 0).map(|jobs| jobs[0].params.clone());
                assert_eq!(alone, whole, "{}.{} to {to:?}", head.connector, head.action);
            }
        }
        assert_eq!(fast, 3, "the three actions' schemas relate no fields at their root");
        // A head that lacks a key its recipients must bring is never checked by the field alone.
        let mut lacking = sms_campaign(json!([]));
        lacking["params"].as_object_mut().unwrap().remove("template_id");
        let (head, _) = validate_campaign(&lacking).unwrap();
        let errs = errors(expand(&head, &[json!({"to": "+8613800000001"})], 0));
        assert_eq!(errs, ["$.recipients[0].params.template_id: is required"]);
        assert_eq!(field_schema(&json!({"properties": {"to": {}}, "oneOf": []}), "to"), None);
    }

    #[test]
    fn an_owned_request_gives_the_same_head_and_recipients() {
        let request = sms_campaign(json!([{"to": "+8613800000001"}, {"to": "+8613800000002"}]));
        let (borrowed, from_borrowed) = validate_campaign(&request).unwrap();
        let (owned, from_owned) = validate_campaign_owned(request).unwrap();
        assert_eq!(from_owned, from_borrowed);
        assert_eq!(CampaignHead { id: borrowed.id, ..owned }, borrowed);
        assert_eq!(errors(validate_campaign_owned(json!([]))), ["$: a campaign must be a JSON object"]);
    }

    #[test]
    fn the_head_round_trips_as_stored() {
        let (head, _) = validate_campaign(&sms_campaign(json!([]))).unwrap();
        let stored = serde_json::to_value(&head).unwrap();
        assert_eq!(serde_json::from_value::<CampaignHead>(stored).unwrap(), head);
    }
}

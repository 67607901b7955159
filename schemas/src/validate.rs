//! Validation of jobs against the envelope schema and the action's params schema.
//!
//! The checked-in JSON Schemas are the validators: what a producer in another language checks with
//! them is exactly what yizhan accepts.

use std::collections::HashMap;
use std::sync::OnceLock;

use jiff::{SignedDuration, Timestamp};
use jsonschema::error::ValidationErrorKind;
use jsonschema::{ValidationError, Validator};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::callback::CALLBACK_URL_RULE;
use crate::catalog::ActionSpec;
use crate::catalog::{find_kind, kinds};
use crate::envelope::{DEFAULT_TENANT, Job, JobInput, MAX_SEND_AHEAD};

/// One reason a job was rejected, with the JSON path of the offending field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct FieldError {
    /// JSONPath-style location such as `$.params.phone_numbers[0]`.
    pub path: String,
    /// Human-readable rule broken (`is required`, `unknown field`, ...); never echoes the offending value.
    pub reason: String,
}

impl FieldError {
    /// An error at `path` (JSONPath-style, `$` for the whole job) for `reason`.
    pub fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        FieldError { path: path.into(), reason: reason.into() }
    }
}

/// What to do with a job that has no `id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingId {
    /// Producers assign a UUIDv7.
    Assign,
    /// Workers reject it: a direct AMQP publisher must set the id.
    Reject,
}

/// Parses and validates one job from raw bytes (a line of a jobs file, or a message body).
pub fn validate_job(bytes: &[u8], missing_id: MissingId) -> Result<Job, Vec<FieldError>> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| vec![FieldError::new("$", format!("not valid JSON: {e}"))])?;
    validate_job_value(&value, missing_id)
}

/// Validates a parsed job: envelope first, then the action's params.
pub fn validate_job_value(value: &Value, missing_id: MissingId) -> Result<Job, Vec<FieldError>> {
    if !value.is_object() {
        return Err(vec![FieldError::new("$", "a job must be a JSON object")]);
    }
    let mut errors = collect(envelope_validator(), value, "");
    explain_tenant(&mut errors, value);
    explain_callback_url(&mut errors, value);
    if errors.is_empty() {
        // Workers allow a little more than producers: their clock may trail the producer's.
        let slack = match missing_id {
            MissingId::Assign => SignedDuration::ZERO,
            MissingId::Reject => SEND_AT_CLOCK_SLACK,
        };
        errors.extend(check_send_at(value.get("send_at"), slack));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let input: JobInput =
        serde_json::from_value(value.clone()).map_err(|e| vec![FieldError::new("$", e.to_string())])?;
    let id = match (input.id, missing_id) {
        (Some(id), _) => id,
        (None, MissingId::Assign) => Uuid::now_v7(),
        (None, MissingId::Reject) => {
            return Err(vec![FieldError::new("$.id", "is required for jobs published straight to the broker")]);
        }
    };
    let params = Value::Object(input.params);
    validate_params(&input.connector, &input.action, &params)?;
    Ok(Job {
        id,
        idempotency_key: input.idempotency_key.unwrap_or_else(|| id.to_string()),
        connector: input.connector,
        config: input.config,
        action: input.action,
        params,
        priority: input.priority,
        max_attempts: input.max_attempts.unwrap_or(Job::DEFAULT_MAX_ATTEMPTS),
        tenant: input.tenant.unwrap_or_else(|| DEFAULT_TENANT.to_owned()),
        campaign: input.campaign,
        send_at: input.send_at,
        callback: input.callback,
    })
}

/// How far past [`MAX_SEND_AHEAD`] a worker still takes a `send_at`: the producer that checked it may
/// run on a clock ahead of the worker's.
const SEND_AT_CLOCK_SLACK: SignedDuration = SignedDuration::from_mins(10);

const TENANT_RULE: &str =
    "must be 1 to 63 of a-z, 0-9, '_' and '-', starting with a letter or digit (a tenant names queues)";

/// The schema's pattern error at `$.tenant` says only which regex failed: say what a tenant is.
pub(crate) fn explain_tenant(errors: &mut [FieldError], value: &Value) {
    if value.get("tenant").is_some_and(Value::is_string) {
        for error in errors.iter_mut().filter(|e| e.path == "$.tenant") {
            error.reason = TENANT_RULE.to_owned();
        }
    }
}

/// The schema's pattern error at `$.callback.url` says only which regex failed: say what it takes.
pub(crate) fn explain_callback_url(errors: &mut [FieldError], value: &Value) {
    if value.get("callback").and_then(|c| c.get("url")).is_some_and(Value::is_string) {
        for error in errors.iter_mut().filter(|e| e.path == "$.callback.url" && e.reason.contains("does not match")) {
            error.reason = CALLBACK_URL_RULE.to_owned();
        }
    }
}

/// Checks a `send_at` the schema found to be a string (or absent): parseable as RFC 3339 with an
/// offset and at most [`MAX_SEND_AHEAD`] (plus `slack`) from now.
pub(crate) fn check_send_at(send_at: Option<&Value>, slack: SignedDuration) -> Option<FieldError> {
    let text = send_at?.as_str()?;
    let Ok(at) = text.parse::<Timestamp>() else {
        return Some(FieldError::new(
            "$.send_at",
            "is not an RFC 3339 time with an offset (such as 2025-06-01T10:00:00+08:00 or 2025-06-01T02:00:00Z)",
        ));
    };
    let latest = Timestamp::now().saturating_add(MAX_SEND_AHEAD + slack).expect("a signed duration adds");
    (at > latest).then(|| FieldError::new("$.send_at", "is more than 30 days ahead"))
}

/// Checks that `kind.action` exists and that `params` satisfy its schema.
pub fn validate_params(kind: &str, action: &str, params: &Value) -> Result<(), Vec<FieldError>> {
    let (kind_name, action_spec) = known_action(kind, action)?;
    let errors = collect(params_validator(kind_name, action_spec), params, "/params");
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

/// The catalog entry of `kind.action`, or the error naming `$.connector` or `$.action`.
pub(crate) fn known_action(kind: &str, action: &str) -> Result<(&'static str, &'static ActionSpec), Vec<FieldError>> {
    let Some(kind_spec) = find_kind(kind) else {
        let known: Vec<_> = kinds().iter().map(|k| k.name).collect();
        return Err(vec![FieldError::new(
            "$.connector",
            format!("unknown connector kind {kind:?} (known: {})", known.join(", ")),
        )]);
    };
    let Some(action_spec) = kind_spec.action(action) else {
        let known: Vec<_> = kind_spec.actions.iter().map(|a| a.name).collect();
        return Err(vec![FieldError::new(
            "$.action",
            format!("unknown action {action:?} for {kind} (known: {})", known.join(", ")),
        )]);
    };
    Ok((kind_spec.name, action_spec))
}

/// The compiled params schema of a catalog entry (compiled once per process).
pub(crate) fn params_validator(kind: &'static str, action: &'static ActionSpec) -> &'static Validator {
    &params_validators()[&(kind, action.name)]
}

fn envelope_validator() -> &'static Validator {
    static VALIDATOR: OnceLock<Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        jsonschema::validator_for(&crate::envelope::envelope_schema()).expect("envelope schema compiles")
    })
}

fn params_validators() -> &'static HashMap<(&'static str, &'static str), Validator> {
    static VALIDATORS: OnceLock<HashMap<(&'static str, &'static str), Validator>> = OnceLock::new();
    VALIDATORS.get_or_init(|| {
        let mut map = HashMap::new();
        for kind in kinds() {
            for action in kind.actions {
                let validator = jsonschema::validator_for(&action.params_schema())
                    .unwrap_or_else(|e| panic!("schema of {}.{} compiles: {e}", kind.name, action.name));
                map.insert((kind.name, action.name), validator);
            }
        }
        map
    })
}

pub(crate) fn collect(validator: &Validator, instance: &Value, pointer_prefix: &str) -> Vec<FieldError> {
    // Nearly every job is valid, and `is_valid` stops at nothing and builds no error: only an
    // invalid instance pays for walking all of its errors.
    if validator.is_valid(instance) {
        return Vec::new();
    }
    let mut errors: Vec<FieldError> =
        validator.iter_errors(instance).flat_map(|e| field_errors(&e, pointer_prefix)).collect();
    errors.sort_by(|a, b| a.path.cmp(&b.path));
    errors.dedup();
    errors
}

fn field_errors(error: &ValidationError<'_>, pointer_prefix: &str) -> Vec<FieldError> {
    let pointer = format!("{pointer_prefix}{}", error.instance_path().as_str());
    match error.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            unexpected.iter().map(|name| FieldError::new(json_path(&pointer, Some(name)), "unknown field")).collect()
        }
        ValidationErrorKind::Required { property } => {
            let name = property.as_str().map(str::to_owned).unwrap_or_else(|| property.to_string());
            vec![FieldError::new(json_path(&pointer, Some(&name)), "is required")]
        }
        // A documented enum (each value with its description) is a `oneOf` of constants: name the
        // values it takes, as a plain `enum` would, instead of the bare `oneOf` failure.
        ValidationErrorKind::OneOfNotValid { context } if !context.is_empty() => {
            let values: Option<Vec<String>> = context
                .iter()
                .map(|branch| match branch.as_slice() {
                    [only] => match only.kind() {
                        ValidationErrorKind::Constant { expected_value } => Some(expected_value.to_string()),
                        _ => None,
                    },
                    _ => None,
                })
                .collect();
            let reason = match values {
                Some(values) => format!("must be one of {}", values.join(", ")),
                None => error.masked().to_string(),
            };
            vec![FieldError::new(json_path(&pointer, None), reason)]
        }
        // Masked: the reason names the rule, never echoes the value (which may be large or personal).
        _ => vec![FieldError::new(json_path(&pointer, None), error.masked().to_string())],
    }
}

/// `/params/phone_numbers/0` (+ `name`) → `$.params.phone_numbers[0].name`.
pub(crate) fn json_path(pointer: &str, child: Option<&str>) -> String {
    let mut path = String::from("$");
    let segments = pointer.split('/').skip(1).map(|s| s.replace("~1", "/").replace("~0", "~"));
    for segment in segments.chain(child.map(str::to_owned)) {
        if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
            path.push_str(&format!("[{segment}]"));
        } else if !segment.is_empty() && segment.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            path.push('.');
            path.push_str(&segment);
        } else {
            path.push_str(&format!("[{segment:?}]"));
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sms(params: Value) -> Value {
        json!({"connector": "tencent_sms", "config": "default", "action": "send_sms", "params": params})
    }

    fn ok_params() -> Value {
        json!({"phone_numbers": ["+8613800000000"], "sign_name": "Yizhan", "template_id": "1001", "template_params": ["123456"]})
    }

    fn errors(value: Value, missing_id: MissingId) -> Vec<String> {
        validate_job_value(&value, missing_id).unwrap_err().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_valid_job_gets_defaults() {
        let job = validate_job_value(&sms(ok_params()), MissingId::Assign).unwrap();
        assert_eq!(job.idempotency_key, job.id.to_string());
        assert_eq!(job.max_attempts, 8);
        assert_eq!(job.priority, crate::envelope::Priority::Normal);
        assert_eq!(job.id.get_version_num(), 7);
    }

    #[test]
    fn workers_reject_a_job_without_id() {
        assert_eq!(
            errors(sms(ok_params()), MissingId::Reject),
            ["$.id: is required for jobs published straight to the broker"]
        );
    }

    #[test]
    fn unknown_kind_action_and_field_are_named() {
        let mut job = sms(ok_params());
        job["connector"] = json!("pigeon");
        assert!(errors(job, MissingId::Assign)[0].starts_with("$.connector: unknown connector kind \"pigeon\""));
        let mut job = sms(ok_params());
        job["action"] = json!("send_fax");
        assert!(errors(job, MissingId::Assign)[0].starts_with("$.action: unknown action \"send_fax\" for tencent_sms"));
        let mut job = sms(ok_params());
        job["colour"] = json!("red");
        assert_eq!(errors(job, MissingId::Assign), ["$.colour: unknown field"]);
    }

    #[test]
    fn params_errors_name_the_path_and_the_rule() {
        let mut params = ok_params();
        params.as_object_mut().unwrap().remove("sign_name");
        params["phone_numbers"] = json!(["+8613800000000", "13800000000"]);
        params["extra"] = json!(1);
        let errs = errors(sms(params), MissingId::Assign);
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert_eq!(errs[0], "$.params.extra: unknown field");
        assert!(errs[1].starts_with("$.params.phone_numbers[1]: value does not match"), "{}", errs[1]);
        assert_eq!(errs[2], "$.params.sign_name: is required");
    }

    #[test]
    fn too_many_numbers_and_bad_priority_are_rejected() {
        let mut params = ok_params();
        params["phone_numbers"] = json!((0..201).map(|i| format!("+86138{i:08}")).collect::<Vec<_>>());
        let errs = errors(sms(params), MissingId::Assign);
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("$.params.phone_numbers: "), "{}", errs[0]);
        let mut job = sms(ok_params());
        job["priority"] = json!("urgent");
        let errs = errors(job, MissingId::Assign);
        assert_eq!(errs, ["$.priority: must be one of \"high\", \"normal\", \"bulk\""]);
        // A documented enum of the params names its values too.
        let job = json!({"connector": "wecom", "config": "x", "action": "send_app_message",
            "params": {"touser": "a", "msgtype": "bogus", "text": {"content": "x"}}});
        let errs = errors(job, MissingId::Assign);
        assert!(errs[0].starts_with("$.params.msgtype: must be one of \"text\""), "{errs:?}");
    }

    #[test]
    fn tenant_campaign_and_send_at_travel_with_the_job() {
        let job = validate_job_value(&sms(ok_params()), MissingId::Assign).unwrap();
        assert_eq!((job.tenant.as_str(), job.campaign, job.send_at), ("default", None, None));
        let message: Value = serde_json::from_slice(&job.to_message()).unwrap();
        assert_eq!(message["tenant"], "default");
        assert!(message.get("campaign").is_none() && message.get("send_at").is_none(), "{message}");

        let campaign = Uuid::now_v7();
        let mut value = sms(ok_params());
        value["tenant"] = json!("acme-cn_2");
        value["campaign"] = json!(campaign);
        value["send_at"] = json!("2020-01-01T10:00:00+08:00");
        let job = validate_job_value(&value, MissingId::Assign).unwrap();
        assert_eq!(job.tenant, "acme-cn_2");
        assert_eq!(job.campaign, Some(campaign));
        assert_eq!(job.send_at, Some("2020-01-01T02:00:00Z".parse().unwrap()));
        // The published message is a valid job for workers, the same job.
        let again = validate_job(&job.to_message(), MissingId::Reject).unwrap();
        assert_eq!(again, job);
    }

    #[test]
    fn bad_tenants_and_send_at_are_named_with_the_reason() {
        for tenant in ["Acme", "-acme", "", "a.b", &"a".repeat(64)] {
            let mut job = sms(ok_params());
            job["tenant"] = json!(tenant);
            let errs = errors(job, MissingId::Assign);
            assert_eq!(errs.len(), 1, "{tenant}: {errs:?}");
            assert!(errs[0].starts_with("$.tenant: must be 1 to 63 of a-z, 0-9"), "{tenant}: {}", errs[0]);
            assert!(!crate::envelope::is_valid_tenant(tenant));
        }
        assert!(crate::envelope::is_valid_tenant("0") && crate::envelope::is_valid_tenant(&"a".repeat(63)));
        let mut job = sms(ok_params());
        job["tenant"] = json!(7);
        assert!(errors(job, MissingId::Assign)[0].starts_with("$.tenant: "));

        for send_at in ["2025-06-01T10:00:00", "tomorrow", "2025-06-01"] {
            let mut job = sms(ok_params());
            job["send_at"] = json!(send_at);
            assert_eq!(
                errors(job, MissingId::Assign),
                [
                    "$.send_at: is not an RFC 3339 time with an offset (such as 2025-06-01T10:00:00+08:00 or 2025-06-01T02:00:00Z)"
                ],
                "{send_at}"
            );
        }
        let ahead = |days: i64| (Timestamp::now() + SignedDuration::from_hours(24 * days)).to_string();
        let mut job = sms(ok_params());
        job["send_at"] = json!(ahead(31));
        assert_eq!(errors(job.clone(), MissingId::Reject), ["$.send_at: is more than 30 days ahead"]);
        job["send_at"] = json!(ahead(29));
        assert!(validate_job_value(&job, MissingId::Assign).is_ok());
    }

    #[test]
    fn a_callback_travels_with_the_job_and_a_bad_one_is_named() {
        let mut value = sms(ok_params());
        value["callback"] = json!({"url": "https://hooks.example.com/done?x=1", "secret": "k3y"});
        let job = validate_job_value(&value, MissingId::Assign).unwrap();
        let callback = job.callback.clone().unwrap();
        assert_eq!(
            (callback.url.as_str(), callback.secret.as_deref()),
            ("https://hooks.example.com/done?x=1", Some("k3y"))
        );
        assert_eq!(validate_job(&job.to_message(), MissingId::Reject).unwrap(), job);
        let plain = validate_job_value(&sms(ok_params()), MissingId::Assign).unwrap();
        assert!(!String::from_utf8(plain.to_message()).unwrap().contains("callback"), "absent when unset");

        for url in ["ftp://hooks.example.com/x", "hooks.example.com/x", "https://", "http:// spaced.example.com"] {
            let mut value = sms(ok_params());
            value["callback"] = json!({"url": url, "secret": "k3y"});
            assert_eq!(
                errors(value, MissingId::Assign),
                ["$.callback.url: must be an http:// or https:// URL with a host"],
                "{url}"
            );
        }
        let mut value = sms(ok_params());
        value["callback"] = json!({"secret": "k3y-that-is-secret", "retries": 3});
        let errs = errors(value, MissingId::Assign);
        assert_eq!(errs, ["$.callback.retries: unknown field", "$.callback.url: is required"]);
        let mut value = sms(ok_params());
        value["callback"] = json!({"url": "https://h.example.com", "secret": "s".repeat(300)});
        let errs = errors(value, MissingId::Assign);
        assert!(errs.len() == 1 && errs[0].starts_with("$.callback.secret: "), "{errs:?}");
        assert!(!errs[0].contains("sss"), "the secret is not echoed: {errs:?}");
    }

    #[test]
    fn non_json_and_non_objects_are_rejected() {
        let errs = validate_job(b"{not json", MissingId::Assign).unwrap_err();
        assert!(errs[0].to_string().starts_with("$: not valid JSON"));
        let errs = validate_job(b"[1]", MissingId::Assign).unwrap_err();
        assert_eq!(errs[0].to_string(), "$: a job must be a JSON object");
    }

    #[test]
    fn json_paths_are_readable() {
        assert_eq!(json_path("", None), "$");
        assert_eq!(json_path("/params/articles/3", Some("title")), "$.params.articles[3].title");
        assert_eq!(json_path("/headers/X-Mailer", None), "$.headers[\"X-Mailer\"]");
    }
}

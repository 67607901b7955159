//! `directory_sync`: the account connector's sync center (seed 001): a config names a source
//! directory (`wecom.<config>` or `feishu.<config>`), a target, `on_missing`, an optional
//! `schedule` and an optional logic `script`; its one action `run` brings the target in step with
//! the source. The worker carries the run out itself ([`Endpoint::DirectorySync`]): it reads the
//! source through the source config's own catalog actions (rate-limited as that config's jobs),
//! so this entry needs no provider path.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::spec::{ActionSpec, Effect, Endpoint, KindSpec, schema};

pub(super) const KIND: KindSpec = KindSpec {
    name: "directory_sync",
    title: "账号连接器同步中心 directory sync with logic scripts",
    // Runs, not provider calls: the source's and target's own limits pace the calls of a run.
    default_rate_limit: "60/min",
    actions: &[ActionSpec {
        name: "run",
        effect: Effect::Write,
        params: schema::<Run>,
        endpoint: Endpoint::DirectorySync,
        bucket: "run",
        per_recipient: None,
        recipient: None,
    }],
};

/// Params of `run`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Run {
    /// Work out the operations (scripts included) and report them, applying nothing and keeping
    /// the snapshot as it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
    /// Compare with an empty snapshot: every record of the source is proposed again (CREATE),
    /// and nothing is proposed for removal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full: Option<bool>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn run_is_a_write_with_two_optional_flags() {
        let run = &super::KIND.actions[0];
        assert_eq!((super::KIND.name, run.name), ("directory_sync", "run"));
        assert_eq!(run.effect, super::Effect::Write);
        assert_eq!(run.endpoint, super::Endpoint::DirectorySync);
        let schema = run.params_schema();
        assert!(schema.get("required").is_none_or(|r| r.as_array().is_some_and(|r| r.is_empty())));
        assert_eq!(schema["additionalProperties"], json!(false));
        let properties: Vec<&String> = schema["properties"].as_object().unwrap().keys().collect();
        assert_eq!(properties, ["dry_run", "full"]);
        let run: super::Run = serde_json::from_value(json!({"dry_run": true})).unwrap();
        assert_eq!(run.dry_run, Some(true));
        assert!(serde_json::from_value::<super::Run>(json!({"dry": true})).is_err());
    }
}

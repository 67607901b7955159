//! Connectors: one folder per kind (`config.rs` for its config, the request building and the
//! `RetryLogic`-style classification of every answer), all behind the [`Connector`] trait.
//!
//! A kind executes any action of its catalog table by interpreting the entry's
//! [`yizhan_schemas::Endpoint`]; there is no per-action code.

mod call;
pub mod dingtalk_robot;
pub mod directory_sync;
pub mod feishu;
pub mod feishu_robot;
pub mod http;
pub mod json_api;
pub mod juzibot;
pub mod qq_mail;
pub mod receipts;
pub mod tencent_cloud;
pub mod tencent_meeting;
pub mod tencent_ses;
pub mod tencent_sms;
pub mod wecom;
pub mod wecom_robot;

#[cfg(test)]
mod testkit;

use std::sync::Arc;

pub use call::{Call, Connector, Failure, Success};
pub use receipts::{ReceiptMode, ReceiptPage, Receipts};

use crate::config::{ConfigError, ConnectorConfig};

/// Builds one kind's connector from a config of that kind.
type Builder = fn(&ConnectorConfig, &reqwest::Client) -> Result<Arc<dyn Connector>, ConfigError>;

/// The one registry of the kinds this worker runs: the catalog's name of each kind (its actions are
/// in `yizhan_schemas`'s catalog, which the producer validates jobs with) and its builder. A kind in
/// one and not the other fails the test `every_catalog_kind_has_a_builder`.
const REGISTRY: &[(&str, Builder)] = &[
    ("tencent_sms", |config, client| Ok(Arc::new(tencent_sms::TencentSms::new(config, client.clone())?))),
    ("tencent_ses", |config, client| Ok(Arc::new(tencent_ses::TencentSes::new(config, client.clone())?))),
    ("tencent_meeting", |config, client| Ok(Arc::new(tencent_meeting::TencentMeeting::new(config, client.clone())?))),
    ("wecom_robot", |config, client| Ok(Arc::new(wecom_robot::WecomRobot::new(config, client.clone())?))),
    ("dingtalk_robot", |config, client| Ok(Arc::new(dingtalk_robot::DingtalkRobot::new(config, client.clone())?))),
    ("feishu_robot", |config, client| Ok(Arc::new(feishu_robot::FeishuRobot::new(config, client.clone())?))),
    ("feishu", |config, client| Ok(Arc::new(feishu::Feishu::new(config, client.clone())?))),
    ("juzibot", |config, client| Ok(Arc::new(juzibot::Juzibot::new(config, client.clone())?))),
    ("qq_mail", |config, _| Ok(Arc::new(qq_mail::QqMail::new(config)?))),
    ("wecom", |config, client| Ok(Arc::new(wecom::Wecom::new(config, client.clone())?))),
    // The worker builds these itself to wire them (`directory_sync::wire_all`); this checks the config.
    ("directory_sync", |config, client| Ok(Arc::new(directory_sync::DirectorySync::new(config, client.clone())?))),
];

/// How a config gets its delivery receipts (`receipts`, `pull_interval`, `receipt_token`), as
/// checked by its connector's config; None for a kind without receipts or a config without them.
pub fn receipt_mode(config: &ConnectorConfig) -> Result<Option<ReceiptMode>, ConfigError> {
    match config.kind.as_str() {
        "tencent_sms" => tencent_sms::config::TencentSmsConfig::from_config(config)?.receipt_mode(config),
        "tencent_ses" => tencent_ses::config::TencentSesConfig::from_config(config)?.receipt_mode(config),
        _ => Ok(None),
    }
}

/// Builds the connector of a config; the config's kind-specific fields are checked here, at start,
/// so a typo fails the worker's start rather than its jobs.
pub fn build(config: &ConnectorConfig, client: &reqwest::Client) -> Result<Arc<dyn Connector>, ConfigError> {
    match REGISTRY.iter().find(|(kind, _)| *kind == config.kind) {
        Some((_, builder)) => builder(config, client),
        None => Err(ConfigError::field(
            config.path(),
            format!("connector kind {} is not supported by this build", config.kind),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use serde_json::json;

    use super::{Failure, REGISTRY};

    #[test]
    fn map_reason_keeps_the_variant_and_its_fields() {
        let wait = Some(Duration::from_secs(3));
        let prefix = |failure: Failure| failure.map_reason(|reason| format!("gettoken: {reason}"));
        assert_eq!(
            prefix(Failure::Transient { reason: "busy".into(), retry_after: wait, progress: Some(json!(1)) }),
            Failure::Transient { reason: "gettoken: busy".into(), retry_after: wait, progress: Some(json!(1)) }
        );
        assert_eq!(prefix(Failure::throttled("slow", wait)), Failure::throttled("gettoken: slow", wait));
        assert_eq!(
            prefix(Failure::Permanent { reason: "no".into(), progress: Some(json!(2)) }),
            Failure::Permanent { reason: "gettoken: no".into(), progress: Some(json!(2)) }
        );
        assert_eq!(
            prefix(Failure::Ambiguous { reason: "lost".into() }),
            Failure::Ambiguous { reason: "gettoken: lost".into() }
        );
        assert_eq!(Failure::permanent("key k1, k1").redact_secrets(&["", "k1"]), Failure::permanent("key ***, ***"));
    }

    #[test]
    fn only_a_lost_answer_becomes_transient() {
        assert_eq!(Failure::Ambiguous { reason: "lost".into() }.lost_is_transient(), Failure::transient("lost"));
        for failure in [Failure::permanent("no"), Failure::throttled("slow", None), Failure::transient("busy")] {
            assert_eq!(failure.clone().lost_is_transient(), failure);
        }
    }

    #[test]
    fn every_catalog_kind_has_a_builder() {
        let registered: Vec<&str> = REGISTRY.iter().map(|(kind, _)| *kind).collect();
        let unique: BTreeSet<&str> = registered.iter().copied().collect();
        assert_eq!(unique.len(), registered.len(), "a kind is registered twice: {registered:?}");
        let catalog: BTreeSet<&str> = yizhan_schemas::kinds().iter().map(|kind| kind.name).collect();
        assert_eq!(unique, catalog, "the worker's registry and the catalog's kinds differ");
    }
}

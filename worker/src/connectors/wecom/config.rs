//! `[connectors.wecom.<name>]`: the kind-specific fields.

use serde::Deserialize;

use crate::config::{ConfigError, ConnectorConfig, Secret};

/// A corp and the secrets of its APIs: `contacts_secret` (通讯录同步) for contacts actions,
/// `external_contact_secret` (客户联系, falling back to `app_secret`) for customer contact, and
/// `app_secret` for the rest; `agentid` is the default of `send_app_message`. A config with
/// `corp_id` and `contacts_secret` alone is a sync-only config (seed 001): its contacts actions
/// work, the others fail permanently naming the missing secret.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WecomConfig {
    /// The corp's id (`corpid` of `gettoken`).
    pub corp_id: String,
    /// The self-built app's secret, for application messages, media, group chats and calendars;
    /// None in a sync-only config.
    #[serde(default)]
    pub app_secret: Option<Secret>,
    /// The contacts-sync secret; None: contacts actions fail permanently.
    #[serde(default)]
    pub contacts_secret: Option<Secret>,
    /// The customer-contact secret; None: customer contact uses `app_secret`.
    #[serde(default)]
    pub external_contact_secret: Option<Secret>,
    /// The app's `agentid`, used by `send_app_message` when the job gives none.
    #[serde(default)]
    pub agentid: Option<u64>,
    /// The change-event callback's Token; read by `yizhan-producer serve` (src/wecom_events.rs).
    #[serde(default)]
    pub callback_token: Option<Secret>,
    /// The change-event callback's EncodingAESKey (43 characters); read by the producer.
    #[serde(default)]
    pub encoding_aes_key: Option<Secret>,
}

impl WecomConfig {
    /// Parses and checks the config's fields; empty secrets are refused here, at start.
    pub fn from_config(config: &ConnectorConfig) -> Result<Self, ConfigError> {
        let parsed: WecomConfig = config.parse_fields()?;
        let at = |field: &str| format!("{}.{field}", config.path());
        if parsed.corp_id.trim().is_empty() {
            return Err(ConfigError::field(at("corp_id"), "must not be empty"));
        }
        let secrets = [
            ("app_secret", parsed.app_secret.as_ref()),
            ("contacts_secret", parsed.contacts_secret.as_ref()),
            ("external_contact_secret", parsed.external_contact_secret.as_ref()),
        ];
        for (field, secret) in secrets {
            if secret.is_some_and(|s| s.expose().trim().is_empty()) {
                return Err(ConfigError::field(at(field), "must not be empty"));
            }
        }
        if parsed.app_secret.is_none() && parsed.contacts_secret.is_none() {
            return Err(ConfigError::field(
                config.path(),
                "needs `app_secret`, `contacts_secret` or both (a sync-only config has `contacts_secret` alone)",
            ));
        }
        Ok(parsed)
    }
}

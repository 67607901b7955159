//! `[connectors.wecom.<name>]`: the kind-specific fields.

use serde::Deserialize;

use crate::config::{ConfigError, ConnectorConfig, Secret};

/// A corp and the secrets of its APIs: `contacts_secret` (通讯录同步) for contacts actions,
/// `external_contact_secret` (客户联系, falling back to `app_secret`) for customer contact, and
/// `app_secret` for the rest; `agentid` is the default of `send_app_message`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WecomConfig {
    pub corp_id: String,
    pub app_secret: Secret,
    #[serde(default)]
    pub contacts_secret: Option<Secret>,
    #[serde(default)]
    pub external_contact_secret: Option<Secret>,
    #[serde(default)]
    pub agentid: Option<u64>,
}

impl WecomConfig {
    pub fn from_config(config: &ConnectorConfig) -> Result<Self, ConfigError> {
        let parsed: WecomConfig = config.parse_fields()?;
        let at = |field: &str| format!("{}.{field}", config.path());
        if parsed.corp_id.trim().is_empty() {
            return Err(ConfigError::field(at("corp_id"), "must not be empty"));
        }
        let secrets = [
            ("app_secret", Some(&parsed.app_secret)),
            ("contacts_secret", parsed.contacts_secret.as_ref()),
            ("external_contact_secret", parsed.external_contact_secret.as_ref()),
        ];
        for (field, secret) in secrets {
            if secret.is_some_and(|s| s.expose().trim().is_empty()) {
                return Err(ConfigError::field(at(field), "must not be empty"));
            }
        }
        Ok(parsed)
    }
}

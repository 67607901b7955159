//! `[connectors.wecom_robot.<name>]`: the kind-specific fields.

use serde::Deserialize;

use crate::config::{ConfigError, ConnectorConfig, Secret};

/// `key`: the webhook's key, the robot's only credential.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WecomRobotConfig {
    /// The `key` query parameter of the robot's webhook URL.
    pub key: Secret,
}

impl WecomRobotConfig {
    /// Parses and checks the config's fields; an empty key is refused here, at start.
    pub fn from_config(config: &ConnectorConfig) -> Result<Self, ConfigError> {
        let parsed: WecomRobotConfig = config.parse_fields()?;
        if parsed.key.expose().trim().is_empty() {
            return Err(ConfigError::field(format!("{}.key", config.path()), "must not be empty"));
        }
        Ok(parsed)
    }
}

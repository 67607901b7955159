//! `[connectors.dingtalk_robot.<name>]`: the kind-specific fields.

use serde::Deserialize;

use crate::config::{ConfigError, ConnectorConfig, Secret};

/// `access_token` (the webhook's), `secret`? (the `SEC…` string of 加签; when set, every attempt is signed).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DingtalkRobotConfig {
    /// The `access_token` query parameter of the robot's webhook URL.
    pub access_token: Secret,
    /// The `SEC…` signing secret; None when the robot does not use 加签.
    #[serde(default)]
    pub secret: Option<Secret>,
}

impl DingtalkRobotConfig {
    /// Parses and checks the config's fields; empty values are refused here, at start.
    pub fn from_config(config: &ConnectorConfig) -> Result<Self, ConfigError> {
        let parsed: DingtalkRobotConfig = config.parse_fields()?;
        let at = |field: &str| format!("{}.{field}", config.path());
        if parsed.access_token.expose().trim().is_empty() {
            return Err(ConfigError::field(at("access_token"), "must not be empty"));
        }
        if parsed.secret.as_ref().is_some_and(|s| s.expose().trim().is_empty()) {
            return Err(ConfigError::field(at("secret"), "must not be empty when set"));
        }
        Ok(parsed)
    }
}

//! `[connectors.feishu.<name>]`: the kind-specific fields.

use serde::Deserialize;

use crate::config::{ConfigError, ConnectorConfig, Secret};

/// `app_id` (`cli_…`) and `app_secret` of a self-built app.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeishuConfig {
    /// The app's id (`cli_…`), sent to fetch the tenant_access_token.
    pub app_id: String,
    /// The app's secret, used only to fetch the tenant_access_token.
    pub app_secret: Secret,
}

impl FeishuConfig {
    /// Parses and checks the config's fields; empty values are refused here, at start.
    pub fn from_config(config: &ConnectorConfig) -> Result<Self, ConfigError> {
        let parsed: FeishuConfig = config.parse_fields()?;
        let at = |field: &str| format!("{}.{field}", config.path());
        if parsed.app_id.trim().is_empty() {
            return Err(ConfigError::field(at("app_id"), "must not be empty"));
        }
        if parsed.app_secret.expose().trim().is_empty() {
            return Err(ConfigError::field(at("app_secret"), "must not be empty"));
        }
        Ok(parsed)
    }
}

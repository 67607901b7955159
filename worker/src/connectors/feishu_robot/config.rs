//! `[connectors.feishu_robot.<name>]`: the kind-specific fields.

use serde::Deserialize;

use crate::config::{ConfigError, ConnectorConfig, Secret};

/// `hook_id` (the last path segment of the webhook URL, the bot's credential), `secret`? (签名校验).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeishuRobotConfig {
    /// The last path segment of the webhook URL (no `/`, `?` or `#`).
    pub hook_id: Secret,
    /// The signing secret; None when the bot does not check signatures.
    #[serde(default)]
    pub secret: Option<Secret>,
}

impl FeishuRobotConfig {
    /// Parses and checks the config's fields; a malformed `hook_id` is refused here, at start.
    pub fn from_config(config: &ConnectorConfig) -> Result<Self, ConfigError> {
        let parsed: FeishuRobotConfig = config.parse_fields()?;
        let at = |field: &str| format!("{}.{field}", config.path());
        let hook_id = parsed.hook_id.expose();
        if hook_id.trim().is_empty() || hook_id.contains(['/', '?', '#']) {
            return Err(ConfigError::field(at("hook_id"), "must be the webhook's id (the last segment of its URL)"));
        }
        if parsed.secret.as_ref().is_some_and(|s| s.expose().trim().is_empty()) {
            return Err(ConfigError::field(at("secret"), "must not be empty when set"));
        }
        Ok(parsed)
    }
}

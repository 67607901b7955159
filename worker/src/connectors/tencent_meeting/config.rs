//! `[connectors.tencent_meeting.<name>]`: the kind-specific fields.

use serde::Deserialize;

use crate::config::{ConfigError, ConnectorConfig, Secret};

/// `app_id` (企业 ID), `sdk_id` (应用 ID, only when assigned), `secret_id`, `secret_key`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TencentMeetingConfig {
    /// The enterprise id, sent as the `AppId` header.
    pub app_id: String,
    /// The app id, sent as the `SdkId` header; None unless one was assigned (a wrong one fails with 190303).
    #[serde(default)]
    pub sdk_id: Option<String>,
    /// The app's SecretId, sent as `X-TC-Key` and signed.
    pub secret_id: String,
    /// The app's SecretKey, which keys the `X-TC-Signature` HMAC; never sent.
    pub secret_key: Secret,
}

impl TencentMeetingConfig {
    /// Parses and checks the config's fields; empty values are refused here, at start.
    pub fn from_config(config: &ConnectorConfig) -> Result<Self, ConfigError> {
        let parsed: TencentMeetingConfig = config.parse_fields()?;
        let at = |field: &str| format!("{}.{field}", config.path());
        if parsed.app_id.trim().is_empty() {
            return Err(ConfigError::field(at("app_id"), "must not be empty"));
        }
        // A SdkId sent when none was assigned fails every call (190303): refuse an empty one.
        if parsed.sdk_id.as_deref().is_some_and(|id| id.trim().is_empty()) {
            return Err(ConfigError::field(at("sdk_id"), "must not be empty when set"));
        }
        if parsed.secret_id.trim().is_empty() {
            return Err(ConfigError::field(at("secret_id"), "must not be empty"));
        }
        if parsed.secret_key.expose().is_empty() {
            return Err(ConfigError::field(at("secret_key"), "must not be empty"));
        }
        Ok(parsed)
    }
}

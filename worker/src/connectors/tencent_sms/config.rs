//! `[connectors.tencent_sms.<name>]`: the kind-specific fields.

use serde::Deserialize;

use crate::config::{ConfigError, ConnectorConfig, Secret};

/// `secret_id`, `secret_key`, `region` (default `ap-guangzhou`), `sdk_app_id` (default for jobs).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TencentSmsConfig {
    pub secret_id: String,
    pub secret_key: Secret,
    #[serde(default = "default_region")]
    pub region: String,
    /// `SmsSdkAppId` of jobs that do not name one.
    #[serde(default)]
    pub sdk_app_id: Option<String>,
}

fn default_region() -> String {
    "ap-guangzhou".to_string()
}

impl TencentSmsConfig {
    pub fn from_config(config: &ConnectorConfig) -> Result<Self, ConfigError> {
        let parsed: TencentSmsConfig = config.parse_fields()?;
        let at = |field: &str| format!("{}.{field}", config.path());
        if parsed.secret_id.trim().is_empty() {
            return Err(ConfigError::field(at("secret_id"), "must not be empty"));
        }
        if parsed.secret_key.expose().is_empty() {
            return Err(ConfigError::field(at("secret_key"), "must not be empty"));
        }
        // Region is a header value and part of no signature; an empty one would only fail later.
        if parsed.region.trim().is_empty() {
            return Err(ConfigError::field(at("region"), "must not be empty"));
        }
        if parsed.sdk_app_id.as_deref().is_some_and(|id| id.trim().is_empty()) {
            return Err(ConfigError::field(at("sdk_app_id"), "must not be empty when set"));
        }
        Ok(parsed)
    }
}

//! `[connectors.tencent_ses.<name>]`: the kind-specific fields.

use serde::Deserialize;

use crate::config::{ConfigError, ConnectorConfig, Secret};

/// `secret_id`, `secret_key`, `region` (default `ap-hongkong`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TencentSesConfig {
    /// The API key's SecretId, part of the TC3 `Authorization` header.
    pub secret_id: String,
    /// The API key's SecretKey, which derives the TC3 signing key; never sent.
    pub secret_key: Secret,
    /// The `X-TC-Region` header, e.g. `ap-hongkong` (the default) or `ap-guangzhou`.
    #[serde(default = "default_region")]
    pub region: String,
}

fn default_region() -> String {
    "ap-hongkong".to_string()
}

impl TencentSesConfig {
    /// Parses and checks the config's fields; empty values are refused here, at start.
    pub fn from_config(config: &ConnectorConfig) -> Result<Self, ConfigError> {
        let parsed: TencentSesConfig = config.parse_fields()?;
        let at = |field: &str| format!("{}.{field}", config.path());
        if parsed.secret_id.trim().is_empty() {
            return Err(ConfigError::field(at("secret_id"), "must not be empty"));
        }
        if parsed.secret_key.expose().is_empty() {
            return Err(ConfigError::field(at("secret_key"), "must not be empty"));
        }
        if parsed.region.trim().is_empty() {
            return Err(ConfigError::field(at("region"), "must not be empty"));
        }
        Ok(parsed)
    }
}

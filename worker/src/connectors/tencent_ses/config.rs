//! `[connectors.tencent_ses.<name>]`: the kind-specific fields.

use serde::Deserialize;

use crate::config::{ConfigError, ConnectorConfig, Secret};
use crate::connectors::receipts::{ReceiptMode, parse_mode};

/// `secret_id`, `secret_key`, `region` (default `ap-hongkong`), `receipts` and `pull_interval`.
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
    /// `"pull"`: a worker asks `GetSendEmailStatus` about each sent mail every `pull_interval`
    /// until its status is final; none collected when absent (SES pushes nothing).
    #[serde(default)]
    pub receipts: Option<String>,
    /// With `receipts = "pull"`: how often (default 10s).
    #[serde(default)]
    pub pull_interval: Option<String>,
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
        parsed.receipt_mode(config)?;
        Ok(parsed)
    }

    /// `receipts` (only `"pull"`) and `pull_interval`, checked.
    pub fn receipt_mode(&self, config: &ConnectorConfig) -> Result<Option<ReceiptMode>, ConfigError> {
        parse_mode(&config.path(), self.receipts.as_deref(), self.pull_interval.as_deref(), None, false)
    }
}

//! `[connectors.tencent_sms.<name>]`: the kind-specific fields.

use std::time::Duration;

use serde::Deserialize;

use crate::config::{ConfigError, ConnectorConfig, Secret, parse_duration_field};

/// How long after a call whose answer was lost a number without a receipt is taken as not sent:
/// receipts lag the sending.
pub const DEFAULT_STATUS_SETTLE: &str = "60s";

/// `secret_id`, `secret_key`, `region` (default `ap-guangzhou`), `sdk_app_id` (default for jobs),
/// `status_query` (default true) and `status_settle` (default 60s): see `mod.rs`, "Lost answers".
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TencentSmsConfig {
    /// The API key's SecretId, part of the TC3 `Authorization` header.
    pub secret_id: String,
    /// The API key's SecretKey, which derives the TC3 signing key; never sent.
    pub secret_key: Secret,
    /// The `X-TC-Region` header, e.g. `ap-guangzhou` (the default) or `ap-beijing`.
    #[serde(default = "default_region")]
    pub region: String,
    /// `SmsSdkAppId` of jobs that do not name one.
    #[serde(default)]
    pub sdk_app_id: Option<String>,
    /// Ask `PullSmsSendStatusByPhoneNumber` whether the numbers of a lost answer went out; when
    /// false, a lost answer is left to `on_ambiguous`.
    #[serde(default = "default_true")]
    pub status_query: bool,
    /// A duration such as `"60s"` or `"1m 30s"`.
    #[serde(default = "default_settle")]
    pub status_settle: String,
}

fn default_true() -> bool {
    true
}

fn default_settle() -> String {
    DEFAULT_STATUS_SETTLE.to_string()
}

fn default_region() -> String {
    "ap-guangzhou".to_string()
}

impl TencentSmsConfig {
    /// Parses and checks the config's fields (including `status_settle`); bad values fail at start.
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
        parsed.settle(config)?;
        Ok(parsed)
    }

    /// `status_settle` as a duration, or the error naming the field.
    pub fn settle(&self, config: &ConnectorConfig) -> Result<Duration, ConfigError> {
        let at = format!("{}.status_settle", config.path());
        let settle = parse_duration_field(&at, &self.status_settle)?;
        if settle.is_zero() {
            // Receipts always lag the sending: no wait at all would resend what is on its way.
            return Err(ConfigError::field(at, "must be longer than 0"));
        }
        Ok(settle)
    }
}

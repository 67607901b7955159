//! `[connectors.tencent_sms.<name>]`: the kind-specific fields.

use std::time::Duration;

use serde::Deserialize;

use crate::config::{ConfigError, ConnectorConfig, Secret, parse_duration_field};
use crate::connectors::receipts::{ReceiptMode, parse_mode};

/// How long after a call whose answer was lost a number without a receipt is taken as not sent:
/// receipts lag the sending.
pub const DEFAULT_STATUS_SETTLE: &str = "60s";

/// `secret_id`, `secret_key`, `region` (default `ap-guangzhou`), `sdk_app_id` (default for jobs),
/// `status_query` (default true) and `status_settle` (default 60s): see `mod.rs`, "Lost answers";
/// `receipts`, `pull_interval`, `receipt_token`: see `mod.rs`, "Delivery receipts".
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
    /// How delivery receipts come: `"push"` (the provider's status callback, to
    /// `POST /v1/receipts/tencent_sms/<name>?token=<receipt_token>` of `yizhan-producer serve`) or
    /// `"pull"` (`PullSmsSendStatus` every `pull_interval`); none collected when absent.
    #[serde(default)]
    pub receipts: Option<String>,
    /// With `receipts = "pull"`: how often (default 10s).
    #[serde(default)]
    pub pull_interval: Option<String>,
    /// With `receipts = "push"`: the secret `?token=` of the callback URL (at least 16 characters).
    #[serde(default)]
    pub receipt_token: Option<Secret>,
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
        parsed.receipt_mode(config)?;
        Ok(parsed)
    }

    /// `receipts`, `pull_interval` and `receipt_token`, checked; pulling needs the config's
    /// `sdk_app_id` (the application whose receipts are pulled).
    pub fn receipt_mode(&self, config: &ConnectorConfig) -> Result<Option<ReceiptMode>, ConfigError> {
        let mode = parse_mode(
            &config.path(),
            self.receipts.as_deref(),
            self.pull_interval.as_deref(),
            self.receipt_token.as_ref(),
            true,
        )?;
        if matches!(mode, Some(ReceiptMode::Pull { .. })) && self.sdk_app_id.is_none() {
            return Err(ConfigError::field(
                format!("{}.sdk_app_id", config.path()),
                "is required with receipts = \"pull\": the application whose receipts are pulled",
            ));
        }
        Ok(mode)
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

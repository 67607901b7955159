//! Connectors: one folder per kind (`config.rs` for its config, the request building and the
//! `RetryLogic`-style classification of every answer), all behind the [`Connector`] trait.
//!
//! A kind executes any action of its catalog table by interpreting the entry's
//! [`yizhan_schemas::Endpoint`]; there is no per-action code.

pub mod dingtalk_robot;
pub mod feishu;
pub mod feishu_robot;
pub mod http;
pub mod json_api;
pub mod juzibot;
pub mod qq_mail;
pub mod tencent_meeting;
pub mod tencent_ses;
pub mod tencent_sms;
pub mod wecom;
pub mod wecom_robot;

#[cfg(test)]
mod testkit;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use uuid::Uuid;
use yizhan_schemas::ActionSpec;

use crate::config::{ConfigError, ConnectorConfig};

/// One attempt of one job, as the pipeline hands it to a connector.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub job_id: Uuid,
    pub action: &'static ActionSpec,
    /// Validated against the action's params schema.
    pub params: &'a Value,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// What earlier attempts of this job recorded (for example the numbers already sent).
    pub progress: Option<&'a Value>,
}

/// A successful attempt.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Success {
    /// A read action's data, or a write's receipt (message ids, per-number statuses).
    pub result: Option<Value>,
}

/// A failed attempt, classified. Reasons carry the provider's code and message, never a secret
/// (no keys, tokens, signatures, or URLs with credentials in their query).
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// Worth retrying later: network trouble, 5xx, the provider's busy codes.
    /// `retry_after` is the provider's own hint; `progress` what this attempt achieved.
    Transient { reason: String, retry_after: Option<Duration>, progress: Option<Value> },
    /// The provider throttles the whole config (its rate-limit codes, HTTP 429): the config pauses
    /// across the fleet for `retry_after` (a short backoff when the provider does not say), and the
    /// job is retried like a transient failure.
    Throttled { reason: String, retry_after: Option<Duration> },
    /// Will fail again however often it is tried: bad credentials, invalid params, quotas.
    Permanent { reason: String, progress: Option<Value> },
    /// The request may have reached the provider but its answer was lost (a timeout after the
    /// request was sent): executing again may repeat the side effect.
    Ambiguous { reason: String },
}

impl Failure {
    pub fn transient(reason: impl Into<String>) -> Self {
        Failure::Transient { reason: reason.into(), retry_after: None, progress: None }
    }

    pub fn throttled(reason: impl Into<String>, retry_after: Option<Duration>) -> Self {
        Failure::Throttled { reason: reason.into(), retry_after }
    }

    pub fn permanent(reason: impl Into<String>) -> Self {
        Failure::Permanent { reason: reason.into(), progress: None }
    }

    pub fn reason(&self) -> &str {
        match self {
            Failure::Transient { reason, .. }
            | Failure::Throttled { reason, .. }
            | Failure::Permanent { reason, .. }
            | Failure::Ambiguous { reason } => reason,
        }
    }
}

/// Executes the actions of one connector config.
#[async_trait::async_trait]
pub trait Connector: Send + Sync {
    async fn execute(&self, call: Call<'_>) -> Result<Success, Failure>;
}

/// Builds the connector of a config; the config's kind-specific fields are checked here, at start,
/// so a typo fails the worker's start rather than its jobs.
pub fn build(config: &ConnectorConfig, client: &reqwest::Client) -> Result<Arc<dyn Connector>, ConfigError> {
    match config.kind.as_str() {
        "tencent_sms" => Ok(Arc::new(tencent_sms::TencentSms::new(config, client.clone())?)),
        "tencent_ses" => Ok(Arc::new(tencent_ses::TencentSes::new(config, client.clone())?)),
        "tencent_meeting" => Ok(Arc::new(tencent_meeting::TencentMeeting::new(config, client.clone())?)),
        "wecom_robot" => Ok(Arc::new(wecom_robot::WecomRobot::new(config, client.clone())?)),
        "dingtalk_robot" => Ok(Arc::new(dingtalk_robot::DingtalkRobot::new(config, client.clone())?)),
        "feishu_robot" => Ok(Arc::new(feishu_robot::FeishuRobot::new(config, client.clone())?)),
        "feishu" => Ok(Arc::new(feishu::Feishu::new(config, client.clone())?)),
        "juzibot" => Ok(Arc::new(juzibot::Juzibot::new(config, client.clone())?)),
        "qq_mail" => Ok(Arc::new(qq_mail::QqMail::new(config)?)),
        "wecom" => Ok(Arc::new(wecom::Wecom::new(config, client.clone())?)),
        other => {
            Err(ConfigError::field(config.path(), format!("connector kind {other} is not supported by this build")))
        }
    }
}

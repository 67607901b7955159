//! `[connectors.directory_sync.<name>]`: source, target, script, schedule, on_missing; every field
//! checked at start with its config path.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::script::{Limits, Script};
use crate::config::{ConfigError, ConnectorConfig, Secret, parse_duration_field};

/// A directory a sync reads or writes: a WeCom or Feishu connector config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryRef {
    /// `wecom` or `feishu`.
    pub kind: String,
    /// The config's name.
    pub name: String,
}

impl DirectoryRef {
    fn parse(text: &str) -> Result<DirectoryRef, String> {
        match text.split_once('.') {
            Some((kind @ ("wecom" | "feishu"), name)) if !name.is_empty() => {
                Ok(DirectoryRef { kind: kind.to_string(), name: name.to_string() })
            }
            _ => Err(format!("{text:?} is not \"wecom.<config>\" or \"feishu.<config>\"")),
        }
    }
}

/// Where the operations go.
#[derive(Debug, Clone)]
pub enum Target {
    /// POST each operation as JSON to `url`, signed with `secret` when set.
    Webhook {
        /// An http(s) URL.
        url: String,
        /// HMAC-SHA256 key of `X-Yizhan-Signature`; None: unsigned.
        secret: Option<Secret>,
    },
    /// Publish each operation to the exchange `<prefix>.directory`, routing key the operation.
    Amqp,
    /// The other directory, through its catalog write actions.
    Directory(DirectoryRef),
}

/// What a source record that left the source becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnMissing {
    /// DELETE it from the target.
    Delete,
    /// DISABLE it in the target (members; departments are deleted, having no disabled state).
    Disable,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fields {
    source: String,
    target: String,
    #[serde(default)]
    webhook_url: Option<String>,
    #[serde(default)]
    webhook_secret: Option<Secret>,
    #[serde(default)]
    script: Option<String>,
    #[serde(default)]
    script_timeout: Option<String>,
    #[serde(default)]
    script_memory_mb: Option<u32>,
    #[serde(default)]
    schedule: Option<String>,
    #[serde(default)]
    on_missing: Option<String>,
}

/// A directory sync config, checked.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// The directory read.
    pub source: DirectoryRef,
    /// Where operations go.
    pub target: Target,
    /// The logic script, compiled at start; None: every proposed operation is applied.
    pub script: Option<Script>,
    /// How often runs are enqueued (one per period across the fleet); None: on demand only.
    pub schedule: Option<Duration>,
    /// What records that left the source become.
    pub on_missing: OnMissing,
}

/// The shortest schedule: a run reads the whole directory.
pub const MIN_SCHEDULE: Duration = Duration::from_secs(1);

impl SyncConfig {
    /// Parses and checks the fields: `source = "wecom.<config>"`, `target = "webhook" | "amqp" |
    /// "wecom.<config>" | "feishu.<config>"` (`webhook_url`, `webhook_secret` with a webhook),
    /// `script = "file:<path>"` (compiled now: a syntax error stops the worker with the path and
    /// line), `script_timeout` (default 500ms), `script_memory_mb` (default 32), `schedule =
    /// "15m"`, `on_missing = "delete" | "disable"` (default delete).
    pub fn from_config(config: &ConnectorConfig) -> Result<SyncConfig, ConfigError> {
        let fields: Fields = config.parse_fields()?;
        let at = |field: &str| format!("{}.{field}", config.path());
        let source = DirectoryRef::parse(&fields.source).map_err(|reason| ConfigError::field(at("source"), reason))?;
        let target = match fields.target.as_str() {
            "webhook" => {
                let url = fields
                    .webhook_url
                    .clone()
                    .ok_or_else(|| ConfigError::field(at("webhook_url"), "is required with target = \"webhook\""))?;
                if !(url.starts_with("http://") || url.starts_with("https://")) || reqwest::Url::parse(&url).is_err() {
                    return Err(ConfigError::field(at("webhook_url"), "is not an http(s) URL"));
                }
                if fields.webhook_secret.as_ref().is_some_and(|s| s.expose().is_empty()) {
                    return Err(ConfigError::field(at("webhook_secret"), "must not be empty"));
                }
                Target::Webhook { url, secret: fields.webhook_secret.clone() }
            }
            "amqp" => Target::Amqp,
            other => {
                let directory = DirectoryRef::parse(other).map_err(|_| {
                    ConfigError::field(
                        at("target"),
                        format!("{other:?} is not \"webhook\", \"amqp\", \"wecom.<config>\" or \"feishu.<config>\""),
                    )
                })?;
                if directory == source {
                    return Err(ConfigError::field(at("target"), "is the source itself"));
                }
                Target::Directory(directory)
            }
        };
        if !matches!(target, Target::Webhook { .. }) {
            for (field, set) in
                [("webhook_url", fields.webhook_url.is_some()), ("webhook_secret", fields.webhook_secret.is_some())]
            {
                if set {
                    return Err(ConfigError::field(at(field), "has no effect without target = \"webhook\""));
                }
            }
        }
        let mut limits = Limits::default();
        if let Some(text) = &fields.script_timeout {
            limits.time = parse_duration_field(&at("script_timeout"), text)?;
            if limits.time.is_zero() || limits.time > Duration::from_secs(60) {
                return Err(ConfigError::field(at("script_timeout"), "must be between 1ms and 60s"));
            }
        }
        if let Some(mb) = fields.script_memory_mb {
            if !(1..=1024).contains(&mb) {
                return Err(ConfigError::field(at("script_memory_mb"), "must be between 1 and 1024"));
            }
            limits.memory = mb as usize * 1024 * 1024;
        }
        let script = match &fields.script {
            Some(text) => {
                let Some(path) = text.strip_prefix("file:") else {
                    return Err(ConfigError::field(at("script"), "must be \"file:<path of the script>\""));
                };
                Some(
                    Script::load(Path::new(path), limits)
                        .map_err(|e| ConfigError::field(at("script"), e.to_string()))?,
                )
            }
            None => {
                for (field, set) in [
                    ("script_timeout", fields.script_timeout.is_some()),
                    ("script_memory_mb", fields.script_memory_mb.is_some()),
                ] {
                    if set {
                        return Err(ConfigError::field(at(field), "has no effect without script"));
                    }
                }
                None
            }
        };
        let schedule = match &fields.schedule {
            Some(text) => {
                let every = parse_duration_field(&at("schedule"), text)?;
                if every < MIN_SCHEDULE {
                    return Err(ConfigError::field(at("schedule"), "must be at least 1s"));
                }
                Some(every)
            }
            None => None,
        };
        let on_missing = match fields.on_missing.as_deref() {
            None | Some("delete") => OnMissing::Delete,
            Some("disable") => OnMissing::Disable,
            Some(other) => {
                return Err(ConfigError::field(
                    at("on_missing"),
                    format!("{other:?} is not \"delete\" or \"disable\""),
                ));
            }
        };
        Ok(SyncConfig { source, target, script, schedule, on_missing })
    }
}

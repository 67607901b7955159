//! The connector config file (TOML): `[connectors.<kind>.<name>]` tables.
//!
//! String values may be `"${VAR}"` (read from the environment) or `"file:/path"` (read from a
//! file, trailing newline trimmed), so that secrets stay out of the file. Secret fields are held
//! as [`Secret`], whose `Debug` and `Display` never show the value.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;

/// A config error; it names the config path (`connectors.<kind>.<name>.<field>`), never a value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file's path.
        path: String,
        /// Why reading failed.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("config file {path}: {reason}")]
    Parse {
        /// The file's path (`<text>` for [`Config::parse`]).
        path: String,
        /// The TOML parser's message.
        reason: String,
    },
    /// A section or field is unknown, missing or has a wrong value.
    #[error("{at}: {reason}")]
    Field {
        /// The config path, e.g. `connectors.tencent_sms.default.region`.
        at: String,
        /// What is wrong, without the value.
        reason: String,
    },
}

impl ConfigError {
    /// A [`ConfigError::Field`] at config path `at`; `reason` must not contain the value.
    pub fn field(at: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Field { at: at.into(), reason: reason.into() }
    }
}

/// A secret value: redacted in `Debug` and `Display`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value that must never be logged.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the one place that signs or authenticates with it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// What happens to a write whose worker died mid-call (the provider may or may not have seen it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnAmbiguous {
    /// Execute again: at-least-once.
    #[default]
    Retry,
    /// Never twice: park the job in the dead-letter queue for a person to decide.
    DeadLetter,
}

/// Fields every connector config may set, whatever its kind.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommonConfig {
    /// Replaces the provider's scheme, host and port (sandbox, tests, private gateways).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// `N/s`, `N/min` or `N/h`, or several comma-separated (`100/min, 5/s`); the kind's default
    /// when absent.
    #[serde(default)]
    pub rate_limit: Option<String>,
    /// For writes cut short by a worker's death: `retry` (default) or `dead_letter`.
    #[serde(default)]
    pub on_ambiguous: OnAmbiguous,
}

const COMMON_FIELDS: &[&str] = &["endpoint", "rate_limit", "on_ambiguous"];

/// One `[connectors.<kind>.<name>]` table, with `${VAR}` and `file:` already resolved.
#[derive(Debug, Clone)]
pub struct ConnectorConfig {
    /// The connector kind (`tencent_sms`, `wecom`, ...), a kind of the catalog.
    pub kind: String,
    /// The config's name, which jobs select with their `config` field.
    pub name: String,
    /// The fields every kind accepts.
    pub common: CommonConfig,
    /// The kind-specific fields; each connector deserialises them into its own config type.
    pub fields: toml::Table,
}

impl ConnectorConfig {
    /// `connectors.<kind>.<name>`, the prefix of every error about this config.
    pub fn path(&self) -> String {
        format!("connectors.{}.{}", self.kind, self.name)
    }

    /// Deserialises the kind-specific fields into `T`, naming the offending field on error.
    pub fn parse_fields<T: serde::de::DeserializeOwned>(&self) -> Result<T, ConfigError> {
        T::deserialize(toml::Value::Table(self.fields.clone()))
            .map_err(|e| ConfigError::field(self.path(), e.message().to_string()))
    }
}

/// The whole config file.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Every connector config by (kind, name).
    pub connectors: BTreeMap<(String, String), ConnectorConfig>,
}

impl Config {
    /// Reads and parses the file at `path`, resolving `${VAR}` from the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        Config::parse(&text, &|var| std::env::var(var).ok()).map_err(|e| match e {
            ConfigError::Parse { reason, .. } => ConfigError::Parse { path: path.display().to_string(), reason },
            other => other,
        })
    }

    /// Parses config text; `env` looks up `${VAR}` references.
    pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let root: toml::Table = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: "<text>".into(), reason: e.message().to_string() })?;
        let mut config = Config::default();
        for (key, value) in &root {
            if key != "connectors" {
                return Err(ConfigError::field(key.clone(), "unknown section (expected [connectors.<kind>.<name>])"));
            }
            let kinds = value.as_table().ok_or_else(|| ConfigError::field("connectors", "must be a table"))?;
            for (kind, configs) in kinds {
                if yizhan_schemas::find_kind(kind).is_none() {
                    return Err(ConfigError::field(format!("connectors.{kind}"), "unknown connector kind"));
                }
                let configs = configs.as_table().ok_or_else(|| {
                    ConfigError::field(format!("connectors.{kind}"), "must be a table of named configs")
                })?;
                for (name, table) in configs {
                    let at = format!("connectors.{kind}.{name}");
                    let table = table.as_table().ok_or_else(|| ConfigError::field(&at, "must be a table"))?;
                    let mut fields = toml::Table::new();
                    let mut common = toml::Table::new();
                    for (field, value) in table {
                        let value = resolve(value, &format!("{at}.{field}"), env)?;
                        if COMMON_FIELDS.contains(&field.as_str()) {
                            common.insert(field.clone(), value);
                        } else {
                            fields.insert(field.clone(), value);
                        }
                    }
                    let common = CommonConfig::deserialize(toml::Value::Table(common))
                        .map_err(|e| ConfigError::field(&at, e.message().to_string()))?;
                    if let Some(limit) = &common.rate_limit {
                        crate::ratelimit::Quota::parse_all(limit)
                            .map_err(|reason| ConfigError::field(format!("{at}.rate_limit"), reason))?;
                    }
                    config.connectors.insert(
                        (kind.clone(), name.clone()),
                        ConnectorConfig { kind: kind.clone(), name: name.clone(), common, fields },
                    );
                }
            }
        }
        Ok(config)
    }

    /// The config `name` of connector `kind`; None when the file has no such table.
    pub fn get(&self, kind: &str, name: &str) -> Option<&ConnectorConfig> {
        self.connectors.get(&(kind.to_string(), name.to_string()))
    }
}

/// A duration field (`"60s"`, `"1m 30s"`, `"500ms"`); the error names the field at `at`.
pub fn parse_duration_field(at: &str, text: &str) -> Result<std::time::Duration, ConfigError> {
    humantime::parse_duration(text.trim())
        .map_err(|e| ConfigError::field(at, format!("not a duration such as \"60s\" or \"500ms\": {e}")))
}

fn resolve(value: &toml::Value, at: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<toml::Value, ConfigError> {
    Ok(match value {
        toml::Value::String(text) => {
            if let Some(var) = text.strip_prefix("${").and_then(|rest| rest.strip_suffix('}')) {
                let value =
                    env(var).ok_or_else(|| ConfigError::field(at, format!("environment variable {var} is not set")))?;
                toml::Value::String(value)
            } else if let Some(path) = text.strip_prefix("file:") {
                let value = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError::field(at, format!("cannot read {path}: {e}")))?;
                toml::Value::String(value.trim_end_matches(['\n', '\r']).to_string())
            } else {
                value.clone()
            }
        }
        toml::Value::Table(table) => {
            let mut out = toml::Table::new();
            for (k, v) in table {
                out.insert(k.clone(), resolve(v, &format!("{at}.{k}"), env)?);
            }
            toml::Value::Table(out)
        }
        other => other.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(var: &str) -> Option<String> {
        (var == "SMS_KEY").then(|| "s3cr3t".to_string())
    }

    #[test]
    fn parses_tables_and_resolves_env_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("robot.key");
        std::fs::write(&key_file, "robot-key\n").unwrap();
        let text = format!(
            r#"
            [connectors.tencent_sms.default]
            secret_id = "AKID"
            secret_key = "${{SMS_KEY}}"
            endpoint = "http://127.0.0.1:1"
            rate_limit = "10/s"
            on_ambiguous = "dead_letter"

            [connectors.wecom_robot.ops]
            key = "file:{}"
            "#,
            key_file.display()
        );
        let config = Config::parse(&text, &env).unwrap();
        let sms = config.get("tencent_sms", "default").unwrap();
        assert_eq!(sms.fields["secret_key"].as_str(), Some("s3cr3t"));
        assert_eq!(sms.common.on_ambiguous, OnAmbiguous::DeadLetter);
        assert_eq!(sms.common.rate_limit.as_deref(), Some("10/s"));
        assert!(!sms.fields.contains_key("endpoint"));
        assert_eq!(config.get("wecom_robot", "ops").unwrap().fields["key"].as_str(), Some("robot-key"));
    }

    #[test]
    fn errors_name_the_field_not_the_value() {
        let err = Config::parse("[connectors.tencent_sms.x]\nsecret_key = \"${NOPE}\"\n", &env).unwrap_err();
        assert_eq!(err.to_string(), "connectors.tencent_sms.x.secret_key: environment variable NOPE is not set");
        let err = Config::parse("[connectors.pigeon.x]\nkey = \"k\"\n", &env).unwrap_err();
        assert_eq!(err.to_string(), "connectors.pigeon: unknown connector kind");
        let err = Config::parse("[connectors.wecom_robot.x]\nrate_limit = \"fast\"\n", &env).unwrap_err();
        assert!(err.to_string().starts_with("connectors.wecom_robot.x.rate_limit: "), "{err}");
    }

    #[test]
    fn secrets_are_redacted() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?} {secret}"), "Secret(***) ***");
    }
}

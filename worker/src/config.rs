//! The connector config file (TOML): `[connectors.<kind>.<name>]` tables.
//!
//! String values may be `"${VAR}"` (read from the environment) or `"file:/path"` (read from a
//! file, trailing newline trimmed), so that secrets stay out of the file. Secret fields are held
//! as [`Secret`], whose `Debug` and `Display` never show the value.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use yizhan_schemas::Priority;

use crate::timerules::{self, DailyWindow, OnCap, QuietHours, RecipientCaps, TimeRules};

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
    /// A daily window of local time, `HH:MM-HH:MM` (`21:00-08:00`), in which jobs of the
    /// `quiet_priorities` wait for its end.
    #[serde(default)]
    pub quiet_hours: Option<String>,
    /// The IANA time zone of `quiet_hours` (`Asia/Shanghai`); UTC when absent.
    #[serde(default)]
    pub timezone: Option<String>,
    /// The priorities quiet hours hold back (`high`, `normal`, `bulk`); `["bulk"]` when absent.
    #[serde(default)]
    pub quiet_priorities: Option<Vec<String>>,
    /// Frequency caps per recipient, comma-separated `N/<span>` (`1/30s, 5/h, 10/d`).
    #[serde(default)]
    pub recipient_caps: Option<String>,
    /// What happens to a recipient over its caps: `drop` (default) or `defer`.
    #[serde(default)]
    pub on_cap: Option<String>,
    /// Another config of the same kind that takes this config's jobs when it cannot: paused by
    /// provider back-pressure longer than `fallback_after`, `fallback_attempts` transient attempts
    /// used, or its provider unreachable.
    #[serde(default)]
    pub fallback: Option<String>,
    /// A provider pause longer than this sends the job to the fallback (`30s` when absent).
    #[serde(default)]
    pub fallback_after: Option<String>,
    /// After this many transient attempts on this config the next ones go to the fallback (3 when absent).
    #[serde(default)]
    pub fallback_attempts: Option<u32>,
    /// The five fields above, parsed and validated by [`Config::parse`] (default: no rules).
    #[serde(skip)]
    time_rules: TimeRules,
}

const COMMON_FIELDS: &[&str] = &[
    "endpoint",
    "rate_limit",
    "on_ambiguous",
    "quiet_hours",
    "timezone",
    "quiet_priorities",
    "recipient_caps",
    "on_cap",
    "fallback",
    "fallback_after",
    "fallback_attempts",
];

impl CommonConfig {
    /// The parsed time rules (`quiet_hours`, `timezone`, `quiet_priorities`, `recipient_caps`,
    /// `on_cap`), as validated by [`Config::parse`]; no rules for a default config.
    pub fn time_rules(&self) -> &TimeRules {
        &self.time_rules
    }

    /// The config's fallback, with its defaults (`fallback_after = "30s"`, `fallback_attempts = 3`);
    /// the fields were checked by [`Config::parse`].
    pub fn fallback(&self) -> Option<Fallback> {
        let config = self.fallback.clone()?;
        let after = self
            .fallback_after
            .as_deref()
            .and_then(|text| humantime::parse_duration(text.trim()).ok())
            .unwrap_or(Fallback::DEFAULT_AFTER);
        Some(Fallback { config, after, attempts: self.fallback_attempts.unwrap_or(Fallback::DEFAULT_ATTEMPTS) })
    }

    /// Parses the time-rule fields into `time_rules`; errors name
    /// `<at>.<field>`. A field that would have no effect (a `timezone` without `quiet_hours`, an
    /// `on_cap` without `recipient_caps`) is refused rather than ignored.
    fn parse_time_rules(&mut self, at: &str) -> Result<(), ConfigError> {
        let quiet = match &self.quiet_hours {
            Some(window) => {
                let window = DailyWindow::parse(window)
                    .map_err(|reason| ConfigError::field(format!("{at}.quiet_hours"), reason))?;
                let zone = match &self.timezone {
                    Some(name) => timerules::parse_time_zone(name)
                        .map_err(|reason| ConfigError::field(format!("{at}.timezone"), reason))?,
                    None => jiff::tz::TimeZone::UTC,
                };
                let priorities = match &self.quiet_priorities {
                    Some(names) if names.is_empty() => {
                        return Err(ConfigError::field(
                            format!("{at}.quiet_priorities"),
                            "is empty: list at least one of high, normal, bulk (or remove quiet_hours)",
                        ));
                    }
                    Some(names) => {
                        let mut priorities = Vec::new();
                        for (i, name) in names.iter().enumerate() {
                            let priority = timerules::parse_priority(name)
                                .map_err(|reason| ConfigError::field(format!("{at}.quiet_priorities[{i}]"), reason))?;
                            if !priorities.contains(&priority) {
                                priorities.push(priority);
                            }
                        }
                        priorities
                    }
                    None => vec![Priority::Bulk],
                };
                Some(QuietHours::new(window, zone, priorities))
            }
            None => {
                for (field, set) in
                    [("timezone", self.timezone.is_some()), ("quiet_priorities", self.quiet_priorities.is_some())]
                {
                    if set {
                        return Err(ConfigError::field(
                            format!("{at}.{field}"),
                            "has no effect without quiet_hours (set quiet_hours or remove it)",
                        ));
                    }
                }
                None
            }
        };
        let caps = match &self.recipient_caps {
            Some(text) => Some(
                RecipientCaps::parse(text)
                    .map_err(|reason| ConfigError::field(format!("{at}.recipient_caps"), reason))?,
            ),
            None => None,
        };
        let on_cap = match &self.on_cap {
            Some(_) if caps.is_none() => {
                return Err(ConfigError::field(
                    format!("{at}.on_cap"),
                    "has no effect without recipient_caps (set recipient_caps or remove it)",
                ));
            }
            Some(text) => OnCap::parse(text).map_err(|reason| ConfigError::field(format!("{at}.on_cap"), reason))?,
            None => OnCap::default(),
        };
        self.time_rules = TimeRules { quiet, caps, on_cap };
        Ok(())
    }
}

/// Where a config's jobs go when it cannot take them: a second account of the same provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback {
    /// The name of another config of the same kind.
    pub config: String,
    /// A provider pause of the primary longer than this sends the job to the fallback.
    pub after: std::time::Duration,
    /// After this many transient attempts on the primary the next ones go to the fallback.
    pub attempts: u32,
}

impl Fallback {
    /// `fallback_after` when absent.
    pub const DEFAULT_AFTER: std::time::Duration = std::time::Duration::from_secs(30);
    /// `fallback_attempts` when absent.
    pub const DEFAULT_ATTEMPTS: u32 = 3;
}

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
                        // A sync's script is loaded by its connector, which needs the path for its
                        // errors (a syntax error names the file and line).
                        let value = if kind == "directory_sync" && field == "script" {
                            value.clone()
                        } else {
                            resolve(value, &format!("{at}.{field}"), env)?
                        };
                        if COMMON_FIELDS.contains(&field.as_str()) {
                            common.insert(field.clone(), value);
                        } else {
                            fields.insert(field.clone(), value);
                        }
                    }
                    // Field by field first, so that a value of the wrong type is named by its path.
                    for (field, value) in &common {
                        let single = toml::Table::from_iter([(field.clone(), value.clone())]);
                        CommonConfig::deserialize(toml::Value::Table(single))
                            .map_err(|e| ConfigError::field(format!("{at}.{field}"), e.message().to_string()))?;
                    }
                    let mut common = CommonConfig::deserialize(toml::Value::Table(common))
                        .map_err(|e| ConfigError::field(&at, e.message().to_string()))?;
                    if let Some(limit) = &common.rate_limit {
                        crate::ratelimit::Quota::parse_all(limit)
                            .map_err(|reason| ConfigError::field(format!("{at}.rate_limit"), reason))?;
                    }
                    common.parse_time_rules(&at)?;
                    if common.fallback.is_none() {
                        for (field, set) in [
                            ("fallback_after", common.fallback_after.is_some()),
                            ("fallback_attempts", common.fallback_attempts.is_some()),
                        ] {
                            if set {
                                return Err(ConfigError::field(
                                    format!("{at}.{field}"),
                                    "has no effect without fallback",
                                ));
                            }
                        }
                    }
                    if let Some(after) = &common.fallback_after {
                        parse_duration_field(&format!("{at}.fallback_after"), after)?;
                    }
                    if common.fallback_attempts == Some(0) {
                        return Err(ConfigError::field(format!("{at}.fallback_attempts"), "must be at least 1"));
                    }
                    config.connectors.insert(
                        (kind.clone(), name.clone()),
                        ConnectorConfig { kind: kind.clone(), name: name.clone(), common, fields },
                    );
                }
            }
        }
        config.check_fallbacks()?;
        Ok(config)
    }

    /// Every `fallback` names another config of the same kind, and no chain comes back to where
    /// it started (a job would go round for ever).
    fn check_fallbacks(&self) -> Result<(), ConfigError> {
        for ((kind, name), config) in &self.connectors {
            let at = format!("{}.fallback", config.path());
            let mut chain = vec![name.as_str()];
            let mut next = config.common.fallback.as_deref();
            while let Some(fallback) = next {
                let Some(target) = self.get(kind, fallback) else {
                    return Err(ConfigError::field(at, format!("no {kind} config named {fallback:?}")));
                };
                if chain.contains(&fallback) {
                    chain.push(fallback);
                    return Err(ConfigError::field(
                        at,
                        format!("fallbacks go round in a circle: {}", chain.join(" -> ")),
                    ));
                }
                chain.push(fallback);
                next = target.common.fallback.as_deref();
            }
        }
        Ok(())
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

    fn time_rules_error(fields: &str) -> String {
        let text = format!("[connectors.tencent_sms.marketing]\nsecret_id = \"AKID\"\n{fields}\n");
        Config::parse(&text, &env).unwrap_err().to_string()
    }

    #[test]
    fn parses_time_rules() {
        let text = r#"
            [connectors.tencent_sms.marketing]
            quiet_hours = "21:00-08:00"
            timezone = "Asia/Shanghai"
            quiet_priorities = ["bulk", "normal"]
            recipient_caps = "1/30s, 5/h, 10/d"
            on_cap = "defer"

            [connectors.tencent_sms.codes]
            secret_id = "AKID"
        "#;
        let config = Config::parse(text, &env).unwrap();
        let marketing = config.get("tencent_sms", "marketing").unwrap();
        assert!(!marketing.fields.contains_key("quiet_hours") && !marketing.fields.contains_key("on_cap"));
        let rules = marketing.common.time_rules();
        let quiet = rules.quiet.as_ref().unwrap();
        assert_eq!(quiet.priorities(), [Priority::Bulk, Priority::Normal]);
        // 22:00 in Shanghai is 14:00Z; the window ends at 08:00 there, 00:00Z.
        let now: jiff::Timestamp = "2025-05-01T14:00:00Z".parse().unwrap();
        assert_eq!(quiet.defer_until(now, Priority::Normal), Some("2025-05-02T00:00:00Z".parse().unwrap()));
        assert_eq!(quiet.defer_until(now, Priority::High), None);
        assert_eq!(rules.caps.as_ref().unwrap().windows().len(), 3);
        assert_eq!(rules.on_cap, OnCap::Defer);
        // Defaults: UTC and bulk only; no rules at all without the keys.
        let config = Config::parse("[connectors.wecom_robot.x]\nquiet_hours = \"12:00-14:00\"\n", &env).unwrap();
        let quiet = config.get("wecom_robot", "x").unwrap().common.time_rules().quiet.clone().unwrap();
        assert_eq!(quiet.priorities(), [Priority::Bulk]);
        assert!(quiet.window_end("2025-05-01T13:00:00Z".parse().unwrap()).is_some());
        let robot = config.get("wecom_robot", "x").unwrap().common.time_rules();
        assert!(robot.caps.is_none() && robot.on_cap == OnCap::Drop);
        let plain = Config::parse(text, &env).unwrap();
        let plain = plain.get("tencent_sms", "codes").unwrap().common.time_rules();
        assert!(plain.quiet.is_none() && plain.caps.is_none());
    }

    #[test]
    fn bad_time_rules_stop_the_worker_with_the_path() {
        let at = "connectors.tencent_sms.marketing";
        assert_eq!(
            time_rules_error("quiet_hours = \"21:00-25:00\""),
            format!("{at}.quiet_hours: 25:00 is not a time of day (HH:MM, 00:00-23:59)")
        );
        assert!(time_rules_error("quiet_hours = \"08:00-08:00\"").starts_with(&format!("{at}.quiet_hours: ")));
        assert!(
            time_rules_error("quiet_hours = \"21:00-08:00\"\ntimezone = \"Mars/Olympus\"")
                .starts_with(&format!("{at}.timezone: \"Mars/Olympus\" is not a time zone"))
        );
        assert!(
            time_rules_error("quiet_hours = \"21:00-08:00\"\nquiet_priorities = [\"bulk\", \"urgent\"]")
                .starts_with(&format!("{at}.quiet_priorities[1]: \"urgent\" is not a priority"))
        );
        assert!(
            time_rules_error("quiet_hours = \"21:00-08:00\"\nquiet_priorities = []")
                .starts_with(&format!("{at}.quiet_priorities: is empty"))
        );
        assert!(time_rules_error("timezone = \"UTC\"").starts_with(&format!("{at}.timezone: has no effect")));
        assert!(
            time_rules_error("recipient_caps = \"3/fortnight\"")
                .starts_with(&format!("{at}.recipient_caps: \"3/fortnight\": unknown unit"))
        );
        assert!(
            time_rules_error("recipient_caps = \"2/min\"\non_cap = \"later\"")
                .starts_with(&format!("{at}.on_cap: \"later\" is not drop or defer"))
        );
        assert!(time_rules_error("on_cap = \"drop\"").starts_with(&format!("{at}.on_cap: has no effect")));
        // A value of the wrong type is named by its path too.
        assert!(time_rules_error("quiet_hours = 2100").starts_with(&format!("{at}.quiet_hours: ")));
        assert!(time_rules_error("on_ambiguous = \"maybe\"").starts_with(&format!("{at}.on_ambiguous: ")));
    }

    fn fallback_error(fields: &str, other: &str) -> String {
        let text = format!(
            "[connectors.wecom_robot.a]\nkey = \"k\"\n{fields}\n[connectors.wecom_robot.b]\nkey = \"k\"\n{other}\n"
        );
        Config::parse(&text, &env).unwrap_err().to_string()
    }

    #[test]
    fn fallbacks_parse_with_defaults_and_bad_chains_are_refused_with_the_path() {
        let text = "[connectors.wecom_robot.a]\nkey = \"k\"\nfallback = \"b\"\nfallback_attempts = 2\n[connectors.wecom_robot.b]\nkey = \"k\"\n";
        let config = Config::parse(text, &env).unwrap();
        let fallback = config.get("wecom_robot", "a").unwrap().common.fallback().unwrap();
        assert_eq!(fallback, Fallback { config: "b".into(), after: Fallback::DEFAULT_AFTER, attempts: 2 });
        assert_eq!(config.get("wecom_robot", "b").unwrap().common.fallback(), None);

        let missing = fallback_error("fallback = \"c\"", "");
        assert!(
            missing.starts_with("connectors.wecom_robot.a.fallback: no wecom_robot config named \"c\""),
            "{missing}"
        );
        let circle = fallback_error("fallback = \"b\"", "fallback = \"a\"");
        assert!(circle.contains("fallback: fallbacks go round in a circle: a -> b -> a"), "{circle}");
        let itself = fallback_error("fallback = \"a\"", "");
        assert!(itself.contains("a -> a"), "{itself}");
        let orphan = fallback_error("fallback_after = \"10s\"", "");
        assert!(
            orphan.starts_with("connectors.wecom_robot.a.fallback_after: has no effect without fallback"),
            "{orphan}"
        );
        let bad = fallback_error("fallback = \"b\"\nfallback_after = \"soon\"", "");
        assert!(bad.starts_with("connectors.wecom_robot.a.fallback_after: not a duration"), "{bad}");
    }

    #[test]
    fn secrets_are_redacted() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?} {secret}"), "Secret(***) ***");
    }
}

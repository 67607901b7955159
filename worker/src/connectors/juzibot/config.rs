//! `[connectors.juzibot.<name>]`: the kind-specific fields.

use serde::Deserialize;

use crate::config::{ConfigError, ConnectorConfig, Secret};

/// `token`: the hub API's credential, sent as the `token` query parameter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JuzibotConfig {
    /// The hub API token, sent as the `token` query parameter.
    pub token: Secret,
}

impl JuzibotConfig {
    /// Parses and checks the config's fields; an empty token is refused here, at start.
    pub fn from_config(config: &ConnectorConfig) -> Result<Self, ConfigError> {
        let parsed: JuzibotConfig = config.parse_fields()?;
        if parsed.token.expose().trim().is_empty() {
            return Err(ConfigError::field(format!("{}.token", config.path()), "must not be empty"));
        }
        Ok(parsed)
    }
}

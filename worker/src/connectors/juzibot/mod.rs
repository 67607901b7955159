//! `juzibot`: the Juzibot hub API (docs/providers/juzibot.md).
//!
//! Every call carries the config's `token` as a query parameter. [`Body::Query`] actions send their
//! params as query parameters, [`Body::Params`] ones as the JSON body. `errcode` 0 is success and the
//! answer without `errcode`/`errmsg` is the result (`next_cursor` / `total` included for paging).
//! The token travels in the query, so no reason quotes a URL and every reason is scrubbed of it.

pub mod config;
pub mod error;
#[cfg(test)]
mod tests;

use serde_json::Value;
use yizhan_schemas::{Body, Endpoint};

use self::config::JuzibotConfig;
use super::call::{Call, Connector, Failure, Success};
use super::http;
use super::json_api::{self, Answer};
use crate::config::{ConfigError, ConnectorConfig, Secret};

/// The scheme and host of the Juzibot hub API; a config's `endpoint` replaces it.
pub const DEFAULT_BASE: &str = "https://hub.juzibot.com";

/// A Juzibot config.
#[derive(Debug)]
pub struct Juzibot {
    base: String,
    token: Secret,
    client: reqwest::Client,
}

impl Juzibot {
    /// Checks the config's fields and builds the connector on the worker's shared HTTP client.
    pub fn new(config: &ConnectorConfig, client: reqwest::Client) -> Result<Self, ConfigError> {
        let fields = JuzibotConfig::from_config(config)?;
        let base = json_api::checked_base(config, DEFAULT_BASE)?;
        Ok(Juzibot { base, token: fields.token, client })
    }

    async fn call(&self, call: Call<'_>) -> Result<Success, Failure> {
        let Endpoint::Http { method, path, body } = call.action.endpoint else {
            return Err(Failure::permanent(format!("juzibot cannot execute {:?}", call.action.endpoint)));
        };
        let mut query = vec![("token".to_string(), self.token.expose().to_string())];
        let builder = self.client.request(json_api::method(method), format!("{}{path}", self.base));
        let builder = match body {
            Body::Params => builder.json(call.params),
            Body::Query { renames } => {
                query.extend(json_api::query_pairs(call.params, renames)?);
                builder
            }
            other => return Err(Failure::permanent(format!("juzibot cannot send a {other:?} body"))),
        };
        let secrets = [self.token.expose()];
        let response = builder.query(&query).send().await.map_err(|e| http::transport_failure(e, &secrets))?;
        let answer = Answer::read(response, &secrets).await?;
        if !answer.status.is_success() {
            return Err(answer.status_failure(&secrets));
        }
        let errcode = answer.code("errcode");
        match (errcode, answer.json) {
            (Some(0), Some(mut json)) => {
                json.remove("errcode");
                json.remove("errmsg");
                Ok(Success { result: Some(Value::Object(json)), receipts: Default::default() })
            }
            (Some(code), Some(json)) => {
                Err(error::classify(code, json.get("errmsg").and_then(Value::as_str).unwrap_or_default()))
            }
            // The call may or may not have acted: a lost answer, which only the pipeline's `classify`
            // turns into a retry (a read) or the config's `on_ambiguous` (a write).
            _ => Err(Failure::Ambiguous { reason: format!("answer without errcode: {}", http::snippet(&answer.body)) }),
        }
    }
}

#[async_trait::async_trait]
impl Connector for Juzibot {
    async fn execute(&self, call: Call<'_>) -> Result<Success, Failure> {
        self.call(call).await.map_err(|failure| failure.redact_secrets(&[self.token.expose()]))
    }
}

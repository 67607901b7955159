//! `feishu`: a Feishu self-built app's contact (directory) reads (docs/providers/feishu.md#contact-reads).
//!
//! Every call carries `Authorization: Bearer <tenant_access_token>`. The token is fetched from
//! `POST /open-apis/auth/v3/tenant_access_token/internal` and cached until 30 minutes before its
//! expiry (Feishu hands out a new one only then). One request at a time refreshes it: the cache sits
//! behind an async mutex held across the fetch, so jobs needing a token meanwhile wait for that
//! fetch instead of starting their own. Token-invalid codes drop the cached token and are retried.
//!
//! Reads are [`Body::Query`] GETs; a read's result is the answer's `data` (with `has_more` and
//! `page_token` for the next page). Contact writes are [`Body::Params`] calls
//! (docs/providers/feishu.md#contact-writes): each `{param}` of the path is filled from the params,
//! [`QUERY_PARAMS`] go in the query and the rest is the JSON body (none for a DELETE); the result
//! is the answer's `data`.

pub mod config;
pub mod error;
#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::AUTHORIZATION;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use yizhan_schemas::{Body, Endpoint, Method};

use self::config::FeishuConfig;
use super::call::{Call, Connector, Failure, Success};
use super::http;
use super::json_api::{self, Answer};
use crate::config::{ConfigError, ConnectorConfig, Secret};

/// The scheme and host of Feishu's open platform; a config's `endpoint` replaces it.
pub const DEFAULT_BASE: &str = "https://open.feishu.cn";
/// Where a self-built app exchanges `app_id` and `app_secret` for a tenant_access_token.
pub const TOKEN_PATH: &str = "/open-apis/auth/v3/tenant_access_token/internal";
/// Feishu returns the same token until less than 30 minutes are left, then a new one.
pub const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(30 * 60);
const RATE_LIMIT_RESET: &str = "x-ogw-ratelimit-reset";
/// The params of a contact write that Feishu takes in the query, not the body.
pub const QUERY_PARAMS: [&str; 3] = ["user_id_type", "department_id_type", "client_token"];

#[derive(Debug, Clone)]
struct CachedToken {
    token: Secret,
    /// When the token is refreshed (30 minutes before Feishu's expiry).
    refresh_at: Instant,
}

/// A Feishu app config.
#[derive(Debug)]
pub struct Feishu {
    base: String,
    app_id: String,
    app_secret: Secret,
    client: reqwest::Client,
    token: Mutex<Option<CachedToken>>,
}

impl Feishu {
    /// Checks the config's fields and builds the connector on the worker's shared HTTP client.
    pub fn new(config: &ConnectorConfig, client: reqwest::Client) -> Result<Self, ConfigError> {
        let fields = FeishuConfig::from_config(config)?;
        let base = json_api::checked_base(config, DEFAULT_BASE)?;
        Ok(Feishu { base, app_id: fields.app_id, app_secret: fields.app_secret, client, token: Mutex::new(None) })
    }

    /// The cached token, or a fresh one. Holding the lock across the fetch is the single flight.
    async fn token(&self) -> Result<Secret, Failure> {
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref().filter(|t| Instant::now() < t.refresh_at) {
            return Ok(token.token.clone());
        }
        let fresh = self.fetch_token().await?;
        let token = fresh.token.clone();
        *cached = Some(fresh);
        Ok(token)
    }

    /// Drops the cached token if it is still `token` (a concurrent job may have replaced it).
    async fn forget_token(&self, token: &Secret) {
        let mut cached = self.token.lock().await;
        if cached.as_ref().is_some_and(|c| c.token.expose() == token.expose()) {
            *cached = None;
        }
    }

    async fn fetch_token(&self) -> Result<CachedToken, Failure> {
        let secrets = [self.app_secret.expose()];
        let started = Instant::now();
        let response = self
            .client
            .post(format!("{}{TOKEN_PATH}", self.base))
            .json(&json!({"app_id": self.app_id, "app_secret": self.app_secret.expose()}))
            .send()
            .await
            .map_err(|e| http::transport_failure(e, &secrets))
            .map_err(token_context)?;
        let answer = Answer::read(response, &secrets).await.map_err(token_context)?;
        match answer.code("code") {
            Some(0) => {}
            Some(code) if code == error::RATE_LIMITED => {
                return Err(error::classify(code, answer.text("msg"), answer.seconds_header(RATE_LIMIT_RESET)));
            }
            Some(code) => return Err(error::token_failure(code, answer.text("msg"))),
            None if !answer.status.is_success() => return Err(token_context(answer.status_failure(&secrets))),
            None => {
                // Nothing was changed at Feishu: asking again is harmless.
                return Err(Failure::transient(format!(
                    "tenant_access_token: unreadable answer: {}",
                    http::snippet(&answer.body)
                )));
            }
        }
        let token = answer.text("tenant_access_token");
        let expire = answer.json.as_ref().and_then(|j| j.get("expire")).and_then(Value::as_u64).unwrap_or(0);
        if token.is_empty() {
            return Err(Failure::transient("tenant_access_token: answer without a token"));
        }
        let lifetime = Duration::from_secs(expire).saturating_sub(REFRESH_BEFORE_EXPIRY);
        Ok(CachedToken { token: Secret::new(token), refresh_at: started + lifetime })
    }

    async fn call(&self, call: Call<'_>) -> Result<Success, Failure> {
        let (method, path, query, body) = match call.action.endpoint {
            Endpoint::Http { method, path, body: Body::Query { renames } } => {
                (method, path.to_string(), json_api::query_pairs(call.params, renames)?, None)
            }
            Endpoint::Http { method, path, body: Body::Params } => {
                let mut params =
                    call.params.as_object().cloned().ok_or_else(|| Failure::permanent("params must be an object"))?;
                let path = json_api::fill_path(path, &mut params)?;
                let query_params: serde_json::Map<String, Value> =
                    QUERY_PARAMS.iter().filter_map(|name| Some((name.to_string(), params.remove(*name)?))).collect();
                let query = json_api::query_pairs(&Value::Object(query_params), &[])?;
                let body = (method != Method::Delete).then_some(Value::Object(params));
                (method, path, query, body)
            }
            other => return Err(Failure::permanent(format!("feishu cannot execute {other:?}"))),
        };
        let token = self.token().await?;
        self.request(json_api::method(method), &path, &query, body.as_ref(), &token)
            .await
            .map_err(|failure| failure.redact_secrets(&[token.expose()]))
    }

    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(String, String)],
        body: Option<&Value>,
        token: &Secret,
    ) -> Result<Success, Failure> {
        let secrets = [self.app_secret.expose(), token.expose()];
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header(AUTHORIZATION, format!("Bearer {}", token.expose()))
            .query(query);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| http::transport_failure(e, &secrets))?;
        let answer = Answer::read(response, &secrets).await?;
        let reset = answer.seconds_header(RATE_LIMIT_RESET);
        match answer.code("code") {
            Some(0) if answer.status.is_success() => {
                let data = answer.json.and_then(|mut j| j.remove("data")).unwrap_or(Value::Null);
                Ok(Success { result: Some(data), receipts: Default::default() })
            }
            Some(code) if code != 0 => {
                if error::TOKEN_INVALID.contains(&code) {
                    self.forget_token(token).await;
                }
                Err(error::classify(code, answer.text("msg"), reset))
            }
            _ if answer.status == StatusCode::TOO_MANY_REQUESTS => {
                let reason = http::status_reason(answer.status, &answer.body, &secrets);
                Err(Failure::Throttled { reason, retry_after: reset.or_else(|| http::retry_after(&answer.headers)) })
            }
            _ if !answer.status.is_success() => Err(answer.status_failure(&secrets)),
            // The request may have been carried out: the pipeline's classify decides what follows.
            _ => Err(Failure::Ambiguous { reason: format!("answer without code: {}", http::snippet(&answer.body)) }),
        }
    }
}

/// `tenant_access_token: ` before a reason. Fetching a token changes nothing at Feishu, so a lost
/// answer is simply retried.
fn token_context(failure: Failure) -> Failure {
    failure.lost_is_transient().map_reason(|reason| format!("tenant_access_token: {reason}"))
}

#[async_trait::async_trait]
impl Connector for Feishu {
    async fn execute(&self, call: Call<'_>) -> Result<Success, Failure> {
        self.call(call).await.map_err(|failure| failure.redact_secrets(&[self.app_secret.expose()]))
    }
}

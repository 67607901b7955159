//! Access tokens per (corp_id, secret), cached and refreshed by a single request.
//!
//! Each secret has a [`TokenSlot`]: an async mutex around the cached token, held across the
//! `gettoken` request, so every job needing the token meanwhile waits for that one request instead
//! of starting its own (WeCom throttles `gettoken`, docs/providers/wecom.md#access-token).

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::Mutex;

use super::error;
use crate::config::Secret;
use crate::connectors::call::Failure;
use crate::connectors::http;
use crate::connectors::json_api::Answer;

/// `GET {base}/cgi-bin/gettoken?corpid=…&corpsecret=…`: a secret's access token and its `expires_in`.
pub const GETTOKEN_PATH: &str = "/cgi-bin/gettoken";
/// Refresh this long before `expires_in` runs out, so no call goes out with a token about to lapse.
pub const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
struct Cached {
    token: Secret,
    refresh_at: Instant,
}

/// The token of one secret of one corp.
#[derive(Debug)]
pub struct TokenSlot {
    corp_id: String,
    secret: Secret,
    cached: Mutex<Option<Cached>>,
}

impl TokenSlot {
    /// An empty slot; the first [`TokenSlot::token`] fetches the token.
    pub fn new(corp_id: &str, secret: Secret) -> Self {
        TokenSlot { corp_id: corp_id.to_string(), secret, cached: Mutex::new(None) }
    }

    /// The slot's secret, so that reasons can be scrubbed of it.
    pub fn secret(&self) -> &Secret {
        &self.secret
    }

    /// The cached token, or a fresh one.
    pub async fn token(&self, client: &reqwest::Client, base: &str) -> Result<Secret, Failure> {
        let mut cached = self.cached.lock().await;
        if let Some(token) = cached.as_ref().filter(|c| Instant::now() < c.refresh_at) {
            return Ok(token.token.clone());
        }
        let fresh = self.fetch(client, base).await?;
        let token = fresh.token.clone();
        *cached = Some(fresh);
        Ok(token)
    }

    /// A token other than `rejected` (which WeCom called invalid or expired): the one another job
    /// fetched meanwhile, else a fresh one. So many jobs hit by one expiry refresh it once.
    pub async fn replace(&self, client: &reqwest::Client, base: &str, rejected: &Secret) -> Result<Secret, Failure> {
        let mut cached = self.cached.lock().await;
        if let Some(token) =
            cached.as_ref().filter(|c| c.token.expose() != rejected.expose() && Instant::now() < c.refresh_at)
        {
            return Ok(token.token.clone());
        }
        *cached = None;
        let fresh = self.fetch(client, base).await?;
        let token = fresh.token.clone();
        *cached = Some(fresh);
        Ok(token)
    }

    async fn fetch(&self, client: &reqwest::Client, base: &str) -> Result<Cached, Failure> {
        let secrets = [self.secret.expose()];
        let started = Instant::now();
        let response = client
            .get(format!("{base}{GETTOKEN_PATH}"))
            .query(&[("corpid", self.corp_id.as_str()), ("corpsecret", self.secret.expose())])
            .send()
            .await
            .map_err(|e| context(http::transport_failure(e, &secrets)))?;
        let answer = Answer::read(response, &secrets).await.map_err(context)?;
        if !answer.status.is_success() {
            return Err(context(answer.status_failure(&secrets)));
        }
        match answer.code("errcode") {
            Some(0) | None => {}
            Some(code) => return Err(error::token_failure(code, answer.text("errmsg"))),
        }
        let token = answer.text("access_token");
        if token.is_empty() {
            return Err(Failure::transient(format!(
                "gettoken: answer without a token: {}",
                http::snippet(&answer.body)
            )));
        }
        let expires_in = answer.json.as_ref().and_then(|j| j.get("expires_in")).and_then(Value::as_u64).unwrap_or(7200);
        let lifetime = Duration::from_secs(expires_in).saturating_sub(REFRESH_BEFORE_EXPIRY);
        Ok(Cached { token: Secret::new(token), refresh_at: started + lifetime })
    }
}

/// `gettoken: ` before a reason. Fetching a token changes nothing at WeCom, so a lost answer is
/// simply retried.
fn context(failure: Failure) -> Failure {
    failure.lost_is_transient().map_reason(|reason| format!("gettoken: {reason}"))
}

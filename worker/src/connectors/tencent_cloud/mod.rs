//! Tencent Cloud API 3.0, shared by every service's connector (`tencent_sms`, `tencent_ses`): the
//! endpoint, the TC3 signature ([`sign`]), the signed `POST /` and the `Response` envelope with
//! its common error codes ([`error`]). Wire details: docs/providers/tencent-cloud.md#requests.

pub mod error;
pub mod sign;

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use serde::Deserialize;

use self::sign::{SignInput, Tc3Signer};
use super::call::Failure;
use super::http;
use crate::config::{ConfigError, ConnectorConfig, Secret};

/// Sent and signed byte for byte.
const JSON: &str = "application/json";

/// One API 3.0 service, as its connector calls it.
#[derive(Debug, Clone, Copy)]
pub struct Service {
    /// The signature's service name, such as `sms`.
    pub name: &'static str,
    /// `X-TC-Version`.
    pub version: &'static str,
    /// The endpoint unless the config names one; it picks the nearest region's access point.
    pub default_base: &'static str,
    /// Whether an HTTP 5xx may come after the backend acted, so the request may have been carried
    /// out (SMS: docs/providers/tencent-cloud.md#lost-sendsms-answers); otherwise a non-200 answer
    /// did not come from the API and is only transient.
    pub server_errors_may_have_acted: bool,
}

/// `{"Response": ...}`: every answer of the API, success or refusal.
#[derive(Debug, Deserialize)]
pub struct Envelope<T> {
    /// `Response`: the action's fields, or `Error` and `RequestId` when refused.
    #[serde(rename = "Response")]
    pub response: T,
}

/// The signed calls of one config to one service.
#[derive(Debug)]
pub struct Client {
    service: Service,
    /// `{base}/`: API 3.0 always posts to `/`.
    pub(crate) url: reqwest::Url,
    /// `Host` as sent and signed: `host` or `host:port`.
    pub(crate) host: String,
    pub(crate) region: String,
    signer: Tc3Signer,
    /// Only to scrub it from reasons, belt and braces: the key itself is never sent.
    secret_key: Secret,
    client: reqwest::Client,
}

impl Client {
    /// A client for `service` at the config's `endpoint` (or the service's default), signing with
    /// the API key and sending `region` as `X-TC-Region`.
    pub fn new(
        config: &ConnectorConfig,
        service: Service,
        secret_id: String,
        secret_key: Secret,
        region: String,
        client: reqwest::Client,
    ) -> Result<Self, ConfigError> {
        let (url, host) = endpoint(config, service.default_base)?;
        Ok(Client {
            service,
            url,
            host,
            region,
            signer: Tc3Signer::new(secret_id, secret_key.clone(), service.name),
            secret_key,
            client,
        })
    }

    /// What reasons must never quote.
    pub fn secrets(&self) -> [&str; 1] {
        [self.secret_key.expose()]
    }

    /// One signed request of `action`, signed afresh (a retry never reuses an expired timestamp);
    /// the body of its HTTP 200 answer.
    pub async fn post(&self, action: &str, body: &[u8]) -> Result<Vec<u8>, Failure> {
        let timestamp = chrono::Utc::now().timestamp();
        let authorization = self.signer.authorization(&SignInput {
            host: &self.host,
            timestamp,
            content_type: JSON,
            body,
            extra_headers: &[],
        });
        let response = self
            .client
            .post(self.url.clone())
            .header(CONTENT_TYPE, JSON)
            .header(HOST, &self.host)
            .header("X-TC-Action", action)
            .header("X-TC-Version", self.service.version)
            .header("X-TC-Timestamp", timestamp.to_string())
            .header("X-TC-Region", &self.region)
            .header(AUTHORIZATION, authorization)
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| http::transport_failure(e, &self.secrets()))?;
        let status = response.status();
        if status != StatusCode::OK {
            // The SDKs treat any non-200 as a network error; see `server_errors_may_have_acted`.
            // The body is only quoted, so a body that cannot be read changes nothing.
            let retry_after = http::retry_after(response.headers());
            let bytes = response.bytes().await.unwrap_or_default();
            let reason = http::status_reason(status, &bytes, &self.secrets());
            return Err(if status.is_server_error() && self.service.server_errors_may_have_acted {
                Failure::Ambiguous { reason }
            } else {
                Failure::Transient { reason, retry_after, progress: None }
            });
        }
        let bytes = response.bytes().await.map_err(|e| http::transport_failure(e, &self.secrets()))?;
        Ok(bytes.to_vec())
    }
}

/// The `POST /` URL of a service (the config's `endpoint`, else `default_base`) and the `Host`
/// its requests are signed with.
fn endpoint(config: &ConnectorConfig, default_base: &str) -> Result<(reqwest::Url, String), ConfigError> {
    let base = http::base_url(config.common.endpoint.as_deref(), default_base);
    let endpoint_error = |reason: String| ConfigError::field(format!("{}.endpoint", config.path()), reason);
    let url = reqwest::Url::parse(&format!("{base}/")).map_err(|e| endpoint_error(format!("not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(endpoint_error("must be an http:// or https:// URL".into()));
    }
    let host = host_header(&url).ok_or_else(|| endpoint_error("has no host".into()))?;
    Ok((url, host))
}

/// What reqwest puts in `Host`: the port only when it is not the scheme's default.
fn host_header(url: &reqwest::Url) -> Option<String> {
    let host = url.host_str()?;
    Some(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    })
}

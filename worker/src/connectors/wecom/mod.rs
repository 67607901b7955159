//! `wecom`: the WeCom application API (docs/providers/wecom.md), all 48 catalog actions interpreted from
//! their entries.
//!
//! * The secret of a call follows from its path ([`wecom_area`]); each secret has its own cached
//!   token ([`token::TokenSlot`]), fetched by one request however many jobs wait for it.
//! * [`Body::Params`] → JSON body, [`Body::Query`] → query parameters, [`Body::Wrapped`] →
//!   `{field: params}` with the `outside` params beside it; every call carries `?access_token=`.
//! * 40014/42001 replace the token and retry the call once, within the same attempt.
//! * `errcode` 0 (or absent) is success: the answer without `errcode`/`errmsg` is the result
//!   (with `next_cursor` for paged reads).

pub mod config;
pub mod error;
#[cfg(test)]
mod tests;
pub mod token;

use base64::Engine as _;
use serde_json::{Map, Value};
use yizhan_schemas::catalog::wecom::{WecomCredential, wecom_area};
use yizhan_schemas::{Body, Effect, Endpoint};
use yizhan_state::redact;

use self::config::WecomConfig;
use self::token::TokenSlot;
use super::call::{Call, Connector, Failure, Success};
use super::http;
use super::json_api::{self, Answer};
use crate::config::{ConfigError, ConnectorConfig, Secret};

/// The scheme and host of WeCom's server API; a config's `endpoint` replaces it.
pub const DEFAULT_BASE: &str = "https://qyapi.weixin.qq.com";

/// A WeCom corp config.
#[derive(Debug)]
pub struct Wecom {
    base: String,
    client: reqwest::Client,
    agentid: Option<u64>,
    /// None for a sync-only config (`corp_id` and `contacts_secret` alone, as seed 001 sets up).
    app: Option<TokenSlot>,
    contacts: Option<TokenSlot>,
    external_contact: Option<TokenSlot>,
}

/// How the params go out.
enum Payload {
    Json(Value),
    Query(Vec<(String, String)>),
    /// A multipart upload: form field, file name, bytes, and the query (`type`).
    Upload {
        field: &'static str,
        filename: String,
        bytes: Vec<u8>,
        query: Vec<(String, String)>,
    },
}

impl Wecom {
    /// Checks the config's fields and builds the connector on the worker's shared HTTP client.
    pub fn new(config: &ConnectorConfig, client: reqwest::Client) -> Result<Self, ConfigError> {
        let fields = WecomConfig::from_config(config)?;
        let base = json_api::checked_base(config, DEFAULT_BASE)?;
        let corp = fields.corp_id.as_str();
        Ok(Wecom {
            base,
            client,
            agentid: fields.agentid,
            app: fields.app_secret.map(|s| TokenSlot::new(corp, s)),
            contacts: fields.contacts_secret.map(|s| TokenSlot::new(corp, s)),
            external_contact: fields.external_contact_secret.map(|s| TokenSlot::new(corp, s)),
        })
    }

    fn slot(&self, credential: WecomCredential) -> Result<&TokenSlot, Failure> {
        match credential {
            WecomCredential::App => self
                .app
                .as_ref()
                .ok_or_else(|| Failure::permanent("this action needs `app_secret` (a sync-only config has none)")),
            WecomCredential::ExternalContact => {
                self.external_contact.as_ref().or(self.app.as_ref()).ok_or_else(|| {
                    Failure::permanent("customer contact needs `external_contact_secret` or `app_secret`")
                })
            }
            WecomCredential::Contacts => {
                self.contacts.as_ref().ok_or_else(|| Failure::permanent("contacts actions need `contacts_secret`"))
            }
        }
    }

    /// Every secret of the config, for scrubbing reasons.
    fn secrets(&self) -> Vec<&str> {
        [self.app.as_ref(), self.contacts.as_ref(), self.external_contact.as_ref()]
            .into_iter()
            .flatten()
            .map(|s| s.secret().expose())
            .collect()
    }

    fn payload(&self, call: &Call<'_>, body: Body, default_agentid: bool) -> Result<Payload, Failure> {
        let mut params =
            call.params.as_object().cloned().ok_or_else(|| Failure::permanent("params must be an object"))?;
        if default_agentid && !params.contains_key("agentid") {
            let agentid = self
                .agentid
                .ok_or_else(|| Failure::permanent("params.agentid: absent and no default `agentid` configured"))?;
            params.insert("agentid".into(), agentid.into());
        }
        match body {
            Body::Params => Ok(Payload::Json(Value::Object(params))),
            Body::Query { renames } => Ok(Payload::Query(json_api::query_pairs(&Value::Object(params), renames)?)),
            Body::Wrapped { field, outside } => {
                let mut wrapper = Map::new();
                for name in outside {
                    if let Some(value) = params.remove(*name) {
                        wrapper.insert((*name).to_string(), value);
                    }
                }
                wrapper.insert(field.to_string(), Value::Object(params));
                Ok(Payload::Json(Value::Object(wrapper)))
            }
            Body::UploadTyped { field } => {
                let text = |name: &str| params.get(name).and_then(Value::as_str).map(str::to_string);
                let filename = text("filename").ok_or_else(|| Failure::permanent("params.filename: required"))?;
                let content = text("content_base64").unwrap_or_default();
                let compact: String = content.chars().filter(|c| !c.is_ascii_whitespace()).collect();
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(compact)
                    .map_err(|e| Failure::permanent(format!("params.content_base64: invalid base64: {e}")))?;
                let query = text("type").map(|t| vec![("type".to_string(), t)]).unwrap_or_default();
                Ok(Payload::Upload { field, filename, bytes, query })
            }
            other => Err(Failure::permanent(format!("wecom cannot send a {other:?} body"))),
        }
    }

    async fn call(&self, call: Call<'_>) -> Result<Success, Failure> {
        let Endpoint::Http { method, path, body } = call.action.endpoint else {
            return Err(Failure::permanent(format!("wecom cannot execute {:?}", call.action.endpoint)));
        };
        let area = wecom_area(path);
        let slot = self.slot(area.credential)?;
        let payload = self.payload(&call, body, area.default_agentid)?;
        let read = call.action.effect == Effect::Read;
        let token = slot.token(&self.client, &self.base).await?;
        let answer = self.send(method, path, &payload, &token).await?;
        let answer = match answer.code("errcode") {
            // The token was revoked or expired early: replace it and try once more, same attempt.
            Some(code) if error::TOKEN_INVALID.contains(&code) => {
                let token = slot.replace(&self.client, &self.base, &token).await?;
                self.send(method, path, &payload, &token).await.map_err(|f| f.redact_secrets(&[token.expose()]))?
            }
            _ => answer,
        };
        outcome(answer, read, &self.secrets()).map_err(|f| f.redact_secrets(&[token.expose()]))
    }

    async fn send(
        &self,
        method: yizhan_schemas::Method,
        path: &str,
        payload: &Payload,
        token: &Secret,
    ) -> Result<Answer, Failure> {
        let mut secrets = self.secrets();
        secrets.push(token.expose());
        let builder = self
            .client
            .request(json_api::method(method), format!("{}{path}", self.base))
            .query(&[("access_token", token.expose())]);
        let builder = match payload {
            Payload::Json(body) => builder.json(body),
            Payload::Query(query) => builder.query(query),
            Payload::Upload { field, filename, bytes, query } => {
                let part = reqwest::multipart::Part::bytes(bytes.clone()).file_name(filename.clone());
                builder.query(query).multipart(reqwest::multipart::Form::new().part(*field, part))
            }
        };
        let response = builder.send().await.map_err(|e| http::transport_failure(e, &secrets))?;
        Answer::read(response, &secrets).await
    }
}

/// The job outcome of an answer.
fn outcome(answer: Answer, read: bool, secrets: &[&str]) -> Result<Success, Failure> {
    if !answer.status.is_success() {
        return Err(answer.status_failure(secrets));
    }
    let Some(mut json) = answer.json else {
        // The request may have been carried out: the pipeline's classify decides what follows.
        return Err(Failure::Ambiguous { reason: format!("unreadable answer: {}", http::snippet(&answer.body)) });
    };
    match json.get("errcode").and_then(Value::as_i64) {
        Some(0) | None => {}
        Some(code) => {
            let errmsg = json.get("errmsg").and_then(Value::as_str).unwrap_or_default();
            return Err(error::classify(code, &redact::secrets(errmsg, secrets)));
        }
    }
    json.remove("errcode");
    json.remove("errmsg");
    let result = (read || !json.is_empty()).then_some(Value::Object(json));
    Ok(Success { result, receipts: Default::default() })
}

#[async_trait::async_trait]
impl Connector for Wecom {
    async fn execute(&self, call: Call<'_>) -> Result<Success, Failure> {
        self.call(call).await.map_err(|failure| failure.redact_secrets(&self.secrets()))
    }
}

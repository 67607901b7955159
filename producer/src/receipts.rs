//! `POST /v1/receipts/tencent_sms/{config}?token=<receipt_token>`: the Tencent Cloud SMS status
//! callback (docs/providers/tencent-cloud.md#sms-status-callback), for configs with
//! `receipts = "push"`.
//!
//! The provider cannot send a bearer token, so the route is open and the callback URL carries the
//! config's `receipt_token` (from the connector config file both binaries read), compared in
//! constant time as a SHA-256 digest; an unknown config and a wrong token get the same 401. The
//! body is the provider's JSON array of reports; each is matched to its job by `sid` (the
//! `SerialNo` `SendSms` answered) and recorded once ([`StateStore::record_receipts`]). The answer
//! is what the provider expects, `{"result": 0, "errmsg": "OK"}`, once recorded; anything else
//! has a non-zero `result`. Jobs whose receipts all became final and that have a completion
//! callback get it again, with `delivery`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;
use tracing::{info, warn};
use yizhan_schemas::{Callback, CallbackBody};
use yizhan_state::{DeliveryDone, DeliveryState, Millis, Receipt, StateStore, now_millis};

use crate::Producer;

/// The route, as `ROUTES` and `openapi.json` list it.
pub const ROUTE: &str = "/v1/receipts/tencent_sms/{config}";

/// docs/providers/tencent-cloud.md#sms-status-callback: `user_receive_time` is China time (UTC+8).
const CHINA_OFFSET_SECS: i32 = 8 * 3600;

/// Why the receipt tokens could not be read from the connector config file.
#[derive(Debug, thiserror::Error)]
pub enum ReceiptConfigError {
    /// The file is not TOML.
    #[error("config file {path}: {reason}")]
    Parse {
        /// The file's path.
        path: String,
        /// The parser's message.
        reason: String,
    },
    /// A `receipt_token` cannot be resolved or is empty; the error names its config path.
    #[error("{at}: {reason}")]
    Field {
        /// `connectors.tencent_sms.<name>.receipt_token`.
        at: String,
        /// What is wrong, never the value.
        reason: String,
    },
}

/// The `receipt_token` of every `tencent_sms` config with `receipts = "push"`, as SHA-256 digests.
/// The set is swapped whole on reload ([`ReceiptTokens::replace`]): the route reads it without a
/// lock, and a callback checked before the swap is not affected by it.
#[derive(Default)]
pub struct ReceiptTokens {
    digests: ArcSwap<BTreeMap<String, [u8; 32]>>,
}

impl std::fmt::Debug for ReceiptTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiptTokens").field("configs", &self.digests.load().keys().collect::<Vec<_>>()).finish()
    }
}

impl ReceiptTokens {
    /// Reads the tokens from the connector config file; a file that does not exist yields none
    /// (every receipt is refused), one that does not parse is an error.
    pub fn load(path: &Path) -> Result<ReceiptTokens, ReceiptConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, &|var| std::env::var(var).ok()).map_err(|e| match e {
                ReceiptConfigError::Parse { reason, .. } => {
                    ReceiptConfigError::Parse { path: path.display().to_string(), reason }
                }
                other @ ReceiptConfigError::Field { .. } => other,
            }),
            Err(e) => {
                warn!(path = %path.display(), error = %e, "no connector config file: SMS receipts pushed to this API are refused");
                Ok(ReceiptTokens::default())
            }
        }
    }

    /// The tokens of config text; `${VAR}` and `file:/path` values resolve as in the worker.
    pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<ReceiptTokens, ReceiptConfigError> {
        let root: toml::Table = toml::from_str(text)
            .map_err(|e| ReceiptConfigError::Parse { path: "<text>".into(), reason: e.message().to_string() })?;
        let configs = root.get("connectors").and_then(|c| c.get("tencent_sms")).and_then(toml::Value::as_table);
        let mut digests = BTreeMap::new();
        for (name, table) in configs.into_iter().flatten() {
            let push = table.get("receipts").and_then(toml::Value::as_str) == Some("push");
            let Some(raw) = table.get("receipt_token").and_then(toml::Value::as_str).filter(|_| push) else {
                continue;
            };
            let at = format!("connectors.tencent_sms.{name}.receipt_token");
            let token = resolve(raw, env).map_err(|reason| ReceiptConfigError::Field { at: at.clone(), reason })?;
            if token.is_empty() {
                return Err(ReceiptConfigError::Field { at, reason: "is empty".into() });
            }
            digests.insert(name.clone(), digest(token.as_bytes()));
        }
        Ok(ReceiptTokens { digests: ArcSwap::from_pointee(digests) })
    }

    /// Puts `fresh` in force: from now on only its tokens verify (a rotated token replaces the
    /// old one, a removed config's callbacks are refused).
    pub fn replace(&self, fresh: ReceiptTokens) {
        self.digests.store(fresh.digests.into_inner());
    }

    /// Whether `token` is config `config`'s; constant time in the token.
    pub fn verify(&self, config: &str, token: Option<&str>) -> bool {
        let digests = self.digests.load();
        let (Some(expected), Some(token)) = (digests.get(config), token) else {
            return false;
        };
        let given = digest(token.as_bytes());
        expected.iter().zip(given).fold(0u8, |diff, (a, b)| diff | (a ^ b)) == 0
    }

    /// How many configs take pushed receipts.
    pub fn len(&self) -> usize {
        self.digests.load().len()
    }

    /// Whether no config takes pushed receipts.
    pub fn is_empty(&self) -> bool {
        self.digests.load().is_empty()
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// `${VAR}` from the environment, `file:/path` from the file (trailing newline trimmed), else the
/// text itself; the error never carries the value.
pub(crate) fn resolve(raw: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    if let Some(var) = raw.strip_prefix("${").and_then(|rest| rest.strip_suffix('}')) {
        env(var).ok_or_else(|| format!("environment variable {var} is not set"))
    } else if let Some(path) = raw.strip_prefix("file:") {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
        Ok(text.trim_end_matches(['\n', '\r']).to_string())
    } else {
        Ok(raw.to_string())
    }
}

/// One report of the callback's array; fields it does not use are ignored.
#[derive(Debug, Deserialize)]
struct Report {
    #[serde(default)]
    user_receive_time: Option<String>,
    report_status: String,
    #[serde(default)]
    errmsg: Option<String>,
    #[serde(default)]
    description: Option<String>,
    sid: String,
}

impl Report {
    /// The receipt, when the report is final (`SUCCESS` or `FAIL`) and names its message.
    fn to_receipt(&self, now: Millis) -> Option<Receipt> {
        let state = match self.report_status.as_str() {
            "SUCCESS" => DeliveryState::Delivered,
            "FAIL" => DeliveryState::Failed,
            _ => return None,
        };
        if self.sid.is_empty() {
            return None;
        }
        let code = [&self.errmsg, &self.description].into_iter().flatten().find(|c| !c.is_empty()).cloned();
        let at = self.user_receive_time.as_deref().and_then(china_time).unwrap_or(now);
        Some(Receipt { sid: self.sid.clone(), state, code, at })
    }
}

/// `YYYY-MM-DD HH:MM:SS` in China time, as ms since the Unix epoch.
fn china_time(text: &str) -> Option<Millis> {
    let local = chrono::NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%d %H:%M:%S").ok()?;
    let china = chrono::FixedOffset::east_opt(CHINA_OFFSET_SECS)?;
    Some(local.and_local_timezone(china).single()?.timestamp_millis())
}

/// The receipts of a callback body: a JSON array of reports. Reports that are not final or do
/// not parse are skipped (and counted), so that one odd report does not make the provider send
/// the others again and again.
fn parse_body(body: &[u8], now: Millis) -> Result<(Vec<Receipt>, usize), String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let Value::Array(items) = value else {
        return Err("the body must be a JSON array of status reports".into());
    };
    let total = items.len();
    let receipts: Vec<Receipt> = items
        .into_iter()
        .filter_map(|item| serde_json::from_value::<Report>(item).ok())
        .filter_map(|report| report.to_receipt(now))
        .collect();
    let skipped = total - receipts.len();
    Ok((receipts, skipped))
}

fn answer(status: StatusCode, result: i64, errmsg: &str) -> Response {
    (status, Json(json!({"result": result, "errmsg": errmsg}))).into_response()
}

/// What the receipt route needs of the API's state.
#[derive(Clone)]
pub struct ReceiptState {
    /// The workers' state store, where receipts are recorded.
    pub store: Arc<dyn StateStore>,
    /// The broker connection, once made: completion callbacks are published through it.
    pub producer: Arc<OnceCell<Producer>>,
    /// The `receipt_token` of each config whose receipts are pushed.
    pub tokens: Arc<ReceiptTokens>,
}

/// The `?token=` of the callback URL.
#[derive(Debug, Deserialize)]
pub struct TokenQuery {
    #[serde(default)]
    token: Option<String>,
}

/// `POST /v1/receipts/tencent_sms/{config}?token=...`.
pub async fn post_receipts(
    State(state): State<ReceiptState>,
    UrlPath(config): UrlPath<String>,
    Query(query): Query<TokenQuery>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if !state.tokens.verify(&config, query.token.as_deref()) {
        return answer(StatusCode::UNAUTHORIZED, 1, "unknown config or wrong token");
    }
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return answer(rejection.status(), 1, &rejection.body_text()),
    };
    let now = now_millis();
    let (receipts, skipped) = match parse_body(&body, now) {
        Ok(parsed) => parsed,
        Err(reason) => return answer(StatusCode::BAD_REQUEST, 1, &reason),
    };
    let recorded = match state.store.record_receipts(&receipts, now).await {
        Ok(recorded) => recorded,
        Err(e) => {
            warn!(error = %e, "state store");
            // Not recorded: a provider that retries will bring them again.
            return answer(StatusCode::SERVICE_UNAVAILABLE, 1, "the state store is unavailable; send them again");
        }
    };
    info!(
        config = %config,
        reports = receipts.len() + skipped,
        counted = recorded.counted,
        early = recorded.early,
        skipped,
        "SMS status reports received"
    );
    publish_callbacks(&state, &recorded.done).await;
    answer(StatusCode::OK, 0, "OK")
}

/// Sends the completion callback of each job whose receipts are all final, with `delivery`. The
/// receipts are recorded whatever happens here: a callback that cannot be published is logged.
async fn publish_callbacks(state: &ReceiptState, done: &[DeliveryDone]) {
    if done.is_empty() {
        return;
    }
    let Some(producer) = state.producer.get() else {
        warn!(jobs = done.len(), "the broker is unreachable: the delivery callbacks of these jobs are not sent");
        return;
    };
    for done in done {
        let Some((callback, body)) = delivery_callback(done) else { continue };
        if let Err(e) = yizhan_broker::publish_callback(&producer.publisher, &producer.names, &callback, body).await {
            warn!(job_id = %done.status.id, error = %e, "cannot publish the delivery callback");
        }
    }
}

/// The callback of a job whose receipts are final: its status with `delivery`.
fn delivery_callback(done: &DeliveryDone) -> Option<(Callback, CallbackBody)> {
    let callback: Callback = serde_json::from_str(&done.callback).ok()?;
    let status = &done.status;
    let body = CallbackBody {
        id: status.id,
        campaign: status.campaign,
        status: status.status.clone(),
        attempts: status.attempts,
        result: status.result.clone(),
        error: status.error.clone(),
        delivery: status.delivery.as_ref().map(|d| serde_json::to_value(d).expect("a delivery map serialises")),
    };
    Some((callback, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(var: &str) -> Option<String> {
        (var == "RECEIPT_TOKEN").then(|| "0123456789abcdef-from-env".to_string())
    }

    #[test]
    fn tokens_of_pushing_configs_verify_in_constant_time() {
        let text = r#"
            [connectors.tencent_sms.marketing]
            secret_key = "${UNSET_AND_NOT_READ}"
            receipts = "push"
            receipt_token = "${RECEIPT_TOKEN}"

            [connectors.tencent_sms.codes]
            receipts = "pull"
            receipt_token = "ignored-without-push"

            [connectors.wecom_robot.ops]
            key = "k"
        "#;
        let tokens = ReceiptTokens::parse(text, &env).unwrap();
        assert_eq!(tokens.len(), 1);
        assert!(tokens.verify("marketing", Some("0123456789abcdef-from-env")));
        assert!(!tokens.verify("marketing", Some("0123456789abcdef-from-en")));
        assert!(!tokens.verify("marketing", None));
        assert!(!tokens.verify("codes", Some("ignored-without-push")));
        assert!(!tokens.verify("nope", Some("0123456789abcdef-from-env")));
        assert!(!format!("{tokens:?}").contains("0123456789"));

        // A reload swaps the set: the rotated token verifies, the old one no longer does.
        let rotated = text.replace("${RECEIPT_TOKEN}", "rotated-receipt-token");
        tokens.replace(ReceiptTokens::parse(&rotated, &env).unwrap());
        assert!(tokens.verify("marketing", Some("rotated-receipt-token")));
        assert!(!tokens.verify("marketing", Some("0123456789abcdef-from-env")));

        let missing = "[connectors.tencent_sms.m]\nreceipts = \"push\"\nreceipt_token = \"${NOPE}\"\n";
        let error = ReceiptTokens::parse(missing, &env).unwrap_err().to_string();
        assert_eq!(error, "connectors.tencent_sms.m.receipt_token: environment variable NOPE is not set");
        assert!(ReceiptTokens::parse("not toml [", &env).is_err());
    }

    #[test]
    fn callback_bodies_parse_as_documented() {
        let body = br#"[
            {"user_receive_time": "2015-10-17 08:03:04", "nationcode": "86", "mobile": "13800000001",
             "report_status": "SUCCESS", "errmsg": "DELIVRD", "description": "ok", "sid": "2019:1"},
            {"user_receive_time": "2015-10-17 08:03:05", "nationcode": "86", "mobile": "13800000002",
             "report_status": "FAIL", "errmsg": "", "description": "UNDELIV", "sid": "2019:2", "extra": 1},
            {"report_status": "SUCCESS"},
            {"report_status": "WAITING", "sid": "2019:3"}
        ]"#;
        let (receipts, skipped) = parse_body(body, 7).unwrap();
        assert_eq!(skipped, 2);
        assert_eq!(
            receipts,
            [
                Receipt {
                    sid: "2019:1".into(),
                    state: DeliveryState::Delivered,
                    code: Some("DELIVRD".into()),
                    at: 1_445_040_184_000
                },
                Receipt {
                    sid: "2019:2".into(),
                    state: DeliveryState::Failed,
                    code: Some("UNDELIV".into()),
                    at: 1_445_040_185_000
                },
            ]
        );
        assert!(parse_body(br#"{"sid": "x"}"#, 7).unwrap_err().contains("JSON array"));
        assert!(parse_body(b"nope", 7).is_err());
    }
}

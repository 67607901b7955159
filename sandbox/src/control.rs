//! `/_sandbox/*`: program faults and read the records over HTTP (for the README demo, shell
//! scripts and tests in other processes). These requests are not recorded.

use std::collections::HashMap;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::faults::Fault;
use crate::receipts::ReceiptPlan;
use crate::records::Provider;
use crate::state::SandboxState;

type Params = Query<HashMap<String, String>>;

pub(crate) fn router() -> Router<SandboxState> {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/stats", get(stats))
        .route("/sms", get(sms))
        .route("/robot", get(robot))
        .route("/media", get(media))
        .route("/requests", get(requests))
        .route("/rejected", get(rejected))
        .route("/faults", get(list_faults).post(add_faults).delete(clear_faults))
        .route("/delay", post(set_delay))
        .route("/receipts", get(receipt_plan).post(set_receipt_plan))
        .route("/reset", post(reset))
}

fn bad_request(message: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
}

async fn stats(State(state): State<SandboxState>) -> Response {
    Json(state.stats()).into_response()
}

/// `GET /_sandbox/sms[?phone=+86...]`
async fn sms(State(state): State<SandboxState>, Query(params): Params) -> Response {
    let phone = params.get("phone").map(|p| crate::phone::canonical(p));
    let sent: Vec<_> = state.sent_sms().into_iter().filter(|s| phone.as_ref().is_none_or(|p| *p == s.phone)).collect();
    Json(sent).into_response()
}

/// `GET /_sandbox/robot[?key=KEY]`
async fn robot(State(state): State<SandboxState>, Query(params): Params) -> Response {
    let key = params.get("key");
    let messages: Vec<_> = state.all_robot_messages().into_iter().filter(|m| key.is_none_or(|k| *k == m.key)).collect();
    Json(messages).into_response()
}

/// `GET /_sandbox/media[?key=KEY]`
async fn media(State(state): State<SandboxState>, Query(params): Params) -> Response {
    let key = params.get("key");
    let media: Vec<_> = state.uploaded_media().into_iter().filter(|m| key.is_none_or(|k| *k == m.key)).collect();
    Json(media).into_response()
}

/// `GET /_sandbox/requests[?provider=tencent|wecom_robot|dingtalk_robot|feishu_robot|feishu|juzibot|unknown]`
async fn requests(State(state): State<SandboxState>, Query(params): Params) -> Response {
    let provider = params.get("provider");
    let requests: Vec<_> =
        state.requests().into_iter().filter(|r| provider.is_none_or(|p| p == r.provider.as_str())).collect();
    Json(requests).into_response()
}

async fn rejected(State(state): State<SandboxState>) -> Response {
    Json(state.rejections()).into_response()
}

async fn list_faults(State(state): State<SandboxState>) -> Response {
    Json(state.pending_faults()).into_response()
}

/// `POST /_sandbox/faults` with one fault or an array of faults; all or none are queued.
async fn add_faults(State(state): State<SandboxState>, body: Bytes) -> Response {
    let value: Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(e) => return bad_request(&format!("body is not JSON: {e}")),
    };
    let parsed = match value {
        Value::Array(_) => serde_json::from_value::<Vec<Fault>>(value),
        other => serde_json::from_value::<Fault>(other).map(|f| vec![f]),
    };
    let faults = match parsed {
        Ok(faults) => faults,
        Err(e) => return bad_request(&format!("invalid fault: {e}")),
    };
    let added = faults.len();
    match state.push_faults(faults) {
        Ok(()) => Json(json!({ "added": added, "pending": state.stats().pending_faults })).into_response(),
        Err(e) => bad_request(&e.to_string()),
    }
}

async fn clear_faults(State(state): State<SandboxState>) -> Response {
    Json(json!({ "cleared": state.clear_faults() })).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DelayRequest {
    provider: Provider,
    ms: u64,
}

/// `POST /_sandbox/delay {"provider":"tencent","ms":50}`: fixed latency; `ms: 0` removes it.
async fn set_delay(State(state): State<SandboxState>, body: Bytes) -> Response {
    match serde_json::from_slice::<DelayRequest>(&body) {
        Ok(DelayRequest { provider: Provider::Unknown, .. }) => bad_request("provider must name a fake provider"),
        Ok(delay) => {
            state.set_delay(delay.provider, Duration::from_millis(delay.ms));
            Json(json!({ "provider": delay.provider, "ms": delay.ms })).into_response()
        }
        Err(e) => bad_request(&format!("invalid delay: {e}")),
    }
}

/// `GET /_sandbox/receipts`: the receipt plan and the reports not handed out yet.
async fn receipt_plan(State(state): State<SandboxState>) -> Response {
    Json(json!({"plan": state.receipt_plan(), "pending": state.receipts_pending()})).into_response()
}

/// `POST /_sandbox/receipts` with a [`ReceiptPlan`] (missing fields take their defaults).
async fn set_receipt_plan(State(state): State<SandboxState>, body: Bytes) -> Response {
    match serde_json::from_slice::<ReceiptPlan>(&body) {
        Ok(plan) => {
            state.set_receipt_plan(plan.clone());
            Json(json!({"plan": plan})).into_response()
        }
        Err(e) => bad_request(&format!("invalid receipt plan: {e}")),
    }
}

async fn reset(State(state): State<SandboxState>) -> Response {
    state.reset();
    Json(json!({ "reset": true })).into_response()
}

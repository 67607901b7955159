//! Fake Juzibot hub API (docs/providers/juzibot.md). Every call needs the `token` query parameter.
//! Answers are HTTP 200 `{"errcode":N,"errmsg":"..."}` (no official code table exists; these are
//! the sandbox's):
//!
//! | errcode | when |
//! |---|---|
//! | 40001 | `token` missing or unknown |
//! | 43002 | wrong method (list and get are GET, add and contactWay/list POST) |
//! | 40035 | body not a JSON object |
//! | 40058 | a param missing, out of range or of the wrong type (`type`/`scene` not 1 or 2, type 1 without exactly one `user`, `remark`/`state` over 30 chars, `pageSize`/`limit` over 1000, bad `cursor`) |
//! | 41044 | `config_id` unknown |
//!
//! `GET /api/v1/channel/list` lists three fixed channels (句客宝 data); contact ways created with
//! `add` exist on the WeCom side only, so `contactWay/get` and `contactWay/list` see them.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde_json::{Map, Value, json};

use crate::capture::Captured;
use crate::faults::{FaultEffect, RequestFacts, Stage};
use crate::hub::{Hub, Own};
use crate::records::Provider;

/// `GET`: the three fixed channels, paged by `current`/`pageSize`.
pub const CHANNELS_PATH: &str = "/api/v1/channel/list";
/// `POST`: create a contact way (WeCom `add_contact_way` body); answers its `config_id`.
pub const ADD_PATH: &str = "/api/v1/contactWay/add";
/// `GET`: one contact way by `config_id` (41044 if unknown).
pub const GET_PATH: &str = "/api/v1/contactWay/get";
/// `POST`: contact ways created in `start_time`..`end_time` (default: last 90 days), paged by `cursor`/`limit`.
pub const LIST_PATH: &str = "/api/v1/contactWay/list";
const READ_LIMIT: usize = 1024 * 1024;

struct JuziError {
    errcode: i64,
    errmsg: String,
    injected: bool,
}

fn refuse<T>(errcode: i64, errmsg: impl Into<String>) -> Result<T, JuziError> {
    Err(JuziError { errcode, errmsg: errmsg.into(), injected: false })
}

type Handler = fn(&Own<JuzibotState>, &Captured, &RequestFacts) -> Result<Map<String, Value>, JuziError>;

async fn serve(state: Own<JuzibotState>, request: Request, method: Method, handle: Handler) -> Response {
    let request = Captured::read(request, READ_LIMIT).await;
    state.record_request(Provider::Juzibot, &request);
    let action = request.path().rsplit('/').next().unwrap_or_default().to_string();
    let facts = RequestFacts {
        provider: Provider::Juzibot,
        path: request.path().to_string(),
        phones: Vec::new(),
        key: request.param("token").map(str::to_string),
        action: Some(action),
    };
    if let Some(answer) = state.before_processing(&facts).await {
        return answer;
    }
    let result = authorize(&state, &request, &method).and_then(|()| handle(&state, &request, &facts));
    let body = match result {
        Ok(mut extra) => {
            extra.insert("errcode".into(), json!(0));
            extra.insert("errmsg".into(), json!("ok"));
            Value::Object(extra)
        }
        Err(error) => {
            if !error.injected {
                state.record_rejection(Provider::Juzibot, &error.errcode.to_string(), &error.errmsg);
            }
            json!({"errcode": error.errcode, "errmsg": error.errmsg})
        }
    };
    state.after_processing(&facts, Json(body).into_response()).await
}

// docs/providers/juzibot.md#auth
/// The fake's own state: the contact ways, oldest first, as `get_contact_way` returns them.
#[derive(Debug, Default)]
pub(crate) struct JuzibotState {
    contact_ways: Vec<Value>,
}

impl Own<JuzibotState> {
    fn record_contact_way(&self, contact_way: Value) {
        tracing::info!("contact way created");
        self.with(|d, stats| {
            stats.contact_ways_created += 1;
            d.contact_ways.push(contact_way);
        });
    }

    fn find_contact_way(&self, config_id: &str) -> Option<Value> {
        self.with(|d, _| d.contact_ways.iter().find(|w| w["config_id"] == config_id).cloned())
    }

    /// Every contact way created, oldest first.
    pub(crate) fn contact_ways(&self) -> Vec<Value> {
        self.with(|d, _| d.contact_ways.clone())
    }
}

fn authorize(state: &Hub, request: &Captured, method: &Method) -> Result<(), JuziError> {
    match request.param("token") {
        Some(token) if state.config().juzibot_tokens.iter().any(|t| t == token) => {}
        _ => return refuse(40001, "invalid token"),
    }
    if request.method != *method {
        return refuse(43002, format!("require {method} method"));
    }
    Ok(())
}

fn injected(state: &Hub, facts: &RequestFacts) -> Result<(), JuziError> {
    match state.take_fault(Stage::ProviderRequest, facts) {
        Some(FaultEffect::ErrorCode { code, message }) => Err(JuziError {
            errcode: code,
            errmsg: message.unwrap_or_else(|| format!("errcode {code} injected by yizhan-sandbox")),
            injected: true,
        }),
        _ => Ok(()),
    }
}

fn json_body(request: &Captured) -> Result<Map<String, Value>, JuziError> {
    match serde_json::from_slice::<Value>(&request.body) {
        Ok(Value::Object(body)) => Ok(body),
        _ => refuse(40035, "invalid json body"),
    }
}

/// A number query parameter within `range`, or `default`.
fn number_param(request: &Captured, name: &str, default: u64, max: u64) -> Result<u64, JuziError> {
    match request.param(name).map(str::parse::<u64>) {
        None => Ok(default),
        Some(Ok(n)) if (1..=max).contains(&n) => Ok(n),
        Some(_) => refuse(40058, format!("invalid {name}")),
    }
}

/// `GET /api/v1/channel/list?token=&current=&pageSize=`.
pub(crate) async fn list_channels(State(state): State<Own<JuzibotState>>, request: Request) -> Response {
    serve(state, request, Method::GET, |state, request, facts| {
        let current = number_param(request, "current", 1, u64::MAX)?;
        let size = number_param(request, "pageSize", 10, 1000)?;
        injected(state, facts)?;
        let channels: Vec<Value> = CHANNELS
            .iter()
            .map(|(config_id, remark)| json!({"state": format!("state-{config_id}"), "configId": config_id,
                                              "remark": remark, "createDate": "2020-04-12T22:27:49.166Z", "tagNames": []}))
            .collect();
        let start = usize::try_from((current - 1).saturating_mul(size)).unwrap_or(usize::MAX).min(channels.len());
        let end = start.saturating_add(usize::try_from(size).unwrap_or(usize::MAX)).min(channels.len());
        let mut answer = Map::new();
        answer.insert("data".into(), Value::Array(channels[start..end].to_vec()));
        answer.insert("total".into(), json!(channels.len()));
        Ok(answer)
    })
    .await
}

/// `POST /api/v1/contactWay/add?token=` with WeCom's `add_contact_way` body.
// docs/providers/juzibot.md#endpoints (limits unconfirmed: no public official source)
pub(crate) async fn add_contact_way(State(state): State<Own<JuzibotState>>, request: Request) -> Response {
    serve(state, request, Method::POST, |state, request, facts| {
        let body = json_body(request)?;
        let one_or_two = |name: &str| match body.get(name).and_then(Value::as_u64) {
            Some(n @ (1 | 2)) => Ok(n),
            _ => refuse(40058, format!("invalid {name}, must be 1 or 2")),
        };
        let kind = one_or_two("type")?;
        let scene = one_or_two("scene")?;
        let users = body.get("user").and_then(Value::as_array).map_or(0, Vec::len);
        if kind == 1 && users != 1 {
            return refuse(40058, "type 1 needs exactly one user");
        }
        for name in ["remark", "state"] {
            match body.get(name) {
                None => {}
                Some(Value::String(s)) if s.chars().count() <= 30 => {}
                Some(_) => return refuse(40058, format!("invalid {name}, at most 30 characters")),
            }
        }
        injected(state, facts)?;
        let config_id = format!("{:032x}", rand::rng().random::<u128>());
        let mut contact_way = body.clone();
        contact_way.insert("config_id".into(), json!(config_id));
        let mut answer = Map::new();
        answer.insert("config_id".into(), json!(config_id));
        if scene == 2 {
            let qr_code = format!("http://p.qpic.cn/wwhead/sandbox-{config_id}/0");
            contact_way.insert("qr_code".into(), json!(qr_code));
            answer.insert("qr_code".into(), json!(qr_code));
        }
        contact_way.insert("created_at".into(), json!(chrono::Utc::now().timestamp()));
        state.record_contact_way(Value::Object(contact_way));
        Ok(answer)
    })
    .await
}

/// `GET /api/v1/contactWay/get?token=&config_id=`.
pub(crate) async fn get_contact_way(State(state): State<Own<JuzibotState>>, request: Request) -> Response {
    serve(state, request, Method::GET, |state, request, facts| {
        let Some(config_id) = request.param("config_id").filter(|c| !c.is_empty()) else {
            return refuse(40058, "config_id is required");
        };
        let Some(mut contact_way) = state.find_contact_way(config_id) else {
            return refuse(41044, "invalid config_id");
        };
        injected(state, facts)?;
        if let Some(way) = contact_way.as_object_mut() {
            way.remove("created_at");
        }
        let mut answer = Map::new();
        answer.insert("contact_way".into(), contact_way);
        Ok(answer)
    })
    .await
}

/// `POST /api/v1/contactWay/list?token=` with `{start_time?, end_time?, cursor?, limit?}`.
pub(crate) async fn list_contact_ways(State(state): State<Own<JuzibotState>>, request: Request) -> Response {
    serve(state, request, Method::POST, |state, request, facts| {
        let body = json_body(request)?;
        let now = chrono::Utc::now().timestamp();
        let start_time = body.get("start_time").and_then(Value::as_i64).unwrap_or(now - 90 * 86400);
        let end_time = body.get("end_time").and_then(Value::as_i64).unwrap_or(now);
        let limit = match body.get("limit") {
            None => 100,
            Some(v) => match v.as_u64() {
                Some(n @ 1..=1000) => n as usize,
                _ => return refuse(40058, "invalid limit"),
            },
        };
        let ways: Vec<Value> = state
            .contact_ways()
            .into_iter()
            .filter(|w| w["created_at"].as_i64().is_some_and(|t| (start_time..=end_time).contains(&t)))
            .map(|w| json!({"config_id": w["config_id"]}))
            .collect();
        let start = match body.get("cursor").and_then(Value::as_str) {
            None | Some("") => 0,
            Some(cursor) => match cursor.strip_prefix("cur-").and_then(|n| n.parse::<usize>().ok()) {
                Some(n) if n <= ways.len() => n,
                _ => return refuse(40058, "invalid cursor"),
            },
        };
        injected(state, facts)?;
        let end = (start + limit).min(ways.len());
        let mut answer = Map::new();
        answer.insert("contact_way".into(), Value::Array(ways[start..end].to_vec()));
        answer.insert("next_cursor".into(), json!(if end < ways.len() { format!("cur-{end}") } else { String::new() }));
        Ok(answer)
    })
    .await
}

/// The fixed channels: `(configId, remark)`.
pub const CHANNELS: [(&str, &str); 3] = [
    ("108dfd7e1d8a5c1b330800b72016e999", "官网渠道"),
    ("208dfd7e1d8a5c1b330800b72016e999", "线下活动"),
    ("308dfd7e1d8a5c1b330800b72016e999", "公众号"),
];

//! Fake Feishu (docs/providers/feishu.md): the custom bot webhook and a self-built app's token and contact
//! reads.
//!
//! Bot, `POST /open-apis/bot/v2/hook/{hook_id}`: HTTP 200 `{"code":N,"msg":"..."}` (success also
//! carries the legacy `StatusCode`/`StatusMessage`):
//!
//! | code | when |
//! |---|---|
//! | 19001 | hook id unknown |
//! | 9499 | method not POST, body over 20 KB, not a JSON object, `msg_type` unknown, or its `content` / `card` missing or malformed |
//! | 19021 | bot with a secret: `timestamp` missing or more than 1 h from the sandbox clock, or `sign` wrong |
//! | 11232 | more than the configured messages per rolling second (default 5) or minute (default 100) |
//!
//! App: `POST /open-apis/auth/v3/tenant_access_token/internal` (10003 unknown `app_id`, 10014 wrong
//! `app_secret`; a token lives 7200 s, and the same one is handed out again while more than 30 min
//! are left). `GET /open-apis/contact/v3/departments` and `GET …/users/find_by_department` need
//! `Authorization: Bearer t-…` (HTTP 400 with 99991661 when missing, 99991663 when unknown or
//! expired); bad params are 99992402, an unknown department 40004. Pages: `page_size` (1–50,
//! default 10) and `page_token` (from the previous page).
//!
//! Contact writes (docs/providers/feishu.md#contact-writes), same token rules:
//! `POST …/departments`, `PATCH|DELETE …/departments/{id}`, `POST …/users`,
//! `PATCH|DELETE …/users/{id}`, ids as `department_id_type` (`open_department_id` default,
//! `department_id`) and `user_id_type` (`open_id` default, `user_id`, `union_id`) say. A
//! department's open id is its id here; a user's open id is `ou_<user_id>`. A create with a
//! `client_token` seen before answers the first create's object (40021 when the body differs).
//!
//! | HTTP | code | when |
//! |---|---|---|
//! | 400 | 99992402 | a required field missing or malformed, an unknown id type |
//! | 403 | 40004 | department unknown (path, `department_ids`) |
//! | 403 | 40014 | parent department unknown |
//! | 400 | 40018 | name taken among the parent's children |
//! | 400 | 43007 / 43008 | custom `department_id` taken / invalid (`od-…`, `0`, pattern) |
//! | 400 | 43011 / 43012 | deleting a department with members / sub-departments |
//! | 400 | 40002 | deleting the root |
//! | 400 | 41001 / 41002 | mobile / e-mail taken |
//! | 400 | 41010 | new user without mobile |
//! | 400 | 41011 | `user_id` taken |
//! | 400 | 41059 | `employee_type` not 1–5 |
//! | 403 | 41050 | user unknown |
//! | 400 | 40021 | `client_token` reused with another body |

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::Rng;
use serde_json::{Map, Value, json};
use sha2::Sha256;

use crate::capture::Captured;
use crate::directory::{Directory, Member, date_seconds};
use crate::faults::{FaultEffect, RequestFacts, Stage};
use crate::hub::{Hub, Own};
use crate::records::{Provider, RobotMessage};

/// Bot webhook path up to the hook id (`POST`, the hook id follows).
pub const HOOK_PREFIX: &str = "/open-apis/bot/v2/hook/";
pub(crate) const HOOK_ROUTE: &str = "/open-apis/bot/v2/hook/{hook_id}";
/// Self-built app's `tenant_access_token` endpoint (`POST {app_id, app_secret}`).
pub const TOKEN_PATH: &str = "/open-apis/auth/v3/tenant_access_token/internal";
/// Child departments of `parent_department_id` (`GET`, paged, bearer token).
pub const DEPARTMENTS_PATH: &str = "/open-apis/contact/v3/departments";
/// Users directly in `department_id` (`GET`, paged, bearer token).
pub const USERS_PATH: &str = "/open-apis/contact/v3/users/find_by_department";
/// `POST` creates a user; `…/{user_id}` is `PATCH`ed or `DELETE`d.
pub const USERS_ROOT: &str = "/open-apis/contact/v3/users";
pub(crate) const DEPARTMENT_ROUTE: &str = "/open-apis/contact/v3/departments/{department_id}";
pub(crate) const USER_ROUTE: &str = "/open-apis/contact/v3/users/{user_id}";
/// "请求体的数据大小不能超过 20 KB".
pub const MAX_BODY_BYTES: usize = 20 * 1024;
/// Signed bot: how far, in seconds, `timestamp` may be from the sandbox clock (1 h), else 19021.
pub const TIMESTAMP_TOLERANCE_S: i64 = 3600;
/// How long a `tenant_access_token` is valid (`expire` 7200 s).
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(7200);
/// A token with less than this left is replaced by a new one; with more, the same one is returned.
pub const TOKEN_REISSUE_MARGIN: Duration = Duration::from_secs(30 * 60);
const READ_LIMIT: usize = 1024 * 1024;

/// A non-zero `code`, with the HTTP status it comes with.
struct FeishuError {
    status: StatusCode,
    code: i64,
    msg: String,
    injected: bool,
}

fn refuse<T>(code: i64, msg: impl Into<String>) -> Result<T, FeishuError> {
    Err(FeishuError { status: StatusCode::OK, code, msg: msg.into(), injected: false })
}

fn refuse_400<T>(code: i64, msg: impl Into<String>) -> Result<T, FeishuError> {
    Err(FeishuError { status: StatusCode::BAD_REQUEST, code, msg: msg.into(), injected: false })
}

/// The fake's own state: `tenant_access_token` → (app id, expiry), and the tenant's directory
/// (editable through [`crate::SandboxState::edit_feishu_directory`]).
#[derive(Debug)]
pub(crate) struct FeishuState {
    tokens: HashMap<String, (String, Instant)>,
    pub(crate) directory: Directory,
    /// `client_token` → (the create's body, its answer's `data`).
    created: HashMap<String, (Value, Map<String, Value>)>,
}

impl Default for FeishuState {
    fn default() -> Self {
        FeishuState { tokens: HashMap::new(), directory: default_directory(), created: HashMap::new() }
    }
}

/// [`DEPARTMENTS`] and [`USERS`] as an editable directory (top departments' parent is `0`).
pub fn default_directory() -> Directory {
    let mut directory = Directory::default();
    for (order, (id, name, parent)) in DEPARTMENTS.iter().enumerate() {
        directory.put_department(id, name, parent, order as u64);
    }
    for (id, name, department) in USERS {
        directory.put_member(Member::new(id, name, department, &format!("{id}@example.com"), Some("2021-03-01")));
    }
    directory
}

impl Own<FeishuState> {
    /// The token endpoint: the app's current token while more than `keep` of its life is left,
    /// else `fresh` valid for `lifetime`. Returns the token and its remaining seconds.
    fn token(&self, app_id: &str, fresh: String, lifetime: Duration, keep: Duration) -> (String, u64) {
        self.with(|d, stats| {
            stats.feishu_tokens_issued += 1;
            let now = Instant::now();
            let current = d
                .tokens
                .iter()
                .filter(|(_, (app, expiry))| app == app_id && *expiry > now + keep)
                .max_by_key(|(_, (_, expiry))| *expiry)
                .map(|(token, (_, expiry))| (token.clone(), expiry.duration_since(now).as_secs()));
            current.unwrap_or_else(|| {
                d.tokens.insert(fresh.clone(), (app_id.to_string(), now + lifetime));
                (fresh, lifetime.as_secs())
            })
        })
    }

    /// The app a valid token belongs to.
    fn token_app(&self, token: &str) -> Option<String> {
        self.with(|d, _| {
            let (app, expiry) = d.tokens.get(token)?;
            (*expiry > Instant::now()).then(|| app.clone())
        })
    }
}

fn injected(state: &Hub, facts: &RequestFacts) -> Result<(), FeishuError> {
    match state.take_fault(Stage::ProviderRequest, facts) {
        Some(FaultEffect::ErrorCode { code, message }) => Err(FeishuError {
            status: StatusCode::OK,
            code,
            msg: message.unwrap_or_else(|| format!("code {code} injected by yizhan-sandbox")),
            injected: true,
        }),
        _ => Ok(()),
    }
}

/// Feishu's bot signature: `base64(HmacSHA256(key = timestamp + "\n" + secret, msg = ""))`.
pub fn sign(timestamp: &str, secret: &str) -> String {
    let mac = Hmac::<Sha256>::new_from_slice(format!("{timestamp}\n{secret}").as_bytes()).expect("any key length");
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

async fn respond(
    state: &Hub,
    provider: Provider,
    facts: &RequestFacts,
    result: Result<Map<String, Value>, FeishuError>,
) -> Response {
    let response = match result {
        Ok(mut body) => {
            body.insert("code".into(), json!(0));
            body.entry("msg").or_insert(json!("success"));
            Json(Value::Object(body)).into_response()
        }
        Err(error) => {
            if !error.injected {
                state.record_rejection(provider, &error.code.to_string(), &error.msg);
            }
            (error.status, Json(json!({"code": error.code, "msg": error.msg, "data": {}}))).into_response()
        }
    };
    state.after_processing(facts, response).await
}

fn facts(provider: Provider, request: &Captured, key: Option<String>, action: Option<String>) -> RequestFacts {
    RequestFacts { provider, path: request.path().to_string(), phones: Vec::new(), key, action }
}

// ----- bot ------------------------------------------------------------------------------------

/// `POST /open-apis/bot/v2/hook/{hook_id}`.
pub(crate) async fn hook(State(state): State<Hub>, request: Request) -> Response {
    let request = Captured::read(request, READ_LIMIT).await;
    state.record_request(Provider::FeishuRobot, &request);
    let hook_id = request.path().strip_prefix(HOOK_PREFIX).unwrap_or_default().to_string();
    let body: Option<Value> = serde_json::from_slice(&request.body).ok();
    let msg_type = body.as_ref().and_then(|b| b.get("msg_type")).and_then(Value::as_str).map(str::to_string);
    let facts = facts(Provider::FeishuRobot, &request, Some(hook_id.clone()), msg_type);
    if let Some(answer) = state.before_processing(&facts).await {
        return answer;
    }
    let result = deliver(&state, &request, &hook_id, &facts).map(|()| {
        let mut extra = Map::new();
        extra.insert("data".into(), json!({}));
        extra.insert("Extra".into(), Value::Null);
        extra.insert("StatusCode".into(), json!(0));
        extra.insert("StatusMessage".into(), json!("success"));
        extra
    });
    respond(&state, Provider::FeishuRobot, &facts, result).await
}

fn deliver(state: &Hub, request: &Captured, hook_id: &str, facts: &RequestFacts) -> Result<(), FeishuError> {
    let Some(hook) = state.config().feishu_hooks.iter().find(|h| h.credential == hook_id) else {
        return refuse(19001, "param invalid: incoming webhook access token invalid");
    };
    // docs/providers/feishu.md#bot-webhook (20 KB)
    if request.method != Method::POST || request.oversized || request.body.len() > MAX_BODY_BYTES {
        return refuse(9499, "Bad Request");
    }
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&request.body) else {
        return refuse(9499, "Bad Request");
    };
    // docs/providers/feishu.md#bot-signature
    if let Some(secret) = &hook.secret {
        let timestamp = match body.get("timestamp") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => String::new(),
        };
        let in_window =
            timestamp.parse::<i64>().is_ok_and(|t| (chrono::Utc::now().timestamp() - t).abs() <= TIMESTAMP_TOLERANCE_S);
        let signed = body.get("sign").and_then(Value::as_str) == Some(sign(&timestamp, secret).as_str());
        if !in_window || !signed {
            return refuse(19021, "sign match fail or timestamp is not within one hour from current time");
        }
    }
    // docs/providers/feishu.md#bot-messages
    let msg_type = body.get("msg_type").and_then(Value::as_str).unwrap_or_default();
    let content = body.get("content").and_then(Value::as_object);
    let text = |field: &str| content.and_then(|c| c.get(field)).and_then(Value::as_str).is_some_and(|s| !s.is_empty());
    let valid = match msg_type {
        "text" => text("text"),
        "image" => text("image_key"),
        "share_chat" => text("share_chat_id"),
        "post" => content.and_then(|c| c.get("post")).and_then(Value::as_object).is_some_and(|p| !p.is_empty()),
        "interactive" => body.get("card").and_then(Value::as_object).is_some_and(|c| !c.is_empty()),
        _ => false,
    };
    if !valid {
        return refuse(9499, "Bad Request");
    }
    injected(state, facts)?;
    let config = state.config();
    let over_second = config
        .feishu_messages_per_second
        .is_some_and(|n| !state.throttle(Provider::FeishuRobot, hook_id, n, Duration::from_secs(1)));
    let over_minute = !over_second
        && config.feishu_messages_per_minute.is_some_and(|n| {
            !state.throttle(Provider::FeishuRobot, &format!("{hook_id}/min"), n, Duration::from_secs(60))
        });
    if over_second || over_minute {
        return refuse(11232, "frequency limited");
    }
    state.record_robot_message(RobotMessage {
        provider: Provider::FeishuRobot,
        key: hook_id.to_string(),
        msgtype: msg_type.to_string(),
        body: Value::Object(body),
    });
    Ok(())
}

// ----- app ------------------------------------------------------------------------------------

/// `POST /open-apis/auth/v3/tenant_access_token/internal`.
pub(crate) async fn tenant_access_token(State(state): State<Own<FeishuState>>, request: Request) -> Response {
    let request = Captured::read(request, READ_LIMIT).await;
    state.record_request(Provider::Feishu, &request);
    let body: Map<String, Value> = match serde_json::from_slice(&request.body) {
        Ok(Value::Object(body)) => body,
        _ => Map::new(),
    };
    let app_id = body.get("app_id").and_then(Value::as_str).unwrap_or_default().to_string();
    let facts = facts(Provider::Feishu, &request, Some(app_id.clone()), Some("tenant_access_token".into()));
    if let Some(answer) = state.before_processing(&facts).await {
        return answer;
    }
    let result = issue_token(&state, &request, &body, &app_id, &facts);
    respond(&state, Provider::Feishu, &facts, result).await
}

fn issue_token(
    state: &Own<FeishuState>,
    request: &Captured,
    body: &Map<String, Value>,
    app_id: &str,
    facts: &RequestFacts,
) -> Result<Map<String, Value>, FeishuError> {
    if request.method != Method::POST {
        return refuse_400(99991400, "method not allowed");
    }
    let Some(app) = state.config().feishu_apps.iter().find(|a| a.app_id == app_id) else {
        return refuse(10003, "invalid param: app_id");
    };
    if body.get("app_secret").and_then(Value::as_str) != Some(app.app_secret.as_str()) {
        return refuse(10014, "app secret invalid");
    }
    injected(state, facts)?;
    let fresh: String = format!("t-{:040x}", rand::rng().random::<u128>());
    let (token, expire) = state.token(app_id, fresh, TOKEN_LIFETIME, TOKEN_REISSUE_MARGIN);
    let mut answer = Map::new();
    answer.insert("msg".into(), json!("ok"));
    answer.insert("tenant_access_token".into(), json!(token));
    answer.insert("expire".into(), json!(expire));
    Ok(answer)
}

/// The bearer token's app, or the error Feishu answers.
fn authorize(state: &Own<FeishuState>, request: &Captured, allowed: &[Method]) -> Result<String, FeishuError> {
    if !allowed.contains(&request.method) {
        return refuse_400(99991400, "method not allowed");
    }
    let Some(token) = request.header("authorization").and_then(|h| h.strip_prefix("Bearer ")) else {
        return refuse_400(99991661, "Missing access token for authorization.");
    };
    state.token_app(token).ok_or(FeishuError {
        status: StatusCode::BAD_REQUEST,
        code: 99991663,
        msg: "Invalid access token for authorization. Please make a request with token attached.".into(),
        injected: false,
    })
}

/// A contact call (read or write) of `action`: recorded, its faults and token checked, then
/// `handle` makes the answer's `data`.
async fn contact_call(
    state: &Own<FeishuState>,
    request: Request,
    action: &str,
    allowed: &[Method],
    handle: impl FnOnce(&Captured, &RequestFacts) -> Result<Map<String, Value>, FeishuError>,
) -> Response {
    let request = Captured::read(request, READ_LIMIT).await;
    state.record_request(Provider::Feishu, &request);
    let app = request.header("authorization").and_then(|h| h.strip_prefix("Bearer ")).and_then(|t| state.token_app(t));
    let facts = facts(Provider::Feishu, &request, app, Some(action.into()));
    if let Some(answer) = state.before_processing(&facts).await {
        return answer;
    }
    let result = authorize(state, &request, allowed).and_then(|_| {
        let mut answer = Map::new();
        answer.insert("data".into(), Value::Object(handle(&request, &facts)?));
        Ok(answer)
    });
    respond(state, Provider::Feishu, &facts, result).await
}

/// A contact read: the request and the directory in, the answer's `data` out.
type ReadHandler = fn(&Captured, &Directory) -> Result<Map<String, Value>, FeishuError>;

/// A read's fault applies once its params passed.
async fn read_call(state: &Own<FeishuState>, request: Request, action: &str, handle: ReadHandler) -> Response {
    contact_call(state, request, action, &[Method::GET], |request, facts| {
        let data = state.with(|d, _| handle(request, &d.directory))?;
        injected(state, facts)?;
        Ok(data)
    })
    .await
}

/// `GET /open-apis/contact/v3/departments?parent_department_id=&fetch_child=&page_size=&page_token=`,
/// and `POST` (create).
pub(crate) async fn departments(State(state): State<Own<FeishuState>>, request: Request) -> Response {
    if request.method() == Method::POST {
        return write_call(&state, request, "department", None).await;
    }
    read_call(&state, request, "departments", |request, directory| {
        let parent = request.param("parent_department_id").unwrap_or("0");
        let fetch_child = match request.param("fetch_child") {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => return refuse_400(99992402, "field validation failed: fetch_child"),
        };
        if parent != "0" && !directory.departments.contains_key(parent) {
            return refuse_400(40004, "no dept authority error");
        }
        let mut found = Vec::new();
        let mut parents = vec![parent.to_string()];
        while let Some(parent) = parents.pop() {
            for department in directory.departments.values().filter(|d| d.parent == parent) {
                found.push(json!({"department_id": department.id, "open_department_id": department.id,
                                  "name": department.name, "parent_department_id": department.parent,
                                  "order": department.order.to_string()}));
                if fetch_child {
                    parents.push(department.id.clone());
                }
            }
        }
        page(request, found)
    })
    .await
}

/// `GET /open-apis/contact/v3/users/find_by_department?department_id=&page_size=&page_token=`.
pub(crate) async fn users(State(state): State<Own<FeishuState>>, request: Request) -> Response {
    read_call(&state, request, "find_by_department", |request, directory| {
        let Some(department) = request.param("department_id").filter(|d| !d.is_empty()) else {
            return refuse_400(99992402, "field validation failed: department_id is required");
        };
        if department != "0" && !directory.departments.contains_key(department) {
            return refuse_400(40004, "no dept authority error");
        }
        // docs/providers/feishu.md#directory-reads-for-directory-sync: the user object's fields.
        let users = directory
            .members_of(department, false)
            .into_iter()
            .map(|m| {
                let join_time = m.hiredate.as_deref().and_then(date_seconds).unwrap_or(0);
                json!({"user_id": m.id, "open_id": format!("ou_{}", m.id), "name": m.name,
                       "department_ids": m.departments, "email": m.email, "mobile": m.mobile,
                       "job_title": m.position, "join_time": join_time,
                       "status": {"is_frozen": !m.enabled, "is_resigned": false, "is_activated": true}})
            })
            .collect();
        page(request, users)
    })
    .await
}

// ----- contact writes -------------------------------------------------------------------------

fn refuse_403<T>(code: i64, msg: impl Into<String>) -> Result<T, FeishuError> {
    Err(FeishuError { status: StatusCode::FORBIDDEN, code, msg: msg.into(), injected: false })
}

/// A contact write: the request, its body, the path's id (empty for a create) and the tenant's
/// state in; out the object it leaves, if any, which the answer's `data.<object>` carries.
type WriteHandler = fn(&Captured, &Map<String, Value>, &str, &mut FeishuState) -> WriteResult;
type WriteResult = Result<Option<Value>, FeishuError>;

/// One contact write (docs/providers/feishu.md#contact-writes), named as the catalog names it
/// (faults match that name). A `POST` is a create on the collection, with `client_token`
/// replays; `PATCH` and `DELETE` name the object in the path.
struct ContactWrite {
    action: &'static str,
    /// `department` or `user`: what the path names, and the field of `data` the answer uses.
    object: &'static str,
    method: Method,
    /// Checks the query's id-type params the action takes, before anything else.
    id_types: fn(&Captured) -> Result<(), FeishuError>,
    apply: WriteHandler,
}

static CONTACT_WRITES: [ContactWrite; 6] = [
    ContactWrite::new("create_department", "department", Method::POST, department_id_type, create_department),
    ContactWrite::new("update_department", "department", Method::PATCH, department_id_type, patch_department),
    ContactWrite::new("delete_department", "department", Method::DELETE, department_id_type, delete_department),
    ContactWrite::new("create_user", "user", Method::POST, user_id_types, create_user),
    ContactWrite::new("update_user", "user", Method::PATCH, user_id_types, patch_user),
    ContactWrite::new("delete_user", "user", Method::DELETE, user_id_type, delete_user),
];

impl ContactWrite {
    const fn new(
        action: &'static str,
        object: &'static str,
        method: Method,
        id_types: fn(&Captured) -> Result<(), FeishuError>,
        apply: WriteHandler,
    ) -> Self {
        ContactWrite { action, object, method, id_types, apply }
    }
}

/// The write on `object` that the method asks for (a create without a path id, the others with
/// one); any other method is refused with 99991400.
async fn write_call(state: &Own<FeishuState>, request: Request, object: &str, id: Option<String>) -> Response {
    let write = CONTACT_WRITES
        .iter()
        .find(|w| w.object == object && w.method == request.method() && (w.method == Method::POST) == id.is_none());
    let allowed: &[Method] = match (write, &id) {
        (Some(write), _) => std::slice::from_ref(&write.method),
        (None, None) => &[Method::POST],
        (None, Some(_)) => &[Method::PATCH, Method::DELETE],
    };
    contact_call(state, request, write.map_or(object, |w| w.action), allowed, |request, facts| {
        let Some(write) = write else {
            return refuse_400(99991400, "method not allowed");
        };
        let body = match serde_json::from_slice::<Value>(&request.body) {
            Ok(Value::Object(body)) => body,
            _ if request.body.is_empty() && request.method == Method::DELETE => Map::new(),
            _ => return refuse_400(99992402, "field validation failed: the body is not a JSON object"),
        };
        injected(state, facts)?;
        state.with(|d, _| {
            (write.id_types)(request)?;
            let create = write.method == Method::POST;
            if create && let Some(answer) = replay(d, request, &body) {
                return answer;
            }
            let mut data = Map::new();
            if let Some(object) = (write.apply)(request, &body, id.as_deref().unwrap_or_default(), d)? {
                data.insert(write.object.into(), object);
            }
            if create {
                remember(d, request, &body, &data);
            }
            Ok(data)
        })
    })
    .await
}

/// The `{id}` of `…/departments/{id}` or `…/users/{id}`.
fn path_id(request: &Request, prefix: &str) -> Option<String> {
    request.uri().path().strip_prefix(prefix).filter(|id| !id.is_empty() && !id.contains('/')).map(str::to_string)
}

/// `PATCH|DELETE /open-apis/contact/v3/departments/{department_id}`.
pub(crate) async fn department(State(state): State<Own<FeishuState>>, request: Request) -> Response {
    let id = path_id(&request, &format!("{DEPARTMENTS_PATH}/"));
    write_call(&state, request, "department", id).await
}

/// `POST /open-apis/contact/v3/users`.
pub(crate) async fn create_users(State(state): State<Own<FeishuState>>, request: Request) -> Response {
    write_call(&state, request, "user", None).await
}

/// `PATCH|DELETE /open-apis/contact/v3/users/{user_id}`.
pub(crate) async fn user(State(state): State<Own<FeishuState>>, request: Request) -> Response {
    let id = path_id(&request, &format!("{USERS_ROOT}/"));
    write_call(&state, request, "user", id).await
}

fn field<'a>(body: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    body.get(name).and_then(Value::as_str)
}

fn required<'a>(body: &'a Map<String, Value>, name: &str) -> Result<&'a str, FeishuError> {
    field(body, name)
        .filter(|v| !v.is_empty())
        .map_or_else(|| refuse_400(99992402, format!("field validation failed: {name} is required")), Ok)
}

/// `department_id_type` is `open_department_id` (default) or `department_id`; both name a
/// department by its id here.
fn department_id_type(request: &Captured) -> Result<(), FeishuError> {
    match request.param("department_id_type") {
        None | Some("open_department_id" | "department_id") => Ok(()),
        Some(_) => refuse_400(99992402, "field validation failed: department_id_type"),
    }
}

/// `user_id_type` is `open_id` (default), `union_id` or `user_id`.
fn user_id_type(request: &Captured) -> Result<(), FeishuError> {
    user_key(request, "").map(drop)
}

/// A user write's `user_id_type` and `department_id_type`.
fn user_id_types(request: &Captured) -> Result<(), FeishuError> {
    user_id_type(request)?;
    department_id_type(request)
}

/// The `user_id` a path id names, as `user_id_type` says (`open_id` `ou_<id>`, `union_id`
/// `on_<id>`, `user_id`).
fn user_key(request: &Captured, id: &str) -> Result<String, FeishuError> {
    let prefix = match request.param("user_id_type") {
        None | Some("open_id") => "ou_",
        Some("union_id") => "on_",
        Some("user_id") => "",
        Some(_) => return refuse_400(99992402, "field validation failed: user_id_type"),
    };
    Ok(id.strip_prefix(prefix).unwrap_or_default().to_string())
}

fn department_json(d: &crate::directory::Department) -> Value {
    json!({"department_id": d.id, "open_department_id": d.id, "name": d.name, "parent_department_id": d.parent,
           "order": d.order.to_string(), "status": {"is_deleted": false}})
}

fn user_json(m: &Member) -> Value {
    let join_time = m.hiredate.as_deref().and_then(date_seconds).unwrap_or(0);
    json!({"user_id": m.id, "open_id": format!("ou_{}", m.id), "union_id": format!("on_{}", m.id), "name": m.name,
           "email": m.email, "department_ids": m.departments, "job_title": m.position, "join_time": join_time,
           "employee_type": 1, "status": {"is_frozen": !m.enabled, "is_resigned": false, "is_activated": true}})
}

fn order(body: &Map<String, Value>) -> Result<Option<u64>, FeishuError> {
    match body.get("order") {
        None => Ok(None),
        Some(Value::String(s)) => {
            s.parse().map(Some).or_else(|_| refuse_400(99992402, "field validation failed: order"))
        }
        Some(_) => refuse_400(99992402, "field validation failed: order must be a string"),
    }
}

/// A create's answer for a `client_token` seen before (40021 when the body differs).
fn replay(
    d: &FeishuState,
    request: &Captured,
    body: &Map<String, Value>,
) -> Option<Result<Map<String, Value>, FeishuError>> {
    let token = request.param("client_token")?;
    let (first, answer) = d.created.get(token)?;
    Some(if *first == Value::Object(body.clone()) {
        Ok(answer.clone())
    } else {
        refuse_400(40021, "no a same request error")
    })
}

fn remember(d: &mut FeishuState, request: &Captured, body: &Map<String, Value>, answer: &Map<String, Value>) {
    if let Some(token) = request.param("client_token") {
        d.created.insert(token.to_string(), (Value::Object(body.clone()), answer.clone()));
    }
}

fn create_department(_: &Captured, body: &Map<String, Value>, _: &str, d: &mut FeishuState) -> WriteResult {
    let name = required(body, "name")?.to_string();
    let parent = required(body, "parent_department_id")?.to_string();
    let order = order(body)?.unwrap_or(0);
    let directory = &mut d.directory;
    if parent != "0" && !directory.departments.contains_key(&parent) {
        return refuse_403(40014, "no parent dept authority error");
    }
    let id = match field(body, "department_id") {
        Some(custom) => {
            let valid = custom.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
                && custom.len() <= 64
                && custom.chars().all(|c| c.is_ascii_alphanumeric() || "_-@.".contains(c));
            if !valid || custom.starts_with("od-") || custom == "0" {
                return refuse_400(43008, "custom dept id invalid error");
            }
            if directory.departments.contains_key(custom) {
                return refuse_400(43007, "duplicated department custom id error");
            }
            custom.to_string()
        }
        None => format!("od-{:032x}", rand::rng().random::<u128>()),
    };
    if directory.departments.values().any(|x| x.parent == parent && x.name == name) {
        return refuse_400(40018, "duplicate name error");
    }
    directory.put_department(&id, &name, &parent, order);
    Ok(Some(department_json(&directory.departments[&id])))
}

fn patch_department(_: &Captured, body: &Map<String, Value>, id: &str, d: &mut FeishuState) -> WriteResult {
    let directory = &mut d.directory;
    let Some(current) = directory.departments.get(id).cloned() else {
        return refuse_403(40004, "no dept authority error");
    };
    let name = field(body, "name").unwrap_or(&current.name).to_string();
    let parent = field(body, "parent_department_id").unwrap_or(&current.parent).to_string();
    if parent != current.parent && parent != "0" && !directory.departments.contains_key(&parent) {
        return refuse_403(40014, "no parent dept authority error");
    }
    if directory.departments.values().any(|x| x.id != current.id && x.parent == parent && x.name == name) {
        return refuse_400(40018, "duplicate name error");
    }
    let order = order(body)?.unwrap_or(current.order);
    directory.put_department(&current.id, &name, &parent, order);
    Ok(Some(department_json(&directory.departments[&current.id])))
}

fn delete_department(_: &Captured, _: &Map<String, Value>, id: &str, d: &mut FeishuState) -> WriteResult {
    let directory = &mut d.directory;
    if id == "0" {
        return refuse_400(40002, "process root dept error");
    }
    if !directory.departments.contains_key(id) {
        return refuse_403(40004, "no dept authority error");
    }
    if directory.departments.values().any(|x| x.parent == id) {
        return refuse_400(43012, "delete has sub dept department error");
    }
    if !directory.members_of(id, false).is_empty() {
        return refuse_400(43011, "delete has member dept error");
    }
    directory.departments.remove(id);
    Ok(None)
}

/// The user fields of a create or patch applied to `member`, with Feishu's uniqueness checks.
fn apply_user(directory: &Directory, member: &mut Member, body: &Map<String, Value>) -> Result<(), FeishuError> {
    let taken = |field: fn(&Member) -> &str, value: &str| {
        directory.members.values().any(|m| m.id != member.id && !value.is_empty() && field(m) == value)
    };
    if let Some(name) = field(body, "name") {
        member.name = name.to_string();
    }
    if let Some(mobile) = field(body, "mobile") {
        if taken(|m| &m.mobile, mobile) {
            return refuse_400(41001, "mobile has already exist error");
        }
        member.mobile = mobile.to_string();
    }
    if let Some(email) = field(body, "email") {
        if taken(|m| &m.email, email) {
            return refuse_400(41002, "email has already exist error");
        }
        member.email = email.to_string();
    }
    if let Some(list) = body.get("department_ids") {
        let ids: Vec<String> =
            list.as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_string)).collect();
        if ids.is_empty() {
            return refuse_400(99992402, "field validation failed: department_ids is required");
        }
        if ids.iter().any(|id| id != "0" && !directory.departments.contains_key(id)) {
            return refuse_403(40004, "no dept authority error");
        }
        member.departments = ids;
    }
    if let Some(title) = field(body, "job_title") {
        member.position = title.to_string();
    }
    if let Some(seconds) = body.get("join_time").and_then(Value::as_i64) {
        member.hiredate = chrono::DateTime::from_timestamp(seconds, 0).map(|t| t.format("%Y-%m-%d").to_string());
    }
    if let Some(frozen) = body.get("is_frozen").and_then(Value::as_bool) {
        member.enabled = !frozen;
    }
    Ok(())
}

fn create_user(_: &Captured, body: &Map<String, Value>, _: &str, d: &mut FeishuState) -> WriteResult {
    required(body, "name")?;
    if !body.get("department_ids").is_some_and(Value::is_array) {
        return refuse_400(99992402, "field validation failed: department_ids is required");
    }
    match body.get("employee_type").and_then(Value::as_i64) {
        None => return refuse_400(99992402, "field validation failed: employee_type is required"),
        Some(1..=5) => {}
        Some(_) => return refuse_400(41059, "invalid employee type error"),
    }
    if field(body, "mobile").is_none_or(str::is_empty) {
        return refuse_400(41010, "no mobile error");
    }
    let id = match field(body, "user_id") {
        Some(id) if d.directory.members.contains_key(id) => return refuse_400(41011, "userID already exist error"),
        Some(id) => id.to_string(),
        None => format!("{:08x}", rand::rng().random::<u32>()),
    };
    save_user(d, Member::new(&id, "", "0", "", None), body)
}

fn patch_user(request: &Captured, body: &Map<String, Value>, id: &str, d: &mut FeishuState) -> WriteResult {
    let key = user_key(request, id)?;
    let Some(member) = d.directory.members.get(&key).cloned() else {
        return refuse_403(41050, "no user authority error");
    };
    save_user(d, member, body)
}

/// `member` with the body's fields, stored; the answer's user.
fn save_user(d: &mut FeishuState, mut member: Member, body: &Map<String, Value>) -> WriteResult {
    apply_user(&d.directory, &mut member, body)?;
    let user = user_json(&member);
    d.directory.put_member(member);
    Ok(Some(user))
}

fn delete_user(request: &Captured, _: &Map<String, Value>, id: &str, d: &mut FeishuState) -> WriteResult {
    let key = user_key(request, id)?;
    match d.directory.members.remove(&key) {
        Some(_) => Ok(None),
        None => refuse_403(41050, "no user authority error"),
    }
}

/// One page of `items` per `page_size` (1–50, default 10) and `page_token` (an offset we issued).
fn page(request: &Captured, items: Vec<Value>) -> Result<Map<String, Value>, FeishuError> {
    let size = match request.param("page_size").map(str::parse::<usize>) {
        None => 10,
        Some(Ok(n)) if (1..=50).contains(&n) => n,
        Some(_) => return refuse_400(99992402, "field validation failed: page_size"),
    };
    let start = match request.param("page_token").map(|t| t.strip_prefix("pt-").map(str::parse::<usize>)) {
        None => 0,
        Some(Some(Ok(n))) if n <= items.len() => n,
        Some(_) => return refuse_400(99992402, "field validation failed: page_token"),
    };
    let end = (start + size).min(items.len());
    let mut data = Map::new();
    data.insert("has_more".into(), json!(end < items.len()));
    if end < items.len() {
        data.insert("page_token".into(), json!(format!("pt-{end}")));
    }
    data.insert("items".into(), Value::Array(items[start..end].to_vec()));
    Ok(data)
}

/// The sandbox's directory: `(department_id, name, parent_department_id)`.
pub const DEPARTMENTS: [(&str, &str, &str); 3] = [
    ("od-sandbox-eng", "Engineering", "0"),
    ("od-sandbox-ops", "Operations", "0"),
    ("od-sandbox-sre", "SRE", "od-sandbox-ops"),
];

/// `(user_id, name, department_id)`: 12 engineers (more than one default page), one SRE.
pub const USERS: [(&str, &str, &str); 13] = [
    ("u-eng-01", "Engineer 1", "od-sandbox-eng"),
    ("u-eng-02", "Engineer 2", "od-sandbox-eng"),
    ("u-eng-03", "Engineer 3", "od-sandbox-eng"),
    ("u-eng-04", "Engineer 4", "od-sandbox-eng"),
    ("u-eng-05", "Engineer 5", "od-sandbox-eng"),
    ("u-eng-06", "Engineer 6", "od-sandbox-eng"),
    ("u-eng-07", "Engineer 7", "od-sandbox-eng"),
    ("u-eng-08", "Engineer 8", "od-sandbox-eng"),
    ("u-eng-09", "Engineer 9", "od-sandbox-eng"),
    ("u-eng-10", "Engineer 10", "od-sandbox-eng"),
    ("u-eng-11", "Engineer 11", "od-sandbox-eng"),
    ("u-eng-12", "Engineer 12", "od-sandbox-eng"),
    ("u-sre-01", "SRE 1", "od-sandbox-sre"),
];

#[cfg(test)]
mod tests {
    #[test]
    fn the_signature_matches_the_reference_vector() {
        assert_eq!(super::sign("1700000000", "testsecret"), "AOc8oJ7//5OlQlfWC3nRL0R+IkuzcD1FKcAyibRK9Q8=");
    }
}

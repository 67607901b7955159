//! Fake Tencent Meeting REST API (docs/providers/tencent-meeting.md).
//!
//! Every request must carry `X-TC-Key`, `X-TC-Timestamp` (within the tolerance, else 190300),
//! `X-TC-Nonce`, `AppId` (and `SdkId` exactly when the app has one, else 190303),
//! `X-TC-Registered` and an `X-TC-Signature` recomputed here (else 200003); a
//! `(key, timestamp, nonce)` seen before is a replay (190301). Errors are
//! `{"error_info":{"error_code","new_error_code","message"}}` with HTTP 400 for request errors and
//! 500 for service errors (and for 9003, as the documents' example shows). Meetings are kept, so
//! create → get → cancel works; a cancelled meeting cannot be cancelled or changed again (9003).
//!
//! | route | action |
//! |---|---|
//! | `POST /v1/meetings` | create |
//! | `GET /v1/meetings?meeting_code=` / `GET /v1/meetings?userid=` | by code / the user's meetings |
//! | `GET`, `PUT /v1/meetings/{meeting_id}` | get, update |
//! | `POST /v1/meetings/{meeting_id}/cancel`, `/dismiss` | cancel, end |
//! | `GET /v1/meetings/{meeting_id}/participants` | participants |

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::Rng;
use serde_json::{Map, Value, json};
use sha2::Sha256;

use crate::capture::Captured;
use crate::config::MeetingApp;
use crate::faults::{FaultEffect, RequestFacts, Stage};
use crate::hub::Own;
use crate::records::Provider;

/// Collection route: `POST` creates a meeting, `GET ?meeting_code=`/`?userid=` looks them up.
pub const MEETINGS_PATH: &str = "/v1/meetings";
pub(crate) const MEETING_ROUTE: &str = "/v1/meetings/{meeting_id}";
pub(crate) const ACTION_ROUTE: &str = "/v1/meetings/{meeting_id}/{action}";
const READ_LIMIT: usize = 1024 * 1024;

/// The fake's data: meetings by id, and the nonces seen within the window.
#[derive(Debug, Default)]
pub(crate) struct MeetingState {
    meetings: Vec<Value>,
    nonces: HashMap<(String, String, String), Instant>,
}

impl Own<MeetingState> {
    /// Every meeting created, as `get_meeting` describes it, oldest first.
    pub(crate) fn meetings(&self) -> Vec<Value> {
        self.with(|d, _| d.meetings.clone())
    }
}

struct MeetingError {
    status: StatusCode,
    code: i64,
    message: String,
    injected: bool,
}

fn refuse<T>(code: i64, message: impl Into<String>) -> Result<T, MeetingError> {
    Err(MeetingError { status: StatusCode::BAD_REQUEST, code, message: message.into(), injected: false })
}

fn bad_param<T>(name: &str) -> Result<T, MeetingError> {
    refuse(190004, format!("invalid or missing parameter: {name}"))
}

/// docs/providers/tencent-meeting.md#errors: the documents' example answers 9003 with HTTP 500.
fn not_exist<T>() -> Result<T, MeetingError> {
    Err(MeetingError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        code: 9003,
        message: "MEETING NOT EXIST".into(),
        injected: false,
    })
}

/// Any meeting route.
pub(crate) async fn handle(State(state): State<Own<MeetingState>>, request: Request) -> Response {
    let request = Captured::read(request, READ_LIMIT).await;
    state.record_request(Provider::TencentMeeting, &request);
    let segments: Vec<String> = request.path().trim_matches('/').split('/').map(str::to_string).collect();
    let action = match (&request.method, segments.len()) {
        (&Method::POST, 2) => "create",
        (&Method::GET, 2) if request.param("meeting_code").is_some() => "get_by_code",
        (&Method::GET, 2) => "list",
        (&Method::GET, 3) => "get",
        (&Method::PUT, 3) => "update",
        (&Method::POST, 4) if segments[3] == "cancel" => "cancel",
        (&Method::POST, 4) if segments[3] == "dismiss" => "dismiss",
        (&Method::GET, 4) if segments[3] == "participants" => "participants",
        _ => "unknown",
    };
    let facts = RequestFacts {
        provider: Provider::TencentMeeting,
        path: request.path().to_string(),
        phones: Vec::new(),
        key: request.header("x-tc-key").map(str::to_string),
        action: Some(action.to_string()),
    };
    if let Some(answer) = state.before_processing(&facts).await {
        return answer;
    }
    let meeting_id = segments.get(2).cloned().unwrap_or_default();
    let result = authenticate(&state, &request).and_then(|()| {
        let body = if matches!(request.method, Method::POST | Method::PUT) { json_body(&request)? } else { Map::new() };
        match action {
            "create" => create(&state, &facts, &body),
            "get_by_code" => get_by_code(&state, &facts, &request),
            "list" => list(&state, &facts, &request),
            "get" => get(&state, &facts, &request, &meeting_id),
            "update" => update(&state, &facts, &body, &meeting_id),
            "cancel" => finish(&state, &facts, &body, &meeting_id, "userid", "MEETING_STATE_CANCELLED"),
            "dismiss" => finish(&state, &facts, &body, &meeting_id, "operator_id", "MEETING_STATE_ENDED"),
            "participants" => participants(&state, &facts, &request, &meeting_id),
            _ => Err(MeetingError {
                status: StatusCode::NOT_FOUND,
                code: 404,
                message: "api not found".into(),
                injected: false,
            }),
        }
    });
    let response = match result {
        Ok(body) => Json(body).into_response(),
        Err(error) => {
            if !error.injected {
                state.record_rejection(Provider::TencentMeeting, &error.code.to_string(), &error.message);
            }
            let body = json!({"error_info": {"error_code": error.code, "new_error_code": error.code, "message": error.message}});
            (error.status, Json(body)).into_response()
        }
    };
    state.after_processing(&facts, response).await
}

/// docs/providers/tencent-meeting.md#signature, written independently of the worker's.
pub fn expected_signature(
    secret_key: &str,
    method: &str,
    secret_id: &str,
    nonce: &str,
    timestamp: &str,
    uri: &str,
    body: &[u8],
) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret_key.as_bytes()).expect("any key length");
    for part in
        [method, "\n", "X-TC-Key=", secret_id, "&X-TC-Nonce=", nonce, "&X-TC-Timestamp=", timestamp, "\n", uri, "\n"]
    {
        mac.update(part.as_bytes());
    }
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    base64::engine::general_purpose::STANDARD.encode(hex.as_bytes())
}

fn authenticate(state: &Own<MeetingState>, request: &Captured) -> Result<(), MeetingError> {
    let header = |name: &str| request.header(name).filter(|v| !v.is_empty());
    let (Some(key), Some(app_id)) = (header("x-tc-key"), header("appid")) else {
        return refuse(190303, "AK/SK or AppId invalid: X-TC-Key and AppId are required");
    };
    let (Some(timestamp), Some(nonce), Some(signature)) =
        (header("x-tc-timestamp"), header("x-tc-nonce"), header("x-tc-signature"))
    else {
        return bad_param("X-TC-Timestamp, X-TC-Nonce and X-TC-Signature");
    };
    let Ok(seconds) = timestamp.parse::<i64>() else {
        return bad_param("X-TC-Timestamp");
    };
    // docs/providers/tencent-meeting.md#requests: the nonce is a random positive integer.
    if nonce.parse::<u64>().map_or(true, |n| n == 0) {
        return bad_param("X-TC-Nonce");
    }
    // docs/providers/tencent-meeting.md#requests: X-TC-Registered is required (0 or 1) since
    // 2021-09-24; the documents name no code for its absence, 190004 is ours.
    if !matches!(header("x-tc-registered"), Some("0" | "1")) {
        return bad_param("X-TC-Registered (0 or 1)");
    }
    let tolerance = state.config().timestamp_tolerance;
    // docs/providers/tencent-meeting.md#requests: more than 5 minutes off is 190300.
    if chrono::Utc::now().timestamp().abs_diff(seconds) > tolerance.as_secs() {
        return refuse(190300, "timestamp differs from the server time by more than 5 minutes");
    }
    let app: &MeetingApp = state
        .config()
        .meeting_apps
        .iter()
        .find(|a| a.app_id == app_id && a.secret_id == key)
        .map_or_else(|| refuse(190303, "AK/SK or AppId invalid"), Ok)?;
    // docs/providers/tencent-meeting.md#requests: SdkId exactly when the app was assigned one.
    if header("sdkid") != app.sdk_id.as_deref() {
        return refuse(190303, "AK/SK or AppId invalid: SdkId does not match the app");
    }
    let uri = match request.uri.query() {
        Some(query) => format!("{}?{query}", request.path()),
        None => request.path().to_string(),
    };
    let expected =
        expected_signature(&app.secret_key, request.method.as_str(), key, nonce, timestamp, &uri, &request.body);
    // docs/providers/tencent-meeting.md#signature: a wrong signature is 200003.
    if expected != signature {
        return refuse(200003, "Signature failed");
    }
    // Checked after the signature, so a forged request cannot burn someone's nonce.
    let fresh = state.with(|d, _| {
        let now = Instant::now();
        let window = tolerance.max(Duration::from_secs(1));
        d.nonces.retain(|_, seen| now.duration_since(*seen) <= window);
        d.nonces.insert((key.to_string(), timestamp.to_string(), nonce.to_string()), now).is_none()
    });
    // docs/providers/tencent-meeting.md#requests: a timestamp and nonce seen within 5 minutes.
    if !fresh {
        return refuse(190301, "replay attack: timestamp and nonce were used already");
    }
    Ok(())
}

fn json_body(request: &Captured) -> Result<Map<String, Value>, MeetingError> {
    match serde_json::from_slice::<Value>(&request.body) {
        Ok(Value::Object(body)) => Ok(body),
        _ => bad_param("body (a JSON object)"),
    }
}

fn injected(state: &Own<MeetingState>, facts: &RequestFacts) -> Result<(), MeetingError> {
    match state.take_fault(Stage::ProviderRequest, facts) {
        Some(FaultEffect::ErrorCode { code, message }) => Err(MeetingError {
            // Service-side codes come back as HTTP 500, request errors as 400.
            status: if matches!(code, 41 | 5108) { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::BAD_REQUEST },
            code,
            message: message.unwrap_or_else(|| format!("error {code} injected by yizhan-sandbox")),
            injected: true,
        }),
        _ => Ok(()),
    }
}

fn text<'a>(body: &'a Map<String, Value>, name: &str) -> Result<&'a str, MeetingError> {
    body.get(name).and_then(Value::as_str).filter(|s| !s.is_empty()).map_or_else(|| bad_param(name), Ok)
}

/// docs/providers/tencent-meeting.md#actions: the device type, 1 to 8.
fn instanceid(value: Option<&Value>) -> Result<u64, MeetingError> {
    let id = match value {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    };
    id.filter(|i| (1..=8).contains(i)).map_or_else(|| bad_param("instanceid"), Ok)
}

/// docs/providers/tencent-meeting.md#actions: times are UNIX seconds as strings.
fn seconds(body: &Map<String, Value>, name: &str) -> Result<i64, MeetingError> {
    body.get(name).and_then(Value::as_str).and_then(|s| s.parse().ok()).map_or_else(|| bad_param(name), Ok)
}

fn query<'a>(request: &'a Captured, name: &str) -> Result<&'a str, MeetingError> {
    request.param(name).filter(|s| !s.is_empty()).map_or_else(|| bad_param(name), Ok)
}

/// docs/providers/tencent-meeting.md#actions: a password is 4 to 6 digits.
fn check_password(body: &Map<String, Value>) -> Result<(), MeetingError> {
    match body.get("password") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(p)) if (4..=6).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()) => Ok(()),
        Some(_) => bad_param("password (4 to 6 digits)"),
    }
}

fn info_list(meetings: Vec<Value>) -> Value {
    json!({"meeting_number": meetings.len(), "meeting_info_list": meetings})
}

/// docs/providers/tencent-meeting.md#actions: `create_meeting` needs userid, instanceid, subject,
/// type (0 scheduled, 1 quick), start_time and end_time.
fn create(state: &Own<MeetingState>, facts: &RequestFacts, body: &Map<String, Value>) -> Result<Value, MeetingError> {
    let userid = text(body, "userid")?;
    instanceid(body.get("instanceid"))?;
    let subject = text(body, "subject")?;
    let kind = body.get("type").and_then(Value::as_u64).filter(|t| *t <= 1).map_or_else(|| bad_param("type"), Ok)?;
    // Required for both types; a quick meeting starts now, whatever times it was given.
    let (start, end) = (seconds(body, "start_time")?, seconds(body, "end_time")?);
    let (start, end) = if kind == 0 {
        (start, end)
    } else {
        let now = chrono::Utc::now().timestamp();
        (now, now + 3600)
    };
    if end <= start {
        return bad_param("end_time (after start_time)");
    }
    check_password(body)?;
    injected(state, facts)?;
    let mut rng = rand::rng();
    let meeting_id = rng.random_range(1_000_000_000_000_000_000u64..10_000_000_000_000_000_000u64).to_string();
    let meeting_code = rng.random_range(100_000_000u32..1_000_000_000u32).to_string();
    let mut meeting = json!({
        "meeting_id": meeting_id, "meeting_code": meeting_code, "subject": subject, "type": kind,
        "join_url": format!("https://meeting.tencent.com/dm/{meeting_code}"),
        "start_time": start.to_string(), "end_time": end.to_string(),
        "hosts": body.get("hosts").cloned().unwrap_or_else(|| json!([{"userid": userid}])),
        "participants": body.get("invitees").cloned().unwrap_or_else(|| json!([])),
        "settings": body.get("settings").cloned().unwrap_or_else(|| json!({})),
        "status": "MEETING_STATE_INIT", "creator_userid": userid,
    });
    if let Some(password) = body.get("password").and_then(Value::as_str) {
        meeting["password"] = json!(password);
    }
    state.with(|d, _| d.meetings.push(meeting.clone()));
    Ok(info_list(vec![meeting]))
}

fn find(state: &Own<MeetingState>, meeting_id: &str) -> Option<Value> {
    state.with(|d, _| d.meetings.iter().find(|m| m["meeting_id"] == meeting_id).cloned())
}

fn get(state: &Own<MeetingState>, facts: &RequestFacts, request: &Captured, id: &str) -> Result<Value, MeetingError> {
    query(request, "userid")?;
    instanceid(request.param("instanceid").map(|s| json!(s)).as_ref())?;
    injected(state, facts)?;
    find(state, id).map_or_else(not_exist, |m| Ok(info_list(vec![m])))
}

fn get_by_code(state: &Own<MeetingState>, facts: &RequestFacts, request: &Captured) -> Result<Value, MeetingError> {
    let code = query(request, "meeting_code")?.to_string();
    query(request, "userid")?;
    instanceid(request.param("instanceid").map(|s| json!(s)).as_ref())?;
    injected(state, facts)?;
    let found = state.with(|d, _| d.meetings.iter().find(|m| m["meeting_code"] == code.as_str()).cloned());
    found.map_or_else(not_exist, |m| Ok(info_list(vec![m])))
}

fn list(state: &Own<MeetingState>, facts: &RequestFacts, request: &Captured) -> Result<Value, MeetingError> {
    let userid = query(request, "userid")?.to_string();
    instanceid(request.param("instanceid").map(|s| json!(s)).as_ref())?;
    injected(state, facts)?;
    let mine: Vec<Value> = state.with(|d, _| {
        d.meetings
            .iter()
            .filter(|m| m["creator_userid"] == userid.as_str() && m["status"] == "MEETING_STATE_INIT")
            .cloned()
            .collect()
    });
    let mut answer = info_list(mine);
    answer["remaining"] = json!(0);
    answer["next_pos"] = json!(0);
    answer["next_cursory"] = json!(0);
    Ok(answer)
}

/// Changes a live meeting with `f`; 9003 when it does not exist or is over.
fn change(state: &Own<MeetingState>, id: &str, f: impl FnOnce(&mut Value)) -> Result<Value, MeetingError> {
    state
        .with(|d, _| {
            let meeting =
                d.meetings.iter_mut().find(|m| m["meeting_id"] == id && m["status"] == "MEETING_STATE_INIT")?;
            f(meeting);
            Some(meeting.clone())
        })
        .map_or_else(not_exist, Ok)
}

fn update(
    state: &Own<MeetingState>,
    facts: &RequestFacts,
    body: &Map<String, Value>,
    id: &str,
) -> Result<Value, MeetingError> {
    text(body, "userid")?;
    instanceid(body.get("instanceid"))?;
    check_password(body)?;
    for name in ["start_time", "end_time"] {
        if body.contains_key(name) {
            seconds(body, name)?;
        }
    }
    injected(state, facts)?;
    let meeting = change(state, id, |meeting| {
        for name in ["subject", "type", "start_time", "end_time", "password", "hosts", "settings"] {
            if let Some(value) = body.get(name) {
                meeting[name] = value.clone();
            }
        }
        if let Some(invitees) = body.get("invitees") {
            meeting["participants"] = invitees.clone();
        }
    })?;
    Ok(
        json!({"meeting_number": 1, "meeting_info_list": [{"meeting_id": meeting["meeting_id"], "meeting_code": meeting["meeting_code"]}]}),
    )
}

/// Cancel (`userid`) or dismiss (`operator_id`): the meeting moves to `status`.
fn finish(
    state: &Own<MeetingState>,
    facts: &RequestFacts,
    body: &Map<String, Value>,
    id: &str,
    operator: &str,
    status: &str,
) -> Result<Value, MeetingError> {
    text(body, operator)?;
    instanceid(body.get("instanceid"))?;
    if body.get("reason_code").and_then(Value::as_i64).is_none() {
        return bad_param("reason_code");
    }
    // docs/providers/tencent-meeting.md#actions: dismiss names its operator by operator_id, type 1.
    if operator == "operator_id" && body.get("operator_id_type").and_then(Value::as_u64) != Some(1) {
        return bad_param("operator_id_type");
    }
    injected(state, facts)?;
    change(state, id, |meeting| meeting["status"] = json!(status))?;
    Ok(json!({}))
}

fn participants(
    state: &Own<MeetingState>,
    facts: &RequestFacts,
    request: &Captured,
    id: &str,
) -> Result<Value, MeetingError> {
    query(request, "userid")?;
    injected(state, facts)?;
    let meeting = find(state, id).map_or_else(not_exist, Ok)?;
    let people = meeting["participants"].as_array().cloned().unwrap_or_default();
    Ok(
        json!({"meeting_id": meeting["meeting_id"], "meeting_code": meeting["meeting_code"], "subject": meeting["subject"],
              "schedule_start_time": meeting["start_time"], "schedule_end_time": meeting["end_time"],
              "participants": people, "has_remaining": false, "next_pos": 0, "total_count": people.len()}),
    )
}

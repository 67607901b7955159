//! Fake WeCom application API (docs/providers/wecom.md): `gettoken`, the 50 JSON APIs of the `wecom`
//! connector, each checking its token and its required fields from one table ([`APIS`]), and the two
//! media uploads. Each rule group of the table cites the section listing the official page it follows.
//!
//! Answers are HTTP 200 `{"errcode","errmsg",...}`:
//!
//! | errcode | when |
//! |---|---|
//! | 40013 | `gettoken`: unknown `corpid` |
//! | 40001 | `gettoken`: `corpsecret` is none of the corp's secrets |
//! | 41001 | `access_token` missing |
//! | 40014 | `access_token` unknown |
//! | 42001 | `access_token` expired (after 7200 s, or [`crate::SandboxState::expire_wecom_tokens`]) |
//! | 60011 | a contacts API called without the contacts secret's token |
//! | 48002 | another API called with a token of the wrong secret |
//! | 43004 | wrong HTTP method (`require GET`/`require POST`) |
//! | 47001 | POST body not a JSON object |
//! | 40058 | a required field missing (`msgtype`'s object for messages) |
//! | 60111 | `userid` of `get_member`/`update_member`/`delete_member` not in the directory |
//! | 81013 | `send_app_message`: every `touser` unknown (and no `toparty`/`totag`) |
//!
//! The directory is [`USERS`] plus `staff0` to `staff9999` ([`is_member`]); unknown users among
//! known ones come back in `invaliduser`. As WeCom does, an application message to a member who
//! already had 30 from the app in the last minute, or 1,000 in the last hour, is answered with
//! errcode 0 and not delivered to that member: counted in `Stats::wecom_member_drops`.
//! `gettoken` hands out the same token while it is valid ("有效期内重复获取返回相同结果").

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::{FromRef, FromRequest, Query, Request, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use rand::Rng;
use serde_json::{Map, Value, json};

use crate::capture::Captured;
use crate::config::WecomCorp;
use crate::directory::Directory;
use crate::faults::{FaultEffect, RequestFacts, Stage};
use crate::hub::Own;
use crate::records::Provider;

/// `GET ?corpid=&corpsecret=`: an `access_token` for the area of the secret (app, contacts, ...).
pub const GETTOKEN_PATH: &str = "/cgi-bin/gettoken";
/// How long an `access_token` is valid (`expires_in` 7200 s); 42001 after.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(7200);
/// The sandbox corp's named members.
pub const USERS: [&str; 4] = ["zhangsan", "lisi", "wangwu", "zhaoliu"];
/// What one member may receive from one app before WeCom drops the excess: (count, window).
pub const MEMBER_LIMITS: [(usize, Duration); 2] = [(30, Duration::from_secs(60)), (1000, Duration::from_secs(3600))];

/// A member of the sandbox corp: one of [`USERS`], or `staff0` to `staff9999` (for bursts).
pub fn is_member(userid: &str) -> bool {
    USERS.contains(&userid)
        || userid
            .strip_prefix("staff")
            .is_some_and(|n| (1..=4).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit()))
}
const READ_LIMIT: usize = 2 * 1024 * 1024;

/// Which secret's token an API needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Area {
    Contacts,
    ExternalContact,
    App,
}

/// One API: method, path, the secret it needs, required fields (`a.b` inside objects), whether
/// `userid` must be a known member, and the data it answers (JSON text).
struct Api {
    get: bool,
    path: &'static str,
    area: Area,
    required: &'static [&'static str],
    known_user: bool,
    answer: &'static str,
}

const fn api(
    get: bool,
    path: &'static str,
    area: Area,
    required: &'static [&'static str],
    answer: &'static str,
) -> Api {
    Api { get, path, area, required, known_user: false, answer }
}

const fn user_api(get: bool, path: &'static str, answer: &'static str) -> Api {
    Api { get, path, area: Area::Contacts, required: &["userid"], known_user: true, answer }
}

use Area::{App, Contacts, ExternalContact as Ext};

#[rustfmt::skip]
const APIS: &[Api] = &[
    // docs/providers/wecom.md#contacts (required fields per API in its table)
    api(true, "/cgi-bin/department/list", Contacts, &[], r#"{"department": [{"id": 1, "name": "Sandbox", "parentid": 0, "order": 100000000}, {"id": 2, "name": "Engineering", "parentid": 1, "order": 100}]}"#),
    api(true, "/cgi-bin/department/simplelist", Contacts, &[], "{}"),
    api(true, "/cgi-bin/department/get", Contacts, &["id"], "{}"),
    api(false, "/cgi-bin/department/create", Contacts, &["name", "parentid"], r#"{"id": 3}"#),
    api(false, "/cgi-bin/department/update", Contacts, &["id"], "{}"),
    api(true, "/cgi-bin/department/delete", Contacts, &["id"], "{}"),
    api(false, "/cgi-bin/user/list_id", Contacts, &[], r#"{"next_cursor": "", "dept_user": [{"userid": "zhangsan", "department": 1}, {"userid": "lisi", "department": 2}]}"#),
    api(false, "/cgi-bin/user/create", Contacts, &["userid", "name"], r#"{"created_username": ""}"#),
    user_api(true, "/cgi-bin/user/get", r#"{"name": "Sandbox member", "department": [1], "status": 1}"#),
    user_api(false, "/cgi-bin/user/update", "{}"),
    user_api(true, "/cgi-bin/user/delete", "{}"),
    api(false, "/cgi-bin/user/batchdelete", Contacts, &["useridlist"], "{}"),
    api(true, "/cgi-bin/user/simplelist", Contacts, &["department_id"], r#"{"userlist": [{"userid": "zhangsan", "name": "张三", "department": [1]}]}"#),
    api(true, "/cgi-bin/user/list", Contacts, &["department_id"], r#"{"userlist": [{"userid": "zhangsan", "name": "张三", "department": [1], "status": 1}]}"#),
    // docs/providers/wecom.md#app-messages
    api(false, "/cgi-bin/message/send", App, &["msgtype", "agentid"], "{}"),
    api(false, "/cgi-bin/message/recall", App, &["msgid"], "{}"),
    // docs/providers/wecom.md#appchat
    api(false, "/cgi-bin/appchat/create", App, &["userlist"], r#"{"chatid": "sandboxchat"}"#),
    api(false, "/cgi-bin/appchat/update", App, &["chatid"], "{}"),
    api(true, "/cgi-bin/appchat/get", App, &["chatid"], r#"{"chat_info": {"chatid": "sandboxchat", "name": "Sandbox", "owner": "zhangsan", "userlist": ["zhangsan", "lisi"]}}"#),
    api(false, "/cgi-bin/appchat/send", App, &["chatid", "msgtype"], "{}"),
    // docs/providers/wecom.md#customer-contact (we require more than WeCom for the statistics' day_end_time
    // and add_msg_template's chat_type and text: docs/providers/wecom.md#where-our-rules-and-wecoms-pages-differ)
    api(true, "/cgi-bin/externalcontact/get", Ext, &["external_userid"], r#"{"external_contact": {"external_userid": "wmsandbox", "name": "Customer", "type": 1}, "follow_user": [], "next_cursor": ""}"#),
    api(false, "/cgi-bin/externalcontact/batch/get_by_user", Ext, &["userid_list"], r#"{"external_contact_list": [], "next_cursor": ""}"#),
    api(false, "/cgi-bin/externalcontact/groupchat/get", Ext, &["chat_id"], r#"{"group_chat": {"chat_id": "wrsandbox", "name": "Customers", "owner": "zhangsan", "member_list": []}}"#),
    api(false, "/cgi-bin/externalcontact/groupchat/statistic", Ext, &["day_begin_time", "day_end_time", "owner_filter.userid_list"], r#"{"total": 0, "next_offset": 0, "items": []}"#),
    api(false, "/cgi-bin/externalcontact/groupchat/statistic_group_by_day", Ext, &["day_begin_time", "day_end_time", "owner_filter.userid_list"], r#"{"items": []}"#),
    api(false, "/cgi-bin/externalcontact/get_moment_list", Ext, &["start_time", "end_time"], r#"{"next_cursor": "", "moment_list": []}"#),
    api(false, "/cgi-bin/externalcontact/get_moment_task", Ext, &["moment_id"], r#"{"next_cursor": "", "task_list": []}"#),
    api(false, "/cgi-bin/externalcontact/get_moment_customer_list", Ext, &["moment_id", "userid"], r#"{"next_cursor": "", "customer_list": []}"#),
    api(false, "/cgi-bin/externalcontact/get_moment_send_result", Ext, &["moment_id", "userid"], r#"{"next_cursor": "", "customer_list": []}"#),
    api(false, "/cgi-bin/externalcontact/get_moment_comments", Ext, &["moment_id", "userid"], r#"{"comment_list": [], "like_list": []}"#),
    api(false, "/cgi-bin/externalcontact/add_msg_template", Ext, &["chat_type", "text.content"], r#"{"fail_list": [], "msgid": "msgsandbox"}"#),
    api(false, "/cgi-bin/externalcontact/send_welcome_msg", Ext, &["welcome_code"], "{}"),
    api(false, "/cgi-bin/externalcontact/group_welcome_template/add", Ext, &[], r#"{"template_id": "msgsandbox"}"#),
    api(false, "/cgi-bin/externalcontact/group_welcome_template/edit", Ext, &["template_id"], "{}"),
    api(false, "/cgi-bin/externalcontact/group_welcome_template/get", Ext, &["template_id"], r#"{"text": {"content": "welcome"}}"#),
    api(false, "/cgi-bin/externalcontact/group_welcome_template/del", Ext, &["template_id"], "{}"),
    api(false, "/cgi-bin/externalcontact/add_contact_way", Ext, &["type", "scene"], r#"{"config_id": "cfgsandbox", "qr_code": "https://example.invalid/qr.png"}"#),
    api(false, "/cgi-bin/externalcontact/get_contact_way", Ext, &["config_id"], r#"{"contact_way": {"config_id": "cfgsandbox", "type": 1, "scene": 2}}"#),
    api(false, "/cgi-bin/externalcontact/update_contact_way", Ext, &["config_id"], "{}"),
    api(false, "/cgi-bin/externalcontact/del_contact_way", Ext, &["config_id"], "{}"),
    api(false, "/cgi-bin/externalcontact/close_temp_chat", Ext, &["userid", "external_userid"], "{}"),
    // docs/providers/wecom.md#calendars-and-schedules (calendar/update and schedule/add differ from the
    // current pages: docs/providers/wecom.md#where-our-rules-and-wecoms-pages-differ)
    api(false, "/cgi-bin/oa/calendar/add", App, &["calendar.organizer", "calendar.summary", "calendar.color"], r#"{"cal_id": "calsandbox"}"#),
    api(false, "/cgi-bin/oa/calendar/update", App, &["calendar.cal_id"], "{}"),
    api(false, "/cgi-bin/oa/calendar/get", App, &["cal_id_list"], r#"{"calendar_list": []}"#),
    api(false, "/cgi-bin/oa/calendar/del", App, &["cal_id"], "{}"),
    api(false, "/cgi-bin/oa/schedule/add", App, &["schedule.organizer", "schedule.start_time", "schedule.end_time"], r#"{"schedule_id": "schsandbox"}"#),
    api(false, "/cgi-bin/oa/schedule/update", App, &["schedule.schedule_id"], "{}"),
    api(false, "/cgi-bin/oa/schedule/get", App, &["schedule_id_list"], r#"{"schedule_list": []}"#),
    api(false, "/cgi-bin/oa/schedule/del", App, &["schedule_id"], "{}"),
    api(false, "/cgi-bin/oa/schedule/get_by_calendar", App, &["cal_id"], r#"{"schedule_list": []}"#),
];

/// `POST ?access_token=&type=image|voice|video|file`, multipart `media`: a temporary media file.
pub const MEDIA_UPLOAD_PATH: &str = "/cgi-bin/media/upload";
/// `POST ?access_token=`, multipart `media`: an image kept for good, answered with its `url`.
pub const MEDIA_UPLOADIMG_PATH: &str = "/cgi-bin/media/uploadimg";
/// The largest media body read (a 20 MB file and the multipart framing).
const MEDIA_READ_LIMIT: usize = 21 * 1024 * 1024;
/// Every media file must be larger than 5 bytes (docs/providers/wecom.md#temporary-media).
const MEDIA_MIN_BYTES: usize = 6;

/// The largest file of each temporary media type, and the image upload's (bytes).
fn media_limit(media_type: &str) -> Option<usize> {
    match media_type {
        "image" | "video" => Some(10 * 1024 * 1024),
        "voice" => Some(2 * 1024 * 1024),
        "file" => Some(20 * 1024 * 1024),
        "uploadimg" => Some(2 * 1024 * 1024),
        _ => None,
    }
}

/// The paths the fake serves (besides `gettoken`).
pub fn api_paths() -> impl Iterator<Item = &'static str> {
    APIS.iter().map(|a| a.path)
}

/// Who an access token was issued to: (corp_id, area, expiry).
type TokenOwner = (String, Area, Instant);

/// Tokens, accepted messages and the corp's directory.
#[derive(Debug)]
pub(crate) struct WecomState {
    /// What the contacts APIs read and write ([`crate::wecom_contacts`]).
    pub(crate) directory: Directory,
    tokens: HashMap<String, TokenOwner>,
    messages: Vec<Value>,
    /// (agentid, userid) → delivery times within the longest of [`MEMBER_LIMITS`].
    deliveries: HashMap<(String, String), VecDeque<Instant>>,
    /// Where directory edits are announced ([`crate::wecom_events`]).
    pub(crate) callback: Option<crate::wecom_events::WecomCallback>,
    /// What the receiver answered each announced change, oldest first.
    pub(crate) events_sent: Vec<crate::wecom_events::SentEvent>,
}

impl Default for WecomState {
    fn default() -> Self {
        WecomState {
            directory: Directory::default_wecom(),
            tokens: HashMap::new(),
            messages: Vec::new(),
            deliveries: HashMap::new(),
            callback: None,
            events_sent: Vec::new(),
        }
    }
}

impl WecomState {
    /// Delivers an application message to `member` unless WeCom's per-member limits drop it.
    // docs/providers/wecom.md#rate-limits (30/min, 1,000/h per member, dropped silently)
    fn deliver(&mut self, agentid: &str, member: &str, now: Instant) -> bool {
        let times = self.deliveries.entry((agentid.to_string(), member.to_string())).or_default();
        let longest = MEMBER_LIMITS.iter().map(|(_, window)| *window).max().unwrap_or_default();
        while times.front().is_some_and(|t| now.duration_since(*t) >= longest) {
            times.pop_front();
        }
        let over = MEMBER_LIMITS
            .iter()
            .any(|(count, window)| times.iter().filter(|t| now.duration_since(**t) < *window).count() >= *count);
        if !over {
            times.push_back(now);
        }
        !over
    }
}

impl Own<WecomState> {
    /// Makes every WeCom token expire now: the next call with one gets 42001.
    pub(crate) fn expire_tokens(&self) {
        let now = Instant::now();
        self.with(|data, _| data.tokens.values_mut().for_each(|t| t.2 = now));
    }

    /// The bodies of the application and appchat messages WeCom accepted, oldest first.
    pub(crate) fn messages(&self) -> Vec<Value> {
        self.with(|data, _| data.messages.clone())
    }
}

/// The routes of the fake.
pub(crate) fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Own<WecomState>: FromRef<S>,
{
    let media = axum::extract::DefaultBodyLimit::max(MEDIA_READ_LIMIT);
    APIS.iter()
        .fold(Router::new().route(GETTOKEN_PATH, any(gettoken)), |router, api| router.route(api.path, any(call)))
        .route(MEDIA_UPLOAD_PATH, any(upload_media).layer(media))
        .route(MEDIA_UPLOADIMG_PATH, any(upload_media).layer(media))
}

struct Refusal {
    errcode: i64,
    errmsg: String,
    injected: bool,
}

fn refuse<T>(errcode: i64, errmsg: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal { errcode, errmsg: errmsg.into(), injected: false })
}

fn injected(state: &Own<WecomState>, facts: &RequestFacts) -> Result<(), Refusal> {
    match state.take_fault(Stage::ProviderRequest, facts) {
        Some(FaultEffect::ErrorCode { code, message }) => Err(Refusal {
            errcode: code,
            errmsg: message.unwrap_or_else(|| format!("errcode {code} injected by yizhan-sandbox")),
            injected: true,
        }),
        _ => Ok(()),
    }
}

async fn respond(
    state: &Own<WecomState>,
    facts: &RequestFacts,
    result: Result<Map<String, Value>, Refusal>,
) -> Response {
    let body = match result {
        Ok(data) => {
            let mut body = Map::new();
            body.insert("errcode".into(), json!(0));
            body.insert("errmsg".into(), json!("ok"));
            body.extend(data);
            body
        }
        Err(refusal) => {
            if !refusal.injected {
                state.record_rejection(Provider::Wecom, &refusal.errcode.to_string(), &refusal.errmsg);
            }
            let mut body = Map::new();
            body.insert("errcode".into(), json!(refusal.errcode));
            body.insert("errmsg".into(), json!(refusal.errmsg));
            body
        }
    };
    state.after_processing(facts, Json(Value::Object(body)).into_response()).await
}

fn facts(request: &Captured, key: Option<String>, action: &str) -> RequestFacts {
    RequestFacts {
        provider: Provider::Wecom,
        path: request.path().to_string(),
        phones: Vec::new(),
        key,
        action: Some(action.to_string()),
    }
}

/// `GET /cgi-bin/gettoken?corpid=&corpsecret=`.
async fn gettoken(State(state): State<Own<WecomState>>, request: Request) -> Response {
    let request = Captured::read(request, READ_LIMIT).await;
    state.record_request(Provider::Wecom, &request);
    state.with(|_, stats| stats.wecom_gettoken_calls += 1);
    let corp_id = request.param("corpid").unwrap_or_default().to_string();
    let facts = facts(&request, Some(corp_id.clone()), "gettoken");
    if let Some(answer) = state.before_processing(&facts).await {
        return answer;
    }
    let result = issue(&state, &request, &corp_id, &facts);
    respond(&state, &facts, result).await
}

// docs/providers/wecom.md#access-token
fn issue(
    state: &Own<WecomState>,
    request: &Captured,
    corp_id: &str,
    facts: &RequestFacts,
) -> Result<Map<String, Value>, Refusal> {
    if request.method != Method::GET {
        return refuse(43004, "require GET");
    }
    let Some(corp) = state.config().wecom_corps.iter().find(|c| c.corp_id == corp_id) else {
        return refuse(40013, "invalid corpid");
    };
    let Some(area) = area_of(corp, request.param("corpsecret").unwrap_or_default()) else {
        return refuse(40001, "invalid credential");
    };
    injected(state, facts)?;
    let fresh = format!("sandbox-{:032x}", rand::rng().random::<u128>());
    let (token, expires_in) = state.with(|data, _| {
        let now = Instant::now();
        let current = data
            .tokens
            .iter()
            .find(|(_, (c, a, expiry))| c == corp_id && *a == area && *expiry > now)
            .map(|(token, (_, _, expiry))| (token.clone(), expiry.duration_since(now).as_secs()));
        current.unwrap_or_else(|| {
            data.tokens.insert(fresh.clone(), (corp_id.to_string(), area, now + TOKEN_LIFETIME));
            (fresh, TOKEN_LIFETIME.as_secs())
        })
    });
    let mut answer = Map::new();
    answer.insert("access_token".into(), json!(token));
    answer.insert("expires_in".into(), json!(expires_in));
    Ok(answer)
}

fn area_of(corp: &WecomCorp, secret: &str) -> Option<Area> {
    if secret.is_empty() {
        None
    } else if secret == corp.app_secret {
        Some(App)
    } else if corp.contacts_secret.as_deref() == Some(secret) {
        Some(Contacts)
    } else if corp.external_contact_secret.as_deref() == Some(secret) {
        Some(Ext)
    } else {
        None
    }
}

/// The request's `access_token`, and its owner as the sandbox issued it.
fn token_of(state: &Own<WecomState>, request: &Captured) -> (String, Option<TokenOwner>) {
    let token = request.param("access_token").unwrap_or_default().to_string();
    let owner = state.with(|data, _| data.tokens.get(&token).cloned());
    (token, owner)
}

/// The corp and area of a valid token (docs/providers/wecom.md#access-token): 41001 when it is
/// missing, 40014 when unknown, 42001 when expired.
fn valid_token(token: &str, owner: Option<TokenOwner>) -> Result<(String, Area), Refusal> {
    if token.is_empty() {
        return refuse(41001, "access_token missing");
    }
    let Some((corp, area, expiry)) = owner else {
        return refuse(40014, "invalid access_token");
    };
    if expiry <= Instant::now() {
        return refuse(42001, "access_token expired");
    }
    Ok((corp, area))
}

/// Any API of [`APIS`].
async fn call(State(state): State<Own<WecomState>>, request: Request) -> Response {
    let request = Captured::read(request, READ_LIMIT).await;
    state.record_request(Provider::Wecom, &request);
    let Some(api) = APIS.iter().find(|a| a.path == request.path()) else {
        return respond(&state, &facts(&request, None, ""), refuse(404, "unknown api")).await;
    };
    let (token, owner) = token_of(&state, &request);
    let action = api.path.trim_start_matches("/cgi-bin/");
    let facts = facts(&request, owner.as_ref().map(|o| o.0.clone()), action);
    if let Some(answer) = state.before_processing(&facts).await {
        return answer;
    }
    let result = handle(&state, &request, api, &token, owner, &facts);
    respond(&state, &facts, result).await
}

fn handle(
    state: &Own<WecomState>,
    request: &Captured,
    api: &Api,
    token: &str,
    owner: Option<TokenOwner>,
    facts: &RequestFacts,
) -> Result<Map<String, Value>, Refusal> {
    let (_, area) = valid_token(token, owner)?;
    match (api.area, area) {
        (Contacts, Contacts) | (App, App) | (Ext, App | Ext) => {}
        (Contacts, _) => return refuse(60011, "no privilege to access/modify contact/party/agent"),
        _ => return refuse(48002, "api forbidden"),
    }
    let params: Map<String, Value> = if api.get {
        if request.method != Method::GET {
            return refuse(43004, "require GET");
        }
        let query = Query::<HashMap<String, String>>::try_from_uri(&request.uri).map(|q| q.0).unwrap_or_default();
        query.into_iter().filter(|(n, _)| n != "access_token").map(|(n, v)| (n, Value::String(v))).collect()
    } else {
        if request.method != Method::POST {
            return refuse(43004, "require POST");
        }
        match serde_json::from_slice(&request.body) {
            Ok(Value::Object(body)) => body,
            _ => return refuse(47001, "data format error"),
        }
    };
    for field in api.required {
        if lookup(&params, field).is_none_or(|v| v.is_null() || v.as_str() == Some("")) {
            return refuse(40058, format!("invalid Request Parameter, hint: missing {field}"));
        }
    }
    let msgtype = params.get("msgtype").and_then(Value::as_str);
    if let Some(msgtype) = msgtype
        && !params.get(msgtype).is_some_and(Value::is_object)
    {
        return refuse(40058, format!("invalid Request Parameter, hint: missing {msgtype}"));
    }
    // docs/providers/wecom.md#contacts: the contacts APIs work on the editable directory.
    if api.area == Contacts {
        injected(state, facts)?;
        return state
            .with(|data, _| crate::wecom_contacts::handle(&mut data.directory, api.path, &params))
            .map_err(|(errcode, errmsg)| Refusal { errcode, errmsg, injected: false });
    }
    if api.known_user && !params.get("userid").and_then(Value::as_str).is_some_and(is_member) {
        return refuse(60111, "userid not found");
    }
    let mut answer: Map<String, Value> =
        serde_json::from_str(api.answer).expect("the table's answers are JSON objects");
    // docs/providers/wecom.md#app-messages (81013, invaliduser)
    if api.path == "/cgi-bin/message/send" {
        let touser = params.get("touser").and_then(Value::as_str).unwrap_or_default();
        let (valid, invalid): (Vec<&str>, Vec<&str>) =
            touser.split('|').filter(|u| !u.is_empty()).partition(|u| *u == "@all" || is_member(u));
        let others = params.contains_key("toparty") || params.contains_key("totag");
        if valid.is_empty() && !others {
            return refuse(81013, "user & party & tag all invalid");
        }
        answer.insert("invaliduser".into(), json!(invalid.join("|")));
        answer.insert("msgid".into(), json!(format!("sandbox-msg-{:016x}", rand::rng().random::<u64>())));
    }
    injected(state, facts)?;
    if msgtype.is_some() {
        let members: Vec<&str> = if api.path == "/cgi-bin/message/send" {
            let touser = params.get("touser").and_then(Value::as_str).unwrap_or_default();
            touser.split('|').filter(|u| is_member(u)).collect()
        } else {
            Vec::new()
        };
        let agentid = params.get("agentid").map(Value::to_string).unwrap_or_default();
        let now = Instant::now();
        state.with(|data, stats| {
            stats.wecom_messages += 1;
            for member in members {
                if !data.deliver(&agentid, member, now) {
                    stats.wecom_member_drops += 1;
                }
            }
            data.messages.push(Value::Object(params.clone()));
        });
    }
    Ok(answer)
}

/// `media/upload` and `media/uploadimg` (docs/providers/wecom.md#temporary-media): an app
/// token, a multipart `media` part with a filename, the type's size and format; the upload is
/// recorded with the corp id as its key (`SandboxState::uploaded_media`).
async fn upload_media(State(state): State<Own<WecomState>>, request: Request) -> Response {
    let request = Captured::read(request, MEDIA_READ_LIMIT).await;
    state.record_request(Provider::Wecom, &request);
    let (token, owner) = token_of(&state, &request);
    let action = request.path().trim_start_matches("/cgi-bin/").to_string();
    let facts = facts(&request, owner.as_ref().map(|o| o.0.clone()), &action);
    if let Some(answer) = state.before_processing(&facts).await {
        return answer;
    }
    let result = store_media(&state, &request, &token, owner, &facts).await;
    respond(&state, &facts, result).await
}

async fn store_media(
    state: &Own<WecomState>,
    request: &Captured,
    token: &str,
    owner: Option<TokenOwner>,
    facts: &RequestFacts,
) -> Result<Map<String, Value>, Refusal> {
    let (corp, area) = valid_token(token, owner)?;
    if area != App {
        return refuse(48002, "api forbidden");
    }
    if request.method != Method::POST {
        return refuse(43002, "require POST method");
    }
    let image_only = request.path() == MEDIA_UPLOADIMG_PATH;
    let media_type = if image_only { "uploadimg" } else { request.param("type").unwrap_or_default() };
    let Some(max) = media_limit(media_type) else {
        return refuse(40004, "invalid media type");
    };
    if request.oversized {
        return refuse(40006, "invalid file size");
    }
    let Ok(mut multipart) = axum::extract::Multipart::from_request(request.to_request(), &()).await else {
        return refuse(44001, "empty media data");
    };
    let mut part = None;
    while let Ok(Some(field)) = multipart.next_field().await {
        if field.name() == Some("media") {
            let filename = field.file_name().unwrap_or_default().to_string();
            let Ok(bytes) = field.bytes().await else { break };
            part = Some((filename, bytes.to_vec()));
            break;
        }
    }
    let Some((filename, content)) = part else {
        return refuse(44001, "empty media data");
    };
    if filename.is_empty() {
        return refuse(40058, "invalid Request Parameter, hint: the media part needs a filename");
    }
    if !(MEDIA_MIN_BYTES..=max).contains(&content.len()) {
        return refuse(40006, "invalid file size");
    }
    let png = content.starts_with(b"\x89PNG\r\n\x1a\n");
    let jpg = content.starts_with(&[0xFF, 0xD8, 0xFF]);
    if matches!(media_type, "image" | "uploadimg") && !(png || jpg) {
        return refuse(40005, "invalid file type");
    }
    if media_type == "voice" && !content.starts_with(b"#!AMR") {
        return refuse(40005, "invalid file type");
    }
    injected(state, facts)?;
    let media_id: String = format!("3{:055x}", rand::rng().random::<u128>());
    let created_at = chrono::Utc::now().timestamp();
    state.record_media(crate::records::UploadedMedia {
        key: corp,
        media_id: media_id.clone(),
        media_type: media_type.to_string(),
        filename,
        size: content.len(),
        md5: hex::encode(<md5::Md5 as md5::Digest>::digest(&content)),
        created_at,
    });
    let mut answer = Map::new();
    if image_only {
        answer.insert("url".into(), json!(format!("https://wework.qpic.cn/wwpic/sandbox/{media_id}/0")));
    } else {
        answer.insert("type".into(), json!(media_type));
        answer.insert("media_id".into(), json!(media_id));
        answer.insert("created_at".into(), json!(created_at.to_string()));
    }
    Ok(answer)
}

/// `a.b`: field `b` of object `a`.
fn lookup<'a>(params: &'a Map<String, Value>, field: &str) -> Option<&'a Value> {
    let mut parts = field.split('.');
    let mut value = params.get(parts.next()?)?;
    for part in parts {
        value = value.get(part)?;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_past_30_a_minute_are_dropped_per_app() {
        let mut data = WecomState::default();
        let start = Instant::now();
        for i in 0..30 {
            assert!(data.deliver("1000002", "lisi", start + Duration::from_secs(i)), "{i}");
        }
        assert!(!data.deliver("1000002", "lisi", start + Duration::from_secs(59)), "31st within a minute");
        assert!(data.deliver("1000003", "lisi", start + Duration::from_secs(59)), "another app counts apart");
        assert!(data.deliver("1000002", "zhangsan", start + Duration::from_secs(59)), "another member too");
        assert!(data.deliver("1000002", "lisi", start + Duration::from_secs(60)), "the first left the window");
        assert!(is_member("staff0") && is_member("staff9999") && !is_member("staff10000") && !is_member("staffx"));
    }

    #[test]
    fn the_table_is_well_formed() {
        assert_eq!(APIS.len(), 50);
        for api in APIS {
            assert!(serde_json::from_str::<Map<String, Value>>(api.answer).is_ok(), "{}", api.path);
        }
        let mut paths: Vec<_> = api_paths().collect();
        paths.dedup();
        assert_eq!(paths.len(), 50);
    }
}

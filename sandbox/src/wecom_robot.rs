//! Fake WeCom group robot webhook (docs/providers/wecom.md#group-robot): `send` and `upload_media`.
//!
//! The `key` query parameter is the credential. Every answer is HTTP 200 with
//! `{"errcode":N,"errmsg":"..."}`; the codes are WeCom's global ones:
//!
//! | errcode | when |
//! |---|---|
//! | 93000 | `key` missing or unknown |
//! | 43002 | method other than POST |
//! | 40035 | body is not a JSON object |
//! | 40008 | `msgtype` missing or not one of text, markdown, image, news, file |
//! | 44004 | text/markdown `content` missing or empty |
//! | 40058 | text > 2048 B or markdown > 4096 B of UTF-8, a field of the wrong type, or its section missing (a news title > 128 B or description > 512 B is cut, not refused) |
//! | 40009 | image: base64 undecodable, image > 2 MB, or `md5` ≠ MD5 of the decoded bytes |
//! | 40004 | image not JPG/PNG; voice upload not AMR |
//! | 45008 | news with 0 or more than 8 articles |
//! | 41016 / 41010 | news article without `title` / `url` |
//! | 41006 | file without `media_id` |
//! | 40007 | `media_id` unknown, uploaded by another key, or not a file |
//! | 45009 | more than the configured messages per rolling minute for the key (default 20) |
//! | 40005 | upload `type` not `file` / `voice` |
//! | 44001 | upload without a multipart `media` part |
//! | 40006 | upload size outside 5 B..=20 MB (voice: 2 MB) |

use axum::Json;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use md5::{Digest, Md5};
use rand::Rng;
use rand::distr::Alphanumeric;
use serde_json::{Map, Value, json};

use crate::capture::Captured;
use crate::faults::{FaultEffect, RequestFacts, Stage};
use crate::hub::Hub;
use crate::records::{Provider, RobotMessage, UploadedMedia};

/// `POST ?key=` with `{"msgtype": M, M: {...}}`.
pub const SEND_PATH: &str = "/cgi-bin/webhook/send";
/// `POST ?key=&type=file|voice`, multipart with one `media` part.
pub const UPLOAD_PATH: &str = "/cgi-bin/webhook/upload_media";

/// docs/providers/wecom.md#robot-text-and-markdown: `text.content` limit, in UTF-8 bytes (40058 beyond).
pub const MAX_TEXT_BYTES: usize = 2048;
/// `markdown.content` limit, in UTF-8 bytes (40058 beyond).
pub const MAX_MARKDOWN_BYTES: usize = 4096;
/// docs/providers/wecom.md#robot-image: decoded image limit in bytes (40009 beyond).
pub const MAX_IMAGE_BYTES: usize = 2 * 1024 * 1024;
/// docs/providers/wecom.md#robot-news: most articles in one news message (45008 beyond).
pub const MAX_ARTICLES: usize = 8;
/// Where WeCom cuts a news article's title and description (it never refuses them).
pub const MAX_TITLE_BYTES: usize = 128;
/// Where WeCom cuts a news article's description, in UTF-8 bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 512;
/// docs/providers/wecom.md#robot-file-and-upload: smallest upload in bytes (40006 below).
pub const MIN_FILE_BYTES: usize = 5;
/// Largest `file` upload in bytes (40006 beyond).
pub const MAX_FILE_BYTES: usize = 20 * 1024 * 1024;
/// Largest `voice` (AMR) upload in bytes (40006 beyond).
pub const MAX_VOICE_BYTES: usize = 2 * 1024 * 1024;

/// Largest request read: a 20 MB file plus multipart framing.
pub(crate) const BODY_LIMIT: usize = MAX_FILE_BYTES + 64 * 1024;

/// A non-zero errcode answer.
struct RobotError {
    errcode: i64,
    errmsg: String,
    injected: bool,
}

fn refuse<T>(errcode: i64, errmsg: impl Into<String>) -> Result<T, RobotError> {
    Err(RobotError { errcode, errmsg: errmsg.into(), injected: false })
}

/// `POST /cgi-bin/webhook/send?key=KEY`.
pub(crate) async fn send(State(state): State<Hub>, request: Request) -> Response {
    let request = Captured::read(request, BODY_LIMIT).await;
    state.record_request(Provider::WecomRobot, &request);
    let facts = request_facts(&request, None);
    if let Some(answer) = state.before_processing(&facts).await {
        return answer;
    }
    let result = deliver(&state, &request, &facts);
    respond(&state, &facts, result.map(|()| Map::new())).await
}

/// `POST /cgi-bin/webhook/upload_media?key=KEY&type=file`.
pub(crate) async fn upload_media(State(state): State<Hub>, request: Request) -> Response {
    let request = Captured::read(request, BODY_LIMIT).await;
    state.record_request(Provider::WecomRobot, &request);
    let facts = request_facts(&request, Some("upload_media"));
    if let Some(answer) = state.before_processing(&facts).await {
        return answer;
    }
    let result = upload(&state, &request, &facts).await;
    respond(&state, &facts, result).await
}

async fn respond(state: &Hub, facts: &RequestFacts, result: Result<Map<String, Value>, RobotError>) -> Response {
    let body = match result {
        Ok(mut extra) => {
            extra.insert("errcode".into(), json!(0));
            extra.insert("errmsg".into(), json!("ok"));
            Value::Object(extra)
        }
        Err(error) => {
            if !error.injected {
                state.record_rejection(Provider::WecomRobot, &error.errcode.to_string(), &error.errmsg);
            }
            let errmsg = format!(
                "{}, more info at https://open.work.weixin.qq.com/devtool/query?e={}",
                error.errmsg, error.errcode
            );
            json!({ "errcode": error.errcode, "errmsg": errmsg })
        }
    };
    state.after_processing(facts, Json(body).into_response()).await
}

fn request_facts(request: &Captured, action: Option<&str>) -> RequestFacts {
    let body: Option<Value> = serde_json::from_slice(&request.body).ok();
    let msgtype = body.as_ref().and_then(|b| b.get("msgtype")).and_then(Value::as_str);
    let phones = body
        .as_ref()
        .and_then(|b| b.pointer("/text/mentioned_mobile_list"))
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(Value::as_str).map(crate::phone::canonical).collect())
        .unwrap_or_default();
    RequestFacts {
        provider: Provider::WecomRobot,
        path: request.path().to_string(),
        phones,
        key: request.param("key").map(str::to_string),
        action: action.or(msgtype).map(str::to_string),
    }
}

/// Method and key checks shared by both endpoints; returns the key.
fn authorize<'r>(state: &Hub, request: &'r Captured) -> Result<&'r str, RobotError> {
    if request.method != Method::POST {
        return refuse(43002, "require POST method");
    }
    match request.param("key") {
        Some(key) if state.config().robot_keys.iter().any(|k| k == key) => Ok(key),
        Some(_) => refuse(93000, "invalid webhook url"),
        None => refuse(93000, "invalid webhook url, key is missing"),
    }
}

/// Faults and the rate limit, once a request passed its checks.
fn injected_fault(state: &Hub, facts: &RequestFacts) -> Result<(), RobotError> {
    match state.take_fault(Stage::WecomRequest, facts) {
        Some(FaultEffect::WecomErrcode { errcode, errmsg }) => Err(RobotError {
            errcode,
            errmsg: errmsg.unwrap_or_else(|| format!("errcode {errcode} injected by yizhan-sandbox")),
            injected: true,
        }),
        _ => Ok(()),
    }
}

fn deliver(state: &Hub, request: &Captured, facts: &RequestFacts) -> Result<(), RobotError> {
    let key = authorize(state, request)?;
    if request.oversized {
        return refuse(40058, "invalid parameter, the request body is too large");
    }
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&request.body) else {
        return refuse(40035, "invalid parameter, Warning: wrong json format");
    };
    let msgtype = match body.get("msgtype") {
        Some(Value::String(t)) => t.as_str(),
        _ => return refuse(40008, "invalid message type, msgtype is missing"),
    };
    match msgtype {
        "text" => check_text(&body)?,
        "markdown" => check_markdown(&body)?,
        "image" => check_image(&body)?,
        "news" => check_news(&body)?,
        "file" => check_file(state, key, &body)?,
        other => return refuse(40008, format!("invalid message type `{other}`")),
    }
    injected_fault(state, facts)?;
    if !state.robot_throttle(key) {
        return refuse(45009, "api freq out of limit");
    }
    state.record_robot_message(RobotMessage {
        provider: Provider::WecomRobot,
        key: key.to_string(),
        msgtype: msgtype.to_string(),
        body: Value::Object(body),
    });
    Ok(())
}

/// `body[name]` as an object.
fn section<'b>(body: &'b Map<String, Value>, name: &str) -> Result<&'b Map<String, Value>, RobotError> {
    match body.get(name) {
        Some(Value::Object(section)) => Ok(section),
        _ => refuse(40058, format!("invalid parameter, `{name}` must be an object")),
    }
}

/// An optional string field; `Ok(None)` when absent.
fn opt_str<'b>(object: &'b Map<String, Value>, path: &str, name: &str) -> Result<Option<&'b str>, RobotError> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => refuse(40058, format!("invalid parameter, `{path}.{name}` must be a string")),
    }
}

fn check_len(value: &str, max: usize, what: &str) -> Result<(), RobotError> {
    if value.len() > max {
        return refuse(40058, format!("invalid parameter, {what} exceed max length {max}"));
    }
    Ok(())
}

fn non_empty_content<'b>(body: &'b Map<String, Value>, name: &str) -> Result<&'b str, RobotError> {
    match opt_str(section(body, name)?, name, "content")? {
        Some(content) if !content.is_empty() => Ok(content),
        _ => refuse(44004, format!("empty content, `{name}.content` is required")),
    }
}

// docs/providers/wecom.md#robot-text-and-markdown
fn check_text(body: &Map<String, Value>) -> Result<(), RobotError> {
    let content = non_empty_content(body, "text")?;
    check_len(content, MAX_TEXT_BYTES, "content")?;
    let text = section(body, "text")?;
    for list in ["mentioned_list", "mentioned_mobile_list"] {
        match text.get(list) {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) if items.iter().all(Value::is_string) => {}
            Some(_) => {
                return refuse(40058, format!("invalid parameter, `text.{list}` must be a list of strings"));
            }
        }
    }
    Ok(())
}

fn check_markdown(body: &Map<String, Value>) -> Result<(), RobotError> {
    check_len(non_empty_content(body, "markdown")?, MAX_MARKDOWN_BYTES, "content")
}

// docs/providers/wecom.md#robot-image
fn check_image(body: &Map<String, Value>) -> Result<(), RobotError> {
    let image = section(body, "image")?;
    let (Some(encoded), Some(md5)) = (opt_str(image, "image", "base64")?, opt_str(image, "image", "md5")?) else {
        return refuse(40058, "invalid parameter, `image.base64` and `image.md5` are required");
    };
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
        return refuse(40009, "invalid image, `image.base64` is not valid base64");
    };
    if bytes.is_empty() || bytes.len() > MAX_IMAGE_BYTES {
        return refuse(40009, format!("invalid image size, {} bytes (1..={MAX_IMAGE_BYTES})", bytes.len()));
    }
    if !hex::encode(Md5::digest(&bytes)).eq_ignore_ascii_case(md5) {
        return refuse(40009, "invalid image, `image.md5` is not the MD5 of the decoded image");
    }
    let png = bytes.starts_with(b"\x89PNG\r\n\x1a\n");
    let jpeg = bytes.starts_with(&[0xFF, 0xD8, 0xFF]);
    if !png && !jpeg {
        return refuse(40004, "invalid media type, the image must be JPG or PNG");
    }
    Ok(())
}

// docs/providers/wecom.md#robot-news
fn check_news(body: &Map<String, Value>) -> Result<(), RobotError> {
    let Some(Value::Array(articles)) = section(body, "news")?.get("articles") else {
        return refuse(40058, "invalid parameter, `news.articles` must be a list");
    };
    if articles.is_empty() || articles.len() > MAX_ARTICLES {
        return refuse(45008, format!("article count {} out of range 1..={MAX_ARTICLES}", articles.len()));
    }
    for article in articles {
        let Value::Object(article) = article else {
            return refuse(40058, "invalid parameter, each article must be an object");
        };
        let path = "news.articles[]";
        if opt_str(article, path, "title")?.is_none_or(str::is_empty) {
            return refuse(41016, "missing title");
        }
        if opt_str(article, path, "url")?.is_none_or(str::is_empty) {
            return refuse(41010, "missing url");
        }
        // A title past MAX_TITLE_BYTES or a description past MAX_DESCRIPTION_BYTES is cut by WeCom,
        // never refused: docs/providers/wecom.md#robot-news
        opt_str(article, path, "description")?;
        opt_str(article, path, "picurl")?;
    }
    Ok(())
}

// docs/providers/wecom.md#robot-file-and-upload
fn check_file(state: &Hub, key: &str, body: &Map<String, Value>) -> Result<(), RobotError> {
    let Some(media_id) = opt_str(section(body, "file")?, "file", "media_id")?.filter(|m| !m.is_empty()) else {
        return refuse(41006, "missing media_id");
    };
    match state.find_media(media_id) {
        Some(media) if media.key == key && media.media_type == "file" => Ok(()),
        _ => refuse(40007, "invalid media_id"),
    }
}

async fn upload(state: &Hub, request: &Captured, facts: &RequestFacts) -> Result<Map<String, Value>, RobotError> {
    let key = authorize(state, request)?;
    let Some(media_type @ ("file" | "voice")) = request.param("type") else {
        return refuse(40005, "invalid type, `type` must be file or voice");
    };
    if request.oversized {
        return refuse(40006, format!("invalid file size, at most {MAX_FILE_BYTES} bytes"));
    }
    let (filename, content) = read_media_part(request).await?;
    let max = if media_type == "voice" { MAX_VOICE_BYTES } else { MAX_FILE_BYTES };
    if !(MIN_FILE_BYTES..=max).contains(&content.len()) {
        return refuse(40006, format!("invalid file size, {} bytes ({MIN_FILE_BYTES}..={max})", content.len()));
    }
    if media_type == "voice" && !content.starts_with(b"#!AMR") {
        return refuse(40004, "invalid media type, voice must be AMR");
    }
    injected_fault(state, facts)?;

    let media_id: String = rand::rng().sample_iter(Alphanumeric).take(56).map(char::from).collect();
    let created_at = chrono::Utc::now().timestamp();
    state.record_media(UploadedMedia {
        key: key.to_string(),
        media_id: media_id.clone(),
        media_type: media_type.to_string(),
        filename,
        size: content.len(),
        md5: hex::encode(Md5::digest(&content)),
        created_at,
    });
    let mut extra = Map::new();
    extra.insert("type".into(), json!(media_type));
    extra.insert("media_id".into(), json!(media_id));
    extra.insert("created_at".into(), json!(created_at.to_string()));
    Ok(extra)
}

/// The `media` part of a multipart body: its filename and content.
async fn read_media_part(request: &Captured) -> Result<(String, Vec<u8>), RobotError> {
    let empty = || RobotError {
        errcode: 44001,
        errmsg: "empty media data, send multipart/form-data with a `media` part".into(),
        injected: false,
    };
    let mut multipart = Multipart::from_request(request.to_request(), &()).await.map_err(|_| empty())?;
    while let Some(field) = multipart.next_field().await.map_err(|_| empty())? {
        if field.name() != Some("media") {
            continue;
        }
        let Some(filename) = field.file_name().map(str::to_string).filter(|f| !f.is_empty()) else {
            return refuse(40058, "invalid parameter, the `media` part needs a filename");
        };
        let content = field.bytes().await.map_err(|_| empty())?;
        return Ok((filename, content.to_vec()));
    }
    Err(empty())
}

//! Fake DingTalk custom robot webhook (docs/providers/dingtalk.md): `POST /robot/send?access_token=`.
//!
//! Every answer is HTTP 200 `{"errcode":N,"errmsg":"..."}`:
//!
//! | errcode | when |
//! |---|---|
//! | 43002 | method other than POST |
//! | 400101 | `access_token` missing or unknown |
//! | 310000 | signed robot: `timestamp` missing, not ms, or more than 1 h from the sandbox clock ("invalid timestamp"); `sign` missing or wrong ("sign not match") |
//! | 40035 | body not a JSON object, or a required field missing / of the wrong type |
//! | 400105 | `msgtype` not one of text, markdown, link, actionCard, feedCard |
//! | 130101 | more than the configured messages per rolling minute for the robot (default 20) |

use std::time::Duration;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value, json};
use sha2::Sha256;

use crate::capture::Captured;
use crate::faults::{FaultEffect, RequestFacts, Stage};
use crate::hub::Hub;
use crate::records::{Provider, RobotMessage};

/// Custom robot webhook (`POST ?access_token=`, plus `timestamp` and `sign` for a signed robot).
pub const SEND_PATH: &str = "/robot/send";
/// "与请求调用时间误差不能超过1小时".
pub const TIMESTAMP_TOLERANCE_MS: i64 = 3600 * 1000;
const BODY_LIMIT: usize = 1024 * 1024;

struct RobotError {
    errcode: i64,
    errmsg: String,
    injected: bool,
}

fn refuse<T>(errcode: i64, errmsg: impl Into<String>) -> Result<T, RobotError> {
    Err(RobotError { errcode, errmsg: errmsg.into(), injected: false })
}

/// DingTalk's 加签: `base64(HmacSHA256(key = secret, msg = timestamp + "\n" + secret))`.
pub fn sign(timestamp: &str, secret: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("{timestamp}\n{secret}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// `POST /robot/send?access_token=TOKEN[&timestamp=MS&sign=SIGN]`.
pub(crate) async fn send(State(state): State<Hub>, request: Request) -> Response {
    let request = Captured::read(request, BODY_LIMIT).await;
    state.record_request(Provider::DingtalkRobot, &request);
    let body: Option<Value> = serde_json::from_slice(&request.body).ok();
    let facts = RequestFacts {
        provider: Provider::DingtalkRobot,
        path: request.path().to_string(),
        phones: Vec::new(),
        key: request.param("access_token").map(str::to_string),
        action: body.as_ref().and_then(|b| b.get("msgtype")).and_then(Value::as_str).map(str::to_string),
    };
    if let Some(answer) = state.before_processing(&facts).await {
        return answer;
    }
    let answer = match deliver(&state, &request, &facts) {
        Ok(()) => json!({"errcode": 0, "errmsg": "ok"}),
        Err(error) => {
            if !error.injected {
                state.record_rejection(Provider::DingtalkRobot, &error.errcode.to_string(), &error.errmsg);
            }
            json!({"errcode": error.errcode, "errmsg": error.errmsg})
        }
    };
    state.after_processing(&facts, Json(answer).into_response()).await
}

fn deliver(state: &Hub, request: &Captured, facts: &RequestFacts) -> Result<(), RobotError> {
    if request.method != Method::POST {
        return refuse(43002, "需要POST请求");
    }
    let Some(token) = request.param("access_token") else {
        return refuse(400101, "access_token不存在");
    };
    let Some(robot) = state.config().dingtalk_robots.iter().find(|r| r.credential == token) else {
        return refuse(400101, "access_token不存在");
    };
    if let Some(secret) = &robot.secret {
        check_signature(request, secret)?;
    }
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&request.body) else {
        return refuse(40035, "缺少参数 json");
    };
    let msgtype = match body.get("msgtype") {
        Some(Value::String(t)) => t.as_str(),
        _ => return refuse(40035, "缺少参数 msgtype"),
    };
    match msgtype {
        "text" => strings(section(&body, "text")?, "text", &["content"])?,
        "markdown" => strings(section(&body, "markdown")?, "markdown", &["title", "text"])?,
        "link" => strings(section(&body, "link")?, "link", &["title", "text", "messageUrl"])?,
        "actionCard" => check_action_card(section(&body, "actionCard")?)?,
        "feedCard" => check_feed_card(section(&body, "feedCard")?)?,
        other => return refuse(400105, format!("不支持的消息类型 {other}")),
    }
    check_at(&body)?;
    if let Some(FaultEffect::ErrorCode { code, message }) = state.take_fault(Stage::ProviderRequest, facts) {
        let errmsg = message.unwrap_or_else(|| format!("errcode {code} injected by yizhan-sandbox"));
        return Err(RobotError { errcode: code, errmsg, injected: true });
    }
    if let Some(limit) = state.config().dingtalk_messages_per_minute
        && !state.throttle(Provider::DingtalkRobot, token, limit, Duration::from_secs(60))
    {
        // docs/providers/dingtalk.md#rate-limit
        return refuse(130101, "send too fast, exceed 20 times per minute");
    }
    state.record_robot_message(RobotMessage {
        provider: Provider::DingtalkRobot,
        key: token.to_string(),
        msgtype: msgtype.to_string(),
        body: Value::Object(body),
    });
    Ok(())
}

// docs/providers/dingtalk.md#robot-signature
fn check_signature(request: &Captured, secret: &str) -> Result<(), RobotError> {
    let Some(timestamp) = request.param("timestamp") else {
        return refuse(310000, "invalid timestamp");
    };
    let Ok(millis) = timestamp.parse::<i64>() else {
        return refuse(310000, "invalid timestamp");
    };
    if (chrono::Utc::now().timestamp_millis() - millis).abs() > TIMESTAMP_TOLERANCE_MS {
        return refuse(310000, "invalid timestamp");
    }
    // The query decoder already turned %2B back into `+`.
    if request.param("sign") != Some(sign(timestamp, secret).as_str()) {
        return refuse(310000, "sign not match");
    }
    Ok(())
}

fn section<'b>(body: &'b Map<String, Value>, name: &str) -> Result<&'b Map<String, Value>, RobotError> {
    match body.get(name) {
        Some(Value::Object(section)) => Ok(section),
        _ => refuse(40035, format!("缺少参数 {name}")),
    }
}

/// Each of `fields` is a non-empty string of `object`.
fn strings(object: &Map<String, Value>, path: &str, fields: &[&str]) -> Result<(), RobotError> {
    for field in fields {
        match object.get(*field) {
            Some(Value::String(s)) if !s.is_empty() => {}
            _ => return refuse(40035, format!("缺少参数 {path}.{field}")),
        }
    }
    Ok(())
}

// docs/providers/dingtalk.md#messages
fn check_action_card(card: &Map<String, Value>) -> Result<(), RobotError> {
    strings(card, "actionCard", &["title", "text"])?;
    match card.get("btns") {
        None => strings(card, "actionCard", &["singleTitle", "singleURL"]),
        Some(Value::Array(btns)) if !btns.is_empty() => {
            for btn in btns {
                let Value::Object(btn) = btn else {
                    return refuse(40035, "缺少参数 actionCard.btns");
                };
                strings(btn, "actionCard.btns[]", &["title", "actionURL"])?;
            }
            Ok(())
        }
        Some(_) => refuse(40035, "缺少参数 actionCard.btns"),
    }
}

fn check_feed_card(card: &Map<String, Value>) -> Result<(), RobotError> {
    let Some(Value::Array(links)) = card.get("links") else {
        return refuse(40035, "缺少参数 feedCard.links");
    };
    if links.is_empty() {
        return refuse(40035, "缺少参数 feedCard.links");
    }
    for link in links {
        let Value::Object(link) = link else {
            return refuse(40035, "缺少参数 feedCard.links");
        };
        strings(link, "feedCard.links[]", &["title", "messageURL", "picURL"])?;
    }
    Ok(())
}

fn check_at(body: &Map<String, Value>) -> Result<(), RobotError> {
    let Some(at) = body.get("at") else {
        return Ok(());
    };
    let Value::Object(at) = at else {
        return refuse(40035, "at must be an object");
    };
    for list in ["atMobiles", "atUserIds"] {
        match at.get(list) {
            None => {}
            Some(Value::Array(items)) if items.iter().all(Value::is_string) => {}
            Some(_) => return refuse(40035, format!("at.{list} must be a list of strings")),
        }
    }
    match at.get("isAtAll") {
        None | Some(Value::Bool(_)) => Ok(()),
        Some(_) => refuse(40035, "at.isAtAll must be a boolean"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_signature_matches_the_reference_vector() {
        assert_eq!(
            super::sign("1700000000000", "SECtestsecret0123456789"),
            "zrLWzK97t62y5CpqN8Ok9UIdPvX+jL1PNoW8nKT5a9k="
        );
    }
}

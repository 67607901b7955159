//! `dingtalk_robot` against a wiremock webhook: the exact request of every catalog action, the
//! signature, and the mapping of answers. No reason may ever contain the token or the secret.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use wiremock::{MockServer, Request, ResponseTemplate};

use super::{DingtalkRobot, sign};
use crate::connectors::testkit::{Kit, answer_posts_with as answer_with, json_body, only_request};
use crate::connectors::{Failure, Success, http};

const TOKEN: &str = "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b";
const SECRET: &str = "SECtestsecret0123456789";
const KIT: Kit = Kit { kind: "dingtalk_robot", secrets: &[TOKEN, SECRET] };

fn robot_at(endpoint: &str, secret: Option<&str>) -> DingtalkRobot {
    let mut text = format!("[connectors.dingtalk_robot.ops]\naccess_token = \"{TOKEN}\"\nendpoint = \"{endpoint}\"\n");
    if let Some(secret) = secret {
        text.push_str(&format!("secret = \"{secret}\"\n"));
    }
    KIT.build(&text, "ops", |config| DingtalkRobot::new(config, http::client()))
}

fn fixed_clock() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_700_000_000_000)
}

fn signed_robot(server: &MockServer) -> DingtalkRobot {
    let mut robot = robot_at(&server.uri(), Some(SECRET));
    robot.clock = fixed_clock;
    robot
}

fn ok() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"errcode": 0, "errmsg": "ok"}))
}

fn errcode(code: i64, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"errcode": code, "errmsg": message}))
}

/// The signed query of a fixed vector (docs/providers/dingtalk.md#robot-signature).
const SIGNED_QUERY: &str = "timestamp=1700000000000&sign=zrLWzK97t62y5CpqN8Ok9UIdPvX%2BjL1PNoW8nKT5a9k%3D";

fn assert_request(request: &Request, expected_body: &Value) {
    assert_eq!(request.method.as_str(), "POST");
    assert_eq!(request.url.path(), "/robot/send");
    assert_eq!(request.url.query(), Some(format!("access_token={TOKEN}&{SIGNED_QUERY}").as_str()));
    let names: BTreeSet<&str> = request.headers.keys().map(|k| k.as_str()).collect();
    assert_eq!(names, ["accept", "content-length", "content-type", "host"].into());
    assert_eq!(request.headers.get("content-type").unwrap(), "application/json");
    assert_eq!(&json_body(request), expected_body);
}

#[test]
fn the_signature_matches_the_reference_vector() {
    assert_eq!(sign(1_700_000_000_000, SECRET), "zrLWzK97t62y5CpqN8Ok9UIdPvX+jL1PNoW8nKT5a9k=");
}

#[tokio::test]
async fn send_text_signed() {
    let server = MockServer::start().await;
    answer_with(&server, ok()).await;
    let params = json!({"content": "部署完成", "at_mobiles": ["13800000000"], "at_user_ids": ["user1"],
                        "is_at_all": false});
    let success = KIT.run(&signed_robot(&server), "send_text", &params).await.unwrap();
    assert_eq!(success, Success { result: None, receipts: Default::default() });
    assert_request(
        &only_request(&server).await,
        &json!({"msgtype": "text", "text": {"content": "部署完成"},
                "at": {"atMobiles": ["13800000000"], "atUserIds": ["user1"], "isAtAll": false}}),
    );
}

#[tokio::test]
async fn send_text_unsigned_carries_only_the_token() {
    let server = MockServer::start().await;
    answer_with(&server, ok()).await;
    KIT.run(&robot_at(&server.uri(), None), "send_text", &json!({"content": "hi"})).await.unwrap();
    let request = only_request(&server).await;
    assert_eq!(request.url.query(), Some(format!("access_token={TOKEN}").as_str()));
    assert_eq!(json_body(&request), json!({"msgtype": "text", "text": {"content": "hi"}}));
}

#[tokio::test]
async fn every_attempt_is_signed_afresh() {
    let server = MockServer::start().await;
    answer_with(&server, ok()).await;
    let robot = robot_at(&server.uri(), Some(SECRET));
    let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis();
    KIT.run(&robot, "send_text", &json!({"content": "hi"})).await.unwrap();
    let request = only_request(&server).await;
    let pairs: Vec<(String, String)> = request.url.query_pairs().into_owned().collect();
    let timestamp: u128 = pairs.iter().find(|(n, _)| n == "timestamp").unwrap().1.parse().unwrap();
    assert!(timestamp >= before && timestamp < before + 60_000, "{timestamp} vs {before}");
    let signature = &pairs.iter().find(|(n, _)| n == "sign").unwrap().1;
    assert_eq!(*signature, sign(timestamp as u64, SECRET));
}

#[tokio::test]
async fn send_markdown() {
    let server = MockServer::start().await;
    answer_with(&server, ok()).await;
    let params = json!({"title": "杭州天气", "text": "#### 杭州天气 @150XXXXXXXX \n> 9度", "is_at_all": true});
    KIT.run(&signed_robot(&server), "send_markdown", &params).await.unwrap();
    assert_request(
        &only_request(&server).await,
        &json!({"msgtype": "markdown", "markdown": {"title": "杭州天气", "text": "#### 杭州天气 @150XXXXXXXX \n> 9度"},
                "at": {"isAtAll": true}}),
    );
}

#[tokio::test]
async fn send_link() {
    let server = MockServer::start().await;
    answer_with(&server, ok()).await;
    let params = json!({"title": "时代的火车向前开", "text": "这个即将发布的新版本", "message_url": "https://www.dingtalk.com/",
                        "pic_url": "https://img.example.com/a.png"});
    KIT.run(&signed_robot(&server), "send_link", &params).await.unwrap();
    assert_request(
        &only_request(&server).await,
        &json!({"msgtype": "link", "link": {"title": "时代的火车向前开", "text": "这个即将发布的新版本",
                 "messageUrl": "https://www.dingtalk.com/", "picUrl": "https://img.example.com/a.png"}}),
    );
}

#[tokio::test]
async fn send_action_card_single_and_multi() {
    let server = MockServer::start().await;
    answer_with(&server, ok()).await;
    let params = json!({"title": "乔布斯", "text": "![screenshot](https://x/a.png) ### 乔布斯", "single_title": "阅读全文",
                        "single_url": "https://www.dingtalk.com/", "btn_orientation": "0"});
    KIT.run(&signed_robot(&server), "send_action_card", &params).await.unwrap();
    assert_request(
        &only_request(&server).await,
        &json!({"msgtype": "actionCard", "actionCard": {"title": "乔布斯", "text": "![screenshot](https://x/a.png) ### 乔布斯",
                "singleTitle": "阅读全文", "singleURL": "https://www.dingtalk.com/", "btnOrientation": "0"}}),
    );

    let server = MockServer::start().await;
    answer_with(&server, ok()).await;
    let params = json!({"title": "t", "text": "x", "btn_orientation": "1", "btns": [
        {"title": "内容不错", "action_url": "https://www.dingtalk.com/a"},
        {"title": "不感兴趣", "action_url": "https://www.dingtalk.com/b"}]});
    KIT.run(&signed_robot(&server), "send_action_card", &params).await.unwrap();
    assert_request(
        &only_request(&server).await,
        &json!({"msgtype": "actionCard", "actionCard": {"title": "t", "text": "x", "btnOrientation": "1", "btns": [
            {"title": "内容不错", "actionURL": "https://www.dingtalk.com/a"},
            {"title": "不感兴趣", "actionURL": "https://www.dingtalk.com/b"}]}}),
    );
}

#[tokio::test]
async fn send_feed_card() {
    let server = MockServer::start().await;
    answer_with(&server, ok()).await;
    let params = json!({"links": [
        {"title": "时代的火车向前开1", "message_url": "https://www.dingtalk.com/1", "pic_url": "https://img/1.png"},
        {"title": "时代的火车向前开2", "message_url": "https://www.dingtalk.com/2", "pic_url": "https://img/2.png"}]});
    KIT.run(&signed_robot(&server), "send_feed_card", &params).await.unwrap();
    assert_request(
        &only_request(&server).await,
        &json!({"msgtype": "feedCard", "feedCard": {"links": [
            {"title": "时代的火车向前开1", "messageURL": "https://www.dingtalk.com/1", "picURL": "https://img/1.png"},
            {"title": "时代的火车向前开2", "messageURL": "https://www.dingtalk.com/2", "picURL": "https://img/2.png"}]}}),
    );
}

#[tokio::test]
async fn answers_are_classified() {
    let cases = [
        (130101, "send too fast, exceed 20 times per minute", "throttled"),
        (410100, "发送速度太快而限流", "throttled"),
        (-1, "系统繁忙", "transient"),
        (310000, "sign not match", "permanent"),
        (310000, "keywords not in content", "permanent"),
        (400101, "access_token不存在", "permanent"),
    ];
    for (code, message, kind) in cases {
        let server = MockServer::start().await;
        answer_with(&server, errcode(code, message)).await;
        let failure = KIT.run(&signed_robot(&server), "send_text", &json!({"content": "x"})).await.unwrap_err();
        let reason = format!("errcode {code}: {message}");
        let expected = match kind {
            "throttled" => Failure::throttled(reason, Some(Duration::from_secs(60))),
            "transient" => Failure::transient(reason),
            _ => Failure::permanent(reason),
        };
        assert_eq!(failure, expected, "{code}");
    }
}

#[tokio::test]
async fn reasons_never_quote_the_token_or_the_secret() {
    let server = MockServer::start().await;
    answer_with(&server, errcode(400101, &format!("access_token {TOKEN} not found, secret {SECRET}"))).await;
    let failure = KIT.run(&signed_robot(&server), "send_text", &json!({"content": "x"})).await.unwrap_err();
    assert!(failure.reason().contains("***"), "{}", failure.reason());

    let server = MockServer::start().await;
    answer_with(&server, ResponseTemplate::new(502).set_body_string(format!("bad gateway ?access_token={TOKEN}")))
        .await;
    let failure = KIT.run(&signed_robot(&server), "send_text", &json!({"content": "x"})).await.unwrap_err();
    assert!(matches!(failure, Failure::Transient { .. }), "{failure:?}");

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let robot = robot_at(&format!("http://127.0.0.1:{port}"), Some(SECRET));
    let failure = KIT.run(&robot, "send_text", &json!({"content": "x"})).await.unwrap_err();
    assert!(matches!(failure, Failure::Unreachable { .. }), "{failure:?}");
    assert!(!failure.reason().contains("sign="), "{}", failure.reason());
}

#[tokio::test]
async fn an_unreadable_200_is_ambiguous() {
    let server = MockServer::start().await;
    answer_with(&server, ResponseTemplate::new(200).set_body_string("<html>proxy</html>")).await;
    let failure = KIT.run(&signed_robot(&server), "send_text", &json!({"content": "x"})).await.unwrap_err();
    assert!(matches!(failure, Failure::Ambiguous { .. }), "{failure:?}");
}

#[test]
fn config_defaults_and_errors() {
    let text = format!("[connectors.dingtalk_robot.ops]\naccess_token = \"{TOKEN}\"\n");
    let robot = KIT.build(&text, "ops", |config| DingtalkRobot::new(config, http::client()));
    assert_eq!(robot.base, "https://oapi.dingtalk.com");
    assert!(!format!("{robot:?}").contains(TOKEN));

    let config = KIT.config("[connectors.dingtalk_robot.ops]\nsecret = \"SECx\"\n", "ops");
    let err = DingtalkRobot::new(&config, http::client()).unwrap_err();
    assert!(err.to_string().contains("missing field `access_token`"), "{err}");

    let config = KIT.config("[connectors.dingtalk_robot.ops]\naccess_token = \"t\"\nsecret = \"\"\n", "ops");
    let err = DingtalkRobot::new(&config, http::client()).unwrap_err();
    assert!(err.to_string().starts_with("connectors.dingtalk_robot.ops.secret"), "{err}");
}

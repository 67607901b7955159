//! `feishu_robot` against a wiremock webhook: the exact request of every catalog action, the
//! signature, and the mapping of answers. No reason may ever contain the hook id or the secret.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};
use wiremock::{MockServer, Request, ResponseTemplate};

use super::{FeishuRobot, sign};
use crate::connectors::testkit::{Kit, answer_posts_with as answer_with, json_body, only_request};
use crate::connectors::{Failure, Success, http};

const HOOK: &str = "3f7c2a9e-1b4d-4e8f-9a6c-5d2e8b1f0a7c";
const SECRET: &str = "testsecret";
const KIT: Kit = Kit { kind: "feishu_robot", secrets: &[HOOK, SECRET] };

fn robot_at(endpoint: &str, secret: Option<&str>) -> FeishuRobot {
    let mut text = format!("[connectors.feishu_robot.ops]\nhook_id = \"{HOOK}\"\nendpoint = \"{endpoint}\"\n");
    if let Some(secret) = secret {
        text.push_str(&format!("secret = \"{secret}\"\n"));
    }
    KIT.build(&text, "ops", |config| FeishuRobot::new(config, http::client()))
}

fn signed_robot(server: &MockServer) -> FeishuRobot {
    let mut robot = robot_at(&server.uri(), Some(SECRET));
    robot.clock = || UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    robot
}

fn ok() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(
        json!({"code": 0, "msg": "success", "data": {}, "Extra": null, "StatusCode": 0, "StatusMessage": "success"}),
    )
}

/// The signed body: `expected` plus the signature vector's timestamp and sign (docs/providers/feishu.md#bot-signature).
fn assert_request(request: &Request, expected: Value) {
    assert_eq!(request.method.as_str(), "POST");
    assert_eq!(request.url.path(), format!("/open-apis/bot/v2/hook/{HOOK}"));
    assert_eq!(request.url.query(), None);
    let names: BTreeSet<&str> = request.headers.keys().map(|k| k.as_str()).collect();
    assert_eq!(names, ["accept", "content-length", "content-type", "host"].into());
    assert_eq!(request.headers.get("content-type").unwrap(), "application/json");
    let mut expected: Map<String, Value> = expected.as_object().unwrap().clone();
    expected.insert("timestamp".into(), json!("1700000000"));
    expected.insert("sign".into(), json!("AOc8oJ7//5OlQlfWC3nRL0R+IkuzcD1FKcAyibRK9Q8="));
    let body = json_body(request);
    assert_eq!(body, Value::Object(expected));
}

#[test]
fn the_signature_matches_the_reference_vector() {
    assert_eq!(sign(1_700_000_000, "testsecret"), "AOc8oJ7//5OlQlfWC3nRL0R+IkuzcD1FKcAyibRK9Q8=");
    assert_ne!(sign(1_700_000_000, "testsecret"), "QtI24SK3/m8+lKf0d89/bclcePXhBxolugiWin8Kl3c=");
}

#[tokio::test]
async fn send_text() {
    let server = MockServer::start().await;
    answer_with(&server, ok()).await;
    let params = json!({"text": "新更新提醒 <at user_id=\"all\">所有人</at>"});
    let success = KIT.run(&signed_robot(&server), "send_text", &params).await.unwrap();
    assert_eq!(success, Success { result: None, receipts: Default::default() });
    assert_request(&only_request(&server).await, json!({"msg_type": "text", "content": params}));
}

#[tokio::test]
async fn send_text_unsigned_has_no_timestamp() {
    let server = MockServer::start().await;
    answer_with(&server, ok()).await;
    KIT.run(&robot_at(&server.uri(), None), "send_text", &json!({"text": "hi"})).await.unwrap();
    let body: Value = serde_json::from_slice(&only_request(&server).await.body).unwrap();
    assert_eq!(body, json!({"msg_type": "text", "content": {"text": "hi"}}));
}

#[tokio::test]
async fn every_attempt_is_signed_afresh() {
    let server = MockServer::start().await;
    answer_with(&server, ok()).await;
    let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    KIT.run(&robot_at(&server.uri(), Some(SECRET)), "send_text", &json!({"text": "hi"})).await.unwrap();
    let body: Value = serde_json::from_slice(&only_request(&server).await.body).unwrap();
    let timestamp: u64 = body["timestamp"].as_str().unwrap().parse().unwrap();
    assert!(timestamp >= before && timestamp < before + 60);
    assert_eq!(body["sign"], json!(sign(timestamp, SECRET)));
}

#[tokio::test]
async fn send_post() {
    let server = MockServer::start().await;
    answer_with(&server, ok()).await;
    let params = json!({"post": {"zh_cn": {"title": "项目更新通知", "content": [[
        {"tag": "text", "text": "项目有更新: "}, {"tag": "a", "text": "请查看", "href": "http://www.example.com/"},
        {"tag": "at", "user_id": "ou_18eac8********17ad4f02e8bbbb"}]]}}});
    KIT.run(&signed_robot(&server), "send_post", &params).await.unwrap();
    assert_request(&only_request(&server).await, json!({"msg_type": "post", "content": params}));
}

#[tokio::test]
async fn send_image() {
    let server = MockServer::start().await;
    answer_with(&server, ok()).await;
    let params = json!({"image_key": "img_ecffc3b9-8f14-400f-a014-05eca1a4310g"});
    KIT.run(&signed_robot(&server), "send_image", &params).await.unwrap();
    assert_request(&only_request(&server).await, json!({"msg_type": "image", "content": params}));
}

#[tokio::test]
async fn send_share_chat() {
    let server = MockServer::start().await;
    answer_with(&server, ok()).await;
    let params = json!({"share_chat_id": "oc_f5b1a7eb27ae2c7b6adc2a74faf339ff"});
    KIT.run(&signed_robot(&server), "send_share_chat", &params).await.unwrap();
    assert_request(&only_request(&server).await, json!({"msg_type": "share_chat", "content": params}));
}

#[tokio::test]
async fn send_interactive_puts_the_card_at_the_top() {
    let server = MockServer::start().await;
    answer_with(&server, ok()).await;
    let card = json!({"elements": [{"tag": "div", "text": {"content": "**西湖**", "tag": "lark_md"}}],
                      "header": {"title": {"content": "今日旅游推荐", "tag": "plain_text"}}});
    KIT.run(&signed_robot(&server), "send_interactive", &json!({"card": card})).await.unwrap();
    assert_request(&only_request(&server).await, json!({"msg_type": "interactive", "card": card}));
}

#[tokio::test]
async fn answers_are_classified() {
    let server = MockServer::start().await;
    answer_with(
        &server,
        ResponseTemplate::new(200)
            .insert_header("x-ogw-ratelimit-reset", "7")
            .set_body_json(json!({"code": 11232, "msg": "frequency limited"})),
    )
    .await;
    let failure = KIT.run(&signed_robot(&server), "send_text", &json!({"text": "x"})).await.unwrap_err();
    assert_eq!(
        failure,
        Failure::Throttled {
            reason: "code 11232: frequency limited".into(),
            retry_after: Some(Duration::from_secs(7))
        }
    );

    let server = MockServer::start().await;
    answer_with(
        &server,
        ResponseTemplate::new(429)
            .insert_header("x-ogw-ratelimit-reset", "4")
            .set_body_json(json!({"code": 99991400, "msg": "request trigger frequency limit"})),
    )
    .await;
    let failure = KIT.run(&signed_robot(&server), "send_text", &json!({"text": "x"})).await.unwrap_err();
    assert!(
        matches!(failure, Failure::Throttled { retry_after: Some(d), .. } if d == Duration::from_secs(4)),
        "{failure:?}"
    );

    let server = MockServer::start().await;
    answer_with(&server, ResponseTemplate::new(429).insert_header("x-ogw-ratelimit-reset", "9")).await;
    let failure = KIT.run(&signed_robot(&server), "send_text", &json!({"text": "x"})).await.unwrap_err();
    assert!(matches!(failure, Failure::Throttled { retry_after: Some(d), .. } if d == Duration::from_secs(9)));

    for (code, msg) in
        [(19021, "sign match fail"), (19022, "Ip Not Allowed"), (19024, "Key Words Not Found"), (9499, "Bad Request")]
    {
        let server = MockServer::start().await;
        answer_with(&server, ResponseTemplate::new(200).set_body_json(json!({"code": code, "msg": msg}))).await;
        let failure = KIT.run(&signed_robot(&server), "send_text", &json!({"text": "x"})).await.unwrap_err();
        assert_eq!(failure, Failure::permanent(format!("code {code}: {msg}")));
    }

    let server = MockServer::start().await;
    answer_with(
        &server,
        ResponseTemplate::new(200).set_body_json(json!({"StatusCode": 19021, "StatusMessage": "sign"})),
    )
    .await;
    let failure = KIT.run(&signed_robot(&server), "send_text", &json!({"text": "x"})).await.unwrap_err();
    assert_eq!(failure, Failure::permanent("code 19021: sign"));
}

#[tokio::test]
async fn http_and_transport_errors_never_quote_the_hook() {
    let server = MockServer::start().await;
    answer_with(&server, ResponseTemplate::new(503).set_body_string(format!("upstream /hook/{HOOK} down"))).await;
    let failure = KIT.run(&signed_robot(&server), "send_text", &json!({"text": "x"})).await.unwrap_err();
    assert!(matches!(failure, Failure::Transient { .. }), "{failure:?}");

    let server = MockServer::start().await;
    answer_with(&server, ResponseTemplate::new(200).set_body_string("<html/>")).await;
    let failure = KIT.run(&signed_robot(&server), "send_text", &json!({"text": "x"})).await.unwrap_err();
    assert!(matches!(failure, Failure::Ambiguous { .. }), "{failure:?}");

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let failure = KIT
        .run(&robot_at(&format!("http://127.0.0.1:{port}"), None), "send_text", &json!({"text": "x"}))
        .await
        .unwrap_err();
    assert!(matches!(failure, Failure::Unreachable { .. }), "{failure:?}");
}

#[test]
fn config_defaults_and_errors() {
    let text = format!("[connectors.feishu_robot.ops]\nhook_id = \"{HOOK}\"\n");
    let robot = KIT.build(&text, "ops", |config| FeishuRobot::new(config, http::client()));
    assert_eq!(robot.base, "https://open.feishu.cn");
    assert!(!format!("{robot:?}").contains(HOOK));
    let config = KIT.config("[connectors.feishu_robot.ops]\nhook_id = \"https://x/y\"\n", "ops");
    let err = FeishuRobot::new(&config, http::client()).unwrap_err();
    assert!(err.to_string().starts_with("connectors.feishu_robot.ops.hook_id"), "{err}");
}

//! `wecom_robot` against a wiremock webhook: the exact request of every catalog action and the
//! mapping of every kind of answer. No reason may ever contain the key.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use super::WecomRobot;
use crate::connectors::testkit::{Kit, answer_posts_with as answer_with, json_body, only_request};
use crate::connectors::{Failure, Success, http};

const KEY: &str = "693a91f6-7aaa-4bc4-97a0-0ec2sifa5aaa";
const KIT: Kit = Kit { kind: "wecom_robot", secrets: &[KEY] };

fn robot_at(endpoint: &str) -> WecomRobot {
    let text = format!("[connectors.wecom_robot.ops]\nkey = \"{KEY}\"\nendpoint = \"{endpoint}\"\n");
    KIT.build(&text, "ops", |config| WecomRobot::new(config, http::client()))
}

fn robot(server: &MockServer) -> WecomRobot {
    robot_at(&server.uri())
}

fn ok() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"errcode": 0, "errmsg": "ok"}))
}

fn header(request: &Request, name: &str) -> String {
    request.headers.get(name).unwrap().to_str().unwrap().to_string()
}

/// Method, path, query, headers and JSON body of a message request.
fn assert_message_request(request: &Request, expected_body: &Value) {
    assert_eq!(request.method.as_str(), "POST");
    assert_eq!(request.url.path(), "/cgi-bin/webhook/send");
    assert_eq!(request.url.query(), Some(format!("key={KEY}").as_str()));
    let names: BTreeSet<&str> = request.headers.keys().map(|k| k.as_str()).collect();
    assert_eq!(names, ["accept", "content-length", "content-type", "host"].into());
    assert_eq!(header(request, "content-type"), "application/json");
    assert_eq!(&json_body(request), expected_body);
}

#[tokio::test]
async fn send_text() {
    let server = MockServer::start().await;
    answer_with(&server, ok()).await;
    let params = json!({"content": "广州今日天气：29度", "mentioned_list": ["wangqing", "@all"],
                        "mentioned_mobile_list": ["13800001111"]});
    let success = KIT.run(&robot(&server), "send_text", &params).await.unwrap();
    assert_eq!(success, Success { result: None, receipts: Default::default() });
    assert_message_request(&only_request(&server).await, &json!({"msgtype": "text", "text": params}));
}

#[tokio::test]
async fn send_markdown() {
    let server = MockServer::start().await;
    answer_with(&server, ok()).await;
    let params = json!({"content": "实时新增用户反馈<font color=\"warning\">132例</font>"});
    KIT.run(&robot(&server), "send_markdown", &params).await.unwrap();
    assert_message_request(&only_request(&server).await, &json!({"msgtype": "markdown", "markdown": params}));
}

#[tokio::test]
async fn send_image_with_md5_sends_it_unchanged() {
    let server = MockServer::start().await;
    answer_with(&server, ok()).await;
    let params = json!({"base64": "aGVsbG8=", "md5": "0123456789abcdef0123456789abcdef"});
    KIT.run(&robot(&server), "send_image", &params).await.unwrap();
    assert_message_request(&only_request(&server).await, &json!({"msgtype": "image", "image": params}));
}

#[tokio::test]
async fn send_image_without_md5_computes_it_from_the_raw_bytes() {
    let server = MockServer::start().await;
    answer_with(&server, ok()).await;
    // base64("hello"); md5("hello") = 5d41402abc4b2a76b9719d911017c592.
    KIT.run(&robot(&server), "send_image", &json!({"base64": "aGVsbG8="})).await.unwrap();
    assert_message_request(
        &only_request(&server).await,
        &json!({"msgtype": "image", "image": {"base64": "aGVsbG8=", "md5": "5d41402abc4b2a76b9719d911017c592"}}),
    );
}

#[tokio::test]
async fn send_image_with_invalid_base64_is_permanent_without_a_request() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ok()).expect(0).mount(&server).await;
    let failure = KIT.run(&robot(&server), "send_image", &json!({"base64": "not base64!"})).await.unwrap_err();
    assert!(matches!(failure, Failure::Permanent { .. }), "{failure:?}");
    assert!(failure.reason().starts_with("params.base64: invalid base64"), "{}", failure.reason());
}

#[tokio::test]
async fn send_news() {
    let server = MockServer::start().await;
    answer_with(&server, ok()).await;
    let params = json!({"articles": [
        {"title": "中秋节礼品领取", "description": "今年中秋节公司有豪礼相送", "url": "https://www.qq.com",
         "picurl": "http://res.mail.qq.com/node/ww/wwopenmng/images/independent/doc/test_pic_msg1.png"},
        {"title": "second", "url": "https://example.com/2"},
    ]});
    KIT.run(&robot(&server), "send_news", &params).await.unwrap();
    assert_message_request(&only_request(&server).await, &json!({"msgtype": "news", "news": params}));
}

#[tokio::test]
async fn send_file() {
    let server = MockServer::start().await;
    answer_with(&server, ok()).await;
    let params = json!({"media_id": "3a8asd892asd8asd"});
    KIT.run(&robot(&server), "send_file", &params).await.unwrap();
    assert_message_request(&only_request(&server).await, &json!({"msgtype": "file", "file": params}));
}

#[tokio::test]
async fn upload_file() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/cgi-bin/webhook/upload_media"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "errcode": 0, "errmsg": "ok", "type": "file", "media_id": "1G6nrLmr5EC3MMb_-zK1dDdzmd0p7cNliYu9V5w7o8K0",
            "created_at": "1380000000"
        })))
        .mount(&server)
        .await;
    // base64 of the bytes "report,2024\n1,2\n" (content with a newline and no padding issues).
    let content = b"report,2024\n1,2\n";
    let params = json!({"filename": "report.csv", "content_base64": "cmVwb3J0LDIwMjQKMSwyCg=="});
    let success = KIT.run(&robot(&server), "upload_file", &params).await.unwrap();
    assert_eq!(
        success.result,
        Some(json!({"media_id": "1G6nrLmr5EC3MMb_-zK1dDdzmd0p7cNliYu9V5w7o8K0", "type": "file",
                    "created_at": "1380000000"}))
    );

    let request = only_request(&server).await;
    assert_eq!(request.method.as_str(), "POST");
    assert_eq!(request.url.path(), "/cgi-bin/webhook/upload_media");
    assert_eq!(request.url.query(), Some(format!("key={KEY}&type=file").as_str()));
    let names: BTreeSet<&str> = request.headers.keys().map(|k| k.as_str()).collect();
    assert_eq!(names, ["accept", "content-length", "content-type", "host"].into());
    let content_type = header(&request, "content-type");
    let boundary = content_type.strip_prefix("multipart/form-data; boundary=").expect(&content_type);
    let mut expected = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"media\"; filename=\"report.csv\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    expected.extend_from_slice(content);
    expected.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    assert_eq!(String::from_utf8_lossy(&request.body), String::from_utf8_lossy(&expected));
    assert_eq!(header(&request, "content-length"), expected.len().to_string());
}

#[tokio::test]
async fn upload_file_with_invalid_base64_names_the_param() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ok()).expect(0).mount(&server).await;
    let params = json!({"filename": "a.txt", "content_base64": "@@@@@@@@"});
    let failure = KIT.run(&robot(&server), "upload_file", &params).await.unwrap_err();
    assert!(matches!(failure, Failure::Permanent { .. }), "{failure:?}");
    assert!(failure.reason().starts_with("params.content_base64: invalid base64"), "{}", failure.reason());
}

#[tokio::test]
async fn rate_limited_throttles_for_a_minute() {
    let server = MockServer::start().await;
    answer_with(
        &server,
        ResponseTemplate::new(200).set_body_json(json!({"errcode": 45009, "errmsg": "api freq out of limit"})),
    )
    .await;
    let failure = KIT.run(&robot(&server), "send_text", &json!({"content": "x"})).await.unwrap_err();
    assert_eq!(failure, Failure::throttled("errcode 45009: api freq out of limit", Some(Duration::from_secs(60))));
}

#[tokio::test]
async fn system_busy_is_transient() {
    let server = MockServer::start().await;
    answer_with(&server, ResponseTemplate::new(200).set_body_json(json!({"errcode": -1, "errmsg": "system busy"})))
        .await;
    let failure = KIT.run(&robot(&server), "send_markdown", &json!({"content": "x"})).await.unwrap_err();
    assert_eq!(failure, Failure::transient("errcode -1: system busy"));
}

#[tokio::test]
async fn robot_errors_are_permanent_and_never_quote_the_key() {
    for (code, message) in [
        (93000, format!("invalid webhook url, hint: [1700000000_abc], key={KEY}")),
        (93004, "robot is disabled".to_string()),
        (93008, "robot not in the chat".to_string()),
        (40058, "invalid parameter".to_string()),
    ] {
        let server = MockServer::start().await;
        answer_with(&server, ResponseTemplate::new(200).set_body_json(json!({"errcode": code, "errmsg": message})))
            .await;
        let failure = KIT.run(&robot(&server), "send_text", &json!({"content": "x"})).await.unwrap_err();
        assert!(matches!(failure, Failure::Permanent { .. }), "{failure:?}");
        assert!(failure.reason().starts_with(&format!("errcode {code}: ")), "{}", failure.reason());
    }
}

#[tokio::test]
async fn http_errors_go_through_the_shared_classification() {
    let server = MockServer::start().await;
    answer_with(
        &server,
        ResponseTemplate::new(502).set_body_string(format!("bad gateway for /cgi-bin/webhook/send?key={KEY}")),
    )
    .await;
    let failure = KIT.run(&robot(&server), "send_text", &json!({"content": "x"})).await.unwrap_err();
    assert!(matches!(failure, Failure::Transient { .. }), "{failure:?}");
    assert!(failure.reason().starts_with("HTTP 502 Bad Gateway"), "{}", failure.reason());

    let server = MockServer::start().await;
    answer_with(&server, ResponseTemplate::new(429).insert_header("retry-after", "5")).await;
    let failure = KIT.run(&robot(&server), "send_text", &json!({"content": "x"})).await.unwrap_err();
    assert!(
        matches!(failure, Failure::Throttled { retry_after: Some(d), .. } if d == Duration::from_secs(5)),
        "{failure:?}"
    );

    let server = MockServer::start().await;
    answer_with(&server, ResponseTemplate::new(403)).await;
    let failure = KIT.run(&robot(&server), "send_text", &json!({"content": "x"})).await.unwrap_err();
    assert!(matches!(failure, Failure::Permanent { .. }), "{failure:?}");
}

#[tokio::test]
async fn an_unreadable_200_is_ambiguous() {
    let server = MockServer::start().await;
    answer_with(&server, ResponseTemplate::new(200).set_body_string("<html>proxy</html>")).await;
    let failure = KIT.run(&robot(&server), "send_text", &json!({"content": "x"})).await.unwrap_err();
    assert!(matches!(failure, Failure::Ambiguous { .. }), "{failure:?}");
}

#[tokio::test]
async fn a_refused_connection_is_unreachable_and_never_quotes_the_key() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let failure = KIT
        .run(&robot_at(&format!("http://127.0.0.1:{port}")), "send_text", &json!({"content": "x"}))
        .await
        .unwrap_err();
    assert!(matches!(failure, Failure::Unreachable { .. }), "{failure:?}");
}

#[tokio::test]
async fn a_timeout_is_ambiguous_and_never_quotes_the_key() {
    let server = MockServer::start().await;
    answer_with(&server, ok().set_delay(Duration::from_secs(10))).await;
    let _ = http::client(); // installs the TLS provider
    let client = reqwest::Client::builder().timeout(Duration::from_millis(200)).build().unwrap();
    let text = format!("[connectors.wecom_robot.ops]\nkey = \"{KEY}\"\nendpoint = \"{}\"\n", server.uri());
    let config = KIT.config(&text, "ops");
    let robot = WecomRobot::new(&config, client).unwrap();
    let failure = KIT.run(&robot, "send_text", &json!({"content": "x"})).await.unwrap_err();
    assert!(matches!(failure, Failure::Ambiguous { .. }), "{failure:?}");
}

#[test]
fn the_default_base_is_wecom() {
    let config = KIT.config(&format!("[connectors.wecom_robot.ops]\nkey = \"{KEY}\"\n"), "ops");
    let robot = WecomRobot::new(&config, http::client()).unwrap();
    assert_eq!(robot.base, "https://qyapi.weixin.qq.com");
}

#[test]
fn an_unknown_config_field_is_named() {
    let config = KIT.config("[connectors.wecom_robot.ops]\nkey = \"k\"\nwebhook = \"x\"\n", "ops");
    let err = WecomRobot::new(&config, http::client()).unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("connectors.wecom_robot.ops: "), "{text}");
    assert!(text.contains("unknown field `webhook`"), "{text}");
}

#[test]
fn a_missing_key_is_named() {
    let config = KIT.config("[connectors.wecom_robot.ops]\nrate_limit = \"1/s\"\n", "ops");
    let err = WecomRobot::new(&config, http::client()).unwrap_err();
    assert!(err.to_string().contains("missing field `key`"), "{err}");
}

#[test]
fn debug_shows_no_key() {
    let robot = robot_at("http://127.0.0.1:1");
    let debug = format!("{robot:?}");
    assert!(!debug.contains(KEY), "{debug}");
    let config = KIT.config(&format!("[connectors.wecom_robot.ops]\nkey = \"{KEY}\"\n"), "ops");
    let fields = super::config::WecomRobotConfig::from_config(&config).unwrap();
    assert!(!format!("{fields:?}").contains(KEY));
}

/// WeCom counts `content` in bytes of UTF-8 (docs/providers/wecom.md#robot-text-and-markdown): 700
/// Chinese characters pass the params schema (2,048 characters) but are 2,100 bytes, and must be
/// refused before any call; exactly the limit still goes out.
#[tokio::test]
async fn content_over_the_byte_limit_is_refused_without_a_call() {
    let server = MockServer::start().await;
    answer_with(&server, ok()).await;
    let robot = robot(&server);
    for (action, max) in [("send_text", 2048), ("send_markdown", 4096)] {
        let over = "汉".repeat(max / 3 + 1);
        assert!(over.chars().count() <= max && over.len() > max);
        assert!(yizhan_schemas::validate_params("wecom_robot", action, &json!({"content": over})).is_ok());
        let failure = KIT.run(&robot, action, &json!({"content": over})).await.unwrap_err();
        assert!(matches!(failure, Failure::Permanent { .. }), "{action}: {failure:?}");
        assert!(failure.reason().contains(&format!("at most {max}")), "{}", failure.reason());
    }
    assert!(server.received_requests().await.unwrap().is_empty(), "nothing may reach WeCom");
    KIT.run(&robot, "send_text", &json!({"content": "a".repeat(2048)})).await.unwrap();
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

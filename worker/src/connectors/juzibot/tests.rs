//! `juzibot` against wiremock: the exact request of every catalog action and the mapping of
//! answers. No reason may ever contain the token.

use std::time::Duration;

use serde_json::{Value, json};
use wiremock::{MockServer, ResponseTemplate};

use super::Juzibot;
use crate::connectors::testkit::{Kit, answer_with, json_body, only_request};
use crate::connectors::{Failure, http};

const TOKEN: &str = "5f1e3c2b9a8d7e6f5a4b3c2d1e0f9a8b";

const KIT: Kit = Kit { kind: "juzibot", secrets: &[TOKEN] };

fn bot(server: &MockServer) -> Juzibot {
    let text = format!("[connectors.juzibot.main]\ntoken = \"{TOKEN}\"\nendpoint = \"{}\"\n", server.uri());
    KIT.build(&text, "main", |config| Juzibot::new(config, http::client()))
}

fn ok(extra: Value) -> ResponseTemplate {
    let mut body = json!({"errcode": 0, "errmsg": "ok"});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    ResponseTemplate::new(200).set_body_json(body)
}

#[tokio::test]
async fn list_channels() {
    let server = MockServer::start().await;
    let page = json!({"data": [{"state": "4b3e1baf", "configId": "108dfd7e", "remark": "阿达大所多"}], "total": 1000});
    answer_with(&server, ok(page.clone())).await;
    let success = KIT.run(&bot(&server), "list_channels", &json!({"current": 2, "page_size": 1000})).await.unwrap();
    assert_eq!(success.result, Some(page));
    let request = only_request(&server).await;
    assert_eq!(request.method.as_str(), "GET");
    assert_eq!(request.url.path(), "/api/v1/channel/list");
    assert_eq!(request.url.query(), Some(format!("token={TOKEN}&current=2&pageSize=1000").as_str()));
    assert!(request.body.is_empty());
}

#[tokio::test]
async fn add_contact_way() {
    let server = MockServer::start().await;
    let receipt =
        json!({"config_id": "42b34949e138eb6e027c123cba77fAAA", "qr_code": "http://p.qpic.cn/wwhead/duc2Tv/0"});
    answer_with(&server, ok(receipt.clone())).await;
    let params = json!({"type": 1, "scene": 2, "style": 1, "remark": "渠道客户", "skip_verify": true, "state": "teststate",
                        "user": ["zhangsan"], "is_temp": true, "expires_in": 86400, "chat_expires_in": 86400,
                        "unionid": "oxTWIuGaIt6gTKsQRLau2M0AAAA", "conclusions": {"text": {"content": "文本消息内容"}}});
    let success = KIT.run(&bot(&server), "add_contact_way", &params).await.unwrap();
    assert_eq!(success.result, Some(receipt));
    let request = only_request(&server).await;
    assert_eq!(request.method.as_str(), "POST");
    assert_eq!(request.url.path(), "/api/v1/contactWay/add");
    assert_eq!(request.url.query(), Some(format!("token={TOKEN}").as_str()));
    assert_eq!(request.headers.get("content-type").unwrap(), "application/json");
    assert_eq!(json_body(&request), params);
}

#[tokio::test]
async fn get_contact_way() {
    let server = MockServer::start().await;
    let way = json!({"contact_way": {"config_id": "42b3", "type": 1, "scene": 1, "state": "teststate"}});
    answer_with(&server, ok(way.clone())).await;
    let success = KIT.run(&bot(&server), "get_contact_way", &json!({"config_id": "42b3"})).await.unwrap();
    assert_eq!(success.result, Some(way));
    let request = only_request(&server).await;
    assert_eq!(request.method.as_str(), "GET");
    assert_eq!(request.url.path(), "/api/v1/contactWay/get");
    assert_eq!(request.url.query(), Some(format!("token={TOKEN}&config_id=42b3").as_str()));
}

#[tokio::test]
async fn list_contact_ways_returns_the_next_cursor() {
    let server = MockServer::start().await;
    let page = json!({"contact_way": [{"config_id": "534b"}, {"config_id": "87bB"}], "next_cursor": "NEXT_CURSOR"});
    answer_with(&server, ok(page.clone())).await;
    let params = json!({"start_time": 1622476800, "end_time": 1625068800, "cursor": "CURSOR", "limit": 1000});
    let success = KIT.run(&bot(&server), "list_contact_ways", &params).await.unwrap();
    assert_eq!(success.result, Some(page));
    let request = only_request(&server).await;
    assert_eq!(request.method.as_str(), "POST");
    assert_eq!(request.url.path(), "/api/v1/contactWay/list");
    assert_eq!(request.url.query(), Some(format!("token={TOKEN}").as_str()));
    assert_eq!(json_body(&request), params);
}

#[tokio::test]
async fn answers_are_classified() {
    let server = MockServer::start().await;
    answer_with(&server, ResponseTemplate::new(429).insert_header("retry-after", "3").set_body_string("请求太频繁"))
        .await;
    let failure = KIT.run(&bot(&server), "list_channels", &json!({})).await.unwrap_err();
    assert!(
        matches!(failure, Failure::Throttled { retry_after: Some(d), .. } if d == Duration::from_secs(3)),
        "{failure:?}"
    );

    let server = MockServer::start().await;
    answer_with(
        &server,
        ResponseTemplate::new(200).set_body_json(json!({"errcode": 1001, "errmsg": format!("token {TOKEN} invalid")})),
    )
    .await;
    let failure = KIT.run(&bot(&server), "get_contact_way", &json!({"config_id": "x"})).await.unwrap_err();
    assert_eq!(failure, Failure::permanent("errcode 1001: token *** invalid"));

    let server = MockServer::start().await;
    answer_with(&server, ResponseTemplate::new(500)).await;
    let failure = KIT.run(&bot(&server), "add_contact_way", &json!({"type": 1, "scene": 2})).await.unwrap_err();
    assert!(matches!(failure, Failure::Transient { .. }), "{failure:?}");

    let server = MockServer::start().await;
    answer_with(&server, ResponseTemplate::new(200).set_body_string("<html/>")).await;
    let failure = KIT.run(&bot(&server), "add_contact_way", &json!({"type": 1, "scene": 2})).await.unwrap_err();
    assert!(matches!(failure, Failure::Ambiguous { .. }), "{failure:?}");
    // A read's too: only the pipeline's classify decides that a lost read is simply retried.
    let failure = KIT.run(&bot(&server), "list_channels", &json!({})).await.unwrap_err();
    assert!(matches!(failure, Failure::Ambiguous { .. }), "{failure:?}");
}

#[test]
fn the_default_base_is_juzibot() {
    let text = format!("[connectors.juzibot.main]\ntoken = \"{TOKEN}\"\n");
    let bot = KIT.build(&text, "main", |config| Juzibot::new(config, http::client()));
    assert_eq!(bot.base, "https://hub.juzibot.com");
    assert!(!format!("{bot:?}").contains(TOKEN));
}

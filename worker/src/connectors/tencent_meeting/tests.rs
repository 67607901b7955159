//! `tencent_meeting` against wiremock: the exact request of every action (signature recomputed
//! here independently from docs/providers/tencent-meeting.md#signature) and the mapping of answers.

use std::collections::BTreeSet;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use wiremock::{MockServer, Request, ResponseTemplate};

use super::TencentMeeting;
use crate::connectors::testkit::{Kit, answer_with, json_body, only_request};
use crate::connectors::{Failure, http};

const SECRET_ID: &str = "meeting-secret-id";
const SECRET_KEY: &str = "meeting-secret-key-do-not-leak";
const KIT: Kit = Kit { kind: "tencent_meeting", secrets: &[SECRET_KEY] };
const APP_ID: &str = "200000001";

fn connector_with(server: &MockServer, sdk_id: Option<&str>) -> TencentMeeting {
    let sdk = sdk_id.map(|id| format!("sdk_id = \"{id}\"\n")).unwrap_or_default();
    let text = format!(
        "[connectors.tencent_meeting.default]\napp_id = \"{APP_ID}\"\n{sdk}secret_id = \"{SECRET_ID}\"\n\
         secret_key = \"{SECRET_KEY}\"\nendpoint = \"{}\"\n",
        server.uri()
    );
    KIT.build(&text, "default", |config| TencentMeeting::new(config, http::client()))
}

fn connector(server: &MockServer) -> TencentMeeting {
    connector_with(server, None)
}

/// docs/providers/tencent-meeting.md#signature written out again: base64 of the hex HMAC.
fn expected_signature(method: &str, nonce: &str, timestamp: &str, uri: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET_KEY.as_bytes()).unwrap();
    mac.update(
        format!("{method}\nX-TC-Key={SECRET_ID}&X-TC-Nonce={nonce}&X-TC-Timestamp={timestamp}\n{uri}\n").as_bytes(),
    );
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(hex::encode(mac.finalize().into_bytes()))
}

/// Asserts method, URI, headers and signature of `request`; returns the body (Null when empty).
fn assert_request(request: &Request, method: &str, uri: &str, sdk_id: Option<&str>) -> Value {
    let header = |name: &str| request.headers.get(name).map(|v| v.to_str().unwrap().to_string());
    assert_eq!(request.method.as_str(), method);
    let actual_uri = match request.url.query() {
        Some(q) => format!("{}?{q}", request.url.path()),
        None => request.url.path().to_string(),
    };
    assert_eq!(actual_uri, uri);
    let mut expected: BTreeSet<&str> = [
        "accept",
        "appid",
        "content-type",
        "host",
        "x-tc-key",
        "x-tc-nonce",
        "x-tc-registered",
        "x-tc-signature",
        "x-tc-timestamp",
    ]
    .into();
    if !request.body.is_empty() {
        expected.insert("content-length");
    }
    if sdk_id.is_some() {
        expected.insert("sdkid");
    }
    let names: BTreeSet<&str> = request.headers.keys().map(|k| k.as_str()).collect();
    assert_eq!(names, expected);
    assert_eq!(header("content-type").unwrap(), "application/json; charset=utf-8");
    assert_eq!(header("x-tc-key").unwrap(), SECRET_ID);
    assert_eq!(header("appid").unwrap(), APP_ID);
    assert_eq!(header("sdkid").as_deref(), sdk_id);
    assert_eq!(header("x-tc-registered").unwrap(), "1");
    let timestamp = header("x-tc-timestamp").unwrap();
    assert!((chrono::Utc::now().timestamp() - timestamp.parse::<i64>().unwrap()).abs() < 300);
    let nonce = header("x-tc-nonce").unwrap();
    assert!(nonce.parse::<u64>().unwrap() > 0);
    assert_eq!(header("x-tc-signature").unwrap(), expected_signature(method, &nonce, &timestamp, uri, &request.body));
    if request.body.is_empty() { Value::Null } else { json_body(request) }
}

fn meeting_info() -> Value {
    json!({"meeting_number": 1, "meeting_info_list": [{"meeting_id": "7567173273889276131", "meeting_code": "806146667",
           "subject": "Weekly", "join_url": "https://meeting.tencent.com/s/abc", "start_time": "1700000000",
           "end_time": "1700003600", "hosts": [{"userid": "tester1"}], "participants": [], "settings": {}}]})
}

#[tokio::test]
async fn create_meeting_posts_the_params_and_returns_the_answer() {
    let server = MockServer::start().await;
    answer_with(&server, ResponseTemplate::new(200).set_body_json(meeting_info())).await;
    let params = json!({"userid": "tester1", "instanceid": 1, "subject": "Weekly", "type": 0, "start_time": "1700000000",
                        "end_time": "1700003600", "password": "1234", "hosts": [{"userid": "tester1"}],
                        "invitees": [{"userid": "tester2"}], "settings": {"mute_enable_join": true}});
    let success = KIT.run(&connector_with(&server, Some("19000001")), "create_meeting", &params).await.unwrap();
    assert_eq!(success.result, Some(meeting_info()));
    let body = assert_request(&only_request(&server).await, "POST", "/v1/meetings", Some("19000001"));
    assert_eq!(body, params);
}

#[tokio::test]
async fn get_meeting_sends_a_signed_get_with_sorted_query() {
    let server = MockServer::start().await;
    answer_with(&server, ResponseTemplate::new(200).set_body_json(meeting_info())).await;
    let params = json!({"meeting_id": "7567173273889276131", "userid": "tester 1", "instanceid": 1});
    let success = KIT.run(&connector(&server), "get_meeting", &params).await.unwrap();
    assert_eq!(success.result, Some(meeting_info()));
    let request = only_request(&server).await;
    assert_eq!(
        assert_request(&request, "GET", "/v1/meetings/7567173273889276131?instanceid=1&userid=tester+1", None),
        Value::Null
    );
}

#[tokio::test]
async fn get_meeting_by_code_and_list_user_meetings_query_the_collection() {
    for (action, params, uri) in [
        (
            "get_meeting_by_code",
            json!({"meeting_code": "806146667", "userid": "tester1", "instanceid": 2}),
            "/v1/meetings?instanceid=2&meeting_code=806146667&userid=tester1",
        ),
        (
            "list_user_meetings",
            json!({"userid": "tester1", "instanceid": 1}),
            "/v1/meetings?instanceid=1&userid=tester1",
        ),
    ] {
        let server = MockServer::start().await;
        answer_with(&server, ResponseTemplate::new(200).set_body_json(meeting_info())).await;
        let success = KIT.run(&connector(&server), action, &params).await.unwrap();
        assert_eq!(success.result, Some(meeting_info()), "{action}");
        assert_request(&only_request(&server).await, "GET", uri, None);
    }
}

#[tokio::test]
async fn cancel_meeting_posts_to_the_meeting_path() {
    let server = MockServer::start().await;
    answer_with(&server, ResponseTemplate::new(200).set_body_json(json!({}))).await;
    let params = json!({"meeting_id": "7567454748865986567", "userid": "test1", "instanceid": 1, "reason_code": 1,
                        "reason_detail": "取消会议"});
    let success = KIT.run(&connector(&server), "cancel_meeting", &params).await.unwrap();
    assert_eq!(success.result, Some(json!({})));
    let body = assert_request(&only_request(&server).await, "POST", "/v1/meetings/7567454748865986567/cancel", None);
    assert_eq!(body, json!({"userid": "test1", "instanceid": 1, "reason_code": 1, "reason_detail": "取消会议"}));
}

#[tokio::test]
async fn end_meeting_renames_the_operator_and_force_flag() {
    let server = MockServer::start().await;
    answer_with(&server, ResponseTemplate::new(200)).await;
    let params = json!({"meeting_id": "123", "userid": "test1", "instanceid": 1, "reason_code": 2, "force": 1});
    let success = KIT.run(&connector(&server), "end_meeting", &params).await.unwrap();
    assert_eq!(success.result, Some(json!({})));
    let body = assert_request(&only_request(&server).await, "POST", "/v1/meetings/123/dismiss", None);
    assert_eq!(
        body,
        json!({"operator_id": "test1", "operator_id_type": 1, "instanceid": 1, "reason_code": 2, "force_dismiss_meeting": 1})
    );
}

#[tokio::test]
async fn update_meeting_puts_the_changed_fields() {
    let server = MockServer::start().await;
    answer_with(&server, ResponseTemplate::new(200).set_body_json(meeting_info())).await;
    let params = json!({"meeting_id": "123", "userid": "test1", "instanceid": 1, "subject": "Moved"});
    KIT.run(&connector(&server), "update_meeting", &params).await.unwrap();
    let body = assert_request(&only_request(&server).await, "PUT", "/v1/meetings/123", None);
    assert_eq!(body, json!({"userid": "test1", "instanceid": 1, "subject": "Moved"}));
}

#[tokio::test]
async fn list_participants_gets_the_sub_path() {
    let server = MockServer::start().await;
    let answer = json!({"meeting_id": "123", "meeting_code": "806146667", "participants": [{"userid": "a"}],
                        "has_remaining": false, "total_count": 1});
    answer_with(&server, ResponseTemplate::new(200).set_body_json(answer.clone())).await;
    let success = KIT
        .run(&connector(&server), "list_participants", &json!({"meeting_id": "123", "userid": "test1"}))
        .await
        .unwrap();
    assert_eq!(success.result, Some(answer));
    assert_request(&only_request(&server).await, "GET", "/v1/meetings/123/participants?userid=test1", None);
}

#[tokio::test]
async fn every_attempt_gets_a_fresh_nonce() {
    let server = MockServer::start().await;
    answer_with(&server, ResponseTemplate::new(200).set_body_json(meeting_info())).await;
    let params = json!({"meeting_id": "123", "userid": "test1", "instanceid": 1});
    let meeting = connector(&server);
    for _ in 0..3 {
        KIT.run(&meeting, "get_meeting", &params).await.unwrap();
    }
    let nonces: BTreeSet<String> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.headers.get("x-tc-nonce").unwrap().to_str().unwrap().to_string())
        .collect();
    assert_eq!(nonces.len(), 3);
}

#[tokio::test]
async fn error_info_answers_are_classified() {
    let params = json!({"meeting_id": "123", "userid": "test1", "instanceid": 1});
    let cases = [
        (400, 190301, "transient"),
        (400, 190300, "transient"),
        (400, 190310, "throttled"),
        (400, 9061, "transient"),
        (500, 5108, "transient"),
        (400, 190311, "permanent"),
        (400, 9003, "permanent"),
        (400, 190303, "permanent"),
    ];
    for (status, code, expected) in cases {
        let server = MockServer::start().await;
        let body = json!({"error_info": {"error_code": code, "new_error_code": code, "message": "MEETING NOT EXIST"}});
        answer_with(&server, ResponseTemplate::new(status).set_body_json(body)).await;
        let failure = KIT.run(&connector(&server), "get_meeting", &params).await.unwrap_err();
        let kind = match &failure {
            Failure::Transient { .. } => "transient",
            // The app's per-minute limit: the config waits the minute out.
            Failure::Throttled { retry_after: Some(d), .. } if *d == std::time::Duration::from_secs(60) => "throttled",
            Failure::Permanent { .. } => "permanent",
            _ => "unexpected",
        };
        assert_eq!(kind, expected, "{code}: {failure:?}");
        assert!(failure.reason().contains(&code.to_string()), "{}", failure.reason());
    }
    let server = MockServer::start().await;
    answer_with(&server, ResponseTemplate::new(502).set_body_string("bad gateway")).await;
    assert!(matches!(KIT.run(&connector(&server), "get_meeting", &params).await, Err(Failure::Transient { .. })));
}

#[tokio::test]
async fn an_unreadable_answer_to_a_write_is_ambiguous() {
    let server = MockServer::start().await;
    answer_with(&server, ResponseTemplate::new(200).set_body_string("<html>")).await;
    let params = json!({"meeting_id": "123", "userid": "test1", "instanceid": 1, "reason_code": 1});
    assert!(matches!(KIT.run(&connector(&server), "cancel_meeting", &params).await, Err(Failure::Ambiguous { .. })));
}

//! `tencent_ses` against wiremock: the exact request of every action (TC3 signature recomputed
//! here independently, service `ses`) and the mapping of answers.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use wiremock::{MockServer, ResponseTemplate};

use super::TencentSes;
use crate::connectors::testkit::{Kit, answer_with, json_body, only_request};
use crate::connectors::{Failure, http};

const SECRET_ID: &str = "AKIDsesTestSecretId000000000000";
const SECRET_KEY: &str = "ses-secret-key-do-not-leak-42";
const KIT: Kit = Kit { kind: "tencent_ses", secrets: &[SECRET_KEY] };

fn connector(server: &MockServer) -> TencentSes {
    let text = format!(
        "[connectors.tencent_ses.default]\nsecret_id = \"{SECRET_ID}\"\nsecret_key = \"{SECRET_KEY}\"\nendpoint = \"{}\"\n",
        server.uri()
    );
    KIT.build(&text, "default", |config| TencentSes::new(config, http::client()))
}

fn ok(response: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({ "Response": response }))
}

fn api_error(code: &str) -> ResponseTemplate {
    ok(json!({"Error": {"Code": code, "Message": "nope"}, "RequestId": "req-err"}))
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// docs/providers/tencent-cloud.md#signing-tc3-hmac-sha256 written out again, for service `ses`.
fn expected_authorization(host: &str, timestamp: i64, body: &[u8]) -> String {
    let canonical = format!(
        "POST\n/\n\ncontent-type:application/json\nhost:{host}\n\ncontent-type;host\n{}",
        hex::encode(Sha256::digest(body))
    );
    let date = chrono::DateTime::from_timestamp(timestamp, 0).unwrap().format("%Y-%m-%d").to_string();
    let scope = format!("{date}/ses/tc3_request");
    let to_sign = format!("TC3-HMAC-SHA256\n{timestamp}\n{scope}\n{}", hex::encode(Sha256::digest(canonical)));
    let key = hmac(&hmac(&hmac(format!("TC3{SECRET_KEY}").as_bytes(), &date), "ses"), "tc3_request");
    let signature = hex::encode(hmac(&key, &to_sign));
    format!("TC3-HMAC-SHA256 Credential={SECRET_ID}/{scope}, SignedHeaders=content-type;host, Signature={signature}")
}

/// Asserts method, path, headers and signature of the only request; returns its body.
async fn signed_body(server: &MockServer, action: &str) -> Value {
    let request = only_request(server).await;
    let header = |name: &str| request.headers.get(name).unwrap().to_str().unwrap().to_string();
    assert_eq!(request.method.as_str(), "POST");
    assert_eq!(request.url.path(), "/");
    assert_eq!(request.url.query(), None);
    let host = server.uri().trim_start_matches("http://").to_string();
    assert_eq!(header("host"), host);
    assert_eq!(header("content-type"), "application/json");
    assert_eq!(header("x-tc-action"), action);
    assert_eq!(header("x-tc-version"), "2020-10-02");
    assert_eq!(header("x-tc-region"), "ap-hongkong");
    let timestamp: i64 = header("x-tc-timestamp").parse().unwrap();
    assert!((chrono::Utc::now().timestamp() - timestamp).abs() < 300);
    assert_eq!(header("authorization"), expected_authorization(&host, timestamp, &request.body));
    json_body(&request)
}

fn identity_answer() -> Value {
    json!({"IdentityType": "DOMAIN", "VerifiedForSendingStatus": false,
           "Attributes": [{"Type": "TXT", "SendDomain": "mail.example.com", "ExpectedValue": "v=spf1 include:qcloudmail.com ~all",
                           "CurrentValue": "", "Status": false}],
           "RequestId": "req-1"})
}

#[tokio::test]
async fn identity_actions_send_the_pascal_case_domain_and_return_the_answer() {
    for (action, wire) in [
        ("create_email_identity", "CreateEmailIdentity"),
        ("get_email_identity", "GetEmailIdentity"),
        ("update_email_identity", "UpdateEmailIdentity"),
        ("delete_email_identity", "DeleteEmailIdentity"),
    ] {
        let server = MockServer::start().await;
        let answer = if action == "delete_email_identity" { json!({"RequestId": "req-1"}) } else { identity_answer() };
        answer_with(&server, ok(answer.clone())).await;
        let success =
            KIT.run(&connector(&server), action, &json!({"email_identity": "mail.example.com"})).await.unwrap();
        assert_eq!(success.result, Some(answer), "{action}");
        assert_eq!(signed_body(&server, wire).await, json!({"EmailIdentity": "mail.example.com"}), "{action}");
    }
}

#[tokio::test]
async fn list_email_identities_sends_an_empty_object() {
    let server = MockServer::start().await;
    let answer = json!({"EmailIdentities": [{"IdentityName": "mail.example.com", "IdentityType": "DOMAIN",
                        "SendingEnabled": true, "CurrentReputationLevel": 1, "DailyQuota": 500}],
                        "MaxReputationLevel": 1, "MaxDailyQuota": 500, "RequestId": "req-1"});
    answer_with(&server, ok(answer.clone())).await;
    let success = KIT.run(&connector(&server), "list_email_identities", &json!({})).await.unwrap();
    assert_eq!(success.result, Some(answer));
    assert_eq!(signed_body(&server, "ListEmailIdentities").await, json!({}));
}

#[tokio::test]
/// docs/providers/tencent-cloud.md#sendemail: Simple.Html and Simple.Text go base64 (of UTF-8).
async fn send_email_with_html_text_reply_to_and_attachments() {
    let server = MockServer::start().await;
    answer_with(&server, ok(json!({"MessageId": "qcloud-ses-1", "RequestId": "req-1"}))).await;
    let params = json!({"from_email_address": "Yizhan <noreply@mail.example.com>", "destination": ["a@example.com", "b@example.com"],
                        "subject": "Hi", "reply_to_addresses": "ops@example.com", "html": "<b>你好</b>", "text": "你好",
                        "attachments": [{"filename": "a.txt", "content_base64": "aGk="}]});
    let success = KIT.run(&connector(&server), "send_email", &params).await.unwrap();
    assert_eq!(success.result, Some(json!({"MessageId": "qcloud-ses-1", "RequestId": "req-1"})));
    assert_eq!(
        signed_body(&server, "SendEmail").await,
        json!({"FromEmailAddress": "Yizhan <noreply@mail.example.com>", "Destination": ["a@example.com", "b@example.com"],
               "Subject": "Hi", "ReplyToAddresses": "ops@example.com", "Simple": {"Html": "PGI+5L2g5aW9PC9iPg==", "Text": "5L2g5aW9"},
               "Attachments": [{"FileName": "a.txt", "Content": "aGk="}]})
    );
}

#[tokio::test]
async fn send_email_with_a_template_sends_its_data_as_a_json_string() {
    let server = MockServer::start().await;
    answer_with(&server, ok(json!({"MessageId": "m", "RequestId": "r"}))).await;
    let params = json!({"from_email_address": "noreply@mail.example.com", "destination": ["a@example.com"], "subject": "Code",
                        "template": {"template_id": 100, "template_data": {"code": "123456", "name": "Li"}}});
    KIT.run(&connector(&server), "send_email", &params).await.unwrap();
    assert_eq!(
        signed_body(&server, "SendEmail").await,
        json!({"FromEmailAddress": "noreply@mail.example.com", "Destination": ["a@example.com"], "Subject": "Code",
               "Template": {"TemplateID": 100, "TemplateData": "{\"code\":\"123456\",\"name\":\"Li\"}"}})
    );
}

#[tokio::test]
async fn send_email_needs_exactly_one_body_form() {
    let server = MockServer::start().await;
    let base = json!({"from_email_address": "n@mail.example.com", "destination": ["a@example.com"], "subject": "s"});
    let failure = KIT.run(&connector(&server), "send_email", &base).await.unwrap_err();
    assert!(matches!(failure, Failure::Permanent { .. }), "{failure:?}");
    let mut both = base.clone();
    both["text"] = json!("t");
    both["template"] = json!({"template_id": 1});
    assert!(matches!(KIT.run(&connector(&server), "send_email", &both).await, Err(Failure::Permanent { .. })));
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn error_codes_are_classified_with_the_code_in_the_reason() {
    let params = json!({"email_identity": "mail.example.com"});
    for (code, expected) in [
        ("FailedOperation.ServiceNotAvailable", "transient"),
        ("FailedOperation.TemporaryBlocked", "transient"),
        ("FailedOperation.FrequencyLimit", "transient"),
        ("FailedOperation.HighRejectionRate", "transient"),
        ("RequestLimitExceeded", "throttled"),
        ("RequestLimitExceeded.UinLimitExceeded", "throttled"),
        ("FailedOperation.ExceedSendLimit", "permanent"),
        ("FailedOperation.InsufficientQuota", "permanent"),
        ("FailedOperation.InsufficientBalance", "permanent"),
        ("InvalidParameterValue.RepeatCreation", "permanent"),
        ("AuthFailure.SignatureFailure", "permanent"),
    ] {
        let server = MockServer::start().await;
        answer_with(&server, api_error(code)).await;
        let failure = KIT.run(&connector(&server), "create_email_identity", &params).await.unwrap_err();
        let kind = match &failure {
            Failure::Transient { .. } => "transient",
            Failure::Throttled { retry_after: None, .. } => "throttled",
            Failure::Permanent { .. } => "permanent",
            _ => "unexpected",
        };
        assert_eq!(kind, expected, "{code}: {failure:?}");
        assert!(failure.reason().contains(code), "{}", failure.reason());
        assert!(failure.reason().contains("req-err"), "{}", failure.reason());
        if code.contains("Quota") || code.contains("ExceedSendLimit") || code.contains("Balance") {
            assert!(failure.reason().contains("resets"), "{}", failure.reason());
        }
    }
}

#[tokio::test]
async fn temporary_block_waits_ten_minutes_and_http_errors_are_transient() {
    let server = MockServer::start().await;
    answer_with(&server, api_error("FailedOperation.TemporaryBlocked")).await;
    let failure = KIT.run(&connector(&server), "list_email_identities", &json!({})).await.unwrap_err();
    assert!(matches!(failure, Failure::Transient { retry_after: Some(d), .. } if d == Duration::from_secs(600)));

    let server = MockServer::start().await;
    answer_with(&server, ResponseTemplate::new(502).set_body_string("bad gateway")).await;
    let failure = KIT.run(&connector(&server), "list_email_identities", &json!({})).await.unwrap_err();
    assert!(matches!(failure, Failure::Transient { .. }), "{failure:?}");
}

/// Whether it is retried (a read) or follows `on_ambiguous` (a send) is the pipeline's `classify`'s call.
#[tokio::test]
async fn an_unreadable_answer_is_ambiguous_for_a_send_and_a_read_alike() {
    let server = MockServer::start().await;
    answer_with(&server, ResponseTemplate::new(200).set_body_string("<html>")).await;
    let send = json!({"from_email_address": "n@mail.example.com", "destination": ["a@example.com"], "subject": "s", "text": "t"});
    assert!(matches!(KIT.run(&connector(&server), "send_email", &send).await, Err(Failure::Ambiguous { .. })));
    assert!(matches!(
        KIT.run(&connector(&server), "get_email_identity", &json!({"email_identity": "mail.example.com"})).await,
        Err(Failure::Ambiguous { .. })
    ));
}

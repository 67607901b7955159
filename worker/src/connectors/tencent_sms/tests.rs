//! `tencent_sms` against a wiremock Tencent Cloud: the exact request (signature re-computed here
//! independently of `sign.rs`) and the mapping of every kind of answer.

use std::collections::BTreeSet;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use super::TencentSms;
use crate::connectors::testkit::{Kit, json_body};
use crate::connectors::{Call, Failure, Success, http};

pub(super) const SECRET_ID: &str = "AKIDtestSecretId0000000000000000";
pub(super) const SECRET_KEY: &str = "tEsTsEcReTkEy-do-not-leak-0123456";
/// A signature is as good as the key for its five minutes.
const KIT: Kit = Kit { kind: "tencent_sms", secrets: &[SECRET_KEY, "Signature="] };
pub(super) const APP_ID: &str = "1400000000";

fn config_text(endpoint: &str, extra: &str) -> String {
    format!(
        "[connectors.tencent_sms.default]\nsecret_id = \"{SECRET_ID}\"\nsecret_key = \"{SECRET_KEY}\"\n\
         endpoint = \"{endpoint}\"\n{extra}\n"
    )
}

pub(super) fn connector_with(endpoint: &str, extra: &str) -> TencentSms {
    KIT.build(&config_text(endpoint, extra), "default", |config| TencentSms::new(config, http::client()))
}

fn connector(server: &MockServer) -> TencentSms {
    connector_with(&format!("{}/", server.uri()), &format!("sdk_app_id = \"{APP_ID}\""))
}

pub(super) fn params(numbers: &[&str]) -> Value {
    json!({
        "phone_numbers": numbers,
        "sign_name": "Yizhan",
        "template_id": "1001",
        "template_params": ["123456", "5"],
    })
}

/// `send_sms` with the progress of earlier attempts.
pub(super) async fn run(connector: &TencentSms, params: &Value, progress: Option<&Value>) -> Result<Success, Failure> {
    KIT.execute(connector, Call { progress, ..KIT.call("send_sms", params) }).await
}

fn status(number: &str, code: &str, message: &str, serial: &str, fee: u64) -> Value {
    json!({"SerialNo": serial, "PhoneNumber": number, "Fee": fee, "SessionContext": "", "Code": code,
           "Message": message, "IsoCode": "CN"})
}

fn statuses(set: Vec<Value>) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .set_body_json(json!({"Response": {"SendStatusSet": Value::Array(set), "RequestId": "req-1"}}))
}

fn api_error(code: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .set_body_json(json!({"Response": {"Error": {"Code": code, "Message": message}, "RequestId": "req-err"}}))
}

async fn answer_with(server: &MockServer, template: ResponseTemplate) {
    Mock::given(method("POST")).and(path("/")).respond_with(template).mount(server).await;
}

// ---- the independent TC3 computation, written from docs/providers/tencent-cloud.md#signing-tc3-hmac-sha256 ----

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

pub(super) fn expected_authorization(host: &str, timestamp: i64, body: &[u8]) -> String {
    let canonical_request =
        format!("POST\n/\n\ncontent-type:application/json\nhost:{host}\n\ncontent-type;host\n{}", sha256_hex(body));
    let date = chrono::DateTime::from_timestamp(timestamp, 0).unwrap().format("%Y-%m-%d").to_string();
    let scope = format!("{date}/sms/tc3_request");
    let string_to_sign = format!("TC3-HMAC-SHA256\n{timestamp}\n{scope}\n{}", sha256_hex(canonical_request.as_bytes()));
    let secret_date = hmac(format!("TC3{SECRET_KEY}").as_bytes(), &date);
    let secret_service = hmac(&secret_date, "sms");
    let secret_signing = hmac(&secret_service, "tc3_request");
    let signature = hex::encode(hmac(&secret_signing, &string_to_sign));
    format!("TC3-HMAC-SHA256 Credential={SECRET_ID}/{scope}, SignedHeaders=content-type;host, Signature={signature}")
}

/// Asserts every part of one `SendSms` request and returns its body.
fn assert_send_sms_request(server: &MockServer, request: &Request, expected_body: &Value) {
    assert_eq!(request.method.as_str(), "POST");
    assert_eq!(request.url.path(), "/");
    assert_eq!(request.url.query(), None);
    let header = |name: &str| request.headers.get(name).map(|v| v.to_str().unwrap().to_string());
    let names: BTreeSet<&str> = request.headers.keys().map(|k| k.as_str()).collect();
    let expected_names: BTreeSet<&str> = [
        "accept",
        "authorization",
        "content-length",
        "content-type",
        "host",
        "x-tc-action",
        "x-tc-region",
        "x-tc-timestamp",
        "x-tc-version",
    ]
    .into();
    assert_eq!(names, expected_names);
    let host = server.uri().trim_start_matches("http://").to_string();
    assert_eq!(header("host").unwrap(), host);
    assert_eq!(header("content-type").unwrap(), "application/json");
    assert_eq!(header("x-tc-action").unwrap(), "SendSms");
    assert_eq!(header("x-tc-version").unwrap(), "2021-01-11");
    assert_eq!(header("x-tc-region").unwrap(), "ap-guangzhou");
    let timestamp: i64 = header("x-tc-timestamp").unwrap().parse().unwrap();
    assert!((chrono::Utc::now().timestamp() - timestamp).abs() < 300, "stale timestamp {timestamp}");
    assert_eq!(header("authorization").unwrap(), expected_authorization(&host, timestamp, &request.body));
    assert_eq!(&json_body(request), expected_body);
}

fn expected_body(numbers: &[&str]) -> Value {
    json!({
        "PhoneNumberSet": numbers,
        "SmsSdkAppId": APP_ID,
        "TemplateId": "1001",
        "SignName": "Yizhan",
        "TemplateParamSet": ["123456", "5"],
    })
}

const A: &str = "+8613800000001";
const B: &str = "+8613800000002";
const C: &str = "+8613800000003";

#[tokio::test]
async fn three_numbers_succeed_with_the_exact_signed_request() {
    let server = MockServer::start().await;
    answer_with(
        &server,
        statuses(vec![
            status(A, "Ok", "send success", "5000:1", 1),
            status(B, "Ok", "send success", "5000:2", 1),
            status(C, "Ok", "send success", "5000:3", 2),
        ]),
    )
    .await;
    let success = run(&connector(&server), &params(&[A, B, C]), None).await.unwrap();
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    assert_send_sms_request(&server, &requests[0], &expected_body(&[A, B, C]));
    assert_eq!(
        success.result.unwrap(),
        json!({"numbers": [
            {"phone_number": A, "code": "Ok", "message": "send success", "serial_no": "5000:1", "fee": 1},
            {"phone_number": B, "code": "Ok", "message": "send success", "serial_no": "5000:2", "fee": 1},
            {"phone_number": C, "code": "Ok", "message": "send success", "serial_no": "5000:3", "fee": 2},
        ]})
    );
}

#[tokio::test]
async fn optional_fields_and_the_params_app_id_are_sent() {
    let server = MockServer::start().await;
    answer_with(&server, statuses(vec![status(A, "Ok", "send success", "5000:1", 1)])).await;
    let mut params = params(&[A]);
    params["sdk_app_id"] = json!("1400999999");
    params["session_context"] = json!("ctx");
    params["extend_code"] = json!("12");
    params["sender_id"] = json!("Yizhan");
    run(&connector(&server), &params, None).await.unwrap();
    let requests = server.received_requests().await.unwrap();
    let mut body = expected_body(&[A]);
    body["SmsSdkAppId"] = json!("1400999999");
    body["SessionContext"] = json!("ctx");
    body["ExtendCode"] = json!("12");
    body["SenderId"] = json!("Yizhan");
    assert_send_sms_request(&server, &requests[0], &body);
}

#[tokio::test]
async fn a_partial_answer_is_retried_for_the_pending_number_only() {
    let server = MockServer::start().await;
    answer_with(
        &server,
        statuses(vec![
            status(A, "Ok", "send success", "5000:1", 1),
            status(B, "InternalError.Timeout", "request timeout", "", 0),
            status(C, "FailedOperation.PhoneNumberInBlacklist", "number in blacklist", "", 0),
        ]),
    )
    .await;
    let sms = connector(&server);
    let job = params(&[A, B, C]);
    let failure = run(&sms, &job, None).await.unwrap_err();
    let Failure::Transient { reason, retry_after, progress: Some(progress) } = failure else {
        panic!("expected a transient failure with progress: {failure:?}");
    };
    assert_eq!(retry_after, None);
    assert!(reason.starts_with("1 of 3 numbers not sent yet: +8613800000002: InternalError.Timeout"), "{reason}");
    assert_eq!(
        progress,
        json!({"numbers": {
            A: {"code": "Ok", "message": "send success", "serial_no": "5000:1", "fee": 1, "final": true},
            B: {"code": "InternalError.Timeout", "message": "request timeout", "serial_no": "", "fee": 0, "final": false},
            C: {"code": "FailedOperation.PhoneNumberInBlacklist", "message": "number in blacklist", "serial_no": "",
                "fee": 0, "final": true},
        }})
    );

    // The next attempt, fed that progress, sends B alone.
    server.reset().await;
    answer_with(&server, statuses(vec![status(B, "Ok", "send success", "5000:9", 1)])).await;
    let success = run(&sms, &job, Some(&progress)).await.unwrap();
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    assert_send_sms_request(&server, &requests[0], &expected_body(&[B]));
    assert_eq!(
        success.result.unwrap(),
        json!({"numbers": [
            {"phone_number": A, "code": "Ok", "message": "send success", "serial_no": "5000:1", "fee": 1},
            {"phone_number": B, "code": "Ok", "message": "send success", "serial_no": "5000:9", "fee": 1},
            {"phone_number": C, "code": "FailedOperation.PhoneNumberInBlacklist", "message": "number in blacklist",
             "serial_no": "", "fee": 0},
        ]})
    );
}

#[tokio::test]
async fn every_number_failing_permanently_is_permanent_with_each_code() {
    let server = MockServer::start().await;
    answer_with(
        &server,
        statuses(vec![
            status(A, "FailedOperation.PhoneNumberInBlacklist", "blacklisted", "", 0),
            status(B, "LimitExceeded.PhoneNumberDailyLimit", "daily limit", "", 0),
            status(C, "InvalidParameterValue.IncorrectPhoneNumber", "bad number", "", 0),
        ]),
    )
    .await;
    let failure = run(&connector(&server), &params(&[A, B, C]), None).await.unwrap_err();
    let Failure::Permanent { reason, progress: Some(progress) } = failure else {
        panic!("expected a permanent failure with progress: {failure:?}");
    };
    assert_eq!(
        reason,
        "all numbers failed: +8613800000001: FailedOperation.PhoneNumberInBlacklist (blacklisted); \
         +8613800000002: LimitExceeded.PhoneNumberDailyLimit (daily limit); \
         +8613800000003: InvalidParameterValue.IncorrectPhoneNumber (bad number) \
         (daily quotas reset at midnight China time, UTC+8)"
    );
    assert_eq!(progress["numbers"].as_object().unwrap().len(), 3);
    assert!(progress["numbers"].as_object().unwrap().values().all(|s| s["final"] == true));
}

#[tokio::test]
async fn long_failure_lists_are_capped() {
    let server = MockServer::start().await;
    let numbers: Vec<String> = (0..40).map(|i| format!("+86138000001{i:02}")).collect();
    let refs: Vec<&str> = numbers.iter().map(String::as_str).collect();
    let message = "m".repeat(500);
    answer_with(
        &server,
        statuses(refs.iter().map(|n| status(n, "FailedOperation.PhoneNumberInBlacklist", &message, "", 0)).collect()),
    )
    .await;
    let failure = run(&connector(&server), &params(&refs), None).await.unwrap_err();
    assert!(matches!(failure, Failure::Permanent { .. }));
    assert!(failure.reason().ends_with("… and 30 more"), "{}", failure.reason());
    assert!(failure.reason().len() < 2000, "{}", failure.reason().len());
}

#[tokio::test]
async fn per_number_waits_become_the_retry_hint() {
    let server = MockServer::start().await;
    answer_with(
        &server,
        statuses(vec![
            status(A, "LimitExceeded.PhoneNumberThirtySecondLimit", "30 s", "", 0),
            status(B, "LimitExceeded.PhoneNumberOneHourLimit", "1 h", "", 0),
        ]),
    )
    .await;
    let failure = run(&connector(&server), &params(&[A, B]), None).await.unwrap_err();
    let Failure::Transient { retry_after, .. } = failure else { panic!("{failure:?}") };
    assert_eq!(retry_after, Some(Duration::from_secs(3600)));

    server.reset().await;
    answer_with(&server, statuses(vec![status(A, "LimitExceeded.PhoneNumberThirtySecondLimit", "30 s", "", 0)])).await;
    let failure = run(&connector(&server), &params(&[A]), None).await.unwrap_err();
    let Failure::Transient { retry_after, .. } = failure else { panic!("{failure:?}") };
    assert_eq!(retry_after, Some(Duration::from_secs(30)));
}

#[tokio::test]
async fn a_whole_request_rate_limit_throttles_the_config_and_leaves_the_stored_progress() {
    let throttled = Failure::throttled("SendSms: RequestLimitExceeded: too many requests (RequestId req-err)", None);
    let server = MockServer::start().await;
    answer_with(&server, api_error("RequestLimitExceeded", "too many requests")).await;
    let sms = connector(&server);
    let failure = run(&sms, &params(&[A]), None).await.unwrap_err();
    assert_eq!(failure, throttled);

    // With earlier progress: only the pending number is sent, and the throttle carries no progress
    // of its own, so the pipeline keeps the stored one.
    let earlier = json!({"numbers": {
        A: {"code": "Ok", "message": "send success", "serial_no": "5000:1", "fee": 1, "final": true},
        B: {"code": "InternalError.Timeout", "message": "t", "serial_no": "", "fee": 0, "final": false},
    }});
    let job = params(&[A, B]);
    let failure = run(&sms, &job, Some(&earlier)).await.unwrap_err();
    assert_eq!(failure, throttled);
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2);
    assert_send_sms_request(&server, &requests[1], &expected_body(&[B]));

    // The retry, fed that same stored progress, sends B alone and never texts A twice.
    server.reset().await;
    answer_with(&server, statuses(vec![status(B, "Ok", "send success", "5000:9", 1)])).await;
    let success = run(&sms, &job, Some(&earlier)).await.unwrap();
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    assert_send_sms_request(&server, &requests[0], &expected_body(&[B]));
    assert_eq!(
        success.result.unwrap(),
        json!({"numbers": [
            {"phone_number": A, "code": "Ok", "message": "send success", "serial_no": "5000:1", "fee": 1},
            {"phone_number": B, "code": "Ok", "message": "send success", "serial_no": "5000:9", "fee": 1},
        ]})
    );
}

#[tokio::test]
async fn an_unknown_secret_id_is_permanent() {
    let server = MockServer::start().await;
    answer_with(&server, api_error("AuthFailure.SecretIdNotFound", "The SecretId is not found")).await;
    let failure = run(&connector(&server), &params(&[A]), None).await.unwrap_err();
    assert_eq!(
        failure,
        Failure::Permanent {
            reason: "SendSms: AuthFailure.SecretIdNotFound: The SecretId is not found (RequestId req-err)".into(),
            progress: None,
        }
    );
}

#[tokio::test]
async fn an_expired_signature_is_transient() {
    let server = MockServer::start().await;
    answer_with(&server, api_error("AuthFailure.SignatureExpire", "expired")).await;
    let failure = run(&connector(&server), &params(&[A]), None).await.unwrap_err();
    assert!(matches!(failure, Failure::Transient { .. }), "{failure:?}");
}

#[tokio::test]
async fn a_daily_app_quota_is_permanent_and_says_when_it_resets() {
    let server = MockServer::start().await;
    answer_with(&server, api_error("LimitExceeded.AppDailyLimit", "app daily limit")).await;
    let failure = run(&connector(&server), &params(&[A]), None).await.unwrap_err();
    assert!(matches!(failure, Failure::Permanent { .. }), "{failure:?}");
    assert!(failure.reason().contains("resets at midnight China time, UTC+8"), "{}", failure.reason());
}

/// After a 5xx the numbers may have gone out: they wait for the settle time, then for their receipt.
#[tokio::test]
async fn http_500_leaves_the_numbers_unconfirmed_for_the_settle_time() {
    let server = MockServer::start().await;
    answer_with(&server, ResponseTemplate::new(500).insert_header("retry-after", "12").set_body_string("oops")).await;
    let before = chrono::Utc::now().timestamp_millis();
    let failure = run(&connector(&server), &params(&[A]), None).await.unwrap_err();
    let Failure::Transient { reason, retry_after, progress: Some(progress) } = &failure else {
        panic!("transient with progress expected: {failure:?}")
    };
    assert_eq!(
        reason,
        "1 of 1 numbers not sent yet: +8613800000001: Unconfirmed (SendSms: HTTP 500 Internal Server Error: oops)"
    );
    assert!(retry_after.is_some_and(|wait| wait > Duration::from_secs(55) && wait <= Duration::from_secs(60)));
    let status = &progress["numbers"][A];
    assert_eq!(status["code"], "Unconfirmed");
    assert_eq!(status["final"], false);
    let at = status["sent_at_ms"].as_i64().unwrap();
    assert!(at >= before && at <= chrono::Utc::now().timestamp_millis());
}

/// `InternalError.Timeout` of the whole request: the backend timed out delivering, maybe after sending.
#[tokio::test]
async fn a_whole_request_internal_error_leaves_the_numbers_unconfirmed() {
    let server = MockServer::start().await;
    answer_with(&server, api_error("InternalError.Timeout", "request timeout")).await;
    let failure = run(&connector(&server), &params(&[A, B]), None).await.unwrap_err();
    let Failure::Transient { progress: Some(progress), .. } = &failure else { panic!("{failure:?}") };
    for number in [A, B] {
        assert_eq!(progress["numbers"][number]["code"], "Unconfirmed", "{number}");
    }
}

/// A query the key may not make stops the job rather than sending blindly.
#[tokio::test]
async fn a_refused_status_query_is_permanent_and_says_what_to_do() {
    let server = MockServer::start().await;
    answer_with(&server, api_error("UnauthorizedOperation.RequestPermissionDeny", "no")).await;
    let progress = json!({"numbers": {A: {"code": "Unconfirmed", "message": "HTTP 500", "serial_no": "", "fee": 0,
                                          "final": false, "sent_at_ms": chrono::Utc::now().timestamp_millis()}}});
    let failure = run(&connector(&server), &params(&[A]), Some(&progress)).await.unwrap_err();
    let Failure::Permanent { reason, progress: Some(kept) } = &failure else { panic!("{failure:?}") };
    assert!(reason.contains("PullSmsSendStatusByPhoneNumber: UnauthorizedOperation.RequestPermissionDeny"), "{reason}");
    assert!(reason.contains("status_query = false"), "{reason}");
    assert_eq!(kept, &progress);
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].headers.get("x-tc-action").unwrap(), "PullSmsSendStatusByPhoneNumber");
}

#[test]
fn status_keys_are_checked_at_start_with_their_path() {
    for (extra, wanted) in [
        ("status_settle = \"soon\"", "connectors.tencent_sms.default.status_settle: not a duration"),
        ("status_settle = \"0s\"", "connectors.tencent_sms.default.status_settle: must be longer than 0"),
        ("status_query = \"yes\"", "connectors.tencent_sms.default: invalid type"),
    ] {
        let config = KIT.config(&config_text("http://127.0.0.1:1", extra), "default");
        let err = TencentSms::new(&config, http::client()).unwrap_err();
        assert!(err.to_string().starts_with(wanted), "{extra}: {err}");
    }
    let sms = connector_with("http://127.0.0.1:1", "status_settle = \"1m 30s\"\nstatus_query = false");
    assert_eq!((sms.settle, sms.status_query), (Duration::from_secs(90), false));
}

#[tokio::test]
async fn any_non_200_is_transient() {
    let server = MockServer::start().await;
    answer_with(&server, ResponseTemplate::new(404)).await;
    let failure = run(&connector(&server), &params(&[A]), None).await.unwrap_err();
    assert!(matches!(failure, Failure::Transient { .. }), "{failure:?}");
}

fn is_unconfirmed(failure: &Failure, number: &str) -> bool {
    matches!(failure, Failure::Transient { progress: Some(p), .. } if p["numbers"][number]["code"] == "Unconfirmed")
}

#[tokio::test]
async fn an_unreadable_200_leaves_the_numbers_unconfirmed() {
    let server = MockServer::start().await;
    answer_with(&server, ResponseTemplate::new(200).set_body_string("<html>gateway</html>")).await;
    let failure = run(&connector(&server), &params(&[A]), None).await.unwrap_err();
    assert!(is_unconfirmed(&failure, A), "{failure:?}");
}

#[tokio::test]
async fn a_number_without_status_stays_pending() {
    let server = MockServer::start().await;
    answer_with(&server, statuses(vec![status(A, "Ok", "send success", "5000:1", 1)])).await;
    let failure = run(&connector(&server), &params(&[A, B]), None).await.unwrap_err();
    let Failure::Transient { progress: Some(progress), .. } = failure else { panic!("{failure:?}") };
    assert_eq!(progress["numbers"][B]["code"], "NoStatus");
    assert_eq!(progress["numbers"][B]["final"], false);
    assert_eq!(progress["numbers"][A]["final"], true);
}

#[tokio::test]
async fn a_number_listed_twice_is_sent_once_and_reported_twice() {
    let server = MockServer::start().await;
    answer_with(&server, statuses(vec![status(A, "Ok", "send success", "5000:1", 1)])).await;
    let success = run(&connector(&server), &params(&[A, A]), None).await.unwrap();
    let requests = server.received_requests().await.unwrap();
    assert_send_sms_request(&server, &requests[0], &expected_body(&[A]));
    assert_eq!(success.result.unwrap()["numbers"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn nothing_is_sent_when_every_number_is_already_final() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(500)).expect(0).mount(&server).await;
    let done = json!({"numbers": {
        A: {"code": "Ok", "message": "send success", "serial_no": "5000:1", "fee": 1, "final": true},
        B: {"code": "FailedOperation.PhoneNumberInBlacklist", "message": "b", "serial_no": "", "fee": 0, "final": true},
    }});
    let success = run(&connector(&server), &params(&[A, B]), Some(&done)).await.unwrap();
    assert_eq!(success.result.unwrap()["numbers"][1]["code"], "FailedOperation.PhoneNumberInBlacklist");
    let all_failed = json!({"numbers": {
        A: {"code": "FailedOperation.PhoneNumberInBlacklist", "message": "a", "serial_no": "", "fee": 0, "final": true},
    }});
    let failure = run(&connector(&server), &params(&[A]), Some(&all_failed)).await.unwrap_err();
    assert!(matches!(failure, Failure::Permanent { .. }), "{failure:?}");
}

#[tokio::test]
async fn unreadable_progress_stops_rather_than_resending() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(500)).expect(0).mount(&server).await;
    let failure = run(&connector(&server), &params(&[A]), Some(&json!({"numbers": 5}))).await.unwrap_err();
    assert!(matches!(failure, Failure::Permanent { .. }), "{failure:?}");
}

#[tokio::test]
async fn without_any_sdk_app_id_the_job_is_permanent() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(500)).expect(0).mount(&server).await;
    let sms = connector_with(&server.uri(), "");
    let failure = run(&sms, &params(&[A]), None).await.unwrap_err();
    assert_eq!(failure, Failure::permanent("sdk_app_id: the SMS application id is neither in params nor config"));
}

#[tokio::test]
async fn a_refused_connection_is_unreachable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let sms = connector_with(&format!("http://127.0.0.1:{port}"), &format!("sdk_app_id = \"{APP_ID}\""));
    let failure = run(&sms, &params(&[A]), None).await.unwrap_err();
    assert!(matches!(failure, Failure::Unreachable { .. }), "{failure:?}");
}

#[tokio::test]
async fn a_timeout_after_sending_leaves_the_number_unconfirmed_or_ambiguous() {
    let server = MockServer::start().await;
    answer_with(&server, statuses(vec![]).set_delay(Duration::from_secs(10))).await;
    let client = {
        let _ = http::client(); // installs the TLS provider
        reqwest::Client::builder().timeout(Duration::from_millis(200)).build().unwrap()
    };
    for (query, ambiguous) in [("true", false), ("false", true)] {
        let extra = format!("sdk_app_id = \"{APP_ID}\"\nstatus_query = {query}");
        let config = KIT.config(&config_text(&server.uri(), &extra), "default");
        let sms = TencentSms::new(&config, client.clone()).unwrap();
        let failure = run(&sms, &params(&[A]), None).await.unwrap_err();
        // With status queries the number waits for its receipt; without, on_ambiguous decides.
        assert_eq!(matches!(failure, Failure::Ambiguous { .. }), ambiguous, "{failure:?}");
        assert_eq!(is_unconfirmed(&failure, A), !ambiguous, "{failure:?}");
    }
}

#[test]
fn an_unknown_config_field_is_named() {
    let config = KIT.config(&config_text("http://127.0.0.1:1", "secret_kye = \"x\""), "default");
    let err = TencentSms::new(&config, http::client()).unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("connectors.tencent_sms.default: "), "{text}");
    assert!(text.contains("unknown field `secret_kye`"), "{text}");
}

#[test]
fn a_bad_endpoint_is_a_config_error() {
    let config = KIT.config(&config_text("not a url", ""), "default");
    let err = TencentSms::new(&config, http::client()).unwrap_err();
    assert!(err.to_string().starts_with("connectors.tencent_sms.default.endpoint: "), "{err}");
}

#[test]
fn defaults_apply() {
    let text =
        format!("[connectors.tencent_sms.default]\nsecret_id = \"{SECRET_ID}\"\nsecret_key = \"{SECRET_KEY}\"\n");
    let config = KIT.config(&text, "default");
    let sms = TencentSms::new(&config, http::client()).unwrap();
    let api = sms.calls.api();
    assert_eq!(api.cloud.url.as_str(), "https://sms.tencentcloudapi.com/");
    assert_eq!(api.cloud.host, "sms.tencentcloudapi.com");
    assert_eq!(api.cloud.region, "ap-guangzhou");
    assert_eq!(sms.sdk_app_id, None);
    assert_eq!((sms.settle, sms.status_query), (Duration::from_secs(60), true));
}

#[test]
fn debug_shows_no_secret() {
    let sms = connector_with("http://127.0.0.1:1", "");
    let debug = format!("{sms:?}");
    assert!(!debug.contains(SECRET_KEY), "{debug}");
    let config = KIT.config(&config_text("http://127.0.0.1:1", ""), "default");
    let fields = super::config::TencentSmsConfig::from_config(&config).unwrap();
    assert!(!format!("{fields:?}").contains(SECRET_KEY));
}

//! The fake Tencent Cloud SES and Tencent Meeting over real HTTP.

mod common;

use base64::Engine as _;
use common::{Tc3, client, error_code, now, start};
use serde_json::{Value, json};
use yizhan_sandbox::{DEFAULT_MEETING_APP, DEFAULT_SES_DOMAIN, Fault, Provider, Sandbox};

fn ses(action: &str) -> Tc3 {
    Tc3 {
        service: "ses".into(),
        action: action.into(),
        version: "2020-10-02".into(),
        region: Some("ap-hongkong".into()),
        ..Tc3::default()
    }
}

#[tokio::test]
async fn identities_round_trip_create_get_update_list_delete() {
    let sandbox = start().await;
    let domain = json!({"EmailIdentity": "news.example.com"});
    let created = ses("CreateEmailIdentity").send(&sandbox, &domain).await;
    assert_eq!(error_code(&created), None, "{created}");
    assert_eq!(created["Response"]["IdentityType"], "DOMAIN");
    assert_eq!(created["Response"]["VerifiedForSendingStatus"], false);
    assert!(!created["Response"]["Attributes"].as_array().unwrap().is_empty());
    let again = ses("CreateEmailIdentity").send(&sandbox, &domain).await;
    assert_eq!(error_code(&again), Some("InvalidParameterValue.RepeatCreation"));

    let got = ses("GetEmailIdentity").send(&sandbox, &domain).await;
    assert_eq!(got["Response"]["VerifiedForSendingStatus"], false);
    let updated = ses("UpdateEmailIdentity").send(&sandbox, &domain).await;
    assert_eq!(updated["Response"]["VerifiedForSendingStatus"], true);

    let listed = ses("ListEmailIdentities").send(&sandbox, &json!({})).await;
    let names: Vec<&str> = listed["Response"]["EmailIdentities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["IdentityName"].as_str().unwrap())
        .collect();
    assert_eq!(names, [DEFAULT_SES_DOMAIN, "news.example.com"]);

    let deleted = ses("DeleteEmailIdentity").send(&sandbox, &domain).await;
    assert_eq!(error_code(&deleted), None, "{deleted}");
    let gone = ses("GetEmailIdentity").send(&sandbox, &domain).await;
    assert_eq!(error_code(&gone), Some("InvalidParameterValue.NotExistDomain"));
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn mail() -> Value {
    json!({"FromEmailAddress": format!("Yizhan <noreply@{DEFAULT_SES_DOMAIN}>"), "Destination": ["a@example.com"],
           "Subject": "Hi", "Simple": {"Html": b64("<b>hi</b>"), "Text": b64("hi")},
           "Attachments": [{"FileName": "a.txt", "Content": base64::engine::general_purpose::STANDARD.encode("hello")}]})
}

#[tokio::test]
async fn send_email_is_checked_and_recorded() {
    let sandbox = start().await;
    let answer = ses("SendEmail").send(&sandbox, &mail()).await;
    assert_eq!(error_code(&answer), None, "{answer}");
    assert!(answer["Response"]["MessageId"].as_str().is_some());
    let sent = sandbox.state().sent_emails();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].destination, ["a@example.com"]);
    assert_eq!(sent[0].attachments, [("a.txt".to_string(), 5)]);
    assert_eq!(sent[0].region, "ap-hongkong");
    // docs/providers/tencent-cloud.md#sendemail: sent base64, recorded as the sender wrote them.
    assert_eq!((sent[0].html.as_deref(), sent[0].text.as_deref()), (Some("<b>hi</b>"), Some("hi")));

    let cases: Vec<(Value, &str)> = vec![
        (json!({"Destination": ["a@example.com"], "Subject": "s", "Simple": {"Text": "t"}}), "MissingParameter"),
        (
            {
                let mut m = mail();
                m["FromEmailAddress"] = json!("noreply@unverified.example.com");
                m
            },
            "FailedOperation.NotAuthenticatedSender",
        ),
        (
            {
                let mut m = mail();
                m["Destination"] = json!(vec!["a@example.com"; 51]);
                m
            },
            "FailedOperation.TooManyRecipients",
        ),
        (
            {
                let mut m = mail();
                m["Destination"] = json!(["not-an-address"]);
                m
            },
            "FailedOperation.IncorrectEmail",
        ),
        (
            {
                let mut m = mail();
                m.as_object_mut().unwrap().remove("Simple");
                m
            },
            "FailedOperation.MissingEmailContent",
        ),
        (
            {
                let mut m = mail();
                m["Template"] = json!({"TemplateID": 1, "TemplateData": "{}"});
                m
            },
            "InvalidParameter",
        ),
        (
            {
                let mut m = mail();
                m["Bogus"] = json!(1);
                m
            },
            "UnknownParameter",
        ),
        // Raw HTML or text, as a client forgetting the base64 would send them.
        (
            {
                let mut m = mail();
                m["Simple"] = json!({"Html": "<b>hi</b>"});
                m
            },
            "InvalidParameterValue.EmailContentIsWrong",
        ),
        (
            {
                let mut m = mail();
                m["Simple"] = json!({"Text": "plain words"});
                m
            },
            "InvalidParameterValue.EmailContentIsWrong",
        ),
        (
            {
                let mut m = mail();
                m["Attachments"] = json!([{"FileName": "a.txt", "Content": "not base64!"}]);
                m
            },
            "InvalidParameterValue.AttachContentIsWrong",
        ),
        (
            {
                let mut m = mail();
                m["Cc"] = json!(vec!["c@example.com"; 21]);
                m
            },
            "FailedOperation.TooManyRecipients",
        ),
    ];
    for (body, code) in cases {
        let answer = ses("SendEmail").send(&sandbox, &body).await;
        assert_eq!(error_code(&answer), Some(code), "{body}: {answer}");
    }
    let template = json!({"FromEmailAddress": format!("noreply@{DEFAULT_SES_DOMAIN}"), "Destination": ["a@example.com"],
                          "Subject": "Code", "Template": {"TemplateID": 7, "TemplateData": "{\"code\":\"1\"}"}});
    assert_eq!(error_code(&ses("SendEmail").send(&sandbox, &template).await), None);
    assert_eq!(sandbox.state().sent_emails().len(), 2);
}

#[tokio::test]
async fn ses_signature_scope_and_faults() {
    let sandbox = start().await;
    let wrong_scope = Tc3 { service: "sms".into(), ..ses("SendEmail") };
    assert_eq!(error_code(&wrong_scope.send(&sandbox, &mail()).await), Some("AuthFailure.InvalidAuthorization"));
    let wrong_version = Tc3 { version: "2021-01-11".into(), ..ses("SendEmail") };
    assert_eq!(error_code(&wrong_version.send(&sandbox, &mail()).await), Some("NoSuchVersion"));
    sandbox.state().push_fault(Fault::tencent_error("FailedOperation.FrequencyLimit").for_action("SendEmail")).unwrap();
    assert_eq!(error_code(&ses("SendEmail").send(&sandbox, &mail()).await), Some("FailedOperation.FrequencyLimit"));
    assert!(sandbox.state().sent_emails().is_empty());
}

/// A signed Tencent Meeting request; `nonce` and `timestamp` may be forced.
async fn meeting(
    sandbox: &Sandbox,
    method: &str,
    uri: &str,
    body: Option<&Value>,
    nonce: &str,
    timestamp: i64,
) -> (u16, Value) {
    let (app_id, sdk_id, secret_id, secret_key) = DEFAULT_MEETING_APP;
    let body = body.map(Value::to_string).unwrap_or_default();
    let signature = yizhan_sandbox::tencent_meeting::expected_signature(
        secret_key,
        method,
        secret_id,
        nonce,
        &timestamp.to_string(),
        uri,
        body.as_bytes(),
    );
    let response = client()
        .request(method.parse().unwrap(), format!("{}{uri}", sandbox.url()))
        .header("Content-Type", "application/json")
        .header("X-TC-Key", secret_id)
        .header("X-TC-Timestamp", timestamp.to_string())
        .header("X-TC-Nonce", nonce)
        .header("X-TC-Signature", signature)
        .header("AppId", app_id)
        .header("SdkId", sdk_id.unwrap())
        .header("X-TC-Registered", "1")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn error(answer: &Value) -> i64 {
    answer["error_info"]["error_code"].as_i64().unwrap_or(0)
}

#[tokio::test]
async fn meetings_are_created_read_and_cancelled() {
    let sandbox = start().await;
    let create = json!({"userid": "tester1", "instanceid": 1, "subject": "Weekly", "type": 0,
                        "start_time": "1900000000", "end_time": "1900003600"});
    let (status, created) = meeting(&sandbox, "POST", "/v1/meetings", Some(&create), "1", now()).await;
    assert_eq!(status, 200, "{created}");
    let info = &created["meeting_info_list"][0];
    let id = info["meeting_id"].as_str().unwrap().to_string();
    let code = info["meeting_code"].as_str().unwrap().to_string();
    assert_eq!(code.len(), 9);

    let (status, got) =
        meeting(&sandbox, "GET", &format!("/v1/meetings/{id}?instanceid=1&userid=tester1"), None, "2", now()).await;
    assert_eq!((status, got["meeting_info_list"][0]["subject"].as_str()), (200, Some("Weekly")));
    let (status, by_code) = meeting(
        &sandbox,
        "GET",
        &format!("/v1/meetings?instanceid=1&meeting_code={code}&userid=tester1"),
        None,
        "3",
        now(),
    )
    .await;
    assert_eq!((status, by_code["meeting_info_list"][0]["meeting_id"].as_str()), (200, Some(id.as_str())));

    let cancel = json!({"userid": "tester1", "instanceid": 1, "reason_code": 1});
    let (status, _) = meeting(&sandbox, "POST", &format!("/v1/meetings/{id}/cancel"), Some(&cancel), "4", now()).await;
    assert_eq!(status, 200);
    assert_eq!(sandbox.state().meetings()[0]["status"], "MEETING_STATE_CANCELLED");
    let (status, again) =
        meeting(&sandbox, "POST", &format!("/v1/meetings/{id}/cancel"), Some(&cancel), "5", now()).await;
    // docs/providers/tencent-meeting.md#errors: the documents' example answers 9003 with HTTP 500.
    assert_eq!((status, error(&again)), (500, 9003));
    let (status, missing) = meeting(&sandbox, "POST", "/v1/meetings", Some(&json!({"userid": "x"})), "6", now()).await;
    assert_eq!((status, error(&missing)), (400, 190004));
}

#[tokio::test]
async fn meeting_signatures_timestamps_nonces_and_faults_are_enforced() {
    let sandbox = start().await;
    let uri = "/v1/meetings?instanceid=1&userid=tester1";
    let (status, _) = meeting(&sandbox, "GET", uri, None, "77", now()).await;
    assert_eq!(status, 200);
    let (status, replay) = meeting(&sandbox, "GET", uri, None, "77", now()).await;
    assert_eq!((status, error(&replay)), (400, 190301));
    let (status, stale) = meeting(&sandbox, "GET", uri, None, "78", now() - 400).await;
    assert_eq!((status, error(&stale)), (400, 190300));

    // Signed for another URI: the signature does not match.
    let response = client()
        .get(format!("{}{uri}", sandbox.url()))
        .header("X-TC-Key", DEFAULT_MEETING_APP.2)
        .header("X-TC-Timestamp", now().to_string())
        .header("X-TC-Nonce", "79")
        .header("X-TC-Signature", "bm90IGEgc2lnbmF0dXJl")
        .header("AppId", DEFAULT_MEETING_APP.0)
        .header("SdkId", DEFAULT_MEETING_APP.1.unwrap())
        .header("X-TC-Registered", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(error(&response.json().await.unwrap()), 200003);

    // docs/providers/tencent-meeting.md#requests: X-TC-Registered is required.
    let (app_id, sdk_id, secret_id, secret_key) = DEFAULT_MEETING_APP;
    let timestamp = now().to_string();
    let signature =
        yizhan_sandbox::tencent_meeting::expected_signature(secret_key, "GET", secret_id, "81", &timestamp, uri, b"");
    let response = client()
        .get(format!("{}{uri}", sandbox.url()))
        .header("X-TC-Key", secret_id)
        .header("X-TC-Timestamp", &timestamp)
        .header("X-TC-Nonce", "81")
        .header("X-TC-Signature", signature)
        .header("AppId", app_id)
        .header("SdkId", sdk_id.unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(error(&response.json().await.unwrap()), 190004);

    sandbox.state().push_fault(Fault::error_code(Provider::TencentMeeting, 5108)).unwrap();
    let (status, fault) = meeting(&sandbox, "GET", uri, None, "80", now()).await;
    assert_eq!((status, error(&fault)), (500, 5108));
}

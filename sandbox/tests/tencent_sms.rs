//! The fake Tencent Cloud SMS over real HTTP.

mod common;

use std::time::{Duration, Instant};

use common::{Tc3, WAIT, error_code, now, sms_body, start, start_with, status_codes};
use serde_json::{Value, json};
use yizhan_sandbox::{DEFAULT_SECRET_ID, Fault, Provider, SandboxConfig};

#[tokio::test]
async fn signed_send_sms_succeeds_and_is_recorded() {
    let sandbox = start().await;
    let mut body = sms_body(&["+8613800000001", "13800000002"]);
    body["SessionContext"] = json!("job-42");
    let answer = Tc3::default().send(&sandbox, &body).await;

    let response = &answer["Response"];
    assert_eq!(error_code(&answer), None, "{answer}");
    let request_id = response["RequestId"].as_str().unwrap();
    assert_eq!(request_id.len(), 36, "RequestId is a UUID");
    let set = response["SendStatusSet"].as_array().unwrap();
    assert_eq!(set.len(), 2);
    for (status, phone) in set.iter().zip(["+8613800000001", "+8613800000002"]) {
        assert_eq!(status["PhoneNumber"], phone);
        assert_eq!(status["Code"], "Ok");
        assert_eq!(status["Message"], "send success");
        assert_eq!(status["Fee"], 1);
        assert_eq!(status["IsoCode"], "CN");
        assert_eq!(status["SessionContext"], "job-42");
        assert!(status["SerialNo"].as_str().unwrap().contains(':'));
    }

    let state = sandbox.state();
    let sent = state.sent_sms();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].phone, "+8613800000001");
    assert_eq!(sent[0].sdk_app_id, "1400000000");
    assert_eq!(sent[0].sign_name.as_deref(), Some("Yizhan"));
    assert_eq!(sent[0].template_id, "1001");
    assert_eq!(sent[0].template_params, ["123456"]);
    assert_eq!(sent[0].content, "【Yizhan】Your verification code is 123456. It expires in 5 minutes.");
    assert_eq!(sent[0].session_context, "job-42");
    assert_eq!(sent[0].request_id, request_id);
    assert_eq!(sent[0].serial_no, set[0]["SerialNo"].as_str().unwrap());
    assert_eq!(sent[0].region, "ap-guangzhou");
    assert_eq!(state.sms_count_for("+8613800000002"), 1);
    assert_eq!(state.sms_count_for("13800000002"), 1);

    let requests = state.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].provider, Provider::Tencent);
    assert_eq!((requests[0].method.as_str(), requests[0].path.as_str()), ("POST", "/"));
    assert_eq!(requests[0].header("x-tc-action"), Some("SendSms"));
    assert_eq!(requests[0].body_json(), Some(body));
    assert!(state.rejected().is_empty());
    sandbox.shutdown().await;
}

#[tokio::test]
async fn signature_variants_the_sdks_use_are_accepted() {
    let sandbox = start().await;
    let variants = [
        Tc3 { sign_action: true, ..Tc3::default() },
        Tc3 { content_type: "application/json; charset=utf-8".into(), ..Tc3::default() },
        Tc3 { unsigned_payload: true, ..Tc3::default() },
        Tc3 { timestamp: now() - 200, ..Tc3::default() },
    ];
    for (i, tc3) in variants.iter().enumerate() {
        let answer = tc3.send(&sandbox, &sms_body(&["+8613800000001"])).await;
        assert_eq!(status_codes(&answer), ["Ok"], "variant {i}: {answer}");
    }
    assert_eq!(sandbox.state().sent_sms().len(), variants.len());
}

#[tokio::test]
async fn authentication_failures_are_refused_and_nothing_is_sent() {
    let sandbox = start().await;
    let body = sms_body(&["+8613800000001"]);
    let cases = [
        (Tc3 { secret_key: "not-the-key".into(), ..Tc3::default() }, "AuthFailure.SignatureFailure"),
        (Tc3 { secret_id: "AKIDunknown".into(), ..Tc3::default() }, "AuthFailure.SecretIdNotFound"),
        (Tc3 { timestamp: now() - 600, ..Tc3::default() }, "AuthFailure.SignatureExpire"),
        (Tc3 { timestamp: now() + 600, ..Tc3::default() }, "AuthFailure.SignatureExpire"),
        (Tc3 { version: "2019-07-11".into(), ..Tc3::default() }, "NoSuchVersion"),
        (Tc3 { service: "cvm".into(), ..Tc3::default() }, "AuthFailure.InvalidAuthorization"),
        (Tc3 { scope_date: Some("2019-02-25".into()), ..Tc3::default() }, "AuthFailure.SignatureFailure"),
        (Tc3 { action: "DescribeInstances".into(), ..Tc3::default() }, "InvalidAction"),
        (Tc3 { region: None, ..Tc3::default() }, "MissingParameter"),
        (Tc3 { region: Some("mars-north-1".into()), ..Tc3::default() }, "UnsupportedRegion"),
        (Tc3 { content_type: "text/plain".into(), ..Tc3::default() }, "InvalidParameter"),
    ];
    for (tc3, code) in &cases {
        let answer = tc3.send(&sandbox, &body).await;
        assert_eq!(error_code(&answer), Some(*code), "{tc3:?}: {answer}");
        assert!(answer["Response"]["Error"]["Message"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(answer["Response"]["RequestId"].is_string());
    }

    // A body changed after signing.
    let signed = body.to_string();
    let tampered = sms_body(&["+8613800000009"]).to_string();
    let answer: Value = Tc3::default().send_raw(&sandbox, &signed, &tampered).await.json().await.unwrap();
    assert_eq!(error_code(&answer), Some("AuthFailure.SignatureFailure"));

    // No Authorization header at all.
    let answer: Value = common::client()
        .post(format!("{}/", sandbox.url()))
        .header("Content-Type", "application/json")
        .header("X-TC-Action", "SendSms")
        .header("X-TC-Version", "2021-01-11")
        .body(signed)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(error_code(&answer), Some("AuthFailure.InvalidAuthorization"));

    let state = sandbox.state();
    assert!(state.sent_sms().is_empty());
    assert_eq!(state.stats().sms_sent, 0);
    assert_eq!(state.requests().len(), cases.len() + 2, "every request is recorded");
    let rejected = state.rejected();
    assert_eq!(rejected.len(), cases.len() + 2);
    assert!(rejected.iter().all(|(provider, _)| provider == "tencent"));
    assert_eq!(rejected[0].1, "AuthFailure.SignatureFailure");
}

#[tokio::test]
async fn body_validation_uses_the_sms_error_codes() {
    let sandbox =
        start_with(SandboxConfig::default_accounts().tencent_account("AKIDother", "other-key", &["1400000099"])).await;
    let with = |field: &str, value: Value| {
        let mut body = sms_body(&["+8613800000001"]);
        body[field] = value;
        body
    };
    let without = |field: &str| {
        let mut body = sms_body(&["+8613800000001"]);
        body.as_object_mut().unwrap().remove(field);
        body
    };
    let many: Vec<String> = (0..201).map(|i| format!("+86138{i:08}")).collect();
    let cases = [
        (with("SmsSdkAppId", json!("1400123456")), "InvalidParameterValue.SdkAppIdNotExist"),
        (with("SmsSdkAppId", json!("1400000099")), "UnauthorizedOperation.SmsSdkAppIdVerifyFail"),
        (with("TemplateId", json!("9999")), "FailedOperation.TemplateIncorrectOrUnapproved"),
        (with("SignName", json!("Other")), "FailedOperation.SignatureIncorrectOrUnapproved"),
        (with("PhoneNumberSet", json!([])), "MissingParameter.EmptyPhoneNumberSet"),
        (with("PhoneNumberSet", json!(many)), "LimitExceeded.PhoneNumberCountLimit"),
        (with("PhoneNumberSet", json!("+8613800000001")), "InvalidParameter"),
        (
            with("PhoneNumberSet", json!(["+8613800000001", "+14155550100"])),
            "UnsupportedOperation.ContainDomesticAndInternationalPhoneNumber",
        ),
        (with("TemplateParamSet", json!([])), "FailedOperation.TemplateParamSetNotMatchApprovedTemplate"),
        (with("Unexpected", json!(1)), "UnknownParameter"),
        (with("SessionContext", json!("x".repeat(512))), "InvalidParameterValue"),
        (without("TemplateId"), "MissingParameter"),
        (without("SmsSdkAppId"), "MissingParameter"),
        (without("PhoneNumberSet"), "MissingParameter"),
        (without("SignName"), "MissingParameter"),
    ];
    for (body, code) in &cases {
        let answer = Tc3::default().send(&sandbox, body).await;
        assert_eq!(error_code(&answer), Some(*code), "{body}: {answer}");
    }
    let answer: Value = Tc3::default().send_raw(&sandbox, "{not json", "{not json").await.json().await.unwrap();
    assert_eq!(error_code(&answer), Some("FailedOperation.JsonParseFail"));

    // International numbers need no signature; template 1002 takes two parameters.
    let mut international = sms_body(&["+14155550100"]);
    international.as_object_mut().unwrap().remove("SignName");
    international["TemplateId"] = json!("1002");
    international["TemplateParamSet"] = json!(["Li", "A-7"]);
    let answer = Tc3::default().send(&sandbox, &international).await;
    assert_eq!(status_codes(&answer), ["Ok"], "{answer}");
    assert_eq!(answer["Response"]["SendStatusSet"][0]["IsoCode"], "US");
    assert_eq!(sandbox.state().sent_sms().len(), 1);
}

#[tokio::test]
async fn a_bad_number_fails_alone() {
    let sandbox = start().await;
    let answer = Tc3::default().send(&sandbox, &sms_body(&["+8613800000001", "+86123", "+8613800000002"])).await;
    assert_eq!(status_codes(&answer), ["Ok", "InvalidParameterValue.IncorrectPhoneNumber", "Ok"]);
    let bad = &answer["Response"]["SendStatusSet"][1];
    assert_eq!(
        (bad["PhoneNumber"].as_str(), bad["Fee"].as_u64(), bad["SerialNo"].as_str()),
        (Some("+86123"), Some(0), Some(""))
    );
    let state = sandbox.state();
    assert_eq!(state.sent_sms().len(), 2);
    assert_eq!(state.rejected(), [("tencent".to_string(), "InvalidParameterValue.IncorrectPhoneNumber".to_string())]);
}

#[tokio::test]
async fn per_number_fault_fails_that_number_once() {
    let sandbox = start().await;
    let state = sandbox.state();
    state.push_fault(Fault::tencent_number_status("+8613800000002", "LimitExceeded.PhoneNumberDailyLimit")).unwrap();
    let body = sms_body(&["+8613800000001", "+8613800000002"]);

    let answer = Tc3::default().send(&sandbox, &body).await;
    assert_eq!(status_codes(&answer), ["Ok", "LimitExceeded.PhoneNumberDailyLimit"]);
    assert_eq!(answer["Response"]["SendStatusSet"][1]["Fee"], 0);
    assert_eq!(state.sms_count_for("+8613800000001"), 1);
    assert_eq!(state.sms_count_for("+8613800000002"), 0);
    assert!(state.pending_faults().is_empty(), "the fault is consumed");
    assert!(state.rejected().is_empty(), "injected faults are not refusals");

    let answer = Tc3::default().send(&sandbox, &body).await;
    assert_eq!(status_codes(&answer), ["Ok", "Ok"]);
    assert_eq!(state.sms_count_for("+8613800000002"), 1);
    assert_eq!(state.stats().faults_applied, 1);
}

#[tokio::test]
async fn whole_request_fault_only_hits_requests_with_its_number() {
    let sandbox = start().await;
    let state = sandbox.state();
    state.push_fault(Fault::tencent_error("InternalError.Timeout").for_phone("+8613800000003").times(2)).unwrap();

    let other = Tc3::default().send(&sandbox, &sms_body(&["+8613800000001"])).await;
    assert_eq!(status_codes(&other), ["Ok"]);
    assert_eq!(state.pending_faults().len(), 1);

    for _ in 0..2 {
        let answer = Tc3::default().send(&sandbox, &sms_body(&["+8613800000001", "+8613800000003"])).await;
        assert_eq!(error_code(&answer), Some("InternalError.Timeout"), "{answer}");
    }
    assert_eq!(state.sms_count_for("+8613800000003"), 0);
    assert!(state.pending_faults().is_empty());

    let answer = Tc3::default().send(&sandbox, &sms_body(&["+8613800000003"])).await;
    assert_eq!(status_codes(&answer), ["Ok"]);

    // A fault for an invalid request does not fire: checks come first.
    state.push_fault(Fault::tencent_error("RequestLimitExceeded")).unwrap();
    let bad = Tc3 { secret_key: "wrong".into(), ..Tc3::default() };
    let answer = bad.send(&sandbox, &sms_body(&["+8613800000001"])).await;
    assert_eq!(error_code(&answer), Some("AuthFailure.SignatureFailure"));
    let answer = Tc3::default().send(&sandbox, &sms_body(&["+8613800000001"])).await;
    assert_eq!(error_code(&answer), Some("RequestLimitExceeded"));
}

#[tokio::test]
async fn http_status_faults_before_and_after_processing() {
    let sandbox = start().await;
    let state = sandbox.state();
    let body = sms_body(&["+8613800000001"]).to_string();

    state.push_fault(Fault::http_status(Provider::Tencent, 502).for_phone("+8613800000001")).unwrap();
    let response = Tc3::default().send_raw(&sandbox, &body, &body).await;
    assert_eq!(response.status(), 502);
    assert_eq!(response.text().await.unwrap(), "502 Bad Gateway");
    assert!(state.sent_sms().is_empty(), "the request never reached the provider");

    state
        .push_fault(Fault::http_status(Provider::Tencent, 500).with_message("upstream exploded").after_processing())
        .unwrap();
    let response = Tc3::default().send_raw(&sandbox, &body, &body).await;
    assert_eq!(response.status(), 500);
    assert_eq!(response.text().await.unwrap(), "upstream exploded");
    assert_eq!(state.sent_sms().len(), 1, "the SMS went out although the client saw a 500");

    let response = Tc3::default().send_raw(&sandbox, &body, &body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(state.sent_sms().len(), 2);
    assert_eq!(state.requests().len(), 3);
}

#[tokio::test]
async fn delay_fault_and_fixed_delay_slow_the_answer() {
    let sandbox = start().await;
    let state = sandbox.state();
    state.push_fault(Fault::delay(Provider::Tencent, Duration::from_millis(300))).unwrap();
    let started = Instant::now();
    let answer = Tc3::default().send(&sandbox, &sms_body(&["+8613800000001"])).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(status_codes(&answer), ["Ok"]);

    state.set_delay(Provider::Tencent, Duration::from_millis(200));
    let started = Instant::now();
    Tc3::default().send(&sandbox, &sms_body(&["+8613800000001"])).await;
    assert!(started.elapsed() >= Duration::from_millis(200));
    state.set_delay(Provider::Tencent, Duration::ZERO);
}

#[tokio::test]
async fn account_throttle_answers_request_limit_exceeded() {
    let sandbox = start_with(SandboxConfig::default_accounts().tencent_rate_limit(DEFAULT_SECRET_ID, 2)).await;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let tc3 = Tc3::default();
        let url = sandbox.url();
        let host = sandbox.addr().to_string();
        tasks.push(tokio::spawn(async move {
            let body = sms_body(&["+8613800000001"]).to_string();
            let answer: Value = tc3.send_to(&url, &host, &body, &body).await.json().await.unwrap();
            error_code(&answer).map(str::to_string)
        }));
    }
    let mut codes = Vec::new();
    for task in tasks {
        codes.push(task.await.unwrap());
    }
    let ok = codes.iter().filter(|c| c.is_none()).count();
    let limited = codes.iter().filter(|c| c.as_deref() == Some("RequestLimitExceeded")).count();
    assert_eq!(ok + limited, 6, "{codes:?}");
    assert!(ok >= 2 && limited >= 1, "{codes:?}");
    if started.elapsed() < Duration::from_millis(900) {
        assert_eq!(ok, 2, "{codes:?}");
    }
    assert_eq!(sandbox.state().sent_sms().len(), ok);
}

#[tokio::test]
async fn tests_can_await_sms_instead_of_sleeping() {
    let sandbox = start().await;
    let state = sandbox.state();
    let err = state.wait_for_sms(1, Duration::from_millis(50)).await.unwrap_err();
    assert!(err.to_string().contains("1 SMS"), "{err}");

    let (url, host) = (sandbox.url(), sandbox.addr().to_string());
    let sender = tokio::spawn(async move {
        let body = sms_body(&["+8613800000001", "+8613800000002", "+8613800000003"]).to_string();
        Tc3::default().send_to(&url, &host, &body, &body).await
    });
    state.wait_for_sms(3, WAIT).await.unwrap();
    assert_eq!(state.sent_sms().len(), 3);
    assert_eq!(sender.await.unwrap().status(), 200);
    state.wait_until("the request record", WAIT, |s| s.requests().len() == 1).await.unwrap();
}

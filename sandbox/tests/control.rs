//! The `/_sandbox/*` control API, as scripts and other processes use it.

mod common;

use common::{Tc3, client, error_code, robot_post, sms_body, start, status_codes};
use serde_json::{Value, json};

async fn get(url: String) -> Value {
    let response = client().get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn post(url: String, body: &Value) -> reqwest::Response {
    client().post(url).json(body).send().await.unwrap()
}

#[tokio::test]
async fn faults_records_stats_and_reset_over_http() {
    let sandbox = start().await;
    let base = format!("{}/_sandbox", sandbox.url());
    assert_eq!(client().get(format!("{base}/healthz")).send().await.unwrap().text().await.unwrap(), "ok");

    let faults = json!([
        { "effect": { "type": "tencent_number_status", "code": "LimitExceeded.PhoneNumberDailyLimit" },
          "phone": "+8613800000002" },
        { "effect": { "type": "wecom_errcode", "errcode": 45009 }, "key": "sandbox-robot-key", "times": 2 },
    ]);
    let response = post(format!("{base}/faults"), &faults).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap(), json!({ "added": 2, "pending": 2 }));
    assert_eq!(get(format!("{base}/faults")).await.as_array().unwrap().len(), 2);

    let answer = Tc3::default().send(&sandbox, &sms_body(&["+8613800000001", "+8613800000002"])).await;
    assert_eq!(status_codes(&answer), ["Ok", "LimitExceeded.PhoneNumberDailyLimit"]);
    let text = json!({ "msgtype": "text", "text": { "content": "hi" } });
    assert_eq!(robot_post(&sandbox, "sandbox-robot-key", &text).await["errcode"], 45009);
    assert_eq!(robot_post(&sandbox, "sandbox-robot-key-2", &text).await["errcode"], 0);

    let sms = get(format!("{base}/sms")).await;
    assert_eq!(sms.as_array().unwrap().len(), 1);
    assert_eq!(sms[0]["phone"], "+8613800000001");
    assert_eq!(sms[0]["template_params"], json!(["123456"]));
    assert_eq!(get(format!("{base}/sms?phone=%2B8613800000002")).await, json!([]));
    let robot = get(format!("{base}/robot?key=sandbox-robot-key-2")).await;
    assert_eq!(robot[0]["body"], text);
    let requests = get(format!("{base}/requests?provider=tencent")).await;
    assert_eq!(requests.as_array().unwrap().len(), 1);
    assert_eq!(requests[0]["path"], "/");

    let stats = get(format!("{base}/stats")).await;
    assert_eq!(stats["requests"], 3);
    assert_eq!(stats["tencent_requests"], 1);
    assert_eq!(stats["wecom_robot_requests"], 2);
    assert_eq!(stats["sms_sent"], 1);
    assert_eq!(stats["robot_messages"], 1);
    assert_eq!(stats["faults_applied"], 2);
    assert_eq!(stats["pending_faults"], 1);

    let cleared: Value = client().delete(format!("{base}/faults")).send().await.unwrap().json().await.unwrap();
    assert_eq!(cleared, json!({ "cleared": 1 }));
    assert_eq!(robot_post(&sandbox, "sandbox-robot-key", &text).await["errcode"], 0);

    assert_eq!(post(format!("{base}/reset"), &json!({})).await.status(), 200);
    let stats = get(format!("{base}/stats")).await;
    assert_eq!((stats["requests"].as_u64(), stats["sms_sent"].as_u64()), (Some(0), Some(0)));
    assert!(sandbox.state().sent_sms().is_empty());
}

#[tokio::test]
async fn invalid_faults_are_refused_whole() {
    let sandbox = start().await;
    let url = format!("{}/_sandbox/faults", sandbox.url());
    let invalid = [
        json!({ "effect": { "type": "http_status", "status": 500 } }),
        json!({ "effect": { "type": "tencent_number_status", "code": "X" } }),
        json!({ "effect": { "type": "tencent_error", "code": "X" }, "phone_number": "+86" }),
        json!({ "effect": { "type": "explode" } }),
        json!([{ "effect": { "type": "tencent_error", "code": "X" } }, { "effect": { "type": "wecom_errcode", "errcode": 0 } }]),
    ];
    for fault in &invalid {
        let response = post(url.clone(), fault).await;
        assert_eq!(response.status(), 400, "{fault}");
        assert!(response.json::<Value>().await.unwrap()["error"].is_string());
    }
    assert!(sandbox.state().pending_faults().is_empty());
}

#[tokio::test]
async fn delay_endpoint_and_unknown_paths() {
    let sandbox = start().await;
    let url = format!("{}/_sandbox/delay", sandbox.url());
    assert_eq!(post(url.clone(), &json!({ "provider": "tencent", "ms": 250 })).await.status(), 200);
    assert_eq!(post(url.clone(), &json!({ "provider": "nobody", "ms": 1 })).await.status(), 400);

    let started = std::time::Instant::now();
    let answer = Tc3::default().send(&sandbox, &sms_body(&["+8613800000001"])).await;
    assert!(started.elapsed() >= std::time::Duration::from_millis(250));
    assert_eq!(error_code(&answer), None);
    assert_eq!(post(url, &json!({ "provider": "tencent", "ms": 0 })).await.status(), 200);

    let response = client().get(format!("{}/v2/unknown", sandbox.url())).send().await.unwrap();
    assert_eq!(response.status(), 404);
    let state = sandbox.state();
    assert_eq!(state.requests_for(yizhan_sandbox::Provider::Unknown).len(), 1);
    assert_eq!(state.stats().unknown_requests, 1);
}

#[tokio::test]
async fn a_record_limit_of_zero_keeps_the_counters_and_no_records() {
    let sandbox = common::start_with(yizhan_sandbox::SandboxConfig::default_accounts().record_limit(0)).await;
    let answer = Tc3::default().send(&sandbox, &sms_body(&["+8613800000001", "+8613800000002"])).await;
    assert_eq!(status_codes(&answer), ["Ok", "Ok"]);
    let state = sandbox.state();
    assert_eq!(state.stats().tencent_requests, 1);
    assert_eq!(state.stats().sms_sent, 2);
    assert!(state.requests_for(yizhan_sandbox::Provider::Tencent).is_empty());
}

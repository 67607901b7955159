//! Delivery receipts of the fake Tencent Cloud: SMS status reports pushed to a status callback
//! (delayed, duplicated, reordered, `FAIL` for programmed numbers, retried until the receiver
//! takes them), handed out once by `PullSmsSendStatus`, and SES statuses by `GetSendEmailStatus`
//! (docs/providers/tencent-cloud.md#sms-status-callback, #pullsmssendstatus, #getsendemailstatus).

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use common::{Tc3, WAIT, error_code, sms_body, start};
use serde_json::{Value, json};
use yizhan_sandbox::{DEFAULT_SES_DOMAIN, ReceiptPlan};

/// A status-callback receiver: refuses its first request (HTTP 500), then takes every report.
#[derive(Clone, Default)]
struct Receiver {
    requests: Arc<Mutex<u32>>,
    taken: Arc<Mutex<Vec<Value>>>,
}

async fn receive(State(receiver): State<Receiver>, Json(body): Json<Value>) -> Response {
    let first = {
        let mut requests = receiver.requests.lock().unwrap();
        *requests += 1;
        *requests == 1
    };
    if first {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    receiver.taken.lock().unwrap().extend(body.as_array().cloned().unwrap_or_default());
    Json(json!({"result": 0, "errmsg": "OK"})).into_response()
}

async fn start_receiver(receiver: Receiver) -> String {
    let app = axum::Router::new().route("/sms/callback", axum::routing::post(receive)).with_state(receiver);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/sms/callback", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn numbers(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("+86138000000{i:02}")).collect()
}

#[tokio::test]
async fn status_reports_are_pushed_delayed_duplicated_reordered_and_retried() {
    let sandbox = start().await;
    let receiver = Receiver::default();
    let url = start_receiver(receiver.clone()).await;
    let phones = numbers(12);
    sandbox.state().set_receipt_plan(ReceiptPlan {
        callback_url: Some(url),
        delay_ms: 50,
        jitter_ms: 400,
        duplicate_every: 4,
        batch: 5,
        fail: vec!["13800000002".into()],
    });
    let phone_refs: Vec<&str> = phones.iter().map(String::as_str).collect();
    let answer = Tc3::default().send(&sandbox, &sms_body(&phone_refs)).await;
    assert_eq!(error_code(&answer), None, "{answer}");
    let serials: Vec<String> = answer["Response"]["SendStatusSet"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["SerialNo"].as_str().unwrap().to_string())
        .collect();

    // 12 reports, every 4th twice: 15 taken once the refused first request came again.
    let state = sandbox.state();
    state.wait_until("15 reports pushed", WAIT, |s| s.stats().receipts_pushed >= 15).await.unwrap();
    let taken = receiver.taken.lock().unwrap().clone();
    assert_eq!(taken.len(), 15, "{taken:?}");
    assert!(*receiver.requests.lock().unwrap() >= 4, "at most 5 per request, and the refused one again");
    let mut per_sid: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for report in &taken {
        per_sid.entry(report["sid"].as_str().unwrap()).or_default().push(report);
    }
    assert_eq!(per_sid.keys().copied().collect::<Vec<_>>(), {
        let mut sorted: Vec<&str> = serials.iter().map(String::as_str).collect();
        sorted.sort_unstable();
        sorted
    });
    assert_eq!(per_sid.values().filter(|copies| copies.len() == 2).count(), 3, "every 4th report twice");
    let order: Vec<&str> = taken.iter().map(|r| r["sid"].as_str().unwrap()).collect();
    assert_ne!(&order[..12], serials.iter().map(String::as_str).collect::<Vec<_>>(), "jitter reorders them");

    for report in &taken {
        let mobile = report["mobile"].as_str().unwrap();
        assert_eq!(report["nationcode"], "86");
        assert_eq!(mobile.len(), 11, "{report}");
        let time = report["user_receive_time"].as_str().unwrap();
        assert!(chrono::NaiveDateTime::parse_from_str(time, "%Y-%m-%d %H:%M:%S").is_ok(), "{report}");
        let (status, errmsg) = if mobile == "13800000002" { ("FAIL", "UNDELIV") } else { ("SUCCESS", "DELIVRD") };
        assert_eq!((report["report_status"].as_str(), report["errmsg"].as_str()), (Some(status), Some(errmsg)));
        assert!(report["description"].as_str().is_some_and(|d| !d.is_empty()));
        let index = serials.iter().position(|s| s == report["sid"].as_str().unwrap()).unwrap();
        assert_eq!(format!("+86{mobile}"), phones[index], "a report names its SMS's number");
    }
    assert_eq!(state.receipts_pending(), 0);
    sandbox.shutdown().await;
}

fn pull(limit: Value) -> Value {
    json!({"Limit": limit, "SmsSdkAppId": "1400000000"})
}

#[tokio::test]
async fn pull_status_hands_each_report_out_once_and_checks_its_request() {
    let sandbox = start().await;
    let state = sandbox.state();
    state.set_receipt_plan(ReceiptPlan { fail: vec!["+8613800000003".into()], ..ReceiptPlan::default() });
    let answer =
        Tc3::default().send(&sandbox, &sms_body(&["+8613800000001", "+8613800000002", "+8613800000003"])).await;
    assert_eq!(error_code(&answer), None, "{answer}");
    let puller = Tc3 { action: "PullSmsSendStatus".into(), ..Tc3::default() };

    let first = puller.send(&sandbox, &pull(json!(2))).await;
    let second = puller.send(&sandbox, &pull(json!(100))).await;
    let empty = puller.send(&sandbox, &pull(json!(100))).await;
    let set = |answer: &Value| answer["Response"]["PullSmsSendStatusSet"].as_array().cloned().unwrap_or_default();
    assert_eq!((set(&first).len(), set(&second).len(), set(&empty).len()), (2, 1, 0), "{first} {second}");
    let reports: Vec<Value> = set(&first).into_iter().chain(set(&second)).collect();
    for report in &reports {
        let failed = report["PhoneNumber"] == "+8613800000003";
        assert_eq!(report["ReportStatus"], if failed { "FAIL" } else { "SUCCESS" });
        assert_eq!(report["CountryCode"], "86");
        assert!(report["UserReceiveTime"].as_i64().is_some() && report["SerialNo"].as_str().is_some(), "{report}");
    }
    assert_eq!(state.stats().receipts_pulled, 3);

    // Strict about its two fields (docs/providers/tencent-cloud.md#pullsmssendstatus).
    for (body, code) in [
        (pull(json!(0)), "InvalidParameterValue.LimitVerifyFail"),
        (pull(json!(101)), "InvalidParameterValue.LimitVerifyFail"),
        (pull(json!("10")), "InvalidParameter"),
        (json!({"Limit": 10}), "MissingParameter"),
        (json!({"SmsSdkAppId": "1400000000"}), "MissingParameter"),
        (json!({"Limit": 10, "SmsSdkAppId": "1400000000", "PhoneNumber": "+8613800000001"}), "UnknownParameter"),
        (json!({"Limit": 10, "SmsSdkAppId": "1400009999"}), "InvalidParameterValue.SdkAppIdNotExist"),
    ] {
        assert_eq!(error_code(&puller.send(&sandbox, &body).await), Some(code), "{body}");
    }
    // While a status callback takes the reports, the queue hands out none.
    state.set_receipt_plan(ReceiptPlan { callback_url: Some("http://127.0.0.1:9/".into()), ..ReceiptPlan::default() });
    Tc3::default().send(&sandbox, &sms_body(&["+8613800000004"])).await;
    assert!(set(&puller.send(&sandbox, &pull(json!(100))).await).is_empty());
    sandbox.shutdown().await;
}

fn ses(action: &str) -> Tc3 {
    Tc3 {
        service: "ses".into(),
        action: action.into(),
        version: "2020-10-02".into(),
        region: Some("ap-hongkong".into()),
        ..Tc3::default()
    }
}

fn china_today() -> String {
    (chrono::Utc::now() + chrono::Duration::hours(8)).format("%Y-%m-%d").to_string()
}

#[tokio::test]
async fn email_status_turns_final_after_the_delay() {
    let sandbox = start().await;
    let state = sandbox.state();
    state.set_receipt_plan(ReceiptPlan {
        delay_ms: 300,
        fail: vec!["bounce@example.com".into()],
        ..Default::default()
    });
    let mail = json!({
        "FromEmailAddress": format!("noreply@{DEFAULT_SES_DOMAIN}"),
        "Destination": ["ok@example.com", "Bounce@example.com"],
        "Subject": "receipts",
        "Simple": {"Text": "aGk="},
    });
    let sent = ses("SendEmail").send(&sandbox, &mail).await;
    let message_id = sent["Response"]["MessageId"].as_str().unwrap().to_string();
    let query = json!({"RequestDate": china_today(), "Offset": 0, "Limit": 100, "MessageId": message_id});
    let statuses = |answer: &Value| -> Vec<(String, i64)> {
        answer["Response"]["EmailStatusList"]
            .as_array()
            .unwrap_or_else(|| panic!("{answer}"))
            .iter()
            .map(|s| (s["ToEmailAddress"].as_str().unwrap().to_string(), s["DeliverStatus"].as_i64().unwrap()))
            .collect()
    };
    let queued = ses("GetSendEmailStatus").send(&sandbox, &query).await;
    assert_eq!(statuses(&queued), [("ok@example.com".to_string(), 0), ("Bounce@example.com".to_string(), 0)]);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let answer = ses("GetSendEmailStatus").send(&sandbox, &query).await;
        if statuses(&answer).iter().all(|(_, status)| *status != 0) {
            assert_eq!(statuses(&answer), [("ok@example.com".to_string(), 1), ("Bounce@example.com".to_string(), 3)]);
            let list = answer["Response"]["EmailStatusList"].as_array().unwrap().clone();
            assert!(list.iter().all(|s| s["SendStatus"] == 0 && s["DeliverTime"].as_i64() > Some(0)), "{answer}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "statuses never turned final");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let one = ses("GetSendEmailStatus")
        .send(
            &sandbox,
            &json!({"RequestDate": china_today(), "Offset": 0, "Limit": 100, "ToEmailAddress": "ok@example.com"}),
        )
        .await;
    assert_eq!(statuses(&one).len(), 1);
    let paged = json!({"RequestDate": china_today(), "Offset": 1, "Limit": 1});
    assert_eq!(statuses(&ses("GetSendEmailStatus").send(&sandbox, &paged).await).len(), 1);

    // docs/providers/tencent-cloud.md#getsendemailstatus: date, offset and limit are checked.
    let old = (chrono::Utc::now() - chrono::Duration::days(40)).format("%Y-%m-%d").to_string();
    let future = (chrono::Utc::now() + chrono::Duration::days(3)).format("%Y-%m-%d").to_string();
    for (body, code) in [
        (json!({"RequestDate": "2024/01/01", "Offset": 0, "Limit": 10}), "InvalidParameterValue.WrongDate"),
        (json!({"RequestDate": future, "Offset": 0, "Limit": 10}), "InvalidParameterValue.WrongDate"),
        (json!({"RequestDate": old, "Offset": 0, "Limit": 10}), "FailedOperation.NotSupportDate"),
        (json!({"RequestDate": china_today(), "Offset": 0, "Limit": 101}), "FailedOperation.InvalidLimit"),
        (json!({"RequestDate": china_today(), "Limit": 10}), "MissingParameter"),
        (json!({"Offset": 0, "Limit": 10}), "MissingParameter"),
        (json!({"RequestDate": china_today(), "Offset": 0, "Limit": 10, "Status": 1}), "UnknownParameter"),
    ] {
        assert_eq!(error_code(&ses("GetSendEmailStatus").send(&sandbox, &body).await), Some(code), "{body}");
    }
    sandbox.shutdown().await;
}

/// Reports made while no callback URL is set wait to be pulled; a plan naming a URL later sends
/// them (the sender, idle without a URL, wakes on the plan change).
#[tokio::test]
async fn reports_waiting_for_a_pull_are_pushed_once_a_url_is_set() {
    let sandbox = start().await;
    let phones = numbers(3);
    let phone_refs: Vec<&str> = phones.iter().map(String::as_str).collect();
    let answer = Tc3::default().send(&sandbox, &sms_body(&phone_refs)).await;
    assert_eq!(error_code(&answer), None, "{answer}");
    let state = sandbox.state();
    assert_eq!(state.receipts_pending(), 3, "queued for PullSmsSendStatus");
    assert_eq!(state.stats().receipts_pushed, 0);

    let receiver = Receiver::default();
    let url = start_receiver(receiver.clone()).await;
    state.set_receipt_plan(ReceiptPlan { callback_url: Some(url), ..ReceiptPlan::default() });
    state.wait_until("3 reports pushed", WAIT, |s| s.stats().receipts_pushed >= 3).await.unwrap();
    assert_eq!(receiver.taken.lock().unwrap().len(), 3, "each report once (the refused request came again)");
    assert_eq!(state.receipts_pending(), 0);
    sandbox.shutdown().await;
}

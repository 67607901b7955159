//! Jobs sharing `SendSms` calls, against a Tencent Cloud that holds its answers until the test
//! opens a gate: so the test knows which calls are in flight when more jobs arrive.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::TencentSms;
use super::batch::CALLS_PER_LANE;
use super::tests::{APP_ID, connector_with, expected_authorization, params, run};
use crate::connectors::{Failure, Success};

/// A number whose presence makes the fake refuse the whole request, as a malformed field would.
const POISON: &str = "+8613999999999";

#[derive(Default)]
struct Cloud {
    /// Every `SendSms` request received: its `Authorization`, `X-TC-Timestamp` and body.
    requests: watch::Sender<Vec<(String, i64, Bytes)>>,
    gate: watch::Sender<bool>,
    /// The next `SendSms` to arrive sends only this many of its numbers, then answers HTTP 500.
    partial: Mutex<Option<usize>>,
    /// Every SMS really sent: (number, serial).
    sent: Mutex<Vec<(String, String)>>,
    /// Every `PullSmsSendStatusByPhoneNumber` body.
    queries: Mutex<Vec<Value>>,
}

async fn answer(State(cloud): State<Arc<Cloud>>, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    if header("x-tc-action") == "PullSmsSendStatusByPhoneNumber" {
        return receipts(&cloud, &body).into_response();
    }
    let timestamp = header("x-tc-timestamp").parse().unwrap_or_default();
    let partial = cloud.partial.lock().unwrap().take();
    cloud.requests.send_modify(|requests| requests.push((header("authorization"), timestamp, body.clone())));
    let mut gate = cloud.gate.subscribe();
    gate.wait_for(|open| *open).await.expect("the gate lives with the server");
    let request: Value = serde_json::from_slice(&body).expect("a JSON body");
    let numbers: Vec<&str> =
        request["PhoneNumberSet"].as_array().expect("PhoneNumberSet").iter().filter_map(Value::as_str).collect();
    if let Some(sent) = partial {
        // The provider sent part of the call, then its answer was lost.
        let mut log = cloud.sent.lock().unwrap();
        log.extend(numbers.iter().take(sent).map(|n| (n.to_string(), format!("5000:{n}"))));
        return (StatusCode::INTERNAL_SERVER_ERROR, "backend gone").into_response();
    }
    let response = if numbers.contains(&POISON) {
        json!({"Error": {"Code": "InvalidParameterValue.IncorrectPhoneNumber", "Message": "bad number"},
               "RequestId": "req-poison"})
    } else {
        cloud.sent.lock().unwrap().extend(numbers.iter().map(|n| (n.to_string(), format!("5000:{n}"))));
        let set: Vec<Value> = numbers
            .iter()
            .map(|n| {
                json!({"SerialNo": format!("5000:{n}"), "PhoneNumber": n, "Fee": 1, "Code": "Ok",
                            "Message": "send success", "SessionContext": "", "IsoCode": "CN"})
            })
            .collect();
        json!({"SendStatusSet": set, "RequestId": "req-ok"})
    };
    axum::Json(json!({ "Response": response })).into_response()
}

/// `PullSmsSendStatusByPhoneNumber`: the receipts of what was really sent to the number.
fn receipts(cloud: &Cloud, body: &[u8]) -> axum::Json<Value> {
    let request: Value = serde_json::from_slice(body).expect("a JSON body");
    cloud.queries.lock().unwrap().push(request.clone());
    assert_eq!(request["SmsSdkAppId"], APP_ID);
    assert_eq!(request["Offset"], 0);
    assert_eq!(request["Limit"], 100);
    assert!(request["BeginTime"].as_u64().unwrap() <= chrono::Utc::now().timestamp().unsigned_abs());
    let phone = request["PhoneNumber"].as_str().expect("PhoneNumber");
    let set: Vec<Value> = cloud
        .sent
        .lock()
        .unwrap()
        .iter()
        .filter(|(number, _)| number == phone)
        .map(|(number, serial)| {
            json!({"UserReceiveTime": chrono::Utc::now().timestamp(), "CountryCode": "86",
                   "SubscriberNumber": &number[3..], "PhoneNumber": number, "SerialNo": serial,
                   "ReportStatus": "SUCCESS", "Description": "DELIVRD", "SessionContext": ""})
        })
        .collect();
    axum::Json(json!({"Response": {"PullSmsSendStatusSet": set, "RequestId": "req-pull"}}))
}

/// The fake's URL, its record of requests, and its gate (closed).
async fn gated_cloud() -> (String, Arc<Cloud>) {
    let cloud = Arc::new(Cloud::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let app = Router::new().route("/", post(answer)).with_state(Arc::clone(&cloud));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, cloud)
}

impl Cloud {
    async fn received(&self, count: usize) {
        self.requests.subscribe().wait_for(|requests| requests.len() >= count).await.unwrap();
    }

    /// The numbers of each request, in arrival order, after checking its signature.
    fn numbers_per_request(&self, url: &str) -> Vec<Vec<String>> {
        let host = url.trim_start_matches("http://").trim_end_matches('/');
        self.requests
            .borrow()
            .iter()
            .map(|(authorization, timestamp, body)| {
                assert_eq!(authorization, &expected_authorization(host, *timestamp, body));
                let body: Value = serde_json::from_slice(body).unwrap();
                let mut numbers: Vec<String> = serde_json::from_value(body["PhoneNumberSet"].clone()).unwrap();
                numbers.sort();
                numbers
            })
            .collect()
    }
}

fn number(i: usize) -> String {
    format!("+86138000000{i:02}")
}

fn spawn_job(sms: &Arc<TencentSms>, params: Value) -> tokio::task::JoinHandle<Result<Success, Failure>> {
    let sms = Arc::clone(sms);
    tokio::spawn(async move { run(&sms, &params, None).await })
}

/// Fills the lane's calls with one job each, and waits until the cloud holds them all.
async fn busy_lane(sms: &Arc<TencentSms>, cloud: &Cloud) -> Vec<tokio::task::JoinHandle<Result<Success, Failure>>> {
    let first: Vec<_> = (0..CALLS_PER_LANE).map(|i| spawn_job(sms, params(&[&number(i)]))).collect();
    cloud.received(CALLS_PER_LANE).await;
    first
}

async fn queued(sms: &TencentSms, count: usize) {
    while sms.calls.waiting() < count {
        tokio::task::yield_now().await;
    }
}

fn serial_of(success: &Success) -> Value {
    success.result.as_ref().unwrap()["numbers"][0]["serial_no"].clone()
}

#[tokio::test]
async fn jobs_waiting_for_a_busy_lane_share_the_next_call_and_each_gets_its_own_statuses() {
    let (url, cloud) = gated_cloud().await;
    let sms = Arc::new(connector_with(&url, &format!("sdk_app_id = \"{APP_ID}\"")));
    let first = busy_lane(&sms, &cloud).await;

    // Five jobs of the same campaign wait; so does a sixth for a number one of them already has.
    let waiting: Vec<_> = (10..15).map(|i| spawn_job(&sms, params(&[&number(i)]))).collect();
    let same_number = spawn_job(&sms, params(&[&number(10)]));
    queued(&sms, 6).await;
    // Other template params are another lane, whose first call goes out at once.
    let mut other_params = params(&[&number(20)]);
    other_params["template_params"] = json!(["654321", "5"]);
    let other = spawn_job(&sms, other_params);
    cloud.received(CALLS_PER_LANE + 1).await;

    cloud.gate.send_replace(true);
    for (i, job) in (0..CALLS_PER_LANE).chain(10..15).zip(first.into_iter().chain(waiting)) {
        let success = job.await.unwrap().unwrap();
        assert_eq!(serial_of(&success), json!(format!("5000:{}", number(i))));
    }
    assert_eq!(serial_of(&same_number.await.unwrap().unwrap()), json!(format!("5000:{}", number(10))));
    assert_eq!(serial_of(&other.await.unwrap().unwrap()), json!(format!("5000:{}", number(20))));

    // Calls made from different tasks arrive in any order: compared as a set.
    let mut requests = cloud.numbers_per_request(&url);
    requests.sort();
    let mut expected: Vec<Vec<String>> = (0..CALLS_PER_LANE).map(|i| vec![number(i)]).collect();
    expected.push(vec![number(20)]);
    expected.push((10..15).map(number).collect());
    expected.push(vec![number(10)]);
    expected.sort();
    assert_eq!(requests, expected, "four lone calls, the other lane's, the shared one, then the repeated number");
    assert_eq!(sms.calls.waiting(), 0);
}

#[tokio::test]
async fn a_shared_call_refused_as_a_whole_is_sent_again_alone_for_each_job() {
    let (url, cloud) = gated_cloud().await;
    let sms = Arc::new(connector_with(&url, &format!("sdk_app_id = \"{APP_ID}\"")));
    let first = busy_lane(&sms, &cloud).await;

    let good = [spawn_job(&sms, params(&[&number(10)])), spawn_job(&sms, params(&[&number(11)]))];
    let poisoned = spawn_job(&sms, params(&[POISON, &number(12)]));
    queued(&sms, 3).await;
    cloud.gate.send_replace(true);
    for job in first {
        job.await.unwrap().unwrap();
    }

    // The refusal was the poisoned job's alone: the others are sent, it is permanent.
    for (i, job) in [10, 11].into_iter().zip(good) {
        assert_eq!(serial_of(&job.await.unwrap().unwrap()), json!(format!("5000:{}", number(i))));
    }
    let failure = poisoned.await.unwrap().unwrap_err();
    let Failure::Permanent { reason, .. } = &failure else { panic!("expected permanent: {failure:?}") };
    assert!(reason.contains("InvalidParameterValue.IncorrectPhoneNumber"), "{reason}");
    assert!(reason.contains("req-poison"), "{reason}");

    let requests = cloud.numbers_per_request(&url);
    let shared = vec![number(10), number(11), number(12), POISON.to_string()];
    assert_eq!(requests[CALLS_PER_LANE], shared);
    let mut alone: Vec<Vec<String>> = requests[CALLS_PER_LANE + 1..].to_vec();
    alone.sort();
    assert_eq!(alone, vec![vec![number(10)], vec![number(11)], vec![number(12), POISON.to_string()]]);
}

#[tokio::test]
async fn a_full_call_goes_out_at_once_even_when_the_lane_is_busy() {
    let (url, cloud) = gated_cloud().await;
    let sms = Arc::new(connector_with(&url, &format!("sdk_app_id = \"{APP_ID}\"")));
    let first = busy_lane(&sms, &cloud).await;

    let numbers: Vec<String> = (0..200).map(|i| format!("+86139{i:08}")).collect();
    let refs: Vec<&str> = numbers.iter().map(String::as_str).collect();
    let full = spawn_job(&sms, params(&refs));
    // Received while the lane's calls are still held: it did not wait for them.
    cloud.received(CALLS_PER_LANE + 1).await;
    assert_eq!(sms.calls.waiting(), 0);

    cloud.gate.send_replace(true);
    for job in first {
        job.await.unwrap().unwrap();
    }
    let result = full.await.unwrap().unwrap().result.unwrap();
    assert_eq!(result["numbers"].as_array().unwrap().len(), 200);
    let mut sorted = numbers.clone();
    sorted.sort();
    assert_eq!(cloud.numbers_per_request(&url)[CALLS_PER_LANE], sorted);
}

fn sent_count(cloud: &Cloud, number: &str) -> usize {
    cloud.sent.lock().unwrap().iter().filter(|(n, _)| n == number).count()
}

/// The progress of a transient failure, with its unconfirmed numbers' call moved `by` into the past.
fn progress_of(failure: &Failure, by: Duration) -> Value {
    let Failure::Transient { progress: Some(progress), .. } = failure else {
        panic!("transient expected: {failure:?}")
    };
    let mut progress = progress.clone();
    for status in progress["numbers"].as_object_mut().unwrap().values_mut() {
        if let Some(at) = status["sent_at_ms"].as_i64() {
            status["sent_at_ms"] = json!(at - i64::try_from(by.as_millis()).unwrap());
        }
    }
    progress
}

/// The case: a call shared by 15 jobs is answered HTTP 500 after the provider sent 7 of
/// its numbers. No job is sent again blindly: the 7 are found sent by their receipts, the 8
/// others are sent again only once the settle time has passed. Each number gets one SMS.
#[tokio::test]
async fn a_shared_call_lost_after_a_partial_send_texts_each_number_once() {
    let (url, cloud) = gated_cloud().await;
    let sms = Arc::new(connector_with(&url, &format!("sdk_app_id = \"{APP_ID}\"\nstatus_settle = \"60s\"")));
    let first = busy_lane(&sms, &cloud).await;
    *cloud.partial.lock().unwrap() = Some(7);
    let shared: Vec<_> = (10..25).map(|i| spawn_job(&sms, params(&[&number(i)]))).collect();
    queued(&sms, 15).await;
    cloud.gate.send_replace(true);
    for job in first {
        job.await.unwrap().unwrap();
    }

    let mut failures = Vec::new();
    for job in shared {
        let failure = job.await.unwrap().unwrap_err();
        let Failure::Transient { reason, retry_after, progress: Some(progress) } = &failure else {
            panic!("transient with progress expected: {failure:?}")
        };
        assert!(reason.starts_with("1 of 1 numbers not sent yet: "), "{reason}");
        assert!(reason.contains("Unconfirmed (SendSms: HTTP 500"), "{reason}");
        let wait = retry_after.expect("the settle time left");
        assert!(wait > Duration::from_secs(55) && wait <= Duration::from_secs(60), "{wait:?}");
        let status = progress["numbers"].as_object().unwrap().values().next().unwrap();
        assert_eq!(status["code"], "Unconfirmed");
        assert_eq!(status["final"], false);
        assert!(status["sent_at_ms"].as_i64().unwrap() <= chrono::Utc::now().timestamp_millis());
        failures.push(failure);
    }
    assert_eq!(cloud.numbers_per_request(&url).len(), CALLS_PER_LANE + 1, "one shared call of 15 numbers");
    assert_eq!(cloud.sent.lock().unwrap().len(), CALLS_PER_LANE + 7);
    assert!(cloud.queries.lock().unwrap().is_empty(), "nothing asked before it was needed");

    // Next attempts, before the settle time: receipts make 7 jobs succeed; the others wait.
    let mut not_yet = Vec::new();
    for (i, failure) in (10..25).zip(&failures) {
        let progress = progress_of(failure, Duration::ZERO);
        match run(&sms, &params(&[&number(i)]), Some(&progress)).await {
            Ok(success) => {
                assert_eq!(serial_of(&success), json!(format!("5000:{}", number(i))));
                not_yet.push(None);
            }
            Err(failure) => {
                let Failure::Transient { retry_after: Some(wait), .. } = &failure else { panic!("{failure:?}") };
                assert!(*wait <= Duration::from_secs(60) && *wait > Duration::from_secs(50), "{wait:?}");
                not_yet.push(Some(failure));
            }
        }
    }
    assert_eq!(not_yet.iter().filter(|f| f.is_none()).count(), 7, "the 7 numbers with a receipt");
    assert_eq!(cloud.numbers_per_request(&url).len(), CALLS_PER_LANE + 1, "nothing sent again yet");
    assert_eq!(cloud.queries.lock().unwrap().len(), 15, "one query per unconfirmed number");
    let query = cloud.queries.lock().unwrap()[0].clone();
    let keys: std::collections::BTreeSet<&str> = query.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["BeginTime", "Limit", "Offset", "PhoneNumber", "SmsSdkAppId"].into());

    // Once the settle time has passed without a receipt, the 8 others are sent again, once.
    for (i, failure) in (10..25).zip(&not_yet) {
        let Some(failure) = failure else { continue };
        let progress = progress_of(failure, Duration::from_secs(61));
        let success = run(&sms, &params(&[&number(i)]), Some(&progress)).await.unwrap();
        assert_eq!(serial_of(&success), json!(format!("5000:{}", number(i))));
    }
    for i in (0..CALLS_PER_LANE).chain(10..25) {
        assert_eq!(sent_count(&cloud, &number(i)), 1, "{}", number(i));
    }
    assert_eq!(cloud.numbers_per_request(&url).len(), CALLS_PER_LANE + 1 + 8);
}

/// With `status_query = false` a lost answer is left to `on_ambiguous`, shared call or not.
#[tokio::test]
async fn without_status_queries_a_lost_answer_is_ambiguous() {
    let (url, cloud) = gated_cloud().await;
    cloud.gate.send_replace(true);
    let sms = Arc::new(connector_with(&url, &format!("sdk_app_id = \"{APP_ID}\"\nstatus_query = false")));
    *cloud.partial.lock().unwrap() = Some(1);
    let failure = run(&sms, &params(&[&number(1), &number(2)]), None).await.unwrap_err();
    let Failure::Ambiguous { reason } = &failure else { panic!("ambiguous expected: {failure:?}") };
    assert!(reason.starts_with("SendSms: HTTP 500"), "{reason}");
    assert!(cloud.queries.lock().unwrap().is_empty());
}

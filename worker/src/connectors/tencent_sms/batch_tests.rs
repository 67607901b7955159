//! Jobs sharing `SendSms` calls, against a Tencent Cloud that holds its answers until the test
//! opens a gate: so the test knows which calls are in flight when more jobs arrive.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::TencentSms;
use super::batch::CALLS_PER_LANE;
use super::tests::{APP_ID, connector_with, expected_authorization, params, run};
use crate::connectors::{Failure, Success};

/// A number whose presence makes the fake refuse the whole request, as a malformed field would.
const POISON: &str = "+8613999999999";

struct Cloud {
    /// Every request received: its `Authorization`, `X-TC-Timestamp` and body.
    requests: watch::Sender<Vec<(String, i64, Bytes)>>,
    gate: watch::Sender<bool>,
}

async fn answer(State(cloud): State<Arc<Cloud>>, headers: HeaderMap, body: Bytes) -> axum::Json<Value> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let timestamp = header("x-tc-timestamp").parse().unwrap_or_default();
    cloud.requests.send_modify(|requests| requests.push((header("authorization"), timestamp, body.clone())));
    let mut gate = cloud.gate.subscribe();
    gate.wait_for(|open| *open).await.expect("the gate lives with the server");
    let request: Value = serde_json::from_slice(&body).expect("a JSON body");
    let numbers: Vec<&str> =
        request["PhoneNumberSet"].as_array().expect("PhoneNumberSet").iter().filter_map(Value::as_str).collect();
    let response = if numbers.contains(&POISON) {
        json!({"Error": {"Code": "InvalidParameterValue.IncorrectPhoneNumber", "Message": "bad number"},
               "RequestId": "req-poison"})
    } else {
        let set: Vec<Value> = numbers
            .iter()
            .map(|n| {
                json!({"SerialNo": format!("5000:{n}"), "PhoneNumber": n, "Fee": 1, "Code": "Ok",
                            "Message": "send success", "SessionContext": "", "IsoCode": "CN"})
            })
            .collect();
        json!({"SendStatusSet": set, "RequestId": "req-ok"})
    };
    axum::Json(json!({ "Response": response }))
}

/// The fake's URL, its record of requests, and its gate (closed).
async fn gated_cloud() -> (String, Arc<Cloud>) {
    let cloud = Arc::new(Cloud { requests: watch::Sender::new(Vec::new()), gate: watch::Sender::new(false) });
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

//! Delivery receipts of `tencent_sms` against wiremock: a success lists the `SerialNo` of every
//! number sent when the config collects receipts, and a pull reads `PullSmsSendStatus`
//! (docs/providers/tencent-cloud.md#pullsmssendstatus).

use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};
use yizhan_state::{DeliveryState, Receipt};

use super::tests::{APP_ID, connector_with, params, run};
use crate::connectors::testkit::json_body;
use crate::connectors::{Connector, Receipts};

fn answer(body: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({ "Response": body }))
}

async fn send_two(extra: &str) -> Receipts {
    let server = MockServer::start().await;
    let statuses = json!({"SendStatusSet": [
        {"SerialNo": "2019:1", "PhoneNumber": "+8613800000001", "Fee": 1, "Code": "Ok", "Message": "send success"},
        {"SerialNo": "", "PhoneNumber": "+8613800000002", "Fee": 0, "Code": "FailedOperation.PhoneNumberInBlacklist",
         "Message": "blacklisted"},
    ], "RequestId": "r"});
    Mock::given(method("POST")).and(path("/")).respond_with(answer(statuses)).mount(&server).await;
    let connector = connector_with(&format!("{}/", server.uri()), &format!("sdk_app_id = \"{APP_ID}\"\n{extra}"));
    run(&connector, &params(&["+8613800000001", "+8613800000002"]), None).await.expect("one number sent").receipts
}

#[tokio::test]
async fn a_success_lists_the_serials_of_the_numbers_sent_when_receipts_are_collected() {
    let expected = Receipts { sids: vec![("2019:1".into(), "+8613800000001".into())], poll: false };
    assert_eq!(send_two("receipts = \"push\"\nreceipt_token = \"0123456789abcdef\"").await, expected);
    assert_eq!(send_two("receipts = \"pull\"").await, expected);
    assert_eq!(send_two("").await, Receipts::default(), "no receipts collected, none expected");
}

#[tokio::test]
async fn a_pull_reads_the_receipt_queue_of_the_configs_application() {
    let server = MockServer::start().await;
    let page = json!({"PullSmsSendStatusSet": [
        {"UserReceiveTime": 1_700_000_000, "CountryCode": "86", "SubscriberNumber": "13800000001",
         "PhoneNumber": "+8613800000001", "SerialNo": "2019:1", "ReportStatus": "SUCCESS", "Description": "DELIVRD",
         "SessionContext": ""},
        {"UserReceiveTime": 1_700_000_001, "PhoneNumber": "+8613800000002", "SerialNo": "2019:2",
         "ReportStatus": "FAIL", "Description": "UNDELIV"},
        {"UserReceiveTime": 1_700_000_002, "PhoneNumber": "+8613800000003", "SerialNo": "2019:3"},
    ], "RequestId": "r"});
    Mock::given(method("POST"))
        .and(path("/"))
        .and(header("X-TC-Action", "PullSmsSendStatus"))
        .respond_with(answer(page))
        .mount(&server)
        .await;
    let connector =
        connector_with(&format!("{}/", server.uri()), &format!("sdk_app_id = \"{APP_ID}\"\nreceipts = \"pull\""));
    let page = connector.pull_receipts(&[]).await.unwrap();
    assert!(!page.more, "3 of at most 100");
    assert_eq!(
        page.receipts,
        [
            Receipt {
                sid: "2019:1".into(),
                state: DeliveryState::Delivered,
                code: Some("DELIVRD".into()),
                at: 1_700_000_000_000
            },
            Receipt {
                sid: "2019:2".into(),
                state: DeliveryState::Failed,
                code: Some("UNDELIV".into()),
                at: 1_700_000_001_000
            },
        ],
        "a report without a status is not a receipt"
    );
    let requests = server.received_requests().await.unwrap();
    assert_eq!(json_body(&requests[0]), json!({"Limit": 100, "SmsSdkAppId": APP_ID}));
    assert_eq!(requests[0].headers.get("X-TC-Version").unwrap(), "2021-01-11");
}

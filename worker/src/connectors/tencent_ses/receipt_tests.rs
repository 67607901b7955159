//! Delivery receipts of `tencent_ses` against wiremock: a sent mail expects one receipt per
//! `destination` address when the config pulls them, and a pull asks `GetSendEmailStatus` about
//! each mail (docs/providers/tencent-cloud.md#getsendemailstatus).

use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};
use yizhan_state::{DeliveryState, PendingReceipt, Receipt};

use super::TencentSes;
use crate::connectors::testkit::{Kit, json_body};
use crate::connectors::{Connector, Receipts, http};

const KIT: Kit = Kit { kind: "tencent_ses", secrets: &["ses-secret-key-do-not-leak-42"] };

fn connector(server: &MockServer, extra: &str) -> TencentSes {
    let text = format!(
        "[connectors.tencent_ses.default]\nsecret_id = \"AKIDses\"\nsecret_key = \"ses-secret-key-do-not-leak-42\"\n\
         endpoint = \"{}\"\n{extra}\n",
        server.uri()
    );
    KIT.build(&text, "default", |config| TencentSes::new(config, http::client()))
}

fn answer(body: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({ "Response": body }))
}

#[tokio::test]
async fn a_sent_mail_expects_a_receipt_per_destination_when_the_config_pulls() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/"))
        .respond_with(answer(json!({"MessageId": "m-1", "RequestId": "r"})))
        .mount(&server)
        .await;
    let params = json!({"from_email_address": "noreply@mail.example.com", "destination": ["a@example.com", "B@example.com"],
                        "subject": "s", "text": "hi"});
    let pulling = KIT
        .run(&connector(&server, "receipts = \"pull\"\npull_interval = \"5s\""), "send_email", &params)
        .await
        .unwrap();
    assert_eq!(
        pulling.receipts,
        Receipts {
            sids: vec![
                ("m-1 a@example.com".into(), "a@example.com".into()),
                ("m-1 B@example.com".into(), "B@example.com".into())
            ],
            poll: true
        }
    );
    let plain = KIT.run(&connector(&server, ""), "send_email", &params).await.unwrap();
    assert_eq!(plain.receipts, Receipts::default());
}

#[tokio::test]
async fn a_pull_asks_about_each_mail_on_its_china_date_and_keeps_final_statuses() {
    let server = MockServer::start().await;
    let statuses = json!({"EmailStatusList": [
        {"MessageId": "m-1", "ToEmailAddress": "a@example.com", "SendStatus": 0, "DeliverStatus": 1, "DeliverTime": 1_700_000_100},
        {"MessageId": "m-1", "ToEmailAddress": "b@example.com", "SendStatus": 0, "DeliverStatus": 3,
         "DeliverMessage": "550 no such user", "DeliverTime": 1_700_000_200},
        {"MessageId": "m-1", "ToEmailAddress": "c@example.com", "SendStatus": 0, "DeliverStatus": 8},
        {"MessageId": "m-1", "ToEmailAddress": "d@example.com", "SendStatus": 1007, "DeliverStatus": 0},
        {"MessageId": "m-1", "ToEmailAddress": "stranger@example.com", "SendStatus": 0, "DeliverStatus": 1},
    ], "RequestId": "r"});
    Mock::given(method("POST"))
        .and(path("/"))
        .and(header("X-TC-Action", "GetSendEmailStatus"))
        .respond_with(answer(statuses))
        .mount(&server)
        .await;
    // 2023-11-14T22:13:20Z is 2023-11-15 in China.
    let pending: Vec<PendingReceipt> = ["a@example.com", "B@example.com", "c@example.com", "d@example.com"]
        .iter()
        .map(|to| PendingReceipt { sid: format!("m-1 {to}"), recipient: to.to_string(), sent_at: 1_700_000_000_000 })
        .collect();
    let page = connector(&server, "receipts = \"pull\"").pull_receipts(&pending).await.unwrap();
    let found = |sid: &str| page.receipts.iter().find(|r| r.sid == sid).cloned();
    assert_eq!(
        found("m-1 a@example.com"),
        Some(Receipt {
            sid: "m-1 a@example.com".into(),
            state: DeliveryState::Delivered,
            code: Some("DeliverStatus 1".into()),
            at: 1_700_000_100_000
        })
    );
    assert_eq!(
        found("m-1 B@example.com").map(|r| (r.state, r.code)),
        Some((DeliveryState::Failed, Some("550 no such user".into())))
    );
    assert_eq!(
        found("m-1 d@example.com").map(|r| (r.state, r.code)),
        Some((DeliveryState::Failed, Some("SendStatus 1007".into())))
    );
    assert_eq!(found("m-1 c@example.com"), None, "deferred is not final");
    assert_eq!(page.receipts.len(), 3);
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1, "one query per mail");
    assert_eq!(
        json_body(&requests[0]),
        json!({"RequestDate": "2023-11-15", "Offset": 0, "Limit": 100, "MessageId": "m-1"})
    );
}

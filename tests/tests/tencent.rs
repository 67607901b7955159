//! Tencent SES and Tencent Meeting jobs through RabbitMQ against the sandbox.

use serde_json::{Value, json};
use yizhan_sandbox::{DEFAULT_MEETING_APP, DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY, DEFAULT_SES_DOMAIN, SandboxConfig};
use yizhan_state::StateStore;
use yizhan_tests::{Harness, Store, WAIT, eventually, job};

const HTML: &str = "<html><body><p>您好 <b>Li</b> &amp; welcome</p></body></html>";
const TEXT: &str = "Line one\nLine two: 你好";

fn config() -> String {
    let (app_id, sdk_id, secret_id, secret_key) = DEFAULT_MEETING_APP;
    format!(
        r#"
[connectors.tencent_ses.mail]
secret_id = "{DEFAULT_SECRET_ID}"
secret_key = "{DEFAULT_SECRET_KEY}"
endpoint = "{{sandbox}}"

[connectors.tencent_meeting.rooms]
app_id = "{app_id}"
sdk_id = "{sdk_id}"
secret_id = "{secret_id}"
secret_key = "{secret_key}"
endpoint = "{{sandbox}}"
"#,
        sdk_id = sdk_id.unwrap(),
    )
}

/// Waits until job `id` succeeded and returns its stored result.
async fn result_of(store: &std::sync::Arc<dyn StateStore>, id: uuid::Uuid) -> Value {
    eventually("job recorded as succeeded", WAIT, || {
        let store = store.clone();
        async move { store.status(id).await.unwrap().is_some_and(|s| s.status == "succeeded") }
    })
    .await;
    store.status(id).await.unwrap().unwrap().result.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn ses_send_and_identity_read_are_executed_and_stored() {
    let h = Harness::start("ses", Store::Sqlite, SandboxConfig::default_accounts(), &config()).await;
    let worker = h.spawn_worker(&[]).await;
    let ids = h
        .submit(&[
            job(
                "tencent_ses",
                "mail",
                "send_email",
                json!({"from_email_address": format!("Yizhan <noreply@{DEFAULT_SES_DOMAIN}>"),
                       "destination": ["user@example.com"], "subject": "Welcome",
                       "template": {"template_id": 42, "template_data": {"name": "Li"}}}),
            ),
            job("tencent_ses", "mail", "get_email_identity", json!({"email_identity": DEFAULT_SES_DOMAIN})),
            job(
                "tencent_ses",
                "mail",
                "send_email",
                json!({"from_email_address": format!("noreply@{DEFAULT_SES_DOMAIN}"),
                       "destination": ["html@example.com"], "subject": "HTML",
                       "html": HTML, "text": "价格 = 100€"}),
            ),
            job(
                "tencent_ses",
                "mail",
                "send_email",
                json!({"from_email_address": format!("noreply@{DEFAULT_SES_DOMAIN}"),
                       "destination": ["text@example.com"], "subject": "Text", "text": TEXT}),
            ),
        ])
        .await;
    let store = h.store().await;
    let receipt = result_of(&store, ids[0]).await;
    for id in &ids[2..] {
        result_of(&store, *id).await;
    }
    let sent = h.sandbox().sent_emails();
    assert_eq!(sent.len(), 3);
    let to = |address: &str| sent.iter().find(|m| m.destination == [address]).unwrap().clone();
    let template = to("user@example.com");
    assert_eq!(receipt["MessageId"].as_str(), Some(template.message_id.as_str()));
    assert_eq!(template.template_data.as_deref(), Some(r#"{"name":"Li"}"#));
    // docs/providers/tencent-cloud.md#sendemail: the bodies travel base64; SES gets what was written.
    let html = to("html@example.com");
    assert_eq!((html.html.as_deref(), html.text.as_deref()), (Some(HTML), Some("价格 = 100€")));
    let text = to("text@example.com");
    assert_eq!((text.html.as_deref(), text.text.as_deref()), (None, Some(TEXT)));
    let identity = result_of(&store, ids[1]).await;
    assert_eq!(identity["IdentityType"], "DOMAIN");
    assert_eq!(identity["VerifiedForSendingStatus"], true);
    assert!(h.sandbox().rejected().is_empty(), "{:?}", h.sandbox().rejected());
    drop(worker);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_meeting_is_created_then_cancelled() {
    let h = Harness::start("meeting", Store::Sqlite, SandboxConfig::default_accounts(), &config()).await;
    let worker = h.spawn_worker(&[]).await;
    let store = h.store().await;
    let created = h
        .submit(&[job(
            "tencent_meeting",
            "rooms",
            "create_meeting",
            json!({"userid": "tester1", "instanceid": 1, "subject": "Weekly", "type": 0,
                   "start_time": "1900000000", "end_time": "1900003600"}),
        )])
        .await;
    let result = result_of(&store, created[0]).await;
    let meeting_id = result["meeting_info_list"][0]["meeting_id"].as_str().unwrap().to_string();
    let cancelled = h
        .submit(&[job(
            "tencent_meeting",
            "rooms",
            "cancel_meeting",
            json!({"meeting_id": meeting_id, "userid": "tester1", "instanceid": 1, "reason_code": 1}),
        )])
        .await;
    result_of(&store, cancelled[0]).await;
    let meetings = h.sandbox().meetings();
    assert_eq!(meetings.len(), 1);
    assert_eq!(meetings[0]["meeting_id"], meeting_id.as_str());
    assert_eq!(meetings[0]["status"], "MEETING_STATE_CANCELLED");
    assert!(h.sandbox().rejected().is_empty(), "{:?}", h.sandbox().rejected());
    drop(worker);
}

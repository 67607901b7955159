//! Issue 21, item 4: WeCom change events. The sandbox's corp announces edits of its directory to
//! `POST /v1/events/wecom/{config}` of a real `yizhan-producer serve`, signed and encrypted as
//! WeCom does; the API enqueues an incremental sync, and the real worker applies the change to
//! the target (a webhook receiver here). Forged events are refused with 401.

use std::time::Duration;

use serde_json::{Value, json};
use yizhan_sandbox::SandboxConfig;
use yizhan_sandbox::directory::Member;
use yizhan_sandbox::wecom_events::{WecomCallback, encrypt, signature};
use yizhan_tests::api::Api;
use yizhan_tests::webhook::Webhook;
use yizhan_tests::{Harness, Store, eventually, job};

const TOKEN: &str = "events-callback-token";
/// 43 characters of base64, as WeCom shows an EncodingAESKey.
const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

fn operations(received: &Webhook) -> Vec<(String, String)> {
    let mut ops: Vec<(String, String)> = bodies(received)
        .iter()
        .map(|b| (b["operationType"].as_str().unwrap_or_default().into(), b["id"].as_str().unwrap_or_default().into()))
        .collect();
    ops.sort();
    ops
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_signed_change_event_syncs_the_change_and_a_forged_one_is_refused() {
    let received = Webhook::start().await;
    let url = received.url.clone();
    let corp = yizhan_sandbox::DEFAULT_WECOM_CORP.0;
    let extra = format!(
        r#"
[connectors.wecom.hr]
corp_id = "{corp}"
contacts_secret = "{secret}"
callback_token = "{TOKEN}"
encoding_aes_key = "{AES_KEY}"
endpoint = "{{sandbox}}"

[connectors.directory_sync.hr]
source = "wecom.hr"
target = "webhook"
webhook_url = "{url}"
"#,
        secret = yizhan_sandbox::DEFAULT_WECOM_CORP.2,
    );
    let h = Harness::start("wecom-events", Store::Sqlite, SandboxConfig::default_accounts(), &extra).await;
    let _worker = h.spawn_worker(&[]).await;
    let api = Api::start(&h).await;
    let events = format!("{}/v1/events/wecom/hr", api.base);
    let client = reqwest::Client::new();

    // The first sync, so that the event's run is incremental.
    let first = h.submit(&[job("directory_sync", "hr", "run", json!({}))]).await[0];
    let store = h.store().await;
    eventually("the first run", Duration::from_secs(30), || {
        let store = store.clone();
        async move { store.status(first).await.unwrap().is_some_and(|s| s.status == "succeeded") }
    })
    .await;
    let initial = received.len();
    assert_eq!(initial, 6, "2 departments and 4 members: {:?}", operations(&received));

    // WeCom's URL check: the decrypted echostr comes back; a wrong signature is refused.
    let echostr = encrypt(AES_KEY, *b"0123456789abcdef", "7391736458817231", corp).unwrap();
    let check = |signature: String| {
        let (client, events, echostr) = (client.clone(), events.clone(), echostr.clone());
        async move {
            let query = [
                ("msg_signature", signature.as_str()),
                ("timestamp", "1700000000"),
                ("nonce", "42"),
                ("echostr", echostr.as_str()),
            ];
            let response = client.get(&events).query(&query).send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    assert_eq!(check(signature(TOKEN, "1700000000", "42", &echostr)).await, (200, "7391736458817231".to_string()));
    assert_eq!(check(signature("not-the-token", "1700000000", "42", &echostr)).await.0, 401);

    // A forged event: signed with another token, or encrypted with another key.
    let xml = "<xml><Event><![CDATA[change_contact]]></Event><ChangeType>update_user</ChangeType></xml>";
    for (token, key) in [("forged", AES_KEY), (TOKEN, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefg")] {
        let encrypted = encrypt(key, *b"fedcba9876543210", xml, corp).unwrap();
        let signed = signature(token, "1700000001", "7", &encrypted);
        let body =
            format!("<xml><ToUserName><![CDATA[{corp}]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>");
        let query = [("msg_signature", signed.as_str()), ("timestamp", "1700000001"), ("nonce", "7")];
        let status = client.post(&events).query(&query).body(body).send().await.unwrap().status();
        assert_eq!(status, 401, "token {token}");
    }
    assert_eq!(
        client.post(format!("{}/v1/events/wecom/nope", api.base)).body("<xml/>").send().await.unwrap().status(),
        401,
        "an unknown config"
    );

    // The sandbox's corp announces two edits; one sync applies both.
    h.sandbox().set_wecom_callback(Some(WecomCallback {
        url: events.clone(),
        token: TOKEN.into(),
        encoding_aes_key: AES_KEY.into(),
        corp_id: corp.into(),
    }));
    h.sandbox().edit_wecom_directory(|d| {
        d.members.get_mut("lisi").unwrap().email = "lisi@example.org".into();
        d.put_member(Member::new("newbie", "New", "2", "newbie@example.com", Some("2020-01-01")));
    });
    let sandbox = h.sandbox();
    eventually("the sandbox's events are accepted", Duration::from_secs(10), || {
        let sent = sandbox.wecom_events_sent();
        async move { sent.len() == 2 }
    })
    .await;
    let mut sent = h.sandbox().wecom_events_sent();
    sent.sort();
    assert_eq!(sent, [("create_user".to_string(), 200), ("update_user".to_string(), 200)]);
    let received_now = received.clone();
    eventually("the change reaches the target", Duration::from_secs(30), || {
        let n = received_now.len();
        async move { n >= initial + 2 }
    })
    .await;
    let changes: Vec<(String, String)> = {
        let all = bodies(&received);
        let mut ops: Vec<(String, String)> = all[initial..]
            .iter()
            .map(|b| (b["operationType"].as_str().unwrap().into(), b["id"].as_str().unwrap().into()))
            .collect();
        ops.sort();
        ops
    };
    assert_eq!(changes, [("CREATE".to_string(), "newbie".to_string()), ("UPDATE".into(), "lisi".into())]);
}

/// The receiver's bodies as JSON (this sync has no webhook secret).
fn bodies(received: &Webhook) -> Vec<Value> {
    received.calls().iter().map(|(_, body)| serde_json::from_slice(body).unwrap_or(Value::Null)).collect()
}

//! WeCom application jobs through RabbitMQ against the sandbox: one gettoken for a burst of 1,000
//! concurrent jobs, one refresh when the tokens expire mid-run, no member past WeCom's 30 messages
//! a minute, 45009 retried, unknown users dead-lettered.

use serde_json::json;
use yizhan_sandbox::{DEFAULT_WECOM_CORP, Fault, Provider, SandboxConfig};
use yizhan_tests::{Harness, LONG_WAIT, Store, eventually, job};

const BURST: usize = 1000;
/// One past WeCom's 30 messages a minute to one member: the last must wait for the first to age.
const TO_ONE_MEMBER: usize = 31;

fn config() -> String {
    let (corp, app, contacts) = DEFAULT_WECOM_CORP;
    format!(
        r#"
[connectors.wecom.hq]
corp_id = "{corp}"
app_secret = "{app}"
contacts_secret = "{contacts}"
agentid = 1000002
endpoint = "{{sandbox}}"

# Another app of the corp: its 45009 pause must not hold back `hq`.
[connectors.wecom.branch]
corp_id = "{corp}"
app_secret = "{app}"
agentid = 1000003
endpoint = "{{sandbox}}"
"#
    )
}

fn message(i: usize, touser: &str) -> yizhan_schemas::Job {
    message_of("hq", i, touser)
}

fn message_of(config: &str, i: usize, touser: &str) -> yizhan_schemas::Job {
    job(
        "wecom",
        config,
        "send_app_message",
        json!({"touser": touser, "msgtype": "text", "text": {"content": format!("notice {i}")}}),
    )
}

async fn all_succeed(h: &Harness, ids: &[uuid::Uuid]) {
    let store = h.store().await;
    for id in ids {
        let store = store.clone();
        let id = *id;
        eventually("the job succeeded", LONG_WAIT, move || {
            let store = store.clone();
            async move { store.status(id).await.unwrap().is_some_and(|s| s.status == "succeeded") }
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn app_messages_share_one_token_refresh_once_retry_limits_and_dead_letter_unknown_users() {
    let h = Harness::start("wecom", Store::Sqlite, SandboxConfig::default_accounts(), &config()).await;
    let sandbox = h.sandbox();
    let _worker = h.spawn_worker(&[]).await;

    // 45009 on the other app: it pauses that config for WeCom's minute, is retried and delivered
    // once, while `hq` goes on meanwhile.
    sandbox.push_fault(Fault::error_code(Provider::Wecom, 45009).for_action("message/send")).unwrap();
    let throttled = h.submit(&[message_of("branch", 0, "lisi")]).await;
    let watched = sandbox.clone();
    eventually("the 45009 was answered", LONG_WAIT, move || {
        let sandbox = watched.clone();
        async move { sandbox.stats().pending_faults == 0 }
    })
    .await;
    let gettoken_before = sandbox.stats().wecom_gettoken_calls;

    // A burst of concurrent jobs to 1,000 members: one gettoken. Alongside, 31 messages to one
    // member, which WeCom would silently drop past 30 a minute.
    let to_one: Vec<_> = (0..TO_ONE_MEMBER).map(|i| message(i, "zhaoliu")).collect();
    let to_one = h.submit(&to_one).await;
    let jobs: Vec<_> = (0..BURST).map(|i| message(i, &format!("staff{i}"))).collect();
    let ids = h.submit(&jobs).await;
    all_succeed(&h, &ids).await;
    assert_eq!(sandbox.stats().wecom_gettoken_calls, gettoken_before + 1);
    let result = h.store().await.status(ids[0]).await.unwrap().unwrap().result.unwrap();
    assert!(result["msgid"].as_str().unwrap().starts_with("sandbox-msg-"), "{result}");

    // WeCom revokes the token mid-run: the jobs that see 42001 refresh it once, and every job
    // succeeds once.
    let delivered = sandbox.stats().wecom_messages;
    let jobs: Vec<_> = (BURST..2 * BURST).map(|i| message(i, &format!("staff{i}"))).collect();
    let ids = h.submit(&jobs).await;
    let watched = sandbox.clone();
    eventually("part of the second burst was delivered", LONG_WAIT, move || {
        let sandbox = watched.clone();
        async move { sandbox.stats().wecom_messages >= delivered + 100 }
    })
    .await;
    sandbox.expire_wecom_tokens();
    all_succeed(&h, &ids).await;
    assert_eq!(sandbox.stats().wecom_gettoken_calls, gettoken_before + 2);
    let rejected: Vec<_> = sandbox.rejected().into_iter().filter(|(_, code)| code == "42001").collect();
    assert!(!rejected.is_empty(), "no job saw the expired token");

    // The member's 31 messages were paced: all delivered, none dropped, one of them a minute late.
    all_succeed(&h, &to_one).await;
    assert_eq!(sandbox.stats().wecom_member_drops, 0);

    all_succeed(&h, &throttled).await;
    let status = h.store().await.status(throttled[0]).await.unwrap().unwrap();
    assert_eq!(status.attempts, 2, "45009 retried once");

    let messages = sandbox.wecom_messages();
    assert_eq!(messages.len(), 2 * BURST + TO_ONE_MEMBER + 1, "every job delivered once");
    let mut contents: Vec<_> =
        messages.iter().map(|m| (m["touser"].to_string(), m["text"]["content"].to_string())).collect();
    contents.sort();
    contents.dedup();
    assert_eq!(contents.len(), messages.len(), "a message delivered twice");

    // Nobody WeCom knows: dead-lettered with its errcode, never retried.
    h.submit(&[message(0, "ghost")]).await;
    let dead = h.take_dead(1, LONG_WAIT).await;
    assert_eq!(dead[0].kind, "permanent");
    assert!(dead[0].error.contains("errcode 81013"), "{}", dead[0].error);
    assert_eq!(dead[0].attempts, 1);
    // No more tokens for `hq`; `branch` refreshed its own, which the revocation expired too.
    assert_eq!(sandbox.stats().wecom_gettoken_calls, gettoken_before + 3);
}

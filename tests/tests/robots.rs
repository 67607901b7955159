//! DingTalk robot, Feishu bot, Feishu app and Juzibot jobs through RabbitMQ against the sandbox.

use serde_json::json;
use yizhan_sandbox::{
    DEFAULT_DINGTALK_ROBOTS, DEFAULT_FEISHU_APP, DEFAULT_FEISHU_HOOKS, DEFAULT_JUZIBOT_TOKEN, Fault, Provider,
    SandboxConfig,
};
use yizhan_tests::{Harness, Store, WAIT, eventually, job};

fn config() -> String {
    let (dt_token, dt_secret) = DEFAULT_DINGTALK_ROBOTS[0];
    let (hook, hook_secret) = DEFAULT_FEISHU_HOOKS[0];
    let (app_id, app_secret) = DEFAULT_FEISHU_APP;
    format!(
        r#"
[connectors.dingtalk_robot.ops]
access_token = "{dt_token}"
secret = "{dt_secret}"
endpoint = "{{sandbox}}"

[connectors.feishu_robot.ops]
hook_id = "{hook}"
secret = "{hook_secret}"
endpoint = "{{sandbox}}"

[connectors.feishu.hr]
app_id = "{app_id}"
app_secret = "{app_secret}"
endpoint = "{{sandbox}}"

[connectors.juzibot.main]
token = "{DEFAULT_JUZIBOT_TOKEN}"
endpoint = "{{sandbox}}"
"#,
        dt_secret = dt_secret.unwrap(),
        hook_secret = hook_secret.unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn dingtalk_signed_messages_of_every_type_are_delivered() {
    let h = Harness::start("dingtalk", Store::Sqlite, SandboxConfig::default_accounts(), &config()).await;
    let worker = h.spawn_worker(&[]).await;
    h.submit(&[
        job("dingtalk_robot", "ops", "send_text", json!({"content": "deploy done", "at_mobiles": ["13800000000"]})),
        job("dingtalk_robot", "ops", "send_markdown", json!({"title": "disk", "text": "**90%**", "is_at_all": true})),
        job(
            "dingtalk_robot",
            "ops",
            "send_link",
            json!({"title": "Release", "text": "v1.2", "message_url": "https://example.com/r"}),
        ),
        job(
            "dingtalk_robot",
            "ops",
            "send_action_card",
            json!({"title": "Approve", "text": "PR #1", "btns": [{"title": "Open", "action_url": "https://example.com/1"}]}),
        ),
        job(
            "dingtalk_robot",
            "ops",
            "send_feed_card",
            json!({"links": [{"title": "a", "message_url": "https://example.com/a", "pic_url": "https://example.com/a.png"}]}),
        ),
    ])
    .await;
    let sandbox = h.sandbox();
    sandbox.wait_for_robot_messages(5, WAIT).await.unwrap();
    let mut types: Vec<String> = sandbox
        .robot_messages(DEFAULT_DINGTALK_ROBOTS[0].0)
        .iter()
        .map(|m| m["msgtype"].as_str().unwrap().to_string())
        .collect();
    types.sort();
    assert_eq!(types, ["actionCard", "feedCard", "link", "markdown", "text"]);
    assert!(sandbox.rejected().is_empty(), "{:?}", sandbox.rejections());
    eventually("all five succeeded", WAIT, || async { worker.jobs_total("succeeded").await == 5 }).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn feishu_signed_message_delivered_and_11232_retried() {
    let h = Harness::start("feishu-bot", Store::Sqlite, SandboxConfig::default_accounts(), &config()).await;
    let sandbox = h.sandbox();
    let hook = DEFAULT_FEISHU_HOOKS[0].0;
    sandbox.push_fault(Fault::error_code(Provider::FeishuRobot, 11232).for_action("post")).unwrap();
    let worker = h.spawn_worker(&[]).await;
    let post = json!({"post": {"zh_cn": {"title": "t", "content": [[{"tag": "text", "text": "x"}]]}}});
    h.submit(&[
        job("feishu_robot", "ops", "send_text", json!({"text": "hello"})),
        job("feishu_robot", "ops", "send_post", post),
    ])
    .await;
    sandbox.wait_for_robot_messages(2, WAIT).await.unwrap();
    let mut types: Vec<String> =
        sandbox.robot_messages(hook).iter().map(|m| m["msg_type"].as_str().unwrap().to_string()).collect();
    types.sort();
    assert_eq!(types, ["post", "text"]);
    assert_eq!(sandbox.stats().faults_applied, 1);
    eventually("both succeeded", WAIT, || async { worker.jobs_total("succeeded").await == 2 }).await;
    assert_eq!(worker.jobs_total("retried").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn feishu_department_users_and_juzibot_contact_way_results_are_stored() {
    let h = Harness::start("feishu-app", Store::Sqlite, SandboxConfig::default_accounts(), &config()).await;
    let _worker = h.spawn_worker(&[]).await;
    let ids = h
        .submit(&[
            job("feishu", "hr", "list_department_users", json!({"department_id": "od-sandbox-eng", "page_size": 5})),
            job(
                "juzibot",
                "main",
                "add_contact_way",
                json!({"type": 1, "scene": 2, "user": ["zhangsan"], "state": "s1"}),
            ),
        ])
        .await;
    let store = h.store().await;
    for id in &ids {
        let id = *id;
        let store = store.clone();
        eventually("job succeeded", WAIT, move || {
            let store = store.clone();
            async move { store.status(id).await.unwrap().is_some_and(|s| s.status == "succeeded") }
        })
        .await;
    }
    let users = store.status(ids[0]).await.unwrap().unwrap().result.unwrap();
    assert_eq!(users["items"].as_array().unwrap().len(), 5);
    assert_eq!(users["has_more"], true);
    assert!(users["page_token"].is_string(), "{users}");
    let receipt = store.status(ids[1]).await.unwrap().unwrap().result.unwrap();
    let ways = h.sandbox().contact_ways();
    assert_eq!(ways.len(), 1);
    assert_eq!(receipt["config_id"], ways[0]["config_id"]);
    assert!(receipt["qr_code"].is_string());
}

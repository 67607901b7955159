//! All six `wecom_robot` actions through RabbitMQ against the sandbox.

use base64::Engine;
use serde_json::json;
use yizhan_sandbox::SandboxConfig;
use yizhan_tests::{Harness, Store, WAIT, job};

/// A 1×1 PNG: the sandbox, like WeCom, accepts only real PNG or JPG images.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4, 0x89, 0x00, 0x00, 0x00, 0x0d, 0x49,
    0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x00, 0x01, 0x00, 0x00, 0x05, 0x00, 0x01, 0x0d, 0x0a, 0x2d, 0xb4, 0x00, 0x00,
    0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

#[tokio::test(flavor = "multi_thread")]
async fn every_robot_action_reaches_the_group_once() {
    let h = Harness::start("robot", Store::Sqlite, SandboxConfig::default_accounts(), "").await;
    let key = yizhan_sandbox::DEFAULT_ROBOT_KEYS[0];
    let worker = h.spawn_worker(&[]).await;
    let b64 = base64::engine::general_purpose::STANDARD;

    let upload = job(
        "wecom_robot",
        "ops",
        "upload_file",
        json!({"filename": "report.csv", "content_base64": b64.encode(b"a,b\n1,2\n")}),
    );
    let ids = h.submit(&[upload]).await;
    let store = h.store().await;
    let upload_id = ids[0];
    yizhan_tests::eventually("upload recorded", WAIT, || {
        let store = store.clone();
        async move { store.status(upload_id).await.unwrap().is_some_and(|s| s.status == "succeeded") }
    })
    .await;
    let media_id =
        store.status(upload_id).await.unwrap().unwrap().result.unwrap()["media_id"].as_str().unwrap().to_string();

    h.submit(&[
        job("wecom_robot", "ops", "send_text", json!({"content": "deploy done", "mentioned_list": ["@all"]})),
        job("wecom_robot", "ops", "send_markdown", json!({"content": "**disk** <font color=\"warning\">90%</font>"})),
        job("wecom_robot", "ops", "send_image", json!({"base64": b64.encode(PNG)})),
        job(
            "wecom_robot",
            "ops",
            "send_news",
            json!({"articles": [{"title": "Release", "url": "https://example.com/r"}]}),
        ),
        job("wecom_robot", "ops", "send_file", json!({"media_id": media_id})),
    ])
    .await;
    h.sandbox().wait_for_robot_messages(5, WAIT).await.unwrap();
    let messages = h.sandbox().robot_messages(key);
    let mut types: Vec<&str> = messages.iter().map(|m| m["msgtype"].as_str().unwrap()).collect();
    types.sort();
    assert_eq!(types, ["file", "image", "markdown", "news", "text"]);
    let image = messages.iter().find(|m| m["msgtype"] == "image").unwrap();
    assert_eq!(image["image"]["md5"].as_str().unwrap().len(), 32, "md5 computed by the worker");
    yizhan_tests::eventually("all six succeeded", WAIT, || async { worker.jobs_total("succeeded").await == 6 }).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_removed_robot_is_dead_lettered_with_the_errcode_and_a_busy_one_retried() {
    let h = Harness::start("robot-err", Store::Sqlite, SandboxConfig::default_accounts(), "").await;
    let sandbox = h.sandbox();
    sandbox.push_fault(yizhan_sandbox::Fault::wecom_errcode(93000).for_action("text")).unwrap();
    sandbox.push_fault(yizhan_sandbox::Fault::wecom_errcode(-1).for_action("markdown")).unwrap();
    let _worker = h.spawn_worker(&[]).await;
    h.submit(&[
        job("wecom_robot", "ops", "send_text", json!({"content": "hello"})),
        job("wecom_robot", "ops", "send_markdown", json!({"content": "hello"})),
    ])
    .await;
    let dead = h.take_dead(1, WAIT).await;
    assert_eq!(dead[0].kind, "permanent");
    assert!(dead[0].error.contains("93000"), "{}", dead[0].error);
    assert!(!dead[0].error.contains(yizhan_sandbox::DEFAULT_ROBOT_KEYS[0]), "the robot key is a secret");
    sandbox.wait_for_robot_messages(1, WAIT).await.unwrap();
    assert_eq!(sandbox.robot_messages(yizhan_sandbox::DEFAULT_ROBOT_KEYS[0])[0]["msgtype"], "markdown");
}

//! The fake WeCom group robot over real HTTP.

mod common;

use base64::Engine;
use common::{WAIT, client, errcode, robot_post, start, start_with};
use md5::{Digest, Md5};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use yizhan_sandbox::{Fault, Provider, Sandbox, SandboxConfig};

const KEY: &str = "sandbox-robot-key";
const KEY_2: &str = "sandbox-robot-key-2";
/// A 1×1 PNG.
const PNG_BASE64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

fn text(content: &str) -> Value {
    json!({ "msgtype": "text", "text": { "content": content } })
}

fn image(base64: &str, md5: &str) -> Value {
    json!({ "msgtype": "image", "image": { "base64": base64, "md5": md5 } })
}

fn md5_of_base64(encoded: &str) -> String {
    let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).unwrap();
    hex::encode(Md5::digest(bytes))
}

async fn upload(sandbox: &Sandbox, key: &str, filename: &str, content: &[u8]) -> Value {
    let form = Form::new().part("media", Part::bytes(content.to_vec()).file_name(filename.to_string()));
    let response = client()
        .post(format!("{}/cgi-bin/webhook/upload_media", sandbox.url()))
        .query(&[("key", key), ("type", "file")])
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn text_message_is_delivered_and_recorded() {
    let sandbox = start().await;
    let body = json!({
        "msgtype": "text",
        "text": { "content": "deploy finished", "mentioned_mobile_list": ["13800001111"] }
    });
    let answer = robot_post(&sandbox, KEY, &body).await;
    assert_eq!(answer, json!({ "errcode": 0, "errmsg": "ok" }));

    let state = sandbox.state();
    assert_eq!(state.robot_messages(KEY), std::slice::from_ref(&body));
    assert!(state.robot_messages(KEY_2).is_empty());
    let all = state.all_robot_messages();
    assert_eq!((all[0].key.as_str(), all[0].msgtype.as_str()), (KEY, "text"));
    let request = &state.requests()[0];
    assert_eq!(request.provider, Provider::WecomRobot);
    assert_eq!(request.path, "/cgi-bin/webhook/send");
    assert_eq!(request.query, format!("key={KEY}"));
    assert_eq!(request.body_json(), Some(body));
}

#[tokio::test]
async fn bad_or_missing_key_is_93000() {
    let sandbox = start().await;
    let answer = robot_post(&sandbox, "no-such-key", &text("hi")).await;
    assert_eq!(errcode(&answer), 93000);
    assert!(answer["errmsg"].as_str().unwrap().starts_with("invalid webhook url"));

    let answer: Value = client()
        .post(format!("{}/cgi-bin/webhook/send", sandbox.url()))
        .json(&text("hi"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(errcode(&answer), 93000);

    let state = sandbox.state();
    assert!(state.all_robot_messages().is_empty());
    assert_eq!(state.rejected(), vec![("wecom_robot".to_string(), "93000".to_string()); 2]);
    assert_eq!(state.requests().len(), 2);
}

#[tokio::test]
async fn invalid_messages_get_permanent_errcodes() {
    let sandbox = start().await;
    let article = json!({ "title": "t", "url": "https://example.com" });
    let cases = [
        (json!({ "msgtype": "text", "text": { "content": "x".repeat(2049) } }), 40058),
        (json!({ "msgtype": "text", "text": { "content": "" } }), 44004),
        (json!({ "msgtype": "text" }), 40058),
        (json!({ "msgtype": "markdown", "markdown": { "content": "x".repeat(4097) } }), 40058),
        (json!({ "msgtype": "video", "video": {} }), 40008),
        (json!({ "text": { "content": "no msgtype" } }), 40008),
        (json!({ "msgtype": "news", "news": { "articles": vec![article.clone(); 9] } }), 45008),
        (json!({ "msgtype": "news", "news": { "articles": [] } }), 45008),
        (json!({ "msgtype": "news", "news": { "articles": [{ "url": "https://example.com" }] } }), 41016),
        (json!({ "msgtype": "news", "news": { "articles": [{ "title": "t" }] } }), 41010),
        (json!({ "msgtype": "file", "file": {} }), 41006),
        (json!({ "msgtype": "file", "file": { "media_id": "never-uploaded" } }), 40007),
        (json!({ "msgtype": "image", "image": { "base64": PNG_BASE64 } }), 40058),
        (image("!!!", "00"), 40009),
        (image(PNG_BASE64, &"0".repeat(32)), 40009),
        (image("aGVsbG8gd29ybGQ=", &md5_of_base64("aGVsbG8gd29ybGQ=")), 40004),
    ];
    for (body, code) in &cases {
        let answer = robot_post(&sandbox, KEY, body).await;
        assert_eq!(errcode(&answer), *code, "{body}: {answer}");
    }
    let answer: Value = client()
        .post(format!("{}/cgi-bin/webhook/send?key={KEY}", sandbox.url()))
        .body("not json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(errcode(&answer), 40035);

    let state = sandbox.state();
    assert!(state.all_robot_messages().is_empty());
    assert_eq!(state.rejected().len(), cases.len() + 1);
}

#[tokio::test]
async fn valid_image_markdown_and_news_are_delivered() {
    let sandbox = start().await;
    let bodies = [
        image(PNG_BASE64, &md5_of_base64(PNG_BASE64)),
        image(PNG_BASE64, &md5_of_base64(PNG_BASE64).to_uppercase()),
        json!({ "msgtype": "markdown", "markdown": { "content": "**done** <font color=\"info\">ok</font>" } }),
        json!({ "msgtype": "news", "news": { "articles": vec![json!({ "title": "t", "url": "https://example.com", "description": "d", "picurl": "https://example.com/p.png" }); 8] } }),
    ];
    for body in &bodies {
        let answer = robot_post(&sandbox, KEY, body).await;
        assert_eq!(errcode(&answer), 0, "{body}: {answer}");
    }
    assert_eq!(sandbox.state().robot_messages(KEY).len(), bodies.len());
}

/// WeCom cuts a news title past 128 bytes and a description past 512 and sends the message
/// (docs/providers/wecom.md#robot-news); only text and markdown over their limits are refused, and
/// those limits count bytes of UTF-8, not characters.
#[tokio::test]
async fn long_news_fields_are_cut_not_refused_and_text_limits_count_bytes() {
    let sandbox = start().await;
    let article = json!({ "title": "标".repeat(60), "url": "https://example.com", "description": "述".repeat(200) });
    let answer = robot_post(&sandbox, KEY, &json!({ "msgtype": "news", "news": { "articles": [article] } })).await;
    assert_eq!(errcode(&answer), 0, "{answer}");
    let chinese = "汉".repeat(683);
    assert!(chinese.chars().count() < 2048 && chinese.len() > 2048);
    let answer = robot_post(&sandbox, KEY, &json!({ "msgtype": "text", "text": { "content": chinese } })).await;
    assert_eq!(errcode(&answer), 40058, "{answer}");
    assert_eq!(sandbox.state().robot_messages(KEY).len(), 1);
}

#[tokio::test]
async fn the_21st_message_in_a_minute_is_refused() {
    let sandbox = start().await;
    for i in 0..20 {
        let answer = robot_post(&sandbox, KEY, &text(&format!("message {i}"))).await;
        assert_eq!(errcode(&answer), 0, "message {i}: {answer}");
    }
    let answer = robot_post(&sandbox, KEY, &text("one too many")).await;
    assert_eq!(errcode(&answer), 45009);
    assert!(answer["errmsg"].as_str().unwrap().starts_with("api freq out of limit"));

    let answer = robot_post(&sandbox, KEY_2, &text("other robot")).await;
    assert_eq!(errcode(&answer), 0, "the limit is per key");

    let state = sandbox.state();
    assert_eq!(state.robot_messages(KEY).len(), 20);
    assert_eq!(state.rejected(), [("wecom_robot".to_string(), "45009".to_string())]);
}

#[tokio::test]
async fn the_rate_limit_can_be_switched_off() {
    let sandbox = start_with(SandboxConfig::default_accounts().robot_rate_limit(None)).await;
    for i in 0..25 {
        assert_eq!(errcode(&robot_post(&sandbox, KEY, &text(&format!("m{i}"))).await), 0);
    }
    sandbox.state().wait_for_robot_messages(25, WAIT).await.unwrap();
}

#[tokio::test]
async fn uploaded_file_can_be_sent_by_its_own_robot_only() {
    let sandbox = start().await;
    let answer = upload(&sandbox, KEY, "report.txt", b"hello world").await;
    assert_eq!(errcode(&answer), 0, "{answer}");
    assert_eq!(answer["type"], "file");
    let media_id = answer["media_id"].as_str().unwrap().to_string();
    let created_at: i64 = answer["created_at"].as_str().unwrap().parse().unwrap();
    assert!(created_at > 1_700_000_000);

    let state = sandbox.state();
    let media = state.uploaded_media();
    assert_eq!(media.len(), 1);
    assert_eq!((media[0].key.as_str(), media[0].filename.as_str(), media[0].size), (KEY, "report.txt", 11));
    assert_eq!(media[0].md5, hex::encode(Md5::digest(b"hello world")));

    let file = json!({ "msgtype": "file", "file": { "media_id": media_id } });
    assert_eq!(errcode(&robot_post(&sandbox, KEY, &file).await), 0);
    assert_eq!(errcode(&robot_post(&sandbox, KEY_2, &file).await), 40007);
    assert_eq!(state.robot_messages(KEY), [file]);
    assert!(state.robot_messages(KEY_2).is_empty());
}

#[tokio::test]
async fn uploads_are_checked() {
    let sandbox = start().await;
    assert_eq!(errcode(&upload(&sandbox, KEY, "tiny.txt", b"1234").await), 40006);
    assert_eq!(errcode(&upload(&sandbox, "no-such-key", "a.txt", b"hello world").await), 93000);

    let url = format!("{}/cgi-bin/webhook/upload_media", sandbox.url());
    let wrong_type: Value = client()
        .post(&url)
        .query(&[("key", KEY), ("type", "image")])
        .multipart(Form::new().part("media", Part::bytes(b"hello world".to_vec()).file_name("a.txt")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(errcode(&wrong_type), 40005);
    let wrong_field: Value = client()
        .post(&url)
        .query(&[("key", KEY), ("type", "file")])
        .multipart(Form::new().part("file", Part::bytes(b"hello world".to_vec()).file_name("a.txt")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(errcode(&wrong_field), 44001);
    let not_multipart: Value = client()
        .post(&url)
        .query(&[("key", KEY), ("type", "file")])
        .body("hello world")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(errcode(&not_multipart), 44001);

    // Large files pass (the 2 MB default body limit of axum does not apply).
    let big = vec![7u8; 3 * 1024 * 1024];
    let answer = upload(&sandbox, KEY, "big.bin", &big).await;
    assert_eq!(errcode(&answer), 0, "{answer}");
    assert_eq!(sandbox.state().uploaded_media().len(), 1);
}

#[tokio::test]
async fn errcode_fault_for_one_key_is_consumed() {
    let sandbox = start().await;
    let state = sandbox.state();
    state.push_fault(Fault::wecom_errcode(-1).for_key(KEY).with_message("system busy")).unwrap();

    let answer = robot_post(&sandbox, KEY_2, &text("unaffected")).await;
    assert_eq!(errcode(&answer), 0);
    let answer = robot_post(&sandbox, KEY, &text("first")).await;
    assert_eq!(errcode(&answer), -1);
    assert!(answer["errmsg"].as_str().unwrap().starts_with("system busy"));
    let answer = robot_post(&sandbox, KEY, &text("second")).await;
    assert_eq!(errcode(&answer), 0);

    assert_eq!(state.robot_messages(KEY), [text("second")]);
    assert!(state.rejected().is_empty());
    assert_eq!(state.stats().faults_applied, 1);
}

#[tokio::test]
async fn http_fault_for_a_mentioned_phone() {
    let sandbox = start().await;
    let state = sandbox.state();
    state.push_fault(Fault::http_status(Provider::WecomRobot, 503).for_phone("+8613800001111")).unwrap();
    let mention = json!({ "msgtype": "text", "text": { "content": "hi", "mentioned_mobile_list": ["13800001111"] } });
    let response =
        client().post(format!("{}/cgi-bin/webhook/send?key={KEY}", sandbox.url())).json(&mention).send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(errcode(&robot_post(&sandbox, KEY, &mention).await), 0);
}

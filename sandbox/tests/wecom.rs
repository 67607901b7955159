//! The fake WeCom application API over real HTTP: gettoken, token checks, required fields, shapes.

mod common;

use common::{client, start};
use serde_json::{Value, json};
use yizhan_sandbox::{DEFAULT_WECOM_CORP, Fault, Provider};

const CORP: &str = DEFAULT_WECOM_CORP.0;
const APP: &str = DEFAULT_WECOM_CORP.1;
const CONTACTS: &str = DEFAULT_WECOM_CORP.2;

async fn get(url: String) -> Value {
    client().get(url).send().await.unwrap().json().await.unwrap()
}

async fn post(url: String, body: Value) -> Value {
    client().post(url).json(&body).send().await.unwrap().json().await.unwrap()
}

async fn token(base: &str, secret: &str) -> String {
    let answer = get(format!("{base}/cgi-bin/gettoken?corpid={CORP}&corpsecret={secret}")).await;
    assert_eq!(answer["errcode"], 0, "{answer}");
    assert!(answer["expires_in"].as_u64().unwrap() > 7000, "{answer}");
    answer["access_token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn gettoken_checks_the_corp_and_secret_and_reissues_the_valid_token() {
    let sandbox = start().await;
    let base = sandbox.url();
    let first = token(&base, APP).await;
    assert_eq!(token(&base, APP).await, first, "the same token while it is valid");
    assert_ne!(token(&base, CONTACTS).await, first, "one token per secret");
    let answer = get(format!("{base}/cgi-bin/gettoken?corpid={CORP}&corpsecret=wrong")).await;
    assert_eq!(answer["errcode"], 40001);
    let answer = get(format!("{base}/cgi-bin/gettoken?corpid=wwnone&corpsecret={APP}")).await;
    assert_eq!(answer["errcode"], 40013);
    assert_eq!(sandbox.state().stats().wecom_gettoken_calls, 5);
}

#[tokio::test]
async fn tokens_are_checked_and_expire_on_demand() {
    let sandbox = start().await;
    let base = sandbox.url();
    let recall = |token: &str| format!("{base}/cgi-bin/message/recall?access_token={token}");
    assert_eq!(post(recall("nope"), json!({"msgid": "m"})).await["errcode"], 40014);
    let app = token(&base, APP).await;
    assert_eq!(post(recall(&app), json!({"msgid": "m"})).await["errcode"], 0);
    sandbox.state().expire_wecom_tokens();
    assert_eq!(post(recall(&app), json!({"msgid": "m"})).await["errcode"], 42001);
    let fresh = token(&base, APP).await;
    assert_ne!(fresh, app);
    assert_eq!(post(recall(&fresh), json!({"msgid": "m"})).await["errcode"], 0);
    // Contacts need the contacts secret's token.
    let answer = get(format!("{base}/cgi-bin/user/get?access_token={fresh}&userid=zhangsan")).await;
    assert_eq!(answer["errcode"], 60011);
    let contacts = token(&base, CONTACTS).await;
    let answer = get(format!("{base}/cgi-bin/user/get?access_token={contacts}&userid=zhangsan")).await;
    assert_eq!(answer["errcode"], 0, "{answer}");
    let answer = get(format!("{base}/cgi-bin/user/get?access_token={contacts}&userid=nobody")).await;
    assert_eq!(answer["errcode"], 60111);
}

#[tokio::test]
async fn messages_check_fields_and_recipients() {
    let sandbox = start().await;
    let base = sandbox.url();
    let app = token(&base, APP).await;
    let send = format!("{base}/cgi-bin/message/send?access_token={app}");
    let answer = post(
        send.clone(),
        json!({"touser": "zhangsan|ghost", "msgtype": "text", "agentid": 1000002, "text": {"content": "hi"}}),
    )
    .await;
    assert_eq!(answer["errcode"], 0, "{answer}");
    assert_eq!(answer["invaliduser"], "ghost");
    assert!(answer["msgid"].as_str().unwrap().starts_with("sandbox-msg-"));
    let answer =
        post(send.clone(), json!({"touser": "ghost", "msgtype": "text", "agentid": 1, "text": {"content": "x"}})).await;
    assert_eq!(answer["errcode"], 81013);
    let answer = post(send.clone(), json!({"touser": "zhangsan", "msgtype": "text", "agentid": 1})).await;
    assert_eq!(answer["errcode"], 40058, "the text object is required");
    let answer = post(send.clone(), json!({"touser": "zhangsan", "msgtype": "text", "text": {"content": "x"}})).await;
    assert_eq!(answer["errcode"], 40058, "agentid is required");
    let calendar = format!("{base}/cgi-bin/oa/calendar/add?access_token={app}");
    let answer = post(calendar.clone(), json!({"organizer": "zhangsan", "summary": "s", "color": "#FF0000"})).await;
    assert_eq!(answer["errcode"], 40058, "calendar fields sit inside `calendar`");
    let answer =
        post(calendar, json!({"calendar": {"organizer": "zhangsan", "summary": "s", "color": "#FF0000"}})).await;
    assert_eq!(answer["cal_id"], "calsandbox");
    assert_eq!(sandbox.state().wecom_messages().len(), 1);
    assert_eq!(sandbox.state().stats().wecom_messages, 1);

    sandbox.state().push_fault(Fault::error_code(Provider::Wecom, 45009).for_action("message/send")).unwrap();
    let body = json!({"touser": "zhangsan", "msgtype": "text", "agentid": 1, "text": {"content": "x"}});
    assert_eq!(post(send.clone(), body.clone()).await["errcode"], 45009);
    assert_eq!(post(send, body).await["errcode"], 0);
}

async fn upload(url: String, filename: &str, bytes: &[u8]) -> Value {
    let part = reqwest::multipart::Part::bytes(bytes.to_vec()).file_name(filename.to_string());
    let form = reqwest::multipart::Form::new().part("media", part);
    client().post(url).multipart(form).send().await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn temporary_media_and_images_are_uploaded_with_an_app_token() {
    let sandbox = start().await;
    let base = sandbox.url();
    let app = token(&base, APP).await;
    let png = b"\x89PNG\r\n\x1a\n0123456789";
    let answer = upload(format!("{base}/cgi-bin/media/upload?access_token={app}&type=image"), "a.png", png).await;
    assert_eq!(answer["errcode"], 0, "{answer}");
    assert_eq!(answer["type"], "image");
    assert!(answer["media_id"].as_str().is_some_and(|id| !id.is_empty()));
    assert!(answer["created_at"].is_string());
    let answer = upload(format!("{base}/cgi-bin/media/uploadimg?access_token={app}"), "a.png", png).await;
    assert!(answer["url"].as_str().is_some_and(|u| u.starts_with("https://")), "{answer}");
    let file =
        upload(format!("{base}/cgi-bin/media/upload?access_token={app}&type=file"), "r.pdf", b"%PDF-1.4 x").await;
    assert_eq!(file["errcode"], 0, "{file}");
    assert_eq!(sandbox.state().uploaded_media().len(), 3);

    // Refusals: another secret's token, an unknown type, a non-image, a file of 5 bytes or less.
    let contacts = token(&base, CONTACTS).await;
    let answer = upload(format!("{base}/cgi-bin/media/upload?access_token={contacts}&type=image"), "a.png", png).await;
    assert_eq!(answer["errcode"], 48002);
    let answer = upload(format!("{base}/cgi-bin/media/upload?access_token={app}&type=gif"), "a.gif", png).await;
    assert_eq!(answer["errcode"], 40004);
    let answer =
        upload(format!("{base}/cgi-bin/media/upload?access_token={app}&type=image"), "a.txt", b"plain text!").await;
    assert_eq!(answer["errcode"], 40005);
    let answer = upload(format!("{base}/cgi-bin/media/upload?access_token={app}&type=file"), "a.txt", b"12345").await;
    assert_eq!(answer["errcode"], 40006);
}

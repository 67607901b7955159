//! The fake DingTalk robot, Feishu bot and app, and Juzibot over real HTTP.

mod common;

use base64::Engine;
use common::{WAIT, client, start, start_with};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use yizhan_sandbox::{
    DEFAULT_DINGTALK_ROBOTS, DEFAULT_FEISHU_APP, DEFAULT_FEISHU_HOOKS, DEFAULT_JUZIBOT_TOKEN, Fault, Provider, Sandbox,
    SandboxConfig,
};

const DT_TOKEN: &str = DEFAULT_DINGTALK_ROBOTS[0].0;
const DT_SECRET: &str = "SECsandbox";
const HOOK: &str = DEFAULT_FEISHU_HOOKS[0].0;
const HOOK_SECRET: &str = "sandbox-feishu-secret";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// DingTalk's signature, computed here independently of the sandbox.
fn dingtalk_sign(timestamp: i64, secret: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}\n{secret}").as_bytes());
    b64(&mac.finalize().into_bytes())
}

fn feishu_sign(timestamp: i64, secret: &str) -> String {
    let mac = Hmac::<Sha256>::new_from_slice(format!("{timestamp}\n{secret}").as_bytes()).unwrap();
    b64(&mac.finalize().into_bytes())
}

async fn dingtalk(sandbox: &Sandbox, token: &str, signature: Option<(i64, String)>, body: &Value) -> Value {
    let mut query = vec![("access_token".to_string(), token.to_string())];
    if let Some((timestamp, sign)) = signature {
        query.push(("timestamp".into(), timestamp.to_string()));
        query.push(("sign".into(), sign));
    }
    let response =
        client().post(format!("{}/robot/send", sandbox.url())).query(&query).json(body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn signed_now() -> Option<(i64, String)> {
    let ms = chrono::Utc::now().timestamp_millis();
    Some((ms, dingtalk_sign(ms, DT_SECRET)))
}

#[tokio::test]
async fn dingtalk_delivers_signed_messages_of_every_type() {
    let sandbox = start().await;
    let bodies = [
        json!({"msgtype": "text", "text": {"content": "hi"}, "at": {"atMobiles": ["13800000000"], "isAtAll": false}}),
        json!({"msgtype": "markdown", "markdown": {"title": "t", "text": "# x"}}),
        json!({"msgtype": "link", "link": {"title": "t", "text": "x", "messageUrl": "https://e.com"}}),
        json!({"msgtype": "actionCard", "actionCard": {"title": "t", "text": "x", "singleTitle": "go", "singleURL": "https://e.com"}}),
        json!({"msgtype": "actionCard", "actionCard": {"title": "t", "text": "x", "btns": [{"title": "a", "actionURL": "https://e.com"}]}}),
        json!({"msgtype": "feedCard", "feedCard": {"links": [{"title": "t", "messageURL": "https://e.com", "picURL": "https://e.com/p.png"}]}}),
    ];
    for body in &bodies {
        assert_eq!(dingtalk(&sandbox, DT_TOKEN, signed_now(), body).await, json!({"errcode": 0, "errmsg": "ok"}));
    }
    sandbox.state().wait_for_robot_messages(bodies.len(), WAIT).await.unwrap();
    let messages = sandbox.state().robot_messages(DT_TOKEN);
    assert_eq!(messages, bodies);
    assert!(sandbox.state().all_robot_messages().iter().all(|m| m.provider == Provider::DingtalkRobot));
    // The robot without a secret needs no signature.
    let unsigned = dingtalk(&sandbox, DEFAULT_DINGTALK_ROBOTS[1].0, None, &bodies[0]).await;
    assert_eq!(unsigned["errcode"], 0);
}

#[tokio::test]
async fn dingtalk_refuses_bad_tokens_signatures_timestamps_and_shapes() {
    let sandbox = start().await;
    let text = json!({"msgtype": "text", "text": {"content": "hi"}});
    let ms = chrono::Utc::now().timestamp_millis();
    let cases = [
        (dingtalk(&sandbox, "nope", signed_now(), &text).await, 400101),
        (dingtalk(&sandbox, DT_TOKEN, None, &text).await, 310000),
        (dingtalk(&sandbox, DT_TOKEN, Some((ms, dingtalk_sign(ms, "SECwrong"))), &text).await, 310000),
        (
            dingtalk(&sandbox, DT_TOKEN, Some((ms - 3_700_000, dingtalk_sign(ms - 3_700_000, DT_SECRET))), &text).await,
            310000,
        ),
        (dingtalk(&sandbox, DT_TOKEN, signed_now(), &json!({"msgtype": "voice", "voice": {}})).await, 400105),
        (
            dingtalk(
                &sandbox,
                DT_TOKEN,
                signed_now(),
                &json!({"msgtype": "link", "link": {"title": "t", "text": "x"}}),
            )
            .await,
            40035,
        ),
        (
            dingtalk(
                &sandbox,
                DT_TOKEN,
                signed_now(),
                &json!({"msgtype": "actionCard", "actionCard": {"title": "t", "text": "x"}}),
            )
            .await,
            40035,
        ),
    ];
    for (i, (answer, code)) in cases.iter().enumerate() {
        assert_eq!(answer["errcode"], *code, "case {i}: {answer}");
    }
    assert_eq!(cases[2].0["errmsg"], "sign not match");
    assert_eq!(cases[3].0["errmsg"], "invalid timestamp");
    assert_eq!(sandbox.state().stats().robot_messages, 0);
}

#[tokio::test]
async fn dingtalk_throttles_twenty_a_minute_and_takes_faults() {
    let sandbox = start_with(SandboxConfig::default_accounts().dingtalk_rate_limit(Some(3))).await;
    let text = json!({"msgtype": "text", "text": {"content": "hi"}});
    sandbox.state().push_fault(Fault::error_code(Provider::DingtalkRobot, -1).with_message("系统繁忙")).unwrap();
    assert_eq!(dingtalk(&sandbox, DT_TOKEN, signed_now(), &text).await, json!({"errcode": -1, "errmsg": "系统繁忙"}));
    for _ in 0..3 {
        assert_eq!(dingtalk(&sandbox, DT_TOKEN, signed_now(), &text).await["errcode"], 0);
    }
    let answer = dingtalk(&sandbox, DT_TOKEN, signed_now(), &text).await;
    assert_eq!(answer, json!({"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"}));
    assert_eq!(sandbox.state().rejected(), [("dingtalk_robot".to_string(), "130101".to_string())]);
}

async fn feishu(sandbox: &Sandbox, hook: &str, body: &Value) -> Value {
    let response =
        client().post(format!("{}/open-apis/bot/v2/hook/{hook}", sandbox.url())).json(body).send().await.unwrap();
    response.json().await.unwrap()
}

fn signed(mut body: Value, timestamp: i64, secret: &str) -> Value {
    body["timestamp"] = json!(timestamp.to_string());
    body["sign"] = json!(feishu_sign(timestamp, secret));
    body
}

#[tokio::test]
async fn feishu_bot_checks_hook_signature_size_and_shape() {
    let sandbox = start().await;
    let now = chrono::Utc::now().timestamp();
    let text = json!({"msg_type": "text", "content": {"text": "hi"}});
    let bodies = [
        text.clone(),
        json!({"msg_type": "post", "content": {"post": {"zh_cn": {"title": "t", "content": [[{"tag": "text", "text": "x"}]]}}}}),
        json!({"msg_type": "image", "content": {"image_key": "img_1"}}),
        json!({"msg_type": "share_chat", "content": {"share_chat_id": "oc_1"}}),
        json!({"msg_type": "interactive", "card": {"elements": []}}),
    ];
    for body in bodies {
        let answer = feishu(&sandbox, HOOK, &signed(body, now, HOOK_SECRET)).await;
        assert_eq!(answer["code"], 0, "{answer}");
        assert_eq!(answer["StatusCode"], 0);
    }
    assert_eq!(feishu(&sandbox, DEFAULT_FEISHU_HOOKS[1].0, &text).await["code"], 0);
    assert_eq!(feishu(&sandbox, "unknown", &text).await["code"], 19001);
    assert_eq!(feishu(&sandbox, HOOK, &text).await["code"], 19021);
    assert_eq!(feishu(&sandbox, HOOK, &signed(text.clone(), now, "wrong")).await["code"], 19021);
    assert_eq!(feishu(&sandbox, HOOK, &signed(text.clone(), now - 3700, HOOK_SECRET)).await["code"], 19021);
    let big = json!({"msg_type": "text", "content": {"text": "x".repeat(21 * 1024)}});
    assert_eq!(feishu(&sandbox, HOOK, &signed(big, now, HOOK_SECRET)).await["code"], 9499);
    let bad = json!({"msg_type": "interactive", "content": {"text": "no card"}});
    assert_eq!(feishu(&sandbox, HOOK, &signed(bad, now, HOOK_SECRET)).await["code"], 9499);
    assert_eq!(sandbox.state().robot_messages(HOOK).len(), 5);
}

#[tokio::test]
async fn feishu_bot_throttles_five_a_second_and_takes_faults() {
    let sandbox = start().await;
    let text = json!({"msg_type": "text", "content": {"text": "hi"}});
    let hook = DEFAULT_FEISHU_HOOKS[1].0;
    sandbox.state().push_fault(Fault::error_code(Provider::FeishuRobot, 11232).for_key(hook)).unwrap();
    assert_eq!(feishu(&sandbox, hook, &text).await["code"], 11232);
    let mut codes = Vec::new();
    for _ in 0..6 {
        codes.push(feishu(&sandbox, hook, &text).await["code"].as_i64().unwrap());
    }
    // Six within a second (the machine would have to stall a whole second to miss it).
    assert_eq!(codes.iter().filter(|c| **c == 0).count(), 5, "{codes:?}");
    assert_eq!(codes.last(), Some(&11232));
}

async fn feishu_token(sandbox: &Sandbox, app_id: &str, app_secret: &str) -> Value {
    let body = json!({"app_id": app_id, "app_secret": app_secret});
    let url = format!("{}/open-apis/auth/v3/tenant_access_token/internal", sandbox.url());
    client().post(url).json(&body).send().await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn feishu_app_issues_tokens_and_pages_the_directory() {
    let sandbox = start().await;
    let (app_id, app_secret) = DEFAULT_FEISHU_APP;
    assert_eq!(feishu_token(&sandbox, "cli_nope", app_secret).await["code"], 10003);
    assert_eq!(feishu_token(&sandbox, app_id, "wrong").await["code"], 10014);
    let answer = feishu_token(&sandbox, app_id, app_secret).await;
    assert_eq!(answer["code"], 0);
    assert_eq!(answer["expire"], 7200);
    let token = answer["tenant_access_token"].as_str().unwrap().to_string();
    assert!(token.starts_with("t-"));
    // More than 30 minutes left: the same token again.
    assert_eq!(feishu_token(&sandbox, app_id, app_secret).await["tenant_access_token"], token.as_str());

    let get = |path: &str, query: Vec<(&'static str, String)>, bearer: Option<String>| {
        let mut request = client().get(format!("{}{path}", sandbox.url())).query(&query);
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap())
        }
    };
    let users = "/open-apis/contact/v3/users/find_by_department";
    let (status, answer) = get(users, vec![("department_id", "od-sandbox-eng".into())], None).await;
    assert_eq!((status, answer["code"].as_i64()), (400, Some(99991661)));
    let (status, answer) = get(users, vec![("department_id", "od-sandbox-eng".into())], Some("t-forged".into())).await;
    assert_eq!((status, answer["code"].as_i64()), (400, Some(99991663)));

    let (status, first) = get(users, vec![("department_id", "od-sandbox-eng".into())], Some(token.clone())).await;
    assert_eq!(status, 200);
    assert_eq!(first["data"]["items"].as_array().unwrap().len(), 10);
    assert_eq!(first["data"]["has_more"], true);
    let page_token = first["data"]["page_token"].as_str().unwrap().to_string();
    let query = vec![("department_id", "od-sandbox-eng".to_string()), ("page_token", page_token)];
    let (_, second) = get(users, query, Some(token.clone())).await;
    assert_eq!(second["data"]["items"].as_array().unwrap().len(), 2);
    assert_eq!(second["data"]["has_more"], false);

    let departments = "/open-apis/contact/v3/departments";
    let (_, roots) = get(departments, vec![], Some(token.clone())).await;
    assert_eq!(roots["data"]["items"].as_array().unwrap().len(), 2);
    let (_, all) = get(departments, vec![("fetch_child", "true".into())], Some(token.clone())).await;
    assert_eq!(all["data"]["items"].as_array().unwrap().len(), 3);
    let (status, unknown) = get(users, vec![("department_id", "od-nope".into())], Some(token)).await;
    assert_eq!((status, unknown["code"].as_i64()), (400, Some(40004)));
    assert_eq!(sandbox.state().stats().feishu_tokens_issued, 2);
}

async fn juzibot(
    sandbox: &Sandbox,
    method: reqwest::Method,
    path: &str,
    query: &[(&str, &str)],
    body: Option<Value>,
) -> Value {
    let mut request = client().request(method, format!("{}{path}", sandbox.url())).query(query);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn juzibot_contact_ways_round_trip() {
    let sandbox = start().await;
    let token = DEFAULT_JUZIBOT_TOKEN;
    let post = reqwest::Method::POST;
    let get = reqwest::Method::GET;
    let add = json!({"type": 1, "scene": 2, "state": "teststate", "user": ["zhangsan"]});
    let answer =
        juzibot(&sandbox, post.clone(), "/api/v1/contactWay/add", &[("token", "nope")], Some(add.clone())).await;
    assert_eq!(answer["errcode"], 40001);
    let bad = json!({"type": 1, "scene": 2, "user": ["a", "b"]});
    let answer = juzibot(&sandbox, post.clone(), "/api/v1/contactWay/add", &[("token", token)], Some(bad)).await;
    assert_eq!(answer["errcode"], 40058);

    let added = juzibot(&sandbox, post.clone(), "/api/v1/contactWay/add", &[("token", token)], Some(add)).await;
    assert_eq!(added["errcode"], 0, "{added}");
    let config_id = added["config_id"].as_str().unwrap().to_string();
    assert!(added["qr_code"].as_str().unwrap().starts_with("http"));
    sandbox.state().wait_for_contact_ways(1, WAIT).await.unwrap();

    let got =
        juzibot(&sandbox, get.clone(), "/api/v1/contactWay/get", &[("token", token), ("config_id", &config_id)], None)
            .await;
    assert_eq!(got["contact_way"]["state"], "teststate");
    assert_eq!(got["contact_way"]["config_id"], config_id.as_str());
    let missing =
        juzibot(&sandbox, get.clone(), "/api/v1/contactWay/get", &[("token", token), ("config_id", "x")], None).await;
    assert_eq!(missing["errcode"], 41044);

    let listed =
        juzibot(&sandbox, post.clone(), "/api/v1/contactWay/list", &[("token", token)], Some(json!({"limit": 10})))
            .await;
    assert_eq!(listed["contact_way"], json!([{"config_id": config_id}]));
    assert_eq!(listed["next_cursor"], "");

    let channels =
        juzibot(&sandbox, get.clone(), "/api/v1/channel/list", &[("token", token), ("pageSize", "2")], None).await;
    assert_eq!(channels["data"].as_array().unwrap().len(), 2);
    assert_eq!(channels["total"], 3);
    let too_big = juzibot(&sandbox, get, "/api/v1/channel/list", &[("token", token), ("pageSize", "1001")], None).await;
    assert_eq!(too_big["errcode"], 40058);

    sandbox.state().push_fault(Fault::error_code(Provider::Juzibot, 50001).for_action("add")).unwrap();
    let add = json!({"type": 2, "scene": 1});
    let failed = juzibot(&sandbox, post, "/api/v1/contactWay/add", &[("token", token)], Some(add)).await;
    assert_eq!(failed["errcode"], 50001);
    assert_eq!(sandbox.state().contact_ways().len(), 1);
}

#[test]
fn error_code_faults_need_a_new_provider() {
    assert!(Fault::error_code(Provider::Feishu, 99991400).validate().is_ok());
    assert!(Fault::error_code(Provider::WecomRobot, 45009).validate().is_err());
    assert!(Fault::error_code(Provider::Juzibot, 0).validate().is_err());
    let parsed: Fault = serde_json::from_value(
        json!({"effect": {"type": "error_code", "code": 11232}, "provider": "feishu_robot", "key": "h"}),
    )
    .unwrap();
    assert_eq!(parsed, Fault::error_code(Provider::FeishuRobot, 11232).for_key("h"));
}

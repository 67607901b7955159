//! The fake Feishu app's contact writes over real HTTP: each action's answer and the codes its
//! rules refuse with (docs/providers/feishu.md#contact-writes).

mod common;

use common::{client, start};
use reqwest::Method;
use serde_json::{Value, json};
use yizhan_sandbox::{DEFAULT_FEISHU_APP, Sandbox};

const DEPARTMENTS: &str = "/open-apis/contact/v3/departments";
const USERS: &str = "/open-apis/contact/v3/users";

struct App {
    sandbox: Sandbox,
    token: String,
}

impl App {
    async fn start() -> App {
        let sandbox = start().await;
        let (app_id, app_secret) = DEFAULT_FEISHU_APP;
        let url = format!("{}/open-apis/auth/v3/tenant_access_token/internal", sandbox.url());
        let response = client().post(url).json(&json!({"app_id": app_id, "app_secret": app_secret})).send().await;
        let answer: Value = response.unwrap().json().await.unwrap();
        let token = answer["tenant_access_token"].as_str().unwrap().to_string();
        App { sandbox, token }
    }

    /// The HTTP status and Feishu's `code`, and the answer.
    async fn call(&self, method: Method, path: &str, query: &[(&str, &str)], body: Option<Value>) -> (u16, i64, Value) {
        let mut request =
            client().request(method, format!("{}{path}", self.sandbox.url())).query(query).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let answer: Value = response.json().await.unwrap();
        (status, answer["code"].as_i64().unwrap(), answer)
    }

    /// A `POST` (create) to `path`.
    async fn create(&self, path: &str, body: Value, query: &[(&str, &str)]) -> (u16, i64, Value) {
        self.call(Method::POST, path, query, Some(body)).await
    }
}

#[tokio::test]
async fn feishu_department_writes_follow_feishus_rules() {
    let app = App::start().await;
    let create = |body: Value, query: &'static [(&'static str, &'static str)]| app.create(DEPARTMENTS, body, query);
    let platform = json!({"name": "Platform", "parent_department_id": "0", "order": "5"});
    let (status, code, first) = create(platform.clone(), &[("client_token", "ct-1")]).await;
    assert_eq!((status, code), (200, 0), "{first}");
    let id = first["data"]["department"]["open_department_id"].as_str().unwrap().to_string();
    assert!(id.starts_with("od-"), "{id}");
    assert_eq!(first["data"]["department"]["order"], "5");
    // The same client_token and body: the first create's department, not a second one.
    let (_, code, again) = create(platform.clone(), &[("client_token", "ct-1")]).await;
    assert_eq!((code, again["data"]["department"]["open_department_id"].as_str()), (0, Some(id.as_str())));
    let other = json!({"name": "Other", "parent_department_id": "0"});
    let (status, code, _) = create(other, &[("client_token", "ct-1")]).await;
    assert_eq!((status, code), (400, 40021));
    assert_eq!(create(platform, &[]).await.1, 40018);
    let (status, code, _) = create(json!({"name": "X", "parent_department_id": "od-nope"}), &[]).await;
    assert_eq!((status, code), (403, 40014));
    assert_eq!(create(json!({"parent_department_id": "0"}), &[]).await.1, 99992402);
    let custom = |department_id: &str| json!({"name": department_id, "parent_department_id": "0", "department_id": department_id});
    assert_eq!(create(custom("od-mine"), &[]).await.1, 43008);
    assert_eq!(create(custom("team-a"), &[]).await.1, 0);
    let taken = json!({"name": "Team A again", "parent_department_id": "0", "department_id": "team-a"});
    assert_eq!(create(taken, &[]).await.1, 43007);
    let (status, code, _) = create(custom("team-b"), &[("department_id_type", "nope")]).await;
    assert_eq!((status, code), (400, 99992402));

    let at = |id: &str| format!("{DEPARTMENTS}/{id}");
    let (status, code, patched) = app
        .call(Method::PATCH, &at(&id), &[], Some(json!({"name": "Platform 2", "parent_department_id": "team-a"})))
        .await;
    assert_eq!((status, code), (200, 0), "{patched}");
    assert_eq!(patched["data"]["department"]["name"], "Platform 2");
    assert_eq!(patched["data"]["department"]["parent_department_id"], "team-a");
    let (status, code, _) = app.call(Method::PATCH, &at("od-nope"), &[], Some(json!({"name": "N"}))).await;
    assert_eq!((status, code), (403, 40004));
    let (_, code, _) = app
        .call(
            Method::PATCH,
            &at("od-sandbox-sre"),
            &[],
            Some(json!({"name": "Operations", "parent_department_id": "0"})),
        )
        .await;
    assert_eq!(code, 40018);

    assert_eq!(app.call(Method::DELETE, &at("0"), &[], None).await.1, 40002);
    assert_eq!(app.call(Method::DELETE, &at("od-sandbox-eng"), &[], None).await.1, 43011);
    assert_eq!(app.call(Method::DELETE, &at("team-a"), &[], None).await.1, 43012);
    let (status, code, deleted) = app.call(Method::DELETE, &at(&id), &[], None).await;
    assert_eq!((status, code, &deleted["data"]), (200, 0, &json!({})));
    assert_eq!(app.call(Method::DELETE, &at(&id), &[], None).await.1, 40004);

    let (status, code, _) = app.call(Method::GET, &at("team-a"), &[], None).await;
    assert_eq!((status, code), (400, 99991400));
    let (status, code, _) = app.call(Method::POST, &at("team-a"), &[], Some(json!({}))).await;
    assert_eq!((status, code), (400, 99991400));
    let anonymous = client().delete(format!("{}{}", app.sandbox.url(), at("team-a"))).send().await.unwrap();
    assert_eq!(anonymous.status().as_u16(), 400);
    assert_eq!(anonymous.json::<Value>().await.unwrap()["code"], 99991661);
}

#[tokio::test]
async fn feishu_user_writes_follow_feishus_rules() {
    let app = App::start().await;
    let create = |body: Value, query: &'static [(&'static str, &'static str)]| app.create(USERS, body, query);
    let ada = json!({"name": "Ada", "mobile": "+8613800000001", "email": "ada@example.com",
                     "department_ids": ["od-sandbox-eng"], "employee_type": 1, "user_id": "ada"});
    let (status, code, first) = create(ada.clone(), &[("client_token", "ct-ada")]).await;
    assert_eq!((status, code), (200, 0), "{first}");
    assert_eq!(first["data"]["user"]["open_id"], "ou_ada");
    assert_eq!(first["data"]["user"]["status"]["is_frozen"], false);
    assert_eq!(create(ada.clone(), &[("client_token", "ct-ada")]).await.2["data"], first["data"]);
    assert_eq!(create(ada.clone(), &[]).await.1, 41011);
    let with = |field: &str, value: Value| {
        let mut body = json!({"name": "Bob", "mobile": "+8613800000002", "department_ids": ["od-sandbox-eng"],
                              "employee_type": 1});
        body[field] = value;
        body
    };
    assert_eq!(create(with("mobile", json!("+8613800000001")), &[]).await.1, 41001);
    assert_eq!(create(with("email", json!("ada@example.com")), &[]).await.1, 41002);
    assert_eq!(create(with("mobile", json!("")), &[]).await.1, 41010);
    assert_eq!(create(with("employee_type", json!(9)), &[]).await.1, 41059);
    assert_eq!(create(with("department_ids", json!(["od-nope"])), &[]).await.1, 40004);
    assert_eq!(create(with("name", json!("")), &[]).await.1, 99992402);
    assert_eq!(create(with("name", json!("Bob")), &[("user_id_type", "nope")]).await.1, 99992402);

    let (status, code, frozen) = app
        .call(Method::PATCH, &format!("{USERS}/ou_ada"), &[], Some(json!({"is_frozen": true, "job_title": "CTO"})))
        .await;
    assert_eq!((status, code), (200, 0), "{frozen}");
    assert_eq!(frozen["data"]["user"]["status"]["is_frozen"], true);
    assert_eq!(frozen["data"]["user"]["job_title"], "CTO");
    let by_user_id = [("user_id_type", "user_id")];
    let (_, code, renamed) =
        app.call(Method::PATCH, &format!("{USERS}/ada"), &by_user_id, Some(json!({"name": "Ada L"}))).await;
    assert_eq!((code, &renamed["data"]["user"]["name"]), (0, &json!("Ada L")));
    let (status, code, _) =
        app.call(Method::PATCH, &format!("{USERS}/ou_nobody"), &[], Some(json!({"name": "N"}))).await;
    assert_eq!((status, code), (403, 41050));

    let (_, code, _) = app.call(Method::DELETE, &format!("{USERS}/on_ada"), &[("user_id_type", "bogus")], None).await;
    assert_eq!(code, 99992402);
    let (status, code, deleted) =
        app.call(Method::DELETE, &format!("{USERS}/on_ada"), &[("user_id_type", "union_id")], None).await;
    assert_eq!((status, code, &deleted["data"]), (200, 0, &json!({})));
    assert_eq!(app.call(Method::DELETE, &format!("{USERS}/ou_ada"), &[], None).await.1, 41050);
    let (status, code, _) = app.call(Method::GET, USERS, &[], None).await;
    assert_eq!((status, code), (400, 99991400));
}

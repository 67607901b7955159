//! `feishu` against wiremock: the token request, its cache and single flight, the exact request of
//! every catalog action, and the mapping of answers. No reason may contain the secret or a token.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::{Feishu, TOKEN_PATH};
use crate::connectors::testkit::{Kit, json_body};
use crate::connectors::{Failure, http};

const APP_ID: &str = "cli_slkdjalasdkjasd";
const APP_SECRET: &str = "dskLLdkasdjlasdKK";
const TOKEN: &str = "t-caecc734c2e3328a62489fe0648c4b98779515d3";
const KIT: Kit = Kit { kind: "feishu", secrets: &[APP_SECRET, TOKEN] };

fn app(server: &MockServer) -> Feishu {
    let text = format!(
        "[connectors.feishu.hr]\napp_id = \"{APP_ID}\"\napp_secret = \"{APP_SECRET}\"\nendpoint = \"{}\"\n",
        server.uri()
    );
    KIT.build(&text, "hr", |config| Feishu::new(config, http::client()))
}

fn token_answer(token: &str, expire: u64) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .set_body_json(json!({"code": 0, "msg": "ok", "tenant_access_token": token, "expire": expire}))
}

async fn mount_token(server: &MockServer, template: ResponseTemplate) {
    Mock::given(method("POST")).and(path(TOKEN_PATH)).respond_with(template).mount(server).await;
}

fn data(data: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"code": 0, "msg": "success", "data": data}))
}

async fn token_requests(server: &MockServer) -> usize {
    server.received_requests().await.unwrap().iter().filter(|r| r.url.path() == TOKEN_PATH).count()
}

#[tokio::test]
async fn list_department_users_pages_with_the_tenant_token() {
    let server = MockServer::start().await;
    mount_token(&server, token_answer(TOKEN, 7200)).await;
    let page = json!({"has_more": true, "page_token": "AQD9/Rn9eij9Pm39ED40/RD", "items": [{"user_id": "u1", "name": "张三"}]});
    Mock::given(method("GET"))
        .and(path("/open-apis/contact/v3/users/find_by_department"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(data(page.clone()))
        .mount(&server)
        .await;
    let params = json!({"department_id": "od-4e6ac4d14bcd5071a37a39de902c7141", "page_token": "AQD9", "page_size": 10});
    let success = KIT.run(&app(&server), "list_department_users", &params).await.unwrap();
    assert_eq!(success.result, Some(page));

    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2);
    let token_request = &requests[0];
    assert_eq!(token_request.method.as_str(), "POST");
    assert_eq!(token_request.url.path(), TOKEN_PATH);
    assert_eq!(token_request.headers.get("content-type").unwrap(), "application/json");
    assert_eq!(json_body(token_request), json!({"app_id": APP_ID, "app_secret": APP_SECRET}));
    let request = &requests[1];
    assert_eq!(request.method.as_str(), "GET");
    assert_eq!(
        request.url.query(),
        Some("department_id=od-4e6ac4d14bcd5071a37a39de902c7141&page_size=10&page_token=AQD9")
    );
    assert!(request.body.is_empty());
}

#[tokio::test]
async fn list_departments() {
    let server = MockServer::start().await;
    mount_token(&server, token_answer(TOKEN, 7200)).await;
    let page = json!({"has_more": false, "items": [{"department_id": "od-1", "name": "研发"}]});
    Mock::given(method("GET"))
        .and(path("/open-apis/contact/v3/departments"))
        .and(query_param("parent_department_id", "0"))
        .and(query_param("fetch_child", "true"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(data(page.clone()))
        .mount(&server)
        .await;
    let success = KIT
        .run(&app(&server), "list_departments", &json!({"parent_department_id": "0", "fetch_child": true}))
        .await
        .unwrap();
    assert_eq!(success.result, Some(page));
}

#[tokio::test]
async fn the_token_is_cached_and_fetched_once_for_concurrent_jobs() {
    let server = MockServer::start().await;
    mount_token(&server, token_answer(TOKEN, 7200).set_delay(Duration::from_millis(200))).await;
    Mock::given(method("GET")).respond_with(data(json!({"items": []}))).mount(&server).await;
    let app = Arc::new(app(&server));
    let mut jobs = Vec::new();
    for _ in 0..10 {
        let app = app.clone();
        jobs.push(tokio::spawn(async move {
            KIT.run(&*app, "list_department_users", &json!({"department_id": "od-1"})).await.unwrap();
        }));
    }
    for job in jobs {
        job.await.unwrap();
    }
    KIT.run(&*app, "list_departments", &json!({})).await.unwrap();
    assert_eq!(token_requests(&server).await, 1);
}

#[tokio::test]
async fn a_token_with_less_than_30_minutes_left_is_refreshed() {
    let server = MockServer::start().await;
    // 1800 s of validity is already inside the refresh margin.
    mount_token(&server, token_answer(TOKEN, 1800)).await;
    Mock::given(method("GET")).respond_with(data(json!({"items": []}))).mount(&server).await;
    let app = app(&server);
    KIT.run(&app, "list_departments", &json!({})).await.unwrap();
    KIT.run(&app, "list_departments", &json!({})).await.unwrap();
    assert_eq!(token_requests(&server).await, 2);
}

#[tokio::test]
async fn an_invalid_token_is_dropped_and_the_job_retried() {
    let server = MockServer::start().await;
    mount_token(&server, token_answer(TOKEN, 7200)).await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_json(json!({"code": 99991663, "msg": format!("invalid token {TOKEN}")})),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET")).respond_with(data(json!({"items": []}))).mount(&server).await;
    let app = app(&server);
    let failure = KIT.run(&app, "list_departments", &json!({})).await.unwrap_err();
    assert!(matches!(failure, Failure::Transient { .. }), "{failure:?}");
    assert!(failure.reason().starts_with("code 99991663"), "{}", failure.reason());
    KIT.run(&app, "list_departments", &json!({})).await.unwrap();
    assert_eq!(token_requests(&server).await, 2);
}

#[tokio::test]
async fn bad_app_credentials_are_permanent() {
    let server = MockServer::start().await;
    mount_token(&server, ResponseTemplate::new(200).set_body_json(json!({"code": 10014, "msg": "app secret invalid"})))
        .await;
    let failure = KIT.run(&app(&server), "list_departments", &json!({})).await.unwrap_err();
    assert_eq!(failure, Failure::permanent("tenant_access_token: code 10014: app secret invalid"));
}

#[tokio::test]
async fn rate_limits_honour_the_reset_header() {
    let server = MockServer::start().await;
    mount_token(&server, token_answer(TOKEN, 7200)).await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("x-ogw-ratelimit-reset", "6")
                .set_body_json(json!({"code": 99991400, "msg": "request trigger frequency limit"})),
        )
        .mount(&server)
        .await;
    let failure = KIT.run(&app(&server), "list_departments", &json!({})).await.unwrap_err();
    assert!(
        matches!(failure, Failure::Throttled { retry_after: Some(d), .. } if d == Duration::from_secs(6)),
        "{failure:?}"
    );

    let server = MockServer::start().await;
    mount_token(&server, token_answer(TOKEN, 7200)).await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"code": 40004, "msg": "no dept authority"})))
        .mount(&server)
        .await;
    let failure = KIT.run(&app(&server), "list_departments", &json!({})).await.unwrap_err();
    assert_eq!(failure, Failure::permanent("code 40004: no dept authority"));
}

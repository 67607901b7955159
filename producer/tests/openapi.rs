//! The server and `producer/openapi.json` agree: every documented path and method exists and
//! answers a status documented for it, and every route of the server is documented.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Value, json};
use yizhan_producer::api::{ApiMetrics, ApiState, Limits, OPENAPI, ROUTES, router};
use yizhan_producer::auth::Tokens;

const TOKEN: &str = "openapi-test-token";

/// A server without a broker (so POST answers 503, which the document lists) on a free port.
async fn start() -> String {
    let store = yizhan_state::open("sqlite::memory:", "openapi").await.unwrap();
    let state = ApiState {
        producer: Arc::new(tokio::sync::OnceCell::new()),
        store,
        parking: yizhan_state::open_parking("sqlite::memory:", "openapi").await.unwrap(),
        tokens: Arc::new(Tokens::parse(Some(TOKEN), &|_| None).unwrap()),
        limits: Limits { max_body: 1024, max_batch: 2 },
        metrics: ApiMetrics::new(),
        callback_allow: Default::default(),
        receipt_tokens: Default::default(),
        wecom_callbacks: Default::default(),
        quotas: Default::default(),
        dead_letters: Default::default(),
        reload: Default::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });
    format!("http://{addr}")
}

fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            out.insert((method.to_uppercase(), path.clone()));
        }
    }
    out
}

#[tokio::test]
async fn every_route_is_documented_and_answers_a_documented_status() {
    yizhan_broker::install_crypto_provider();
    let doc: Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
    assert_eq!(doc["openapi"], "3.1.0");
    let served: BTreeSet<(String, String)> = ROUTES.iter().map(|(m, p, _)| (m.to_string(), p.to_string())).collect();
    assert_eq!(served, documented(&doc), "server routes and documented operations differ");

    let base = start().await;
    let client = reqwest::Client::new();
    let job = json!({"connector": "wecom_robot", "config": "ops", "action": "send_text", "params": {"content": "x"}});
    let invalid = json!([job, {"connector": "nope"}]);
    let too_many = json!([job, job, job]);
    for &(method, path, auth) in ROUTES {
        let operation = &doc["paths"][path][method.to_lowercase()];
        let listed: BTreeSet<String> = operation["responses"].as_object().unwrap().keys().cloned().collect();
        let url = format!("{base}{}", path.replace("{id}", &uuid::Uuid::now_v7().to_string()));
        let mut bodies = vec![None];
        if method == "POST" {
            bodies = vec![Some(job.clone()), Some(invalid.clone()), Some(too_many.clone())];
        }
        for body in bodies {
            let mut request = client.request(method.parse().unwrap(), &url).bearer_auth(TOKEN);
            if let Some(body) = &body {
                request = request.json(body);
            }
            let status = request.send().await.unwrap().status();
            assert!(listed.contains(status.as_str()), "{method} {path} answered {status}, documented: {listed:?}");
        }
        let anonymous = client.request(method.parse().unwrap(), &url).send().await.unwrap().status();
        if auth {
            assert_eq!(anonymous, 401, "{method} {path} without a token");
            assert!(listed.contains("401"), "{method} {path} documents 401");
            assert!(operation.get("security").is_none(), "{method} {path} uses the global bearer security");
        } else {
            assert_eq!(operation["security"], json!([]), "{method} {path} is documented as open");
            assert!(listed.contains(anonymous.as_str()), "{method} {path} answered {anonymous} without a token");
        }
    }
    let malformed = client.get(format!("{base}/v1/jobs/not-a-uuid")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(malformed.status(), 400);
    let big = client.post(format!("{base}/v1/jobs")).bearer_auth(TOKEN).body(vec![b' '; 4096]).send().await.unwrap();
    assert_eq!(big.status(), 413);
    assert_eq!(client.get(format!("{base}/v1/nothing")).send().await.unwrap().status(), 404);
}

//! A webhook target for the directory-sync tests: a real HTTP server on port 0 that keeps each
//! request's `X-Yizhan-Signature` and body, in the order they came.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use serde_json::Value;

/// What came in: (signature header, body).
type Calls = Arc<Mutex<Vec<(String, Bytes)>>>;

/// A running receiver at [`Webhook::url`]; it serves until the test's runtime ends.
#[derive(Clone)]
pub struct Webhook {
    /// Where to point a `webhook_url` (path `/directory`).
    pub url: String,
    calls: Calls,
}

impl Webhook {
    /// Starts a receiver that answers every POST with 200.
    pub async fn start() -> Webhook {
        let calls = Calls::default();
        let app = axum::Router::new()
            .route(
                "/directory",
                axum::routing::post(|State(calls): State<Calls>, headers: HeaderMap, body: Bytes| async move {
                    let signature = headers.get("x-yizhan-signature").and_then(|v| v.to_str().ok()).unwrap_or_default();
                    calls.lock().unwrap().push((signature.to_string(), body));
                    "ok"
                }),
            )
            .with_state(calls.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/directory", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Webhook { url, calls }
    }

    /// Every request so far: (signature header, raw body).
    pub fn calls(&self) -> Vec<(String, Bytes)> {
        self.calls.lock().unwrap().clone()
    }

    /// How many requests came so far.
    pub fn len(&self) -> usize {
        self.calls.lock().unwrap().len()
    }

    /// Whether none came.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every body so far as JSON, each checked to be signed with `secret` as the sync signs it.
    pub fn bodies_signed_with(&self, secret: &str) -> Vec<Value> {
        self.calls()
            .iter()
            .map(|(signature, body)| {
                let expected = yizhan_worker::connectors::directory_sync::target::signature(secret, body);
                assert_eq!(signature, &expected, "a webhook request not signed with its secret");
                serde_json::from_slice(body).expect("a JSON body")
            })
            .collect()
    }
}

//! The dead-letter endpoints (scope `dlq`); a scoped token sees, replays and purges only its
//! tenant's letters (a letter whose job names no tenant is tenant `default`'s), and another
//! tenant's letters are as absent to it:
//!
//! - `GET /v1/dlq`: `{"letters": [...]}`, each as `yizhan-producer dlq list --json` shows it.
//! - `POST /v1/dlq/replay`: `{"ids": [...]}` or `{"all": true}`: `{"replayed": [...], "failed": [...]}`.
//! - `POST /v1/dlq/purge`: `{"purged": n}`.
//!
//! Each call opens its own broker connection (these are rare operator calls) and they run one at
//! a time: reading the queue takes every message out and puts the kept ones back.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use tracing::warn;

use yizhan_state::StateStore;

use super::problem::error;
use crate::auth::Principal;
use crate::dlq::{DeadLetter, Dlq};

/// Where the dead-letter queue is, and the lock that keeps its readers one at a time.
#[derive(Default)]
pub struct DeadLetterAccess {
    /// The broker URL(s); empty: the endpoints answer 503.
    pub amqp_url: String,
    /// The deployment's names.
    pub names: Option<yizhan_broker::Names>,
    busy: tokio::sync::Mutex<()>,
}

/// What the dead-letter handlers need of the API's state.
#[derive(Clone)]
pub struct DeadLetterState {
    /// Where the queue is, and its readers' lock.
    pub access: Arc<DeadLetterAccess>,
    /// The state store, whose tenant registry scopes the letters.
    pub store: Arc<dyn StateStore>,
}

impl DeadLetterAccess {
    /// Access to the dead-letter queue of `names` on `amqp_url`.
    pub fn new(amqp_url: String, names: yizhan_broker::Names) -> DeadLetterAccess {
        DeadLetterAccess { amqp_url, names: Some(names), busy: tokio::sync::Mutex::new(()) }
    }

    /// Waits for the readers' lock: every reader of the queue (these endpoints, the console)
    /// holds it, since a read takes every message out and puts the kept ones back.
    pub async fn one_at_a_time(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.busy.lock().await
    }
}

fn unavailable(e: &dyn std::fmt::Display) -> Response {
    warn!(error = %e, "dead-letter queue");
    error(StatusCode::SERVICE_UNAVAILABLE, "the broker is unreachable")
}

async fn connect(state: &DeadLetterState) -> Result<Dlq, Response> {
    let access = &state.access;
    let Some(names) = access.names.clone() else {
        return Err(error(StatusCode::SERVICE_UNAVAILABLE, "no broker is configured"));
    };
    match Dlq::connect(&access.amqp_url, names).await {
        Ok(dlq) => Ok(dlq.with_tenants(state.store.clone())),
        Err(e) => Err(unavailable(&e)),
    }
}

/// `GET /v1/dlq`.
pub async fn list(State(state): State<DeadLetterState>, Extension(principal): Extension<Arc<Principal>>) -> Response {
    let _one_at_a_time = state.access.busy.lock().await;
    let dlq = match connect(&state).await {
        Ok(dlq) => dlq,
        Err(response) => return response,
    };
    match dlq.list().await {
        Ok(letters) => {
            let letters: Vec<DeadLetter> = letters.into_iter().filter(|l| principal.owns(l.tenant())).collect();
            Json(json!({"letters": letters})).into_response()
        }
        Err(e) => unavailable(&e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayRequest {
    #[serde(default)]
    ids: Vec<String>,
    #[serde(default)]
    all: bool,
}

/// `POST /v1/dlq/replay`.
pub async fn replay(
    State(state): State<DeadLetterState>,
    Extension(principal): Extension<Arc<Principal>>,
    body: Bytes,
) -> Response {
    let request: ReplayRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return error(StatusCode::BAD_REQUEST, format!("$: expected {{\"ids\": [...]}} or {{\"all\": true}}: {e}"));
        }
    };
    if request.ids.is_empty() != request.all {
        return error(StatusCode::BAD_REQUEST, "$: name the ids to replay, or set all (not both)");
    }
    let _one_at_a_time = state.access.busy.lock().await;
    let dlq = match connect(&state).await {
        Ok(dlq) => dlq,
        Err(response) => return response,
    };
    let select = |letter: &DeadLetter| {
        principal.owns(letter.tenant())
            && (request.all || letter.id.as_ref().is_some_and(|id| request.ids.contains(id)))
    };
    match dlq.replay(&select).await {
        Ok(report) => {
            let target = if request.all { "all".to_string() } else { request.ids.join(",") };
            crate::audit::record(&principal, &format!("dlq replay ({} replayed)", report.replayed.len()), &target);
            Json(json!({"replayed": report.replayed, "failed": report.failed})).into_response()
        }
        Err(e) => unavailable(&e),
    }
}

/// `POST /v1/dlq/purge`.
pub async fn purge(State(state): State<DeadLetterState>, Extension(principal): Extension<Arc<Principal>>) -> Response {
    let _one_at_a_time = state.access.busy.lock().await;
    let dlq = match connect(&state).await {
        Ok(dlq) => dlq,
        Err(response) => return response,
    };
    let purged = match &principal.tenant {
        None => dlq.purge().await.map(u64::from),
        Some(_) => dlq.discard(&|letter| principal.owns(letter.tenant())).await.map(|ids| ids.len() as u64),
    };
    match purged {
        Ok(purged) => {
            crate::audit::record(&principal, &format!("dlq purge ({purged} deleted)"), "dead-letter queue");
            Json(json!({"purged": purged})).into_response()
        }
        Err(e) => unavailable(&e),
    }
}

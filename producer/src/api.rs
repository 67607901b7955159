//! `yizhan-producer serve`: the HTTP API (see `producer/openapi.json`).
//!
//! - `POST /v1/jobs`: one job or an array; every item is validated before any is published; 202 with
//!   the ids once the broker confirmed them all, 400 with the errors per item and nothing enqueued,
//!   413 past the body or batch limit, 503 while the broker is unreachable or not confirming.
//! - `GET /v1/jobs/{id}`: the job's status from the state store the workers write; `queued` for a
//!   job this API accepted that no worker has taken yet (the API records the ids the broker
//!   confirmed, one store round trip per request); 404 for an id neither knows (never submitted,
//!   or published straight to AMQP by another client and not taken yet).
//! - `DELETE /v1/jobs/{id}`: cancels a job that has not started (200), 409 with the status of one
//!   that has, 404 for an id neither the store nor this API knows.
//! - The campaign endpoints, `/v1/campaigns...` (see [`campaigns`]).
//! - `POST /v1/receipts/tencent_sms/{config}?token=`: the SMS status callback, open (the config's
//!   `receipt_token` authenticates it; see [`crate::receipts`]).
//! - `GET|POST /v1/events/wecom/{config}`: WeCom's contact-change callback, open (WeCom's
//!   signature and AES authenticate it; see [`crate::wecom_events`]).
//! - `GET /v1/catalog`, and unauthenticated `GET /healthz`, `/readyz` (broker connected), `/metrics`.

pub mod campaigns;
pub mod dead_letters;
mod problem;
pub mod quota;
pub mod reload;
mod scope;
mod trace;

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Extension, FromRef, MatchedPath, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post};
use prometheus::{Encoder, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};
use serde_json::{Value, json};
use tokio::sync::OnceCell;
use tracing::{info, warn};
use uuid::Uuid;
use yizhan_schemas::{Job, MissingId, validate_job_value};
use yizhan_state::{CancelOutcome, JobStatus, ParkingLot, StateStore};

use self::campaigns::{CampaignMetrics, CampaignState};
use self::problem::error;

use crate::Producer;
use crate::auth::{Principal, Tokens};

/// Every route: (method, path, needs a bearer token). The router is built from this table, and the
/// OpenAPI test checks it against `openapi.json`, so the three cannot drift apart.
pub const ROUTES: &[(&str, &str, bool)] = &[
    ("POST", "/v1/jobs", true),
    ("GET", "/v1/jobs/{id}", true),
    ("DELETE", "/v1/jobs/{id}", true),
    ("POST", "/v1/campaigns", true),
    ("POST", "/v1/campaigns/{id}/recipients", true),
    ("GET", "/v1/campaigns/{id}", true),
    ("POST", "/v1/campaigns/{id}/pause", true),
    ("POST", "/v1/campaigns/{id}/resume", true),
    ("POST", "/v1/campaigns/{id}/cancel", true),
    ("POST", crate::receipts::ROUTE, false),
    ("GET", crate::wecom_events::ROUTE, false),
    ("POST", crate::wecom_events::ROUTE, false),
    ("GET", "/v1/dlq", true),
    ("POST", "/v1/dlq/replay", true),
    ("POST", "/v1/dlq/purge", true),
    ("GET", "/v1/catalog", true),
    ("POST", "/v1/admin/reload", true),
    ("GET", "/healthz", false),
    ("GET", "/readyz", false),
    ("GET", "/metrics", false),
];

/// The OpenAPI document, as checked in.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// How long a batch may wait for the broker's confirms before the request answers 503.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// Limits of `POST /v1/jobs`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body in bytes (`--http-max-body`); a larger one is answered 413.
    pub max_body: usize,
    /// Most jobs in one array (`--http-max-batch`); more is answered 413.
    pub max_batch: usize,
}

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// Set once the first connection succeeded; empty while the broker has never been reachable.
    pub producer: Arc<OnceCell<Producer>>,
    /// The workers' state store, read by `GET /v1/jobs/{id}`; accepted ids are recorded in it.
    pub store: Arc<dyn StateStore>,
    /// The parking lot of the same store: a campaign's resume and cancel wake its parked jobs.
    pub parking: Arc<dyn ParkingLot>,
    /// The bearer tokens the protected routes accept.
    pub tokens: Arc<Tokens>,
    /// Limits of `POST /v1/jobs`.
    pub limits: Limits,
    /// Counters served at `/metrics`.
    pub metrics: ApiMetrics,
    /// The hosts completion callbacks may reach (`YIZHAN_CALLBACK_ALLOW`); a job or campaign with
    /// another is refused.
    pub callback_allow: Arc<yizhan_broker::CallbackAllow>,
    /// The `receipt_token` of each SMS config whose receipts are pushed to this API.
    pub receipt_tokens: Arc<crate::receipts::ReceiptTokens>,
    /// The change-event callback settings of the WeCom configs (`POST /v1/events/wecom/{config}`).
    pub wecom_callbacks: Arc<crate::wecom_events::WecomCallbacks>,
    /// The tenants' submission quotas (their limits are in `tokens`).
    pub quotas: Arc<quota::Quotas>,
    /// Where the dead-letter endpoints find the queue.
    pub dead_letters: Arc<dead_letters::DeadLetterAccess>,
    /// What `POST /v1/admin/reload` and SIGHUP read again.
    pub reload: Arc<reload::Reload>,
}

/// The producer's own metrics (no label carries a job id or a token).
#[derive(Clone)]
pub struct ApiMetrics {
    registry: Registry,
    requests: IntCounterVec,
    jobs: IntCounterVec,
    broker_connected: IntGauge,
    campaigns: CampaignMetrics,
}

impl ApiMetrics {
    /// A fresh registry with every counter at zero (one per API instance, not the global registry).
    pub fn new() -> ApiMetrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("yizhan_producer_http_requests_total", "HTTP requests by route and status"),
            &["route", "status"],
        )
        .expect("valid metric");
        let jobs = IntCounterVec::new(
            Opts::new("yizhan_producer_jobs_total", "Jobs by outcome: accepted, rejected, unconfirmed"),
            &["outcome"],
        )
        .expect("valid metric");
        let broker_connected =
            IntGauge::new("yizhan_producer_broker_connected", "1 while connected to the broker").expect("valid metric");
        for collector in [Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>, Box::new(jobs.clone())] {
            registry.register(collector).expect("metric registered once");
        }
        registry.register(Box::new(broker_connected.clone())).expect("metric registered once");
        let campaigns = CampaignMetrics::new();
        registry.register(Box::new(campaigns.jobs.clone())).expect("metric registered once");
        registry.register(Box::new(campaigns.events.clone())).expect("metric registered once");
        ApiMetrics { registry, requests, jobs, broker_connected, campaigns }
    }

    fn jobs(&self, outcome: &str, n: usize) {
        self.jobs.with_label_values(&[outcome]).inc_by(n as u64);
    }
}

impl Default for ApiMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl FromRef<ApiState> for crate::receipts::ReceiptState {
    fn from_ref(state: &ApiState) -> crate::receipts::ReceiptState {
        crate::receipts::ReceiptState {
            store: state.store.clone(),
            producer: state.producer.clone(),
            tokens: state.receipt_tokens.clone(),
        }
    }
}

impl FromRef<ApiState> for crate::wecom_events::EventState {
    fn from_ref(state: &ApiState) -> crate::wecom_events::EventState {
        crate::wecom_events::EventState { producer: state.producer.clone(), callbacks: state.wecom_callbacks.clone() }
    }
}

impl FromRef<ApiState> for CampaignState {
    fn from_ref(state: &ApiState) -> CampaignState {
        CampaignState {
            producer: state.producer.clone(),
            store: state.store.clone(),
            parking: state.parking.clone(),
            metrics: state.metrics.campaigns.clone(),
            callback_allow: state.callback_allow.clone(),
            tokens: state.tokens.clone(),
            quotas: state.quotas.clone(),
        }
    }
}

impl FromRef<ApiState> for dead_letters::DeadLetterState {
    fn from_ref(state: &ApiState) -> dead_letters::DeadLetterState {
        dead_letters::DeadLetterState { access: state.dead_letters.clone(), store: state.store.clone() }
    }
}

impl FromRef<ApiState> for reload::ReloadState {
    fn from_ref(state: &ApiState) -> reload::ReloadState {
        reload::ReloadState {
            reload: state.reload.clone(),
            tokens: state.tokens.clone(),
            producer: state.producer.clone(),
        }
    }
}

/// The API's router.
pub fn router(state: ApiState) -> Router {
    let mut protected = Router::new();
    let mut open = Router::new();
    for &(method, path, auth) in ROUTES {
        let handler: MethodRouter<ApiState> = match (method, path) {
            ("POST", "/v1/jobs") => post(post_jobs),
            ("GET", "/v1/jobs/{id}") => get(get_job),
            ("DELETE", "/v1/jobs/{id}") => delete(delete_job),
            ("POST", "/v1/campaigns") => post(campaigns::post_campaign),
            ("POST", "/v1/campaigns/{id}/recipients") => post(campaigns::post_recipients),
            ("GET", "/v1/campaigns/{id}") => get(campaigns::get_campaign),
            ("POST", "/v1/campaigns/{id}/pause") => post(campaigns::pause),
            ("POST", "/v1/campaigns/{id}/resume") => post(campaigns::resume),
            ("POST", "/v1/campaigns/{id}/cancel") => post(campaigns::cancel),
            ("POST", crate::receipts::ROUTE) => post(crate::receipts::post_receipts),
            ("GET", crate::wecom_events::ROUTE) => get(crate::wecom_events::verify_url),
            ("POST", crate::wecom_events::ROUTE) => post(crate::wecom_events::post_event),
            ("GET", "/v1/dlq") => get(dead_letters::list),
            ("POST", "/v1/dlq/replay") => post(dead_letters::replay),
            ("POST", "/v1/dlq/purge") => post(dead_letters::purge),
            ("GET", "/v1/catalog") => get(get_catalog),
            ("POST", "/v1/admin/reload") => post(reload::post_reload),
            ("GET", "/healthz") => get(healthz),
            ("GET", "/readyz") => get(readyz),
            ("GET", "/metrics") => get(metrics),
            other => unreachable!("ROUTES lists {other:?} without a handler"),
        };
        if auth {
            protected = protected.route(path, handler);
        } else {
            open = open.route(path, handler);
        }
    }
    let protected = protected.route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    protected
        .merge(open)
        .layer(middleware::from_fn(trace::server_span))
        .layer(middleware::from_fn_with_state(state.clone(), count_requests))
        .layer(middleware::from_fn(limit_headers))
        .layer(DefaultBodyLimit::max(state.limits.max_body))
        .with_state(state)
}

/// Most header bytes (names and values) of one request; hyper's own limit is far larger.
const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Most headers in one request.
const MAX_HEADERS: usize = 64;

/// 431 for a request with more than [`MAX_HEADERS`] headers or [`MAX_HEADER_BYTES`] of them,
/// before any handler or token check runs.
async fn limit_headers(request: Request, next: Next) -> Response {
    let headers = request.headers();
    let bytes: usize = headers.iter().map(|(name, value)| name.as_str().len() + value.len()).sum();
    if headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        return error(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("at most {MAX_HEADERS} headers and {MAX_HEADER_BYTES} bytes of them are accepted"),
        );
    }
    next.run(request).await
}

/// 401 without a known token, 403 when the token lacks the route's scope; else the request goes on
/// with the token's [`Principal`] as an extension.
async fn require_token(State(state): State<ApiState>, mut request: Request, next: Next) -> Response {
    let Some(principal) = state.tokens.authenticate_header(request.headers().get(header::AUTHORIZATION)) else {
        let mut response = error(StatusCode::UNAUTHORIZED, "a valid `Authorization: Bearer <token>` is required");
        response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        return response;
    };
    let route = request.extensions().get::<MatchedPath>().map_or("", MatchedPath::as_str);
    if let Some(scope) = scope::required_scope(request.method(), route)
        && !principal.can.has(scope)
    {
        return error(StatusCode::FORBIDDEN, format!("this token lacks the scope {:?}", scope.as_str()));
    }
    request.extensions_mut().insert(principal);
    next.run(request).await
}

async fn count_requests(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    // The matched route template, never the concrete path (which would carry job ids).
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_string();
    let response = next.run(request).await;
    state.metrics.requests.with_label_values(&[&route, response.status().as_str()]).inc();
    response
}

async fn post_jobs(
    State(state): State<ApiState>,
    Extension(principal): Extension<Arc<Principal>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return error(rejection.status(), rejection.body_text()),
    };
    let value: Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(e) => {
            let errors = json!([{"index": 0, "path": "$", "reason": format!("not JSON: {e}")}]);
            return (StatusCode::BAD_REQUEST, axum::Json(json!({"errors": errors}))).into_response();
        }
    };
    let items = match value {
        Value::Array(items) => items,
        single => vec![single],
    };
    if items.is_empty() {
        return error(StatusCode::BAD_REQUEST, "the array holds no job");
    }
    if items.len() > state.limits.max_batch {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{} jobs in one request; at most {} are allowed", items.len(), state.limits.max_batch),
        );
    }

    // Every item first: one invalid item means nothing of the request is enqueued.
    let mut jobs: Vec<Job> = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (index, item) in items.iter().enumerate() {
        match validate_job_value(item, MissingId::Assign) {
            Ok(job) if job.callback.is_some() => {
                match crate::callbacks::refusal(&state.callback_allow, job.callback.as_ref()) {
                    None => jobs.push(job),
                    Some(e) => errors.push(json!({"index": index, "path": e.path, "reason": e.reason})),
                }
            }
            Ok(job) => jobs.push(job),
            Err(field_errors) => errors
                .extend(field_errors.into_iter().map(|e| json!({"index": index, "path": e.path, "reason": e.reason}))),
        }
    }
    if !errors.is_empty() {
        state.metrics.jobs("rejected", items.len());
        return (StatusCode::BAD_REQUEST, axum::Json(json!({"errors": errors}))).into_response();
    }
    let refused = scope::authorize_jobs(&principal, &items, &mut jobs);
    if !refused.is_empty() {
        state.metrics.jobs("rejected", items.len());
        return scope::forbidden(refused);
    }

    let Some(producer) = state.producer.get() else {
        state.metrics.jobs("unconfirmed", jobs.len());
        return error(StatusCode::SERVICE_UNAVAILABLE, "the broker is unreachable; nothing was enqueued");
    };
    if let Err(over) = check_quotas(&state, producer, &jobs).await {
        state.metrics.jobs("rejected", jobs.len());
        return over.response();
    }
    let Ok(results) =
        tokio::time::timeout(CONFIRM_TIMEOUT, producer.submit_all_with(&jobs, &trace::message_headers())).await
    else {
        state.metrics.jobs("unconfirmed", jobs.len());
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the broker did not confirm within {CONFIRM_TIMEOUT:?}; resubmit with the same ids"),
        );
    };
    let mut ids = Vec::with_capacity(results.len());
    let mut owned = Vec::with_capacity(results.len());
    let mut failure = None;
    for (result, job) in results.into_iter().zip(&jobs) {
        match result {
            Ok(id) => {
                ids.push(id);
                owned.push((id, job.tenant.as_str()));
            }
            // The error names the job and the broker's complaint; it never carries the URL's password.
            Err(e) => failure = Some(e.to_string()),
        }
    }
    for &(_, tenant) in &owned {
        state.quotas.add_queued(tenant, 1);
    }
    // Recorded before the answer, so that a GET right after it finds them (and a scoped token
    // finds only its tenant's); the jobs are enqueued either way, so a store failure does not
    // turn the answer into an error.
    if let Err(e) = scope::record_accepted(&*state.store, &owned, yizhan_state::now_millis()).await {
        warn!(error = %e, jobs = ids.len(), "could not record accepted jobs; GET answers 404 until a worker takes them");
    }
    match failure {
        None => {
            state.metrics.jobs("accepted", ids.len());
            info!(jobs = ids.len(), "jobs accepted");
            (StatusCode::ACCEPTED, axum::Json(json!({"ids": ids}))).into_response()
        }
        Some(reason) => {
            state.metrics.jobs("accepted", ids.len());
            state.metrics.jobs("unconfirmed", jobs.len() - ids.len());
            warn!(%reason, "publishing failed");
            // Some jobs may be enqueued: say which, so a client can resubmit the others with their ids.
            let body = json!({"error": format!("the broker did not confirm every job: {reason}"), "confirmed": ids});
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
        }
    }
}

/// The quotas of the tenants of `jobs`, each tenant's jobs admitted together (as a campaign chunk is).
async fn check_quotas(state: &ApiState, producer: &Producer, jobs: &[Job]) -> Result<(), quota::OverQuota> {
    let mut per_tenant: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for job in jobs {
        *per_tenant.entry(job.tenant.as_str()).or_default() += 1;
    }
    for (tenant, count) in per_tenant {
        state.quotas.admit(&state.tokens, producer, tenant, count).await?;
    }
    Ok(())
}

/// 404 for a job that is not the token's tenant's, as for one never submitted: no existence leak.
async fn get_job(
    State(state): State<ApiState>,
    Extension(principal): Extension<Arc<Principal>>,
    Path(id): Path<String>,
) -> Response {
    let Ok(id) = Uuid::parse_str(&id) else {
        return error(StatusCode::BAD_REQUEST, "the job id is not a UUID");
    };
    let not_found = || error(StatusCode::NOT_FOUND, "no job with this id was submitted");
    match state.store.status(id).await {
        Ok(Some(status)) => match scope::may_see_job(&*state.store, &principal, id, status.campaign).await {
            Ok(true) => axum::Json(status_json(&status)).into_response(),
            Ok(false) => not_found(),
            Err(e) => {
                warn!(error = %e, "state store");
                error(StatusCode::SERVICE_UNAVAILABLE, "the state store is unavailable")
            }
        },
        Ok(None) => match state.store.accepted(id).await {
            Ok(true) if !matches!(scope::may_see_job(&*state.store, &principal, id, None).await, Ok(true)) => {
                not_found()
            }
            Ok(true) => axum::Json(json!({"id": id, "status": "queued", "attempts": 0})).into_response(),
            Ok(false) => error(StatusCode::NOT_FOUND, "no job with this id was submitted"),
            Err(e) => {
                warn!(error = %e, "state store");
                error(StatusCode::SERVICE_UNAVAILABLE, "the state store is unavailable")
            }
        },
        Err(e) => {
            warn!(error = %e, "state store");
            error(StatusCode::SERVICE_UNAVAILABLE, "the state store is unavailable")
        }
    }
}

/// `DELETE /v1/jobs/{id}`: 200 `{"id", "status": "cancelled"}` (also for a job cancelled before),
/// 409 with the status of a job that started or finished, 404 for an unknown id.
async fn delete_job(
    State(state): State<ApiState>,
    Extension(principal): Extension<Arc<Principal>>,
    Path(id): Path<String>,
) -> Response {
    let Ok(id) = Uuid::parse_str(&id) else {
        return error(StatusCode::BAD_REQUEST, "the job id is not a UUID");
    };
    if principal.tenant.is_some() {
        let campaign = match state.store.status(id).await {
            Ok(status) => status.and_then(|s| s.campaign),
            Err(e) => {
                warn!(error = %e, "state store");
                return error(StatusCode::SERVICE_UNAVAILABLE, "the state store is unavailable");
            }
        };
        match scope::may_see_job(&*state.store, &principal, id, campaign).await {
            Ok(true) => {}
            Ok(false) => return error(StatusCode::NOT_FOUND, "no job with this id was submitted"),
            Err(e) => {
                warn!(error = %e, "state store");
                return error(StatusCode::SERVICE_UNAVAILABLE, "the state store is unavailable");
            }
        }
    }
    match state.store.cancel_job(id, yizhan_state::now_millis()).await {
        Ok(CancelOutcome::Cancelled) => {
            info!(job = %id, "job cancelled");
            axum::Json(json!({"id": id, "status": "cancelled"})).into_response()
        }
        Ok(CancelOutcome::Started(status)) if status.status == "cancelled" => {
            axum::Json(json!({"id": id, "status": "cancelled"})).into_response()
        }
        Ok(CancelOutcome::Started(status)) => (StatusCode::CONFLICT, axum::Json(status_json(&status))).into_response(),
        Ok(CancelOutcome::Unknown) => error(StatusCode::NOT_FOUND, "no job with this id was submitted"),
        Err(e) => {
            warn!(error = %e, "state store");
            error(StatusCode::SERVICE_UNAVAILABLE, "the state store is unavailable")
        }
    }
}

/// The contract's shape: `{"id", "status", "attempts", "result"?, "error"?}` plus `error_kind`,
/// `next_attempt_at` (RFC 3339: when a retrying, scheduled or deferred job goes next),
/// `duplicate_of`, `campaign` and `delivery` (per recipient: `state` pending, delivered or failed,
/// and the provider's `code` and `at` once final) where they apply.
pub fn status_json(status: &JobStatus) -> Value {
    let mut body = json!({"id": status.id, "status": status.status, "attempts": status.attempts});
    if let Some(result) = &status.result {
        body["result"] = result.clone();
    }
    if let Some(error) = &status.error {
        body["error"] = json!(error);
    }
    if let Some(kind) = &status.error_kind {
        body["error_kind"] = json!(kind);
    }
    if let Some(at) = status.next_attempt_at.and_then(|ms| u64::try_from(ms).ok()) {
        let time = UNIX_EPOCH + Duration::from_millis(at);
        body["next_attempt_at"] = json!(humantime::format_rfc3339_millis(time).to_string());
    }
    if let Some(original) = status.duplicate_of {
        body["duplicate_of"] = json!(original);
    }
    if let Some(campaign) = status.campaign {
        body["campaign"] = json!(campaign);
    }
    if let Some(delivery) = &status.delivery {
        body["delivery"] = json!(delivery);
    }
    body
}

async fn get_catalog() -> Response {
    axum::Json(yizhan_schemas::catalog_json()).into_response()
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<ApiState>) -> Response {
    if state.producer.get().is_some_and(Producer::is_connected) {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not connected to the broker").into_response()
    }
}

async fn metrics(State(state): State<ApiState>) -> Response {
    let connected = state.producer.get().is_some_and(Producer::is_connected);
    state.metrics.broker_connected.set(i64::from(connected));
    let mut text = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&state.metrics.registry.gather(), &mut text) {
        return error(StatusCode::INTERNAL_SERVER_ERROR, format!("encoding metrics: {e}"));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

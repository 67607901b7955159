//! The campaign endpoints of the HTTP API:
//!
//! - `POST /v1/campaigns`: the head and every recipient are validated before anything is
//!   published; the jobs go out in chunks with their confirms pipelined; 202 `{"id", "jobs"}` once
//!   every job is confirmed and counted in the campaign's total. The same tenant and idempotency
//!   key again, once the campaign has jobs: 200 with its id and `"jobs": 0`, nothing enqueued.
//! - `POST /v1/campaigns/{id}/recipients`: appends a chunk, expanded with the stored head.
//! - `GET /v1/campaigns/{id}`: status and counts (counters kept by the store, not a scan).
//! - `POST /v1/campaigns/{id}/pause|resume|cancel`: one store write, then the campaign's parked
//!   jobs are woken (resume: the held ones; cancel: all, so that scheduled ones settle now).
//!
//! This module knows nothing of the router: `api` hands it a [`CampaignState`].

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use prometheus::{IntCounterVec, Opts};
use serde_json::{Value, json};
use tokio::sync::OnceCell;
use tokio::task::JoinSet;
use tracing::{info, warn};
use uuid::Uuid;
use yizhan_schemas::{CampaignHead, FieldError, Job, expand, validate_campaign_owned};
use yizhan_state::{CampaignControl, CampaignRecord, CampaignStatus, Millis, ParkingLot, StateStore, now_millis};

use super::problem::error;
use crate::Producer;
use crate::auth::Principal;

/// Recipients validated and published together: one `publish_all`, its confirms awaited while the
/// next chunk is published.
pub const CHUNK: usize = 5000;
/// Chunks being published at once.
const PUBLISHING: usize = 2;
/// Past the time a worker trusts a campaign's control without reading it again (1 s).
const CONTROL_CACHE_EXPIRED: Duration = Duration::from_secs(2);
/// How long one chunk may wait for the broker's confirms before the request answers 503.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// What the campaign handlers need (built from the API's state).
#[derive(Clone)]
pub struct CampaignState {
    /// The broker connection, empty while the broker has never been reachable.
    pub producer: Arc<OnceCell<Producer>>,
    /// Campaign records and counters.
    pub store: Arc<dyn StateStore>,
    /// Where paused and scheduled jobs wait; woken on resume and cancel.
    pub parking: Arc<dyn ParkingLot>,
    /// Counters served at the API's `/metrics`.
    pub metrics: CampaignMetrics,
    /// The hosts completion callbacks may reach; a campaign with another is refused.
    pub callback_allow: Arc<yizhan_broker::CallbackAllow>,
    /// The tokens, whose file sets the tenants' quotas.
    pub tokens: Arc<crate::auth::Tokens>,
    /// The tenants' quota state, shared with `POST /v1/jobs`: a recipient counts as a job.
    pub quotas: Arc<super::quota::Quotas>,
}

/// The campaign counters; no label carries a campaign id.
#[derive(Clone)]
pub struct CampaignMetrics {
    /// `yizhan_producer_campaign_jobs_total{outcome}`: accepted, rejected, unconfirmed.
    pub jobs: IntCounterVec,
    /// `yizhan_producer_campaigns_total{event}`: created, paused, resumed, cancelled.
    pub events: IntCounterVec,
}

impl CampaignMetrics {
    /// Fresh counters, to be registered in the API's registry.
    pub fn new() -> CampaignMetrics {
        let jobs = IntCounterVec::new(
            Opts::new(
                "yizhan_producer_campaign_jobs_total",
                "Jobs fanned out from campaigns, by outcome: accepted, rejected, unconfirmed",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let events = IntCounterVec::new(
            Opts::new("yizhan_producer_campaigns_total", "Campaign events: created, paused, resumed, cancelled"),
            &["event"],
        )
        .expect("valid metric");
        CampaignMetrics { jobs, events }
    }

    fn jobs(&self, outcome: &str, n: usize) {
        self.jobs.with_label_values(&[outcome]).inc_by(n as u64);
    }

    fn event(&self, event: &str) {
        self.events.with_label_values(&[event]).inc();
    }
}

impl Default for CampaignMetrics {
    fn default() -> Self {
        Self::new()
    }
}

fn store_unavailable(e: &yizhan_state::StoreError) -> Response {
    warn!(error = %e, "state store");
    error(StatusCode::SERVICE_UNAVAILABLE, "the state store is unavailable")
}

/// `$.recipients[12].params.x` → (12, `.params.x`): which recipient an error is about.
pub fn split_recipient_path(path: &str) -> Option<(usize, &str)> {
    let rest = path.strip_prefix("$.recipients[")?;
    let close = rest.find(']')?;
    Some((rest[..close].parse().ok()?, &rest[close + 1..]))
}

/// 400 `{"errors": [{"index"?, "path", "reason"}]}`: `index` is the recipient's position in the
/// request, absent for an error in the head.
fn invalid(errors: &[FieldError]) -> Response {
    let errors: Vec<Value> = errors
        .iter()
        .map(|e| match split_recipient_path(&e.path) {
            Some((index, _)) => json!({"index": index, "path": e.path, "reason": e.reason}),
            None => json!({"path": e.path, "reason": e.reason}),
        })
        .collect();
    (StatusCode::BAD_REQUEST, Json(json!({"errors": errors}))).into_response()
}

/// A request's early answer (boxed: a `Response` is large to carry in every `Result`).
type Refusal = Box<Response>;

fn parse_body(body: Result<Bytes, BytesRejection>) -> Result<Value, Refusal> {
    let body = body.map_err(|rejection| Box::new(error(rejection.status(), rejection.body_text())))?;
    serde_json::from_slice(&body).map_err(|e| Box::new(invalid(&[FieldError::new("$", format!("not JSON: {e}"))])))
}

fn parse_id(id: &str) -> Result<Uuid, Refusal> {
    Uuid::parse_str(id).map_err(|_| Box::new(error(StatusCode::BAD_REQUEST, "the campaign id is not a UUID")))
}

/// Expands recipients into jobs on the blocking pool, a chunk per task (all cores), keeping
/// order; every error of every chunk, or the jobs.
async fn expand_all(head: Arc<CampaignHead>, recipients: Vec<Value>) -> Result<Vec<Job>, Vec<FieldError>> {
    let mut tasks = JoinSet::new();
    let mut recipients = recipients.into_iter();
    let mut first = 0;
    loop {
        let chunk: Vec<Value> = recipients.by_ref().take(CHUNK).collect();
        if chunk.is_empty() {
            break;
        }
        let (head, start) = (head.clone(), first);
        first += chunk.len();
        tasks.spawn_blocking(move || (start, expand(&head, &chunk, start)));
    }
    let mut done = Vec::with_capacity(tasks.len());
    while let Some(result) = tasks.join_next().await {
        done.push(result.expect("expanding recipients does not panic"));
    }
    done.sort_by_key(|(start, _)| *start);
    let mut jobs = Vec::with_capacity(first);
    let mut errors = Vec::new();
    for (_, result) in done {
        match result {
            Ok(chunk) => jobs.extend(chunk),
            Err(chunk_errors) => errors.extend(chunk_errors),
        }
    }
    if errors.is_empty() { Ok(jobs) } else { Err(errors) }
}

/// Publishes `jobs` of `tenant` in chunks, [`PUBLISHING`] at once; the confirmed ones count in
/// the tenant's queued jobs until the next reading of its queues.
/// Returns the confirmed count, or a failure (some jobs may be enqueued then: resubmitting is safe,
/// their idempotency keys absorb them).
async fn publish(state: &CampaignState, jobs: Vec<Job>, tenant: &str) -> Result<usize, Refusal> {
    // Every job of the campaign continues the request's trace.
    let trace = super::trace::message_headers();
    let total = jobs.len();
    if total == 0 {
        return Ok(0);
    }
    if state.producer.get().is_none() {
        state.metrics.jobs("unconfirmed", total);
        return Err(unreachable());
    }
    let mut chunks = Vec::with_capacity(total.div_ceil(CHUNK));
    let mut jobs = jobs.into_iter();
    loop {
        let chunk: Vec<Job> = jobs.by_ref().take(CHUNK).collect();
        if chunk.is_empty() {
            break;
        }
        chunks.push(chunk);
    }
    let mut chunks = chunks.into_iter();
    let mut publishing = JoinSet::new();
    let mut confirmed = 0;
    let mut failure: Option<String> = None;
    loop {
        while publishing.len() < PUBLISHING && failure.is_none() {
            let Some(chunk) = chunks.next() else { break };
            let producer = state.producer.clone();
            // Not recorded as accepted one by one, as `POST /v1/jobs` does: nobody holds a campaign
            // job's id before a worker records it, and the campaign's counters say how many are
            // queued. (A million inserts would also contend with the workers for the store.)
            let trace = trace.clone();
            publishing.spawn(async move {
                let producer = producer.get().expect("checked above: connected once");
                let Ok(results) = tokio::time::timeout(CONFIRM_TIMEOUT, producer.submit_all_with(&chunk, &trace)).await
                else {
                    return (0, Some(format!("the broker did not confirm within {CONFIRM_TIMEOUT:?}")));
                };
                let mut confirmed = 0;
                let mut failure = None;
                for result in results {
                    match result {
                        Ok(_) => confirmed += 1,
                        Err(e) => failure = Some(e.to_string()),
                    }
                }
                (confirmed, failure)
            });
        }
        let Some(done) = publishing.join_next().await else { break };
        let (n, chunk_failure) = done.expect("publishing does not panic");
        confirmed += n;
        if chunk_failure.is_some() && failure.is_none() {
            failure = chunk_failure;
        }
    }
    state.metrics.jobs("accepted", confirmed);
    state.quotas.add_queued(tenant, confirmed as u64);
    match failure {
        None => Ok(confirmed),
        Some(reason) => {
            state.metrics.jobs("unconfirmed", total - confirmed);
            warn!(%reason, confirmed, total, "publishing a campaign's jobs failed");
            let reason = format!(
                "the broker did not confirm every job ({confirmed} of {total} confirmed): {reason}; \
                 send the same request again (recipients already enqueued are not sent twice)"
            );
            Err(Box::new(error(StatusCode::SERVICE_UNAVAILABLE, reason)))
        }
    }
}

/// The tenant's quotas for `jobs` more (429 with `Retry-After` past them, nothing enqueued); a
/// chunk of R recipients counts as R submissions and R queued jobs. Also refuses (503) while the
/// broker has never been reachable, as publishing would.
fn unreachable() -> Refusal {
    Box::new(error(StatusCode::SERVICE_UNAVAILABLE, "the broker is unreachable; nothing was enqueued"))
}

async fn admit(state: &CampaignState, tenant: &str, jobs: usize) -> Result<(), Refusal> {
    if jobs == 0 {
        return Ok(());
    }
    let Some(producer) = state.producer.get() else {
        state.metrics.jobs("unconfirmed", jobs);
        return Err(unreachable());
    };
    state.quotas.admit(&state.tokens, producer, tenant, jobs).await.map_err(|over| {
        state.metrics.jobs("rejected", jobs);
        info!(tenant, jobs, reason = %over.reason, "campaign jobs over the tenant's quota");
        Box::new(over.response())
    })
}

/// Counts `jobs` more in the campaign's total.
async fn add(state: &CampaignState, id: Uuid, jobs: usize) -> Result<(), Refusal> {
    if jobs == 0 {
        return Ok(());
    }
    match state.store.add_to_campaign(id, jobs as u64).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(Box::new(error(StatusCode::NOT_FOUND, "no campaign with this id"))),
        Err(e) => Err(Box::new(store_unavailable(&e))),
    }
}

/// `POST /v1/campaigns`.
pub async fn post_campaign(
    State(state): State<CampaignState>,
    Extension(principal): Extension<Arc<Principal>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let value = match parse_body(body) {
        Ok(value) => value,
        Err(response) => return *response,
    };
    let asked_tenant = value.get("tenant").and_then(Value::as_str).map(str::to_string);
    let checked = tokio::task::spawn_blocking(move || validate_campaign_owned(value)).await;
    let (mut head, recipients) = match checked.expect("validation does not panic") {
        Ok(checked) => checked,
        Err(errors) => return invalid(&errors),
    };
    if let Some(refused) = super::scope::authorize_campaign(&principal, asked_tenant.as_deref(), &mut head) {
        return refused;
    }
    if let Some(refused) = crate::callbacks::refusal(&state.callback_allow, head.callback.as_ref()) {
        return invalid(&[refused]);
    }
    let count = recipients.len();
    let head = Arc::new(head);
    let mut jobs = match expand_all(head.clone(), recipients).await {
        Ok(jobs) => jobs,
        Err(errors) => {
            state.metrics.jobs("rejected", count);
            return invalid(&errors);
        }
    };
    // Before the campaign is created: a refused request leaves nothing behind.
    if let Err(response) = admit(&state, &head.tenant, jobs.len()).await {
        return *response;
    }

    let head_value = serde_json::to_value(&*head).expect("a head serialises");
    let record = CampaignRecord {
        id: head.id,
        tenant: head.tenant.clone(),
        key: head.key.clone(),
        head: head_value.clone(),
        send_at: head.send_at.map(|t| t.as_millisecond()),
        created_at: now_millis(),
    };
    let (stored, total) = match state.store.create_campaign(&record).await {
        Ok(created) => created,
        Err(e) => return store_unavailable(&e),
    };
    if stored.id == head.id {
        state.metrics.event("created");
    } else if total > 0 {
        info!(campaign = %stored.id, "campaign submitted again: nothing enqueued");
        return (StatusCode::OK, Json(json!({"id": stored.id, "jobs": 0}))).into_response();
    } else {
        // Created before but never given jobs (that submission failed): the same head goes on
        // under the stored id; another head under the same key is refused rather than mixed in.
        let mut same = head_value;
        same["id"] = json!(stored.id);
        if same != stored.head {
            let reason = format!(
                "campaign {} has this tenant and idempotency key with another head; use another idempotency_key",
                stored.id
            );
            return (StatusCode::CONFLICT, Json(json!({"error": reason, "id": stored.id}))).into_response();
        }
        for job in &mut jobs {
            job.campaign = Some(stored.id);
        }
    }
    let confirmed = match publish(&state, jobs, &head.tenant).await {
        Ok(confirmed) => confirmed,
        Err(response) => return *response,
    };
    if let Err(response) = add(&state, stored.id, confirmed).await {
        return *response;
    }
    info!(campaign = %stored.id, jobs = confirmed, "campaign accepted");
    (StatusCode::ACCEPTED, Json(json!({"id": stored.id, "jobs": confirmed}))).into_response()
}

/// `POST /v1/campaigns/{id}/recipients`: `{"recipients": [...]}`.
pub async fn post_recipients(
    State(state): State<CampaignState>,
    Extension(principal): Extension<Arc<Principal>>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(response) => return *response,
    };
    let (record, status) = match state.store.campaign(id).await {
        Ok(Some(found)) if principal.owns(&found.0.tenant) => found,
        Ok(_) => return error(StatusCode::NOT_FOUND, "no campaign with this id"),
        Err(e) => return store_unavailable(&e),
    };
    if status.status == "cancelled" {
        return (StatusCode::CONFLICT, Json(campaign_json(&status))).into_response();
    }
    let recipients = match parse_body(body) {
        Ok(Value::Object(mut body)) => {
            if let Some(other) = body.keys().find(|k| *k != "recipients") {
                return invalid(&[FieldError::new(format!("$.{other}"), "unknown field")]);
            }
            match body.remove("recipients") {
                Some(Value::Array(recipients)) => recipients,
                Some(_) => return invalid(&[FieldError::new("$.recipients", "must be an array")]),
                None => return invalid(&[FieldError::new("$.recipients", "is required")]),
            }
        }
        Ok(_) => return invalid(&[FieldError::new("$", "must be an object with `recipients`")]),
        Err(response) => return *response,
    };
    let tenant = record.tenant;
    let head: CampaignHead = match serde_json::from_value(record.head) {
        Ok(head) => head,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, format!("the stored campaign does not parse: {e}")),
    };
    let count = recipients.len();
    let jobs = match expand_all(Arc::new(head), recipients).await {
        Ok(jobs) => jobs,
        Err(errors) => {
            state.metrics.jobs("rejected", count);
            return invalid(&errors);
        }
    };
    if let Err(response) = admit(&state, &tenant, jobs.len()).await {
        return *response;
    }
    let confirmed = match publish(&state, jobs, &tenant).await {
        Ok(confirmed) => confirmed,
        Err(response) => return *response,
    };
    if let Err(response) = add(&state, id, confirmed).await {
        return *response;
    }
    (StatusCode::ACCEPTED, Json(json!({"id": id, "jobs": confirmed}))).into_response()
}

fn rfc3339(ms: Millis) -> Option<String> {
    let ms = u64::try_from(ms).ok()?;
    Some(humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string())
}

/// `{"id", "name", "tenant", "status", "total", "counts", "delivered", "undelivered", "send_at"?,
/// "created_at"}` (`delivered`/`undelivered`: recipients whose receipt says so).
pub fn campaign_json(status: &CampaignStatus) -> Value {
    let mut body = json!({
        "id": status.id,
        "name": status.name,
        "tenant": status.tenant,
        "status": status.status,
        "total": status.total,
        "counts": status.counts,
        "delivered": status.delivered,
        "undelivered": status.undelivered,
        "created_at": rfc3339(status.created_at),
    });
    if let Some(at) = status.send_at.and_then(rfc3339) {
        body["send_at"] = json!(at);
    }
    body
}

/// `GET /v1/campaigns/{id}`.
pub async fn get_campaign(
    State(state): State<CampaignState>,
    Extension(principal): Extension<Arc<Principal>>,
    Path(id): Path<String>,
) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(response) => return *response,
    };
    match state.store.campaign(id).await {
        Ok(Some((record, status))) if principal.owns(&record.tenant) => Json(campaign_json(&status)).into_response(),
        Ok(_) => error(StatusCode::NOT_FOUND, "no campaign with this id"),
        Err(e) => store_unavailable(&e),
    }
}

async fn control(state: CampaignState, principal: &Principal, id: String, control: CampaignControl) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(response) => return *response,
    };
    // A scoped token controls only its tenant's campaigns; another's is as unknown to it.
    if principal.tenant.is_some() {
        match state.store.campaign(id).await {
            Ok(Some((record, _))) if principal.owns(&record.tenant) => {}
            Ok(_) => return error(StatusCode::NOT_FOUND, "no campaign with this id"),
            Err(e) => return store_unavailable(&e),
        }
    }
    let status = match state.store.control_campaign(id, control).await {
        Ok(Some(status)) => status,
        Ok(None) => return error(StatusCode::NOT_FOUND, "no campaign with this id"),
        Err(e) => return store_unavailable(&e),
    };
    let cancel = matches!(control, CampaignControl::Cancelled);
    if !cancel && status.status == "cancelled" {
        return (StatusCode::CONFLICT, Json(campaign_json(&status))).into_response();
    }
    let event = match control {
        CampaignControl::Paused => "paused",
        CampaignControl::Running => "resumed",
        CampaignControl::Cancelled => "cancelled",
    };
    state.metrics.event(event);
    if !matches!(control, CampaignControl::Paused) {
        // Resume: the jobs held while paused go now. Cancel: every parked job (scheduled ones
        // too) comes back now and settles as cancelled. A failed wake is not lost: workers wake
        // held jobs of campaigns no longer paused, and parked ones come back at their time.
        let held_only = !cancel;
        wake(&*state.parking, id, held_only).await;
        if cancel {
            // A worker that takes a woken job within its control cache's freshness may still see
            // the campaign running and park a scheduled job again until its time: wake once more
            // when every worker's cache has expired, so that they all settle now.
            let parking = state.parking.clone();
            tokio::spawn(async move {
                tokio::time::sleep(CONTROL_CACHE_EXPIRED).await;
                wake(&*parking, id, false).await;
            });
        }
    }
    info!(campaign = %id, event, "campaign control");
    crate::audit::record(principal, &format!("campaign {event}"), &format!("campaign {id}"));
    Json(campaign_json(&status)).into_response()
}

async fn wake(parking: &dyn ParkingLot, id: Uuid, held_only: bool) {
    if let Err(e) = parking.wake(&id.to_string(), held_only, now_millis()).await {
        warn!(error = %e, campaign = %id, "could not wake the campaign's parked jobs");
    }
}

/// `POST /v1/campaigns/{id}/pause`.
pub async fn pause(
    State(state): State<CampaignState>,
    Extension(principal): Extension<Arc<Principal>>,
    Path(id): Path<String>,
) -> Response {
    control(state, &principal, id, CampaignControl::Paused).await
}

/// `POST /v1/campaigns/{id}/resume`.
pub async fn resume(
    State(state): State<CampaignState>,
    Extension(principal): Extension<Arc<Principal>>,
    Path(id): Path<String>,
) -> Response {
    control(state, &principal, id, CampaignControl::Running).await
}

/// `POST /v1/campaigns/{id}/cancel`.
pub async fn cancel(
    State(state): State<CampaignState>,
    Extension(principal): Extension<Arc<Principal>>,
    Path(id): Path<String>,
) -> Response {
    control(state, &principal, id, CampaignControl::Cancelled).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipient_paths_name_the_recipient() {
        assert_eq!(split_recipient_path("$.recipients[12].params.x"), Some((12, ".params.x")));
        assert_eq!(split_recipient_path("$.recipients[0].to"), Some((0, ".to")));
        assert_eq!(split_recipient_path("$.params.x"), None);
    }
}

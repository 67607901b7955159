//! OpenTelemetry traces (issue 23.2): a job submitted over HTTP with a W3C `traceparent` produces
//! spans, received by an OTLP/HTTP receiver in the test, that share that trace id from the API's
//! request to the provider call, on every attempt of the job.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::{AnyValue as Any, KeyValue};
use prost::Message;
use serde_json::{Value, json};
use yizhan_sandbox::{DEFAULT_ROBOT_KEYS, Fault, Provider, SandboxConfig};
use yizhan_tests::api::{Api, TOKEN};
use yizhan_tests::{Harness, Store, WAIT, Worker, eventually};

/// The caller's trace: its trace id and the id of its span that sent the request.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// The message text: params never go into spans, so it must appear in none.
const CONTENT: &str = "disk almost full on db-7";

/// One span as the receiver decoded it.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent: String,
    attributes: HashMap<String, String>,
    /// Every attribute value of the span and of its events, for the secrets check.
    all_values: Vec<String>,
}

impl Received {
    fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

type Spans = Arc<Mutex<Vec<Received>>>;

/// An OTLP/HTTP receiver (`POST /v1/traces`, protobuf) on a free port; the spans it received.
async fn otlp_receiver() -> (SocketAddr, Spans) {
    let spans: Spans = Arc::default();
    let app = Router::new().route("/v1/traces", post(receive)).with_state(spans.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, spans)
}

async fn receive(State(spans): State<Spans>, body: Bytes) -> impl IntoResponse {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return (StatusCode::BAD_REQUEST, Vec::new()).into_response();
    };
    let mut received = spans.lock().unwrap();
    for resource_spans in request.resource_spans {
        let resource = resource_spans.resource.map(|r| attributes(&r.attributes)).unwrap_or_default();
        let service = resource.get("service.name").cloned().unwrap_or_default();
        for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
            let attributes = attributes(&span.attributes);
            let mut all_values: Vec<String> = attributes.values().cloned().collect();
            for event in &span.events {
                all_values.push(event.name.clone());
                all_values.extend(self::attributes(&event.attributes).into_values());
            }
            received.push(Received {
                service: service.clone(),
                name: span.name,
                trace_id: hex::encode(&span.trace_id),
                span_id: hex::encode(&span.span_id),
                parent: hex::encode(&span.parent_span_id),
                attributes,
                all_values,
            });
        }
    }
    let answer = ExportTraceServiceResponse::default().encode_to_vec();
    ([(header::CONTENT_TYPE, "application/x-protobuf")], answer).into_response()
}

fn attributes(list: &[KeyValue]) -> HashMap<String, String> {
    list.iter().map(|kv| (kv.key.clone(), kv.value.as_ref().map(text).unwrap_or_default())).collect()
}

fn text(value: &Any) -> String {
    match &value.value {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

/// The exporter's variables: the receiver, and a short batch delay so that spans arrive at once.
fn otel_env(receiver: SocketAddr) -> Vec<(&'static str, String)> {
    vec![("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{receiver}")), ("OTEL_BSP_SCHEDULE_DELAY", "50".into())]
}

/// Submits one robot message over HTTP with the caller's `traceparent`; its id.
async fn submit_traced(api: &Api) -> String {
    let job =
        json!({"connector": "wecom_robot", "config": "ops", "action": "send_text", "params": {"content": CONTENT}});
    let response = reqwest::Client::new()
        .post(format!("{}/v1/jobs", api.base))
        .bearer_auth(TOKEN)
        .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN}-01"))
        .header("tracestate", "caller=1")
        .json(&job)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let body: Value = response.json().await.unwrap();
    body["ids"][0].as_str().expect("an id").to_string()
}

/// Waits until the job succeeded on its second attempt (the first failed transiently).
async fn succeeded_on_retry(api: &Api, id: &str) {
    eventually("the job succeeded on its retry", WAIT, || async { api.job(id).await.1["status"] == "succeeded" }).await;
    let (_, status) = api.job(id).await;
    assert_eq!(status["attempts"], 2, "one transient failure, then success: {status}");
}

fn named<'a>(spans: &'a [Received], name: &str) -> Vec<&'a Received> {
    spans.iter().filter(|s| s.name == name).collect()
}

/// The worker's spans of both attempts, each complete, once the receiver has them all.
async fn worker_spans(spans: &Spans) -> Vec<Received> {
    eventually("both attempts' worker spans exported", WAIT, || async {
        let spans = spans.lock().unwrap();
        ["job", "claim", "rate-limit wait", "provider call", "settle"]
            .iter()
            .all(|name| named(&spans, name).iter().filter(|s| s.service == "yizhan-worker").count() >= 2)
    })
    .await;
    spans.lock().unwrap().iter().filter(|s| s.service == "yizhan-worker").cloned().collect()
}

/// Asserts the worker's side of the trace: two attempts, each a `job` span whose children are its
/// claim, rate-limit wait, provider call (transient, then ok) and settle (retried, then
/// succeeded), all in the caller's trace; `parent` is the span each job span continues.
fn assert_attempts(spans: &[Received], id: &str, parent: &str) {
    for span in spans {
        assert_eq!(span.trace_id, TRACE_ID, "every worker span is in the caller's trace: {span:?}");
    }
    let mut jobs = named(spans, "job");
    jobs.sort_by_key(|s| s.attribute("attempt").map(str::to_string));
    assert_eq!(jobs.len(), 2, "one job span per attempt: {jobs:?}");
    let expected = [("1", "transient", "retried"), ("2", "ok", "succeeded")];
    for (job, (attempt, result, outcome)) in jobs.iter().zip(expected) {
        assert_eq!(job.parent, parent, "attempt {attempt} continues the message's trace context: {job:?}");
        assert_eq!(job.attribute("attempt"), Some(attempt));
        assert_eq!(job.attribute("job_id"), Some(id));
        assert_eq!(job.attribute("connector"), Some("wecom_robot"));
        assert_eq!(job.attribute("config"), Some("ops"));
        let children = |name: &str| -> Vec<&Received> {
            spans.iter().filter(|s| s.name == name && s.parent == job.span_id).collect()
        };
        assert_eq!(children("claim").len(), 1, "attempt {attempt} claims once");
        assert_eq!(children("rate-limit wait").len(), 1, "attempt {attempt} takes its tokens once");
        let calls = children("provider call");
        assert_eq!(calls.len(), 1, "attempt {attempt} calls the provider once");
        assert_eq!(calls[0].attribute("result"), Some(result), "attempt {attempt}: {:?}", calls[0]);
        let settles = children("settle");
        assert_eq!(settles.len(), 1, "attempt {attempt} settles once");
        assert_eq!(settles[0].attribute("outcome"), Some(outcome), "attempt {attempt}: {:?}", settles[0]);
    }
}

/// Neither the job's params nor any config secret in a span or span event.
fn assert_no_secrets(spans: &[Received]) {
    let secrets = [CONTENT, DEFAULT_ROBOT_KEYS[0], yizhan_sandbox::DEFAULT_SECRET_KEY, TOKEN];
    for span in spans {
        for value in &span.all_values {
            for secret in secrets {
                assert!(!value.contains(secret), "{secret:?} in span {} ({}): {value:?}", span.name, span.service);
            }
        }
    }
}

/// A test's stack: the receiver, a harness whose robot fails its first call with a 502, an
/// exporting worker, and an API that exports too when `api_exports`; then one traced job submitted
/// and succeeded on its retry.
async fn traced_job_with_one_retry(test: &str, api_exports: bool) -> Traced {
    let (receiver, spans) = otlp_receiver().await;
    let h = Harness::start(test, Store::Sqlite, SandboxConfig::default_accounts(), "").await;
    h.sandbox().push_fault(Fault::http_status(Provider::WecomRobot, 502).times(1)).unwrap();
    let env = otel_env(receiver);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let api = Api::start_with(&h, if api_exports { &env } else { &[] }).await;
    let worker = h.spawn_worker_with(&[], &env).await;
    let id = submit_traced(&api).await;
    succeeded_on_retry(&api, &id).await;
    Traced { id, h, spans, _api: api, _worker: worker }
}

/// What [`traced_job_with_one_retry`] leaves running: the processes export until they are dropped.
struct Traced {
    id: String,
    h: Harness,
    spans: Spans,
    _api: Api,
    _worker: Worker,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traced_submit_is_followed_to_the_provider_through_a_retry() {
    let Traced { id, h, spans, .. } = &traced_job_with_one_retry("traces", true).await;
    let worker = worker_spans(spans).await;

    // The API's request span continues the caller's span, and the jobs continue the request's.
    eventually("the API's span exported", WAIT, || async {
        spans.lock().unwrap().iter().any(|s| s.service == "yizhan-producer")
    })
    .await;
    let all = spans.lock().unwrap().clone();
    let requests: Vec<&Received> = all
        .iter()
        .filter(|s| s.service == "yizhan-producer" && s.attribute("http.route") == Some("/v1/jobs"))
        .collect();
    assert_eq!(requests.len(), 1, "one span for the POST: {all:#?}");
    let request = requests[0];
    assert_eq!(request.name, "POST /v1/jobs");
    assert_eq!(request.trace_id, TRACE_ID);
    assert_eq!(request.parent, CALLER_SPAN, "the request span's parent is the caller's span");
    assert_eq!(request.attribute("http.request.method"), Some("POST"));
    assert_eq!(request.attribute("http.response.status_code"), Some("202"));
    assert_attempts(&worker, id, &request.span_id);
    assert_no_secrets(&all);
    let sandbox_calls = h.sandbox().robot_messages(DEFAULT_ROBOT_KEYS[0]).len();
    assert_eq!(sandbox_calls, 1, "sent once, on the retry");
}

/// An API that does not export still hands the caller's `traceparent` to the workers, which
/// continue it: every attempt's job span is a child of the caller's span.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_without_an_exporter_passes_the_trace_context_through() {
    let Traced { id, spans, .. } = &traced_job_with_one_retry("traces-pass", false).await;
    let worker = worker_spans(spans).await;
    assert_attempts(&worker, id, CALLER_SPAN);
    assert!(
        spans.lock().unwrap().iter().all(|s| s.service == "yizhan-worker"),
        "the API exported nothing without OTEL_EXPORTER_OTLP_ENDPOINT"
    );
    assert_no_secrets(&spans.lock().unwrap());
}

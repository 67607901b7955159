//! The API's side of tracing: a server span per request that continues the caller's W3C
//! `traceparent` (when this process exports traces), and the trace context headers that the
//! request's job messages carry to the workers.
//!
//! The headers are worked out once per request by [`server_span`] and read by the handlers that
//! publish with [`message_headers`]: a task-local rather than a handler argument, so that every
//! publishing handler gets them without each one parsing the request's headers again.

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use lapin::types::FieldTable;
use tracing::Instrument;
use yizhan_telemetry::{TRACEPARENT, TRACESTATE};

tokio::task_local! {
    static MESSAGE_TRACE: FieldTable;
}

/// Middleware: the request's span (`otel.kind` server, the route template, never the concrete path
/// or query, which may hold ids or a receipt token) when this process exports traces, and the
/// message trace headers for the handler. Without an exporter and without a `traceparent` it only
/// calls the handler.
pub(super) async fn server_span(request: Request, next: Next) -> Response {
    let exporting = yizhan_telemetry::exporting();
    if !exporting && !request.headers().contains_key(TRACEPARENT) {
        return next.run(request).await;
    }
    if !exporting {
        // Not exported here, but workers that export still join the caller's trace.
        let (traceparent, tracestate) = trace_headers(request.headers());
        let headers = yizhan_telemetry::message_headers(traceparent, tracestate);
        return MESSAGE_TRACE.scope(headers, next.run(request)).await;
    }
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_string();
    let method = request.method().as_str().to_string();
    let span = tracing::info_span!(
        "request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    let (traceparent, tracestate) = trace_headers(request.headers());
    yizhan_telemetry::continue_trace(&span, traceparent, tracestate);
    let headers = span.in_scope(|| yizhan_telemetry::message_headers(None, None));
    let response = MESSAGE_TRACE.scope(headers, next.run(request)).instrument(span.clone()).await;
    span.record("http.response.status_code", response.status().as_u16());
    if response.status().is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    response
}

/// The trace context headers for the messages the current request publishes (empty when it
/// carries no trace).
pub(super) fn message_headers() -> FieldTable {
    MESSAGE_TRACE.try_with(FieldTable::clone).unwrap_or_default()
}

fn trace_headers(headers: &HeaderMap) -> (Option<&str>, Option<&str>) {
    let text = |name| headers.get(name).and_then(|value| value.to_str().ok());
    (text(TRACEPARENT), text(TRACESTATE))
}

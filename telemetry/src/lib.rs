//! Logs and traces for both binaries, in one place.
//!
//! [`init`] installs the process's `tracing` subscriber: logs on stderr (text or JSON, `RUST_LOG`
//! filters) and, only when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`)
//! is set, an OpenTelemetry layer exporting yizhan's spans over OTLP/HTTP. Without it the
//! subscriber is exactly the logging one, [`exporting`] is false, and [`span!`] costs a relaxed
//! load: no span object, no header parsing.
//!
//! The W3C trace context travels as the `traceparent` (and `tracestate`) header: on the HTTP request
//! that submits jobs, then on every AMQP message of those jobs, which the worker copies unchanged
//! onto retries, delayed and parked copies and dead letters.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The W3C trace context header, on HTTP requests and AMQP messages.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C vendor trace state header, carried along with [`TRACEPARENT`].
pub const TRACESTATE: &str = "tracestate";

/// The longest `tracestate` carried (the W3C limit is 32 members of at most 256 characters; a
/// longer one is dropped rather than copied onto every message).
const MAX_TRACESTATE: usize = 512;

/// How long the exporter may take to send what is left at shutdown.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(5);

static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether this process exports traces; false unless [`init`] set up an OTLP exporter.
#[inline]
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// An `info` span when this process exports traces, [`Span::none`] otherwise: for the stages of
/// the job hot path, which must cost nothing when tracing is off. Same arguments as
/// `tracing::info_span!`.
#[macro_export]
macro_rules! span {
    ($($arguments:tt)*) => {
        if $crate::exporting() { ::tracing::info_span!($($arguments)*) } else { ::tracing::Span::none() }
    };
}

/// The log format on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Why telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// An `OTEL_*` variable holds a value this build does not support.
    #[error("{variable}: {reason}")]
    Setting {
        /// The environment variable.
        variable: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
    /// The OTLP exporter could not be built.
    #[error("OTLP exporter: {0}")]
    Exporter(String),
}

/// The installed telemetry; [`Telemetry::shutdown`] sends the spans still buffered.
#[must_use = "call shutdown before exiting, or buffered spans are lost"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Flushes and stops the exporter (up to 5 s); nothing when traces are not exported. Blocks:
    /// call it outside the async runtime's workers (e.g. from `spawn_blocking`) or at the end of
    /// `main`.
    pub fn shutdown(mut self) {
        if let Some(provider) = self.provider.take() {
            EXPORTING.store(false, Ordering::Relaxed);
            if let Err(e) = provider.shutdown_with_timeout(SHUTDOWN_FLUSH) {
                eprintln!("OpenTelemetry: spans may be lost at shutdown: {e}");
            }
        }
    }
}

/// Installs the global subscriber: logs on stderr filtered by `RUST_LOG` (else `default_filter`)
/// and, when `traces` and an OTLP endpoint is configured, the OpenTelemetry layer for yizhan's
/// spans (`service.name` = `OTEL_SERVICE_NAME`, else `service`). Call once, early in `main`.
pub fn init(
    service: &'static str,
    format: LogFormat,
    default_filter: &str,
    traces: bool,
) -> Result<Telemetry, TelemetryError> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| default_filter.into());
    let protocol = if traces { otlp_protocol()? } else { None };
    let Some(protocol) = protocol else {
        // Exactly the logging subscriber: tracing off costs nothing more than the logs.
        let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
        match format {
            LogFormat::Text => logs.init(),
            LogFormat::Json => logs.json().init(),
        }
        return Ok(Telemetry { provider: None });
    };
    // The exporter's HTTP client is reqwest with rustls, which needs the process's crypto provider.
    yizhan_broker::install_crypto_provider();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .build()
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource(service)).build();
    // Only yizhan's own spans (and the events inside them): not those of the libraries.
    let ours = Targets::new()
        .with_target("yizhan_worker", tracing::Level::INFO)
        .with_target("yizhan_producer", tracing::Level::INFO)
        .with_target("yizhan_telemetry", tracing::Level::INFO);
    let traces = tracing_opentelemetry::layer().with_tracer(provider.tracer("yizhan")).with_filter(ours);
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = match format {
        LogFormat::Text => logs.with_filter(filter).boxed(),
        LogFormat::Json => logs.json().with_filter(filter).boxed(),
    };
    tracing_subscriber::registry().with(logs).with(traces).init();
    EXPORTING.store(true, Ordering::Relaxed);
    Ok(Telemetry { provider: Some(provider) })
}

/// The protocol to export with, when an endpoint is configured and the SDK not disabled.
fn otlp_protocol() -> Result<Option<Protocol>, TelemetryError> {
    let set = |name: &str| std::env::var(name).ok().filter(|value| !value.trim().is_empty());
    if set("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
        || set("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim().eq_ignore_ascii_case("none"))
    {
        return Ok(None);
    }
    if set("OTEL_EXPORTER_OTLP_ENDPOINT").is_none() && set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none() {
        return Ok(None);
    }
    // The signal's own variable first, as the specification says; http/protobuf by default.
    let (variable, value) = match set("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") {
        Some(value) => ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", value),
        None => ("OTEL_EXPORTER_OTLP_PROTOCOL", set("OTEL_EXPORTER_OTLP_PROTOCOL").unwrap_or_default()),
    };
    match value.trim().to_ascii_lowercase().as_str() {
        "" | "http/protobuf" => Ok(Some(Protocol::HttpBinary)),
        "http/json" => Ok(Some(Protocol::HttpJson)),
        "grpc" => Err(TelemetryError::Setting {
            variable,
            reason: "grpc is not supported by this build; use http/protobuf (port 4318) or http/json".into(),
        }),
        other => Err(TelemetryError::Setting {
            variable,
            reason: format!("{other:?} is not a protocol; use http/protobuf or http/json"),
        }),
    }
}

/// The standard resource (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`), with the binary's name
/// as `service.name` when those name none.
fn resource(service: &'static str) -> Resource {
    let detected = Resource::builder().build();
    let named = detected
        .get(&opentelemetry::Key::from_static_str("service.name"))
        .is_some_and(|name| !name.as_str().starts_with("unknown_service"));
    if named { detected } else { Resource::builder().with_service_name(service).build() }
}

/// Makes `span` (not yet entered) continue the trace named by a W3C `traceparent`, when this process
/// exports traces and the header is valid; otherwise `span` starts a trace of its own.
pub fn continue_trace(span: &Span, traceparent: Option<&str>, tracestate: Option<&str>) {
    if !exporting() {
        return;
    }
    let parent = remote_context(traceparent, tracestate);
    if parent.span().span_context().is_valid() {
        // Fails only when the span is filtered out, which leaves nothing to parent.
        let _ = span.set_parent(parent);
    }
}

/// [`continue_trace`] from the `traceparent` and `tracestate` headers of an AMQP message.
pub fn continue_from_message(span: &Span, headers: Option<&FieldTable>) {
    if !exporting() {
        return;
    }
    let Some(headers) = headers else { return };
    continue_trace(span, amqp_text(headers, TRACEPARENT), amqp_text(headers, TRACESTATE));
}

/// The trace context headers for the AMQP messages a request publishes: the current span's context
/// when this process exports traces, else a valid incoming `traceparent` (and its `tracestate`)
/// copied as they came, so that workers that export still join the caller's trace. Empty when
/// neither.
pub fn message_headers(traceparent: Option<&str>, tracestate: Option<&str>) -> FieldTable {
    let mut headers = AmqpHeaders(FieldTable::default());
    if exporting() {
        let context = Span::current().context();
        if context.span().span_context().is_valid() {
            TraceContextPropagator::new().inject_context(&context, &mut headers);
        }
    } else if remote_context(traceparent, tracestate).span().span_context().is_valid() {
        headers.set(TRACEPARENT, traceparent.unwrap_or_default().to_string());
        if let Some(state) = tracestate.filter(|s| !s.is_empty() && s.len() <= MAX_TRACESTATE) {
            headers.set(TRACESTATE, state.to_string());
        }
    }
    headers.0
}

fn remote_context(traceparent: Option<&str>, tracestate: Option<&str>) -> Context {
    let carrier = Pair { traceparent, tracestate: tracestate.filter(|s| s.len() <= MAX_TRACESTATE) };
    TraceContextPropagator::new().extract(&carrier)
}

/// A string header of an AMQP message.
fn amqp_text<'a>(headers: &'a FieldTable, name: &str) -> Option<&'a str> {
    match headers.inner().get(&ShortString::from(name))? {
        AMQPValue::LongString(text) => std::str::from_utf8(text.as_bytes()).ok(),
        AMQPValue::ShortString(text) => Some(text.as_str()),
        _ => None,
    }
}

/// The two trace context headers as a propagator reads them.
struct Pair<'a> {
    traceparent: Option<&'a str>,
    tracestate: Option<&'a str>,
}

impl Extractor for Pair<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            TRACEPARENT => self.traceparent,
            TRACESTATE => self.tracestate,
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT, TRACESTATE]
    }
}

/// AMQP headers as a propagator writes them.
struct AmqpHeaders(FieldTable);

impl Injector for AmqpHeaders {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(ShortString::from(key), AMQPValue::LongString(LongString::from(value)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn without_exporting_a_valid_traceparent_is_copied_as_it_came() {
        let headers = message_headers(Some(PARENT), Some("vendor=1"));
        assert_eq!(amqp_text(&headers, TRACEPARENT), Some(PARENT));
        assert_eq!(amqp_text(&headers, TRACESTATE), Some("vendor=1"));
    }

    #[test]
    fn an_invalid_traceparent_is_not_carried() {
        for bad in [
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            let headers = message_headers(Some(bad), Some("vendor=1"));
            assert!(headers.inner().is_empty(), "{bad} was carried: {headers:?}");
        }
        assert!(message_headers(None, None).inner().is_empty());
    }

    #[test]
    fn an_oversized_tracestate_is_dropped() {
        let long = "v=".to_string() + &"x".repeat(MAX_TRACESTATE);
        let headers = message_headers(Some(PARENT), Some(&long));
        assert_eq!(amqp_text(&headers, TRACEPARENT), Some(PARENT));
        assert_eq!(amqp_text(&headers, TRACESTATE), None);
    }

    #[test]
    fn the_span_macro_makes_no_span_when_not_exporting() {
        assert!(span!("claim").is_none());
    }
}

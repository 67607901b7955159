//! Completion callbacks: the worker's consumer of `<prefix>.callbacks`.
//!
//! Each message (a [`CallbackMessage`], published by the pipeline when a job reached a final
//! state) is POSTed to its URL with `X-Yizhan-Delivery` and, when the job has a secret,
//! `X-Yizhan-Signature: sha256=<hex HMAC-SHA256(secret, body)>`, within [`CALLBACK_TIMEOUT`]
//! and without following redirects. A 2xx answer delivers it; anything else sends it through
//! the delay lanes (the worker's retry delays) for another try, up to [`MAX_ATTEMPTS`], then to
//! the dead-letter queue with `x-yizhan-error-kind: callback`. A URL whose host
//! `YIZHAN_CALLBACK_ALLOW` does not name is never called: it is dead-lettered at once. Nothing here
//! touches the job's record or sends the job again.
//!
//! The secret is read from the message to sign the body and goes nowhere else: not into logs,
//! errors, metrics or headers.

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use hmac::{Hmac, Mac};
use lapin::Connection;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use rand::Rng;
use sha2::Sha256;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};
use yizhan_broker::{CALLBACK_ROUTING_KEY, CallbackAllow, Message, Names, PublishError};
use yizhan_schemas::CallbackMessage;

use crate::metrics::Metrics;
use crate::pipeline::{ATTEMPT_HEADER, Publish};

/// Tries in all, the first included; then the callback is dead-lettered.
pub const MAX_ATTEMPTS: u32 = 8;
/// How long a receiver has to answer one POST.
pub const CALLBACK_TIMEOUT: Duration = Duration::from_secs(10);
/// The signature header: `sha256=<hex HMAC-SHA256(secret, body)>`.
pub const SIGNATURE_HEADER: &str = "X-Yizhan-Signature";
/// The delivery id header: the same on every try of one callback message.
pub const DELIVERY_HEADER: &str = "X-Yizhan-Delivery";
/// `x-yizhan-error-kind` of a callback that could not be delivered.
pub const ERROR_KIND: &str = "callback";

/// How long the consumer waits before starting again after its channel was lost for good.
const RESTART_AFTER: Duration = Duration::from_secs(2);

/// `sha256=<hex HMAC-SHA256(secret, body)>`, the value of [`SIGNATURE_HEADER`].
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// What became of one try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The receiver answered 2xx.
    Delivered,
    /// Tried again as attempt `attempt` after `delay` (a retry delay, so a declared delay lane).
    Retry {
        /// The next attempt.
        attempt: u32,
        /// How long it waits in its delay lane.
        delay: Duration,
    },
    /// Sent to the dead-letter queue, kind [`ERROR_KIND`].
    DeadLetter {
        /// Why (the host, never the URL's path, query or the secret).
        reason: String,
    },
}

/// After try `attempt` failed with `failure` (None: delivered): retried with the `attempt`-th
/// retry delay (the last repeats) while tries remain, else dead-lettered.
pub fn next_step(attempt: u32, failure: Option<String>, retry_delays: &[Duration]) -> Step {
    match failure {
        None => Step::Delivered,
        Some(reason) if attempt >= MAX_ATTEMPTS => {
            Step::DeadLetter { reason: format!("{MAX_ATTEMPTS} attempts used: {reason}") }
        }
        Some(_) => {
            let index = (attempt.max(1) as usize - 1).min(retry_delays.len().saturating_sub(1));
            Step::Retry { attempt: attempt + 1, delay: retry_delays.get(index).copied().unwrap_or(CALLBACK_TIMEOUT) }
        }
    }
}

/// Everything the callback consumer needs; shared by its POSTs in flight.
pub struct Callbacks {
    /// The names of the worker's prefix (delay lanes, dead-letter queue, the callbacks queue).
    pub names: Names,
    /// The hosts callbacks may reach.
    pub allow: CallbackAllow,
    /// The worker's retry delays; each is a declared delay lane.
    pub retry_delays: Vec<Duration>,
    /// Confirmed publishing of retry copies and dead letters.
    pub publisher: Arc<dyn Publish>,
    /// The HTTP client of the POSTs: [`CALLBACK_TIMEOUT`], no redirects.
    pub client: reqwest::Client,
    /// The worker's metrics (`yizhan_callbacks_total`).
    pub metrics: Metrics,
}

impl Callbacks {
    /// The consumer's shared state, with its own HTTP client.
    pub fn new(
        names: Names,
        allow: CallbackAllow,
        retry_delays: Vec<Duration>,
        publisher: Arc<dyn Publish>,
        metrics: Metrics,
    ) -> Callbacks {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(CALLBACK_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            // A redirect could lead outside the allowed hosts: it is an answer, not followed.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("yizhan/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client builds once a TLS crypto provider is installed");
        Callbacks { names, allow, retry_delays, publisher, client, metrics }
    }

    /// Handles one message of `<prefix>.callbacks` up to its next step, which is carried out (a
    /// retry copy or a dead letter confirmed by the broker) before this returns. `Err`: not
    /// settled; requeue the message.
    pub async fn handle(&self, body: &[u8], headers: Option<&FieldTable>) -> Result<Step, PublishError> {
        let attempt = attempt_of(headers);
        let (step, job_id) = match serde_json::from_slice::<CallbackMessage>(body) {
            // The parser's message may quote a value, which may be the secret: its category only.
            Err(e) => {
                let reason = format!(
                    "not a callback message ({:?} error at line {}, column {})",
                    e.classify(),
                    e.line(),
                    e.column()
                );
                (Step::DeadLetter { reason }, None)
            }
            Ok(message) => {
                let step = match self.target(&message.url) {
                    Err(reason) => Step::DeadLetter { reason },
                    Ok(host) => {
                        let failure = self.post(&message).await.err().map(|why| format!("{host}: {why}"));
                        next_step(attempt, failure, &self.retry_delays)
                    }
                };
                (step, Some(message.body.id.to_string()))
            }
        };
        match &step {
            Step::Delivered => {
                debug!(job_id = job_id.as_deref().unwrap_or(""), attempt, "callback delivered");
                self.metrics.callback("delivered");
            }
            Step::Retry { attempt: next, delay } => {
                self.publish_delayed(body, headers, job_id.as_deref(), *next, *delay).await?;
                debug!(job_id = job_id.as_deref().unwrap_or(""), attempt, ?delay, "callback failed; retrying");
                self.metrics.callback("retried");
            }
            Step::DeadLetter { reason } => {
                self.dead_letter(body, headers, job_id.as_deref(), reason, attempt).await?;
                warn!(job_id = job_id.as_deref().unwrap_or(""), attempt, %reason, "callback dead-lettered");
                self.metrics.callback("dead_lettered");
            }
        }
        Ok(step)
    }

    /// `host:port` of `url` when a callback may reach it; else why not (the URL's path and query
    /// are never repeated: they may carry a token).
    fn target(&self, url: &str) -> Result<String, String> {
        let parsed = reqwest::Url::parse(url).map_err(|_| "the callback URL does not parse".to_string())?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err("the callback URL is not http:// or https://".into());
        }
        let (Some(host), Some(port)) = (parsed.host_str(), parsed.port_or_known_default()) else {
            return Err("the callback URL has no host".into());
        };
        if !self.allow.allows(host, port) {
            return Err(format!("{host}:{port} is not an allowed callback host (YIZHAN_CALLBACK_ALLOW)"));
        }
        Ok(format!("{host}:{port}"))
    }

    /// One POST; `Err` says why it failed, without the URL.
    async fn post(&self, message: &CallbackMessage) -> Result<(), String> {
        let body = message.body_bytes();
        let mut request = self
            .client
            .post(message.url.as_str())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(DELIVERY_HEADER, message.delivery_id.to_string());
        if let Some(secret) = &message.secret {
            request = request.header(SIGNATURE_HEADER, signature(secret, &body));
        }
        match request.body(body).send().await {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => Err(format!("HTTP {}", response.status().as_u16())),
            Err(e) if e.is_timeout() => Err(format!("no answer within {}s", CALLBACK_TIMEOUT.as_secs())),
            Err(e) => Err(describe(e)),
        }
    }

    /// A copy of the message, unchanged, to the delay lane of `delay`, to come back to
    /// `<prefix>.callbacks` as attempt `attempt`.
    async fn publish_delayed(
        &self,
        body: &[u8],
        headers: Option<&FieldTable>,
        job_id: Option<&str>,
        attempt: u32,
        delay: Duration,
    ) -> Result<(), PublishError> {
        let exchange = self.names.delay(delay);
        let mut headers = headers.cloned().unwrap_or_default();
        headers.insert(ATTEMPT_HEADER.into(), AMQPValue::LongUInt(attempt));
        // Up to 20% earlier than the lane's TTL, so that the retries of a burst spread out.
        let lane_ms = delay.as_millis() as u64;
        let jittered = lane_ms - rand::rng().random_range(0..=lane_ms / 5);
        self.publish(Message {
            exchange: &exchange,
            routing_key: CALLBACK_ROUTING_KEY,
            body,
            message_id: job_id,
            headers,
            expiration_ms: Some(jittered.max(1)),
        })
        .await
    }

    /// The message, unchanged, to `<prefix>.dead` with the reason headers.
    async fn dead_letter(
        &self,
        body: &[u8],
        headers: Option<&FieldTable>,
        job_id: Option<&str>,
        reason: &str,
        attempts: u32,
    ) -> Result<(), PublishError> {
        let mut headers = headers.cloned().unwrap_or_default();
        headers.insert("x-yizhan-error-kind".into(), AMQPValue::LongString(LongString::from(ERROR_KIND)));
        headers.insert("x-yizhan-error".into(), AMQPValue::LongString(LongString::from(reason)));
        headers.insert("x-yizhan-attempts".into(), AMQPValue::LongUInt(attempts));
        let dead = self.names.dead();
        self.publish(Message {
            exchange: &dead,
            routing_key: "",
            body,
            message_id: job_id,
            headers,
            expiration_ms: None,
        })
        .await
    }

    async fn publish(&self, message: Message<'_>) -> Result<(), PublishError> {
        self.publisher.publish_all(std::slice::from_ref(&message)).await.pop().expect("one result per message")
    }

    /// Handles one delivery and acknowledges it; requeues it when it could not be settled.
    async fn settle(&self, delivery: Delivery) {
        match self.handle(&delivery.data, delivery.properties.headers().as_ref()).await {
            // An ack lost with the channel means a redelivery: one more POST, never a lost callback.
            Ok(_) => {
                let _ = delivery.ack(BasicAckOptions::default()).await;
            }
            Err(e) => {
                warn!(error = %e, "could not settle a callback; requeueing it");
                // A little pause, so that a broker outage does not spin through redeliveries.
                tokio::time::sleep(Duration::from_millis(500)).await;
                let _ = delivery.nack(BasicNackOptions { requeue: true, ..Default::default() }).await;
            }
        }
    }
}

/// The try this copy is (1 for the first).
fn attempt_of(headers: Option<&FieldTable>) -> u32 {
    match headers.and_then(|h| h.inner().get(&ShortString::from(ATTEMPT_HEADER))) {
        Some(AMQPValue::LongUInt(n)) => (*n).max(1),
        Some(AMQPValue::LongInt(n)) => (*n).max(1) as u32,
        Some(AMQPValue::LongLongInt(n)) => (*n).clamp(1, i64::from(u32::MAX)) as u32,
        Some(AMQPValue::ShortUInt(n)) => u32::from(*n).max(1),
        _ => 1,
    }
}

/// A request error and its causes, `: `-joined, without the URL.
fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = if error.is_connect() { "cannot connect".to_string() } else { error.to_string() };
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Consumes `<prefix>.callbacks` on a channel of its own with at most `concurrency` POSTs at once
/// (its prefetch), until `stop`: then it takes no more, finishes the POSTs in flight and returns.
/// A lost connection is waited out (the connection recovers by itself); a lost channel or
/// consumer is started again.
pub async fn consume(
    connection: Arc<Connection>,
    callbacks: Arc<Callbacks>,
    concurrency: u16,
    tag: String,
    stop: CancellationToken,
) {
    let tracker = TaskTracker::new();
    while !stop.is_cancelled() {
        match consume_channel(&connection, &callbacks, concurrency.max(1), &tag, &stop, &tracker).await {
            Ok(()) => break,
            Err(e) => {
                warn!(error = %e, "the callback consumer stopped; starting it again");
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(RESTART_AFTER) => {}
                }
            }
        }
    }
    tracker.close();
    tracker.wait().await;
}

/// One channel's life: `Ok` once stopped and drained, `Err` when the channel or its consumer is
/// gone for good.
async fn consume_channel(
    connection: &Connection,
    callbacks: &Arc<Callbacks>,
    concurrency: u16,
    tag: &str,
    stop: &CancellationToken,
    tracker: &TaskTracker,
) -> Result<(), String> {
    let broker = |e: lapin::Error| e.to_string();
    let channel = connection.create_channel().await.map_err(broker)?;
    channel.basic_qos(concurrency, BasicQosOptions { global: false }).await.map_err(broker)?;
    let queue = callbacks.names.callbacks();
    let mut consumer = channel
        .basic_consume(queue.as_str().into(), tag.into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .map_err(broker)?;
    loop {
        let next = tokio::select! {
            _ = stop.cancelled() => break,
            next = consumer.next() => next,
        };
        match next {
            Some(Ok(delivery)) => {
                let callbacks = callbacks.clone();
                tracker.spawn(async move { callbacks.settle(delivery).await });
            }
            Some(Err(error)) => {
                warn!(error = %error, "callback consumer: waiting for the broker connection to recover");
                channel.wait_for_recovery(error).await.map_err(broker)?;
                info!("callback consumer: the broker connection recovered; consuming again");
            }
            None => return Err(format!("the consumer of {queue} ended (its queue deleted?)")),
        }
    }
    // Stopping: nothing more from the broker; the POSTs in flight settle on this channel before it
    // closes (prefetched deliveries not started go back to the queue with it).
    let _ = channel.basic_cancel(tag.into(), BasicCancelOptions::default()).await;
    tracker.close();
    tracker.wait().await;
    let _ = channel.close(200, "worker stopping".into()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use axum::http::{HeaderMap, StatusCode};
    use uuid::Uuid;
    use yizhan_schemas::{Callback, CallbackBody};

    use super::*;

    #[test]
    fn the_signature_is_the_hex_hmac_sha256_of_the_body() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn failures_retry_with_the_retry_delays_then_dead_letter() {
        let delays = [Duration::from_millis(200), Duration::from_secs(1)];
        let fail = || Some("h:80: HTTP 500".to_string());
        assert_eq!(next_step(1, None, &delays), Step::Delivered);
        assert_eq!(next_step(1, fail(), &delays), Step::Retry { attempt: 2, delay: delays[0] });
        assert_eq!(next_step(2, fail(), &delays), Step::Retry { attempt: 3, delay: delays[1] });
        assert_eq!(next_step(7, fail(), &delays), Step::Retry { attempt: 8, delay: delays[1] }, "the last repeats");
        assert_eq!(
            next_step(8, fail(), &delays),
            Step::DeadLetter { reason: "8 attempts used: h:80: HTTP 500".into() }
        );
    }

    /// One message the broker was asked to store: exchange, routing key, body, headers.
    type Stored = (String, String, Vec<u8>, FieldTable);

    /// What the broker was asked to store.
    #[derive(Default)]
    struct Recorder {
        sent: Mutex<Vec<Stored>>,
    }

    #[async_trait::async_trait]
    impl Publish for Recorder {
        async fn publish_all(&self, messages: &[Message<'_>]) -> Vec<Result<(), PublishError>> {
            let mut sent = self.sent.lock().unwrap();
            for m in messages {
                sent.push((m.exchange.to_string(), m.routing_key.to_string(), m.body.to_vec(), m.headers.clone()));
            }
            messages.iter().map(|_| Ok(())).collect()
        }
    }

    /// A receiver answering `status` and keeping each request's headers and body.
    async fn receiver(status: StatusCode) -> (String, Arc<Mutex<Vec<(HeaderMap, Vec<u8>)>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let kept = seen.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let kept = kept.clone();
                async move {
                    kept.lock().unwrap().push((headers, body.to_vec()));
                    status
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}/hook?token=query-token"), seen)
    }

    fn callbacks(allow: &str, recorder: Arc<Recorder>) -> Callbacks {
        Callbacks::new(
            Names::new("cb-test"),
            CallbackAllow::parse(allow).unwrap(),
            vec![Duration::from_millis(200), Duration::from_millis(400)],
            recorder,
            Metrics::new(),
        )
    }

    fn message(url: &str, secret: Option<&str>) -> CallbackMessage {
        let body = CallbackBody {
            id: Uuid::now_v7(),
            campaign: None,
            status: "succeeded".into(),
            attempts: 1,
            result: Some(serde_json::json!({"numbers": [{"code": "Ok"}]})),
            error: None,
            delivery: None,
        };
        CallbackMessage::new(&Callback { url: url.into(), secret: secret.map(str::to_string) }, body)
    }

    fn header(headers: &FieldTable, name: &str) -> Option<String> {
        match headers.inner().get(&ShortString::from(name))? {
            AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
            other => Some(format!("{other:?}")),
        }
    }

    #[tokio::test]
    async fn a_delivered_callback_is_signed_and_carries_its_delivery_id() {
        let (url, seen) = receiver(StatusCode::NO_CONTENT).await;
        let recorder = Arc::new(Recorder::default());
        let callbacks = callbacks("127.0.0.1", recorder.clone());
        let message = message(&url, Some("s3cr3t-key"));
        let step = callbacks.handle(&message.to_bytes(), None).await.unwrap();
        assert_eq!(step, Step::Delivered);
        assert!(recorder.sent.lock().unwrap().is_empty(), "nothing to retry");
        let seen = seen.lock().unwrap();
        let (headers, body) = &seen[0];
        assert_eq!(body, &message.body_bytes());
        assert_eq!(headers["x-yizhan-signature"], signature("s3cr3t-key", body).as_str());
        assert_eq!(headers["x-yizhan-delivery"], message.delivery_id.to_string().as_str());
        assert_eq!(headers["content-type"], "application/json");
        assert!(!String::from_utf8_lossy(body).contains("s3cr3t-key"));
    }

    #[tokio::test]
    async fn no_secret_no_signature_header() {
        let (url, seen) = receiver(StatusCode::OK).await;
        let callbacks = callbacks("127.0.0.1", Arc::new(Recorder::default()));
        assert_eq!(callbacks.handle(&message(&url, None).to_bytes(), None).await.unwrap(), Step::Delivered);
        let seen = seen.lock().unwrap();
        assert!(seen[0].0.get("x-yizhan-signature").is_none());
        assert!(seen[0].0.get("x-yizhan-delivery").is_some());
    }

    #[tokio::test]
    async fn a_failed_callback_goes_through_the_delay_lane_then_to_the_dead_letters_without_its_secret() {
        let (url, seen) = receiver(StatusCode::INTERNAL_SERVER_ERROR).await;
        let recorder = Arc::new(Recorder::default());
        let callbacks = callbacks("127.0.0.1", recorder.clone());
        let message = message(&url, Some("s3cr3t-key"));
        let bytes = message.to_bytes();

        let step = callbacks.handle(&bytes, None).await.unwrap();
        assert_eq!(step, Step::Retry { attempt: 2, delay: Duration::from_millis(200) });
        let (exchange, key, body, headers) = recorder.sent.lock().unwrap().pop().unwrap();
        assert_eq!((exchange.as_str(), key.as_str()), ("cb-test.delay.200ms", "callback"));
        assert_eq!(body, bytes, "the message goes unchanged");
        assert_eq!(header(&headers, ATTEMPT_HEADER).as_deref(), Some("LongUInt(2)"));

        let mut last = FieldTable::default();
        last.insert(ATTEMPT_HEADER.into(), AMQPValue::LongUInt(MAX_ATTEMPTS));
        let step = callbacks.handle(&bytes, Some(&last)).await.unwrap();
        let Step::DeadLetter { reason } = step else { panic!("dead-lettered after {MAX_ATTEMPTS}") };
        let (exchange, _, body, headers) = recorder.sent.lock().unwrap().pop().unwrap();
        assert_eq!(exchange, "cb-test.dead");
        assert_eq!(body, bytes);
        assert_eq!(header(&headers, "x-yizhan-error-kind").as_deref(), Some("callback"));
        let error = header(&headers, "x-yizhan-error").unwrap();
        assert_eq!(error, reason);
        assert!(error.starts_with("8 attempts used: 127.0.0.1:") && error.ends_with(": HTTP 500"), "{error}");
        for (name, value) in headers.inner() {
            let text = format!("{name}={value:?}");
            assert!(!text.contains("s3cr3t-key") && !text.contains("query-token"), "{text}");
        }
        assert_eq!(seen.lock().unwrap().len(), 2);
        let metrics = callbacks.metrics.render();
        assert!(metrics.contains(r#"yizhan_callbacks_total{outcome="retried"} 1"#), "{metrics}");
        assert!(metrics.contains(r#"yizhan_callbacks_total{outcome="dead_lettered"} 1"#), "{metrics}");
        assert!(!metrics.contains("s3cr3t-key"));
    }

    #[tokio::test]
    async fn a_host_outside_the_allow_list_is_never_called() {
        let (url, seen) = receiver(StatusCode::OK).await;
        for allow in ["", "hooks.example.com", "127.0.0.1:1", "*.0.0.1"] {
            let recorder = Arc::new(Recorder::default());
            let callbacks = callbacks(allow, recorder.clone());
            let step = callbacks.handle(&message(&url, Some("s3cr3t-key")).to_bytes(), None).await.unwrap();
            let Step::DeadLetter { reason } = step else { panic!("{allow:?}: refused") };
            assert!(reason.ends_with("is not an allowed callback host (YIZHAN_CALLBACK_ALLOW)"), "{reason}");
            let (exchange, ..) = recorder.sent.lock().unwrap().pop().unwrap();
            assert_eq!(exchange, "cb-test.dead");
        }
        assert!(seen.lock().unwrap().is_empty(), "never called");
        for url in ["ftp://127.0.0.1/x", "not a url"] {
            let callbacks = callbacks("127.0.0.1", Arc::new(Recorder::default()));
            let step = callbacks.handle(&message(url, None).to_bytes(), None).await.unwrap();
            assert!(matches!(step, Step::DeadLetter { .. }), "{url}: {step:?}");
        }
    }

    #[tokio::test]
    async fn a_message_that_is_not_a_callback_is_dead_lettered_without_echoing_it() {
        let recorder = Arc::new(Recorder::default());
        let callbacks = callbacks("127.0.0.1", recorder.clone());
        let body = br#"{"delivery_id": 5, "url": "http://127.0.0.1/", "secret": 7}"#;
        let Step::DeadLetter { reason } = callbacks.handle(body, None).await.unwrap() else { panic!("dead") };
        assert!(reason.starts_with("not a callback message (Data error"), "{reason}");
        assert!(!reason.contains("secret") && !reason.contains("127.0.0.1"), "{reason}");
    }
}

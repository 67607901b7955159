//! Dead-letter tooling: read, replay and purge `<prefix>.dead`.
//!
//! Quorum queues cannot be peeked, and a requeued message counts against the queue's delivery
//! limit (RabbitMQ 4 drops a quorum queue's message past its default limit of 20 returns). So
//! reading never requeues: every message currently there is taken with manual ack, the ones to keep
//! are published again to `<prefix>.dead` (publisher confirms, same body and headers) and only then
//! acked. A crash between the confirm and the ack leaves a duplicate in the dead-letter queue, never
//! a loss; a copy that could not be confirmed is returned with `nack(requeue)` instead.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicNackOptions, QueuePurgeOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, Connection};
use serde::Serialize;
use serde_json::Value;
use std::borrow::Cow;
use std::sync::Arc;
use uuid::Uuid;

use yizhan_broker::{Message, Names, PublishError, Publisher, Recovery, Topology};
use yizhan_schemas::{DEFAULT_TENANT, Priority};
use yizhan_state::{StateStore, redact};

use crate::tenants::Tenants;

/// The header a replayed copy carries; the worker lets it take over its `dead` idempotency key.
pub const REPLAY_HEADER: &str = "x-yizhan-replay";
/// `x-yizhan-error-kind` of a completion callback that could not be delivered.
const CALLBACK_KIND: &str = "callback";
/// What a callback secret is shown as.
const REDACTED: &str = "<redacted>";
/// Headers a replayed copy drops: the attempt counter (attempts restart at 1) and the last verdict.
const DROPPED_ON_REPLAY: &[&str] =
    &["x-yizhan-attempt", "x-yizhan-error-kind", "x-yizhan-error", "x-yizhan-attempts", "x-delivery-count"];

/// Why a dead-letter command failed; messages already taken return to the queue with the channel.
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    /// The connection or its channels could not be opened.
    #[error("cannot reach the broker at {url}: {source}")]
    Connect {
        /// The broker URL with its password redacted.
        url: String,
        /// lapin's error.
        source: lapin::Error,
    },
    /// Declaring the exchanges and queues failed.
    #[error("{0}")]
    Topology(#[from] yizhan_broker::TopologyError),
    /// A get, purge or declare on the open channel failed.
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
}

/// One dead letter as the tooling shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    /// The job id (from the message id or the body), when there is one.
    pub id: Option<String>,
    /// `permanent`, `exhausted`, `invalid`, `ambiguous` or `callback` (a completion callback that
    /// could not be delivered) (header `x-yizhan-error-kind`); empty
    /// when the broker dead-lettered it (delivery limit) rather than a worker.
    pub kind: String,
    /// Why, secrets redacted (header `x-yizhan-error`); empty when absent.
    pub reason: String,
    /// Attempts made (header `x-yizhan-attempts`); 0 when absent.
    pub attempts: u32,
    /// The job's `connector`, None when the body is not a job.
    pub connector: Option<String>,
    /// The job's `config` name, None when absent.
    pub config: Option<String>,
    /// The job's `action`, None when absent.
    pub action: Option<String>,
    /// The job's `priority` as written; None when absent (replayed to `normal`).
    pub priority: Option<String>,
    /// The job's `tenant` as written; None when absent (replayed to tenant `default`'s lane).
    pub tenant: Option<String>,
    /// When the job was submitted, from its UUIDv7 id (RFC 3339), when the id carries a time.
    pub submitted_at: Option<String>,
    /// The original message body: the job as JSON (a callback's secret shown as `<redacted>`),
    /// or the raw text of an invalid message.
    pub job: Value,
    /// `submitted_at` as a time, for filtering; not serialized.
    #[serde(skip)]
    pub submitted: Option<SystemTime>,
}

/// A message taken from the queue, not yet settled.
struct Taken {
    delivery: Delivery,
    letter: DeadLetter,
}

/// What `replay` did.
#[derive(Debug, Default, Serialize)]
pub struct ReplayReport {
    /// The ids of the letters sent back to the jobs exchange, in queue order; None for a letter without an id.
    pub replayed: Vec<Option<String>>,
    /// How many letters the filter left in the dead-letter queue.
    pub kept: usize,
    /// Failures to confirm; those messages stay in (or went back to) the dead-letter queue.
    pub failed: Vec<String>,
}

/// A connection to the broker for the dead-letter queue.
pub struct Dlq {
    connection: Connection,
    channel: Channel,
    publisher: Publisher,
    names: Names,
    /// The tenants whose lanes replay declared (they may have been deleted since).
    tenants: Tenants,
}

impl Dlq {
    /// Connects without automatic recovery (a one-shot command) and declares the topology of
    /// `names` (a prefix, or [`yizhan_broker::Settings::names`]).
    pub async fn connect(url: &str, names: impl Into<Names>) -> Result<Dlq, DlqError> {
        let connect_error = |source| DlqError::Connect { url: redact::url_credentials(url), source };
        let connection =
            yizhan_broker::connect(url, "yizhan-producer-dlq", Recovery::FailFast).await.map_err(connect_error)?;
        let names = names.into();
        let channel = connection.create_channel().await.map_err(connect_error)?;
        yizhan_broker::declare(&channel, &Topology { names: names.clone(), delays: Vec::new() }).await?;
        let publisher = Publisher::open(&connection).await.map_err(connect_error)?;
        Ok(Dlq { connection, channel, publisher, tenants: Tenants::declare_only(names.clone()), names })
    }

    /// Also registers the tenants of replayed letters in `registry` (the state store workers
    /// read); without it their lanes are declared only (the tenants were registered when their
    /// jobs were first submitted).
    pub fn with_tenants(mut self, registry: Arc<dyn StateStore>) -> Dlq {
        self.tenants.set_registry(registry);
        self
    }

    /// Every dead letter there now; the queue is left as it was (see the module docs).
    pub async fn list(&self) -> Result<Vec<DeadLetter>, DlqError> {
        self.list_first(usize::MAX).await
    }

    /// The first `limit` dead letters (the console's bounded read); they go back to the queue as
    /// they were (requeued, not copied).
    pub async fn list_first(&self, limit: usize) -> Result<Vec<DeadLetter>, DlqError> {
        let taken = self.take_up_to(limit).await?;
        let letters = taken.iter().map(|t| t.letter.clone()).collect();
        self.put_back(taken).await;
        Ok(letters)
    }

    /// Sends the dead letters `select` picks back to `<prefix>.jobs` as fresh first attempts marked
    /// as replays, each to its lane of its tenant, and keeps the others.
    pub async fn replay(&self, select: &(dyn Fn(&DeadLetter) -> bool + Sync)) -> Result<ReplayReport, DlqError> {
        let taken = self.take_all().await?;
        let (chosen, mut kept): (Vec<Taken>, Vec<Taken>) = taken.into_iter().partition(|t| select(&t.letter));
        let mut report = ReplayReport { kept: kept.len(), ..Default::default() };
        // Back to the lane of the job's tenant, declared first (a letter whose tenant cannot be
        // set up stays in the dead-letter queue).
        let unready = self.tenants.unready(chosen.iter().map(tenant_of));
        let failed =
            if unready.is_empty() { Default::default() } else { self.tenants.prepare(&self.connection, unready).await };
        let (chosen, blocked): (Vec<Taken>, Vec<Taken>) =
            chosen.into_iter().partition(|t| !failed.contains_key(tenant_of(t)));
        for t in &blocked {
            let reason = &failed[tenant_of(t)];
            report.failed.push(format!(
                "{}: tenant {:?}: {reason}",
                t.letter.id.as_deref().unwrap_or("(no id)"),
                tenant_of(t)
            ));
        }
        kept.extend(blocked);
        let exchange = self.names.jobs_exchange();
        let prepared: Vec<(FieldTable, Cow<'static, str>)> = chosen
            .iter()
            .map(|t| {
                let mut headers = FieldTable::default();
                for (name, value) in headers_of(&t.delivery).inner() {
                    if !DROPPED_ON_REPLAY.contains(&name.as_str()) {
                        headers.insert(name.clone(), value.clone());
                    }
                }
                headers.insert(REPLAY_HEADER.into(), AMQPValue::LongString(LongString::from("1")));
                // A completion callback goes back to the callbacks queue, for a fresh round of tries.
                if t.letter.kind == CALLBACK_KIND {
                    return (headers, Cow::Borrowed(yizhan_broker::CALLBACK_ROUTING_KEY));
                }
                let lane = match t.letter.priority.as_deref() {
                    Some("high") => Priority::High,
                    Some("bulk") => Priority::Bulk,
                    _ => Priority::Normal,
                };
                // The shard of its idempotency key (a job without one has its id as key).
                let key = t.letter.job.get("idempotency_key").and_then(Value::as_str);
                let key = key.or(t.letter.id.as_deref()).unwrap_or_default();
                (headers, self.names.job_routing_key(lane, tenant_of(t), key))
            })
            .collect();
        let messages: Vec<Message<'_>> = chosen
            .iter()
            .zip(&prepared)
            .map(|(t, (headers, routing_key))| Message {
                exchange: &exchange,
                routing_key,
                body: &t.delivery.data,
                message_id: t.letter.id.as_deref(),
                headers: headers.clone(),
                expiration_ms: None,
            })
            .collect();
        let results = self.publisher.publish_all(&messages).await;
        for (t, result) in chosen.into_iter().zip(results) {
            settle(&t.delivery, &result).await;
            match result {
                Ok(()) => report.replayed.push(t.letter.id.clone()),
                Err(e) => report.failed.push(format!("{}: {e}", t.letter.id.as_deref().unwrap_or("(no id)"))),
            }
        }
        self.put_back(kept).await;
        Ok(report)
    }

    /// Deletes the dead letters `select` picks and keeps the others (a tenant's purge); returns
    /// the ids deleted.
    pub async fn discard(
        &self,
        select: &(dyn Fn(&DeadLetter) -> bool + Sync),
    ) -> Result<Vec<Option<String>>, DlqError> {
        let taken = self.take_all().await?;
        let (chosen, kept): (Vec<Taken>, Vec<Taken>) = taken.into_iter().partition(|t| select(&t.letter));
        let mut discarded = Vec::with_capacity(chosen.len());
        for t in chosen {
            settle(&t.delivery, &Ok(())).await;
            discarded.push(t.letter.id);
        }
        self.put_back(kept).await;
        Ok(discarded)
    }

    /// Empties the dead-letter queue; returns how many messages it held.
    pub async fn purge(&self) -> Result<u32, DlqError> {
        Ok(self.channel.queue_purge(self.names.dead().as_str().into(), QueuePurgeOptions::default()).await?)
    }

    /// How many messages the dead-letter queue holds.
    pub async fn depth(&self) -> Result<u32, DlqError> {
        let queue = self
            .channel
            .queue_declare(
                self.names.dead().as_str().into(),
                lapin::options::QueueDeclareOptions { passive: true, ..Default::default() },
                FieldTable::default(),
            )
            .await?;
        Ok(queue.message_count())
    }

    /// Takes every message there now, unacked; unacked messages are not handed out again on this
    /// channel, so the loop ends when the queue has nothing left for us.
    async fn take_all(&self) -> Result<Vec<Taken>, DlqError> {
        self.take_up_to(usize::MAX).await
    }

    /// Takes at most `limit` messages, unacked, as [`Dlq::take_all`] does.
    async fn take_up_to(&self, limit: usize) -> Result<Vec<Taken>, DlqError> {
        let queue = self.names.dead();
        let mut taken = Vec::new();
        while taken.len() < limit
            && let Some(message) =
                self.channel.basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false }).await?
        {
            let letter = describe(&message.delivery);
            taken.push(Taken { delivery: message.delivery, letter });
        }
        Ok(taken)
    }

    /// Returns `taken` to the dead-letter queue as they are (a requeue). Not as republished copies
    /// with the originals acked: on quorum queues RabbitMQ may ignore acks sent just before the
    /// channel closes (rabbitmq-server issue 10327, seen here on 3.10), which left originals next
    /// to their copies, so every read could grow the queue. A requeue that is lost so is done by
    /// the channel's close anyway: each letter comes back exactly once.
    async fn put_back(&self, taken: Vec<Taken>) {
        for t in taken {
            let requeue = BasicNackOptions { requeue: true, ..Default::default() };
            if let Err(e) = t.delivery.nack(requeue).await {
                // The channel closing returns the message to the queue anyway.
                tracing::warn!(error = %e, "requeueing a dead letter failed; the channel's close returns it");
            }
        }
    }
}

/// The tenant whose lane a replayed letter goes to: its job's, when that can name queues.
fn tenant_of(taken: &Taken) -> &str {
    taken.letter.tenant()
}

impl DeadLetter {
    /// The letter's tenant: its job's, when that can name queues, else `default` (also for a
    /// message that is not a job).
    pub fn tenant(&self) -> &str {
        self.tenant.as_deref().filter(|tenant| yizhan_schemas::is_valid_tenant(tenant)).unwrap_or(DEFAULT_TENANT)
    }
}

/// Acks the original once its copy is confirmed; otherwise returns it to the queue.
async fn settle(delivery: &Delivery, copied: &Result<(), PublishError>) {
    let outcome = if copied.is_ok() {
        delivery.ack(BasicAckOptions::default()).await
    } else {
        delivery.nack(BasicNackOptions { requeue: true, ..Default::default() }).await
    };
    if let Err(e) = outcome {
        // The channel closing returns the message to the queue anyway: a duplicate, not a loss.
        tracing::warn!(error = %e, "settling a dead letter failed; it returns to the queue");
    }
}

fn headers_of(delivery: &Delivery) -> FieldTable {
    delivery.properties.headers().clone().unwrap_or_default()
}

fn describe(delivery: &Delivery) -> DeadLetter {
    let headers = headers_of(delivery);
    let text = |name: &str| match headers.inner().get(&ShortString::from(name)) {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        Some(AMQPValue::ShortString(s)) => s.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    };
    let attempts = match headers.inner().get(&ShortString::from("x-yizhan-attempts")) {
        Some(AMQPValue::LongUInt(n)) => *n,
        Some(AMQPValue::LongInt(n)) => u32::try_from(*n).unwrap_or(0),
        Some(AMQPValue::LongLongInt(n)) => u32::try_from(*n).unwrap_or(0),
        Some(AMQPValue::ShortUInt(n)) => u32::from(*n),
        _ => 0,
    };
    let mut job: Value = serde_json::from_slice(&delivery.data)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&delivery.data).into_owned()));
    redact_callback_secret(&mut job);
    let field = |name: &str| job.get(name).and_then(Value::as_str).map(str::to_string);
    let id = delivery.properties.message_id().as_ref().map(|id| id.to_string()).or_else(|| field("id"));
    let submitted = id.as_deref().and_then(|id| Uuid::parse_str(id).ok()).and_then(|id| id.get_timestamp()).map(|ts| {
        let (secs, nanos) = ts.to_unix();
        UNIX_EPOCH + Duration::new(secs, nanos)
    });
    DeadLetter {
        id,
        kind: text("x-yizhan-error-kind"),
        reason: text("x-yizhan-error"),
        attempts,
        connector: field("connector"),
        config: field("config"),
        action: field("action"),
        priority: field("priority"),
        tenant: field("tenant"),
        submitted_at: submitted.map(|t| humantime::format_rfc3339_seconds(t).to_string()),
        job,
        submitted,
    }
}

/// Hides a callback's signing secret from what the tooling shows: a job's `callback.secret`, or a
/// callback message's `secret` (the message itself keeps it, so that a replay still signs).
fn redact_callback_secret(body: &mut Value) {
    if let Some(secret) = body.get_mut("callback").and_then(|c| c.get_mut("secret")) {
        *secret = Value::String(REDACTED.into());
    }
    if body.get("delivery_id").is_some()
        && let Some(secret) = body.get_mut("secret")
    {
        *secret = Value::String(REDACTED.into());
    }
}

/// Parses `--since`: a duration back from now (`2h`, `30m`) or an RFC 3339 time.
pub fn parse_since(text: &str) -> Result<SystemTime, String> {
    if let Ok(duration) = humantime::parse_duration(text) {
        return SystemTime::now()
            .checked_sub(duration)
            .ok_or_else(|| format!("--since {text:?} reaches before the epoch"));
    }
    humantime::parse_rfc3339_weak(text)
        .map_err(|_| format!("--since {text:?}: expected a duration such as 2h or an RFC 3339 time"))
}

/// The filters of `dlq list` and `dlq replay`.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this error kind (`permanent`, `exhausted`, `invalid`, `ambiguous`); None: any.
    pub kind: Option<String>,
    /// Only jobs of this connector kind; None: any.
    pub connector: Option<String>,
    /// Jobs submitted at or after this time (from their UUIDv7 ids; ids without a time never match).
    pub since: Option<SystemTime>,
    /// Job ids; empty: any.
    pub ids: Vec<String>,
}

impl Filter {
    /// Whether `letter` passes every filter that is set (an empty filter matches all).
    pub fn matches(&self, letter: &DeadLetter) -> bool {
        self.kind.as_ref().is_none_or(|kind| &letter.kind == kind)
            && self.connector.as_ref().is_none_or(|c| letter.connector.as_ref() == Some(c))
            && self.since.is_none_or(|since| letter.submitted.is_some_and(|t| t >= since))
            && (self.ids.is_empty() || letter.id.as_ref().is_some_and(|id| self.ids.contains(id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_durations_and_times() {
        let an_hour_ago = parse_since("1h").unwrap();
        let age = SystemTime::now().duration_since(an_hour_ago).unwrap();
        assert!(age >= Duration::from_secs(3600) && age < Duration::from_secs(3700));
        assert_eq!(parse_since("1970-01-01T00:01:00Z").unwrap(), UNIX_EPOCH + Duration::from_secs(60));
        assert!(parse_since("yesterday").unwrap_err().contains("RFC 3339"));
    }

    #[test]
    fn callback_secrets_are_not_shown() {
        let mut job = serde_json::json!({"connector": "tencent_sms", "callback": {"url": "https://h.example.com", "secret": "k3y"}});
        redact_callback_secret(&mut job);
        assert_eq!(job["callback"], serde_json::json!({"url": "https://h.example.com", "secret": "<redacted>"}));
        let mut message =
            serde_json::json!({"delivery_id": "x", "url": "https://h.example.com", "secret": "k3y", "body": {}});
        redact_callback_secret(&mut message);
        assert_eq!(message["secret"], "<redacted>");
        let mut plain = serde_json::json!({"connector": "wecom_robot", "params": {"secret": "not a callback's"}});
        redact_callback_secret(&mut plain);
        assert_eq!(plain["params"]["secret"], "not a callback's");
    }

    #[test]
    fn filters_combine() {
        let letter = DeadLetter {
            id: Some("a".into()),
            kind: "permanent".into(),
            reason: String::new(),
            attempts: 1,
            connector: Some("wecom_robot".into()),
            config: None,
            action: None,
            priority: None,
            tenant: None,
            submitted_at: None,
            job: Value::Null,
            submitted: Some(UNIX_EPOCH + Duration::from_secs(100)),
        };
        assert!(Filter::default().matches(&letter));
        let kind = |k: &str| Filter { kind: Some(k.into()), ..Default::default() };
        assert!(kind("permanent").matches(&letter));
        assert!(!kind("invalid").matches(&letter));
        let since = |s: u64| Filter { since: Some(UNIX_EPOCH + Duration::from_secs(s)), ..Default::default() };
        assert!(since(100).matches(&letter) && !since(101).matches(&letter));
        assert!(!Filter { ids: vec!["b".into()], ..Default::default() }.matches(&letter));
        assert!(!Filter { connector: Some("tencent_sms".into()), ..Default::default() }.matches(&letter));
    }
}

//! One delivery, top to bottom: decode → validate → claim → rate-limit → execute → classify →
//! record → ack.
//!
//! Every path ends in exactly one of: recorded and acked (succeeded, duplicate), a confirmed retry
//! copy in a delay lane then ack (transient), a confirmed copy in `<prefix>.dead` then ack
//! (permanent, exhausted, invalid, ambiguous), or — when the store or the broker is unreachable —
//! a requeue, so that nothing is lost.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lapin::message::Delivery;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use rand::Rng;
use serde_json::Value;
use tracing::{Instrument, debug, info, warn};
use yizhan_broker::{Message, Names, PublishError, Publisher};
use yizhan_schemas::{Effect, FieldError, Job, MissingId, validate_job};
use yizhan_state::{Claim, ClaimRequest, Finish, Parked, ParkingLot, StateStore, StoreError, now_millis};

use crate::acks::{Acks, Tag};
use crate::config::OnAmbiguous;
use crate::connectors::{Call, Connector, Failure};
use crate::metrics::{JobOutcome, Metrics, RequestResult};
use crate::ratelimit::{Admission, Limit, LimitError, Limiter, Quota};

/// Header carrying the attempt number of a retry copy (absent on the first delivery).
pub const ATTEMPT_HEADER: &str = "x-yizhan-attempt";
/// Header set by `yizhan-producer dlq replay` on a copy taken back from the dead-letter queue.
pub const REPLAY_HEADER: &str = "x-yizhan-replay";

/// A connector config ready to execute jobs.
pub struct Configured {
    pub connector: Arc<dyn Connector>,
    /// Every limit of the config (one or several, such as Feishu's 100/min and 5/s).
    pub quotas: Vec<Quota>,
    /// The limit of each recipient, for actions with one (by action name).
    pub per_recipient: HashMap<&'static str, Vec<Quota>>,
    pub on_ambiguous: OnAmbiguous,
}

/// Everything a delivery needs; shared by all in-flight jobs of a worker.
pub struct Pipeline {
    pub names: Names,
    pub retry_delays: Vec<Duration>,
    pub connectors: HashMap<(String, String), Configured>,
    pub store: Arc<dyn StateStore>,
    /// Where jobs that must wait longer than [`MAX_INLINE_WAIT`] are held until they can run.
    pub parking: Arc<dyn ParkingLot>,
    pub limiter: Arc<dyn Limiter>,
    pub publisher: Publisher,
    /// Acknowledgements of the consuming channel, coalesced.
    pub acks: Arc<Acks>,
    pub metrics: Metrics,
    /// This worker instance, the owner of its claims.
    pub owner: String,
    pub lease: Duration,
    /// Keys this worker holds now; their leases are renewed until they finish.
    pub held: Mutex<HashSet<String>>,
}

/// Why a delivery could not be settled; it is requeued and handled again.
#[derive(Debug, thiserror::Error)]
pub enum Unsettled {
    #[error("state store: {0}")]
    Store(#[from] StoreError),
    #[error("publishing: {0}")]
    Publish(#[from] PublishError),
    #[error("{0}")]
    Limits(#[from] LimitError),
}

/// How long a job may wait for a rate-limit token while holding a slot; a longer wait sends it
/// back through a delay lane, so that one slow or paused config never holds slots others need.
pub const MAX_INLINE_WAIT: Duration = Duration::from_secs(2);

/// How late after its reserved slot a call may still go out: within the pacing margin (1.5% of a
/// second per second), so that late calls cannot put N + 1 calls into a provider's window.
const LATE_FOR_SLOT: Duration = Duration::from_millis(10);

/// The short delay lane, next to the retry delays: a job whose key another worker holds looks
/// again after it.
pub const NOT_YET_LANE: Duration = MAX_INLINE_WAIT;

/// The most parked jobs one pass publishes back; a full pass is followed by another at once.
pub const RELEASE_BATCH: usize = 500;

/// How long a taken parked job stays hidden from other workers while it is being published; a
/// worker that dies in between leaves it to be taken again after this.
const RELEASE_LEASE: Duration = Duration::from_secs(30);

/// How long a config pauses when its provider throttles it without saying for how long.
pub const DEFAULT_THROTTLE_PAUSE: Duration = Duration::from_secs(1);

/// Where a finished job goes.
enum Settle {
    Succeeded {
        result: Option<Value>,
    },
    Retry {
        attempt: u32,
        progress: Option<Value>,
        reason: String,
        retry_after: Option<Duration>,
    },
    Dead {
        kind: DeadKind,
        reason: String,
        progress: Option<Value>,
    },
    /// Not attempted: the config has no token for `wait`; come back later, attempt not counted.
    NotYet {
        wait: Duration,
        progress: Option<Value>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadKind {
    Permanent,
    Exhausted,
    Invalid,
    Ambiguous,
}

impl DeadKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadKind::Permanent => "permanent",
            DeadKind::Exhausted => "exhausted",
            DeadKind::Invalid => "invalid",
            DeadKind::Ambiguous => "ambiguous",
        }
    }
}

impl Pipeline {
    /// Handles one delivery to the end: settled (acked by the next flush of `acks`) or requeued.
    pub async fn handle(&self, delivery: Delivery, tag: Tag) {
        let started = Instant::now();
        self.metrics.in_flight.inc();
        let outcome = self.process(&delivery).await;
        self.metrics.in_flight.dec();
        match outcome {
            Ok(labels) => {
                if let Some((connector, action)) = labels {
                    self.metrics.job_duration(&connector, &action, started.elapsed().as_secs_f64());
                }
                // An ack lost with the channel means a redelivery, which the claim recognises.
                self.acks.ack_later(tag, &delivery.acker);
            }
            Err(e) => {
                warn!(error = %e, "could not settle the job; requeueing it");
                // Back off a little so that an outage does not spin through redeliveries.
                tokio::time::sleep(Duration::from_millis(500)).await;
                self.acks.requeue(tag, &delivery.acker).await;
            }
        }
    }

    /// Returns the job's (connector, action) for the duration metric once the delivery is settled.
    async fn process(&self, delivery: &Delivery) -> Result<Option<(String, String)>, Unsettled> {
        let attempt = attempt_of(delivery);

        // Decode and validate: a job published straight to the exchange gets the producer's checks.
        let job = match validate_job(&delivery.data, MissingId::Reject) {
            Ok(job) => job,
            Err(errors) => {
                let reason = errors.iter().map(FieldError::to_string).collect::<Vec<_>>().join("; ");
                let (connector, action) = envelope_labels(&delivery.data);
                warn!(%reason, "invalid job");
                self.dead_letter(delivery, None, DeadKind::Invalid, &reason, attempt).await?;
                self.metrics.job(&connector, &action, JobOutcome::Invalid);
                return Ok(None);
            }
        };
        let span =
            tracing::info_span!("job", job_id = %job.id, connector = %job.connector, action = %job.action, attempt);
        self.process_job(delivery, &job, attempt).instrument(span).await?;
        Ok(Some((job.connector, job.action)))
    }

    async fn process_job(&self, delivery: &Delivery, job: &Job, attempt: u32) -> Result<(), Unsettled> {
        let Some(configured) = self.connectors.get(&(job.connector.clone(), job.config.clone())) else {
            let reason =
                format!("$.config: no {} config named {:?} in this worker's config file", job.connector, job.config);
            warn!(%reason, "invalid job");
            self.dead_letter(delivery, None, DeadKind::Invalid, &reason, attempt).await?;
            self.metrics.job(&job.connector, &job.action, JobOutcome::Invalid);
            return Ok(());
        };
        let action = yizhan_schemas::find_action(&job.connector, &job.action).expect("validated against the catalog");

        // Claim the idempotency key: at most one side effect per key, whoever delivers it.
        let claim = self
            .store
            .claim(&ClaimRequest {
                key: job.idempotency_key.clone(),
                job_id: job.id,
                attempt,
                owner: self.owner.clone(),
                now: now_millis(),
                lease: self.lease,
                // Only the replayed copy itself (attempt 1) may take over a dead key; its own retry
                // copies inherit the header but find the key retrying, not dead.
                replay: attempt == 1 && is_replay(delivery),
            })
            .await?;
        let (progress, orphaned) = match claim {
            Claim::Acquired { progress, orphaned_attempt } => (progress, orphaned_attempt),
            Claim::Finished { .. } | Claim::Stale => {
                info!("duplicate delivery; already handled under this idempotency key");
                self.metrics.job(&job.connector, &job.action, JobOutcome::Duplicate);
                return Ok(());
            }
            Claim::Busy { retry_in } => {
                info!(
                    retry_in_ms = retry_in.as_millis() as u64,
                    "another worker runs this key now; looking again later"
                );
                self.publish_delayed(delivery, job, attempt, retry_in).await?;
                return Ok(());
            }
            Claim::RetryUnpublished { attempt: decided, progress: _ } => {
                info!("completing a retry whose worker stopped before publishing it");
                let delay = self.retry_delay(decided, None);
                self.publish_delayed(delivery, job, decided + 1, delay).await?;
                self.store.retry_published(&job.idempotency_key, decided).await?;
                return Ok(());
            }
        };
        self.hold(&job.idempotency_key);
        let settle = self.run_claimed(job, action, configured, attempt, progress.as_ref(), orphaned).await;
        let settled = self.settle(delivery, job, attempt, settle).await;
        self.release(&job.idempotency_key);
        settled
    }

    /// Rate-limit, execute and classify one claimed attempt.
    async fn run_claimed(
        &self,
        job: &Job,
        action: &'static yizhan_schemas::ActionSpec,
        configured: &Configured,
        attempt: u32,
        progress: Option<&Value>,
        orphaned: Option<u32>,
    ) -> Settle {
        let writes = action.effect == Effect::Write;
        if let Some(previous) = orphaned {
            let reason = format!(
                "attempt {previous} was cut off by a worker's death: the provider may or may not have received it"
            );
            if writes && configured.on_ambiguous == OnAmbiguous::DeadLetter {
                return Settle::Dead { kind: DeadKind::Ambiguous, reason, progress: progress.cloned() };
            }
            warn!(%reason, "executing again (on_ambiguous = retry)");
        }

        // Every attempt takes a token, retries included: of the action's bucket, and of each
        // recipient where the provider limits messages per recipient.
        let config = (job.connector.clone(), job.config.clone());
        let recipients = action.per_recipient.map(|limit| limit.keys(&job.params)).unwrap_or_default();
        let mut limits = vec![Limit { key: action.bucket, quotas: &configured.quotas }];
        if let Some(quotas) = configured.per_recipient.get(action.name) {
            limits.extend(recipients.iter().map(|key| Limit { key, quotas }));
        }
        let started = Instant::now();
        loop {
            let budget = MAX_INLINE_WAIT.saturating_sub(started.elapsed());
            match self.limiter.try_acquire(&config, &limits, budget).await {
                Ok(Admission::Go) => break,
                Ok(Admission::Reserved(wait)) => {
                    let slot = tokio::time::Instant::now() + wait;
                    tokio::time::sleep_until(slot).await;
                    // Woken well past the slot (a busy machine), the call would land next to the
                    // following slot's and crowd the provider's window: take a fresh slot instead.
                    if slot.elapsed() <= LATE_FOR_SLOT {
                        break;
                    }
                }
                Ok(Admission::Wait(wait)) if started.elapsed() + wait <= MAX_INLINE_WAIT => {
                    tokio::time::sleep(wait).await;
                }
                Ok(Admission::Wait(wait)) => {
                    self.metrics.rate_limit_wait(&job.connector, started.elapsed().as_secs_f64());
                    // Come back when the config can take it, one token after the job before.
                    let spacing = configured.quotas.iter().map(Quota::paced_interval).max().unwrap_or_default();
                    let turn = self.limiter.turn(&config, wait, spacing).await.unwrap_or(wait);
                    return Settle::NotYet { wait: turn, progress: progress.cloned() };
                }
                Err(e) => {
                    // The shared limiter is unreachable: wait rather than risk going over a limit.
                    warn!(error = %e, "rate limiter unavailable");
                    return Settle::NotYet { wait: Duration::from_secs(1), progress: progress.cloned() };
                }
            }
        }
        self.metrics.rate_limit_wait(&job.connector, started.elapsed().as_secs_f64());

        let call = Call { job_id: job.id, action, params: &job.params, attempt, progress };
        match configured.connector.execute(call).await {
            Ok(success) => {
                self.metrics.provider_request(&job.connector, RequestResult::Ok);
                info!("succeeded");
                Settle::Succeeded { result: success.result }
            }
            Err(failure) => {
                let result = if matches!(failure, Failure::Permanent { .. }) {
                    RequestResult::Permanent
                } else {
                    RequestResult::Transient
                };
                self.metrics.provider_request(&job.connector, result);
                if let Failure::Throttled { reason, retry_after } = &failure {
                    // Back-pressure: the whole config waits, on every worker of the fleet.
                    let pause = retry_after.unwrap_or(DEFAULT_THROTTLE_PAUSE);
                    warn!(%reason, pause_ms = pause.as_millis() as u64, "provider throttled the config; pausing it");
                    if let Err(e) = self.limiter.pause(&config, pause).await {
                        warn!(error = %e, "could not record the pause");
                    }
                }
                classify(failure, attempt, job.max_attempts, writes, configured.on_ambiguous, progress)
            }
        }
    }

    /// Record the outcome, then publish where the job goes next, then (the caller) ack.
    async fn settle(&self, delivery: &Delivery, job: &Job, attempt: u32, settle: Settle) -> Result<(), Unsettled> {
        let key = &job.idempotency_key;
        match settle {
            Settle::Succeeded { result } => {
                self.store.finish(key, &self.owner, &Finish::Succeeded { attempt, result }, now_millis()).await?;
                self.metrics.job(&job.connector, &job.action, JobOutcome::Succeeded);
            }
            Settle::Retry { attempt, progress, reason, retry_after } => {
                let delay = self.retry_delay(attempt, retry_after);
                warn!(%reason, delay_ms = delay.as_millis() as u64, "transient failure; retrying");
                let next_attempt_at = now_millis() + delay.as_millis() as i64;
                self.store
                    .finish(
                        key,
                        &self.owner,
                        &Finish::Retrying { attempt, progress, error: reason, next_attempt_at },
                        now_millis(),
                    )
                    .await?;
                self.publish_delayed(delivery, job, attempt + 1, delay).await?;
                self.store.retry_published(key, attempt).await?;
                self.metrics.job(&job.connector, &job.action, JobOutcome::Retried);
            }
            Settle::NotYet { wait, progress } => {
                // Released as "retrying at attempt - 1", so that the copy for this same attempt
                // reclaims the key when it comes back.
                // Debug only: a paused config has every waiting job pass here, and the pause
                // itself was logged once.
                debug!(wait_ms = wait.as_millis() as u64, "no rate-limit token soon; parked until its turn");
                let previous = attempt - 1;
                let error = "waiting for a rate-limit token".to_string();
                let next_attempt_at = now_millis() + wait.as_millis() as i64;
                let finish = Finish::Retrying { attempt: previous, progress, error, next_attempt_at };
                self.store.finish(key, &self.owner, &finish, now_millis()).await?;
                self.park(delivery, job, attempt, wait).await?;
                self.store.retry_published(key, previous).await?;
                self.metrics.parked(&job.connector);
            }
            Settle::Dead { kind, reason, progress } => {
                warn!(kind = kind.as_str(), %reason, "dead-lettering");
                // Published before it is recorded: a crash in between redelivers the job rather
                // than leaving a `dead` record whose message never reached the queue.
                self.dead_letter(delivery, Some(job), kind, &reason, attempt).await?;
                self.store
                    .finish(
                        key,
                        &self.owner,
                        &Finish::Dead { attempt, kind: kind.as_str().into(), error: reason, progress },
                        now_millis(),
                    )
                    .await?;
                self.metrics.job(&job.connector, &job.action, JobOutcome::DeadLettered);
            }
        }
        Ok(())
    }

    /// Publishes the message unchanged to `<prefix>.dead` with the reason headers.
    async fn dead_letter(
        &self,
        delivery: &Delivery,
        job: Option<&Job>,
        kind: DeadKind,
        reason: &str,
        attempts: u32,
    ) -> Result<(), Unsettled> {
        let mut headers = original_headers(delivery);
        headers.insert("x-yizhan-error-kind".into(), long_string(kind.as_str()));
        headers.insert("x-yizhan-error".into(), long_string(reason));
        headers.insert("x-yizhan-attempts".into(), AMQPValue::LongUInt(attempts));
        let dead = self.names.dead();
        let message_id = job.map(|j| j.id.to_string());
        self.publisher
            .publish(Message {
                exchange: &dead,
                routing_key: "",
                body: &delivery.data,
                message_id: message_id.as_deref(),
                headers,
                expiration_ms: None,
            })
            .await?;
        Ok(())
    }

    /// Publishes a copy to the delay lane that fits `delay` (jittered), to come back to its own
    /// lane as attempt `attempt`.
    async fn publish_delayed(
        &self,
        delivery: &Delivery,
        job: &Job,
        attempt: u32,
        delay: Duration,
    ) -> Result<(), Unsettled> {
        let lane_delay = self.delay_lane(delay);
        let exchange = self.names.delay(lane_delay);
        let mut headers = original_headers(delivery);
        headers.insert(ATTEMPT_HEADER.into(), AMQPValue::LongUInt(attempt));
        // Up to 20% earlier than the lane's TTL, so retries of a burst spread out (full TTL caps it).
        let lane_ms = lane_delay.as_millis() as u64;
        let jittered = lane_ms - rand::rng().random_range(0..=lane_ms / 5);
        let id = job.id.to_string();
        self.publisher
            .publish(Message {
                exchange: &exchange,
                routing_key: job.priority.as_str(),
                body: &delivery.data,
                message_id: Some(&id),
                headers,
                expiration_ms: Some(jittered.max(1)),
            })
            .await?;
        Ok(())
    }

    /// Holds the job in the parking lot for `wait`, to come back to its own lane as attempt
    /// `attempt`; see [`Pipeline::release_due`].
    async fn park(&self, delivery: &Delivery, job: &Job, attempt: u32, wait: Duration) -> Result<(), Unsettled> {
        let mut headers = original_headers(delivery);
        headers.insert(ATTEMPT_HEADER.into(), AMQPValue::LongUInt(attempt));
        let entry = Parked {
            id: format!("{}:{attempt}", job.id),
            due: now_millis() + wait.as_millis() as i64,
            routing_key: job.priority.as_str().to_string(),
            body: delivery.data.clone(),
            headers: serde_json::to_string(&headers).expect("AMQP headers serialize"),
            reason: "rate_limit".to_string(),
        };
        self.parking.park(&entry).await?;
        Ok(())
    }

    /// Publishes parked jobs that are due back to their lanes (confirmed), then deletes them from
    /// the parking lot; returns how many went. A job published but not deleted (a crash in
    /// between) goes again later, and its idempotency key makes the second copy a duplicate.
    pub async fn release_due(&self) -> Result<usize, Unsettled> {
        let taken = self.parking.take_due(now_millis(), RELEASE_BATCH, RELEASE_LEASE).await?;
        if taken.is_empty() {
            return Ok(0);
        }
        let exchange = self.names.jobs_exchange();
        let messages: Vec<Message<'_>> = taken
            .iter()
            .map(|t| Message {
                exchange: &exchange,
                routing_key: &t.entry.routing_key,
                body: &t.entry.body,
                message_id: t.entry.id.split(':').next(),
                headers: serde_json::from_str(&t.entry.headers).unwrap_or_default(),
                expiration_ms: None,
            })
            .collect();
        let results = self.publisher.publish_all(&messages).await;
        let mut released = Vec::with_capacity(taken.len());
        let mut failed = None;
        for (t, result) in taken.iter().zip(results) {
            match result {
                Ok(()) => released.push((t.entry.id.clone(), t.token)),
                Err(e) => failed = Some(e),
            }
        }
        self.parking.release(&released).await?;
        self.metrics.released.inc_by(released.len() as u64);
        if let Some(e) = failed {
            // The rest stay parked and go again once their lease runs out.
            warn!(error = %e, unpublished = taken.len() - released.len(), "could not publish parked jobs back");
        }
        Ok(released.len())
    }

    /// The n-th retry waits the n-th delay (the last repeats), or longer if the provider asked.
    fn retry_delay(&self, failed_attempt: u32, provider_hint: Option<Duration>) -> Duration {
        let index = (failed_attempt.max(1) as usize - 1).min(self.retry_delays.len() - 1);
        self.retry_delays[index].max(provider_hint.unwrap_or_default())
    }

    /// The shortest configured delay lane of at least `delay` (the longest when none is).
    fn delay_lane(&self, delay: Duration) -> Duration {
        let lanes = self.lanes();
        lanes.iter().copied().find(|lane| *lane >= delay).unwrap_or(*lanes.last().expect("at least one delay"))
    }

    /// Every delay lane this worker declared, shortest first.
    pub fn lanes(&self) -> Vec<Duration> {
        let mut lanes = self.retry_delays.clone();
        lanes.push(NOT_YET_LANE);
        lanes.sort();
        lanes.dedup();
        lanes
    }

    fn hold(&self, key: &str) {
        self.held.lock().expect("held keys lock").insert(key.to_string());
    }

    fn release(&self, key: &str) {
        self.held.lock().expect("held keys lock").remove(key);
    }

    /// Extends the leases of every key this worker holds; run every third of a lease.
    pub async fn renew_leases(&self) -> Result<(), StoreError> {
        let keys: Vec<String> = self.held.lock().expect("held keys lock").iter().cloned().collect();
        if keys.is_empty() {
            return Ok(());
        }
        self.store.renew(&self.owner, &keys, now_millis(), self.lease).await
    }
}

/// Maps a connector failure to where the job goes: retry while attempts remain, else dead.
fn classify(
    failure: Failure,
    attempt: u32,
    max_attempts: u32,
    writes: bool,
    on_ambiguous: OnAmbiguous,
    progress: Option<&Value>,
) -> Settle {
    let exhausted = attempt >= max_attempts;
    match failure {
        Failure::Permanent { reason, progress: new } => {
            Settle::Dead { kind: DeadKind::Permanent, reason, progress: new.or_else(|| progress.cloned()) }
        }
        Failure::Ambiguous { reason } if writes && on_ambiguous == OnAmbiguous::DeadLetter => {
            Settle::Dead { kind: DeadKind::Ambiguous, reason, progress: progress.cloned() }
        }
        Failure::Transient { reason, progress: new, .. } if exhausted => Settle::Dead {
            kind: DeadKind::Exhausted,
            reason: format!("{max_attempts} attempts used: {reason}"),
            progress: new.or_else(|| progress.cloned()),
        },
        Failure::Throttled { reason, .. } if exhausted => Settle::Dead {
            kind: DeadKind::Exhausted,
            reason: format!("{max_attempts} attempts used: {reason}"),
            progress: progress.cloned(),
        },
        Failure::Throttled { reason, retry_after } => {
            Settle::Retry { attempt, progress: progress.cloned(), reason, retry_after }
        }
        Failure::Ambiguous { reason } if exhausted => Settle::Dead {
            kind: DeadKind::Exhausted,
            reason: format!("{max_attempts} attempts used: {reason}"),
            progress: progress.cloned(),
        },
        Failure::Transient { reason, retry_after, progress: new } => {
            Settle::Retry { attempt, progress: new.or_else(|| progress.cloned()), reason, retry_after }
        }
        Failure::Ambiguous { reason } => {
            Settle::Retry { attempt, progress: progress.cloned(), reason, retry_after: None }
        }
    }
}

fn attempt_of(delivery: &Delivery) -> u32 {
    let headers = delivery.properties.headers().as_ref();
    match headers.and_then(|h| h.inner().get(&ShortString::from(ATTEMPT_HEADER))) {
        Some(AMQPValue::LongUInt(n)) => (*n).max(1),
        Some(AMQPValue::LongInt(n)) => (*n).max(1) as u32,
        Some(AMQPValue::LongLongInt(n)) => (*n).clamp(1, i64::from(u32::MAX)) as u32,
        Some(AMQPValue::ShortUInt(n)) => u32::from(*n).max(1),
        _ => 1,
    }
}

fn is_replay(delivery: &Delivery) -> bool {
    let headers = delivery.properties.headers().as_ref();
    headers.is_some_and(|h| h.inner().contains_key(&ShortString::from(REPLAY_HEADER)))
}

fn original_headers(delivery: &Delivery) -> FieldTable {
    delivery.properties.headers().clone().unwrap_or_default()
}

fn long_string(text: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(text))
}

/// Best-effort (connector, action) of an invalid message, for the metric labels only.
fn envelope_labels(body: &[u8]) -> (String, String) {
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let field = |name: &str| value.get(name).and_then(Value::as_str).unwrap_or("unknown").to_string();
    (field("connector"), field("action"))
}

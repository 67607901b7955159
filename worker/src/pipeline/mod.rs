//! One delivery, top to bottom: decode → validate → claim → rate-limit → execute → classify →
//! record → ack.
//!
//! Every path ends in exactly one of: recorded and acked (succeeded, duplicate), a confirmed retry
//! copy in a delay lane then ack (transient), parked in the state store then ack (its config cannot
//! take it yet), a confirmed copy in `<prefix>.dead` then ack (permanent, exhausted, invalid,
//! ambiguous), or — when the store or the broker is unreachable — a requeue, so that nothing is
//! lost.
//!
//! The decisions live in `decide`, with no I/O; this shell asks the store, the limiter and the
//! connector, hands their answers to it, and carries out the `Effect`s it returns, over
//! small traits ([`Publish`], [`StateStore`], [`ParkingLot`], [`Limiter`], [`Connector`]) so that
//! `tests.rs` runs every branch in process.

mod campaigns;
mod decide;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use lapin::message::Delivery;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use rand::Rng;
use serde_json::Value;
use tracing::{Instrument, warn};
use yizhan_broker::{Message, Names, OutgoingCallback, PublishError, Publisher};
use yizhan_schemas::{
    ActionSpec, CallbackBody, CallbackMessage, Effect as ActionEffect, FieldError, Job, MissingId, validate_job,
};
use yizhan_state::{
    CampaignControl, Claim, ClaimRequest, FinishedState, Parked, ParkingLot, StateStore, StoreError, WaitReason,
    now_millis,
};

use crate::acks::{Acks, Tag};
use crate::caps::{CapCounter, CapVerdict};
use crate::config::{Fallback, OnAmbiguous};
use crate::connectors::{Call, Connector, Failure};
use crate::events::{
    ConfigPaused, FailedOver, InternalEvent, JobParked, JobSettled, ParkedReleased, ProviderCalled, RateLimitWaited,
};
use crate::metrics::{Metrics, RequestResult};
use crate::ratelimit::{Admission, Limit, LimitError, Limiter, Quota};
use crate::timerules::{OnCap, TimeRules};
pub use campaigns::CampaignControls;
pub use decide::DeadKind;
use decide::{Backoff, Claimed, Completion, Effect, Settle};

/// Header carrying the attempt number of a retry copy (absent on the first delivery).
pub const ATTEMPT_HEADER: &str = "x-yizhan-attempt";
/// Header set by `yizhan-producer dlq replay` on a copy taken back from the dead-letter queue.
pub const REPLAY_HEADER: &str = "x-yizhan-replay";

/// How long a job may wait for a rate-limit token while holding a slot; a longer wait parks it,
/// so that one slow or paused config never holds slots others need.
pub const MAX_INLINE_WAIT: Duration = Duration::from_secs(2);

/// How late after its reserved slot a call may still go out: within the pacing margin (1.5% of a
/// second per second), so that late calls cannot put N + 1 calls into a provider's window.
const LATE_FOR_SLOT: Duration = Duration::from_millis(10);

/// How long before its turn a parked job comes back: within [`MAX_INLINE_WAIT`], so that it
/// then waits in place for its slot.
const BACK_EARLY: Duration = Duration::from_secs(1);

/// The shortest stay in the parking lot.
const MIN_PARK: Duration = Duration::from_millis(100);

/// The short delay lane, next to the retry delays: a job whose key another worker holds looks
/// again after it.
pub const NOT_YET_LANE: Duration = MAX_INLINE_WAIT;

/// How long a config pauses when its provider throttles it without saying for how long.
pub const DEFAULT_THROTTLE_PAUSE: Duration = Duration::from_secs(1);

/// The most parked jobs one pass publishes back; a full pass is followed by another at once.
pub const RELEASE_BATCH: usize = 500;

/// How long a taken parked job stays hidden from other workers while it is being published; a
/// worker that dies in between leaves it to be taken again after this.
const RELEASE_LEASE: Duration = Duration::from_secs(30);

/// Confirmed publishing, as the pipeline needs it ([`Publisher`] in production).
#[async_trait::async_trait]
pub trait Publish: Send + Sync {
    /// Publishes every message and waits for the broker's confirms; results in input order.
    async fn publish_all(&self, messages: &[Message<'_>]) -> Vec<Result<(), PublishError>>;
}

#[async_trait::async_trait]
impl Publish for Publisher {
    async fn publish_all(&self, messages: &[Message<'_>]) -> Vec<Result<(), PublishError>> {
        Publisher::publish_all(self, messages).await
    }
}

/// A connector config ready to execute jobs.
#[derive(Clone)]
pub struct Configured {
    /// The connector built from the config.
    pub connector: Arc<dyn Connector>,
    /// Every limit of the config (one or several, such as Feishu's 100/min and 5/s).
    pub quotas: Vec<Quota>,
    /// The limit of each recipient, for actions with one (by action name).
    pub per_recipient: HashMap<&'static str, Vec<Quota>>,
    /// What to do with a write whose previous worker died mid-call.
    pub on_ambiguous: OnAmbiguous,
    /// Quiet hours and recipient caps.
    pub rules: TimeRules,
    /// Another config of the same kind that takes the jobs this one cannot.
    pub fallback: Option<Fallback>,
}

/// The configs of a worker by (kind, name).
pub type ConfiguredMap = HashMap<(String, String), Configured>;

/// Everything a delivery needs; shared by all in-flight jobs of a worker.
pub struct Pipeline {
    /// The exchange and queue names of the worker's prefix.
    pub names: Names,
    /// The wait after failed attempt n is entry n-1, the last repeating; never empty.
    pub retry_delays: Vec<Duration>,
    /// The configs of the config file by (kind, name); a job naming another is invalid. Swapped
    /// whole on reload; each job reads the map once, without a lock (an atomic pointer load).
    pub connectors: ArcSwap<ConfiguredMap>,
    /// Claims, leases and outcomes by idempotency key.
    pub store: Arc<dyn StateStore>,
    /// Where jobs that must wait longer than [`MAX_INLINE_WAIT`] are held until they can run.
    pub parking: Arc<dyn ParkingLot>,
    /// Rate limits and provider pauses per config.
    pub limiter: Arc<dyn Limiter>,
    /// Messages per recipient, for the configs with `recipient_caps`.
    pub caps: Arc<dyn CapCounter>,
    /// Confirmed publishing of retry copies, dead letters and released parked jobs.
    pub publisher: Arc<dyn Publish>,
    /// Acknowledgements of the consuming channel, coalesced.
    pub acks: Arc<Acks>,
    /// The worker's metrics.
    pub metrics: Metrics,
    /// This worker instance, the owner of its claims.
    pub owner: String,
    /// The lease of each claim (`--lease`), renewed while the job runs.
    pub lease: Duration,
    /// Keys this worker holds now; their leases are renewed until they finish.
    pub held: Mutex<HashSet<String>>,
    /// The controls of the campaigns whose jobs this worker takes.
    pub campaigns: CampaignControls,
}

/// Why a delivery could not be settled; it is requeued and handled again.
#[derive(Debug, thiserror::Error)]
pub enum Unsettled {
    /// The state store did not answer or refused a write.
    #[error("state store: {0}")]
    Store(#[from] StoreError),
    /// A retry copy, dead letter or parked job was not confirmed by the broker.
    #[error("publishing: {0}")]
    Publish(#[from] PublishError),
    /// The shared rate limiter did not answer.
    #[error("{0}")]
    Limits(#[from] LimitError),
}

/// A delivery as the pipeline reads it: the body and the headers.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    /// The message body as received (the job JSON, unless the message is invalid).
    pub body: &'a [u8],
    /// The AMQP headers; None when the message has none.
    pub headers: Option<&'a FieldTable>,
    /// The routing key it was delivered with (its lane, and its tenant's); None to route by the
    /// job's priority and tenant.
    pub routing_key: Option<&'a str>,
}

impl<'a> Incoming<'a> {
    /// Borrows the body and headers of a lapin delivery.
    pub fn of(delivery: &'a Delivery) -> Self {
        Incoming {
            body: &delivery.data,
            headers: delivery.properties.headers().as_ref(),
            routing_key: Some(delivery.routing_key.as_str()),
        }
    }

    fn header(&self, name: &str) -> Option<&'a AMQPValue> {
        self.headers.and_then(|h| h.inner().get(&ShortString::from(name)))
    }

    /// The attempt number this copy carries (1 for the first delivery).
    fn attempt(&self) -> u32 {
        match self.header(ATTEMPT_HEADER) {
            Some(AMQPValue::LongUInt(n)) => (*n).max(1),
            Some(AMQPValue::LongInt(n)) => (*n).max(1) as u32,
            Some(AMQPValue::LongLongInt(n)) => (*n).clamp(1, i64::from(u32::MAX)) as u32,
            Some(AMQPValue::ShortUInt(n)) => u32::from(*n).max(1),
            _ => 1,
        }
    }

    fn is_replay(&self) -> bool {
        self.header(REPLAY_HEADER).is_some()
    }

    fn headers(&self) -> FieldTable {
        self.headers.cloned().unwrap_or_default()
    }

    /// Where a copy of this delivery goes back to: the lane it came from, so that a job whose
    /// body names a tenant but was published to a plain lane (a raw AMQP client) comes back to
    /// a queue that exists; the job's own lane when the delivery says nothing. With sharded lanes,
    /// on the shard of its idempotency key ([`Names::reshard`]).
    fn lane<'j>(&self, names: &Names, job: &'j Job) -> std::borrow::Cow<'j, str>
    where
        'a: 'j,
    {
        match self.routing_key.filter(|key| !key.is_empty()) {
            Some(key) => names.reshard(key, &job.idempotency_key),
            None => names.job_routing_key(job.priority, &job.tenant, &job.idempotency_key),
        }
    }
}

/// The job a delivery carries, once decoded and matched to a config of this worker.
struct Work<'a> {
    job: &'a Job,
    attempt: u32,
    action: &'static ActionSpec,
    configured: &'a Configured,
    /// The configs in force when the job was taken (its fallbacks are looked up there).
    configs: &'a ConfiguredMap,
    /// Its campaign was cancelled.
    cancelled: bool,
}

impl Pipeline {
    /// Handles one delivery to the end: settled (acked by the next flush of `acks`) or requeued.
    pub async fn handle(&self, delivery: Delivery, tag: Tag) {
        let started = Instant::now();
        self.metrics.in_flight.inc();
        let outcome = self.process(Incoming::of(&delivery)).await;
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

    /// Settles one delivery; returns the job's (connector, action) for the duration metric.
    pub async fn process(&self, incoming: Incoming<'_>) -> Result<Option<(String, String)>, Unsettled> {
        let attempt = incoming.attempt();
        // Decode and validate: a job published straight to the exchange gets the producer's checks.
        let job = match validate_job(incoming.body, MissingId::Reject) {
            Ok(job) => job,
            Err(errors) => {
                let reason = errors.iter().map(FieldError::to_string).collect::<Vec<_>>().join("; ");
                let (connector, action) = envelope_labels(incoming.body);
                self.apply(&incoming, None, (&connector, &action), attempt, decide::invalid(reason)).await?;
                return Ok(None);
            }
        };
        self.process_job(&incoming, &job, attempt).instrument(job_span(&incoming, &job, attempt)).await?;
        Ok(Some((job.connector, job.action)))
    }

    async fn process_job(&self, incoming: &Incoming<'_>, job: &Job, attempt: u32) -> Result<(), Unsettled> {
        let labels = (job.connector.as_str(), job.action.as_str());
        // The configs in force now; a reload during the job leaves this job on them.
        let configs = self.connectors.load_full();
        let Some(configured) = configs.get(&(job.connector.clone(), job.config.clone())) else {
            let reason =
                format!("$.config: no {} config named {:?} in this worker's config file", job.connector, job.config);
            return self.apply(incoming, Some(job), labels, attempt, decide::invalid(reason)).await;
        };
        let action = yizhan_schemas::find_action(&job.connector, &job.action).expect("validated against the catalog");
        let campaign = match job.campaign {
            Some(id) => self.campaigns.control(self.store.as_ref(), id).await?,
            None => CampaignControl::Running,
        };
        if campaign == CampaignControl::Paused {
            return self.apply(incoming, Some(job), labels, attempt, decide::paused(attempt, now_millis())).await;
        }

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
                replay: attempt == 1 && incoming.is_replay(),
                campaign: job.campaign,
            })
            .instrument(yizhan_telemetry::span!("claim"))
            .await?;
        let finished_before = matches!(claim, Claim::Finished { .. });
        let (progress, orphaned) = match decide::on_claim(claim, attempt, &self.backoff()) {
            Claimed::Run { progress, orphaned } => (progress, orphaned),
            Claimed::Done(mut effects) => {
                if job.callback.is_some() {
                    effects = decide::with_callback(effects, finished_before);
                }
                return self.apply(incoming, Some(job), labels, attempt, effects).instrument(settle_span()).await;
            }
        };
        self.hold(&job.idempotency_key);
        let cancelled = campaign == CampaignControl::Cancelled;
        let work = Work { job, attempt, action, configured, configs: &configs, cancelled };
        let settle = self.run_claimed(&work, progress.as_ref(), orphaned).await;
        let mut effects = decide::settle(settle, attempt, &self.backoff(), now_millis());
        if job.callback.is_some() {
            effects = decide::with_callback(effects, false);
        }
        let settled = self.apply(incoming, Some(job), labels, attempt, effects).instrument(settle_span()).await;
        self.release(&job.idempotency_key);
        settled
    }

    /// Rate-limit, execute and classify one claimed attempt.
    async fn run_claimed(&self, work: &Work<'_>, progress: Option<&Value>, orphaned: Option<u32>) -> Settle {
        let Work { job, attempt, action, configured, .. } = *work;
        let writes = action.effect == ActionEffect::Write;
        if let Some(previous) = orphaned {
            // This delivery is the retry itself, so attempts are not what decides here.
            let verdict = decide::classify(
                decide::orphaned_failure(previous),
                attempt,
                u32::MAX,
                writes,
                configured.on_ambiguous,
                progress,
            );
            if let Settle::Dead { .. } = verdict {
                return verdict;
            }
            warn!(
                previous,
                "an earlier attempt was cut off by a worker's death; executing again (on_ambiguous = retry)"
            );
        }
        let now = now_millis();
        let quiet_end = configured.rules.quiet.as_ref().and_then(|quiet| {
            let now = jiff::Timestamp::from_millisecond(now).ok()?;
            Some(quiet.defer_until(now, job.priority)?.as_millisecond())
        });
        let send_at = job.send_at.map(|at| at.as_millisecond());
        if let Some(held_back) = decide::gate(now, work.cancelled, send_at, quiet_end).settle(now, progress) {
            return held_back;
        }
        let (capped_params, capped) = match self.check_caps(work, now).await {
            Ok(Some((params, capped))) => (Some(params), capped),
            Ok(None) => (None, Vec::new()),
            Err(settle) => return settle,
        };
        let params = capped_params.as_ref().unwrap_or(&job.params);
        self.call_provider(work, params, progress, &capped).await
    }

    /// Rate-limit and execute the call on the config that takes this attempt, moving down the
    /// fallback chain when that config's provider is paused longer than its `fallback_after` or
    /// unreachable. Only failures that prove the request never left (or a pause before it)
    /// move a job, and the key stays the job's: one config sends it, never both.
    async fn call_provider(
        &self,
        work: &Work<'_>,
        params: &Value,
        progress: Option<&Value>,
        capped: &[String],
    ) -> Settle {
        let Work { job, attempt, action, configured, .. } = *work;
        let writes = action.effect == ActionEffect::Write;
        let configs = work.configs;
        let (mut name, mut target) = target_for(configs, job, configured, attempt);
        loop {
            let config = (job.connector.clone(), name.to_string());
            let waiting = yizhan_telemetry::span!("rate-limit wait", config = name);
            if let Err(wait) = self.take_tokens(work, name, target, params).instrument(waiting).await {
                if let Some(next) = fallback_of(configs, job, target)
                    && let Some(fallback) = &target.fallback
                    && self.limiter.paused_for(&config).await.ok().flatten().is_some_and(|left| left > fallback.after)
                {
                    FailedOver {
                        connector: &job.connector,
                        action: &job.action,
                        from: name,
                        to: next.0,
                        why: "paused",
                    }
                    .emit(&self.metrics);
                    (name, target) = next;
                    continue;
                }
                let reason = "waiting for its config to take it (paused or rate-limited)".to_string();
                let until = now_millis() + wait.as_millis() as i64;
                return Settle::NotYet { until, progress: progress.cloned(), why: WaitReason::RateLimit, reason };
            }
            let call = Call { job_id: job.id, action, params, attempt, progress };
            let calling = yizhan_telemetry::span!(
                "provider call",
                otel.kind = "client",
                config = name,
                result = tracing::field::Empty,
                otel.status_code = tracing::field::Empty,
            );
            match target.connector.execute(call).instrument(calling.clone()).await {
                Ok(success) => {
                    calling.record("result", RequestResult::Ok.label());
                    ProviderCalled { connector: &job.connector, result: RequestResult::Ok }.emit(&self.metrics);
                    let result = with_capped(success.result, capped);
                    let result = if name == job.config { result } else { with_config(result, name) };
                    let receipts = crate::connectors::receipts::expected(job, name, success.receipts);
                    return Settle::Succeeded { result, receipts };
                }
                Err(failure) => {
                    let result = match failure {
                        Failure::Permanent { .. } => RequestResult::Permanent,
                        _ => RequestResult::Transient,
                    };
                    calling.record("result", result.label());
                    calling.record("otel.status_code", "ERROR");
                    ProviderCalled { connector: &job.connector, result }.emit(&self.metrics);
                    if let Failure::Throttled { reason, retry_after } = &failure {
                        self.pause(&config, reason, *retry_after).await;
                    }
                    if let Failure::Unreachable { .. } = failure
                        && let Some(next) = fallback_of(configs, job, target)
                    {
                        let why = "unreachable";
                        FailedOver { connector: &job.connector, action: &job.action, from: name, to: next.0, why }
                            .emit(&self.metrics);
                        (name, target) = next;
                        continue;
                    }
                    return decide::classify(failure, attempt, job.max_attempts, writes, target.on_ambiguous, progress);
                }
            }
        }
    }

    /// Takes a token of every limit of the call (the action's bucket, and each recipient's where
    /// the provider limits messages per recipient), waiting in place up to [`MAX_INLINE_WAIT`].
    /// Every attempt takes tokens, retries included. `Err` is how long until the job's turn.
    async fn take_tokens(
        &self,
        work: &Work<'_>,
        name: &str,
        configured: &Configured,
        params: &Value,
    ) -> Result<(), Duration> {
        let Work { job, action, .. } = *work;
        let config = (job.connector.clone(), name.to_string());
        let recipients = action.per_recipient.map(|limit| limit.keys(params)).unwrap_or_default();
        let mut limits = vec![Limit { key: action.bucket, quotas: &configured.quotas }];
        if let Some(quotas) = configured.per_recipient.get(action.name) {
            limits.extend(recipients.iter().map(|key| Limit { key, quotas }));
        }
        let started = Instant::now();
        let waited =
            |this: &Self| RateLimitWaited { connector: &job.connector, waited: started.elapsed() }.emit(&this.metrics);
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
                    waited(self);
                    // Come back for its turn, one token after the job before, a little early: then
                    // it waits in place for a reserved slot, so the config's reservations never run
                    // dry while a backlog is parked (a job back just on time would leave a gap of
                    // the release poll and the round trip through the broker).
                    let spacing = configured.quotas.iter().map(Quota::paced_interval).max().unwrap_or_default();
                    let turn = self.limiter.turn(&config, wait, spacing).await.unwrap_or(wait);
                    return Err(turn.saturating_sub(BACK_EARLY).max(MIN_PARK));
                }
                Err(e) => {
                    // The shared limiter is unreachable: wait rather than risk going over a limit.
                    warn!(error = %e, "rate limiter unavailable");
                    return Err(Duration::from_secs(1));
                }
            }
        }
        waited(self);
        Ok(())
    }

    /// Counts the job against its recipients' caps (config `recipient_caps`), before the
    /// provider. `Ok(None)`: every recipient is within its caps (or the config has none);
    /// `Ok(Some)`: the params without the capped recipients, and those (`on_cap = "drop"`);
    /// `Err`: the job does not go now (all capped, or `on_cap = "defer"`).
    async fn check_caps(&self, work: &Work<'_>, now: i64) -> Result<Option<(Value, Vec<String>)>, Settle> {
        let Work { job, action, configured, .. } = *work;
        let (Some(caps), Some(field)) = (&configured.rules.caps, action.recipient) else { return Ok(None) };
        let written = field.recipients(&job.params);
        let normalized: Vec<String> =
            written.iter().map(|to| yizhan_schemas::normalize_recipient(field.kind, to)).collect();
        let config = (job.connector.clone(), job.config.clone());
        let verdicts = match self.caps.admit(&config, caps, &job.idempotency_key, &normalized, now).await {
            Ok(verdicts) => verdicts,
            Err(e) => {
                // Unknown counts: wait rather than risk a message over a cap.
                warn!(error = %e, "recipient caps unavailable");
                let reason = format!("recipient caps unavailable: {e}");
                return Err(Settle::NotYet { until: now + 1_000, progress: None, why: WaitReason::RateLimit, reason });
            }
        };
        let capped: Vec<(&String, i64)> = written
            .iter()
            .zip(&verdicts)
            .filter_map(|(to, verdict)| match verdict {
                CapVerdict::Capped { retry_at } => Some((to, *retry_at)),
                CapVerdict::Allowed => None,
            })
            .collect();
        if capped.is_empty() {
            return Ok(None);
        }
        match configured.rules.on_cap {
            OnCap::Defer => {
                let until = capped.iter().map(|(_, at)| *at).max().unwrap_or(now);
                Err(Settle::NotYet {
                    until: until.max(now),
                    progress: None,
                    why: WaitReason::Deferred,
                    reason: format!("{} recipient(s) over their caps", capped.len()),
                })
            }
            OnCap::Drop if capped.len() == written.len() => {
                let names: Vec<String> = capped.iter().map(|(to, _)| (*to).clone()).collect();
                Err(Settle::Capped { result: with_capped(None, &names) })
            }
            OnCap::Drop => {
                let names: Vec<String> = capped.iter().map(|(to, _)| (*to).clone()).collect();
                let mut params = job.params.clone();
                field.retain(&mut params, &|to| !names.iter().any(|c| c == to));
                Ok(Some((params, names)))
            }
        }
    }

    /// Back-pressure: the whole config waits, on every worker of the fleet.
    async fn pause(&self, config: &(String, String), reason: &str, asked: Option<Duration>) {
        let pause = asked.unwrap_or(DEFAULT_THROTTLE_PAUSE);
        let recorded = self.limiter.pause(config, pause).await;
        let error = recorded.err().map(|e| e.to_string());
        ConfigPaused { reason, pause, not_recorded: error.as_deref() }.emit(&self.metrics);
    }

    /// Carries out the decided effects in order; the caller acks once this returns `Ok`.
    async fn apply(
        &self,
        incoming: &Incoming<'_>,
        job: Option<&Job>,
        (connector, action): (&str, &str),
        attempt: u32,
        effects: Vec<Effect>,
    ) -> Result<(), Unsettled> {
        let key = job.map(|j| j.idempotency_key.as_str());
        for effect in effects {
            match effect {
                Effect::Record(finish) => {
                    let key = key.expect("only claimed jobs are recorded");
                    self.store.finish(key, &self.owner, &finish, now_millis()).await?;
                }
                Effect::PublishDelayed { attempt, delay } => {
                    let job = job.expect("only jobs are delayed");
                    self.publish_delayed(incoming, job, attempt, delay).await?;
                }
                Effect::Park { attempt, until, reason, held } => {
                    let job = job.expect("only jobs are parked");
                    self.park(incoming, job, attempt, until, reason, held).await?;
                    let wait = Duration::from_millis(until.saturating_sub(now_millis()).max(0) as u64);
                    JobParked { connector, wait }.emit(&self.metrics);
                }
                Effect::DeadLetter { kind, reason } => {
                    self.dead_letter(incoming, job, kind, &reason, attempt).await?;
                }
                Effect::MarkRetryPublished { attempt } => {
                    let key = key.expect("only claimed jobs retry");
                    self.store.retry_published(key, attempt).await?;
                }
                Effect::Callback(completion) => {
                    let job = job.expect("only jobs have callbacks");
                    self.publish_callback(job, completion).await?;
                }
                Effect::Settled { outcome, reason } => {
                    if yizhan_telemetry::exporting() {
                        tracing::Span::current().record("outcome", outcome.label());
                    }
                    let in_campaign = job.is_some_and(|j| j.campaign.is_some());
                    JobSettled { connector, action, outcome, reason: reason.as_deref(), in_campaign }
                        .emit(&self.metrics);
                }
            }
        }
        Ok(())
    }

    /// Publishes the message unchanged to `<prefix>.dead` with the reason headers.
    async fn dead_letter(
        &self,
        incoming: &Incoming<'_>,
        job: Option<&Job>,
        kind: DeadKind,
        reason: &str,
        attempts: u32,
    ) -> Result<(), Unsettled> {
        let mut headers = incoming.headers();
        headers.insert("x-yizhan-error-kind".into(), long_string(kind.as_str()));
        headers.insert("x-yizhan-error".into(), long_string(reason));
        headers.insert("x-yizhan-attempts".into(), AMQPValue::LongUInt(attempts));
        let dead = self.names.dead();
        let message_id = job.map(|j| j.id.to_string());
        self.publish(Message {
            exchange: &dead,
            routing_key: "",
            body: incoming.body,
            message_id: message_id.as_deref(),
            headers,
            expiration_ms: None,
        })
        .await
    }

    /// Publishes a copy to the delay lane that fits `delay` (jittered), to come back to its own
    /// lane as attempt `attempt`.
    async fn publish_delayed(
        &self,
        incoming: &Incoming<'_>,
        job: &Job,
        attempt: u32,
        delay: Duration,
    ) -> Result<(), Unsettled> {
        let lane_delay = self.delay_lane(delay);
        // The job's shard of the delay: a retry storm spreads over the shards as the jobs did.
        let exchange = self.names.delay_shard(lane_delay, self.names.shard(&job.idempotency_key));
        let mut headers = incoming.headers();
        headers.insert(ATTEMPT_HEADER.into(), AMQPValue::LongUInt(attempt));
        // Up to 20% earlier than the lane's TTL, so retries of a burst spread out (full TTL caps it).
        let lane_ms = lane_delay.as_millis() as u64;
        let jittered = lane_ms - rand::rng().random_range(0..=lane_ms / 5);
        let id = job.id.to_string();
        // The tenant's lane: the delay lane dead-letters the copy with this routing key.
        let routing_key = incoming.lane(&self.names, job);
        self.publish(Message {
            exchange: &exchange,
            routing_key: &routing_key,
            body: incoming.body,
            message_id: Some(&id),
            headers,
            expiration_ms: Some(jittered.max(1)),
        })
        .await
    }

    /// Publishes the job's completion callback to `<prefix>.callbacks` (confirmed); the callback
    /// consumer POSTs it. A stored status that is not final, or belongs to another job of the
    /// key (a duplicate), is reported by that job, not this one.
    async fn publish_callback(&self, job: &Job, completion: Completion) -> Result<(), Unsettled> {
        let Some(callback) = &job.callback else { return Ok(()) };
        let body = match completion {
            Completion::Final { status, attempts, result, error } => {
                // Receipts that came before the success are final already: no later report will
                // carry them, so this one does (a read only for a succeeded job with a callback).
                let delivery = if status == FinishedState::Succeeded {
                    self.store.status(job.id).await.ok().flatten().and_then(|stored| final_delivery(&stored))
                } else {
                    None
                };
                CallbackBody {
                    id: job.id,
                    campaign: job.campaign,
                    status: finished_status(status).to_string(),
                    attempts,
                    result,
                    error,
                    delivery,
                }
            }
            Completion::Stored => match self.store.status(job.id).await? {
                Some(stored) if stored.duplicate_of.is_none() && is_final(&stored.status) => CallbackBody {
                    id: job.id,
                    campaign: job.campaign,
                    delivery: final_delivery(&stored),
                    status: stored.status,
                    attempts: stored.attempts,
                    result: stored.result,
                    error: stored.error,
                },
                _ => return Ok(()),
            },
        };
        let message = CallbackMessage::new(callback, body);
        self.publish(OutgoingCallback::new(&self.names, &message).message()).await
    }

    async fn publish(&self, message: Message<'_>) -> Result<(), Unsettled> {
        let result = self.publisher.publish_all(std::slice::from_ref(&message)).await.pop();
        Ok(result.expect("one result per message")?)
    }

    /// Holds the job in the parking lot for `wait`, to come back to its own lane as attempt
    /// `attempt`; see [`Pipeline::release_due`].
    async fn park(
        &self,
        incoming: &Incoming<'_>,
        job: &Job,
        attempt: u32,
        until: i64,
        reason: &str,
        held: bool,
    ) -> Result<(), Unsettled> {
        let mut headers = incoming.headers();
        headers.insert(ATTEMPT_HEADER.into(), AMQPValue::LongUInt(attempt));
        let entry = Parked {
            id: format!("{}:{attempt}", job.id),
            due: until,
            routing_key: incoming.lane(&self.names, job).into_owned(),
            body: incoming.body.to_vec(),
            headers: serde_json::to_string(&headers).expect("AMQP headers serialize"),
            reason: reason.to_string(),
            campaign: job.campaign.map(|id| id.to_string()),
            held,
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
                // Parked before N was lowered, a job on a shard gone comes back to shard 0.
                routing_key: self.names.within_shards(&t.entry.routing_key),
                body: &t.entry.body,
                message_id: t.entry.id.split(':').next(),
                headers: serde_json::from_str(&t.entry.headers).unwrap_or_default(),
                expiration_ms: None,
            })
            .collect();
        let results = self.publisher.publish_all(&messages).await;
        let mut released = Vec::with_capacity(taken.len());
        let mut error = None;
        for (t, result) in taken.iter().zip(results) {
            match result {
                Ok(()) => released.push((t.entry.id.clone(), t.token)),
                Err(e) => error = Some(e.to_string()),
            }
        }
        self.parking.release(&released).await?;
        let unpublished = taken.len() - released.len();
        ParkedReleased { released: released.len(), unpublished, error: error.as_deref() }.emit(&self.metrics);
        Ok(released.len())
    }

    /// Wakes the held jobs of campaigns that are no longer paused: a worker that read "paused"
    /// just before a resume may have held a job after the resume woke the others.
    pub async fn wake_resumed(&self) -> Result<u64, Unsettled> {
        let held = self.parking.held_campaigns().await?;
        if held.is_empty() {
            return Ok(0);
        }
        let ids: Vec<uuid::Uuid> = held.iter().filter_map(|id| id.parse().ok()).collect();
        let controls = self.store.campaign_controls(&ids).await?;
        let mut woken = 0;
        for id in ids {
            let control = controls.iter().find(|(c, _)| *c == id).map_or(CampaignControl::Running, |(_, c)| *c);
            if control != CampaignControl::Paused {
                woken += self.parking.wake(&id.to_string(), true, now_millis()).await?;
            }
        }
        Ok(woken)
    }

    fn backoff(&self) -> Backoff<'_> {
        Backoff { delays: &self.retry_delays }
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

/// The span of one delivery of a job. When this worker exports traces it continues the trace of
/// the message's `traceparent` (the submitting request's, on every attempt of the job); otherwise
/// it is the log span it always was, and the headers are not read.
fn job_span(incoming: &Incoming<'_>, job: &Job, attempt: u32) -> tracing::Span {
    if !yizhan_telemetry::exporting() {
        return tracing::info_span!("job", job_id = %job.id, connector = %job.connector, action = %job.action, attempt);
    }
    let span = tracing::info_span!(
        "job",
        otel.kind = "consumer",
        job_id = %job.id,
        connector = %job.connector,
        config = %job.config,
        action = %job.action,
        attempt,
    );
    yizhan_telemetry::continue_from_message(&span, incoming.headers);
    span
}

/// The span of carrying out a delivery's effects (record, retry copy, dead letter, callback, ack
/// decision); `outcome` is its `yizhan_jobs_total` outcome.
fn settle_span() -> tracing::Span {
    yizhan_telemetry::span!("settle", outcome = tracing::field::Empty)
}

/// The wire name of a final state, as the status API writes it.
fn finished_status(state: FinishedState) -> &'static str {
    match state {
        FinishedState::Succeeded => "succeeded",
        FinishedState::Dead => "dead",
        FinishedState::Cancelled => "cancelled",
        FinishedState::Capped => "capped",
    }
}

/// A status's delivery receipts, once every one is final (a callback reports them then).
fn final_delivery(status: &yizhan_state::JobStatus) -> Option<Value> {
    let delivery = status.delivery.as_ref()?;
    delivery
        .values()
        .all(|d| d.state != yizhan_state::DeliveryState::Pending)
        .then(|| serde_json::to_value(delivery).expect("a delivery map serialises"))
}

/// Whether a recorded status is final.
fn is_final(status: &str) -> bool {
    matches!(status, "succeeded" | "dead" | "cancelled" | "capped")
}

/// The result, naming the fallback config that sent the job.
fn with_config(result: Option<Value>, config: &str) -> Option<Value> {
    let mut object = match result {
        Some(Value::Object(object)) => object,
        None => serde_json::Map::new(),
        Some(other) => serde_json::Map::from_iter([("result".to_string(), other)]),
    };
    object.insert("config".to_string(), Value::String(config.to_string()));
    Some(Value::Object(object))
}

/// The result with the recipients left out by their caps, each with code `capped`.
fn with_capped(result: Option<Value>, capped: &[String]) -> Option<Value> {
    if capped.is_empty() {
        return result;
    }
    let list: Vec<Value> = capped.iter().map(|to| serde_json::json!({"to": to, "code": "capped"})).collect();
    let mut object = match result {
        Some(Value::Object(object)) => object,
        None => serde_json::Map::new(),
        Some(other) => serde_json::Map::from_iter([("result".to_string(), other)]),
    };
    object.insert("capped".to_string(), Value::Array(list));
    Some(Value::Object(object))
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

/// The config that takes attempt `attempt`: the job's own for its first `fallback_attempts`,
/// then its fallback for as many of that one's, and so on down the chain.
fn target_for<'a>(
    configs: &'a ConfiguredMap,
    job: &'a Job,
    configured: &'a Configured,
    attempt: u32,
) -> (&'a str, &'a Configured) {
    let (mut name, mut target) = (job.config.as_str(), configured);
    let mut left = attempt;
    while let (Some(fallback), Some(next)) = (&target.fallback, fallback_of(configs, job, target)) {
        if left <= fallback.attempts {
            break;
        }
        left -= fallback.attempts;
        (name, target) = next;
    }
    (name, target)
}

/// The fallback config of `target`, by name, when it has one.
fn fallback_of<'a>(configs: &'a ConfiguredMap, job: &Job, target: &Configured) -> Option<(&'a str, &'a Configured)> {
    let fallback = target.fallback.as_ref()?;
    configs
        .get_key_value(&(job.connector.clone(), fallback.config.clone()))
        .map(|((_, name), configured)| (name.as_str(), configured))
}

//! Rate limits per connector config and bucket, and provider back-pressure pauses per config.
//!
//! Two limiters behind one trait: [`LocalLimiter`] (governor, one process: the SQLite mode) and
//! [`RedisLimiter`] (an atomic GCRA in Redis for all the limits of a config at once, concurrent
//! requests coalesced into one script call: the fleet mode). Both pace: a config limited to N per
//! period never gets more than N calls in any window of that period, whatever the number of
//! workers, because DingTalk (20/min) blocks a robot for 10 minutes when it is exceeded even once.
//!
//! A limiter never sleeps: it answers [`Admission::Go`] (token taken) or [`Admission::Wait`], and
//! the pipeline decides whether to wait in place (short) or to put the job back through a delay
//! lane (long), so that a slow config never holds slots other configs need.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use governor::RateLimiter;
use governor::clock::Clock;

/// A rate such as `3000/s`, `20/min` or `100/h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    /// Calls allowed per `per`, at least 1.
    pub count: NonZeroU32,
    /// The window: 1 s, 1 min or 1 h.
    pub per: Duration,
}

impl Quota {
    /// Parses one rate, `N/s`, `N/min` or `N/h` (also `sec`, `second`, `m`, `minute`, `hour`);
    /// the error says what is wrong, for the config error at `rate_limit`.
    pub fn parse(text: &str) -> Result<Quota, String> {
        let (count, unit) =
            text.split_once('/').ok_or_else(|| format!("{text:?} is not a rate: expected N/s, N/min or N/h"))?;
        let count: u32 = count.trim().parse().map_err(|_| format!("{text:?}: {count:?} is not a whole number"))?;
        let count = NonZeroU32::new(count).ok_or_else(|| format!("{text:?}: the count must be at least 1"))?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            other => return Err(format!("{text:?}: unknown unit {other:?} (expected s, min or h)")),
        };
        Ok(Quota { count, per })
    }

    /// Several limits at once, comma-separated: `100/min, 5/s`.
    pub fn parse_all(text: &str) -> Result<Vec<Quota>, String> {
        text.split(',').map(|part| Quota::parse(part.trim())).collect()
    }

    /// The time between two tokens.
    pub fn period(&self) -> Duration {
        self.per / self.count.get()
    }

    /// The spacing actually enforced: 1.5% wider than the period, so that jitter between the
    /// worker and the provider (up to 15 ms per 100 calls) cannot squeeze N + 1 calls into the
    /// provider's window; the observed rate stays within 2% of the limit. With 1%, four workers
    /// on a busy 2-core machine once put 101 calls of a 100/s limit into one second.
    pub fn paced_interval(&self) -> Duration {
        self.period().mul_f64(1.015)
    }
}

/// What a limiter says to one request for a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// A token of every limit was taken.
    Go,
    /// A token of every limit is reserved for this caller at `now + wait`: sleep, then go (do not
    /// ask again). Reservations make waiters take turns at exactly the configured pace instead of
    /// racing for each token.
    Reserved(Duration),
    /// Nothing was taken; ask again after this long (a pause, or a token further away than the
    /// caller is willing to wait).
    Wait(Duration),
}

/// The config a limit or a pause belongs to: (kind, config name).
pub type ConfigKey = (String, String);

/// A limiter that could not answer; only the Redis limiter fails.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    /// Redis is unreachable or refused the script.
    #[error("rate-limit store: {0}")]
    Redis(#[from] redis::RedisError),
}

/// One limit to take a token of: a bucket of the config, or one recipient of a message, with
/// every quota that holds for it.
#[derive(Debug, Clone, Copy)]
pub struct Limit<'a> {
    /// The bucket name or recipient, unique within the config (the config is added to it).
    pub key: &'a str,
    /// Every quota of this limit; a token of each is taken together or none.
    pub quotas: &'a [Quota],
}

/// Token buckets and pauses per connector config, shared by every job of the process or fleet.
#[async_trait::async_trait]
pub trait Limiter: Send + Sync {
    /// Takes (or reserves, within `max_wait`) one token of every quota of every limit for
    /// `config`, unless the config is paused.
    async fn try_acquire(
        &self,
        config: &ConfigKey,
        limits: &[Limit<'_>],
        max_wait: Duration,
    ) -> Result<Admission, LimitError>;

    /// Pauses every bucket of `config` for `duration` (a provider asked us to slow down); a longer
    /// pause already in force is kept.
    async fn pause(&self, config: &ConfigKey, duration: Duration) -> Result<(), LimitError>;

    /// What is left of the config's pause; None when it is not paused.
    async fn paused_for(&self, config: &ConfigKey) -> Result<Option<Duration>, LimitError>;

    /// A turn in the config's waiting room for a job that cannot run for `earliest`: the later of
    /// `earliest` and the previous waiter's turn plus `spacing`. Jobs that wait out a pause or a
    /// backlog so come back one token apart instead of all at once (when all but one would have
    /// to wait again). Nothing is reserved: a job that arrives in the meantime (a verification
    /// code on the `high` lane) still takes the next free token.
    async fn turn(&self, config: &ConfigKey, earliest: Duration, spacing: Duration) -> Result<Duration, LimitError>;
}

/// How many acquisitions pass between two sweeps of the keys whose limiters are back to full:
/// per-recipient keys come and go by the million, and must not accumulate.
const SWEEP_EVERY: u64 = 10_000;

type KeyedLimiter = governor::DefaultKeyedRateLimiter<String>;

/// One process: keyed governor limiters (GCRA, no burst), one per quota, keyed by config and
/// limit, and local pauses.
#[derive(Default)]
pub struct LocalLimiter {
    limiters: Mutex<HashMap<Quota, Arc<KeyedLimiter>>>,
    paused_until: Mutex<HashMap<ConfigKey, Instant>>,
    /// The last turn given in each config's waiting room.
    turns: Mutex<HashMap<ConfigKey, Instant>>,
    acquisitions: AtomicU64,
}

impl LocalLimiter {
    fn limiter(&self, quota: Quota) -> Arc<KeyedLimiter> {
        let mut limiters = self.limiters.lock().expect("limiter map");
        limiters
            .entry(quota)
            .or_insert_with(|| {
                let q = governor::Quota::with_period(quota.paced_interval()).expect("period > 0");
                Arc::new(RateLimiter::keyed(q.allow_burst(NonZeroU32::MIN)))
            })
            .clone()
    }

    fn sweep(&self) {
        let limiters: Vec<_> = self.limiters.lock().expect("limiter map").values().cloned().collect();
        for limiter in limiters {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// Keys held across all quotas (for tests of the sweep).
    pub fn keys_held(&self) -> usize {
        self.limiters.lock().expect("limiter map").values().map(|l| l.len()).sum()
    }
}

#[async_trait::async_trait]
impl Limiter for LocalLimiter {
    /// governor does not reserve: a refused caller is told when the next token is due and asks again.
    async fn try_acquire(
        &self,
        config: &ConfigKey,
        limits: &[Limit<'_>],
        _max_wait: Duration,
    ) -> Result<Admission, LimitError> {
        if let Some(until) = self.paused_until.lock().expect("pause map").get(config).copied() {
            let now = Instant::now();
            if until > now {
                return Ok(Admission::Wait(until - now));
            }
        }
        if self.acquisitions.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep();
        }
        for limit in limits {
            let key = format!("{}\u{0}{}\u{0}{}", config.0, config.1, limit.key);
            for quota in limit.quotas {
                // A token taken from an earlier limit when a later one refuses is lost: that only
                // ever slows a config down, never past its limits.
                // The limiter's own clock: making a clock per call costs more than the check.
                let limiter = self.limiter(*quota);
                if let Err(not_until) = limiter.check_key(&key) {
                    return Ok(Admission::Wait(not_until.wait_time_from(limiter.clock().now())));
                }
            }
        }
        Ok(Admission::Go)
    }

    async fn paused_for(&self, config: &ConfigKey) -> Result<Option<Duration>, LimitError> {
        let until = self.paused_until.lock().expect("pause map").get(config).copied();
        Ok(until.and_then(|until| until.checked_duration_since(Instant::now())).filter(|left| !left.is_zero()))
    }

    async fn pause(&self, config: &ConfigKey, duration: Duration) -> Result<(), LimitError> {
        let until = Instant::now() + duration;
        let mut paused = self.paused_until.lock().expect("pause map");
        let entry = paused.entry(config.clone()).or_insert(until);
        *entry = (*entry).max(until);
        Ok(())
    }

    async fn turn(&self, config: &ConfigKey, earliest: Duration, spacing: Duration) -> Result<Duration, LimitError> {
        let now = Instant::now();
        let mut turns = self.turns.lock().expect("turn map");
        turns.retain(|_, last| *last > now);
        let turn = match turns.get(config) {
            Some(last) => (now + earliest).max(*last + spacing),
            None => now + earliest,
        };
        turns.insert(config.clone(), turn);
        Ok(turn - now)
    }
}

/// The fleet: GCRA state in Redis, with Redis's clock, shared by every worker of a prefix.
pub struct RedisLimiter {
    connection: yizhan_state::RedisConnection,
    namespace: String,
    acquire: Arc<AcquireBatches>,
    pause: redis::Script,
    turn: redis::Script,
}

/// Any number of token requests, each run in turn as if alone at the same instant: per request,
/// ARGV holds its quota count n, the most it will wait (µs) and n emission intervals (µs); KEYS
/// hold its config's pause key and n GCRA keys. A request's slot is the latest theoretical arrival
/// time (TAT) of its quotas: within its wait it is reserved on every quota and answered as a wait
/// ≥ 0; further away, or while paused, nothing is reserved and the wait is answered negated. Each
/// answer is two values, the wait and the slot on Redis's clock (UNIX µs, 0 when refused), so that
/// the caller can aim at the slot rather than at the end of its round trip.
///
/// A request sees the TATs the requests before it in the call left, exactly as if it came right
/// after them. Nothing else runs during a script, so each key is read once and its last TAT
/// written once at the end (with the TTL that last write would have had): a batch on one hot
/// config costs Redis one PTTL, GET and SET, not one per request. TATs are stored as integers
/// (`%.0f`: Lua would print 1.7e+15).
const ACQUIRE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local paused, tats, written, order = {}, {}, {}, {}
local answers, k, a, argc = {}, 0, 1, #ARGV
while a <= argc do
  local n = tonumber(ARGV[a])
  local pause_key = KEYS[k + 1]
  local pause = paused[pause_key]
  if pause == nil then
    pause = redis.call('PTTL', pause_key)
    paused[pause_key] = pause
  end
  local wait, slot
  if pause > 0 then
    wait, slot = -pause * 1000, 0
  else
    slot = now
    for i = 1, n do
      local key = KEYS[k + 1 + i]
      local tat = tats[key]
      if tat == nil then
        tat = tonumber(redis.call('GET', key) or '0')
        tats[key] = tat
      end
      if tat > slot then slot = tat end
    end
    wait = slot - now
    if wait > tonumber(ARGV[a + 1]) then
      wait, slot = -wait, 0
    else
      for i = 1, n do
        local key = KEYS[k + 1 + i]
        if written[key] == nil then
          written[key] = true
          order[#order + 1] = key
        end
        tats[key] = slot + tonumber(ARGV[a + 1 + i])
      end
    end
  end
  answers[#answers + 1] = wait
  answers[#answers + 1] = slot
  k = k + 1 + n
  a = a + 2 + n
end
for i = 1, #order do
  local key = order[i]
  local tat = tats[key]
  redis.call('SET', key, string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
end
return answers
";

/// The most token requests one [`ACQUIRE`] call carries: bounds the time Redis spends in one
/// script, serving no one else (measured on a loaded 2-core machine: ~0.3 ms for 128 requests of
/// one config, ~1.6 ms for 128 of distinct configs).
const MAX_BATCH: usize = 128;

/// One token request for [`ACQUIRE`]: the pause key first, then a GCRA key per quota.
struct AcquireRequest {
    keys: Vec<String>,
    max_wait_us: u64,
    intervals_us: Vec<u64>,
}

/// What [`ACQUIRE`] answered one request, and when the call carrying it was sent.
#[derive(Debug, Clone, Copy)]
struct AcquireAnswer {
    wait_us: i64,
    slot_us: i64,
    sent: Instant,
}

type AnswerSender = tokio::sync::oneshot::Sender<Result<AcquireAnswer, redis::RedisError>>;

/// Coalesces concurrent token requests: at most one [`ACQUIRE`] call is in flight per limiter;
/// requests made meanwhile wait, and go together, in arrival order, in the next call (so a request
/// waits at most for the call in flight and its own). One EVALSHA per request cost Redis ~20-40 µs
/// each, a third of its CPU per job at 5-10k jobs/s, and the worker a round trip each. A lone
/// request goes at once, from its own task: no timer, nothing added when idle.
struct AcquireBatches {
    connection: yizhan_state::RedisConnection,
    script: redis::Script,
    queue: Mutex<AcquireQueue>,
    /// Calls of [`ACQUIRE`] made, for tests of the batching.
    calls: AtomicU64,
}

#[derive(Default)]
struct AcquireQueue {
    /// A call is in flight, or about to be: new requests wait here. Waiting requests imply a
    /// sender that will take them (a [`Sending`] is alive).
    sending: bool,
    waiting: std::collections::VecDeque<(AcquireRequest, AnswerSender)>,
}

/// The right to send [`ACQUIRE`] calls while it lives. Dropped (done, or its future cancelled or
/// unwound), it hands the waiting requests to a new sender task, so that none is left behind.
struct Sending {
    batches: Arc<AcquireBatches>,
}

impl Drop for Sending {
    fn drop(&mut self) {
        // Never a second panic while a sender unwinds.
        let mut queue = self.batches.queue.lock().unwrap_or_else(PoisonError::into_inner);
        if queue.waiting.is_empty() {
            queue.sending = false;
            return;
        }
        drop(queue);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(AcquireBatches::send_waiting(Sending { batches: self.batches.clone() }));
            }
            Err(_) => {
                // No runtime to send from (shutting down): the waiters' answers are dropped, which
                // fails them.
                let mut queue = self.batches.queue.lock().unwrap_or_else(PoisonError::into_inner);
                queue.waiting.clear();
                queue.sending = false;
            }
        }
    }
}

impl AcquireBatches {
    /// Answers one request: at once when no call is in flight, else in the next call.
    async fn acquire(self: &Arc<Self>, request: AcquireRequest) -> Result<AcquireAnswer, redis::RedisError> {
        // Ok: a call is in flight, the answer comes with the next one; Err: this request goes now.
        let queued = {
            let mut queue = self.queue.lock().expect("acquire queue");
            if queue.sending {
                let (sender, receiver) = tokio::sync::oneshot::channel();
                queue.waiting.push_back((request, sender));
                Ok(receiver)
            } else {
                queue.sending = true;
                Err(request)
            }
        };
        match queued {
            Ok(receiver) => receiver.await.unwrap_or_else(|_| {
                Err(redis::RedisError::from((redis::ErrorKind::Io, "rate-limit request dropped before its answer")))
            }),
            Err(request) => {
                let _sending = Sending { batches: self.clone() };
                let answers = self.call(std::slice::from_ref(&request)).await?;
                Ok(answers[0])
            }
        }
    }

    /// Sends the waiting requests, up to [`MAX_BATCH`] a call, until none is left.
    async fn send_waiting(sending: Sending) {
        let batches = &sending.batches;
        loop {
            let (requests, senders): (Vec<_>, Vec<_>) = {
                let mut queue = batches.queue.lock().expect("acquire queue");
                let n = queue.waiting.len().min(MAX_BATCH);
                queue.waiting.drain(..n).unzip()
            };
            if requests.is_empty() {
                // `sending` drops here and clears the flag, or takes requests that came meanwhile.
                return;
            }
            match batches.call(&requests).await {
                Ok(answers) => {
                    for (sender, answer) in senders.into_iter().zip(answers) {
                        // A caller that gave up (its future dropped) no longer wants the answer.
                        let _ = sender.send(Ok(answer));
                    }
                }
                Err(e) => {
                    // Every request of the call fails: the pipeline then waits rather than risk a limit.
                    for sender in senders {
                        let _ = sender.send(Err(e.clone()));
                    }
                }
            }
        }
    }

    /// One [`ACQUIRE`] call for `requests`, answered in their order.
    async fn call(&self, requests: &[AcquireRequest]) -> Result<Vec<AcquireAnswer>, redis::RedisError> {
        let mut invocation = self.script.prepare_invoke();
        for request in requests {
            for key in &request.keys {
                invocation.key(key);
            }
            invocation.arg(request.intervals_us.len()).arg(request.max_wait_us);
            for interval in &request.intervals_us {
                invocation.arg(*interval);
            }
        }
        self.calls.fetch_add(1, Ordering::Relaxed);
        let sent = Instant::now();
        let values: Vec<i64> = invocation.invoke_async(&mut self.connection.clone()).await?;
        if values.len() != 2 * requests.len() {
            return Err(redis::RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "rate-limit script",
                format!("{} values for {} requests", values.len(), requests.len()),
            )));
        }
        Ok(values.chunks_exact(2).map(|pair| AcquireAnswer { wait_us: pair[0], slot_us: pair[1], sent }).collect())
    }
}

/// How long to sleep, from now, until a slot Redis reserved `wait` after its own `now`.
///
/// Redis ran the script somewhere within the round trip that just took `round_trip`, so the true
/// answer lies between `wait - round_trip` and `wait`. Counting `wait` from the answer would make
/// every call late by a varying part of its round trip, and calls of a busy moment would crowd the
/// calm ones after them. Redis's clock (`slot_us`, UNIX µs) pins the slot exactly when this
/// machine's clock agrees with Redis's; a clock that does not is held to the round trip's bounds.
fn wait_from_now(wait: Duration, slot_us: i64, round_trip: Duration) -> Duration {
    let now_us = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64);
    let by_clock = Duration::from_micros(slot_us.saturating_sub(now_us).max(0) as u64);
    by_clock.clamp(wait.saturating_sub(round_trip), wait)
}

/// KEYS[1] = pause key, ARGV[1] = ms; keeps the longer of the current and the new pause.
const PAUSE: &str = r"
local current = redis.call('PTTL', KEYS[1])
local wanted = tonumber(ARGV[1])
if current < wanted then redis.call('SET', KEYS[1], '1', 'PX', wanted) end
return 0
";

/// KEYS[1] = the config's waiting-room key; ARGV[1] = earliest (µs from now), ARGV[2] = spacing
/// (µs). Returns the turn as µs from Redis's now.
const TURN: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local turn = now + tonumber(ARGV[1])
local last = redis.call('GET', KEYS[1])
if last then
  local next = tonumber(last) + tonumber(ARGV[2])
  if next > turn then turn = next end
end
redis.call('SET', KEYS[1], string.format('%.0f', turn), 'PX', math.ceil((turn - now) / 1000) + 1000)
return turn - now
";

impl RedisLimiter {
    /// Connects to the state store's Redis (`url`); `namespace` (the queue prefix) separates fleets.
    pub async fn connect(url: &str, namespace: &str) -> Result<RedisLimiter, LimitError> {
        let connection = yizhan_state::redis_connect(url).await?;
        Ok(RedisLimiter {
            acquire: Arc::new(AcquireBatches {
                connection: connection.clone(),
                script: redis::Script::new(ACQUIRE),
                queue: Mutex::default(),
                calls: AtomicU64::new(0),
            }),
            connection,
            namespace: namespace.to_string(),
            pause: redis::Script::new(PAUSE),
            turn: redis::Script::new(TURN),
        })
    }

    fn pause_key(&self, config: &ConfigKey) -> String {
        yizhan_state::config_pause_key(&self.namespace, &config.0, &config.1)
    }

    fn gcra_key(&self, config: &ConfigKey, limit: &str, quota: &Quota) -> String {
        format!(
            "{}:gcra:{}:{}:{}:{}/{}ms",
            self.namespace,
            config.0,
            config.1,
            limit,
            quota.count,
            quota.per.as_millis()
        )
    }

    /// How many [`ACQUIRE`] calls this limiter has made (each carries one or more requests).
    #[cfg_attr(not(test), expect(dead_code, reason = "read by the tests of the batching"))]
    pub(crate) fn acquire_calls(&self) -> u64 {
        self.acquire.calls.load(Ordering::Relaxed)
    }
}

#[async_trait::async_trait]
impl Limiter for RedisLimiter {
    async fn try_acquire(
        &self,
        config: &ConfigKey,
        limits: &[Limit<'_>],
        max_wait: Duration,
    ) -> Result<Admission, LimitError> {
        let mut keys = vec![self.pause_key(config)];
        let mut intervals_us = Vec::new();
        for limit in limits {
            for quota in limit.quotas {
                keys.push(self.gcra_key(config, limit.key, quota));
                intervals_us.push(quota.paced_interval().as_micros() as u64);
            }
        }
        let request = AcquireRequest { keys, max_wait_us: max_wait.as_micros() as u64, intervals_us };
        let AcquireAnswer { wait_us, slot_us, sent } = self.acquire.acquire(request).await?;
        Ok(match wait_us {
            0 => Admission::Go,
            reserved if reserved > 0 => {
                Admission::Reserved(wait_from_now(Duration::from_micros(reserved as u64), slot_us, sent.elapsed()))
            }
            refused => Admission::Wait(Duration::from_micros(refused.unsigned_abs())),
        })
    }

    async fn paused_for(&self, config: &ConfigKey) -> Result<Option<Duration>, LimitError> {
        let left: i64 =
            redis::cmd("PTTL").arg(self.pause_key(config)).query_async(&mut self.connection.clone()).await?;
        Ok((left > 0).then(|| Duration::from_millis(left as u64)))
    }

    async fn pause(&self, config: &ConfigKey, duration: Duration) -> Result<(), LimitError> {
        let ms = duration.as_millis().max(1) as u64;
        let _: i64 = self.pause.key(self.pause_key(config)).arg(ms).invoke_async(&mut self.connection.clone()).await?;
        Ok(())
    }

    async fn turn(&self, config: &ConfigKey, earliest: Duration, spacing: Duration) -> Result<Duration, LimitError> {
        let key = format!("{}:turn:{}:{}", self.namespace, config.0, config.1);
        let turn_us: i64 = self
            .turn
            .key(key)
            .arg(earliest.as_micros() as u64)
            .arg(spacing.as_micros() as u64)
            .invoke_async(&mut self.connection.clone())
            .await?;
        Ok(Duration::from_micros(turn_us.max(0) as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reserved_slot_is_aimed_at_on_the_clock_within_the_round_trip() {
        let now_us = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as i64;
        let (wait, round_trip) = (Duration::from_millis(500), Duration::from_millis(400));
        // Clocks agree: Redis ran the script 200 ms into the round trip, so 300 ms are left.
        let left = wait_from_now(wait, now_us + 300_000, round_trip);
        assert!(left <= Duration::from_millis(300) && left > Duration::from_millis(290), "{left:?}");
        // A clock far behind Redis's, or far ahead: held to what the round trip allows.
        assert_eq!(wait_from_now(wait, now_us + 60_000_000, round_trip), wait);
        assert_eq!(wait_from_now(wait, now_us - 60_000_000, round_trip), Duration::from_millis(100));
        // A round trip longer than the wait: the slot may already have come.
        assert_eq!(wait_from_now(wait, now_us - 1_000, Duration::from_secs(1)), Duration::ZERO);
    }

    #[test]
    fn parses_rates() {
        assert_eq!(Quota::parse("3000/s").unwrap().period(), Duration::from_nanos(333_333));
        assert_eq!(Quota::parse("20/min").unwrap().period(), Duration::from_secs(3));
        assert_eq!(Quota::parse("2/h").unwrap().period(), Duration::from_secs(1800));
        assert_eq!(Quota::parse_all("100/min, 5/s").unwrap().len(), 2);
        assert!(Quota::parse("0/s").is_err());
        assert!(Quota::parse("ten/s").unwrap_err().contains("not a whole number"));
        assert!(Quota::parse("5/fortnight").unwrap_err().contains("unknown unit"));
        assert!(Quota::parse("5").is_err());
    }

    #[test]
    fn every_kind_has_a_default_limit_that_parses() {
        for kind in yizhan_schemas::kinds() {
            let quotas = Quota::parse_all(kind.default_rate_limit).unwrap_or_else(|e| panic!("{}: {e}", kind.name));
            assert!(!quotas.is_empty());
        }
        assert_eq!(
            Quota::parse_all(yizhan_schemas::find_kind("feishu_robot").unwrap().default_rate_limit).unwrap().len(),
            2
        );
        for action in yizhan_schemas::kinds().iter().flat_map(|k| k.actions) {
            if let Some(limit) = action.per_recipient {
                assert!(Quota::parse_all(limit.rate).is_ok(), "{}", action.name);
            }
        }
    }

    fn config() -> ConfigKey {
        ("dingtalk_robot".into(), format!("c{}", uuid::Uuid::now_v7().simple()))
    }

    async fn admitted_in_a_row(limiter: &dyn Limiter, config: &ConfigKey, quotas: &[Quota]) -> usize {
        let mut admitted = 0;
        while limiter.try_acquire(config, &[Limit { key: "messages", quotas }], Duration::ZERO).await.unwrap()
            == Admission::Go
        {
            admitted += 1;
            assert!(admitted < 1000, "the limiter never refused");
        }
        admitted
    }

    async fn paces_and_pauses(limiter: &dyn Limiter) {
        let config = config();
        let quotas = Quota::parse_all("20/min").unwrap();
        assert_eq!(admitted_in_a_row(limiter, &config, &quotas).await, 1, "paced: no burst");
        match limiter.try_acquire(&config, &[Limit { key: "messages", quotas: &quotas }], Duration::ZERO).await.unwrap()
        {
            Admission::Wait(wait) => assert!(wait > Duration::from_millis(2900) && wait <= Duration::from_millis(3045)),
            other => panic!("a second token within 3 s: {other:?}"),
        }
        // Another bucket and another config are not affected.
        assert_eq!(
            limiter.try_acquire(&config, &[Limit { key: "uploads", quotas: &quotas }], Duration::ZERO).await.unwrap(),
            Admission::Go
        );
        let other = super::tests::config();
        assert_eq!(
            limiter.try_acquire(&other, &[Limit { key: "messages", quotas: &quotas }], Duration::ZERO).await.unwrap(),
            Admission::Go
        );
        // A pause stops every bucket of the config, and only that config.
        assert_eq!(limiter.paused_for(&other).await.unwrap(), None);
        limiter.pause(&other, Duration::from_secs(60)).await.unwrap();
        limiter.pause(&other, Duration::from_secs(1)).await.unwrap();
        let left = limiter.paused_for(&other).await.unwrap().expect("paused");
        assert!(left > Duration::from_secs(58), "the longer pause is kept: {left:?}");
        match limiter.try_acquire(&other, &[Limit { key: "anything", quotas: &quotas }], Duration::ZERO).await.unwrap()
        {
            Admission::Wait(wait) => assert!(wait > Duration::from_secs(50), "the longer pause holds: {wait:?}"),
            other => panic!("paused config admitted: {other:?}"),
        }
        assert_eq!(
            limiter.try_acquire(&config, &[Limit { key: "other", quotas: &quotas }], Duration::ZERO).await.unwrap(),
            Admission::Go
        );
    }

    #[tokio::test]
    async fn local_limiter_paces_and_pauses() {
        paces_and_pauses(&LocalLimiter::default()).await;
    }

    #[tokio::test]
    async fn redis_limiter_paces_and_pauses() {
        let limiter = RedisLimiter::connect("redis://127.0.0.1:6379/0", "test-limits").await.unwrap();
        paces_and_pauses(&limiter).await;
    }

    #[tokio::test]
    async fn every_quota_of_a_config_must_admit() {
        let limiter = RedisLimiter::connect("redis://127.0.0.1:6379/0", "test-limits").await.unwrap();
        let config = config();
        // 5/s paces at 200 ms and 100/min at 600 ms: the second call waits for the slower quota.
        let quotas = Quota::parse_all("100/min, 5/s").unwrap();
        assert_eq!(admitted_in_a_row(&limiter, &config, &quotas).await, 1);
        match limiter.try_acquire(&config, &[Limit { key: "messages", quotas: &quotas }], Duration::ZERO).await.unwrap()
        {
            Admission::Wait(wait) => {
                assert!(wait > Duration::from_millis(580) && wait <= Duration::from_millis(609), "{wait:?}")
            }
            other => panic!("{other:?}"),
        }
    }

    /// Waiters within the caller's budget get consecutive slots, one period apart, in one call each.
    #[tokio::test]
    async fn redis_reserves_consecutive_slots_within_the_budget() {
        let limiter = RedisLimiter::connect("redis://127.0.0.1:6379/0", "test-limits").await.unwrap();
        let config = config();
        let quotas = Quota::parse_all("10/s").unwrap();
        let budget = Duration::from_millis(450);
        // The slots are one period apart from the first call; each wait counts from its own call,
        // which a loaded machine may make tens of ms later: (time before the call, after it).
        let start = std::time::Instant::now();
        let (mut waits, mut called) = (Vec::new(), Vec::new());
        for _ in 0..6 {
            let before = start.elapsed();
            waits.push(
                limiter.try_acquire(&config, &[Limit { key: "messages", quotas: &quotas }], budget).await.unwrap(),
            );
            called.push((before, start.elapsed()));
        }
        assert_eq!(waits[0], Admission::Go);
        let slack = Duration::from_millis(3);
        for (i, admission) in waits[1..5].iter().enumerate() {
            match admission {
                Admission::Reserved(wait) => {
                    let expected = Duration::from_micros(101_500 * (i as u64 + 1));
                    let (before, after) = called[i + 1];
                    // The first slot was taken between 0 and `called[0].1`; this call ran between
                    // `before` and `after`.
                    assert!(
                        *wait + after + slack >= expected && *wait + before <= expected + called[0].1 + slack,
                        "{i}: {wait:?} (called between {before:?} and {after:?})"
                    );
                }
                other => panic!("slot {i} not reserved: {other:?}"),
            }
        }
        assert!(
            matches!(waits[5], Admission::Wait(w) if w > budget),
            "past the budget nothing is reserved: {:?}",
            waits[5]
        );
    }

    /// Many limiters (as many workers would) on one Redis share one limit.
    #[tokio::test]
    async fn redis_limits_hold_across_limiters() {
        let config = config();
        let quotas = Quota::parse_all("10/min").unwrap();
        let mut admitted = 0;
        for _ in 0..4 {
            let limiter = RedisLimiter::connect("redis://127.0.0.1:6379/0", "test-limits").await.unwrap();
            admitted += admitted_in_a_row(&limiter, &config, &quotas).await;
        }
        assert_eq!(admitted, 1);
    }

    /// A message takes a token of its config's bucket and of each recipient: a recipient at its
    /// limit holds back only messages that include it.
    async fn limits_each_recipient(limiter: &dyn Limiter) {
        let config = config();
        let bucket = Quota::parse_all("6000/min").unwrap();
        let member = Quota::parse_all("30/min, 1000/h").unwrap();
        // Each message in its own bucket, so that only the recipients' limits can refuse.
        let message = |bucket_key: &'static str, to: &'static [&'static str]| {
            let mut limits = vec![Limit { key: bucket_key, quotas: &bucket }];
            limits.extend(to.iter().map(|key| Limit { key, quotas: &member }));
            limits
        };
        let go = Admission::Go;
        assert_eq!(
            limiter.try_acquire(&config, &message("b1", &["touser=a", "touser=b"]), Duration::ZERO).await.unwrap(),
            go
        );
        match limiter.try_acquire(&config, &message("b2", &["touser=c", "touser=b"]), Duration::ZERO).await.unwrap() {
            Admission::Wait(wait) => assert!(wait > Duration::from_millis(1900), "b just got one: {wait:?}"),
            other => panic!("b got two messages within 2 s: {other:?}"),
        }
        assert_eq!(limiter.try_acquire(&config, &message("b3", &["touser=d"]), Duration::ZERO).await.unwrap(), go);
    }

    #[tokio::test]
    async fn local_limiter_limits_each_recipient() {
        limits_each_recipient(&LocalLimiter::default()).await;
    }

    #[tokio::test]
    async fn redis_limiter_limits_each_recipient() {
        let limiter = RedisLimiter::connect("redis://127.0.0.1:6379/0", "test-limits").await.unwrap();
        limits_each_recipient(&limiter).await;
    }

    const REDIS: &str = "redis://127.0.0.1:6379/0";

    /// A namespace of the test's own, whose keys are deleted when the test ends, passed or failed.
    struct Namespace(String);

    impl Namespace {
        fn new() -> Namespace {
            Namespace(format!("test-limits-{}", uuid::Uuid::now_v7().simple()))
        }
    }

    impl Drop for Namespace {
        /// A blocking connection: this also runs while a failed test unwinds.
        fn drop(&mut self) {
            let Ok(mut connection) = redis::Client::open(REDIS).and_then(|client| client.get_connection()) else {
                return;
            };
            let keys: Vec<String> =
                redis::cmd("KEYS").arg(format!("{}:*", self.0)).query(&mut connection).unwrap_or_default();
            if !keys.is_empty() {
                let _: Result<i64, _> = redis::cmd("DEL").arg(&keys).query(&mut connection);
            }
        }
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Kind {
        Go,
        Reserved,
        Wait,
    }

    fn kind(admission: &Admission) -> Kind {
        match admission {
            Admission::Go => Kind::Go,
            Admission::Reserved(_) => Kind::Reserved,
            Admission::Wait(_) => Kind::Wait,
        }
    }

    /// 240 requests over three configs, alternately unwilling to wait and willing to wait long:
    /// `a` has one hourly limit, `b` a bucket and a recipient limit, `c` is paused. Hourly limits
    /// refill nothing while the test runs, so the answers do not depend on its speed.
    struct Mix {
        configs: [ConfigKey; 3],
        bucket: Vec<Quota>,
        narrow_bucket: Vec<Quota>,
        recipient: Vec<Quota>,
    }

    impl Mix {
        async fn new(limiter: &RedisLimiter) -> Mix {
            let configs = [config(), config(), config()];
            limiter.pause(&configs[2], Duration::from_secs(60)).await.unwrap();
            Mix {
                configs,
                bucket: Quota::parse_all("50/h").unwrap(),
                narrow_bucket: Quota::parse_all("20/h").unwrap(),
                recipient: Quota::parse_all("10/h").unwrap(),
            }
        }

        /// Request `i`: its config (0, 1 or 2), limits and most wait.
        fn request(&self, i: usize) -> (usize, Vec<Limit<'_>>, Duration) {
            let which = i % 3;
            let limits = match which {
                1 => vec![
                    Limit { key: "messages", quotas: &self.narrow_bucket },
                    Limit { key: "touser=x", quotas: &self.recipient },
                ],
                _ => vec![Limit { key: "messages", quotas: &self.bucket }],
            };
            // a: slots 73 s apart, 10 within 767 s; b: the recipient's 365 s apart, 2 within 1000 s.
            let budget = [767, 1000, 1000][which];
            let max_wait = if (i / 3).is_multiple_of(2) { Duration::ZERO } else { Duration::from_secs(budget) };
            (which, limits, max_wait)
        }
    }

    const MIXED: usize = 240;

    /// Concurrent requests go in a few script calls, in arrival order, and get exactly the
    /// answers the same requests made one after the other get.
    #[tokio::test]
    async fn redis_batches_concurrent_requests_with_the_answers_of_sequential_ones() {
        let namespace = Namespace::new();
        let limiter = RedisLimiter::connect(REDIS, &namespace.0).await.unwrap();

        let one_by_one = Mix::new(&limiter).await;
        let calls = limiter.acquire_calls();
        let mut sequential = Vec::new();
        for i in 0..MIXED {
            let (which, limits, max_wait) = one_by_one.request(i);
            sequential.push(limiter.try_acquire(&one_by_one.configs[which], &limits, max_wait).await.unwrap());
        }
        assert_eq!(limiter.acquire_calls() - calls, MIXED as u64, "a lone request goes alone, at once");

        let together = Mix::new(&limiter).await;
        let requests: Vec<_> = (0..MIXED).map(|i| together.request(i)).collect();
        let mut pending: Vec<_> = requests
            .iter()
            .map(|(which, limits, max_wait)| limiter.try_acquire(&together.configs[*which], limits, *max_wait))
            .collect();
        let calls = limiter.acquire_calls();
        // Polled once each, in order: the first call is in flight until the first request is
        // polled again, so the others queue behind it in this order.
        for request in &mut pending {
            assert!(futures::poll!(request).is_pending());
        }
        let concurrent: Vec<Admission> =
            futures::future::join_all(pending).await.into_iter().map(Result::unwrap).collect();
        assert_eq!(limiter.acquire_calls() - calls, 3, "the first alone, then 239 in batches of {MAX_BATCH}");

        for (i, (one, other)) in sequential.iter().zip(&concurrent).enumerate() {
            assert_eq!(kind(one), kind(other), "request {i}: {one:?} alone, {other:?} batched");
        }
        let count = |answers: &[Admission], which: usize, wanted: Kind| {
            answers.iter().enumerate().filter(|(i, a)| i % 3 == which && kind(a) == wanted).count()
        };
        for answers in [&sequential, &concurrent] {
            assert_eq!([Kind::Go, Kind::Reserved].map(|k| count(answers, 0, k)), [1, 10], "a");
            assert_eq!([Kind::Go, Kind::Reserved].map(|k| count(answers, 1, k)), [1, 2], "b");
            assert_eq!(count(answers, 2, Kind::Wait), MIXED / 3, "c is paused");
        }
        // Each reservation of `a` has a slot of its own, one interval after the one before.
        let interval = together.bucket[0].paced_interval();
        let mut reserved: Vec<Duration> = concurrent
            .iter()
            .step_by(3)
            .filter_map(|a| if let Admission::Reserved(wait) = a { Some(*wait) } else { None })
            .collect();
        reserved.sort();
        for (n, wait) in reserved.iter().enumerate() {
            let slot = interval * (n as u32 + 1);
            assert!(*wait <= slot && *wait + Duration::from_secs(30) > slot, "slot {n}: {wait:?}, expected {slot:?}");
        }
        for (i, answer) in concurrent.iter().enumerate().skip(2).step_by(3) {
            assert!(
                matches!(answer, Admission::Wait(w) if *w > Duration::from_secs(30)),
                "request {i} of the paused config: {answer:?}"
            );
        }
    }

    /// A call that fails fails every request it carries; the next ones go on.
    #[tokio::test]
    async fn redis_a_failed_batch_fails_each_of_its_requests() {
        let namespace = Namespace::new();
        let limiter = RedisLimiter::connect(REDIS, &namespace.0).await.unwrap();
        let quotas = Quota::parse_all("50/h").unwrap();
        let limits = [Limit { key: "messages", quotas: &quotas }];
        let (broken, sound, later) = (config(), config(), config());
        // A TAT that is not a number makes the script fail.
        let client = redis::Client::open(REDIS).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        let _: () = redis::cmd("SET")
            .arg(limiter.gcra_key(&broken, "messages", &quotas[0]))
            .arg("not a number")
            .arg("PX")
            .arg(60_000)
            .query_async(&mut connection)
            .await
            .unwrap();

        let mut first = limiter.try_acquire(&sound, &limits, Duration::ZERO);
        assert!(futures::poll!(&mut first).is_pending());
        let mut batched: Vec<_> = (0..10)
            .map(|i| limiter.try_acquire(if i % 2 == 0 { &broken } else { &sound }, &limits, Duration::ZERO))
            .collect();
        for request in &mut batched {
            assert!(futures::poll!(request).is_pending());
        }
        assert_eq!(first.await.unwrap(), Admission::Go, "alone in its call");
        for (i, answer) in futures::future::join_all(batched).await.into_iter().enumerate() {
            assert!(matches!(answer, Err(LimitError::Redis(_))), "request {i}: {answer:?}");
        }
        assert_eq!(limiter.try_acquire(&later, &limits, Duration::ZERO).await.unwrap(), Admission::Go);
    }

    /// A caller that gives up, in flight or queued, holds no other request up.
    #[tokio::test]
    async fn redis_a_dropped_request_holds_no_one_up() {
        let namespace = Namespace::new();
        let limiter = RedisLimiter::connect(REDIS, &namespace.0).await.unwrap();
        let quotas = Quota::parse_all("50/h").unwrap();
        let limits = [Limit { key: "messages", quotas: &quotas }];
        let configs = [config(), config(), config(), config(), config()];

        // The request in flight is dropped: the queued one still gets its answer.
        let mut in_flight = limiter.try_acquire(&configs[0], &limits, Duration::ZERO);
        assert!(futures::poll!(&mut in_flight).is_pending());
        let mut queued = limiter.try_acquire(&configs[1], &limits, Duration::ZERO);
        assert!(futures::poll!(&mut queued).is_pending());
        drop(in_flight);
        assert_eq!(queued.await.unwrap(), Admission::Go);

        // A queued request is dropped: the others go on.
        let mut in_flight = limiter.try_acquire(&configs[2], &limits, Duration::ZERO);
        assert!(futures::poll!(&mut in_flight).is_pending());
        let mut dropped = limiter.try_acquire(&configs[3], &limits, Duration::ZERO);
        assert!(futures::poll!(&mut dropped).is_pending());
        drop(dropped);
        assert_eq!(in_flight.await.unwrap(), Admission::Go);
        assert_eq!(limiter.try_acquire(&configs[4], &limits, Duration::ZERO).await.unwrap(), Admission::Go);
    }

    /// Recipients come and go by the million: keys whose limiter is back to full are swept.
    #[tokio::test]
    async fn local_limiter_forgets_idle_recipients() {
        let limiter = LocalLimiter::default();
        let config = config();
        let quotas = Quota::parse_all("1000/s").unwrap();
        for i in 0..SWEEP_EVERY - 1 {
            let key = format!("touser={i}");
            let limits = [Limit { key: &key, quotas: &quotas }];
            assert_eq!(limiter.try_acquire(&config, &limits, Duration::ZERO).await.unwrap(), Admission::Go);
        }
        assert!(limiter.keys_held() > 9_000, "{}", limiter.keys_held());
        // 1000/s refills each key within a millisecond: a sweep after that drops them all.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let limits = [Limit { key: "touser=last", quotas: &quotas }];
        assert_eq!(limiter.try_acquire(&config, &limits, Duration::ZERO).await.unwrap(), Admission::Go);
        assert!(limiter.keys_held() <= 1, "{}", limiter.keys_held());
    }
}

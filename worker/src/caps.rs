//! Counting messages per recipient for the frequency caps of [`RecipientCaps`].
//!
//! Two counters behind one trait: [`LocalCaps`] (in memory, one process: the SQLite mode) and
//! [`RedisCaps`] (a Lua script, one round trip per job whatever its number of recipients: the
//! fleet mode). Both remember, per config and normalized recipient, the idempotency keys of the
//! jobs counted and when. A key already counted for a recipient is allowed again, so that a retry
//! or a redelivery of the same job never counts twice; any other job is allowed only when every
//! window has room, and is then counted.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use yizhan_state::Millis;

use crate::ratelimit::ConfigKey;
use crate::timerules::RecipientCaps;

/// The answer for one recipient of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapVerdict {
    /// Within every cap: counted (or already counted for this job's key).
    Allowed,
    /// Over a cap: not counted; every window has room again at `retry_at` (if nothing else is
    /// counted meanwhile).
    Capped {
        /// The earliest time, in ms since the epoch, at which every window has room.
        retry_at: Millis,
    },
}

/// A counter that could not answer; only the Redis counter fails.
#[derive(Debug, thiserror::Error)]
pub enum CapError {
    /// Redis is unreachable or refused the script.
    #[error("recipient-cap store: {0}")]
    Redis(#[from] redis::RedisError),
}

/// Counts messages per recipient of a config, shared by every job of the process or the fleet.
#[async_trait::async_trait]
pub trait CapCounter: Send + Sync {
    /// For the job with idempotency key `key`, one verdict per entry of `recipients` (normalized
    /// by the caller), in order; each allowed recipient is counted at `now` unless this key was
    /// counted for it already.
    async fn admit(
        &self,
        config: &ConfigKey,
        caps: &RecipientCaps,
        key: &str,
        recipients: &[String],
        now: Millis,
    ) -> Result<Vec<CapVerdict>, CapError>;
}

/// How many admissions pass between two sweeps of recipients with nothing left in their windows.
const SWEEP_EVERY: u64 = 10_000;

/// The keys counted for one recipient, and until when any of them matters.
#[derive(Debug, Default)]
struct Counted {
    /// (time counted, idempotency key), oldest first.
    entries: Vec<(Millis, String)>,
    /// After this instant every entry has left the longest window it was counted under.
    forget_after: Millis,
}

/// One process: the counts in memory (lost on restart, as a single node's caps may be).
#[derive(Debug, Default)]
pub struct LocalCaps {
    recipients: Mutex<HashMap<String, Counted>>,
    admissions: AtomicU64,
}

impl LocalCaps {
    /// Recipients held in memory (for tests of the sweep).
    pub fn recipients_held(&self) -> usize {
        self.recipients.lock().expect("cap map").len()
    }
}

#[async_trait::async_trait]
impl CapCounter for LocalCaps {
    async fn admit(
        &self,
        config: &ConfigKey,
        caps: &RecipientCaps,
        key: &str,
        recipients: &[String],
        now: Millis,
    ) -> Result<Vec<CapVerdict>, CapError> {
        let longest = caps.longest().as_millis() as Millis;
        let mut counted = self.recipients.lock().expect("cap map");
        if self.admissions.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            counted.retain(|_, c| c.forget_after > now);
        }
        let mut verdicts = Vec::with_capacity(recipients.len());
        for recipient in recipients {
            let entry = counted.entry(format!("{}\u{0}{}\u{0}{recipient}", config.0, config.1)).or_default();
            entry.entries.retain(|(at, _)| *at > now - longest);
            if entry.entries.iter().any(|(_, counted_key)| counted_key == key) {
                verdicts.push(CapVerdict::Allowed);
                continue;
            }
            let times: Vec<Millis> = entry.entries.iter().map(|(at, _)| *at).collect();
            match caps.retry_at(&times, now) {
                Some(retry_at) => verdicts.push(CapVerdict::Capped { retry_at }),
                None => {
                    let position = entry.entries.partition_point(|(at, _)| *at <= now);
                    entry.entries.insert(position, (now, key.to_string()));
                    entry.forget_after = entry.forget_after.max(now + longest);
                    verdicts.push(CapVerdict::Allowed);
                }
            }
        }
        Ok(verdicts)
    }
}

/// The fleet: one sorted set per config and recipient in Redis, shared by every worker of a
/// prefix.
pub struct RedisCaps {
    connection: yizhan_state::RedisConnection,
    namespace: String,
    admit: redis::Script,
}

/// KEYS[i] = the sorted set of recipient i (members: idempotency keys, scores: ms counted);
/// ARGV[1] = the job's key, ARGV[2] = now (ms), ARGV[3] = the longest span (ms), ARGV[4..] =
/// (count, span ms) per window. Per recipient: entries older than the longest span are trimmed;
/// -1 when the key is counted already, or when every window has room (then the key is added at
/// now and the set expires one longest span after); otherwise the ms at which every window has
/// room (the latest, over the full windows, of the oldest entry that must leave plus the span:
/// the same rule as `RecipientCaps::retry_at`). Scores are written with `%.0f` (Lua would print
/// large numbers in exponent form).
const ADMIT: &str = r"
local key = ARGV[1]
local now = tonumber(ARGV[2])
local longest = tonumber(ARGV[3])
local out = {}
for i = 1, #KEYS do
  local set = KEYS[i]
  redis.call('ZREMRANGEBYSCORE', set, '-inf', string.format('%.0f', now - longest))
  if redis.call('ZSCORE', set, key) then
    out[i] = -1
  else
    local retry = -1
    for w = 4, #ARGV, 2 do
      local count = tonumber(ARGV[w])
      local span = tonumber(ARGV[w + 1])
      local from = '(' .. string.format('%.0f', now - span)
      local inside = redis.call('ZCOUNT', set, from, '+inf')
      if inside >= count then
        local leaving = redis.call('ZRANGEBYSCORE', set, from, '+inf', 'WITHSCORES', 'LIMIT', inside - count, 1)
        local at = tonumber(leaving[2]) + span
        if at > retry then retry = at end
      end
    end
    if retry < 0 then
      redis.call('ZADD', set, string.format('%.0f', now), key)
      redis.call('PEXPIRE', set, string.format('%.0f', longest + 1000))
    end
    out[i] = retry
  end
end
return out
";

impl RedisCaps {
    /// Connects to the state store's Redis (`url`); `namespace` (the queue prefix) separates fleets.
    pub async fn connect(url: &str, namespace: &str) -> Result<RedisCaps, CapError> {
        let connection = yizhan_state::redis_connect(url).await?;
        Ok(RedisCaps::with_connection(connection, namespace))
    }

    /// Counts through an existing connection (shared with the rate limiter, for instance).
    pub fn with_connection(connection: yizhan_state::RedisConnection, namespace: &str) -> RedisCaps {
        RedisCaps { connection, namespace: namespace.to_string(), admit: redis::Script::new(ADMIT) }
    }

    fn recipient_key(&self, config: &ConfigKey, recipient: &str) -> String {
        format!("{}:caps:{}:{}:{}", self.namespace, config.0, config.1, recipient)
    }
}

#[async_trait::async_trait]
impl CapCounter for RedisCaps {
    async fn admit(
        &self,
        config: &ConfigKey,
        caps: &RecipientCaps,
        key: &str,
        recipients: &[String],
        now: Millis,
    ) -> Result<Vec<CapVerdict>, CapError> {
        if recipients.is_empty() {
            return Ok(Vec::new());
        }
        let mut invocation = self.admit.prepare_invoke();
        for recipient in recipients {
            invocation.key(self.recipient_key(config, recipient));
        }
        invocation.arg(key).arg(now).arg(caps.longest().as_millis() as u64);
        for window in caps.windows() {
            invocation.arg(window.count.get()).arg(window.span_ms());
        }
        let answers: Vec<i64> = invocation.invoke_async(&mut self.connection.clone()).await?;
        Ok(answers
            .into_iter()
            .map(|retry_at| if retry_at < 0 { CapVerdict::Allowed } else { CapVerdict::Capped { retry_at } })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REDIS: &str = "redis://127.0.0.1:6379/0";
    const T: Millis = 1_700_000_000_000;

    fn config() -> ConfigKey {
        ("tencent_sms".into(), format!("c{}", uuid::Uuid::now_v7().simple()))
    }

    fn to(numbers: &[&str]) -> Vec<String> {
        numbers.iter().map(|n| n.to_string()).collect()
    }

    fn allowed(n: usize) -> Vec<CapVerdict> {
        vec![CapVerdict::Allowed; n]
    }

    /// A namespace of its own, whose keys the test deletes when done.
    fn namespace() -> String {
        format!("test-caps-{}", uuid::Uuid::now_v7().simple())
    }

    async fn delete_namespace(namespace: &str) {
        let client = redis::Client::open(REDIS).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> =
            redis::cmd("KEYS").arg(format!("{namespace}:*")).query_async(&mut connection).await.unwrap();
        if !keys.is_empty() {
            let _: i64 = redis::cmd("DEL").arg(&keys).query_async(&mut connection).await.unwrap();
        }
    }

    /// The behaviour both counters share, with the caller's clock.
    async fn counts_once_per_key_and_tells_when(counter: &dyn CapCounter) {
        let config = config();
        let caps = RecipientCaps::parse("1/30s, 2/min").unwrap();
        let alice = to(&["+8613800000001"]);
        assert_eq!(counter.admit(&config, &caps, "k1", &alice, T).await.unwrap(), allowed(1));
        // The same key again (a retry, a redelivery): allowed, not counted a second time.
        assert_eq!(counter.admit(&config, &caps, "k1", &alice, T + 1_000).await.unwrap(), allowed(1));
        assert_eq!(counter.admit(&config, &caps, "k1", &alice, T + 2_000).await.unwrap(), allowed(1));
        // Another job 10 s later: the 30 s window frees at T + 30 s.
        assert_eq!(
            counter.admit(&config, &caps, "k2", &alice, T + 10_000).await.unwrap(),
            [CapVerdict::Capped { retry_at: T + 30_000 }]
        );
        assert_eq!(counter.admit(&config, &caps, "k2", &alice, T + 30_000).await.unwrap(), allowed(1));
        // Two in the minute now (T and T + 30 s): the minute frees when the first leaves, but the
        // 30 s window only at T + 60 s, the same moment.
        assert_eq!(
            counter.admit(&config, &caps, "k3", &alice, T + 45_000).await.unwrap(),
            [CapVerdict::Capped { retry_at: T + 60_000 }]
        );
        assert_eq!(counter.admit(&config, &caps, "k3", &alice, T + 60_000).await.unwrap(), allowed(1));
        // Each recipient on its own, in order; another config does not share the counts.
        let both = to(&["+8613800000002", "+8613800000001"]);
        assert_eq!(
            counter.admit(&config, &caps, "k4", &both, T + 61_000).await.unwrap(),
            [CapVerdict::Allowed, CapVerdict::Capped { retry_at: T + 90_000 }]
        );
        assert_eq!(counter.admit(&super::tests::config(), &caps, "k4", &both, T + 61_000).await.unwrap(), allowed(2));
        // A key counted for one recipient only is new for the other.
        assert_eq!(
            counter.admit(&config, &caps, "k4", &both, T + 62_000).await.unwrap(),
            [CapVerdict::Allowed, CapVerdict::Capped { retry_at: T + 90_000 }]
        );
        assert_eq!(counter.admit(&config, &caps, "k5", &[], T).await.unwrap(), Vec::<CapVerdict>::new());
    }

    #[tokio::test]
    async fn local_caps_count_once_per_key_and_tell_when() {
        counts_once_per_key_and_tells_when(&LocalCaps::default()).await;
    }

    #[tokio::test]
    async fn redis_caps_count_once_per_key_and_tell_when() {
        let namespace = namespace();
        let counter = RedisCaps::connect(REDIS, &namespace).await.unwrap();
        counts_once_per_key_and_tells_when(&counter).await;
        delete_namespace(&namespace).await;
    }

    #[tokio::test]
    async fn local_caps_forget_recipients_whose_windows_are_empty() {
        let counter = LocalCaps::default();
        let config = config();
        let caps = RecipientCaps::parse("1/s").unwrap();
        for i in 0..SWEEP_EVERY - 1 {
            counter.admit(&config, &caps, "k", &[format!("+{i}")], T).await.unwrap();
        }
        assert_eq!(counter.recipients_held(), SWEEP_EVERY as usize - 1);
        // A second later every window is empty: the next sweep drops them all.
        counter.admit(&config, &caps, "k", &to(&["+last"]), T + 1_000).await.unwrap();
        assert!(counter.recipients_held() <= 1, "{}", counter.recipients_held());
    }

    /// Two workers sharing Redis, five jobs to one number under `2/min`, all at once: two go.
    #[tokio::test]
    async fn redis_caps_hold_across_workers() {
        let namespace = namespace();
        let first = RedisCaps::connect(REDIS, &namespace).await.unwrap();
        let second = RedisCaps::connect(REDIS, &namespace).await.unwrap();
        let config = config();
        let caps = RecipientCaps::parse("2/min").unwrap();
        let number = to(&["+8613800000000"]);
        let now = yizhan_state::now_millis();
        let keys: Vec<String> = (1..=5).map(|i| format!("job-{i}")).collect();
        let answers = futures::future::join_all(keys.iter().enumerate().map(|(i, key)| {
            let counter = if i % 2 == 0 { &first } else { &second };
            counter.admit(&config, &caps, key, &number, now + i as Millis)
        }))
        .await;
        let verdicts: Vec<CapVerdict> = answers.into_iter().map(|a| a.unwrap()[0]).collect();
        let admitted: Vec<&String> =
            keys.iter().zip(&verdicts).filter(|(_, v)| **v == CapVerdict::Allowed).map(|(k, _)| k).collect();
        assert_eq!(admitted.len(), 2, "{verdicts:?}");
        for verdict in &verdicts {
            if let CapVerdict::Capped { retry_at } = verdict {
                // The earlier of the two counted leaves the minute first.
                assert!(*retry_at >= now + 60_000 && *retry_at <= now + 60_004, "{verdict:?}");
            }
        }
        // Retries of admitted jobs, through either worker, go again; the others stay capped.
        for key in &admitted {
            assert_eq!(second.admit(&config, &caps, key, &number, now + 10).await.unwrap(), allowed(1));
            assert_eq!(first.admit(&config, &caps, key, &number, now + 20).await.unwrap(), allowed(1));
        }
        let capped = keys.iter().find(|k| !admitted.contains(k)).unwrap();
        assert!(matches!(
            first.admit(&config, &caps, capped, &number, now + 30).await.unwrap()[0],
            CapVerdict::Capped { .. }
        ));
        // The set expires about a minute after its last addition.
        let mut connection = redis::Client::open(REDIS).unwrap().get_multiplexed_async_connection().await.unwrap();
        let ttl: i64 = redis::cmd("PTTL")
            .arg(format!("{namespace}:caps:{}:{}:+8613800000000", config.0, config.1))
            .query_async(&mut connection)
            .await
            .unwrap();
        assert!(ttl > 55_000 && ttl <= 61_000, "{ttl}");
        delete_namespace(&namespace).await;
    }
}

//! Rate limits per connector config and bucket (governor, keyed), and quota parsing.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, RateLimiter};

/// A rate such as `3000/s`, `20/min` or `100/h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub count: NonZeroU32,
    pub per: Duration,
}

impl Quota {
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

    /// The time between two tokens.
    pub fn period(&self) -> Duration {
        self.per / self.count.get()
    }

    fn governor(&self) -> governor::Quota {
        // Burst = the whole count: a config limited to 20/min may send 20 at once, then one per 3 s,
        // which never exceeds 20 in any rolling minute.
        governor::Quota::with_period(self.period()).expect("period > 0").allow_burst(self.count)
    }
}

/// The key of one limit: connector kind, config name and bucket.
pub type LimitKey = (String, String, &'static str);

/// Local token buckets (governor GCRA), one per (config, bucket), each with its own quota.
pub struct LocalLimiter {
    limiters: std::sync::Mutex<std::collections::HashMap<LimitKey, std::sync::Arc<DefaultDirectRateLimiter>>>,
}

impl Default for LocalLimiter {
    fn default() -> Self {
        LocalLimiter { limiters: std::sync::Mutex::new(std::collections::HashMap::new()) }
    }
}

impl LocalLimiter {
    /// Waits for a token of `key` under `quota`; returns how long it waited.
    pub async fn acquire(&self, key: &LimitKey, quota: Quota) -> Duration {
        let limiter = {
            let mut limiters = self.limiters.lock().expect("limiter map lock");
            limiters
                .entry(key.clone())
                .or_insert_with(|| std::sync::Arc::new(RateLimiter::direct(quota.governor())))
                .clone()
        };
        let start = Instant::now();
        limiter.until_ready().await;
        start.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rates() {
        assert_eq!(Quota::parse("3000/s").unwrap().period(), Duration::from_nanos(333_333));
        assert_eq!(Quota::parse("20/min").unwrap().period(), Duration::from_secs(3));
        assert_eq!(Quota::parse("2/h").unwrap().period(), Duration::from_secs(1800));
        assert!(Quota::parse("0/s").is_err());
        assert!(Quota::parse("ten/s").unwrap_err().contains("not a whole number"));
        assert!(Quota::parse("5/fortnight").unwrap_err().contains("unknown unit"));
        assert!(Quota::parse("5").is_err());
    }

    #[tokio::test]
    async fn a_burst_is_served_then_paced() {
        let limiter = LocalLimiter::default();
        let key: LimitKey = ("k".into(), "c".into(), "b");
        let quota = Quota::parse("5/s").unwrap();
        for _ in 0..5 {
            assert!(limiter.acquire(&key, quota).await < Duration::from_millis(50));
        }
        assert!(limiter.acquire(&key, quota).await >= Duration::from_millis(150));
    }
}

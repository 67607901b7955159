//! Per-tenant quotas of `POST /v1/jobs` (set in the token file, see [`crate::auth`]):
//!
//! - `submits_per_second`: a token bucket per tenant (governor), a burst of one second's worth.
//! - `max_queued`: the jobs waiting in the tenant's own queues (`<p>.jobs.<lane>.<tenant>`, ready
//!   messages summed over the lanes, read by passive declares). Why the broker and not a counter
//!   kept at accept and settle: the queue depth is exact whatever happens to a job (retried,
//!   dead-lettered, replayed, a worker crashing), costs the job hot path nothing, and it is what
//!   fills the broker. It is read at most once per second per tenant; the jobs accepted since are
//!   added to the reading, so a burst between readings cannot overshoot by more than a second's
//!   submissions.
//!
//! A tenant without a quota costs one map lookup per request; other tenants are never slowed by
//! one that is over its quota.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::clock::Clock;
use governor::{DefaultDirectRateLimiter, RateLimiter};

use crate::auth::Quota;

/// How long a queue depth reading is trusted.
const DEPTH_FRESH: Duration = Duration::from_secs(1);

/// Why a submission is refused: 429 with `Retry-After`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverQuota {
    /// What was exceeded, for the answer.
    pub reason: String,
    /// When to try again.
    pub retry_after: Duration,
}

/// The quota state of every tenant this API has seen.
#[derive(Default)]
pub struct Quotas {
    rates: Mutex<HashMap<String, (NonZeroU32, Arc<DefaultDirectRateLimiter>)>>,
    depths: Mutex<HashMap<String, Depth>>,
}

#[derive(Clone, Copy)]
struct Depth {
    read_at: Instant,
    queued: u64,
}

impl Quotas {
    /// Takes `jobs` submissions of `tenant` from its rate bucket, or says when they would fit.
    pub fn take_rate(&self, tenant: &str, quota: &Quota, jobs: u32) -> Result<(), OverQuota> {
        let (Some(rate), Some(jobs)) = (quota.submits_per_second, NonZeroU32::new(jobs)) else { return Ok(()) };
        let limiter = {
            let mut rates = self.rates.lock().expect("quota lock");
            let entry = rates.entry(tenant.to_string()).or_insert_with(|| (rate, limiter(rate)));
            // A reloaded quota starts a fresh bucket.
            if entry.0 != rate {
                *entry = (rate, limiter(rate));
            }
            entry.1.clone()
        };
        match limiter.check_n(jobs) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(OverQuota {
                reason: format!("tenant {tenant} is over its quota of {rate} submissions per second"),
                retry_after: not_until.wait_time_from(limiter.clock().now()),
            }),
            Err(_) => Err(OverQuota {
                reason: format!(
                    "{jobs} jobs in one request exceed tenant {tenant}'s quota of {rate} submissions per second; send smaller batches"
                ),
                retry_after: Duration::from_secs(1),
            }),
        }
    }

    /// The last reading of `tenant`'s queued jobs, if still fresh.
    pub fn fresh_depth(&self, tenant: &str) -> Option<u64> {
        let depths = self.depths.lock().expect("quota lock");
        depths.get(tenant).filter(|d| d.read_at.elapsed() < DEPTH_FRESH).map(|d| d.queued)
    }

    /// Keeps a new reading of `tenant`'s queued jobs.
    pub fn set_depth(&self, tenant: &str, queued: u64) {
        self.depths.lock().expect("quota lock").insert(tenant.to_string(), Depth { read_at: Instant::now(), queued });
    }

    /// Counts `jobs` just accepted into the reading, until the next one.
    pub fn add_queued(&self, tenant: &str, jobs: u64) {
        if let Some(depth) = self.depths.lock().expect("quota lock").get_mut(tenant) {
            depth.queued += jobs;
        }
    }

    /// Whether `jobs` more would pass `tenant`'s `max_queued`, given `queued` waiting now.
    pub fn check_queued(tenant: &str, quota: &Quota, queued: u64, jobs: u64) -> Result<(), OverQuota> {
        match quota.max_queued {
            Some(max) if queued + jobs > max => Err(OverQuota {
                reason: format!("tenant {tenant} has {queued} jobs queued; its quota is {max}"),
                retry_after: DEPTH_FRESH,
            }),
            _ => Ok(()),
        }
    }
}

fn limiter(rate: NonZeroU32) -> Arc<DefaultDirectRateLimiter> {
    Arc::new(RateLimiter::direct(governor::Quota::per_second(rate)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_refuses_past_the_burst_and_other_tenants_pass() {
        let quotas = Quotas::default();
        let quota = Quota { submits_per_second: NonZeroU32::new(3), max_queued: None };
        assert!(quotas.take_rate("a", &quota, 2).is_ok());
        assert!(quotas.take_rate("a", &quota, 1).is_ok());
        let refused = quotas.take_rate("a", &quota, 1).unwrap_err();
        assert!(refused.retry_after > Duration::ZERO && refused.retry_after <= Duration::from_secs(1));
        assert!(quotas.take_rate("b", &quota, 3).is_ok());
        assert!(quotas.take_rate("c", &quota, 4).unwrap_err().reason.contains("smaller batches"));
        assert!(quotas.take_rate("d", &Quota::default(), 1_000_000).is_ok());
    }

    #[test]
    fn queued_jobs_count_until_the_next_reading() {
        let quotas = Quotas::default();
        let quota = Quota { submits_per_second: None, max_queued: Some(10) };
        assert_eq!(quotas.fresh_depth("a"), None);
        quotas.set_depth("a", 8);
        quotas.add_queued("a", 1);
        assert_eq!(quotas.fresh_depth("a"), Some(9));
        assert!(Quotas::check_queued("a", &quota, 9, 1).is_ok());
        assert!(Quotas::check_queued("a", &quota, 9, 2).is_err());
        assert!(Quotas::check_queued("a", &Quota::default(), 9, 2).is_ok());
    }
}

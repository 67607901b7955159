//! Per-tenant quotas of `POST /v1/jobs`, `POST /v1/campaigns` and
//! `POST /v1/campaigns/{id}/recipients` (set in the token file, see [`crate::auth`]). A campaign
//! request of R recipients counts as R submissions and R queued jobs.
//!
//! - `submits_per_second`: a token bucket per tenant holding one second's worth. A request of n
//!   jobs is admitted when the bucket holds n tokens or, for n larger than the bucket, when the
//!   bucket is full; it takes all n, so a larger request leaves the bucket in debt and the
//!   tenant's next submissions wait until it has refilled (n / rate seconds in all). Why not
//!   refuse requests larger than the bucket: a campaign chunk of 5000 recipients must be possible
//!   for a tenant allowed 50 per second, and the average stays at the rate either way.
//! - `max_queued`: the jobs waiting in the tenant's own queues (`<p>.jobs.<lane>.<tenant>`, ready
//!   messages summed over the lanes, read by passive declares). Why the broker and not a counter
//!   kept at accept and settle: the queue depth is exact whatever happens to a job (retried,
//!   dead-lettered, replayed, a worker crashing), costs the job hot path nothing, and it is what
//!   fills the broker. It is read at most once per second per tenant; the jobs accepted since are
//!   added to the reading, so a burst between readings cannot overshoot by more than a second's
//!   submissions. A request larger than `max_queued` could never be admitted: its refusal says to
//!   split it.
//!
//! A refused request takes nothing from the bucket. A tenant without a quota costs one map lookup
//! per request; other tenants are never slowed by one that is over its quota.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::Producer;
use crate::auth::{Quota, Tokens};

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

impl OverQuota {
    /// 429 `{"error": reason}` with `Retry-After` in whole seconds (at least 1).
    pub fn response(&self) -> Response {
        let seconds = self.retry_after.as_secs_f64().ceil().max(1.0).to_string();
        let mut response = (StatusCode::TOO_MANY_REQUESTS, Json(json!({"error": self.reason}))).into_response();
        response.headers_mut().insert(header::RETRY_AFTER, seconds.parse().expect("digits are a header value"));
        response
    }
}

/// The quota state of every tenant this API has seen.
#[derive(Default)]
pub struct Quotas {
    rates: Mutex<HashMap<String, Bucket>>,
    depths: Mutex<HashMap<String, Depth>>,
}

/// A tenant's submission bucket, kept as the time it is full again (GCRA): a job costs
/// `1 / rate` seconds of it, and it holds one second.
struct Bucket {
    rate: NonZeroU32,
    full_at: Instant,
}

impl Bucket {
    /// Takes `jobs` at `now`, or says how long until they fit.
    fn take(&mut self, now: Instant, jobs: NonZeroU32) -> Result<(), Duration> {
        let per_job = Duration::from_secs(1) / self.rate.get();
        let backlog = self.full_at.saturating_duration_since(now);
        // A request larger than the bucket needs it full, and then leaves it in debt.
        let needed = per_job * jobs.get().min(self.rate.get());
        // The backlog the bucket may have and still hold `needed`; a microsecond of slack, as
        // `per_job * rate` may round below one second.
        let allowed = Duration::from_secs(1).saturating_sub(needed) + Duration::from_micros(1);
        if backlog > allowed {
            return Err(backlog - allowed);
        }
        self.full_at = now.max(self.full_at) + per_job * jobs.get();
        Ok(())
    }
}

#[derive(Clone, Copy)]
struct Depth {
    read_at: Instant,
    queued: u64,
}

impl Quotas {
    /// Takes `jobs` submissions of `tenant` from its rate bucket, or says when they would fit.
    pub fn take_rate(&self, tenant: &str, quota: &Quota, jobs: u32) -> Result<(), OverQuota> {
        self.take_rate_at(Instant::now(), tenant, quota, jobs)
    }

    fn take_rate_at(&self, now: Instant, tenant: &str, quota: &Quota, jobs: u32) -> Result<(), OverQuota> {
        let (Some(rate), Some(jobs)) = (quota.submits_per_second, NonZeroU32::new(jobs)) else { return Ok(()) };
        let mut rates = self.rates.lock().expect("quota lock");
        let bucket = rates.entry(tenant.to_string()).or_insert(Bucket { rate, full_at: now });
        // A reloaded quota starts a fresh bucket.
        if bucket.rate != rate {
            *bucket = Bucket { rate, full_at: now };
        }
        bucket.take(now, jobs).map_err(|wait| OverQuota {
            reason: format!("tenant {tenant} is over its quota of {rate} submissions per second"),
            retry_after: wait,
        })
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
            Some(max) if jobs > max => Err(OverQuota {
                reason: format!(
                    "{jobs} jobs in one request exceed tenant {tenant}'s max_queued of {max}; send them in smaller \
                     requests (a campaign: its recipients in chunks to POST /v1/campaigns/{{id}}/recipients)"
                ),
                retry_after: DEPTH_FRESH,
            }),
            Some(max) if queued + jobs > max => Err(OverQuota {
                reason: format!("tenant {tenant} has {queued} jobs queued; its quota is {max}"),
                retry_after: DEPTH_FRESH,
            }),
            _ => Ok(()),
        }
    }

    /// Admits `jobs` jobs of `tenant` under its quotas: the queued jobs first (a broker round
    /// trip at most once a second per tenant), then the rate, taken only once the rest passed.
    /// The caller counts the jobs the broker confirmed with [`Quotas::add_queued`].
    pub async fn admit(
        &self,
        tokens: &Tokens,
        producer: &Producer,
        tenant: &str,
        jobs: usize,
    ) -> Result<(), OverQuota> {
        let set = tokens.current();
        if jobs == 0 || set.quotas().is_empty() {
            return Ok(());
        }
        let quota = set.quota(tenant);
        if quota.max_queued.is_some() {
            let queued = match self.fresh_depth(tenant) {
                Some(queued) => queued,
                None => {
                    // Unknown depth (broker trouble): let the publish itself tell.
                    let queued = producer.queued(tenant).await.unwrap_or(0);
                    self.set_depth(tenant, queued);
                    queued
                }
            };
            Self::check_queued(tenant, &quota, queued, jobs as u64)?;
        }
        self.take_rate(tenant, &quota, u32::try_from(jobs).unwrap_or(u32::MAX))
    }
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
        assert!(quotas.take_rate("d", &Quota::default(), 1_000_000).is_ok());
    }

    #[test]
    fn a_request_larger_than_the_bucket_needs_it_full_and_leaves_it_in_debt() {
        let quotas = Quotas::default();
        let quota = Quota { submits_per_second: NonZeroU32::new(10), max_queued: None };
        let t0 = Instant::now();
        // Not full: one job taken, the 50 wait until it is (a tenth of a second).
        assert!(quotas.take_rate_at(t0, "a", &quota, 1).is_ok());
        let refused = quotas.take_rate_at(t0, "a", &quota, 50).unwrap_err();
        assert!(refused.retry_after > Duration::ZERO && refused.retry_after <= Duration::from_millis(100));
        // Full again: the 50 pass at once, then the tenant waits 5 s of rate, 4 past the bucket.
        let t1 = t0 + Duration::from_millis(100);
        assert!(quotas.take_rate_at(t1, "a", &quota, 50).is_ok());
        let refused = quotas.take_rate_at(t1, "a", &quota, 1).unwrap_err();
        assert!(
            refused.retry_after > Duration::from_millis(4000) && refused.retry_after <= Duration::from_millis(4100),
            "{refused:?}"
        );
        assert!(quotas.take_rate_at(t1 + Duration::from_millis(4100), "a", &quota, 1).is_ok());
        // Another tenant is not slowed by it.
        assert!(quotas.take_rate_at(t1, "b", &quota, 10).is_ok());
        // Over a long run the average stays at the rate: 10 s admit 100 jobs plus the bucket's 10.
        let t2 = t1 + Duration::from_secs(10);
        let admitted = (0..10_000u64)
            .step_by(10)
            .filter(|ms| quotas.take_rate_at(t2 + Duration::from_millis(*ms), "c", &quota, 1).is_ok())
            .count();
        assert!((100..=111).contains(&admitted), "{admitted}");
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
        let never = Quotas::check_queued("a", &quota, 0, 11).unwrap_err();
        assert!(never.reason.contains("smaller requests"), "{never:?}");
    }
}

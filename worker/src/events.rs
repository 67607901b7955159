//! Typed internal events, in the manner of Vector's `internal_events`: one type per thing that
//! happens to a job, each writing its log line and its metrics in one place, so that a log line
//! and its counter can never disagree and nothing else in the worker logs or counts these.

use std::time::Duration;

use tracing::{debug, info, warn};

use crate::metrics::{JobOutcome, Metrics, RequestResult};

/// Something that happened, logged and counted by [`InternalEvent::emit`].
pub(crate) trait InternalEvent {
    fn emit(self, metrics: &Metrics);
}

/// A delivery settled: its outcome is recorded and, where it moves, confirmed by the broker.
pub(crate) struct JobSettled<'a> {
    pub connector: &'a str,
    pub action: &'a str,
    pub outcome: JobOutcome,
    /// Why, for retries, dead letters and invalid jobs.
    pub reason: Option<&'a str>,
    /// The job belongs to a campaign.
    pub in_campaign: bool,
}

impl InternalEvent for JobSettled<'_> {
    fn emit(self, metrics: &Metrics) {
        let reason = self.reason.unwrap_or_default();
        match self.outcome {
            JobOutcome::Succeeded => info!("succeeded"),
            JobOutcome::Duplicate => info!("duplicate delivery; already handled under this idempotency key"),
            JobOutcome::Retried => warn!(%reason, "transient failure; retrying"),
            JobOutcome::DeadLettered => warn!(%reason, "dead-lettered"),
            JobOutcome::Invalid => warn!(%reason, "invalid job; dead-lettered"),
            JobOutcome::Cancelled => info!("cancelled before it ran"),
            JobOutcome::Deferred => info!(%reason, "deferred"),
            JobOutcome::Capped => info!("every recipient over its cap; not sent"),
            JobOutcome::FailedOver => info!("failed over"),
        }
        metrics.job(self.connector, self.action, self.outcome);
        if self.in_campaign {
            metrics.campaign_job(self.outcome);
        }
    }
}

/// A job's attempt moved to its config's fallback.
pub(crate) struct FailedOver<'a> {
    pub connector: &'a str,
    pub action: &'a str,
    pub from: &'a str,
    pub to: &'a str,
    /// `paused` or `unreachable`.
    pub why: &'static str,
}

impl InternalEvent for FailedOver<'_> {
    fn emit(self, metrics: &Metrics) {
        warn!(from = self.from, to = self.to, why = self.why, "failing over to the fallback config");
        metrics.job(self.connector, self.action, JobOutcome::FailedOver);
    }
}

/// A job's attempt reached the provider (shared SMS calls count once per job).
pub(crate) struct ProviderCalled<'a> {
    pub connector: &'a str,
    pub result: RequestResult,
}

impl InternalEvent for ProviderCalled<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.provider_request(self.connector, self.result);
    }
}

/// A job waited this long for its rate-limit tokens (or gave up waiting and was parked).
pub(crate) struct RateLimitWaited<'a> {
    pub connector: &'a str,
    pub waited: Duration,
}

impl InternalEvent for RateLimitWaited<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.rate_limit_wait(self.connector, self.waited.as_secs_f64());
    }
}

/// The provider throttled a config: it pauses on every worker of the fleet.
pub(crate) struct ConfigPaused<'a> {
    pub reason: &'a str,
    pub pause: Duration,
    /// Set when the pause could not be recorded (the shared limiter is unreachable).
    pub not_recorded: Option<&'a str>,
}

impl InternalEvent for ConfigPaused<'_> {
    fn emit(self, _metrics: &Metrics) {
        let pause_ms = self.pause.as_millis() as u64;
        match self.not_recorded {
            None => warn!(reason = %self.reason, pause_ms, "provider throttled the config; pausing it"),
            Some(error) => {
                warn!(reason = %self.reason, pause_ms, %error, "provider throttled the config; could not record the pause")
            }
        }
    }
}

/// A job that cannot run yet was parked until its turn. Debug only: while a config is paused
/// every waiting job passes here, and the pause itself was logged once.
pub(crate) struct JobParked<'a> {
    pub connector: &'a str,
    pub wait: Duration,
}

impl InternalEvent for JobParked<'_> {
    fn emit(self, metrics: &Metrics) {
        debug!(wait_ms = self.wait.as_millis() as u64, "cannot run yet; parked until its turn");
        metrics.parked(self.connector);
    }
}

/// Parked jobs that fell due went back to their lanes.
pub(crate) struct ParkedReleased<'a> {
    pub released: usize,
    /// Those the broker did not confirm stay parked and go again after their lease.
    pub unpublished: usize,
    pub error: Option<&'a str>,
}

impl InternalEvent for ParkedReleased<'_> {
    fn emit(self, metrics: &Metrics) {
        if let Some(error) = self.error {
            warn!(%error, unpublished = self.unpublished, "could not publish parked jobs back");
        }
        metrics.released.inc_by(self.released as u64);
    }
}

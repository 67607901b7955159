//! The worker's Prometheus metrics (README, "Metrics and health"). Labels are bounded: connector and action
//! come from the catalog (`unknown` for anything else), never a job id, recipient or secret.

use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

/// Outcomes counted by `yizhan_jobs_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    /// The provider call succeeded.
    Succeeded,
    /// Failed transiently; a retry copy was published to a delay queue.
    Retried,
    /// Permanent, exhausted or ambiguous: sent to the dead-letter queue.
    DeadLettered,
    /// The key already finished, or the copy is stale: acknowledged without a call.
    Duplicate,
    /// Not a valid job, or names a config this worker lacks: dead-lettered.
    Invalid,
    /// Cancelled before it ran (the job, or its campaign): acknowledged without a call.
    Cancelled,
    /// Held back by its config's quiet hours or a recipient cap (`on_cap = "defer"`); parked.
    Deferred,
    /// Every recipient was over its cap (`on_cap = "drop"`): acknowledged without a call.
    Capped,
    /// An attempt moved to its config's fallback (counted besides the job's own outcome).
    FailedOver,
}

impl JobOutcome {
    /// The `outcome` label, also the settle span's `outcome`.
    pub(crate) fn label(self) -> &'static str {
        match self {
            JobOutcome::Succeeded => "succeeded",
            JobOutcome::Retried => "retried",
            JobOutcome::DeadLettered => "dead_lettered",
            JobOutcome::Duplicate => "duplicate",
            JobOutcome::Invalid => "invalid",
            JobOutcome::Cancelled => "cancelled",
            JobOutcome::Deferred => "deferred",
            JobOutcome::Capped => "capped",
            JobOutcome::FailedOver => "failed_over",
        }
    }
}

/// `result` of `yizhan_provider_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestResult {
    /// The provider accepted the call.
    Ok,
    /// Any failure worth retrying (transient, throttled or ambiguous).
    Transient,
    /// The provider refused the call for good.
    Permanent,
}

impl RequestResult {
    /// The `result` label, also the provider call span's `result`.
    pub(crate) fn label(self) -> &'static str {
        match self {
            RequestResult::Ok => "ok",
            RequestResult::Transient => "transient",
            RequestResult::Permanent => "permanent",
        }
    }
}

/// The worker's registry and its metrics; clones share them.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    jobs: IntCounterVec,
    job_duration: HistogramVec,
    provider_requests: IntCounterVec,
    rate_limit_wait: HistogramVec,
    parked: IntCounterVec,
    campaign_jobs: IntCounterVec,
    callbacks: IntCounterVec,
    /// Parked jobs published back to their lanes.
    pub released: prometheus::IntCounter,
    /// `yizhan_jobs_in_flight`: deliveries being handled now.
    pub in_flight: IntGauge,
    /// `yizhan_broker_connected`: 1 while both broker connections are open, set at each scrape.
    pub broker_connected: IntGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry of its own (not the global one), every metric at zero.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let jobs = IntCounterVec::new(
            Opts::new("yizhan_jobs_total", "Jobs handled, by outcome."),
            &["connector", "action", "outcome"],
        )
        .expect("valid metric");
        let job_duration = HistogramVec::new(
            HistogramOpts::new(
                "yizhan_job_duration_seconds",
                "Time to handle one delivery of a job, rate-limit wait included.",
            )
            .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]),
            &["connector", "action"],
        )
        .expect("valid metric");
        let provider_requests = IntCounterVec::new(
            Opts::new("yizhan_provider_requests_total", "Provider calls, by classified result."),
            &["connector", "result"],
        )
        .expect("valid metric");
        let rate_limit_wait = HistogramVec::new(
            HistogramOpts::new("yizhan_rate_limit_wait_seconds", "Time spent waiting for a rate-limit token.")
                .buckets(vec![0.0, 0.001, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0]),
            &["connector"],
        )
        .expect("valid metric");
        let parked = IntCounterVec::new(
            Opts::new("yizhan_jobs_parked_total", "Jobs held in the state store until their config can take them."),
            &["connector"],
        )
        .expect("valid metric");
        // Campaign progress for Prometheus: by outcome over every campaign, never by campaign id
        // (unbounded); one campaign's counts are the API's `GET /v1/campaigns/{id}`.
        let campaign_jobs = IntCounterVec::new(
            Opts::new("yizhan_campaign_jobs_total", "Jobs of campaigns handled, by outcome (all campaigns together)."),
            &["outcome"],
        )
        .expect("valid metric");
        let callbacks = IntCounterVec::new(
            Opts::new(
                "yizhan_callbacks_total",
                "Completion callback POSTs, by outcome: delivered, retried, dead_lettered.",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let released = prometheus::IntCounter::new(
            "yizhan_parked_released_total",
            "Parked jobs published back to their lanes when due.",
        )
        .expect("valid metric");
        let in_flight = IntGauge::new("yizhan_jobs_in_flight", "Jobs being handled now.").expect("valid metric");
        let broker_connected =
            IntGauge::new("yizhan_broker_connected", "1 while connected to the broker.").expect("valid metric");
        for collector in [
            Box::new(jobs.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(job_duration.clone()),
            Box::new(provider_requests.clone()),
            Box::new(rate_limit_wait.clone()),
            Box::new(parked.clone()),
            Box::new(campaign_jobs.clone()),
            Box::new(callbacks.clone()),
            Box::new(released.clone()),
            Box::new(in_flight.clone()),
            Box::new(broker_connected.clone()),
        ] {
            registry.register(collector).expect("metric registered once");
        }
        Metrics {
            registry,
            jobs,
            job_duration,
            provider_requests,
            rate_limit_wait,
            campaign_jobs,
            callbacks,
            parked,
            released,
            in_flight,
            broker_connected,
        }
    }

    /// Counts one handled delivery in `yizhan_jobs_total`.
    pub fn job(&self, connector: &str, action: &str, outcome: JobOutcome) {
        let (connector, action) = bounded(connector, action);
        self.jobs.with_label_values(&[connector, action, outcome.label()]).inc();
    }

    /// Counts one job of a campaign by outcome.
    pub fn campaign_job(&self, outcome: JobOutcome) {
        self.campaign_jobs.with_label_values(&[outcome.label()]).inc();
    }

    /// Counts one completion callback try by outcome (`delivered`, `retried`, `dead_lettered`).
    pub fn callback(&self, outcome: &'static str) {
        self.callbacks.with_label_values(&[outcome]).inc();
    }

    /// Observes one delivery's handling time, rate-limit wait included.
    pub fn job_duration(&self, connector: &str, action: &str, seconds: f64) {
        let (connector, action) = bounded(connector, action);
        self.job_duration.with_label_values(&[connector, action]).observe(seconds);
    }

    /// Counts one provider call by its classified result.
    pub fn provider_request(&self, connector: &str, result: RequestResult) {
        let (connector, _) = bounded(connector, "");
        self.provider_requests.with_label_values(&[connector, result.label()]).inc();
    }

    /// Observes the time a job waited for a rate-limit token (0 when none was needed).
    pub fn rate_limit_wait(&self, connector: &str, seconds: f64) {
        let (connector, _) = bounded(connector, "");
        self.rate_limit_wait.with_label_values(&[connector]).observe(seconds);
    }

    /// Counts one job parked in the state store until its config can take it.
    pub fn parked(&self, connector: &str) {
        let (connector, _) = bounded(connector, "");
        self.parked.with_label_values(&[connector]).inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buffer).expect("text encoding");
        String::from_utf8(buffer).expect("utf-8 exposition")
    }
}

/// Catalog names pass; anything else (a hostile or mistyped message) becomes `unknown`.
fn bounded<'a>(connector: &'a str, action: &'a str) -> (&'a str, &'a str) {
    match yizhan_schemas::find_kind(connector) {
        Some(kind) => (kind.name, kind.action(action).map_or("unknown", |a| a.name)),
        None => ("unknown", "unknown"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_contract_names_with_bounded_labels() {
        let metrics = Metrics::new();
        metrics.job("tencent_sms", "send_sms", JobOutcome::Succeeded);
        metrics.job("<script>", "x", JobOutcome::Invalid);
        metrics.provider_request("wecom_robot", RequestResult::Transient);
        metrics.rate_limit_wait("wecom_robot", 0.5);
        metrics.job_duration("tencent_sms", "send_sms", 0.01);
        let text = metrics.render();
        assert!(
            text.contains(r#"yizhan_jobs_total{action="send_sms",connector="tencent_sms",outcome="succeeded"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"yizhan_jobs_total{action="unknown",connector="unknown",outcome="invalid"} 1"#));
        assert!(text.contains(r#"yizhan_provider_requests_total{connector="wecom_robot",result="transient"} 1"#));
        assert!(text.contains("yizhan_rate_limit_wait_seconds_bucket"));
        assert!(text.contains("yizhan_job_duration_seconds_bucket"));
        assert!(text.contains("yizhan_jobs_in_flight 0"));
        assert!(text.contains("yizhan_broker_connected 0"));
        assert!(!text.contains("script"));
    }
}

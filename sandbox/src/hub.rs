//! [`Hub`]: what every fake provider shares (configuration, records, faults, throttles, counters),
//! and [`Own`], a provider's own state next to the hub. Knows no provider: each provider module
//! defines its state type, and [`crate::state`] composes them.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::sync::watch;
use tokio::time;

use crate::capture::Captured;
use crate::config::SandboxConfig;
use crate::faults::{Fault, FaultEffect, FaultError, FaultQueue, RequestFacts, Stage};
use crate::receipts::{ReceiptPlan, Receipts, Report};
use crate::records::{Provider, RecordedRequest, Rejection, RobotMessage, SentSms, Stats, UploadedMedia};
use crate::throttle::RollingWindow;

/// Handle to what the running sandbox saw and did, and to its programmable faults.
#[derive(Clone)]
pub(crate) struct Hub {
    shared: Arc<Shared>,
}

struct Shared {
    config: SandboxConfig,
    data: Mutex<Data>,
    /// Bumped after every change, so waiters re-check their condition.
    version: watch::Sender<u64>,
    /// Bumped when the receipt plan changes: the callback sender, idle without a URL, waits
    /// on it rather than on every SMS.
    plan_version: watch::Sender<u64>,
}

#[derive(Default)]
struct Data {
    faults: FaultQueue,
    delays: HashMap<Provider, Duration>,
    requests: VecDeque<RecordedRequest>,
    sent_sms: VecDeque<SentSms>,
    sms_per_phone: HashMap<String, usize>,
    robot_messages: VecDeque<RobotMessage>,
    media: Vec<UploadedMedia>,
    rejected: VecDeque<Rejection>,
    stats: Stats,
    tencent_windows: HashMap<String, RollingWindow>,
    robot_windows: HashMap<String, RollingWindow>,
    /// Other providers' throttles, by `(provider, credential)`.
    windows: HashMap<(Provider, String), RollingWindow>,
    /// Status reports of the SMS accepted, until handed out.
    receipts: Receipts,
}

fn push_capped<T>(list: &mut VecDeque<T>, item: T, cap: usize) {
    if cap == 0 {
        return;
    }
    while list.len() >= cap {
        list.pop_front();
    }
    list.push_back(item);
}

impl Hub {
    pub(crate) fn new(config: SandboxConfig) -> Self {
        let (version, _) = watch::channel(0);
        let (plan_version, _) = watch::channel(0);
        Self { shared: Arc::new(Shared { config, data: Mutex::new(Data::default()), version, plan_version }) }
    }

    /// The configuration the sandbox runs with.
    pub(crate) fn config(&self) -> &SandboxConfig {
        &self.shared.config
    }

    fn data(&self) -> MutexGuard<'_, Data> {
        self.shared.data.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the data, then wakes the waiters.
    fn change<R>(&self, f: impl FnOnce(&mut Data) -> R) -> R {
        let result = f(&mut self.data());
        self.changed();
        result
    }

    // ----- faults -------------------------------------------------------------------------

    /// Queues a fault (after [`Fault::validate`]). Faults are tried in the order they were pushed.
    pub(crate) fn push_fault(&self, fault: Fault) -> Result<(), FaultError> {
        self.push_faults(vec![fault])
    }

    /// Queues several faults; none is queued if one is invalid.
    pub(crate) fn push_faults(&self, faults: Vec<Fault>) -> Result<(), FaultError> {
        for fault in &faults {
            fault.validate()?;
        }
        self.change(|d| faults.into_iter().for_each(|f| d.faults.push(f)));
        Ok(())
    }

    /// Drops every pending fault; returns how many there were.
    pub(crate) fn clear_faults(&self) -> usize {
        self.change(|d| d.faults.clear())
    }

    /// Faults not (fully) consumed yet.
    pub(crate) fn pending_faults(&self) -> Vec<Fault> {
        self.data().faults.pending().to_vec()
    }

    /// A fixed extra latency for every request to `provider` (`Duration::ZERO` removes it).
    pub(crate) fn set_delay(&self, provider: Provider, delay: Duration) {
        self.change(|d| {
            if delay.is_zero() {
                d.delays.remove(&provider);
            } else {
                d.delays.insert(provider, delay);
            }
        });
    }

    // ----- records --------------------------------------------------------------------------

    /// Every accepted SMS (one per number), oldest first.
    pub(crate) fn sent_sms(&self) -> Vec<SentSms> {
        self.data().sent_sms.iter().cloned().collect()
    }

    /// How many SMS were accepted for `phone` (any accepted spelling; compared as E.164).
    pub(crate) fn sms_count_for(&self, phone: &str) -> usize {
        let phone = crate::phone::canonical(phone);
        self.data().sms_per_phone.get(&phone).copied().unwrap_or(0)
    }

    /// The JSON bodies of the messages robot `key` delivered, oldest first.
    pub(crate) fn robot_messages(&self, key: &str) -> Vec<Value> {
        let data = self.data();
        data.robot_messages.iter().filter(|m| m.key == key).map(|m| m.body.clone()).collect()
    }

    /// Every delivered robot message, oldest first.
    pub(crate) fn all_robot_messages(&self) -> Vec<RobotMessage> {
        self.data().robot_messages.iter().cloned().collect()
    }

    /// Every uploaded file.
    pub(crate) fn uploaded_media(&self) -> Vec<UploadedMedia> {
        self.data().media.clone()
    }

    /// Every provider request as received (control endpoints excluded), oldest first.
    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        self.data().requests.iter().cloned().collect()
    }

    /// The recorded requests to one provider.
    pub(crate) fn requests_for(&self, provider: Provider) -> Vec<RecordedRequest> {
        let data = self.data();
        data.requests.iter().filter(|r| r.provider == provider).cloned().collect()
    }

    /// `(provider, code)` of every refusal, oldest first: `("tencent", "AuthFailure.SignatureFailure")`,
    /// `("wecom_robot", "93000")`... Injected faults are not refusals.
    pub(crate) fn rejected(&self) -> Vec<(String, String)> {
        let data = self.data();
        data.rejected.iter().map(|r| (r.provider.as_str().to_string(), r.code.clone())).collect()
    }

    /// The refusals with their messages.
    pub(crate) fn rejections(&self) -> Vec<Rejection> {
        self.data().rejected.iter().cloned().collect()
    }

    pub(crate) fn stats(&self) -> Stats {
        let data = self.data();
        Stats { pending_faults: data.faults.pending().len(), ..data.stats.clone() }
    }

    /// Forgets everything: records, counters, faults, delays, uploaded media, throttle windows.
    pub(crate) fn reset(&self) {
        self.change(|d| *d = Data::default());
    }

    /// A receiver that sees every change.
    pub(crate) fn changes(&self) -> watch::Receiver<u64> {
        self.shared.version.subscribe()
    }

    /// Wakes the waiters after a change made outside the hub.
    fn changed(&self) {
        self.shared.version.send_modify(|v| *v = v.wrapping_add(1));
    }

    // ----- receipts -------------------------------------------------------------------------

    /// How deliveries are reported from now on (reports already made keep their due times).
    pub(crate) fn set_receipt_plan(&self, plan: ReceiptPlan) {
        self.change(|d| d.receipts.plan = plan);
        self.shared.plan_version.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Receives a bump on every receipt plan change.
    pub(crate) fn plan_changes(&self) -> watch::Receiver<u64> {
        self.shared.plan_version.subscribe()
    }

    /// How deliveries are reported.
    pub(crate) fn receipt_plan(&self) -> ReceiptPlan {
        self.data().receipts.plan.clone()
    }

    /// Reports made and not handed out yet (pushed or pulled).
    pub(crate) fn receipts_pending(&self) -> usize {
        self.data().receipts.pending()
    }

    /// Due reports for the callback URL, and the URL; None when there are none (or no URL).
    pub(crate) fn take_push(&self) -> Option<(String, Vec<Report>)> {
        self.data().receipts.take_push(Instant::now())
    }

    /// Reports the callback's receiver refused: POSTed again after a short wait.
    pub(crate) fn put_back_push(&self, reports: Vec<Report>) {
        self.change(|d| d.receipts.put_back(reports, Instant::now() + crate::receipts::PUSH_RETRY));
    }

    /// Reports the callback's receiver accepted.
    pub(crate) fn pushed(&self, n: usize) {
        self.change(|d| d.stats.receipts_pushed += n as u64);
    }

    /// Up to `max` due reports of `sdk_app_id`, handed out once (`PullSmsSendStatus`).
    pub(crate) fn take_pull(&self, sdk_app_id: &str, max: usize) -> Vec<Report> {
        self.change(|d| {
            let taken = d.receipts.take_pull(sdk_app_id, Instant::now(), max);
            d.stats.receipts_pulled += taken.len() as u64;
            taken
        })
    }

    /// Whether due reports are POSTed (the plan has a callback URL), and when the next falls due.
    pub(crate) fn push_schedule(&self) -> (bool, Option<Instant>) {
        let data = self.data();
        (data.receipts.plan.callback_url.is_some(), data.receipts.next_due())
    }

    // ----- crate-internal: used by the fake providers ------------------------------------------

    /// A throttle hit for `(provider, credential)`: at most `limit` per rolling `window`.
    pub(crate) fn throttle(&self, provider: Provider, credential: &str, limit: u32, window: Duration) -> bool {
        let mut data = self.data();
        data.windows
            .entry((provider, credential.to_string()))
            .or_insert_with(|| RollingWindow::new(limit, window))
            .try_hit(Instant::now())
    }

    pub(crate) fn record_request(&self, provider: Provider, request: &Captured) {
        let cap = self.shared.config.record_limit;
        self.change(|d| {
            d.stats.requests += 1;
            match provider {
                Provider::Tencent => d.stats.tencent_requests += 1,
                Provider::WecomRobot => d.stats.wecom_robot_requests += 1,
                Provider::DingtalkRobot => d.stats.dingtalk_robot_requests += 1,
                Provider::FeishuRobot => d.stats.feishu_robot_requests += 1,
                Provider::Feishu => d.stats.feishu_requests += 1,
                Provider::Juzibot => d.stats.juzibot_requests += 1,
                Provider::TencentMeeting => d.stats.tencent_meeting_requests += 1,
                Provider::Wecom => d.stats.wecom_requests += 1,
                Provider::Unknown => d.stats.unknown_requests += 1,
            }
            if cap > 0 {
                push_capped(&mut d.requests, request.to_record(provider), cap);
            }
        });
    }

    pub(crate) fn record_rejection(&self, provider: Provider, code: &str, message: &str) {
        tracing::debug!(provider = provider.as_str(), code, message, "refused");
        let cap = self.shared.config.record_limit;
        self.change(|d| {
            d.stats.rejected += 1;
            let rejection = Rejection { provider, code: code.to_string(), message: message.to_string() };
            push_capped(&mut d.rejected, rejection, cap);
        });
    }

    pub(crate) fn record_sms(&self, sms: SentSms) {
        tracing::info!(request_id = %sms.request_id, template_id = %sms.template_id, "SMS accepted");
        let cap = self.shared.config.record_limit;
        self.change(|d| {
            d.stats.sms_sent += 1;
            *d.sms_per_phone.entry(sms.phone.clone()).or_default() += 1;
            d.receipts.on_sms(&sms, Instant::now());
            push_capped(&mut d.sent_sms, sms, cap);
        });
    }

    pub(crate) fn record_robot_message(&self, message: RobotMessage) {
        tracing::info!(msgtype = %message.msgtype, "robot message delivered");
        let cap = self.shared.config.record_limit;
        self.change(|d| {
            d.stats.robot_messages += 1;
            push_capped(&mut d.robot_messages, message, cap);
        });
    }

    pub(crate) fn record_media(&self, media: UploadedMedia) {
        tracing::info!(media_type = %media.media_type, size = media.size, "media uploaded");
        self.change(|d| {
            d.stats.media_uploaded += 1;
            d.media.push(media);
        });
    }

    pub(crate) fn find_media(&self, media_id: &str) -> Option<UploadedMedia> {
        self.data().media.iter().find(|m| m.media_id == media_id).cloned()
    }

    /// Consumes one application of the first matching fault of `stage`.
    pub(crate) fn take_fault(&self, stage: Stage, facts: &RequestFacts) -> Option<FaultEffect> {
        let mut data = self.data();
        let effect = data.faults.take(stage, facts)?;
        data.stats.faults_applied += 1;
        drop(data);
        self.shared.version.send_modify(|v| *v = v.wrapping_add(1));
        tracing::debug!(provider = facts.provider.as_str(), ?effect, "fault applied");
        Some(effect)
    }

    /// A throttle hit for a Tencent account; `false` when over its limit.
    pub(crate) fn tencent_throttle(&self, secret_id: &str, per_second: u32) -> bool {
        let mut data = self.data();
        data.tencent_windows
            .entry(secret_id.to_string())
            .or_insert_with(|| RollingWindow::new(per_second, Duration::from_secs(1)))
            .try_hit(Instant::now())
    }

    /// A throttle hit for a robot key; `false` when over the configured limit.
    pub(crate) fn robot_throttle(&self, key: &str) -> bool {
        let Some(per_minute) = self.shared.config.robot_messages_per_minute else {
            return true;
        };
        let mut data = self.data();
        data.robot_windows
            .entry(key.to_string())
            .or_insert_with(|| RollingWindow::new(per_minute, Duration::from_secs(60)))
            .try_hit(Instant::now())
    }

    /// Applies the raw-request faults and the fixed delay: sleeps as programmed, and answers
    /// instead of the provider when an `http_status` fault matches.
    pub(crate) async fn before_processing(&self, facts: &RequestFacts) -> Option<Response> {
        let base = self.data().delays.get(&facts.provider).copied().unwrap_or_default();
        self.delay_and_http_faults(false, facts, base).await
    }

    /// Applies the `after_processing` faults to a handled request's `response`.
    pub(crate) async fn after_processing(&self, facts: &RequestFacts, response: Response) -> Response {
        self.delay_and_http_faults(true, facts, Duration::ZERO).await.unwrap_or(response)
    }

    async fn delay_and_http_faults(&self, after: bool, facts: &RequestFacts, base: Duration) -> Option<Response> {
        let mut delay = base;
        if let Some(FaultEffect::Delay { ms, .. }) = self.take_fault(Stage::Delay { after }, facts) {
            delay += Duration::from_millis(ms);
        }
        let answer = match self.take_fault(Stage::Http { after }, facts) {
            Some(FaultEffect::HttpStatus { status, body, .. }) => Some(http_fault_response(status, body)),
            _ => None,
        };
        if !delay.is_zero() {
            time::sleep(delay).await;
        }
        answer
    }
}

fn http_fault_response(status: u16, body: Option<String>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = body.unwrap_or_else(|| format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or("Error")));
    (status, [("content-type", "text/plain; charset=utf-8")], body).into_response()
}

/// A provider's own state, behind its own lock, with the [`Hub`] at hand (through `Deref`).
pub(crate) struct Own<T> {
    hub: Hub,
    data: Arc<Mutex<T>>,
}

impl<T> Clone for Own<T> {
    fn clone(&self) -> Self {
        Self { hub: self.hub.clone(), data: Arc::clone(&self.data) }
    }
}

impl<T> std::ops::Deref for Own<T> {
    type Target = Hub;

    fn deref(&self) -> &Hub {
        &self.hub
    }
}

impl<T: Default> Own<T> {
    pub(crate) fn new(hub: Hub) -> Self {
        Self { hub, data: Arc::new(Mutex::new(T::default())) }
    }

    /// Runs `f` on the provider's state and the counters, then wakes the waiters. Takes the
    /// provider's lock before the hub's (never the other way round).
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T, &mut Stats) -> R) -> R {
        let mut own = self.data.lock().unwrap_or_else(PoisonError::into_inner);
        let result = f(&mut own, &mut self.hub.data().stats);
        drop(own);
        self.hub.changed();
        result
    }

    /// Forgets the provider's state.
    pub(crate) fn reset(&self) {
        *self.data.lock().unwrap_or_else(PoisonError::into_inner) = T::default();
        self.hub.changed();
    }
}

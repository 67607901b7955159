//! [`SandboxState`]: the shared, cheaply cloneable handle to records, faults and throttles. It
//! composes the [`Hub`] every provider shares with the state each provider owns; handlers get
//! their slice through axum's `FromRef`, so no provider module depends on this one.

use std::time::Duration;

use axum::extract::FromRef;
use serde_json::Value;
use thiserror::Error;
use tokio::time;

use crate::config::SandboxConfig;
use crate::directory::Directory;
use crate::faults::{Fault, FaultError};
use crate::feishu::FeishuState;
use crate::hub::{Hub, Own};
use crate::juzibot::JuzibotState;
use crate::receipts::ReceiptPlan;
use crate::records::{Provider, RecordedRequest, Rejection, RobotMessage, SentSms, Stats, UploadedMedia};
use crate::tencent::ses::{SentEmail, SesState};
use crate::tencent_meeting::MeetingState;
use crate::wecom::WecomState;

/// A wait helper gave up.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("timed out after {waited:?} waiting for {what}")]
pub struct WaitTimeout {
    /// The awaited condition, as the caller named it (e.g. "3 SMS").
    pub what: String,
    /// The timeout that ran out.
    pub waited: Duration,
}

/// Handle to what the running sandbox saw and did, and to its programmable faults.
#[derive(Clone)]
pub struct SandboxState {
    hub: Hub,
    ses: Own<SesState>,
    wecom: Own<WecomState>,
    meetings: Own<MeetingState>,
    feishu: Own<FeishuState>,
    juzibot: Own<JuzibotState>,
}

impl std::fmt::Debug for SandboxState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxState").field("stats", &self.stats()).finish_non_exhaustive()
    }
}

impl FromRef<SandboxState> for Hub {
    fn from_ref(state: &SandboxState) -> Hub {
        state.hub.clone()
    }
}

macro_rules! provider_state {
    ($($field:ident: $ty:ty),* $(,)?) => {$(
        impl FromRef<SandboxState> for Own<$ty> {
            fn from_ref(state: &SandboxState) -> Own<$ty> {
                state.$field.clone()
            }
        }
    )*};
}

provider_state!(ses: SesState, wecom: WecomState, meetings: MeetingState, feishu: FeishuState, juzibot: JuzibotState);

impl SandboxState {
    pub(crate) fn new(config: SandboxConfig) -> Self {
        let hub = Hub::new(config);
        Self {
            ses: Own::new(hub.clone()),
            wecom: Own::new(hub.clone()),
            meetings: Own::new(hub.clone()),
            feishu: Own::new(hub.clone()),
            juzibot: Own::new(hub.clone()),
            hub,
        }
    }

    /// The configuration the sandbox runs with.
    pub fn config(&self) -> &SandboxConfig {
        self.hub.config()
    }

    // ----- faults -------------------------------------------------------------------------

    /// Queues a fault (after [`Fault::validate`]). Faults are tried in the order they were pushed.
    pub fn push_fault(&self, fault: Fault) -> Result<(), FaultError> {
        self.hub.push_fault(fault)
    }

    /// Queues several faults; none is queued if one is invalid.
    pub fn push_faults(&self, faults: Vec<Fault>) -> Result<(), FaultError> {
        self.hub.push_faults(faults)
    }

    /// Drops every pending fault; returns how many there were.
    pub fn clear_faults(&self) -> usize {
        self.hub.clear_faults()
    }

    /// Faults not (fully) consumed yet.
    pub fn pending_faults(&self) -> Vec<Fault> {
        self.hub.pending_faults()
    }

    /// A fixed extra latency for every request to `provider` (`Duration::ZERO` removes it).
    pub fn set_delay(&self, provider: Provider, delay: Duration) {
        self.hub.set_delay(provider, delay)
    }

    // ----- records --------------------------------------------------------------------------

    /// Every accepted SMS (one per number), oldest first.
    pub fn sent_sms(&self) -> Vec<SentSms> {
        self.hub.sent_sms()
    }

    /// How many SMS were accepted for `phone` (any accepted spelling; compared as E.164).
    pub fn sms_count_for(&self, phone: &str) -> usize {
        self.hub.sms_count_for(phone)
    }

    /// The JSON bodies of the messages robot `key` delivered, oldest first.
    pub fn robot_messages(&self, key: &str) -> Vec<Value> {
        self.hub.robot_messages(key)
    }

    /// Every delivered robot message, oldest first.
    pub fn all_robot_messages(&self) -> Vec<RobotMessage> {
        self.hub.all_robot_messages()
    }

    /// Every Juzibot contact way created, oldest first.
    pub fn contact_ways(&self) -> Vec<Value> {
        self.juzibot.contact_ways()
    }

    /// Every uploaded file.
    pub fn uploaded_media(&self) -> Vec<UploadedMedia> {
        self.hub.uploaded_media()
    }

    /// Every provider request as received (control endpoints excluded), oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.hub.requests()
    }

    /// The recorded requests to one provider.
    pub fn requests_for(&self, provider: Provider) -> Vec<RecordedRequest> {
        self.hub.requests_for(provider)
    }

    /// `(provider, code)` of every refusal, oldest first: `("tencent", "AuthFailure.SignatureFailure")`,
    /// `("wecom_robot", "93000")`... Injected faults are not refusals.
    pub fn rejected(&self) -> Vec<(String, String)> {
        self.hub.rejected()
    }

    /// The refusals with their messages.
    pub fn rejections(&self) -> Vec<Rejection> {
        self.hub.rejections()
    }

    /// A snapshot of the counters (they count past [`crate::SandboxConfig::record_limit`]).
    pub fn stats(&self) -> Stats {
        self.hub.stats()
    }

    /// Every mail SES accepted, oldest first.
    pub fn sent_emails(&self) -> Vec<SentEmail> {
        self.ses.sent_emails()
    }

    /// `(domain, verified)` of every SES identity.
    pub fn email_identities(&self) -> Vec<(String, bool)> {
        self.ses.email_identities()
    }

    /// Makes every WeCom token expire now: the next call with one gets 42001.
    pub fn expire_wecom_tokens(&self) {
        self.wecom.expire_tokens()
    }

    /// The bodies of the application and appchat messages WeCom accepted, oldest first.
    pub fn wecom_messages(&self) -> Vec<Value> {
        self.wecom.messages()
    }

    /// The WeCom corp's directory as it is now (departments and members the contacts APIs see).
    pub fn wecom_directory(&self) -> Directory {
        self.wecom.with(|data, _| data.directory.clone())
    }

    /// Changes the WeCom corp's directory (add, rename, remove departments and members). With a
    /// callback set ([`Self::set_wecom_callback`]) and inside a Tokio runtime, each change is then
    /// announced to it as WeCom's signed, encrypted `change_contact` event, in the background.
    pub fn edit_wecom_directory<R>(&self, edit: impl FnOnce(&mut Directory) -> R) -> R {
        let (result, announce) = self.wecom.with(|data, _| {
            let before = data.directory.clone();
            let result = edit(&mut data.directory);
            let announce = data.callback.clone().map(|callback| {
                let now = chrono::Utc::now().timestamp();
                let events = crate::wecom_events::changes(&before, &data.directory, &callback.corp_id, now);
                (callback, events)
            });
            (result, announce)
        });
        if let (Some((callback, events)), Ok(runtime)) = (announce, tokio::runtime::Handle::try_current())
            && !events.is_empty()
        {
            let wecom = self.wecom.clone();
            runtime.spawn(async move {
                let sent = crate::wecom_events::send(callback, events).await;
                wecom.with(|data, _| data.events_sent.extend(sent));
            });
        }
        result
    }

    /// Announces later edits of the WeCom directory to `callback` (None: to nobody).
    pub fn set_wecom_callback(&self, callback: Option<crate::wecom_events::WecomCallback>) {
        self.wecom.with(|data, _| data.callback = callback);
    }

    /// What the callback receiver answered each announced change: (ChangeType, HTTP status).
    pub fn wecom_events_sent(&self) -> Vec<crate::wecom_events::SentEvent> {
        self.wecom.with(|data, _| data.events_sent.clone())
    }

    /// The Feishu tenant's directory as the contact reads see it now.
    pub fn feishu_directory(&self) -> Directory {
        self.feishu.with(|data, _| data.directory.clone())
    }

    /// Changes the Feishu tenant's directory.
    pub fn edit_feishu_directory<R>(&self, edit: impl FnOnce(&mut Directory) -> R) -> R {
        self.feishu.with(|data, _| edit(&mut data.directory))
    }

    /// Every meeting created, as `get_meeting` describes it, oldest first.
    pub fn meetings(&self) -> Vec<Value> {
        self.meetings.meetings()
    }

    /// Forgets everything: records, counters, faults, delays, uploaded media, throttle windows.
    pub fn reset(&self) {
        self.hub.reset();
        self.ses.reset();
        self.wecom.reset();
        self.meetings.reset();
        self.feishu.reset();
        self.juzibot.reset();
    }

    // ----- receipts -------------------------------------------------------------------------

    /// How delivery receipts are reported from now on: pushed to a status callback URL or queued
    /// for `PullSmsSendStatus`, delayed, duplicated, reordered, `FAIL` for some numbers.
    pub fn set_receipt_plan(&self, plan: ReceiptPlan) {
        self.hub.set_receipt_plan(plan)
    }

    /// How delivery receipts are reported.
    pub fn receipt_plan(&self) -> ReceiptPlan {
        self.hub.receipt_plan()
    }

    /// SMS status reports made and not handed out yet (not pushed, or not pulled).
    pub fn receipts_pending(&self) -> usize {
        self.hub.receipts_pending()
    }

    // ----- waiting --------------------------------------------------------------------------

    /// Resolves as soon as `condition` holds (checked now and after every change).
    pub async fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        mut condition: impl FnMut(&SandboxState) -> bool,
    ) -> Result<(), WaitTimeout> {
        let mut changes = self.hub.changes();
        let waiting = async {
            loop {
                if condition(self) {
                    return;
                }
                if changes.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        time::timeout(timeout, waiting).await.map_err(|_| WaitTimeout { what: what.to_string(), waited: timeout })
    }

    /// Waits until at least `n` SMS were accepted in all.
    pub async fn wait_for_sms(&self, n: usize, timeout: Duration) -> Result<(), WaitTimeout> {
        let what = format!("{n} SMS");
        let waited = self.wait_until(&what, timeout, |s| s.stats().sms_sent >= n as u64).await;
        waited.map_err(|e| WaitTimeout { what: format!("{what} ({} sent)", self.stats().sms_sent), ..e })
    }

    /// Waits until at least `n` robot messages were delivered in all.
    pub async fn wait_for_robot_messages(&self, n: usize, timeout: Duration) -> Result<(), WaitTimeout> {
        let what = format!("{n} robot messages");
        self.wait_until(&what, timeout, |s| s.stats().robot_messages >= n as u64).await
    }

    /// Waits until at least `n` provider requests arrived in all.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> Result<(), WaitTimeout> {
        let what = format!("{n} requests");
        self.wait_until(&what, timeout, |s| s.stats().requests >= n as u64).await
    }

    /// Waits until at least `n` Juzibot contact ways were created in all.
    pub async fn wait_for_contact_ways(&self, n: usize, timeout: Duration) -> Result<(), WaitTimeout> {
        let what = format!("{n} contact ways");
        self.wait_until(&what, timeout, |s| s.stats().contact_ways_created >= n as u64).await
    }
}

//! `tencent_sms`: Tencent Cloud SMS `SendSms` (API 3.0, version 2021-01-11, TC3-HMAC-SHA256).
//!
//! # Per-number progress
//!
//! One `SendSms` call reports a status per number, and a batch can be partly sent. So that a number
//! is never texted twice, each attempt records every number's latest status in the job's progress
//! and the next attempt sends only the numbers that are not final yet:
//!
//! ```json
//! {"numbers": {"+8613800000000": {"code": "Ok", "message": "send success",
//!                                 "serial_no": "2019:123", "fee": 1, "final": true},
//!              "+8613800000001": {"code": "InternalError.Timeout", "message": "...",
//!                                 "serial_no": "", "fee": 0, "final": false}}}
//! ```
//!
//! `final` is true for `Ok` and for permanent codes. A number without an entry has had no answer
//! yet. The progress returned with a failure is always complete (the earlier one when the attempt
//! changed nothing), so the pipeline stores it as it is; an [`Failure::Ambiguous`] carries none and the
//! stored one stays valid.
//!
//! # Outcome
//!
//! * numbers still pending → [`Failure::Transient`] with the updated progress and the largest wait
//!   the provider's codes suggest;
//! * else at least one `Ok` over all attempts → [`Success`] with
//!   `{"numbers": [{"phone_number", "code", "message", "serial_no", "fee"}, ...]}`, one entry per number
//!   of the job in params order;
//! * else → [`Failure::Permanent`] `all numbers failed: +86…: Code (message); …`.
//!
//! # Shared calls
//!
//! Jobs that differ only in their numbers may go out in one `SendSms` call (see `batch.rs`); each
//! still gets only its own numbers' statuses, so everything above holds per job.
//!
//! # Lost answers
//!
//! After some answers the provider may have sent some of the numbers, and nothing says which: HTTP
//! 5xx, `InternalError.*` (but the request-checking ones) and the unavailability codes
//! ([`error::may_have_sent`]), an unreadable answer, a connection lost or timed out after the
//! request went out. Sending those numbers again could text them twice, and in a shared call that
//! would be every job's numbers. So each of the job's numbers becomes *unconfirmed*:
//!
//! ```json
//! {"code": "Unconfirmed", "message": "HTTP 500 …", "serial_no": "", "fee": 0, "final": false,
//!  "sent_at_ms": 1712345678901}
//! ```
//!
//! and before it is sent again, `PullSmsSendStatusByPhoneNumber` lists what the number received
//! since the call (docs/providers/tencent-cloud.md#pullsmssendstatusbyphonenumber). A receipt
//! counts as sent (`Ok`, final, with its serial); without one the number is sent again once
//! `status_settle` (default 60 s) has passed since the call, since receipts lag; until then the
//! job is retried no sooner than the settle time left. With `status_query = false` a lost answer is
//! an [`Failure::Ambiguous`], left to the config's `on_ambiguous`. Answers the provider documents
//! as refusals of the whole request before sending are retried or failed as they were.
//!
//! # Delivery receipts
//!
//! With `receipts = "push"` or `"pull"`, a success lists `(SerialNo, number)` for every number
//! sent ([`Success::receipts`]), and the store indexes them with the success. The provider's
//! receipts then come to `yizhan-producer serve` (push: its status callback,
//! docs/providers/tencent-cloud.md#sms-status-callback) or are pulled here every
//! `pull_interval` with `PullSmsSendStatus` (docs/providers/tencent-cloud.md#pullsmssendstatus),
//! which hands each receipt out once, for the config's `sdk_app_id`.

mod api;
mod batch;
#[cfg(test)]
mod batch_tests;
pub mod config;
pub mod error;
#[cfg(test)]
mod receipt_tests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use yizhan_schemas::Endpoint;
use yizhan_schemas::catalog::SendSms;
use yizhan_state::redact;

pub use self::api::Api;
use self::api::{Receipt, SendStatus, match_number, request_id};
use self::batch::{Answer, Calls, Sent, Shared};
use self::config::TencentSmsConfig;
use self::error::classify;
use super::call::{Call, Connector, Failure, Success};
use super::receipts::{ReceiptMode, ReceiptPage, Receipts};
use super::tencent_cloud::error::{Class, failure};
use super::tencent_cloud::{self, Service};
use crate::config::{ConfigError, ConnectorConfig};

/// docs/providers/tencent-cloud.md#sms-service-sms-version-2021-01-11
const SERVICE: Service = Service {
    name: "sms",
    version: "2021-01-11",
    default_base: "https://sms.tencentcloudapi.com",
    server_errors_may_have_acted: true,
};
/// Numbers listed in one reason; the progress has them all.
const REASON_NUMBERS: usize = 10;
/// Longest provider message quoted per number in a reason.
const REASON_MESSAGE_CHARS: usize = 80;
/// Receipts are asked for from this long before a lost call, in case our clock runs ahead of the
/// provider's.
const RECEIPT_MARGIN_SECS: i64 = 10;
/// Status queries of one attempt in flight at once.
const QUERIES_AT_ONCE: usize = 8;
/// Code of a number whose call's answer was lost; see "Lost answers".
const UNCONFIRMED: &str = "Unconfirmed";

/// A Tencent Cloud SMS config.
#[derive(Debug)]
pub struct TencentSms {
    sdk_app_id: Option<String>,
    calls: Arc<Calls>,
    /// `status_query`: lost answers are checked against the provider's receipts.
    status_query: bool,
    /// `status_settle`: how long receipts may lag a call.
    settle: Duration,
    /// `receipts`: a success lists the serial numbers of what it sent.
    receipts: Option<ReceiptMode>,
}

impl TencentSms {
    /// Checks the config's fields and builds the connector on the worker's shared HTTP client.
    pub fn new(config: &ConnectorConfig, client: reqwest::Client) -> Result<Self, ConfigError> {
        let fields = TencentSmsConfig::from_config(config)?;
        let settle = fields.settle(config)?;
        let receipts = fields.receipt_mode(config)?;
        let cloud =
            tencent_cloud::Client::new(config, SERVICE, fields.secret_id, fields.secret_key, fields.region, client)?;
        let api = Api { cloud };
        Ok(TencentSms {
            sdk_app_id: fields.sdk_app_id,
            calls: Calls::new(api),
            status_query: fields.status_query,
            settle,
            receipts,
        })
    }
}

#[async_trait::async_trait]
impl Connector for TencentSms {
    async fn execute(&self, call: Call<'_>) -> Result<Success, Failure> {
        let success = self.send(call).await?;
        Ok(self.with_receipts(success))
    }

    /// One page of `PullSmsSendStatus` for the config's `sdk_app_id`; the store matches each
    /// receipt by its `SerialNo` (`pending` is not needed: the provider keeps the queue).
    async fn pull_receipts(&self, _pending: &[yizhan_state::PendingReceipt]) -> Result<ReceiptPage, Failure> {
        let Some(sdk_app_id) = self.sdk_app_id.as_deref().filter(|_| self.receipts.is_some()) else {
            return Ok(ReceiptPage::default());
        };
        let pulled = self.calls.api().pull_status(sdk_app_id).await?;
        let more = pulled.len() >= api::PULL_PAGE;
        Ok(ReceiptPage { receipts: pulled.iter().filter_map(Receipt::to_receipt).collect(), more })
    }
}

impl TencentSms {
    /// The success with `(SerialNo, number)` of every number sent, when the config collects
    /// receipts (the result lists them all, in params order).
    fn with_receipts(&self, mut success: Success) -> Success {
        if self.receipts.is_none() {
            return success;
        }
        let numbers = success.result.as_ref().and_then(|r| r.get("numbers")).and_then(Value::as_array);
        let sids = numbers
            .into_iter()
            .flatten()
            .filter(|entry| entry.get("code").and_then(Value::as_str) == Some("Ok"))
            .filter_map(|entry| {
                let serial = entry.get("serial_no").and_then(Value::as_str).filter(|s| !s.is_empty())?;
                let number = entry.get("phone_number").and_then(Value::as_str)?;
                Some((serial.to_string(), number.to_string()))
            });
        let mut seen = HashSet::new();
        success.receipts =
            Receipts { sids: sids.filter(|(serial, _)| seen.insert(serial.clone())).collect(), poll: false };
        success
    }

    async fn send(&self, call: Call<'_>) -> Result<Success, Failure> {
        let action = match call.action.endpoint {
            Endpoint::TencentCloud { action: action @ "SendSms" } => action,
            other => {
                return Err(Failure::permanent(format!("tencent_sms cannot execute {other:?}")));
            }
        };
        let params =
            SendSms::deserialize(call.params).map_err(|e| Failure::permanent(format!("invalid params: {e}")))?;
        if params.phone_numbers.is_empty() {
            return Err(Failure::permanent("params.phone_numbers: at least one number is required"));
        }
        let sdk_app_id =
            params.sdk_app_id.as_deref().or(self.sdk_app_id.as_deref()).ok_or_else(|| {
                Failure::permanent("sdk_app_id: the SMS application id is neither in params nor config")
            })?;
        let mut progress = match call.progress {
            None => Progress::default(),
            // Unreadable progress could hide numbers already texted: stop rather than text twice.
            Some(value) => Progress::deserialize(value).map_err(|e| Failure::Permanent {
                reason: format!("cannot read the progress of earlier attempts: {e}"),
                progress: Some(value.clone()),
            })?,
        };

        let numbers = distinct(&params.phone_numbers);
        if self.status_query {
            self.confirm_unconfirmed(sdk_app_id, params.session_context.as_deref(), &numbers, &mut progress).await?;
        }
        let now_ms = now_millis();
        // A number still waiting for its receipt is not sent in this attempt.
        let to_send: Vec<&str> = numbers
            .iter()
            .copied()
            .filter(|n| !progress.is_final(n) && progress.settle_left(n, self.settle, now_ms).is_none())
            .collect();
        if !to_send.is_empty() {
            let shared = Shared {
                sdk_app_id: sdk_app_id.to_string(),
                template_id: params.template_id.clone(),
                sign_name: params.sign_name.clone(),
                template_params: params.template_params.clone(),
                session_context: params.session_context.clone(),
                extend_code: params.extend_code.clone(),
                sender_id: params.sender_id.clone(),
                mainland: to_send.iter().all(|n| n.starts_with("+86")),
            };
            let owned: Vec<String> = to_send.iter().map(|n| n.to_string()).collect();
            let mut sent = self.calls.send(shared.clone(), owned.clone()).await;
            if let Ok(Answer::Error { error, shared_with_others: true, .. }) = &sent.answer
                && classify(&error.code) == Class::Permanent
            {
                // Whatever failed the shared call may be another job's: this job's own call decides.
                sent = self.calls.send_alone(&shared, owned).await;
            }
            let Sent { answer, at_ms } = sent;
            let lost = match &answer {
                Err(Failure::Ambiguous { reason }) => Some(reason.clone()),
                Ok(Answer::Error { error, request_id: id, .. }) if error::may_have_sent(&error.code) => {
                    Some(format!("{}{}", error::describe(&error.code, &error.message), request_id(id.as_deref())))
                }
                _ => None,
            };
            if let Some(reason) = lost {
                let reason = redact::secrets(&format!("{action}: {reason}"), &self.calls.api().secrets());
                if !self.status_query {
                    // Nothing can tell what went out: the config's on_ambiguous decides.
                    return Err(Failure::Ambiguous { reason });
                }
                progress.unconfirmed(&to_send, &reason, at_ms);
                return outcome(&params.phone_numbers, &numbers, &progress, self.settle);
            }
            match answer.map_err(|failure| with_progress(failure, &progress))? {
                Answer::Error { error, request_id: id, .. } => {
                    let reason = redact::secrets(
                        &format!(
                            "{action}: {}{}",
                            error::describe(&error.code, &error.message),
                            request_id(id.as_deref())
                        ),
                        &self.calls.api().secrets(),
                    );
                    return Err(with_progress(failure(&error.code, classify(&error.code), reason), &progress));
                }
                Answer::Statuses(statuses) => progress.record(&to_send, statuses),
            }
        }
        outcome(&params.phone_numbers, &numbers, &progress, self.settle)
    }
}

impl TencentSms {
    /// Asks the provider about each unconfirmed number of the job: a receipt since its call makes
    /// it sent; none once the settle time has passed makes it sendable again; otherwise it stays
    /// unconfirmed. A failed query ends the attempt (what earlier queries found is in the progress
    /// of a transient failure; a throttle drops it, and the next attempt asks again).
    async fn confirm_unconfirmed(
        &self,
        sdk_app_id: &str,
        session_context: Option<&str>,
        numbers: &[&str],
        progress: &mut Progress,
    ) -> Result<(), Failure> {
        let unconfirmed: Vec<(&str, i64)> =
            numbers.iter().filter_map(|n| progress.unconfirmed_since(n).map(|at| (*n, at))).collect();
        if unconfirmed.is_empty() {
            return Ok(());
        }
        let api = self.calls.api();
        let queries: Vec<_> = unconfirmed
            .into_iter()
            .map(|(number, at_ms)| {
                let begin = at_ms.div_euclid(1000) - RECEIPT_MARGIN_SECS;
                let query = api.receipts(sdk_app_id, number, begin);
                async move { (number, at_ms, query.await) }
            })
            .collect();
        let mut answers = futures::stream::iter(queries).buffer_unordered(QUERIES_AT_ONCE);
        let mut failure = None;
        while let Some((number, at_ms, answer)) = answers.next().await {
            match answer {
                Ok(receipts) => {
                    let ours = receipts.into_iter().find(|r| r.is_for(number, session_context));
                    match ours {
                        Some(receipt) => progress.confirmed(number, &receipt),
                        None if now_millis() >= at_ms.saturating_add(millis(self.settle)) => {
                            progress.not_received(number, self.settle);
                        }
                        None => {}
                    }
                }
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        match failure {
            None => Ok(()),
            Some(Failure::Permanent { reason, .. }) => Err(Failure::Permanent {
                reason: format!(
                    "cannot tell whether a lost SendSms answer's numbers went out ({reason}); allow \
                     PullSmsSendStatusByPhoneNumber or set status_query = false"
                ),
                progress: progress.to_value(),
            }),
            Some(other) => Err(with_progress(other, progress)),
        }
    }
}

fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// The job's numbers without repeats, in params order: a number listed twice is texted once.
fn distinct(numbers: &[String]) -> Vec<&str> {
    let mut seen = HashSet::new();
    numbers.iter().map(String::as_str).filter(|n| seen.insert(*n)).collect()
}

/// Decides the attempt's outcome from the progress over all attempts.
fn outcome(listed: &[String], numbers: &[&str], progress: &Progress, settle: Duration) -> Result<Success, Failure> {
    let pending: Vec<&str> = numbers.iter().copied().filter(|n| !progress.is_final(n)).collect();
    if !pending.is_empty() {
        let now_ms = now_millis();
        // An unconfirmed number comes back no sooner than its settle time ends.
        let settling = pending.iter().filter_map(|n| progress.settle_left(n, settle, now_ms));
        let retry_after = pending
            .iter()
            .filter_map(|n| progress.numbers.get(*n))
            .filter_map(|status| match classify(&status.code) {
                Class::Retry { retry_after } => retry_after,
                Class::Permanent => None,
            })
            .chain(settling)
            .max();
        let reason =
            format!("{} of {} numbers not sent yet: {}", pending.len(), numbers.len(), progress.list(&pending));
        return Err(Failure::Transient { reason, retry_after, progress: progress.to_value() });
    }
    if numbers.iter().any(|n| progress.numbers.get(*n).is_some_and(NumberStatus::is_ok)) {
        let entries: Vec<Value> = listed
            .iter()
            .map(|number| {
                let status = &progress.numbers[number.as_str()];
                json!({
                    "phone_number": number,
                    "code": status.code,
                    "message": status.message,
                    "serial_no": status.serial_no,
                    "fee": status.fee,
                })
            })
            .collect();
        return Ok(Success { result: Some(json!({ "numbers": entries })), receipts: Default::default() });
    }
    let mut reason = format!("all numbers failed: {}", progress.list(numbers));
    if numbers.iter().any(|n| progress.numbers.get(*n).is_some_and(|s| error::is_daily_quota(&s.code))) {
        reason.push_str(" (daily quotas reset at midnight China time, UTC+8)");
    }
    Err(Failure::Permanent { reason, progress: progress.to_value() })
}

/// The connector's own record of earlier attempts; see the module documentation.
///
/// Unknown fields are ignored so that workers of different versions can share jobs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Progress {
    numbers: BTreeMap<String, NumberStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct NumberStatus {
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    serial_no: String,
    #[serde(default)]
    fee: u64,
    /// `Ok` or a permanent code: never sent again.
    #[serde(rename = "final")]
    done: bool,
    /// For [`UNCONFIRMED`]: Unix milliseconds of the call whose answer was lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sent_at_ms: Option<i64>,
}

impl NumberStatus {
    fn is_ok(&self) -> bool {
        self.code == "Ok"
    }
}

/// Code of a number the answer said nothing about; retried, as nothing says it was sent.
const NO_STATUS: &str = "NoStatus";

impl Progress {
    fn is_final(&self, number: &str) -> bool {
        self.numbers.get(number).is_some_and(|s| s.done)
    }

    /// `None` while nothing was recorded, so a first attempt's failure carries no progress.
    fn to_value(&self) -> Option<Value> {
        (!self.numbers.is_empty()).then(|| serde_json::to_value(self).expect("progress serialises"))
    }

    /// Records one answer's statuses for the numbers just sent.
    fn record(&mut self, sent: &[&str], statuses: Vec<SendStatus>) {
        let mut answered = HashSet::new();
        for status in statuses {
            let Some(number) = match_number(&status.phone_number, sent) else {
                // A status for a number we did not send: nothing to attribute it to.
                continue;
            };
            answered.insert(number);
            let done = status.code == "Ok" || classify(&status.code) == Class::Permanent;
            self.numbers.insert(
                number.to_string(),
                NumberStatus {
                    code: status.code,
                    message: status.message.unwrap_or_default(),
                    serial_no: status.serial_no.unwrap_or_default(),
                    fee: status.fee.unwrap_or_default(),
                    done,
                    sent_at_ms: None,
                },
            );
        }
        for number in sent.iter().filter(|n| !answered.contains(*n)) {
            self.numbers.insert(
                number.to_string(),
                NumberStatus {
                    code: NO_STATUS.into(),
                    message: "the answer had no status for this number".into(),
                    serial_no: String::new(),
                    fee: 0,
                    done: false,
                    sent_at_ms: None,
                },
            );
        }
    }

    /// The call time of a number whose answer was lost and is not settled either way yet.
    fn unconfirmed_since(&self, number: &str) -> Option<i64> {
        self.numbers.get(number).filter(|s| !s.done && s.code == UNCONFIRMED).and_then(|s| s.sent_at_ms)
    }

    /// How long an unconfirmed number must still wait for its receipt; `None` when it need not.
    fn settle_left(&self, number: &str, settle: Duration, now_ms: i64) -> Option<Duration> {
        let at = self.unconfirmed_since(number)?;
        let left = at.saturating_add(millis(settle)).saturating_sub(now_ms);
        (left > 0).then(|| Duration::from_millis(left.unsigned_abs()))
    }

    /// The numbers of a call whose answer was lost.
    fn unconfirmed(&mut self, sent: &[&str], reason: &str, at_ms: i64) {
        let message: String = reason.chars().take(REASON_MESSAGE_CHARS).collect();
        for number in sent {
            self.numbers.insert(
                number.to_string(),
                NumberStatus {
                    code: UNCONFIRMED.into(),
                    message: message.clone(),
                    serial_no: String::new(),
                    fee: 0,
                    done: false,
                    sent_at_ms: Some(at_ms),
                },
            );
        }
    }

    /// An unconfirmed number's receipt: it was sent.
    fn confirmed(&mut self, number: &str, receipt: &Receipt) {
        let report = receipt.report_status.as_deref().unwrap_or("no ReportStatus");
        self.numbers.insert(
            number.to_string(),
            NumberStatus {
                code: "Ok".into(),
                message: format!("sent: PullSmsSendStatusByPhoneNumber has its receipt ({report})"),
                serial_no: receipt.serial_no.clone().unwrap_or_default(),
                // Receipts do not carry the fee.
                fee: 0,
                done: true,
                sent_at_ms: None,
            },
        );
    }

    /// An unconfirmed number without a receipt after the settle time: not sent, send it again.
    fn not_received(&mut self, number: &str, settle: Duration) {
        self.numbers.insert(
            number.to_string(),
            NumberStatus {
                code: NO_STATUS.into(),
                message: format!("no receipt {} after a lost answer", humantime::format_duration(settle)),
                serial_no: String::new(),
                fee: 0,
                done: false,
                sent_at_ms: None,
            },
        );
    }

    /// `+86…: Code (message); …`, at most [`REASON_NUMBERS`] numbers.
    fn list(&self, numbers: &[&str]) -> String {
        let mut text = String::new();
        for (i, number) in numbers.iter().take(REASON_NUMBERS).enumerate() {
            if i > 0 {
                text.push_str("; ");
            }
            match self.numbers.get(*number) {
                Some(status) => {
                    let _ = write!(text, "{number}: {}", status.code);
                    if !status.message.is_empty() {
                        let message: String = status.message.chars().take(REASON_MESSAGE_CHARS).collect();
                        let _ = write!(text, " ({message})");
                    }
                }
                None => {
                    let _ = write!(text, "{number}: no answer");
                }
            }
        }
        if numbers.len() > REASON_NUMBERS {
            let _ = write!(text, "; … and {} more", numbers.len() - REASON_NUMBERS);
        }
        text
    }
}

/// A transport failure of an attempt keeps the progress recorded so far.
fn with_progress(failure: Failure, progress: &Progress) -> Failure {
    match failure {
        Failure::Transient { reason, retry_after, .. } => {
            Failure::Transient { reason, retry_after, progress: progress.to_value() }
        }
        Failure::Permanent { reason, .. } => Failure::Permanent { reason, progress: progress.to_value() },
        // A throttle, a lost answer or no connection changed no number's status.
        unchanged @ (Failure::Ambiguous { .. } | Failure::Throttled { .. } | Failure::Unreachable { .. }) => unchanged,
    }
}

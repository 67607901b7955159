//! Delivery receipts of what the fake providers accepted (docs/providers/tencent-cloud.md#sms-status-callback,
//! #pullsmssendstatus, #getsendemailstatus).
//!
//! Every SMS accepted gets a status report: `SUCCESS` (`DELIVRD`), or `FAIL` (`UNDELIV`) for the
//! numbers a [`ReceiptPlan`] names. A report falls due `delay_ms` (plus up to `jitter_ms`, so
//! reports come out of order) after its SMS; every `duplicate_every`-th one is reported twice.
//! A due report is POSTed to the plan's `callback_url` (the provider's status callback: a JSON
//! array, at most `batch` reports per request, retried until the receiver answers HTTP 200 with
//! `{"result": 0}`), or, without a URL, queued for `PullSmsSendStatus`, which hands each report
//! out once. SES statuses (`GetSendEmailStatus`) are read from the plan when asked: delivered,
//! or bounced for the addresses it names, once `delay_ms` has passed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::records::SentSms;

/// Default most reports per callback request.
pub(crate) const DEFAULT_BATCH: usize = 50;
/// How long a report the receiver refused waits before it is POSTed again.
pub(crate) const PUSH_RETRY: Duration = Duration::from_millis(500);
/// docs/providers/tencent-cloud.md#sms-status-callback: times are China's (UTC+8).
const CHINA_OFFSET_SECS: i32 = 8 * 3600;

/// How the sandbox reports deliveries; set with [`crate::SandboxState::set_receipt_plan`] or
/// `POST /_sandbox/receipts`. The default: reports at once, queued for `PullSmsSendStatus`,
/// every one `SUCCESS`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReceiptPlan {
    /// Where SMS status reports are POSTed (the provider's status callback); None: they are
    /// queued for `PullSmsSendStatus`.
    pub callback_url: Option<String>,
    /// A report falls due this long after its SMS (an SES status turns final after it).
    pub delay_ms: u64,
    /// Plus a random extra of up to this, so that reports come out of order.
    pub jitter_ms: u64,
    /// Every n-th report is reported twice (0: none), the copy with its own random delay.
    pub duplicate_every: u32,
    /// The most reports one callback request carries.
    pub batch: usize,
    /// Numbers (any accepted spelling) whose reports say `FAIL`, and e-mail addresses whose
    /// SES status says bounced.
    pub fail: Vec<String>,
}

impl Default for ReceiptPlan {
    fn default() -> Self {
        ReceiptPlan {
            callback_url: None,
            delay_ms: 0,
            jitter_ms: 0,
            duplicate_every: 0,
            batch: DEFAULT_BATCH,
            fail: Vec::new(),
        }
    }
}

impl ReceiptPlan {
    /// Whether the report of `phone` (E.164) says `FAIL`.
    pub(crate) fn fails_phone(&self, phone: &str) -> bool {
        self.fail.iter().any(|f| crate::phone::canonical(f) == phone)
    }

    /// Whether the SES status of `address` says bounced.
    pub(crate) fn fails_address(&self, address: &str) -> bool {
        self.fail.iter().any(|f| f.eq_ignore_ascii_case(address))
    }
}

/// One SMS status report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Report {
    pub sid: String,
    /// E.164.
    pub phone: String,
    pub sdk_app_id: String,
    pub session_context: String,
    pub success: bool,
    /// UNIX seconds: when the phone got it.
    pub received_at: i64,
    pub due: Instant,
}

impl Report {
    /// `{user_receive_time, nationcode, mobile, report_status, errmsg, description, sid}`, as the
    /// status callback carries it (docs/providers/tencent-cloud.md#sms-status-callback).
    pub(crate) fn callback_entry(&self) -> Value {
        let (nationcode, mobile) = split_country(&self.phone);
        let (status, errmsg, description) = self.outcome();
        json!({
            "user_receive_time": china_time(self.received_at),
            "nationcode": nationcode,
            "mobile": mobile,
            "report_status": status,
            "errmsg": errmsg,
            "description": description,
            "sid": self.sid,
        })
    }

    /// A `PullSmsSendStatus` entry (docs/providers/tencent-cloud.md#pullsmssendstatus).
    pub(crate) fn pull_entry(&self) -> Value {
        let (country, subscriber) = split_country(&self.phone);
        let (status, errmsg, _) = self.outcome();
        json!({
            "UserReceiveTime": self.received_at,
            "CountryCode": country,
            "SubscriberNumber": subscriber,
            "PhoneNumber": self.phone,
            "SerialNo": self.sid,
            "ReportStatus": status,
            "Description": errmsg,
            "SessionContext": self.session_context,
        })
    }

    /// `(report_status, errmsg, description)`.
    fn outcome(&self) -> (&'static str, &'static str, &'static str) {
        if self.success {
            ("SUCCESS", "DELIVRD", "用户短信送达成功")
        } else {
            ("FAIL", "UNDELIV", "用户短信未送达")
        }
    }
}

/// The reports not handed out yet, and the plan that makes them.
#[derive(Debug, Default)]
pub(crate) struct Receipts {
    pub plan: ReceiptPlan,
    /// By due time (then by arrival, which keeps equal times apart): the sender and the pull
    /// read the soonest first, in O(log n), whatever the backlog (a million-number campaign).
    pending: BTreeMap<(Instant, u64), Report>,
    /// Reports made, for `duplicate_every`.
    made: u64,
    /// Reports queued so far (made or put back): the arrival number of each.
    queued: u64,
}

impl Receipts {
    /// The report(s) of an SMS just accepted.
    pub(crate) fn on_sms(&mut self, sms: &SentSms, now: Instant) {
        self.made += 1;
        let copies = if self.plan.duplicate_every > 0 && self.made.is_multiple_of(u64::from(self.plan.duplicate_every))
        {
            2
        } else {
            1
        };
        let success = !self.plan.fails_phone(&sms.phone);
        for _ in 0..copies {
            let jitter = if self.plan.jitter_ms > 0 { rand::rng().random_range(0..=self.plan.jitter_ms) } else { 0 };
            let due = now + Duration::from_millis(self.plan.delay_ms + jitter);
            self.insert(Report {
                sid: sms.serial_no.clone(),
                phone: sms.phone.clone(),
                sdk_app_id: sms.sdk_app_id.clone(),
                session_context: sms.session_context.clone(),
                success,
                received_at: sms.sent_at + i64::try_from(self.plan.delay_ms / 1000).unwrap_or(0),
                due,
            });
        }
    }

    /// Up to `max` due reports to POST to the callback URL (None without one), soonest first.
    pub(crate) fn take_push(&mut self, now: Instant) -> Option<(String, Vec<Report>)> {
        let url = self.plan.callback_url.clone()?;
        let due = self.take(now, self.plan.batch.max(1), |_| true);
        (!due.is_empty()).then_some((url, due))
    }

    /// Up to `max` due reports of `sdk_app_id` for `PullSmsSendStatus` (none while a callback
    /// URL takes them), soonest first.
    pub(crate) fn take_pull(&mut self, sdk_app_id: &str, now: Instant, max: usize) -> Vec<Report> {
        if self.plan.callback_url.is_some() {
            return Vec::new();
        }
        self.take(now, max, |r| r.sdk_app_id == sdk_app_id)
    }

    fn insert(&mut self, report: Report) {
        self.queued += 1;
        self.pending.insert((report.due, self.queued), report);
    }

    fn take(&mut self, now: Instant, max: usize, wanted: impl Fn(&Report) -> bool) -> Vec<Report> {
        let due: Vec<(Instant, u64)> = self
            .pending
            .range(..=(now, u64::MAX))
            .filter(|(_, report)| wanted(report))
            .map(|(at, _)| *at)
            .take(max)
            .collect();
        due.iter().filter_map(|at| self.pending.remove(at)).collect()
    }

    /// Reports a receiver refused, due again at `at`.
    pub(crate) fn put_back(&mut self, reports: Vec<Report>, at: Instant) {
        for report in reports {
            self.insert(Report { due: at, ..report });
        }
    }

    /// When the next report falls due.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.pending.keys().next().map(|(at, _)| *at)
    }

    /// Reports not handed out yet.
    pub(crate) fn pending(&self) -> usize {
        self.pending.len()
    }
}

/// `(country code, national number)` of an E.164 number (`+86…`: 86; otherwise a 1–3 digit
/// code of the ones the sandbox knows, else the number whole).
pub(crate) fn split_country(e164: &str) -> (String, String) {
    const CODES: [&str; 16] = [
        "+86", "+852", "+853", "+886", "+1", "+44", "+49", "+33", "+65", "+60", "+66", "+81", "+82", "+84", "+61",
        "+91",
    ];
    match CODES.iter().find(|code| e164.starts_with(**code)) {
        Some(code) => (code[1..].to_string(), e164[code.len()..].to_string()),
        None => (String::new(), e164.trim_start_matches('+').to_string()),
    }
}

/// `YYYY-MM-DD HH:MM:SS` in China time.
pub(crate) fn china_time(unix_seconds: i64) -> String {
    let china = chrono::FixedOffset::east_opt(CHINA_OFFSET_SECS).expect("UTC+8 is an offset");
    chrono::DateTime::from_timestamp(unix_seconds, 0)
        .unwrap_or_default()
        .with_timezone(&china)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// The China date (`YYYY-MM-DD`) of a moment in UNIX milliseconds.
pub(crate) fn china_date(unix_ms: i64) -> String {
    let china = chrono::FixedOffset::east_opt(CHINA_OFFSET_SECS).expect("UTC+8 is an offset");
    chrono::DateTime::from_timestamp_millis(unix_ms)
        .unwrap_or_default()
        .with_timezone(&china)
        .format("%Y-%m-%d")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sms(phone: &str, serial: &str) -> SentSms {
        SentSms {
            phone: phone.into(),
            sdk_app_id: "1400000000".into(),
            sign_name: None,
            template_id: "1001".into(),
            template_params: vec![],
            content: String::new(),
            session_context: String::new(),
            extend_code: None,
            sender_id: None,
            serial_no: serial.into(),
            fee: 1,
            request_id: String::new(),
            secret_id: String::new(),
            region: String::new(),
            sent_at: 1_700_000_000,
        }
    }

    #[test]
    fn reports_follow_the_plan() {
        let now = Instant::now();
        let mut receipts = Receipts {
            plan: ReceiptPlan {
                duplicate_every: 2,
                fail: vec!["8613800000002".into()],
                delay_ms: 1000,
                ..Default::default()
            },
            ..Default::default()
        };
        receipts.on_sms(&sms("+8613800000001", "s1"), now);
        receipts.on_sms(&sms("+8613800000002", "s2"), now);
        assert_eq!(receipts.pending(), 3, "the second report is doubled");
        assert!(receipts.take_pull("1400000000", now, 100).is_empty(), "not due yet");
        let later = now + Duration::from_millis(1000);
        assert!(receipts.take_pull("1400000001", later, 100).is_empty(), "another app's queue");
        let pulled = receipts.take_pull("1400000000", later, 2);
        assert_eq!(pulled.len(), 2);
        let rest = receipts.take_pull("1400000000", later, 100);
        assert_eq!(rest.len(), 1);
        let all: Vec<_> = pulled.iter().chain(&rest).collect();
        assert_eq!(all.iter().filter(|r| r.sid == "s2" && !r.success).count(), 2);
        assert_eq!(rest[0].pull_entry()["ReportStatus"], if rest[0].success { "SUCCESS" } else { "FAIL" });
        assert_eq!(receipts.next_due(), None);
    }

    #[test]
    fn callback_entries_have_the_documented_shape() {
        let mut receipts = Receipts::default();
        receipts.on_sms(&sms("+8613800000001", "2019:123"), Instant::now());
        receipts.plan.callback_url = Some("http://127.0.0.1:1/".into());
        let (_, due) = receipts.take_push(Instant::now()).unwrap();
        assert_eq!(
            due[0].callback_entry(),
            json!({"user_receive_time": "2023-11-15 06:13:20", "nationcode": "86", "mobile": "13800000001",
                   "report_status": "SUCCESS", "errmsg": "DELIVRD", "description": "用户短信送达成功", "sid": "2019:123"})
        );
        assert_eq!(china_date(1_700_000_000_000), "2023-11-15");
    }
}

//! Programmable provider misbehaviour.
//!
//! A [`Fault`] is a matcher (provider, phone, key, path, action) plus an [`FaultEffect`], applied to
//! the next `times` matching requests (`0`: until cleared). JSON shape, as accepted by
//! `POST /_sandbox/faults`:
//!
//! ```json
//! {"effect": {"type": "tencent_number_status", "code": "LimitExceeded.PhoneNumberDailyLimit"},
//!  "phone": "+8613800000001", "times": 1}
//! ```
//!
//! Where each effect applies:
//! * `http_status` and `delay` act on the raw request, before any check (or, with
//!   `after_processing`, after the request was fully handled and its side effects recorded);
//! * `tencent_partial_send` acts on a `SendSms` that passed every check: it really sends the first
//!   `sent` numbers (recorded, with receipts for `PullSmsSendStatusByPhoneNumber`), then answers
//!   `then` instead of the statuses (`{"type": "http_status", "status": 500}`,
//!   `{"type": "tencent_error", "code": "InternalError.Timeout"}` or `{"type": "drop"}`);
//! * `tencent_error`, `tencent_number_status` and `wecom_errcode` act only on requests that passed
//!   every check (signature, key, body), right before the side effect would happen, so a fault
//!   firing also proves the request was valid.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::records::Provider;

/// What a fault does to a matching request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultEffect {
    /// Tencent whole-request failure: HTTP 200 with `{"Response":{"Error":{"Code","Message"},"RequestId"}}`.
    TencentError {
        /// `Error.Code`, e.g. `InternalError.Timeout`.
        code: String,
        /// `Error.Message`; `None`: the code followed by "(injected by yizhan-sandbox)".
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// A `SendSms` that sends only its first `sent` numbers (for real: recorded, with receipts),
    /// then answers `then` instead of its statuses, so the client cannot tell what went out.
    TencentPartialSend {
        /// How many of the request's numbers, in `PhoneNumberSet` order, are really sent.
        sent: usize,
        /// The answer the client gets instead of the statuses.
        then: LostAnswer,
    },
    /// The `SendStatus` of the matched phone number gets this `Code`; the other numbers of the
    /// request are processed normally. Needs `phone`.
    TencentNumberStatus {
        /// `SendStatus.Code`, e.g. `LimitExceeded.PhoneNumberDailyLimit`.
        code: String,
        /// `SendStatus.Message`; `None`: the code followed by "(injected by yizhan-sandbox)".
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// A bare HTTP answer (e.g. 500 with a plain body, or 502), as from a broken gateway.
    HttpStatus {
        /// HTTP status code to answer, e.g. 500 or 502.
        status: u16,
        /// Plain-text body; the status' reason phrase when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<String>,
        /// Handle the request first (recording any side effect), then answer this status:
        /// "the provider did it but the client never heard".
        #[serde(default)]
        after_processing: bool,
    },
    /// Robot answer `{"errcode":N,"errmsg":...}` (HTTP 200).
    WecomErrcode {
        /// WeCom `errcode`, e.g. 45009 (rate limit).
        errcode: i64,
        /// `errmsg`; `None`: "errcode N injected by yizhan-sandbox".
        #[serde(default, skip_serializing_if = "Option::is_none")]
        errmsg: Option<String>,
    },
    /// The provider's own error code, for DingTalk (`errcode`), Feishu (`code`), Juzibot (`errcode`),
    /// WeCom apps (`errcode`) and Tencent Meeting (`error_info.error_code`); needs `provider`.
    /// Fires for a request that passed every check, before its side effect.
    ErrorCode {
        /// The provider's numeric error code, in the field named above.
        code: i64,
        /// The provider's message field (`errmsg`, `msg`, `message`); `None`: says the code was injected.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// Sleep before answering. By default before the request is handled (a client that gives up
    /// leaves no side effect); with `after_processing`, after it was handled.
    Delay {
        /// How long to sleep, in milliseconds.
        ms: u64,
        /// Sleep after handling the request (its side effect recorded) instead of before.
        #[serde(default)]
        after_processing: bool,
    },
}

/// What a client gets instead of the answer to a request that was (partly) carried out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum LostAnswer {
    /// A bare HTTP status with a plain-text body, as from a gateway whose backend failed.
    HttpStatus {
        /// HTTP status code, e.g. 500.
        status: u16,
    },
    /// HTTP 200 with `Response.Error` of this code (e.g. `InternalError.Timeout`).
    TencentError {
        /// `Error.Code` to answer.
        code: String,
    },
    /// The connection breaks after the status line: no answer can be read.
    Drop,
}

/// A programmed fault. Build it with the constructors, or deserialize it from JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// What happens to a matching request.
    pub effect: FaultEffect,
    /// Required for `http_status` and `delay`; implied by the other effects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<Provider>,
    /// Only requests involving this number: Tencent `PhoneNumberSet` (compared after
    /// normalisation to E.164), robot `text.mentioned_mobile_list`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// Only requests with this credential: Tencent SecretId, WeCom robot `key`, DingTalk
    /// `access_token`, Feishu hook id or `app_id`, Juzibot `token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Only requests to this path (e.g. `/cgi-bin/webhook/upload_media`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Only this Tencent `X-TC-Action` / robot `msgtype` (`upload_media` for uploads) / Feishu bot
    /// `msg_type` / last path segment of Feishu app and Juzibot calls (`find_by_department`, `add`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// How many matching requests it applies to; `0` means until cleared.
    #[serde(default = "one")]
    pub times: u32,
}

fn one() -> u32 {
    1
}

/// A fault that can never apply as written.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid fault: {0}")]
pub struct FaultError(pub String);

impl Fault {
    fn new(effect: FaultEffect, provider: Option<Provider>) -> Self {
        Self { effect, provider, phone: None, key: None, path: None, action: None, times: 1 }
    }

    /// Whole-request Tencent error `code` (e.g. `InternalError.Timeout`, `RequestLimitExceeded`).
    pub fn tencent_error(code: &str) -> Self {
        Self::new(FaultEffect::TencentError { code: code.to_string(), message: None }, None)
    }

    /// The next matching `SendSms` sends only its first `sent` numbers, then answers `then`.
    pub fn tencent_partial_send(sent: usize, then: LostAnswer) -> Self {
        Self::new(FaultEffect::TencentPartialSend { sent, then }, None)
    }

    /// `SendStatus.Code` = `code` for `phone`; the request's other numbers succeed.
    pub fn tencent_number_status(phone: &str, code: &str) -> Self {
        Self::new(FaultEffect::TencentNumberStatus { code: code.to_string(), message: None }, None).for_phone(phone)
    }

    /// A bare HTTP `status` from `provider`.
    pub fn http_status(provider: Provider, status: u16) -> Self {
        let effect = FaultEffect::HttpStatus { status, body: None, after_processing: false };
        Self::new(effect, Some(provider))
    }

    /// Robot answer `{"errcode": errcode}` (for any key unless [`Fault::for_key`]).
    pub fn wecom_errcode(errcode: i64) -> Self {
        Self::new(FaultEffect::WecomErrcode { errcode, errmsg: None }, None)
    }

    /// `provider`'s own error `code` (DingTalk `errcode` 130101, Feishu `code` 11232, Juzibot `errcode`...).
    pub fn error_code(provider: Provider, code: i64) -> Self {
        Self::new(FaultEffect::ErrorCode { code, message: None }, Some(provider))
    }

    /// Sleep `delay` before answering.
    pub fn delay(provider: Provider, delay: Duration) -> Self {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        Self::new(FaultEffect::Delay { ms, after_processing: false }, Some(provider))
    }

    /// Only requests involving `phone` (see [`Fault::phone`]).
    pub fn for_phone(mut self, phone: &str) -> Self {
        self.phone = Some(phone.to_string());
        self
    }

    /// Only requests with credential `key` (see [`Fault::key`]).
    pub fn for_key(mut self, key: &str) -> Self {
        self.key = Some(key.to_string());
        self
    }

    /// Only requests to `path`, e.g. `/cgi-bin/webhook/upload_media`.
    pub fn for_path(mut self, path: &str) -> Self {
        self.path = Some(path.to_string());
        self
    }

    /// Only requests of `action` (see [`Fault::action`]).
    pub fn for_action(mut self, action: &str) -> Self {
        self.action = Some(action.to_string());
        self
    }

    /// Apply to the next `n` matching requests.
    pub fn times(mut self, n: u32) -> Self {
        self.times = n;
        self
    }

    /// Apply until cleared (`times: 0`).
    pub fn always(self) -> Self {
        self.times(0)
    }

    /// The Tencent `Message`, robot `errmsg` or HTTP body.
    pub fn with_message(mut self, text: &str) -> Self {
        match &mut self.effect {
            FaultEffect::TencentError { message, .. } | FaultEffect::TencentNumberStatus { message, .. } => {
                *message = Some(text.to_string());
            }
            FaultEffect::HttpStatus { body, .. } => *body = Some(text.to_string()),
            FaultEffect::WecomErrcode { errmsg, .. } => *errmsg = Some(text.to_string()),
            FaultEffect::ErrorCode { message, .. } => *message = Some(text.to_string()),
            FaultEffect::Delay { .. } | FaultEffect::TencentPartialSend { .. } => {}
        }
        self
    }

    /// For `http_status` and `delay`: act after the request was handled (see [`FaultEffect`]).
    pub fn after_processing(mut self) -> Self {
        match &mut self.effect {
            FaultEffect::HttpStatus { after_processing, .. } | FaultEffect::Delay { after_processing, .. } => {
                *after_processing = true;
            }
            FaultEffect::TencentError { .. }
            | FaultEffect::TencentNumberStatus { .. }
            | FaultEffect::TencentPartialSend { .. }
            | FaultEffect::WecomErrcode { .. }
            | FaultEffect::ErrorCode { .. } => {}
        }
        self
    }

    /// The provider this fault targets (explicit, or implied by the effect).
    pub fn target(&self) -> Option<Provider> {
        match self.effect {
            FaultEffect::TencentError { .. }
            | FaultEffect::TencentNumberStatus { .. }
            | FaultEffect::TencentPartialSend { .. } => Some(Provider::Tencent),
            FaultEffect::WecomErrcode { .. } => Some(Provider::WecomRobot),
            FaultEffect::HttpStatus { .. } | FaultEffect::Delay { .. } | FaultEffect::ErrorCode { .. } => self.provider,
        }
    }

    /// Checks that the fault can apply as written.
    pub fn validate(&self) -> Result<(), FaultError> {
        let err = |m: &str| Err(FaultError(m.to_string()));
        match self.target() {
            None => return err("`provider` is required for http_status, delay and error_code"),
            Some(Provider::Unknown) => return err("`provider` must name a fake provider"),
            Some(Provider::Tencent | Provider::WecomRobot) if matches!(self.effect, FaultEffect::ErrorCode { .. }) => {
                return err("error_code is for dingtalk_robot, feishu_robot, feishu and juzibot");
            }
            Some(p) if self.provider.is_some_and(|given| given != p) => {
                return err("`provider` contradicts the effect");
            }
            Some(_) => {}
        }
        match &self.effect {
            FaultEffect::TencentError { code, .. } | FaultEffect::TencentNumberStatus { code, .. }
                if code.trim().is_empty() =>
            {
                err("`code` must not be empty")
            }
            FaultEffect::TencentNumberStatus { .. } if self.phone.is_none() => {
                err("tencent_number_status needs `phone`")
            }
            FaultEffect::TencentPartialSend { then: LostAnswer::HttpStatus { status }, .. }
                if !(500..=599).contains(status) =>
            {
                // Only a server error can come after the backend acted; a 4xx never reached it.
                err("a partial send's `status` must be within 500..=599")
            }
            FaultEffect::TencentPartialSend { then: LostAnswer::TencentError { code }, .. }
                if code.trim().is_empty() =>
            {
                err("`code` must not be empty")
            }
            FaultEffect::HttpStatus { status, .. } if !(200..=599).contains(status) => {
                err("`status` must be within 200..=599")
            }
            FaultEffect::WecomErrcode { errcode: 0, .. } | FaultEffect::ErrorCode { code: 0, .. } => {
                err("`errcode` 0 is success, not a fault")
            }
            _ => Ok(()),
        }
    }
}

/// The stage of request handling at which faults are looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// `delay` faults; `after`: the request was handled already.
    Delay { after: bool },
    /// `http_status` faults; `after`: the request was handled already.
    Http { after: bool },
    /// Valid Tencent request, before its side effects.
    TencentRequest,
    /// One number of a valid SendSms.
    TencentNumber,
    /// Valid robot request, before its side effect.
    WecomRequest,
    /// Valid DingTalk, Feishu or Juzibot request, before its side effect.
    ProviderRequest,
}

/// What a request is about, for matching faults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestFacts {
    pub provider: Provider,
    pub path: String,
    /// Normalised phone numbers the request involves.
    pub phones: Vec<String>,
    pub key: Option<String>,
    pub action: Option<String>,
}

impl RequestFacts {
    /// The same facts narrowed to one phone number.
    pub(crate) fn for_phone(&self, phone: &str) -> Self {
        Self { phones: vec![phone.to_string()], ..self.clone() }
    }
}

impl Fault {
    pub(crate) fn applies(&self, stage: Stage, facts: &RequestFacts) -> bool {
        let stage_ok = match (&self.effect, stage) {
            (FaultEffect::HttpStatus { after_processing, .. }, Stage::Http { after })
            | (FaultEffect::Delay { after_processing, .. }, Stage::Delay { after }) => *after_processing == after,
            (FaultEffect::TencentError { .. }, Stage::TencentRequest)
            | (FaultEffect::TencentNumberStatus { .. }, Stage::TencentNumber)
            | (FaultEffect::WecomErrcode { .. }, Stage::WecomRequest)
            | (FaultEffect::ErrorCode { .. }, Stage::ProviderRequest) => true,
            // Only SendSms sends anything.
            (FaultEffect::TencentPartialSend { .. }, Stage::TencentRequest) => {
                facts.action.as_deref() == Some("SendSms")
            }
            _ => false,
        };
        stage_ok
            && self.target() == Some(facts.provider)
            && self.phone.as_deref().is_none_or(|p| {
                let wanted = crate::phone::canonical(p);
                facts.phones.contains(&wanted)
            })
            && self.key.as_ref().is_none_or(|k| facts.key.as_ref() == Some(k))
            && self.path.as_ref().is_none_or(|p| *p == facts.path)
            && self.action.as_ref().is_none_or(|a| facts.action.as_ref() == Some(a))
    }
}

/// The ordered list of pending faults.
#[derive(Debug, Default)]
pub(crate) struct FaultQueue {
    faults: Vec<Fault>,
}

impl FaultQueue {
    pub(crate) fn push(&mut self, fault: Fault) {
        self.faults.push(fault);
    }

    pub(crate) fn clear(&mut self) -> usize {
        std::mem::take(&mut self.faults).len()
    }

    pub(crate) fn pending(&self) -> &[Fault] {
        &self.faults
    }

    /// Consumes one application of the first fault that applies; returns its effect.
    pub(crate) fn take(&mut self, stage: Stage, facts: &RequestFacts) -> Option<FaultEffect> {
        let index = self.faults.iter().position(|f| f.applies(stage, facts))?;
        let fault = &mut self.faults[index];
        let effect = fault.effect.clone();
        match fault.times {
            0 => {}
            1 => {
                self.faults.remove(index);
            }
            _ => fault.times -= 1,
        }
        Some(effect)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sms_facts(phones: &[&str]) -> RequestFacts {
        RequestFacts {
            provider: Provider::Tencent,
            path: "/".into(),
            phones: phones.iter().map(|p| p.to_string()).collect(),
            key: Some("AKID".into()),
            action: Some("SendSms".into()),
        }
    }

    #[test]
    fn json_shape_round_trips() {
        let fault = Fault::tencent_number_status("+8613800000001", "LimitExceeded.PhoneNumberDailyLimit").times(2);
        let value = serde_json::to_value(&fault).unwrap();
        assert_eq!(
            value,
            json!({"effect": {"type": "tencent_number_status", "code": "LimitExceeded.PhoneNumberDailyLimit"},
                   "phone": "+8613800000001", "times": 2})
        );
        assert_eq!(serde_json::from_value::<Fault>(value).unwrap(), fault);

        let parsed: Fault = serde_json::from_value(json!({
            "effect": {"type": "http_status", "status": 502}, "provider": "wecom_robot"
        }))
        .unwrap();
        assert_eq!(parsed, Fault::http_status(Provider::WecomRobot, 502));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let typo = json!({"effect": {"type": "tencent_error", "code": "X"}, "phone_number": "+86"});
        assert!(serde_json::from_value::<Fault>(typo).is_err());
        let typo = json!({"effect": {"type": "tencent_error", "code": "X", "msg": "y"}});
        assert!(serde_json::from_value::<Fault>(typo).is_err());
    }

    #[test]
    fn validation() {
        assert!(Fault::tencent_error("InternalError.Timeout").validate().is_ok());
        assert!(Fault::http_status(Provider::Tencent, 99).validate().is_err());
        assert!(Fault::wecom_errcode(0).validate().is_err());
        let mut no_provider = Fault::delay(Provider::Tencent, Duration::from_millis(5));
        no_provider.provider = None;
        assert!(no_provider.validate().is_err());
        let mut contradiction = Fault::tencent_error("X");
        contradiction.provider = Some(Provider::WecomRobot);
        assert!(contradiction.validate().is_err());
        let mut no_phone = Fault::tencent_number_status("+8613800000001", "X");
        no_phone.phone = None;
        assert!(no_phone.validate().is_err());
    }

    #[test]
    fn a_partial_send_round_trips_and_applies_only_to_send_sms() {
        let fault = Fault::tencent_partial_send(3, LostAnswer::HttpStatus { status: 500 }).for_phone("+8613800000001");
        let value = serde_json::to_value(&fault).unwrap();
        assert_eq!(
            value,
            json!({"effect": {"type": "tencent_partial_send", "sent": 3, "then": {"type": "http_status", "status": 500}},
                   "phone": "+8613800000001", "times": 1})
        );
        assert_eq!(serde_json::from_value::<Fault>(value).unwrap(), fault);
        assert!(fault.validate().is_ok());
        assert!(Fault::tencent_partial_send(1, LostAnswer::HttpStatus { status: 404 }).validate().is_err());
        assert!(Fault::tencent_partial_send(1, LostAnswer::TencentError { code: " ".into() }).validate().is_err());
        let dropped: Fault = serde_json::from_value(
            json!({"effect": {"type": "tencent_partial_send", "sent": 0, "then": {"type": "drop"}}}),
        )
        .unwrap();
        assert_eq!(dropped.effect, FaultEffect::TencentPartialSend { sent: 0, then: LostAnswer::Drop });

        let mut queue = FaultQueue::default();
        queue.push(Fault::tencent_partial_send(1, LostAnswer::Drop));
        let query = RequestFacts { action: Some("PullSmsSendStatusByPhoneNumber".into()), ..sms_facts(&[]) };
        assert_eq!(queue.take(Stage::TencentRequest, &query), None);
        assert!(queue.take(Stage::TencentRequest, &sms_facts(&["+8613800000001"])).is_some());
    }

    #[test]
    fn faults_match_and_are_consumed() {
        let mut queue = FaultQueue::default();
        queue.push(Fault::tencent_error("InternalError.Timeout").for_phone("13800000002").times(2));
        let other = sms_facts(&["+8613800000001"]);
        let target = sms_facts(&["+8613800000001", "+8613800000002"]);
        assert_eq!(queue.take(Stage::TencentRequest, &other), None);
        assert_eq!(queue.take(Stage::Http { after: false }, &target), None);
        assert!(queue.take(Stage::TencentRequest, &target).is_some());
        assert!(queue.take(Stage::TencentRequest, &target).is_some());
        assert_eq!(queue.take(Stage::TencentRequest, &target), None);
        assert!(queue.pending().is_empty());

        queue.push(Fault::http_status(Provider::Tencent, 500).always());
        for _ in 0..3 {
            assert!(queue.take(Stage::Http { after: false }, &other).is_some());
        }
        assert_eq!(queue.take(Stage::Http { after: true }, &other), None);
        assert_eq!(queue.take(Stage::Delay { after: false }, &other), None);
        assert_eq!(queue.clear(), 1);
    }
}

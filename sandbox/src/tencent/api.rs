//! What the Tencent Cloud actions share: their context and their error envelope. A leaf of the
//! `tencent` module, so that the actions (SMS, SES) and the dispatcher do not depend on each other.

use crate::config::TencentAccount;
use crate::faults::RequestFacts;
use crate::hub::Hub;

/// A whole-request failure: `{"Response":{"Error":{"Code","Message"},"RequestId"}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub code: String,
    pub message: String,
    /// Produced by a programmed fault rather than by a check (not counted as a refusal).
    pub injected: bool,
    /// A fault's answer that replaces the error envelope (an HTTP 5xx or a broken connection).
    pub lost: Option<crate::faults::LostAnswer>,
}

impl ApiError {
    pub(crate) fn new(code: &str, message: impl Into<String>) -> Self {
        Self { code: code.to_string(), message: message.into(), injected: false, lost: None }
    }

    pub(crate) fn missing(parameter: &str) -> Self {
        Self::new("MissingParameter", format!("The request is missing a required parameter `{parameter}`."))
    }

    pub(crate) fn invalid_authorization(detail: &str) -> Self {
        Self::new("AuthFailure.InvalidAuthorization", format!("Authorization is invalid: {detail}"))
    }
}

/// What an action handler gets besides the body.
pub(crate) struct ActionContext<'a> {
    pub hub: &'a Hub,
    pub account: &'a TencentAccount,
    pub request_id: &'a str,
    pub region: &'a str,
    pub facts: &'a RequestFacts,
}

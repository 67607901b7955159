//! The common error codes of Tencent Cloud API 3.0 (docs/providers/tencent-cloud.md#responses-and-common-errors):
//! what every service may answer, whatever its own codes. Each service classifies its own codes
//! first and falls back to [`classify`].

use std::time::Duration;

use serde::Deserialize;

use crate::connectors::call::Failure;

/// What a Tencent Cloud code means for the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Worth retrying; `retry_after` is the provider's documented wait when it has one.
    Retry {
        /// The documented wait, if any; None: the job's retry delays alone decide.
        retry_after: Option<Duration>,
    },
    /// Will fail again.
    Permanent,
}

/// `Response.Error`: a request the API refused, answered with HTTP 200.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ApiError {
    /// `Code`: `Family` or `Family.Sub`, e.g. `FailedOperation.SignatureIncorrectOrUnapproved`.
    pub code: String,
    /// `Message`: the provider's explanation; empty when absent.
    #[serde(default)]
    pub message: String,
}

/// `InternalError.*` codes that describe a malformed request, not a provider hiccup.
const PERMANENT_INTERNAL_ERRORS: &[&str] = &[
    "InternalError.JsonParseFail",
    "InternalError.RestApiInterfaceNotExist",
    "InternalError.SigFieldMissing",
    "InternalError.SigVerificationFail",
];

/// The common codes: unavailability, rate limits, internal errors and an expired signature are
/// retried; everything else is permanent.
pub fn classify(code: &str) -> Class {
    match code {
        "ServiceUnavailable" | "ResourceUnavailable" | "ResourceInsufficient" => Class::Retry { retry_after: None },
        // Clock skew or a slow queue: every attempt is signed afresh with the current time.
        "AuthFailure.SignatureExpire" => Class::Retry { retry_after: None },
        _ if is_family(code, "RequestLimitExceeded") => Class::Retry { retry_after: None },
        _ if is_family(code, "InternalError") && !PERMANENT_INTERNAL_ERRORS.contains(&code) => {
            Class::Retry { retry_after: None }
        }
        _ => Class::Permanent,
    }
}

/// `code` is `family` itself or one of its `family.Sub` codes.
pub fn is_family(code: &str, family: &str) -> bool {
    code.strip_prefix(family).is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

/// A whole-request code saying the account is over its API rate: the config should pause.
pub fn is_throttle(code: &str) -> bool {
    is_family(code, "RequestLimitExceeded")
}

/// `Code: Message` (just `Code` without a message).
pub fn describe(code: &str, message: &str) -> String {
    if message.is_empty() { code.to_string() } else { format!("{code}: {message}") }
}

/// The failure of a refused request whose code is of `class`: a rate limit throttles the config,
/// a retryable code is transient, anything else permanent.
pub fn failure(code: &str, class: Class, reason: String) -> Failure {
    match class {
        Class::Retry { retry_after } if is_throttle(code) => Failure::Throttled { reason, retry_after },
        Class::Retry { retry_after } => Failure::Transient { reason, retry_after, progress: None },
        Class::Permanent => Failure::permanent(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RETRY: Class = Class::Retry { retry_after: None };

    #[test]
    fn common_codes_are_classified() {
        let table: &[(&str, Class)] = &[
            ("RequestLimitExceeded", RETRY),
            ("RequestLimitExceeded.IPLimitExceeded", RETRY),
            ("InternalError", RETRY),
            ("InternalError.Timeout", RETRY),
            ("InternalError.JsonParseFail", Class::Permanent),
            ("InternalError.SigVerificationFail", Class::Permanent),
            ("ServiceUnavailable", RETRY),
            ("ResourceUnavailable", RETRY),
            ("ResourceInsufficient", RETRY),
            ("AuthFailure.SignatureExpire", RETRY),
            ("AuthFailure.SignatureFailure", Class::Permanent),
            ("RequestSizeLimitExceeded", Class::Permanent),
            ("InternalErrorX", Class::Permanent),
            ("RequestLimitExceededX", Class::Permanent),
        ];
        for (code, class) in table {
            assert_eq!(classify(code), *class, "{code}");
        }
    }

    #[test]
    fn only_rate_limits_throttle() {
        assert!(matches!(failure("RequestLimitExceeded", RETRY, "r".into()), Failure::Throttled { .. }));
        assert!(matches!(failure("InternalError", RETRY, "r".into()), Failure::Transient { .. }));
        assert_eq!(failure("AuthFailure.SignatureFailure", Class::Permanent, "r".into()), Failure::permanent("r"));
    }

    #[test]
    fn descriptions_quote_the_message_when_there_is_one() {
        assert_eq!(describe("FailedOperation.X", ""), "FailedOperation.X");
        assert_eq!(describe("FailedOperation.X", "no"), "FailedOperation.X: no");
    }
}

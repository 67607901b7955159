//! Classification of SES error codes (docs/providers/tencent-cloud.md#ses-error-classes-the-worker-uses):
//! SES's own codes first, then the common Tencent Cloud API 3.0 ones.

use std::time::Duration;

use crate::connectors::tencent_cloud::error::{self as common, Class};

/// Quotas that will not clear within the job's backoff schedule.
const QUOTAS: &[(&str, &str)] = &[
    ("FailedOperation.ExceedSendLimit", "daily sending quota: it resets at midnight China time, UTC+8"),
    (
        "FailedOperation.InsufficientQuota",
        "sending quota used up: it resets when the package renews or more quota is bought",
    ),
    (
        "FailedOperation.InsufficientBalance",
        "account balance too low: sending resumes (the quota resets) once the account is topped up",
    ),
];

/// SES's own codes (sender throttles retry, quotas are permanent), then the common API 3.0 codes.
pub fn classify(code: &str) -> Class {
    match code {
        // "临时性错误，请求未生效，请重试" and short-term sender reputation throttles.
        "FailedOperation.ServiceNotAvailable" | "FailedOperation.FrequencyLimit" => Class::Retry { retry_after: None },
        "FailedOperation.HighRejectionRate" => Class::Retry { retry_after: None },
        // The recipient's provider paused us for 10 minutes.
        "FailedOperation.TemporaryBlocked" => Class::Retry { retry_after: Some(Duration::from_secs(600)) },
        _ if quota(code).is_some() => Class::Permanent,
        _ => common::classify(code),
    }
}

fn quota(code: &str) -> Option<&'static str> {
    QUOTAS.iter().find(|(c, _)| *c == code).map(|(_, hint)| *hint)
}

/// `Code: Message`, plus when a quota resets.
pub fn describe(code: &str, message: &str) -> String {
    let mut text = common::describe(code, message);
    if let Some(hint) = quota(code) {
        text.push_str(&format!(" ({hint})"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const RETRY: Class = Class::Retry { retry_after: None };

    /// Every code docs/providers/tencent-cloud.md#ses-error-classes-the-worker-uses lists, one row each.
    #[test]
    fn every_listed_ses_code_is_classified() {
        let table: &[(&str, Class)] = &[
            ("FailedOperation.ServiceNotAvailable", RETRY),
            ("FailedOperation.TemporaryBlocked", Class::Retry { retry_after: Some(Duration::from_secs(600)) }),
            ("FailedOperation.FrequencyLimit", RETRY),
            ("FailedOperation.HighRejectionRate", RETRY),
            ("RequestLimitExceeded", RETRY),
            ("InternalError", RETRY),
            ("ServiceUnavailable", RETRY),
            ("AuthFailure.SignatureExpire", RETRY),
            ("FailedOperation.ExceedSendLimit", Class::Permanent),
            ("FailedOperation.InsufficientQuota", Class::Permanent),
            ("FailedOperation.InsufficientBalance", Class::Permanent),
            ("FailedOperation.EmailAddrInBlacklist", Class::Permanent),
            ("FailedOperation.ReceiverHasUnsubscribed", Class::Permanent),
            ("FailedOperation.RejectedByRecipients", Class::Permanent),
            ("FailedOperation.IncorrectEmail", Class::Permanent),
            ("FailedOperation.IncorrectSender", Class::Permanent),
            ("FailedOperation.NotAuthenticatedSender", Class::Permanent),
            ("FailedOperation.InvalidTemplateID", Class::Permanent),
            ("FailedOperation.MissingEmailContent", Class::Permanent),
            ("FailedOperation.WithOutPermission", Class::Permanent),
            ("FailedOperation.TooManyRecipients", Class::Permanent),
            ("FailedOperation.TooManyAttachments", Class::Permanent),
            ("FailedOperation.AttachContentToolarge", Class::Permanent),
            ("FailedOperation.EmailContentToolarge", Class::Permanent),
            ("InvalidParameterValue.RepeatCreation", Class::Permanent),
            ("InvalidParameterValue.CreatedByOther", Class::Permanent),
            ("InvalidParameterValue.NotExistDomain", Class::Permanent),
            ("InvalidParameterValue.InvalidEmailIdentity", Class::Permanent),
            ("InvalidParameterValue.TemplateDataLenLimit", Class::Permanent),
            ("OperationDenied.DomainNotVerified", Class::Permanent),
            ("OperationDenied.ExceedDomainLimit", Class::Permanent),
            ("ResourceNotFound", Class::Permanent),
            ("AuthFailure.SignatureFailure", Class::Permanent),
        ];
        for (code, class) in table {
            assert_eq!(classify(code), *class, "{code}");
        }
    }

    #[test]
    fn quota_reasons_say_when_they_reset() {
        for (code, _) in QUOTAS {
            let text = describe(code, "over");
            assert!(text.starts_with(&format!("{code}: over (")), "{text}");
            assert!(text.contains("resets"), "{text}");
        }
        assert_eq!(describe("FailedOperation.IncorrectEmail", "bad"), "FailedOperation.IncorrectEmail: bad");
    }
}

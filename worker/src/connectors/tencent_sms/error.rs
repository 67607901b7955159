//! Classification of Tencent Cloud SMS error codes (docs/providers/tencent-cloud.md#sms-error-classes-the-worker-uses), used both for a
//! whole-request `Response.Error.Code` and for each number's `SendStatusSet[i].Code`: SMS's own
//! codes first, then the common API 3.0 ones.

use std::time::Duration;

use crate::connectors::tencent_cloud::error::{self as common, Class, is_family};

/// Quotas that only reset on the next calendar day (China time), so retrying within the job's
/// backoff schedule is pointless.
const DAILY_QUOTAS: &[&str] = &[
    "LimitExceeded.PhoneNumberDailyLimit",
    "LimitExceeded.PhoneNumberSameContentDailyLimit",
    "LimitExceeded.AppDailyLimit",
    "LimitExceeded.DailyLimit",
];

/// SMS's own codes (per-number windows retry after the window), then the common API 3.0 codes.
pub fn classify(code: &str) -> Class {
    let retry = |seconds: Option<u64>| Class::Retry { retry_after: seconds.map(Duration::from_secs) };
    match code {
        "LimitExceeded.DeliveryFrequencyLimit" => retry(None),
        // The provider's own per-number windows: waiting them out is the documented remedy.
        "LimitExceeded.PhoneNumberThirtySecondLimit" => retry(Some(30)),
        "LimitExceeded.PhoneNumberOneHourLimit" => retry(Some(3600)),
        _ => common::classify(code),
    }
}

/// `InternalError.*` codes the provider documents as raised while reading or checking the request,
/// so before anything is sent (docs/providers/tencent-cloud.md#lost-sendsms-answers).
const PRE_SEND_INTERNAL_ERRORS: &[&str] = &[
    "InternalError.JsonParseFail",
    "InternalError.RestApiInterfaceNotExist",
    "InternalError.SigFieldMissing",
    "InternalError.SigVerificationFail",
    "InternalError.RequestTimeException",
];

/// Whether a whole-request `SendSms` error leaves open that some numbers were sent
/// (docs/providers/tencent-cloud.md#lost-sendsms-answers). `InternalError.Timeout` is "timed
/// out delivering the SMS", `InternalError.SendAndRecvFail` a lost backend packet: the backend may
/// have sent. The unavailability codes say nothing either way, so they count as may-have-sent too.
/// Everything else (`RequestLimitExceeded*`, `AuthFailure*`, `InvalidParameter*`,
/// `MissingParameter*`, `LimitExceeded.*`, `FailedOperation.*`, `UnauthorizedOperation.*`,
/// `UnsupportedOperation.*`) is a refusal of the whole request before sending.
pub fn may_have_sent(code: &str) -> bool {
    match code {
        "ServiceUnavailable" | "ResourceUnavailable" | "ResourceInsufficient" => true,
        _ => is_family(code, "InternalError") && !PRE_SEND_INTERNAL_ERRORS.contains(&code),
    }
}

/// Whether `code` is a quota that resets only the next day (China time): permanent for the job.
pub fn is_daily_quota(code: &str) -> bool {
    DAILY_QUOTAS.contains(&code)
}

/// `Code: Message`, plus a hint for daily quotas, which would otherwise look like transient limits.
pub fn describe(code: &str, message: &str) -> String {
    let mut text = common::describe(code, message);
    if is_daily_quota(code) {
        text.push_str(" (daily quota: it resets at midnight China time, UTC+8)");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::tencent_cloud::error::is_throttle;

    const HALF_MINUTE: Option<Duration> = Some(Duration::from_secs(30));
    const HOUR: Option<Duration> = Some(Duration::from_secs(3600));

    /// Every code docs/providers/tencent-cloud.md lists, one row each.
    #[test]
    fn every_listed_code_is_classified() {
        use Class::*;
        let table: &[(&str, Class)] = &[
            ("RequestLimitExceeded", Retry { retry_after: None }),
            ("RequestLimitExceeded.IPLimitExceeded", Retry { retry_after: None }),
            ("RequestLimitExceeded.UinLimitExceeded", Retry { retry_after: None }),
            ("RequestLimitExceeded.GlobalRegionUinLimitExceeded", Retry { retry_after: None }),
            ("InternalError", Retry { retry_after: None }),
            ("InternalError.Timeout", Retry { retry_after: None }),
            ("InternalError.SendAndRecvFail", Retry { retry_after: None }),
            ("InternalError.OtherError", Retry { retry_after: None }),
            ("InternalError.UnknownError", Retry { retry_after: None }),
            ("InternalError.RequestTimeException", Retry { retry_after: None }),
            ("InternalError.JsonParseFail", Permanent),
            ("InternalError.RestApiInterfaceNotExist", Permanent),
            ("InternalError.SigFieldMissing", Permanent),
            ("InternalError.SigVerificationFail", Permanent),
            ("ServiceUnavailable", Retry { retry_after: None }),
            ("ResourceUnavailable", Retry { retry_after: None }),
            ("ResourceInsufficient", Retry { retry_after: None }),
            ("LimitExceeded.DeliveryFrequencyLimit", Retry { retry_after: None }),
            ("LimitExceeded.PhoneNumberThirtySecondLimit", Retry { retry_after: HALF_MINUTE }),
            ("LimitExceeded.PhoneNumberOneHourLimit", Retry { retry_after: HOUR }),
            ("AuthFailure.SignatureExpire", Retry { retry_after: None }),
            ("LimitExceeded.PhoneNumberDailyLimit", Permanent),
            ("LimitExceeded.PhoneNumberSameContentDailyLimit", Permanent),
            ("LimitExceeded.AppDailyLimit", Permanent),
            ("LimitExceeded.DailyLimit", Permanent),
            ("LimitExceeded.PhoneNumberCountLimit", Permanent),
            ("AuthFailure.SecretIdNotFound", Permanent),
            ("AuthFailure.SignatureFailure", Permanent),
            ("AuthFailure.InvalidSecretId", Permanent),
            ("AuthFailure.UnauthorizedOperation", Permanent),
            ("FailedOperation.PhoneNumberInBlacklist", Permanent),
            ("FailedOperation.SignatureIncorrectOrUnapproved", Permanent),
            ("FailedOperation.TemplateIncorrectOrUnapproved", Permanent),
            ("FailedOperation.InsufficientBalanceInSmsPackage", Permanent),
            ("FailedOperation.ContainSensitiveWord", Permanent),
            ("InvalidParameterValue.IncorrectPhoneNumber", Permanent),
            ("InvalidParameterValue.SdkAppIdNotExist", Permanent),
            ("MissingParameter.EmptyPhoneNumberSet", Permanent),
            ("UnauthorizedOperation.SmsSdkAppIdVerifyFail", Permanent),
            ("UnsupportedOperation.ContainDomesticAndInternationalPhoneNumber", Permanent),
            ("RequestSizeLimitExceeded", Permanent),
            ("LimitExceeded", Permanent),
            ("SomethingNobodyDocumented", Permanent),
        ];
        for (code, class) in table {
            assert_eq!(classify(code), *class, "{code}");
        }
    }

    #[test]
    fn only_codes_after_which_numbers_may_have_gone_out_are_unconfirmed() {
        for code in [
            "InternalError",
            "InternalError.Timeout",
            "InternalError.SendAndRecvFail",
            "InternalError.OtherError",
            "InternalError.UnknownError",
            "ServiceUnavailable",
            "ResourceUnavailable",
            "ResourceInsufficient",
        ] {
            assert!(may_have_sent(code), "{code}");
        }
        for code in [
            "InternalError.JsonParseFail",
            "InternalError.RestApiInterfaceNotExist",
            "InternalError.SigFieldMissing",
            "InternalError.SigVerificationFail",
            "InternalError.RequestTimeException",
            "RequestLimitExceeded",
            "RequestLimitExceeded.UinLimitExceeded",
            "AuthFailure.SignatureExpire",
            "AuthFailure.SecretIdNotFound",
            "InvalidParameter",
            "InvalidParameterValue.IncorrectPhoneNumber",
            "MissingParameter",
            "MissingParameter.EmptyPhoneNumberSet",
            "LimitExceeded.DeliveryFrequencyLimit",
            "FailedOperation.TemplateIncorrectOrUnapproved",
            "UnauthorizedOperation.SmsSdkAppIdVerifyFail",
            "UnsupportedOperation.ContainDomesticAndInternationalPhoneNumber",
            "InternalErrorX",
        ] {
            assert!(!may_have_sent(code), "{code}");
        }
    }

    #[test]
    fn look_alike_families_are_not_matched() {
        assert_eq!(classify("InternalErrorX"), Class::Permanent);
        assert_eq!(classify("RequestLimitExceededX"), Class::Permanent);
    }

    #[test]
    fn only_whole_request_rate_limits_throttle_the_config() {
        for code in [
            "RequestLimitExceeded",
            "RequestLimitExceeded.IPLimitExceeded",
            "RequestLimitExceeded.UinLimitExceeded",
            "RequestLimitExceeded.GlobalRegionUinLimitExceeded",
        ] {
            assert!(is_throttle(code), "{code}");
            assert_eq!(classify(code), Class::Retry { retry_after: None }, "{code}");
        }
        for code in [
            "RequestLimitExceededX",
            "RequestSizeLimitExceeded",
            "LimitExceeded.DeliveryFrequencyLimit",
            "LimitExceeded.PhoneNumberThirtySecondLimit",
            "LimitExceeded.PhoneNumberOneHourLimit",
            "LimitExceeded.PhoneNumberDailyLimit",
            "ServiceUnavailable",
        ] {
            assert!(!is_throttle(code), "{code}");
        }
    }

    #[test]
    fn daily_quotas_say_when_they_reset() {
        for code in DAILY_QUOTAS {
            let text = describe(code, "over the limit");
            assert!(text.starts_with(&format!("{code}: over the limit")), "{text}");
            assert!(text.ends_with("(daily quota: it resets at midnight China time, UTC+8)"), "{text}");
        }
        assert_eq!(describe("FailedOperation.X", ""), "FailedOperation.X");
        assert_eq!(describe("FailedOperation.X", "no"), "FailedOperation.X: no");
    }
}

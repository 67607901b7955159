//! Classification of WeCom answers (docs/providers/wecom.md#error-codes).

use std::time::Duration;

use crate::connectors::call::Failure;

/// 不合法的access_token / access_token已过期: refresh the token and retry the call once.
pub const TOKEN_INVALID: [i64; 2] = [40014, 42001];
/// 接口调用超过限制: the minute window blocks for 60 s (docs/providers/wecom.md#rate-limits).
pub const FREQ_LIMITED: i64 = 45009;
/// System busy, rate and concurrency limits, data-version conflicts, "retry later" codes.
pub const TRANSIENT: [i64; 8] = [-1, FREQ_LIMITED, 45033, 6000, 41063, 301022, 302005, 90304];
const FREQ_BLOCK: Duration = Duration::from_secs(60);

/// The failure of a non-zero `errcode` of a business call; everything not retryable is permanent.
pub fn classify(errcode: i64, errmsg: &str) -> Failure {
    let reason = format!("errcode {errcode}: {errmsg}");
    match errcode {
        FREQ_LIMITED => Failure::Throttled { reason, retry_after: Some(FREQ_BLOCK) },
        code if TRANSIENT.contains(&code) || TOKEN_INVALID.contains(&code) => Failure::transient(reason),
        _ => Failure::permanent(reason),
    }
}

/// The failure of a non-zero `errcode` from `gettoken`: busy and limit codes are retried, anything
/// else (40001 bad secret, 40013 bad corp id, 40091 invalid secret...) is a config error.
pub fn token_failure(errcode: i64, errmsg: &str) -> Failure {
    match classify(errcode, errmsg) {
        retried @ (Failure::Transient { .. } | Failure::Throttled { .. }) if !TOKEN_INVALID.contains(&errcode) => {
            retried.map_reason(|reason| format!("gettoken: {reason}"))
        }
        _ => Failure::permanent(format!("gettoken: errcode {errcode}: {errmsg}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn business_codes_are_classified() {
        assert_eq!(
            classify(45009, "api freq out of limit"),
            Failure::throttled("errcode 45009: api freq out of limit", Some(Duration::from_secs(60)))
        );
        for code in [-1, 45033, 6000, 41063, 301022, 302005, 40014, 42001] {
            assert_eq!(classify(code, "busy"), Failure::transient(format!("errcode {code}: busy")), "{code}");
        }
        for code in [40001, 40013, 41001, 48002, 60020, 60111, 81013, 82001, 86001, 90456, 41050, 40096] {
            assert_eq!(classify(code, "no"), Failure::permanent(format!("errcode {code}: no")), "{code}");
        }
    }

    #[test]
    fn gettoken_codes_are_classified() {
        for code in [40001, 40013, 40091, 40014] {
            assert_eq!(
                token_failure(code, "invalid credential"),
                Failure::permanent(format!("gettoken: errcode {code}: invalid credential"))
            );
        }
        assert!(matches!(token_failure(-1, "system busy"), Failure::Transient { .. }));
        // A rate limit on gettoken throttles the config like any other call; it must never become permanent.
        assert_eq!(
            token_failure(45009, "limit"),
            Failure::throttled("gettoken: errcode 45009: limit", Some(Duration::from_secs(60)))
        );
    }
}

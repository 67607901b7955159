//! Classification of Feishu OpenAPI answers (docs/providers/feishu.md#tenant-access-token).

use std::time::Duration;

use crate::connectors::call::Failure;

/// The gateway's "request trigger frequency limit" (HTTP 429, or 400 on older APIs).
pub const RATE_LIMITED: i64 = 99991400;
/// Invalid or expired `tenant_access_token`: the cached one is dropped and the call retried.
pub const TOKEN_INVALID: [i64; 3] = [99991661, 99991663, 99991668];

/// The failure of a non-zero `code` of a business call. Permission, parameter and every other code
/// are permanent.
pub fn classify(code: i64, msg: &str, retry_after: Option<Duration>) -> Failure {
    let reason = format!("code {code}: {msg}");
    if code == RATE_LIMITED {
        Failure::Throttled { reason, retry_after }
    } else if TOKEN_INVALID.contains(&code) {
        Failure::transient(format!("{reason} (tenant_access_token dropped)"))
    } else {
        Failure::permanent(reason)
    }
}

/// The failure of a non-zero `code` from the token endpoint: the app's credentials are wrong or the
/// app is disabled, which no retry fixes.
pub fn token_failure(code: i64, msg: &str) -> Failure {
    let reason = format!("tenant_access_token: code {code}: {msg}");
    // The token endpoint is rate-limited too (1000/min, 50/s): that is back-pressure, not bad
    // credentials.
    if code == RATE_LIMITED { Failure::Throttled { reason, retry_after: None } } else { Failure::permanent(reason) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_classified() {
        let reset = Some(Duration::from_secs(2));
        assert_eq!(
            classify(99991400, "request trigger frequency limit", reset),
            Failure::Throttled { reason: "code 99991400: request trigger frequency limit".into(), retry_after: reset }
        );
        for code in [99991661, 99991663, 99991668] {
            assert!(matches!(classify(code, "invalid token", None), Failure::Transient { .. }), "{code}");
        }
        for code in [40004, 40013, 99991672, 1] {
            assert_eq!(classify(code, "no", None), Failure::permanent(format!("code {code}: no")));
        }
        assert_eq!(
            token_failure(10014, "app secret invalid"),
            Failure::permanent("tenant_access_token: code 10014: app secret invalid")
        );
    }
}

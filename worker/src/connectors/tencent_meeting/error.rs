//! Classification of Tencent Meeting errors (docs/providers/tencent-meeting.md#errors): non-2xx
//! answers with `{"error_info":{"error_code","message"}}`, classified by code before status.

use std::time::Duration;

use reqwest::StatusCode;

use crate::connectors::call::Failure;

/// `(code, when it resets)`: quotas that outlast any retry schedule.
const QUOTAS: &[(i64, &str)] = &[
    (190311, "daily API quota of the app: it resets at midnight China time, UTC+8"),
    (500168, "monthly meeting-creation quota of the account: it resets on the 1st of next month"),
];

/// docs/providers/tencent-meeting.md#errors: codes about the request itself, never cured by a retry.
const REQUEST_ERRORS: &[i64] = &[9003, 9008, 20001, 190004, 190303, 200003];

/// Failure for an error answer with `status`, `code` and `message`.
pub fn classify(status: StatusCode, code: Option<i64>, message: &str) -> Failure {
    let mut reason = match code {
        Some(code) => format!("HTTP {}: error_code {code}: {message}", status.as_u16()),
        None => format!("HTTP {}: {message}", status.as_u16()),
    };
    if let Some((_, hint)) = code.and_then(|c| QUOTAS.iter().find(|(q, _)| *q == c)) {
        reason.push_str(&format!(" ({hint})"));
        return Failure::permanent(reason);
    }
    let retry_after = match code {
        // Timestamp out of window / nonce replayed: the next attempt signs with a fresh pair.
        Some(190300 | 190301) => return Failure::transient(reason),
        // Per-minute limit of the app: the next minute is free again.
        Some(190310) => return Failure::Throttled { reason, retry_after: Some(Duration::from_secs(60)) },
        Some(9061 | 190313 | 41 | 5108) => None,
        // Request errors, whatever the status: the documents' own example answers 9003 with HTTP 500.
        Some(code) if REQUEST_ERRORS.contains(&code) => return Failure::permanent(reason),
        _ if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS => None,
        _ => return Failure::permanent(reason),
    };
    Failure::Transient { reason, retry_after, progress: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(failure: &Failure) -> &'static str {
        match failure {
            Failure::Transient { .. } => "transient",
            Failure::Throttled { .. } => "throttled",
            Failure::Permanent { .. } => "permanent",
            Failure::Ambiguous { .. } => "ambiguous",
            Failure::Unreachable { .. } => "unreachable",
        }
    }

    /// One row per code docs/providers/tencent-meeting.md#errors lists.
    #[test]
    fn every_listed_code_is_classified() {
        let bad = StatusCode::BAD_REQUEST;
        let internal = StatusCode::INTERNAL_SERVER_ERROR;
        let table: &[(StatusCode, i64, &str)] = &[
            (bad, 190300, "transient"),
            (bad, 190301, "transient"),
            (bad, 190310, "throttled"),
            (bad, 190313, "transient"),
            (bad, 9061, "transient"),
            (internal, 41, "transient"),
            (internal, 5108, "transient"),
            (internal, 12345, "transient"),
            (bad, 190303, "permanent"),
            (bad, 200003, "permanent"),
            (bad, 9003, "permanent"),
            (internal, 9003, "permanent"),
            (internal, 200003, "permanent"),
            (bad, 9008, "permanent"),
            (bad, 20001, "permanent"),
            (bad, 190004, "permanent"),
            (bad, 190311, "permanent"),
            (bad, 500168, "permanent"),
            (internal, 190311, "permanent"),
        ];
        for (status, code, expected) in table {
            let failure = classify(*status, Some(*code), "msg");
            assert_eq!(kind(&failure), *expected, "{status} {code}: {failure:?}");
            assert!(failure.reason().contains(&code.to_string()), "{failure:?}");
        }
    }

    #[test]
    fn minute_limit_waits_a_minute() {
        let failure = classify(StatusCode::BAD_REQUEST, Some(190310), "too many");
        assert_eq!(failure, Failure::throttled("HTTP 400: error_code 190310: too many", Some(Duration::from_secs(60))));
    }

    #[test]
    fn quotas_say_when_they_reset() {
        for (code, _) in QUOTAS {
            let failure = classify(StatusCode::BAD_REQUEST, Some(*code), "over");
            assert!(matches!(failure, Failure::Permanent { .. }));
            assert!(failure.reason().contains("resets"), "{}", failure.reason());
        }
    }
}

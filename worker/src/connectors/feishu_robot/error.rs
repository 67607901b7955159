//! Classification of the Feishu bot's answers (docs/providers/feishu.md#bot-errors).

use std::time::Duration;

use crate::connectors::call::Failure;

/// Frequency limited (100/min, 5/s per bot, or platform pressure).
pub const FREQUENCY_LIMITED: i64 = 11232;
/// The OpenAPI gateway's rate-limit code (with HTTP 429).
pub const GATEWAY_RATE_LIMIT: i64 = 99991400;

/// The failure of a non-zero `code`. 9499 (bad request / over 20 KB), 19021 (sign), 19022 (IP),
/// 19024 (keywords) and every undocumented code are permanent. `retry_after` is the answer's
/// `x-ogw-ratelimit-reset`, when it had one.
pub fn classify(code: i64, msg: &str, retry_after: Option<Duration>) -> Failure {
    let reason = format!("code {code}: {msg}");
    match code {
        FREQUENCY_LIMITED | GATEWAY_RATE_LIMIT => Failure::Throttled { reason, retry_after },
        _ => Failure::permanent(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_classified() {
        let reset = Some(Duration::from_secs(3));
        assert_eq!(
            classify(11232, "frequency limited", reset),
            Failure::Throttled { reason: "code 11232: frequency limited".into(), retry_after: reset }
        );
        assert_eq!(
            classify(99991400, "request trigger frequency limit", None),
            Failure::throttled("code 99991400: request trigger frequency limit", None)
        );
        for (code, msg) in [
            (9499, "Bad Request"),
            (19021, "sign match fail or timestamp is not within one hour from current time"),
            (19022, "Ip Not Allowed"),
            (19024, "Key Words Not Found"),
            (12345, "undocumented"),
        ] {
            assert_eq!(classify(code, msg, reset), Failure::permanent(format!("code {code}: {msg}")));
        }
    }
}

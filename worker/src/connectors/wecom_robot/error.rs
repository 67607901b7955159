//! Classification of the robot webhook's `errcode` (docs/providers/wecom.md#group-robot).

use std::time::Duration;

use crate::connectors::call::Failure;

/// "api freq out of limit": the robot's 20-per-minute window is full.
pub const FREQ_OUT_OF_LIMIT: i64 = 45009;
/// "system busy".
pub const SYSTEM_BUSY: i64 = -1;
/// How long the 45009 window lasts.
const RATE_WINDOW: Duration = Duration::from_secs(60);

/// The failure of a non-zero `errcode`. 93000 (webhook invalid or robot removed), 93004 (robot
/// disabled), 93008 (robot not in the group), parameter errors and every undocumented code are
/// permanent: retrying cannot fix a key or a message.
pub fn classify(errcode: i64, errmsg: &str) -> Failure {
    let reason = format!("errcode {errcode}: {errmsg}");
    match errcode {
        FREQ_OUT_OF_LIMIT => Failure::Throttled { reason, retry_after: Some(RATE_WINDOW) },
        SYSTEM_BUSY => Failure::transient(reason),
        _ => Failure::permanent(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errcodes_are_classified() {
        assert_eq!(
            classify(45009, "api freq out of limit"),
            Failure::throttled("errcode 45009: api freq out of limit", Some(Duration::from_secs(60)))
        );
        assert_eq!(classify(-1, "system busy"), Failure::transient("errcode -1: system busy"));
        for (code, message) in [
            (93000, "invalid webhook url"),
            (93004, "robot disabled"),
            (93008, "not in the group"),
            (40008, "invalid message type"),
            (44004, "empty content"),
            (123456, "undocumented"),
        ] {
            assert_eq!(classify(code, message), Failure::permanent(format!("errcode {code}: {message}")));
        }
    }
}

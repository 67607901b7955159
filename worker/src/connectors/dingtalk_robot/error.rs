//! Classification of the DingTalk robot's `errcode` (docs/providers/dingtalk.md#error-codes).

use std::time::Duration;

use crate::connectors::call::Failure;

/// Legacy "send too fast, exceed 20 times per minute".
pub const SEND_TOO_FAST: i64 = 130101;
/// 发送速度太快而限流.
pub const RATE_LIMITED: i64 = 410100;
/// 系统繁忙.
pub const SYSTEM_BUSY: i64 = -1;
/// Security check failed (keywords, sign, IP whitelist, timestamp).
pub const SECURITY_CHECK: i64 = 310000;
/// The robot's minute window; DingTalk may block it longer, then the next retries wait again.
const RATE_WINDOW: Duration = Duration::from_secs(60);

/// The failure of a non-zero `errcode`. Everything not retryable (310000 sign/keywords/IP, 400013,
/// 4001xx, 4301xx, undocumented codes) is permanent: no retry fixes a token or a message.
pub fn classify(errcode: i64, errmsg: &str) -> Failure {
    let reason = format!("errcode {errcode}: {errmsg}");
    match errcode {
        SEND_TOO_FAST | RATE_LIMITED => Failure::Throttled { reason, retry_after: Some(RATE_WINDOW) },
        SYSTEM_BUSY => Failure::transient(reason),
        // A timestamp out of the 1 h window is a clock problem; the next attempt signs afresh.
        SECURITY_CHECK if errmsg.to_ascii_lowercase().contains("timestamp") => Failure::transient(reason),
        _ => Failure::permanent(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errcodes_are_classified() {
        for code in [130101, 410100] {
            assert_eq!(
                classify(code, "send too fast"),
                Failure::Throttled {
                    reason: format!("errcode {code}: send too fast"),
                    retry_after: Some(Duration::from_secs(60)),
                }
            );
        }
        assert_eq!(classify(-1, "系统繁忙"), Failure::transient("errcode -1: 系统繁忙"));
        assert_eq!(classify(310000, "invalid timestamp"), Failure::transient("errcode 310000: invalid timestamp"));
        for (code, message) in [
            (310000, "sign not match"),
            (310000, "keywords not in content"),
            (310000, "ip 1.2.3.4 not in whitelist"),
            (400013, "群已被解散"),
            (400101, "access_token不存在"),
            (400102, "机器人已停用"),
            (400105, "不支持的消息类型"),
            (400106, "机器人不存在"),
            (430101, "含有不安全的外链"),
            (300001, "token is not exist"),
            (123456, "undocumented"),
        ] {
            assert_eq!(classify(code, message), Failure::permanent(format!("errcode {code}: {message}")));
        }
    }
}

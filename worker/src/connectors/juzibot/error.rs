//! Classification of Juzibot answers (docs/providers/juzibot.md#errors): no errcode table is published, so
//! every non-zero `errcode` is permanent; HTTP 429 ("请求太频繁") throttles the config and 5xx are transient.

use crate::connectors::call::Failure;

/// A non-zero `errcode` with its `errmsg`: always permanent (HTTP status is classified before this).
pub fn classify(errcode: i64, errmsg: &str) -> Failure {
    Failure::permanent(format!("errcode {errcode}: {errmsg}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_errcode_is_permanent() {
        for (code, message) in [(-1, "token invalid"), (40001, "invalid credential"), (1, "参数错误")] {
            assert_eq!(classify(code, message), Failure::permanent(format!("errcode {code}: {message}")));
        }
    }
}

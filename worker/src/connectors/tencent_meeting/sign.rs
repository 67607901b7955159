//! The Tencent Meeting request signature (docs/providers/tencent-meeting.md#signature):
//! `Base64(hex(HMAC-SHA256(SecretKey, method\nheaderString\nURI\nbody)))`, base64 of the hex string.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What one request's signature covers.
#[derive(Debug, Clone, Copy)]
pub struct MeetingSignInput<'a> {
    /// The HTTP method in capitals, as sent.
    pub method: &'a str,
    /// The `X-TC-Key` header: the app's SecretId.
    pub secret_id: &'a str,
    /// The `X-TC-Nonce` header: a fresh random number per attempt.
    pub nonce: &'a str,
    /// The `X-TC-Timestamp` header: Unix seconds, as sent.
    pub timestamp: &'a str,
    /// Path plus `?query` exactly as sent (no `?` without a query).
    pub uri: &'a str,
    /// The body exactly as sent; empty for GET.
    pub body: &'a [u8],
}

/// `X-TC-Signature` for `input`.
pub fn signature(secret_key: &str, input: &MeetingSignInput<'_>) -> String {
    let header_string =
        format!("X-TC-Key={}&X-TC-Nonce={}&X-TC-Timestamp={}", input.secret_id, input.nonce, input.timestamp);
    let mut to_sign = format!("{}\n{header_string}\n{}\n", input.method, input.uri).into_bytes();
    to_sign.extend_from_slice(input.body);
    let mut mac = Hmac::<Sha256>::new_from_slice(secret_key.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(&to_sign);
    let hex = hex::encode(mac.finalize().into_bytes());
    base64::engine::general_purpose::STANDARD.encode(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET_ID: &str = "AKIDtestSecretId";
    const SECRET_KEY: &str = "testSecretKey";

    fn input<'a>(method: &'a str, uri: &'a str, body: &'a [u8]) -> MeetingSignInput<'a> {
        MeetingSignInput { method, secret_id: SECRET_ID, nonce: "88080", timestamp: "1572168600", uri, body }
    }

    /// docs/providers/tencent-meeting.md#signature, a vector computed from the description.
    #[test]
    fn cancel_vector() {
        let body = br#"{"userid":"test1","instanceid":1,"reason_code":1,"reason_detail":"cancel"}"#;
        let signature = signature(SECRET_KEY, &input("POST", "/v1/meetings/7567454748865986567/cancel", body));
        assert_eq!(
            signature,
            "NWNjMTE4YTRlYjhkMzkzNDdjOWEyZTgyZTgxYmM4NDQ5NGJjYTBhY2JhYzQzMWZkMmUwM2M1NWFiZjc3MWNlNA=="
        );
    }

    /// docs/providers/tencent-meeting.md#signature, a GET with a query and an empty body.
    #[test]
    fn get_vector() {
        let signature =
            signature(SECRET_KEY, &input("GET", "/v1/meetings/7567173273889276131?instanceid=1&userid=tester1", b""));
        assert_eq!(
            signature,
            "YjVmZjg1MDdiMWNiY2FlZjgyNTJhODE4NmRiYTJiMGIwMDY4MTdlZTBiZmY1NjY4NzZmN2NlYTY5NThkNGViMQ=="
        );
    }
}

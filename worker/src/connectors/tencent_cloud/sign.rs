//! TC3-HMAC-SHA256, the request signature of Tencent Cloud API 3.0 (docs/providers/tencent-cloud.md#signing-tc3-hmac-sha256), shared by
//! every Tencent Cloud API 3.0 connector (SMS `sms` / 2021-01-11, SES `ses` / 2020-10-02).
//!
//! Only `POST /` with an empty query string is signed: that is the one form the JSON APIs use.

use std::fmt;
use std::sync::{Arc, Mutex};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::config::Secret;

const ALGORITHM: &str = "TC3-HMAC-SHA256";

/// Signs requests for one credential and one service.
#[derive(Clone)]
pub struct Tc3Signer {
    secret_id: String,
    secret_key: Secret,
    service: String,
    /// The last derived signing key and the UTC day it is for: deriving takes three HMACs, and a
    /// key serves every request of its day. Never printed.
    signing_key: Arc<Mutex<Option<DayKey>>>,
}

/// A UTC day (days since the epoch) and its signing key.
type DayKey = (i64, [u8; 32]);

impl fmt::Debug for Tc3Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tc3Signer")
            .field("secret_id", &self.secret_id)
            .field("secret_key", &self.secret_key)
            .field("service", &self.service)
            .finish()
    }
}

/// What one request's signature covers.
#[derive(Debug, Clone, Copy)]
pub struct SignInput<'a> {
    /// The `Host` header exactly as sent: `host` or `host:port` for a non-default port.
    pub host: &'a str,
    /// `X-TC-Timestamp`, UNIX seconds; its UTC date goes into the credential scope.
    pub timestamp: i64,
    /// The `Content-Type` header exactly as sent.
    pub content_type: &'a str,
    /// The body bytes exactly as sent.
    pub body: &'a [u8],
    /// Further headers to sign besides `content-type` and `host` (such as `x-tc-action`); usually none.
    pub extra_headers: &'a [(&'a str, &'a str)],
}

impl Tc3Signer {
    /// A signer for one API key and one service (`sms`, `ses`: the credential scope's service).
    pub fn new(secret_id: impl Into<String>, secret_key: Secret, service: impl Into<String>) -> Self {
        Tc3Signer { secret_id: secret_id.into(), secret_key, service: service.into(), signing_key: Arc::default() }
    }

    /// The SecretId, which the `Authorization` header carries in clear (it is not a secret).
    pub fn secret_id(&self) -> &str {
        &self.secret_id
    }

    /// The `Authorization` header value for `input`.
    pub fn authorization(&self, input: &SignInput<'_>) -> String {
        let (canonical, signed_headers) = canonical_request(input);
        let date = utc_date(input.timestamp);
        let scope = format!("{date}/{}/tc3_request", self.service);
        let to_sign = string_to_sign(input.timestamp, &scope, &canonical);
        let signature = hex::encode(hmac_sha256(&self.signing_key(input.timestamp, &date), to_sign.as_bytes()));
        format!(
            "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            self.secret_id
        )
    }

    /// `SecretSigning` of the derived-key chain of docs/providers/tencent-cloud.md#signing-tc3-hmac-sha256,
    /// step 3, for the UTC day of `timestamp` (whose date is `date`).
    fn signing_key(&self, timestamp: i64, date: &str) -> [u8; 32] {
        let day = timestamp.div_euclid(86_400);
        let mut cached = self.signing_key.lock().expect("signing key cache");
        if let Some((cached_day, key)) = *cached
            && cached_day == day
        {
            return key;
        }
        let secret_date = hmac_sha256(format!("TC3{}", self.secret_key.expose()).as_bytes(), date.as_bytes());
        let secret_service = hmac_sha256(&secret_date, self.service.as_bytes());
        let key = hmac_sha256(&secret_service, b"tc3_request");
        *cached = Some((day, key));
        key
    }
}

/// The canonical request and the `SignedHeaders` list. Header names and values are lower-cased and
/// trimmed, then sorted by name, as the signature document requires.
fn canonical_request(input: &SignInput<'_>) -> (String, String) {
    let mut headers: Vec<(String, String)> = [("content-type", input.content_type), ("host", input.host)]
        .iter()
        .chain(input.extra_headers.iter())
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_ascii_lowercase()))
        .collect();
    headers.sort();
    let canonical_headers: String = headers.iter().map(|(name, value)| format!("{name}:{value}\n")).collect();
    let signed_headers = headers.iter().map(|(name, _)| name.as_str()).collect::<Vec<_>>().join(";");
    let canonical = format!("POST\n/\n\n{canonical_headers}\n{signed_headers}\n{}", sha256_hex(input.body));
    (canonical, signed_headers)
}

fn string_to_sign(timestamp: i64, scope: &str, canonical_request: &str) -> String {
    format!("{ALGORITHM}\n{timestamp}\n{scope}\n{}", sha256_hex(canonical_request.as_bytes()))
}

/// `YYYY-MM-DD` of the timestamp in UTC (not local time: a UTC+8 date fails around midnight).
fn utc_date(timestamp: i64) -> String {
    chrono::DateTime::from_timestamp(timestamp, 0).unwrap_or_default().format("%Y-%m-%d").to_string()
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    // The official vector of the Tencent Cloud signature document (docs/providers/tencent-cloud.md#signing-tc3-hmac-sha256).
    const SECRET_ID: &str = "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE";
    const SECRET_KEY: &str = "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE";
    const BODY: &str = r#"{"Limit": 1, "Filters": [{"Values": ["\u672a\u547d\u540d"], "Name": "instance-name"}]}"#;
    const CONTENT_TYPE: &str = "application/json; charset=utf-8";
    const TIMESTAMP: i64 = 1551113065;

    fn input<'a>(extra: &'a [(&'a str, &'a str)]) -> SignInput<'a> {
        SignInput {
            host: "cvm.tencentcloudapi.com",
            timestamp: TIMESTAMP,
            content_type: CONTENT_TYPE,
            body: BODY.as_bytes(),
            extra_headers: extra,
        }
    }

    #[test]
    fn official_vector_intermediate_values() {
        assert_eq!(sha256_hex(BODY.as_bytes()), "35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064");
        let (canonical, signed) = canonical_request(&input(&[]));
        assert_eq!(signed, "content-type;host");
        assert_eq!(
            canonical,
            "POST\n/\n\ncontent-type:application/json; charset=utf-8\nhost:cvm.tencentcloudapi.com\n\ncontent-type;host\n\
             35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
        );
        assert_eq!(
            sha256_hex(canonical.as_bytes()),
            "5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031"
        );
        assert_eq!(utc_date(TIMESTAMP), "2019-02-25");
        assert_eq!(
            string_to_sign(TIMESTAMP, "2019-02-25/cvm/tc3_request", &canonical),
            "TC3-HMAC-SHA256\n1551113065\n2019-02-25/cvm/tc3_request\n\
             5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031"
        );
    }

    #[test]
    fn official_vector_authorization() {
        let signer = Tc3Signer::new(SECRET_ID, Secret::new(SECRET_KEY), "cvm");
        assert_eq!(
            signer.authorization(&input(&[])),
            "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/cvm/tc3_request, \
             SignedHeaders=content-type;host, \
             Signature=72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
        );
    }

    #[test]
    fn x_tc_action_vector_with_masked_key() {
        let extra = [("X-TC-Action", "DescribeInstances")];
        let (canonical, signed) = canonical_request(&input(&extra));
        assert_eq!(signed, "content-type;host;x-tc-action");
        assert!(canonical.contains("\nx-tc-action:describeinstances\n\n"), "{canonical}");
        assert_eq!(
            sha256_hex(canonical.as_bytes()),
            "7019a55be8395899b900fb5564e4200d984910f34794a27cb3fb7d10ff6a1e84"
        );
        let signer = Tc3Signer::new(SECRET_ID, Secret::new("*".repeat(32)), "cvm");
        assert!(
            signer
                .authorization(&input(&extra))
                .ends_with("SignedHeaders=content-type;host;x-tc-action, Signature=10b1a37a7301a02ca19a647ad722d5e43b4b3cff309d421d85b46093f6ab6c4f")
        );
    }

    #[test]
    fn x_tc_action_vector_with_example_key() {
        let signer = Tc3Signer::new(SECRET_ID, Secret::new(SECRET_KEY), "cvm");
        assert!(
            signer
                .authorization(&input(&[("x-tc-action", "DescribeInstances")]))
                .ends_with("Signature=644be983de9a8a3f00db8eadaba61467c3b429e2215758ba897b738ca469fd26")
        );
    }

    #[test]
    fn the_signing_key_follows_the_date() {
        let signer = Tc3Signer::new(SECRET_ID, Secret::new(SECRET_KEY), "cvm");
        let at = |timestamp| SignInput { timestamp, ..input(&[]) };
        // Signed on the next day, then on the vector's day again: each as a fresh signer signs it.
        let next_day = signer.authorization(&at(TIMESTAMP + 86_400));
        assert_eq!(
            next_day,
            Tc3Signer::new(SECRET_ID, Secret::new(SECRET_KEY), "cvm").authorization(&at(TIMESTAMP + 86_400))
        );
        assert!(next_day.contains("/2019-02-26/cvm/"), "{next_day}");
        assert!(
            signer
                .authorization(&input(&[]))
                .ends_with("Signature=72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168")
        );
    }

    #[test]
    fn the_date_is_utc_even_just_before_midnight_in_china() {
        // 2019-02-25T23:30:00Z is already 02-26 in UTC+8; the scope must say 02-25.
        assert_eq!(utc_date(1551137400), "2019-02-25");
        assert_eq!(utc_date(1551139200), "2019-02-26");
    }

    #[test]
    fn debug_hides_the_secret_key() {
        let signer = Tc3Signer::new(SECRET_ID, Secret::new(SECRET_KEY), "ses");
        let debug = format!("{signer:?}");
        assert!(!debug.contains(SECRET_KEY), "{debug}");
        assert!(debug.contains("ses"), "{debug}");
    }
}

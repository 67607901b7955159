//! TC3-HMAC-SHA256, the request signature of Tencent Cloud API 3.0
//! (docs/providers/tencent-cloud.md#signing-tc3-hmac-sha256).
//!
//! The sandbox uses these pieces to *verify* requests: it rebuilds the canonical request from what
//! actually arrived and recomputes the signature with the account's secret key.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// The only algorithm API 3.0 accepts in `Authorization`.
pub const ALGORITHM: &str = "TC3-HMAC-SHA256";
/// Value of `X-TC-Content-SHA256` that makes the signer hash this literal instead of the body.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// Lower-case hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

/// The UTC date (`YYYY-MM-DD`) of a UNIX timestamp, as the credential scope must carry it.
pub fn utc_date(timestamp: i64) -> Option<String> {
    chrono::DateTime::from_timestamp(timestamp, 0).map(|t| t.format("%Y-%m-%d").to_string())
}

/// `Date/service/tc3_request`.
pub fn credential_scope(date: &str, service: &str) -> String {
    format!("{date}/{service}/tc3_request")
}

/// The canonical request. `signed` holds `(lower-case header name, raw value)` in `SignedHeaders`
/// order; values are trimmed and lower-cased here, as the signature documentation requires.
pub fn canonical_request(method: &str, uri: &str, query: &str, signed: &[(&str, &str)], payload_hash: &str) -> String {
    let canonical_headers: String =
        signed.iter().map(|(name, value)| format!("{name}:{}\n", value.trim().to_lowercase())).collect();
    let signed_headers = signed.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(";");
    format!("{method}\n{uri}\n{query}\n{canonical_headers}\n{signed_headers}\n{payload_hash}")
}

/// `TC3-HMAC-SHA256\n<timestamp>\n<scope>\n<hex sha256 of the canonical request>`.
pub fn string_to_sign(timestamp: i64, scope: &str, canonical_request: &str) -> String {
    format!("{ALGORITHM}\n{timestamp}\n{scope}\n{}", sha256_hex(canonical_request.as_bytes()))
}

/// The hex signature: HMAC chain `"TC3"+key` → date → service → `tc3_request` → string to sign.
pub fn signature(secret_key: &str, date: &str, service: &str, string_to_sign: &str) -> String {
    let secret_date = hmac_sha256(format!("TC3{secret_key}").as_bytes(), date.as_bytes());
    let secret_service = hmac_sha256(&secret_date, service.as_bytes());
    let secret_signing = hmac_sha256(&secret_service, b"tc3_request");
    hex::encode(hmac_sha256(&secret_signing, string_to_sign.as_bytes()))
}

/// Why an `Authorization` header could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthorizationError {
    /// Not the `TC3-HMAC-SHA256` algorithm.
    #[error("the Authorization header must start with `TC3-HMAC-SHA256 `")]
    Algorithm,
    /// `Credential`, `SignedHeaders` or `Signature` (named) is absent.
    #[error("the Authorization header lacks `{0}=`")]
    MissingPart(&'static str),
    /// A part other than those three, a repeated one, or one without `=`.
    #[error("the Authorization header has an unknown or repeated part `{0}`")]
    UnknownPart(String),
    /// `Credential` is not four non-empty `/`-separated fields ending in `tc3_request`.
    #[error("the credential must be `SecretId/Date/service/tc3_request`")]
    Credential,
    /// `SignedHeaders` is not lower-case, sorted and free of duplicates.
    #[error("SignedHeaders must be lower-case, `;`-separated, sorted and without duplicates")]
    SignedHeaders,
    /// `Signature` is not 64 lower-case hex digits.
    #[error("the signature must be 64 lower-case hex digits")]
    Signature,
}

/// A parsed `Authorization: TC3-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// First `Credential` field: whose key signed.
    pub secret_id: String,
    /// Second `Credential` field: the UTC date (`YYYY-MM-DD`) of `X-TC-Timestamp`, first HMAC link.
    pub date: String,
    /// Third `Credential` field, e.g. `sms` or `ses`.
    pub service: String,
    /// `SignedHeaders`, split on `;`: lower-case names, sorted.
    pub signed_headers: Vec<String>,
    /// `Signature`: 64 lower-case hex digits.
    pub signature: String,
}

impl Authorization {
    /// Parses the header's syntax only; whether the signature is right is checked elsewhere.
    pub fn parse(header: &str) -> Result<Self, AuthorizationError> {
        let rest =
            header.strip_prefix(ALGORITHM).and_then(|r| r.strip_prefix(' ')).ok_or(AuthorizationError::Algorithm)?;
        let (mut credential, mut signed_headers, mut signature) = (None, None, None);
        for part in rest.split(',').map(str::trim) {
            let (name, value) =
                part.split_once('=').ok_or_else(|| AuthorizationError::UnknownPart(part.to_string()))?;
            let slot = match name {
                "Credential" => &mut credential,
                "SignedHeaders" => &mut signed_headers,
                "Signature" => &mut signature,
                _ => return Err(AuthorizationError::UnknownPart(name.to_string())),
            };
            if slot.replace(value).is_some() {
                return Err(AuthorizationError::UnknownPart(name.to_string()));
            }
        }
        let credential = credential.ok_or(AuthorizationError::MissingPart("Credential"))?;
        let signed_headers = signed_headers.ok_or(AuthorizationError::MissingPart("SignedHeaders"))?;
        let signature = signature.ok_or(AuthorizationError::MissingPart("Signature"))?;

        let fields: Vec<&str> = credential.split('/').collect();
        let [secret_id, date, service, terminator] = fields[..] else {
            return Err(AuthorizationError::Credential);
        };
        if secret_id.is_empty() || date.is_empty() || service.is_empty() || terminator != "tc3_request" {
            return Err(AuthorizationError::Credential);
        }

        let signed: Vec<String> = signed_headers.split(';').map(str::to_string).collect();
        let well_formed = signed.iter().all(|h| !h.is_empty() && *h == h.to_ascii_lowercase())
            && signed.windows(2).all(|w| w[0] < w[1]);
        if !well_formed {
            return Err(AuthorizationError::SignedHeaders);
        }

        let hex_ok =
            signature.len() == 64 && signature.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !hex_ok {
            return Err(AuthorizationError::Signature);
        }

        Ok(Self {
            secret_id: secret_id.to_string(),
            date: date.to_string(),
            service: service.to_string(),
            signed_headers: signed,
            signature: signature.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    //! The official vector of the Signature v3 documentation
    //! (docs/providers/tencent-cloud.md#signing-tc3-hmac-sha256).
    use super::*;

    const SECRET_KEY: &str = "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE";
    const TIMESTAMP: i64 = 1_551_113_065;
    const CONTENT_TYPE: &str = "application/json; charset=utf-8";
    const HOST: &str = "cvm.tencentcloudapi.com";
    const BODY: &str = r#"{"Limit": 1, "Filters": [{"Values": ["\u672a\u547d\u540d"], "Name": "instance-name"}]}"#;

    fn sign(secret_key: &str, signed: &[(&str, &str)]) -> (String, String) {
        let canonical = canonical_request("POST", "/", "", signed, &sha256_hex(BODY.as_bytes()));
        let date = utc_date(TIMESTAMP).unwrap();
        let sts = string_to_sign(TIMESTAMP, &credential_scope(&date, "cvm"), &canonical);
        (canonical, signature(secret_key, &date, "cvm", &sts))
    }

    #[test]
    fn payload_hash_and_date_match_the_vector() {
        assert_eq!(sha256_hex(BODY.as_bytes()), "35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064");
        assert_eq!(utc_date(TIMESTAMP).as_deref(), Some("2019-02-25"));
    }

    #[test]
    fn official_vector_without_action_header() {
        let (canonical, sig) = sign(SECRET_KEY, &[("content-type", CONTENT_TYPE), ("host", HOST)]);
        assert_eq!(
            canonical,
            "POST\n/\n\ncontent-type:application/json; charset=utf-8\nhost:cvm.tencentcloudapi.com\n\n\
             content-type;host\n35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
        );
        assert_eq!(
            sha256_hex(canonical.as_bytes()),
            "5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031"
        );
        assert_eq!(
            string_to_sign(TIMESTAMP, "2019-02-25/cvm/tc3_request", &canonical),
            "TC3-HMAC-SHA256\n1551113065\n2019-02-25/cvm/tc3_request\n\
             5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031"
        );
        assert_eq!(sig, "72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168");
    }

    #[test]
    fn vectors_with_signed_action_header() {
        let signed = [("content-type", CONTENT_TYPE), ("host", HOST), ("x-tc-action", "DescribeInstances")];
        let (canonical, sig) = sign(&"*".repeat(32), &signed);
        assert!(canonical.contains("\nx-tc-action:describeinstances\n"));
        assert_eq!(
            sha256_hex(canonical.as_bytes()),
            "7019a55be8395899b900fb5564e4200d984910f34794a27cb3fb7d10ff6a1e84"
        );
        assert_eq!(sig, "10b1a37a7301a02ca19a647ad722d5e43b4b3cff309d421d85b46093f6ab6c4f");

        let (_, sig) = sign(SECRET_KEY, &signed);
        assert_eq!(sig, "644be983de9a8a3f00db8eadaba61467c3b429e2215758ba897b738ca469fd26");
    }

    #[test]
    fn parses_the_vector_authorization() {
        let header = "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/cvm/tc3_request, \
                      SignedHeaders=content-type;host, \
                      Signature=72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168";
        let auth = Authorization::parse(header).unwrap();
        assert_eq!(auth.secret_id, "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE");
        assert_eq!(auth.date, "2019-02-25");
        assert_eq!(auth.service, "cvm");
        assert_eq!(auth.signed_headers, ["content-type", "host"]);
    }

    #[test]
    fn rejects_malformed_authorizations() {
        let sig = "72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168";
        let cases = [
            (
                format!("HMAC-SHA1 Credential=a/b/c/tc3_request, SignedHeaders=host, Signature={sig}"),
                AuthorizationError::Algorithm,
            ),
            (
                format!("TC3-HMAC-SHA256 Credential=a/b/c/tc3_request, Signature={sig}"),
                AuthorizationError::MissingPart("SignedHeaders"),
            ),
            (
                format!("TC3-HMAC-SHA256 Credential=a/b/c, SignedHeaders=host, Signature={sig}"),
                AuthorizationError::Credential,
            ),
            (
                format!(
                    "TC3-HMAC-SHA256 Credential=a/b/c/tc3_request, SignedHeaders=host;content-type, Signature={sig}"
                ),
                AuthorizationError::SignedHeaders,
            ),
            (
                format!("TC3-HMAC-SHA256 Credential=a/b/c/tc3_request, SignedHeaders=Host, Signature={sig}"),
                AuthorizationError::SignedHeaders,
            ),
            (
                "TC3-HMAC-SHA256 Credential=a/b/c/tc3_request, SignedHeaders=host, Signature=ABC".to_string(),
                AuthorizationError::Signature,
            ),
            (
                format!("TC3-HMAC-SHA256 Credential=a/b/c/tc3_request, SignedHeaders=host, Signature={sig}, Extra=1"),
                AuthorizationError::UnknownPart("Extra".into()),
            ),
        ];
        for (header, expected) in cases {
            assert_eq!(Authorization::parse(&header), Err(expected), "{header}");
        }
    }
}

//! Helpers for the integration tests: a sandbox on a free port, an HTTP client, and a client-side
//! TC3-HMAC-SHA256 signer written independently of the sandbox's verifier.
#![allow(dead_code)]

use std::sync::Once;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};
use yizhan_sandbox::{DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY, Sandbox, SandboxConfig};

pub(crate) const WAIT: Duration = Duration::from_secs(5);

pub(crate) async fn start() -> Sandbox {
    start_with(SandboxConfig::default_accounts()).await
}

pub(crate) async fn start_with(config: SandboxConfig) -> Sandbox {
    Sandbox::start(config, "127.0.0.1:0".parse().unwrap()).await.expect("sandbox starts")
}

pub(crate) fn client() -> reqwest::Client {
    static PROVIDER: Once = Once::new();
    PROVIDER.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap()
}

pub(crate) fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// One Tencent Cloud API call, signed the way the SDKs do it.
#[derive(Debug, Clone)]
pub(crate) struct Tc3 {
    pub secret_id: String,
    pub secret_key: String,
    pub service: String,
    pub action: String,
    pub version: String,
    pub region: Option<String>,
    pub timestamp: i64,
    pub content_type: String,
    /// Also sign `x-tc-action` (the newer documentation's variant).
    pub sign_action: bool,
    /// Credential date to use instead of the timestamp's UTC date.
    pub scope_date: Option<String>,
    /// Send `X-TC-Content-SHA256: UNSIGNED-PAYLOAD` and sign that literal.
    pub unsigned_payload: bool,
}

impl Default for Tc3 {
    fn default() -> Self {
        Self {
            secret_id: DEFAULT_SECRET_ID.into(),
            secret_key: DEFAULT_SECRET_KEY.into(),
            service: "sms".into(),
            action: "SendSms".into(),
            version: "2021-01-11".into(),
            region: Some("ap-guangzhou".into()),
            timestamp: now(),
            content_type: "application/json".into(),
            sign_action: false,
            scope_date: None,
            unsigned_payload: false,
        }
    }
}

impl Tc3 {
    pub(crate) fn authorization(&self, host: &str, body: &str) -> String {
        let date = self.scope_date.clone().unwrap_or_else(|| {
            chrono::DateTime::from_timestamp(self.timestamp, 0).unwrap().format("%Y-%m-%d").to_string()
        });
        let mut headers = format!("content-type:{}\nhost:{}\n", self.content_type.to_lowercase(), host);
        let mut signed = String::from("content-type;host");
        if self.sign_action {
            headers.push_str(&format!("x-tc-action:{}\n", self.action.to_lowercase()));
            signed.push_str(";x-tc-action");
        }
        let payload = if self.unsigned_payload { "UNSIGNED-PAYLOAD" } else { body };
        let canonical = format!("POST\n/\n\n{headers}\n{signed}\n{}", sha256_hex(payload.as_bytes()));
        let scope = format!("{date}/{}/tc3_request", self.service);
        let to_sign = format!("TC3-HMAC-SHA256\n{}\n{scope}\n{}", self.timestamp, sha256_hex(canonical.as_bytes()));
        let key = hmac(format!("TC3{}", self.secret_key).as_bytes(), &date);
        let key = hmac(&key, &self.service);
        let key = hmac(&key, "tc3_request");
        let signature = hex::encode(hmac(&key, &to_sign));
        format!("TC3-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}", self.secret_id)
    }

    /// Signs `signed_body` but sends `sent_body`; returns the HTTP response.
    pub(crate) async fn send_raw(&self, sandbox: &Sandbox, signed_body: &str, sent_body: &str) -> reqwest::Response {
        self.send_to(&sandbox.url(), &sandbox.addr().to_string(), signed_body, sent_body).await
    }

    /// [`Tc3::send_raw`] for a sandbox at `url` whose `Host` is `host` (usable in spawned tasks).
    pub(crate) async fn send_to(&self, url: &str, host: &str, signed_body: &str, sent_body: &str) -> reqwest::Response {
        let mut request = client()
            .post(format!("{url}/"))
            .header("Content-Type", &self.content_type)
            .header("X-TC-Action", &self.action)
            .header("X-TC-Version", &self.version)
            .header("X-TC-Timestamp", self.timestamp.to_string())
            .header("Authorization", self.authorization(host, signed_body))
            .body(sent_body.to_string());
        if let Some(region) = &self.region {
            request = request.header("X-TC-Region", region);
        }
        if self.unsigned_payload {
            request = request.header("X-TC-Content-SHA256", "UNSIGNED-PAYLOAD");
        }
        request.send().await.expect("request reaches the sandbox")
    }

    /// Sends `body` signed; expects HTTP 200 and returns the JSON.
    pub(crate) async fn send(&self, sandbox: &Sandbox, body: &Value) -> Value {
        let body = body.to_string();
        let response = self.send_raw(sandbox, &body, &body).await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }
}

/// `Response.Error.Code`, if the answer is an error.
pub(crate) fn error_code(answer: &Value) -> Option<&str> {
    answer.pointer("/Response/Error/Code").and_then(Value::as_str)
}

/// Every `SendStatusSet[].Code`.
pub(crate) fn status_codes(answer: &Value) -> Vec<String> {
    answer
        .pointer("/Response/SendStatusSet")
        .and_then(Value::as_array)
        .map(|set| set.iter().map(|s| s["Code"].as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// A valid SendSms body with the default app, signature and template 1001.
pub(crate) fn sms_body(phones: &[&str]) -> Value {
    serde_json::json!({
        "PhoneNumberSet": phones,
        "SmsSdkAppId": "1400000000",
        "SignName": "Yizhan",
        "TemplateId": "1001",
        "TemplateParamSet": ["123456"],
    })
}

/// POSTs JSON to a robot endpoint; expects HTTP 200 and returns the JSON.
pub(crate) async fn robot_post(sandbox: &Sandbox, key: &str, body: &Value) -> Value {
    let response = client()
        .post(format!("{}/cgi-bin/webhook/send", sandbox.url()))
        .query(&[("key", key)])
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

pub(crate) fn errcode(answer: &Value) -> i64 {
    answer["errcode"].as_i64().expect("errcode is a number")
}

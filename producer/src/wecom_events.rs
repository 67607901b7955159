//! `GET|POST /v1/events/wecom/{config}`: WeCom's contact-change callback (issue 21, item 4;
//! docs/providers/wecom.md#change-events).
//!
//! The route is open (WeCom sends no bearer token); the config's `callback_token` and
//! `encoding_aes_key` authenticate it as WeCom's crypto scheme says (the official WXBizMsgCrypt
//! sample): `msg_signature` = hex SHA-1 of the sorted concatenation of token, `timestamp`,
//! `nonce` and the ciphertext; the ciphertext is base64 of AES-256-CBC (key =
//! base64(EncodingAESKey + "="), IV = the key's first 16 bytes, PKCS#7 padding to 32 bytes) of
//! `random(16) ‖ length(4, big-endian) ‖ message ‖ receiveid`, where receiveid is the corp id.
//! An unknown config, a wrong signature or a ciphertext that does not open get the same 401.
//!
//! `GET ?msg_signature&timestamp&nonce&echostr` is the URL check: the answer is the decrypted
//! echostr. `POST` carries `<xml><Encrypt>…</Encrypt></xml>`; a `change_contact` event enqueues an
//! incremental `run` of every directory_sync config whose source is this config, debounced
//! fleet-wide: events of one [`DEBOUNCE`] window share an idempotency key and a `send_at` at the
//! window's end, so they cause one run, which reads the directory after them.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockDecryptMut, KeyIvInit};
use serde::Deserialize;
use serde_json::json;
use sha1::{Digest, Sha1};
use tokio::sync::OnceCell;
use tracing::{info, warn};
use yizhan_schemas::MissingId;

use crate::Producer;
use crate::receipts::{ReceiptConfigError, resolve};

/// The route, as `ROUTES` and `openapi.json` list it.
pub const ROUTE: &str = "/v1/events/wecom/{config}";

/// Events within one window cause one run, at the window's end.
pub const DEBOUNCE: Duration = Duration::from_secs(3);

type Aes256CbcDec = cbc::Decryptor<aes::Aes256>;

/// WeCom's EncodingAESKey is 43 random base64 characters: its last one may carry bits that a
/// strict decoder refuses (the official sample's key does), so they are allowed, as the sample's
/// decoders allow them.
const KEY_BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

/// One callback config: its token, AES key, corp id and the syncs reading it.
#[derive(Clone)]
struct Callback {
    token: String,
    key: [u8; 32],
    corp_id: String,
    syncs: Vec<String>,
}

/// The callback settings of every `wecom` config that has them, by config name.
#[derive(Default)]
pub struct WecomCallbacks {
    /// Swapped whole by a reload: a callback in progress keeps the settings it started with.
    configs: ArcSwap<BTreeMap<String, Arc<Callback>>>,
}

impl std::fmt::Debug for WecomCallbacks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WecomCallbacks").field("configs", &self.configs.load().keys().collect::<Vec<_>>()).finish()
    }
}

/// `base64(EncodingAESKey + "=")`: 43 characters become the 32-byte AES key.
pub fn aes_key(encoding_aes_key: &str) -> Result<[u8; 32], String> {
    if encoding_aes_key.len() != 43 {
        return Err("must be the 43 characters WeCom shows".into());
    }
    let bytes = KEY_BASE64.decode(format!("{encoding_aes_key}=")).map_err(|_| "is not base64".to_string())?;
    bytes.try_into().map_err(|_| "does not decode to 32 bytes".to_string())
}

/// WeCom's `msg_signature`: hex SHA-1 of the sorted, concatenated parts.
pub fn signature(token: &str, timestamp: &str, nonce: &str, encrypted: &str) -> String {
    let mut parts = [token, timestamp, nonce, encrypted];
    parts.sort_unstable();
    Sha1::digest(parts.concat().as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The message inside a ciphertext, when it opens with `key` and names `receive_id`.
pub fn decrypt(key: &[u8; 32], encrypted: &str, receive_id: &str) -> Option<String> {
    let mut data = base64::engine::general_purpose::STANDARD.decode(encrypted).ok()?;
    if data.is_empty() || data.len() % 16 != 0 {
        return None;
    }
    let plain =
        Aes256CbcDec::new(key.as_slice().into(), key[..16].into()).decrypt_padded_mut::<NoPadding>(&mut data).ok()?;
    // PKCS#7 to a 32-byte block, as the sample pads.
    let pad = usize::from(*plain.last()?);
    if !(1..=32).contains(&pad) || pad > plain.len() {
        return None;
    }
    let content = &plain[..plain.len() - pad];
    let length = u32::from_be_bytes(content.get(16..20)?.try_into().ok()?) as usize;
    let message = content.get(20..20 + length)?;
    let tail = content.get(20 + length..)?;
    (tail == receive_id.as_bytes()).then(|| String::from_utf8(message.to_vec()).ok()).flatten()
}

/// The text of `<name>` in WeCom's flat XML (CDATA or not); None when absent.
pub fn xml_field<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&format!("</{name}>"))?;
    let text = &xml[start..end];
    Some(text.strip_prefix("<![CDATA[").and_then(|t| t.strip_suffix("]]>")).unwrap_or(text))
}

impl WecomCallbacks {
    /// Reads the callback settings from the connector config file; a missing file yields none
    /// (every event is refused), one that does not parse is an error.
    pub fn load(path: &Path) -> Result<WecomCallbacks, ReceiptConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, &|var| std::env::var(var).ok()).map_err(|e| match e {
                ReceiptConfigError::Parse { reason, .. } => {
                    ReceiptConfigError::Parse { path: path.display().to_string(), reason }
                }
                field @ ReceiptConfigError::Field { .. } => field,
            }),
            Err(_) => Ok(WecomCallbacks::default()),
        }
    }

    /// The settings of config text: `callback_token` and `encoding_aes_key` of each `wecom` config
    /// (both or neither), and the `directory_sync` configs whose `source` is that config.
    pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<WecomCallbacks, ReceiptConfigError> {
        let root: toml::Table = toml::from_str(text)
            .map_err(|e| ReceiptConfigError::Parse { path: "<text>".into(), reason: e.message().to_string() })?;
        let kind = |kind: &str| root.get("connectors").and_then(|c| c.get(kind)).and_then(toml::Value::as_table);
        let mut configs = BTreeMap::new();
        for (name, table) in kind("wecom").into_iter().flatten() {
            let field = |field: &str| table.get(field).and_then(toml::Value::as_str);
            let (token, encoding_key) = match (field("callback_token"), field("encoding_aes_key")) {
                (None, None) => continue,
                (Some(token), Some(key)) => (token, key),
                (token, _) => {
                    let missing = if token.is_none() { "callback_token" } else { "encoding_aes_key" };
                    return Err(ReceiptConfigError::Field {
                        at: format!("connectors.wecom.{name}.{missing}"),
                        reason: "is required with the other callback setting".into(),
                    });
                }
            };
            let at = |f: &str| format!("connectors.wecom.{name}.{f}");
            let token =
                resolve(token, env).map_err(|reason| ReceiptConfigError::Field { at: at("callback_token"), reason })?;
            if token.is_empty() {
                return Err(ReceiptConfigError::Field { at: at("callback_token"), reason: "is empty".into() });
            }
            let key = resolve(encoding_key, env)
                .and_then(|key| aes_key(&key))
                .map_err(|reason| ReceiptConfigError::Field { at: at("encoding_aes_key"), reason })?;
            let corp_id = field("corp_id").unwrap_or_default().to_string();
            configs.insert(name.clone(), Callback { token, key, corp_id, syncs: Vec::new() });
        }
        for (sync, table) in kind("directory_sync").into_iter().flatten() {
            let source = table.get("source").and_then(toml::Value::as_str).unwrap_or_default();
            if let Some(callback) = source.strip_prefix("wecom.").and_then(|name| configs.get_mut(name)) {
                callback.syncs.push(sync.clone());
            }
        }
        let configs = configs.into_iter().map(|(name, callback)| (name, Arc::new(callback))).collect();
        Ok(WecomCallbacks { configs: ArcSwap::from_pointee(configs) })
    }

    /// Puts `fresh`'s settings in force (a reload: tokens and AES keys rotate, configs come and go).
    pub fn replace(&self, fresh: WecomCallbacks) {
        self.configs.store(fresh.configs.into_inner());
    }

    /// The message of a callback to `config`, when its signature and ciphertext are WeCom's.
    fn open(&self, config: &str, query: &Signed, encrypted: &str) -> Option<(Arc<Callback>, String)> {
        let callback = self.configs.load().get(config)?.clone();
        let expected = signature(&callback.token, &query.timestamp, &query.nonce, encrypted);
        // Constant time in the signature.
        let same = expected.len() == query.msg_signature.len()
            && expected.bytes().zip(query.msg_signature.bytes()).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0;
        if !same {
            return None;
        }
        decrypt(&callback.key, encrypted, &callback.corp_id).map(|message| (callback, message))
    }
}

/// What the event route needs of the API's state.
#[derive(Clone)]
pub struct EventState {
    /// The broker connection, once made.
    pub producer: Arc<OnceCell<Producer>>,
    /// The callback settings.
    pub callbacks: Arc<WecomCallbacks>,
}

/// The signed query of both methods.
#[derive(Debug, Deserialize)]
pub struct Signed {
    #[serde(default)]
    msg_signature: String,
    #[serde(default)]
    timestamp: String,
    #[serde(default)]
    nonce: String,
    #[serde(default)]
    echostr: Option<String>,
}

fn refused() -> Response {
    (StatusCode::UNAUTHORIZED, "unknown config or bad signature").into_response()
}

/// `GET`: the URL check; answers the decrypted `echostr`.
pub async fn verify_url(
    State(state): State<EventState>,
    UrlPath(config): UrlPath<String>,
    Query(query): Query<Signed>,
) -> Response {
    let echostr = query.echostr.clone().unwrap_or_default();
    match state.callbacks.open(&config, &query, &echostr) {
        Some((_, message)) => message.into_response(),
        None => refused(),
    }
}

/// `POST`: an event; a contact change enqueues the syncs of the config.
pub async fn post_event(
    State(state): State<EventState>,
    UrlPath(config): UrlPath<String>,
    Query(query): Query<Signed>,
    body: Bytes,
) -> Response {
    let body = String::from_utf8_lossy(&body);
    let Some(encrypted) = xml_field(&body, "Encrypt") else {
        return refused();
    };
    let Some((callback, message)) = state.callbacks.open(&config, &query, encrypted) else {
        return refused();
    };
    let event = xml_field(&message, "Event").unwrap_or_default();
    let change = xml_field(&message, "ChangeType").unwrap_or_default().to_string();
    if event != "change_contact" {
        return "success".into_response();
    }
    let Some(producer) = state.producer.get() else {
        // WeCom retries an event that is not answered in time.
        return (StatusCode::SERVICE_UNAVAILABLE, "the broker is unreachable").into_response();
    };
    for sync in &callback.syncs {
        if let Err(reason) = enqueue(producer, sync).await {
            warn!(config = %config, sync = %sync, reason = %reason, "cannot enqueue the sync of a WeCom change");
            return (StatusCode::SERVICE_UNAVAILABLE, "cannot enqueue the sync").into_response();
        }
    }
    info!(config = %config, change = %change, syncs = callback.syncs.len(), "WeCom contact change");
    "success".into_response()
}

/// Enqueues the incremental run of `sync` for the current debounce window.
async fn enqueue(producer: &Producer, sync: &str) -> Result<(), String> {
    let window = DEBOUNCE.as_millis() as i64;
    let now = chrono::Utc::now().timestamp_millis();
    let end = (now / window + 1) * window;
    let send_at = chrono::DateTime::from_timestamp_millis(end).ok_or("the clock is out of range")?;
    let value = json!({
        "connector": "directory_sync", "config": sync, "action": "run", "params": {},
        "idempotency_key": format!("directory_sync:{sync}:wecom-event:{end}"), "send_at": send_at.to_rfc3339(),
    });
    let job = yizhan_schemas::validate_job_value(&value, MissingId::Assign).map_err(|e| format!("{e:?}"))?;
    producer.submit(&job).await.map(|_| ()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The official sample's URL-check vector (WXBizMsgCrypt, every language's sample and test).
    const TOKEN: &str = "QDG6eK";
    const ENCODING_AES_KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
    const CORP_ID: &str = "wx5823bf96d3bd56c7";
    const ECHOSTR: &str = "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ==";

    #[test]
    fn the_official_url_check_vector_verifies_and_decrypts() {
        assert_eq!(signature(TOKEN, "1409659589", "263014780", ECHOSTR), "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3");
        let key = aes_key(ENCODING_AES_KEY).unwrap();
        assert_eq!(decrypt(&key, ECHOSTR, CORP_ID).as_deref(), Some("1616140317555161061"));
        assert_eq!(decrypt(&key, ECHOSTR, "another-corp"), None, "the receiveid must match");
        let mut other = key;
        other[0] ^= 1;
        assert_eq!(decrypt(&other, ECHOSTR, CORP_ID), None);
    }

    #[test]
    fn settings_name_their_field_and_find_the_syncs() {
        let text = format!(
            r#"
            [connectors.wecom.hr]
            corp_id = "{CORP_ID}"
            callback_token = "{TOKEN}"
            encoding_aes_key = "{ENCODING_AES_KEY}"
            [connectors.directory_sync.mirror]
            source = "wecom.hr"
            [connectors.directory_sync.other]
            source = "feishu.x"
        "#
        );
        let callbacks = WecomCallbacks::parse(&text, &|_| None).unwrap();
        assert_eq!(callbacks.configs.load()["hr"].syncs, ["mirror"]);
        let bad = text.replace(ENCODING_AES_KEY, "short");
        let error = WecomCallbacks::parse(&bad, &|_| None).unwrap_err().to_string();
        assert!(error.starts_with("connectors.wecom.hr.encoding_aes_key"), "{error}");
        let half = text.replace(&format!("callback_token = \"{TOKEN}\""), "");
        assert!(WecomCallbacks::parse(&half, &|_| None).unwrap_err().to_string().contains("callback_token"));
        assert!(!format!("{callbacks:?}").contains(TOKEN));
    }

    #[test]
    fn a_reload_rotates_the_callback_token_for_the_next_event() {
        let settings = |token: &str| {
            format!(
                "[connectors.wecom.hr]\ncorp_id = \"{CORP_ID}\"\ncallback_token = \"{token}\"\nencoding_aes_key = \"{ENCODING_AES_KEY}\"\n"
            )
        };
        let signed = |token: &str| Signed {
            msg_signature: signature(token, "1409659589", "263014780", ECHOSTR),
            timestamp: "1409659589".into(),
            nonce: "263014780".into(),
            echostr: None,
        };
        let callbacks = WecomCallbacks::parse(&settings(TOKEN), &|_| None).unwrap();
        assert!(callbacks.open("hr", &signed(TOKEN), ECHOSTR).is_some());
        callbacks.replace(WecomCallbacks::parse(&settings("rotated"), &|_| None).unwrap());
        assert!(callbacks.open("hr", &signed(TOKEN), ECHOSTR).is_none(), "the old token is refused");
        let (_, message) = callbacks.open("hr", &signed("rotated"), ECHOSTR).expect("the new token");
        assert_eq!(message, "1616140317555161061");
        callbacks.replace(WecomCallbacks::default());
        assert!(callbacks.open("hr", &signed("rotated"), ECHOSTR).is_none(), "a removed config takes no event");
    }

    #[test]
    fn xml_fields_are_read_with_or_without_cdata() {
        let xml = "<xml><ToUserName><![CDATA[corp]]></ToUserName><AgentID>7</AgentID></xml>";
        assert_eq!(xml_field(xml, "ToUserName"), Some("corp"));
        assert_eq!(xml_field(xml, "AgentID"), Some("7"));
        assert_eq!(xml_field(xml, "Encrypt"), None);
    }
}

//! WeCom's contact-change callback, sent by the sandbox when a test edits its WeCom directory
//! ([`crate::SandboxState::edit_wecom_directory`] with a callback set through
//! [`crate::SandboxState::set_wecom_callback`]): one `change_contact` event per changed department
//! (`create_party`, `update_party`, `delete_party`) and member (`create_user`, `update_user`,
//! `delete_user`), encrypted and signed as WeCom does (docs/providers/wecom.md#change-events).
//!
//! This is the provider's side, written apart from the producer's verifier on purpose: a fake
//! sharing the client's code would agree with its mistakes. Both are checked against the
//! official WXBizMsgCrypt sample's vector.

use std::time::Duration;

use base64::Engine;
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockEncryptMut, KeyIvInit};
use rand::Rng;
use sha1::{Digest, Sha1};

use crate::directory::Directory;

/// Where and how the sandbox's corp sends change events.
#[derive(Debug, Clone)]
pub struct WecomCallback {
    /// The receiver, e.g. `http://127.0.0.1:8080/v1/events/wecom/hr`.
    pub url: String,
    /// The callback's Token.
    pub token: String,
    /// The callback's EncodingAESKey (43 characters).
    pub encoding_aes_key: String,
    /// The receiveid of the ciphertext: the corp id.
    pub corp_id: String,
}

/// What the receiver answered one event: (ChangeType, HTTP status; 0 when it was not reached).
pub type SentEvent = (String, u16);

type Aes256CbcEnc = cbc::Encryptor<aes::Aes256>;

/// WeCom's EncodingAESKey is 43 random base64 characters: its last one may carry bits that a
/// strict decoder refuses (the official sample's key does), so they are allowed, as the sample's
/// decoders allow them.
const KEY_BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

/// WeCom's `msg_signature`: hex SHA-1 of the sorted, concatenated parts.
pub fn signature(token: &str, timestamp: &str, nonce: &str, encrypted: &str) -> String {
    let mut parts = [token, timestamp, nonce, encrypted];
    parts.sort_unstable();
    Sha1::digest(parts.concat().as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Base64 of AES-256-CBC of `random ‖ len(message) (4 bytes, big-endian) ‖ message ‖ corp_id`,
/// PKCS#7-padded to 32 bytes; key = base64(EncodingAESKey + "="), IV = its first 16 bytes. None
/// when the EncodingAESKey is not one.
pub fn encrypt(encoding_aes_key: &str, random: [u8; 16], message: &str, corp_id: &str) -> Option<String> {
    let key = KEY_BASE64.decode(format!("{encoding_aes_key}=")).ok()?;
    let key: [u8; 32] = key.try_into().ok()?;
    let mut plain = random.to_vec();
    plain.extend_from_slice(&(message.len() as u32).to_be_bytes());
    plain.extend_from_slice(message.as_bytes());
    plain.extend_from_slice(corp_id.as_bytes());
    let pad = 32 - plain.len() % 32;
    plain.extend(std::iter::repeat_n(pad as u8, pad));
    let length = plain.len();
    let encrypted = Aes256CbcEnc::new(key.as_slice().into(), key[..16].into())
        .encrypt_padded_mut::<NoPadding>(&mut plain, length)
        .ok()?
        .to_vec();
    Some(base64::engine::general_purpose::STANDARD.encode(encrypted))
}

/// The `change_contact` events that turn `before` into `after`: (ChangeType, the event's XML).
pub(crate) fn changes(before: &Directory, after: &Directory, corp_id: &str, now: i64) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut event = |change: &str, field: &str, id: &str| {
        let xml = format!(
            "<xml><ToUserName><![CDATA[{corp_id}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>\
             <CreateTime>{now}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[change_contact]]></Event>\
             <ChangeType><![CDATA[{change}]]></ChangeType><{field}><![CDATA[{id}]]></{field}></xml>"
        );
        out.push((change.to_string(), xml));
    };
    for (id, department) in &after.departments {
        match before.departments.get(id) {
            None => event("create_party", "Id", id),
            Some(old) if old != department => event("update_party", "Id", id),
            Some(_) => {}
        }
    }
    for (id, member) in &after.members {
        match before.members.get(id) {
            None => event("create_user", "UserID", id),
            Some(old) if old != member => event("update_user", "UserID", id),
            Some(_) => {}
        }
    }
    for id in before.members.keys().filter(|id| !after.members.contains_key(*id)) {
        event("delete_user", "UserID", id);
    }
    for id in before.departments.keys().filter(|id| !after.departments.contains_key(*id)) {
        event("delete_party", "Id", id);
    }
    out
}

/// POSTs each event, signed and encrypted, in order; what the receiver answered each.
pub(crate) async fn send(callback: WecomCallback, events: Vec<(String, String)>) -> Vec<SentEvent> {
    let Ok(client) = reqwest::Client::builder().timeout(Duration::from_secs(5)).build() else {
        return events.into_iter().map(|(change, _)| (change, 0)).collect();
    };
    let mut sent = Vec::new();
    for (change, xml) in events {
        let random: [u8; 16] = rand::rng().random();
        let Some(encrypted) = encrypt(&callback.encoding_aes_key, random, &xml, &callback.corp_id) else {
            sent.push((change, 0));
            continue;
        };
        let timestamp = chrono::Utc::now().timestamp().to_string();
        let nonce = rand::rng().random::<u32>().to_string();
        let msg_signature = signature(&callback.token, &timestamp, &nonce, &encrypted);
        let body = format!(
            "<xml><ToUserName><![CDATA[{}]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt>\
             <AgentID><![CDATA[]]></AgentID></xml>",
            callback.corp_id
        );
        let status = client
            .post(&callback.url)
            .query(&[("msg_signature", &msg_signature), ("timestamp", &timestamp), ("nonce", &nonce)])
            .body(body)
            .send()
            .await
            .map_or(0, |r| r.status().as_u16());
        sent.push((change, status));
    }
    sent
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_official_vector_signs_and_a_message_round_trips_through_its_key() {
        // WXBizMsgCrypt's URL-check sample: token QDG6eK, this echostr and signature.
        let echostr = "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ==";
        assert_eq!(signature("QDG6eK", "1409659589", "263014780", echostr), "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3");
        // The sample's echostr is "1616140317555161061" encrypted for wx5823bf96d3bd56c7 with a
        // random prefix; encrypting it again with that prefix gives the same ciphertext.
        let key = KEY_BASE64.decode("jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C=").unwrap();
        let mut data = base64::engine::general_purpose::STANDARD.decode(echostr).unwrap();
        use cbc::cipher::BlockDecryptMut;
        let plain = cbc::Decryptor::<aes::Aes256>::new(key[..].into(), key[..16].into())
            .decrypt_padded_mut::<NoPadding>(&mut data)
            .unwrap();
        let random: [u8; 16] = plain[..16].try_into().unwrap();
        let again =
            encrypt("jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C", random, "1616140317555161061", "wx5823bf96d3bd56c7");
        assert_eq!(again.as_deref(), Some(echostr));
    }

    #[test]
    fn edits_become_one_event_per_changed_record() {
        let before = Directory::default_wecom();
        let mut after = before.clone();
        after.members.get_mut("lisi").unwrap().email = "new@example.com".into();
        after.members.remove("wangwu");
        after.put_department("3", "Ops", "1", 1);
        let kinds: Vec<String> = changes(&before, &after, "ww", 1).into_iter().map(|(c, _)| c).collect();
        assert_eq!(kinds, ["create_party", "update_user", "delete_user"]);
    }
}

//! `receive_mail_imap` with async-imap: UID SEARCH on the server, then `BODY.PEEK[HEADER]` (when
//! the filter has conditions) and `BODY.PEEK[]` fetches, so nothing is marked read unless
//! `mark_seen` asks; the filter is re-checked exactly on each parsed message.

use std::fmt::Debug;

use async_imap::Client;
use base64::Engine;
use futures::TryStreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use yizhan_schemas::catalog::ReceiveMailImap;

use super::error::MailError;
use super::parse::{DEFAULT_MAX, Filter};

/// UIDs fetched per FETCH command.
const FETCH_CHUNK: usize = 20;

/// Reads the greeting of a fresh connection (async-imap leaves it to the caller).
pub async fn greet<S: AsyncRead + AsyncWrite + Unpin + Debug + Send>(client: &mut Client<S>) -> Result<(), MailError> {
    match client.read_response().await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(MailError::Network("the IMAP server closed the connection before its greeting".into())),
        Err(e) => Err(MailError::Network(format!("IMAP greeting: {e}"))),
    }
}

/// STARTTLS on a greeted plain connection; gives back the stream for the TLS handshake.
pub async fn starttls<S: AsyncRead + AsyncWrite + Unpin + Debug + Send>(mut client: Client<S>) -> Result<S, MailError> {
    client.run_command_and_check_ok("STARTTLS", None).await.map_err(|e| command_error("STARTTLS", e))?;
    Ok(client.into_inner())
}

/// Logs in, searches, fetches and (when asked) flags; returns
/// `{"folder", "uid_validity", "messages": [...]}` with each `uid` a number.
pub async fn receive<S: AsyncRead + AsyncWrite + Unpin + Debug + Send>(
    client: Client<S>,
    user: &str,
    password: &str,
    params: &ReceiveMailImap,
) -> Result<Value, MailError> {
    let filter = params.filter.clone().unwrap_or_default();
    let max = filter.max.map_or(DEFAULT_MAX, |m| m as usize);
    let matcher =
        Filter::new(filter.from.as_deref(), filter.subject_contains.as_deref(), filter.since.as_deref(), None)
            .map_err(MailError::Params)?;
    let query = search_query(&filter, matcher.since)?;

    let mut session = client.login(user, password).await.map_err(|(e, _)| match e {
        async_imap::error::Error::No(text) | async_imap::error::Error::Bad(text) => {
            MailError::login_refused(&server_text(&text))
        }
        other => command_error("LOGIN", other),
    })?;
    let mailbox = session.select(utf7_folder(&params.folder)).await.map_err(|e| command_error("SELECT", e))?;
    let mut uids: Vec<u32> =
        session.uid_search(&query).await.map_err(|e| command_error("UID SEARCH", e))?.into_iter().collect();
    uids.sort_unstable();

    // The filter is all headers: with conditions, a header fetch rules messages out before their
    // (possibly large) bodies are fetched.
    let check_headers = matcher != Filter::default();
    let mut messages = Vec::new();
    let mut returned = Vec::new();
    for chunk in uids.chunks(FETCH_CHUNK) {
        if messages.len() >= max {
            break;
        }
        let mut wanted = chunk.to_vec();
        if check_headers {
            let heads = fetch(&mut session, chunk, "(UID BODY.PEEK[HEADER])").await?;
            wanted = heads
                .iter()
                .filter_map(|f| Some((f.uid?, f.header()?)))
                .filter(|(_, head)| matcher.matches(&super::parse::summary(Value::Null, head)))
                .map(|(uid, _)| uid)
                .collect();
            wanted.sort_unstable();
        }
        wanted.truncate(max - messages.len());
        if wanted.is_empty() {
            continue;
        }
        for fetched in fetch(&mut session, &wanted, "(UID BODY.PEEK[])").await? {
            let (Some(uid), Some(body)) = (fetched.uid, fetched.body()) else { continue };
            let summary = super::parse::summary(json!(uid), body);
            if matcher.matches(&summary) {
                messages.push(summary);
                returned.push(uid);
            }
        }
    }
    if params.mark_seen && !returned.is_empty() {
        let _: Vec<_> = session
            .uid_store(join(&returned), "+FLAGS.SILENT (\\Seen)")
            .await
            .map_err(|e| command_error("UID STORE", e))?
            .try_collect()
            .await
            .map_err(|e| command_error("UID STORE", e))?;
    }
    // The work is done: a failed LOGOUT changes nothing.
    let _ = session.logout().await;
    Ok(json!({"folder": params.folder, "uid_validity": mailbox.uid_validity, "messages": messages}))
}

/// `UID FETCH` of `uids` (sorted by UID in the answer, whatever the server's order).
async fn fetch<S: AsyncRead + AsyncWrite + Unpin + Debug + Send>(
    session: &mut async_imap::Session<S>,
    uids: &[u32],
    query: &str,
) -> Result<Vec<async_imap::types::Fetch>, MailError> {
    let mut fetched: Vec<_> = session
        .uid_fetch(join(uids), query)
        .await
        .map_err(|e| command_error("UID FETCH", e))?
        .try_collect()
        .await
        .map_err(|e| command_error("UID FETCH", e))?;
    fetched.sort_by_key(|f| f.uid);
    Ok(fetched)
}

/// The server-side part of the filter. Dates are widened by a day (SENTSINCE has day granularity
/// in the sender's zone) and non-ASCII text is left to the client-side check, since a quoted IMAP
/// string cannot carry it; [`Filter::matches`] then applies the exact conditions.
pub fn search_query(filter: &yizhan_schemas::catalog::ImapFilter, since: Option<i64>) -> Result<String, MailError> {
    let mut parts = Vec::new();
    if filter.unseen_only {
        parts.push("UNSEEN".to_string());
    }
    if let Some(since) = since {
        let day = chrono::DateTime::from_timestamp(since - 86_400, 0)
            .ok_or_else(|| MailError::Params("filter.since is out of range".into()))?;
        parts.push(format!("SENTSINCE {}", day.format("%-d-%b-%Y")));
    }
    for (key, value) in [("FROM", &filter.from), ("SUBJECT", &filter.subject_contains)] {
        if let Some(value) = value.as_deref().filter(|v| v.is_ascii()) {
            if value.contains(['\r', '\n']) {
                return Err(MailError::Params(format!("filter: {} holds a line break", key.to_lowercase())));
            }
            parts.push(format!("{key} {}", quote(value)));
        }
    }
    if parts.is_empty() {
        parts.push("ALL".to_string());
    }
    Ok(parts.join(" "))
}

fn quote(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

fn join(uids: &[u32]) -> String {
    uids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

/// A folder name in IMAP's modified UTF-7 (RFC 3501 §5.1.3): QQ's folders are often Chinese.
pub fn utf7_folder(name: &str) -> String {
    let engine = base64::engine::general_purpose::STANDARD_NO_PAD;
    let mut out = String::new();
    let mut pending: Vec<u16> = Vec::new();
    let flush = |pending: &mut Vec<u16>, out: &mut String| {
        if !pending.is_empty() {
            let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
            out.push('&');
            out.push_str(&engine.encode(bytes).replace('/', ","));
            out.push('-');
            pending.clear();
        }
    };
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut pending, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut units = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut units));
        }
    }
    flush(&mut pending, &mut out);
    out
}

/// An IMAP command's error: NO/BAD are the server's refusal, the rest network trouble.
fn command_error(command: &str, error: async_imap::error::Error) -> MailError {
    use async_imap::error::Error;
    match error {
        Error::No(text) | Error::Bad(text) => {
            let text = server_text(&text);
            let upper = text.to_ascii_uppercase();
            if upper.contains("[UNAVAILABLE]") || upper.contains("[INUSE]") || upper.contains("[LIMIT]") {
                MailError::Busy(format!("{command}: {text}"))
            } else {
                MailError::Refused(format!("{command}: {text}"))
            }
        }
        other => MailError::Network(format!("{command}: {other}")),
    }
}

/// The server's own words from async-imap's renderings of a NO or BAD answer
/// (`code: Some(X), info: Some("text")`, `outcome: Outcome { code: …, information: … }`): `[X] text`.
pub fn server_text(rendered: &str) -> String {
    let Some((_, rest)) = rendered.split_once("code: ") else { return rendered.to_string() };
    let Some((code, rest)) = rest.split_once(", info") else { return rendered.to_string() };
    let info = rest
        .split_once("Some(\"")
        .and_then(|(_, quoted)| quoted.rsplit_once("\")"))
        .map(|(quoted, _)| quoted.replace("\\\"", "\"").replace("\\\\", "\\"))
        .unwrap_or_default();
    let text = match code.strip_prefix("Some(").and_then(|c| c.strip_suffix(')')) {
        Some(code) if !info.starts_with('[') => format!("[{code}] {info}").trim_end().to_string(),
        _ => info,
    };
    if text.is_empty() { "no reason given".to_string() } else { text }
}

//! Fetched messages (RFC 5322 bytes) into the job result's shape, and the receive filters.

use chrono::{DateTime, NaiveDate};
use mail_parser::{Address, MessageParser, MimeHeaders};
use serde_json::{Value, json};

/// Messages a receive returns when its filter sets no `max`.
pub const DEFAULT_MAX: usize = 50;

/// One received message:
/// `{uid, message_id, from, to, cc, subject, date, text_body, html_body, attachments, size}`.
/// `from` is `{name, address}` or null, `to`/`cc` lists of those; `message_id` has no angle
/// brackets; `date` is RFC 3339 (null when absent); attachments are `{filename, content_type, size}`
/// (decoded bytes), their contents left out.
pub fn summary(uid: Value, raw: &[u8]) -> Value {
    let Some(message) = MessageParser::default().parse(raw) else {
        return json!({"uid": uid, "message_id": null, "from": null, "to": [], "cc": [], "subject": null, "date": null,
                      "text_body": null, "html_body": null, "attachments": [], "size": raw.len()});
    };
    let attachments: Vec<Value> = message
        .attachments()
        .map(|part| {
            let content_type = part.content_type().map(|ct| match ct.subtype() {
                Some(sub) => format!("{}/{}", ct.ctype(), sub),
                None => ct.ctype().to_string(),
            });
            json!({"filename": part.attachment_name(), "content_type": content_type, "size": part.len()})
        })
        .collect();
    json!({
        "uid": uid,
        "message_id": message.message_id(),
        "from": message.from().and_then(|a| addresses(a).into_iter().next()),
        "to": message.to().map(addresses).unwrap_or_default(),
        "cc": message.cc().map(addresses).unwrap_or_default(),
        "subject": message.subject(),
        "date": message.date().map(|d| d.to_rfc3339()),
        // The parts as sent: mail-parser offers an HTML-only mail's HTML as its text body (and
        // the reverse), which would hide what the sender actually wrote.
        "text_body": message.text_part(0).filter(|p| p.is_text() && !p.is_text_html()).and_then(|p| p.text_contents()),
        "html_body": message.html_part(0).filter(|p| p.is_text_html()).and_then(|p| p.text_contents()),
        "attachments": attachments,
        "size": raw.len(),
    })
}

fn addresses(address: &Address<'_>) -> Vec<Value> {
    address.iter().map(|a| json!({"name": a.name(), "address": a.address()})).collect()
}

/// The conditions of a receive's `filter`, checked on each parsed message.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// Lowercased; matches when the sender's name or address contains it.
    pub from: Option<String>,
    /// Lowercased; matches when the subject contains it, case-insensitively.
    pub subject_contains: Option<String>,
    /// Unix seconds, inclusive.
    pub since: Option<i64>,
    /// Unix seconds, exclusive.
    pub until: Option<i64>,
}

impl Filter {
    /// The filter of a job's params; `since` and `until` are `YYYY-MM-DD` or RFC 3339, the error names the bad one.
    pub fn new(
        from: Option<&str>,
        subject_contains: Option<&str>,
        since: Option<&str>,
        until: Option<&str>,
    ) -> Result<Filter, String> {
        Ok(Filter {
            from: from.map(str::to_lowercase),
            subject_contains: subject_contains.map(str::to_lowercase),
            since: since.map(|s| parse_bound(s).map_err(|e| format!("filter.since: {e}"))).transpose()?,
            until: until.map(|s| parse_bound(s).map_err(|e| format!("filter.until: {e}"))).transpose()?,
        })
    }

    /// Whether a summary (as [`summary`] builds it) passes; a message without `Date` fails any
    /// date condition.
    pub fn matches(&self, summary: &Value) -> bool {
        if let Some(from) = &self.from {
            let sender = &summary["from"];
            let hit = ["name", "address"]
                .iter()
                .filter_map(|k| sender[k].as_str())
                .any(|text| text.to_lowercase().contains(from.as_str()));
            if !hit {
                return false;
            }
        }
        if let Some(subject) = &self.subject_contains
            && !summary["subject"].as_str().is_some_and(|s| s.to_lowercase().contains(subject.as_str()))
        {
            return false;
        }
        if self.since.is_some() || self.until.is_some() {
            let Some(date) = summary["date"].as_str().and_then(|d| DateTime::parse_from_rfc3339(d).ok()) else {
                return false;
            };
            let at = date.timestamp();
            if self.since.is_some_and(|since| at < since) || self.until.is_some_and(|until| at >= until) {
                return false;
            }
        }
        true
    }
}

/// `YYYY-MM-DD` (midnight UTC) or an RFC 3339 date-time, as Unix seconds.
pub fn parse_bound(text: &str) -> Result<i64, String> {
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(date.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc().timestamp());
    }
    DateTime::parse_from_rfc3339(text)
        .map(|d| d.timestamp())
        .map_err(|_| format!("{text:?} is neither YYYY-MM-DD nor an RFC 3339 date-time"))
}

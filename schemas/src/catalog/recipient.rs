//! Which param of an action names its recipients: what a campaign fills with each recipient, and
//! what per-recipient frequency caps count.

use serde_json::{Map, Value};

/// How the recipient param holds its recipients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecipientShape {
    /// A JSON array of strings: `["a", "b"]`.
    List,
    /// One string: `"a"`.
    Single,
    /// One string of recipients joined by the separator: `"a|b"`.
    Joined(char),
}

/// What a recipient is, which decides how it is normalized ([`normalize_recipient`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecipientKind {
    /// A phone number, normalized to E.164.
    Phone,
    /// An e-mail address, normalized to the lower-cased address.
    Email,
    /// A provider's user id (WeCom, DingTalk), kept as written.
    UserId,
}

/// The param of an action that names who receives it (see `ActionSpec::recipient`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecipientField {
    /// Name of the top-level param, such as `phone_numbers`.
    pub field: &'static str,
    /// How the param holds its recipients.
    pub shape: RecipientShape,
    /// What each recipient is.
    pub kind: RecipientKind,
}

impl RecipientField {
    /// Fills the field with exactly one recipient, `to`, replacing whatever it held.
    pub fn set(&self, params: &mut Map<String, Value>, to: &str) {
        let value = match self.shape {
            RecipientShape::List => Value::Array(vec![Value::String(to.to_owned())]),
            RecipientShape::Single | RecipientShape::Joined(_) => Value::String(to.to_owned()),
        };
        params.insert(self.field.to_owned(), value);
    }

    /// The recipients named in `params`, as written (trimmed, empty entries skipped), in order.
    pub fn recipients(&self, params: &Value) -> Vec<String> {
        match (self.shape, params.get(self.field)) {
            (RecipientShape::List, Some(Value::Array(items))) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            (RecipientShape::Single, Some(Value::String(one))) => {
                Some(one.trim()).filter(|s| !s.is_empty()).map(str::to_owned).into_iter().collect()
            }
            (RecipientShape::Joined(separator), Some(Value::String(joined))) => {
                split(joined, separator).map(str::to_owned).collect()
            }
            _ => Vec::new(),
        }
    }

    /// Keeps the recipients for which `keep` (given each as written) holds and returns the others, in
    /// order. A list left empty stays `[]`; a single or joined field left empty is removed, since those
    /// fields are optional where they occur (WeCom's `touser` beside `toparty`).
    pub fn retain(&self, params: &mut Value, keep: &dyn Fn(&str) -> bool) -> Vec<String> {
        let Some(object) = params.as_object_mut() else { return Vec::new() };
        let mut dropped = Vec::new();
        match (self.shape, object.get_mut(self.field)) {
            (RecipientShape::List, Some(Value::Array(items))) => items.retain(|item| match item.as_str() {
                Some(to) if !keep(to.trim()) => {
                    dropped.push(to.trim().to_owned());
                    false
                }
                _ => true,
            }),
            (RecipientShape::Single, Some(Value::String(one))) if !keep(one.trim()) => {
                dropped.push(one.trim().to_owned());
                object.remove(self.field);
            }
            (RecipientShape::Joined(separator), Some(Value::String(joined))) => {
                let (kept, gone): (Vec<&str>, Vec<&str>) = split(joined, separator).partition(|to| keep(to));
                if !gone.is_empty() {
                    dropped = gone.into_iter().map(str::to_owned).collect();
                    if kept.is_empty() {
                        object.remove(self.field);
                    } else {
                        *joined = kept.join(separator.encode_utf8(&mut [0; 4]));
                    }
                }
            }
            _ => {}
        }
        dropped
    }
}

fn split(joined: &str, separator: char) -> impl Iterator<Item = &str> {
    joined.split(separator).map(str::trim).filter(|s| !s.is_empty())
}

/// The form a recipient is counted and keyed by: phones in E.164 (an 11-digit mainland mobile, with
/// or without `86`/`0086`, gets `+86`; spaces, dashes, dots and parentheses go; `00` becomes `+`),
/// e-mail addresses lower-cased (of `Name <addr>`, the address), user ids as written (trimmed).
/// Text that is no phone number stays as cleaned: validation against the action's schema refuses it.
pub fn normalize_recipient(kind: RecipientKind, raw: &str) -> String {
    let raw = raw.trim();
    match kind {
        RecipientKind::Phone => normalize_phone(raw),
        RecipientKind::Email => {
            let address = match (raw.rfind('<'), raw.rfind('>')) {
                (Some(open), Some(close)) if open < close => raw[open + 1..close].trim(),
                _ => raw,
            };
            address.to_lowercase()
        }
        RecipientKind::UserId => raw.to_owned(),
    }
}

fn normalize_phone(raw: &str) -> String {
    let cleaned: String = raw.chars().filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')' | '\u{a0}')).collect();
    let (plus, digits) = match cleaned.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => match cleaned.strip_prefix("00") {
            Some(rest) => (true, rest),
            None => (false, cleaned.as_str()),
        },
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return cleaned;
    }
    let mainland_mobile = |d: &str| d.len() == 11 && d.starts_with('1');
    if plus {
        format!("+{digits}")
    } else if mainland_mobile(digits) {
        format!("+86{digits}")
    } else if digits.strip_prefix("86").is_some_and(mainland_mobile) {
        format!("+{digits}")
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const SMS: RecipientField =
        RecipientField { field: "phone_numbers", shape: RecipientShape::List, kind: RecipientKind::Phone };
    const WECOM: RecipientField =
        RecipientField { field: "touser", shape: RecipientShape::Joined('|'), kind: RecipientKind::UserId };
    const ONE: RecipientField =
        RecipientField { field: "to", shape: RecipientShape::Single, kind: RecipientKind::Email };

    #[test]
    fn set_fills_one_recipient_in_the_fields_shape() {
        let mut params = Map::new();
        params.insert("phone_numbers".into(), json!(["+8613800000000", "+8613800000001"]));
        SMS.set(&mut params, "+8613900000000");
        WECOM.set(&mut params, "zhangsan");
        ONE.set(&mut params, "a@example.com");
        assert_eq!(
            Value::Object(params),
            json!({"phone_numbers": ["+8613900000000"], "touser": "zhangsan", "to": "a@example.com"})
        );
    }

    #[test]
    fn recipients_are_listed_as_written_in_order() {
        let params =
            json!({"phone_numbers": ["+8613800000001", " +8613800000000 ", ""], "touser": "b| a||c", "to": " x@y.z "});
        assert_eq!(SMS.recipients(&params), ["+8613800000001", "+8613800000000"]);
        assert_eq!(WECOM.recipients(&params), ["b", "a", "c"]);
        assert_eq!(ONE.recipients(&params), ["x@y.z"]);
        assert!(SMS.recipients(&json!({})).is_empty());
        assert!(WECOM.recipients(&json!({"touser": 3})).is_empty());
    }

    #[test]
    fn retain_drops_and_reports_the_refused() {
        let mut params = json!({"phone_numbers": ["+1", "+2", "+3"], "touser": "a|b|c", "to": "x@y.z"});
        assert_eq!(SMS.retain(&mut params, &|to| to != "+2"), ["+2"]);
        assert_eq!(WECOM.retain(&mut params, &|to| to == "b"), ["a", "c"]);
        assert_eq!(ONE.retain(&mut params, &|_| true), Vec::<String>::new());
        assert_eq!(params, json!({"phone_numbers": ["+1", "+3"], "touser": "b", "to": "x@y.z"}));
        // Emptied: a list stays, an optional single or joined field goes.
        assert_eq!(SMS.retain(&mut params, &|_| false), ["+1", "+3"]);
        assert_eq!(WECOM.retain(&mut params, &|_| false), ["b"]);
        assert_eq!(ONE.retain(&mut params, &|_| false), ["x@y.z"]);
        assert_eq!(params, json!({"phone_numbers": []}));
    }

    #[test]
    fn phones_become_e164() {
        let phone = |raw| normalize_recipient(RecipientKind::Phone, raw);
        assert_eq!(phone("13800000000"), "+8613800000000");
        assert_eq!(phone(" 138-0000-0000 "), "+8613800000000");
        assert_eq!(phone("8613800000000"), "+8613800000000");
        assert_eq!(phone("008613800000000"), "+8613800000000");
        assert_eq!(phone("+86 138 0000 0000"), "+8613800000000");
        assert_eq!(phone("+1 (415) 555-0100"), "+14155550100");
        assert_eq!(phone("0014155550100"), "+14155550100");
        // Not a number we can place: left for the schema to refuse.
        assert_eq!(phone("4155550100"), "4155550100");
        assert_eq!(phone("call me"), "callme");
    }

    #[test]
    fn addresses_are_lower_cased_and_user_ids_kept() {
        assert_eq!(normalize_recipient(RecipientKind::Email, " Zhang.San@Example.COM "), "zhang.san@example.com");
        assert_eq!(normalize_recipient(RecipientKind::Email, "Zhang San <ZS@Example.com>"), "zs@example.com");
        assert_eq!(normalize_recipient(RecipientKind::UserId, "ZhangSan"), "ZhangSan");
    }
}

//! The connector catalog: one table of [`ActionSpec`] entries per connector kind.
//!
//! Adding an action is adding one entry (and its test); workers interpret the entry's
//! [`Endpoint`], so no per-action code is written.

mod dingtalk_robot;
mod directory_sync;
mod feishu;
mod feishu_robot;
mod juzibot;
mod qq_mail;
mod recipient;
mod spec;
mod tencent_meeting;
mod tencent_ses;
mod tencent_sms;
pub mod wecom;
mod wecom_robot;

use serde_json::{Value, json};

pub use directory_sync::Run as DirectorySyncRun;
pub use qq_mail::{
    ImapFilter, MailAttachment, MimeType, Pop3Filter, ReceiveMailImap, ReceiveMailPop3, SendMail, TransferEncoding,
};
pub use recipient::{RecipientField, RecipientKind, RecipientShape, normalize_recipient};
pub use spec::{ActionSpec, Body, Effect, Endpoint, KindSpec, MailOp, Method, RecipientLimit, schema};
pub use tencent_ses::{Attachment, EmailTemplate, SendEmail};
pub use tencent_sms::SendSms;
pub use wecom_robot::{Article, SendFile, SendImage, SendMarkdown, SendNews, SendText, UploadFile};

static KINDS: &[KindSpec] = &[
    tencent_sms::KIND,
    tencent_ses::KIND,
    tencent_meeting::KIND,
    wecom_robot::KIND,
    dingtalk_robot::KIND,
    feishu_robot::KIND,
    feishu::KIND,
    juzibot::KIND,
    qq_mail::KIND,
    wecom::KIND,
    directory_sync::KIND,
];

/// Every connector kind this build supports.
pub fn kinds() -> &'static [KindSpec] {
    KINDS
}

/// The kind named `name`, or `None` when this build does not support it.
pub fn find_kind(name: &str) -> Option<&'static KindSpec> {
    KINDS.iter().find(|k| k.name == name)
}

/// The action `action` of kind `kind`, or `None` when either is unknown.
pub fn find_action(kind: &str, action: &str) -> Option<&'static ActionSpec> {
    find_kind(kind)?.action(action)
}

/// The catalog as `yizhan-producer catalog` prints it:
/// `{kind: {action: {"effect", "params_schema"}}}`.
pub fn catalog_json() -> Value {
    let mut kinds = serde_json::Map::new();
    for kind in KINDS {
        let mut actions = serde_json::Map::new();
        for action in kind.actions {
            actions.insert(
                action.name.to_string(),
                json!({"effect": action.effect, "params_schema": action.params_schema()}),
            );
        }
        kinds.insert(kind.name.to_string(), Value::Object(actions));
    }
    Value::Object(kinds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_snake_case_and_schemas_closed() {
        let mut seen = std::collections::HashSet::new();
        for kind in kinds() {
            for action in kind.actions {
                assert!(seen.insert((kind.name, action.name)), "{}.{} twice", kind.name, action.name);
                assert!(action.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
                let schema = action.params_schema();
                assert_eq!(schema["type"], "object", "{}.{}", kind.name, action.name);
                assert_eq!(
                    schema["additionalProperties"], false,
                    "{}.{} must reject unknown params",
                    kind.name, action.name
                );
            }
        }
    }

    #[test]
    fn actions_sent_to_many_name_their_recipient_field() {
        use RecipientKind::{Email, Phone, UserId};
        let mut with: Vec<_> = kinds()
            .iter()
            .flat_map(|k| k.actions.iter().map(move |a| (k.name, a)))
            .filter_map(|(kind, a)| Some((kind, a.name, a.recipient?)))
            .collect();
        with.sort_by_key(|(kind, action, _)| (*kind, *action));
        let list: Vec<_> = with.iter().map(|(k, a, r)| (*k, *a, r.field, r.kind)).collect();
        assert_eq!(
            list,
            [
                ("dingtalk_robot", "send_markdown", "at_user_ids", UserId),
                ("dingtalk_robot", "send_text", "at_user_ids", UserId),
                ("qq_mail", "send_mail", "to", Email),
                ("tencent_ses", "send_email", "destination", Email),
                ("tencent_sms", "send_sms", "phone_numbers", Phone),
                ("wecom", "send_app_message", "touser", UserId),
                ("wecom_robot", "send_text", "mentioned_list", UserId),
            ]
        );
        // Each field is a top-level param of the shape it declares.
        for (kind, action, recipient) in with {
            let schema = find_action(kind, action).unwrap().params_schema();
            let types = &schema["properties"][recipient.field]["type"];
            let expected = match recipient.shape {
                RecipientShape::List => "array",
                RecipientShape::Single | RecipientShape::Joined(_) => "string",
            };
            assert!(
                types == expected || types.as_array().is_some_and(|t| t.contains(&json!(expected))),
                "{kind}.{action}"
            );
        }
    }

    #[test]
    fn catalog_json_lists_effect_and_schema() {
        let catalog = catalog_json();
        assert_eq!(catalog["tencent_sms"]["send_sms"]["effect"], "write");
        assert_eq!(catalog["wecom_robot"]["upload_file"]["effect"], "write");
        assert_eq!(catalog["wecom_robot"].as_object().unwrap().len(), 6);
        assert!(
            catalog["tencent_sms"]["send_sms"]["params_schema"]["required"]
                .as_array()
                .unwrap()
                .contains(&json!("phone_numbers"))
        );
    }
}

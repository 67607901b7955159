use serde_json::json;

use crate::catalog::find_action;
use crate::validate::validate_params;

fn valid(action: &str, params: serde_json::Value) -> bool {
    validate_params("qq_mail", action, &params).is_ok()
}

#[test]
fn send_mail_params_are_checked() {
    let base = json!({"to": ["a@example.com"], "subject": "s", "body": "b", "mime_type": "text/plain"});
    assert!(valid("send_mail", base.clone()));
    let full = json!({"to": ["A <a@example.com>"], "cc": ["c@example.com"], "bcc": ["b@example.com"],
                      "reply_to": "r@example.com", "subject": "s", "headers": {"X-Tag": "1"}, "body": "b",
                      "mime_type": "text/calendar", "transfer_encoding": "quoted-printable",
                      "attachments": [{"filename": "a.txt", "content_type": "text/plain", "content_base64": "aGk="}]});
    assert!(valid("send_mail", full));
    for (field, value) in [
        ("to", json!([])),
        ("mime_type", json!("application/pdf")),
        ("transfer_encoding", json!("7bit")),
        ("attachments", json!([{"filename": "a", "content_type": "text/plain"}])),
        ("sender", json!("x@example.com")),
    ] {
        let mut params = base.clone();
        params[field] = value;
        assert!(!valid("send_mail", params), "{field}");
    }
}

#[test]
fn receive_params_are_checked() {
    assert!(valid("receive_mail_imap", json!({})));
    assert!(valid(
        "receive_mail_imap",
        json!({"folder": "Archive", "mark_seen": true,
               "filter": {"from": "qq.com", "subject_contains": "订单", "since": "2026-01-31", "unseen_only": true, "max": 10}})
    ));
    assert!(!valid("receive_mail_imap", json!({"filter": {"until": "2026-01-31"}})));
    assert!(!valid("receive_mail_imap", json!({"filter": {"since": "31/01/2026"}})));
    assert!(valid(
        "receive_mail_pop3",
        json!({"delete_after": true, "filter": {"since": "2026-01-31T08:00:00+08:00", "until": "2026-02-01", "max": 500}})
    ));
    assert!(!valid("receive_mail_pop3", json!({"filter": {"max": 0}})));
    assert!(!valid("receive_mail_pop3", json!({"filter": {"unseen_only": true}})));
    assert_eq!(find_action("qq_mail", "send_mail").unwrap().bucket, "smtp");
}

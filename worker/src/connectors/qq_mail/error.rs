//! Classification of mail answers (docs/providers/qq-mail.md#smtp-replies).
//!
//! Tencent throttles with **5xx** replies (`550 Ip frequency limited`, `550 Mailbox unavailable or
//! access denied`), so the SMTP class comes from the reply text first and the 4xx/5xx split only
//! after. IMAP and POP3 refusals of the login are permanent unless the server says the refusal is
//! temporary (RFC 5530 `[UNAVAILABLE]`, RFC 3206 `[IN-USE]` / `[SYS/TEMP]`).

use yizhan_state::redact;

use crate::connectors::call::Failure;

/// What to do with a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Try this job again later.
    Retry,
    /// The account is throttled: pause the config, then retry.
    Throttle,
    /// Will fail again.
    Permanent,
    /// A send may have been accepted: the answer was lost.
    Ambiguous,
}

/// The class of an SMTP reply `code text` (text as the server wrote it).
pub fn classify_smtp_reply(code: u16, text: &str) -> Class {
    let text = text.to_ascii_lowercase();
    if text.contains("frequency limited") {
        // QQ's Ip/Connection/Domain/Sender throttles: the account sends too fast.
        Class::Throttle
    } else if code == 550 && text.contains("mailbox unavailable") {
        // The recipient receives too much right now (QQ's table: retry later).
        Class::Retry
    } else if (400..500).contains(&code) {
        Class::Retry
    } else {
        // 535 authentication, 501 bad address, 550 no such mailbox, 552 too large, 550 content
        // denied / spam, and any other 5xx.
        Class::Permanent
    }
}

/// Why an IMAP or POP3 exchange failed; texts never hold the auth code.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// Connect, TLS, I/O, timeouts, a server gone mid-exchange.
    #[error("{0}")]
    Network(String),
    /// The server refused the login.
    #[error("login refused: {0}")]
    Auth(String),
    /// The server refused a command after login (no such folder, bad search).
    #[error("{0}")]
    Refused(String),
    /// The server refused a command for a reason it says is temporary.
    #[error("{0}")]
    Busy(String),
    /// The job's params cannot be used.
    #[error("params: {0}")]
    Params(String),
}

impl MailError {
    /// A refused login: temporary when the server's response code says so.
    pub fn login_refused(text: &str) -> MailError {
        let upper = text.to_ascii_uppercase();
        if ["[UNAVAILABLE]", "[IN-USE]", "[SYS/TEMP]", "[INUSE]"].iter().any(|c| upper.contains(c)) {
            MailError::Busy(format!("login refused for now: {text}"))
        } else {
            MailError::Auth(text.to_string())
        }
    }

    /// Network trouble and temporary refusals retry; bad logins, refusals and bad params are permanent.
    pub fn class(&self) -> Class {
        match self {
            MailError::Network(_) | MailError::Busy(_) => Class::Retry,
            MailError::Auth(_) | MailError::Refused(_) | MailError::Params(_) => Class::Permanent,
        }
    }

    /// The job's failure, `protocol: reason` with every secret taken out.
    pub fn into_failure(self, protocol: &str, secrets: &[&str]) -> Failure {
        failure(self.class(), &format!("{protocol}: {self}"), secrets)
    }
}

/// A failure of class `class`; `secrets` are cut out of the reason, whatever put them there.
pub fn failure(class: Class, reason: &str, secrets: &[&str]) -> Failure {
    let reason = redact::secrets(reason, secrets);
    match class {
        Class::Retry => Failure::transient(reason),
        Class::Throttle => Failure::throttled(reason, None),
        Class::Permanent => Failure::permanent(reason),
        Class::Ambiguous => Failure::Ambiguous { reason },
    }
}

/// The failure of a send that lettre reports as `error`.
pub fn smtp_failure(error: &lettre::transport::smtp::Error, secrets: &[&str]) -> Failure {
    let text = error_chain(error);
    let class = if let Some(code) = error.status() {
        classify_smtp_reply(u16::from(code), &text)
    } else if error.is_timeout() || error.is_response() {
        // The message may have gone through before the answer was lost (or could not be read).
        Class::Ambiguous
    } else if error.is_client() {
        // Our side refuses (no common AUTH mechanism, a bad address): no retry will change it.
        Class::Permanent
    } else {
        // Connect, TLS, network, shut-down transport: nothing was accepted.
        Class::Retry
    };
    failure(class, &format!("smtp: {text}"), secrets)
}

/// `error: source: source…`, the server's reply text included.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let part = inner.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every reply of docs/providers/qq-mail.md#smtp-replies, one row each.
    #[test]
    fn every_listed_smtp_reply_is_classified() {
        let table: &[(u16, &str, Class)] = &[
            (550, "Ip frequency limited", Class::Throttle),
            (550, "Connection frequency limited", Class::Throttle),
            (550, "Domain frequency limited", Class::Throttle),
            (550, "Sender frequency limited", Class::Throttle),
            (550, "Mailbox unavailable or access denied", Class::Retry),
            (421, "Service not available, closing transmission channel", Class::Retry),
            (450, "Requested mail action not taken: mailbox busy", Class::Retry),
            (451, "Temporary local problem", Class::Retry),
            (452, "Insufficient system storage", Class::Retry),
            (535, "Error: authentication failed", Class::Permanent),
            (535, "Login Fail. Please enter your authorization code to login", Class::Permanent),
            (501, "Bad address syntax", Class::Permanent),
            (550, "Mailbox not found", Class::Permanent),
            (552, "Message too large", Class::Permanent),
            (550, "Mail content denied", Class::Permanent),
            (550, "Spam is embedded in the email", Class::Permanent),
            (554, "Transaction failed", Class::Permanent),
        ];
        for (code, text, class) in table {
            assert_eq!(classify_smtp_reply(*code, text), *class, "{code} {text}");
        }
    }

    #[test]
    fn logins_refused_for_now_are_retried_and_others_are_permanent() {
        assert_eq!(MailError::login_refused("[AUTHENTICATIONFAILED] Authentication failed.").class(), Class::Permanent);
        assert_eq!(MailError::login_refused("Authentication failed.").class(), Class::Permanent);
        assert_eq!(MailError::login_refused("[UNAVAILABLE] Internal error").class(), Class::Retry);
        assert_eq!(MailError::login_refused("[IN-USE] Mailbox is locked").class(), Class::Retry);
        assert_eq!(MailError::login_refused("[SYS/TEMP] try later").class(), Class::Retry);
        assert_eq!(MailError::Network("connection refused".into()).class(), Class::Retry);
        assert_eq!(MailError::Refused("Mailbox doesn't exist: Nope".into()).class(), Class::Permanent);
    }

    #[test]
    fn failures_never_carry_a_secret() {
        let refused =
            MailError::Auth("bad password abcdefghijklmnop".into()).into_failure("imap", &["abcdefghijklmnop"]);
        assert_eq!(refused, Failure::permanent("imap: login refused: bad password ***"));
        assert!(matches!(failure(Class::Throttle, "x", &[]), Failure::Throttled { retry_after: None, .. }));
        assert!(matches!(failure(Class::Ambiguous, "x", &[]), Failure::Ambiguous { .. }));
    }
}

//! `send_mail`: the lettre message of a job, and the pooled SMTP transport of a config.

use std::time::Duration;

use base64::Engine;
use lettre::message::header::{self, ContentTransferEncoding, ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment, Body, Mailbox, Mailboxes, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::{AsyncSmtpTransport, PoolConfig};
use lettre::{Message, Tokio1Executor};
use uuid::Uuid;
use yizhan_schemas::catalog::{MimeType, SendMail, TransferEncoding};

use super::config::{Server, TlsMode};

/// Headers the action sets itself; `headers` may not replace them.
const RESERVED: &[&str] = &[
    "from",
    "sender",
    "to",
    "cc",
    "bcc",
    "reply-to",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "content-disposition",
];

/// The Message-ID of a job's mail, without angle brackets: `{job_id}@{sender's domain}`, so a
/// retried send carries the same id and the receiving side can recognise the duplicate.
pub fn message_id(job_id: Uuid, from: &Mailbox) -> String {
    let domain = from.email.domain();
    let domain = if domain.is_empty() { "yizhan.local" } else { domain };
    format!("{job_id}@{domain}")
}

/// The message of `params`, sent by `from`; errors are reasons for a permanent failure.
pub fn build_message(from: &Mailbox, job_id: Uuid, params: &SendMail) -> Result<Message, String> {
    let mut builder = Message::builder()
        .from(from.clone())
        .subject(params.subject.clone())
        .message_id(Some(format!("<{}>", message_id(job_id, from))));
    builder = builder.mailbox(header::To::from(mailboxes("to", &params.to)?));
    if let Some(cc) = params.cc.as_deref().filter(|cc| !cc.is_empty()) {
        builder = builder.mailbox(header::Cc::from(mailboxes("cc", cc)?));
    }
    if let Some(bcc) = params.bcc.as_deref().filter(|bcc| !bcc.is_empty()) {
        // lettre puts Bcc in the envelope and drops the header when building.
        builder = builder.mailbox(header::Bcc::from(mailboxes("bcc", bcc)?));
    }
    if let Some(reply_to) = &params.reply_to {
        builder = builder.reply_to(mailbox("reply_to", reply_to)?);
    }
    for (name, value) in params.headers.iter().flatten() {
        if RESERVED.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(format!("headers: {name} is set by send_mail itself"));
        }
        if value.contains(['\r', '\n']) {
            return Err(format!("headers: the value of {name} holds a line break"));
        }
        let header = HeaderName::new_from_ascii(name.clone())
            .map_err(|_| format!("headers: {name:?} is not a valid header name"))?;
        builder = builder.raw_header(HeaderValue::new(header, value.clone()));
    }

    let body = body_part(params)?;
    let attachments = params.attachments.as_deref().unwrap_or_default();
    let built = if attachments.is_empty() {
        builder.singlepart(body)
    } else {
        let mut multipart = MultiPart::mixed().singlepart(body);
        for (i, attachment) in attachments.iter().enumerate() {
            let content = base64::engine::general_purpose::STANDARD
                .decode(attachment.content_base64.trim())
                .map_err(|e| format!("attachments[{i}].content_base64: {e}"))?;
            let content_type = ContentType::parse(&attachment.content_type)
                .map_err(|e| format!("attachments[{i}].content_type: {e}"))?;
            multipart = multipart.singlepart(Attachment::new(attachment.filename.clone()).body(content, content_type));
        }
        builder.multipart(multipart)
    };
    built.map_err(|e| format!("message: {e}"))
}

fn body_part(params: &SendMail) -> Result<SinglePart, String> {
    let mut content_type = format!("{}; charset=utf-8", params.mime_type.as_str());
    if params.mime_type == MimeType::TextCalendar
        && let Some(method) = calendar_method(&params.body)
    {
        // Mail clients show an invitation's buttons from this parameter (RFC 6047 §2.4).
        content_type.push_str(&format!("; method={method}"));
    }
    let content_type = ContentType::parse(&content_type).map_err(|e| format!("mime_type: {e}"))?;
    let body = match params.transfer_encoding {
        None => Body::new(params.body.clone()),
        Some(encoding) => {
            let encoding = match encoding {
                TransferEncoding::Base64 => ContentTransferEncoding::Base64,
                TransferEncoding::EightBit => ContentTransferEncoding::EightBit,
                TransferEncoding::QuotedPrintable => ContentTransferEncoding::QuotedPrintable,
            };
            // 8bit cannot carry lines over 998 bytes; the mailer's own choice then keeps the mail intact.
            Body::new_with_encoding(params.body.clone(), encoding).unwrap_or_else(Body::new)
        }
    };
    Ok(SinglePart::builder().header(content_type).body(body))
}

/// The `METHOD:` of an iCalendar body (`REQUEST`, `CANCEL`…).
fn calendar_method(body: &str) -> Option<&str> {
    body.lines()
        .find_map(|line| line.trim().strip_prefix("METHOD:"))
        .map(str::trim)
        .filter(|m| !m.is_empty() && m.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
}

fn mailbox(field: &str, text: &str) -> Result<Mailbox, String> {
    text.trim().parse().map_err(|e| format!("{field}: {text:?} is not a mail address ({e})"))
}

fn mailboxes(field: &str, list: &[String]) -> Result<Mailboxes, String> {
    let mut out = Mailboxes::new();
    for (i, text) in list.iter().enumerate() {
        out.push(mailbox(&format!("{field}[{i}]"), text)?);
    }
    Ok(out)
}

/// The pooled transport of a config: built once, its connections reused across jobs. `extra_pem`
/// is the config's `ca_file`.
pub fn transport(
    server: &Server,
    tls: TlsMode,
    extra_pem: Option<&[u8]>,
    user: &str,
    auth_code: &str,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let parameters = || -> Result<TlsParameters, String> {
        let mut builder = TlsParameters::builder(server.host.clone());
        if let Some(pem) = extra_pem {
            builder = builder.add_root_certificate(Certificate::from_pem(pem).map_err(|e| format!("ca_file: {e}"))?);
        }
        builder.build_rustls().map_err(|e| format!("TLS: {e}"))
    };
    let tls = match tls {
        TlsMode::Implicit => Tls::Wrapper(parameters()?),
        TlsMode::Starttls => Tls::Required(parameters()?),
        TlsMode::None => Tls::None,
    };
    Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(server.host.clone())
        .port(server.port)
        .tls(tls)
        .credentials(Credentials::new(user.to_string(), auth_code.to_string()))
        .timeout(Some(Duration::from_secs(30)))
        // Few connections: QQ counts connections per minute ("Connection frequency limited").
        .pool_config(PoolConfig::new().max_size(4).idle_timeout(Duration::from_secs(60)))
        .build())
}

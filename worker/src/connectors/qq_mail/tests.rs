//! `qq_mail` without real mail servers: the exact message of every `send_mail` param, the POP3
//! client, IMAP and SMTP sessions against scripted in-process peers, MIME parsing, config checks,
//! and that the auth code never shows in a failure. The end-to-end tests against Dovecot and a
//! real SMTP server live in `tests/`.

use std::net::SocketAddr;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use uuid::Uuid;
use yizhan_schemas::catalog::SendMail;

use super::QqMail;
use super::config::{QqMailConfig, Server, TlsMode};
use super::error::MailError;
use super::pop3::Pop3;
use super::{imap, parse, smtp};
use crate::connectors::testkit::Kit;
use crate::connectors::{Call, Failure, Success};

const AUTH_CODE: &str = "abcdefghijklmnop";
const KIT: Kit = Kit { kind: "qq_mail", secrets: &[AUTH_CODE] };
const JOB: &str = "0190f5b4-7c3e-7d2a-9b1e-4f2a6c8d0e11";

fn job_id() -> Uuid {
    JOB.parse().unwrap()
}

fn config_text(extra: &str) -> String {
    format!("[connectors.qq_mail.default]\naddress = \"123456@qq.com\"\nauth_code = \"{AUTH_CODE}\"\n{extra}")
}

fn connector(extra: &str) -> QqMail {
    KIT.build(&config_text(extra), "default", QqMail::new)
}

/// Runs `action` as the job [`JOB`], whose id the message ids derive from.
async fn run(mail: &QqMail, action: &str, params: &Value) -> Result<Success, Failure> {
    KIT.execute(mail, Call { job_id: job_id(), ..KIT.call(action, params) }).await
}

// ---------------------------------------------------------------------------------------------
// config

#[test]
fn config_defaults_to_qq_servers_with_implicit_tls() {
    let config = KIT.config(&config_text(""), "default");
    let fields = QqMailConfig::from_config(&config).unwrap();
    assert_eq!(fields.server("smtp"), Server { host: "smtp.qq.com".into(), port: 465 });
    assert_eq!(fields.server("pop3"), Server { host: "pop.qq.com".into(), port: 995 });
    assert_eq!(fields.server("imap"), Server { host: "imap.qq.com".into(), port: 993 });
    assert_eq!(fields.tls, TlsMode::Implicit);
    assert_eq!(fields.ca_file, None);
    assert!(!format!("{fields:?}").contains(AUTH_CODE));
    assert_eq!(Server::parse("[::1]:1143").unwrap(), Server { host: "::1".into(), port: 1143 });
}

#[test]
fn config_errors_name_the_field() {
    let error = |extra: &str| {
        let config = KIT.config(&config_text(extra), "default");
        QqMailConfig::from_config(&config).unwrap_err().to_string()
    };
    assert!(error("tls = \"ssl\"\n").contains("unknown variant"), "{}", error("tls = \"ssl\"\n"));
    assert_eq!(error("smtp = \"smtp.qq.com\"\n"), "connectors.qq_mail.default.smtp: must be host:port");
    assert!(error("imap = \"h:x\"\n").starts_with("connectors.qq_mail.default.imap: "));
    assert!(error("endpoint = \"http://x\"\n").starts_with("connectors.qq_mail.default.endpoint: "));
    assert!(error("colour = \"red\"\n").contains("unknown field"));
    let config = KIT.config("[connectors.qq_mail.x]\naddress = \"a@qq.com\"\nauth_code = \"\"\n", "x");
    let err = QqMailConfig::from_config(&config).unwrap_err();
    assert_eq!(err.to_string(), "connectors.qq_mail.x.auth_code: must not be empty");
}

#[tokio::test]
async fn ca_file_must_hold_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, "not a certificate\n").unwrap();
    let text = config_text(&format!("ca_file = \"{}\"\n", path.display()));
    let config = KIT.config(&text, "default");
    let err = QqMail::new(&config).unwrap_err();
    assert_eq!(err.to_string(), "connectors.qq_mail.default.ca_file: holds no PEM certificate");
    let text = config_text("ca_file = \"/nonexistent/ca.pem\"\n");
    let config = KIT.config(&text, "default");
    let err = QqMail::new(&config).unwrap_err();
    assert!(err.to_string().starts_with("connectors.qq_mail.default.ca_file: cannot read"), "{err}");
}

#[tokio::test]
async fn every_tls_mode_builds() {
    for tls in ["implicit", "starttls", "none"] {
        connector(&format!("tls = \"{tls}\"\nsmtp = \"localhost:2525\"\n"));
    }
}

// ---------------------------------------------------------------------------------------------
// send_mail: the message

fn send_params(extra: Value) -> SendMail {
    let mut params =
        json!({"to": ["a@example.com"], "subject": "Hello", "body": "Hi there", "mime_type": "text/plain"});
    for (key, value) in extra.as_object().unwrap() {
        params[key] = value.clone();
    }
    serde_json::from_value(params).unwrap()
}

fn sender() -> lettre::message::Mailbox {
    "Yizhan <123456@qq.com>".parse().unwrap()
}

fn formatted(extra: Value) -> String {
    let message = smtp::build_message(&sender(), job_id(), &send_params(extra)).unwrap();
    String::from_utf8(message.formatted()).unwrap()
}

/// The headers of a formatted message, unfolded.
fn header(raw: &str, name: &str) -> Option<String> {
    let head = raw.split("\r\n\r\n").next().unwrap().replace("\r\n ", " ").replace("\r\n\t", " ");
    let prefix = format!("{}: ", name.to_ascii_lowercase());
    head.lines().find(|l| l.to_ascii_lowercase().starts_with(&prefix)).map(|l| l[prefix.len()..].to_string())
}

/// The body of a single-part message, without the final line end.
fn body_of(raw: &str) -> &str {
    raw.split_once("\r\n\r\n").unwrap().1.trim_end_matches("\r\n")
}

#[test]
fn message_id_derives_from_the_job_id_and_the_senders_domain() {
    let raw = formatted(json!({}));
    assert_eq!(header(&raw, "Message-ID").unwrap(), format!("<{JOB}@qq.com>"));
    assert_eq!(smtp::message_id(job_id(), &sender()), format!("{JOB}@qq.com"));
    // The same job gives the same id on every attempt.
    assert_eq!(header(&formatted(json!({})), "Message-ID"), header(&raw, "Message-ID"));
    assert_eq!(header(&raw, "From").unwrap(), "Yizhan <123456@qq.com>");
    assert_eq!(header(&raw, "Subject").unwrap(), "Hello");
    assert!(header(&raw, "Date").is_some());
}

#[test]
fn recipients_go_to_headers_and_envelope_but_bcc_only_to_the_envelope() {
    let params = send_params(json!({"to": ["a@example.com", "Bee <b@example.com>"], "cc": ["c@example.com"],
                                    "bcc": ["hidden@example.com"], "reply_to": "Ops <ops@example.com>"}));
    let message = smtp::build_message(&sender(), job_id(), &params).unwrap();
    let raw = String::from_utf8(message.formatted()).unwrap();
    assert_eq!(header(&raw, "To").unwrap(), "a@example.com, Bee <b@example.com>");
    assert_eq!(header(&raw, "Cc").unwrap(), "c@example.com");
    assert_eq!(header(&raw, "Reply-To").unwrap(), "Ops <ops@example.com>");
    assert_eq!(header(&raw, "Bcc"), None);
    assert!(!raw.contains("hidden@example.com"));
    let envelope: Vec<String> = message.envelope().to().iter().map(ToString::to_string).collect();
    assert_eq!(envelope, ["a@example.com", "b@example.com", "c@example.com", "hidden@example.com"]);
    assert_eq!(message.envelope().from().unwrap().to_string(), "123456@qq.com");
}

#[test]
fn extra_headers_are_added_and_reserved_ones_refused() {
    let raw = formatted(json!({"headers": {"X-Campaign": "spring", "List-Unsubscribe": "<mailto:u@example.com>"}}));
    assert_eq!(header(&raw, "X-Campaign").unwrap(), "spring");
    assert_eq!(header(&raw, "List-Unsubscribe").unwrap(), "<mailto:u@example.com>");
    for (headers, reason) in [
        (json!({"Subject": "x"}), "headers: Subject is set by send_mail itself"),
        (json!({"message-id": "x"}), "headers: message-id is set by send_mail itself"),
        (json!({"X-Bad": "a\r\nBcc: x@example.com"}), "headers: the value of X-Bad holds a line break"),
        (json!({"X Bad": "a"}), "headers: \"X Bad\" is not a valid header name"),
    ] {
        let err = smtp::build_message(&sender(), job_id(), &send_params(json!({"headers": headers}))).unwrap_err();
        assert_eq!(err, reason);
    }
}

#[test]
fn bad_addresses_and_attachments_are_refused() {
    let err = smtp::build_message(&sender(), job_id(), &send_params(json!({"to": ["not an address"]}))).unwrap_err();
    assert!(err.starts_with("to[0]: \"not an address\" is not a mail address"), "{err}");
    let attachments =
        json!([{"filename": "a.bin", "content_type": "application/octet-stream", "content_base64": "%%%"}]);
    let err = smtp::build_message(&sender(), job_id(), &send_params(json!({"attachments": attachments}))).unwrap_err();
    assert!(err.starts_with("attachments[0].content_base64: "), "{err}");
}

#[test]
fn each_mime_type_sets_the_content_type() {
    for (mime_type, expected) in
        [("text/plain", "text/plain; charset=utf-8"), ("text/html", "text/html; charset=utf-8")]
    {
        let raw = formatted(json!({"mime_type": mime_type, "body": "<b>hi</b>"}));
        assert_eq!(header(&raw, "Content-Type").unwrap(), expected);
        assert_eq!(header(&raw, "MIME-Version").unwrap(), "1.0");
        assert_eq!(body_of(&raw), "<b>hi</b>");
    }
    let ics = "BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\nSUMMARY:Sync\r\nEND:VEVENT\r\nEND:VCALENDAR";
    let raw = formatted(json!({"mime_type": "text/calendar", "body": ics}));
    assert_eq!(header(&raw, "Content-Type").unwrap(), "text/calendar; charset=utf-8; method=REQUEST");
    assert!(raw.contains("\r\n\r\nBEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\n"), "{raw}");
}

#[test]
fn each_transfer_encoding_encodes_the_body() {
    let body = "你好, world = ok";
    let raw = formatted(json!({"body": body, "transfer_encoding": "base64"}));
    assert_eq!(header(&raw, "Content-Transfer-Encoding").unwrap(), "base64");
    assert_eq!(body_of(&raw), "5L2g5aW9LCB3b3JsZCA9IG9r");

    let raw = formatted(json!({"body": body, "transfer_encoding": "8bit"}));
    assert_eq!(header(&raw, "Content-Transfer-Encoding").unwrap(), "8bit");
    assert_eq!(body_of(&raw), body);

    let raw = formatted(json!({"body": body, "transfer_encoding": "quoted-printable"}));
    assert_eq!(header(&raw, "Content-Transfer-Encoding").unwrap(), "quoted-printable");
    assert_eq!(body_of(&raw), "=E4=BD=A0=E5=A5=BD, world =3D ok");

    // Left to the mailer: plain ASCII stays 7bit.
    let raw = formatted(json!({"body": "plain"}));
    assert_eq!(header(&raw, "Content-Transfer-Encoding").unwrap(), "7bit");

    // 8bit cannot carry a 2000-byte line: the mailer's choice keeps the mail valid.
    let long = "x".repeat(2000);
    let raw = formatted(json!({"body": long, "transfer_encoding": "8bit"}));
    assert_ne!(header(&raw, "Content-Transfer-Encoding").unwrap(), "8bit");
}

#[test]
fn attachments_make_a_mixed_multipart() {
    let attachments = json!([
        {"filename": "report.txt", "content_type": "text/plain", "content_base64": "aGVsbG8="},
        {"filename": "pic.png", "content_type": "image/png", "content_base64": "iVBORw0KGgo="}
    ]);
    let raw = formatted(json!({"mime_type": "text/html", "body": "<p>see</p>", "attachments": attachments}));
    let content_type = header(&raw, "Content-Type").unwrap();
    assert!(content_type.starts_with("multipart/mixed; boundary="), "{content_type}");
    assert!(
        raw.contains("Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n<p>see</p>")
    );
    assert!(raw.contains("Content-Disposition: attachment; filename=\"report.txt\""), "{raw}");
    assert!(raw.contains("Content-Disposition: attachment; filename=\"pic.png\""), "{raw}");
    assert!(
        raw.contains("Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n"),
        "{raw}"
    );
    // Parsed back, the mail holds what was sent.
    let summary = parse::summary(json!(1), raw.as_bytes());
    assert_eq!(summary["html_body"], "<p>see</p>");
    assert_eq!(
        summary["attachments"],
        json!([{"filename": "report.txt", "content_type": "text/plain", "size": 5},
               {"filename": "pic.png", "content_type": "image/png", "size": 8}])
    );
    assert_eq!(summary["message_id"], format!("{JOB}@qq.com"));
}

// ---------------------------------------------------------------------------------------------
// MIME parsing

const MULTIPART: &str = "From: =?UTF-8?B?5byg5LiJ?= <zhang@example.com>\r\n\
To: a@example.com, Bee <b@example.com>\r\n\
Cc: c@example.com\r\n\
Subject: =?UTF-8?B?6K6i5Y2VIE9yZGVy?=\r\n\
Date: Sat, 31 Jan 2026 08:30:00 +0800\r\n\
Message-ID: <m1@example.com>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"outer\"\r\n\
\r\n\
--outer\r\n\
Content-Type: multipart/alternative; boundary=\"inner\"\r\n\
\r\n\
--inner\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
Total =3D 42\r\n\
--inner\r\n\
Content-Type: text/html; charset=utf-8\r\n\
\r\n\
<p>Total = 42</p>\r\n\
--inner--\r\n\
--outer\r\n\
Content-Type: application/pdf; name=\"invoice.pdf\"\r\n\
Content-Disposition: attachment; filename=\"invoice.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
JVBERi0xLjQK\r\n\
--outer--\r\n";

#[test]
fn a_multipart_message_becomes_the_result_shape() {
    let summary = parse::summary(json!(7), MULTIPART.as_bytes());
    assert_eq!(
        summary,
        json!({
            "uid": 7,
            "message_id": "m1@example.com",
            "from": {"name": "张三", "address": "zhang@example.com"},
            "to": [{"name": null, "address": "a@example.com"}, {"name": "Bee", "address": "b@example.com"}],
            "cc": [{"name": null, "address": "c@example.com"}],
            "subject": "订单 Order",
            "date": "2026-01-31T08:30:00+08:00",
            "text_body": "Total = 42",
            "html_body": "<p>Total = 42</p>",
            "attachments": [{"filename": "invoice.pdf", "content_type": "application/pdf", "size": 9}],
            "size": MULTIPART.len(),
        })
    );
}

#[test]
fn an_html_only_message_has_no_text_body() {
    let raw = "From: a@example.com\r\nSubject: x\r\nContent-Type: text/html\r\n\r\n<b>only</b>\r\n";
    let summary = parse::summary(json!("u1"), raw.as_bytes());
    assert_eq!(summary["text_body"], Value::Null);
    assert_eq!(summary["html_body"], "<b>only</b>\r\n");
    assert_eq!(summary["date"], Value::Null);
    assert_eq!(summary["to"], json!([]));
}

#[test]
fn filters_match_sender_subject_and_dates() {
    let summary = parse::summary(json!(7), MULTIPART.as_bytes());
    let filter = |from: Option<&str>, subject: Option<&str>, since: Option<&str>, until: Option<&str>| {
        parse::Filter::new(from, subject, since, until).unwrap().matches(&summary)
    };
    assert!(filter(None, None, None, None));
    assert!(filter(Some("EXAMPLE.com"), Some("order"), None, None));
    assert!(filter(Some("张三"), Some("订单"), None, None));
    assert!(!filter(Some("qq.com"), None, None, None));
    assert!(!filter(None, Some("invoice"), None, None));
    // 08:30 +08:00 is 00:30 UTC.
    assert!(filter(None, None, Some("2026-01-31"), Some("2026-02-01")));
    assert!(filter(None, None, Some("2026-01-31T00:30:00Z"), None));
    assert!(!filter(None, None, Some("2026-01-31T00:30:01Z"), None));
    assert!(!filter(None, None, None, Some("2026-01-31T08:30:00+08:00")));
    assert!(!filter(None, None, Some("2026-02-01"), None));
    let undated = parse::summary(json!(1), b"Subject: x\r\n\r\nbody");
    assert!(!parse::Filter::new(None, None, Some("2020-01-01"), None).unwrap().matches(&undated));
    assert!(parse::Filter::new(None, None, Some("31/01/2026"), None).is_err());
}

// ---------------------------------------------------------------------------------------------
// scripted peers

/// How a scripted peer protects its connection.
#[derive(Debug, Clone, Copy)]
enum PeerTls {
    Plain,
    /// TLS from the first byte, with the `localhost` certificate of `testdata/`.
    Implicit,
    /// After the greeting, a line containing `.0` answered with `.1`, then the TLS handshake.
    Upgrade(&'static str, &'static str),
}

const CA_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/connectors/qq_mail/testdata/ca.pem");

type PeerStream = BufReader<Box<dyn super::MailStream>>;

async fn tls_accept(stream: Box<dyn super::MailStream>) -> PeerStream {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(include_bytes!("testdata/localhost.pem"))
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(include_bytes!("testdata/localhost.key")).unwrap();
    let config =
        rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
    let tls = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config)).accept(stream).await.unwrap();
    BufReader::new(Box::new(tls))
}

/// Reads one line; the first word is the tag an IMAP reply repeats.
async fn read_line(stream: &mut PeerStream) -> (String, String) {
    let mut line = String::new();
    stream.read_line(&mut line).await.unwrap();
    let tag = line.split_whitespace().next().unwrap_or_default().to_string();
    (line, tag)
}

/// One connection: sends `greeting`, then per step reads a line, checks that it contains the
/// expected text and answers (`{tag}` is the line's first word, for IMAP). Gives back the lines.
async fn scripted(greeting: &str, steps: Vec<(&'static str, String)>) -> (SocketAddr, JoinHandle<Vec<String>>) {
    scripted_with(PeerTls::Plain, greeting, steps).await
}

async fn scripted_with(
    tls: PeerTls,
    greeting: &str,
    steps: Vec<(&'static str, String)>,
) -> (SocketAddr, JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let greeting = greeting.to_string();
    let handle = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let stream: Box<dyn super::MailStream> = Box::new(stream);
        let mut stream = match tls {
            PeerTls::Implicit => tls_accept(stream).await,
            _ => BufReader::new(stream),
        };
        stream.get_mut().write_all(greeting.as_bytes()).await.unwrap();
        if let PeerTls::Upgrade(expected, reply) = tls {
            let (line, tag) = read_line(&mut stream).await;
            assert!(line.contains(expected), "expected {expected:?}, got {line:?}");
            stream.get_mut().write_all(reply.replace("{tag}", &tag).as_bytes()).await.unwrap();
            stream = tls_accept(stream.into_inner()).await;
        }
        let mut seen = Vec::new();
        for (expected, reply) in steps {
            let (line, tag) = read_line(&mut stream).await;
            assert!(line.contains(expected), "expected {expected:?}, got {line:?}");
            stream.get_mut().write_all(reply.replace("{tag}", &tag).as_bytes()).await.unwrap();
            seen.push(line.trim_end().to_string());
        }
        seen
    });
    (addr, handle)
}

const STUFFED: &str = "Subject: dots\r\nFrom: a@example.com\r\n\r\n..leading dot\r\n...two\r\n.\r\n";
const UNSTUFFED: &str = "Subject: dots\r\nFrom: a@example.com\r\n\r\n.leading dot\r\n..two\r\n";

#[tokio::test]
async fn pop3_client_runs_the_whole_session() {
    let (addr, peer) = scripted(
        "+OK POP3 ready\r\n",
        vec![
            ("USER 123456@qq.com", "+OK\r\n".into()),
            ("PASS abcdefghijklmnop", "+OK logged in\r\n".into()),
            ("STAT", "+OK 2 320\r\n".into()),
            ("UIDL", "+OK\r\n1 ZC0001\r\n2 ZC0002\r\n.\r\n".into()),
            ("RETR 1", format!("+OK 120 octets\r\n{STUFFED}")),
            ("DELE 1", "+OK deleted\r\n".into()),
            ("RETR 9", "-ERR no such message\r\n".into()),
            ("QUIT", "+OK bye\r\n".into()),
        ],
    )
    .await;
    let mut client = Pop3::connect(TcpStream::connect(addr).await.unwrap()).await.unwrap();
    client.login("123456@qq.com", AUTH_CODE).await.unwrap();
    assert_eq!(client.stat().await.unwrap(), (2, 320));
    assert_eq!(client.uidl().await.unwrap(), vec![(1, "ZC0001".to_string()), (2, "ZC0002".to_string())]);
    assert_eq!(String::from_utf8(client.retr(1).await.unwrap()).unwrap(), UNSTUFFED);
    client.dele(1).await.unwrap();
    let err = client.retr(9).await.unwrap_err();
    assert!(matches!(&err, MailError::Refused(text) if text == "RETR: no such message"), "{err:?}");
    client.quit().await.unwrap();
    assert_eq!(peer.await.unwrap().len(), 8);
}

#[tokio::test]
async fn pop3_refusals_are_classified() {
    let (addr, peer) = scripted(
        "+OK ready\r\n",
        vec![("USER", "+OK\r\n".into()), ("PASS", "-ERR [AUTH] Authentication failed.\r\n".into())],
    )
    .await;
    let mut client = Pop3::connect(TcpStream::connect(addr).await.unwrap()).await.unwrap();
    let err = client.login("u", AUTH_CODE).await.unwrap_err();
    assert!(matches!(&err, MailError::Auth(text) if text == "[AUTH] Authentication failed."), "{err:?}");
    assert!(!err.to_string().contains(AUTH_CODE));
    peer.await.unwrap();

    let (addr, peer) = scripted(
        "+OK ready\r\n",
        vec![("USER", "+OK\r\n".into()), ("PASS", "-ERR [IN-USE] Mailbox is locked by another session\r\n".into())],
    )
    .await;
    let mut client = Pop3::connect(TcpStream::connect(addr).await.unwrap()).await.unwrap();
    assert!(matches!(client.login("u", AUTH_CODE).await, Err(MailError::Busy(_))));
    peer.await.unwrap();

    // A greeting that is not one, and a server that hangs up.
    let (addr, _peer) = scripted("* OK this is IMAP\r\n", vec![]).await;
    assert!(matches!(Pop3::connect(TcpStream::connect(addr).await.unwrap()).await, Err(MailError::Network(_))));
    let (addr, peer) = scripted("+OK ready\r\n", vec![("STLS", "-ERR not supported\r\n".into())]).await;
    let client = Pop3::connect(TcpStream::connect(addr).await.unwrap()).await.unwrap();
    assert!(matches!(client.stls().await, Err(MailError::Refused(_))));
    peer.await.unwrap();
}

fn pop3_header(subject: &str, date: &str) -> String {
    format!("From: Shop <shop@example.com>\r\nSubject: {subject}\r\nDate: {date}\r\n\r\n.\r\n")
}

fn pop3_message(subject: &str, date: &str) -> String {
    format!(
        "From: Shop <shop@example.com>\r\nSubject: {subject}\r\nDate: {date}\r\nMessage-ID: <{subject}@x>\r\n\r\nbody\r\n.\r\n"
    )
}

#[tokio::test]
async fn receive_mail_pop3_filters_and_deletes_only_what_it_returns() {
    let (addr, peer) = scripted(
        "+OK ready\r\n",
        vec![
            ("USER 123456@qq.com", "+OK\r\n".into()),
            ("PASS", "+OK\r\n".into()),
            ("STAT", "+OK 3 900\r\n".into()),
            ("UIDL", "+OK\r\n1 u1\r\n2 u2\r\n3 u3\r\n.\r\n".into()),
            // The header rules the first message out; then the server turns out not to know TOP.
            ("TOP 1 0", format!("+OK\r\n{}", pop3_header("old", "Mon, 5 Jan 2026 10:00:00 +0000"))),
            ("TOP 2 0", format!("+OK\r\n{}", pop3_header("new", "Mon, 2 Feb 2026 10:00:00 +0000"))),
            ("RETR 2", format!("+OK\r\n{}", pop3_message("new", "Mon, 2 Feb 2026 10:00:00 +0000"))),
            ("TOP 3 0", "-ERR unknown command\r\n".into()),
            ("RETR 3", format!("+OK\r\n{}", pop3_message("newer", "Tue, 3 Feb 2026 10:00:00 +0000"))),
            ("DELE 2", "+OK\r\n".into()),
            ("DELE 3", "+OK\r\n".into()),
            ("QUIT", "+OK\r\n".into()),
        ],
    )
    .await;
    let mail = connector(&format!("tls = \"none\"\npop3 = \"{addr}\"\n"));
    let params = json!({"delete_after": true, "filter": {"from": "shop@", "since": "2026-02-01", "max": 5}});
    let result = run(&mail, "receive_mail_pop3", &params).await.unwrap().result.unwrap();
    let messages = result["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["uid"], "u2");
    assert_eq!(messages[0]["subject"], "new");
    assert_eq!(messages[0]["message_id"], "new@x");
    assert_eq!(messages[0]["text_body"], "body\r\n");
    assert_eq!(messages[1]["uid"], "u3");
    peer.await.unwrap();
}

#[tokio::test]
async fn receive_mail_pop3_stops_at_max_and_keeps_messages_by_default() {
    let (addr, peer) = scripted(
        "+OK ready\r\n",
        vec![
            ("USER", "+OK\r\n".into()),
            ("PASS", "+OK\r\n".into()),
            ("STAT", "+OK 2 600\r\n".into()),
            ("UIDL", "+OK\r\n1 u1\r\n2 u2\r\n.\r\n".into()),
            ("RETR 1", format!("+OK\r\n{}", pop3_message("one", "Mon, 5 Jan 2026 10:00:00 +0000"))),
            ("QUIT", "+OK\r\n".into()),
        ],
    )
    .await;
    let mail = connector(&format!("tls = \"none\"\npop3 = \"{addr}\"\n"));
    let result = run(&mail, "receive_mail_pop3", &json!({"filter": {"max": 1}})).await.unwrap().result.unwrap();
    assert_eq!(result["messages"].as_array().unwrap().len(), 1);
    assert_eq!(peer.await.unwrap().last().unwrap(), "QUIT");
}

#[tokio::test]
async fn receive_mail_pop3_failures_are_classified_without_the_auth_code() {
    let (addr, _peer) = scripted(
        "+OK ready\r\n",
        vec![("USER", "+OK\r\n".into()), ("PASS", format!("-ERR bad password {AUTH_CODE}\r\n"))],
    )
    .await;
    let mail = connector(&format!("tls = \"none\"\npop3 = \"{addr}\"\n"));
    let failure = run(&mail, "receive_mail_pop3", &json!({})).await.unwrap_err();
    assert_eq!(failure, Failure::permanent("pop3: login refused: bad password ***"));

    // Nobody listens: a connection error is transient.
    let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    let mail = connector(&format!("tls = \"none\"\npop3 = \"127.0.0.1:{port}\"\nimap = \"127.0.0.1:{port}\"\n"));
    for action in ["receive_mail_pop3", "receive_mail_imap"] {
        let failure = run(&mail, action, &json!({})).await.unwrap_err();
        assert!(matches!(failure, Failure::Transient { .. }), "{action}: {failure:?}");
    }
    // So is a TLS handshake with a server that does not speak TLS.
    let (addr, _peer) = scripted("+OK plain text, no TLS here\r\n", vec![]).await;
    let mail = connector(&format!("tls = \"implicit\"\npop3 = \"{addr}\"\n"));
    let failure = run(&mail, "receive_mail_pop3", &json!({})).await.unwrap_err();
    assert!(matches!(failure, Failure::Transient { .. }), "{failure:?}");
}

// ---------------------------------------------------------------------------------------------
// IMAP

fn head(raw: &str) -> &str {
    &raw[..raw.find("\r\n\r\n").unwrap() + 4]
}

fn literal(raw: &str) -> String {
    format!("{{{}}}\r\n{raw}", raw.len())
}

#[tokio::test]
async fn receive_mail_imap_searches_fetches_and_marks_seen() {
    let first = "From: Shop <shop@example.com>\r\nSubject: Order 1\r\nDate: Mon, 2 Feb 2026 10:00:00 +0000\r\nMessage-ID: <o1@x>\r\n\r\none\r\n";
    let second =
        "From: Other <other@example.com>\r\nSubject: Order 2\r\nDate: Mon, 2 Feb 2026 11:00:00 +0000\r\n\r\ntwo\r\n";
    let (addr, peer) = scripted(
        "* OK [CAPABILITY IMAP4rev1] ready\r\n",
        vec![
            ("LOGIN \"123456@qq.com\" \"abcdefghijklmnop\"", "{tag} OK LOGIN completed\r\n".into()),
            (
                "SELECT \"&i6JTVQ-/Orders\"",
                "* 2 EXISTS\r\n* OK [UIDVALIDITY 1700] UIDs valid\r\n{tag} OK [READ-WRITE] SELECT completed\r\n".into(),
            ),
            (
                "UID SEARCH UNSEEN SENTSINCE 31-Jan-2026 FROM \"shop\" SUBJECT \"order\"",
                "* SEARCH 12 9\r\n{tag} OK SEARCH completed\r\n".into(),
            ),
            (
                "UID FETCH 9,12 (UID BODY.PEEK[HEADER])",
                format!(
                    "* 2 FETCH (UID 12 BODY[HEADER] {})\r\n* 1 FETCH (UID 9 BODY[HEADER] {})\r\n{{tag}} OK FETCH completed\r\n",
                    literal(head(second)),
                    literal(head(first))
                ),
            ),
            (
                "UID FETCH 9 (UID BODY.PEEK[])",
                format!("* 1 FETCH (UID 9 BODY[] {})\r\n{{tag}} OK FETCH completed\r\n", literal(first)),
            ),
            ("UID STORE 9 +FLAGS.SILENT (\\Seen)", "{tag} OK STORE completed\r\n".into()),
            ("LOGOUT", "* BYE\r\n{tag} OK LOGOUT completed\r\n".into()),
        ],
    )
    .await;
    let mail = connector(&format!("tls = \"none\"\nimap = \"{addr}\"\n"));
    let params = json!({"folder": "订单/Orders", "mark_seen": true,
                        "filter": {"from": "shop", "subject_contains": "order", "since": "2026-02-01", "unseen_only": true}});
    let result = run(&mail, "receive_mail_imap", &params).await.unwrap().result.unwrap();
    assert_eq!(result["folder"], "订单/Orders");
    assert_eq!(result["uid_validity"], 1700);
    let messages = result["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{result}");
    assert_eq!(messages[0]["uid"], 9);
    assert_eq!(messages[0]["message_id"], "o1@x");
    assert_eq!(messages[0]["from"], json!({"name": "Shop", "address": "shop@example.com"}));
    assert_eq!(messages[0]["text_body"], "one\r\n");
    assert_eq!(peer.await.unwrap().len(), 7);
}

#[tokio::test]
async fn receive_mail_imap_without_conditions_fetches_the_oldest_bodies_up_to_max() {
    let raw = "From: a@example.com\r\nSubject: s\r\n\r\nx\r\n";
    let (addr, peer) = scripted(
        "* OK ready\r\n",
        vec![
            ("LOGIN", "{tag} OK\r\n".into()),
            ("SELECT \"INBOX\"", "* 3 EXISTS\r\n{tag} OK SELECT completed\r\n".into()),
            ("UID SEARCH ALL", "* SEARCH 5 3 4\r\n{tag} OK SEARCH completed\r\n".into()),
            (
                "UID FETCH 3,4 (UID BODY.PEEK[])",
                format!(
                    "* 1 FETCH (UID 3 BODY[] {})\r\n* 2 FETCH (UID 4 BODY[] {})\r\n{{tag}} OK FETCH completed\r\n",
                    literal(raw),
                    literal(raw)
                ),
            ),
            ("LOGOUT", "{tag} OK\r\n".into()),
        ],
    )
    .await;
    let mail = connector(&format!("tls = \"none\"\nimap = \"{addr}\"\n"));
    let result = run(&mail, "receive_mail_imap", &json!({"filter": {"max": 2}})).await.unwrap().result.unwrap();
    let uids: Vec<&Value> = result["messages"].as_array().unwrap().iter().map(|m| &m["uid"]).collect();
    assert_eq!(uids, [&json!(3), &json!(4)]);
    assert_eq!(result["uid_validity"], Value::Null);
    peer.await.unwrap();

    // STARTTLS refused: the config asks for something this server cannot do.
    let (addr, _peer) = scripted("* OK ready\r\n", vec![("STARTTLS", "{tag} BAD unknown command\r\n".into())]).await;
    let mail = connector(&format!("tls = \"starttls\"\nimap = \"{addr}\"\n"));
    let failure = run(&mail, "receive_mail_imap", &json!({})).await.unwrap_err();
    assert_eq!(failure, Failure::permanent("imap: STARTTLS: unknown command"));
}

#[tokio::test]
async fn receive_mail_imap_refusals_are_classified() {
    let (addr, _peer) = scripted(
        "* OK ready\r\n",
        vec![("LOGIN", "{tag} NO [AUTHENTICATIONFAILED] Authentication failed.\r\n".into())],
    )
    .await;
    let mail = connector(&format!("tls = \"none\"\nimap = \"{addr}\"\n"));
    let failure = run(&mail, "receive_mail_imap", &json!({})).await.unwrap_err();
    assert_eq!(failure, Failure::permanent("imap: login refused: [AUTHENTICATIONFAILED] Authentication failed."));

    let (addr, _peer) =
        scripted("* OK ready\r\n", vec![("LOGIN", "{tag} NO [UNAVAILABLE] Temporary failure\r\n".into())]).await;
    let mail = connector(&format!("tls = \"none\"\nimap = \"{addr}\"\n"));
    let failure = run(&mail, "receive_mail_imap", &json!({})).await.unwrap_err();
    assert!(matches!(failure, Failure::Transient { .. }), "{failure:?}");

    let (addr, _peer) = scripted(
        "* OK ready\r\n",
        vec![("LOGIN", "{tag} OK\r\n".into()), ("SELECT \"Nope\"", "{tag} NO Mailbox doesn't exist: Nope\r\n".into())],
    )
    .await;
    let mail = connector(&format!("tls = \"none\"\nimap = \"{addr}\"\n"));
    let failure = run(&mail, "receive_mail_imap", &json!({"folder": "Nope"})).await.unwrap_err();
    assert_eq!(failure, Failure::permanent("imap: SELECT: Mailbox doesn't exist: Nope"));
}

#[test]
fn imap_search_and_folder_encoding() {
    let filter = |v: Value| serde_json::from_value::<yizhan_schemas::catalog::ImapFilter>(v).unwrap();
    assert_eq!(imap::search_query(&filter(json!({})), None).unwrap(), "ALL");
    let since = parse::parse_bound("2026-01-01").unwrap();
    assert_eq!(
        imap::search_query(
            &filter(json!({"from": "a\"b", "subject_contains": "订单", "unseen_only": true})),
            Some(since)
        )
        .unwrap(),
        "UNSEEN SENTSINCE 31-Dec-2025 FROM \"a\\\"b\""
    );
    assert_eq!(imap::server_text(r#"code: None, info: Some("No such \"x\"")"#), r#"No such "x""#);
    assert_eq!(imap::server_text(r#"code: Some(Alert), info: Some("Quota")"#), "[Alert] Quota");
    assert_eq!(imap::server_text(r#"outcome: Outcome { code: None, information: Some("Gone") }"#), "Gone");
    assert_eq!(imap::server_text("code: None, info: None"), "no reason given");
    assert_eq!(imap::server_text("outcome: Bad"), "outcome: Bad");
    assert_eq!(imap::utf7_folder("INBOX"), "INBOX");
    assert_eq!(imap::utf7_folder("A&B"), "A&-B");
    // RFC 3501 §5.1.3's example.
    assert_eq!(imap::utf7_folder("~peter/mail/台北/日本語"), "~peter/mail/&U,BTFw-/&ZeVnLIqe-");
}

// ---------------------------------------------------------------------------------------------
// SMTP

/// A one-connection SMTP peer answering `MAIL FROM` with `mail_reply` (and the rest with
/// success); gives back the commands and the DATA it received.
async fn smtp_peer(
    auth_reply: &'static str,
    mail_reply: &'static str,
) -> (SocketAddr, JoinHandle<(Vec<String>, String)>) {
    smtp_peer_with(PeerTls::Plain, auth_reply, mail_reply).await
}

/// As [`smtp_peer`]; with [`PeerTls::Upgrade`] it offers STARTTLS (the arguments are unused).
async fn smtp_peer_with(
    tls: PeerTls,
    auth_reply: &'static str,
    mail_reply: &'static str,
) -> (SocketAddr, JoinHandle<(Vec<String>, String)>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let stream: Box<dyn super::MailStream> = Box::new(stream);
        let mut stream = match tls {
            PeerTls::Implicit => tls_accept(stream).await,
            _ => BufReader::new(stream),
        };
        let mut offer_starttls = matches!(tls, PeerTls::Upgrade(..));
        stream.get_mut().write_all(b"220 smtp.test ESMTP\r\n").await.unwrap();
        let (mut commands, mut data) = (Vec::new(), String::new());
        loop {
            let mut line = String::new();
            if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                break;
            }
            let command = line.trim_end().to_string();
            let verb = command.split_whitespace().next().unwrap_or_default().to_ascii_uppercase();
            commands.push(command);
            let reply = match verb.as_str() {
                "EHLO" if offer_starttls => "250-smtp.test\r\n250 STARTTLS\r\n",
                "STARTTLS" => {
                    stream.get_mut().write_all(b"220 go ahead\r\n").await.unwrap();
                    stream = tls_accept(stream.into_inner()).await;
                    offer_starttls = false;
                    continue;
                }
                "EHLO" => "250-smtp.test\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n",
                "AUTH" => auth_reply,
                "MAIL" => mail_reply,
                "DATA" => {
                    stream.get_mut().write_all(b"354 go ahead\r\n").await.unwrap();
                    loop {
                        let mut line = String::new();
                        stream.read_line(&mut line).await.unwrap();
                        if line == ".\r\n" {
                            break;
                        }
                        data.push_str(&line);
                    }
                    "250 OK: queued as 42\r\n"
                }
                "QUIT" => {
                    stream.get_mut().write_all(b"221 bye\r\n").await.unwrap();
                    break;
                }
                _ => "250 OK\r\n",
            };
            stream.get_mut().write_all(reply.as_bytes()).await.unwrap();
            if !reply.starts_with(['2', '3']) {
                break;
            }
        }
        (commands, data)
    });
    (addr, handle)
}

fn mail_to(addr: SocketAddr) -> QqMail {
    connector(&format!("tls = \"none\"\nsmtp = \"{addr}\"\n"))
}

#[tokio::test]
async fn send_mail_submits_with_auth_envelope_and_the_jobs_message_id() {
    let (addr, peer) = smtp_peer("235 Authentication successful\r\n", "250 OK\r\n").await;
    let mail = mail_to(addr);
    let params = json!({"to": ["a@example.com"], "bcc": ["hidden@example.com"], "subject": "Hi", "body": "Hello",
                        "mime_type": "text/plain"});
    let success = run(&mail, "send_mail", &params).await.unwrap();
    assert_eq!(
        success.result,
        Some(json!({"message_id": format!("{JOB}@qq.com"), "response": "250 OK: queued as 42"}))
    );
    drop(mail);
    let (commands, data) = peer.await.unwrap();
    use base64::Engine;
    let plain = base64::engine::general_purpose::STANDARD.encode(format!("\0123456@qq.com\0{AUTH_CODE}"));
    assert!(commands.contains(&format!("AUTH PLAIN {plain}")), "{commands:?}");
    assert!(commands.contains(&"MAIL FROM:<123456@qq.com>".to_string()), "{commands:?}");
    assert!(commands.contains(&"RCPT TO:<a@example.com>".to_string()), "{commands:?}");
    assert!(commands.contains(&"RCPT TO:<hidden@example.com>".to_string()), "{commands:?}");
    assert!(data.contains(&format!("Message-ID: <{JOB}@qq.com>\r\n")), "{data}");
    assert!(!data.contains("hidden@example.com"), "{data}");
}

#[tokio::test]
async fn send_mail_replies_are_classified_without_the_auth_code() {
    for (auth, mail_reply, expected) in [
        ("235 ok\r\n", "550 Ip frequency limited\r\n", "throttled"),
        ("235 ok\r\n", "550 Mailbox unavailable or access denied\r\n", "transient"),
        ("235 ok\r\n", "451 Temporary local problem\r\n", "transient"),
        ("235 ok\r\n", "552 Message too large\r\n", "permanent"),
        ("235 ok\r\n", "501 Bad address syntax\r\n", "permanent"),
        ("535 Error: authentication failed\r\n", "250 OK\r\n", "permanent"),
    ] {
        let (addr, _peer) = smtp_peer(auth, mail_reply).await;
        let mail = mail_to(addr);
        let params = json!({"to": ["a@example.com"], "subject": "Hi", "body": "Hello", "mime_type": "text/plain"});
        let failure = run(&mail, "send_mail", &params).await.unwrap_err();
        let kind = match &failure {
            Failure::Transient { .. } => "transient",
            Failure::Throttled { .. } => "throttled",
            Failure::Permanent { .. } => "permanent",
            Failure::Ambiguous { .. } => "ambiguous",
            Failure::Unreachable { .. } => "unreachable",
        };
        assert_eq!(kind, expected, "{mail_reply}: {failure:?}");
        let code = if auth.starts_with("535") { "535" } else { &mail_reply[..3] };
        assert!(failure.reason().starts_with("smtp: ") && failure.reason().contains(code), "{}", failure.reason());
    }
}

#[tokio::test]
async fn send_mail_connection_errors_are_transient_and_bad_params_permanent() {
    let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    let mail = connector(&format!("tls = \"none\"\nsmtp = \"127.0.0.1:{port}\"\n"));
    let params = json!({"to": ["a@example.com"], "subject": "Hi", "body": "Hello", "mime_type": "text/plain"});
    let failure = run(&mail, "send_mail", &params).await.unwrap_err();
    assert!(matches!(failure, Failure::Transient { .. }), "{failure:?}");

    let bad = json!({"to": ["a@example.com"], "subject": "Hi", "body": "Hello", "mime_type": "text/plain",
                     "headers": {"From": "x@example.com"}});
    let failure = run(&mail, "send_mail", &bad).await.unwrap_err();
    assert_eq!(failure, Failure::permanent("params: headers: From is set by send_mail itself"));
}

// ---------------------------------------------------------------------------------------------
// TLS: implicit and STARTTLS/STLS for each protocol, trusting `ca_file`

fn tls_connector(tls: &str, protocol: &str, addr: SocketAddr) -> QqMail {
    // The certificate names localhost: the TLS server name is the host part of the setting.
    connector(&format!("tls = \"{tls}\"\nca_file = \"{CA_FILE}\"\n{protocol} = \"localhost:{}\"\n", addr.port()))
}

#[tokio::test]
async fn pop3_runs_over_implicit_tls_and_stls() {
    let steps = || {
        vec![
            ("USER 123456@qq.com", "+OK\r\n".to_string()),
            ("PASS", "+OK\r\n".into()),
            ("STAT", "+OK 0 0\r\n".into()),
            ("QUIT", "+OK\r\n".into()),
        ]
    };
    for (tls, peer_tls) in
        [("implicit", PeerTls::Implicit), ("starttls", PeerTls::Upgrade("STLS", "+OK Begin TLS\r\n"))]
    {
        let (addr, peer) = scripted_with(peer_tls, "+OK ready\r\n", steps()).await;
        let result = run(&tls_connector(tls, "pop3", addr), "receive_mail_pop3", &json!({})).await.unwrap();
        assert_eq!(result.result, Some(json!({"messages": []})), "{tls}");
        assert_eq!(peer.await.unwrap().len(), 4, "{tls}");
    }
}

#[tokio::test]
async fn imap_runs_over_implicit_tls_and_starttls() {
    let steps = || {
        vec![
            ("LOGIN", "{tag} OK\r\n".to_string()),
            ("SELECT", "* OK [UIDVALIDITY 3] ok\r\n{tag} OK\r\n".into()),
            ("UID SEARCH ALL", "* SEARCH\r\n{tag} OK\r\n".into()),
            ("LOGOUT", "{tag} OK\r\n".into()),
        ]
    };
    for (tls, peer_tls) in
        [("implicit", PeerTls::Implicit), ("starttls", PeerTls::Upgrade("STARTTLS", "{tag} OK go\r\n"))]
    {
        let (addr, peer) = scripted_with(peer_tls, "* OK ready\r\n", steps()).await;
        let result = run(&tls_connector(tls, "imap", addr), "receive_mail_imap", &json!({})).await.unwrap();
        assert_eq!(result.result, Some(json!({"folder": "INBOX", "uid_validity": 3, "messages": []})), "{tls}");
        assert_eq!(peer.await.unwrap().len(), 4, "{tls}");
    }
}

#[tokio::test]
async fn smtp_runs_over_implicit_tls_and_starttls() {
    for (tls, peer_tls) in [("implicit", PeerTls::Implicit), ("starttls", PeerTls::Upgrade("", ""))] {
        let (addr, peer) = smtp_peer_with(peer_tls, "235 ok\r\n", "250 OK\r\n").await;
        let mail = tls_connector(tls, "smtp", addr);
        let params = json!({"to": ["a@example.com"], "subject": "Hi", "body": "Hello", "mime_type": "text/plain"});
        let success = run(&mail, "send_mail", &params).await.unwrap();
        assert_eq!(success.result.unwrap()["response"], "250 OK: queued as 42", "{tls}");
        drop(mail);
        let (commands, _) = peer.await.unwrap();
        assert_eq!(
            commands.iter().filter(|c| *c == "STARTTLS").count(),
            usize::from(tls == "starttls"),
            "{commands:?}"
        );
    }
}

#[tokio::test]
async fn an_untrusted_certificate_is_a_transient_failure() {
    // Without ca_file the test CA is unknown: the handshake fails, nothing is sent.
    let (addr, _peer) = scripted_with(PeerTls::Implicit, "+OK ready\r\n", vec![]).await;
    let mail = connector(&format!("tls = \"implicit\"\npop3 = \"localhost:{}\"\n", addr.port()));
    let failure = run(&mail, "receive_mail_pop3", &json!({})).await.unwrap_err();
    assert!(matches!(&failure, Failure::Transient { reason, .. } if reason.contains("TLS")), "{failure:?}");
    let (addr, _peer) = smtp_peer_with(PeerTls::Implicit, "235 ok\r\n", "250 OK\r\n").await;
    let mail = connector(&format!("tls = \"implicit\"\nsmtp = \"localhost:{}\"\n", addr.port()));
    let params = json!({"to": ["a@example.com"], "subject": "Hi", "body": "Hello", "mime_type": "text/plain"});
    let failure = run(&mail, "send_mail", &params).await.unwrap_err();
    assert!(matches!(failure, Failure::Transient { .. }), "{failure:?}");
}

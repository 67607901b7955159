//! `qq_mail` end to end: jobs through RabbitMQ to the real worker, against a private Postfix
//! (SMTP submission, AUTH over TLS) delivering into a private Dovecot (IMAP, POP3) that each test
//! starts (`yizhan_tests::mail`). Delivered mail is read back from the maildir byte for byte.

use std::time::Duration;

use base64::Engine;
use mail_parser::MimeHeaders;
use serde_json::{Value, json};
use yizhan_sandbox::SandboxConfig;
use yizhan_schemas::Job;
use yizhan_state::StateStore;
use yizhan_tests::mail::{Delivered, FREQUENCY_LIMITED, MailServer, PASSWORD, THROTTLED, Tls, USER};
use yizhan_tests::{Harness, Store, WAIT, Worker, eventually, job};

/// One test's mail servers, harness (config `box`) and worker.
struct World {
    mail: MailServer,
    // Before `h`: fields drop in order, and the worker must stop before the harness deletes its queues.
    worker: Worker,
    h: Harness,
    store: std::sync::Arc<dyn StateStore>,
}

impl World {
    async fn start(test: &str, tls: Tls) -> World {
        World::start_with(test, tls, PASSWORD).await
    }

    async fn start_with(test: &str, tls: Tls, auth_code: &str) -> World {
        // Starting takes a moment of blocking waits; keep the runtime's other tasks going.
        let mail = tokio::task::block_in_place(MailServer::start);
        let h = Harness::start(
            test,
            Store::Sqlite,
            SandboxConfig::default(),
            &mail.connector_config_with("box", tls, auth_code),
        )
        .await;
        let worker = h.spawn_worker(&[]).await;
        let store = h.store().await;
        World { mail, h, worker, store }
    }

    async fn submit(&self, action: &str, params: Value) -> uuid::Uuid {
        self.submit_job(job("qq_mail", "box", action, params)).await
    }

    async fn submit_job(&self, job: Job) -> uuid::Uuid {
        self.h.submit(&[job]).await[0]
    }

    /// Waits until job `id` succeeded; returns its stored result.
    async fn result_of(&self, id: uuid::Uuid) -> Value {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            if let Some(status) = self.store.status(id).await.unwrap() {
                match status.status.as_str() {
                    "succeeded" => return status.result.unwrap_or(Value::Null),
                    "dead" => panic!(
                        "job {id} is dead: {:?}\nworker log:\n{}\n{}",
                        status.error,
                        self.worker.log_text(),
                        self.mail.logs()
                    ),
                    _ => {}
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "job {id} did not succeed in {WAIT:?}\nworker log:\n{}\n{}",
                self.worker.log_text(),
                self.mail.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Submits a job and returns its result once it succeeded.
    async fn run(&self, action: &str, params: Value) -> Value {
        let id = self.submit(action, params).await;
        self.result_of(id).await
    }

    /// The messages a receive job returned.
    async fn receive(&self, action: &str, params: Value) -> Vec<Value> {
        let result = self.run(action, params).await;
        result["messages"].as_array().unwrap_or_else(|| panic!("no messages in {result}")).clone()
    }

    /// Every login Dovecot logged went over TLS (Dovecot lets plaintext logins from 127.0.0.1
    /// through, so the log is what shows the connector upgraded). Dovecot's log process writes
    /// the lines a moment after the session, hence the wait.
    async fn assert_logins_used_tls(&self, protocols: &[&str]) {
        let logins = |protocol: &str| -> Vec<String> {
            let needle = format!("{protocol}-login: Info: Login: user=<{USER}>");
            self.mail.dovecot_log().lines().filter(|l| l.contains(&needle)).map(str::to_string).collect()
        };
        for protocol in protocols {
            let what = format!("a {protocol} login in the Dovecot log");
            eventually(&what, WAIT, || std::future::ready(!logins(protocol).is_empty())).await;
            for line in logins(protocol) {
                assert!(line.contains(", TLS"), "{protocol} login without TLS: {line}");
            }
        }
    }
}

/// Binary content: every byte value, so that any re-encoding or line-ending change shows.
fn binary_attachment() -> Vec<u8> {
    let mut bytes: Vec<u8> = b"%PDF-1.7\r\n".to_vec();
    bytes.extend((0..=255u8).cycle().take(3000));
    bytes
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `\r\n` → `\n`, for comparing bodies that went through SMTP's line endings.
fn lf(text: &str) -> String {
    text.replace("\r\n", "\n")
}

/// The delivered message whose subject is `subject`.
fn by_subject<'a>(mail: &'a [Delivered], subject: &str) -> &'a Delivered {
    mail.iter().find(|m| m.parsed().subject() == Some(subject)).unwrap_or_else(|| {
        let subjects: Vec<_> = mail.iter().map(|m| m.parsed().subject().map(str::to_string)).collect();
        panic!("no delivered message with subject {subject:?}: {subjects:?}")
    })
}

/// The addresses of an address list of a received message summary.
fn addresses(list: &Value) -> Vec<String> {
    list.as_array().unwrap().iter().map(|a| a["address"].as_str().unwrap().to_string()).collect()
}

/// The raw body (after the header block) of a single-part message.
fn raw_body(message: &Delivered) -> String {
    let text = String::from_utf8_lossy(&message.raw).into_owned();
    let start = text.find("\r\n\r\n").map(|i| i + 4).or_else(|| text.find("\n\n").map(|i| i + 2)).unwrap();
    text[start..].to_string()
}

fn assert_summary_intact(found: &Value, id: uuid::Uuid, subject: &str, body: &str, attachment: &[u8]) {
    assert_eq!(found["subject"], subject, "{found}");
    assert_eq!(found["message_id"], format!("{id}@example.test"), "{found}");
    assert_eq!(found["from"]["address"], USER, "{found}");
    assert_eq!(addresses(&found["to"]), vec![USER.to_string()], "{found}");
    assert_eq!(addresses(&found["cc"]), vec!["carol@example.test".to_string()], "{found}");
    assert_eq!(found["cc"][0]["name"], "Carol Chen", "{found}");
    assert_eq!(lf(found["text_body"].as_str().unwrap()).trim_end(), body.trim_end(), "{found}");
    assert!(found["date"].as_str().is_some_and(|d| !d.is_empty()), "{found}");
    assert_eq!(
        found["attachments"],
        json!([{"filename": "季度报告.pdf", "content_type": "application/pdf", "size": attachment.len()}]),
        "{found}"
    );
}

/// (a) A sent mail is found intact by IMAP and by POP3 with filters; a second mail is filtered out.
async fn round_trip(test: &str, tls: Tls) {
    let w = World::start(test, tls).await;
    let attachment = binary_attachment();
    let subject = "订单 #42 已发货 (shipped)";
    let body = "您好，\n\n您的订单已发货。\nYour order has shipped.\n";
    let sent = w
        .submit(
            "send_mail",
            json!({"to": [USER], "cc": ["Carol Chen <carol@example.test>"], "subject": subject, "body": body,
                   "mime_type": "text/plain",
                   "attachments": [{"filename": "季度报告.pdf", "content_type": "application/pdf",
                                    "content_base64": b64(&attachment)}]}),
        )
        .await;
    let receipt = w.result_of(sent).await;
    assert_eq!(receipt["message_id"], format!("{sent}@example.test"), "{receipt}");
    assert!(receipt["response"].as_str().is_some_and(|r| r.starts_with("250")), "{receipt}");
    // Another mail in the same mailbox that the filters must leave out.
    w.run(
        "send_mail",
        json!({"to": [USER], "subject": "Weekly digest", "body": "nothing new", "mime_type": "text/plain"}),
    )
    .await;
    let delivered = w.mail.wait_for_mail(USER, 2, WAIT).await;
    assert_eq!(delivered.len(), 2);
    // The cc recipient got the same message.
    let carol = w.mail.wait_for_mail("carol@example.test", 1, WAIT).await;
    assert_eq!(carol.len(), 1);
    assert_eq!(carol[0].parsed().subject(), Some(subject));

    let imap = w
        .receive(
            "receive_mail_imap",
            json!({"folder": "INBOX", "filter": {"from": "me@example", "subject_contains": "已发货"}}),
        )
        .await;
    assert_eq!(imap.len(), 1, "{imap:?}");
    assert_summary_intact(&imap[0], sent, subject, body, &attachment);
    assert!(imap[0]["uid"].as_u64().is_some_and(|uid| uid >= 1), "{}", imap[0]);

    let pop3 = w.receive("receive_mail_pop3", json!({"filter": {"from": USER, "subject_contains": "ORDER #42"}})).await;
    // "order #42" is not in the subject: nothing matches.
    assert!(pop3.is_empty(), "{pop3:?}");
    // Matches are case-insensitive substrings.
    let pop3 = w.receive("receive_mail_pop3", json!({"filter": {"from": USER, "subject_contains": "SHIPPED"}})).await;
    assert_eq!(pop3.len(), 1, "{pop3:?}");
    assert_summary_intact(&pop3[0], sent, subject, body, &attachment);

    // The attachment arrived byte for byte.
    let message = by_subject(&delivered, subject);
    let parsed = message.parsed();
    let part = parsed.attachments().next().expect("an attachment");
    assert_eq!(part.attachment_name(), Some("季度报告.pdf"));
    assert_eq!(part.contents(), attachment.as_slice());
    w.assert_logins_used_tls(&["imap", "pop3"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mail_sent_over_starttls_is_received_intact_over_imap_and_pop3() {
    round_trip("mail-starttls", Tls::StartTls).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mail_sent_over_implicit_tls_is_received_intact_over_imap_and_pop3() {
    round_trip("mail-implicit", Tls::Implicit).await;
}

/// (b) to, cc, bcc, reply_to, subject and headers as the recipients' copies show them.
#[tokio::test(flavor = "multi_thread")]
async fn send_mail_addresses_and_headers_reach_every_recipient() {
    let w = World::start("mail-headers", Tls::StartTls).await;
    let subject = "Quarterly report 第一季度 — please review";
    let id = w
        .submit(
            "send_mail",
            json!({"to": ["Alice Li <alice@example.test>", USER], "cc": ["carol@example.test"],
                   "bcc": ["Bob Wang <bob@example.test>"], "reply_to": "Support Team <support@example.test>",
                   "subject": subject,
                   "headers": {"X-Campaign": "spring-2026", "List-Unsubscribe": "<mailto:unsubscribe@example.test>"},
                   "body": "Hello all", "mime_type": "text/plain"}),
        )
        .await;
    w.result_of(id).await;
    let recipients = ["alice@example.test", USER, "carol@example.test", "bob@example.test"];
    for recipient in recipients {
        let mail = w.mail.wait_for_mail(recipient, 1, WAIT).await;
        assert_eq!(mail.len(), 1, "{recipient} got {} copies", mail.len());
        let copy = &mail[0];
        let parsed = copy.parsed();
        assert_eq!(parsed.subject(), Some(subject), "{recipient}");
        assert_eq!(parsed.message_id(), Some(format!("{id}@example.test").as_str()), "{recipient}");
        let from = parsed.from().and_then(|a| a.first()).expect("From");
        assert_eq!(from.address(), Some(USER));
        let to: Vec<_> = parsed.to().expect("To").iter().map(|a| (a.name(), a.address())).collect();
        assert_eq!(to, vec![(Some("Alice Li"), Some("alice@example.test")), (None, Some(USER))], "{recipient}");
        let cc: Vec<_> = parsed.cc().expect("Cc").iter().filter_map(|a| a.address()).collect();
        assert_eq!(cc, vec!["carol@example.test"], "{recipient}");
        let reply_to = parsed.reply_to().and_then(|a| a.first()).expect("Reply-To");
        assert_eq!((reply_to.name(), reply_to.address()), (Some("Support Team"), Some("support@example.test")));
        assert_eq!(copy.headers("X-Campaign"), vec!["spring-2026"], "{recipient}");
        assert_eq!(copy.headers("List-Unsubscribe"), vec!["<mailto:unsubscribe@example.test>"], "{recipient}");
        assert_eq!(lf(parsed.body_text(0).as_deref().unwrap()).trim_end(), "Hello all");
        // The bcc recipient is in no copy's headers (Dovecot's own Delivered-To aside).
        assert!(copy.headers("Bcc").is_empty(), "{recipient}: {}", copy.header_text());
        let headers_without_delivery: Vec<String> = copy
            .header_text()
            .replace("\r\n", "\n")
            .replace("\n ", " ")
            .replace("\n\t", " ")
            .lines()
            .filter(|l| !l.starts_with("Delivered-To:") && !l.starts_with("Received:"))
            .map(str::to_string)
            .collect();
        assert!(
            !headers_without_delivery.iter().any(|l| l.contains("bob@example.test") || l.contains("Bob Wang")),
            "{recipient}: the bcc address leaked:\n{}",
            copy.header_text()
        );
    }
    // Nobody else got it.
    assert!(w.mail.mailbox("support@example.test").is_empty());
}

/// (b) mime_type × transfer_encoding, checked on the raw delivered bytes and decoded.
#[tokio::test(flavor = "multi_thread")]
async fn send_mail_mime_types_and_transfer_encodings_are_delivered_as_asked() {
    let w = World::start("mail-encodings", Tls::StartTls).await;
    let plain = "第一行：你好，世界\nSecond line with a tab\tand trailing text\n";
    let long = "x".repeat(150);
    let html = format!("<html><body><p>价格 = 100€</p><p>{long}</p></body></html>");
    let calendar = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//yizhan//test//EN\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\n\
UID:20260301-standup@example.test\r\nDTSTAMP:20260301T000000Z\r\nDTSTART:20260302T010000Z\r\nDTEND:20260302T013000Z\r\n\
SUMMARY:每日站会 stand-up\r\nORGANIZER:mailto:me@example.test\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
    let cases = [
        ("plain base64", "text/plain", Some("base64"), plain.to_string()),
        ("html quoted-printable", "text/html", Some("quoted-printable"), html.clone()),
        ("calendar 8bit", "text/calendar", Some("8bit"), calendar.to_string()),
        ("plain default", "text/plain", None, "just ascii\n".to_string()),
        ("plain 8bit", "text/plain", Some("8bit"), plain.to_string()),
        ("html base64", "text/html", Some("base64"), html.clone()),
    ];
    for (subject, mime_type, encoding, body) in &cases {
        let mut params = json!({"to": [USER], "subject": subject, "body": body, "mime_type": mime_type});
        if let Some(encoding) = encoding {
            params["transfer_encoding"] = json!(encoding);
        }
        w.run("send_mail", params).await;
    }
    let delivered = w.mail.wait_for_mail(USER, cases.len(), WAIT).await;
    assert_eq!(delivered.len(), cases.len());
    for (subject, mime_type, encoding, body) in &cases {
        let message = by_subject(&delivered, subject);
        let content_type = message.headers("Content-Type").join(" ");
        assert!(
            content_type.starts_with(&format!("{mime_type}; charset=utf-8")),
            "{subject}: Content-Type {content_type:?}"
        );
        let cte = message.headers("Content-Transfer-Encoding");
        if let Some(encoding) = encoding {
            assert_eq!(cte, vec![encoding.to_string()], "{subject}");
        }
        let raw = raw_body(message);
        match *encoding {
            Some("base64") => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(raw.split_whitespace().collect::<String>())
                    .unwrap_or_else(|e| panic!("{subject}: body is not base64 ({e}):\n{raw}"));
                assert_eq!(lf(&String::from_utf8(decoded).unwrap()), lf(body), "{subject}");
            }
            Some("quoted-printable") => {
                assert!(raw.contains("=E4=BB=B7"), "{subject}: 价 is not quoted-printable:\n{raw}");
                assert!(raw.lines().all(|l| l.len() <= 76), "{subject}: a line over 76 characters:\n{raw}");
            }
            Some("8bit") => {
                assert_eq!(lf(&raw).trim_end(), lf(body).trim_end(), "{subject}: 8bit bodies travel as they are")
            }
            _ => assert_eq!(lf(&raw).trim_end(), lf(body).trim_end(), "{subject}"),
        }
        let parsed = message.parsed();
        // The body as a mail client decodes it (the message is a single part).
        let decoded = String::from_utf8_lossy(parsed.part(0).expect("the body part").contents()).into_owned();
        assert_eq!(lf(&decoded).trim_end(), lf(body).trim_end(), "{subject}");
    }
    // An invitation carries its METHOD as the content type's parameter (RFC 6047).
    let invitation = by_subject(&delivered, "calendar 8bit");
    assert!(invitation.headers("Content-Type")[0].contains("method=REQUEST"), "{}", invitation.header_text());
}

/// (b) attachments: several files, binary and text, byte for byte, with names and types.
#[tokio::test(flavor = "multi_thread")]
async fn send_mail_attachments_arrive_byte_for_byte() {
    let w = World::start("mail-attachments", Tls::Implicit).await;
    let pdf = binary_attachment();
    let csv = "name,amount\n张三,100\n李四,200\n".as_bytes().to_vec();
    let png: Vec<u8> = [&[0x89u8, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'][..], &[0u8; 64], &[0xffu8; 64]].concat();
    let id = w
        .submit(
            "send_mail",
            json!({"to": [USER], "subject": "three files", "body": "<p>see attached</p>", "mime_type": "text/html",
                   "attachments": [
                       {"filename": "report.pdf", "content_type": "application/pdf", "content_base64": b64(&pdf)},
                       {"filename": "明细.csv", "content_type": "text/csv", "content_base64": b64(&csv)},
                       {"filename": "logo.png", "content_type": "image/png", "content_base64": b64(&png)}]}),
        )
        .await;
    w.result_of(id).await;
    let delivered = w.mail.wait_for_mail(USER, 1, WAIT).await;
    let parsed = delivered[0].parsed();
    let content_type = delivered[0].headers("Content-Type").join(" ");
    assert!(content_type.starts_with("multipart/mixed"), "{content_type}");
    assert_eq!(parsed.body_html(0).as_deref().map(str::trim_end), Some("<p>see attached</p>"));
    let parts: Vec<(String, String, Vec<u8>)> = parsed
        .attachments()
        .map(|part| {
            let ct = part.content_type().expect("attachment content type");
            (
                part.attachment_name().unwrap_or_default().to_string(),
                format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or_default()),
                part.contents().to_vec(),
            )
        })
        .collect();
    assert_eq!(
        parts,
        vec![
            ("report.pdf".to_string(), "application/pdf".to_string(), pdf.clone()),
            ("明细.csv".to_string(), "text/csv".to_string(), csv.clone()),
            ("logo.png".to_string(), "image/png".to_string(), png.clone()),
        ]
    );
    // The receive side reports the same names, types and sizes.
    let imap = w.receive("receive_mail_imap", json!({"filter": {"subject_contains": "three files"}})).await;
    assert_eq!(
        imap[0]["attachments"],
        json!([{"filename": "report.pdf", "content_type": "application/pdf", "size": pdf.len()},
               {"filename": "明细.csv", "content_type": "text/csv", "size": csv.len()},
               {"filename": "logo.png", "content_type": "image/png", "size": png.len()}])
    );
    assert_eq!(imap[0]["html_body"].as_str().map(str::trim_end), Some("<p>see attached</p>"));
}

/// (c) `550 … frequency limited` is retried (the config paused meanwhile) until the server
/// accepts; a recipient that stays throttled uses up the attempts instead of dying at once.
#[tokio::test(flavor = "multi_thread")]
async fn frequency_limited_reply_is_retried_until_accepted() {
    let w = World::start("mail-throttle", Tls::StartTls).await;
    let later = "later@example.test";
    w.mail.throttle(later, Some(2));
    let id = w
        .submit(
            "send_mail",
            json!({"to": [later], "subject": "after the throttle", "body": "hi", "mime_type": "text/plain"}),
        )
        .await;
    let receipt = w.result_of(id).await;
    assert!(receipt["response"].as_str().is_some_and(|r| r.starts_with("250")), "{receipt}");
    let status = w.store.status(id).await.unwrap().unwrap();
    assert_eq!(status.attempts, 3, "two refusals, then accepted: {status:?}");
    assert_eq!(w.mail.rcpt_attempts(later), 3);
    assert!(w.worker.jobs_total("retried").await >= 2);
    let delivered = w.mail.wait_for_mail(later, 1, WAIT).await;
    assert_eq!(delivered.len(), 1, "delivered once");
    assert_eq!(delivered[0].parsed().message_id(), Some(format!("{id}@example.test").as_str()));
    assert!(
        w.mail.smtp_log().contains(FREQUENCY_LIMITED.trim_start_matches("550 ")),
        "the server did refuse:\n{}",
        w.mail.smtp_log()
    );

    // Always throttled: retried until the attempts run out, then dead as exhausted.
    let mut stuck = job(
        "qq_mail",
        "box",
        "send_mail",
        json!({"to": [THROTTLED], "subject": "never", "body": "hi", "mime_type": "text/plain"}),
    );
    stuck.max_attempts = 3;
    w.submit_job(stuck).await;
    let dead = w.h.take_dead(1, WAIT).await;
    assert_eq!(dead[0].kind, "exhausted", "{dead:?}");
    assert_eq!(dead[0].attempts, 3, "{dead:?}");
    assert!(dead[0].error.contains("frequency limited"), "{}", dead[0].error);
    assert_eq!(w.mail.rcpt_attempts(THROTTLED), 3);
    assert!(w.mail.mailbox(THROTTLED).is_empty());
}

/// (d) A wrong authorization code: SMTP answers 535 and the job is dead at once, as are the
/// receives the servers refuse; no reason holds the code.
#[tokio::test(flavor = "multi_thread")]
async fn wrong_auth_code_dead_letters_with_535_without_leaking_it() {
    let wrong = "wrongauthcode999";
    let w = World::start_with("mail-auth", Tls::StartTls, wrong).await;
    w.submit("send_mail", json!({"to": [USER], "subject": "never", "body": "hi", "mime_type": "text/plain"})).await;
    let dead = w.h.take_dead(1, WAIT).await;
    assert_eq!(dead[0].kind, "permanent", "{dead:?}");
    assert_eq!(dead[0].attempts, 1, "{dead:?}");
    assert!(dead[0].error.contains("535"), "{}", dead[0].error);
    assert!(!dead[0].error.contains(wrong), "the auth code leaked: {}", dead[0].error);
    assert!(!dead[0].error.contains(PASSWORD));

    w.submit("receive_mail_imap", json!({})).await;
    w.submit("receive_mail_pop3", json!({})).await;
    let dead = w.h.take_dead(2, WAIT).await;
    for letter in &dead {
        assert_eq!(letter.kind, "permanent", "{letter:?}");
        assert_eq!(letter.attempts, 1, "{letter:?}");
        assert!(!letter.error.contains(wrong), "the auth code leaked: {}", letter.error);
    }
    let mut protocols: Vec<&str> = dead.iter().map(|d| d.error.split(':').next().unwrap_or_default()).collect();
    protocols.sort_unstable();
    assert_eq!(protocols, vec!["imap", "pop3"], "{dead:?}");
    assert!(!w.worker.log_text().contains(wrong), "the auth code is in the worker log");
    assert!(w.mail.mailbox(USER).is_empty());
}

/// (e) IMAP: `unseen_only` and `mark_seen` (the maildir's Seen flag), `max`, `since`.
#[tokio::test(flavor = "multi_thread")]
async fn imap_unseen_only_and_mark_seen() {
    let w = World::start("mail-imap-seen", Tls::StartTls).await;
    for subject in ["first", "second", "third"] {
        w.run("send_mail", json!({"to": [USER], "subject": subject, "body": subject, "mime_type": "text/plain"})).await;
    }
    w.mail.wait_for_mail(USER, 3, WAIT).await;
    let subjects = |messages: &[Value]| -> Vec<String> {
        messages.iter().map(|m| m["subject"].as_str().unwrap().to_string()).collect()
    };

    // Reading without mark_seen leaves every message unseen.
    let all = w.receive("receive_mail_imap", json!({"filter": {"unseen_only": true}})).await;
    assert_eq!(subjects(&all), ["first", "second", "third"]);
    assert!(w.mail.mailbox(USER).iter().all(|m| !m.seen()), "BODY.PEEK leaves \\Seen alone");

    let marked =
        w.receive("receive_mail_imap", json!({"filter": {"subject_contains": "SECOND"}, "mark_seen": true})).await;
    assert_eq!(subjects(&marked), ["second"]);
    let flags: Vec<(Option<String>, bool)> =
        w.mail.mailbox(USER).iter().map(|m| (m.parsed().subject().map(str::to_string), m.seen())).collect();
    assert_eq!(
        flags,
        vec![(Some("first".into()), false), (Some("second".into()), true), (Some("third".into()), false)]
    );

    let unseen = w.receive("receive_mail_imap", json!({"filter": {"unseen_only": true}})).await;
    assert_eq!(subjects(&unseen), ["first", "third"]);
    let oldest =
        w.receive("receive_mail_imap", json!({"filter": {"unseen_only": true, "max": 1}, "mark_seen": true})).await;
    assert_eq!(subjects(&oldest), ["first"]);
    let unseen = w.receive("receive_mail_imap", json!({"filter": {"unseen_only": true}})).await;
    assert_eq!(subjects(&unseen), ["third"]);
    // Seen or not, a plain read returns everything, oldest first with rising UIDs.
    let everything = w.receive("receive_mail_imap", json!({"folder": "INBOX"})).await;
    assert_eq!(subjects(&everything), ["first", "second", "third"]);
    let uids: Vec<u64> = everything.iter().map(|m| m["uid"].as_u64().unwrap()).collect();
    assert!(uids.windows(2).all(|p| p[0] < p[1]), "{uids:?}");
    assert_eq!(w.receive("receive_mail_imap", json!({"filter": {"since": "2000-01-01"}})).await.len(), 3);
    assert!(w.receive("receive_mail_imap", json!({"filter": {"since": "2999-01-01"}})).await.is_empty());
    w.assert_logins_used_tls(&["imap"]).await;
}

/// (e) POP3: filters (`from`, `subject_contains`, `since`/`until`, `max`) and `delete_after`.
#[tokio::test(flavor = "multi_thread")]
async fn pop3_filters_and_delete_after() {
    let w = World::start("mail-pop3", Tls::Implicit).await;
    for subject in ["keep: invoice", "drop: newsletter", "keep: receipt"] {
        w.run("send_mail", json!({"to": [USER], "subject": subject, "body": subject, "mime_type": "text/plain"})).await;
    }
    w.mail.wait_for_mail(USER, 3, WAIT).await;
    let subjects = |messages: &[Value]| -> Vec<String> {
        messages.iter().map(|m| m["subject"].as_str().unwrap().to_string()).collect()
    };

    let kept = w.receive("receive_mail_pop3", json!({"filter": {"subject_contains": "keep"}})).await;
    assert_eq!(subjects(&kept), ["keep: invoice", "keep: receipt"]);
    let first = w.receive("receive_mail_pop3", json!({"filter": {"max": 1}})).await;
    assert_eq!(subjects(&first), ["keep: invoice"]);
    assert!(w.receive("receive_mail_pop3", json!({"filter": {"from": "someone-else@"}})).await.is_empty());
    let window = json!({"filter": {"since": "2000-01-01", "until": "2999-01-01"}});
    assert_eq!(w.receive("receive_mail_pop3", window).await.len(), 3);
    let past = json!({"filter": {"since": "2000-01-01", "until": "2000-01-02"}});
    assert!(w.receive("receive_mail_pop3", past).await.is_empty());
    // Reading without delete_after leaves the maildrop as it was.
    assert_eq!(w.mail.mailbox(USER).len(), 3);

    let dropped =
        w.receive("receive_mail_pop3", json!({"filter": {"subject_contains": "drop"}, "delete_after": true})).await;
    assert_eq!(subjects(&dropped), ["drop: newsletter"]);
    let left: Vec<Option<String>> =
        w.mail.mailbox(USER).iter().map(|m| m.parsed().subject().map(str::to_string)).collect();
    assert_eq!(left, vec![Some("keep: invoice".to_string()), Some("keep: receipt".to_string())]);
    let all = w.receive("receive_mail_pop3", json!({})).await;
    assert_eq!(subjects(&all), ["keep: invoice", "keep: receipt"]);
    w.assert_logins_used_tls(&["pop3"]).await;
}

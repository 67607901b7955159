//! A small RFC 1939 POP3 client (no maintained async crate exists): USER, PASS,
//! STAT, UIDL, RETR (dot-unstuffed), DELE, QUIT, and STLS (RFC 2595). Generic over the stream, so
//! it runs over a plain `TcpStream`, a rustls stream, or a test's in-process peer.

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use super::error::MailError;

/// Largest message RETR accepts (QQ allows 50 MB mails, base64 makes them larger).
const MAX_MESSAGE: usize = 96 * 1024 * 1024;

/// A POP3 session on stream `S`.
#[derive(Debug)]
pub struct Pop3<S> {
    stream: BufReader<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Pop3<S> {
    /// Reads the server's greeting.
    pub async fn connect(stream: S) -> Result<Self, MailError> {
        let mut client = Pop3::resume(stream);
        client.status("greeting").await?;
        Ok(client)
    }

    /// A session whose greeting was already read (after an STLS upgrade).
    pub fn resume(stream: S) -> Self {
        Pop3 { stream: BufReader::new(stream) }
    }

    /// Asks for STLS and gives back the stream to run the TLS handshake on.
    pub async fn stls(mut self) -> Result<S, MailError> {
        self.command("STLS").await?;
        self.status("STLS").await.map_err(|e| match e {
            MailError::Refused(text) => MailError::Refused(format!("the server refuses STLS: {text}")),
            other => other,
        })?;
        Ok(self.stream.into_inner())
    }

    /// USER and PASS; a refusal of either is a refused login.
    pub async fn login(&mut self, user: &str, password: &str) -> Result<(), MailError> {
        for (command, line) in [("USER", format!("USER {user}")), ("PASS", format!("PASS {password}"))] {
            self.command(&line).await?;
            match self.status(command).await {
                Err(MailError::Refused(text)) => {
                    // The refusal names the command, never the line (the password is in it).
                    let text = text.strip_prefix(&format!("{command}: ")).unwrap_or(&text).to_string();
                    return Err(MailError::login_refused(&text));
                }
                other => {
                    other?;
                }
            }
        }
        Ok(())
    }

    /// `(messages, octets)` of the maildrop.
    pub async fn stat(&mut self) -> Result<(u32, u64), MailError> {
        self.command("STAT").await?;
        let text = self.status("STAT").await?;
        let mut words = text.split_whitespace();
        let count = words.next().and_then(|w| w.parse().ok());
        let size = words.next().and_then(|w| w.parse().ok());
        match (count, size) {
            (Some(count), Some(size)) => Ok((count, size)),
            _ => Err(MailError::Network(format!("STAT: unreadable answer {text:?}"))),
        }
    }

    /// `(message number, unique id)` of every message, in the server's order.
    pub async fn uidl(&mut self) -> Result<Vec<(u32, String)>, MailError> {
        self.command("UIDL").await?;
        self.status("UIDL").await?;
        let body = self.multiline("UIDL").await?;
        let mut list = Vec::new();
        for line in String::from_utf8_lossy(&body).lines() {
            let mut words = line.split_whitespace();
            match (words.next().and_then(|n| n.parse().ok()), words.next()) {
                (Some(number), Some(uid)) => list.push((number, uid.to_string())),
                _ if line.trim().is_empty() => {}
                _ => return Err(MailError::Network(format!("UIDL: unreadable line {line:?}"))),
            }
        }
        Ok(list)
    }

    /// Message `number`, as sent (CRLF lines, dot-stuffing undone).
    pub async fn retr(&mut self, number: u32) -> Result<Vec<u8>, MailError> {
        self.command(&format!("RETR {number}")).await?;
        self.status("RETR").await?;
        self.multiline("RETR").await
    }

    /// The header of message `number` (`TOP n 0`, RFC 1939's optional command), dot-unstuffed.
    pub async fn top(&mut self, number: u32) -> Result<Vec<u8>, MailError> {
        self.command(&format!("TOP {number} 0")).await?;
        self.status("TOP").await?;
        self.multiline("TOP").await
    }

    /// Marks message `number` deleted; the server removes it at QUIT.
    pub async fn dele(&mut self, number: u32) -> Result<(), MailError> {
        self.command(&format!("DELE {number}")).await?;
        self.status("DELE").await.map(drop)
    }

    /// Ends the session, committing the deletions.
    pub async fn quit(mut self) -> Result<(), MailError> {
        self.command("QUIT").await?;
        self.status("QUIT").await.map(drop)
    }

    async fn command(&mut self, line: &str) -> Result<(), MailError> {
        let stream = self.stream.get_mut();
        stream.write_all(format!("{line}\r\n").as_bytes()).await.map_err(io)?;
        stream.flush().await.map_err(io)
    }

    /// The text after `+OK`; `-ERR text` becomes [`MailError::Refused`] (`command: text`).
    async fn status(&mut self, command: &str) -> Result<String, MailError> {
        let line = self.line().await?;
        let line = String::from_utf8_lossy(&line);
        let line = line.trim_end_matches(['\r', '\n']);
        if let Some(rest) = line.strip_prefix("+OK") {
            Ok(rest.trim_start().to_string())
        } else if let Some(rest) = line.strip_prefix("-ERR") {
            let text = rest.trim_start();
            let upper = text.to_ascii_uppercase();
            if upper.starts_with("[IN-USE]") || upper.starts_with("[SYS/TEMP]") {
                Err(MailError::Busy(format!("{command}: {text}")))
            } else {
                Err(MailError::Refused(format!("{command}: {text}")))
            }
        } else {
            Err(MailError::Network(format!("{command}: not a POP3 status line: {:?}", truncate(line))))
        }
    }

    /// A multi-line answer up to its `.` line, each line's leading `.` of stuffing removed.
    async fn multiline(&mut self, command: &str) -> Result<Vec<u8>, MailError> {
        let mut out = Vec::new();
        loop {
            let line = self.line().await?;
            if line == b".\r\n" || line == b".\n" {
                return Ok(out);
            }
            let line = line.strip_prefix(b".").unwrap_or(&line);
            if out.len() + line.len() > MAX_MESSAGE {
                return Err(MailError::Refused(format!("{command}: answer larger than {MAX_MESSAGE} bytes")));
            }
            out.extend_from_slice(line);
        }
    }

    /// One line with its end; a closed connection is a network error.
    async fn line(&mut self) -> Result<Vec<u8>, MailError> {
        let mut line = Vec::new();
        let read = (&mut self.stream).take(MAX_MESSAGE as u64).read_until(b'\n', &mut line).await.map_err(io)?;
        if read == 0 || !line.ends_with(b"\n") {
            return Err(MailError::Network("the POP3 server closed the connection".into()));
        }
        Ok(line)
    }
}

fn io(error: std::io::Error) -> MailError {
    MailError::Network(format!("POP3 connection: {error}"))
}

fn truncate(text: &str) -> &str {
    match text.char_indices().nth(200) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

/// `receive_mail_pop3`: the maildrop's messages in order, filtered, at most `max`, deleted after
/// when asked. Returns `{"messages": [...]}` with each `uid` the UIDL string.
pub async fn receive<S: AsyncRead + AsyncWrite + Unpin>(
    mut client: Pop3<S>,
    user: &str,
    password: &str,
    params: &yizhan_schemas::catalog::ReceiveMailPop3,
) -> Result<serde_json::Value, MailError> {
    let filter = params.filter.clone().unwrap_or_default();
    let max = filter.max.map_or(super::parse::DEFAULT_MAX, |m| m as usize);
    let matcher = super::parse::Filter::new(
        filter.from.as_deref(),
        filter.subject_contains.as_deref(),
        filter.since.as_deref(),
        filter.until.as_deref(),
    )
    .map_err(MailError::Params)?;
    client.login(user, password).await?;
    let (count, _) = client.stat().await?;
    let mut messages = Vec::new();
    let mut matched = Vec::new();
    // Every filter condition is a header: TOP reads only the header of the messages it rules
    // out, while a server without TOP has each message read whole.
    let mut use_top = matcher != super::parse::Filter::default();
    if count > 0 {
        for (number, uid) in client.uidl().await? {
            if messages.len() >= max {
                break;
            }
            if use_top {
                match client.top(number).await {
                    Ok(head) => {
                        let head = super::parse::summary(serde_json::Value::Null, &head);
                        if !matcher.matches(&head) {
                            continue;
                        }
                    }
                    Err(MailError::Refused(_)) => use_top = false,
                    Err(other) => return Err(other),
                }
            }
            let raw = client.retr(number).await?;
            let summary = super::parse::summary(serde_json::Value::String(uid), &raw);
            if matcher.matches(&summary) {
                messages.push(summary);
                matched.push(number);
            }
        }
    }
    if params.delete_after {
        for number in matched {
            client.dele(number).await?;
        }
    }
    client.quit().await?;
    Ok(serde_json::json!({ "messages": messages }))
}

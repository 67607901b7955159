//! `qq_mail`: QQ 邮箱 (or any mail server) over SMTP (lettre), IMAP (async-imap) and POP3 (our
//! own client), all with the config's `address` and `auth_code` (授权码).
//!
//! `send_mail` submits through one pooled transport per config; its Message-ID is
//! `<{job_id}@{sender's domain}>`, the same on every attempt, and the result is
//! `{"message_id", "response"}` (the server's final reply). The receive actions return
//! `{"messages": [...]}` (IMAP adds `folder` and `uid_validity`), each message as
//! [`parse::summary`] describes.

pub mod config;
pub mod error;
pub mod imap;
pub mod parse;
pub mod pop3;
pub mod smtp;
#[cfg(test)]
mod tests;

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::{AsyncTransport, Tokio1Executor};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use yizhan_schemas::catalog::{ReceiveMailImap, ReceiveMailPop3, SendMail};
use yizhan_schemas::{Endpoint, MailOp};
use yizhan_state::redact;

use self::config::{QqMailConfig, Server, TlsMode};
use self::error::{Class, MailError};
use super::call::{Call, Connector, Failure, Success};
use crate::config::{ConfigError, ConnectorConfig, Secret};

/// Longest an IMAP or POP3 receive may take, connect to logout.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(120);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Any stream a mail session runs on: plain TCP or TLS.
pub trait MailStream: AsyncRead + AsyncWrite + Unpin + Send + Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Debug> MailStream for T {}

/// A QQ Mail config.
pub struct QqMail {
    from: Mailbox,
    user: String,
    auth_code: Secret,
    tls: TlsMode,
    pop3: Server,
    imap: Server,
    tls_config: Arc<rustls::ClientConfig>,
    smtp: lettre::AsyncSmtpTransport<Tokio1Executor>,
}

impl Debug for QqMail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QqMail").field("user", &self.user).field("tls", &self.tls).finish_non_exhaustive()
    }
}

impl QqMail {
    /// Needs a tokio runtime: the SMTP pool starts its idle-connection sweeper here.
    pub fn new(config: &ConnectorConfig) -> Result<Self, ConfigError> {
        let fields = QqMailConfig::from_config(config)?;
        let at = config.path();
        let from: Mailbox = fields
            .address
            .trim()
            .parse()
            .map_err(|e| ConfigError::field(format!("{at}.address"), format!("not a mail address: {e}")))?;
        let pem = fields.extra_roots_pem(&at)?;
        let tls_config = config::tls_client_config(pem.as_deref())
            .map_err(|reason| ConfigError::field(format!("{at}.tls"), reason))?;
        let smtp = smtp::transport(
            &fields.server("smtp"),
            fields.tls,
            pem.as_deref(),
            from.email.as_ref(),
            fields.auth_code.expose(),
        )
        .map_err(|reason| ConfigError::field(format!("{at}.smtp"), reason))?;
        Ok(QqMail {
            user: from.email.to_string(),
            from,
            auth_code: fields.auth_code.clone(),
            tls: fields.tls,
            pop3: fields.server("pop3"),
            imap: fields.server("imap"),
            tls_config,
            smtp,
        })
    }

    fn secrets(&self) -> [&str; 1] {
        [self.auth_code.expose()]
    }

    async fn send(&self, call: Call<'_>) -> Result<Success, Failure> {
        let params: SendMail = params(call)?;
        let message = smtp::build_message(&self.from, call.job_id, &params)
            .map_err(|reason| Failure::permanent(format!("params: {reason}")))?;
        let response = self.smtp.send(message).await.map_err(|e| error::smtp_failure(&e, &self.secrets()))?;
        let reply = format!("{} {}", response.code(), response.message().collect::<Vec<_>>().join(" "));
        Ok(Success {
            result: Some(json!({
                "message_id": smtp::message_id(call.job_id, &self.from),
                "response": redact::secrets(reply.trim_end(), &self.secrets()),
            })),
            receipts: Default::default(),
        })
    }

    async fn tcp(&self, server: &Server) -> Result<TcpStream, MailError> {
        let connect = TcpStream::connect((server.host.as_str(), server.port));
        match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(MailError::Network(format!("connect {}:{}: {e}", server.host, server.port))),
            Err(_) => Err(MailError::Network(format!("connect {}:{}: timed out", server.host, server.port))),
        }
    }

    async fn tls_wrap<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: S,
        server: &Server,
    ) -> Result<tokio_rustls::client::TlsStream<S>, MailError> {
        let name = rustls::pki_types::ServerName::try_from(server.host.clone())
            .map_err(|e| MailError::Network(format!("TLS name {}: {e}", server.host)))?;
        tokio_rustls::TlsConnector::from(Arc::clone(&self.tls_config))
            .connect(name, stream)
            .await
            .map_err(|e| MailError::Network(format!("TLS with {}:{}: {e}", server.host, server.port)))
    }

    async fn receive_imap(&self, params: &ReceiveMailImap) -> Result<Value, MailError> {
        let tcp = self.tcp(&self.imap).await?;
        let client = match self.tls {
            TlsMode::None => {
                let mut client = async_imap::Client::new(Box::new(tcp) as Box<dyn MailStream>);
                imap::greet(&mut client).await?;
                client
            }
            TlsMode::Implicit => {
                let stream = self.tls_wrap(tcp, &self.imap).await?;
                let mut client = async_imap::Client::new(Box::new(stream) as Box<dyn MailStream>);
                imap::greet(&mut client).await?;
                client
            }
            TlsMode::Starttls => {
                let mut plain = async_imap::Client::new(tcp);
                imap::greet(&mut plain).await?;
                let tcp = imap::starttls(plain).await?;
                // No second greeting after STARTTLS (RFC 3501 §6.2.1).
                let stream = self.tls_wrap(tcp, &self.imap).await?;
                async_imap::Client::new(Box::new(stream) as Box<dyn MailStream>)
            }
        };
        imap::receive(client, &self.user, self.auth_code.expose(), params).await
    }

    async fn receive_pop3(&self, params: &ReceiveMailPop3) -> Result<Value, MailError> {
        let tcp = self.tcp(&self.pop3).await?;
        let client = match self.tls {
            TlsMode::None => pop3::Pop3::connect(Box::new(tcp) as Box<dyn MailStream>).await?,
            TlsMode::Implicit => {
                let stream = self.tls_wrap(tcp, &self.pop3).await?;
                pop3::Pop3::connect(Box::new(stream) as Box<dyn MailStream>).await?
            }
            TlsMode::Starttls => {
                let tcp = pop3::Pop3::connect(tcp).await?.stls().await?;
                let stream = self.tls_wrap(tcp, &self.pop3).await?;
                pop3::Pop3::resume(Box::new(stream) as Box<dyn MailStream>)
            }
        };
        pop3::receive(client, &self.user, self.auth_code.expose(), params).await
    }

    async fn receive<F>(&self, protocol: &str, work: F) -> Result<Success, Failure>
    where
        F: Future<Output = Result<Value, MailError>>,
    {
        match tokio::time::timeout(RECEIVE_TIMEOUT, work).await {
            Ok(Ok(result)) => Ok(Success { result: Some(result), receipts: Default::default() }),
            Ok(Err(e)) => Err(e.into_failure(protocol, &self.secrets())),
            Err(_) => Err(error::failure(
                Class::Retry,
                &format!("{protocol}: no answer within {}s", RECEIVE_TIMEOUT.as_secs()),
                &[],
            )),
        }
    }
}

fn params<T: DeserializeOwned>(call: Call<'_>) -> Result<T, Failure> {
    serde_json::from_value(call.params.clone()).map_err(|e| Failure::permanent(format!("params: {e}")))
}

#[async_trait::async_trait]
impl Connector for QqMail {
    async fn execute(&self, call: Call<'_>) -> Result<Success, Failure> {
        match call.action.endpoint {
            Endpoint::Mail(MailOp::Send) => self.send(call).await,
            Endpoint::Mail(MailOp::ReceiveImap) => {
                let params: ReceiveMailImap = params(call)?;
                self.receive("imap", self.receive_imap(&params)).await
            }
            Endpoint::Mail(MailOp::ReceivePop3) => {
                let params: ReceiveMailPop3 = params(call)?;
                self.receive("pop3", self.receive_pop3(&params)).await
            }
            other => Err(Failure::permanent(format!("qq_mail cannot execute {other:?}"))),
        }
    }
}

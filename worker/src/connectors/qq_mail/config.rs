//! `[connectors.qq_mail.<name>]`: the kind-specific fields.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use crate::config::{ConfigError, ConnectorConfig, Secret};

/// How the three protocols protect their connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// TLS from the first byte (SMTP 465, IMAP 993, POP3 995).
    #[default]
    Implicit,
    /// Plain connect, then STARTTLS (SMTP, IMAP) or STLS (POP3); the upgrade is required.
    Starttls,
    /// No TLS at all: local test servers only, the auth code crosses the wire in clear.
    None,
}

/// `address` (sender and login user; `Name <user@qq.com>` adds a display name to From), `auth_code` (授权码), `smtp`/`pop3`/`imap` as `host:port`,
/// `tls`, and `ca_file`: a PEM file of extra roots trusted for these servers (private CAs, tests).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QqMailConfig {
    /// The mailbox: the login user and the From address, optionally `Name <user@qq.com>`.
    pub address: String,
    /// The mailbox's authorization code (授权码, not the account password), the login password.
    pub auth_code: Secret,
    /// SMTP server `host:port`; default `smtp.qq.com:465`.
    #[serde(default = "default_smtp")]
    pub smtp: String,
    /// POP3 server `host:port`; default `pop.qq.com:995`.
    #[serde(default = "default_pop3")]
    pub pop3: String,
    /// IMAP server `host:port`; default `imap.qq.com:993`.
    #[serde(default = "default_imap")]
    pub imap: String,
    /// How all three connections are protected; default implicit TLS.
    #[serde(default)]
    pub tls: TlsMode,
    /// PEM roots trusted in addition to the system's; None: the system's only.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn default_smtp() -> String {
    "smtp.qq.com:465".to_string()
}

fn default_pop3() -> String {
    "pop.qq.com:995".to_string()
}

fn default_imap() -> String {
    "imap.qq.com:993".to_string()
}

/// A `host:port` setting; `host` is also the name the server's certificate must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// A DNS name or IP address (IPv6 without brackets).
    pub host: String,
    /// The TCP port, never 0.
    pub port: u16,
}

impl Server {
    /// `host:port`, or `[v6]:port`.
    pub fn parse(text: &str) -> Result<Server, String> {
        let (host, port) = text.trim().rsplit_once(':').ok_or("must be host:port")?;
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        let port: u16 = port.parse().map_err(|_| format!("port {port:?} is not a number"))?;
        if host.is_empty() || port == 0 {
            return Err("must be host:port".into());
        }
        Ok(Server { host: host.to_string(), port })
    }
}

impl QqMailConfig {
    /// Parses and checks the config's fields; a bad address or `host:port` fails at start.
    pub fn from_config(config: &ConnectorConfig) -> Result<Self, ConfigError> {
        let parsed: QqMailConfig = config.parse_fields()?;
        let at = |field: &str| format!("{}.{field}", config.path());
        if config.common.endpoint.is_some() {
            return Err(ConfigError::field(at("endpoint"), "not used by qq_mail: set smtp, pop3 and imap instead"));
        }
        let address = parsed.address.trim();
        if address.is_empty() || !address.contains('@') {
            return Err(ConfigError::field(at("address"), "must be a mail address"));
        }
        if parsed.auth_code.expose().trim().is_empty() {
            return Err(ConfigError::field(at("auth_code"), "must not be empty"));
        }
        for (field, value) in [("smtp", &parsed.smtp), ("pop3", &parsed.pop3), ("imap", &parsed.imap)] {
            Server::parse(value).map_err(|reason| ConfigError::field(at(field), reason))?;
        }
        Ok(parsed)
    }

    /// The server of `smtp`, `pop3` or (anything else) `imap`; valid since `from_config` checked it.
    pub fn server(&self, protocol: &str) -> Server {
        let text = match protocol {
            "smtp" => &self.smtp,
            "pop3" => &self.pop3,
            _ => &self.imap,
        };
        Server::parse(text).expect("checked by from_config")
    }

    /// The PEM bytes of `ca_file`, checked to hold at least one certificate.
    pub fn extra_roots_pem(&self, at: &str) -> Result<Option<Vec<u8>>, ConfigError> {
        let Some(path) = &self.ca_file else { return Ok(None) };
        let pem = std::fs::read(path)
            .map_err(|e| ConfigError::field(format!("{at}.ca_file"), format!("cannot read {}: {e}", path.display())))?;
        if roots_from_pem(&pem).map_or(true, |certs| certs.is_empty()) {
            return Err(ConfigError::field(format!("{at}.ca_file"), "holds no PEM certificate"));
        }
        Ok(Some(pem))
    }
}

fn roots_from_pem(pem: &[u8]) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())
}

/// The rustls config of the IMAP and POP3 connections: Mozilla's roots (webpki-roots, the same
/// set lettre uses for SMTP) plus `ca_file`'s, with ring, as everywhere in the workspace.
pub fn tls_client_config(extra_pem: Option<&[u8]>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = extra_pem {
        for cert in roots_from_pem(pem)? {
            roots.add(cert).map_err(|e| format!("ca_file: {e}"))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

//! Real mail servers for the `qq_mail` tests: a private Dovecot (IMAP, POP3, LMTP, SASL) and a
//! private Postfix (SMTP submission) per test, in a temp dir, on free ports, with a CA and a
//! `localhost` certificate generated for the test. Install them with `scripts/services.sh`
//! (Debian packages `dovecot-imapd dovecot-pop3d dovecot-lmtpd postfix`); both run as children of
//! the test and are stopped on drop. Running them needs root, as Postfix and Dovecot drop
//! privileges to their own users.
//!
//! * SMTP: Postfix on `smtp_port` (plain, STARTTLS, AUTH only after TLS) and `smtps_port`
//!   (implicit TLS); AUTH PLAIN/LOGIN against Dovecot's passwd file; required for every
//!   recipient. Every address of [`DOMAIN`] is delivered over LMTP into its own maildir.
//! * IMAP: `imap_port` (STARTTLS, no plaintext login before it) and `imaps_port` (implicit TLS).
//! * POP3: `pop3_port` (STLS) and `pop3s_port` (implicit TLS).
//! * Recipient checks go through a policy service in this process: [`MailServer::throttle`]
//!   makes RCPT TO answer `550 … frequency limited` (QQ Mail's throttle,
//!   docs/providers/qq-mail.md#smtp-replies), and [`THROTTLED`] / [`MISSING`] always answer the
//!   throttle / `550 Mailbox not found`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The mail domain the servers deliver locally.
pub const DOMAIN: &str = "example.test";
/// The mailbox the connector logs into (QQ: the full address).
pub const USER: &str = "me@example.test";
/// Its password (QQ: the 16-character authorization code).
pub const PASSWORD: &str = "qqauthcode16char";
/// Always answered `550 Mailbox unavailable or access denied, frequency limited`.
pub const THROTTLED: &str = "throttled@example.test";
/// Always answered `550 Mailbox not found`.
pub const MISSING: &str = "missing@example.test";
/// QQ Mail's answer to a throttled sender or recipient (docs/providers/qq-mail.md#smtp-replies).
pub const FREQUENCY_LIMITED: &str = "550 Mailbox unavailable or access denied, frequency limited";

const DOVECOT: &str = "/usr/sbin/dovecot";
const POSTFIX: &str = "/usr/sbin/postfix";
const POSTFIX_MASTER: &str = "/usr/lib/postfix/sbin/master";
const STARTUP: Duration = Duration::from_secs(30);

/// How the connector reaches the servers: the `tls` setting of its config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// Plain ports upgraded with STARTTLS / STLS.
    StartTls,
    /// TLS from the first byte.
    Implicit,
}

impl Tls {
    /// The config value: `starttls` or `implicit`.
    pub fn as_str(self) -> &'static str {
        match self {
            Tls::StartTls => "starttls",
            Tls::Implicit => "implicit",
        }
    }
}

/// A private Dovecot and Postfix; see the module docs.
pub struct MailServer {
    /// Configs, certificates, queues and maildirs of both servers; deleted on drop.
    pub dir: tempfile::TempDir,
    /// Postfix submission on 127.0.0.1: plain, STARTTLS before AUTH.
    pub smtp_port: u16,
    /// Postfix with implicit TLS.
    pub smtps_port: u16,
    /// Dovecot IMAP: STARTTLS, no plaintext login before it.
    pub imap_port: u16,
    /// Dovecot IMAP with implicit TLS.
    pub imaps_port: u16,
    /// Dovecot POP3: STLS, no plaintext login before it.
    pub pop3_port: u16,
    /// Dovecot POP3 with implicit TLS.
    pub pop3s_port: u16,
    /// The CA that signed the servers' `localhost` certificate (PEM).
    pub ca_file: PathBuf,
    dovecot: Option<Child>,
    postfix: Option<Child>,
    policy: Policy,
}

impl MailServer {
    /// Starts both servers and waits until they answer (retrying with new ports when one was
    /// taken in the meantime).
    pub fn start() -> MailServer {
        assert!(
            Path::new(DOVECOT).exists() && Path::new(POSTFIX_MASTER).exists(),
            "Dovecot or Postfix is missing: run scripts/services.sh (installs dovecot-imapd dovecot-pop3d \
             dovecot-lmtpd postfix)"
        );
        {
            use std::os::unix::fs::MetadataExt;
            let uid = std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(0);
            assert_eq!(uid, 0, "the mail servers drop privileges to their own users: run the qq_mail tests as root");
        }
        let mut last = String::new();
        for _ in 0..3 {
            match MailServer::try_start() {
                Ok(server) => return server,
                Err(e) => last = e,
            }
        }
        panic!("mail servers did not start: {last}");
    }

    fn try_start() -> Result<MailServer, String> {
        let dir = tempfile::Builder::new().prefix("yz-mail").tempdir().map_err(|e| e.to_string())?;
        let root = dir.path().to_path_buf();
        // Postfix and Dovecot work as their own users inside.
        set_mode(&root, 0o755);
        let ports = [free_port(), free_port(), free_port(), free_port(), free_port(), free_port()];
        let policy = Policy::start();
        let ca_file = write_certificates(&root, "yizhan test mail CA");
        let mail_dir = root.join("mail");
        std::fs::create_dir(&mail_dir).unwrap();
        let (nobody_uid, nobody_gid) = system_user("nobody");
        std::os::unix::fs::chown(&mail_dir, Some(nobody_uid), Some(nobody_gid)).unwrap();
        std::fs::write(root.join("users"), format!("{USER}:{{PLAIN}}{PASSWORD}\n")).unwrap();
        std::fs::write(root.join("dovecot.conf"), dovecot_conf(&root, &ports, nobody_uid, nobody_gid)).unwrap();
        let mut server = MailServer {
            smtp_port: ports[0],
            smtps_port: ports[1],
            imap_port: ports[2],
            imaps_port: ports[3],
            pop3_port: ports[4],
            pop3s_port: ports[5],
            ca_file,
            dovecot: None,
            postfix: None,
            policy,
            dir,
        };
        server.dovecot = Some(spawn(
            Command::new(DOVECOT).arg("-F").arg("-c").arg(root.join("dovecot.conf")),
            &root.join("dovecot.out"),
        ));
        server.start_postfix()?;
        let deadline = Instant::now() + STARTUP;
        for (port, greeting) in [
            (server.imap_port, "* OK"),
            (server.pop3_port, "+OK"),
            (server.smtp_port, "220 "),
            (server.smtps_port, ""),
            (server.imaps_port, ""),
            (server.pop3s_port, ""),
        ] {
            server.wait_port(port, greeting, deadline)?;
        }
        server.wait_file(&root.join("lmtp"), deadline)?;
        Ok(server)
    }

    fn start_postfix(&mut self) -> Result<(), String> {
        let root = self.dir.path().to_path_buf();
        let conf = root.join("postfix");
        let data = root.join("postfix-data");
        for d in [&conf, &data, &root.join("postfix-queue")] {
            std::fs::create_dir(d).unwrap();
        }
        let (postfix_uid, _) = system_user("postfix");
        std::os::unix::fs::chown(&data, Some(postfix_uid), None).unwrap();
        std::fs::write(conf.join("main.cf"), postfix_main_cf(&root, self.policy.port)).unwrap();
        std::fs::write(conf.join("master.cf"), postfix_master_cf(self.smtp_port, self.smtps_port)).unwrap();
        // Creates the queue directories with Postfix's owners and modes.
        let check = Command::new(POSTFIX).arg("-c").arg(&conf).arg("check").output().unwrap();
        if !check.status.success() {
            return Err(format!(
                "postfix check failed: {}{}\n{}",
                String::from_utf8_lossy(&check.stdout),
                String::from_utf8_lossy(&check.stderr),
                self.smtp_log()
            ));
        }
        // `-s`: stays in the foreground (as `postfix start-fg` runs it).
        self.postfix =
            Some(spawn(Command::new(POSTFIX_MASTER).arg("-c").arg(&conf).arg("-s"), &root.join("postfix.out")));
        Ok(())
    }

    /// Polls until `port` accepts and sends `greeting` (a prefix; empty: just accepting).
    fn wait_port(&mut self, port: u16, greeting: &str, deadline: Instant) -> Result<(), String> {
        loop {
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
                if greeting.is_empty() {
                    return Ok(());
                }
                stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut buf = [0u8; 256];
                let n = stream.read(&mut buf).unwrap_or(0);
                if String::from_utf8_lossy(&buf[..n]).starts_with(greeting) {
                    return Ok(());
                }
            }
            self.check_children()?;
            if Instant::now() > deadline {
                return Err(format!("port {port} did not answer {greeting:?}\n{}", self.logs()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_file(&mut self, path: &Path, deadline: Instant) -> Result<(), String> {
        while !path.exists() {
            self.check_children()?;
            if Instant::now() > deadline {
                return Err(format!("{} did not appear\n{}", path.display(), self.logs()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn check_children(&mut self) -> Result<(), String> {
        let mut exited = None;
        for (name, child) in [("dovecot", &mut self.dovecot), ("postfix master", &mut self.postfix)] {
            if let Some(c) = child
                && let Ok(Some(status)) = c.try_wait()
            {
                *child = None;
                exited = Some(format!("{name} exited with {status}"));
                break;
            }
        }
        match exited {
            Some(e) => Err(format!("{e}\n{}", self.logs())),
            None => Ok(()),
        }
    }

    /// The `[connectors.qq_mail.<name>]` table for these servers.
    pub fn connector_config(&self, name: &str, tls: Tls) -> String {
        self.connector_config_with(name, tls, PASSWORD)
    }

    /// As [`MailServer::connector_config`], with another authorization code.
    pub fn connector_config_with(&self, name: &str, tls: Tls, auth_code: &str) -> String {
        let (smtp, imap, pop3) = match tls {
            Tls::StartTls => (self.smtp_port, self.imap_port, self.pop3_port),
            Tls::Implicit => (self.smtps_port, self.imaps_port, self.pop3s_port),
        };
        format!(
            r#"
[connectors.qq_mail.{name}]
address = "{USER}"
auth_code = "{auth_code}"
smtp = "localhost:{smtp}"
imap = "localhost:{imap}"
pop3 = "localhost:{pop3}"
tls = "{tls}"
ca_file = "{ca}"
rate_limit = "6000/min"
"#,
            tls = tls.as_str(),
            ca = self.ca_file.display(),
        )
    }

    /// Makes RCPT TO `address` answer [`FREQUENCY_LIMITED`] the next `times` times (`None`:
    /// always), then accept.
    pub fn throttle(&self, address: &str, times: Option<u32>) {
        self.policy
            .state
            .lock()
            .unwrap()
            .rules
            .insert(address.to_ascii_lowercase(), Rule { remaining: times, reply: FREQUENCY_LIMITED.to_string() });
    }

    /// How many times Postfix asked about RCPT TO `address` (each SMTP attempt asks once).
    pub fn rcpt_attempts(&self, address: &str) -> u32 {
        self.policy.state.lock().unwrap().asked.get(&address.to_ascii_lowercase()).copied().unwrap_or(0)
    }

    /// The messages in `address`'s maildir now (new and seen), oldest first.
    pub fn mailbox(&self, address: &str) -> Vec<Delivered> {
        let maildir = self.dir.path().join("mail").join(address.to_ascii_lowercase());
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            let Ok(entries) = std::fs::read_dir(maildir.join(sub)) else { continue };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                // A file moved to `cur/` between listing and reading is found on the next poll.
                let Ok(raw) = std::fs::read(entry.path()) else { continue };
                let flags = name.split_once(":2,").map(|(_, f)| f.to_string()).unwrap_or_default();
                let base = name.split_once(':').map_or(name.as_str(), |(b, _)| b).to_string();
                out.push(Delivered { raw, flags, name: base });
            }
        }
        out.sort_by_key(|m| delivery_time(&m.name));
        out
    }

    /// Waits until `address`'s maildir holds at least `n` messages; returns them.
    pub async fn wait_for_mail(&self, address: &str, n: usize, timeout: Duration) -> Vec<Delivered> {
        let deadline = Instant::now() + timeout;
        loop {
            let mail = self.mailbox(address);
            if mail.len() >= n {
                return mail;
            }
            assert!(
                Instant::now() < deadline,
                "{address} got {} of {n} messages after {timeout:?}\n{}",
                mail.len(),
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Postfix's log.
    pub fn smtp_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postfix.log")).unwrap_or_default()
    }

    /// Dovecot's log.
    pub fn dovecot_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    /// Both logs, for failure messages.
    pub fn logs(&self) -> String {
        let out = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        format!(
            "--- postfix log:\n{}{}--- dovecot log:\n{}{}",
            self.smtp_log(),
            out("postfix.out"),
            self.dovecot_log(),
            out("dovecot.out")
        )
    }
}

impl Drop for MailServer {
    fn drop(&mut self) {
        for child in [self.postfix.take(), self.dovecot.take()].into_iter().flatten() {
            stop(child);
        }
        self.policy.stop();
    }
}

/// One delivered message as stored in the maildir.
#[derive(Debug, Clone)]
pub struct Delivered {
    /// The message bytes as delivered, headers added by Postfix included.
    pub raw: Vec<u8>,
    /// Maildir flags (`S` = seen).
    pub flags: String,
    name: String,
}

impl Delivered {
    /// The message parsed (panics if it cannot be).
    pub fn parsed(&self) -> mail_parser::Message<'_> {
        mail_parser::MessageParser::default().parse(&self.raw).expect("a parsable message")
    }

    /// The header block as stored (folded lines kept), for exact header assertions.
    pub fn header_text(&self) -> String {
        let text = String::from_utf8_lossy(&self.raw);
        let end = text.find("\r\n\r\n").or_else(|| text.find("\n\n")).unwrap_or(text.len());
        text[..end].to_string()
    }

    /// Unfolded values of every top-level header called `name` (case-insensitive).
    pub fn headers(&self, name: &str) -> Vec<String> {
        let unfolded = self.header_text().replace("\r\n", "\n").replace("\n ", " ").replace("\n\t", " ");
        unfolded
            .lines()
            .filter_map(|line| {
                let (n, v) = line.split_once(':')?;
                n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
            .collect()
    }

    /// Whether a client marked it read (maildir flag `S`).
    pub fn seen(&self) -> bool {
        self.flags.contains('S')
    }
}

/// (seconds, microseconds) of a maildir file name `<secs>.M<usecs>P<pid>.<host>…`: the delivery
/// order (the microseconds are not zero-padded, so names do not sort as text).
fn delivery_time(name: &str) -> (u64, u64, String) {
    let (secs, rest) = name.split_once('.').unwrap_or((name, ""));
    let usecs = rest.strip_prefix('M').map(|r| r.chars().take_while(char::is_ascii_digit).collect::<String>());
    (secs.parse().unwrap_or(0), usecs.and_then(|u| u.parse().ok()).unwrap_or(0), name.to_string())
}

/// Sends SIGTERM (both servers stop their children on it), waits a little, then kills.
fn stop(mut child: Child) {
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn spawn(command: &mut Command, output: &Path) -> Child {
    let out = std::fs::File::create(output).unwrap();
    command
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {command:?}: {e}"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// (uid, gid) of a system user, from /etc/passwd.
fn system_user(name: &str) -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(&name) && fields.len() > 3)
                .then(|| (fields[2].parse().unwrap(), fields[3].parse().unwrap()))
        })
        .unwrap_or_else(|| panic!("no system user {name}: install the mail server packages"))
}

/// Writes `ca.pem`, `server.pem` and `server.key` (a `localhost` / 127.0.0.1 certificate signed
/// by a CA named `ca_name`, made here); returns the CA's path. Shared by the tests' private TLS
/// servers (mail, Redis).
pub fn write_certificates(root: &Path, ca_name: &str) -> PathBuf {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, ca_name);
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.subject_alt_names.push(SanType::IpAddress([127, 0, 0, 1].into()));
    params.distinguished_name.push(DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &issuer).unwrap();

    let ca_file = root.join("ca.pem");
    std::fs::write(&ca_file, ca_cert.pem()).unwrap();
    std::fs::write(root.join("server.pem"), format!("{}{}", cert.pem(), ca_cert.pem())).unwrap();
    std::fs::write(root.join("server.key"), key.serialize_pem()).unwrap();
    set_mode(&root.join("server.key"), 0o600);
    ca_file
}

fn dovecot_conf(root: &Path, ports: &[u16; 6], uid: u32, gid: u32) -> String {
    let r = root.display();
    let [_, _, imap, imaps, pop3, pop3s] = ports;
    format!(
        r#"# A private Dovecot for one test.
base_dir = {r}/dovecot-run
state_dir = {r}/dovecot-state
log_path = {r}/dovecot.log
info_log_path = {r}/dovecot.log
protocols = imap pop3 lmtp
listen = 127.0.0.1
hostname = localhost
postmaster_address = postmaster@{DOMAIN}
ssl = yes
ssl_cert = <{r}/server.pem
ssl_key = <{r}/server.key
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = plain login
auth_failure_delay = 0
default_internal_user = dovecot
default_login_user = dovenull
mail_location = maildir:{r}/mail/%u
mail_fsync = never
pop3_uidl_format = %08Xu%08Xv
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {r}/users
}}
# Every address of the domain has a mailbox (LMTP delivery); only USER can log in.
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={r}/mail/%u allow_all_users=yes
}}
service imap-login {{
  inet_listener imap {{
    port = {imap}
  }}
  inet_listener imaps {{
    port = {imaps}
    ssl = yes
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {pop3}
  }}
  inet_listener pop3s {{
    port = {pop3s}
    ssl = yes
  }}
}}
service lmtp {{
  unix_listener {r}/lmtp {{
    mode = 0666
  }}
}}
# Postfix authenticates SMTP clients here.
service auth {{
  unix_listener {r}/auth {{
    mode = 0666
  }}
}}
# No growing delay after failed logins (the wrong-password test).
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"#
    )
}

fn postfix_main_cf(root: &Path, policy_port: u16) -> String {
    let r = root.display();
    format!(
        r#"# A private Postfix for one test: submission with AUTH, delivery over LMTP to Dovecot.
compatibility_level = 3.6
queue_directory = {r}/postfix-queue
data_directory = {r}/postfix-data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
meta_directory = /etc/postfix
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
maillog_file = {r}/postfix.log
maillog_file_prefixes = {r}
myhostname = localhost
mydomain = localhost
myorigin = {DOMAIN}
mydestination =
mynetworks = 192.0.2.1/32
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
alias_maps =
alias_database =
local_recipient_maps =
biff = no
# Keep every header the client sent (Postfix drops Bcc by default, which would hide a leak).
message_drop_headers =
virtual_mailbox_domains = {DOMAIN}
virtual_transport = lmtp:unix:{r}/lmtp
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
smtpd_error_sleep_time = 0
smtpd_soft_error_limit = 100
smtpd_hard_error_limit = 100
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = {r}/auth
smtpd_tls_cert_file = {r}/server.pem
smtpd_tls_key_file = {r}/server.key
smtpd_tls_security_level = may
smtpd_tls_auth_only = yes
smtpd_relay_restrictions = permit_sasl_authenticated, reject
smtpd_recipient_restrictions = check_policy_service inet:127.0.0.1:{policy_port}, permit
smtpd_policy_service_default_action = 451 4.3.5 policy service unavailable
"#
    )
}

fn postfix_master_cf(smtp: u16, smtps: u16) -> String {
    format!(
        r#"# service type private unpriv chroot wakeup maxproc command
127.0.0.1:{smtp} inet n - n - - smtpd
127.0.0.1:{smtps} inet n - n - - smtpd -o smtpd_tls_wrappermode=yes
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
proxywrite unix - - n - 1 proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
lmtp      unix  - - n - - lmtp
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"#
    )
}

/// What the policy service answers for one recipient.
struct Rule {
    /// Rejections left (`None`: always).
    remaining: Option<u32>,
    reply: String,
}

#[derive(Default)]
struct PolicyState {
    rules: HashMap<String, Rule>,
    asked: HashMap<String, u32>,
}

/// A Postfix policy service (`check_policy_service`) on a thread of the test process.
struct Policy {
    port: u16,
    state: Arc<Mutex<PolicyState>>,
    stopping: Arc<AtomicBool>,
}

impl Policy {
    fn start() -> Policy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut state = PolicyState::default();
        state.rules.insert(THROTTLED.into(), Rule { remaining: None, reply: FREQUENCY_LIMITED.into() });
        state.rules.insert(MISSING.into(), Rule { remaining: None, reply: "550 Mailbox not found".into() });
        let state = Arc::new(Mutex::new(state));
        let stopping = Arc::new(AtomicBool::new(false));
        let (shared, stop) = (state.clone(), stopping.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let shared = shared.clone();
                std::thread::spawn(move || serve_policy(stream, &shared));
            }
        });
        Policy { port, state, stopping }
    }

    fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Answers requests (attribute lines up to an empty line) until Postfix closes the connection.
fn serve_policy(stream: TcpStream, state: &Mutex<PolicyState>) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut recipient = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let line = line.trim_end();
        if let Some(value) = line.strip_prefix("recipient=") {
            recipient = value.to_ascii_lowercase();
            continue;
        }
        if !line.is_empty() {
            continue;
        }
        let action = {
            let mut state = state.lock().unwrap();
            *state.asked.entry(recipient.clone()).or_default() += 1;
            match state.rules.get_mut(&recipient) {
                Some(rule) if rule.remaining != Some(0) => {
                    if let Some(n) = rule.remaining.as_mut() {
                        *n -= 1;
                    }
                    rule.reply.clone()
                }
                _ => "DUNNO".to_string(),
            }
        };
        if writer.write_all(format!("action={action}\n\n").as_bytes()).is_err() {
            return;
        }
        recipient.clear();
    }
}

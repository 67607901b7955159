//! Bearer tokens for the HTTP API, kept only as SHA-256 digests and compared in constant time. No
//! token value ever reaches a log, an error or an answer.
//!
//! Two sources, both optional:
//! - `--api-tokens` / `YIZHAN_API_TOKENS`: a comma-separated list of plain tokens (each literal,
//!   `${VAR}` or `file:/path`); a plain token may do everything, for every tenant.
//! - `--api-token-file` / `YIZHAN_API_TOKEN_FILE`: a TOML file of scoped tokens and tenant quotas:
//!
//! ```toml
//! [[tokens]]
//! name = "marketing-ci"                 # shown in audit lines; default "<tenant>-<n>"
//! token = "${MARKETING_TOKEN}"          # literal, ${VAR} or file:/path
//! tenant = "marketing"
//! configs = ["tencent_sms.marketing", "wecom_robot.*"]
//! can = ["submit", "read", "dlq", "campaigns"]   # and "admin"
//!
//! [tenants.marketing]
//! submits_per_second = 50               # jobs accepted per second (a burst of one second's worth)
//! max_queued = 100000                   # jobs waiting in the tenant's queues
//! ```
//!
//! The whole set is swapped at once on reload ([`Tokens::replace`]); requests read it without a lock.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::http::HeaderValue;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// A token that yields no usable token; it names the item by position or file path, never by value.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A `${VAR}` item names an unset variable.
    #[error("API token {index}: environment variable {var} is not set")]
    MissingVar {
        /// The item's position in the list, from 1.
        index: usize,
        /// The variable's name.
        var: String,
    },
    /// A `file:/path` item names a file that cannot be read.
    #[error("API token {index}: cannot read {path}: {source}")]
    File {
        /// The item's position in the list, from 1.
        index: usize,
        /// The file's path.
        path: String,
        /// Why reading it failed.
        source: std::io::Error,
    },
    /// The item, or the variable or file it names, is empty once trimmed.
    #[error("API token {index} is empty")]
    Empty {
        /// The item's position in the list, from 1.
        index: usize,
    },
    /// The token file cannot be read or is not TOML of the expected shape.
    #[error("token file {path}: {reason}")]
    TokenFile {
        /// The file's path.
        path: String,
        /// What is wrong, with the TOML path of the bad item (never a token value).
        reason: String,
    },
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// `POST /v1/jobs`, `DELETE /v1/jobs/{id}`.
    Submit,
    /// `GET /v1/jobs/{id}`, `GET /v1/catalog`.
    Read,
    /// The dead-letter endpoints `/v1/dlq...`.
    Dlq,
    /// The campaign endpoints `/v1/campaigns...`.
    Campaigns,
    /// `POST /v1/admin/reload`.
    Admin,
}

impl Scope {
    /// Its name as the token file and error messages write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Submit => "submit",
            Scope::Read => "read",
            Scope::Dlq => "dlq",
            Scope::Campaigns => "campaigns",
            Scope::Admin => "admin",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scopes(u8);

impl Scopes {
    /// Every scope (a plain token's).
    pub const ALL: Scopes = Scopes(0b1_1111);

    /// Whether `scope` is in the set.
    pub fn has(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    fn from_list(scopes: &[Scope]) -> Scopes {
        Scopes(scopes.iter().fold(0, |bits, scope| bits | scope.bit()))
    }
}

/// The connector configs a token may submit to: `kind.name`, `kind.*` or `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigPatterns(Option<Vec<(String, Option<String>)>>);

impl ConfigPatterns {
    /// Every config (a plain token's).
    pub const ALL: ConfigPatterns = ConfigPatterns(None);

    fn parse(patterns: &[String]) -> Result<ConfigPatterns, String> {
        if patterns.iter().any(|p| p == "*") {
            return Ok(ConfigPatterns::ALL);
        }
        let parsed = patterns
            .iter()
            .map(|pattern| match pattern.split_once('.') {
                Some((kind, "*")) if !kind.is_empty() => Ok((kind.to_string(), None)),
                Some((kind, name)) if !kind.is_empty() && !name.is_empty() && !name.contains('*') => {
                    Ok((kind.to_string(), Some(name.to_string())))
                }
                _ => Err(format!("{pattern:?} is not a config pattern: expected kind.name, kind.* or *")),
            })
            .collect::<Result<_, _>>()?;
        Ok(ConfigPatterns(Some(parsed)))
    }

    /// Whether the token may use config `name` of connector kind `kind`.
    pub fn allows(&self, kind: &str, name: &str) -> bool {
        match &self.0 {
            None => true,
            Some(patterns) => patterns.iter().any(|(k, n)| k == kind && n.as_deref().is_none_or(|n| n == name)),
        }
    }
}

/// Who a request is: what its token may do, and for which tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's name for audit lines (`token-<n>` for a plain token); never its value.
    pub name: String,
    /// The tenant the token acts for; None: a plain token, every tenant.
    pub tenant: Option<String>,
    /// What the token may do.
    pub can: Scopes,
    /// The configs it may submit to.
    pub configs: ConfigPatterns,
}

impl Principal {
    /// Whether the token may see and act on things of `tenant`.
    pub fn owns(&self, tenant: &str) -> bool {
        self.tenant.as_deref().is_none_or(|own| own == tenant)
    }

    /// Who, for an audit line: the token's name and tenant (`*` for a plain token).
    pub fn who(&self) -> String {
        format!("{}@{}", self.name, self.tenant.as_deref().unwrap_or("*"))
    }
}

/// A tenant's quotas from the token file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// Jobs accepted per second (a burst of one second's worth); None: unlimited.
    pub submits_per_second: Option<NonZeroU32>,
    /// Jobs waiting in the tenant's queues past which submissions are refused; None: unlimited.
    pub max_queued: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    #[serde(default)]
    tokens: Vec<TokenEntry>,
    #[serde(default)]
    tenants: BTreeMap<String, Quota>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    #[serde(default)]
    name: Option<String>,
    token: String,
    tenant: String,
    #[serde(default)]
    configs: Vec<String>,
    can: Vec<Scope>,
}

/// One configured set of tokens and quotas.
#[derive(Default)]
pub struct TokenSet {
    digests: Vec<[u8; 32]>,
    principals: Vec<Arc<Principal>>,
    quotas: BTreeMap<String, Quota>,
}

impl TokenSet {
    /// The quota of `tenant` (none configured: unlimited).
    pub fn quota(&self, tenant: &str) -> Quota {
        self.quotas.get(tenant).copied().unwrap_or_default()
    }

    /// Every tenant with a quota.
    pub fn quotas(&self) -> &BTreeMap<String, Quota> {
        &self.quotas
    }
}

/// Where the tokens come from, kept to read them again on reload.
#[derive(Debug, Clone, Default)]
pub struct TokenSources {
    /// The comma-separated plain tokens.
    pub list: Option<String>,
    /// The token file.
    pub file: Option<PathBuf>,
}

/// The accepted tokens, swappable as a whole. Empty: every request is refused.
#[derive(Default)]
pub struct Tokens {
    current: ArcSwap<TokenSet>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} configured)", self.current.load().digests.len())
    }
}

impl Tokens {
    /// Parses a comma-separated list of plain tokens; each item is a literal token, `${VAR}` or
    /// `file:/path` (the file's content, trimmed). `env` looks variables up.
    pub fn parse(spec: Option<&str>, env: &dyn Fn(&str) -> Option<String>) -> Result<Tokens, AuthError> {
        let mut set = TokenSet::default();
        add_plain(&mut set, spec, env)?;
        Ok(Tokens::from_set(set))
    }

    /// Reads both sources (plain tokens first, then the file's).
    pub fn load(sources: &TokenSources, env: &dyn Fn(&str) -> Option<String>) -> Result<Tokens, AuthError> {
        let mut set = TokenSet::default();
        add_plain(&mut set, sources.list.as_deref(), env)?;
        if let Some(path) = &sources.file {
            let text = std::fs::read_to_string(path).map_err(|e| AuthError::TokenFile {
                path: path.display().to_string(),
                reason: format!("cannot read: {e}"),
            })?;
            add_file(&mut set, &text, env)
                .map_err(|reason| AuthError::TokenFile { path: path.display().to_string(), reason })?;
        }
        Ok(Tokens::from_set(set))
    }

    fn from_set(set: TokenSet) -> Tokens {
        Tokens { current: ArcSwap::from_pointee(set) }
    }

    /// Puts `other`'s tokens and quotas in force (a reload); requests in progress keep the old set.
    pub fn replace(&self, other: Tokens) {
        self.current.store(other.current.load_full());
    }

    /// The set in force now.
    pub fn current(&self) -> Arc<TokenSet> {
        self.current.load_full()
    }

    /// Whether no token is configured, so that every protected route would answer 401.
    pub fn is_empty(&self) -> bool {
        self.current.load().digests.is_empty()
    }

    /// Who `token` is, or None for an unknown token.
    pub fn authenticate(&self, token: &str) -> Option<Arc<Principal>> {
        let set = self.current.load();
        // Digests have one length whatever the token, and every configured token is compared
        // without an early exit, so timing reveals neither a token's length nor its prefix.
        let candidate = digest(token.trim().as_bytes());
        let mut found = usize::MAX;
        for (index, known) in set.digests.iter().enumerate() {
            let diff = known.iter().zip(&candidate).fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if diff == 0 {
                found = index;
            }
        }
        set.principals.get(found).cloned()
    }

    /// Who an `Authorization: Bearer <token>` header is, or None.
    pub fn authenticate_header(&self, header: Option<&HeaderValue>) -> Option<Arc<Principal>> {
        let token = header.and_then(|h| h.to_str().ok()).and_then(|h| h.strip_prefix("Bearer "))?;
        self.authenticate(token)
    }

    /// Whether an `Authorization` header carries one of the tokens as `Bearer <token>`.
    pub fn verify(&self, header: Option<&HeaderValue>) -> bool {
        self.authenticate_header(header).is_some()
    }
}

fn add_plain(set: &mut TokenSet, spec: Option<&str>, env: &dyn Fn(&str) -> Option<String>) -> Result<(), AuthError> {
    let Some(spec) = spec else { return Ok(()) };
    for (i, item) in spec.split(',').map(str::trim).filter(|item| !item.is_empty()).enumerate() {
        let index = i + 1;
        let token = if let Some(var) = item.strip_prefix("${").and_then(|rest| rest.strip_suffix('}')) {
            env(var).ok_or_else(|| AuthError::MissingVar { index, var: var.to_string() })?
        } else if let Some(path) = item.strip_prefix("file:") {
            std::fs::read_to_string(path).map_err(|source| AuthError::File { index, path: path.to_string(), source })?
        } else {
            item.to_string()
        };
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Empty { index });
        }
        set.digests.push(digest(token.as_bytes()));
        set.principals.push(Arc::new(Principal {
            name: format!("token-{index}"),
            tenant: None,
            can: Scopes::ALL,
            configs: ConfigPatterns::ALL,
        }));
    }
    Ok(())
}

/// Adds the token file's entries; the error names the TOML path of the bad item.
fn add_file(set: &mut TokenSet, text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<(), String> {
    let file: TokenFile = toml::from_str(text).map_err(|e| {
        // toml's message quotes the offending line, which may hold a token: keep only the reason
        // and where it is.
        let at = e.span().map(|span| line_of(text, span.start)).map(|line| format!(" at line {line}"));
        format!("{}{}", e.message(), at.unwrap_or_default())
    })?;
    for (i, entry) in file.tokens.into_iter().enumerate() {
        let at = format!("tokens[{i}]");
        if !yizhan_schemas::is_valid_tenant(&entry.tenant) {
            return Err(format!("{at}.tenant: not a tenant name (^[a-z0-9][a-z0-9_-]{{0,62}}$)"));
        }
        let configs = ConfigPatterns::parse(&entry.configs).map_err(|reason| format!("{at}.configs: {reason}"))?;
        let token = crate::receipts::resolve(&entry.token, env).map_err(|reason| format!("{at}.token: {reason}"))?;
        let token = token.trim();
        if token.is_empty() {
            return Err(format!("{at}.token: is empty"));
        }
        let digest = digest(token.as_bytes());
        if set.digests.contains(&digest) {
            return Err(format!("{at}.token: the same token is configured twice"));
        }
        set.digests.push(digest);
        set.principals.push(Arc::new(Principal {
            name: entry.name.unwrap_or_else(|| format!("{}-{}", entry.tenant, i + 1)),
            tenant: Some(entry.tenant),
            can: Scopes::from_list(&entry.can),
            configs,
        }));
    }
    for tenant in file.tenants.keys() {
        if !yizhan_schemas::is_valid_tenant(tenant) {
            return Err(format!("tenants.{tenant}: not a tenant name"));
        }
    }
    set.quotas = file.tenants;
    Ok(())
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(token: &str) -> HeaderValue {
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap()
    }

    #[test]
    fn literal_env_and_file_tokens_verify() {
        let dir = std::env::temp_dir().join(format!("yizhan-token-{}", std::process::id()));
        std::fs::write(&dir, "from-file\n").unwrap();
        let spec = format!("literal, ${{TOKEN_VAR}} ,file:{}", dir.display());
        let env = |name: &str| (name == "TOKEN_VAR").then(|| "from-env".to_string());
        let tokens = Tokens::parse(Some(&spec), &env).unwrap();
        std::fs::remove_file(&dir).unwrap();
        for good in ["literal", "from-env", "from-file"] {
            assert!(tokens.verify(Some(&bearer(good))), "{good}");
        }
        assert!(!tokens.verify(Some(&bearer("literally"))));
        assert!(!tokens.verify(Some(&HeaderValue::from_static("literal"))));
        assert!(!tokens.verify(None));
        assert!(format!("{tokens:?}").contains("3 configured"));
        let plain = tokens.authenticate("from-env").unwrap();
        assert_eq!((plain.name.as_str(), plain.tenant.as_deref(), plain.can), ("token-2", None, Scopes::ALL));
    }

    #[test]
    fn no_tokens_refuse_everything_and_errors_hide_values() {
        let none = Tokens::parse(None, &|_| None).unwrap();
        assert!(none.is_empty());
        assert!(!none.verify(Some(&bearer(""))));
        let err = Tokens::parse(Some("secret-value,${NOPE}"), &|_| None).unwrap_err();
        assert_eq!(err.to_string(), "API token 2: environment variable NOPE is not set");
        assert!(!Tokens::parse(Some("file:/nonexistent/x"), &|_| None).unwrap_err().to_string().contains("secret"));
    }

    const FILE: &str = r#"
[[tokens]]
name = "mkt"
token = "${MKT}"
tenant = "marketing"
configs = ["tencent_sms.marketing", "wecom_robot.*"]
can = ["submit", "read"]

[[tokens]]
token = "ops-secret-token"
tenant = "ops"
configs = ["*"]
can = ["admin", "dlq"]

[tenants.marketing]
submits_per_second = 5
max_queued = 100
"#;

    #[test]
    fn the_token_file_scopes_tokens_and_sets_quotas() {
        let mut set = TokenSet::default();
        add_plain(&mut set, Some("plain"), &|_| None).unwrap();
        add_file(&mut set, FILE, &|var| (var == "MKT").then(|| "mkt-token".into())).unwrap();
        let tokens = Tokens::from_set(set);
        let mkt = tokens.authenticate("mkt-token").unwrap();
        assert_eq!((mkt.name.as_str(), mkt.tenant.as_deref()), ("mkt", Some("marketing")));
        assert!(mkt.can.has(Scope::Submit) && mkt.can.has(Scope::Read) && !mkt.can.has(Scope::Dlq));
        assert!(mkt.configs.allows("tencent_sms", "marketing") && mkt.configs.allows("wecom_robot", "any"));
        assert!(!mkt.configs.allows("tencent_sms", "login"));
        assert!(mkt.owns("marketing") && !mkt.owns("ops"));
        let ops = tokens.authenticate("ops-secret-token").unwrap();
        assert_eq!(ops.name, "ops-2");
        assert!(ops.configs.allows("tencent_sms", "login") && ops.can.has(Scope::Admin));
        let plain = tokens.authenticate("plain").unwrap();
        assert!(plain.owns("ops") && plain.can.has(Scope::Campaigns));
        assert!(tokens.authenticate("mkt").is_none());
        let quota = tokens.current().quota("marketing");
        assert_eq!((quota.submits_per_second.map(NonZeroU32::get), quota.max_queued), (Some(5), Some(100)));
        assert_eq!(tokens.current().quota("ops"), Quota::default());

        tokens.replace(Tokens::parse(Some("other"), &|_| None).unwrap());
        assert!(tokens.authenticate("mkt-token").is_none() && tokens.authenticate("other").is_some());
    }

    #[test]
    fn bad_token_files_name_the_item_and_hide_values() {
        let cases = [
            ("[[tokens]]\ntoken = \"s3cr3t\"\ntenant = \"Bad Name\"\ncan = []\n", "tokens[0].tenant"),
            ("[[tokens]]\ntoken = \"s3cr3t\"\ntenant = \"a\"\nconfigs = [\"sms\"]\ncan = []\n", "tokens[0].configs"),
            ("[[tokens]]\ntoken = \"${UNSET}\"\ntenant = \"a\"\ncan = []\n", "tokens[0].token"),
            ("[[tokens]]\ntoken = \"s3cr3t\"\ntenant = \"a\"\ncan = [\"fly\"]\n", "line 4"),
            ("[[tokens]]\ntoken = \"s3cr3t\"\ntenant = \"a\"\n", "missing field `can`"),
            (
                "[[tokens]]\ntoken = \"s3cr3t\"\ntenant = \"a\"\ncan = []\n[[tokens]]\ntoken = \"s3cr3t\"\ntenant = \"b\"\ncan = []\n",
                "tokens[1].token: the same token",
            ),
        ];
        for (text, expected) in cases {
            let err = add_file(&mut TokenSet::default(), text, &|_| None).unwrap_err();
            assert!(err.contains(expected), "{err:?} lacks {expected:?}");
            assert!(!err.contains("s3cr3t"), "{err:?}");
        }
    }
}

//! Bearer tokens for the HTTP API: parsed from `--api-tokens` / `YIZHAN_API_TOKENS`, kept only as
//! SHA-256 digests, compared in constant time. No token value ever reaches a log or an error.

use axum::http::HeaderValue;
use sha2::{Digest, Sha256};

/// A token list item that yields no token; it names the item by position, never by value.
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
}

/// The accepted tokens. Empty: every request is refused.
#[derive(Clone, Default)]
pub struct Tokens {
    digests: Vec<[u8; 32]>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} configured)", self.digests.len())
    }
}

impl Tokens {
    /// Parses a comma-separated list; each item is a literal token, `${VAR}` or `file:/path`
    /// (the file's content, trimmed). `env` looks variables up (the process environment in `serve`).
    pub fn parse(spec: Option<&str>, env: &dyn Fn(&str) -> Option<String>) -> Result<Tokens, AuthError> {
        let mut digests = Vec::new();
        let Some(spec) = spec else { return Ok(Tokens { digests }) };
        for (i, item) in spec.split(',').map(str::trim).filter(|item| !item.is_empty()).enumerate() {
            let index = i + 1;
            let token = if let Some(var) = item.strip_prefix("${").and_then(|rest| rest.strip_suffix('}')) {
                env(var).ok_or_else(|| AuthError::MissingVar { index, var: var.to_string() })?
            } else if let Some(path) = item.strip_prefix("file:") {
                std::fs::read_to_string(path).map_err(|source| AuthError::File {
                    index,
                    path: path.to_string(),
                    source,
                })?
            } else {
                item.to_string()
            };
            let token = token.trim();
            if token.is_empty() {
                return Err(AuthError::Empty { index });
            }
            digests.push(digest(token.as_bytes()));
        }
        Ok(Tokens { digests })
    }

    /// Whether no token is configured, so that every protected route would answer 401.
    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// Whether an `Authorization` header carries one of the tokens as `Bearer <token>`.
    pub fn verify(&self, header: Option<&HeaderValue>) -> bool {
        let Some(token) = header.and_then(|h| h.to_str().ok()).and_then(|h| h.strip_prefix("Bearer ")) else {
            return false;
        };
        // Digests have one length whatever the token, and every configured token is compared
        // without an early exit, so timing reveals neither a token's length nor its prefix.
        let candidate = digest(token.trim().as_bytes());
        let mut matched = 0u8;
        for known in &self.digests {
            let diff = known.iter().zip(&candidate).fold(0u8, |acc, (a, b)| acc | (a ^ b));
            matched |= u8::from(diff == 0);
        }
        matched == 1
    }
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
}

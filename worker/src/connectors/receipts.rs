//! Delivery receipts, as the connectors see them: how a config gets them (`receipts`,
//! `pull_interval`, `receipt_token`, checked at start with their config path) and what one pull
//! returns. The pull loop itself is `crate::receipts`.

use std::time::Duration;

use yizhan_schemas::Job;
use yizhan_state::{ExpectedReceipts, Receipt};

use crate::config::{ConfigError, Secret, parse_duration_field};

/// `pull_interval` when absent.
pub const DEFAULT_PULL_INTERVAL: Duration = Duration::from_secs(10);
/// The shortest `pull_interval`: the provider's receipt APIs are rate-limited per account.
pub const MIN_PULL_INTERVAL: Duration = Duration::from_millis(200);
/// The shortest `receipt_token`: it alone authenticates the provider's callback.
pub const MIN_TOKEN_CHARS: usize = 16;

/// How a config gets its delivery receipts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiptMode {
    /// The provider POSTs them to `yizhan-producer serve`, authenticated by the config's token.
    Push {
        /// `receipt_token`: the `?token=` of the callback URL.
        token: Secret,
    },
    /// A worker asks the provider every `interval`.
    Pull {
        /// `pull_interval`.
        interval: Duration,
    },
}

impl ReceiptMode {
    /// The pull interval of a pulling config.
    pub fn pull_interval(&self) -> Option<Duration> {
        match self {
            ReceiptMode::Pull { interval } => Some(*interval),
            ReceiptMode::Push { .. } => None,
        }
    }
}

/// The receipt fields of a config at `at` (`connectors.<kind>.<name>`): `receipts` (`"push"`
/// where `push` is allowed, or `"pull"`), `pull_interval` (pull only) and `receipt_token` (push
/// only, at least [`MIN_TOKEN_CHARS`] characters). None when the config collects no receipts. A
/// field that would have no effect is refused rather than ignored.
pub fn parse_mode(
    at: &str,
    receipts: Option<&str>,
    pull_interval: Option<&str>,
    receipt_token: Option<&Secret>,
    push: bool,
) -> Result<Option<ReceiptMode>, ConfigError> {
    let field = |name: &str| format!("{at}.{name}");
    let mode = match receipts {
        None => None,
        Some("pull") => {
            let interval = match pull_interval {
                Some(text) => parse_duration_field(&field("pull_interval"), text)?,
                None => DEFAULT_PULL_INTERVAL,
            };
            if interval < MIN_PULL_INTERVAL {
                return Err(ConfigError::field(
                    field("pull_interval"),
                    format!("must be at least {}", humantime::format_duration(MIN_PULL_INTERVAL)),
                ));
            }
            Some(ReceiptMode::Pull { interval })
        }
        Some("push") if push => {
            let token = receipt_token.ok_or_else(|| {
                ConfigError::field(
                    field("receipt_token"),
                    "is required with receipts = \"push\": it authenticates the provider's callback",
                )
            })?;
            if token.expose().chars().count() < MIN_TOKEN_CHARS {
                return Err(ConfigError::field(
                    field("receipt_token"),
                    format!("must be at least {MIN_TOKEN_CHARS} characters: it alone authenticates the callback"),
                ));
            }
            Some(ReceiptMode::Push { token: token.clone() })
        }
        Some("push") => {
            return Err(ConfigError::field(field("receipts"), "this provider does not push receipts: use \"pull\""));
        }
        Some(other) => {
            let allowed = if push { "push or pull" } else { "pull" };
            return Err(ConfigError::field(field("receipts"), format!("{other:?} is not {allowed}")));
        }
    };
    if pull_interval.is_some() && !matches!(mode, Some(ReceiptMode::Pull { .. })) {
        return Err(ConfigError::field(field("pull_interval"), "has no effect without receipts = \"pull\""));
    }
    if receipt_token.is_some() && !matches!(mode, Some(ReceiptMode::Push { .. })) {
        return Err(ConfigError::field(field("receipt_token"), "has no effect without receipts = \"push\""));
    }
    Ok(mode)
}

/// The pull queue of a config: where its messages wait for their receipts.
pub fn pull_queue(kind: &str, config: &str) -> String {
    format!("{kind}/{config}")
}

/// What the store indexes with a success sent by config `config`: the messages whose receipts
/// will come, the config's pull queue when they are asked for one by one, and the job's
/// callback (sent again once they are final). Nothing when the call expects no receipts.
pub fn expected(job: &Job, config: &str, receipts: Receipts) -> ExpectedReceipts {
    if receipts.sids.is_empty() {
        return ExpectedReceipts::default();
    }
    ExpectedReceipts {
        sids: receipts.sids,
        pull: receipts.poll.then(|| pull_queue(&job.connector, config)),
        callback: job.callback.as_ref().map(|callback| serde_json::to_string(callback).expect("a callback serialises")),
    }
}

/// The delivery receipts a successful call makes the pipeline expect.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Receipts {
    /// `(sid, recipient)`: the provider's id of each message it accepted (an SMS `SerialNo`), and
    /// its recipient as the job wrote it.
    pub sids: Vec<(String, String)>,
    /// The worker asks for each one (SES `GetSendEmailStatus`) rather than getting them on their
    /// own (pushed to the API, or pulled from the provider's queue).
    pub poll: bool,
}

/// What one pull got.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReceiptPage {
    /// The final receipts (delivered or failed) the provider returned.
    pub receipts: Vec<Receipt>,
    /// A full page: the provider may hold more, so pull again at once.
    pub more: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: &str = "connectors.tencent_sms.marketing";

    fn error(receipts: Option<&str>, interval: Option<&str>, token: Option<&str>, push: bool) -> String {
        let token = token.map(Secret::new);
        parse_mode(AT, receipts, interval, token.as_ref(), push).unwrap_err().to_string()
    }

    #[test]
    fn modes_parse_with_defaults() {
        assert_eq!(parse_mode(AT, None, None, None, true).unwrap(), None);
        assert_eq!(
            parse_mode(AT, Some("pull"), None, None, true).unwrap(),
            Some(ReceiptMode::Pull { interval: DEFAULT_PULL_INTERVAL })
        );
        assert_eq!(
            parse_mode(AT, Some("pull"), Some("2s"), None, false).unwrap().and_then(|m| m.pull_interval()),
            Some(Duration::from_secs(2))
        );
        let token = Secret::new("0123456789abcdef");
        assert_eq!(
            parse_mode(AT, Some("push"), None, Some(&token), true).unwrap(),
            Some(ReceiptMode::Push { token: token.clone() })
        );
    }

    #[test]
    fn bad_receipt_fields_name_their_path_and_never_the_token() {
        assert_eq!(error(Some("poll"), None, None, true), format!("{AT}.receipts: \"poll\" is not push or pull"));
        assert!(error(Some("push"), None, None, true).starts_with(&format!("{AT}.receipt_token: is required")));
        let short = error(Some("push"), None, Some("s3cr3t"), true);
        assert!(short.starts_with(&format!("{AT}.receipt_token: must be at least 16")), "{short}");
        assert!(!short.contains("s3cr3t"));
        assert!(error(Some("push"), None, None, false).starts_with(&format!("{AT}.receipts: this provider")));
        assert!(error(None, Some("5s"), None, true).starts_with(&format!("{AT}.pull_interval: has no effect")));
        assert!(
            error(Some("pull"), None, Some("0123456789abcdef"), true)
                .starts_with(&format!("{AT}.receipt_token: has no effect"))
        );
        assert!(
            error(Some("pull"), Some("soon"), None, true).starts_with(&format!("{AT}.pull_interval: not a duration"))
        );
        assert!(
            error(Some("pull"), Some("10ms"), None, true).starts_with(&format!("{AT}.pull_interval: must be at least"))
        );
    }
}

//! One call to a connector and its outcome: what every kind takes and returns.

use std::time::Duration;

use serde_json::Value;
use uuid::Uuid;
use yizhan_schemas::ActionSpec;
use yizhan_state::{PendingReceipt, redact};

use super::receipts::{ReceiptPage, Receipts};

/// One attempt of one job, as the pipeline hands it to a connector.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// The job's id, the same on every attempt (qq_mail derives the Message-ID from it).
    pub job_id: Uuid,
    /// The catalog entry of the job's action (its name, effect, bucket).
    pub action: &'static ActionSpec,
    /// Validated against the action's params schema.
    pub params: &'a Value,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// What earlier attempts of this job recorded (for example the numbers already sent).
    pub progress: Option<&'a Value>,
}

/// A successful attempt.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Success {
    /// A read action's data, or a write's receipt (message ids, per-number statuses).
    pub result: Option<Value>,
    /// The delivery receipts to expect: none for actions without receipts, or configs that do
    /// not collect them.
    pub receipts: Receipts,
}

/// A failed attempt, classified. Reasons carry the provider's code and message, never a secret
/// (no keys, tokens, signatures, or URLs with credentials in their query).
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// Worth retrying later: network trouble, 5xx, the provider's busy codes.
    /// `retry_after` is the provider's own hint; `progress` what this attempt achieved.
    Transient {
        /// The provider's code and message, or the network error.
        reason: String,
        /// The least wait before the retry; None: the retry delays alone decide.
        retry_after: Option<Duration>,
        /// What to record for the next attempt; None keeps what was recorded before.
        progress: Option<Value>,
    },
    /// The provider throttles the whole config (its rate-limit codes, HTTP 429): the config pauses
    /// across the fleet for `retry_after` (a short backoff when the provider does not say), and the
    /// job is retried like a transient failure.
    Throttled {
        /// The provider's code and message.
        reason: String,
        /// How long the provider asked to wait; None: a short default pause.
        retry_after: Option<Duration>,
    },
    /// Will fail again however often it is tried: bad credentials, invalid params, quotas.
    Permanent {
        /// The provider's code and message, or what is wrong with the params.
        reason: String,
        /// What the attempt did get done (e.g. numbers sent before one was refused); None keeps the record.
        progress: Option<Value>,
    },
    /// The provider could not be reached (no connection): the request never left, so it is
    /// retried like a transient failure, and a config with a `fallback` sends it there at once.
    Unreachable {
        /// The network error.
        reason: String,
    },
    /// The request may have reached the provider; its answer was lost (a timeout after the
    /// request was sent, an unreadable answer). Connectors report only that: whether it is retried
    /// (a read) or follows the config's `on_ambiguous` (a write) is the pipeline's `classify`'s call.
    Ambiguous {
        /// What was lost (the timeout, the unreadable answer).
        reason: String,
    },
}

impl Failure {
    /// A transient failure with no provider hint and no progress.
    pub fn transient(reason: impl Into<String>) -> Self {
        Failure::Transient { reason: reason.into(), retry_after: None, progress: None }
    }

    /// The config's provider throttles it; `retry_after` is its hint, if it gave one.
    pub fn throttled(reason: impl Into<String>, retry_after: Option<Duration>) -> Self {
        Failure::Throttled { reason: reason.into(), retry_after }
    }

    /// A permanent failure with no progress.
    pub fn permanent(reason: impl Into<String>) -> Self {
        Failure::Permanent { reason: reason.into(), progress: None }
    }

    /// The same failure with its reason rewritten by `f` (redacted, given context, ...).
    pub fn map_reason(self, f: impl FnOnce(String) -> String) -> Failure {
        match self {
            Failure::Transient { reason, retry_after, progress } => {
                Failure::Transient { reason: f(reason), retry_after, progress }
            }
            Failure::Throttled { reason, retry_after } => Failure::Throttled { reason: f(reason), retry_after },
            Failure::Permanent { reason, progress } => Failure::Permanent { reason: f(reason), progress },
            Failure::Ambiguous { reason } => Failure::Ambiguous { reason: f(reason) },
            Failure::Unreachable { reason } => Failure::Unreachable { reason: f(reason) },
        }
    }

    /// For a request that changes nothing at the provider and is not the job's action itself (a
    /// token fetch, a status query): its lost answer is simply asked again, so it is transient
    /// rather than left to the job's `on_ambiguous`.
    pub fn lost_is_transient(self) -> Failure {
        match self {
            Failure::Ambiguous { reason } => Failure::transient(reason),
            other => other,
        }
    }

    /// The same failure with every (non-empty) secret of `secrets` replaced by `***` in its reason.
    pub fn redact_secrets(self, secrets: &[&str]) -> Failure {
        self.map_reason(|reason| redact::secrets(&reason, secrets))
    }

    /// The reason of any variant, as recorded and dead-lettered.
    pub fn reason(&self) -> &str {
        match self {
            Failure::Transient { reason, .. }
            | Failure::Throttled { reason, .. }
            | Failure::Permanent { reason, .. }
            | Failure::Ambiguous { reason }
            | Failure::Unreachable { reason } => reason,
        }
    }
}

/// Executes the actions of one connector config.
#[async_trait::async_trait]
pub trait Connector: Send + Sync {
    /// Runs one attempt; implementations must keep every secret out of a `Failure`'s reason.
    async fn execute(&self, call: Call<'_>) -> Result<Success, Failure>;

    /// One pull of delivery receipts, for a config with `receipts = "pull"`: from the provider's
    /// receipt queue, or for the `pending` messages the store lists (asked one by one). Kinds
    /// without receipts return none.
    async fn pull_receipts(&self, pending: &[PendingReceipt]) -> Result<ReceiptPage, Failure> {
        let _ = pending;
        Ok(ReceiptPage::default())
    }
}

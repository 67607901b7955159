//! The pipeline's decisions, with no I/O: given what the claim, the limiter and the connector
//! said, which [`Effect`]s follow, in order. The shell (`mod.rs`) carries them out; the tests
//! (`tests.rs`) check every branch without a broker.

use std::time::Duration;

use serde_json::Value;
use yizhan_state::{Claim, ExpectedReceipts, Finish, FinishedState, Millis, WaitReason};

use crate::config::OnAmbiguous;
use crate::connectors::Failure;
use crate::metrics::JobOutcome;

/// Where a dead job's message goes, by `x-yizhan-error-kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadKind {
    /// The provider refused the call for good.
    Permanent,
    /// Transient failures used up the job's `max_attempts`.
    Exhausted,
    /// Not a valid job, or names a config this worker lacks.
    Invalid,
    /// A write's outcome is unknown (answer lost, or its worker died) and `on_ambiguous = "dead_letter"`.
    Ambiguous,
}

impl DeadKind {
    /// The `x-yizhan-error-kind` header value and the status API's `error_kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadKind::Permanent => "permanent",
            DeadKind::Exhausted => "exhausted",
            DeadKind::Invalid => "invalid",
            DeadKind::Ambiguous => "ambiguous",
        }
    }
}

/// How one claimed attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Settle {
    Succeeded {
        result: Option<Value>,
        /// The delivery receipts to index with the success (none for most actions).
        receipts: ExpectedReceipts,
    },
    Retry {
        progress: Option<Value>,
        reason: String,
        retry_after: Option<Duration>,
    },
    Dead {
        kind: DeadKind,
        reason: String,
        progress: Option<Value>,
    },
    /// Not attempted: it cannot run before `until` (`why`); come back then, attempt not counted.
    /// A time, not a wait, so that the record says exactly `send_at` or the window's end.
    NotYet {
        until: Millis,
        progress: Option<Value>,
        why: WaitReason,
        reason: String,
    },
    /// Not attempted: its campaign was cancelled.
    Cancelled,
    /// Not attempted: every recipient is over its cap and the config drops them.
    Capped {
        result: Option<Value>,
    },
}

/// What a job's time rules and campaign say before its call, in the order they apply.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Gate {
    /// Nothing holds it back.
    Go,
    /// Its campaign was cancelled: it never runs.
    Cancel,
    /// It waits until `until` for `why`.
    Wait { until: Millis, why: WaitReason, reason: String },
}

/// The gates of a claimed job: a cancelled campaign, then `send_at`, then quiet hours (whose end
/// is `quiet_end` when `now` is inside the config's window for the job's priority).
pub(crate) fn gate(now: Millis, cancelled: bool, send_at: Option<Millis>, quiet_end: Option<Millis>) -> Gate {
    if cancelled {
        return Gate::Cancel;
    }
    if let Some(at) = send_at.filter(|at| *at > now) {
        return Gate::Wait { until: at, why: WaitReason::Scheduled, reason: "scheduled by its send_at".into() };
    }
    if let Some(end) = quiet_end.filter(|end| *end > now) {
        return Gate::Wait {
            until: end,
            why: WaitReason::Deferred,
            reason: "deferred by its config's quiet hours".into(),
        };
    }
    Gate::Go
}

impl Gate {
    /// The attempt's settle, unless nothing holds it back.
    pub(crate) fn settle(self, now: Millis, progress: Option<&Value>) -> Option<Settle> {
        match self {
            Gate::Go => None,
            Gate::Cancel => Some(Settle::Cancelled),
            Gate::Wait { until, why, reason } => {
                Some(Settle::NotYet { until: until.max(now), progress: progress.cloned(), why, reason })
            }
        }
    }
}

/// One thing the shell does, in the order given.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Effect {
    /// Write the key's record.
    Record(Finish),
    /// Publish a copy to the delay lane that fits `delay`, to come back as attempt `attempt`.
    PublishDelayed { attempt: u32, delay: Duration },
    /// Hold the message in the parking lot for `wait`, to come back as attempt `attempt`;
    /// `held` ones (a paused campaign's) wait until the campaign is resumed or cancelled.
    Park { attempt: u32, until: Millis, reason: &'static str, held: bool },
    /// Publish the message unchanged to the dead-letter queue.
    DeadLetter { kind: DeadKind, reason: String },
    /// The retry copy after attempt `attempt` is safely stored (broker or parking lot).
    MarkRetryPublished { attempt: u32 },
    /// The job's outcome, for the metrics and the log.
    Settled { outcome: JobOutcome, reason: Option<String> },
    /// Publish the job's completion callback (confirmed); only jobs with a `callback` get one
    /// (see [`with_callback`]). The POST itself is the callback consumer's, never the job's.
    Callback(Completion),
}

/// What a completion callback reports.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Completion {
    /// The final state this delivery recorded.
    Final { status: FinishedState, attempts: u32, result: Option<Value>, error: Option<String> },
    /// The key had finished before this delivery (a job cancelled while it waited, or a
    /// redelivery whose callback may not have gone out): the store's status says how.
    Stored,
}

impl Completion {
    /// The callback of a final record; None for a record that is not final.
    fn of(finish: &Finish) -> Option<Completion> {
        let (status, attempts, result, error) = match finish {
            Finish::Succeeded { attempt, result, .. } => (FinishedState::Succeeded, *attempt, result.clone(), None),
            Finish::Dead { attempt, error, .. } => (FinishedState::Dead, *attempt, None, Some(error.clone())),
            Finish::Cancelled { attempt, .. } => (FinishedState::Cancelled, *attempt, None, None),
            Finish::Capped { attempt, result, .. } => (FinishedState::Capped, *attempt, result.clone(), None),
            Finish::Retrying { .. } | Finish::Waiting { .. } => return None,
        };
        Some(Completion::Final { status, attempts, result, error })
    }
}

/// The effects of a job that has a `callback`: its callback right after the record of a final
/// state, or, when this delivery found its key already finished (`finished_before`), from the
/// stored status before the outcome. Jobs without one never come here: they pay nothing.
pub(crate) fn with_callback(mut effects: Vec<Effect>, finished_before: bool) -> Vec<Effect> {
    let recorded =
        effects.iter().position(|effect| matches!(effect, Effect::Record(finish) if Completion::of(finish).is_some()));
    if let Some(index) = recorded {
        let Effect::Record(finish) = &effects[index] else { unreachable!("found a record") };
        let completion = Completion::of(finish).expect("a final record");
        effects.insert(index + 1, Effect::Callback(completion));
    } else if finished_before {
        let at = effects.iter().position(|effect| matches!(effect, Effect::Settled { .. })).unwrap_or(effects.len());
        effects.insert(at, Effect::Callback(Completion::Stored));
    }
    effects
}

/// The retry schedule: the n-th retry waits the n-th delay (the last repeats).
#[derive(Debug, Clone)]
pub(crate) struct Backoff<'a> {
    pub delays: &'a [Duration],
}

impl Backoff<'_> {
    /// The wait after failed attempt `failed_attempt`, or longer if the provider asked.
    pub(crate) fn after(&self, failed_attempt: u32, provider_hint: Option<Duration>) -> Duration {
        let index = (failed_attempt.max(1) as usize - 1).min(self.delays.len() - 1);
        self.delays[index].max(provider_hint.unwrap_or_default())
    }
}

/// What the claim's answer means for this delivery.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Claimed {
    /// Run it, with what earlier attempts recorded; `orphaned` names an attempt cut off by a
    /// worker's death.
    Run { progress: Option<Value>, orphaned: Option<u32> },
    /// Nothing to do but settle the delivery.
    Done(Vec<Effect>),
}

/// What the claim's answer means for attempt `attempt`.
pub(crate) fn on_claim(claim: Claim, attempt: u32, backoff: &Backoff<'_>) -> Claimed {
    match claim {
        Claim::Acquired { progress, orphaned_attempt } => Claimed::Run { progress, orphaned: orphaned_attempt },
        // A job cancelled before any worker took it (its tombstone was found by this claim).
        Claim::Finished { state: FinishedState::Cancelled } => {
            Claimed::Done(vec![Effect::Settled { outcome: JobOutcome::Cancelled, reason: None }])
        }
        Claim::Finished { .. } | Claim::Stale => {
            Claimed::Done(vec![Effect::Settled { outcome: JobOutcome::Duplicate, reason: None }])
        }
        // Another worker runs the key now: look again once its lease would have run out.
        Claim::Busy { retry_in } => Claimed::Done(vec![Effect::PublishDelayed { attempt, delay: retry_in }]),
        // This attempt had decided to retry, but its worker stopped before the copy was confirmed.
        Claim::RetryUnpublished { attempt: decided, progress: _ } => Claimed::Done(vec![
            Effect::PublishDelayed { attempt: decided + 1, delay: backoff.after(decided, None) },
            Effect::MarkRetryPublished { attempt: decided },
        ]),
    }
}

/// An attempt cut off by a worker's death is a lost answer like any other: [`classify`] decides.
pub(crate) fn orphaned_failure(previous: u32) -> Failure {
    Failure::Ambiguous {
        reason: format!(
            "attempt {previous} was cut off by a worker's death: the provider may or may not have received it"
        ),
    }
}

/// The one place that maps a failure to where the job goes: retry while attempts remain, else
/// dead; a lost answer of a write follows the config's `on_ambiguous`, of a read is retried.
pub(crate) fn classify(
    failure: Failure,
    attempt: u32,
    max_attempts: u32,
    writes: bool,
    on_ambiguous: OnAmbiguous,
    progress: Option<&Value>,
) -> Settle {
    let exhausted = attempt >= max_attempts;
    let exhausted_reason = |reason: String| format!("{max_attempts} attempts used: {reason}");
    match failure {
        Failure::Permanent { reason, progress: new } => {
            Settle::Dead { kind: DeadKind::Permanent, reason, progress: new.or_else(|| progress.cloned()) }
        }
        Failure::Ambiguous { reason } if writes && on_ambiguous == OnAmbiguous::DeadLetter => {
            Settle::Dead { kind: DeadKind::Ambiguous, reason, progress: progress.cloned() }
        }
        Failure::Transient { reason, progress: new, .. } if exhausted => Settle::Dead {
            kind: DeadKind::Exhausted,
            reason: exhausted_reason(reason),
            progress: new.or_else(|| progress.cloned()),
        },
        Failure::Throttled { reason, .. } | Failure::Ambiguous { reason } | Failure::Unreachable { reason }
            if exhausted =>
        {
            Settle::Dead { kind: DeadKind::Exhausted, reason: exhausted_reason(reason), progress: progress.cloned() }
        }
        Failure::Transient { reason, retry_after, progress: new } => {
            Settle::Retry { progress: new.or_else(|| progress.cloned()), reason, retry_after }
        }
        Failure::Throttled { reason, retry_after } => {
            Settle::Retry { progress: progress.cloned(), reason, retry_after }
        }
        Failure::Ambiguous { reason } | Failure::Unreachable { reason } => {
            Settle::Retry { progress: progress.cloned(), reason, retry_after: None }
        }
    }
}

/// The effects that settle attempt `attempt`, in order. Every path ends with the outcome safely
/// stored before the shell acks: a record, and a confirmed copy where the job moves.
pub(crate) fn settle(settle: Settle, attempt: u32, backoff: &Backoff<'_>, now: Millis) -> Vec<Effect> {
    match settle {
        Settle::Succeeded { result, receipts } => vec![
            Effect::Record(Finish::Succeeded { attempt, result, receipts }),
            Effect::Settled { outcome: JobOutcome::Succeeded, reason: None },
        ],
        Settle::Retry { progress, reason, retry_after } => {
            let delay = backoff.after(attempt, retry_after);
            let next_attempt_at = now + delay.as_millis() as Millis;
            vec![
                Effect::Record(Finish::Retrying { attempt, progress, error: reason.clone(), next_attempt_at }),
                Effect::PublishDelayed { attempt: attempt + 1, delay },
                Effect::MarkRetryPublished { attempt },
                Effect::Settled { outcome: JobOutcome::Retried, reason: Some(reason) },
            ]
        }
        // Released as "waiting after attempt - 1", so that the copy for this same attempt
        // reclaims the key when it comes back.
        Settle::NotYet { until, progress, why, reason } => {
            let previous = attempt - 1;
            let mut effects = vec![
                Effect::Record(Finish::Waiting { attempt: previous, progress, reason: reason.clone(), until, why }),
                Effect::Park { attempt, until, reason: park_reason(why), held: false },
                Effect::MarkRetryPublished { attempt: previous },
            ];
            // Rate-limit waits are counted by the parking metric; the others are outcomes.
            if why == WaitReason::Deferred {
                effects.push(Effect::Settled { outcome: JobOutcome::Deferred, reason: Some(reason) });
            }
            effects
        }
        Settle::Cancelled => vec![
            Effect::Record(Finish::Cancelled { attempt }),
            Effect::Settled { outcome: JobOutcome::Cancelled, reason: None },
        ],
        Settle::Capped { result } => vec![
            Effect::Record(Finish::Capped { attempt, result }),
            Effect::Settled { outcome: JobOutcome::Capped, reason: None },
        ],
        // Published before it is recorded: a crash in between redelivers the job rather than
        // leaving a `dead` record whose message never reached the queue.
        Settle::Dead { kind, reason, progress } => vec![
            Effect::DeadLetter { kind, reason: reason.clone() },
            Effect::Record(Finish::Dead { attempt, kind: kind.as_str().into(), error: reason.clone(), progress }),
            Effect::Settled { outcome: JobOutcome::DeadLettered, reason: Some(reason) },
        ],
    }
}

/// The parking lot's `reason` of a wait.
fn park_reason(why: WaitReason) -> &'static str {
    match why {
        WaitReason::RateLimit => "rate_limit",
        WaitReason::Scheduled => "scheduled",
        WaitReason::Deferred => "deferred",
    }
}

/// A job of a paused campaign, before any claim: held in the parking lot until the campaign is
/// resumed (or cancelled), unrecorded, so it stays `queued` and costs the campaign no attempt.
pub(crate) fn paused(attempt: u32, now: Millis) -> Vec<Effect> {
    vec![Effect::Park { attempt, until: now, reason: "paused", held: true }]
}

/// A message that is not a valid job (or names a config this worker lacks).
pub(crate) fn invalid(reason: String) -> Vec<Effect> {
    vec![
        Effect::DeadLetter { kind: DeadKind::Invalid, reason: reason.clone() },
        Effect::Settled { outcome: JobOutcome::Invalid, reason: Some(reason) },
    ]
}

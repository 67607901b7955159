//! Jobs that differ only in their numbers share `SendSms` calls (up to 200 numbers per call).
//!
//! A campaign is thousands of jobs with one template, one signature and the same template params.
//! Sending each in its own call spends a request, a signature and a round trip per number, on our
//! side and the provider's. Here jobs with the same [`Shared`] part queue on one lane:
//!
//! * while the lane has fewer than [`CALLS_PER_LANE`] calls in flight, a job's numbers go out at
//!   once, so a lone job (a verification code) waits for nothing;
//! * otherwise they wait for the next call of the lane, which takes every waiting job that fits;
//! * unless a full call's worth (200 numbers) waits: that goes out at once, so a slow provider never
//!   caps a lane at [`CALLS_PER_LANE`] calls per round trip.
//!
//! Batches form only when calls are already busy, the way a database groups commits: no timer,
//! no added latency. A call never holds the same number twice (a second job for a number waits for
//! the next call), so every status in the answer belongs to exactly one job. Each job keeps its own
//! claim, progress, result and retries; it only shares the request.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::api::{Api, SendSmsRequest, SendStatus, match_number, request_id};
use crate::connectors::call::Failure;
use crate::connectors::tencent_cloud::error::ApiError;

/// Calls one lane may have in flight before jobs wait to share the next one.
pub(crate) const CALLS_PER_LANE: usize = 2;
/// `PhoneNumberSet` holds at most 200 numbers.
pub(crate) const MAX_NUMBERS: usize = 200;

/// Everything of a `SendSms` request but its numbers: jobs that agree on it can share a call.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Shared {
    pub sdk_app_id: String,
    pub template_id: String,
    pub sign_name: String,
    pub template_params: Vec<String>,
    pub session_context: Option<String>,
    pub extend_code: Option<String>,
    pub sender_id: Option<String>,
    /// The provider refuses a call mixing Chinese mainland and international numbers. (A job
    /// that mixes them itself is refused, shares or not, and is then sent alone.)
    pub mainland: bool,
}

/// What a call answered, for one of its jobs.
#[derive(Debug)]
pub(crate) enum Answer {
    /// The statuses of this job's numbers.
    Statuses(Vec<SendStatus>),
    /// The whole request failed. `shared_with_others`: other jobs' numbers were in the call.
    Error { error: ApiError, request_id: Option<String>, shared_with_others: bool },
}

/// What a call answered for one job, and when it was made.
#[derive(Debug)]
pub(crate) struct Sent {
    pub answer: Result<Answer, Failure>,
    /// Unix milliseconds just before the request went out: where a lost answer's receipts start.
    pub at_ms: i64,
}

struct Waiting {
    numbers: Vec<String>,
    reply: oneshot::Sender<Sent>,
}

#[derive(Default)]
struct Lane {
    calls: usize,
    waiting: VecDeque<Waiting>,
    /// The numbers of `waiting`, counted.
    numbers_waiting: usize,
}

impl Lane {
    fn push(&mut self, job: Waiting) {
        self.numbers_waiting += job.numbers.len();
        self.waiting.push_back(job);
    }

    /// Whether a new call should start now rather than wait for one in flight to end.
    fn needs_call(&self) -> bool {
        self.calls < CALLS_PER_LANE || self.numbers_waiting >= MAX_NUMBERS
    }

    /// The waiting jobs that fit in one call, oldest first: at most [`MAX_NUMBERS`] numbers, none
    /// twice. The oldest always fits (a job has 1–200 distinct numbers).
    fn next_batch(&mut self) -> Vec<Waiting> {
        let mut batch = Vec::new();
        let mut numbers: HashSet<String> = HashSet::new();
        let mut left = VecDeque::new();
        while let Some(job) = self.waiting.pop_front() {
            let fits = numbers.len() + job.numbers.len() <= MAX_NUMBERS
                && job.numbers.iter().all(|number| !numbers.contains(number));
            if fits {
                numbers.extend(job.numbers.iter().cloned());
                batch.push(job);
                if numbers.len() == MAX_NUMBERS {
                    break;
                }
            } else {
                left.push_back(job);
            }
        }
        left.append(&mut self.waiting);
        self.waiting = left;
        self.numbers_waiting -= numbers.len();
        batch
    }
}

/// The lanes of one config.
pub(crate) struct Calls {
    api: Arc<Api>,
    lanes: Mutex<HashMap<Shared, Lane>>,
}

impl std::fmt::Debug for Calls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Calls").field("api", &self.api).finish_non_exhaustive()
    }
}

impl Calls {
    pub(crate) fn new(api: Api) -> Arc<Self> {
        Arc::new(Calls { api: Arc::new(api), lanes: Mutex::new(HashMap::new()) })
    }

    pub(crate) fn api(&self) -> &Api {
        &self.api
    }

    /// Sends `numbers` (distinct) in the next call of their lane and returns what it answered for them.
    pub(crate) async fn send(self: &Arc<Self>, shared: Shared, numbers: Vec<String>) -> Sent {
        let (reply, answer) = oneshot::channel();
        let queued_at = chrono::Utc::now().timestamp_millis();
        let start = {
            let mut lanes = self.lanes.lock().expect("lanes lock");
            let lane = lanes.entry(shared.clone()).or_default();
            lane.push(Waiting { numbers, reply });
            lane.needs_call().then(|| {
                lane.calls += 1;
                lane.next_batch()
            })
        };
        if let Some(batch) = start {
            // Its own task: the call and the batches after it must not depend on this job's future.
            tokio::spawn(Arc::clone(self).run(shared, batch));
        }
        answer.await.unwrap_or_else(|_| Sent {
            answer: Err(Failure::Ambiguous {
                reason: "the SendSms call carrying this job stopped before its answer".into(),
            }),
            // The call may have gone out any time since the job queued: this is no later than that.
            at_ms: queued_at,
        })
    }

    /// Jobs waiting for a call, over all lanes.
    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        self.lanes.lock().expect("lanes lock").values().map(|lane| lane.waiting.len()).sum()
    }

    /// Sends `numbers` in a call of their own.
    pub(crate) async fn send_alone(&self, shared: &Shared, numbers: Vec<String>) -> Sent {
        let (reply, answer) = oneshot::channel();
        self.call(shared, vec![Waiting { numbers, reply }]).await;
        answer.await.expect("call replies to every job")
    }

    /// Calls for `batch`, then for whatever waits on the lane, until it is empty.
    async fn run(self: Arc<Self>, shared: Shared, mut batch: Vec<Waiting>) {
        loop {
            self.call(&shared, batch).await;
            let mut lanes = self.lanes.lock().expect("lanes lock");
            let lane = lanes.get_mut(&shared).expect("a lane lives while it has calls");
            if lane.waiting.is_empty() {
                lane.calls -= 1;
                if lane.calls == 0 {
                    lanes.remove(&shared);
                }
                return;
            }
            batch = lane.next_batch();
        }
    }

    /// One `SendSms` call for every job of `batch`; replies to each.
    async fn call(&self, shared: &Shared, batch: Vec<Waiting>) {
        let numbers: Vec<&str> = batch.iter().flat_map(|job| job.numbers.iter().map(String::as_str)).collect();
        let request = SendSmsRequest {
            phone_number_set: &numbers,
            sms_sdk_app_id: &shared.sdk_app_id,
            template_id: &shared.template_id,
            sign_name: &shared.sign_name,
            template_param_set: &shared.template_params,
            session_context: shared.session_context.as_deref(),
            extend_code: shared.extend_code.as_deref(),
            sender_id: shared.sender_id.as_deref(),
        };
        let body = serde_json::to_vec(&request).expect("a struct of strings serialises");
        let at_ms = chrono::Utc::now().timestamp_millis();
        let response = self.api.send(&body).await;
        let shared_with_others = batch.len() > 1;
        let replies: Vec<Result<Answer, Failure>> = match response {
            Err(failure) => batch.iter().map(|_| Err(failure.clone())).collect(),
            Ok(response) => match (response.error, response.send_status_set) {
                (Some(error), _) => batch
                    .iter()
                    .map(|_| {
                        let (error, request_id) = (error.clone(), response.request_id.clone());
                        Ok(Answer::Error { error, request_id, shared_with_others })
                    })
                    .collect(),
                (None, Some(statuses)) => split(&batch, &numbers, statuses).into_iter().map(Ok).collect(),
                (None, None) => {
                    let reason = format!(
                        "SendSms answered neither Error nor SendStatusSet{}",
                        request_id(response.request_id.as_deref())
                    );
                    batch.iter().map(|_| Err(Failure::Ambiguous { reason: reason.clone() })).collect()
                }
            },
        };
        for (job, reply) in batch.into_iter().zip(replies) {
            // A job that stopped waiting (its worker shutting down) finds its statuses in no record;
            // its claim's lease tells the next delivery that the outcome is unknown.
            let _ = job.reply.send(Sent { answer: reply, at_ms });
        }
    }
}

/// Each job's statuses: the status of a number goes to the job that listed it.
fn split(batch: &[Waiting], numbers: &[&str], statuses: Vec<SendStatus>) -> Vec<Answer> {
    let owner: HashMap<&str, usize> =
        batch.iter().enumerate().flat_map(|(i, job)| job.numbers.iter().map(move |n| (n.as_str(), i))).collect();
    let mut split: Vec<Vec<SendStatus>> = batch.iter().map(|_| Vec::new()).collect();
    for status in statuses {
        // A status for a number nobody sent has no job to go to; the jobs' numbers without a
        // status stay pending.
        if let Some(number) = match_number(&status.phone_number, numbers) {
            split[owner[number]].push(status);
        }
    }
    split.into_iter().map(Answer::Statuses).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(numbers: &[&str]) -> Waiting {
        let (reply, _) = oneshot::channel();
        Waiting { numbers: numbers.iter().map(|n| n.to_string()).collect(), reply }
    }

    fn numbers_of(batch: &[Waiting]) -> Vec<Vec<&str>> {
        batch.iter().map(|job| job.numbers.iter().map(String::as_str).collect()).collect()
    }

    #[test]
    fn a_batch_takes_the_oldest_jobs_that_fit_and_never_a_number_twice() {
        let mut lane = Lane::default();
        lane.push(waiting(&["+8613800000001"]));
        lane.push(waiting(&["+8613800000001", "+8613800000002"]));
        lane.push(waiting(&["+8613800000003"]));
        let batch = lane.next_batch();
        assert_eq!(numbers_of(&batch), vec![vec!["+8613800000001"], vec!["+8613800000003"]]);
        let rest: Vec<&[String]> = lane.waiting.iter().map(|job| job.numbers.as_slice()).collect();
        assert_eq!(rest, vec![&["+8613800000001".to_string(), "+8613800000002".to_string()][..]]);
        assert_eq!(lane.numbers_waiting, 2);
    }

    #[test]
    fn a_batch_holds_at_most_200_numbers_and_skips_a_job_that_would_overflow_it() {
        let mut lane = Lane::default();
        let numbers: Vec<String> = (0..300).map(|i| format!("+86139{i:08}")).collect();
        let refs: Vec<&str> = numbers.iter().map(String::as_str).collect();
        lane.push(waiting(&refs[..150]));
        lane.push(waiting(&refs[150..250]));
        lane.push(waiting(&refs[250..300]));
        let first = lane.next_batch();
        assert_eq!(first.iter().map(|job| job.numbers.len()).collect::<Vec<_>>(), vec![150, 50]);
        let second = lane.next_batch();
        assert_eq!(second.iter().map(|job| job.numbers.len()).collect::<Vec<_>>(), vec![100]);
        assert!(lane.waiting.is_empty());
        assert_eq!(lane.numbers_waiting, 0);
    }

    #[test]
    fn a_busy_lane_starts_another_call_only_for_a_full_one() {
        let mut lane = Lane { calls: CALLS_PER_LANE, ..Lane::default() };
        let numbers: Vec<String> = (0..MAX_NUMBERS).map(|i| format!("+86139{i:08}")).collect();
        let refs: Vec<&str> = numbers.iter().map(String::as_str).collect();
        lane.push(waiting(&refs[..MAX_NUMBERS - 1]));
        assert!(!lane.needs_call());
        lane.push(waiting(&refs[MAX_NUMBERS - 1..]));
        assert!(lane.needs_call());
        lane.calls = CALLS_PER_LANE - 1;
        lane.next_batch();
        assert!(lane.needs_call(), "a lane below its calls starts one for any job");
    }

    #[test]
    fn statuses_go_to_the_job_that_listed_the_number() {
        let batch = vec![waiting(&["+8613800000001", "+8613800000002"]), waiting(&["+8613800000003"])];
        let numbers = ["+8613800000001", "+8613800000002", "+8613800000003"];
        let status = |number: &str| SendStatus {
            phone_number: number.to_string(),
            code: "Ok".into(),
            message: None,
            serial_no: None,
            fee: None,
        };
        // The provider may answer in its own order and in its own form of the number.
        let statuses = vec![status("8613800000003"), status("+8613800000001"), status("+8613899999999")];
        let answers = split(&batch, &numbers, statuses);
        let phones: Vec<Vec<String>> = answers
            .iter()
            .map(|answer| match answer {
                Answer::Statuses(set) => set.iter().map(|s| s.phone_number.clone()).collect(),
                Answer::Error { .. } => panic!("statuses expected"),
            })
            .collect();
        assert_eq!(phones, vec![vec!["+8613800000001".to_string()], vec!["8613800000003".to_string()]]);
    }
}

//! Claims and finishes made at the same time share one transaction, so that a worker's hundreds
//! of jobs in flight cost a commit (and its WAL flush) per batch, not two per job.
//!
//! A call goes out at once while fewer than [`IN_FLIGHT`] batches are out (no timer: an idle store
//! adds no latency); calls made meanwhile queue and go together, up to [`BATCH_MAX`], when one
//! returns. A batch runs its calls one after the other in key order, so that two batches lock the
//! rows they share in the same order, each call exactly as it would run alone; a caller hears back
//! only once the transaction committed. If one call fails, the transaction is rolled back and every
//! call of the batch runs again in a transaction of its own: a failure stays its call's alone. A
//! connection lost or a server unreachable fails the whole batch at once.

use std::sync::Arc;

use deadpool_postgres::{GenericClient, Pool};

use super::pool::in_transaction;
use super::records::{claim, finish_key};
use crate::batching::{self, Batches};
use crate::model::{Claim, ClaimRequest, Finish, Millis, StoreError};

/// The most calls in one transaction: enough to spread a commit over many jobs, few enough that a
/// batch's row locks are held briefly.
const BATCH_MAX: usize = 64;
/// Batches out at once, each on a connection of the store's pool (which keeps some for the rest).
const IN_FLIGHT: usize = 8;

/// A call that shares transactions.
enum Call {
    Claim(ClaimRequest),
    Finish { key: String, finish: Finish, now: Millis },
}

impl Call {
    fn key(&self) -> &str {
        match self {
            Call::Claim(request) => &request.key,
            Call::Finish { key, .. } => key,
        }
    }
}

/// What a call did: a claim's answer, or a finish recorded.
enum Done {
    Claim(Claim),
    Finished,
}

type Waiting = batching::Waiting<Call, Done>;

/// The queue of a store's batched calls.
pub(super) struct Batcher(Batches<Call, Done>);

impl Batcher {
    pub(super) fn start(pool: Pool, namespace: Arc<str>) -> Batcher {
        Batcher(Batches::start("postgres batcher", BATCH_MAX, IN_FLIGHT, move |mut batch: Vec<Waiting>| {
            // Stable: the calls of one key keep the order they came in.
            batch.sort_by(|a, b| a.0.key().cmp(b.0.key()));
            let (pool, namespace) = (pool.clone(), Arc::clone(&namespace));
            async move { run(&pool, &namespace, batch).await }
        }))
    }

    pub(super) async fn claim(&self, request: ClaimRequest) -> Result<Claim, StoreError> {
        match self.0.call(Call::Claim(request)).await? {
            Done::Claim(claim) => Ok(claim),
            Done::Finished => Err(mixed_up()),
        }
    }

    pub(super) async fn finish(&self, key: String, finish: Finish, now: Millis) -> Result<(), StoreError> {
        match self.0.call(Call::Finish { key, finish, now }).await? {
            Done::Finished => Ok(()),
            Done::Claim(_) => Err(mixed_up()),
        }
    }
}

/// Runs `batch` in one transaction, or each call in its own when one of them fails.
async fn run(pool: &Pool, ns: &str, batch: Vec<Waiting>) {
    let together: Result<Vec<Done>, StoreError> = async {
        in_transaction!(pool, |tx| {
            let mut done = Vec::with_capacity(batch.len());
            for (call, _) in &batch {
                done.push(execute(&tx, ns, call).await?);
            }
            Ok(done)
        })
    }
    .await;
    match together {
        Ok(done) => {
            for ((_, reply), done) in batch.into_iter().zip(done) {
                // A caller that gave up waiting is no longer interested.
                let _ = reply.send(Ok(done));
            }
        }
        Err(e) if batch.len() == 1 || !may_be_one_calls(&e) => {
            // An error is not `Clone`: the first caller gets it, the others its text.
            let text = e.to_string();
            let mut batch = batch.into_iter();
            if let Some((_, reply)) = batch.next() {
                let _ = reply.send(Err(e));
            }
            for (_, reply) in batch {
                let _ = reply.send(Err(StoreError::Task(text.clone())));
            }
        }
        Err(_) => {
            // Rolled back: each call alone, in key order as before.
            for (call, reply) in batch {
                let alone: Result<Done, StoreError> =
                    async { in_transaction!(pool, |tx| execute(&tx, ns, &call).await) }.await;
                let _ = reply.send(alone);
            }
        }
    }
}

/// Whether a batch's failure may be one call's own (a statement the server refused, a corrupt
/// record), so that the calls run again one by one. A lost connection or an unreachable server
/// fails every call at once, as each would have failed alone, rather than once per call in turn.
fn may_be_one_calls(error: &StoreError) -> bool {
    match error {
        StoreError::Postgres(e) => e.code().is_some(),
        StoreError::Task(_) => false,
        _ => true,
    }
}

/// [`execute`] answers a call with what its kind does: a mix-up would be a bug here.
fn mixed_up() -> StoreError {
    StoreError::Task("the postgres batcher answered a call with another kind's answer".into())
}

async fn execute(tx: &impl GenericClient, ns: &str, call: &Call) -> Result<Done, StoreError> {
    match call {
        Call::Claim(request) => claim(tx, ns, request).await.map(Done::Claim),
        Call::Finish { key, finish, now } => finish_key(tx, ns, key, finish, *now).await.map(|()| Done::Finished),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_corrupt_record_is_one_calls_own_and_a_lost_pool_is_everyones() {
        assert!(may_be_one_calls(&StoreError::Corrupt { key: "k".into(), reason: "state \"bogus\"".into() }));
        assert!(!may_be_one_calls(&StoreError::Task("postgres pool: timed out".into())));
    }
}

//! Claims and finishes made at the same time share one transaction, so that a worker's hundreds
//! of jobs in flight cost a commit (and its WAL flush) per batch, not two per job.
//!
//! A call goes out at once while fewer than [`IN_FLIGHT`] batches are out (no timer: an idle store
//! adds no latency); calls made meanwhile queue and go together, up to [`BATCH_MAX`], when one
//! returns. A batch runs its calls one after the other in key order, so that two batches lock the
//! rows they share in the same order, each call exactly as it would run alone; a caller hears back
//! only once the transaction committed. If one call fails, the transaction is rolled back and every
//! call of the batch runs again in a transaction of its own: a failure stays its call's alone.

use std::sync::Arc;

use deadpool_postgres::{GenericClient, Pool};
use tokio::sync::{mpsc, oneshot};

use super::pool::in_transaction;
use super::records::{claim, finish_key};
use crate::batching::{self, take_batches};
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

type Waiting = batching::Waiting<Call, Result<Done, StoreError>>;

/// The queue of a store's batched calls; its task ends once the store (the queue's sender) is
/// dropped and the queued calls went out.
pub(super) struct Batcher {
    queue: mpsc::UnboundedSender<Waiting>,
}

impl Batcher {
    pub(super) fn start(pool: Pool, namespace: Arc<str>) -> Batcher {
        // Unbounded: every queued call has a caller awaiting it, so the callers bound the queue.
        let (queue, waiting) = mpsc::unbounded_channel();
        tokio::spawn(dispatch(waiting, pool, namespace));
        Batcher { queue }
    }

    pub(super) async fn claim(&self, request: ClaimRequest) -> Result<Claim, StoreError> {
        match self.call(Call::Claim(request)).await? {
            Done::Claim(claim) => Ok(claim),
            Done::Finished => Err(mixed_up()),
        }
    }

    pub(super) async fn finish(&self, key: String, finish: Finish, now: Millis) -> Result<(), StoreError> {
        match self.call(Call::Finish { key, finish, now }).await? {
            Done::Finished => Ok(()),
            Done::Claim(_) => Err(mixed_up()),
        }
    }

    async fn call(&self, call: Call) -> Result<Done, StoreError> {
        let stopped = || StoreError::Task("the postgres batcher stopped (its runtime shut down)".into());
        let (reply, answer) = oneshot::channel();
        self.queue.send((call, reply)).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn dispatch(waiting: mpsc::UnboundedReceiver<Waiting>, pool: Pool, namespace: Arc<str>) {
    take_batches(waiting, BATCH_MAX, IN_FLIGHT, |mut batch| {
        // Stable: the calls of one key keep the order they came in.
        batch.sort_by(|a, b| a.0.key().cmp(b.0.key()));
        let (pool, namespace) = (pool.clone(), Arc::clone(&namespace));
        async move { run(&pool, &namespace, batch).await }
    })
    .await;
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
        Err(e) if batch.len() == 1 => {
            let _ = batch.into_iter().next().expect("one call").1.send(Err(e));
        }
        Err(_) => {
            // Nothing of the batch was recorded: each call alone, in key order as before.
            for (call, reply) in batch {
                let alone: Result<Done, StoreError> =
                    async { in_transaction!(pool, |tx| execute(&tx, ns, &call).await) }.await;
                let _ = reply.send(alone);
            }
        }
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

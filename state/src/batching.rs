//! How the Redis and PostgreSQL stores coalesce concurrent calls into batches: a call goes out at
//! once while fewer than `in_flight` batches are out (no timer: an idle store adds no latency);
//! calls made meanwhile queue and go together, up to `max`, when one returns.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::model::StoreError;

/// A queued call and where its answer goes.
pub(crate) type Waiting<C, A> = (C, oneshot::Sender<Result<A, StoreError>>);

/// The queue of one kind of batched call; its task ends once the queue is dropped and the queued
/// calls went out.
pub(crate) struct Batches<C, A> {
    queue: mpsc::UnboundedSender<Waiting<C, A>>,
    /// What batches, for the error when its task is gone.
    what: &'static str,
}

impl<C: Send + 'static, A: Send + 'static> Batches<C, A> {
    /// Starts taking batches of up to `max` calls, and spawning `run` on each (which answers every
    /// call of it), at most `in_flight` at once. Needs a tokio runtime, whose end ends the task.
    pub(crate) fn start<F, Fut>(what: &'static str, max: usize, in_flight: usize, run: F) -> Self
    where
        F: FnMut(Vec<Waiting<C, A>>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        // Unbounded: every queued call has a caller awaiting it, so the callers bound the queue.
        let (queue, waiting) = mpsc::unbounded_channel();
        tokio::spawn(take_batches(waiting, max, in_flight, run));
        Batches { queue, what }
    }

    /// Queues `call` and waits for its answer.
    pub(crate) async fn call(&self, call: C) -> Result<A, StoreError> {
        let stopped = || StoreError::Task(format!("the {} stopped (its runtime shut down)", self.what));
        let (reply, answer) = oneshot::channel();
        self.queue.send((call, reply)).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn take_batches<C, A, F, Fut>(
    mut waiting: mpsc::UnboundedReceiver<Waiting<C, A>>,
    max: usize,
    in_flight: usize,
    mut run: F,
) where
    F: FnMut(Vec<Waiting<C, A>>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(in_flight));
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else { return };
        let Some(first) = waiting.recv().await else { return };
        let mut batch = vec![first];
        while batch.len() < max
            && let Ok(next) = waiting.try_recv()
        {
            batch.push(next);
        }
        // A caller that gave up before its call went out does not have it made.
        batch.retain(|(_, reply)| !reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        let work = run(batch);
        tokio::spawn(async move {
            work.await;
            drop(slot);
        });
    }
}

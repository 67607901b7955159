//! How the Redis and PostgreSQL stores coalesce concurrent calls into batches: a call goes out at
//! once while fewer than `in_flight` batches are out (no timer: an idle store adds no latency);
//! calls made meanwhile queue and go together, up to `max`, when one returns.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};

/// A queued call and where its answer goes.
pub(crate) type Waiting<C, A> = (C, oneshot::Sender<A>);

/// Takes the queued calls in batches of up to `max`, and spawns `run` on each, at most `in_flight`
/// at once; ends once every sender of `waiting` is dropped and the queued calls went out. A call
/// whose caller gave up before it went out is left out.
pub(crate) async fn take_batches<C, A, F, Fut>(
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

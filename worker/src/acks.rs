//! Acknowledgements, coalesced: one `basic.ack` with `multiple` for each run of settled deliveries.
//!
//! A quorum queue turns every ack into a Raft command, so acking one by one halves what the broker
//! can carry (`yizhan-bench --ack-every 1` shows it). A multiple ack for tag T also settles every
//! earlier tag of the channel, so it is sent only once every tag up to T is settled here; a settled
//! delivery stuck behind an unsettled one (a slow job, or a job of another lane still in the
//! consumer's buffer) is acked on its own after [`MAX_HOLD`], so that it does not hold a prefetch
//! slot for long.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lapin::Acker;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use tracing::warn;

/// How often settled deliveries are acknowledged.
pub const FLUSH_EVERY: Duration = Duration::from_millis(5);
/// The longest a settled delivery waits for the ones before it before it is acked on its own.
pub const MAX_HOLD: Duration = Duration::from_millis(50);

/// The acknowledgements of one consuming channel.
#[derive(Default)]
pub struct Acks {
    ledger: Mutex<Ledger<Acker>>,
}

/// A delivery as the ledger knows it: its channel generation and tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag {
    /// Counts channel recoveries ([`Acks::reset`]); a tag of an older generation is never acked.
    pub generation: u64,
    /// The broker's delivery tag, from 1 on each channel.
    pub tag: u64,
}

impl Acks {
    /// The tag of a delivery received now.
    pub fn tag(&self, delivery_tag: u64) -> Tag {
        Tag { generation: self.ledger.lock().expect("ack ledger").generation, tag: delivery_tag }
    }

    /// The channel failed and recovers: its tags start again at 1, and the deliveries of the old
    /// channel come again from the broker (the claims recognise them).
    pub fn reset(&self) {
        let mut ledger = self.ledger.lock().expect("ack ledger");
        let generation = ledger.generation + 1;
        *ledger = Ledger { generation, ..Ledger::default() };
    }

    /// The pipeline is done with this delivery: it will be acknowledged by the next flush.
    pub fn ack_later(&self, tag: Tag, acker: &Acker) {
        if !acker.usable() {
            // Its channel is gone: the broker redelivers the job, and the claim recognises it.
            return;
        }
        self.ledger.lock().expect("ack ledger").settle(tag, Some(acker.clone()), Instant::now());
    }

    /// Puts a delivery back on its queue now (it could not be settled).
    pub async fn requeue(&self, tag: Tag, acker: &Acker) {
        if let Err(e) = acker.nack(BasicNackOptions { requeue: true, ..Default::default() }).await {
            warn!(error = %e, "nack failed; the broker redelivers the job when the channel closes");
        }
        // Recorded only once the nack is sent: a later multiple ack must not cover it before.
        self.ledger.lock().expect("ack ledger").settle(tag, None, Instant::now());
    }

    /// Settled deliveries not acknowledged yet.
    pub fn pending(&self) -> usize {
        self.ledger.lock().expect("ack ledger").settled.values().filter(|(acker, _)| acker.is_some()).count()
    }

    /// Sends one multiple ack for the run of settled tags above the floor, and single acks for
    /// settled tags that have waited longer than [`MAX_HOLD`] behind an unsettled one.
    pub async fn flush(&self) {
        let (multiple, singles) = self.ledger.lock().expect("ack ledger").take(Instant::now(), MAX_HOLD);
        if let Some(acker) = multiple
            && let Err(e) = acker.ack(BasicAckOptions { multiple: true }).await
        {
            warn!(error = %e, "ack failed; the jobs will be redelivered and recognised");
        }
        for acker in singles {
            if let Err(e) = acker.ack(BasicAckOptions::default()).await {
                warn!(error = %e, "ack failed; the job will be redelivered and recognised");
            }
        }
    }
}

/// Which settled tags can be acknowledged, and how: the bookkeeping of [`Acks`], apart from lapin.
struct Ledger<A> {
    /// Bumped when the channel recovers; settlements of older generations are ignored.
    generation: u64,
    /// Every tag up to this one is settled and acknowledged (or nacked).
    floor: u64,
    /// Settled tags above the floor: the acker still to ack with (None when nacked or acked
    /// already), and since when.
    settled: BTreeMap<u64, (Option<A>, Instant)>,
}

impl<A> Default for Ledger<A> {
    fn default() -> Self {
        Ledger { generation: 0, floor: 0, settled: BTreeMap::new() }
    }
}

impl<A> Ledger<A> {
    fn settle(&mut self, tag: Tag, acker: Option<A>, now: Instant) {
        if tag.generation != self.generation {
            // A delivery of a channel that failed since: the broker sends it again.
            return;
        }
        if tag.tag <= self.floor {
            // Only a channel that started again at tag 1 without a reset can reuse a tag; what the
            // old channel left is redelivered, and ignoring this tag would leave it unacked.
            self.floor = 0;
            self.settled.clear();
        }
        self.settled.insert(tag.tag, (acker, now));
    }

    /// The acker of the highest tag of the settled run above the floor (to ack with `multiple`),
    /// and those of settled tags held longer than `max_hold` (to ack alone).
    fn take(&mut self, now: Instant, max_hold: Duration) -> (Option<A>, Vec<A>) {
        let mut multiple = None;
        while let Some(entry) = self.settled.first_entry() {
            if *entry.key() != self.floor + 1 {
                break;
            }
            let (tag, (acker, _)) = entry.remove_entry();
            self.floor = tag;
            if acker.is_some() {
                multiple = acker;
            }
        }
        let singles = self
            .settled
            .values_mut()
            .filter(|(acker, since)| acker.is_some() && now.duration_since(*since) >= max_hold)
            .filter_map(|(acker, _)| acker.take())
            .collect();
        (multiple, singles)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOLD: Duration = Duration::from_millis(50);

    /// Settles each tag of generation 0 at `at`, its own number standing for its acker.
    fn settle_all(ledger: &mut Ledger<u64>, tags: &[u64], at: Instant) {
        for &tag in tags {
            ledger.settle(Tag { generation: 0, tag }, Some(tag), at);
        }
    }

    #[test]
    fn a_settled_run_is_acked_once_at_its_end() {
        let mut ledger = Ledger::default();
        let now = Instant::now();
        settle_all(&mut ledger, &[2, 1, 3], now);
        assert_eq!(ledger.take(now, HOLD), (Some(3), vec![]));
        assert_eq!(ledger.take(now, HOLD), (None, vec![]), "nothing twice");
    }

    #[test]
    fn a_gap_holds_later_acks_until_it_is_settled_or_they_are_old() {
        let mut ledger = Ledger::default();
        let now = Instant::now();
        // 2 is in flight (or still in another lane's buffer): a multiple ack of 3 would settle it.
        settle_all(&mut ledger, &[1, 3, 4], now);
        assert_eq!(ledger.take(now, HOLD), (Some(1), vec![]));
        assert_eq!(ledger.take(now + HOLD, HOLD), (None, vec![3, 4]), "acked alone once held too long");
        settle_all(&mut ledger, &[2], now + HOLD);
        // 3 and 4 were acked already; 2 is the run's only ack.
        assert_eq!(ledger.take(now + HOLD, HOLD), (Some(2), vec![]));
        settle_all(&mut ledger, &[5], now + HOLD);
        assert_eq!(ledger.take(now + HOLD, HOLD), (Some(5), vec![]));
    }

    #[test]
    fn a_nacked_tag_joins_the_run_without_an_ack_of_its_own() {
        let mut ledger = Ledger::default();
        let now = Instant::now();
        ledger.settle(Tag { generation: 0, tag: 1 }, Some(1), now);
        ledger.settle(Tag { generation: 0, tag: 2 }, None, now);
        assert_eq!(ledger.take(now, HOLD), (Some(1), vec![]));
        ledger.settle(Tag { generation: 0, tag: 3 }, Some(3), now);
        assert_eq!(ledger.take(now, HOLD), (Some(3), vec![]));
    }

    #[test]
    fn a_tag_seen_again_without_a_reset_starts_the_run_again() {
        let mut ledger = Ledger::default();
        let now = Instant::now();
        let tag = |tag| Tag { generation: 0, tag };
        settle_all(&mut ledger, &[1, 2, 4], now);
        assert_eq!(ledger.take(now, HOLD), (Some(2), vec![]));
        // Tag 1 again: the channel started over; the old 4 must not join the new run.
        ledger.settle(tag(1), Some(101), now);
        ledger.settle(tag(2), Some(102), now);
        assert_eq!(ledger.take(now + HOLD, HOLD), (Some(102), vec![]));
    }

    #[test]
    fn a_recovered_channel_starts_again_at_tag_one() {
        let acks = Acks::default();
        let old = acks.tag(4);
        acks.reset();
        assert_eq!(acks.tag(1), Tag { generation: 1, tag: 1 });
        let mut ledger = Ledger { generation: 1, ..Ledger::default() };
        let now = Instant::now();
        // The old channel's 4 settles late: it must not join the new channel's run.
        ledger.settle(old, Some(4), now);
        let new = |tag| Tag { generation: 1, tag };
        ledger.settle(new(1), Some(101), now);
        ledger.settle(new(2), Some(102), now);
        ledger.settle(new(3), Some(103), now);
        ledger.settle(new(5), Some(105), now);
        assert_eq!(ledger.take(now, HOLD), (Some(103), vec![]));
        assert_eq!(ledger.take(now + HOLD, HOLD), (None, vec![105]));
    }
}

//! Campaign counters that follow their records' states. The store's connection has temporary
//! triggers (its own, not in the file) that hand each change of a campaign record's state to
//! [`Moves`]; a batch then adds the sums to `yizhan_campaign_counts` once per campaign, in the
//! transaction that made the changes, so the counters are exact whenever a reader can see them.
//!
//! Why not triggers that update the counters' row: each one made its statement keep a statement
//! journal and write that row, once per claim and once per finish, which cost a campaign's jobs a
//! tenth more worker CPU than jobs outside one. A trigger remains the single place a state change
//! is seen, so that no code path can forget to count one.

use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use rusqlite::Connection;
use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::ValueRef;

use crate::model::{RECORD_STATUSES, StoreError};

/// The function the triggers call: `(namespace, campaign, old state or NULL, new state, updated_at)`.
const MOVED: &str = "yizhan_campaign_moved";

/// Triggers of older versions, kept in the file, that updated the counters themselves: counting
/// here as well would count every change twice.
const OLD_TRIGGERS: &str = "
DROP TRIGGER IF EXISTS main.yizhan_keys_campaign_insert;
DROP TRIGGER IF EXISTS main.yizhan_keys_campaign_update;
";

const TRIGGERS: &str = "
CREATE TEMP TRIGGER IF NOT EXISTS yizhan_keys_campaign_insert AFTER INSERT ON main.yizhan_keys
WHEN NEW.campaign IS NOT NULL
BEGIN
    SELECT yizhan_campaign_moved(NEW.namespace, NEW.campaign, NULL, NEW.state, NEW.updated_at);
END;
CREATE TEMP TRIGGER IF NOT EXISTS yizhan_keys_campaign_update AFTER UPDATE OF state ON main.yizhan_keys
WHEN NEW.campaign IS NOT NULL AND OLD.state IS NOT NEW.state
BEGIN
    SELECT yizhan_campaign_moved(NEW.namespace, NEW.campaign, OLD.state, NEW.state, NEW.updated_at);
END;
";

/// Adds one campaign's sums to its counters.
static ADD: LazyLock<String> = LazyLock::new(|| {
    let columns: Vec<String> =
        RECORD_STATUSES.iter().enumerate().map(|(i, s)| format!("n_{s} = n_{s} + ?{}", i + 3)).collect();
    format!(
        "UPDATE yizhan_campaign_counts SET {}, updated_at = MAX(updated_at, ?{})
         WHERE namespace = ?1 AND id = ?2",
        columns.join(", "),
        RECORD_STATUSES.len() + 3
    )
});

/// The changes of campaign records' states not yet added to the counters, summed by campaign.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct Moves(Vec<CampaignSums>);

#[derive(Debug, Clone, PartialEq)]
struct CampaignSums {
    namespace: String,
    campaign: String,
    /// By [`RECORD_STATUSES`].
    counts: [i64; RECORD_STATUSES.len()],
    updated_at: i64,
}

impl Moves {
    fn moved(&mut self, namespace: &str, campaign: &str, old: Option<&str>, new: &str, updated_at: i64) {
        let index = |state: &str| RECORD_STATUSES.iter().position(|s| *s == state);
        let (old, new) = (old.and_then(index), index(new));
        if old.is_none() && new.is_none() {
            return;
        }
        // A batch holds few campaigns, most often one: a scan beats hashing two strings.
        let sums = match self.0.iter().position(|s| s.campaign == campaign && s.namespace == namespace) {
            Some(i) => &mut self.0[i],
            None => {
                self.0.push(CampaignSums {
                    namespace: namespace.to_string(),
                    campaign: campaign.to_string(),
                    counts: [0; RECORD_STATUSES.len()],
                    updated_at,
                });
                self.0.last_mut().expect("just pushed")
            }
        };
        if let Some(old) = old {
            sums.counts[old] -= 1;
        }
        if let Some(new) = new {
            sums.counts[new] += 1;
        }
        sums.updated_at = sums.updated_at.max(updated_at);
    }
}

/// The store connection's pending campaign changes (shared with its triggers' function).
#[derive(Debug, Clone)]
pub(super) struct Counting(Arc<Mutex<Moves>>);

impl Counting {
    /// Makes `conn` count its campaign records' state changes: the function, the temporary
    /// triggers, and the file's old counting triggers dropped.
    pub(super) fn install(conn: &Connection) -> Result<Counting, StoreError> {
        let moves = Arc::new(Mutex::new(Moves::default()));
        let shared = moves.clone();
        conn.create_scalar_function(
            MOVED,
            5,
            FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DIRECTONLY,
            move |ctx: &Context<'_>| {
                let text = |i: usize| -> rusqlite::Result<Option<&str>> {
                    match ctx.get_raw(i) {
                        ValueRef::Null => Ok(None),
                        value => Ok(Some(value.as_str()?)),
                    }
                };
                // It answers NULL: the triggers call it for its effect.
                let (Some(namespace), Some(campaign), Some(new)) = (text(0)?, text(1)?, text(3)?) else {
                    return Ok(rusqlite::types::Null);
                };
                let updated_at: i64 = ctx.get(4)?;
                let mut moves = shared.lock().map_err(|_| poisoned())?;
                moves.moved(namespace, campaign, text(2)?, new, updated_at);
                Ok(rusqlite::types::Null)
            },
        )?;
        conn.execute_batch(OLD_TRIGGERS)?;
        conn.execute_batch(TRIGGERS)?;
        Ok(Counting(moves))
    }

    fn moves(&self) -> MutexGuard<'_, Moves> {
        // The function never panics holding the lock; a poisoned lock still holds whole sums.
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The changes so far, to go back to if a request fails ([`Counting::restore`]).
    pub(super) fn mark(&self) -> Moves {
        self.moves().clone()
    }

    pub(super) fn restore(&self, mark: Moves) {
        *self.moves() = mark;
    }

    /// Forgets any changes not added (those of a pass that was rolled back).
    pub(super) fn forget(&self) {
        self.moves().0.clear();
    }

    /// Adds the pending sums to the counters, in `conn`'s open transaction, and forgets them.
    pub(super) fn add_to_counters(&self, conn: &Connection) -> Result<(), StoreError> {
        let sums = std::mem::take(&mut self.moves().0);
        if sums.is_empty() {
            return Ok(());
        }
        let mut add = conn.prepare_cached(&ADD)?;
        for sums in &sums {
            let mut values: Vec<&dyn rusqlite::ToSql> = vec![&sums.namespace, &sums.campaign];
            values.extend(sums.counts.iter().map(|n| n as &dyn rusqlite::ToSql));
            values.push(&sums.updated_at);
            add.execute(values.as_slice())?;
        }
        Ok(())
    }
}

fn poisoned() -> rusqlite::Error {
    rusqlite::Error::UserFunctionError("the campaign counting lock is poisoned".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_move_counts_out_of_the_old_state_and_into_the_new() {
        let mut moves = Moves::default();
        moves.moved("ns", "c1", None, "running", 5);
        moves.moved("ns", "c1", Some("running"), "succeeded", 7);
        moves.moved("ns", "c2", None, "running", 6);
        moves.moved("other", "c1", None, "cancelled", 1);
        let running = RECORD_STATUSES.iter().position(|s| *s == "running").unwrap();
        let succeeded = RECORD_STATUSES.iter().position(|s| *s == "succeeded").unwrap();
        let c1 = &moves.0[0];
        assert_eq!((c1.counts[running], c1.counts[succeeded], c1.updated_at), (0, 1, 7));
        assert_eq!(moves.0[1].counts[running], 1);
        assert_eq!(moves.0.len(), 3, "a campaign id counts apart in each namespace");
    }

    #[test]
    fn a_state_that_is_no_status_counts_nothing() {
        let mut moves = Moves::default();
        moves.moved("ns", "c1", None, "bogus", 5);
        assert_eq!(moves, Moves::default());
    }
}

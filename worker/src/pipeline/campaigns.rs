//! What each worker knows of the campaigns whose jobs it takes: their control (running, paused,
//! cancelled), read from the state store at most once a second per campaign, so that pausing or
//! cancelling a campaign is one write that every worker of the fleet sees within 2 s, at a cost
//! that does not grow with the campaign's size.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use uuid::Uuid;
use yizhan_state::{CampaignControl, StateStore, StoreError};

/// How long a campaign's control is trusted before it is read again.
pub(crate) const FRESH_FOR: Duration = Duration::from_secs(1);

/// The campaigns' controls as last read, by campaign id.
#[derive(Debug, Default)]
pub struct CampaignControls {
    known: Mutex<HashMap<Uuid, (CampaignControl, Instant)>>,
}

impl CampaignControls {
    /// The control of campaign `id`: cached for [`FRESH_FOR`], for good once cancelled (final).
    /// A campaign the store does not know (a job that names one of its own) runs.
    pub async fn control(&self, store: &dyn StateStore, id: Uuid) -> Result<CampaignControl, StoreError> {
        if let Some((control, read_at)) = self.known.lock().expect("campaign controls lock").get(&id).copied()
            && (control == CampaignControl::Cancelled || read_at.elapsed() < FRESH_FOR)
        {
            return Ok(control);
        }
        let control = store.campaign_controls(&[id]).await?.first().map_or(CampaignControl::Running, |(_, c)| *c);
        let mut known = self.known.lock().expect("campaign controls lock");
        // Forget campaigns no job asked about for a while, so the map stays the size of what runs.
        known.retain(|_, (_, read_at)| read_at.elapsed() < FRESH_FOR * 60);
        known.insert(id, (control, Instant::now()));
        Ok(control)
    }
}

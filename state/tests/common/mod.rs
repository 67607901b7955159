//! Helpers shared by the state store's test binaries (each uses some of them).
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;
use yizhan_state::{CampaignRecord, Claim, ClaimRequest, Millis, StateStore, now_millis};

pub(crate) const LEASE: Duration = Duration::from_secs(30);

/// Attempt 1 of job `job_id` under `key`, by `owner` at `now`.
pub(crate) fn request(key: &str, job_id: Uuid, owner: &str, now: Millis, campaign: Option<Uuid>) -> ClaimRequest {
    ClaimRequest {
        key: key.to_string(),
        job_id,
        attempt: 1,
        owner: owner.to_string(),
        now,
        lease: LEASE,
        replay: false,
        campaign,
    }
}

pub(crate) fn acquired() -> Claim {
    Claim::Acquired { progress: None, orphaned_attempt: None }
}

/// A campaign of `jobs` jobs, created in `store`.
pub(crate) async fn new_campaign(store: &dyn StateStore, jobs: u64) -> Uuid {
    let record = CampaignRecord {
        id: Uuid::now_v7(),
        tenant: "default".into(),
        key: format!("c-{}", Uuid::now_v7()),
        head: serde_json::json!({}),
        send_at: None,
        created_at: now_millis(),
    };
    let (campaign, _) = store.create_campaign(&record).await.unwrap();
    assert!(store.add_to_campaign(campaign.id, jobs).await.unwrap());
    campaign.id
}

/// `keys` claimed by three claimers each, all at once, at `now` in `campaign`: asserts one claimer
/// per key acquires it and the other two find it busy, and the campaign counts every key running.
/// Returns each key's winner.
pub(crate) async fn claim_each_key_three_times_at_once<S: StateStore + 'static>(
    store: &Arc<S>,
    keys: &[(String, Uuid)],
    now: Millis,
    campaign: Uuid,
) -> Vec<String> {
    let mut claims = Vec::new();
    for claimer in 0..3 {
        for (index, (key, job)) in keys.iter().enumerate() {
            let (store, request) = (Arc::clone(store), request(key, *job, &format!("w{claimer}"), now, Some(campaign)));
            claims.push(tokio::spawn(async move { (index, request.owner.clone(), store.claim(&request).await) }));
        }
    }
    let mut winners: Vec<Vec<String>> = vec![Vec::new(); keys.len()];
    let mut busy = vec![0; keys.len()];
    for claim in claims {
        let (index, owner, answer) = claim.await.unwrap();
        match answer.unwrap() {
            answer if answer == acquired() => winners[index].push(owner),
            Claim::Busy { retry_in } => {
                assert_eq!(retry_in, LEASE);
                busy[index] += 1;
            }
            other => panic!("key {index}: unexpected claim answer {other:?}"),
        }
    }
    for (index, owners) in winners.iter().enumerate() {
        assert_eq!((owners.len(), busy[index]), (1, 2), "key {index}: winners {owners:?}");
    }
    let (_, status) = store.campaign(campaign).await.unwrap().unwrap();
    assert_eq!((status.counts["running"], status.counts["queued"]), (keys.len() as u64, 0));
    winners.into_iter().map(|mut owners| owners.remove(0)).collect()
}

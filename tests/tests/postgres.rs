//! The pipeline end to end with `YIZHAN_STATE=postgres://…` (issue 20): the real worker and
//! producer, the broker and a PostgreSQL database of the test's own (created and dropped by the
//! harness). The campaign is recorded as the API records one, and its jobs carry its id.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::json;
use uuid::Uuid;
use yizhan_sandbox::SandboxConfig;
use yizhan_schemas::Job;
use yizhan_state::{CampaignRecord, StateStore, now_millis};
use yizhan_tests::{Harness, Store, WAIT, number, sms_job};

/// A campaign recorded as the producer records one, with `jobs` jobs.
async fn campaign(store: &Arc<dyn StateStore>, jobs: u64) -> Uuid {
    let record = CampaignRecord {
        id: Uuid::now_v7(),
        tenant: "default".into(),
        key: format!("pg-spring-{}", Uuid::now_v7()),
        head: json!({"name": "postgres notice"}),
        send_at: None,
        created_at: now_millis(),
    };
    let (record, _) = store.create_campaign(&record).await.unwrap();
    assert!(store.add_to_campaign(record.id, jobs).await.unwrap());
    record.id
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_go_once_duplicates_are_refused_and_a_campaign_counts_exactly() {
    let h = Harness::start("pg-e2e", Store::Postgres, SandboxConfig::default_accounts(), "").await;
    assert!(h.state_url.starts_with("postgres://"), "{}", h.state_url);
    let worker = h.spawn_worker(&["--concurrency", "32"]).await;

    // 100 one-number jobs, and one idempotency key submitted three times.
    let mut jobs: Vec<_> = (0..100).map(|i| sms_job(&[&number(i)], None)).collect();
    let key = format!("{}-otp", h.prefix);
    for _ in 0..3 {
        jobs.push(sms_job(&[&number(500)], Some(&key)));
    }
    let ids = h.submit(&jobs).await;
    assert_eq!(ids.len(), 103);
    yizhan_tests::eventually("the 103 jobs settled", WAIT, || async {
        worker.jobs_total("succeeded").await + worker.jobs_total("duplicate").await == 103
    })
    .await;
    assert_eq!(worker.jobs_total("succeeded").await, 101);
    assert_eq!(worker.jobs_total("duplicate").await, 2, "the key's two copies are refused");
    let mut per_number: HashMap<String, usize> = HashMap::new();
    for sms in h.sandbox().sent_sms() {
        *per_number.entry(sms.phone).or_default() += 1;
    }
    assert_eq!(per_number.len(), 101);
    assert!(per_number.values().all(|&n| n == 1), "a number got more than one SMS: {per_number:?}");

    // The records are in PostgreSQL: a copy's status names the job it duplicates.
    let store = h.store().await;
    let mut originals = Vec::new();
    for id in &ids[100..] {
        let status = store.status(*id).await.unwrap().expect("a copy has a status");
        assert_eq!(status.status, "succeeded", "{status:?}");
        originals.push(status.duplicate_of.unwrap_or(*id));
    }
    originals.dedup();
    assert_eq!(originals.len(), 1, "all three copies answer for one job: {originals:?}");

    // A campaign of 300 numbers, 5 of them submitted twice: every count exact, each number once.
    let id = campaign(&store, 305).await;
    let mut jobs: Vec<_> = (1000..1300)
        .map(|i| {
            let mut job = sms_job(&[&number(i)], Some(&format!("{}-spring-{i}", h.prefix)));
            job.campaign = Some(id);
            job
        })
        .collect();
    let again: Vec<_> = jobs[..5].iter().map(|job| Job { id: Uuid::now_v7(), ..job.clone() }).collect();
    jobs.extend(again);
    h.submit(&jobs).await;
    let done = |status: &yizhan_state::CampaignStatus| status.status == "done";
    yizhan_tests::eventually("the campaign is done", WAIT, || {
        let store = store.clone();
        async move { store.campaign(id).await.unwrap().is_some_and(|(_, status)| done(&status)) }
    })
    .await;
    let (_, status) = store.campaign(id).await.unwrap().unwrap();
    assert_eq!(status.total, 305, "{status:?}");
    assert_eq!(status.counts["succeeded"], 300, "{status:?}");
    assert_eq!(status.counts["duplicate"], 5, "{status:?}");
    for other in ["queued", "running", "retrying", "dead", "cancelled", "capped", "scheduled", "deferred"] {
        assert_eq!(status.counts[other], 0, "{other}: {status:?}");
    }
    let sent = h.sandbox().sent_sms();
    for i in 1000..1300 {
        assert_eq!(sent.iter().filter(|s| s.phone == number(i)).count(), 1, "{}", number(i));
    }
    assert_eq!(sent.len(), 101 + 300);
    assert!(h.sandbox().rejected().is_empty(), "{:?}", h.sandbox().rejected());
    drop(worker);
}

//! Tencent SMS through the whole pipeline: producer → RabbitMQ → worker → sandbox.

use std::collections::HashMap;
use std::time::Duration;

use yizhan_sandbox::{Fault, FaultEffect, LostAnswer, Provider, SandboxConfig};
use yizhan_tests::{Harness, Store, WAIT, number, sms_job};

#[tokio::test(flavor = "multi_thread")]
async fn one_sms_job_is_sent_once_and_recorded() {
    let h = Harness::start("sms-one", Store::Sqlite, SandboxConfig::default_accounts(), "").await;
    let worker = h.spawn_worker(&[]).await;
    let ids = h.submit(&[sms_job(&["+8613800000001", "+8613800000002"], None)]).await;
    h.sandbox().wait_for_sms(2, WAIT).await.unwrap();
    let store = h.store().await;
    let id = ids[0];
    yizhan_tests::eventually("job recorded as succeeded", WAIT, || {
        let store = store.clone();
        async move { store.status(id).await.unwrap().is_some_and(|s| s.status == "succeeded") }
    })
    .await;
    let status = store.status(ids[0]).await.unwrap().unwrap();
    let numbers = status.result.unwrap()["numbers"].as_array().unwrap().clone();
    assert_eq!(numbers.len(), 2);
    assert!(numbers.iter().all(|n| n["code"] == "Ok"));
    assert_eq!(worker.jobs_total("succeeded").await, 1);
    assert!(h.sandbox().rejected().is_empty(), "every request verified: {:?}", h.sandbox().rejected());
    drop(worker);
}

/// The acceptance scenario: 250 SMS jobs; some numbers throttled twice
/// (`RequestLimitExceeded`, then `InternalError.Timeout`, then success), some answered once by HTTP
/// 500, some rejected permanently in `SendStatusSet`, and 10 idempotency keys submitted three times
/// each. Every number gets exactly one SMS; the permanent ones are dead-lettered as `permanent`;
/// every request's signature verified.
#[tokio::test(flavor = "multi_thread")]
async fn mixed_failures_end_with_exactly_one_sms_per_number() {
    mixed_failures("sms-mixed", Store::Redis).await;
}

/// The same with the records in PostgreSQL (issue 20's acceptance).
#[tokio::test(flavor = "multi_thread")]
async fn mixed_failures_with_postgres_end_with_exactly_one_sms_per_number() {
    mixed_failures("sms-mixed-pg", Store::Postgres).await;
}

async fn mixed_failures(test: &str, store: Store) {
    let h = Harness::start(test, store, SandboxConfig::default_accounts(), "").await;
    let sandbox = h.sandbox();
    let throttled: Vec<String> = (0..10).map(number).collect();
    let http_500: Vec<String> = (10..20).map(number).collect();
    let permanent: Vec<String> = (20..25).map(number).collect();
    for n in &throttled {
        sandbox.push_fault(Fault::tencent_error("RequestLimitExceeded").for_phone(n)).unwrap();
        sandbox.push_fault(Fault::tencent_number_status(n, "InternalError.Timeout")).unwrap();
    }
    for n in &http_500 {
        sandbox.push_fault(Fault::http_status(Provider::Tencent, 500).for_phone(n)).unwrap();
    }
    for n in &permanent {
        sandbox.push_fault(Fault::tencent_number_status(n, "FailedOperation.PhoneNumberInBlacklist").always()).unwrap();
    }

    // 220 distinct one-number jobs (25 with faults) + 10 keys × 3 copies = 250 jobs.
    let mut jobs: Vec<_> = (0..220).map(|i| sms_job(&[&number(i)], None)).collect();
    for k in 0..10 {
        let key = format!("{}-otp-{k}", h.prefix);
        for _ in 0..3 {
            jobs.push(sms_job(&[&number(1000 + k)], Some(&key)));
        }
    }
    assert_eq!(jobs.len(), 250);
    let worker = h.spawn_worker(&["--concurrency", "32"]).await;
    h.submit(&jobs).await;

    let expected_sent = 220 - permanent.len() + 10;
    if let Err(e) = sandbox.wait_for_sms(expected_sent, WAIT).await {
        panic!("{e}; rejected: {:?}; worker log:\n{}", sandbox.rejected(), worker.log_text());
    }
    let dead = h.take_dead(permanent.len(), WAIT).await;
    let mut dead_numbers: Vec<String> =
        dead.iter().map(|d| d.job()["params"]["phone_numbers"][0].as_str().unwrap().to_string()).collect();
    dead_numbers.sort();
    assert_eq!(dead_numbers, permanent);
    assert!(
        dead.iter().all(|d| d.kind == "permanent" && d.error.contains("FailedOperation.PhoneNumberInBlacklist")),
        "{dead:?}"
    );

    // Let every job settle, then count: exactly one SMS per number that can receive one.
    yizhan_tests::eventually("all 250 jobs settled", WAIT, || async {
        let m = worker.jobs_total("succeeded").await
            + worker.jobs_total("duplicate").await
            + worker.jobs_total("dead_lettered").await;
        m == 250
    })
    .await;
    let mut per_number: HashMap<String, usize> = HashMap::new();
    for sms in sandbox.sent_sms() {
        *per_number.entry(sms.phone.clone()).or_default() += 1;
    }
    assert_eq!(per_number.len(), expected_sent);
    assert!(per_number.values().all(|&c| c == 1), "a number got more than one SMS");
    assert!(permanent.iter().all(|n| !per_number.contains_key(n)));
    assert!(
        sandbox.rejected().iter().all(|(_, code)| code != "AuthFailure.SignatureFailure"),
        "{:?}",
        sandbox.rejected()
    );
    assert!(sandbox.rejected().is_empty(), "{:?}", sandbox.rejected());
    assert_eq!(worker.jobs_total("duplicate").await, 20);
    assert_eq!(worker.jobs_total("dead_lettered").await, 5);
    assert_eq!(worker.jobs_total("succeeded").await, 225);
    assert!(worker.jobs_total("retried").await >= 30, "10 throttled twice + 10 HTTP 500 once");
    drop(worker);
}

/// Issue 3: one job of 200 numbers, 3 failing retryably once and 2 permanently: the 195 are sent
/// once, the 3 once more on the retry (and only they), and the job records all 200 codes.
#[tokio::test(flavor = "multi_thread")]
async fn a_200_number_job_retries_only_the_retryable_numbers() {
    let h = Harness::start("sms-200", Store::Sqlite, SandboxConfig::default_accounts(), "").await;
    let sandbox = h.sandbox();
    let numbers: Vec<String> = (0..200).map(number).collect();
    for n in &numbers[0..3] {
        sandbox.push_fault(Fault::tencent_number_status(n, "InternalError.Timeout")).unwrap();
    }
    for n in &numbers[3..5] {
        sandbox.push_fault(Fault::tencent_number_status(n, "FailedOperation.PhoneNumberInBlacklist").always()).unwrap();
    }
    let refs: Vec<&str> = numbers.iter().map(String::as_str).collect();
    let _worker = h.spawn_worker(&[]).await;
    let id = h.submit(&[sms_job(&refs, None)]).await[0];
    let store = h.store().await;
    yizhan_tests::eventually("the job succeeded", WAIT, || {
        let store = store.clone();
        async move { store.status(id).await.unwrap().is_some_and(|s| s.status == "succeeded") }
    })
    .await;

    let requests = sandbox.requests_for(Provider::Tencent);
    assert_eq!(requests.len(), 2, "one call, then one retry");
    let retried: Vec<String> =
        serde_json::from_slice::<serde_json::Value>(&requests[1].body).unwrap()["PhoneNumberSet"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap().to_string())
            .collect();
    assert_eq!(retried, numbers[0..3], "the retry carries only the retryable numbers");
    let mut per_number: HashMap<String, usize> = HashMap::new();
    for sms in sandbox.sent_sms() {
        *per_number.entry(sms.phone).or_default() += 1;
    }
    assert_eq!(per_number.len(), 198);
    assert!(per_number.values().all(|&c| c == 1), "no number got two SMS");

    let status = store.status(id).await.unwrap().unwrap();
    let codes = status.result.unwrap()["numbers"].as_array().unwrap().clone();
    assert_eq!(codes.len(), 200, "the job records all 200 codes");
    assert_eq!(codes.iter().filter(|n| n["code"] == "Ok").count(), 198);
    assert_eq!(codes.iter().filter(|n| n["code"] == "FailedOperation.PhoneNumberInBlacklist").count(), 2);
    assert!(codes.iter().all(|n| n["phone_number"].is_string()));
}

/// A campaign's jobs share `SendSms` calls: while the provider holds the first two calls (500 ms),
/// the other jobs wait and go out together. Each job still records its own number's status, and
/// every number gets exactly one SMS.
#[tokio::test(flavor = "multi_thread")]
async fn a_campaign_shares_calls_and_each_job_records_its_own_number() {
    let h = Harness::start("sms-shared", Store::Sqlite, SandboxConfig::default_accounts(), "").await;
    let sandbox = h.sandbox();
    sandbox.push_fault(Fault::delay(Provider::Tencent, Duration::from_millis(500)).times(2)).unwrap();
    let jobs: Vec<_> = (0..100).map(|i| sms_job(&[&number(i)], None)).collect();
    let worker = h.spawn_worker(&["--concurrency", "128"]).await;
    let ids = h.submit(&jobs).await;
    sandbox.wait_for_sms(100, WAIT).await.unwrap();
    yizhan_tests::eventually("all 100 jobs succeeded", WAIT, || async { worker.jobs_total("succeeded").await == 100 })
        .await;

    let calls = sandbox.requests_for(Provider::Tencent).len();
    assert!(calls <= 10, "100 jobs of one campaign took {calls} calls");
    let serials: HashMap<String, String> = sandbox.sent_sms().into_iter().map(|s| (s.phone, s.serial_no)).collect();
    assert_eq!(serials.len(), 100, "one SMS per number");
    let store = h.store().await;
    for (i, id) in ids.iter().enumerate() {
        let status = store.status(*id).await.unwrap().unwrap();
        let numbers = status.result.unwrap()["numbers"].as_array().unwrap().clone();
        assert_eq!(numbers.len(), 1, "job {i} records only its own number");
        assert_eq!(numbers[0]["phone_number"], number(i));
        assert_eq!(numbers[0]["code"], "Ok");
        assert_eq!(numbers[0]["serial_no"], serials[&number(i)], "job {i} has its own number's serial");
    }
    assert!(sandbox.rejected().is_empty(), "{:?}", sandbox.rejected());
    drop(worker);
}

/// Issue 15, item 4: 250 jobs of one campaign share calls; three shared calls are lost after the
/// provider sent part of them (HTTP 500, `InternalError.Timeout`, a dropped connection). The
/// worker asks for receipts before sending any of those numbers again: every number gets exactly
/// one SMS and every job succeeds. (The harness config sets `status_settle = "1s"`; the sandbox's
/// receipts have no lag.)
#[tokio::test(flavor = "multi_thread")]
async fn lost_shared_calls_never_text_a_number_twice() {
    let h = Harness::start("sms-lost", Store::Redis, SandboxConfig::default_accounts(), "").await;
    let sandbox = h.sandbox();
    // A slow provider keeps the lane's calls busy, so the jobs behind them share calls.
    sandbox
        .push_fault(Fault::delay(Provider::Tencent, Duration::from_millis(100)).for_action("SendSms").always())
        .unwrap();
    let lost = [
        (number(60), Fault::tencent_partial_send(5, LostAnswer::HttpStatus { status: 500 })),
        (
            number(140),
            Fault::tencent_partial_send(7, LostAnswer::TencentError { code: "InternalError.Timeout".into() }),
        ),
        (number(220), Fault::tencent_partial_send(3, LostAnswer::Drop)),
    ];
    for (phone, fault) in &lost {
        sandbox.push_fault(fault.clone().for_phone(phone)).unwrap();
    }
    let jobs: Vec<_> = (0..250).map(|i| sms_job(&[&number(i)], None)).collect();
    let worker = h.spawn_worker(&["--concurrency", "128"]).await;
    h.submit(&jobs).await;

    yizhan_tests::eventually("all 250 jobs succeeded", WAIT, || async { worker.jobs_total("succeeded").await == 250 })
        .await;
    let partial_left =
        sandbox.pending_faults().iter().filter(|f| matches!(f.effect, FaultEffect::TencentPartialSend { .. })).count();
    assert_eq!(partial_left, 0, "every lost answer happened");
    let mut per_number: HashMap<String, usize> = HashMap::new();
    for sms in sandbox.sent_sms() {
        *per_number.entry(sms.phone.clone()).or_default() += 1;
    }
    let twice: Vec<_> = per_number.iter().filter(|(_, count)| **count > 1).collect();
    assert!(twice.is_empty(), "numbers texted twice: {twice:?}");
    assert_eq!(per_number.len(), 250, "every number got its SMS");

    let requests = sandbox.requests_for(Provider::Tencent);
    let action = |r: &yizhan_sandbox::RecordedRequest| r.header("x-tc-action").unwrap_or_default().to_string();
    let numbers_of = |r: &yizhan_sandbox::RecordedRequest| -> Vec<String> {
        serde_json::from_value(r.body_json().unwrap()["PhoneNumberSet"].clone()).unwrap()
    };
    let mut unsent_in_lost_calls = 0;
    for ((phone, _), sent) in lost.iter().zip([5, 7, 3]) {
        let call = requests.iter().find(|r| action(r) == "SendSms" && numbers_of(r).contains(phone)).unwrap();
        let carried = numbers_of(call).len();
        assert!(carried > 1, "the lost call for {phone} was shared: {:?}", numbers_of(call));
        unsent_in_lost_calls += carried.saturating_sub(sent);
    }
    // Both paths ran: numbers found sent by their receipts, and numbers sent again after the settle time.
    assert!(unsent_in_lost_calls > 0, "some numbers of the lost calls had not gone out");
    let queries = requests.iter().filter(|r| action(r) == "PullSmsSendStatusByPhoneNumber").count();
    assert!(queries > 0, "the lost numbers were asked about");
    assert!(sandbox.rejected().is_empty(), "every request valid: {:?}", sandbox.rejected());
    drop(worker);
}

//! Scale-out: workers sharing the broker and the state store (Redis) split a backlog between
//! them. Against a provider answering every request after 50 ms, one worker at concurrency 8
//! settles ~160 jobs/s — bound by the provider's latency, not by CPU — and three such workers drain
//! the same backlog about three times faster, every job executed exactly once.
//!
//! The figures are printed; the assertion on the speed-up is deliberately loose (≥ 2×) because the
//! two cores of a test machine are shared with the broker, Redis, the sandbox and other tests.

use std::time::{Duration, Instant};

use yizhan_sandbox::{Provider, SandboxConfig};
use yizhan_tests::{Harness, LONG_WAIT, Store, Worker, number, sms_job};

/// Jobs in each backlog.
const JOBS: usize = 300;
/// `--concurrency` of every worker.
const CONCURRENCY: &str = "8";
/// What the fake provider takes to answer each request.
const LATENCY: Duration = Duration::from_millis(50);

/// Queues `JOBS` SMS jobs (numbers `first..first + JOBS`) with no worker running, then starts
/// `workers` workers at once and times the drain from the first SMS the provider accepted to the
/// last (process start-up is not part of it). Stops the workers (they drain and exit 0) and returns
/// the time and how many jobs each worker settled.
async fn drain(h: &Harness, workers: usize, first: usize) -> (Duration, Vec<u64>) {
    let already = h.sandbox().stats().sms_sent as usize;
    let jobs: Vec<_> = (first..first + JOBS).map(|i| sms_job(&[&number(i)], None)).collect();
    // Every job on one lane (normal).
    assert_eq!(h.submit(&jobs).await.len(), JOBS);
    assert_eq!(h.queue_depth(&h.names().lane(yizhan_schemas::Priority::Normal)).await as usize, JOBS);

    let args = ["--concurrency", CONCURRENCY];
    let mut fleet: Vec<Worker> = futures::future::join_all((0..workers).map(|_| h.spawn_worker(&args))).await;
    h.sandbox().wait_for_sms(already + 1, LONG_WAIT).await.unwrap();
    let started = Instant::now();
    h.sandbox().wait_for_sms(already + JOBS, LONG_WAIT).await.unwrap();
    let elapsed = started.elapsed();

    let mut settled = Vec::new();
    yizhan_tests::eventually("every job recorded as settled", LONG_WAIT, || async {
        let mut total = 0;
        for worker in &fleet {
            total += worker.jobs_total("succeeded").await;
        }
        total as usize == JOBS
    })
    .await;
    for worker in &fleet {
        settled.push(worker.jobs_total("succeeded").await);
        assert_eq!(worker.jobs_total("duplicate").await, 0, "no job delivered twice");
        assert_eq!(worker.jobs_total("retried").await, 0, "no job retried");
    }
    for worker in &mut fleet {
        assert_eq!(worker.signal_and_wait("TERM"), Some(0), "the worker drains and exits 0: {}", worker.log_text());
    }
    (elapsed, settled)
}

#[tokio::test(flavor = "multi_thread")]
async fn three_workers_drain_a_backlog_about_three_times_faster_each_job_once() {
    let h = Harness::start("scale", Store::Redis, SandboxConfig::default_accounts(), "").await;
    h.sandbox().set_delay(Provider::Tencent, LATENCY);

    let (one, one_settled) = drain(&h, 1, 0).await;
    let (three, three_settled) = drain(&h, 3, JOBS).await;

    let rate = |d: Duration| JOBS as f64 / d.as_secs_f64();
    let speedup = one.as_secs_f64() / three.as_secs_f64();
    println!(
        "scale-out, {JOBS} jobs, provider latency {LATENCY:?}, concurrency {CONCURRENCY}: \
         1 worker {one:.2?} ({:.0} jobs/s, settled {one_settled:?}); \
         3 workers {three:.2?} ({:.0} jobs/s, settled {three_settled:?}); speed-up {speedup:.2}×",
        rate(one),
        rate(three),
    );

    // Every number got exactly one SMS: 2 × JOBS jobs, each executed once, none lost.
    let sandbox = h.sandbox();
    assert_eq!(sandbox.sent_sms().len(), 2 * JOBS);
    for i in 0..2 * JOBS {
        assert_eq!(sandbox.sms_count_for(&number(i)), 1, "number {i}");
    }
    assert!(sandbox.rejected().is_empty(), "{:?}", sandbox.rejected());
    // The three shared the backlog.
    assert_eq!(three_settled.len(), 3);
    assert!(three_settled.iter().all(|&n| n > 0), "every worker took part: {three_settled:?}");
    // Latency-bound: one worker is near concurrency / latency (160 jobs/s), far from a CPU limit...
    assert!(rate(one) > 40.0, "one worker: {:.0} jobs/s", rate(one));
    // ...so three are close to three times faster (loose: shared cores, other tests).
    assert!(speedup >= 2.0, "three workers only {speedup:.2}× faster ({one:?} vs {three:?})");
}

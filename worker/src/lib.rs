//! yizhan's worker: takes connector-action jobs from RabbitMQ and executes them.
//!
//! [`run`] connects, declares the topology, consumes the three lanes (`high` first; within a lane
//! the tenants' queues in turn, see `lanes`) with bounded concurrency, hands each delivery to the
//! [`pipeline::Pipeline`], renews the leases of the jobs it holds, serves metrics and health, and
//! on shutdown stops consuming, finishes what is in flight and returns.

pub mod acks;
pub mod callbacks;
pub mod caps;
pub mod config;
pub mod connectors;
mod events;
pub mod http;
mod lanes;
pub mod metrics;
pub mod pipeline;
pub mod ratelimit;
pub mod receipts;
mod reload;
pub mod timerules;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::options::BasicQosOptions;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};
use yizhan_broker::{Publisher, Settings, Topology};
use yizhan_state::redact;

use crate::acks::Acks;
use crate::config::Config;
use crate::lanes::{Event, Lanes};
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::ratelimit::{Limiter, LocalLimiter, RedisLimiter};
pub use crate::reload::ListenError;

/// Worker-only settings, next to the shared [`Settings`].
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerSettings {
    /// Metrics and health address (`/metrics`, `/healthz`, `/readyz`).
    #[arg(long, env = "YIZHAN_METRICS_ADDR", default_value = "127.0.0.1:9464")]
    pub metrics_addr: String,
    /// Jobs executed at once by this process.
    #[arg(long, env = "YIZHAN_CONCURRENCY", default_value_t = 64)]
    pub concurrency: usize,
    /// Unacknowledged deliveries the broker may push per lane queue (default: the concurrency plus
    /// a quarter, shared by a lane's shards).
    #[arg(long, env = "YIZHAN_PREFETCH")]
    pub prefetch: Option<u16>,
    /// Lease of a claim; a worker silent for this long is taken for dead and its jobs ambiguous.
    #[arg(long, env = "YIZHAN_LEASE", default_value = "30s", value_parser = humantime::parse_duration)]
    pub lease: Duration,
    /// Completion callbacks POSTed at once by this process.
    #[arg(long, env = "YIZHAN_CALLBACK_CONCURRENCY", default_value_t = 32)]
    pub callback_concurrency: u16,
}

/// Why a worker could not start (once running, failures are retried rather than returned).
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The connector config file is unreadable or invalid.
    #[error("config: {0}")]
    Config(#[from] config::ConfigError),
    /// The reload listener (SIGHUP and the control queue) could not start.
    #[error("reload: {0}")]
    Reload(#[from] reload::ListenError),
    /// The state store or its parking lot cannot be opened.
    #[error("state store: {0}")]
    Store(#[from] yizhan_state::StoreError),
    /// The broker connection or a channel could not be opened.
    #[error("broker at {url}: {source}")]
    Broker {
        /// The broker URL with its password redacted.
        url: String,
        /// lapin's error.
        source: lapin::Error,
    },
    /// Declaring the exchanges and queues failed.
    #[error("{0}")]
    Topology(#[from] yizhan_broker::TopologyError),
    /// The shared rate limiter's Redis cannot be reached.
    #[error("{0}")]
    Limits(#[from] ratelimit::LimitError),
    /// The recipient-cap counter could not connect.
    #[error("{0}")]
    Caps(#[from] caps::CapError),
    /// The metrics and health address cannot be bound.
    #[error("metrics address {addr}: {source}")]
    Listen {
        /// The address asked for (`--metrics-addr`).
        addr: String,
        /// Why binding failed.
        source: std::io::Error,
    },
}

/// Runs a worker until `shutdown` is cancelled; returns once in-flight jobs are settled.
pub async fn run(settings: Settings, worker: WorkerSettings, shutdown: CancellationToken) -> Result<(), WorkerError> {
    let config = Config::load(&settings.config)?;
    let client = connectors::http::client();
    let (configured, syncs) = reload::build_configured(&config, &client)?;
    let store = yizhan_state::open(&settings.state, &settings.prefix).await?;
    let parking = yizhan_state::open_parking(&settings.state, &settings.prefix).await?;
    // A fleet shares Redis for its state, and so for its limits; one node limits locally.
    let fleet = yizhan_state::is_redis_url(&settings.state);
    let limiter: Arc<dyn Limiter> = if fleet {
        Arc::new(RedisLimiter::connect(&settings.state, &settings.prefix).await?)
    } else {
        Arc::new(LocalLimiter::default())
    };
    // Recipient caps are counted where the limits are: in Redis for a fleet, in memory otherwise.
    let caps: Arc<dyn caps::CapCounter> = if fleet {
        Arc::new(caps::RedisCaps::connect(&settings.state, &settings.prefix).await?)
    } else {
        Arc::new(caps::LocalCaps::default())
    };

    let metrics = Metrics::new();
    let readiness = Arc::new(http::Readiness::default());
    let listener = tokio::net::TcpListener::bind(&worker.metrics_addr)
        .await
        .map_err(|source| WorkerError::Listen { addr: worker.metrics_addr.clone(), source })?;
    info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "metrics and health");
    let health = http::router(http::Health { metrics: metrics.clone(), readiness: readiness.clone() });
    let http_shutdown = CancellationToken::new();
    let http_task = tokio::spawn({
        let stop = http_shutdown.clone();
        async move { axum::serve(listener, health).with_graceful_shutdown(stop.cancelled_owned()).await }
    });

    let broker_error = |source| WorkerError::Broker { url: redact::url_credentials(&settings.amqp_url), source };
    let owner = format!("{}-{}", hostname(), uuid::Uuid::now_v7().simple());
    // Separate connections: flow control on publishing (retries, dead letters) must not stall acks.
    let consume_conn = Arc::new(
        yizhan_broker::connect(
            &settings.amqp_url,
            &format!("yizhan-worker {owner} consume"),
            yizhan_broker::Recovery::Automatic,
        )
        .await
        .map_err(broker_error)?,
    );
    let publish_conn = Arc::new(
        yizhan_broker::connect(
            &settings.amqp_url,
            &format!("yizhan-worker {owner} publish"),
            yizhan_broker::Recovery::Automatic,
        )
        .await
        .map_err(broker_error)?,
    );
    let names = settings.names();
    let channel = consume_conn.create_channel().await.map_err(broker_error)?;
    let mut lanes = settings.retry_delays.clone();
    lanes.push(pipeline::NOT_YET_LANE);
    yizhan_broker::declare(&channel, &Topology { names: names.clone(), delays: lanes }).await?;
    let publisher = Arc::new(Publisher::open(&publish_conn).await.map_err(broker_error)?);

    let acks = Arc::new(Acks::default());
    let pipeline = Arc::new(Pipeline {
        names: names.clone(),
        retry_delays: settings.retry_delays.clone(),
        connectors: arc_swap::ArcSwap::from_pointee(configured),
        store,
        parking,
        limiter,
        caps,
        publisher: publisher.clone(),
        acks: acks.clone(),
        metrics: metrics.clone(),
        owner: owner.clone(),
        lease: worker.lease,
        held: Mutex::new(HashSet::new()),
        campaigns: pipeline::CampaignControls::default(),
    });

    // SIGHUP and the API's reload message re-read the connector config file; listening before
    // the worker says it is ready, so that a SIGHUP once it is never meets the default action.
    let reloader = Arc::new(reload::Reloader {
        path: settings.config.clone(),
        client,
        pipeline: pipeline.clone(),
        syncs: Default::default(),
    });
    reload::listen(reloader.clone(), consume_conn.clone(), names.clone(), format!("{owner}-control"), shutdown.clone())
        .await?;

    // Acks go out coalesced, up to `FLUSH_EVERY` after a job ends, and until then its delivery
    // still counts against the broker's window: with a window of just the concurrency, slots
    // would idle waiting for deliveries (at 14k jobs/s, 5 ms is 70 of 256). A quarter more keeps
    // them fed without hoarding jobs other workers could take.
    // With sharded lanes the window is shared by a lane's shards, so a worker holds no more
    // jobs than unsharded (each shard's consumer gets its part, at least 1).
    let default_prefetch = (worker.concurrency.max(1) + worker.concurrency / 4).div_ceil(usize::from(names.shards()));
    let prefetch = worker.prefetch.unwrap_or(default_prefetch.min(u16::MAX as usize) as u16);
    channel.basic_qos(prefetch, BasicQosOptions { global: false }).await.map_err(broker_error)?;
    let mut lanes = Lanes::start(consume_conn.clone(), channel.clone(), names.clone(), owner.clone())
        .await
        .map_err(broker_error)?;
    // The tenants known now are consumed before the worker says it is ready (a restart takes up
    // their queues at once); later ones within a registry poll.
    match pipeline.store.tenants().await {
        Ok(tenants) => lanes.add_tenants(&tenants).await,
        Err(e) => warn!(error = %e, "cannot read the tenant registry; trying again"),
    }
    readiness.consuming(consume_conn.clone(), publish_conn.clone(), channel.clone());
    info!(owner = %owner, prefix = %names.prefix, concurrency = worker.concurrency, prefetch, "consuming");

    let background = CancellationToken::new();
    let flusher = tokio::spawn(flush_acks(acks.clone(), background.clone()));
    tokio::spawn(renew_leases(pipeline.clone(), worker.lease / 3, background.clone()));
    tokio::spawn(release_parked(pipeline.clone(), background.clone()));
    tokio::spawn(wake_resumed(pipeline.clone(), background.clone()));
    // Directory syncs: their sources, snapshots and leases; scheduled runs (one per period).
    let directory = yizhan_state::open_directory(&settings.state, &settings.prefix).await?;
    let sync_publisher = Arc::new(Publisher::open(&publish_conn).await.map_err(broker_error)?);
    let schedules: connectors::directory_sync::Schedules =
        Arc::new(arc_swap::ArcSwap::from_pointee(connectors::directory_sync::schedules(&syncs)));
    // From now on a reload builds and wires the syncs again (secrets rotate for the next run);
    // set before the syncs of the start are wired, so that no reload in between is missed.
    let _ = reloader.syncs.set(reload::SyncServices {
        store: directory.clone(),
        publisher: sync_publisher.clone(),
        schedules: schedules.clone(),
    });
    let sources = pipeline
        .connectors
        .load()
        .iter()
        .map(|(key, c)| (key.clone(), (c.connector.clone(), c.quotas.clone())))
        .collect();
    let services = connectors::directory_sync::Services {
        connectors: &sources,
        limiter: pipeline.limiter.clone(),
        store: directory.clone(),
        publisher: sync_publisher.clone(),
        names: &names,
        owner: &owner,
    };
    connectors::directory_sync::wire_all(&syncs, services).await.map_err(broker_error)?;
    tokio::spawn(connectors::directory_sync::run_schedules(
        schedules,
        directory,
        sync_publisher,
        names.clone(),
        background.clone(),
    ));
    // Delivery receipts of the configs that pull them (one worker of the fleet per config).
    for puller in receipts::pullers(&config, &pipeline, &owner)? {
        tokio::spawn(puller.run(background.clone()));
    }
    let (tenants_tx, mut tenants_rx) = tokio::sync::watch::channel(Vec::new());
    tokio::spawn(lanes::poll_tenants(pipeline.store.clone(), tenants_tx, background.clone()));

    // Completion callbacks: their own channel and concurrency, beside the lanes.
    let callbacks = Arc::new(callbacks::Callbacks::new(
        names.clone(),
        settings.callback_allow.clone(),
        settings.retry_delays.clone(),
        publisher.clone(),
        metrics.clone(),
    ));
    let callbacks_stop = CancellationToken::new();
    let callbacks_task = tokio::spawn(callbacks::consume(
        consume_conn.clone(),
        callbacks,
        worker.callback_concurrency,
        format!("{owner}-callbacks"),
        callbacks_stop.clone(),
    ));

    let tracker = TaskTracker::new();
    let permits = Arc::new(tokio::sync::Semaphore::new(worker.concurrency.max(1)));
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = permits.clone().acquire_owned() => permit.expect("semaphore never closed"),
        };
        // New tenants: checked here while jobs keep coming (an atomic load), waited for in the
        // select below only when every lane is empty.
        if tenants_rx.has_changed().unwrap_or(false) {
            let tenants = tenants_rx.borrow_and_update().clone();
            lanes.add_tenants(&tenants).await;
        }
        // `biased`: with a free slot, a waiting `high` job always goes before `normal` and `bulk`
        // (`Lanes::next` asks the lanes in that order, and the tenants of a lane in turn).
        let next = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            event = lanes.next() => Some(event),
            Ok(()) = tenants_rx.changed() => None,
        };
        match next {
            None => {
                let tenants = tenants_rx.borrow_and_update().clone();
                lanes.add_tenants(&tenants).await;
            }
            Some(Event::Delivery(delivery)) => {
                let pipeline = pipeline.clone();
                let tag = acks.tag(delivery.delivery_tag);
                tracker.spawn(async move {
                    pipeline.handle(delivery, tag).await;
                    drop(permit);
                });
            }
            Some(Event::Failed { error, first }) => {
                // A lost connection errors every consumer at once; the first error starts a new
                // ack generation, the others were already handled through it.
                if first {
                    warn!(error = %error, "consumer error; waiting for the connection to recover");
                    acks.reset();
                }
                if let Err(e) = channel.wait_for_recovery(error).await {
                    error!(error = %e, "the broker connection could not be recovered");
                    break;
                }
                if first {
                    info!("the broker connection recovered; consuming again");
                }
            }
            Some(Event::Ended { queue }) => {
                if lanes.is_empty() {
                    error!(%queue, "every consumer ended; stopping");
                    break;
                }
                warn!(%queue, "a consumer ended (its queue deleted?); consuming it again at the next registry read");
            }
        }
    }

    // Drain: stop the broker from sending more, settle what is in flight, then leave. Deliveries
    // prefetched but not started go back to their lanes when the channel closes.
    info!(in_flight = tracker.len(), "stopping: no new jobs; finishing those in flight");
    readiness.stopping();
    lanes.cancel_all().await;
    callbacks_stop.cancel();
    tracker.close();
    tracker.wait().await;
    // The callback POSTs in flight settle too (each within its timeout).
    let _ = callbacks_task.await;
    background.cancel();
    let _ = flusher.await;
    let _ = channel.close(200, "worker stopping".into()).await;
    let _ = consume_conn.close(200, "worker stopping".into()).await;
    let _ = publish_conn.close(200, "worker stopping".into()).await;
    http_shutdown.cancel();
    let _ = http_task.await;
    info!("stopped");
    Ok(())
}

/// How often a worker looks for parked jobs that are due: the most a due job waits to go.
const RELEASE_POLL: Duration = Duration::from_millis(200);

/// Publishes parked jobs back to their lanes as they fall due (every worker of a fleet does; a job
/// is taken by one of them).
async fn release_parked(pipeline: Arc<Pipeline>, stop: CancellationToken) {
    loop {
        let released = match pipeline.release_due().await {
            Ok(n) => n,
            Err(e) => {
                warn!(error = %e, "could not release parked jobs; trying again");
                0
            }
        };
        if released == pipeline::RELEASE_BATCH && !stop.is_cancelled() {
            continue;
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(RELEASE_POLL) => {}
        }
    }
}

/// Acknowledges settled deliveries every [`acks::FLUSH_EVERY`]; once more when stopped, after the
/// last job settled.
/// How often held jobs of campaigns that are no longer paused are looked for.
const WAKE_POLL: Duration = Duration::from_secs(1);

async fn wake_resumed(pipeline: Arc<Pipeline>, stop: CancellationToken) {
    loop {
        if let Err(e) = pipeline.wake_resumed().await {
            warn!(error = %e, "could not wake the held jobs of resumed campaigns; trying again");
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(WAKE_POLL) => {}
        }
    }
}

async fn flush_acks(acks: Arc<Acks>, stop: CancellationToken) {
    let mut ticker = tokio::time::interval(acks::FLUSH_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = ticker.tick() => acks.flush().await,
        }
    }
    // Whatever waited behind an unsettled delivery is acked on its own now.
    while acks.pending() > 0 {
        acks.flush().await;
        if acks.pending() > 0 {
            tokio::time::sleep(acks::MAX_HOLD).await;
        }
    }
}

async fn renew_leases(pipeline: Arc<Pipeline>, every: Duration, stop: CancellationToken) {
    let mut ticker = tokio::time::interval(every.max(Duration::from_millis(50)));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {
                if let Err(e) = pipeline.renew_leases().await {
                    warn!(error = %e, "renewing leases failed");
                }
            }
        }
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "worker".into())
}

//! What a worker consumes: per lane (`high`, `normal`, `bulk`) one consumer per tenant queue —
//! tenant `default`'s from the start, the others' as the state store's tenant registry names them
//! (read at start and every [`TENANT_POLL`]) — and, with sharded lanes, one per shard of each.
//! Lanes are taken most urgent first and, within a lane, its queues in turn (a tenant's shards
//! side by side, every tenant with as many), so that one tenant's backlog does not hold another's
//! jobs behind it.

use std::collections::HashSet;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use yizhan_broker::Names;
use yizhan_schemas::{DEFAULT_TENANT, Priority};
use yizhan_state::StateStore;

/// How often a worker reads the tenant registry: a new tenant's jobs wait at most about this long
/// for their first consumer.
pub(crate) const TENANT_POLL: Duration = Duration::from_secs(1);

/// Why a tenant's queues could not be consumed (tried again at the next registry read).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConsumeError {
    /// Declaring its lanes failed.
    #[error("{0}")]
    Declare(#[from] yizhan_broker::TopologyError),
    /// The broker refused a channel or a consumer.
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
}

/// What the consumers have for the worker next.
// A delivery is moved once per job; boxing it would allocate per job instead.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Event {
    /// A job.
    Delivery(Delivery),
    /// The connection failed: every consumer reports it, each ahead of its deliveries from the
    /// recovered channel. `first` for the first of those reports (it starts a new ack generation;
    /// the others, read after the recovery, must not start another).
    Failed {
        /// lapin's error, to wait for the recovery with.
        error: lapin::Error,
        /// Whether this is the first report of this failure.
        first: bool,
    },
    /// A consumer ended (its queue deleted, or the broker cancelled it); the tenant's lanes are
    /// declared and consumed again at the next registry read.
    Ended {
        /// The queue it consumed.
        queue: String,
    },
}

struct TenantConsumer {
    tenant: String,
    /// Which of the tenant's queues of the lane it consumes (0 when unsharded).
    shard: u16,
    queue: String,
    tag: String,
    consumer: Consumer,
    /// Set on every other consumer when one reports a failure: its own report is not the first.
    owes_error: bool,
}

/// The consumers of one lane, taken in turn.
struct Lane {
    priority: Priority,
    consumers: Vec<TenantConsumer>,
    /// The consumer asked first next time: the one after the last that delivered.
    next: usize,
}

#[allow(clippy::large_enum_variant)]
enum LaneItem {
    Delivery(Delivery),
    Error(usize, lapin::Error),
    Ended(TenantConsumer),
}

impl Lane {
    /// The next delivery of the consumers, the one after the last to deliver asked first.
    /// One consumer (a single tenant) costs what polling it directly did.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<LaneItem> {
        let count = self.consumers.len();
        for offset in 0..count {
            let index = (self.next + offset) % count;
            match self.consumers[index].consumer.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(delivery))) => {
                    self.next = (index + 1) % count;
                    return Poll::Ready(LaneItem::Delivery(delivery));
                }
                Poll::Ready(Some(Err(error))) => {
                    self.next = (index + 1) % count;
                    return Poll::Ready(LaneItem::Error(index, error));
                }
                Poll::Ready(None) => {
                    let ended = self.consumers.remove(index);
                    self.next = if self.consumers.is_empty() { 0 } else { index % self.consumers.len() };
                    return Poll::Ready(LaneItem::Ended(ended));
                }
                Poll::Pending => {}
            }
        }
        Poll::Pending
    }
}

/// Every consumer of a worker, on one channel (its QoS applies to each consumer).
pub(crate) struct Lanes {
    connection: Arc<Connection>,
    channel: Channel,
    names: Names,
    owner: String,
    /// Most urgent first.
    lanes: Vec<Lane>,
    /// Tenants with a consumer on every lane.
    consumed: HashSet<String>,
    /// Registry entries that cannot name queues, warned about once.
    refused: HashSet<String>,
}

impl Lanes {
    /// Consumes tenant `default`'s lanes (declared with the topology) on `channel`; `connection`
    /// opens the channels other tenants' lanes are declared on.
    pub(crate) async fn start(
        connection: Arc<Connection>,
        channel: Channel,
        names: Names,
        owner: String,
    ) -> Result<Lanes, lapin::Error> {
        let lanes = Priority::ALL.iter().map(|&priority| Lane { priority, consumers: Vec::new(), next: 0 }).collect();
        let mut lanes =
            Lanes { connection, channel, names, owner, lanes, consumed: HashSet::new(), refused: HashSet::new() };
        lanes.consume_lanes(DEFAULT_TENANT).await?;
        lanes.consumed.insert(DEFAULT_TENANT.to_string());
        Ok(lanes)
    }

    /// Consumes the lanes of every tenant in `tenants` (and `default`) not consumed yet,
    /// declaring them first; a tenant that fails is logged and tried again next time.
    pub(crate) async fn add_tenants(&mut self, tenants: &[String]) {
        for tenant in std::iter::once(DEFAULT_TENANT).chain(tenants.iter().map(String::as_str)) {
            if self.consumed.contains(tenant) || self.refused.contains(tenant) {
                continue;
            }
            if !yizhan_schemas::is_valid_tenant(tenant) {
                warn!(%tenant, "the tenant registry names a tenant that cannot name queues; ignored");
                self.refused.insert(tenant.to_string());
                continue;
            }
            match self.consume_tenant(tenant).await {
                Ok(()) => {
                    info!(%tenant, "consuming the tenant's lanes");
                    self.consumed.insert(tenant.to_string());
                }
                Err(e) => warn!(%tenant, error = %e, "cannot consume the tenant's lanes yet; trying again"),
            }
        }
    }

    async fn consume_tenant(&mut self, tenant: &str) -> Result<(), ConsumeError> {
        // On a channel of its own: a refused declaration (a queue of that name with other
        // arguments) closes its channel, and must not close the one every lane is consumed on.
        let declaring = self.connection.create_channel().await?;
        let declared = yizhan_broker::declare_tenant(&declaring, &self.names, tenant).await;
        let _ = declaring.close(200, "declared".into()).await;
        declared?;
        Ok(self.consume_lanes(tenant).await?)
    }

    /// Starts a consumer on each shard of each lane of `tenant` that has none (a partial earlier
    /// attempt keeps what it started).
    async fn consume_lanes(&mut self, tenant: &str) -> Result<(), lapin::Error> {
        let shards = self.names.shards();
        for (lane, shard) in (0..self.lanes.len()).flat_map(|lane| (0..shards).map(move |s| (lane, s))) {
            let lane = &mut self.lanes[lane];
            if lane.consumers.iter().any(|c| c.tenant == tenant && c.shard == shard) {
                continue;
            }
            let queue = self.names.lane_shard(lane.priority, tenant, shard);
            // Tenant `default` keeps the tags it always had; a shard's tag ends as its queue's
            // name does (no tenant has a dot, so no tag is another's).
            let mut tag = if tenant == DEFAULT_TENANT {
                format!("{}-{}", self.owner, lane.priority.as_str())
            } else {
                format!("{}-{}-{tenant}", self.owner, lane.priority.as_str())
            };
            if shard != 0 {
                use std::fmt::Write;
                let _ = write!(tag, ".s.{shard}");
            }
            let consumer = self
                .channel
                .basic_consume(
                    queue.as_str().into(),
                    tag.as_str().into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            lane.consumers.push(TenantConsumer {
                tenant: tenant.to_string(),
                shard,
                queue,
                tag,
                consumer,
                owes_error: false,
            });
        }
        Ok(())
    }

    /// Whether no consumer is left at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.lanes.iter().all(|lane| lane.consumers.is_empty())
    }

    /// The next event: lanes most urgent first, tenants in turn within a lane.
    pub(crate) async fn next(&mut self) -> Event {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Event> {
        for lane in 0..self.lanes.len() {
            let item = match self.lanes[lane].poll(cx) {
                Poll::Ready(item) => item,
                Poll::Pending => continue,
            };
            return Poll::Ready(match item {
                LaneItem::Delivery(delivery) => Event::Delivery(delivery),
                LaneItem::Error(index, error) => {
                    let first = !std::mem::take(&mut self.lanes[lane].consumers[index].owes_error);
                    if first {
                        for consumer in self.lanes.iter_mut().flat_map(|lane| lane.consumers.iter_mut()) {
                            consumer.owes_error = true;
                        }
                        self.lanes[lane].consumers[index].owes_error = false;
                    }
                    Event::Failed { error, first }
                }
                LaneItem::Ended(ended) => {
                    self.consumed.remove(&ended.tenant);
                    Event::Ended { queue: ended.queue }
                }
            });
        }
        Poll::Pending
    }

    /// Stops every consumer: the broker sends nothing more (deliveries not taken yet go back to
    /// their queues when the channel closes).
    pub(crate) async fn cancel_all(&self) {
        for consumer in self.lanes.iter().flat_map(|lane| &lane.consumers) {
            let _ = self.channel.basic_cancel(consumer.tag.as_str().into(), BasicCancelOptions::default()).await;
        }
    }
}

/// Reads the tenant registry every [`TENANT_POLL`] and publishes what it holds to `tenants`
/// (every read, so that tenants that failed to be consumed are tried again).
pub(crate) async fn poll_tenants(
    store: Arc<dyn StateStore>,
    tenants: watch::Sender<Vec<String>>,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(TENANT_POLL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        match store.tenants().await {
            Ok(list) => {
                if tenants.send(list).is_err() {
                    return;
                }
            }
            Err(e) => warn!(error = %e, "cannot read the tenant registry; trying again"),
        }
    }
}

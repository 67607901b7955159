//! The broker topology, declared idempotently by every producer and worker at start.
//!
//! ```text
//! <p>.jobs (direct) --high|normal|bulk--> <p>.jobs.<lane>   quorum; DLX <p>.dead (delivery limit)
//!                   --<lane>.<t>-------> <p>.jobs.<lane>.<t>   the same, one per lane of tenant t
//! retry/defer: publish to <p>.delay.<d> (fanout) --> queue <p>.delay.<d>, TTL d, DLX <p>.jobs
//!              (the routing key, lane and tenant, is kept, so the job comes back to its own queue)
//! <p>.dead (fanout) --> <p>.dead   quorum; permanent, exhausted, invalid and ambiguous jobs
//! <p>.jobs --callback--> <p>.callbacks   quorum; completion callbacks (retried like jobs)
//! <p>.control (fanout) --> one exclusive auto-delete queue per worker: reload requests
//! ```
//! The tenant `default` has the original lanes and routing keys, so AMQP publishers that know
//! nothing of tenants are unchanged; every other tenant's lanes are declared on its first use
//! ([`declare_tenant`]), so that workers can take tenants round-robin within a lane.
//! Dead-lettering between quorum queues is `at-least-once` (with `reject-publish` overflow), so a
//! job waiting in a delay queue cannot be dropped on its way back.

use std::borrow::Cow;
use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, ExchangeKind};
use yizhan_schemas::{DEFAULT_TENANT, Priority};

/// A message that crashed workers this many times goes to the dead-letter queue.
/// The routing key of callback messages on `<prefix>.jobs`; no lane key (`high`, `<lane>.<tenant>`)
/// can be it.
pub const CALLBACK_ROUTING_KEY: &str = "callback";

pub(crate) const DELIVERY_LIMIT: i32 = 10;

/// Every exchange and queue name, derived from the prefix, and how many nodes of a cluster a new
/// queue is replicated to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// Prefix of every name (`<prefix>.jobs`, `<prefix>.dead`, ...), so several fleets or tests share one broker.
    pub prefix: String,
    /// Replicas of each quorum queue this process creates (`x-quorum-initial-group-size`); `None`
    /// leaves it to the broker (`quorum_cluster_size`, 3 by default, at most the cluster's nodes).
    /// It applies when a queue is created: RabbitMQ refuses to declare an existing queue again with
    /// another value, so every process of a fleet must be given the same one.
    pub quorum_group_size: Option<u16>,
}

impl Names {
    /// The names under `prefix`; no name is declared here.
    pub fn new(prefix: impl Into<String>) -> Self {
        Names { prefix: prefix.into(), quorum_group_size: None }
    }

    /// The same names, declaring new quorum queues with `size` replicas (`None`: the broker's default).
    pub fn with_quorum_group_size(mut self, size: Option<u16>) -> Self {
        self.quorum_group_size = size;
        self
    }

    /// The exchange jobs are published to, routing key = priority.
    pub fn jobs_exchange(&self) -> String {
        format!("{}.jobs", self.prefix)
    }

    /// The queue of one lane (of the tenant `default`).
    pub fn lane(&self, priority: Priority) -> String {
        format!("{}.jobs.{}", self.prefix, priority.as_str())
    }

    /// The queue of one lane of `tenant`: [`Names::lane`] for `default`, `<p>.jobs.<lane>.<tenant>`
    /// for any other.
    pub fn tenant_lane(&self, priority: Priority, tenant: &str) -> String {
        if tenant == DEFAULT_TENANT {
            self.lane(priority)
        } else {
            format!("{}.jobs.{}.{tenant}", self.prefix, priority.as_str())
        }
    }

    /// The routing key of a job on the jobs exchange: the lane for `default` (no allocation), else
    /// `<lane>.<tenant>`. Retries keep it through the delay lanes and the parking lot.
    pub fn routing_key(&self, priority: Priority, tenant: &str) -> Cow<'static, str> {
        if tenant == DEFAULT_TENANT {
            Cow::Borrowed(priority.as_str())
        } else {
            Cow::Owned(format!("{}.{tenant}", priority.as_str()))
        }
    }

    /// The dead-letter queue (and the fanout exchange in front of it).
    pub fn dead(&self) -> String {
        format!("{}.dead", self.prefix)
    }

    /// The queue of completion callbacks, bound to the jobs exchange with routing key
    /// [`CALLBACK_ROUTING_KEY`].
    pub fn callbacks(&self) -> String {
        format!("{}.callbacks", self.prefix)
    }

    /// The fanout exchange of control messages to every worker (reload).
    pub fn control(&self) -> String {
        format!("{}.control", self.prefix)
    }

    /// The delay exchange and queue for one delay.
    pub fn delay(&self, delay: Duration) -> String {
        format!("{}.delay.{}", self.prefix, delay_label(delay))
    }
}

/// The names under a prefix, with the broker's group size ([`Names::new`]).
impl From<&str> for Names {
    fn from(prefix: &str) -> Self {
        Names::new(prefix)
    }
}

/// The names under a prefix, with the broker's group size ([`Names::new`]).
impl From<&String> for Names {
    fn from(prefix: &String) -> Self {
        Names::new(prefix.clone())
    }
}

/// The names under a prefix, with the broker's group size ([`Names::new`]).
impl From<String> for Names {
    fn from(prefix: String) -> Self {
        Names::new(prefix)
    }
}

fn delay_label(delay: Duration) -> String {
    humantime::format_duration(delay).to_string().replace(' ', "")
}

/// What to declare: the lanes, the dead-letter queue and one delay queue per distinct delay.
#[derive(Debug, Clone)]
pub struct Topology {
    /// The names of every exchange and queue.
    pub names: Names,
    /// Retry and defer delays, one delay exchange and queue each; duplicates and order do not matter.
    pub delays: Vec<Duration>,
}

/// A declaration the broker refused.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// Declaring or binding one exchange or queue failed, most often because it exists with other arguments.
    #[error(
        "declaring {what}: {source} (a queue of that name may exist with other arguments, such as another YIZHAN_QUORUM_GROUP_SIZE: give every process the value it was created with, or use another prefix)"
    )]
    Declare {
        /// What was being declared, e.g. `queue acme.jobs.high`.
        what: String,
        /// The broker's or the connection's error.
        source: lapin::Error,
    },
}

/// A quorum queue, with `names`' group size when one is set (only then: a queue declared before
/// without it stays declarable).
fn quorum(names: &Names) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), AMQPValue::LongString(LongString::from("quorum")));
    if let Some(size) = names.quorum_group_size {
        args.insert("x-quorum-initial-group-size".into(), AMQPValue::LongInt(i32::from(size)));
    }
    args
}

fn quorum_args(names: &Names, dead_letter_exchange: &str) -> FieldTable {
    let mut args = quorum(names);
    args.insert("x-dead-letter-exchange".into(), AMQPValue::LongString(LongString::from(dead_letter_exchange)));
    args.insert("x-dead-letter-strategy".into(), AMQPValue::LongString(LongString::from("at-least-once")));
    args.insert("x-overflow".into(), AMQPValue::LongString(LongString::from("reject-publish")));
    args
}

/// Declares the three lanes of `tenant` and binds them to the jobs exchange (declared by
/// [`declare`]); idempotent. The producer calls it on a tenant's first job, workers before they
/// consume a tenant's queues.
pub async fn declare_tenant(channel: &Channel, names: &Names, tenant: &str) -> Result<(), TopologyError> {
    let durable_queue = QueueDeclareOptions { durable: true, ..Default::default() };
    let err = |what: String| move |source| TopologyError::Declare { what: what.clone(), source };
    let jobs = names.jobs_exchange();
    let dead = names.dead();
    for priority in Priority::ALL {
        let lane = names.tenant_lane(priority, tenant);
        let mut args = quorum_args(names, &dead);
        args.insert("x-delivery-limit".into(), AMQPValue::LongInt(DELIVERY_LIMIT));
        channel.queue_declare(lane.as_str().into(), durable_queue, args).await.map_err(err(format!("queue {lane}")))?;
        let routing_key = names.routing_key(priority, tenant);
        channel
            .queue_bind(
                lane.as_str().into(),
                jobs.as_str().into(),
                routing_key.as_ref().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(err(format!("binding {lane}")))?;
    }
    Ok(())
}

/// Declares a server-named, exclusive, auto-delete queue bound to the control exchange (declared
/// by [`declare`]) and returns its name: each worker's own copy of every control message, gone
/// with the worker's connection.
pub async fn declare_control_queue(channel: &Channel, names: &Names) -> Result<String, TopologyError> {
    let err = |what: &str| {
        let what = what.to_string();
        move |source| TopologyError::Declare { what, source }
    };
    let options = QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() };
    let queue =
        channel.queue_declare("".into(), options, FieldTable::default()).await.map_err(err("a control queue"))?;
    let name = queue.name().to_string();
    let control = names.control();
    channel
        .queue_bind(
            name.as_str().into(),
            control.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(err("the control queue's binding"))?;
    Ok(name)
}

/// Declares the whole topology; safe to call from every process at every start.
pub async fn declare(channel: &Channel, topology: &Topology) -> Result<(), TopologyError> {
    let names = &topology.names;
    let durable_exchange = ExchangeDeclareOptions { durable: true, ..Default::default() };
    let durable_queue = QueueDeclareOptions { durable: true, ..Default::default() };
    let err = |what: String| move |source| TopologyError::Declare { what: what.clone(), source };

    let control = names.control();
    channel
        .exchange_declare(control.as_str().into(), ExchangeKind::Fanout, durable_exchange, FieldTable::default())
        .await
        .map_err(err(format!("exchange {control}")))?;

    let dead = names.dead();
    channel
        .exchange_declare(dead.as_str().into(), ExchangeKind::Fanout, durable_exchange, FieldTable::default())
        .await
        .map_err(err(format!("exchange {dead}")))?;
    channel
        .queue_declare(dead.as_str().into(), durable_queue, quorum(names))
        .await
        .map_err(err(format!("queue {dead}")))?;
    channel
        .queue_bind(
            dead.as_str().into(),
            dead.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(err(format!("binding {dead}")))?;

    let jobs = names.jobs_exchange();
    channel
        .exchange_declare(jobs.as_str().into(), ExchangeKind::Direct, durable_exchange, FieldTable::default())
        .await
        .map_err(err(format!("exchange {jobs}")))?;
    declare_tenant(channel, names, DEFAULT_TENANT).await?;

    // Callbacks wait in a queue of their own (never behind a lane's backlog); their retries come
    // back through the delay lanes by this routing key.
    let callbacks = names.callbacks();
    let mut args = quorum_args(names, &dead);
    args.insert("x-delivery-limit".into(), AMQPValue::LongInt(DELIVERY_LIMIT));
    channel
        .queue_declare(callbacks.as_str().into(), durable_queue, args)
        .await
        .map_err(err(format!("queue {callbacks}")))?;
    channel
        .queue_bind(
            callbacks.as_str().into(),
            jobs.as_str().into(),
            CALLBACK_ROUTING_KEY.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(err(format!("binding {callbacks}")))?;

    let mut delays = topology.delays.clone();
    delays.sort();
    delays.dedup();
    for delay in delays {
        let name = names.delay(delay);
        channel
            .exchange_declare(name.as_str().into(), ExchangeKind::Fanout, durable_exchange, FieldTable::default())
            .await
            .map_err(err(format!("exchange {name}")))?;
        let mut args = quorum_args(names, &jobs);
        let ttl = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
        args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl));
        channel.queue_declare(name.as_str().into(), durable_queue, args).await.map_err(err(format!("queue {name}")))?;
        channel
            .queue_bind(
                name.as_str().into(),
                name.as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(err(format!("binding {name}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_prefix() {
        let names = Names::new("acme");
        assert_eq!(names.jobs_exchange(), "acme.jobs");
        assert_eq!(names.lane(Priority::High), "acme.jobs.high");
        assert_eq!(names.dead(), "acme.dead");
        assert_eq!(names.callbacks(), "acme.callbacks");
        assert_eq!(names.delay(Duration::from_secs(120)), "acme.delay.2m");
        assert_eq!(names.delay(Duration::from_secs(90)), "acme.delay.1m30s");
        assert_eq!(names.delay(Duration::from_millis(200)), "acme.delay.200ms");
    }

    #[test]
    fn the_default_tenant_keeps_the_original_names_and_others_get_their_own() {
        let names = Names::new("acme");
        assert_eq!(names.tenant_lane(Priority::Bulk, "default"), "acme.jobs.bulk");
        assert_eq!(names.routing_key(Priority::Bulk, "default"), "bulk");
        assert!(matches!(names.routing_key(Priority::High, "default"), Cow::Borrowed("high")), "no allocation");
        assert_eq!(names.tenant_lane(Priority::Bulk, "team-b"), "acme.jobs.bulk.team-b");
        assert_eq!(names.routing_key(Priority::Normal, "team-b"), "normal.team-b");
    }
}

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
//!
//! Sharded lanes (`YIZHAN_LANE_SHARDS=N`, [`Names::with_shards`]): every lane queue above, and
//! every delay queue, is N queues. Shard 0 is the queue and routing key above, unchanged, so a
//! publisher that knows nothing of shards still lands in a consumed queue; shard k ≥ 1 appends
//! `.s.<k>` to the queue (`<p>.jobs.high.s.3`, `<p>.jobs.high.acme.s.3`, `<p>.delay.5s.s.3`) and
//! to the routing key (`high.s.3`, `high.acme.s.3`). No tenant can collide with it: a tenant has no
//! dot. A job's shard is [`shard_of`] its idempotency key, so the copies of one key meet in one queue.
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
    /// Queues per lane (and per delay), at least 1; see [`Names::with_shards`].
    shards: u16,
}

impl Names {
    /// The names under `prefix`; no name is declared here.
    pub fn new(prefix: impl Into<String>) -> Self {
        Names { prefix: prefix.into(), quorum_group_size: None, shards: 1 }
    }

    /// The same names with each lane and delay spread over `shards` queues (0 counts as 1). Every
    /// process declares and consumes shards `0..shards`; a producer routes a job to
    /// [`shard_of`] its idempotency key.
    pub fn with_shards(mut self, shards: u16) -> Self {
        self.shards = shards.max(1);
        self
    }

    /// Queues per lane and per delay (1: unsharded).
    pub fn shards(&self) -> u16 {
        self.shards
    }

    /// The shard of a job with idempotency key `key` among this process's shards (0 when
    /// unsharded, without hashing).
    pub fn shard(&self, key: &str) -> u16 {
        if self.shards == 1 { 0 } else { shard_of(key, self.shards) }
    }

    /// Shard `shard` of the queue of one lane of `tenant`: [`Names::tenant_lane`] for shard 0,
    /// `<that>.s.<shard>` for the others.
    pub fn lane_shard(&self, priority: Priority, tenant: &str, shard: u16) -> String {
        with_shard(self.tenant_lane(priority, tenant), shard)
    }

    /// Every queue of one lane of `tenant`, shard 0 first.
    pub fn lane_shards(&self, priority: Priority, tenant: &str) -> Vec<String> {
        (0..self.shards).map(|shard| self.lane_shard(priority, tenant, shard)).collect()
    }

    /// The routing key of shard `shard` of one lane of `tenant`: [`Names::routing_key`] for shard
    /// 0, `<that>.s.<shard>` for the others.
    pub fn shard_routing_key(&self, priority: Priority, tenant: &str, shard: u16) -> Cow<'static, str> {
        let key = self.routing_key(priority, tenant);
        if shard == 0 { key } else { Cow::Owned(with_shard(key.into_owned(), shard)) }
    }

    /// The routing key a job is published with: its lane and tenant's ([`Names::routing_key`]),
    /// on the shard of its idempotency key. Unsharded, exactly [`Names::routing_key`].
    pub fn job_routing_key(&self, priority: Priority, tenant: &str, idempotency_key: &str) -> Cow<'static, str> {
        if self.shards == 1 {
            return self.routing_key(priority, tenant);
        }
        self.shard_routing_key(priority, tenant, self.shard(idempotency_key))
    }

    /// The routing key a copy of a delivery goes back with (a retry, a parked job): the key it
    /// came with, on this process's shard of its idempotency key. A key this process cannot place
    /// on its own shards (another N before a change) so still reaches a consumed queue, and a job
    /// published to shard 0 by a client that knows nothing of shards moves to its own shard.
    /// Unsharded, a key without a shard comes back as it is, borrowed.
    pub fn reshard<'k>(&self, routing_key: &'k str, idempotency_key: &str) -> Cow<'k, str> {
        let (base, shard) = split_shard(routing_key);
        let wanted = self.shard(idempotency_key);
        if shard == Some(wanted) || (shard.is_none() && wanted == 0) {
            Cow::Borrowed(routing_key)
        } else if wanted == 0 {
            Cow::Borrowed(base)
        } else {
            Cow::Owned(with_shard(base.to_string(), wanted))
        }
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

    /// `routing_key` if it names one of this process's shards (or none), else its shard 0: a
    /// copy published long ago (a parked job) by a process with more shards, before N was
    /// lowered, so still reaches a consumed queue.
    pub fn within_shards<'k>(&self, routing_key: &'k str) -> &'k str {
        match split_shard(routing_key) {
            (base, Some(shard)) if shard >= self.shards => base,
            _ => routing_key,
        }
    }

    /// Shard `shard` of the delay exchange and queue for one delay: [`Names::delay`] for shard 0,
    /// `<that>.s.<shard>` for the others. A retry waits in its job's shard, so that a retry storm
    /// spreads over the shards as the jobs did.
    pub fn delay_shard(&self, delay: Duration, shard: u16) -> String {
        with_shard(self.delay(delay), shard)
    }
}

/// `name` for shard 0, `<name>.s.<shard>` for the others.
fn with_shard(mut name: String, shard: u16) -> String {
    if shard != 0 {
        use std::fmt::Write;
        let _ = write!(name, ".s.{shard}");
    }
    name
}

/// A routing key without its shard suffix, and the shard it names (None: none, so shard 0).
/// Only the suffix [`with_shard`] writes counts (`.s.` and digits without a leading zero).
fn split_shard(key: &str) -> (&str, Option<u16>) {
    if let Some((base, digits)) = key.rsplit_once(".s.")
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
        && let Ok(shard) = digits.parse::<u16>()
    {
        return (base, Some(shard));
    }
    (key, None)
}

/// The shard, among `shards`, of a job with idempotency key `key`: FNV-1a (64 bits) of its bytes,
/// mixed by MurmurHash3's 64-bit finalizer, modulo `shards`. Stable across processes, versions and
/// platforms: the producer and every worker must agree on it, so it is written out here, not
/// taken from `std`'s hasher (random per process) or a crate that may change it. The finalizer
/// because FNV's low bits depend only on the low bits of the key's bytes: with 16 shards, all the
/// keys of one length written with `1`, `a`, `A`, `Q`, `q` would share one.
pub fn shard_of(key: &str, shards: u16) -> u16 {
    (fmix64(fnv1a64(key.as_bytes())) % u64::from(shards.max(1))) as u16
}

/// MurmurHash3's `fmix64`: every output bit depends on every input bit.
fn fmix64(mut hash: u64) -> u64 {
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET, |hash, &byte| (hash ^ u64::from(byte)).wrapping_mul(PRIME))
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

/// What to declare: the lanes, the dead-letter queue and one delay queue per distinct delay (each
/// lane and delay queue once per shard of the names).
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

/// Declares the three lanes of `tenant` (each of their shards) and binds them to the jobs exchange (declared by
/// [`declare`]); idempotent. The producer calls it on a tenant's first job, workers before they
/// consume a tenant's queues.
pub async fn declare_tenant(channel: &Channel, names: &Names, tenant: &str) -> Result<(), TopologyError> {
    let durable_queue = QueueDeclareOptions { durable: true, ..Default::default() };
    let err = |what: String| move |source| TopologyError::Declare { what: what.clone(), source };
    let jobs = names.jobs_exchange();
    let dead = names.dead();
    for (priority, shard) in Priority::ALL.into_iter().flat_map(|p| (0..names.shards()).map(move |s| (p, s))) {
        let lane = names.lane_shard(priority, tenant, shard);
        let mut args = quorum_args(names, &dead);
        args.insert("x-delivery-limit".into(), AMQPValue::LongInt(DELIVERY_LIMIT));
        channel.queue_declare(lane.as_str().into(), durable_queue, args).await.map_err(err(format!("queue {lane}")))?;
        let routing_key = names.shard_routing_key(priority, tenant, shard);
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
    for (delay, shard) in delays.into_iter().flat_map(|d| (0..names.shards()).map(move |s| (d, s))) {
        let name = names.delay_shard(delay, shard);
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

    #[test]
    fn one_shard_keeps_every_name_and_routing_key() {
        let names = Names::new("acme");
        let sharded_once = Names::new("acme").with_shards(1);
        assert_eq!(names, sharded_once);
        assert_eq!(Names::new("acme").with_shards(0).shards(), 1, "0 counts as 1");
        for priority in Priority::ALL {
            for tenant in ["default", "team-b"] {
                assert_eq!(names.lane_shards(priority, tenant), [names.tenant_lane(priority, tenant)]);
                assert_eq!(names.lane_shard(priority, tenant, 0), names.tenant_lane(priority, tenant));
                assert_eq!(names.job_routing_key(priority, tenant, "any-key"), names.routing_key(priority, tenant));
            }
        }
        assert_eq!(names.lane_shard(Priority::High, "default", 0), "acme.jobs.high");
        assert_eq!(names.job_routing_key(Priority::High, "default", "k"), "high");
        assert!(
            matches!(names.job_routing_key(Priority::High, "default", "k"), Cow::Borrowed("high")),
            "no allocation"
        );
        assert_eq!(names.delay_shard(Duration::from_secs(5), 0), "acme.delay.5s");
        assert!(matches!(names.reshard("normal", "k"), Cow::Borrowed("normal")));
        assert!(matches!(names.reshard("normal.acme", "k"), Cow::Borrowed("normal.acme")));
        // A key published by a process with more shards comes back to shard 0, which exists.
        assert_eq!(names.reshard("normal.acme.s.3", "k"), "normal.acme");
    }

    #[test]
    fn shards_get_their_own_names_that_no_tenant_can_take() {
        let names = Names::new("acme").with_shards(4);
        assert_eq!(
            names.lane_shards(Priority::Bulk, "default"),
            ["acme.jobs.bulk", "acme.jobs.bulk.s.1", "acme.jobs.bulk.s.2", "acme.jobs.bulk.s.3"]
        );
        assert_eq!(names.lane_shard(Priority::Bulk, "team-b", 2), "acme.jobs.bulk.team-b.s.2");
        assert_eq!(names.shard_routing_key(Priority::Bulk, "default", 0), "bulk");
        assert_eq!(names.shard_routing_key(Priority::Bulk, "default", 3), "bulk.s.3");
        assert_eq!(names.shard_routing_key(Priority::High, "team-b", 1), "high.team-b.s.1");
        assert_eq!(names.delay_shard(Duration::from_secs(5), 2), "acme.delay.5s.s.2");
        // The tenant `s1` (valid) keeps a name no shard of `default` has.
        assert_ne!(names.tenant_lane(Priority::Bulk, "s1"), names.lane_shard(Priority::Bulk, "default", 1));
        assert_ne!(names.routing_key(Priority::Bulk, "s"), names.shard_routing_key(Priority::Bulk, "default", 1));
    }

    #[test]
    fn the_shard_is_fnv1a_of_the_idempotency_key() {
        // FNV-1a 64's published test values, then the finalizer and the modulo.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(fmix64(fnv1a64(b"spring-2025:+8613800000000")), 0x0337_fc39_44de_683b);
        assert_eq!([shard_of("", 4), shard_of("a", 4), shard_of("b", 4), shard_of("c", 4)], [2, 3, 0, 2]);
        assert_eq!(shard_of("spring-2025:+8613800000000", 16), 11);
        assert_eq!(shard_of("0190b3d2-7c1e-7000-8000-000000000001", 16), 3);
        let names = Names::new("acme").with_shards(4);
        assert_eq!(names.shard("spring-2025:+8613800000000"), 3);
        assert_eq!(names.job_routing_key(Priority::Bulk, "team-b", "spring-2025:+8613800000000"), "bulk.team-b.s.3");
        assert_eq!(names.job_routing_key(Priority::Bulk, "team-b", "b"), "bulk.team-b", "shard 0: the plain key");
        assert_eq!(Names::new("acme").shard("spring-2025:+8613800000000"), 0);
    }

    #[test]
    fn keys_alike_in_their_low_bits_still_spread() {
        // Every 4-character key over characters whose low four bits are equal (0x1): FNV-1a's own
        // low bits would put all 1,296 on one of 16 shards.
        let chars = ['1', 'a', 'A', 'Q', 'q', '!'];
        let mut counts = [0u32; 16];
        for i in 0..6usize.pow(4) {
            let key: String = (0..4).map(|d| chars[i / 6usize.pow(d) % 6]).collect();
            counts[usize::from(shard_of(&key, 16))] += 1;
        }
        assert!(counts.iter().all(|&n| (50..=110).contains(&n)), "{counts:?}");
        // A campaign's keys, `<campaign key>:<number>`: within 10% of even.
        let mut counts = [0u32; 16];
        for i in 0..16_000 {
            counts[usize::from(shard_of(&format!("spring:+86138{i:08}"), 16))] += 1;
        }
        assert!(counts.iter().all(|&n| (900..=1100).contains(&n)), "{counts:?}");
    }

    #[test]
    fn a_copy_goes_back_to_its_keys_shard() {
        let names = Names::new("acme").with_shards(4);
        let key = "spring-2025:+8613800000000"; // shard 3
        assert!(matches!(names.reshard("bulk.s.3", key), Cow::Borrowed("bulk.s.3")), "its own: unchanged");
        assert_eq!(names.reshard("bulk", key), "bulk.s.3", "from a publisher that knows nothing of shards");
        assert_eq!(names.reshard("bulk.team-b.s.1", key), "bulk.team-b.s.3");
        assert_eq!(names.reshard("bulk.team-b.s.3", "b"), "bulk.team-b", "shard 0");
        assert!(matches!(names.reshard("bulk.team-b", "b"), Cow::Borrowed("bulk.team-b")));
        assert_eq!(names.within_shards("bulk.team-b.s.3"), "bulk.team-b.s.3");
        assert_eq!(Names::new("acme").with_shards(2).within_shards("bulk.team-b.s.3"), "bulk.team-b", "gone: shard 0");
        assert_eq!(Names::new("acme").within_shards("bulk"), "bulk");
        // Not a shard suffix: kept whole.
        assert_eq!(names.reshard("bulk.s.03", "b"), "bulk.s.03");
        assert_eq!(names.reshard("bulk.s.", "b"), "bulk.s.");
    }
}

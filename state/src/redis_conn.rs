//! The one way into Redis for the state store, the parking lot, the directory store, the rate
//! limiter and the recipient caps: [`redis_connect`] understands
//!
//! - `redis://[[user]:password@]host:port/db` and `rediss://…` (TLS): one server, reconnecting by
//!   itself (redis-rs' `ConnectionManager`);
//! - `redis+sentinel://[[user]:password@]host:port,host:port,…/master/db[?replicas=N]`: the master
//!   named `master`, found through the Redis Sentinels listed (the credentials are the master's;
//!   the sentinels take none). When the master is lost or demoted (connection errors, `READONLY`,
//!   `ROLE` no longer `master`), the call that met it fails and the next one asks the sentinels
//!   again; during a failover calls fail fast, and the callers' errors requeue or delay their jobs.
//!
//! With Sentinel, a call returns only once its writes reached a replica (`WAIT`): Redis replicates
//! asynchronously, and a write acknowledged by a master that dies before passing it on (a parked
//! job, a limiter's token) would be lost with it. The call waits for as many replicas as are
//! connected to the master (asked with `ROLE` once a second), up to `replicas` (default 1; `0`
//! turns waiting off); a replica that does not acknowledge within [`WAIT_TIMEOUT`] fails the call
//! (its job is requeued, never lost). A replica that leaves is asked whether it took over as
//! master (a promoted replica keeps its old master's replication id as `master_replid2`): then
//! the master was failed over (a planned failover demotes it a moment later, and the sentinels
//! name the new one only once it is over) and is given up, and a master the sentinels name is
//! refused while a replica they know took over from it; a replica that is gone leaves a lone master, which goes on alone rather than stopping the
//! fleet (a master cut off from the sentinels and its replica by a network partition cannot tell:
//! Redis's `min-replicas-to-write` is the guard there).

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{AsyncConnectionConfig, Cmd, ConnectionAddr, ErrorKind, RedisError, RedisFuture, RedisResult, Value};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
const RECONNECT_RETRIES: usize = 6;
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(2);
/// How long a Sentinel-mode call waits for its replicas to acknowledge its writes.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(1);
/// How often the master is asked how many replicas it has (`ROLE`), between calls.
const ROLE_EVERY: Duration = Duration::from_secs(1);
/// How long a replica that left the master may take to say whether it was promoted.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// After a failed look-up of the master, calls fail at once for this long instead of asking the
/// sentinels again (they need seconds to agree on a new master).
const LOOKUP_PAUSE: Duration = Duration::from_millis(200);

/// Whether `url` names a Redis state store (`redis://`, `rediss://` or `redis+sentinel://`).
pub fn is_redis_url(url: &str) -> bool {
    ["redis://", "rediss://", "redis+sentinel://"].iter().any(|scheme| url.starts_with(scheme))
}

/// The key of a connector config's provider pause in a fleet's Redis: a key with a time to live,
/// set by the workers' limiter and read by the console (one home for the name).
pub fn config_pause_key(namespace: &str, kind: &str, config: &str) -> String {
    format!("{namespace}:pause:{kind}:{config}")
}

/// A connection to the Redis of a state URL, cheap to clone (clones share it); use it like any
/// redis-rs async connection (`query_async`, `Script::invoke_async`, pipelines).
#[derive(Clone)]
pub struct RedisConnection {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    Direct(ConnectionManager),
    Sentinel(Arc<Sentinel>),
}

impl fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Inner::Direct(_) => f.write_str("RedisConnection::Direct"),
            Inner::Sentinel(s) => {
                f.debug_struct("RedisConnection::Sentinel").field("master", &s.master).field("db", &s.db).finish()
            }
        }
    }
}

/// Connects to the Redis named by `url` (see the module documentation) and checks it with a
/// PING, so that a wrong address, master name or password fails here.
pub async fn redis_connect(url: &str) -> RedisResult<RedisConnection> {
    if let Some(rest) = url.strip_prefix("redis+sentinel://") {
        let target = SentinelUrl::parse(rest)?;
        let sentinel = Arc::new(Sentinel::new(target)?);
        let mut connection = RedisConnection { inner: Inner::Sentinel(sentinel) };
        let _pong: String = redis::cmd("PING").query_async(&mut connection).await?;
        return Ok(connection);
    }
    let client = redis::Client::open(url)?;
    let probe_config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT));
    let mut probe = client.get_multiplexed_async_connection_with_config(&probe_config).await?;
    let _pong: String = redis::cmd("PING").query_async(&mut probe).await?;
    drop(probe);
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(RECONNECT_RETRIES)
        .set_max_delay(RECONNECT_MAX_DELAY);
    Ok(RedisConnection { inner: Inner::Direct(ConnectionManager::new_with_config(client, config).await?) })
}

/// The parts of a `redis+sentinel://` URL after the scheme.
#[derive(Debug, PartialEq, Eq)]
struct SentinelUrl {
    sentinels: Vec<(String, u16)>,
    master: String,
    db: i64,
    username: Option<String>,
    password: Option<String>,
    replicas: usize,
}

fn bad_url(reason: String) -> RedisError {
    RedisError::from((
        ErrorKind::InvalidClientConfig,
        "bad redis+sentinel URL (expected redis+sentinel://[[user]:password@]host:port,host:port/master/db)",
        reason,
    ))
}

impl SentinelUrl {
    /// `rest`: everything after `redis+sentinel://`. No error quotes the credentials.
    fn parse(rest: &str) -> RedisResult<SentinelUrl> {
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (userinfo, rest) = match rest.rfind('@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(info) => {
                let (user, password) = info.split_once(':').unwrap_or(("", info));
                let decode = |s: &str| percent_decode(s).map_err(|_| bad_url("the userinfo is not valid UTF-8".into()));
                let user = (!user.is_empty()).then(|| decode(user)).transpose()?;
                let password = (!password.is_empty()).then(|| decode(password)).transpose()?;
                (user, password)
            }
        };
        let mut parts = rest.split('/');
        let hosts = parts.next().unwrap_or_default();
        let master = parts.next().unwrap_or_default();
        let db = parts.next().unwrap_or_default();
        if parts.next().is_some_and(|extra| !extra.is_empty()) {
            return Err(bad_url(format!("unexpected path after the db in {hosts}/{master}/{db}/…")));
        }
        if master.is_empty() {
            return Err(bad_url("no master name".into()));
        }
        let db = if db.is_empty() {
            0
        } else {
            db.parse().map_err(|_| bad_url(format!("the db {db:?} is not a number")))?
        };
        let mut sentinels = Vec::new();
        for host in hosts.split(',') {
            let (name, port) =
                host.rsplit_once(':').ok_or_else(|| bad_url(format!("sentinel {host:?} has no :port")))?;
            let port = port.parse().map_err(|_| bad_url(format!("sentinel {host:?}: the port is not a number")))?;
            if name.is_empty() {
                return Err(bad_url(format!("sentinel {host:?} has no host")));
            }
            sentinels.push((name.trim_start_matches('[').trim_end_matches(']').to_string(), port));
        }
        let mut replicas = 1;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("replicas", n)) => {
                    replicas = n.parse().map_err(|_| bad_url(format!("replicas={n:?} is not a number of replicas")))?;
                }
                _ => {
                    let name = pair.split_once('=').map_or(pair, |(name, _)| name);
                    return Err(bad_url(format!("unknown parameter {name:?} (known: replicas)")));
                }
            }
        }
        Ok(SentinelUrl { sentinels, master: master.to_string(), db, username, password, replicas })
    }
}

/// `%XX` escapes decoded (a `%` without two hex digits stays as is).
pub(crate) fn percent_decode(text: &str) -> Result<String, std::string::FromUtf8Error> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out)
}

/// The master behind a set of sentinels, re-found whenever it is lost.
struct Sentinel {
    master: String,
    /// The sentinels' addresses, to ask which replicas they know, and a connection to the last
    /// one that answered.
    sentinels: Vec<(String, u16)>,
    sentinel_connection: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    db: i64,
    /// Most replicas a call waits for.
    replicas: usize,
    config: AsyncConnectionConfig,
    /// Asks the sentinels; locked by the one caller looking the master up (the others wait for
    /// its answer rather than asking too).
    lookup: tokio::sync::Mutex<SentinelClient>,
    current: Mutex<Current>,
}

#[derive(Default)]
struct Current {
    /// The master's connection and its generation (bumped by every new master connection), so
    /// that an error met on an old connection does not drop a newer one.
    master: Option<(u64, MultiplexedConnection)>,
    generation: u64,
    /// The master's host and port, as the sentinels named it.
    address: Option<(String, u16)>,
    /// Replicas connected to the master at the last `ROLE`, and when that was asked.
    replicas: Vec<(String, u16)>,
    role_asked: Option<Instant>,
    /// How to log in to a node (the master's settings: database, user, password), to ask a
    /// replica that left whether it was promoted.
    node_settings: Option<redis::RedisConnectionInfo>,
    /// A failed look-up, answered again to calls until the pause is over.
    failed: Option<(Instant, RedisError)>,
}

impl Sentinel {
    fn new(url: SentinelUrl) -> RedisResult<Sentinel> {
        let addresses = url.sentinels.iter().map(|(host, port)| ConnectionAddr::Tcp(host.clone(), *port));
        let mut builder = SentinelClientBuilder::new(addresses, url.master.clone(), SentinelServerType::Master)?
            .set_client_to_redis_db(url.db);
        if let Some(user) = &url.username {
            builder = builder.set_client_to_redis_username(user);
        }
        if let Some(password) = &url.password {
            builder = builder.set_client_to_redis_password(password);
        }
        Ok(Sentinel {
            sentinels: url.sentinels.clone(),
            sentinel_connection: tokio::sync::Mutex::new(None),
            master: url.master,
            db: url.db,
            replicas: url.replicas,
            config: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_response_timeout(Some(RESPONSE_TIMEOUT)),
            lookup: tokio::sync::Mutex::new(builder.build()?),
            current: Mutex::new(Current::default()),
        })
    }

    fn current(&self) -> std::sync::MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The master's connection: the one in use, or a new one from the sentinels' answer.
    async fn master(&self) -> RedisResult<(u64, MultiplexedConnection)> {
        if let Some(master) = self.current().master.clone() {
            return Ok(master);
        }
        let mut lookup = self.lookup.lock().await;
        {
            let current = self.current();
            if let Some(master) = current.master.clone() {
                return Ok(master);
            }
            if let Some((at, error)) = &current.failed
                && at.elapsed() < LOOKUP_PAUSE
            {
                return Err(error.clone());
            }
        }
        let found = async {
            let client = lookup.async_get_client().await?;
            let address = client.get_connection_info().addr().to_string();
            let host_port = host_port(client.get_connection_info().addr());
            let settings = client.get_connection_info().redis_settings().clone();
            let mut connection = client.get_multiplexed_async_connection_with_config(&self.config).await?;
            // A failover may be under way: sentinels that disagree, or a replica they know, not
            // this master's, that is a master now and took over this one's history (the sentinels
            // switch once a failover is over), mean that this one is about to be demoted.
            let view = self.sentinel_view().await;
            if let Some(named) = &view.master
                && Some(named) != host_port.as_ref()
            {
                return Err(RedisError::from((
                    ErrorKind::Server(redis::ServerErrorKind::MasterDown),
                    "a failover is under way",
                    format!("one sentinel names {address}, another {}:{}", named.0, named.1),
                )));
            }
            let connected = master_replicas(&mut connection).await?;
            let leaving: Vec<_> = view.replicas.into_iter().filter(|replica| !connected.contains(replica)).collect();
            if !leaving.is_empty() {
                let history = replication_id(&mut connection).await?;
                for (ip, port) in &leaving {
                    if took_over(ip, *port, &settings, &history).await {
                        return Err(RedisError::from((
                            ErrorKind::Server(redis::ServerErrorKind::MasterDown),
                            "a failover is under way",
                            format!("the sentinels name {address}, but {ip}:{port} took over as master"),
                        )));
                    }
                }
            }
            Ok::<_, RedisError>((address, host_port, settings, connection, connected))
        }
        .await;
        let mut current = self.current();
        match found {
            Ok((address, host_port, settings, connection, replicas)) => {
                current.generation += 1;
                current.master = Some((current.generation, connection.clone()));
                tracing::info!(master = %self.master, %address, replicas = replicas.len(), "redis master found through sentinel");
                current.address = host_port;
                current.replicas = replicas;
                current.role_asked = Some(Instant::now());
                current.node_settings = Some(settings);
                current.failed = None;
                Ok((current.generation, connection))
            }
            Err(error) => {
                tracing::warn!(master = %self.master, %error, "no redis master from the sentinels yet");
                current.failed = Some((Instant::now(), error.clone()));
                Err(error)
            }
        }
    }

    /// Forgets the master connection of `generation` (lost or demoted): the next call looks again.
    fn lost(&self, generation: u64) {
        let mut current = self.current();
        if current.master.as_ref().is_some_and(|(g, _)| *g == generation) {
            current.master = None;
        }
    }

    async fn command(&self, cmd: &Cmd) -> RedisResult<Value> {
        let (generation, mut connection) = self.master().await?;
        let result = connection.req_packed_command(cmd).await;
        self.settle(generation, &mut connection, result, lost_master_in).await
    }

    async fn commands(&self, pipeline: &redis::Pipeline, offset: usize, count: usize) -> RedisResult<Vec<Value>> {
        let (generation, mut connection) = self.master().await?;
        let result = connection.req_packed_commands(pipeline, offset, count).await;
        self.settle(generation, &mut connection, result, |values: &Vec<Value>| values.iter().find_map(lost_master_in))
            .await
    }

    /// After a call on the master of `generation`: a lost master is forgotten; a successful call
    /// waits for its replicas (see the module documentation).
    async fn settle<T>(
        &self,
        generation: u64,
        connection: &mut MultiplexedConnection,
        result: RedisResult<T>,
        lost_in: impl Fn(&T) -> Option<RedisError>,
    ) -> RedisResult<T> {
        let value = match result {
            Err(error) => {
                if is_lost_master(&error) {
                    self.lost(generation);
                }
                return Err(error);
            }
            Ok(value) => value,
        };
        if let Some(error) = lost_in(&value) {
            self.lost(generation);
            return Err(error);
        }
        if self.replicas == 0 {
            return Ok(value);
        }
        let ask_role = self.current().role_asked.is_none_or(|at| at.elapsed() >= ROLE_EVERY);
        if ask_role && let Err(error) = self.check_replicas(generation, connection).await {
            if is_lost_master(&error) {
                self.lost(generation);
            }
            return Err(error);
        }
        let wanted = self.replicas.min(self.current().replicas.len());
        if wanted == 0 {
            return Ok(value);
        }
        let acknowledged: usize =
            match redis::cmd("WAIT").arg(wanted).arg(WAIT_TIMEOUT.as_millis() as u64).query_async(connection).await {
                Ok(n) => n,
                Err(error) => {
                    if is_lost_master(&error) {
                        self.lost(generation);
                    }
                    return Err(error);
                }
            };
        if acknowledged < wanted {
            // Ask again at the next call: the replica may be gone.
            self.current().role_asked = None;
            return Err(RedisError::from((
                ErrorKind::Client,
                "write not replicated",
                format!("{acknowledged} of {wanted} replicas acknowledged within {WAIT_TIMEOUT:?}"),
            )));
        }
        Ok(value)
    }
}

impl Sentinel {
    /// Asks the sentinels which master they name and the master for its replicas. A master they
    /// no longer name is given up; so is one failed over that they do not report yet: a replica
    /// that left since the last time, or that the sentinels know and is not the master's (it may
    /// have joined and left between two looks), is asked whether it took over as master (a planned
    /// failover demotes the old master a moment later, and what it acknowledges meanwhile would be
    /// lost). A replica that does not answer is gone, and the master may go on without it.
    async fn check_replicas(&self, generation: u64, connection: &mut MultiplexedConnection) -> RedisResult<()> {
        let view = self.sentinel_view().await;
        let (mut left, settings, address) = {
            let current = self.current();
            (current.replicas.clone(), current.node_settings.clone(), current.address.clone())
        };
        if let Some(named) = &view.master
            && address.as_ref() != Some(named)
        {
            self.lost(generation);
            return Err(RedisError::from((
                ErrorKind::Server(redis::ServerErrorKind::ReadOnly),
                "the master was failed over",
                format!("the sentinels name {}:{} now", named.0, named.1),
            )));
        }
        let now = master_replicas(connection).await?;
        left.extend(view.replicas);
        left.sort();
        left.dedup();
        left.retain(|replica| !now.contains(replica));
        let history = if left.is_empty() { String::new() } else { replication_id(connection).await? };
        for (ip, port) in &left {
            if let Some(settings) = &settings
                && took_over(ip, *port, settings, &history).await
            {
                self.lost(generation);
                return Err(RedisError::from((
                    ErrorKind::Server(redis::ServerErrorKind::ReadOnly),
                    "the master was failed over",
                    format!("its replica {ip}:{port} is the master now"),
                )));
            }
        }
        let mut current = self.current();
        current.replicas = now;
        current.role_asked = Some(Instant::now());
        Ok(())
    }
}

impl Sentinel {
    /// The master a sentinel names and the replicas it knows for it (up or down), asked of the one
    /// that answered last, else of each in turn; nothing when no sentinel answers.
    async fn sentinel_view(&self) -> SentinelView {
        use redis::IntoConnectionInfo;
        type Answer = (Option<(String, String)>, Vec<std::collections::HashMap<String, String>>);
        let mut cached = self.sentinel_connection.lock().await;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(PROBE_TIMEOUT))
            .set_response_timeout(Some(PROBE_TIMEOUT));
        let mut ask = redis::pipe();
        ask.cmd("SENTINEL").arg("GET-MASTER-ADDR-BY-NAME").arg(&self.master);
        ask.cmd("SENTINEL").arg("REPLICAS").arg(&self.master);
        let mut answer: Option<Answer> = None;
        if let Some(connection) = cached.as_mut() {
            answer = ask.query_async::<Answer>(connection).await.ok();
        }
        if answer.is_none() {
            *cached = None;
            for (host, port) in &self.sentinels {
                let asked = async {
                    let info = ConnectionAddr::Tcp(host.clone(), *port).into_connection_info()?;
                    let mut connection =
                        redis::Client::open(info)?.get_multiplexed_async_connection_with_config(&config).await?;
                    let answer = ask.query_async::<Answer>(&mut connection).await?;
                    Ok::<_, RedisError>((connection, answer))
                };
                if let Ok((connection, asked)) = asked.await {
                    *cached = Some(connection);
                    answer = Some(asked);
                    break;
                }
            }
        }
        let Some((master, replicas)) = answer else { return SentinelView::default() };
        SentinelView {
            master: master.and_then(|(ip, port)| Some((ip, port.parse().ok()?))),
            replicas: replicas
                .into_iter()
                .filter_map(|replica| Some((replica.get("ip")?.clone(), replica.get("port")?.parse().ok()?)))
                .collect(),
        }
    }
}

/// What a sentinel says of the master.
#[derive(Default)]
struct SentinelView {
    master: Option<(String, u16)>,
    replicas: Vec<(String, u16)>,
}

fn host_port(addr: &ConnectionAddr) -> Option<(String, u16)> {
    match addr {
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => Some((host.clone(), *port)),
        _ => None,
    }
}

/// `field` of `INFO replication` on `connection`.
async fn replication_info(connection: &mut MultiplexedConnection, field: &str) -> RedisResult<String> {
    let info: String = redis::cmd("INFO").arg("replication").query_async(connection).await?;
    Ok(info
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .map(|value| value.trim().to_string())
        .unwrap_or_default())
}

/// The master's replication id: the history its replicas follow.
async fn replication_id(connection: &mut MultiplexedConnection) -> RedisResult<String> {
    replication_info(connection, "master_replid").await
}

/// Whether the node at `ip:port` is a master that took over the history `replication_id` (a
/// promoted replica keeps its old master's id as `master_replid2`), asked within a short time.
/// A master that does not answer, or that answers with another history, did not.
async fn took_over(ip: &str, port: u16, settings: &redis::RedisConnectionInfo, replication_id: &str) -> bool {
    use redis::IntoConnectionInfo;
    let probe = async {
        let info =
            ConnectionAddr::Tcp(ip.to_string(), port).into_connection_info()?.set_redis_settings(settings.clone());
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(PROBE_TIMEOUT))
            .set_response_timeout(Some(PROBE_TIMEOUT));
        let mut connection = redis::Client::open(info)?.get_multiplexed_async_connection_with_config(&config).await?;
        let role = replication_info(&mut connection, "role").await?;
        let previous = replication_info(&mut connection, "master_replid2").await?;
        Ok::<_, RedisError>(role == "master" && previous == replication_id)
    };
    !replication_id.is_empty() && probe.await.unwrap_or(false)
}

/// The replicas connected to the master on `connection`; an error when it is no master (any more).
async fn master_replicas(connection: &mut MultiplexedConnection) -> RedisResult<Vec<(String, u16)>> {
    match redis::cmd("ROLE").query_async(connection).await? {
        redis::Role::Primary { replicas, .. } => Ok(replicas.into_iter().map(|r| (r.ip, r.port)).collect()),
        _ => Err(RedisError::from((
            ErrorKind::Server(redis::ServerErrorKind::ReadOnly),
            "the sentinels' master is no master any more",
        ))),
    }
}

/// Whether an error means the master must be found again: the connection is gone, or the node
/// is no longer (or not yet) a writable master.
fn is_lost_master(error: &RedisError) -> bool {
    use redis::ServerErrorKind::{BusyLoading, MasterDown, ReadOnly};
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || error.is_unrecoverable_error()
        || matches!(error.kind(), ErrorKind::Server(ReadOnly | MasterDown | BusyLoading))
}

/// The error in a reply that says the master is lost. Server errors come back as values, not as
/// the call's result: a command's own (`READONLY` for a write to a demoted master), or an item's of
/// an array (a batched script answers each item, an item's error included, in an array).
fn lost_master_in(value: &Value) -> Option<RedisError> {
    let lost = |value: &Value| match value {
        Value::ServerError(error) => Some(RedisError::from(error.clone())).filter(is_lost_master),
        _ => None,
    };
    match value {
        Value::Array(items) => items.iter().find_map(lost),
        value => lost(value),
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.inner {
            Inner::Direct(manager) => manager.req_packed_command(cmd),
            Inner::Sentinel(sentinel) => Box::pin(sentinel.command(cmd)),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.inner {
            Inner::Direct(manager) => manager.req_packed_commands(pipeline, offset, count),
            Inner::Sentinel(sentinel) => Box::pin(sentinel.commands(pipeline, offset, count)),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.inner {
            Inner::Direct(manager) => manager.get_db(),
            Inner::Sentinel(sentinel) => sentinel.db,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> RedisResult<SentinelUrl> {
        SentinelUrl::parse(url.strip_prefix("redis+sentinel://").unwrap())
    }

    /// A demoted master answers a write with `READONLY`, as the reply itself or, from a batched
    /// script, as one item of it: either way the master is to be found again. Other errors are
    /// the call's alone.
    #[test]
    fn readonly_in_a_reply_or_in_an_item_means_the_master_is_lost() {
        let value = |resp: &str| redis::parse_redis_value(resp.as_bytes()).unwrap();
        let readonly = "-READONLY You can't write against a read only replica.\r\n";
        assert!(lost_master_in(&value(readonly)).is_some());
        assert!(lost_master_in(&value(&format!("*2\r\n:1\r\n{readonly}"))).is_some());
        assert!(lost_master_in(&value("-ERR corrupt record\r\n")).is_none());
        assert!(lost_master_in(&value("*2\r\n:1\r\n-ERR corrupt record\r\n")).is_none());
        assert!(lost_master_in(&value("+OK\r\n")).is_none());
    }

    #[test]
    fn sentinel_urls_name_the_sentinels_the_master_and_the_db() {
        let url = parse("redis+sentinel://10.0.0.1:26379,10.0.0.2:26380/mymaster/2").unwrap();
        assert_eq!(url.sentinels, [("10.0.0.1".to_string(), 26379), ("10.0.0.2".to_string(), 26380)]);
        assert_eq!((url.master.as_str(), url.db, url.replicas), ("mymaster", 2, 1));
        assert_eq!((url.username, url.password), (None, None));
        let url = parse("redis+sentinel://app:p%40ss@h:1/m?replicas=0").unwrap();
        assert_eq!((url.username.as_deref(), url.password.as_deref()), (Some("app"), Some("p@ss")));
        assert_eq!((url.db, url.replicas), (0, 0));
        let url = parse("redis+sentinel://:secret@[::1]:26379/m/").unwrap();
        assert_eq!(url.sentinels, [("::1".to_string(), 26379)]);
        assert_eq!(url.password.as_deref(), Some("secret"));
    }

    #[test]
    fn bad_sentinel_urls_say_what_is_wrong_without_the_password() {
        for (url, reason) in [
            ("redis+sentinel://:secret@h:1", "no master name"),
            ("redis+sentinel://:secret@h/m/0", "has no :port"),
            ("redis+sentinel://:secret@h:x/m/0", "port is not a number"),
            ("redis+sentinel://:secret@h:1/m/zero", "is not a number"),
            ("redis+sentinel://:secret@h:1/m/0?wait=1", "unknown parameter \"wait\""),
            ("redis+sentinel://:secret@h:1/m/0?replicas=-1", "not a number of replicas"),
        ] {
            let error = parse(url).unwrap_err().to_string();
            assert!(error.contains(reason), "{url}: {error}");
            assert!(!error.contains("secret"), "{url}: {error}");
        }
    }

    #[test]
    fn redis_urls_are_recognised() {
        assert!(is_redis_url("redis://h:6379/0"));
        assert!(is_redis_url("rediss://h:6379/0"));
        assert!(is_redis_url("redis+sentinel://h:26379/m/0"));
        assert!(!is_redis_url("sqlite://state.db"));
        assert!(!is_redis_url("postgres://h/db"));
    }

    #[tokio::test]
    async fn a_plain_url_connects_and_a_sentinel_url_without_sentinels_fails() {
        let mut connection = redis_connect("redis://127.0.0.1:6379/0").await.unwrap();
        let pong: String = redis::cmd("PING").query_async(&mut connection).await.unwrap();
        assert_eq!(pong, "PONG");
        // Nothing listens on port 1.
        let error = redis_connect("redis+sentinel://127.0.0.1:1/mymaster/0").await.unwrap_err();
        assert!(error.is_connection_refusal() || error.is_io_error(), "{error}");
    }
}

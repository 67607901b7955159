//! `directory_sync`: the account connector's sync center with logic scripts (seed 001, issue 21).
//!
//! A run ([`DirectorySync::execute`] of action `run`):
//! 1. takes the config's lease in the state store (one run per config across the fleet; renewed
//!    while it runs), else it is retried later;
//! 2. reads the source directory through the source config's catalog actions ([`source`]);
//! 3. compares it with the snapshot the last finished run saved ([`model::diff`]): CREATE, UPDATE,
//!    DELETE or DISABLE per record, departments created parents first, then members, then
//!    departments deleted children first;
//! 4. passes each proposal through the logic script ([`script`]), on a blocking thread, each record
//!    in a fresh QuickJS context with a time and memory limit;
//! 5. applies what the script decided to the target ([`target`]), marking each operation applied
//!    in the store as it goes, and skipping those a previous, interrupted try already applied;
//! 6. saves the new snapshot (records applied take their source state; aborted and failed ones
//!    keep what the target had, so the next run proposes them again) and forgets the marks.
//!
//! The result counts the operations applied per type and operation, and lists the records the
//! script aborted and those that failed (with the script's message and line, or the target's
//! answer). `dry_run` reports the plan and changes nothing; `full` proposes every record again.
//!
//! `schedule` is carried by every worker's [`run_schedules`]: once per period one of them (a
//! claim in the store) enqueues a `run` job.

pub mod config;
mod directory_target;
pub mod model;
pub mod script;
mod source;
pub mod target;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use yizhan_broker::{Message, Names, Publisher};
use yizhan_schemas::{Endpoint, MissingId, Priority};
use yizhan_state::DirectoryStore;

use self::config::{SyncConfig, Target};
use self::model::{Proposed, Snapshot};
use self::script::{Decision, Operation};
use self::source::Caller;
use self::target::ApplyError;
use super::call::{Call, Connector, Failure, Success};
use crate::config::{Config, ConfigError, ConnectorConfig};
use crate::ratelimit::{Limiter, Quota};

/// How long a run's lease lasts without renewal (a worker that died mid-run frees it after this).
const LEASE: Duration = Duration::from_secs(30);

/// What a run needs besides its config, given once the worker has opened them.
pub struct Wiring {
    /// The source config's connector, quotas and the limiter.
    pub(crate) source: Caller,
    /// The target config's connector, quotas and the limiter (a `wecom` or `feishu` target).
    pub(crate) target: Option<Caller>,
    /// Snapshots, applied marks, leases.
    pub store: Arc<dyn DirectoryStore>,
    /// Confirmed publishing (amqp target); None when the sync does not publish.
    pub publisher: Option<Arc<Publisher>>,
    /// The exchange of the amqp target, `<prefix>.directory`.
    pub exchange: String,
    /// This worker, the owner of the leases it takes.
    pub owner: String,
}

/// A `directory_sync` config.
pub struct DirectorySync {
    name: String,
    settings: SyncConfig,
    client: reqwest::Client,
    wiring: OnceLock<Wiring>,
}

impl std::fmt::Debug for DirectorySync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectorySync")
            .field("name", &self.name)
            .field("source", &self.settings.source)
            .finish_non_exhaustive()
    }
}

/// One applied or refused operation, as the result lists it.
#[derive(Debug, Clone, serde::Serialize)]
struct Outcome {
    #[serde(rename = "type")]
    object: &'static str,
    id: String,
    operation: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

impl DirectorySync {
    /// Checks the config (source and target syntax, script compiled, schedule, on_missing).
    pub fn new(config: &ConnectorConfig, client: reqwest::Client) -> Result<Self, ConfigError> {
        let settings = SyncConfig::from_config(config)?;
        Ok(DirectorySync { name: config.name.clone(), settings, client, wiring: OnceLock::new() })
    }

    /// The config's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The checked config.
    pub fn settings(&self) -> &SyncConfig {
        &self.settings
    }

    /// Gives the run what the worker opened; the first call wins.
    pub fn wire(&self, wiring: Wiring) {
        let _ = self.wiring.set(wiring);
    }

    fn wiring(&self) -> Result<&Wiring, Failure> {
        self.wiring.get().ok_or_else(|| Failure::transient("directory sync is not wired yet"))
    }

    async fn run(&self, call: Call<'_>) -> Result<Success, Failure> {
        let wiring = self.wiring()?;
        let dry_run = call.params["dry_run"].as_bool().unwrap_or(false);
        let full = call.params["full"].as_bool().unwrap_or(false);
        let lease = format!("run:{}", self.name);
        let store_failure = |e: yizhan_state::StoreError| Failure::transient(format!("state store: {e}"));
        if !wiring.store.lease(&lease, &wiring.owner, LEASE).await.map_err(store_failure)? {
            return Err(Failure::Transient {
                reason: format!("another run of {} is in progress", self.name),
                retry_after: Some(Duration::from_secs(2)),
                progress: None,
            });
        }
        let renewing = CancellationToken::new();
        let renewal = tokio::spawn({
            let (store, owner, lease, stop) =
                (wiring.store.clone(), wiring.owner.clone(), lease.clone(), renewing.clone());
            async move {
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(LEASE / 3) => {
                            if let Err(e) = store.lease(&lease, &owner, LEASE).await {
                                warn!(error = %e, "renewing a directory sync lease failed");
                            }
                        }
                    }
                }
            }
        });
        let outcome = self.run_leased(wiring, call, dry_run, full).await;
        renewing.cancel();
        let _ = renewal.await;
        if let Err(e) = wiring.store.release(&lease, &wiring.owner).await {
            warn!(error = %e, "releasing a directory sync lease failed");
        }
        outcome
    }

    async fn run_leased(&self, wiring: &Wiring, call: Call<'_>, dry_run: bool, full: bool) -> Result<Success, Failure> {
        let store_failure = |e: yizhan_state::StoreError| Failure::transient(format!("state store: {e}"));
        let source = source::read(&wiring.source, call.job_id).await?;
        let mut snapshot: Snapshot = match wiring.store.snapshot(&self.name).await.map_err(store_failure)? {
            Some(text) => serde_json::from_str(&text)
                .map_err(|e| Failure::permanent(format!("the stored snapshot of {} is unreadable: {e}", self.name)))?,
            None => Snapshot::default(),
        };
        let proposals = model::diff(&self.name, &snapshot, &source, self.settings.on_missing, full);
        let decisions = self.decide(&proposals, &source, &snapshot).await?;
        let applied_before =
            if dry_run { Default::default() } else { wiring.store.applied(&self.name).await.map_err(store_failure)? };
        // Target ids recorded by an interrupted try of this run (the snapshot has the older ones).
        for mark in &applied_before {
            if let Some((key, id)) = mark.strip_prefix(TARGET_ID_MARK).and_then(|rest| rest.split_once('\t')) {
                snapshot.target_ids.insert(key.to_string(), id.to_string());
            }
        }

        let mut counts: BTreeMap<&'static str, BTreeMap<&'static str, u64>> = BTreeMap::new();
        let (mut aborted, mut failed, mut planned) = (Vec::new(), Vec::new(), Vec::new());
        let mut skipped = 0u64;
        for (proposal, decision) in proposals.iter().zip(decisions) {
            let object = proposal.object.as_str();
            let decision = match decision {
                Ok(decision) => decision,
                Err(reason) => {
                    failed.push(Outcome {
                        object,
                        id: proposal.record_id.clone(),
                        operation: proposal.operation.as_str(),
                        reason: Some(reason),
                    });
                    continue;
                }
            };
            let operations = resolve(&decision, proposal, &snapshot);
            if operations.is_empty() {
                aborted.push(Outcome {
                    object,
                    id: proposal.record_id.clone(),
                    operation: proposal.operation.as_str(),
                    reason: None,
                });
                continue;
            }
            let mut ok = true;
            for operation in &operations {
                let mark = format!("{}:{}", proposal.id, operation.as_str());
                if dry_run {
                    planned.push(Outcome {
                        object,
                        id: proposal.record_id.clone(),
                        operation: operation.as_str(),
                        reason: None,
                    });
                    continue;
                }
                if applied_before.contains(&mark) {
                    skipped += 1;
                    continue;
                }
                let body = json!({
                    "operation_id": mark, "config": self.name, "operationType": operation.as_str(), "type": object,
                    "id": proposal.record_id, "data": decision.data, "previous": proposal.before,
                });
                let change = directory_target::Change {
                    object: proposal.object,
                    source_id: &proposal.record_id,
                    record: &decision.data,
                    operation: *operation,
                    operation_id: &mark,
                };
                match self.apply(wiring, &change, &body, &snapshot.target_ids, call.job_id).await {
                    Ok(target_id) => {
                        if let Some(id) = target_id {
                            let key = directory_target::id_key(proposal.object, &proposal.record_id);
                            let id_mark = format!("{TARGET_ID_MARK}{key}\t{id}");
                            wiring.store.mark_applied(&self.name, &id_mark).await.map_err(store_failure)?;
                            snapshot.target_ids.insert(key, id);
                        }
                        wiring.store.mark_applied(&self.name, &mark).await.map_err(store_failure)?;
                        *counts.entry(object).or_default().entry(operation.as_str()).or_default() += 1;
                    }
                    Err(ApplyError::Record(reason)) => {
                        ok = false;
                        failed.push(Outcome {
                            object,
                            id: proposal.record_id.clone(),
                            operation: operation.as_str(),
                            reason: Some(reason),
                        });
                        break;
                    }
                    Err(ApplyError::Unavailable(reason)) => {
                        // Marks stay: the retry of this run applies the rest, not these again.
                        return Err(Failure::Transient { reason, retry_after: None, progress: None });
                    }
                }
            }
            if ok && !dry_run {
                record_applied(&mut snapshot, proposal, &operations);
            }
        }
        if !dry_run {
            let text = serde_json::to_string(&snapshot).expect("a snapshot serialises");
            wiring.store.finish_run(&self.name, &text).await.map_err(store_failure)?;
        }
        info!(config = %self.name, proposals = proposals.len(), failed = failed.len(), aborted = aborted.len(), dry_run, "directory sync run finished");
        let mut result = json!({
            "dry_run": dry_run, "full": full, "proposed": proposals.len(), "counts": counts,
            "aborted": aborted, "failed": failed, "already_applied": skipped,
        });
        if dry_run {
            result["planned"] = json!(planned);
        }
        Ok(Success { result: Some(result), ..Default::default() })
    }

    /// The script's decision for every proposal (all proposed operations without a script).
    async fn decide(
        &self,
        proposals: &[Proposed],
        source: &Snapshot,
        snapshot: &Snapshot,
    ) -> Result<Vec<Result<Decision, String>>, Failure> {
        let Some(script) = self.settings.script.clone() else {
            return Ok(proposals
                .iter()
                .map(|p| Ok(Decision { data: p.record().clone(), operations: vec![p.operation], aborted: Vec::new() }))
                .collect());
        };
        let mut objects = snapshot.objects();
        objects.extend(source.objects());
        let inputs: Vec<(Value, Operation)> = proposals.iter().map(|p| (p.record().clone(), p.operation)).collect();
        let today = jiff::Timestamp::now().as_second().div_euclid(86_400) * 86_400;
        tokio::task::spawn_blocking(move || {
            let runner = script.runner(today, objects).map_err(|e| Failure::permanent(e.to_string()))?;
            Ok(inputs.iter().map(|(record, operation)| runner.decide(record, *operation)).collect())
        })
        .await
        .map_err(|e| Failure::transient(format!("the script thread failed: {e}")))?
    }

    /// Applies one operation; returns the id a directory target gave a new object.
    async fn apply(
        &self,
        wiring: &Wiring,
        change: &directory_target::Change<'_>,
        body: &Value,
        ids: &BTreeMap<String, String>,
        job_id: uuid::Uuid,
    ) -> Result<Option<String>, ApplyError> {
        let mark = change.operation_id;
        match &self.settings.target {
            Target::Webhook { url, secret } => {
                target::webhook(&self.client, url, secret.as_ref(), mark, body).await.map(|()| None)
            }
            Target::Amqp => match &wiring.publisher {
                Some(publisher) => target::amqp(publisher, &wiring.exchange, change.operation.as_str(), mark, body)
                    .await
                    .map(|()| None),
                None => Err(ApplyError::Unavailable("no publisher for the amqp target".into())),
            },
            Target::Directory(directory) => match &wiring.target {
                Some(caller) => {
                    let source_kind = self.settings.source.kind.as_str();
                    directory_target::DirectoryTarget { caller, source_kind, ids, job_id }.apply(change).await
                }
                None => Err(ApplyError::Unavailable(format!(
                    "the target {}.{} is not wired",
                    directory.kind, directory.name
                ))),
            },
        }
    }
}

/// Prefix of the applied mark that records a target id (`id\t<key>\t<target id>`).
const TARGET_ID_MARK: &str = "id\t";

/// The operations to apply for a decision, against what the target holds: CREATE of a record it
/// has is an UPDATE, UPDATE of one it lacks a CREATE; DELETE and DISABLE of one it lacks are
/// nothing.
fn resolve(decision: &Decision, proposal: &Proposed, snapshot: &Snapshot) -> Vec<Operation> {
    let held = snapshot.of(proposal.object).contains_key(&proposal.record_id);
    let mut out: Vec<Operation> = Vec::new();
    for operation in &decision.operations {
        let effective = match (operation, held) {
            (Operation::Create, true) => Some(Operation::Update),
            (Operation::Update, false) => Some(Operation::Create),
            (Operation::Delete | Operation::Disable, false) => None,
            (other, _) => Some(*other),
        };
        if let Some(op) = effective.filter(|op| !out.contains(op) && !decision.aborted.contains(op)) {
            out.push(op);
        }
    }
    out
}

/// The snapshot after a proposal's operations were applied.
fn record_applied(snapshot: &mut Snapshot, proposal: &Proposed, operations: &[Operation]) {
    let records = snapshot.of_mut(proposal.object);
    for operation in operations {
        match operation {
            Operation::Create | Operation::Update => {
                if let Some(after) = &proposal.after {
                    records.insert(proposal.record_id.clone(), after.clone());
                }
            }
            Operation::Delete | Operation::Disable => {
                records.remove(&proposal.record_id);
            }
        }
    }
    // A disabled member stays in the target: its id is kept for when it comes back.
    if operations.contains(&Operation::Delete) {
        snapshot.target_ids.remove(&directory_target::id_key(proposal.object, &proposal.record_id));
    }
}

#[async_trait::async_trait]
impl Connector for DirectorySync {
    async fn execute(&self, call: Call<'_>) -> Result<Success, Failure> {
        match call.action.endpoint {
            Endpoint::DirectorySync => self.run(call).await,
            other => Err(Failure::permanent(format!("directory_sync cannot execute {other:?}"))),
        }
    }
}

/// Every sync config's source and target must name configs the file has: checked at start, each
/// error naming the field.
pub fn check_references(config: &Config, syncs: &[Arc<DirectorySync>]) -> Result<(), ConfigError> {
    for sync in syncs {
        let at = |field: &str| format!("connectors.directory_sync.{}.{field}", sync.name);
        let source = &sync.settings.source;
        if config.get(&source.kind, &source.name).is_none() {
            return Err(ConfigError::field(at("source"), format!("no {} config named {:?}", source.kind, source.name)));
        }
        if let Target::Directory(target) = &sync.settings.target
            && config.get(&target.kind, &target.name).is_none()
        {
            return Err(ConfigError::field(at("target"), format!("no {} config named {:?}", target.kind, target.name)));
        }
    }
    Ok(())
}

/// Every built connector by (kind, name), with the config's limits.
pub type Built = HashMap<(String, String), (Arc<dyn Connector>, Vec<Quota>)>;

/// What [`wire_all`] needs of the worker.
pub struct Services<'a> {
    /// Every built connector by (kind, name).
    pub connectors: &'a Built,
    /// The worker's limiter.
    pub limiter: Arc<dyn Limiter>,
    /// The store of snapshots and leases.
    pub store: Arc<dyn DirectoryStore>,
    /// A publisher on the worker's publishing connection.
    pub publisher: Arc<Publisher>,
    /// The deployment's names.
    pub names: &'a Names,
    /// This worker.
    pub owner: &'a str,
}

/// The exchange of the amqp target.
pub fn exchange(names: &Names) -> String {
    format!("{}.directory", names.prefix)
}

/// Gives every sync its source connector and the services; declares `<prefix>.directory` when a
/// sync publishes there.
pub async fn wire_all(syncs: &[Arc<DirectorySync>], services: Services<'_>) -> Result<(), lapin::Error> {
    let exchange = exchange(services.names);
    if syncs.iter().any(|s| matches!(s.settings.target, Target::Amqp)) {
        services
            .publisher
            .channel()
            .exchange_declare(
                exchange.as_str().into(),
                lapin::ExchangeKind::Topic,
                lapin::options::ExchangeDeclareOptions { durable: true, ..Default::default() },
                lapin::types::FieldTable::default(),
            )
            .await?;
    }
    for sync in syncs {
        let key = (sync.settings.source.kind.clone(), sync.settings.source.name.clone());
        let caller = |key: (String, String)| {
            services.connectors.get(&key).map(|(connector, quotas)| Caller {
                connector: connector.clone(),
                config: key,
                quotas: quotas.clone(),
                limiter: services.limiter.clone(),
            })
        };
        let Some(source) = caller(key) else { continue };
        let target = match &sync.settings.target {
            Target::Directory(directory) => caller((directory.kind.clone(), directory.name.clone())),
            _ => None,
        };
        sync.wire(Wiring {
            source,
            target,
            store: services.store.clone(),
            publisher: Some(services.publisher.clone()),
            exchange: exchange.clone(),
            owner: services.owner.to_string(),
        });
    }
    Ok(())
}

/// How often a worker looks whether a scheduled period began.
const SCHEDULE_POLL: Duration = Duration::from_millis(500);

/// Every scheduled sync's name and period; swapped whole by a reload, read by [`run_schedules`]
/// at each look.
pub type Schedules = Arc<arc_swap::ArcSwap<Vec<(String, Duration)>>>;

/// The schedules of `syncs`.
pub fn schedules(syncs: &[Arc<DirectorySync>]) -> Vec<(String, Duration)> {
    syncs.iter().filter_map(|s| Some((s.name().to_string(), s.settings().schedule?))).collect()
}

/// Enqueues a `run` job for each scheduled sync once per period, fleet-wide: the worker that
/// first claims the period in the store publishes it (idempotency key
/// `directory_sync:<config>:<period>`, so even a duplicate publish runs once). The schedules are
/// read again at each look, so that a reload's schedules take effect without a restart.
pub async fn run_schedules(
    syncs: Schedules,
    store: Arc<dyn DirectoryStore>,
    publisher: Arc<Publisher>,
    names: Names,
    stop: CancellationToken,
) {
    loop {
        let now_ms = u128::from(yizhan_state::now_millis().max(0) as u64);
        let current = syncs.load_full();
        for (name, every) in current.iter() {
            let period = now_ms / every.as_millis().max(1);
            let claim = format!("schedule:{name}:{period}");
            match store.claim_once(&claim, *every * 2).await {
                Ok(true) => {
                    if let Err(e) = enqueue(&publisher, &names, name, period).await {
                        warn!(config = %name, error = %e, "could not enqueue a scheduled directory sync");
                    }
                }
                Ok(false) => {}
                Err(e) => warn!(config = %name, error = %e, "could not claim a directory sync period"),
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(SCHEDULE_POLL) => {}
        }
    }
}

async fn enqueue(publisher: &Publisher, names: &Names, name: &str, period: u128) -> Result<(), String> {
    let value = json!({
        "connector": "directory_sync", "config": name, "action": "run", "params": {},
        "idempotency_key": format!("directory_sync:{name}:{period}"), "priority": "normal",
    });
    let job = yizhan_schemas::validate_job_value(&value, MissingId::Assign).map_err(|e| format!("{e:?}"))?;
    let body = serde_json::to_vec(&job).map_err(|e| e.to_string())?;
    let id = job.id.to_string();
    let exchange = names.jobs_exchange();
    publisher
        .publish(Message {
            exchange: &exchange,
            routing_key: Priority::Normal.as_str(),
            body: &body,
            message_id: Some(&id),
            headers: lapin::types::FieldTable::default(),
            expiration_ms: None,
        })
        .await
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;

//! Reloading the connector config file without a restart: on SIGHUP, and on a reload message on
//! `<prefix>.control` (sent by the API's `POST /v1/admin/reload`; each worker has its own
//! exclusive auto-delete queue bound to that fanout exchange).
//!
//! The new file is read and every config built before anything changes; a file with an error is
//! refused (logged with the config path of the error) and the old configs stay in force. Otherwise
//! the whole map is swapped at once ([`crate::pipeline::Pipeline::connectors`]): the next job
//! takes the new configs (secrets, endpoints, limits, rules), jobs in flight finish on the ones
//! they started with, and a job naming a removed config is dead-lettered `invalid` when taken.
//! Directory syncs are built and wired again too, on the new map's source and target connectors:
//! a run that starts after the reload uses the new sync config and the new secrets of its source
//! and target, a run in progress finishes on the old ones, and the schedules follow the new file.
//! (Until the worker has opened the directory store, during its start, a reload keeps the syncs
//! it started with.)

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use futures::StreamExt;
use lapin::Connection;
use lapin::options::BasicConsumeOptions;
use lapin::types::FieldTable;
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};
use yizhan_broker::{Names, Publisher};
use yizhan_state::DirectoryStore;

use crate::config::{Config, ConfigError};
use crate::connectors::directory_sync::{self, DirectorySync, Schedules};
use crate::connectors::{self};
use crate::pipeline::{Configured, ConfiguredMap, Pipeline};
use crate::ratelimit::Quota;

/// Builds every connector of `config` (directory syncs also returned apart, to be wired).
pub(crate) fn build_configured(
    config: &Config,
    client: &reqwest::Client,
) -> Result<(ConfiguredMap, Vec<Arc<DirectorySync>>), ConfigError> {
    let mut configured = ConfiguredMap::new();
    let mut syncs = Vec::new();
    for ((kind, name), connector_config) in &config.connectors {
        let spec = yizhan_schemas::find_kind(kind).expect("config checked kinds");
        let quota_text = connector_config.common.rate_limit.as_deref().unwrap_or(spec.default_rate_limit);
        let quotas =
            Quota::parse_all(quota_text).map_err(|reason| ConfigError::field(connector_config.path(), reason))?;
        let per_recipient = spec
            .actions
            .iter()
            .filter_map(|action| Some((action.name, action.per_recipient?)))
            .map(|(name, limit)| (name, Quota::parse_all(limit.rate).expect("catalog rates parse (tested)")))
            .collect();
        // Directory syncs are kept aside to be wired to their sources and the store.
        let connector: Arc<dyn connectors::Connector> = if kind == "directory_sync" {
            let sync = Arc::new(DirectorySync::new(connector_config, client.clone())?);
            syncs.push(sync.clone());
            sync
        } else {
            connectors::build(connector_config, client)?
        };
        configured.insert(
            (kind.clone(), name.clone()),
            Configured {
                connector,
                quotas,
                per_recipient,
                on_ambiguous: connector_config.common.on_ambiguous,
                rules: connector_config.common.time_rules().clone(),
                fallback: connector_config.common.fallback(),
            },
        );
    }
    connectors::directory_sync::check_references(config, &syncs)?;
    Ok((configured, syncs))
}

/// What a reload reads, and where it puts the result.
pub(crate) struct Reloader {
    pub(crate) path: PathBuf,
    pub(crate) client: reqwest::Client,
    pub(crate) pipeline: Arc<Pipeline>,
    /// What reloaded directory syncs are wired with; set once the worker has opened it.
    pub(crate) syncs: OnceLock<SyncServices>,
}

/// The services of directory syncs that a reload wires new ones with.
pub(crate) struct SyncServices {
    /// Snapshots, applied marks, leases.
    pub(crate) store: Arc<dyn DirectoryStore>,
    /// The syncs' publisher (amqp targets, scheduled runs).
    pub(crate) publisher: Arc<Publisher>,
    /// What the schedules loop reads.
    pub(crate) schedules: Schedules,
}

/// Why a reload was refused; nothing changed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReloadError {
    /// The file, or a config in it, is invalid (the error names the field).
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The exchange of a new amqp directory target could not be declared.
    #[error("broker (declaring the directory exchange): {0}")]
    Broker(#[from] lapin::Error),
}

impl Reloader {
    /// Reads and builds the file, then swaps the configs in; on an error nothing changes.
    pub(crate) async fn reload(&self, why: &str) -> Result<(), ReloadError> {
        let config = Config::load(&self.path)?;
        let (mut fresh, syncs) = build_configured(&config, &self.client)?;
        let current = self.pipeline.connectors.load_full();
        match self.syncs.get() {
            // The new syncs read through the new connectors: rotated secrets, moved endpoints.
            Some(services) => {
                let built: directory_sync::Built = fresh
                    .iter()
                    .map(|(key, configured)| (key.clone(), (configured.connector.clone(), configured.quotas.clone())))
                    .collect();
                let wiring = directory_sync::Services {
                    connectors: &built,
                    limiter: self.pipeline.limiter.clone(),
                    store: services.store.clone(),
                    publisher: services.publisher.clone(),
                    names: &self.pipeline.names,
                    owner: &self.pipeline.owner,
                };
                directory_sync::wire_all(&syncs, wiring).await?;
                services.schedules.store(Arc::new(directory_sync::schedules(&syncs)));
            }
            // Not wired yet (the worker is starting): the syncs stay as they are.
            None => {
                fresh.retain(|(kind, _), _| kind != "directory_sync");
                for (key, configured) in current.iter().filter(|((kind, _), _)| kind == "directory_sync") {
                    fresh.insert(key.clone(), configured.clone());
                }
            }
        }
        let removed: Vec<String> = current
            .keys()
            .filter(|key| !fresh.contains_key(*key))
            .map(|(kind, name)| format!("{kind}.{name}"))
            .collect();
        let added: Vec<String> = fresh
            .keys()
            .filter(|key| !current.contains_key(*key))
            .map(|(kind, name)| format!("{kind}.{name}"))
            .collect();
        let configs = fresh.len();
        self.pipeline.connectors.store(Arc::new(fresh));
        // An audit line (target `yizhan_audit`, at warn like the API's, so default filters keep it).
        warn!(target: "yizhan_audit", action = "reload", by = why, configs, ?added, ?removed, "connector configs reloaded");
        Ok(())
    }

    async fn reload_logged(&self, why: &str) {
        if let Err(e) = self.reload(why).await {
            error!(error = %e, by = why, "reload refused: the previous connector configs stay in force");
        }
    }
}

/// Why the worker could not listen for reload messages.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// The broker refused the control queue's channel or consumer.
    #[error("broker (the consuming connection): {0}")]
    Broker(#[from] lapin::Error),
    /// Declaring the control queue failed.
    #[error("{0}")]
    Topology(#[from] yizhan_broker::TopologyError),
}

/// Reloads on SIGHUP and on every message of this worker's control queue, until `stop`.
pub(crate) async fn listen(
    reloader: Arc<Reloader>,
    connection: Arc<Connection>,
    names: Names,
    tag: String,
    stop: CancellationToken,
) -> Result<(), ListenError> {
    let channel = connection.create_channel().await?;
    let queue = yizhan_broker::declare_control_queue(&channel, &names).await?;
    let options = BasicConsumeOptions { no_ack: true, exclusive: true, ..Default::default() };
    let mut control =
        Some(channel.basic_consume(queue.as_str().into(), tag.as_str().into(), options, FieldTable::default()).await?);
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    if hangups.is_none() {
        warn!("cannot listen for SIGHUP: reload through the API only");
    }
    tokio::spawn(async move {
        loop {
            let hangup = async {
                match hangups.as_mut() {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            };
            let message = async {
                match control.as_mut() {
                    Some(consumer) => consumer.next().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = stop.cancelled() => break,
                Some(_) = hangup => reloader.reload_logged("SIGHUP").await,
                next = message => match next {
                    Some(Ok(_)) => reloader.reload_logged("POST /v1/admin/reload").await,
                    Some(Err(e)) => {
                        warn!(error = %e, "control queue: waiting for the broker connection to recover");
                        if channel.wait_for_recovery(e).await.is_err() {
                            warn!("control queue lost: reload on SIGHUP only");
                            control = None;
                        }
                    }
                    None => {
                        warn!("control queue ended: reload on SIGHUP only");
                        control = None;
                    }
                },
            }
        }
    });
    Ok(())
}

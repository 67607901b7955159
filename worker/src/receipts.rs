//! Delivery receipts, the worker's side: what a success expects (indexed by the store in the same
//! write as the success), and the pull loop of the configs that ask for their receipts
//! (`receipts = "pull"`).
//!
//! A config's receipts come one of three ways:
//! * pushed by the provider to `yizhan-producer serve` (`POST /v1/receipts/tencent_sms/{config}`,
//!   `receipts = "push"`), which records them;
//! * pulled from the provider's receipt queue (`PullSmsSendStatus`, `receipts = "pull"`): each
//!   receipt is handed out once, so whatever a pull returns is recorded, known message or not;
//! * asked for message by message (SES `GetSendEmailStatus`, `receipts = "pull"`): the store
//!   lists the messages still pending ([`StateStore::take_pending_receipts`]) once per
//!   `pull_interval` until their receipt is final.
//!
//! One worker of the fleet pulls for a config at a time (a lease in the state store). Receipts
//! that make a job's delivery final send its completion callback again, now with `delivery`.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use yizhan_broker::{Names, OutgoingCallback, PublishError};
use yizhan_schemas::{Callback, CallbackBody, CallbackMessage};
use yizhan_state::{DeliveryDone, Receipt, StateStore, StoreError, now_millis};

use crate::config::{Config, ConfigError};
use crate::connectors::receipts::pull_queue;
use crate::connectors::{Connector, receipt_mode};
use crate::pipeline::{Pipeline, Publish};

/// Messages of a pull queue asked about per round (SES allows about 20 queries a second).
const PENDING_PER_ROUND: usize = 20;
/// Rounds one pull may take before waiting for the next interval (a backlog drains over a few).
const MAX_ROUNDS: usize = 50;
/// Tries to record a pulled page before its receipts are given up (the provider hands them out
/// once: they cannot be pulled again).
const RECORD_TRIES: u32 = 5;

/// The pull loop of one config with `receipts = "pull"`.
pub struct Puller {
    /// `tencent_sms` or `tencent_ses`.
    pub kind: String,
    /// The config's name.
    pub config: String,
    /// The pipeline, whose connectors a reload swaps: each pull asks the provider through the
    /// config's current connector (see [`Puller::connector`]).
    pub pipeline: Arc<Pipeline>,
    /// `pull_interval`.
    pub interval: Duration,
    /// Where receipts are recorded and the pull lease is held.
    pub store: Arc<dyn StateStore>,
    /// This worker instance, the lease's holder.
    pub owner: String,
    /// Where completion callbacks are published (confirmed).
    pub publisher: Arc<dyn Publish>,
    /// The broker names of the worker's prefix.
    pub names: Names,
}

/// The pullers of every config of `config` with `receipts = "pull"`, on the pipeline's
/// connectors, store and publisher.
pub fn pullers(config: &Config, pipeline: &Arc<Pipeline>, owner: &str) -> Result<Vec<Puller>, ConfigError> {
    let mut pullers = Vec::new();
    for ((kind, name), connector_config) in &config.connectors {
        let Some(interval) = receipt_mode(connector_config)?.and_then(|mode| mode.pull_interval()) else {
            continue;
        };
        if !pipeline.connectors.load().contains_key(&(kind.clone(), name.clone())) {
            continue;
        }
        pullers.push(Puller {
            kind: kind.clone(),
            config: name.clone(),
            pipeline: pipeline.clone(),
            interval,
            store: pipeline.store.clone(),
            owner: owner.to_string(),
            publisher: pipeline.publisher.clone(),
            names: pipeline.names.clone(),
        });
    }
    Ok(pullers)
}

impl Puller {
    /// Pulls every `interval` while this worker holds the config's lease (taken for three
    /// intervals, renewed by each pull), until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let lease = format!("receipts/{}", pull_queue(&self.kind, &self.config));
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticker.tick() => {}
            }
            match self.store.lease(&lease, &self.owner, now_millis(), self.interval * 3).await {
                Ok(true) => match self.pull().await {
                    Ok(0) => {}
                    Ok(counted) => {
                        info!(kind = %self.kind, config = %self.config, counted, "delivery receipts recorded")
                    }
                    Err(e) => warn!(kind = %self.kind, config = %self.config, error = %e, "pulling receipts failed"),
                },
                Ok(false) => {}
                Err(e) => warn!(error = %e, "cannot take the receipt pull lease; trying again"),
            }
        }
    }

    /// The config's connector as the pipeline has it now, so that a reload's rotated secrets
    /// sign the next pull; None once a reload removed the config (nothing is pulled for it).
    fn connector(&self) -> Option<Arc<dyn Connector>> {
        let configs = self.pipeline.connectors.load();
        configs.get(&(self.kind.clone(), self.config.clone())).map(|c| c.connector.clone())
    }

    /// One pull: pages until the provider has no more (or the messages asked about are done);
    /// returns the receipts counted.
    pub async fn pull(&self) -> Result<u64, PullError> {
        let Some(connector) = self.connector() else { return Ok(0) };
        let queue = pull_queue(&self.kind, &self.config);
        let interval_ms = i64::try_from(self.interval.as_millis()).unwrap_or(i64::MAX);
        let mut counted = 0;
        for _ in 0..MAX_ROUNDS {
            let now = now_millis();
            let pending = self
                .store
                .take_pending_receipts(&queue, now, now.saturating_add(interval_ms), PENDING_PER_ROUND)
                .await?;
            let page =
                connector.pull_receipts(&pending).await.map_err(|f| PullError::Provider(f.reason().to_string()))?;
            counted += self.record(&page.receipts).await?;
            let more = page.more || pending.len() == PENDING_PER_ROUND;
            if !more {
                break;
            }
        }
        Ok(counted)
    }

    /// Records a page (retrying: the provider will not hand it out again), then publishes the
    /// callbacks of the jobs it completed.
    async fn record(&self, receipts: &[Receipt]) -> Result<u64, PullError> {
        if receipts.is_empty() {
            return Ok(0);
        }
        let mut tries = 0;
        let recorded = loop {
            match self.store.record_receipts(receipts, now_millis()).await {
                Ok(recorded) => break recorded,
                Err(e) if tries + 1 < RECORD_TRIES => {
                    tries += 1;
                    warn!(error = %e, receipts = receipts.len(), "cannot record pulled receipts; trying again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        for done in &recorded.done {
            if let Err(e) = publish_delivery_callback(self.publisher.as_ref(), &self.names, done).await {
                // The receipts are recorded; this callback is the one thing lost.
                warn!(job_id = %done.status.id, error = %e, "cannot publish the delivery callback");
            }
        }
        Ok(recorded.counted)
    }
}

/// Why a pull stopped.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The state store did not answer.
    #[error("state store: {0}")]
    Store(#[from] StoreError),
    /// The provider refused or did not answer (reason without secrets).
    #[error("provider: {0}")]
    Provider(String),
}

/// Publishes the completion callback of a job whose receipts all became final: its status with
/// `delivery` (confirmed). A callback that does not parse is skipped.
pub async fn publish_delivery_callback(
    publisher: &dyn Publish,
    names: &Names,
    done: &DeliveryDone,
) -> Result<(), PublishError> {
    let Ok(callback) = serde_json::from_str::<Callback>(&done.callback) else {
        return Ok(());
    };
    let status = &done.status;
    let body = CallbackBody {
        id: status.id,
        campaign: status.campaign,
        status: status.status.clone(),
        attempts: status.attempts,
        result: status.result.clone(),
        error: status.error.clone(),
        delivery: status.delivery.as_ref().map(|d| serde_json::to_value(d).expect("a delivery map serialises")),
    };
    let message = CallbackMessage::new(&callback, body);
    let outgoing = OutgoingCallback::new(names, &message);
    publisher.publish_all(std::slice::from_ref(&outgoing.message())).await.pop().unwrap_or(Ok(()))
}

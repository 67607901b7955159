//! The producer library: connect, submit validated jobs, get their ids once the broker confirmed
//! them. The CLI (`yizhan-producer submit`) and the HTTP API share it.
//!
//! Jobs are routed by lane and tenant ([`Names::routing_key`]), and with sharded lanes to the shard
//! of their idempotency key ([`Names::job_routing_key`]): the tenant `default` keeps the
//! original lanes; another tenant's lanes are declared on its first job and the tenant registered
//! in the state store ([`Producer::with_tenants`]), where workers find it and consume its queues.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use yizhan_producer::Producer;
//! let producer = Producer::connect("amqp://guest:guest@127.0.0.1:5672/%2f", "yizhan", &[], yizhan_broker::Recovery::Automatic).await?;
//! let job = yizhan_schemas::validate_job(br#"{"connector":"wecom_robot","config":"ops","action":"send_text","params":{"content":"deploy done"}}"#,
//!     yizhan_schemas::MissingId::Assign).map_err(|e| format!("{e:?}"))?;
//! let id = producer.submit(&job).await?;
//! # Ok(()) }
//! ```

pub mod api;
pub mod audit;
pub mod auth;
pub mod callbacks;
pub mod dlq;
pub mod receipts;
pub mod serve;
mod tenants;
pub mod ui;
pub mod wecom_events;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use lapin::Connection;
use lapin::types::FieldTable;
use uuid::Uuid;
use yizhan_broker::{Message, Names, PublishError, Publisher, Recovery, Topology};
use yizhan_schemas::Job;
use yizhan_state::{StateStore, redact};

use crate::tenants::Tenants;

/// Why connecting or submitting failed (the CLI exits 2 on any of them).
#[derive(Debug, thiserror::Error)]
pub enum ProducerError {
    /// The connection or its channel could not be opened.
    #[error("cannot reach the broker at {url}: {source}")]
    Connect {
        /// The broker URL with its password redacted.
        url: String,
        /// lapin's error.
        source: lapin::Error,
    },
    /// Declaring the exchanges and queues failed.
    #[error("{0}")]
    Topology(#[from] yizhan_broker::TopologyError),
    /// The broker did not confirm the job stored: it may be lost, so submit it again (same id).
    #[error("job {id} was not confirmed: {source}")]
    NotConfirmed {
        /// The job's id; resubmitting with it lets the idempotency key absorb a duplicate.
        id: Uuid,
        /// How the publish failed.
        source: PublishError,
    },
    /// The job's tenant could not be set up (its queues declared, or the tenant registered for
    /// the workers); the job was not published, so submit it again.
    #[error("job {id} was not published: tenant {tenant:?}: {reason}")]
    Tenant {
        /// The job's id.
        id: Uuid,
        /// The job's tenant.
        tenant: String,
        /// What failed.
        reason: String,
    },
}

/// A connection to the broker with a confirm-mode channel.
pub struct Producer {
    connection: Connection,
    publisher: Publisher,
    names: Names,
    /// Tenants whose queues this producer declared and registered, and where to register more.
    tenants: Tenants,
}

impl Producer {
    /// Connects and declares the topology (idempotently), so nobody has to pre-create anything.
    /// `names`: a prefix, or [`yizhan_broker::Settings::names`] (the prefix and the quorum group
    /// size). `delays` are the retry delays whose queues to declare too (the worker declares its own).
    pub async fn connect(
        url: &str,
        names: impl Into<Names>,
        delays: &[Duration],
        recovery: Recovery,
    ) -> Result<Producer, ProducerError> {
        let connect_error = |source| ProducerError::Connect { url: redact::url_credentials(url), source };
        let connection = yizhan_broker::connect(url, "yizhan-producer", recovery).await.map_err(connect_error)?;
        let names = names.into();
        let channel = connection.create_channel().await.map_err(connect_error)?;
        yizhan_broker::declare(&channel, &Topology { names: names.clone(), delays: delays.to_vec() }).await?;
        let _ = channel.close(200, "declared".into()).await;
        let publisher = Publisher::open(&connection).await.map_err(connect_error)?;
        Ok(Producer { connection, publisher, tenants: Tenants::new(names.clone()), names })
    }

    /// Registers the tenants of submitted jobs in `registry` (the state store the workers read),
    /// so that workers consume their queues; without it only tenant `default` can be submitted.
    pub fn with_tenants(mut self, registry: Arc<dyn StateStore>) -> Producer {
        self.tenants.set_registry(registry);
        self
    }

    /// The broker connection, for the console's queue depths.
    pub(crate) fn connection(&self) -> &Connection {
        &self.connection
    }

    /// Whether the connection to the broker is up (it recovers by itself with `Recovery::Automatic`).
    pub fn is_connected(&self) -> bool {
        self.connection.status().connected()
    }

    /// Jobs waiting to be taken in `tenant`'s lanes (ready messages, summed over their shards); a
    /// lane not declared yet counts 0. One passive declare per lane and shard, each on a channel
    /// of its own (a refused one closes its channel).
    pub async fn queued(&self, tenant: &str) -> Result<u64, lapin::Error> {
        let mut total = 0;
        let lanes = yizhan_schemas::Priority::ALL.into_iter().flat_map(|lane| self.names.lane_shards(lane, tenant));
        for queue in lanes {
            let channel = self.connection.create_channel().await?;
            let passive = lapin::options::QueueDeclareOptions { passive: true, ..Default::default() };
            if let Ok(queue) = channel.queue_declare(queue.as_str().into(), passive, FieldTable::default()).await {
                total += u64::from(queue.message_count());
                let _ = channel.close(200, "counted".into()).await;
            }
        }
        Ok(total)
    }

    /// Asks every running worker to reload its connector config: one message on the fanout
    /// exchange `<prefix>.control`, confirmed. Unroutable: no worker is running.
    pub async fn broadcast_reload(&self) -> Result<(), PublishError> {
        let exchange = self.names.control();
        let message = Message {
            exchange: &exchange,
            routing_key: "",
            body: br#"{"reload":true}"#,
            message_id: None,
            headers: FieldTable::default(),
            // A worker that is not consuming now reads its config when it starts anyway.
            expiration_ms: Some(60_000),
        };
        self.publisher.publish_all(&[message]).await.pop().expect("one result per message")
    }

    /// Publishes one job; returns its id once the broker confirmed it.
    pub async fn submit(&self, job: &Job) -> Result<Uuid, ProducerError> {
        self.submit_all(std::slice::from_ref(job)).await.pop().expect("one result per job")
    }

    /// Publishes jobs with their confirms pipelined; results in input order. A tenant's first job
    /// declares its queues and registers it first (once per producer).
    pub async fn submit_all(&self, jobs: &[Job]) -> Vec<Result<Uuid, ProducerError>> {
        self.submit_all_with(jobs, &FieldTable::default()).await
    }

    /// [`Producer::submit_all`] with `headers` on every message (the W3C trace context of the
    /// request that submits them).
    pub async fn submit_all_with(&self, jobs: &[Job], headers: &FieldTable) -> Vec<Result<Uuid, ProducerError>> {
        let unready = self.tenants.unready(jobs.iter().map(|job| job.tenant.as_str()));
        let failed =
            if unready.is_empty() { HashMap::new() } else { self.tenants.prepare(&self.connection, unready).await };
        let exchange = self.names.jobs_exchange();
        // Only the jobs whose tenant is ready go out.
        let sent: Vec<&Job> =
            jobs.iter().filter(|job| failed.is_empty() || !failed.contains_key(&job.tenant)).collect();
        let prepared: Vec<(Vec<u8>, String, std::borrow::Cow<'static, str>)> = sent
            .iter()
            .map(|job| {
                let routing_key = self.names.job_routing_key(job.priority, &job.tenant, &job.idempotency_key);
                (job.to_message(), job.id.to_string(), routing_key)
            })
            .collect();
        let messages: Vec<Message<'_>> = prepared
            .iter()
            .map(|(body, id, routing_key)| Message {
                exchange: &exchange,
                routing_key,
                body,
                message_id: Some(id),
                headers: headers.clone(),
                expiration_ms: None,
            })
            .collect();
        let mut published = self.publisher.publish_all(&messages).await.into_iter();
        let mut results = Vec::with_capacity(jobs.len());
        for job in jobs {
            if let Some(reason) = failed.get(&job.tenant) {
                results.push(Err(ProducerError::Tenant {
                    id: job.id,
                    tenant: job.tenant.clone(),
                    reason: reason.clone(),
                }));
                continue;
            }
            let result = published.next().expect("one result per published job");
            if let Err(PublishError::Unroutable { .. }) = &result {
                // Its queues are gone (deleted by hand?): declare them again on the next job.
                self.tenants.forget(&job.tenant);
            }
            results.push(result.map(|()| job.id).map_err(|source| ProducerError::NotConfirmed { id: job.id, source }));
        }
        results
    }
}

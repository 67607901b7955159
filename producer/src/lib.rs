//! The producer library: connect, submit validated jobs, get their ids once the broker confirmed
//! them. The CLI (`yizhan-producer submit`) and the HTTP API share it.
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
pub mod auth;
pub mod dlq;

use std::time::Duration;

use lapin::Connection;
use lapin::types::FieldTable;
use uuid::Uuid;
use yizhan_broker::{Message, Names, PublishError, Publisher, Recovery, Topology};
use yizhan_schemas::Job;
use yizhan_state::redact;

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
}

/// A connection to the broker with a confirm-mode channel.
pub struct Producer {
    _connection: Connection,
    publisher: Publisher,
    names: Names,
}

impl Producer {
    /// Connects and declares the topology (idempotently), so nobody has to pre-create anything.
    /// `delays` are the retry delays whose queues to declare too (the worker declares its own).
    pub async fn connect(
        url: &str,
        prefix: &str,
        delays: &[Duration],
        recovery: Recovery,
    ) -> Result<Producer, ProducerError> {
        let connect_error = |source| ProducerError::Connect { url: redact::url_credentials(url), source };
        let connection = yizhan_broker::connect(url, "yizhan-producer", recovery).await.map_err(connect_error)?;
        let names = Names::new(prefix);
        let channel = connection.create_channel().await.map_err(connect_error)?;
        yizhan_broker::declare(&channel, &Topology { names: names.clone(), delays: delays.to_vec() }).await?;
        let _ = channel.close(200, "declared".into()).await;
        let publisher = Publisher::open(&connection).await.map_err(connect_error)?;
        Ok(Producer { _connection: connection, publisher, names })
    }

    /// Whether the connection to the broker is up (it recovers by itself with `Recovery::Automatic`).
    pub fn is_connected(&self) -> bool {
        self._connection.status().connected()
    }

    /// Publishes one job; returns its id once the broker confirmed it.
    pub async fn submit(&self, job: &Job) -> Result<Uuid, ProducerError> {
        self.submit_all(std::slice::from_ref(job)).await.pop().expect("one result per job")
    }

    /// Publishes jobs with their confirms pipelined; results in input order.
    pub async fn submit_all(&self, jobs: &[Job]) -> Vec<Result<Uuid, ProducerError>> {
        let exchange = self.names.jobs_exchange();
        let bodies: Vec<(Vec<u8>, String)> = jobs.iter().map(|job| (job.to_message(), job.id.to_string())).collect();
        let messages: Vec<Message<'_>> = jobs
            .iter()
            .zip(&bodies)
            .map(|(job, (body, id))| Message {
                exchange: &exchange,
                routing_key: job.priority.as_str(),
                body,
                message_id: Some(id),
                headers: FieldTable::default(),
                expiration_ms: None,
            })
            .collect();
        self.publisher
            .publish_all(&messages)
            .await
            .into_iter()
            .zip(jobs)
            .map(|(result, job)| {
                result.map(|()| job.id).map_err(|source| ProducerError::NotConfirmed { id: job.id, source })
            })
            .collect()
    }
}

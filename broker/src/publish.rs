//! Publishing with publisher confirms and `mandatory`, so a message is either confirmed stored by
//! the broker or reported as failed: never silently dropped.

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, Connection};

/// Why a message was not confirmed stored: in every case the caller still owns it.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The channel or connection failed before the broker confirmed; the message may or may not be stored.
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
    /// The broker answered with a negative confirm: it did not store the message.
    #[error("the broker refused the message (nack)")]
    Nacked,
    /// The broker returned the `mandatory` message because no queue is bound for it.
    #[error("no queue is bound for routing key {routing_key:?} on {exchange:?} (message returned)")]
    Unroutable {
        /// The exchange it was published to.
        exchange: String,
        /// The routing key no binding matched.
        routing_key: String,
    },
}

/// A confirm-mode channel.
#[derive(Clone)]
pub struct Publisher {
    channel: Channel,
}

/// One message to publish.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    /// Exchange name; `""` is the default exchange (routing key = queue name).
    pub exchange: &'a str,
    /// For the jobs exchange, the lane (`high`, `normal`, `bulk`); ignored by fanout exchanges.
    pub routing_key: &'a str,
    /// The JSON body, published as-is with content type `application/json`.
    pub body: &'a [u8],
    /// AMQP `message-id` property (the job id); None leaves it unset.
    pub message_id: Option<&'a str>,
    /// AMQP headers (e.g. the `x-yizhan-*` attempt and error headers); empty for none.
    pub headers: FieldTable,
    /// Per-message TTL in milliseconds (used to jitter delays).
    pub expiration_ms: Option<u64>,
}

impl Publisher {
    /// Opens a new channel on `connection` and puts it in confirm mode.
    pub async fn open(connection: &Connection) -> Result<Publisher, lapin::Error> {
        let channel = connection.create_channel().await?;
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
        Ok(Publisher { channel })
    }

    /// The underlying confirm-mode channel, for calls other than publishing.
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Publishes persistent JSON messages, pipelined, and waits until the broker confirmed every one.
    /// Results are in input order.
    pub async fn publish_all(&self, messages: &[Message<'_>]) -> Vec<Result<(), PublishError>> {
        let mut pending = Vec::with_capacity(messages.len());
        for message in messages {
            let mut properties = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/json".into())
                .with_headers(message.headers.clone());
            if let Some(id) = message.message_id {
                properties = properties.with_message_id(id.into());
            }
            if let Some(ms) = message.expiration_ms {
                properties = properties.with_expiration(ms.to_string().into());
            }
            let sent = self
                .channel
                .basic_publish(
                    message.exchange.into(),
                    message.routing_key.into(),
                    BasicPublishOptions { mandatory: true, ..Default::default() },
                    message.body,
                    properties,
                )
                .await;
            pending.push(sent);
        }
        let mut results = Vec::with_capacity(messages.len());
        for (message, sent) in messages.iter().zip(pending) {
            let result = match sent {
                Err(e) => Err(PublishError::Broker(e)),
                Ok(confirm) => match confirm.await {
                    Err(e) => Err(PublishError::Broker(e)),
                    Ok(Confirmation::Nack(_)) => Err(PublishError::Nacked),
                    Ok(Confirmation::Ack(Some(_returned))) => Err(PublishError::Unroutable {
                        exchange: message.exchange.to_string(),
                        routing_key: message.routing_key.to_string(),
                    }),
                    Ok(_) => Ok(()),
                },
            };
            results.push(result);
        }
        results
    }

    /// Publishes one message like [`Publisher::publish_all`] and waits for its confirm.
    pub async fn publish(&self, message: Message<'_>) -> Result<(), PublishError> {
        self.publish_all(std::slice::from_ref(&message)).await.pop().expect("one result per message")
    }
}

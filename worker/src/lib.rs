//! yizhan's worker: takes connector-action jobs from RabbitMQ and executes them.

pub mod config;
pub mod connectors;
pub mod ratelimit;

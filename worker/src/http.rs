//! The worker's HTTP endpoints: `/metrics`, `/healthz` (the process runs), `/readyz` (connected to
//! the broker and consuming).
//!
//! Readiness and `yizhan_broker_connected` are read from the connections' and the consuming
//! channel's states at each request, never from flags flipped by events: lapin reports a lost
//! connection, the recovery of each connection and of the channel in whatever order they happen,
//! and a flag set by one and cleared by another stayed wrong after a broker restart.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

use crate::metrics::Metrics;

/// What the endpoints read; cheap to clone (shared handles).
#[derive(Clone)]
pub struct Health {
    /// The worker's metrics, served at `/metrics`.
    pub metrics: Metrics,
    /// What `/readyz` and `yizhan_broker_connected` are derived from.
    pub readiness: Arc<Readiness>,
}

/// What readiness is derived from: the worker's two connections and its consuming channel, once
/// its lanes are consumed, and whether it is stopping.
#[derive(Default)]
pub struct Readiness {
    broker: OnceLock<Broker>,
    stopping: AtomicBool,
}

struct Broker {
    consume: Arc<lapin::Connection>,
    publish: Arc<lapin::Connection>,
    channel: lapin::Channel,
}

impl Readiness {
    /// Called once the lanes are consumed. lapin's recovery re-opens the channel and re-registers
    /// its consumers on the same `Channel`, so its status keeps following it.
    pub fn consuming(&self, consume: Arc<lapin::Connection>, publish: Arc<lapin::Connection>, channel: lapin::Channel) {
        let _ = self.broker.set(Broker { consume, publish, channel });
    }

    /// The worker drains: no longer ready, whatever the broker.
    pub fn stopping(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// Both connections are open (`yizhan_broker_connected`).
    pub fn connected(&self) -> bool {
        self.broker.get().is_some_and(|b| b.consume.status().connected() && b.publish.status().connected())
    }

    /// Connected, the consuming channel open (lapin marks it reconnecting from the failure until
    /// it is re-opened), and not stopping.
    pub fn ready(&self) -> bool {
        !self.stopping.load(Ordering::Relaxed)
            && self.connected()
            && self.broker.get().is_some_and(|b| b.channel.status().connected())
    }
}

/// The routes `/metrics`, `/healthz` and `/readyz` (200 when ready, 503 otherwise); no authentication.
pub fn router(health: Health) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(h): State<Health>| async move {
                h.metrics.broker_connected.set(i64::from(h.readiness.connected()));
                h.metrics.render()
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(|State(h): State<Health>| async move {
                if h.readiness.ready() {
                    (StatusCode::OK, "ready\n")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not consuming\n")
                }
            }),
        )
        .with_state(health)
}

//! The console's state and what every page shares: the session extractors, the scope check and
//! the CSRF refusal.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio::sync::OnceCell;

use super::html;
use super::session::{Form, Session, Sessions};
use crate::api::ApiState;
use crate::auth::Scope;

/// What the console needs besides the API's state; from the shared settings and `serve`'s own.
#[derive(Debug, Clone)]
pub struct UiSettings {
    /// The broker URL(s), for the dead-letter connection (redacted in every error).
    pub amqp_url: String,
    /// Queue names, for depths and the dead-letter queue.
    pub names: yizhan_broker::Names,
    /// The retry delays, whose delay queues the overview shows.
    pub delays: Vec<Duration>,
    /// The connector config file (read on each view of the configs page: it shows a fixed file).
    pub config: PathBuf,
    /// The state store URL: with Redis, the fleet's provider pauses are read from it.
    pub state_url: String,
    /// The workers' `/metrics` URLs (`--worker-metrics`), scraped when the overview is viewed.
    pub worker_metrics: Vec<String>,
    /// RabbitMQ's management API (`--rabbit-management`, credentials in the URL): when set, the
    /// overview reads each queue's ready and unacked counts from it (see [`super::overview`]).
    pub rabbit_management: Option<String>,
}

/// The console's state: the API's, and its own.
#[derive(Clone)]
pub struct UiState {
    pub(super) api: ApiState,
    pub(super) settings: Arc<UiSettings>,
    pub(super) sessions: Arc<Sessions>,
    /// The previous scrape of the workers' counters: the overview's rates are the change since.
    pub(super) last_sample: Arc<Mutex<Option<Sample>>>,
    /// The Redis of a fleet's state store, for the provider pauses; None in SQLite mode.
    redis: Arc<OnceCell<Option<yizhan_state::RedisConnection>>>,
    pub(super) http: reqwest::Client,
}

impl UiState {
    /// The console's state over the API's.
    pub fn new(api: ApiState, settings: UiSettings) -> UiState {
        // reqwest is built without a default TLS provider; the broker connection installs the same
        // one, but in the background, possibly after this client is built.
        yizhan_broker::install_crypto_provider();
        UiState {
            api,
            settings: Arc::new(settings),
            sessions: Arc::new(Sessions::default()),
            last_sample: Arc::new(Mutex::new(None)),
            redis: Arc::new(OnceCell::new()),
            http: reqwest::Client::builder().timeout(Duration::from_secs(2)).build().expect("an HTTP client"),
        }
    }

    /// The state store's Redis, connected on first use; None for SQLite or when unreachable.
    pub(super) async fn redis(&self) -> Option<yizhan_state::RedisConnection> {
        let url = &self.settings.state_url;
        if !yizhan_state::is_redis_url(url) {
            return None;
        }
        let connected = self
            .redis
            .get_or_init(|| async {
                match yizhan_state::redis_connect(url).await {
                    Ok(connection) => Some(connection),
                    Err(e) => {
                        tracing::warn!(error = %e, "console: cannot reach the state store's Redis for pauses");
                        None
                    }
                }
            })
            .await;
        connected.clone()
    }
}

/// The workers' counters at one moment.
#[derive(Debug, Clone)]
pub(super) struct Sample {
    pub(super) at: Instant,
    pub(super) outcomes: BTreeMap<String, f64>,
}

/// A 403 page when the session's token lacks `scope` (the API's scopes apply to the console too).
pub(super) fn lacks(session: &Session, scope: Scope, title: &str, active: &str) -> Option<Response> {
    if session.principal.can.has(scope) {
        return None;
    }
    let text = format!("The token signed in with lacks the scope `{}`.", scope.as_str());
    Some(html::problem_page(StatusCode::FORBIDDEN, title, active, &session.csrf, &text))
}

pub(super) fn forbidden() -> Response {
    (StatusCode::FORBIDDEN, "the form's CSRF token is missing or wrong: reload the page and try again").into_response()
}

/// What a page handler gets: the session (for the forms' CSRF token).
pub(super) type SessionExt = axum::Extension<Session>;
/// What a POST handler gets: the form, its CSRF token already checked.
pub(super) type FormExt = axum::Extension<Form>;

//! `yizhan-producer serve`: wires the HTTP API ([`crate::api`]) and the operators' console
//! ([`crate::ui`]) to the broker, the state store and the config files, and runs them.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OnceCell;
use tracing::{info, warn};
use yizhan_state::StateStore;

use crate::Producer;
use crate::api::dead_letters::DeadLetterAccess;
use crate::api::reload::{self, Reload};
use crate::api::{ApiMetrics, ApiState, Limits, router};
use crate::auth::Tokens;

/// Why `serve` could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The API token list does not parse.
    #[error("{0}")]
    Tokens(#[from] crate::auth::AuthError),
    /// The state store cannot be opened.
    #[error("state store: {0}")]
    Store(#[from] yizhan_state::StoreError),
    /// The receipt tokens of the connector config file cannot be read.
    #[error("{0}")]
    Receipts(#[from] crate::receipts::ReceiptConfigError),
    /// The listening socket cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address asked for (`--http-addr`).
        addr: String,
        /// Why binding failed (in use, permission, ...).
        source: std::io::Error,
    },
}

/// Connects to the broker in the background, retrying with backoff, so that the API answers
/// (503 for POST) while the broker is down. Once connected, lapin's automatic recovery takes over.
/// Tenants of submitted jobs are registered in `registry` (the workers' state store).
pub fn connect_in_background(
    url: String,
    names: yizhan_broker::Names,
    delays: Vec<Duration>,
    registry: Arc<dyn StateStore>,
) -> Arc<OnceCell<Producer>> {
    let cell = Arc::new(OnceCell::new());
    let target = cell.clone();
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(500);
        loop {
            match Producer::connect(&url, names.clone(), &delays, yizhan_broker::Recovery::Automatic).await {
                Ok(producer) => {
                    info!("connected to the broker");
                    let _ = target.set(producer.with_tenants(registry));
                    return;
                }
                Err(e) => {
                    warn!(error = %e, retry_in = ?backoff, "broker unreachable");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(15));
                }
            }
        }
    });
    cell
}

/// The settings only `yizhan-producer serve` reads, next to the shared [`yizhan_broker::Settings`].
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "HTTP API")]
pub struct ServeSettings {
    /// Listen address of the HTTP API.
    #[arg(long = "listen", env = "YIZHAN_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: String,
    /// Bearer tokens, comma-separated; each may be `${VAR}` or `file:/path`. None: every request is
    /// refused.
    #[arg(long, env = "YIZHAN_API_TOKENS", hide_env_values = true)]
    pub api_tokens: Option<String>,
    /// A TOML file of scoped tokens (tenant, configs, scopes) and tenant quotas; see the README.
    /// Read again on SIGHUP and `POST /v1/admin/reload`.
    #[arg(long = "api-token-file", env = "YIZHAN_API_TOKEN_FILE")]
    pub api_token_file: Option<std::path::PathBuf>,
    /// Largest request body in bytes (larger ones answer 413).
    #[arg(long = "http-max-body", env = "YIZHAN_HTTP_MAX_BODY", default_value_t = 8 * 1024 * 1024)]
    pub http_max_body: usize,
    /// Most jobs in one `POST /v1/jobs` (more answer 413).
    #[arg(long = "http-max-batch", env = "YIZHAN_HTTP_MAX_BATCH", default_value_t = 1000)]
    pub http_max_batch: usize,
    /// The workers' metrics URLs (`http://host:9464/metrics`), comma-separated: the console's
    /// overview scrapes them for jobs by outcome when it is viewed.
    #[arg(long = "worker-metrics", env = "YIZHAN_WORKER_METRICS", value_delimiter = ',')]
    pub worker_metrics: Vec<String>,
    /// RabbitMQ's management API, e.g. `http://guest:guest@127.0.0.1:15672` (the plugin
    /// `rabbitmq_management`): the console's overview reads each lane's ready and unacked
    /// messages from it. Unset: ready only, from the broker itself.
    #[arg(long = "rabbit-management", env = "YIZHAN_RABBIT_MANAGEMENT_URL", hide_env_values = true)]
    pub rabbit_management: Option<String>,
}

/// Runs the API until `shutdown` resolves.
pub async fn serve(
    settings: &yizhan_broker::Settings,
    serve: &ServeSettings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let token_sources =
        crate::auth::TokenSources { list: serve.api_tokens.clone(), file: serve.api_token_file.clone() };
    let tokens = Tokens::load(&token_sources, &|var| std::env::var(var).ok())?;
    if tokens.is_empty() {
        warn!("no API tokens configured (--api-tokens / YIZHAN_API_TOKENS): every /v1 request is refused");
    }
    let store = yizhan_state::open(&settings.state, &settings.prefix).await?;
    let parking = yizhan_state::open_parking(&settings.state, &settings.prefix).await?;
    let producer = connect_in_background(
        settings.amqp_url.clone(),
        settings.names(),
        settings.retry_delays.clone(),
        store.clone(),
    );
    let receipt_tokens = Arc::new(crate::receipts::ReceiptTokens::load(&settings.config)?);
    let wecom_callbacks = Arc::new(crate::wecom_events::WecomCallbacks::load(&settings.config)?);
    let state = ApiState {
        producer,
        store,
        parking,
        tokens: Arc::new(tokens),
        limits: Limits { max_body: serve.http_max_body, max_batch: serve.http_max_batch },
        metrics: ApiMetrics::new(),
        callback_allow: Arc::new(settings.callback_allow.clone()),
        receipt_tokens: receipt_tokens.clone(),
        wecom_callbacks: wecom_callbacks.clone(),
        quotas: Default::default(),
        dead_letters: Arc::new(DeadLetterAccess::new(settings.amqp_url.clone(), settings.names())),
        reload: Arc::new(Reload {
            tokens: Some(token_sources.clone()),
            config: Some(settings.config.clone()),
            receipts: receipt_tokens,
            wecom: wecom_callbacks,
        }),
    };
    reload::reload_on_sighup(state.reload.clone(), state.tokens.clone());
    let listen_error = |source| ServeError::Listen { addr: serve.http_addr.clone(), source };
    let listener = tokio::net::TcpListener::bind(&serve.http_addr).await.map_err(listen_error)?;
    info!(addr = %serve.http_addr, "serving the HTTP API");
    let console = crate::ui::UiState::new(
        state.clone(),
        crate::ui::UiSettings {
            amqp_url: settings.amqp_url.clone(),
            names: settings.names(),
            delays: settings.retry_delays.clone(),
            config: settings.config.clone(),
            state_url: settings.state.clone(),
            worker_metrics: serve
                .worker_metrics
                .iter()
                .map(|u| u.trim().to_string())
                .filter(|u| !u.is_empty())
                .collect(),
            rabbit_management: serve.rabbit_management.clone().filter(|u| !u.trim().is_empty()),
        },
    );
    let app = router(state).merge(crate::ui::router(console));
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await.map_err(listen_error)
}

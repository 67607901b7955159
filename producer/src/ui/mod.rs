//! The operators' console under `/ui`, served by `yizhan-producer serve` next to the API.
//!
//! Server-rendered HTML, no script, one stylesheet compiled into the binary: it works offline and
//! its Content-Security-Policy allows nothing from elsewhere. Signing in takes an API token (the
//! same ones the API accepts); the browser then holds only a random session id in an HTTP-only,
//! `SameSite=Strict` cookie, mapped in this process's memory to the session (a restart signs
//! everyone out). Every form carries the session's CSRF token and every POST is refused (403)
//! without it; the login form uses a double-submit cookie instead, as there is no session yet.
//!
//! Pages read counters, queue depths and bounded reads only, so they stay fast with millions of
//! jobs: [`overview`], [`campaigns`], [`jobs`], [`dead`], [`configs`].

mod campaigns;
mod configs;
mod dead;
mod html;
mod jobs;
mod overview;
mod session;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use tokio::sync::OnceCell;

use crate::api::ApiState;

use self::session::{Form, Session, Sessions};

/// Largest form body the console accepts (a DLQ page's selection of ids stays far below it).
const MAX_FORM: usize = 1024 * 1024;

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
}

/// The console's state: the API's, and its own.
#[derive(Clone)]
pub struct UiState {
    api: ApiState,
    settings: Arc<UiSettings>,
    sessions: Arc<Sessions>,
    /// The previous scrape of the workers' counters: the overview's rates are the change since.
    last_sample: Arc<Mutex<Option<overview::Sample>>>,
    /// The Redis of a fleet's state store, for the provider pauses; None in SQLite mode.
    redis: Arc<OnceCell<Option<yizhan_state::RedisConnection>>>,
    http: reqwest::Client,
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
    async fn redis(&self) -> Option<yizhan_state::RedisConnection> {
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

/// The console's routes, all under `/ui`.
pub fn router(state: UiState) -> Router {
    let pages = Router::new()
        .route("/ui", get(overview::page))
        .route("/ui/campaigns", get(campaigns::list))
        .route("/ui/campaigns/{id}", get(campaigns::show))
        .route("/ui/campaigns/{id}/{action}", post(campaigns::control))
        .route("/ui/jobs", get(jobs::page))
        .route("/ui/dead", get(dead::list))
        .route("/ui/dead/letter/{id}", get(dead::show))
        .route("/ui/dead/replay", post(dead::replay))
        .route("/ui/dead/purge", get(dead::confirm_purge).post(dead::purge))
        .route("/ui/configs", get(configs::page))
        .route("/ui/logout", post(session::logout))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_session));
    Router::new()
        .route("/ui/login", get(session::login_form).post(session::login))
        .route("/ui/static/console.css", get(stylesheet))
        .merge(pages)
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

async fn stylesheet() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("console.css")).into_response()
}

/// Pages need a session (else: to the login page); a POST needs the session's CSRF token too.
/// The form of a POST is read here once and handed to the handler as a [`Form`].
async fn require_session(State(state): State<UiState>, request: Request, next: Next) -> Response {
    let Some(session) = state.sessions.find(request.headers()) else {
        return Redirect::to("/ui/login").into_response();
    };
    if request.method() != Method::POST {
        let mut request = request;
        request.extensions_mut().insert(session);
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_FORM).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "the form is too large").into_response();
    };
    let form = Form::parse(&bytes);
    if !session.csrf_matches(form.get("csrf")) {
        return forbidden();
    }
    parts.extensions.insert(session);
    parts.extensions.insert(form);
    next.run(Request::from_parts(parts, Body::empty())).await
}

/// A 403 page when the session's token lacks `scope` (the API's scopes apply to the console too).
fn lacks(session: &Session, scope: crate::auth::Scope, title: &str, active: &str) -> Option<Response> {
    if session.principal.can.has(scope) {
        return None;
    }
    let text = format!("The token signed in with lacks the scope `{}`.", scope.as_str());
    Some(html::problem_page(StatusCode::FORBIDDEN, title, active, &session.csrf, &text))
}

fn forbidden() -> Response {
    (StatusCode::FORBIDDEN, "the form's CSRF token is missing or wrong: reload the page and try again").into_response()
}

/// Nothing from elsewhere, no script, no framing; nothing cached (pages show live state and a
/// CSRF token).
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}

/// What a page handler gets: the session (for the forms' CSRF token).
type SessionExt = axum::Extension<Session>;
/// What a POST handler gets: the form, its CSRF token already checked.
type FormExt = axum::Extension<Form>;

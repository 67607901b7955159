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
mod login;
mod overview;
mod session;
mod state;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use self::session::Form;
use self::state::forbidden;
pub use self::state::{UiSettings, UiState};

/// Largest form body the console accepts (a DLQ page's selection of ids stays far below it).
const MAX_FORM: usize = 1024 * 1024;

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
        .route("/ui/logout", post(login::logout))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_session));
    Router::new()
        .route("/ui/login", get(login::login_form).post(login::login))
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

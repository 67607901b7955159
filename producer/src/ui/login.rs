//! Signing in and out of the console: the login form (a double-submit cookie guards it, as there
//! is no session yet) and the session cookie it sets.

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};

use super::html::login_page;
use super::session::{Form, LOGIN_COOKIE, SESSION_COOKIE, SESSION_TTL, cookie, random_token, same, set_cookie};
use super::state::{FormExt, SessionExt, UiState, forbidden};

/// `GET /ui/login`: the form, with a fresh double-submit token in a cookie and in the form.
pub(super) async fn login_form(headers: HeaderMap) -> Response {
    login_response(&headers, StatusCode::OK, None)
}

fn login_response(headers: &HeaderMap, status: StatusCode, problem: Option<&str>) -> Response {
    let token = random_token();
    let mut response = (status, Html(login_page(&token, problem))).into_response();
    let cookie = set_cookie(headers, LOGIN_COOKIE, &token, "/ui/login", Duration::from_secs(3600));
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    response
}

/// `POST /ui/login`: `csrf` must equal the login cookie; a valid API token opens a session.
pub(super) async fn login(State(state): State<UiState>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let form = Form::parse(&body);
    let expected = cookie(&headers, LOGIN_COOKIE);
    let csrf_ok = match (form.get("csrf"), expected) {
        (Some(presented), Some(expected)) => same(presented.as_bytes(), expected.as_bytes()),
        _ => false,
    };
    if !csrf_ok {
        return forbidden();
    }
    let token = form.get("token").unwrap_or_default().trim();
    let principal = if token.is_empty() { None } else { state.api.tokens.authenticate(token) };
    let Some(principal) = principal else {
        // Never echo the token; the same answer for every wrong one.
        return login_response(&headers, StatusCode::UNAUTHORIZED, Some("That is not a valid API token."));
    };
    tracing::info!(who = %principal.who(), "console: signed in");
    let id = state.sessions.create(principal);
    let mut response = Redirect::to("/ui").into_response();
    response.headers_mut().append(header::SET_COOKIE, set_cookie(&headers, SESSION_COOKIE, &id, "/ui", SESSION_TTL));
    response
        .headers_mut()
        .append(header::SET_COOKIE, set_cookie(&headers, LOGIN_COOKIE, "", "/ui/login", Duration::ZERO));
    response
}

/// `POST /ui/logout`: ends the session and clears its cookie.
pub(super) async fn logout(
    State(state): State<UiState>,
    headers: HeaderMap,
    _session: SessionExt,
    _form: FormExt,
) -> Response {
    state.sessions.remove(&headers);
    let mut response = Redirect::to("/ui/login").into_response();
    response.headers_mut().insert(header::SET_COOKIE, set_cookie(&headers, SESSION_COOKIE, "", "/ui", Duration::ZERO));
    response
}

//! Job lookup by id: status, attempts, result, error and receipts, from the state store (one
//! read, as `GET /v1/jobs/{id}`).

use std::fmt::Write;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use uuid::Uuid;

use super::html::{esc, json_block, notice, page as frame, time};
use super::state::{SessionExt, UiState, lacks};

const ACTIVE: &str = "/ui/jobs";

/// `?id=`.
#[derive(Debug, Deserialize)]
pub(super) struct JobQuery {
    #[serde(default)]
    id: String,
}

/// `GET /ui/jobs?id=`.
pub(super) async fn page(State(state): State<UiState>, session: SessionExt, Query(query): Query<JobQuery>) -> Response {
    if let Some(refused) = lacks(&session, crate::auth::Scope::Read, "Jobs", ACTIVE) {
        return refused;
    }
    let id_text = query.id.trim();
    let mut body = format!(
        "<form method=\"get\" action=\"/ui/jobs\" class=\"filters\" id=\"lookup\"><label>job id\
         <input name=\"id\" value=\"{}\" size=\"40\" placeholder=\"0190…\"></label>\
         <button type=\"submit\">Look up</button></form>",
        esc(id_text)
    );
    if id_text.is_empty() {
        return frame("Jobs", ACTIVE, &session.csrf, &body).into_response();
    }
    let Ok(id) = Uuid::parse_str(id_text) else {
        body.push_str(&notice("error", "id: not a UUID"));
        return (StatusCode::BAD_REQUEST, frame("Jobs", ACTIVE, &session.csrf, &body)).into_response();
    };
    // Another tenant's job is as absent to a tenant's token as to the API.
    let owned = match &session.principal.tenant {
        None => true,
        Some(_) => match state.api.store.owner(id).await {
            Ok(owner) => session.principal.owns(owner.as_deref().unwrap_or(yizhan_schemas::DEFAULT_TENANT)),
            Err(_) => false,
        },
    };
    let status = match state.api.store.status(id).await {
        Ok(Some(status)) if owned => status,
        Ok(Some(_)) => {
            body.push_str(&notice("note", "No job with this id was submitted (or its record has expired)."));
            return frame("Jobs", ACTIVE, &session.csrf, &body).into_response();
        }
        Ok(None) => {
            let text = match state.api.store.accepted(id).await {
                Ok(true) if owned => "queued: accepted by the API, not taken by a worker yet",
                Ok(_) => "No job with this id was submitted (or its record has expired).",
                Err(_) => "The state store is unavailable.",
            };
            body.push_str(&notice("note", text));
            return frame("Jobs", ACTIVE, &session.csrf, &body).into_response();
        }
        Err(e) => {
            tracing::warn!(error = %e, "console: state store");
            body.push_str(&notice("error", "The state store is unavailable."));
            return (StatusCode::SERVICE_UNAVAILABLE, frame("Jobs", ACTIVE, &session.csrf, &body)).into_response();
        }
    };
    let _ = write!(
        body,
        "<dl class=\"fields\" id=\"job\"><dt>id</dt><dd><code>{id}</code></dd>\
         <dt>status</dt><dd><span class=\"badge {s}\" id=\"job-status\">{s}</span></dd>\
         <dt>attempts</dt><dd id=\"job-attempts\">{}</dd>",
        status.attempts,
        s = esc(&status.status),
    );
    let mut field = |name: &str, value: String| {
        let _ = write!(body, "<dt>{name}</dt><dd>{value}</dd>");
    };
    if let Some(kind) = &status.error_kind {
        field("error kind", esc(kind));
    }
    if let Some(error) = &status.error {
        field("error", format!("<span id=\"job-error\">{}</span>", esc(error)));
    }
    if let Some(at) = status.next_attempt_at {
        field("next attempt", time(at));
    }
    if let Some(original) = status.duplicate_of {
        field("duplicate of", format!("<a href=\"/ui/jobs?id={original}\">{original}</a>"));
    }
    if let Some(campaign) = status.campaign {
        field("campaign", format!("<a href=\"/ui/campaigns/{campaign}\">{campaign}</a>"));
    }
    body.push_str("</dl>");
    if let Some(result) = &status.result {
        body.push_str("<h2>Result</h2>");
        body.push_str(&json_block(result));
    }
    if let Some(delivery) = &status.delivery {
        body.push_str("<h2>Receipts</h2><table id=\"receipts\"><tr><th>recipient</th><th>delivery</th><th>provider code</th><th>at</th></tr>");
        for (recipient, d) in delivery {
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(recipient),
                d.state.as_str(),
                esc(d.code.as_deref().unwrap_or("")),
                d.at.map(time).unwrap_or_default(),
            );
        }
        body.push_str("</table>");
    }
    frame("Jobs", ACTIVE, &session.csrf, &body).into_response()
}

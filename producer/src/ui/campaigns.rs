//! Campaigns: the list (newest first, a page at a time) and one campaign's progress from the
//! store's counters, with pause, resume and cancel (the API's own handlers, so both act alike).

use std::fmt::Write;

use axum::extract::{FromRef, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use uuid::Uuid;
use yizhan_state::{CampaignStatus, StoreError};

use super::html::{csrf_field, esc, notice, page, problem_page, time};
use super::state::{FormExt, SessionExt, UiState, lacks};
use crate::api::campaigns::{self as api, CampaignState};
use crate::auth::Scope;

const ACTIVE: &str = "/ui/campaigns";
/// Campaigns per page of the list.
const PAGE: usize = 50;

/// `?before=<id>` (the list's next page) or `?id=` (go to one).
#[derive(Debug, Default, Deserialize)]
pub(super) struct ListQuery {
    #[serde(default)]
    id: String,
    #[serde(default)]
    before: String,
}

fn progress(status: &CampaignStatus) -> String {
    let mut counts = String::new();
    for (state, n) in &status.counts {
        let _ = write!(counts, "<span class=\"badge {s}\">{s} {n}</span> ", s = esc(state));
    }
    counts
}

/// `GET /ui/campaigns`.
pub(super) async fn list(
    State(state): State<UiState>,
    session: SessionExt,
    Query(query): Query<ListQuery>,
) -> Response {
    if let Some(refused) = lacks(&session, Scope::Campaigns, "Campaigns", ACTIVE) {
        return refused;
    }
    let id = query.id.trim();
    if !id.is_empty() {
        return match Uuid::parse_str(id) {
            Ok(id) => Redirect::to(&format!("/ui/campaigns/{id}")).into_response(),
            Err(_) => problem_page(StatusCode::BAD_REQUEST, "Campaigns", ACTIVE, &session.csrf, "id: not a UUID"),
        };
    }
    let before = match query.before.trim() {
        "" => None,
        text => match Uuid::parse_str(text) {
            Ok(id) => Some(id),
            Err(_) => {
                return problem_page(StatusCode::BAD_REQUEST, "Campaigns", ACTIVE, &session.csrf, "before: not a UUID");
            }
        },
    };
    let mut body = String::from(
        "<form method=\"get\" action=\"/ui/campaigns\" class=\"filters\"><label>campaign id\
         <input name=\"id\" size=\"40\"></label><button type=\"submit\" class=\"secondary\">Open</button></form>",
    );
    let campaigns = match state.api.store.campaigns(before, PAGE).await {
        // A tenant's token sees its own campaigns only.
        Ok(campaigns) => campaigns.into_iter().filter(|c| session.principal.owns(&c.tenant)).collect::<Vec<_>>(),
        Err(StoreError::Unsupported(what)) => {
            body.push_str(&notice(
                "note",
                &format!("This state store does not support {what}: open a campaign by its id."),
            ));
            return page("Campaigns", ACTIVE, &session.csrf, &body).into_response();
        }
        Err(e) => {
            tracing::warn!(error = %e, "console: listing campaigns");
            body.push_str(&notice("error", "The state store is unavailable."));
            return (StatusCode::SERVICE_UNAVAILABLE, page("Campaigns", ACTIVE, &session.csrf, &body)).into_response();
        }
    };
    if campaigns.is_empty() {
        body.push_str(&notice("note", "No campaigns."));
    } else {
        body.push_str(
            "<table id=\"campaigns\"><tr><th>campaign</th><th>name</th><th>tenant</th><th>status</th>\
             <th class=\"num\">jobs</th><th>progress</th><th>created</th></tr>",
        );
        for c in &campaigns {
            let _ = write!(
                body,
                "<tr data-id=\"{id}\"><td class=\"id\"><a href=\"/ui/campaigns/{id}\">{id}</a></td><td>{}</td><td>{}</td>\
                 <td><span class=\"badge {s}\">{s}</span></td><td class=\"num\">{}</td><td>{}</td><td>{}</td></tr>",
                esc(c.name.as_deref().unwrap_or("")),
                esc(&c.tenant),
                c.total,
                progress(c),
                time(c.created_at),
                id = c.id,
                s = esc(&c.status),
            );
        }
        body.push_str("</table>");
        if campaigns.len() == PAGE
            && let Some(last) = campaigns.last()
        {
            let _ =
                write!(body, "<p><a href=\"/ui/campaigns?before={}\" id=\"older\">Older campaigns →</a></p>", last.id);
        }
    }
    page("Campaigns", ACTIVE, &session.csrf, &body).into_response()
}

/// `GET /ui/campaigns/{id}`.
pub(super) async fn show(State(state): State<UiState>, session: SessionExt, Path(id): Path<String>) -> Response {
    if let Some(refused) = lacks(&session, Scope::Campaigns, "Campaign", ACTIVE) {
        return refused;
    }
    let csrf = &session.csrf;
    let Ok(id) = Uuid::parse_str(&id) else {
        return problem_page(StatusCode::BAD_REQUEST, "Campaign", ACTIVE, csrf, "The campaign id is not a UUID.");
    };
    let status = match state.api.store.campaign(id).await {
        Ok(Some((record, status))) if session.principal.owns(&record.tenant) => status,
        Ok(_) => return problem_page(StatusCode::NOT_FOUND, "Campaign", ACTIVE, csrf, "No campaign with this id."),
        Err(e) => {
            tracing::warn!(error = %e, "console: state store");
            return problem_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Campaign",
                ACTIVE,
                csrf,
                "The state store is unavailable.",
            );
        }
    };
    let finished: u64 = status
        .counts
        .iter()
        .filter(|(state, _)| matches!(state.as_str(), "succeeded" | "dead" | "cancelled" | "capped"))
        .map(|(_, n)| n)
        .sum();
    let mut body = String::new();
    let _ = write!(
        body,
        "<dl class=\"fields\" id=\"campaign\"><dt>id</dt><dd><code>{id}</code></dd><dt>name</dt><dd>{}</dd>\
         <dt>tenant</dt><dd>{}</dd><dt>status</dt><dd><span class=\"badge {s}\" id=\"campaign-status\">{s}</span></dd>\
         <dt>jobs</dt><dd>{} ({finished} finished)</dd><dt>by state</dt><dd id=\"campaign-counts\">{}</dd>\
         <dt>delivered</dt><dd>{} delivered, {} undelivered (receipts)</dd><dt>created</dt><dd>{}</dd>",
        esc(status.name.as_deref().unwrap_or("")),
        esc(&status.tenant),
        status.total,
        progress(&status),
        status.delivered,
        status.undelivered,
        time(status.created_at),
        s = esc(&status.status),
    );
    if let Some(at) = status.send_at {
        let _ = write!(body, "<dt>send at</dt><dd>{}</dd>", time(at));
    }
    body.push_str("</dl><div class=\"actions\">");
    if status.status != "cancelled" {
        let (action, label) = if status.status == "paused" { ("resume", "Resume") } else { ("pause", "Pause") };
        let _ = write!(
            body,
            "<form method=\"post\" action=\"/ui/campaigns/{id}/{action}\" class=\"inline\">{}\
             <button type=\"submit\" id=\"campaign-{action}\">{label}</button></form>\
             <form method=\"post\" action=\"/ui/campaigns/{id}/cancel\" class=\"inline\">{}\
             <button type=\"submit\" class=\"danger\" id=\"campaign-cancel\">Cancel</button></form>",
            csrf_field(csrf),
            csrf_field(csrf),
        );
    }
    body.push_str("</div>");
    page("Campaign", ACTIVE, csrf, &body).into_response()
}

/// `POST /ui/campaigns/{id}/pause|resume|cancel`.
pub(super) async fn control(
    State(state): State<UiState>,
    session: SessionExt,
    _form: FormExt,
    Path((id, action)): Path<(String, String)>,
) -> Response {
    if let Some(refused) = lacks(&session, Scope::Campaigns, "Campaign", ACTIVE) {
        return refused;
    }
    let campaigns = CampaignState::from_ref(&state.api);
    let path = Path(id.clone());
    let principal = axum::Extension(session.principal.clone());
    let answer = match action.as_str() {
        "pause" => api::pause(State(campaigns), principal, path).await,
        "resume" => api::resume(State(campaigns), principal, path).await,
        "cancel" => api::cancel(State(campaigns), principal, path).await,
        _ => return problem_page(StatusCode::NOT_FOUND, "Campaign", ACTIVE, &session.csrf, "Unknown action."),
    };
    if answer.status().is_success() {
        return Redirect::to(&format!("/ui/campaigns/{id}")).into_response();
    }
    let status = answer.status();
    let text = match status {
        StatusCode::NOT_FOUND => "No campaign with this id.".to_string(),
        StatusCode::CONFLICT => "The campaign is cancelled.".to_string(),
        StatusCode::BAD_REQUEST => "The campaign id is not a UUID.".to_string(),
        other => format!("The action failed ({other})."),
    };
    problem_page(status, "Campaign", ACTIVE, &session.csrf, &text)
}

//! The dead-letter pages: filter by kind, connector and time, show one, replay the selected or
//! every matching letter, purge with a confirmation. All of it is [`crate::dlq`]'s, over a
//! connection opened for the request.
//!
//! A quorum queue cannot be peeked: listing takes letters and publishes them back (see
//! [`crate::dlq`]), so the page reads at most [`LIST_LIMIT`] of them and says how many more there
//! are. Replaying and purging act on the whole queue.
//!
//! Every page here holds the API's readers' lock ([`crate::api::dead_letters::DeadLetterAccess::one_at_a_time`]) while it
//! uses the queue: two readers at once would each see only the letters the other had not taken.

use std::fmt::Write;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::html::{csrf_field, esc, json_block, notice, page, problem_page};
use super::state::{FormExt, SessionExt, UiState, lacks};
use crate::auth::Scope;
use crate::dlq::{DeadLetter, Dlq, Filter, parse_since};

/// Most letters one page view reads.
pub(super) const LIST_LIMIT: usize = 500;
const ACTIVE: &str = "/ui/dead";
const KINDS: &[&str] = &["permanent", "exhausted", "invalid", "ambiguous", "callback"];

/// The page's filters and what the last action did.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ListQuery {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    connector: String,
    #[serde(default)]
    since: String,
    /// After a replay: how many went back, and how many failed.
    replayed: Option<usize>,
    failed: Option<usize>,
    /// After a purge: how many were removed.
    purged: Option<u64>,
}

impl ListQuery {
    fn filter(&self) -> Result<Filter, String> {
        let since = match self.since.trim() {
            "" => None,
            text => Some(parse_since(text)?),
        };
        let set = |text: &str| Some(text.trim().to_string()).filter(|t| !t.is_empty());
        Ok(Filter { kind: set(&self.kind), connector: set(&self.connector), since, ids: Vec::new() })
    }

    /// The filters as a query string (to come back to the same view).
    fn query_string(&self) -> String {
        let enc = |t: &str| percent_encoding::utf8_percent_encode(t, percent_encoding::NON_ALPHANUMERIC).to_string();
        format!("kind={}&connector={}&since={}", enc(&self.kind), enc(&self.connector), enc(&self.since))
    }
}

/// The dead-letter queue, with the readers' lock: keep the guard until done with the queue.
async fn connect(state: &UiState) -> Result<(tokio::sync::MutexGuard<'_, ()>, Dlq), String> {
    let one_at_a_time = state.api.dead_letters.one_at_a_time().await;
    let dlq = Dlq::connect(&state.settings.amqp_url, state.settings.names.clone()).await.map_err(|e| e.to_string())?;
    Ok((one_at_a_time, dlq.with_tenants(state.api.store.clone())))
}

/// `GET /ui/dead`.
pub(super) async fn list(
    State(state): State<UiState>,
    session: SessionExt,
    Query(query): Query<ListQuery>,
) -> Response {
    if let Some(refused) = lacks(&session, Scope::Dlq, "Dead letters", ACTIVE) {
        return refused;
    }
    let csrf = &session.csrf;
    let filter = match query.filter() {
        Ok(filter) => filter,
        Err(e) => return problem_page(StatusCode::BAD_REQUEST, "Dead letters", ACTIVE, csrf, &e),
    };
    let (_one_at_a_time, dlq) = match connect(&state).await {
        Ok(connected) => connected,
        Err(e) => return problem_page(StatusCode::SERVICE_UNAVAILABLE, "Dead letters", ACTIVE, csrf, &e),
    };
    let depth = dlq.depth().await.unwrap_or(0);
    let letters = match dlq.list_first(LIST_LIMIT).await {
        Ok(letters) => letters,
        Err(e) => return problem_page(StatusCode::SERVICE_UNAVAILABLE, "Dead letters", ACTIVE, csrf, &e.to_string()),
    };
    // A tenant's token sees its own tenant's letters only (as `GET /v1/dlq`).
    let shown: Vec<&DeadLetter> =
        letters.iter().filter(|l| session.principal.owns(l.tenant()) && filter.matches(l)).collect();

    let mut body = String::new();
    if let Some(replayed) = query.replayed {
        let failed = query.failed.unwrap_or(0);
        let kind = if failed > 0 { "error" } else { "ok" };
        let text = format!("Replayed {replayed} dead letter(s) to their lanes; {failed} could not be replayed.");
        let _ = write!(body, "<p class=\"{kind}\" id=\"flash\">{}</p>", esc(&text));
    }
    if let Some(purged) = query.purged {
        let _ = write!(body, "<p class=\"ok\" id=\"flash\">Purged {purged} dead letter(s).</p>");
    }
    // Filters.
    let mut kinds = String::from("<option value=\"\">any</option>");
    for kind in KINDS {
        let selected = if query.kind == *kind { " selected" } else { "" };
        let _ = write!(kinds, "<option value=\"{kind}\"{selected}>{kind}</option>");
    }
    let _ = write!(
        body,
        "<form method=\"get\" action=\"/ui/dead\" class=\"filters\" id=\"filters\">\
         <label>kind<select name=\"kind\">{kinds}</select></label>\
         <label>connector<input name=\"connector\" value=\"{}\" placeholder=\"tencent_sms\"></label>\
         <label>submitted since<input name=\"since\" value=\"{}\" placeholder=\"2h or 2026-01-01T00:00:00Z\"></label>\
         <button type=\"submit\" class=\"secondary\">Filter</button></form>",
        esc(&query.connector),
        esc(&query.since),
    );
    let more = depth as usize > letters.len();
    let summary = if more {
        format!(
            "{} of the first {} letters match; the queue holds {depth} (the page reads at most {LIST_LIMIT}).",
            shown.len(),
            letters.len()
        )
    } else {
        format!("{} of {} letters match.", shown.len(), letters.len())
    };
    let _ = write!(body, "<p class=\"note\" id=\"summary\">{}</p>", esc(&summary));

    // The table is one form: a checkbox per letter, two replay buttons.
    let _ = write!(
        body,
        "<form method=\"post\" action=\"/ui/dead/replay\" id=\"replay\">{}\
         <input type=\"hidden\" name=\"kind\" value=\"{}\"><input type=\"hidden\" name=\"connector\" value=\"{}\">\
         <input type=\"hidden\" name=\"since\" value=\"{}\">\
         <div class=\"actions\"><button type=\"submit\" name=\"scope\" value=\"selected\" id=\"replay-selected\">Replay selected</button>\
         <button type=\"submit\" name=\"scope\" value=\"matching\" id=\"replay-all\" class=\"secondary\">Replay all matching</button>\
         <a href=\"/ui/dead/purge\" id=\"purge-link\">Purge…</a></div>",
        csrf_field(&session.csrf),
        esc(&query.kind),
        esc(&query.connector),
        esc(&query.since),
    );
    body.push_str(
        "<table id=\"letters\"><tr><th></th><th>job</th><th>kind</th><th>connector.config</th><th>action</th>\
         <th class=\"num\">attempts</th><th>reason</th><th>submitted</th></tr>",
    );
    for letter in &shown {
        let id = letter.id.as_deref().unwrap_or("");
        let checkbox = if id.is_empty() {
            String::new()
        } else {
            format!("<input type=\"checkbox\" name=\"id\" value=\"{}\" aria-label=\"select\">", esc(id))
        };
        let link = if id.is_empty() {
            "(no id)".to_string()
        } else {
            format!("<a href=\"/ui/dead/letter/{0}\">{0}</a>", esc(id))
        };
        let _ = write!(
            body,
            "<tr class=\"letter\" data-id=\"{}\"><td>{checkbox}</td><td class=\"id\">{link}</td><td>{}</td><td>{}.{}</td>\
             <td>{}</td><td class=\"num\">{}</td><td class=\"reason\">{}</td><td>{}</td></tr>",
            esc(id),
            esc(&letter.kind),
            esc(letter.connector.as_deref().unwrap_or("?")),
            esc(letter.config.as_deref().unwrap_or("?")),
            esc(letter.action.as_deref().unwrap_or("")),
            letter.attempts,
            esc(&letter.reason),
            esc(letter.submitted_at.as_deref().unwrap_or("")),
        );
    }
    body.push_str("</table></form>");
    page("Dead letters", ACTIVE, &session.csrf, &body).into_response()
}

/// `GET /ui/dead/letter/{id}`: one letter (searched among the first [`LIST_LIMIT`]).
pub(super) async fn show(State(state): State<UiState>, session: SessionExt, Path(id): Path<String>) -> Response {
    if let Some(refused) = lacks(&session, Scope::Dlq, "Dead letters", ACTIVE) {
        return refused;
    }
    let csrf = &session.csrf;
    let (_one_at_a_time, dlq) = match connect(&state).await {
        Ok(connected) => connected,
        Err(e) => return problem_page(StatusCode::SERVICE_UNAVAILABLE, "Dead letter", ACTIVE, csrf, &e),
    };
    let letters = match dlq.list_first(LIST_LIMIT).await {
        Ok(letters) => letters,
        Err(e) => return problem_page(StatusCode::SERVICE_UNAVAILABLE, "Dead letter", ACTIVE, csrf, &e.to_string()),
    };
    let Some(letter) =
        letters.iter().find(|l| l.id.as_deref() == Some(id.as_str()) && session.principal.owns(l.tenant()))
    else {
        let text = format!("No dead letter {id} among the first {LIST_LIMIT} of the queue.");
        return problem_page(StatusCode::NOT_FOUND, "Dead letter", ACTIVE, csrf, &text);
    };
    let mut body = String::new();
    let _ = write!(
        body,
        "<dl class=\"fields\" id=\"letter\"><dt>job</dt><dd><a href=\"/ui/jobs?id={id}\">{id}</a></dd>\
         <dt>kind</dt><dd>{}</dd><dt>reason</dt><dd>{}</dd><dt>attempts</dt><dd>{}</dd>\
         <dt>connector</dt><dd>{}</dd><dt>config</dt><dd>{}</dd><dt>action</dt><dd>{}</dd>\
         <dt>tenant</dt><dd>{}</dd><dt>submitted</dt><dd>{}</dd></dl>",
        esc(&letter.kind),
        esc(&letter.reason),
        letter.attempts,
        esc(letter.connector.as_deref().unwrap_or("")),
        esc(letter.config.as_deref().unwrap_or("")),
        esc(letter.action.as_deref().unwrap_or("")),
        esc(letter.tenant.as_deref().unwrap_or("default")),
        esc(letter.submitted_at.as_deref().unwrap_or("")),
        id = esc(&id),
    );
    body.push_str("<h2>Message</h2>");
    body.push_str(&json_block(&letter.job));
    let _ = write!(
        body,
        "<form method=\"post\" action=\"/ui/dead/replay\">{}<input type=\"hidden\" name=\"id\" value=\"{}\">\
         <div class=\"actions\"><button type=\"submit\" name=\"scope\" value=\"selected\">Replay this letter</button></div></form>",
        csrf_field(&session.csrf),
        esc(&id),
    );
    page("Dead letter", ACTIVE, &session.csrf, &body).into_response()
}

/// `POST /ui/dead/replay`: `scope=selected` with `id` fields, or `scope=matching` with the filters.
pub(super) async fn replay(State(state): State<UiState>, session: SessionExt, form: FormExt) -> Response {
    if let Some(refused) = lacks(&session, Scope::Dlq, "Dead letters", ACTIVE) {
        return refused;
    }
    let csrf = &session.csrf;
    let query = ListQuery {
        kind: form.get("kind").unwrap_or_default().to_string(),
        connector: form.get("connector").unwrap_or_default().to_string(),
        since: form.get("since").unwrap_or_default().to_string(),
        ..ListQuery::default()
    };
    let filter = match form.get("scope") {
        Some("selected") => {
            let ids = form.all("id");
            if ids.is_empty() {
                return problem_page(
                    StatusCode::BAD_REQUEST,
                    "Dead letters",
                    ACTIVE,
                    csrf,
                    "Select at least one letter to replay.",
                );
            }
            Filter { ids, ..Filter::default() }
        }
        Some("matching") => match query.filter() {
            Ok(filter) => filter,
            Err(e) => return problem_page(StatusCode::BAD_REQUEST, "Dead letters", ACTIVE, csrf, &e),
        },
        _ => {
            return problem_page(
                StatusCode::BAD_REQUEST,
                "Dead letters",
                ACTIVE,
                csrf,
                "scope: expected selected or matching",
            );
        }
    };
    let (_one_at_a_time, dlq) = match connect(&state).await {
        Ok(connected) => connected,
        Err(e) => return problem_page(StatusCode::SERVICE_UNAVAILABLE, "Dead letters", ACTIVE, csrf, &e),
    };
    let principal = &session.principal;
    let report = match dlq.replay(&|letter| principal.owns(letter.tenant()) && filter.matches(letter)).await {
        Ok(report) => report,
        Err(e) => return problem_page(StatusCode::SERVICE_UNAVAILABLE, "Dead letters", ACTIVE, csrf, &e.to_string()),
    };
    for failure in &report.failed {
        tracing::warn!(%failure, "console: a dead letter was not replayed");
    }
    tracing::info!(
        who = %principal.who(),
        replayed = report.replayed.len(),
        failed = report.failed.len(),
        "console: dead letters replayed"
    );
    let back =
        format!("/ui/dead?{}&replayed={}&failed={}", query.query_string(), report.replayed.len(), report.failed.len());
    Redirect::to(&back).into_response()
}

/// `GET /ui/dead/purge`: asks first, naming how many letters would go.
pub(super) async fn confirm_purge(State(state): State<UiState>, session: SessionExt) -> Response {
    if let Some(refused) = lacks(&session, Scope::Dlq, "Dead letters", ACTIVE) {
        return refused;
    }
    let csrf = &session.csrf;
    let (_one_at_a_time, dlq) = match connect(&state).await {
        Ok(connected) => connected,
        Err(e) => return problem_page(StatusCode::SERVICE_UNAVAILABLE, "Purge dead letters", ACTIVE, csrf, &e),
    };
    let depth = dlq.depth().await.unwrap_or(0);
    let whose = match &session.principal.tenant {
        None => format!("every letter in the dead-letter queue ({depth} now)"),
        Some(tenant) => format!("every letter of tenant {tenant} in the dead-letter queue"),
    };
    let mut body = notice("error", &format!("This deletes {whose}, whatever the filters. It cannot be undone."));
    let _ = write!(
        body,
        "<form method=\"post\" action=\"/ui/dead/purge\" id=\"purge\">{}<input type=\"hidden\" name=\"confirm\" value=\"yes\">\
         <div class=\"actions\"><button type=\"submit\" class=\"danger\" id=\"purge-confirm\">Purge</button>\
         <a href=\"/ui/dead\">Cancel</a></div></form>",
        csrf_field(csrf),
    );
    page("Purge dead letters", ACTIVE, csrf, &body).into_response()
}

/// `POST /ui/dead/purge` with `confirm=yes`.
pub(super) async fn purge(State(state): State<UiState>, session: SessionExt, form: FormExt) -> Response {
    if let Some(refused) = lacks(&session, Scope::Dlq, "Dead letters", ACTIVE) {
        return refused;
    }
    let csrf = &session.csrf;
    if form.get("confirm") != Some("yes") {
        return problem_page(
            StatusCode::BAD_REQUEST,
            "Purge dead letters",
            ACTIVE,
            csrf,
            "The purge was not confirmed.",
        );
    }
    let (_one_at_a_time, dlq) = match connect(&state).await {
        Ok(connected) => connected,
        Err(e) => return problem_page(StatusCode::SERVICE_UNAVAILABLE, "Purge dead letters", ACTIVE, csrf, &e),
    };
    // A tenant's token deletes its own letters only (as `POST /v1/dlq/purge`).
    let principal = &session.principal;
    let purged = match &principal.tenant {
        None => dlq.purge().await.map(u64::from),
        Some(_) => dlq.discard(&|letter| principal.owns(letter.tenant())).await.map(|ids| ids.len() as u64),
    };
    match purged {
        Ok(purged) => {
            tracing::info!(who = %principal.who(), purged, "console: dead letters purged");
            Redirect::to(&format!("/ui/dead?purged={purged}")).into_response()
        }
        Err(e) => problem_page(StatusCode::SERVICE_UNAVAILABLE, "Purge dead letters", ACTIVE, csrf, &e.to_string()),
    }
}

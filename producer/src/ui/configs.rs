//! The configs page: each connector config's policy (limits, quiet hours, caps, fallback, ...)
//! from the config file, and its provider pause; never a secret.
//!
//! Only the policy keys listed in [`SHOWN`] are read from each table, so a credential field (of
//! any connector kind, present or future) can never be shown. The file is read on each view, so
//! the page shows what a reload (SIGHUP) would apply.
//!
//! Pauses: a provider's back-pressure (429, "busy" codes, `Retry-After`) pauses a whole config on
//! every worker. With a Redis state store the pause is a key with a time to live, shared by the
//! fleet ([`yizhan_state::config_pause_key`]); with SQLite each worker keeps its own in memory,
//! which the API cannot see.

use std::fmt::Write;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::html::{esc, notice, page as frame, problem_page};
use super::state::{SessionExt, UiState};
use crate::auth::Principal;

/// The policy keys shown, in order (none holds a secret).
const SHOWN: &[&str] = &[
    "rate_limit",
    "quiet_hours",
    "timezone",
    "quiet_priorities",
    "recipient_caps",
    "on_cap",
    "fallback",
    "fallback_after",
    "fallback_attempts",
    "on_ambiguous",
    "status_query",
    "receipts",
];

/// (kind, name, policy) of each config in the file, in file order.
type Configs = Vec<(String, String, Vec<(&'static str, String)>)>;

/// The configs `principal` may use (a scoped token sees its own configs only).
fn read_configs(state: &UiState, principal: &Principal) -> Result<Configs, String> {
    let path = &state.settings.config;
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let root: toml::Table =
        toml::from_str(&text).map_err(|e| format!("{} is not valid TOML: {}", path.display(), e.message()))?;
    let mut configs = Vec::new();
    let Some(kinds) = root.get("connectors").and_then(toml::Value::as_table) else {
        return Ok(configs);
    };
    for (kind, names) in kinds {
        let Some(names) = names.as_table() else { continue };
        for (name, table) in names {
            let Some(table) = table.as_table().filter(|_| principal.configs.allows(kind, name)) else { continue };
            let policy = SHOWN
                .iter()
                .filter_map(|key| {
                    table.get(*key).map(|value| match value {
                        toml::Value::String(s) => (*key, s.clone()),
                        other => (*key, other.to_string()),
                    })
                })
                .collect();
            configs.push((kind.clone(), name.clone(), policy));
        }
    }
    Ok(configs)
}

/// How long each config stays paused, when the pauses are visible (Redis); None with SQLite.
async fn pauses(state: &UiState, configs: &Configs) -> Option<Vec<Option<Duration>>> {
    let mut redis = state.redis().await?;
    let prefix = &state.settings.names.prefix;
    let mut pipe = redis::pipe();
    for (kind, name, _) in configs {
        pipe.cmd("PTTL").arg(yizhan_state::config_pause_key(prefix, kind, name));
    }
    match pipe.query_async::<Vec<i64>>(&mut redis).await {
        Ok(ttls) => Some(ttls.into_iter().map(|ms| u64::try_from(ms).ok().map(Duration::from_millis)).collect()),
        Err(e) => {
            tracing::warn!(error = %e, "console: reading pauses");
            None
        }
    }
}

/// The overview's section: the paused configs and why, or why none can be shown.
pub(super) async fn pauses_section(state: &UiState, principal: &Principal) -> String {
    let configs = match read_configs(state, principal) {
        Ok(configs) => configs,
        Err(e) => return notice("error", &e),
    };
    let Some(pauses) = pauses(state, &configs).await else {
        return notice(
            "note",
            "Provider pauses are kept by each worker in memory with a SQLite state store; a Redis state store shares them with the fleet and shows them here.",
        );
    };
    let paused: Vec<_> =
        configs.iter().zip(&pauses).filter_map(|((kind, name, _), p)| p.map(|p| (kind, name, p))).collect();
    if paused.is_empty() {
        return notice("note", "No config is paused.");
    }
    let mut out = String::from("<table id=\"paused\"><tr><th>config</th><th>paused for</th><th>why</th></tr>");
    for (kind, name, left) in paused {
        let _ = write!(
            out,
            "<tr><td>{}.{}</td><td>{}</td><td>the provider asked to slow down (rate limited or busy): every worker waits</td></tr>",
            esc(kind),
            esc(name),
            humantime::format_duration(Duration::from_secs(left.as_secs().max(1))),
        );
    }
    out.push_str("</table>");
    out
}

/// `GET /ui/configs`.
pub(super) async fn page(State(state): State<UiState>, session: SessionExt) -> Response {
    let configs = match read_configs(&state, &session.principal) {
        Ok(configs) => configs,
        Err(e) => return problem_page(StatusCode::INTERNAL_SERVER_ERROR, "Configs", "/ui/configs", &session.csrf, &e),
    };
    let pauses = pauses(&state, &configs).await;
    let mut body =
        String::from("<table id=\"configs\"><tr><th>kind</th><th>config</th><th>policy</th><th>state</th></tr>");
    for (i, (kind, name, policy)) in configs.iter().enumerate() {
        let mut fields = String::new();
        for (key, value) in policy {
            let _ = write!(fields, "<dt>{key}</dt><dd><code>{}</code></dd>", esc(value));
        }
        if fields.is_empty() {
            fields.push_str("<dt>policy</dt><dd>defaults (no limit, no quiet hours, no caps, no fallback)</dd>");
        }
        let state_text = match pauses.as_ref().map(|p| p[i]) {
            Some(Some(left)) => format!(
                "<span class=\"badge paused\">paused</span> for {}",
                humantime::format_duration(Duration::from_secs(left.as_secs().max(1)))
            ),
            Some(None) => "<span class=\"badge running\">sending</span>".to_string(),
            None => "— (pauses are per worker with SQLite)".to_string(),
        };
        let _ = write!(
            body,
            "<tr data-config=\"{k}.{n}\"><td>{k}</td><td>{n}</td><td><dl class=\"fields\">{fields}</dl></td><td>{state_text}</td></tr>",
            k = esc(kind),
            n = esc(name),
        );
    }
    body.push_str("</table>");
    body.push_str(&notice(
        "note",
        "Read from the config file on each view; credentials and endpoints are never shown. Token buckets are not \
         shown: a limiter's state is a next-free time per worker or per fleet, not a count.",
    ));
    frame("Configs", "/ui/configs", &session.csrf, &body).into_response()
}

//! The overview: lane depths from the broker, jobs by outcome from the workers' counters, provider
//! pauses, workers connected.
//!
//! - Depths: a passive `queue.declare` per queue answers its ready messages and consumers (no
//!   management plugin needed, so unacked messages are not counted by the broker here; the
//!   workers' `yizhan_jobs_in_flight` stands for them).
//! - Outcomes: the workers' `/metrics` listed in `--worker-metrics` are scraped when the page is
//!   viewed (nothing is added to the job path); rates are the change since the previous view.
//! - Pauses: with a Redis state store, the fleet's provider pauses (see [`super::configs`]).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use yizhan_schemas::{DEFAULT_TENANT, Priority};

use super::html::{esc, notice, page as frame};
use super::state::{Sample, SessionExt, UiState};

/// Tenants whose lanes the overview shows (the first ones the store lists; the rest are counted).
const MAX_TENANTS: usize = 20;
/// The outcomes of `yizhan_jobs_total`, in the order shown.
const OUTCOMES: &[&str] = &[
    "succeeded",
    "retried",
    "dead_lettered",
    "duplicate",
    "invalid",
    "cancelled",
    "deferred",
    "capped",
    "failed_over",
];
/// A previous sample older than this gives no rate (it would average over too long).
const RATE_WINDOW: Duration = Duration::from_secs(600);

/// One queue's depth: None when it does not exist (or the broker refused the declare).
struct Depth {
    queue: String,
    ready: Option<u32>,
    consumers: Option<u32>,
}

/// One worker's scrape.
struct WorkerScrape {
    url: String,
    up: bool,
    connected: Option<f64>,
    in_flight: Option<f64>,
    outcomes: BTreeMap<String, f64>,
}

/// `GET /ui`.
pub(super) async fn page(State(state): State<UiState>, session: SessionExt) -> Response {
    let names = &state.settings.names;
    let mut queues: Vec<(String, String)> = Vec::new(); // (what, queue)
    let tenants = match state.api.store.tenants().await {
        Ok(tenants) => tenants,
        Err(e) => {
            tracing::warn!(error = %e, "console: listing tenants");
            Vec::new()
        }
    };
    // A tenant's token sees its own tenant's lanes only.
    let principal = &session.principal;
    let mut shown: Vec<&str> = match &principal.tenant {
        Some(tenant) => vec![tenant.as_str()],
        None => vec![DEFAULT_TENANT],
    };
    shown.extend(tenants.iter().map(String::as_str).filter(|t| *t != DEFAULT_TENANT && principal.tenant.is_none()));
    let hidden = shown.len().saturating_sub(MAX_TENANTS);
    shown.truncate(MAX_TENANTS);
    for tenant in &shown {
        for lane in [Priority::High, Priority::Normal, Priority::Bulk] {
            queues.push((format!("{} lane, tenant {tenant}", lane.as_str()), names.tenant_lane(lane, tenant)));
        }
    }
    for delay in &state.settings.delays {
        queues.push((format!("retry delay {}", humantime::format_duration(*delay)), names.delay(*delay)));
    }
    queues.push(("completion callbacks".into(), names.callbacks()));
    queues.push(("dead letters".into(), names.dead()));
    let depths = depths(&state, &queues).await;
    let workers = scrape_workers(&state).await;

    let mut body = String::new();
    // Outcome totals and rates.
    let mut totals: BTreeMap<String, f64> = BTreeMap::new();
    for worker in &workers {
        for (outcome, n) in &worker.outcomes {
            *totals.entry(outcome.clone()).or_default() += n;
        }
    }
    let now = Instant::now();
    let previous = {
        let mut last = state.last_sample.lock().expect("sample");
        let previous = last.take();
        if !workers.is_empty() {
            *last = Some(Sample { at: now, outcomes: totals.clone() });
        }
        previous
    };
    let consumers: u32 =
        depths.iter().filter(|d| d.queue.contains(".jobs.")).filter_map(|d| d.consumers).max().unwrap_or(0);
    let ready: u64 = depths.iter().filter(|d| d.queue.contains(".jobs.")).filter_map(|d| d.ready).map(u64::from).sum();
    let dead = depths.last().and_then(|d| d.ready).unwrap_or(0);
    let in_flight: f64 = workers.iter().filter_map(|w| w.in_flight).sum();
    let _ = write!(
        body,
        "<div class=\"cards\">{}{}{}{}</div>",
        card("jobs waiting in lanes", &ready.to_string(), "ready"),
        card("in flight (workers)", &format!("{in_flight}"), "in-flight"),
        card("dead letters", &dead.to_string(), "dead"),
        card("workers consuming", &consumers.to_string(), "workers"),
    );

    body.push_str("<h2>Jobs by outcome</h2>");
    if state.settings.worker_metrics.is_empty() {
        body.push_str(&notice(
            "note",
            "No worker metrics listed: start the API with --worker-metrics (YIZHAN_WORKER_METRICS) naming each worker's /metrics URL.",
        ));
    } else {
        let rate_base = previous.filter(|p| now.duration_since(p.at) <= RATE_WINDOW);
        body.push_str(
            "<table id=\"outcomes\"><tr><th>outcome</th><th class=\"num\">total</th><th class=\"num\">jobs/s</th></tr>",
        );
        for outcome in OUTCOMES {
            let total = totals.get(*outcome).copied().unwrap_or(0.0);
            let rate = rate_base.as_ref().map(|p| {
                let before = p.outcomes.get(*outcome).copied().unwrap_or(0.0);
                let seconds = now.duration_since(p.at).as_secs_f64().max(0.001);
                // A restarted worker's counters start again from zero: no negative rates.
                ((total - before) / seconds).max(0.0)
            });
            let rate = rate.map_or_else(|| "—".to_string(), |r| format!("{r:.2}"));
            let _ = write!(
                body,
                "<tr data-outcome=\"{outcome}\"><td>{outcome}</td><td class=\"num\">{total}</td><td class=\"num\">{rate}</td></tr>"
            );
        }
        body.push_str("</table>");
        if rate_base.is_none() {
            body.push_str(&notice(
                "note",
                "Rates appear from the next view: they are the change since the previous one.",
            ));
        }
        body.push_str("<h2>Workers</h2><table id=\"workers\"><tr><th>metrics</th><th>state</th><th>broker</th><th class=\"num\">in flight</th></tr>");
        for worker in &workers {
            let connected = match worker.connected {
                Some(c) if c > 0.0 => "connected",
                Some(_) => "disconnected",
                None => "—",
            };
            let _ = write!(
                body,
                "<tr><td><code>{}</code></td><td>{}</td><td>{connected}</td><td class=\"num\">{}</td></tr>",
                esc(&worker.url),
                if worker.up { "up" } else { "unreachable" },
                worker.in_flight.map_or_else(|| "—".into(), |n| n.to_string()),
            );
        }
        body.push_str("</table>");
    }

    body.push_str("<h2>Queues</h2><table id=\"lanes\"><tr><th>queue</th><th>what</th><th class=\"num\">ready</th><th class=\"num\">consumers</th></tr>");
    for ((what, _), depth) in queues.iter().zip(&depths) {
        let number = |n: Option<u32>| n.map_or_else(|| "—".to_string(), |n| n.to_string());
        let _ = write!(
            body,
            "<tr data-queue=\"{q}\"><td><code>{q}</code></td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(what),
            number(depth.ready),
            number(depth.consumers),
            q = esc(&depth.queue),
        );
    }
    body.push_str("</table>");
    if hidden > 0 {
        body.push_str(&notice("note", &format!("{hidden} more tenants' lanes are not shown.")));
    }
    body.push_str(&notice(
        "note",
        "Ready and consumers come from the broker (a passive declare). Unacknowledged messages need RabbitMQ's \
         management plugin, which the console does not use: the workers' in-flight count stands for them. \
         — means the queue does not exist yet.",
    ));

    body.push_str("<h2>Paused configs</h2>");
    body.push_str(&super::configs::pauses_section(&state, principal).await);
    frame("Overview", "/ui", &session.csrf, &body).into_response()
}

fn card(label: &str, value: &str, id: &str) -> String {
    format!(
        "<div class=\"card\" id=\"card-{id}\"><div class=\"value\">{}</div><div class=\"label\">{}</div></div>",
        esc(value),
        esc(label)
    )
}

/// Each queue's depth by a passive declare on the API's broker connection; a missing queue
/// closes the channel, so another is opened for the next one.
async fn depths(state: &UiState, queues: &[(String, String)]) -> Vec<Depth> {
    let unknown = |queue: &str| Depth { queue: queue.to_string(), ready: None, consumers: None };
    let Some(producer) = state.api.producer.get() else {
        return queues.iter().map(|(_, q)| unknown(q)).collect();
    };
    let mut channel = None;
    let mut out = Vec::with_capacity(queues.len());
    for (_, queue) in queues {
        if channel.is_none() {
            channel = producer.connection().create_channel().await.ok();
        }
        let Some(open) = &channel else {
            out.push(unknown(queue));
            continue;
        };
        let options = QueueDeclareOptions { passive: true, ..Default::default() };
        match open.queue_declare(queue.as_str().into(), options, FieldTable::default()).await {
            Ok(declared) => out.push(Depth {
                queue: queue.clone(),
                ready: Some(declared.message_count()),
                consumers: Some(declared.consumer_count()),
            }),
            Err(_) => {
                channel = None;
                out.push(unknown(queue));
            }
        }
    }
    if let Some(open) = channel {
        let _ = open.close(200, "depths read".into()).await;
    }
    out
}

/// Scrapes every listed worker at once (2 s timeout each).
async fn scrape_workers(state: &UiState) -> Vec<WorkerScrape> {
    let scrapes = state.settings.worker_metrics.iter().map(|url| async move {
        let text = match state.http.get(url).send().await {
            Ok(response) if response.status().is_success() => response.text().await.ok(),
            _ => None,
        };
        let mut scrape = WorkerScrape {
            url: url.clone(),
            up: text.is_some(),
            connected: None,
            in_flight: None,
            outcomes: BTreeMap::new(),
        };
        if let Some(text) = text {
            for (name, labels, value) in text.lines().filter_map(parse_sample) {
                match name {
                    "yizhan_jobs_total" => {
                        if let Some(outcome) = label(labels, "outcome") {
                            *scrape.outcomes.entry(outcome.to_string()).or_default() += value;
                        }
                    }
                    "yizhan_jobs_in_flight" => scrape.in_flight = Some(value),
                    "yizhan_broker_connected" => scrape.connected = Some(value),
                    _ => {}
                }
            }
        }
        scrape
    });
    futures::future::join_all(scrapes).await
}

/// One Prometheus text line: (name, labels, value); None for comments and other lines.
fn parse_sample(line: &str) -> Option<(&str, &str, f64)> {
    if line.starts_with('#') {
        return None;
    }
    let (series, value) = line.rsplit_once(' ')?;
    let value: f64 = value.parse().ok()?;
    match series.split_once('{') {
        Some((name, labels)) => Some((name, labels.trim_end_matches('}'), value)),
        None => Some((series, "", value)),
    }
}

/// A label's value in `a="x",b="y"` (label values here never hold quotes or commas).
fn label<'l>(labels: &'l str, name: &str) -> Option<&'l str> {
    labels
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim_matches('"'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_lines_parse() {
        let line = r#"yizhan_jobs_total{action="send_sms",connector="tencent_sms",outcome="succeeded"} 42"#;
        let (name, labels, value) = parse_sample(line).unwrap();
        assert_eq!((name, value), ("yizhan_jobs_total", 42.0));
        assert_eq!(label(labels, "outcome"), Some("succeeded"));
        assert_eq!(parse_sample("yizhan_jobs_in_flight 3"), Some(("yizhan_jobs_in_flight", "", 3.0)));
        assert_eq!(parse_sample("# HELP x y"), None);
    }
}

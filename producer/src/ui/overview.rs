//! The overview: lane depths from the broker, jobs by outcome from the workers' counters, provider
//! pauses, workers connected.
//!
//! - Depths: with `--rabbit-management`, one `GET /api/queues/<vhost>` of RabbitMQ's management
//!   API per view answers every queue's ready and unacked messages and consumers (its statistics
//!   are a few seconds old). A queue it does not list (yet), and every queue without it, gets a
//!   passive `queue.declare`, which answers ready messages and consumers but not unacked ones:
//!   then the workers' `yizhan_jobs_in_flight` stands for them, and the page says why.
//! - Outcomes: the workers' `/metrics` listed in `--worker-metrics` are scraped when the page is
//!   viewed (nothing is added to the job path); rates are the change since the previous view.
//! - Pauses: with a Redis state store, the fleet's provider pauses (see [`super::configs`]).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use serde::Deserialize;
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

/// The columns the overview asks the management API for.
const MANAGEMENT_COLUMNS: &str = "name,messages_ready,messages_unacknowledged,consumers";

/// One queue's depth: None when it does not exist (or the broker refused the declare), and
/// `unacked` None too when it was read without the management API.
struct Depth {
    queue: String,
    ready: Option<u64>,
    unacked: Option<u64>,
    consumers: Option<u64>,
}

/// One queue in the management API's answer. The counts are absent until the broker has
/// reported statistics for a new queue.
#[derive(Debug, PartialEq, Deserialize)]
struct ManagedQueue {
    name: String,
    #[serde(default)]
    messages_ready: Option<u64>,
    #[serde(default)]
    messages_unacknowledged: Option<u64>,
    #[serde(default)]
    consumers: Option<u64>,
}

/// A user name and password, taken out of the management URL for basic authentication.
type Credentials = (String, Option<String>);

/// The management API's queues by name, or why there are none (shown on the page).
type Managed = Result<HashMap<String, ManagedQueue>, String>;

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
            // Every shard of a sharded lane (YIZHAN_LANE_SHARDS), shard 0 being the lane's own queue.
            for (shard, queue) in names.lane_shards(lane, tenant).into_iter().enumerate() {
                let what = match shard {
                    0 => format!("{} lane, tenant {tenant}", lane.as_str()),
                    k => format!("{} lane, tenant {tenant}, shard {k}", lane.as_str()),
                };
                queues.push((what, queue));
            }
        }
    }
    for delay in &state.settings.delays {
        queues.push((format!("retry delay {}", humantime::format_duration(*delay)), names.delay(*delay)));
    }
    queues.push(("completion callbacks".into(), names.callbacks()));
    queues.push(("dead letters".into(), names.dead()));
    let (managed, workers) = tokio::join!(managed_queues(&state), scrape_workers(&state));
    let depths = depths(&state, &queues, &managed).await;

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
    let lanes = || depths.iter().filter(|d| d.queue.contains(".jobs."));
    let consumers: u64 = lanes().filter_map(|d| d.consumers).max().unwrap_or(0);
    let ready: u64 = lanes().filter_map(|d| d.ready).sum();
    let unacked: u64 = lanes().filter_map(|d| d.unacked).sum();
    let dead = depths.last().and_then(|d| d.ready).unwrap_or(0);
    let in_flight: f64 = workers.iter().filter_map(|w| w.in_flight).sum();
    let unacked_card = match &managed {
        Ok(_) => card("unacked in lanes (broker)", &unacked.to_string(), "unacked"),
        Err(_) => card("in flight (workers)", &format!("{in_flight}"), "in-flight"),
    };
    let _ = write!(
        body,
        "<div class=\"cards\">{}{}{}{}</div>",
        card("jobs waiting in lanes", &ready.to_string(), "ready"),
        unacked_card,
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

    body.push_str(
        "<h2>Queues</h2><table id=\"lanes\"><tr><th>queue</th><th>what</th><th class=\"num\">ready</th>\
         <th class=\"num\">unacked</th><th class=\"num\">consumers</th></tr>",
    );
    for ((what, _), depth) in queues.iter().zip(&depths) {
        let number = |n: Option<u64>| n.map_or_else(|| "—".to_string(), |n| n.to_string());
        // Unacked without the management API is unknown, not absent.
        let unacked = match (&managed, depth.unacked) {
            (_, Some(n)) => n.to_string(),
            (Err(_), None) if depth.ready.is_some() => "?".to_string(),
            (_, None) => "—".to_string(),
        };
        let _ = write!(
            body,
            "<tr data-queue=\"{q}\"><td><code>{q}</code></td><td>{}</td><td class=\"num\" data-col=\"ready\">{}</td>\
             <td class=\"num\" data-col=\"unacked\">{unacked}</td><td class=\"num\" data-col=\"consumers\">{}</td></tr>",
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
    match &managed {
        Ok(_) => body.push_str(&notice(
            "note",
            "Ready, unacked and consumers come from RabbitMQ's management API (its statistics are a few seconds \
             old). — means the queue does not exist yet.",
        )),
        Err(reason) => {
            let _ = write!(
                body,
                "<p class=\"note\" id=\"unacked-unknown\">Unacked messages are unknown (?): {}. Ready and consumers \
                 come from the broker (a passive declare); the workers' in-flight count stands for the unacked. \
                 — means the queue does not exist yet.</p>",
                esc(reason)
            );
        }
    }

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

/// Each queue's depth: from the management API's answer where it has the queue's counts, else
/// by a passive declare on the API's broker connection (a missing queue closes the channel, so
/// another is opened for the next one).
async fn depths(state: &UiState, queues: &[(String, String)], managed: &Managed) -> Vec<Depth> {
    let unknown = |queue: &str| Depth { queue: queue.to_string(), ready: None, unacked: None, consumers: None };
    let mut channel = None;
    let mut out = Vec::with_capacity(queues.len());
    for (_, queue) in queues {
        let counted = managed.as_ref().ok().and_then(|m| m.get(queue)).filter(|m| m.messages_ready.is_some());
        if let Some(m) = counted {
            out.push(Depth {
                queue: queue.clone(),
                ready: m.messages_ready,
                unacked: m.messages_unacknowledged,
                consumers: m.consumers,
            });
            continue;
        }
        let Some(producer) = state.api.producer.get() else {
            out.push(unknown(queue));
            continue;
        };
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
                ready: Some(declared.message_count().into()),
                unacked: None,
                consumers: Some(declared.consumer_count().into()),
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

/// Every queue of the broker's vhost by one `GET /api/queues/<vhost>` of the management API
/// (the client's 2 s timeout); Err: why not, for the page (never the URL's credentials).
async fn managed_queues(state: &UiState) -> Managed {
    let Some(management) = &state.settings.rabbit_management else {
        return Err(
            "set --rabbit-management (YIZHAN_RABBIT_MANAGEMENT_URL) to RabbitMQ's management API to see them".into()
        );
    };
    let (url, credentials) = queues_url(management, &state.settings.amqp_url)?;
    let mut request = state.http.get(url.clone());
    if let Some((user, password)) = credentials {
        request = request.basic_auth(user, password);
    }
    let failed = |what: String| {
        tracing::warn!(error = %what, "console: RabbitMQ's management API");
        what
    };
    // `url` carries no credentials (they went into the Authorization header); the error's copy of
    // it is dropped anyway, the page names the URL once.
    let response = request
        .send()
        .await
        .map_err(|e| failed(format!("the management API at {url} did not answer: {}", e.without_url())))?;
    let status = response.status();
    if !status.is_success() {
        let hint = match status.as_u16() {
            401 | 403 => " (check the user, its password and its monitoring tag)",
            404 => " (no such vhost?)",
            _ => "",
        };
        return Err(failed(format!("the management API at {url} answered {status}{hint}")));
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| failed(format!("reading the management API's answer: {}", e.without_url())))?;
    parse_queues(&body).map_err(|e| failed(format!("the management API's answer is not a list of queues: {e}")))
}

/// The management API's URL of the broker's vhost's queues, credentials moved out of it into
/// (user, password) for basic authentication. The vhost is the AMQP URL's (the first of a
/// cluster's), percent-encoded as one path segment (`/` is `%2F`).
fn queues_url(management: &str, amqp_url: &str) -> Result<(reqwest::Url, Option<Credentials>), String> {
    let refused = "the --rabbit-management URL is not an http(s) URL".to_string();
    let mut url = reqwest::Url::parse(management.trim()).map_err(|_| refused.clone())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(refused);
    }
    let decode = |text: &str| percent_encoding::percent_decode_str(text).decode_utf8_lossy().into_owned();
    let credentials = (!url.username().is_empty() || url.password().is_some())
        .then(|| (decode(url.username()), url.password().map(decode)));
    url.set_username("").map_err(|()| refused.clone())?;
    url.set_password(None).map_err(|()| refused.clone())?;
    let first = amqp_url.split(',').next().unwrap_or_default().trim();
    let vhost = first
        .parse::<lapin::uri::AMQPUri>()
        .map_err(|_| "the broker URL does not parse, so its vhost is unknown".to_string())?
        .vhost;
    let vhost = percent_encoding::utf8_percent_encode(&vhost, percent_encoding::NON_ALPHANUMERIC);
    // The management API may sit under a path prefix (`management.path_prefix`).
    let path = format!("{}/api/queues/{vhost}", url.path().trim_end_matches('/'));
    url.set_path(&path);
    url.set_query(Some(&format!("columns={MANAGEMENT_COLUMNS}")));
    url.set_fragment(None);
    Ok((url, credentials))
}

/// The management API's answer to `GET /api/queues/<vhost>?columns=...`: a JSON array of queues.
fn parse_queues(body: &[u8]) -> Result<HashMap<String, ManagedQueue>, serde_json::Error> {
    let queues: Vec<ManagedQueue> = serde_json::from_slice(body)?;
    Ok(queues.into_iter().map(|q| (q.name.clone(), q)).collect())
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

    #[test]
    fn management_queues_parse() {
        // As RabbitMQ 3.10 answers `columns=name,messages_ready,messages_unacknowledged,consumers`;
        // a queue declared a moment ago has no counts yet.
        let body = br#"[
            {"consumers":1,"messages_ready":3,"messages_unacknowledged":2,"name":"yizhan.jobs.normal"},
            {"name":"yizhan.jobs.high"}
        ]"#;
        let queues = parse_queues(body).unwrap();
        let normal = &queues["yizhan.jobs.normal"];
        assert_eq!(
            (normal.messages_ready, normal.messages_unacknowledged, normal.consumers),
            (Some(3), Some(2), Some(1))
        );
        assert_eq!(queues["yizhan.jobs.high"].messages_ready, None);
        assert!(parse_queues(b"[]").unwrap().is_empty());
        assert!(parse_queues(br#"{"error":"not_authorised"}"#).is_err());
        assert!(parse_queues(br#"[{"name":"q","messages_ready":-1}]"#).is_err());
    }

    #[test]
    fn management_url_names_the_vhost_and_hides_the_credentials() {
        let (url, credentials) =
            queues_url("http://guest:gu%40st@127.0.0.1:15672", "amqp://guest:guest@127.0.0.1:5672/%2f").unwrap();
        assert_eq!(url.as_str(), format!("http://127.0.0.1:15672/api/queues/%2F?columns={MANAGEMENT_COLUMNS}"));
        assert_eq!(credentials, Some(("guest".to_string(), Some("gu@st".to_string()))));
        // A path prefix, a named vhost (the first node's of a cluster), no credentials.
        let (url, credentials) =
            queues_url("https://mq.example/rabbit/", "amqp://u:p@a:5672/prod%2Feu,amqp://u:p@b:5672/prod%2Feu")
                .unwrap();
        assert_eq!(url.path(), "/rabbit/api/queues/prod%2Feu");
        assert_eq!(credentials, None);
        // No vhost in the AMQP URL: the default one.
        assert_eq!(queues_url("http://h:15672", "amqp://h:5672").unwrap().0.path(), "/api/queues/%2F");
        for bad in ["127.0.0.1:15672", "ftp://h/", "not a url"] {
            let e = queues_url(bad, "amqp://h").unwrap_err();
            assert!(e.contains("--rabbit-management") && !e.contains(bad), "{e}");
        }
    }
}

//! `yizhan-producer campaign submit|status|pause|resume|cancel`: campaigns through the HTTP API.
//!
//! `submit FILE [--recipients PATH]` checks the head and every recipient locally first (so a bad
//! line anywhere sends nothing), then creates the campaign with the first chunk of recipients and
//! streams the rest to `POST /v1/campaigns/{id}/recipients`, a few chunks in flight at once: the
//! API validates and publishes one chunk while the next is on the wire.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, IsTerminal, Read as _};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Map, Value, json};
use tokio::task::JoinSet;
use yizhan_producer::api::campaigns::split_recipient_path;
use yizhan_schemas::{CampaignHead, expand, validate_campaign};

use crate::recipients::{Format, Read, ReadError, Recipients};

/// Where the API is, and the token to call it with.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct ApiArgs {
    /// Base URL of the HTTP API (`yizhan-producer serve`).
    #[arg(long = "api", global = true, env = "YIZHAN_API_URL", default_value = "http://127.0.0.1:8080")]
    api: String,
    /// Bearer token for the API.
    #[arg(long, global = true, env = "YIZHAN_API_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(clap::Subcommand, Debug)]
pub(crate) enum CampaignCommand {
    /// Submit a campaign: FILE is its JSON head (everything but the recipients, which it may hold
    /// too); --recipients streams more from a CSV or JSON-lines file. Prints the campaign id on
    /// stdout, progress on stderr. Exit 0: submitted (or submitted before); 1: invalid input, or
    /// the API refused the campaign; 2: the API is unreachable or failed.
    Submit {
        /// The campaign's JSON head.
        file: String,
        /// More recipients: CSV (header row with a `to` column; `x` sets params.x, `x[]` appends
        /// to the array params.x) or JSON lines (`{"to": ..., "params": {...}}` per line).
        #[arg(long)]
        recipients: Option<String>,
        /// Recipients per request (each request body must stay under the API's body limit).
        #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        chunk: u32,
        /// When the campaign was submitted before (same tenant and idempotency key), send its
        /// recipients again anyway: those already sent are not sent twice (their idempotency keys
        /// are), the others are; for finishing a submission that was cut short.
        #[arg(long)]
        resume: bool,
    },
    /// Print a campaign's status and counts as JSON.
    Status { id: String },
    /// Pause a campaign: none of its jobs reaches a provider until it is resumed.
    Pause { id: String },
    /// Resume a paused campaign.
    Resume { id: String },
    /// Cancel a campaign: none of its unsent jobs is ever sent.
    Cancel { id: String },
}

/// Requests in flight at once while streaming recipients: one being validated, one being
/// published, one on the wire.
const IN_FLIGHT: usize = 3;
/// Tries of one chunk when the API is unreachable or answers 503 (resending is safe: the jobs'
/// idempotency keys absorb a chunk that was in fact enqueued).
const TRIES: u32 = 5;
/// Errors printed before the rest are only counted.
const MAX_ERRORS_SHOWN: usize = 50;

pub(crate) async fn run(api: ApiArgs, command: CampaignCommand) -> ExitCode {
    let client = Client::new(api);
    match command {
        CampaignCommand::Submit { file, recipients, chunk, resume } => {
            submit(&client, &file, recipients.as_deref(), chunk as usize, resume).await
        }
        CampaignCommand::Status { id } => control(&client, reqwest::Method::GET, &id, "").await,
        CampaignCommand::Pause { id } => control(&client, reqwest::Method::POST, &id, "/pause").await,
        CampaignCommand::Resume { id } => control(&client, reqwest::Method::POST, &id, "/resume").await,
        CampaignCommand::Cancel { id } => control(&client, reqwest::Method::POST, &id, "/cancel").await,
    }
}

#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    base: Arc<str>,
    token: Option<Arc<str>>,
}

/// An answer that is not the one hoped for, and the exit code it means.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn input(message: impl Into<String>) -> Failure {
        Failure { code: 1, message: message.into() }
    }

    fn api(message: impl Into<String>) -> Failure {
        Failure { code: 2, message: message.into() }
    }
}

impl Client {
    fn new(api: ApiArgs) -> Client {
        yizhan_broker::install_crypto_provider();
        Client {
            http: reqwest::Client::new(),
            base: api.api.trim_end_matches('/').into(),
            token: api.token.filter(|t| !t.is_empty()).map(Into::into),
        }
    }

    /// One call; (status, JSON body or Null).
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Value), String> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.header(reqwest::header::CONTENT_TYPE, "application/json").body(body);
        }
        let response = request.send().await.map_err(|e| format!("cannot reach the API at {}: {e}", self.base))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| format!("reading the API's answer: {e}"))?;
        Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
    }

    /// A call retried while the API is unreachable or answers 503.
    async fn call_retrying(&self, path: &str, body: Vec<u8>) -> Result<(StatusCode, Value), String> {
        let mut wait = Duration::from_millis(500);
        let mut tries = 0;
        loop {
            tries += 1;
            let outcome = self.call(reqwest::Method::POST, path, Some(body.clone())).await;
            let retry = match &outcome {
                Err(_) => true,
                Ok((status, _)) => *status == StatusCode::SERVICE_UNAVAILABLE,
            };
            if !retry || tries >= TRIES {
                return outcome;
            }
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    }
}

/// The message for an answer that is neither success nor a validation error.
fn unexpected(status: StatusCode, body: &Value) -> Failure {
    let reason = body["error"].as_str().map_or_else(|| body.to_string(), str::to_string);
    match status {
        StatusCode::UNAUTHORIZED => Failure::api("the API refused the token (pass --token or set YIZHAN_API_TOKEN)"),
        StatusCode::NOT_FOUND => Failure::input(format!("not found: {reason}")),
        StatusCode::CONFLICT => Failure::input(format!("the campaign is {}", body["status"].as_str().unwrap_or("?"))),
        StatusCode::PAYLOAD_TOO_LARGE => Failure::input(format!("{reason} (use a smaller --chunk)")),
        _ => Failure::api(format!("the API answered {status}: {reason}")),
    }
}

async fn control(client: &Client, method: reqwest::Method, id: &str, action: &str) -> ExitCode {
    if uuid::Uuid::parse_str(id).is_err() {
        eprintln!("{id:?} is not a campaign id (a UUID)");
        return ExitCode::from(1);
    }
    let body = (method == reqwest::Method::POST).then(Vec::new);
    match client.call(method, &format!("/v1/campaigns/{id}{action}"), body).await {
        Ok((status, body)) if status.is_success() => {
            println!("{}", serde_json::to_string_pretty(&body).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            let failure = unexpected(status, &body);
            eprintln!("campaign {id}: {}", failure.message);
            ExitCode::from(failure.code)
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

/// The files of a submission, to say where a problem is.
#[derive(Clone, Copy)]
struct Files<'a> {
    head: &'a str,
    recipients: Option<&'a str>,
}

impl Files<'_> {
    /// `campaign.json: $.recipients[3].to: reason` or `r.csv line 9: $.to: reason`; `rest` is the
    /// path within the recipient.
    fn describe(&self, origin: &Origin, rest: &str, reason: &str) -> String {
        match origin {
            Origin::Inline(i) => format!("{}: $.recipients[{i}]{rest}: {reason}", self.head),
            Origin::Line(line) => format!("{} line {line}: ${rest}: {reason}", self.recipients.unwrap_or("")),
        }
    }

    /// A line of the recipients file that could not be read.
    fn describe_read(&self, e: &ReadError) -> String {
        format!("{} line {}: {}", self.recipients.unwrap_or(""), e.line, e.reason)
    }

    /// An error of a chunk whose recipients came from `origins`, by its JSON path.
    fn locate(&self, origins: &[Origin], path: &str, reason: &str) -> String {
        match split_recipient_path(path) {
            Some((i, rest)) if i < origins.len() => self.describe(&origins[i], rest, reason),
            _ => format!("{}: {path}: {reason}", self.head),
        }
    }
}

/// Where a recipient came from, for error messages; ordered as the submission reads them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Origin {
    /// `recipients[i]` of FILE.
    Inline(usize),
    /// A line of the recipients file.
    Line(usize),
}

/// The recipients of a submission in order: FILE's own, then the recipients file's.
struct Source {
    inline: std::vec::IntoIter<Value>,
    inline_index: usize,
    file: Option<Recipients<Box<dyn BufRead + Send>>>,
}

impl Source {
    fn open(inline: Vec<Value>, path: Option<&str>) -> Result<Source, String> {
        let file = match path {
            None => None,
            Some(path) => {
                let mut reader: Box<dyn BufRead + Send> = Box::new(BufReader::with_capacity(
                    1 << 20,
                    std::fs::File::open(path).map_err(|e| format!("cannot read {path}: {e}"))?,
                ));
                let head = reader.fill_buf().map_err(|e| format!("cannot read {path}: {e}"))?.to_vec();
                Some(Recipients::new(reader, Format::detect(path, &head)))
            }
        };
        Ok(Source { inline: inline.into_iter(), inline_index: 0, file })
    }
}

impl Iterator for Source {
    type Item = Result<Recipient, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(recipient) = self.inline.next() {
            self.inline_index += 1;
            return Some(Ok((Origin::Inline(self.inline_index - 1), recipient)));
        }
        let next = self.file.as_mut()?.next()?;
        Some(next.map(|Read { line, recipient }| (Origin::Line(line), recipient)))
    }
}

/// Reads FILE: the head (with `recipients: []`) and its own recipients.
fn read_head(file: &str) -> Result<(Value, Vec<Value>), String> {
    let mut text = String::new();
    std::fs::File::open(file)
        .and_then(|mut f| f.read_to_string(&mut text))
        .map_err(|e| format!("cannot read {file}: {e}"))?;
    let mut head: Map<String, Value> = match serde_json::from_str(&text) {
        Ok(Value::Object(head)) => head,
        Ok(_) => return Err(format!("{file}: $: not a JSON object")),
        Err(e) => return Err(format!("{file}: $: not JSON: {e}")),
    };
    let inline = match head.remove("recipients") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(format!("{file}: $.recipients: not an array")),
    };
    head.insert("recipients".to_string(), json!([]));
    Ok((Value::Object(head), inline))
}

/// Checks every recipient against the head on all cores, reading the source once. Returns how
/// many there are, or every problem as a printable line, in file order.
fn check_all(head: &CampaignHead, files: Files<'_>, mut source: Source, chunk: usize) -> Result<usize, Vec<String>> {
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    let (to_check, checking) = std::sync::mpsc::sync_channel::<Vec<Recipient>>(threads * 2);
    let checking = std::sync::Mutex::new(checking);
    let (report, reports) = std::sync::mpsc::channel::<Vec<(Origin, String)>>();
    let mut total = 0;
    let mut problems: Vec<(Origin, String)> = Vec::new();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let (report, checking) = (report.clone(), &checking);
            scope.spawn(move || {
                while let Ok(batch) = checking.lock().expect("checker lock").recv() {
                    let (origins, values): (Vec<Origin>, Vec<Value>) = batch.into_iter().unzip();
                    let Err(errors) = expand(head, &values, 0) else { continue };
                    let found = errors
                        .iter()
                        .map(|e| {
                            let origin = split_recipient_path(&e.path)
                                .and_then(|(i, _)| origins.get(i).copied())
                                .unwrap_or(Origin::Inline(0));
                            (origin, files.locate(&origins, &e.path, &e.reason))
                        })
                        .collect();
                    if report.send(found).is_err() {
                        return;
                    }
                }
            });
        }
        drop(report);
        let mut batch = Vec::with_capacity(chunk);
        for item in source.by_ref() {
            match item {
                Ok(recipient) => {
                    total += 1;
                    batch.push(recipient);
                    if batch.len() == chunk {
                        let _ = to_check.send(std::mem::replace(&mut batch, Vec::with_capacity(chunk)));
                    }
                }
                Err(e) => problems.push((Origin::Line(e.line), files.describe_read(&e))),
            }
        }
        if !batch.is_empty() {
            let _ = to_check.send(batch);
        }
        drop(to_check);
        problems.extend(reports.iter().flatten());
    });
    // Stable: one recipient's errors keep their order.
    problems.sort_by_key(|(origin, _)| *origin);
    if problems.is_empty() { Ok(total) } else { Err(problems.into_iter().map(|(_, line)| line).collect()) }
}

/// Prints progress on stderr: a line rewritten in place on a terminal, a line every few seconds
/// otherwise.
struct Progress {
    total: usize,
    sent: usize,
    started: Instant,
    last: Instant,
    terminal: bool,
}

impl Progress {
    fn new(total: usize) -> Progress {
        let now = Instant::now();
        Progress { total, sent: 0, started: now, last: now, terminal: std::io::stderr().is_terminal() }
    }

    fn rate(&self) -> f64 {
        self.sent as f64 / self.started.elapsed().as_secs_f64().max(0.001)
    }

    fn add(&mut self, jobs: usize) {
        self.sent += jobs;
        let every = if self.terminal { Duration::from_millis(200) } else { Duration::from_secs(2) };
        if self.last.elapsed() >= every {
            self.last = Instant::now();
            let percent = if self.total == 0 { 100.0 } else { self.sent as f64 * 100.0 / self.total as f64 };
            let line = format!("{}/{} recipients sent ({percent:.0}%, {:.0}/s)", self.sent, self.total, self.rate());
            if self.terminal {
                eprint!("\r{line}");
            } else {
                eprintln!("{line}");
            }
        }
    }

    fn finish(&self, id: &str) {
        if self.terminal {
            eprint!("\r");
        }
        let seconds = self.started.elapsed().as_secs_f64();
        eprintln!("campaign {id}: {} jobs enqueued in {seconds:.1} s ({:.0}/s)", self.sent, self.rate());
    }
}

fn chunk_body(recipients: &[Recipient]) -> Vec<u8> {
    let values: Vec<&Value> = recipients.iter().map(|(_, v)| v).collect();
    serde_json::to_vec(&json!({"recipients": values})).expect("recipients serialise")
}

/// The lines of a 400's `errors`, mapped back to where each recipient came from.
fn rejected(body: &Value, origins: &[Origin], files: Files<'_>) -> Vec<String> {
    let Some(errors) = body["errors"].as_array() else { return vec![format!("the API refused the request: {body}")] };
    errors
        .iter()
        .map(|e| files.locate(origins, e["path"].as_str().unwrap_or("$"), e["reason"].as_str().unwrap_or("")))
        .collect()
}

fn print_problems(lines: &[String]) {
    for line in lines.iter().take(MAX_ERRORS_SHOWN) {
        eprintln!("{line}");
    }
    if lines.len() > MAX_ERRORS_SHOWN {
        eprintln!("... and {} more", lines.len() - MAX_ERRORS_SHOWN);
    }
}

/// A recipient as read, and where from.
type Recipient = (Origin, Value);
/// One request's outcome: (status, JSON body), or why the API could not be reached.
type Answer = Result<(StatusCode, Value), String>;

async fn submit(client: &Client, file: &str, recipients_path: Option<&str>, chunk: usize, resume: bool) -> ExitCode {
    let files = Files { head: file, recipients: recipients_path };
    let (mut head_value, inline) = match read_head(file) {
        Ok(read) => read,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let head = match validate_campaign(&head_value) {
        Ok((head, _)) => head,
        Err(errors) => {
            for e in errors {
                eprintln!("{file}: {}: {}", e.path, e.reason);
            }
            return ExitCode::from(1);
        }
    };
    if head_value.get("idempotency_key").is_none_or(Value::is_null) {
        eprintln!("{file} sets no idempotency_key: submitting it again will send it again");
        // One for this run, so that a request retried after a lost answer is still one campaign.
        head_value["idempotency_key"] = json!(format!("cli-{}", uuid::Uuid::now_v7()));
    }

    // Every recipient is checked before anything is sent: a bad line anywhere sends nothing.
    let checked = match Source::open(inline.clone(), recipients_path) {
        Ok(source) => std::thread::scope(|scope| {
            scope.spawn(|| check_all(&head, files, source, chunk)).join().expect("the check does not panic")
        }),
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let total = match checked {
        Ok(total) => total,
        Err(problems) => {
            print_problems(&problems);
            eprintln!("nothing was sent");
            return ExitCode::from(1);
        }
    };

    let source = match Source::open(inline, recipients_path) {
        Ok(source) => source,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let mut sending = Sending { client, files, source, chunk, progress: Progress::new(total) };
    match sending.run(head_value, resume).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("{}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// The sending half of `campaign submit`.
struct Sending<'a> {
    client: &'a Client,
    files: Files<'a>,
    source: Source,
    chunk: usize,
    progress: Progress,
}

impl Sending<'_> {
    /// The next chunk of recipients; empty at the end.
    fn next_chunk(&mut self) -> Result<Vec<Recipient>, Failure> {
        let mut batch = Vec::with_capacity(self.chunk.min(self.progress.total));
        for item in self.source.by_ref() {
            // The check read the same file a moment ago; a change since is reported, not sent.
            let item = item.map_err(|e| Failure::input(self.files.describe_read(&e)))?;
            batch.push(item);
            if batch.len() == self.chunk {
                break;
            }
        }
        Ok(batch)
    }

    /// Creates the campaign with the first chunk, then sends the rest, [`IN_FLIGHT`] chunks at once.
    async fn run(&mut self, mut head: Value, resume: bool) -> Result<(), Failure> {
        let first = self.next_chunk()?;
        head["recipients"] = Value::Array(first.iter().map(|(_, v)| v.clone()).collect());
        let body = serde_json::to_vec(&head).expect("the head serialises");
        let (status, answer) = self.client.call_retrying("/v1/campaigns", body).await.map_err(Failure::api)?;
        let id = answer["id"].as_str().unwrap_or_default().to_string();
        let mut queued = VecDeque::new();
        match status {
            StatusCode::ACCEPTED => self.progress.add(answer["jobs"].as_u64().unwrap_or(0) as usize),
            StatusCode::OK if resume => {
                // Sent again through /recipients like the others; the jobs' keys absorb those sent before.
                queued.push_back(first);
            }
            StatusCode::OK => {
                println!("{id}");
                eprintln!(
                    "campaign {id} was submitted before (same tenant and idempotency key): nothing sent \
                     (--resume sends its recipients again; those already sent are not sent twice)"
                );
                return Ok(());
            }
            StatusCode::BAD_REQUEST => {
                let origins: Vec<Origin> = first.iter().map(|(o, _)| *o).collect();
                print_problems(&rejected(&answer, &origins, self.files));
                return Err(Failure::input("the API refused the campaign; nothing was sent"));
            }
            status => return Err(unexpected(status, &answer)),
        }
        // The id first: a submission cut short below is finished with --resume.
        println!("{id}");
        if let Err(failure) = self.send_chunks(&id, queued).await {
            let message = format!(
                "{}\ncampaign {id}: {} of {} recipients sent; run it again with --resume to send the rest",
                failure.message, self.progress.sent, self.progress.total
            );
            return Err(Failure { code: failure.code, message });
        }
        self.progress.finish(&id);
        Ok(())
    }

    /// Sends `queued` then every further chunk to the campaign's `/recipients`, keeping
    /// [`IN_FLIGHT`] requests going; stops at the first chunk the API refuses.
    async fn send_chunks(&mut self, id: &str, mut queued: VecDeque<Vec<Recipient>>) -> Result<(), Failure> {
        let path = format!("/v1/campaigns/{id}/recipients");
        let mut in_flight: JoinSet<(Vec<Origin>, Answer)> = JoinSet::new();
        let mut exhausted = false;
        let outcome = loop {
            while in_flight.len() < IN_FLIGHT && !exhausted {
                let batch = match queued.pop_front() {
                    Some(batch) => batch,
                    None => match self.next_chunk() {
                        Ok(batch) => batch,
                        Err(failure) => {
                            in_flight.shutdown().await;
                            return Err(failure);
                        }
                    },
                };
                if batch.is_empty() {
                    exhausted = true;
                    break;
                }
                let body = chunk_body(&batch);
                let origins: Vec<Origin> = batch.into_iter().map(|(o, _)| o).collect();
                let (client, path) = (self.client.clone(), path.clone());
                in_flight.spawn(async move { (origins, client.call_retrying(&path, body).await) });
            }
            let Some(done) = in_flight.join_next().await else { break Ok(()) };
            let (origins, answer) = done.expect("a request task does not panic");
            match answer {
                Ok((StatusCode::ACCEPTED, body)) => self.progress.add(body["jobs"].as_u64().unwrap_or(0) as usize),
                Ok((StatusCode::BAD_REQUEST, body)) => {
                    print_problems(&rejected(&body, &origins, self.files));
                    break Err(Failure::input("the API refused a chunk of recipients"));
                }
                Ok((status, body)) => break Err(unexpected(status, &body)),
                Err(e) => break Err(Failure::api(e)),
            }
        };
        in_flight.shutdown().await;
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_point_at_the_file_and_line_each_recipient_came_from() {
        let files = Files { head: "campaign.json", recipients: Some("r.csv") };
        let origins = [Origin::Inline(4), Origin::Line(17)];
        assert_eq!(files.locate(&origins, "$.recipients[0].to", "bad"), "campaign.json: $.recipients[4].to: bad");
        assert_eq!(files.locate(&origins, "$.recipients[1].params.x", "bad"), "r.csv line 17: $.params.x: bad");
        assert_eq!(files.locate(&origins, "$.params.sign_name", "bad"), "campaign.json: $.params.sign_name: bad");
        let mut sorted = vec![Origin::Line(3), Origin::Inline(9), Origin::Line(1), Origin::Inline(2)];
        sorted.sort();
        assert_eq!(sorted, [Origin::Inline(2), Origin::Inline(9), Origin::Line(1), Origin::Line(3)]);
    }

    #[test]
    fn the_head_file_keeps_its_recipients_apart() {
        let dir = std::env::temp_dir().join(format!("yizhan-head-{}", std::process::id()));
        std::fs::write(&dir, r#"{"connector": "tencent_sms", "recipients": [{"to": "1"}]}"#).unwrap();
        let (head, inline) = read_head(dir.to_str().unwrap()).unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(head, json!({"connector": "tencent_sms", "recipients": []}));
        assert_eq!(inline, vec![json!({"to": "1"})]);
    }
}

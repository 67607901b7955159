//! `yizhan-producer`: `submit` jobs from a file or stdin, print the `catalog`, `serve` the HTTP API,
//! inspect, replay or purge the dead-letter queue (`dlq`), and submit and steer campaigns through
//! the HTTP API (`campaign`).

mod campaign_cli;
mod recipients;

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};
use yizhan_broker::Settings;
use yizhan_producer::Producer;
use yizhan_producer::dlq::{DeadLetter, Dlq, Filter, parse_since};
use yizhan_producer::serve::ServeSettings;
use yizhan_schemas::{FieldError, Job, MissingId, validate_job};

#[derive(Parser)]
#[command(name = "yizhan-producer", version, about = "Validates yizhan jobs and enqueues them on RabbitMQ")]
struct Cli {
    /// Global: accepted before or after the subcommand.
    #[command(flatten)]
    settings: Settings,
    #[command(flatten)]
    serve_before: ServeFlagsBefore,
    #[command(subcommand)]
    command: Command,
}

/// `serve`'s flags where they were first accepted, before the subcommand (`yizhan-producer --listen
/// ADDR serve`): hidden, kept for compatibility. Without environment or default, so that `serve`'s
/// own flags (after it), then these, then the environment decide, in that order.
#[derive(clap::Args)]
struct ServeFlagsBefore {
    #[arg(long = "listen", id = "before_listen", hide = true)]
    listen: Option<String>,
    #[arg(long = "api-tokens", id = "before_api_tokens", hide = true)]
    api_tokens: Option<String>,
    #[arg(long = "http-max-body", id = "before_http_max_body", hide = true)]
    http_max_body: Option<usize>,
    #[arg(long = "http-max-batch", id = "before_http_max_batch", hide = true)]
    http_max_batch: Option<usize>,
}

impl ServeFlagsBefore {
    /// The first flag given, for the error when the subcommand is not `serve`.
    fn first_given(&self) -> Option<&'static str> {
        [
            (self.listen.is_some(), "--listen"),
            (self.api_tokens.is_some(), "--api-tokens"),
            (self.http_max_body.is_some(), "--http-max-body"),
            (self.http_max_batch.is_some(), "--http-max-batch"),
        ]
        .into_iter()
        .find_map(|(given, flag)| given.then_some(flag))
    }

    /// `serve`'s settings with these applied wherever the same flag was not given after `serve`.
    fn apply(self, mut serve: ServeSettings, after: &ArgMatches) -> ServeSettings {
        let typed_after = |id| after.value_source(id) == Some(ValueSource::CommandLine);
        if let Some(listen) = self.listen.filter(|_| !typed_after("http_addr")) {
            serve.http_addr = listen;
        }
        if let Some(tokens) = self.api_tokens.filter(|_| !typed_after("api_tokens")) {
            serve.api_tokens = Some(tokens);
        }
        if let Some(max) = self.http_max_body.filter(|_| !typed_after("http_max_body")) {
            serve.http_max_body = max;
        }
        if let Some(max) = self.http_max_batch.filter(|_| !typed_after("http_max_batch")) {
            serve.http_max_batch = max;
        }
        serve
    }
}

#[derive(Subcommand)]
enum Command {
    /// Validate jobs (one JSON object per line) and publish the valid ones with publisher confirms.
    /// Prints each accepted id on stdout and `line N: <path>: <reason>` on stderr for each rejected
    /// line. Exit 0: all accepted; 1: some rejected; 2: broker unreachable or not confirming.
    Submit {
        /// A file of jobs, or `-` for stdin.
        #[arg(default_value = "-")]
        file: String,
    },
    /// Print every connector kind and action with its effect and params schema, as JSON.
    Catalog,
    /// Serve the HTTP API (see producer/openapi.json) on --listen until SIGTERM or SIGINT.
    Serve(ServeSettings),
    /// Inspect, replay or purge the dead-letter queue `<prefix>.dead`.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Submit a campaign (one template, many recipients) and see, pause, resume or cancel it,
    /// through the HTTP API (--api / YIZHAN_API_URL, --token / YIZHAN_API_TOKEN).
    Campaign {
        #[command(flatten)]
        api: campaign_cli::ApiArgs,
        #[command(subcommand)]
        command: campaign_cli::CampaignCommand,
    },
}

#[derive(clap::Args, Clone, Default)]
struct FilterArgs {
    /// Only this error kind: permanent, exhausted, invalid or ambiguous.
    #[arg(long)]
    kind: Option<String>,
    /// Only jobs of this connector kind.
    #[arg(long)]
    connector: Option<String>,
    /// Only jobs submitted since then: a duration back from now (2h) or an RFC 3339 time; the time
    /// is read from the job's UUIDv7 id.
    #[arg(long, value_parser = parse_since)]
    since: Option<std::time::SystemTime>,
}

impl FilterArgs {
    fn filter(&self, ids: Vec<String>) -> Filter {
        Filter { kind: self.kind.clone(), connector: self.connector.clone(), since: self.since, ids }
    }
}

#[derive(Subcommand)]
enum DlqCommand {
    /// List the dead letters (the queue is left as it was).
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print one dead letter, with its original job, as JSON.
    Show { id: String },
    /// Send dead letters back to their lane as first attempts (same id and idempotency key, so a job
    /// that in fact succeeded is still not sent twice). Exit 1 when nothing matched.
    Replay {
        /// Job ids to replay.
        ids: Vec<String>,
        /// Replay every dead letter that passes the filters.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Delete every dead letter. Asks for confirmation on a terminal; refuses (exit 1) without one
    /// unless --yes.
    Purge {
        #[arg(long)]
        yes: bool,
    },
}

/// Jobs are published in batches of this many, their confirms pipelined.
const BATCH: usize = 1000;

/// jemalloc, as in the worker: campaigns allocate a JSON value and a job per recipient, often
/// freed on another thread than the one that allocated them, where glibc's malloc spent half the
/// CPU of checking a million recipients.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // Only the API exports traces (it starts them); the other commands log.
    let traces = matches!(cli.command, Command::Serve(_));
    let telemetry = match yizhan_telemetry::init("yizhan-producer", yizhan_telemetry::LogFormat::Text, "warn", traces) {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Some(flag) = cli.serve_before.first_given()
        && !matches!(cli.command, Command::Serve(_))
    {
        Cli::command()
            .error(clap::error::ErrorKind::ArgumentConflict, format!("{flag} applies to `serve` only"))
            .exit();
    }
    match cli.command {
        Command::Catalog => {
            println!(
                "{}",
                serde_json::to_string_pretty(&yizhan_schemas::catalog::catalog_json()).expect("catalog serialises")
            );
            ExitCode::SUCCESS
        }
        Command::Submit { file } => submit(&cli.settings, &file).await,
        Command::Serve(serve) => {
            let after = matches.subcommand_matches("serve").expect("the serve subcommand matched");
            let serve = cli.serve_before.apply(serve, after);
            let served = yizhan_producer::serve::serve(&cli.settings, &serve, shutdown_signal()).await;
            // The spans of the last requests are still in the exporter's buffer.
            let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
            match served {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Campaign { api, command } => campaign_cli::run(api, command).await,
        Command::Dlq(command) => match dlq(&cli.settings, command).await {
            Ok(code) => code,
            Err(e) => {
                eprintln!("{e:#}");
                ExitCode::from(2)
            }
        },
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Exit 0 on success, 1 when nothing matched or the user declined, 2 (by the caller) on broker errors.
async fn dlq(settings: &Settings, command: DlqCommand) -> anyhow::Result<ExitCode> {
    // Purge asks before it connects, so that a refusal never touches the broker.
    if let DlqCommand::Purge { yes: false } = command {
        if !std::io::stdin().is_terminal() {
            eprintln!("refusing to purge without a terminal to confirm on; pass --yes");
            return Ok(ExitCode::from(1));
        }
        eprint!("delete every message in {}.dead? [y/N] ", settings.prefix);
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            eprintln!("nothing purged");
            return Ok(ExitCode::from(1));
        }
    }
    let queue = Dlq::connect(&settings.amqp_url, settings.names()).await?;
    match command {
        DlqCommand::List { filter, json } => {
            let filter = filter.filter(Vec::new());
            let letters: Vec<DeadLetter> = queue.list().await?.into_iter().filter(|l| filter.matches(l)).collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&letters)?);
            } else {
                for l in &letters {
                    let what = format!(
                        "{}/{}/{}",
                        l.connector.as_deref().unwrap_or("?"),
                        l.config.as_deref().unwrap_or("?"),
                        l.action.as_deref().unwrap_or("?")
                    );
                    let id = l.id.as_deref().unwrap_or("(no id)");
                    println!("{id}\t{}\t{what}\tattempts={}\t{}", l.kind, l.attempts, l.reason);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Show { id } => {
            let letters = queue.list().await?;
            match letters.iter().find(|l| l.id.as_deref() == Some(id.as_str())) {
                Some(letter) => {
                    println!("{}", serde_json::to_string_pretty(letter)?);
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    eprintln!("no dead letter with id {id}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        DlqCommand::Replay { ids, all, filter } => {
            if ids.is_empty() && !all {
                eprintln!("name the job ids to replay, or pass --all");
                return Ok(ExitCode::from(1));
            }
            let filter = filter.filter(ids);
            let report = queue.replay(&|l| filter.matches(l)).await?;
            for id in &report.replayed {
                println!("{}", id.as_deref().unwrap_or("(no id)"));
            }
            for failure in &report.failed {
                eprintln!("not confirmed: {failure}");
            }
            if !report.failed.is_empty() {
                Ok(ExitCode::from(2))
            } else if report.replayed.is_empty() {
                eprintln!("no dead letter matched");
                Ok(ExitCode::from(1))
            } else {
                Ok(ExitCode::SUCCESS)
            }
        }
        DlqCommand::Purge { .. } => {
            let purged = queue.purge().await?;
            eprintln!("purged {purged} dead letters");
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn submit(settings: &Settings, file: &str) -> ExitCode {
    let reader: Box<dyn BufRead> = if file == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        match std::fs::File::open(file) {
            Ok(f) => Box::new(std::io::BufReader::new(f)),
            Err(e) => {
                eprintln!("cannot read {file}: {e}");
                return ExitCode::from(1);
            }
        }
    };

    let mut rejected = false;
    let mut valid: Vec<Job> = Vec::new();
    for (index, line) in reader.lines().enumerate() {
        let number = index + 1;
        let line = match line {
            Ok(line) => line,
            Err(e) => {
                eprintln!("line {number}: $: cannot read: {e}");
                rejected = true;
                continue;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        match validate_job(line.as_bytes(), MissingId::Assign) {
            Ok(job) => valid.push(job),
            Err(errors) => {
                rejected = true;
                let reasons: Vec<String> = errors.iter().map(FieldError::to_string).collect();
                eprintln!("line {number}: {}", reasons.join("; "));
            }
        }
    }
    if valid.is_empty() {
        return if rejected { ExitCode::from(1) } else { ExitCode::SUCCESS };
    }

    let producer = match Producer::connect(
        &settings.amqp_url,
        settings.names(),
        &settings.retry_delays,
        yizhan_broker::Recovery::FailFast,
    )
    .await
    {
        Ok(producer) => producer,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    // Tenants other than `default` are registered for the workers: only then is the state store needed.
    let producer = if valid.iter().any(|job| job.tenant != yizhan_schemas::DEFAULT_TENANT) {
        match yizhan_state::open(&settings.state, &settings.prefix).await {
            Ok(store) => producer.with_tenants(store),
            Err(e) => {
                eprintln!("state store (to register the jobs' tenants): {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        producer
    };
    let mut unconfirmed = false;
    let mut stdout = std::io::stdout().lock();
    for batch in valid.chunks(BATCH) {
        for result in producer.submit_all(batch).await {
            match result {
                Ok(id) => {
                    let _ = writeln!(stdout, "{id}");
                }
                Err(e) => {
                    eprintln!("{e}");
                    unconfirmed = true;
                }
            }
        }
    }
    let _ = stdout.flush();
    if unconfirmed {
        ExitCode::from(2)
    } else if rejected {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}

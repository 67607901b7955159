//! `yizhan-producer`: `submit` jobs from a file or stdin, print the `catalog`.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use yizhan_broker::Settings;
use yizhan_producer::Producer;
use yizhan_schemas::{FieldError, Job, MissingId, validate_job};

#[derive(Parser)]
#[command(name = "yizhan-producer", version, about = "Validates yizhan jobs and enqueues them on RabbitMQ")]
struct Cli {
    #[command(flatten)]
    settings: Settings,
    #[command(subcommand)]
    command: Command,
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
}

/// Jobs are published in batches of this many, their confirms pipelined.
const BATCH: usize = 1000;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Catalog => {
            println!(
                "{}",
                serde_json::to_string_pretty(&yizhan_schemas::catalog::catalog_json()).expect("catalog serialises")
            );
            ExitCode::SUCCESS
        }
        Command::Submit { file } => submit(&cli.settings, &file).await,
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
        &settings.prefix,
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

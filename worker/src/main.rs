//! `yizhan-worker`: consumes and executes jobs until SIGTERM or SIGINT, then drains and exits 0.

use clap::Parser;
use tokio_util::sync::CancellationToken;
use yizhan_broker::Settings;
use yizhan_telemetry::LogFormat;
use yizhan_worker::WorkerSettings;

#[derive(Parser)]
#[command(name = "yizhan-worker", version, about = "Executes yizhan connector-action jobs from RabbitMQ")]
struct Cli {
    /// The settings shared with the producer.
    #[command(flatten)]
    settings: Settings,
    #[command(flatten)]
    worker: WorkerSettings,
    /// Log format on stderr: `text`, or `json` (one object per line, for log shippers).
    #[arg(long, env = "YIZHAN_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

/// jemalloc: with glibc's malloc a fifth of the worker's CPU went to the allocator (buffers freed
/// on another thread than the one that allocated them); jemalloc took a tenth off the worker's CPU
/// per job in yizhan-bench, at the same RSS.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let format = if cli.log_format == "json" { LogFormat::Json } else { LogFormat::Text };
    let telemetry = yizhan_telemetry::init("yizhan-worker", format, "info", true)?;
    let shutdown = CancellationToken::new();
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            wait_for_signal().await;
            tracing::info!("signal received: draining");
            shutdown.cancel();
        }
    });
    let ran = yizhan_worker::run(cli.settings, cli.worker, shutdown).await;
    // The spans of the last jobs are still in the exporter's buffer.
    tokio::task::spawn_blocking(move || telemetry.shutdown()).await?;
    ran?;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

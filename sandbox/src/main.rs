//! `yizhan-sandbox`: runs the provider sandbox with the default accounts until SIGINT or SIGTERM.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;
use yizhan_sandbox::{Sandbox, SandboxConfig};

/// A strict local stand-in for Tencent Cloud SMS and the WeCom group robot.
///
/// Accounts: Tencent SecretId AKIDsandbox0000000000000000000000000 with key sandbox-secret-key,
/// SmsSdkAppId 1400000000, signature Yizhan, templates 1001 and 1002; robot keys
/// sandbox-robot-key and sandbox-robot-key-2. Control API under /_sandbox/.
#[derive(Debug, Parser)]
#[command(name = "yizhan-sandbox", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "YIZHAN_SANDBOX_ADDR", default_value = "127.0.0.1:18080")]
    listen: SocketAddr,
}

/// jemalloc, as the worker and the producer (see worker/src/main.rs): a benchmark's provider
/// should not spend its CPU in glibc's allocator.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let args = Args::parse();

    let sandbox = Sandbox::start(SandboxConfig::default_accounts(), args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "yizhan-sandbox listening on {}", sandbox.url())?;
    stdout.flush()?;

    wait_for_signal().await?;
    tracing::info!("signal received, shutting down");
    sandbox.shutdown().await;
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("cannot listen for SIGINT")?,
        _ = terminate.recv() => {}
    }
    Ok(())
}

use std::path::PathBuf;
use std::time::Duration;

use crate::callback::CallbackAllow;
use crate::topology::Names;

/// The settings both binaries read (contract: every setting has an environment variable and a
/// flag; the flag wins). Each binary flattens them into its own settings; they are `global` so that
/// the producer takes them before or after its subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// Broker URL: `amqp://user:password@host:port/vhost` (`amqps://` for TLS), or the URLs of a
    /// cluster's nodes, comma-separated (same user, password and vhost): connections go to the
    /// first node that answers and move to another live one when theirs is lost.
    #[arg(
        long,
        global = true,
        env = "YIZHAN_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_env_values = true
    )]
    pub amqp_url: String,
    /// Replicas of each quorum queue created (`x-quorum-initial-group-size`); unset: the
    /// broker's `quorum_cluster_size` (3, at most the cluster's nodes). It applies when a queue is
    /// created and must be the same for every process of a fleet.
    #[arg(long, global = true, env = "YIZHAN_QUORUM_GROUP_SIZE", value_parser = clap::value_parser!(u16).range(1..))]
    pub quorum_group_size: Option<u16>,
    /// Queues per lane (and per retry delay): jobs are spread over them by a hash of their
    /// idempotency key, and workers consume all of them. 1 keeps the unsharded names; raise it on
    /// the workers before the producers (README, "Sharded lanes").
    #[arg(long, global = true, env = "YIZHAN_LANE_SHARDS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub lane_shards: u16,
    /// Prefix of every exchange and queue name (and of the state store's keys).
    #[arg(long, global = true, env = "YIZHAN_PREFIX", default_value = "yizhan")]
    pub prefix: String,
    /// Connector config file (TOML).
    #[arg(long, global = true, env = "YIZHAN_CONFIG", default_value = "yizhan.toml")]
    pub config: PathBuf,
    /// State store: sqlite://PATH, or for a fleet redis://HOST:PORT/DB (rediss:// for TLS) or
    /// redis+sentinel://HOST:PORT,HOST:PORT/MASTER/DB (the master found through Redis Sentinel).
    #[arg(
        long,
        global = true,
        env = "YIZHAN_STATE",
        default_value = "sqlite://yizhan-state.db",
        hide_env_values = true
    )]
    pub state: String,
    /// Retry backoff: the n-th retry waits the n-th delay (the last one repeats), with jitter.
    #[arg(long, global = true, env = "YIZHAN_RETRY_DELAYS", default_value = "5s,30s,2m,10m,1h", value_parser = parse_delays)]
    pub retry_delays: Delays,
    /// Hosts completion callbacks may reach, comma-separated: `hooks.example.com` (any port),
    /// `*.example.com` (its subdomains), `127.0.0.1:8080` (that port). Default: none, so jobs with
    /// a callback are refused.
    #[arg(
        long,
        global = true,
        env = "YIZHAN_CALLBACK_ALLOW",
        default_value = "",
        hide_default_value = true,
        value_parser = CallbackAllow::parse
    )]
    pub callback_allow: CallbackAllow,
}

impl Settings {
    /// The exchange and queue names under `--prefix`, declaring new queues with
    /// `--quorum-group-size` replicas, each lane in `--lane-shards` queues.
    pub fn names(&self) -> Names {
        Names::new(self.prefix.clone()).with_quorum_group_size(self.quorum_group_size).with_shards(self.lane_shards)
    }
}

/// A parsed `--retry-delays` list (never empty).
pub(crate) type Delays = Vec<Duration>;

/// Parses `5s,30s,2m` into durations.
pub fn parse_delays(text: &str) -> Result<Delays, String> {
    let delays = text
        .split(',')
        .map(|part| {
            let part = part.trim();
            humantime::parse_duration(part).map_err(|e| format!("retry delay {part:?}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if delays.is_empty() || delays.iter().any(Duration::is_zero) {
        return Err("retry delays must be a comma-separated list of positive durations such as 5s,30s,2m".into());
    }
    Ok(delays)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_parse_and_reject_nonsense() {
        assert_eq!(parse_delays("5s,30s,2m").unwrap(), [5, 30, 120].map(Duration::from_secs));
        assert_eq!(parse_delays("200ms").unwrap(), [Duration::from_millis(200)]);
        assert!(parse_delays("5s,soon").unwrap_err().contains("\"soon\""));
        assert!(parse_delays("0s").is_err());
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        settings: Settings,
    }

    #[test]
    fn the_group_size_goes_into_the_names_and_zero_is_refused() {
        use clap::Parser;
        let cli = Cli::try_parse_from(["x", "--prefix", "acme", "--quorum-group-size", "2"]).unwrap();
        assert_eq!(cli.settings.names(), Names::new("acme").with_quorum_group_size(Some(2)));
        let unset = Cli::try_parse_from(["x"]).unwrap();
        assert_eq!(unset.settings.names().quorum_group_size, None);
        assert!(Cli::try_parse_from(["x", "--quorum-group-size", "0"]).is_err());
    }

    #[test]
    fn lane_shards_go_into_the_names_default_one() {
        use clap::Parser;
        assert_eq!(Cli::try_parse_from(["x"]).unwrap().settings.names().shards(), 1);
        let cli = Cli::try_parse_from(["x", "--lane-shards", "4"]).unwrap();
        assert_eq!(cli.settings.names().shards(), 4);
        assert!(Cli::try_parse_from(["x", "--lane-shards", "0"]).is_err());
        assert!(Cli::try_parse_from(["x", "--lane-shards", "257"]).is_err());
    }
}

//! Command line and environment: `roomd [serve options]` and
//! `roomd token …`. Every knob has a safe default, so `roomd` alone runs.

use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "roomd",
    version,
    about = "A realtime room server speaking Meteor DDP (Rocket.Chat Realtime API rooms)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a resume token (JWT) signed with the server's secret.
    Token(TokenArgs),
}

/// Where the JWT secret comes from; shared by the server and `roomd token`.
#[derive(Debug, Args, Clone)]
pub struct SecretArgs {
    /// HS256 secret (prefer the env var or a file over the command line).
    #[arg(long, env = "ROOMD_JWT_SECRET", hide_env_values = true, global = true)]
    pub jwt_secret: Option<String>,
    /// File holding the HS256 secret.
    #[arg(long, env = "ROOMD_JWT_SECRET_FILE", global = true)]
    pub jwt_secret_file: Option<PathBuf>,
    /// Data directory (development secret; durable state later).
    #[arg(long, env = "ROOMD_DATA_DIR", default_value = "./data", global = true)]
    pub data_dir: PathBuf,
}

#[derive(Debug, Args, Clone)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "ROOMD_LISTEN", default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub secret: SecretArgs,
    /// Keep all state in memory only (today's only mode; accepted so scripts
    /// keep working when durable storage lands).
    #[arg(long, env = "ROOMD_IN_MEMORY")]
    pub in_memory: bool,
    /// Log format: `text` or `json`.
    #[arg(long, env = "ROOMD_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
    #[command(flatten)]
    pub limits: Limits,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Operational limits and timings.
#[derive(Debug, Args, Clone)]
pub struct Limits {
    /// Largest inbound WebSocket frame/message in bytes.
    #[arg(long, env = "ROOMD_MAX_FRAME_BYTES", default_value_t = 64 * 1024)]
    pub max_frame_bytes: usize,
    /// Maximum concurrent connections; more are closed with 1013.
    #[arg(long, env = "ROOMD_MAX_CONNECTIONS", default_value_t = 100_000)]
    pub max_connections: usize,
    /// Time a new TCP connection has to finish the WebSocket handshake.
    #[arg(long, env = "ROOMD_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub handshake_timeout: Duration,
    /// Time after the handshake to send the DDP `connect` frame.
    #[arg(long, env = "ROOMD_CONNECT_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Silence after which the server sends a DDP ping.
    #[arg(long, env = "ROOMD_PING_INTERVAL", default_value = "25s", value_parser = parse_duration)]
    pub ping_interval: Duration,
    /// Further silence after the ping before the connection is closed.
    #[arg(long, env = "ROOMD_PING_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    pub ping_timeout: Duration,
    /// Frames queued per connection before it counts as a slow consumer.
    #[arg(long, env = "ROOMD_OUTBOUND_QUEUE", default_value_t = 1024)]
    pub outbound_queue: usize,
    /// Commands queued per room before callers wait.
    #[arg(long, env = "ROOMD_ROOM_MAILBOX", default_value_t = 1024)]
    pub room_mailbox: usize,
    /// Messages kept per room for `loadHistory`.
    #[arg(long, env = "ROOMD_HISTORY_LIMIT", default_value_t = 1000)]
    pub history_limit: usize,
    /// Time a disconnected guest keeps its seat.
    #[arg(long, env = "ROOMD_GUEST_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub guest_grace: Duration,
    /// Maximum characters in one message.
    #[arg(long, env = "ROOMD_MAX_MESSAGE_LEN", default_value_t = 5000)]
    pub max_message_len: usize,
    /// Grace for in-flight work on SIGTERM/SIGINT.
    #[arg(long, env = "ROOMD_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        // Same values as the clap defaults: parse an empty command line.
        ServeArgs::parse_from(["roomd"]).limits
    }
}

impl ServeArgs {
    fn parse_from<I: IntoIterator<Item = &'static str>>(args: I) -> Self {
        Cli::parse_from(args).serve
    }
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[arg(long)]
    pub user_id: String,
    #[arg(long)]
    pub username: String,
    #[arg(long)]
    pub name: Option<String>,
    /// Global role; repeatable.
    #[arg(long, value_parser = ["admin", "user", "bot"], default_value = "user")]
    pub role: Vec<String>,
    /// Lifetime, e.g. `90s`, `30m`, `24h`, `7d`.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub ttl: Duration,
    #[command(flatten)]
    pub secret: SecretArgs,
}

/// `250ms`, `10s`, `5m`, `24h`, `7d`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    let ms = match unit {
        "ms" => n,
        "" | "s" => n.saturating_mul(1000),
        "m" => n.saturating_mul(60_000),
        "h" => n.saturating_mul(3_600_000),
        "d" => n.saturating_mul(86_400_000),
        _ => return Err(format!("invalid duration unit in {s:?} (use ms, s, m, h, d)")),
    };
    Ok(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("5y").is_err());
    }

    #[test]
    fn defaults_parse() {
        let l = Limits::default();
        assert_eq!(l.max_frame_bytes, 65_536);
        assert_eq!(l.ping_interval, Duration::from_secs(25));
    }
}

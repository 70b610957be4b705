//! Command line and environment: `roomd [serve options]` and
//! `roomd token …`. Every knob has a safe default, so `roomd` alone runs.

use crate::limits::{RateSpec, SessionLimits};
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
    /// Free a username so another user may take it (run while roomd is
    /// stopped: a running server keeps the owners it loaded).
    FreeUsername(FreeUsernameArgs),
    /// Copy the data directory's database to a file, consistently, while
    /// the server runs (docs/operations.md, Backups, restores and upgrades).
    Backup(BackupArgs),
    /// Make a data directory from a backup file (checked, upgraded to this
    /// roomd's schema); run while no server uses the directory.
    Restore(RestoreArgs),
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The backup file to write (written beside it under a temporary name,
    /// then renamed; an existing file is replaced only by a complete one).
    #[arg(long)]
    pub to: PathBuf,
    #[command(flatten)]
    pub secret: SecretArgs,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup file to restore.
    #[arg(long)]
    pub from: PathBuf,
    /// Replace the database of a data directory that is not empty (other
    /// files in it, such as a development secret, stay).
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub secret: SecretArgs,
}

#[derive(Debug, Args)]
pub struct FreeUsernameArgs {
    /// The username to free (compared trimmed and case-insensitively).
    pub username: String,
    #[command(flatten)]
    pub secret: SecretArgs,
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
    /// Verify tokens from an identity provider with this RS256/ES256 public
    /// key (PEM) instead of the HS256 secret.
    #[arg(long, env = "ROOMD_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,
    /// Accept only tokens whose `aud` names this audience (repeatable, or
    /// comma-separated in the env var). Without it, tokens carrying `aud`
    /// are refused.
    #[arg(long = "jwt-audience", env = "ROOMD_JWT_AUDIENCE", value_delimiter = ',')]
    pub jwt_audience: Vec<String>,
    /// Accept only tokens whose `iss` is this issuer (repeatable, or
    /// comma-separated in the env var). Without it, `iss` is not checked.
    #[arg(long = "jwt-issuer", env = "ROOMD_JWT_ISSUER", value_delimiter = ',')]
    pub jwt_issuer: Vec<String>,
    /// Cluster mode: the NATS servers (comma-separated URLs) whose JetStream
    /// holds every room's log. Without it roomd is one process with its
    /// embedded SQLite store. See docs/cluster.md.
    #[arg(long, env = "ROOMD_CLUSTER", value_delimiter = ',')]
    pub cluster: Vec<String>,
    /// This node's name in the cluster (letters, digits, `-`, `_`); unique
    /// per node.
    #[arg(long, env = "ROOMD_NODE_ID", default_value = "node")]
    pub node_id: String,
    /// Replicas of the cluster's stream (3 in production; 1 only for a
    /// single NATS server in development).
    #[arg(long, env = "ROOMD_CLUSTER_REPLICAS", default_value_t = 3)]
    pub cluster_replicas: usize,
    /// Partition streams the room logs are spread over, fixed when the
    /// cluster is created (default 3) and checked at every start: without
    /// the flag a node adopts the cluster's count, with one that disagrees
    /// it refuses to start. See docs/cluster.md, Partitions.
    #[arg(long, env = "ROOMD_CLUSTER_PARTITIONS", value_parser = clap::value_parser!(u64).range(1..=64))]
    pub cluster_partitions: Option<u64>,
    /// Cluster mode: a room's log is compacted every this many entries
    /// (a snapshot of its state, its messages moved to history chunks, the
    /// entries below purged). See docs/cluster.md.
    #[arg(long, env = "ROOMD_CLUSTER_SNAPSHOT_EVERY", default_value_t = crate::cluster::DEFAULT_SNAPSHOT_EVERY, value_parser = clap::value_parser!(u64).range(1..))]
    pub cluster_snapshot_every: u64,
    /// Cluster mode: which rooms a node holds. `interest` (the default): a
    /// node holds a room only while it is used through it (a call, a
    /// subscription, a seat, a signed-in member listening here), loading it
    /// from its snapshot and the log after it; `all`: every node applies
    /// every room's log. See docs/cluster.md, "Rooms by interest".
    #[arg(long, env = "ROOMD_CLUSTER_ROOMS", value_enum, default_value_t = ClusterRooms::Interest)]
    pub cluster_rooms: ClusterRooms,
    /// With `--cluster-rooms interest`: a room nothing on this node has
    /// used for about this long (between it and twice it) is let go.
    #[arg(long, env = "ROOMD_CLUSTER_UNLOAD_AFTER", default_value = "60s", value_parser = parse_duration)]
    pub cluster_unload_after: std::time::Duration,
    /// Cluster mode: how long a starting node waits for the NATS servers and
    /// its stream before it exits with status 1 (it serves `/healthz` and a
    /// `503` `/readyz` meanwhile).
    #[arg(long, env = "ROOMD_CLUSTER_START_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub cluster_start_timeout: std::time::Duration,
    /// Keep all state in memory only (tests, benchmarks); nothing survives a
    /// restart.
    #[arg(long, env = "ROOMD_IN_MEMORY")]
    pub in_memory: bool,
    /// Store durability: `full` fsyncs every group commit (survives power
    /// loss); `normal` survives a process crash only.
    #[arg(long, env = "ROOMD_SYNC", default_value = "full")]
    pub sync: crate::store::SyncMode,
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
    /// Time a new TCP connection has to send its HTTP request head (the
    /// WebSocket upgrade, or a health/metrics request); silent or dribbling
    /// sockets are dropped after it.
    #[arg(long, env = "ROOMD_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub handshake_timeout: Duration,
    /// How long a kept-alive HTTP connection may sit idle between two
    /// requests before roomd closes it.
    #[arg(long, env = "ROOMD_HTTP_KEEPALIVE_IDLE", default_value = "5s", value_parser = parse_duration)]
    pub http_keepalive_idle: Duration,
    /// Requests answered on one HTTP connection; the last one's answer
    /// says `Connection: close`.
    #[arg(long, env = "ROOMD_HTTP_MAX_REQUESTS_PER_CONN", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub http_max_requests_per_conn: u32,
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
    /// Bytes one connection may have unsent (queued events and replies,
    /// counted until written to the socket); an event that does not fit
    /// closes it as a slow consumer (4001), a reply waits for space, a
    /// method result larger than this is refused with
    /// `error-reply-too-large`, and `loadHistory` pages stop at half of it.
    #[arg(long, env = "ROOMD_MAX_QUEUED_BYTES_PER_CONN", default_value_t = 1024 * 1024)]
    pub max_queued_bytes_per_conn: usize,
    /// Bytes all connections together may have unsent; the connection
    /// whose frame would go over it is closed as a slow consumer (4001).
    #[arg(long, env = "ROOMD_MAX_QUEUED_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub max_queued_bytes: usize,
    /// Time a connection's socket may accept no bytes while frames wait for
    /// it before it is closed as a slow consumer (4001), pongs or not.
    #[arg(long, env = "ROOMD_WRITE_STALL_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub write_stall_timeout: Duration,
    /// Commands queued per room before callers wait.
    #[arg(long, env = "ROOMD_ROOM_MAILBOX", default_value_t = 1024)]
    pub room_mailbox: usize,
    /// Recent messages per room cached in memory (the newest `loadHistory`
    /// pages); older pages are read from the store. Not a ceiling on
    /// history: retention is `--history-retention-*`.
    #[arg(long, env = "ROOMD_HISTORY_LIMIT", default_value_t = 1000)]
    pub history_limit: usize,
    /// Delete stored messages older than this many days (default: keep
    /// forever). Pages never show them once they are this old.
    #[arg(long, env = "ROOMD_HISTORY_RETENTION_DAYS", value_parser = clap::value_parser!(u32).range(1..))]
    pub history_retention_days: Option<u32>,
    /// Keep only the newest this many stored messages per room (default:
    /// keep all).
    #[arg(long, env = "ROOMD_HISTORY_RETENTION_COUNT", value_parser = clap::value_parser!(u64).range(1..))]
    pub history_retention_count: Option<u64>,
    /// How often the background pruner applies the retention policy.
    #[arg(long, env = "ROOMD_HISTORY_PRUNE_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    pub history_prune_interval: Duration,
    /// Events per room kept for `join-room {since}` replay, whatever their
    /// age (the window holds an event while it is among these or younger
    /// than `--replay-min-age`, within the byte limits).
    #[arg(long, env = "ROOMD_REPLAY_MIN_EVENTS", default_value_t = 1000)]
    pub replay_min_events: usize,
    /// Age under which a room's events are kept for replay, whatever their
    /// number (within the byte limits).
    #[arg(long, env = "ROOMD_REPLAY_MIN_AGE", default_value = "2m", value_parser = parse_duration)]
    pub replay_min_age: Duration,
    /// Bytes one room's replay window may hold; the oldest events go first.
    /// A replay must also fit `--max-queued-bytes-per-conn`.
    #[arg(long, env = "ROOMD_REPLAY_MAX_BYTES_PER_ROOM", default_value_t = 512 * 1024)]
    pub replay_max_bytes_per_room: usize,
    /// Bytes all rooms' replay windows together may hold; a room that
    /// would go over drops its own oldest events.
    #[arg(long, env = "ROOMD_REPLAY_MAX_BYTES", default_value_t = 128 * 1024 * 1024)]
    pub replay_max_bytes: usize,
    /// Time a disconnected guest keeps its seat.
    #[arg(long, env = "ROOMD_GUEST_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub guest_grace: Duration,
    /// Maximum characters in one message.
    #[arg(long, env = "ROOMD_MAX_MESSAGE_LEN", default_value_t = 5000)]
    pub max_message_len: usize,
    /// Grace for in-flight work on SIGTERM/SIGINT.
    #[arg(long, env = "ROOMD_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
    /// Unanswered method calls a connection may have; more are answered
    /// `too-many-requests`. Calls run one at a time, in order, so a
    /// connection has at most one; the cap guards that invariant.
    #[arg(long, env = "ROOMD_MAX_PENDING_CALLS", default_value_t = 16)]
    pub max_pending_calls: usize,
    /// Open subscriptions per connection; more get `nosub`
    /// `too-many-subscriptions`.
    #[arg(long, env = "ROOMD_MAX_SUBSCRIPTIONS", default_value_t = 1000)]
    pub max_subscriptions: usize,
    /// Rooms (channels, private groups, direct messages) one user may
    /// create per minute.
    #[arg(long, env = "ROOMD_MAX_ROOMS_PER_MINUTE", default_value_t = 10)]
    pub max_rooms_per_minute: u32,
    /// `sendMessage` calls per second per connection, `RATE[:BURST]`.
    #[arg(long, env = "ROOMD_RATE_MESSAGES", default_value = "5:10")]
    pub rate_messages: RateSpec,
    /// `joinRoom`/`join-room` calls per second per connection.
    #[arg(long, env = "ROOMD_RATE_JOINS", default_value = "5:10")]
    pub rate_joins: RateSpec,
    /// Every other method call and subscription, per second per connection.
    #[arg(long, env = "ROOMD_RATE_OTHER", default_value = "50:100")]
    pub rate_other: RateSpec,
    /// Wrong join codes a connection may try per `--code-failure-window`
    /// before its joins are refused for a while.
    #[arg(long, env = "ROOMD_MAX_CODE_FAILURES", default_value_t = 5)]
    pub max_code_failures: u32,
    /// Wrong join codes from one source address (IPv6: its /64) per
    /// `--code-failure-window` before that address's wrong answers are
    /// delayed (up to 2 s each; right codes are never delayed or refused).
    #[arg(long, env = "ROOMD_MAX_CODE_FAILURES_PER_ADDRESS", default_value_t = 20)]
    pub max_code_failures_per_address: u32,
    /// Window over which `--max-code-failures` refills.
    #[arg(long, env = "ROOMD_CODE_FAILURE_WINDOW", default_value = "60s", value_parser = parse_duration)]
    pub code_failure_window: Duration,
    /// Turn off the per-connection rate limits, the room-creation limit and
    /// the join-code brake (benchmarks only).
    #[arg(long, env = "ROOMD_NO_RATE_LIMITS")]
    pub no_rate_limits: bool,
    /// Browser origins allowed to open a WebSocket (repeatable, or
    /// comma-separated in the env var; `*` allows any). Requests without
    /// `Origin` and same-origin requests are always allowed.
    #[arg(long = "allowed-origin", env = "ROOMD_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
    /// URL roomd is served under, e.g. `https://chat.example.com`
    /// (repeatable, or comma-separated in the env var). Its host is
    /// accepted in `Host` when listening on loopback, and its origin counts
    /// as same-origin.
    #[arg(long = "public-url", env = "ROOMD_PUBLIC_URL", value_delimiter = ',', value_parser = parse_public_url)]
    pub public_urls: Vec<String>,
}

/// `--public-url`: `http(s)://host[:port]`, with nothing after but `/`.
fn parse_public_url(s: &str) -> Result<String, String> {
    match crate::http::Origin::parse(s) {
        Some(_) => Ok(s.trim().to_owned()),
        None => Err(format!(
            "invalid public URL {s:?}: expected http(s)://host[:port], e.g. https://chat.example.com"
        )),
    }
}

impl Limits {
    /// The limits sessions apply, as one value.
    pub(crate) fn session_limits(&self) -> SessionLimits {
        SessionLimits {
            rate_limits: !self.no_rate_limits,
            messages: self.rate_messages,
            joins: self.rate_joins,
            other: self.rate_other,
            max_code_failures: self.max_code_failures,
            max_code_failures_per_address: self.max_code_failures_per_address,
            code_failure_window: self.code_failure_window,
            max_rooms_per_minute: self.max_rooms_per_minute,
            max_subscriptions: self.max_subscriptions,
            max_pending_calls: self.max_pending_calls.max(1),
        }
    }
}

impl Limits {
    /// The store's retention policy from the `--history-retention-*` flags.
    pub fn retention(&self) -> crate::store::Retention {
        crate::store::Retention {
            max_age: self.history_retention_days.map(|d| Duration::from_secs(u64::from(d) * 86_400)),
            max_count: self.history_retention_count,
        }
    }

    /// The replay window's limits from the `--replay-*` flags.
    pub fn replay_limits(&self) -> crate::room::ReplayLimits {
        crate::room::ReplayLimits::new(
            self.replay_min_events,
            self.replay_min_age,
            self.replay_max_bytes_per_room,
            self.replay_max_bytes,
        )
    }

    /// Messages per room cached in memory: `--history-limit`, but never
    /// more than the retention count keeps on disk.
    pub fn history_cache(&self) -> usize {
        let kept =
            self.history_retention_count.map_or(usize::MAX, |c| usize::try_from(c).unwrap_or(usize::MAX));
        self.history_limit.min(kept)
    }
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
    /// The user's stable id (the `sub` claim): what rooms, roles and
    /// logout know the user by. Must not start with `guest-`.
    #[arg(long)]
    pub user_id: String,
    /// The user's handle (`username` claim), unique per user: others add
    /// or mention the user by it.
    #[arg(long)]
    pub username: String,
    /// The display name shown in participant lists and messages (`name`
    /// claim); defaults to the username.
    #[arg(long)]
    pub name: Option<String>,
    /// The `aud` claim, for a server started with `--jwt-audience`
    /// (repeatable).
    #[arg(long)]
    pub audience: Vec<String>,
    /// The `iss` claim, for a server started with `--jwt-issuer`.
    #[arg(long)]
    pub issuer: Option<String>,
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
        assert!(!l.no_rate_limits);
        assert_eq!(l.rate_messages.to_string(), "5:10");
        assert!(l.allowed_origins.is_empty());
        assert_eq!((l.max_queued_bytes_per_conn, l.max_queued_bytes), (1 << 20, 256 << 20));
        assert_eq!(l.write_stall_timeout, Duration::from_secs(30));
    }

    #[test]
    fn jwt_audience_and_issuer_repeat_and_split() {
        let cli = Cli::parse_from([
            "roomd",
            "--jwt-audience",
            "a,b",
            "--jwt-audience",
            "c",
            "--jwt-issuer",
            "https://idp",
        ]);
        assert_eq!(cli.serve.jwt_audience, ["a", "b", "c"]);
        assert_eq!(cli.serve.jwt_issuer, ["https://idp"]);
    }

    #[test]
    fn allowed_origins_repeat_and_split() {
        let cli = Cli::parse_from([
            "roomd",
            "--allowed-origin",
            "https://a.example",
            "--allowed-origin",
            "https://b.example,https://c.example",
            "--public-url",
            "https://chat.example,http://localhost:8080",
            "--no-rate-limits",
            "--rate-messages",
            "20:40",
        ]);
        let l = cli.serve.limits;
        assert_eq!(l.allowed_origins, ["https://a.example", "https://b.example", "https://c.example"]);
        assert!(!l.session_limits().rate_limits);
        assert_eq!(l.rate_messages.burst, 40);
        assert_eq!(l.public_urls, ["https://chat.example", "http://localhost:8080"]);
        assert!(Cli::try_parse_from(["roomd", "--public-url", "chat.example"]).is_err());
        assert!(Cli::try_parse_from(["roomd", "--public-url", "https://chat.example/app"]).is_err());
    }
}

/// `--cluster-rooms`: which rooms a cluster node holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClusterRooms {
    /// Every room, on every node.
    All,
    /// The rooms used through this node.
    Interest,
}

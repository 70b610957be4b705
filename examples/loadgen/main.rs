//! `loadgen` — load generator for roomd.
//!
//! Speaks roomd's protocol (Meteor DDP, JSON text frames over WebSocket) over real
//! sockets, records latencies in HdrHistograms (reported in ms with µs precision) and
//! samples the server process (RSS from `/proc/PID/status` VmRSS, CPU time as
//! utime+stime from `/proc/PID/stat` divided by CLK_TCK = 100) before and after each
//! measured phase, so throughput can be given per server CPU-second. Each scenario
//! prints a summary block; with `--json` that block goes to stderr and stdout gets one
//! JSON line.
//!
//! ```text
//! cargo run --release --example loadgen -- <scenario> [args] [options]
//!
//! scenarios
//!   idle N [--guests F] [--shard K/M] [--settle 5s] [--hold D] [--baseline-rss-kb KB] [--door ddp|sio]
//!       N connections (fraction F as guests) spread over N/10 rooms (guestAccess), each
//!       joined via `join-room` and subscribed to the room's messages; after --settle,
//!       reports the server's RSS delta and bytes per connection. Measure on a freshly
//!       started server: memory freed by earlier runs is reused and hides growth.
//!       Sharding: run M processes with --shard 1/M .. M/M, the same --baseline-rss-kb
//!       (from `probe` before starting) and a --hold long enough for all to overlap; the
//!       per-connection figure then divides by N.
//!   join C R K [--rate X]
//!       C logged-in clients (connect+login measured as its own phase), then join R rooms
//!       of capacity K, half `join-room` by code, half `joinRoom(rid)`; verifies accepted
//!       == min(C, R*K) and per room; exit 1 otherwise. --rate paces the joins.
//!   race [--clients 300] [--seats 5] [--iterations 50] [--pause 250ms]
//!       all clients race `join-room` for a fresh room of `seats` places per iteration,
//!       then the winners leave; exit 1 on any over- or under-admission.
//!   fanout R M RATE [--duration 10s] [--ramp] [--senders-per-room S] [--closed-loop]
//!       R rooms x M members subscribed to stream-room-messages; bot senders send RATE
//!       msgs/s in total (round-robin over rooms) carrying a send timestamp; reports
//!       end-to-end latency, deliveries/s, deliveries per server CPU-second, sendMessage
//!       latency, rate-limited calls. --ramp multiplies RATE by --ramp-factor (1.5) every
//!       --step (5s) until p99 > --p99-limit (100ms), deliveries < 95% of expected,
//!       >1% of sends are refused, or a subscriber is disconnected; reports the highest
//!       sustainable rate. --closed-loop: each sender bot instead keeps one sendMessage
//!       in flight for --duration (RATE ignored): acknowledged writes/s at saturation.
//!   chat [--clients 200] [--duration 60s] [--think 1s] [--sample 5s]
//!       mixed steady workload (per client every ~think: 50% sendMessage, 25% typing,
//!       12% loadHistory, 13% leave then join another room) with a server RSS series.
//!   failover --kill-pid PID [--clients 100] [--room-size 20] [--interval 500ms]
//!            [--kill-after 3s] [--after-kill 10s]
//!       cluster mode: clients on the first --url node each send a message every
//!       interval; after --kill-after loadgen sends SIGKILL to PID (that node) and every
//!       client, on seeing its socket drop, reconnects to another --url node (client i to
//!       survivor i mod n-1, then the next), logs in, joins again and sends; reports the
//!       time from the kill to each client's first success there. Exit 1 unless all do.
//!   churn [--loops 100] [--rooms 50] [--rounds 6] [--round 45s] [--door ddp|sio|users|rest]
//!         [--users 1000] [--reference-round 2] [--max-growth-mb 10]
//!       session churn (soak): each loop connects, joins one of the rooms by code
//!       (`join-room`; doors ddp and sio (Socket.IO `join-room`/`leave-room`): as a
//!       guest, door users: a signed-in pool user over DDP), then
//!       half leaveRoom and close cleanly, a third are cut (socket dropped, no close
//!       frame), the rest close without leaving (guests wait out --guest-grace); door
//!       rest: `POST /api/v1/channels.join` (+ `channels.leave`) as pool users, a cut
//!       one dropped unread. Prints the server's RssAnon (/proc/PID/status) after each
//!       round and after the end; exit 1 if it rose more than --max-growth-mb above the
//!       reference round. Start roomd with --in-memory --no-rate-limits --guest-grace 1s.
//!   probe
//!       print the server pid, RSS and CPU time and this process's open-files limit.
//!
//! options (accepted before or after the scenario arguments)
//!   --url ws://127.0.0.1:3000/websocket   server endpoint; comma-separated for several
//!                       cluster nodes: client i connects to the (i mod n)-th, the
//!                       room-creating admin bots to the first
//!   --sender-url URL[,URL]  fanout's sender bots connect here instead (members stay on
//!                       --url): sender on node A, subscribers on node B
//!   --server-pid PID[,PID]  process(es) to sample; CPU and RSS are summed over them
//!                       (all roomd nodes). Without it, /proc/*/comm is scanned for
//!                       `roomd`: the one holding the socket listening on the URL's port
//!                       (via /proc/net/tcp and /proc/PID/fd), else one whose command line
//!                       mentions the port, else the most recently started (with a warning).
//!   --aux-pid PID[,PID] other processes (the nats-servers) whose CPU is summed and
//!                       reported apart from the server's ("aux CPU", JSON `aux_cpu_s`)
//!   --secret-file PATH  HS256 JWT secret (file contents, trimmed); otherwise the
//!                       ROOMD_JWT_SECRET environment variable is used.
//!   --json              human summary to stderr, one JSON summary line to stdout
//!   --concurrency 64    connection setups in flight at once (roomd listens with the
//!                       std backlog of 128; more in flight overflows it: 1 s SYN retries)
//!   --src-addrs 8       client sockets are bound round-robin to 127.0.0.1..127.0.0.N
//!                       (each source address gives ~28k ephemeral ports)
//!   --timeout 30s       per connect / method call timeout
//!   --threads N         tokio worker threads (default: one per CPU)
//!   --creator-seats 1   seats the room-creating admin bot holds in each room: roomd
//!                       makes the creator a member counted against maxParticipants, so
//!                       a room of capacity K is created with maxParticipants K + 1
//!   --rooms-per-creator 10  rooms per admin bot (roomd limits room creation per user,
//!                       --max-rooms-per-minute, default 10); more bots log in as needed
//! ```
//!
//! With roomd's default per-connection rate limits (sendMessage 5/s, joins 5/s, other
//! 50/s), refused calls come back as `too-many-requests` and are counted separately;
//! run roomd with `--no-rate-limits` for capacity measurements.
//!
//! Users log in with HS256 JWTs minted here (claims `sub`, `username`, `name`, `roles`,
//! `exp` = now + 24 h). The open-files limit cannot be raised from here (no `setrlimit`
//! without `libc`/unsafe), so scenarios check `/proc/self/limits` up front and stop with
//! a hint (`ulimit -n`, or split an `idle` run with `--shard`) when it is too low.
//!
//! Exit status: 0 success, 1 a verification failed (join/race mismatch, failed setups),
//! 2 could not run (bad arguments, server unreachable, no secret).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use serde_json::{Value, json};

mod util;

mod procfs;

mod stats;

mod ddp;

mod sio;

mod common;

mod scenarios;

// ---------------------------------------------------------------------------
// Command line.
// ---------------------------------------------------------------------------
#[derive(Parser)]
#[command(
    name = "loadgen",
    about = "Load generator for roomd (DDP over WebSocket)",
    after_help = "See the doc comment at the top of examples/loadgen/ for details."
)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
    /// Server WebSocket endpoint; comma-separated for several nodes (client i
    /// connects to the (i mod n)-th; room-creating bots to the first).
    #[arg(long, global = true, default_value = "ws://127.0.0.1:3000/websocket")]
    url: String,
    /// Endpoint(s) for fanout's sender bots (default: --url).
    #[arg(long, global = true)]
    sender_url: Option<String>,
    /// Server process(es) to sample, comma-separated; CPU and RSS are summed
    /// (default: scan /proc/*/comm for the `roomd` on each --url port).
    #[arg(long, global = true, value_delimiter = ',')]
    server_pid: Vec<u32>,
    /// Other processes (e.g. nats-server) whose CPU is summed and reported
    /// separately from the server's.
    #[arg(long, global = true, value_delimiter = ',')]
    aux_pid: Vec<u32>,
    /// File holding the JWT secret (default: env ROOMD_JWT_SECRET).
    #[arg(long, global = true)]
    secret_file: Option<PathBuf>,
    /// Print one JSON summary line on stdout (human summary goes to stderr).
    #[arg(long, global = true)]
    json: bool,
    /// Connection setups in flight at once.
    #[arg(long, global = true, default_value_t = 64)]
    concurrency: usize,
    /// Bind client sockets round-robin to 127.0.0.1..127.0.0.N.
    #[arg(long, global = true, default_value_t = 8, value_parser = clap::value_parser!(u8).range(1..=254))]
    src_addrs: u8,
    /// Timeout for connects and each method call.
    #[arg(long, global = true, default_value = "30s", value_parser = util::parse_duration)]
    timeout: Duration,
    /// Tokio worker threads (default: one per CPU).
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// Seats the room-creating admin bot occupies (roomd makes the creator a member,
    /// counted against maxParticipants); added to every capacity loadgen sets.
    #[arg(long, global = true, default_value_t = 1)]
    creator_seats: usize,
    /// Rooms one admin bot creates before another takes over (roomd's
    /// --max-rooms-per-minute applies per user, admins included).
    #[arg(long, global = true, default_value_t = 10)]
    rooms_per_creator: usize,
}

#[derive(Subcommand)]
enum Scenario {
    /// N idle connections (logged in or guests) joined and subscribed; RSS per connection.
    Idle {
        n: usize,
        /// Fraction of connections that join as guests (no login).
        #[arg(long, default_value_t = 0.0)]
        guests: f64,
        /// Handle only connections i with i % M == K-1 (K in 1..=M).
        #[arg(long, value_parser = util::parse_shard)]
        shard: Option<(usize, usize)>,
        /// Connections per room (rooms = N / room-size).
        #[arg(long, default_value_t = 10)]
        room_size: usize,
        /// Also cap the rooms (extraData.maxParticipants = this + --creator-seats).
        #[arg(long)]
        room_capacity: Option<u64>,
        /// Wait after all connections settled before sampling RSS.
        #[arg(long, default_value = "5s", value_parser = util::parse_duration)]
        settle: Duration,
        /// Keep the connections open this long after reporting (for sharded runs).
        #[arg(long, value_parser = util::parse_duration)]
        hold: Option<Duration>,
        /// Server RSS (kB) before any shard started; per-connection RSS is then
        /// (RSS - baseline) / N over all shards.
        #[arg(long)]
        baseline_rss_kb: Option<u64>,
        /// ddp: DDP connections (see --guests); sio: Socket.IO guests over the
        /// websocket transport, each joining its room by code (`join-room`).
        #[arg(long, value_enum, default_value_t = scenarios::IdleDoor::Ddp)]
        door: scenarios::IdleDoor,
    },
    /// C clients join R rooms of capacity K; verifies accepted == min(C, R*K).
    Join {
        clients: usize,
        rooms: usize,
        capacity: usize,
        /// Start joins at this many per second instead of all at once.
        #[arg(long)]
        rate: Option<f64>,
    },
    /// All clients race for `seats` places in a fresh room each iteration.
    Race {
        #[arg(long, default_value_t = 300)]
        clients: usize,
        #[arg(long, default_value_t = 5)]
        seats: usize,
        #[arg(long, default_value_t = 50)]
        iterations: usize,
        /// Pause between iterations (roomd's default join rate limit is 5/s per
        /// connection, burst 10).
        #[arg(long, default_value = "250ms", value_parser = util::parse_duration)]
        pause: Duration,
    },
    /// R rooms x M subscribed members, RATE msgs/s in total; end-to-end latency.
    Fanout {
        rooms: usize,
        members: usize,
        rate: f64,
        #[arg(long, default_value = "10s", value_parser = util::parse_duration)]
        duration: Duration,
        /// Raise the rate step by step until p99 or delivery falls over.
        #[arg(long)]
        ramp: bool,
        #[arg(long, default_value_t = 1.5)]
        ramp_factor: f64,
        /// Length of each ramp step.
        #[arg(long, default_value = "5s", value_parser = util::parse_duration)]
        step: Duration,
        /// Ramp stops when p99 end-to-end latency exceeds this.
        #[arg(long, default_value = "100ms", value_parser = util::parse_duration)]
        p99_limit: Duration,
        /// Ramp stops before exceeding this rate.
        #[arg(long)]
        max_rate: Option<f64>,
        /// Ramp steps at most.
        #[arg(long, default_value_t = 30)]
        max_steps: usize,
        /// After sending, wait up to this long for outstanding deliveries.
        #[arg(long, default_value = "3s", value_parser = util::parse_duration)]
        drain: Duration,
        /// Sender bots per room (each is its own connection; roomd rate-limits
        /// sendMessage per connection, default 5/s burst 10).
        #[arg(long, default_value_t = 1)]
        senders_per_room: usize,
        /// Closed loop: every sender bot keeps exactly one sendMessage in flight
        /// (sends the next when the previous is acknowledged) for --duration; RATE is
        /// ignored. Measures the acknowledged writes/s the server sustains.
        #[arg(long, conflicts_with = "ramp")]
        closed_loop: bool,
    },
    /// Mixed steady workload with an RSS series (soak).
    Chat {
        #[arg(long, default_value_t = 200)]
        clients: usize,
        #[arg(long, default_value = "60s", value_parser = util::parse_duration)]
        duration: Duration,
        #[arg(long, default_value_t = 10)]
        room_size: usize,
        /// Mean pause between a client's actions (uniform 0.5x..1.5x).
        #[arg(long, default_value = "1s", value_parser = util::parse_duration)]
        think: Duration,
        /// RSS sampling interval.
        #[arg(long, default_value = "5s", value_parser = util::parse_duration)]
        sample: Duration,
    },
    /// Clients on the first --url node; kill -9 that node; time until each
    /// client succeeds on another --url node.
    Failover {
        #[arg(long, default_value_t = 100)]
        clients: usize,
        #[arg(long, default_value_t = 20)]
        room_size: usize,
        /// Each client's pause between sendMessage calls.
        #[arg(long, default_value = "500ms", value_parser = util::parse_duration)]
        interval: Duration,
        /// The process serving the first --url (it gets SIGKILL).
        #[arg(long)]
        kill_pid: u32,
        #[arg(long, default_value = "3s", value_parser = util::parse_duration)]
        kill_after: Duration,
        /// How long the clients go on after the kill.
        #[arg(long, default_value = "10s", value_parser = util::parse_duration)]
        after_kill: Duration,
    },
    /// Session churn (connect, join by code, leave or vanish) in rounds, with the
    /// server's anonymous memory after each; fails if it keeps growing once warm.
    Churn {
        /// Concurrent session loops.
        #[arg(long, default_value_t = 100)]
        loops: usize,
        #[arg(long, default_value_t = 50)]
        rooms: usize,
        #[arg(long, default_value_t = 6)]
        rounds: usize,
        /// Length of each round (memory is sampled at the end of each).
        #[arg(long, default_value = "45s", value_parser = util::parse_duration)]
        round: Duration,
        #[arg(long, value_enum, default_value = "ddp")]
        door: scenarios::Door,
        /// Signed-in users in the pool (doors `users` and `rest`).
        #[arg(long, default_value_t = 1000)]
        users: usize,
        /// The round whose RssAnon later rounds are compared with.
        #[arg(long, default_value_t = 2)]
        reference_round: usize,
        /// Allowed growth of RssAnon above the reference round, MiB.
        #[arg(long, default_value_t = 10.0)]
        max_growth_mb: f64,
    },
    /// Print server pid/RSS/CPU and the open-files limit.
    Probe,
}

async fn run(cli: Cli) -> Result<bool, String> {
    let secret = match &cli.secret_file {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .map_err(|e| format!("reading --secret-file {}: {e}", p.display()))?
                .trim()
                .to_string(),
        ),
        None => std::env::var("ROOMD_JWT_SECRET").ok(),
    }
    .filter(|s| !s.is_empty());
    let mut eps = Vec::new();
    for url in cli.url.split(',').filter(|u| !u.trim().is_empty()) {
        eps.push(ddp::Endpoint::resolve(url.trim(), cli.src_addrs, cli.timeout).await?);
    }
    let ep = eps.first().cloned().ok_or("--url is empty")?;
    let mut sender_eps = Vec::new();
    for url in cli.sender_url.as_deref().unwrap_or("").split(',').filter(|u| !u.trim().is_empty()) {
        sender_eps.push(ddp::Endpoint::resolve(url.trim(), cli.src_addrs, cli.timeout).await?);
    }
    if sender_eps.is_empty() {
        sender_eps = eps.clone();
    }
    let (server_pids, how) = if !cli.server_pid.is_empty() {
        (cli.server_pid.clone(), "from --server-pid".to_string())
    } else {
        let mut pids = Vec::new();
        let mut hows = Vec::new();
        for e in &eps {
            let (pid, how) = procfs::find_server(e.addr.port());
            pids.extend(pid);
            hows.push(how);
        }
        if pids.len() < eps.len() {
            pids.clear();
        }
        (pids, hows.join("; "))
    };
    match server_pids.as_slice() {
        [] => eprintln!("[loadgen] server pid unknown ({how}): CPU/RSS figures unavailable"),
        pids => eprintln!("[loadgen] server pid(s) {pids:?} ({how})"),
    }
    let run = nanoid::nanoid!(
        6,
        &[
            'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'j', 'k', 'm', 'n', 'p', 'q', 'r', 's', 't', 'u', 'v',
            'w', 'x', 'y', 'z', '2', '3', '4', '5', '6', '7', '8', '9'
        ]
    );
    let ctx = common::Ctx {
        ep,
        eps,
        sender_eps,
        minter: secret.map(|s| common::Minter::new(s.as_bytes())),
        server_pids,
        aux_pids: cli.aux_pid.clone(),
        run,
        json: cli.json,
        concurrency: cli.concurrency,
        creator_seats: cli.creator_seats,
        rooms_per_creator: cli.rooms_per_creator,
    };
    use scenarios::*;
    match cli.scenario {
        Scenario::Idle {
            n,
            guests,
            shard,
            room_size,
            room_capacity,
            settle,
            hold,
            baseline_rss_kb,
            door,
        } => {
            if !(0.0..=1.0).contains(&guests) {
                return Err("--guests must be a fraction in 0..=1".into());
            }
            let a = IdleArgs {
                n,
                guests,
                shard: shard.unwrap_or((1, 1)),
                room_size,
                room_capacity,
                settle,
                hold,
                baseline_rss_kb,
                door,
            };
            idle(&ctx, a).await
        }
        Scenario::Join { clients, rooms, capacity, rate } => {
            let a = JoinArgs { clients, rooms, capacity, rate };
            join(&ctx, a).await
        }
        Scenario::Race { clients, seats, iterations, pause } => {
            let a = RaceArgs { clients, seats, iterations, pause };
            race(&ctx, a).await
        }
        Scenario::Fanout {
            rooms,
            members,
            rate,
            duration,
            ramp,
            ramp_factor,
            step,
            p99_limit,
            max_rate,
            max_steps,
            drain,
            senders_per_room,
            closed_loop,
        } => {
            let a = FanoutArgs {
                rooms,
                members,
                rate,
                duration,
                ramp,
                ramp_factor,
                step,
                p99_limit,
                max_rate,
                max_steps,
                drain,
                senders_per_room,
                closed_loop,
            };
            fanout(&ctx, a).await
        }
        Scenario::Chat { clients, duration, room_size, think, sample } => {
            let a = ChatArgs { clients, duration, room_size, think, sample };
            chat(&ctx, a).await
        }
        Scenario::Failover { clients, room_size, interval, kill_pid, kill_after, after_kill } => {
            let a = FailoverArgs { clients, room_size, interval, kill_pid, kill_after, after_kill };
            failover(&ctx, a).await
        }
        Scenario::Churn { loops, rooms, rounds, round, door, users, reference_round, max_growth_mb } => {
            let a = ChurnArgs { loops, rooms, rounds, round, door, users, reference_round, max_growth_mb };
            churn(&ctx, a).await
        }
        Scenario::Probe => probe(&ctx, &how),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(t) = cli.threads {
        builder.worker_threads(t.max(1));
    }
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("[loadgen] cannot start tokio runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let outcome = rt.block_on(run(cli));
    // Thousands of open sockets: skip the orderly runtime teardown.
    rt.shutdown_background();
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("[loadgen] FAILED: see the summary above");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("[loadgen] error: {e}");
            ExitCode::from(2)
        }
    }
}

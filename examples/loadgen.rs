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
//!   idle N [--guests F] [--shard K/M] [--settle 5s] [--hold D] [--baseline-rss-kb KB]
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
//!   fanout R M RATE [--duration 10s] [--ramp] [--senders-per-room S]
//!       R rooms x M members subscribed to stream-room-messages; bot senders send RATE
//!       msgs/s in total (round-robin over rooms) carrying a send timestamp; reports
//!       end-to-end latency, deliveries/s, deliveries per server CPU-second, sendMessage
//!       latency, rate-limited calls. --ramp multiplies RATE by --ramp-factor (1.5) every
//!       --step (5s) until p99 > --p99-limit (100ms), deliveries < 95% of expected,
//!       >1% of sends are refused, or a subscriber is disconnected; reports the highest
//!       sustainable rate.
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

// ---------------------------------------------------------------------------
// Small helpers: durations, a PRNG, formatting.
// ---------------------------------------------------------------------------
mod util {
    use super::*;

    /// Parses `500ms`, `10s`, `10` (seconds), `2m`, `1h`, `250us`.
    pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
        let s = s.trim();
        let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: f64 = num.parse().map_err(|_| format!("bad duration `{s}` (use e.g. 500ms, 10s, 2m)"))?;
        let secs = match unit.trim() {
            "" | "s" => n,
            "ms" => n / 1e3,
            "us" | "µs" => n / 1e6,
            "m" | "min" => n * 60.0,
            "h" => n * 3600.0,
            other => return Err(format!("bad duration unit `{other}` in `{s}`")),
        };
        if !secs.is_finite() || secs < 0.0 {
            return Err(format!("bad duration `{s}`"));
        }
        Ok(Duration::from_secs_f64(secs))
    }

    /// Parses `K/M` with 1 <= K <= M.
    pub(crate) fn parse_shard(s: &str) -> Result<(usize, usize), String> {
        let (k, m) = s.split_once('/').ok_or("shard must look like K/M, e.g. 2/4")?;
        let k: usize = k.trim().parse().map_err(|_| format!("bad shard `{s}`"))?;
        let m: usize = m.trim().parse().map_err(|_| format!("bad shard `{s}`"))?;
        if m == 0 || k == 0 || k > m {
            return Err(format!("bad shard `{s}`: K must be in 1..=M"));
        }
        Ok((k, m))
    }

    pub(crate) fn unix_micros() -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
    }

    /// xorshift64* — plenty for picking actions and rooms.
    pub(crate) struct Rng(u64);

    impl Rng {
        pub(crate) fn new(seed: u64) -> Self {
            Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
        }
        pub(crate) fn next_u64(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        pub(crate) fn below(&mut self, n: usize) -> usize {
            (self.next_u64() % n.max(1) as u64) as usize
        }
        /// Uniform in [0, 1).
        pub(crate) fn unit(&mut self) -> f64 {
            (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    pub(crate) fn mib(kb: u64) -> f64 {
        kb as f64 / 1024.0
    }

    pub(crate) fn truncate(s: &str, max: usize) -> &str {
        if s.len() <= max {
            return s;
        }
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        &s[..end]
    }

    pub(crate) fn fmt_rate(x: f64) -> String {
        if x >= 100.0 { format!("{x:.0}") } else { format!("{x:.1}") }
    }

    /// CPU seconds over a wall time as a percentage of one core.
    pub(crate) fn pct(cpu: Option<f64>, wall: f64) -> String {
        cpu.map(|c| format!("{:.0}%", 100.0 * c / wall.max(1e-9))).unwrap_or_else(|| "n/a".into())
    }

    pub(crate) fn opt_rate(x: Option<f64>) -> String {
        x.map(fmt_rate).unwrap_or_else(|| "n/a".into())
    }
}

// ---------------------------------------------------------------------------
// /proc sampling of the server (and of ourselves).
// ---------------------------------------------------------------------------
mod procfs {
    use super::*;

    /// sysconf(_SC_CLK_TCK) on Linux.
    pub(crate) const CLK_TCK: f64 = 100.0;

    #[derive(Clone, Copy, Debug)]
    pub(crate) struct ProcSample {
        pub rss_kb: u64,
        pub cpu_ticks: u64,
    }

    /// `pid` is a number or `self`.
    pub(crate) fn sample(pid: &str) -> Option<ProcSample> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the parenthesised comm: [0] = field 3 (state), so utime (14)
        // is [11] and stime (15) is [12].
        let rest = &stat[stat.rfind(')')? + 1..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let utime: u64 = f.get(11)?.parse().ok()?;
        let stime: u64 = f.get(12)?.parse().ok()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let rss_kb = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Some(ProcSample { rss_kb, cpu_ticks: utime + stime })
    }

    /// Anonymous resident memory (kB) of `pid`: `RssAnon` in /proc/PID/status,
    /// the heap and stacks without the mapped binary and shared files, so a
    /// leak is not hidden by page-cache noise.
    pub(crate) fn rss_anon_kb(pid: u32) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("RssAnon:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    }

    /// The sum over `pids` (several roomd nodes, or several nats-servers); None
    /// when the list is empty or any of them cannot be read (one exited).
    pub(crate) fn sample_sum(pids: &[u32]) -> Option<ProcSample> {
        if pids.is_empty() {
            return None;
        }
        let mut sum = ProcSample { rss_kb: 0, cpu_ticks: 0 };
        for p in pids {
            let s = sample(&p.to_string())?;
            sum.rss_kb += s.rss_kb;
            sum.cpu_ticks += s.cpu_ticks;
        }
        Some(sum)
    }

    fn start_time(pid: u32) -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                let rest = s[s.rfind(')')? + 1..].to_string();
                rest.split_whitespace().nth(19)?.parse().ok()
            })
            .unwrap_or(0)
    }

    /// Inodes of TCP sockets listening on `port` (from /proc/net/tcp and tcp6).
    fn listening_inodes(port: u16) -> Vec<String> {
        let mut out = Vec::new();
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            let text = std::fs::read_to_string(table).unwrap_or_default();
            for line in text.lines().skip(1) {
                let f: Vec<&str> = line.split_whitespace().collect();
                // local_address is ADDR:PORT in hex; st 0A = LISTEN; inode is field 9.
                let local_port = f
                    .get(1)
                    .and_then(|a| a.rsplit_once(':'))
                    .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
                if local_port == Some(port)
                    && f.get(3) == Some(&"0A")
                    && let Some(inode) = f.get(9)
                {
                    out.push(format!("socket:[{inode}]"));
                }
            }
        }
        out
    }

    fn holds_socket(pid: u32, inodes: &[String]) -> bool {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            return false;
        };
        dir.flatten().any(|e| {
            std::fs::read_link(e.path())
                .map(|t| inodes.iter().any(|i| t.as_os_str() == i.as_str()))
                .unwrap_or(false)
        })
    }

    /// Finds a process whose comm is `roomd`: the one listening on `port` if any,
    /// else one whose command line mentions `:port`, else the newest. Returns the
    /// pid and how it was chosen.
    pub(crate) fn find_server(port: u16) -> (Option<u32>, String) {
        let mut cands: Vec<(u32, u64, String)> = Vec::new();
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for e in dir.flatten() {
                let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                    continue;
                };
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                if comm.trim() != "roomd" {
                    continue;
                }
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                cands.push((pid, start_time(pid), cmd));
            }
        }
        if cands.is_empty() {
            return (None, "no process named `roomd` in /proc/*/comm".into());
        }
        let total = cands.len();
        let inodes = listening_inodes(port);
        if let Some((pid, _, cmd)) = cands.iter().find(|c| holds_socket(c.0, &inodes)) {
            let how = format!("`roomd` listening on port {port}: {}", cmd.trim());
            return (Some(*pid), how);
        }
        let needle = format!(":{port}");
        let port_named = cands.iter().any(|c| c.2.contains(&needle));
        if port_named {
            cands.retain(|c| c.2.contains(&needle));
        }
        cands.sort_by_key(|c| c.1);
        let (pid, _, cmd) = cands.pop().expect("non-empty");
        let how = format!(
            "no `roomd` seen listening on port {port}; picked the newest of {total} by {}: {}",
            if port_named { "port in command line" } else { "start time" },
            cmd.trim()
        );
        (Some(pid), how)
    }

    /// (soft, hard) open-files limit of this process; `None` = unlimited.
    pub(crate) fn open_files_limit() -> (Option<u64>, Option<u64>) {
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let Some(line) = limits.lines().find(|l| l.starts_with("Max open files")) else {
            return (None, None);
        };
        let mut it = line["Max open files".len()..].split_whitespace();
        let soft = it.next().and_then(|v| v.parse().ok());
        let hard = it.next().and_then(|v| v.parse().ok());
        (soft, hard)
    }

    /// Fails early when `needed` sockets would not fit under the soft limit.
    pub(crate) fn check_fd_budget(needed: usize) -> Result<(), String> {
        let (soft, hard) = open_files_limit();
        let Some(soft) = soft else { return Ok(()) };
        let needed = needed as u64 + 64;
        if needed <= soft {
            return Ok(());
        }
        let raise = match hard {
            Some(h) if h <= soft => "the hard limit is reached".to_string(),
            Some(h) => format!("raise it in the launching shell with `ulimit -n {h}`"),
            None => "raise it in the launching shell with `ulimit -n unlimited`".to_string(),
        };
        Err(format!(
            "this run needs ~{needed} file descriptors but the open-files limit is {soft} \
             (see /proc/self/limits): {raise} (loadgen cannot call setrlimit itself), or \
             split an `idle` run across processes with --shard K/M (each process has its \
             own limit; the server's own limit applies too)."
        ))
    }

    /// TcpExt ListenOverflows from /proc/net/netstat: connection attempts dropped
    /// because a listener's accept queue was full (whole network namespace).
    pub(crate) fn listen_overflows() -> Option<u64> {
        let text = std::fs::read_to_string("/proc/net/netstat").ok()?;
        let mut tcp_ext = text.lines().filter(|l| l.starts_with("TcpExt:"));
        let (names, values) = (tcp_ext.next()?, tcp_ext.next()?);
        let ix = names.split_whitespace().position(|n| n == "ListenOverflows")?;
        values.split_whitespace().nth(ix)?.parse().ok()
    }

    /// A point-in-time sample of the server and of this process.
    #[derive(Clone, Copy)]
    pub(crate) struct Snap {
        pub at: Instant,
        pub server: Option<ProcSample>,
        /// `--aux-pid` processes (e.g. nats-server), reported apart from the server.
        pub aux: Option<ProcSample>,
        pub me: Option<ProcSample>,
        pub listen_overflows: Option<u64>,
    }

    /// Resource use between two snapshots.
    pub(crate) struct Usage {
        pub wall: f64,
        pub server_cpu: Option<f64>,
        pub aux_cpu: Option<f64>,
        pub self_cpu: Option<f64>,
        pub rss_before_kb: Option<u64>,
        pub rss_after_kb: Option<u64>,
        pub listen_overflows: Option<u64>,
    }

    impl Usage {
        pub(crate) fn between(a: &Snap, b: &Snap) -> Usage {
            let cpu = |x: Option<ProcSample>, y: Option<ProcSample>| {
                Some(y?.cpu_ticks.saturating_sub(x?.cpu_ticks) as f64 / CLK_TCK)
            };
            Usage {
                wall: b.at.duration_since(a.at).as_secs_f64(),
                server_cpu: cpu(a.server, b.server),
                aux_cpu: cpu(a.aux, b.aux),
                self_cpu: cpu(a.me, b.me),
                rss_before_kb: a.server.map(|s| s.rss_kb),
                rss_after_kb: b.server.map(|s| s.rss_kb),
                listen_overflows: match (a.listen_overflows, b.listen_overflows) {
                    (Some(x), Some(y)) => Some(y.saturating_sub(x)),
                    _ => None,
                },
            }
        }

        /// `n` operations per server CPU-second (None without a server or when the
        /// phase was shorter than one clock tick of server CPU).
        pub(crate) fn per_cpu(&self, n: f64) -> Option<f64> {
            self.server_cpu.filter(|c| *c > 0.0).map(|c| n / c)
        }

        pub(crate) fn text(&self) -> String {
            let server = match self.server_cpu {
                Some(c) => format!(
                    "server CPU {c:.2} s ({:.0}% of one core{})",
                    100.0 * c / self.wall.max(1e-9),
                    if c < 1.0 { "; coarse, 10 ms ticks" } else { "" }
                ),
                None => "server CPU n/a".into(),
            };
            let me = self.self_cpu.map(|c| format!("loadgen CPU {c:.2} s")).unwrap_or_default();
            let aux = self.aux_cpu.map(|c| format!("aux (--aux-pid) CPU {c:.2} s, ")).unwrap_or_default();
            let overflows = match self.listen_overflows {
                Some(n) if n > 0 => format!(
                    ", {n} TCP listen-queue overflows (SYNs dropped: accept backlog full; \
                     lower --concurrency or enlarge the server's backlog)"
                ),
                _ => String::new(),
            };
            format!("{server}, {aux}{me}, wall {:.2} s{overflows}", self.wall)
        }

        pub(crate) fn json(&self) -> Value {
            json!({
                "wall_s": self.wall,
                "server_cpu_s": self.server_cpu,
                "aux_cpu_s": self.aux_cpu,
                "loadgen_cpu_s": self.self_cpu,
                "server_rss_before_kb": self.rss_before_kb,
                "server_rss_after_kb": self.rss_after_kb,
                "listen_overflows": self.listen_overflows,
            })
        }
    }
}

// ---------------------------------------------------------------------------
// Latency histograms and error tallies.
// ---------------------------------------------------------------------------
mod stats {
    use super::*;
    use hdrhistogram::Histogram;

    /// Latency histogram in microseconds (1 µs .. 1 h, 3 significant digits).
    #[derive(Clone)]
    pub(crate) struct Lat(Histogram<u64>);

    impl Default for Lat {
        fn default() -> Self {
            Lat(Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"))
        }
    }

    impl Lat {
        pub(crate) fn record(&mut self, d: Duration) {
            self.record_us(d.as_micros() as u64);
        }
        pub(crate) fn record_us(&mut self, us: u64) {
            self.0.saturating_record(us);
        }
        pub(crate) fn count(&self) -> u64 {
            self.0.len()
        }
        pub(crate) fn q_ms(&self, q: f64) -> f64 {
            if self.0.is_empty() {
                return 0.0;
            }
            self.0.value_at_quantile(q) as f64 / 1000.0
        }
        pub(crate) fn max_ms(&self) -> f64 {
            self.0.max() as f64 / 1000.0
        }
        pub(crate) fn text(&self) -> String {
            if self.0.is_empty() {
                return "no samples".into();
            }
            format!(
                "p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms  (n={})",
                self.q_ms(0.5),
                self.q_ms(0.99),
                self.max_ms(),
                self.count()
            )
        }
        pub(crate) fn json(&self) -> Value {
            json!({
                "n": self.count(),
                "p50_ms": self.q_ms(0.5),
                "p99_ms": self.q_ms(0.99),
                "max_ms": self.max_ms(),
            })
        }
    }

    pub(crate) type SharedLat = Arc<Mutex<Lat>>;

    pub(crate) fn shared_lat() -> SharedLat {
        Arc::new(Mutex::new(Lat::default()))
    }

    pub(crate) fn take(l: &SharedLat) -> Lat {
        l.lock().unwrap().clone()
    }

    /// Counts of named outcomes (error codes per stage, ...).
    #[derive(Default)]
    pub(crate) struct Tally(Mutex<BTreeMap<String, u64>>);

    impl Tally {
        pub(crate) fn add(&self, key: impl Into<String>) {
            *self.0.lock().unwrap().entry(key.into()).or_default() += 1;
        }
        pub(crate) fn total(&self) -> u64 {
            self.0.lock().unwrap().values().sum()
        }
        pub(crate) fn text(&self) -> String {
            let m = self.0.lock().unwrap();
            if m.is_empty() {
                return "none".into();
            }
            m.iter().map(|(k, v)| format!("{k} x{v}")).collect::<Vec<_>>().join(", ")
        }
        pub(crate) fn json(&self) -> Value {
            let m = self.0.lock().unwrap();
            Value::Object(m.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
        }
    }
}

// ---------------------------------------------------------------------------
// DDP client over a WebSocket.
// ---------------------------------------------------------------------------
mod ddp {
    use super::*;
    use futures_util::stream::{SplitSink, SplitStream};
    use futures_util::{SinkExt, StreamExt};
    use tokio::net::{TcpSocket, TcpStream};
    use tokio::sync::{mpsc, oneshot};
    use tokio::task::JoinHandle;
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

    type Ws = WebSocketStream<TcpStream>;
    type Reply = oneshot::Sender<Result<Value, DdpError>>;

    /// Receives a connection's data frames, on its reader task.
    pub(crate) trait Listener: Send + Sync {
        /// Sees every text frame before it is parsed; returning true consumes it.
        /// A fast path for hot frames (fanout deliveries) that skips JSON parsing.
        fn raw(&self, _frame: &str) -> bool {
            false
        }
        /// `added`/`changed`/`removed` frames: (collection, fields).
        fn event(&self, _collection: &str, _fields: &Value) {}
    }

    pub(crate) type Handler = Arc<dyn Listener>;

    const CONNECT_FRAME: &str = r#"{"msg":"connect","version":"1","support":["1","pre2","pre1"]}"#;

    #[derive(Debug, Clone)]
    pub(crate) enum DdpError {
        /// A method or subscription error reported by the server.
        Method {
            error: String,
            reason: String,
        },
        Closed,
        Timeout,
        Io(String),
        Protocol(String),
    }

    impl DdpError {
        /// Short code for tallies: the server's error code, or closed/timeout/io/protocol.
        pub(crate) fn code(&self) -> String {
            match self {
                DdpError::Method { error, .. } => error.clone(),
                DdpError::Closed => "closed".into(),
                DdpError::Timeout => "timeout".into(),
                DdpError::Io(_) => "io".into(),
                DdpError::Protocol(_) => "protocol".into(),
            }
        }
        pub(crate) fn is(&self, code: &str) -> bool {
            matches!(self, DdpError::Method { error, .. } if error == code)
        }
    }

    impl fmt::Display for DdpError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                DdpError::Method { error, reason } => write!(f, "{error}: {reason}"),
                DdpError::Closed => write!(f, "connection closed"),
                DdpError::Timeout => write!(f, "timed out"),
                DdpError::Io(e) => write!(f, "{e}"),
                DdpError::Protocol(e) => write!(f, "protocol: {e}"),
            }
        }
    }

    fn io(e: std::io::Error) -> DdpError {
        DdpError::Io(e.to_string())
    }

    fn method_error(e: &Value) -> DdpError {
        let error = match e.get("error") {
            Some(Value::String(s)) => s.clone(),
            Some(v) if !v.is_null() => v.to_string(),
            _ => "unknown-error".into(),
        };
        let reason =
            e.get("reason").or_else(|| e.get("message")).and_then(Value::as_str).unwrap_or("").to_string();
        DdpError::Method { error, reason }
    }

    /// Process-wide counters of things that should not happen.
    pub(crate) static DISCONNECTS: AtomicU64 = AtomicU64::new(0);
    static NOTES: Mutex<BTreeMap<&'static str, u64>> = Mutex::new(BTreeMap::new());

    /// Counts an unusual frame/event and prints the first three of each kind.
    pub(crate) fn note(kind: &'static str, detail: &str) {
        let n = {
            let mut m = NOTES.lock().unwrap();
            let e = m.entry(kind).or_default();
            *e += 1;
            *e
        };
        if n <= 3 {
            eprintln!("[loadgen] {kind}: {}", util::truncate(detail, 400));
        }
    }

    pub(crate) fn notes() -> BTreeMap<&'static str, u64> {
        NOTES.lock().unwrap().clone()
    }

    /// Where to connect and how.
    #[derive(Clone, Debug)]
    pub(crate) struct Endpoint {
        pub url: String,
        pub addr: SocketAddr,
        pub src_addrs: u8,
        pub timeout: Duration,
    }

    impl Endpoint {
        pub(crate) async fn resolve(url: &str, src_addrs: u8, timeout: Duration) -> Result<Self, String> {
            let rest = url
                .strip_prefix("ws://")
                .ok_or_else(|| format!("only ws:// URLs are supported, got `{url}`"))?;
            let host = rest.split('/').next().unwrap_or(rest);
            let host = if host.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
                host.to_string()
            } else {
                format!("{host}:80")
            };
            let addr = tokio::net::lookup_host(&host)
                .await
                .map_err(|e| format!("resolving {host}: {e}"))?
                .next()
                .ok_or_else(|| format!("{host} did not resolve"))?;
            Ok(Endpoint { url: url.to_string(), addr, src_addrs: src_addrs.max(1), timeout })
        }

        /// Source address for connection `index`: 127.0.0.(1 + index % src_addrs)
        /// when the server is on IPv4 loopback, so more than ~28k sockets fit.
        pub(crate) fn source_ip(&self, index: usize) -> Option<IpAddr> {
            match self.addr.ip() {
                IpAddr::V4(v4) if v4.is_loopback() => {
                    let last = 1 + (index % self.src_addrs as usize) as u8;
                    Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
                }
                _ => None,
            }
        }
    }

    struct Shared {
        tx: mpsc::UnboundedSender<Message>,
        methods: Mutex<HashMap<u64, Reply>>,
        subs: Mutex<HashMap<u64, Reply>>,
        connected: Mutex<Option<Reply>>,
        next_id: AtomicU64,
        closing: AtomicBool,
        alive: AtomicBool,
        /// Woken when `alive` turns false.
        died: tokio::sync::Notify,
    }

    #[derive(serde::Deserialize)]
    struct Incoming {
        msg: Option<String>,
        id: Option<Value>,
        result: Option<Value>,
        error: Option<Value>,
        subs: Option<Vec<String>>,
        collection: Option<String>,
        fields: Option<Value>,
        session: Option<String>,
        version: Option<String>,
    }

    fn sub_id(s: &str) -> Option<u64> {
        s.strip_prefix('s')?.parse().ok()
    }

    impl Shared {
        fn send(&self, text: String) -> bool {
            self.tx.send(Message::text(text)).is_ok()
        }

        fn dispatch(&self, text: &str, handler: Option<&Handler>) {
            if handler.is_some_and(|h| h.raw(text)) {
                return;
            }
            let m: Incoming = match serde_json::from_str(text) {
                Ok(m) => m,
                Err(_) => return note("unparseable frame", text),
            };
            match m.msg.as_deref().unwrap_or("") {
                "ping" => {
                    let pong = match m.id {
                        Some(id) => json!({"msg": "pong", "id": id}),
                        None => json!({"msg": "pong"}),
                    };
                    self.send(pong.to_string());
                }
                "connected" => {
                    if let Some(tx) = self.connected.lock().unwrap().take() {
                        let _ = tx.send(Ok(Value::String(m.session.unwrap_or_default())));
                    }
                }
                "failed" => {
                    note("connect failed", text);
                    if let Some(tx) = self.connected.lock().unwrap().take() {
                        let msg = format!("server refused DDP version, suggests {:?}", m.version);
                        let _ = tx.send(Err(DdpError::Protocol(msg)));
                    }
                }
                "result" => {
                    let id = m.id.as_ref().and_then(Value::as_str);
                    let id = id.and_then(|s| s.parse::<u64>().ok());
                    let tx = id.and_then(|id| self.methods.lock().unwrap().remove(&id));
                    match tx {
                        Some(tx) => {
                            let r = match m.error {
                                Some(e) => Err(method_error(&e)),
                                None => Ok(m.result.unwrap_or(Value::Null)),
                            };
                            let _ = tx.send(r);
                        }
                        None => note("result for an unknown method id", text),
                    }
                }
                "ready" => {
                    for s in m.subs.unwrap_or_default() {
                        let tx = sub_id(&s).and_then(|id| self.subs.lock().unwrap().remove(&id));
                        if let Some(tx) = tx {
                            let _ = tx.send(Ok(Value::Null));
                        }
                    }
                }
                "nosub" => {
                    let id = m.id.as_ref().and_then(Value::as_str).and_then(sub_id);
                    let tx = id.and_then(|id| self.subs.lock().unwrap().remove(&id));
                    if let Some(tx) = tx {
                        let err = m
                            .error
                            .as_ref()
                            .map(method_error)
                            .unwrap_or(DdpError::Protocol("nosub without error".into()));
                        let _ = tx.send(Err(err));
                    }
                }
                "added" | "changed" | "removed" | "addedBefore" | "movedBefore" => {
                    if let Some(h) = handler {
                        let coll = m.collection.as_deref().unwrap_or("");
                        h.event(coll, m.fields.as_ref().unwrap_or(&Value::Null));
                    }
                }
                "updated" | "pong" => {}
                "error" => note("server error frame", text),
                _ => note("unexpected frame", text),
            }
        }

        fn fail_all(&self) {
            let mut replies: Vec<Reply> = Vec::new();
            replies.extend(self.methods.lock().unwrap().drain().map(|(_, r)| r));
            replies.extend(self.subs.lock().unwrap().drain().map(|(_, r)| r));
            replies.extend(self.connected.lock().unwrap().take());
            for r in replies {
                let _ = r.send(Err(DdpError::Closed));
            }
        }
    }

    async fn write_loop(mut sink: SplitSink<Ws, Message>, mut rx: mpsc::UnboundedReceiver<Message>) {
        while let Some(m) = rx.recv().await {
            if sink.feed(m).await.is_err() {
                return;
            }
            // Batch whatever else is queued into one flush.
            while let Ok(m) = rx.try_recv() {
                if sink.feed(m).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    }

    async fn read_loop(mut stream: SplitStream<Ws>, shared: Arc<Shared>, handler: Option<Handler>) {
        while let Some(item) = stream.next().await {
            match item {
                Ok(Message::Text(t)) => shared.dispatch(t.as_str(), handler.as_ref()),
                Ok(Message::Close(frame)) => {
                    if !shared.closing.load(Relaxed) {
                        note("server closed a connection", &format!("{frame:?}"));
                    }
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    if !shared.closing.load(Relaxed) {
                        note("connection error", &e.to_string());
                    }
                    break;
                }
            }
        }
        shared.alive.store(false, Relaxed);
        shared.died.notify_waiters();
        if !shared.closing.load(Relaxed) {
            DISCONNECTS.fetch_add(1, Relaxed);
        }
        shared.fail_all();
    }

    /// A reply still to come (method result or subscription readiness).
    pub(crate) struct Pending {
        shared: Arc<Shared>,
        id: u64,
        sub: bool,
        rx: oneshot::Receiver<Result<Value, DdpError>>,
        timeout: Duration,
    }

    impl Pending {
        pub(crate) async fn wait(self) -> Result<Value, DdpError> {
            let Pending { shared, id, sub, rx, timeout } = self;
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(r)) => r,
                Ok(Err(_)) => Err(DdpError::Closed),
                Err(_) => {
                    let map = if sub { &shared.subs } else { &shared.methods };
                    map.lock().unwrap().remove(&id);
                    Err(DdpError::Timeout)
                }
            }
        }
    }

    struct Inner {
        shared: Arc<Shared>,
        tasks: [JoinHandle<()>; 2],
        timeout: Duration,
    }

    impl Drop for Inner {
        fn drop(&mut self) {
            self.shared.closing.store(true, Relaxed);
            for t in &self.tasks {
                t.abort();
            }
        }
    }

    /// One DDP connection. Cloning shares it; the socket closes when the last
    /// clone is dropped.
    #[derive(Clone)]
    pub(crate) struct Client {
        inner: Arc<Inner>,
    }

    impl Client {
        /// Opens TCP + WebSocket and sends `connect`; the returned `Pending` resolves
        /// on `connected`.
        pub(crate) async fn connect(
            ep: &Endpoint,
            index: usize,
            handler: Option<Handler>,
        ) -> Result<(Client, Pending), DdpError> {
            let sock =
                if ep.addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.map_err(io)?;
            if let Some(ip) = ep.source_ip(index) {
                sock.bind(SocketAddr::new(ip, 0)).map_err(|e| DdpError::Io(format!("bind {ip}:0: {e}")))?;
            }
            let stream = tokio::time::timeout(ep.timeout, sock.connect(ep.addr))
                .await
                .map_err(|_| DdpError::Timeout)?
                .map_err(io)?;
            stream.set_nodelay(true).map_err(io)?;
            // Small buffers: thousands of mostly idle connections.
            let cfg = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(16 * 1024);
            let handshake = tokio_tungstenite::client_async_with_config(ep.url.as_str(), stream, Some(cfg));
            let (ws, _response) = tokio::time::timeout(ep.timeout, handshake)
                .await
                .map_err(|_| DdpError::Timeout)?
                .map_err(|e| DdpError::Io(format!("websocket handshake: {e}")))?;
            let (sink, stream) = ws.split();
            let (tx, rx) = mpsc::unbounded_channel();
            let (ctx, crx) = oneshot::channel();
            let shared = Arc::new(Shared {
                tx,
                methods: Mutex::default(),
                subs: Mutex::default(),
                connected: Mutex::new(Some(ctx)),
                next_id: AtomicU64::new(1),
                closing: AtomicBool::new(false),
                alive: AtomicBool::new(true),
                died: tokio::sync::Notify::new(),
            });
            let writer = tokio::spawn(write_loop(sink, rx));
            let reader = tokio::spawn(read_loop(stream, shared.clone(), handler));
            shared.send(CONNECT_FRAME.to_string());
            let connected =
                Pending { shared: shared.clone(), id: 0, sub: false, rx: crx, timeout: ep.timeout };
            let inner = Inner { shared, tasks: [writer, reader], timeout: ep.timeout };
            Ok((Client { inner: Arc::new(inner) }, connected))
        }

        /// Connects and (with a token) logs in, pipelining `login` after `connect`.
        /// The error names the stage that failed.
        pub(crate) async fn open(
            ep: &Endpoint,
            index: usize,
            token: Option<&str>,
            handler: Option<Handler>,
        ) -> Result<Client, (&'static str, DdpError)> {
            let (client, connected) =
                Client::connect(ep, index, handler).await.map_err(|e| ("connect", e))?;
            let login = token.map(|t| client.start("login", json!([{ "resume": t }])));
            connected.wait().await.map_err(|e| ("connect", e))?;
            if let Some(login) = login {
                login.wait().await.map_err(|e| ("login", e))?;
            }
            Ok(client)
        }

        /// Registers a method call and returns its frame without sending it.
        pub(crate) fn prepare(&self, method: &str, params: Value) -> (String, Pending) {
            let shared = &self.inner.shared;
            let id = shared.next_id.fetch_add(1, Relaxed);
            let (tx, rx) = oneshot::channel();
            shared.methods.lock().unwrap().insert(id, tx);
            let frame = json!({
                "msg": "method",
                "method": method,
                "params": params,
                "id": id.to_string(),
            })
            .to_string();
            let pending = Pending { shared: shared.clone(), id, sub: false, rx, timeout: self.inner.timeout };
            (frame, pending)
        }

        /// Sends a prepared frame. On a dead connection the pending call fails at once.
        pub(crate) fn send_prepared(&self, frame: String, pending: &Pending) {
            if !self.inner.shared.send(frame) {
                let map = if pending.sub { &self.inner.shared.subs } else { &self.inner.shared.methods };
                map.lock().unwrap().remove(&pending.id);
            }
        }

        pub(crate) fn start(&self, method: &str, params: Value) -> Pending {
            let (frame, pending) = self.prepare(method, params);
            self.send_prepared(frame, &pending);
            pending
        }

        pub(crate) async fn call(&self, method: &str, params: Value) -> Result<Value, DdpError> {
            self.start(method, params).wait().await
        }

        /// Subscribes and waits for `ready`; returns the subscription id.
        pub(crate) async fn subscribe(&self, name: &str, params: Value) -> Result<u64, DdpError> {
            let shared = &self.inner.shared;
            let id = shared.next_id.fetch_add(1, Relaxed);
            let (tx, rx) = oneshot::channel();
            shared.subs.lock().unwrap().insert(id, tx);
            let frame = json!({"msg": "sub", "id": format!("s{id}"), "name": name, "params": params});
            let pending = Pending { shared: shared.clone(), id, sub: true, rx, timeout: self.inner.timeout };
            self.send_prepared(frame.to_string(), &pending);
            pending.wait().await.map(|_| id)
        }

        pub(crate) fn unsubscribe(&self, sid: u64) {
            self.inner.shared.subs.lock().unwrap().remove(&sid);
            let frame = json!({"msg": "unsub", "id": format!("s{sid}")});
            self.inner.shared.send(frame.to_string());
        }

        /// Closes cleanly: a WebSocket close frame, then waits (bounded by the
        /// call timeout) for the server's answer and the socket's end.
        pub(crate) async fn close(&self) {
            let shared = &self.inner.shared;
            shared.closing.store(true, Relaxed);
            let _ = shared.tx.send(Message::Close(None));
            let _ = tokio::time::timeout(self.inner.timeout, self.closed()).await;
        }

        pub(crate) fn is_alive(&self) -> bool {
            self.inner.shared.alive.load(Relaxed)
        }

        /// Resolves once the connection is gone (at once if it already is).
        pub(crate) async fn closed(&self) {
            let shared = &self.inner.shared;
            let died = shared.died.notified();
            tokio::pin!(died);
            died.as_mut().enable();
            if shared.alive.load(Relaxed) {
                died.await;
            }
        }
    }
}

// ---------------------------------------------------------------------------
// A minimal Socket.IO v5 (Engine.IO v4, WebSocket transport only) guest client
// for the churn scenario: CONNECT, events with acknowledgements, close or cut.
// ---------------------------------------------------------------------------
mod sio {
    use super::ddp::{DdpError, Endpoint};
    use super::*;
    use futures_util::{SinkExt, StreamExt};
    use tokio::net::{TcpSocket, TcpStream};
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::Message;

    /// One socket on the `/` namespace, driven by one task: calls go one at a
    /// time, and everything read while waiting for an ack (server events,
    /// pings) is answered or dropped.
    pub(crate) struct Sio {
        ws: WebSocketStream<TcpStream>,
        next_ack: u64,
        timeout: Duration,
    }

    fn io(e: impl fmt::Display) -> DdpError {
        DdpError::Io(e.to_string())
    }

    /// The Socket.IO URL on the same host as the endpoint's DDP URL.
    fn url(ep: &Endpoint) -> String {
        let rest = ep.url.strip_prefix("ws://").unwrap_or(&ep.url);
        let host = rest.split('/').next().unwrap_or(rest);
        format!("ws://{host}/socket.io/?EIO=4&transport=websocket")
    }

    impl Sio {
        /// TCP + WebSocket, the Engine.IO open packet, then a CONNECT without
        /// `auth` (a guest); a CONNECT_ERROR is an error named by its message.
        pub(crate) async fn open(ep: &Endpoint, index: usize) -> Result<Sio, DdpError> {
            let sock =
                if ep.addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.map_err(io)?;
            if let Some(ip) = ep.source_ip(index) {
                sock.bind(SocketAddr::new(ip, 0)).map_err(io)?;
            }
            let stream = tokio::time::timeout(ep.timeout, sock.connect(ep.addr))
                .await
                .map_err(|_| DdpError::Timeout)?
                .map_err(io)?;
            stream.set_nodelay(true).map_err(io)?;
            let (ws, _) = tokio::time::timeout(ep.timeout, tokio_tungstenite::client_async(url(ep), stream))
                .await
                .map_err(|_| DdpError::Timeout)?
                .map_err(|e| DdpError::Io(format!("websocket handshake: {e}")))?;
            let mut me = Sio { ws, next_ack: 0, timeout: ep.timeout };
            let open = me.read().await?;
            if !open.starts_with("0{") {
                return Err(DdpError::Protocol(format!("engine.io open: {}", util::truncate(&open, 100))));
            }
            me.send("40".into()).await?;
            let reply = me.read().await?;
            if let Some(err) = reply.strip_prefix("44") {
                let v: Value = serde_json::from_str(err).unwrap_or(Value::Null);
                let reason = v["message"].as_str().unwrap_or(err).to_owned();
                return Err(DdpError::Method { error: "connect-error".into(), reason });
            }
            if !reply.starts_with("40") {
                return Err(DdpError::Protocol(format!("CONNECT answer: {}", util::truncate(&reply, 100))));
            }
            Ok(me)
        }

        async fn send(&mut self, text: String) -> Result<(), DdpError> {
            self.ws.send(Message::Text(text.into())).await.map_err(io)
        }

        /// The next Engine.IO message that is not a ping (pings are answered).
        async fn read(&mut self) -> Result<String, DdpError> {
            let deadline = tokio::time::Instant::now() + self.timeout;
            loop {
                match tokio::time::timeout_at(deadline, self.ws.next()).await {
                    Err(_) => return Err(DdpError::Timeout),
                    Ok(Some(Ok(Message::Text(t)))) if t.as_str() == "2" => self.send("3".into()).await?,
                    Ok(Some(Ok(Message::Text(t)))) => return Ok(t.to_string()),
                    Ok(Some(Ok(Message::Close(_)))) | Ok(None) => return Err(DdpError::Closed),
                    Ok(Some(Err(e))) => return Err(io(e)),
                    Ok(Some(Ok(_))) => {}
                }
            }
        }

        /// `socket.emit(event, payload, ack)`: the ack's payload, or its
        /// `error` object as an error named by its `code`.
        pub(crate) async fn ask(&mut self, event: &str, payload: Value) -> Result<Value, DdpError> {
            let id = self.next_ack;
            self.next_ack += 1;
            self.send(format!("42{id}{}", json!([event, payload]))).await?;
            let prefix = format!("43{id}");
            loop {
                let t = self.read().await?;
                let Some(rest) = t.strip_prefix(&prefix) else { continue };
                let mut args: Vec<Value> =
                    serde_json::from_str(rest).map_err(|e| DdpError::Protocol(e.to_string()))?;
                let v = if args.is_empty() { Value::Null } else { args.remove(0) };
                if let Some(e) = v.get("error") {
                    let error = e["code"].as_str().unwrap_or("error").to_owned();
                    let reason = e["message"].as_str().unwrap_or_default().to_owned();
                    return Err(DdpError::Method { error, reason });
                }
                return Ok(v);
            }
        }

        /// A WebSocket close frame, then the server's answer (bounded).
        pub(crate) async fn close(mut self) {
            let timeout = self.timeout;
            let _ = tokio::time::timeout(timeout, async {
                self.ws.close(None).await.ok()?;
                while let Some(Ok(_)) = self.ws.next().await {}
                Some(())
            })
            .await;
        }
    }
}

// ---------------------------------------------------------------------------
// Shared scenario plumbing: context, tokens, rooms, bounded fan-out of setups.
// ---------------------------------------------------------------------------
mod common {
    use super::*;
    pub(crate) use ddp::{Client, DdpError, Endpoint, Handler};
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    pub(crate) use procfs::{Snap, Usage};
    pub(crate) use stats::{Lat, SharedLat, Tally, shared_lat, take};
    use tokio::sync::Semaphore;
    use tokio::task::JoinSet;
    pub(crate) use util::*;

    pub(crate) struct Minter {
        key: EncodingKey,
        header: Header,
    }

    impl Minter {
        pub(crate) fn new(secret: &[u8]) -> Self {
            Minter { key: EncodingKey::from_secret(secret), header: Header::new(Algorithm::HS256) }
        }

        pub(crate) fn mint(&self, id: &str, name: &str, role: &str) -> String {
            let exp = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) + 86_400;
            let claims = json!({
                "sub": id,
                "username": name,
                "name": name,
                "roles": [role],
                "exp": exp,
            });
            jsonwebtoken::encode(&self.header, &claims, &self.key).expect("HS256 signing")
        }
    }

    pub(crate) struct Ctx {
        /// The first `--url`: room-creating admin bots connect here.
        pub ep: Endpoint,
        /// Every `--url`: client i connects to `eps[i % len]`.
        pub eps: Vec<Endpoint>,
        /// `--sender-url` (fanout's sender bots), else `eps`.
        pub sender_eps: Vec<Endpoint>,
        pub minter: Option<Minter>,
        /// Processes whose CPU and RSS are summed as "server".
        pub server_pids: Vec<u32>,
        pub aux_pids: Vec<u32>,
        /// Random per-process tag, part of every user and room name.
        pub run: String,
        pub json: bool,
        pub concurrency: usize,
        /// Seats the creating admin bot itself occupies in every room it creates.
        pub creator_seats: usize,
        /// Rooms each admin bot creates before another one takes over.
        pub rooms_per_creator: usize,
    }

    impl Ctx {
        /// Admin bots needed to create `rooms` rooms.
        pub(crate) fn creator_bots(&self, rooms: usize) -> usize {
            rooms.div_ceil(self.rooms_per_creator.max(1))
        }

        /// `extraData` for a room with `seats` places left for loadgen's clients:
        /// roomd counts the creator as a member, so its seat is added on top.
        pub(crate) fn capacity_extra(&self, seats: usize) -> Value {
            json!({"maxParticipants": seats + self.creator_seats})
        }

        /// Token for a loadgen user `lg<run><kind><i>` (id and username alike).
        pub(crate) fn token(&self, kind: &str, i: usize, role: &str) -> Result<String, String> {
            let minter = self.minter.as_ref().ok_or(
                "no JWT secret: set ROOMD_JWT_SECRET or pass --secret-file PATH (the \
                 secret roomd was started with)",
            )?;
            let name = format!("lg{}{kind}{i}", self.run);
            Ok(minter.mint(&name, &name, role))
        }

        pub(crate) fn username(&self, kind: &str, i: usize) -> String {
            format!("lg{}{kind}{i}", self.run)
        }

        pub(crate) fn snap(&self) -> Snap {
            Snap {
                at: Instant::now(),
                server: procfs::sample_sum(&self.server_pids),
                aux: procfs::sample_sum(&self.aux_pids),
                me: procfs::sample("self"),
                listen_overflows: procfs::listen_overflows(),
            }
        }

        /// A line of the human summary (stderr when --json keeps stdout for JSON).
        pub(crate) fn say(&self, line: impl fmt::Display) {
            if self.json {
                eprintln!("{line}");
            } else {
                println!("{line}");
            }
        }

        pub(crate) fn progress(&self, line: impl fmt::Display) {
            eprintln!("[loadgen] {line}");
        }

        /// Common trailer lines: unexpected disconnects and protocol notes.
        pub(crate) fn say_health(&self) -> Value {
            let disconnects = ddp::DISCONNECTS.load(Relaxed);
            let notes = ddp::notes();
            let notes_text = if notes.is_empty() {
                "none".to_string()
            } else {
                notes.iter().map(|(k, v)| format!("{k} x{v}")).collect::<Vec<_>>().join(", ")
            };
            self.say(format!(
                "health      unexpected disconnects {disconnects}; protocol notes: {notes_text}"
            ));
            json!({"unexpected_disconnects": disconnects, "protocol_notes": notes})
        }
    }

    #[derive(Clone, Debug)]
    pub(crate) struct Room {
        pub rid: String,
        pub code: String,
    }

    /// `createChannel`; warns once if the creator does not hold `creator_seats` seats.
    pub(crate) async fn create_room(
        bot: &Client,
        name: &str,
        extra: Value,
        creator_seats: usize,
    ) -> Result<Room, DdpError> {
        let doc = bot.call("createChannel", json!([name, [], false, {}, extra])).await?;
        let members = doc.get("usersCount").and_then(Value::as_u64);
        if members.is_some_and(|m| m != creator_seats as u64) {
            ddp::note(
                "new room's usersCount differs from --creator-seats",
                &format!("usersCount {members:?}, --creator-seats {creator_seats}"),
            );
        }
        let rid = doc.get("rid").or_else(|| doc.get("_id")).and_then(Value::as_str);
        let code = doc.get("code").and_then(Value::as_str);
        match (rid, code) {
            (Some(rid), Some(code)) => Ok(Room { rid: rid.to_string(), code: code.to_string() }),
            _ => Err(DdpError::Protocol(format!(
                "createChannel result lacks rid/code: {}",
                truncate(&doc.to_string(), 300)
            ))),
        }
    }

    /// Admin bots that create rooms. roomd limits room creation per user
    /// (`--max-rooms-per-minute`, default 10, admins included), so each bot
    /// creates at most `--rooms-per-creator` rooms and fresh bots log in for
    /// more. The bots stay connected (and members of their rooms) until dropped.
    pub(crate) struct Creators {
        bots: Vec<Client>,
        per: usize,
        seats: usize,
    }

    impl Creators {
        pub(crate) fn new(ctx: &Ctx) -> Self {
            Creators { bots: Vec::new(), per: ctx.rooms_per_creator.max(1), seats: ctx.creator_seats }
        }

        async fn open_bot(ep: &Endpoint, j: usize, token: &str) -> Result<Client, String> {
            Client::open(ep, j, Some(token), None)
                .await
                .map_err(|(stage, e)| format!("admin bot {stage} to {} failed: {e}", ep.url))
        }

        /// `n` rooms named `lg-<run>-<prefix>-<j>`, by n / per bots in parallel.
        pub(crate) async fn create_many(
            &mut self,
            ctx: &Ctx,
            n: usize,
            prefix: &str,
            extra: Value,
        ) -> Result<Vec<Room>, String> {
            let (per, first, seats) = (self.per, self.bots.len(), self.seats);
            let n_bots = n.div_ceil(per);
            let tokens: Vec<String> =
                (0..n_bots).map(|b| ctx.token("admin", first + b, "admin")).collect::<Result<_, _>>()?;
            let names: Vec<String> = (0..n).map(|j| format!("lg-{}-{prefix}-{j}", ctx.run)).collect();
            let results = bounded(n_bots, ctx.concurrency, |b| {
                let ep = ctx.ep.clone();
                let token = tokens[b].clone();
                let names = names[b * per..((b + 1) * per).min(n)].to_vec();
                let extra = extra.clone();
                async move {
                    let bot = Self::open_bot(&ep, first + b, &token).await?;
                    let mut rooms = Vec::with_capacity(names.len());
                    for name in &names {
                        let room = create_room(&bot, name, extra.clone(), seats)
                            .await
                            .map_err(|e| format!("createChannel {name}: {e}"))?;
                        rooms.push(room);
                    }
                    Ok::<_, String>((bot, rooms))
                }
            })
            .await;
            ctx.progress(format!("created {n} rooms with {n_bots} admin bots"));
            let mut all = Vec::with_capacity(n);
            for r in results {
                let (bot, rooms) = r?;
                self.bots.push(bot);
                all.extend(rooms);
            }
            Ok(all)
        }
    }

    #[derive(Clone, Copy, Debug)]
    pub(crate) enum Via {
        /// `join-room` with `{code}` (plus `guestName` for guests).
        Code,
        /// `joinRoom(rid)`.
        Rid,
    }

    pub(crate) async fn join_room(
        client: &Client,
        room: &Room,
        via: Via,
        guest_name: Option<&str>,
    ) -> Result<Value, DdpError> {
        match via {
            Via::Code => {
                let mut arg = json!({"code": room.code});
                if let Some(g) = guest_name {
                    arg["guestName"] = json!(g);
                }
                client.call("join-room", json!([arg])).await
            }
            Via::Rid => {
                let r = client.call("joinRoom", json!([room.rid])).await?;
                if r != Value::Bool(true) {
                    ddp::note("joinRoom returned something other than true", &r.to_string());
                }
                Ok(r)
            }
        }
    }

    pub(crate) async fn subscribe_room(client: &Client, rid: &str) -> Result<u64, DdpError> {
        client.subscribe("stream-room-messages", json!([rid, false])).await
    }

    /// What a client does right after connecting.
    pub(crate) struct Plan {
        pub index: usize,
        pub token: Option<String>,
        pub handler: Option<Handler>,
        /// Room, how to join, guest name.
        pub join: Option<(Room, Via, Option<String>)>,
        pub subscribe: bool,
    }

    /// connect (+login) (+join) (+subscribe); the error names the failed stage.
    pub(crate) async fn setup_client(ep: Endpoint, plan: Plan) -> Result<Client, (&'static str, DdpError)> {
        let client = Client::open(&ep, plan.index, plan.token.as_deref(), plan.handler).await?;
        if let Some((room, via, guest)) = &plan.join {
            join_room(&client, room, *via, guest.as_deref()).await.map_err(|e| ("join", e))?;
            if plan.subscribe {
                subscribe_room(&client, &room.rid).await.map_err(|e| ("subscribe", e))?;
            }
        }
        Ok(client)
    }

    /// Runs `f(0..n)` as tasks with at most `limit` in flight; results by index.
    pub(crate) async fn bounded<T, F, Fut>(n: usize, limit: usize, mut f: F) -> Vec<T>
    where
        F: FnMut(usize) -> Fut,
        Fut: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let sem = Arc::new(Semaphore::new(limit.max(1)));
        let mut set = JoinSet::new();
        for i in 0..n {
            let permit = sem.clone().acquire_owned().await.expect("semaphore open");
            let fut = f(i);
            set.spawn(async move {
                let r = fut.await;
                drop(permit);
                (i, r)
            });
        }
        let mut out: Vec<Option<T>> = (0..n).map(|_| None).collect();
        while let Some(res) = set.join_next().await {
            let (i, r) = res.expect("setup task panicked");
            out[i] = Some(r);
        }
        out.into_iter().map(|o| o.expect("every task ran")).collect()
    }

    /// Sets up many clients with `bounded`, recording setup latency and failures
    /// (as `<stage>:<code>`). Returns the clients in plan order (None = failed).
    pub(crate) async fn setup_many(
        ctx: &Ctx,
        plans: Vec<Plan>,
        lat: &SharedLat,
        failures: &Arc<Tally>,
    ) -> Vec<Option<Client>> {
        setup_many_on(ctx, &ctx.eps, plans, lat, failures).await
    }

    /// `setup_many` with plan i connecting to `eps[index % eps.len()]`.
    pub(crate) async fn setup_many_on(
        ctx: &Ctx,
        eps: &[Endpoint],
        plans: Vec<Plan>,
        lat: &SharedLat,
        failures: &Arc<Tally>,
    ) -> Vec<Option<Client>> {
        let total = plans.len();
        let mut plans = plans.into_iter();
        let done = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let reporter = {
            let done = done.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    eprintln!(
                        "[loadgen]   ... {}/{total} set up after {:.0} s",
                        done.load(Relaxed),
                        started.elapsed().as_secs_f64()
                    );
                }
            })
        };
        let out = bounded(total, ctx.concurrency, |_| {
            let plan = plans.next().expect("one plan per index");
            let ep = eps[plan.index % eps.len()].clone();
            let lat = lat.clone();
            let failures = failures.clone();
            let done = done.clone();
            async move {
                let t0 = Instant::now();
                let r = setup_client(ep, plan).await;
                done.fetch_add(1, Relaxed);
                match r {
                    Ok(c) => {
                        lat.lock().unwrap().record(t0.elapsed());
                        Some(c)
                    }
                    Err((stage, e)) => {
                        if failures.total() < 3 {
                            eprintln!("[loadgen] setup failed at {stage}: {e}");
                        }
                        failures.add(format!("{stage}:{}", e.code()));
                        None
                    }
                }
            }
        })
        .await;
        reporter.abort();
        out
    }
}

// ---------------------------------------------------------------------------
// Scenarios.
// ---------------------------------------------------------------------------
mod scenarios {
    use super::common::*;
    use super::*;
    use tokio::task::JoinSet;

    // ----------------------------------------------------------------- idle
    pub(crate) struct IdleArgs {
        pub n: usize,
        pub guests: f64,
        pub shard: (usize, usize),
        pub room_size: usize,
        pub room_capacity: Option<u64>,
        pub settle: Duration,
        pub hold: Option<Duration>,
        pub baseline_rss_kb: Option<u64>,
    }

    pub(crate) async fn idle(ctx: &Ctx, a: IdleArgs) -> Result<bool, String> {
        let (k, m) = a.shard;
        let mine: Vec<usize> = (0..a.n).filter(|i| i % m == k - 1).collect();
        let is_guest = |i: usize| ((i + 1) as f64 * a.guests).floor() > (i as f64 * a.guests).floor();
        let n_rooms = mine.len().div_ceil(a.room_size.max(1)).max(1);
        procfs::check_fd_budget(mine.len() + ctx.creator_bots(n_rooms))?;
        let guests = mine.iter().filter(|&&i| is_guest(i)).count();
        let (soft, hard) = procfs::open_files_limit();
        let lim = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or("unlimited".into());
        ctx.progress(format!(
            "idle: {} connections ({guests} guests) into {n_rooms} rooms, shard {k}/{m}; \
             open-files limit {} (hard {})",
            mine.len(),
            lim(soft),
            lim(hard)
        ));
        let mut creators = Creators::new(ctx);
        let mut extra = json!({"guestAccess": true});
        if let Some(c) = a.room_capacity {
            extra["maxParticipants"] = json!(c as usize + ctx.creator_seats);
        }
        let rooms = creators.create_many(ctx, n_rooms, &format!("idle{k}"), extra).await?;

        let mut plans = Vec::with_capacity(mine.len());
        for (j, &i) in mine.iter().enumerate() {
            let guest = is_guest(i);
            let token = if guest { None } else { Some(ctx.token("u", i, "user")?) };
            let guest_name = guest.then(|| format!("Guest {i}"));
            plans.push(Plan {
                index: i,
                token,
                handler: None,
                join: Some((rooms[j % n_rooms].clone(), Via::Code, guest_name)),
                subscribe: true,
            });
        }
        let lat = shared_lat();
        let failures = Arc::new(Tally::default());
        let before = ctx.snap();
        let clients = setup_many(ctx, plans, &lat, &failures).await;
        let after_setup = ctx.snap();
        let ok = clients.iter().flatten().count();
        ctx.progress(format!("{ok} connections settled; waiting {:?}", a.settle));
        tokio::time::sleep(a.settle).await;
        let settled = ctx.snap();
        let alive = clients.iter().flatten().filter(|c| c.is_alive()).count();

        let setup = Usage::between(&before, &after_setup);
        let lat = take(&lat);
        let base_kb = a.baseline_rss_kb.or(setup.rss_before_kb);
        let now_kb = settled.server.map(|s| s.rss_kb);
        let divisor = if a.baseline_rss_kb.is_some() { a.n } else { ok };
        let delta_kb = match (base_kb, now_kb) {
            (Some(b), Some(n)) => Some(n as i64 - b as i64),
            _ => None,
        };
        let per_conn = delta_kb.map(|d| d as f64 * 1024.0 / divisor.max(1) as f64);

        ctx.say(format!(
            "== idle: {} connections ({guests} guests) in {n_rooms} rooms, shard {k}/{m} ==",
            mine.len()
        ));
        ctx.say(format!(
            "setup       {ok} ok, {} failed in {:.2} s = {} setups/s wall, {} setups per server CPU-s",
            mine.len() - ok,
            setup.wall,
            fmt_rate(ok as f64 / setup.wall.max(1e-9)),
            opt_rate(setup.per_cpu(ok as f64)),
        ));
        ctx.say(format!("            {}", setup.text()));
        ctx.say(format!("latency     connect+login+join+subscribe {}", lat.text()));
        match (base_kb, now_kb, delta_kb, per_conn) {
            (Some(b), Some(n), Some(d), Some(p)) => ctx.say(format!(
                "server RSS  {} {:.1} MiB -> {:.1} MiB after {:.0} s settle: delta {:+.1} MiB = {:.0} bytes/connection (over {divisor}{})",
                if a.baseline_rss_kb.is_some() { "baseline" } else { "before" },
                mib(b),
                mib(n),
                a.settle.as_secs_f64(),
                d as f64 / 1024.0,
                p,
                if a.baseline_rss_kb.is_some() { " = N of all shards, assumed all up" } else { "" }
            )),
            _ => ctx.say("server RSS  n/a (server pid unknown)"),
        }
        ctx.say(format!("alive       {alive}/{ok} connections still open after settling"));
        ctx.say(format!("failures    {}", failures.text()));
        let mut hold_rss = None;
        if let Some(h) = a.hold {
            ctx.progress(format!("holding connections for {h:?}"));
            tokio::time::sleep(h).await;
            hold_rss = ctx.snap().server.map(|s| s.rss_kb);
            let still = clients.iter().flatten().filter(|c| c.is_alive()).count();
            ctx.say(format!(
                "after hold  server RSS {} MiB, {still}/{ok} connections open",
                hold_rss.map(|v| format!("{:.1}", mib(v))).unwrap_or("n/a".into())
            ));
        }
        let health = ctx.say_health();
        if ctx.json {
            println!(
                "{}",
                json!({
                    "scenario": "idle",
                    "connections": mine.len(),
                    "total_n": a.n,
                    "shard": format!("{k}/{m}"),
                    "guests": guests,
                    "rooms": n_rooms,
                    "ok": ok,
                    "failed": mine.len() - ok,
                    "alive_after_settle": alive,
                    "setups_per_s": ok as f64 / setup.wall.max(1e-9),
                    "setups_per_server_cpu_s": setup.per_cpu(ok as f64),
                    "setup": setup.json(),
                    "setup_latency": lat.json(),
                    "rss_base_kb": base_kb,
                    "rss_settled_kb": now_kb,
                    "rss_delta_kb": delta_kb,
                    "rss_per_conn_bytes": per_conn,
                    "rss_after_hold_kb": hold_rss,
                    "failures": failures.json(),
                    "health": health,
                })
            );
        }
        drop(creators);
        Ok(ok == mine.len() && alive == ok)
    }

    // ----------------------------------------------------------------- join
    pub(crate) struct JoinArgs {
        pub clients: usize,
        pub rooms: usize,
        pub capacity: usize,
        pub rate: Option<f64>,
    }

    pub(crate) async fn join(ctx: &Ctx, a: JoinArgs) -> Result<bool, String> {
        if a.rooms == 0 {
            return Err("R must be at least 1".into());
        }
        procfs::check_fd_budget(a.clients + ctx.creator_bots(a.rooms))?;
        ctx.progress(format!("join: {} clients, {} rooms of capacity {}", a.clients, a.rooms, a.capacity));
        let mut creators = Creators::new(ctx);
        let extra = ctx.capacity_extra(a.capacity);
        let rooms = creators.create_many(ctx, a.rooms, "join", extra).await?;

        // Phase 1: connect + login.
        let mut plans = Vec::with_capacity(a.clients);
        for i in 0..a.clients {
            plans.push(Plan {
                index: i,
                token: Some(ctx.token("u", i, "user")?),
                handler: None,
                join: None,
                subscribe: false,
            });
        }
        let conn_lat = shared_lat();
        let conn_fail = Arc::new(Tally::default());
        let s0 = ctx.snap();
        let clients: Vec<Client> =
            setup_many(ctx, plans, &conn_lat, &conn_fail).await.into_iter().flatten().collect();
        let s1 = ctx.snap();
        let conn = Usage::between(&s0, &s1);
        let conn_lat = take(&conn_lat);

        // Phase 2: joins, client k -> room k % R; even k by code, odd k by rid.
        let c = clients.len();
        let per_room_target: Vec<usize> =
            (0..a.rooms).map(|j| (0..c).filter(|k| k % a.rooms == j).count()).collect();
        let accepted: Arc<Vec<AtomicU64>> = Arc::new((0..a.rooms).map(|_| AtomicU64::new(0)).collect());
        let full = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(Tally::default());
        let lat_all = shared_lat();
        let lat_code = shared_lat();
        let lat_rid = shared_lat();
        ctx.progress(format!(
            "{c} clients connected; joining{}",
            a.rate.map(|r| format!(" at {r}/s")).unwrap_or_default()
        ));
        let s2 = ctx.snap();
        let t0 = tokio::time::Instant::now();
        let mut set = JoinSet::new();
        for (k, client) in clients.iter().enumerate() {
            let start_at = a.rate.map(|r| t0 + Duration::from_secs_f64(k as f64 / r));
            let room_ix = k % a.rooms;
            let room = rooms[room_ix].clone();
            let via = if k % 2 == 0 { Via::Code } else { Via::Rid };
            let client = client.clone();
            let (accepted, full, errors) = (accepted.clone(), full.clone(), errors.clone());
            let lat_all = lat_all.clone();
            let lat_via = if k % 2 == 0 { lat_code.clone() } else { lat_rid.clone() };
            set.spawn(async move {
                if let Some(at) = start_at {
                    tokio::time::sleep_until(at).await;
                }
                let t = Instant::now();
                let r = join_room(&client, &room, via, None).await;
                let d = t.elapsed();
                lat_all.lock().unwrap().record(d);
                lat_via.lock().unwrap().record(d);
                match r {
                    Ok(_) => {
                        accepted[room_ix].fetch_add(1, Relaxed);
                    }
                    Err(e) if e.is("error-room-full") => {
                        full.fetch_add(1, Relaxed);
                    }
                    Err(e) => errors.add(format!("{via:?}:{}", e.code())),
                }
            });
        }
        while set.join_next().await.is_some() {}
        let s3 = ctx.snap();
        let joins = Usage::between(&s2, &s3);

        let acc_total: u64 = accepted.iter().map(|a| a.load(Relaxed)).sum();
        let expected = a.clients.min(a.rooms * a.capacity) as u64;
        let bad_rooms: Vec<String> = accepted
            .iter()
            .enumerate()
            .filter_map(|(j, got)| {
                let got = got.load(Relaxed);
                let want = per_room_target[j].min(a.capacity) as u64;
                (got != want).then(|| format!("room {j}: {got} != {want}"))
            })
            .collect();
        let full = full.load(Relaxed);
        let lat_all = take(&lat_all);
        let verified = acc_total == expected && bad_rooms.is_empty();

        ctx.say(format!(
            "== join: {} clients -> {} rooms x capacity {}{} ==",
            a.clients,
            a.rooms,
            a.capacity,
            a.rate.map(|r| format!(", joins paced at {r}/s")).unwrap_or_default()
        ));
        ctx.say(format!(
            "connect     {c} ok, {} failed in {:.2} s = {} setups/s wall, {} setups per server CPU-s",
            a.clients - c,
            conn.wall,
            fmt_rate(c as f64 / conn.wall.max(1e-9)),
            opt_rate(conn.per_cpu(c as f64))
        ));
        ctx.say(format!("            {}", conn.text()));
        ctx.say(format!("            connect+login latency {}", conn_lat.text()));
        if conn_fail.total() > 0 {
            ctx.say(format!("            connect failures: {}", conn_fail.text()));
        }
        ctx.say(format!(
            "joins       {c} attempts in {:.2} s = {} joins/s wall, {} joins per server CPU-s",
            joins.wall,
            fmt_rate(c as f64 / joins.wall.max(1e-9)),
            opt_rate(joins.per_cpu(c as f64))
        ));
        ctx.say(format!("            {}", joins.text()));
        ctx.say(format!("latency     all       {}", lat_all.text()));
        let (lat_code, lat_rid) = (take(&lat_code), take(&lat_rid));
        ctx.say(format!("            join-room {}", lat_code.text()));
        ctx.say(format!("            joinRoom  {}", lat_rid.text()));
        ctx.say(format!(
            "outcome     accepted {acc_total}, rejected (error-room-full) {full}, other errors: {}",
            errors.text()
        ));
        ctx.say(format!(
            "verify      accepted {acc_total} vs expected min(C, R*K) = {expected}: {}{}",
            if verified { "OK" } else { "MISMATCH" },
            if bad_rooms.is_empty() {
                String::new()
            } else {
                format!(
                    " (per-room: {}{})",
                    bad_rooms.iter().take(5).cloned().collect::<Vec<_>>().join("; "),
                    if bad_rooms.len() > 5 { "; ..." } else { "" }
                )
            }
        ));
        let health = ctx.say_health();
        if ctx.json {
            println!(
                "{}",
                json!({
                    "scenario": "join",
                    "clients": a.clients,
                    "rooms": a.rooms,
                    "capacity": a.capacity,
                    "rate": a.rate,
                    "connected": c,
                    "connect": conn.json(),
                    "connect_per_s": c as f64 / conn.wall.max(1e-9),
                    "connect_per_server_cpu_s": conn.per_cpu(c as f64),
                    "connect_latency": conn_lat.json(),
                    "connect_failures": conn_fail.json(),
                    "joins": joins.json(),
                    "joins_per_s": c as f64 / joins.wall.max(1e-9),
                    "joins_per_server_cpu_s": joins.per_cpu(c as f64),
                    "join_latency": lat_all.json(),
                    "join_room_latency": lat_code.json(),
                    "joinroom_latency": lat_rid.json(),
                    "accepted": acc_total,
                    "rejected_full": full,
                    "other_errors": errors.json(),
                    "expected": expected,
                    "verified": verified,
                    "health": health,
                })
            );
        }
        Ok(verified && c == a.clients)
    }

    // ----------------------------------------------------------------- race
    pub(crate) struct RaceArgs {
        pub clients: usize,
        pub seats: usize,
        pub iterations: usize,
        pub pause: Duration,
    }

    pub(crate) async fn race(ctx: &Ctx, a: RaceArgs) -> Result<bool, String> {
        procfs::check_fd_budget(a.clients + ctx.creator_bots(a.iterations))?;
        let mut creators = Creators::new(ctx);
        let rooms = creators.create_many(ctx, a.iterations, "race", ctx.capacity_extra(a.seats)).await?;
        let mut plans = Vec::with_capacity(a.clients);
        for i in 0..a.clients {
            plans.push(Plan {
                index: i,
                token: Some(ctx.token("u", i, "user")?),
                handler: None,
                join: None,
                subscribe: false,
            });
        }
        let lat_conn = shared_lat();
        let fail = Arc::new(Tally::default());
        let clients: Vec<Client> =
            setup_many(ctx, plans, &lat_conn, &fail).await.into_iter().flatten().collect();
        if clients.len() != a.clients {
            return Err(format!("only {}/{} clients connected ({})", clients.len(), a.clients, fail.text()));
        }
        let lat = shared_lat();
        let errors = Tally::default();
        let leave_errors = Tally::default();
        let (mut over, mut under) = (0usize, 0usize);
        let (mut min_acc, mut max_acc) = (usize::MAX, 0usize);
        let mut rate_limited_total = 0usize;
        ctx.progress(format!(
            "race: {} clients x {} iterations for {} seats",
            a.clients, a.iterations, a.seats
        ));
        let s0 = ctx.snap();
        for (it, room) in rooms.iter().enumerate() {
            if it > 0 {
                tokio::time::sleep(a.pause).await;
            }
            let prepared: Vec<(String, ddp::Pending)> =
                clients.iter().map(|c| c.prepare("join-room", json!([{ "code": room.code }]))).collect();
            let t0 = Instant::now();
            let mut pendings = Vec::with_capacity(prepared.len());
            for (c, (frame, p)) in clients.iter().zip(prepared) {
                c.send_prepared(frame, &p);
                pendings.push(p);
            }
            let results = futures_util::future::join_all(pendings.into_iter().map(|p| async move {
                let r = p.wait().await;
                (r, t0.elapsed())
            }))
            .await;
            let mut winners = Vec::new();
            let mut limited = 0;
            {
                let mut l = lat.lock().unwrap();
                for (ix, (r, d)) in results.iter().enumerate() {
                    l.record(*d);
                    match r {
                        Ok(_) => winners.push(ix),
                        Err(e) => {
                            limited += usize::from(e.is("too-many-requests"));
                            errors.add(e.code());
                        }
                    }
                }
            }
            rate_limited_total += limited;
            // Rate-limited attempts never reached the room: they do not compete.
            let expected = a.seats.min(a.clients - limited);
            let acc = winners.len();
            min_acc = min_acc.min(acc);
            max_acc = max_acc.max(acc);
            if acc > a.seats {
                over += 1;
                ctx.say(format!(
                    "iteration {it}: OVER-ADMISSION: {acc} accepted for {} seats (room {})",
                    a.seats, room.rid
                ));
            } else if acc < expected {
                under += 1;
                ctx.say(format!(
                    "iteration {it}: UNDER-ADMISSION: {acc} accepted, expected {expected} (room {}, {limited} rate-limited)",
                    room.rid
                ));
            }
            // Leave again so the next iteration starts from a clean slate.
            let leaves = winners.iter().map(|&ix| clients[ix].call("leaveRoom", json!([room.rid])));
            for r in futures_util::future::join_all(leaves).await {
                if let Err(e) = r {
                    leave_errors.add(e.code());
                }
            }
        }
        let usage = Usage::between(&s0, &ctx.snap());
        let lat = take(&lat);
        let ok = over == 0 && under == 0;
        ctx.say(format!(
            "== race: {} clients, {} seats, {} iterations, {:?} apart ==",
            a.clients, a.seats, a.iterations, a.pause
        ));
        ctx.say(format!(
            "admission   accepted per iteration min {min_acc} max {max_acc} (seats {}); over-admission {over}, under-admission {under}: {}",
            a.seats,
            if ok { "OK" } else { "FAILED" }
        ));
        if rate_limited_total > 0 {
            ctx.say(format!(
                "note        {rate_limited_total} join attempts were rate-limited (too-many-requests) and not \
                 counted as competitors; raise --pause or run roomd with --no-rate-limits"
            ));
        }
        ctx.say(format!("rejections  {}", errors.text()));
        ctx.say(format!("leaveRoom   errors: {}", leave_errors.text()));
        ctx.say(format!("latency     join-room under contention {}", lat.text()));
        ctx.say(format!("            {}", usage.text()));
        let health = ctx.say_health();
        if ctx.json {
            println!(
                "{}",
                json!({
                    "scenario": "race",
                    "clients": a.clients,
                    "seats": a.seats,
                    "iterations": a.iterations,
                    "min_accepted": min_acc,
                    "max_accepted": max_acc,
                    "over_admissions": over,
                    "under_admissions": under,
                    "rate_limited": rate_limited_total,
                    "rejections": errors.json(),
                    "leave_errors": leave_errors.json(),
                    "join_latency": lat.json(),
                    "usage": usage.json(),
                    "ok": ok,
                    "health": health,
                })
            );
        }
        Ok(ok)
    }

    // ----------------------------------------------------------------- fanout
    pub(crate) struct FanoutArgs {
        pub rooms: usize,
        pub members: usize,
        pub rate: f64,
        pub duration: Duration,
        pub ramp: bool,
        pub ramp_factor: f64,
        pub step: Duration,
        pub p99_limit: Duration,
        pub max_rate: Option<f64>,
        pub max_steps: usize,
        pub drain: Duration,
        pub senders_per_room: usize,
    }

    #[derive(Default)]
    struct StepStats {
        delivered: AtomicU64,
        last_delivery_us: AtomicU64,
        e2e: Mutex<Lat>,
        send_lat: Mutex<Lat>,
        send_ok: AtomicU64,
        rate_limited: AtomicU64,
        send_err: AtomicU64,
    }

    struct FanoutShared {
        /// `lg:<run>:` — prefix of every message text; then `<step>:<unix µs>`.
        tag: String,
        steps: Vec<StepStats>,
        system: AtomicU64,
        foreign: AtomicU64,
        errors: Tally,
    }

    struct StepResult {
        rate: f64,
        sent: u64,
        ok: u64,
        rate_limited: u64,
        send_err: u64,
        expected: u64,
        delivered: u64,
        active_wall: f64,
        disconnects: u64,
        usage: Usage,
        e2e: Lat,
        send_lat: Lat,
    }

    impl StepResult {
        fn delivered_ratio(&self) -> f64 {
            if self.expected == 0 { 0.0 } else { self.delivered as f64 / self.expected as f64 }
        }
        fn deliveries_per_s(&self) -> f64 {
            self.delivered as f64 / self.active_wall.max(1e-9)
        }
        fn json(&self) -> Value {
            json!({
                "rate": self.rate,
                "sent": self.sent,
                "send_ok": self.ok,
                "rate_limited": self.rate_limited,
                "send_errors": self.send_err,
                "expected_deliveries": self.expected,
                "delivered": self.delivered,
                "deliveries_per_s": self.deliveries_per_s(),
                "deliveries_per_server_cpu_s": self.usage.per_cpu(self.delivered as f64),
                "unexpected_disconnects": self.disconnects,
                "e2e": self.e2e.json(),
                "send_latency": self.send_lat.json(),
                "usage": self.usage.json(),
            })
        }
    }

    impl FanoutShared {
        /// Records a delivery of `<step>:<unix µs>…` (the text after the tag).
        /// Returns false if it does not parse.
        fn record(&self, after_tag: &str) -> bool {
            let digits = |s: &str| s.bytes().take_while(u8::is_ascii_digit).count();
            let n = digits(after_tag);
            let Ok(step) = after_tag[..n].parse::<usize>() else { return false };
            let Some(rest) = after_tag[n..].strip_prefix(':') else { return false };
            let Ok(ts) = rest[..digits(rest)].parse::<u64>() else { return false };
            let now = unix_micros();
            if let Some(st) = self.steps.get(step) {
                st.delivered.fetch_add(1, Relaxed);
                st.last_delivery_us.fetch_max(now, Relaxed);
                st.e2e.lock().unwrap().record_us(now.saturating_sub(ts));
            }
            true
        }
    }

    impl ddp::Listener for FanoutShared {
        /// Fast path: a `changed` frame of stream-room-messages carrying our tag is
        /// one of our messages (system messages never carry it); no JSON parse.
        fn raw(&self, frame: &str) -> bool {
            if !frame.contains("\"stream-room-messages\"") || !frame.contains("\"changed\"") {
                return false;
            }
            match frame.find(self.tag.as_str()) {
                Some(pos) => self.record(&frame[pos + self.tag.len()..]),
                None => false,
            }
        }

        fn event(&self, coll: &str, fields: &Value) {
            if coll != "stream-room-messages" {
                return;
            }
            let Some(msg) = fields.get("args").and_then(|a| a.get(0)) else { return };
            if msg.get("t").is_some_and(|t| !t.is_null()) {
                self.system.fetch_add(1, Relaxed);
                return;
            }
            let text = msg.get("msg").and_then(Value::as_str).unwrap_or("");
            match text.strip_prefix(self.tag.as_str()) {
                Some(rest) if self.record(rest) => {}
                _ => {
                    self.foreign.fetch_add(1, Relaxed);
                }
            }
        }
    }

    /// One measured sending period of the fanout scenario.
    struct StepPlan {
        step: usize,
        rate: f64,
        dur: Duration,
        drain: Duration,
    }

    async fn fanout_step(
        ctx: &Ctx,
        fs: &Arc<FanoutShared>,
        senders: &[(Client, Room)],
        members: usize,
        plan: StepPlan,
    ) -> StepResult {
        let StepPlan { step, rate, dur, drain } = plan;
        let st = &fs.steps[step];
        let outstanding = Arc::new(AtomicI64::new(0));
        let disconnects_before = ddp::DISCONNECTS.load(Relaxed);
        let before = ctx.snap();
        let start = Instant::now();
        let start_us = unix_micros();
        let deadline = start + dur;
        let mut sent: u64 = 0;
        loop {
            let el = start.elapsed();
            if el >= dur {
                break;
            }
            // Message k is due at k / rate.
            let due = (el.as_secs_f64() * rate) as u64 + 1;
            while sent < due {
                let (client, room) = &senders[(sent % senders.len() as u64) as usize];
                let t = Instant::now();
                let text = format!("{}{step}:{}", fs.tag, unix_micros());
                let pending = client.start("sendMessage", json!([{ "rid": room.rid, "msg": text }]));
                outstanding.fetch_add(1, Relaxed);
                let (fs2, out2) = (fs.clone(), outstanding.clone());
                tokio::spawn(async move {
                    let r = pending.wait().await;
                    let st = &fs2.steps[step];
                    match r {
                        Ok(_) => {
                            st.send_lat.lock().unwrap().record(t.elapsed());
                            st.send_ok.fetch_add(1, Relaxed);
                        }
                        Err(e) if e.is("too-many-requests") => {
                            st.rate_limited.fetch_add(1, Relaxed);
                        }
                        Err(e) => {
                            st.send_err.fetch_add(1, Relaxed);
                            fs2.errors.add(format!("sendMessage:{}", e.code()));
                        }
                    }
                    out2.fetch_sub(1, Relaxed);
                });
                sent += 1;
            }
            let next = start + Duration::from_secs_f64(sent as f64 / rate);
            tokio::time::sleep_until(next.min(deadline).into()).await;
        }
        // Drain: wait for replies and deliveries (or give up after `drain`).
        let drain_end = Instant::now() + drain;
        loop {
            let expected = st.send_ok.load(Relaxed) * members as u64;
            let settled = outstanding.load(Relaxed) == 0 && st.delivered.load(Relaxed) >= expected;
            if settled || Instant::now() >= drain_end {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let after = ctx.snap();
        let last = st.last_delivery_us.load(Relaxed);
        let active = (last.saturating_sub(start_us) as f64 / 1e6).max(dur.as_secs_f64());
        let ok = st.send_ok.load(Relaxed);
        StepResult {
            rate,
            sent,
            ok,
            rate_limited: st.rate_limited.load(Relaxed),
            send_err: st.send_err.load(Relaxed),
            expected: ok * members as u64,
            delivered: st.delivered.load(Relaxed),
            active_wall: active,
            disconnects: ddp::DISCONNECTS.load(Relaxed) - disconnects_before,
            usage: Usage::between(&before, &after),
            e2e: st.e2e.lock().unwrap().clone(),
            send_lat: st.send_lat.lock().unwrap().clone(),
        }
    }

    pub(crate) async fn fanout(ctx: &Ctx, a: FanoutArgs) -> Result<bool, String> {
        if a.rooms == 0 || a.members == 0 || a.rate <= 0.0 {
            return Err("R, M and RATE must be positive".into());
        }
        let n_members = a.rooms * a.members;
        let n_senders = a.rooms * a.senders_per_room.max(1);
        procfs::check_fd_budget(n_members + n_senders + ctx.creator_bots(a.rooms))?;
        let steps_cap = if a.ramp { a.max_steps.max(1) } else { 1 };
        let fs = Arc::new(FanoutShared {
            tag: format!("lg:{}:", ctx.run),
            steps: (0..steps_cap).map(|_| StepStats::default()).collect(),
            system: AtomicU64::new(0),
            foreign: AtomicU64::new(0),
            errors: Tally::default(),
        });
        ctx.progress(format!("fanout: {} rooms x {} members, setting up", a.rooms, a.members));
        let mut creators = Creators::new(ctx);
        // Room for the members plus the sender bots.
        let extra = ctx.capacity_extra(a.members + a.senders_per_room.max(1));
        let rooms = creators.create_many(ctx, a.rooms, "fanout", extra).await?;

        let mut plans = Vec::with_capacity(n_members + n_senders);
        for i in 0..n_members {
            plans.push(Plan {
                index: i,
                token: Some(ctx.token("u", i, "user")?),
                handler: Some(fs.clone()),
                join: Some((rooms[i / a.members].clone(), Via::Code, None)),
                subscribe: true,
            });
        }
        // Sender k sits in room k % R, so message k (sent by sender k % (R*S)) goes
        // to room k % R: round-robin over rooms, and over a room's senders.
        let mut sender_plans = Vec::with_capacity(n_senders);
        for k in 0..n_senders {
            sender_plans.push(Plan {
                index: n_members + k,
                token: Some(ctx.token("bot", k, "bot")?),
                handler: None,
                join: Some((rooms[k % a.rooms].clone(), Via::Code, None)),
                subscribe: false,
            });
        }
        let lat = shared_lat();
        let fail = Arc::new(Tally::default());
        let s0 = ctx.snap();
        let mut clients = setup_many(ctx, plans, &lat, &fail).await;
        clients.extend(setup_many_on(ctx, &ctx.sender_eps, sender_plans, &lat, &fail).await);
        let setup = Usage::between(&s0, &ctx.snap());
        let ok = clients.iter().flatten().count();
        if ok != clients.len() {
            return Err(format!(
                "setup failed for {} of {} connections: {}",
                clients.len() - ok,
                clients.len(),
                fail.text()
            ));
        }
        let clients: Vec<Client> = clients.into_iter().flatten().collect();
        let senders: Vec<(Client, Room)> =
            clients[n_members..].iter().cloned().zip(rooms.iter().cloned().cycle()).collect();
        let rss_setup = setup.rss_after_kb;

        ctx.say(format!(
            "== fanout: {} rooms x {} members, {} ==",
            a.rooms,
            a.members,
            if a.ramp {
                format!("ramp from {} msgs/s x{} every {:?}", a.rate, a.ramp_factor, a.step)
            } else {
                format!("{} msgs/s for {:?}", a.rate, a.duration)
            }
        ));
        ctx.say(format!(
            "setup       {ok} connections (members joined+subscribed, {n_senders} sender bots joined) in {:.2} s; latency {}",
            setup.wall,
            take(&lat).text()
        ));
        ctx.say(format!("            {}", setup.text()));

        let mut results = Vec::new();
        let mut best: Option<f64> = None;
        let mut stop_reason = String::new();
        let mut rate = a.rate;
        for step in 0..steps_cap {
            let dur = if a.ramp { a.step } else { a.duration };
            ctx.progress(format!("step {step}: {rate:.0} msgs/s for {dur:?}"));
            let plan = StepPlan { step, rate, dur, drain: a.drain };
            let r = fanout_step(ctx, &fs, &senders, a.members, plan).await;
            let p99_ok = r.e2e.q_ms(0.99) <= a.p99_limit.as_secs_f64() * 1e3;
            let keeping_up = r.delivered_ratio() >= 0.95;
            let limited = r.rate_limited as f64 > 0.01 * r.sent as f64;
            let mut flags = String::new();
            if r.rate_limited > 0 {
                flags += &format!(" rate-limited {}", r.rate_limited);
            }
            if r.disconnects > 0 {
                flags += &format!(" DISCONNECTS {}", r.disconnects);
            }
            let errors = r.send_err as f64 > 0.01 * r.sent as f64;
            if a.ramp {
                ctx.say(format!(
                    "step {step:<3} rate {:>8.0}/s sent {:>7} delivered {:>9} ({:>5.1}%) {:>9} deliv/s {:>9} deliv/CPU-s  e2e p50 {:.3} p99 {:.3} max {:.3} ms  send p99 {:.3} ms  CPU server {} loadgen {}{}",
                    r.rate,
                    r.sent,
                    r.delivered,
                    100.0 * r.delivered_ratio(),
                    fmt_rate(r.deliveries_per_s()),
                    opt_rate(r.usage.per_cpu(r.delivered as f64)),
                    r.e2e.q_ms(0.5),
                    r.e2e.q_ms(0.99),
                    r.e2e.max_ms(),
                    r.send_lat.q_ms(0.99),
                    pct(r.usage.server_cpu, r.usage.wall),
                    pct(r.usage.self_cpu, r.usage.wall),
                    flags
                ));
            }
            let dropped = r.disconnects > 0;
            let passed = p99_ok && keeping_up && !limited && !errors && !dropped;
            results.push(r);
            if !a.ramp {
                break;
            }
            if passed {
                best = Some(rate);
            } else {
                stop_reason = if dropped {
                    "server disconnected subscribers (slow consumers?)".into()
                } else if limited {
                    "server rate-limited sendMessage (too-many-requests)".into()
                } else if errors {
                    "sendMessage errors".into()
                } else if !keeping_up {
                    "deliveries fell behind (< 95% of expected)".into()
                } else {
                    format!("p99 e2e above {:?}", a.p99_limit)
                };
                break;
            }
            rate *= a.ramp_factor;
            if a.max_rate.is_some_and(|m| rate > m) {
                stop_reason = "reached --max-rate".into();
                break;
            }
            if step + 1 == steps_cap {
                stop_reason = "reached --max-steps".into();
            }
        }

        if !a.ramp {
            let r = &results[0];
            ctx.say(format!(
                "sent        {} messages ({} ok, {} rate-limited, {} other errors) at {} msgs/s target",
                r.sent, r.ok, r.rate_limited, r.send_err, a.rate
            ));
            ctx.say(format!(
                "delivered   {} of {} expected ({:.2}%) = {} deliveries/s, {} deliveries per server CPU-s",
                r.delivered,
                r.expected,
                100.0 * r.delivered_ratio(),
                fmt_rate(r.deliveries_per_s()),
                opt_rate(r.usage.per_cpu(r.delivered as f64))
            ));
            ctx.say(format!("            {}", r.usage.text()));
            ctx.say(format!("e2e         {}", r.e2e.text()));
            if r.rate_limited > 0 {
                let per_sender = a.rate / (a.rooms * a.senders_per_room.max(1)) as f64;
                ctx.say(format!(
                    "note        {} sendMessage calls were rate-limited (too-many-requests) at {per_sender:.1} \
                     msgs/s per sender connection; add --senders-per-room or run roomd with --no-rate-limits",
                    r.rate_limited
                ));
            }
            ctx.say(format!("sendMessage {}", r.send_lat.text()));
        } else {
            ctx.say(format!(
                "ramp        highest sustainable rate: {} msgs/s (stopped: {stop_reason})",
                best.map(|b| format!("{b:.0}")).unwrap_or("none".into())
            ));
        }
        let rss_end = ctx.snap().server.map(|s| s.rss_kb);
        if let (Some(b), Some(e)) = (rss_setup, rss_end) {
            ctx.say(format!("server RSS  {:.1} MiB after setup -> {:.1} MiB at end", mib(b), mib(e)));
        }
        ctx.say(format!(
            "other       system messages seen {}, foreign messages {}, errors: {}",
            fs.system.load(Relaxed),
            fs.foreign.load(Relaxed),
            fs.errors.text()
        ));
        let health = ctx.say_health();
        if ctx.json {
            println!(
                "{}",
                json!({
                    "scenario": "fanout",
                    "rooms": a.rooms,
                    "members": a.members,
                    "ramp": a.ramp,
                    "setup": setup.json(),
                    "steps": results.iter().map(StepResult::json).collect::<Vec<_>>(),
                    "best_rate": best,
                    "stop_reason": stop_reason,
                    "errors": fs.errors.json(),
                    "health": health,
                })
            );
        }
        let ok = if a.ramp {
            true
        } else {
            let r = &results[0];
            r.send_err == 0 && r.delivered >= r.expected
        };
        Ok(ok)
    }

    // ----------------------------------------------------------------- chat
    pub(crate) struct ChatArgs {
        pub clients: usize,
        pub duration: Duration,
        pub room_size: usize,
        pub think: Duration,
        pub sample: Duration,
    }

    #[derive(Clone, Copy)]
    enum Op {
        Join,
        Subscribe,
        Leave,
        Send,
        Typing,
        History,
    }
    const OPS: [(&str, Op); 6] = [
        ("join", Op::Join),
        ("subscribe", Op::Subscribe),
        ("leave", Op::Leave),
        ("send", Op::Send),
        ("typing", Op::Typing),
        ("history", Op::History),
    ];

    struct ChatShared {
        lats: Vec<Mutex<Lat>>,
        errors: Tally,
        ops: AtomicU64,
        deliveries: AtomicU64,
        system: AtomicU64,
    }

    impl ddp::Listener for ChatShared {
        fn event(&self, coll: &str, fields: &Value) {
            if coll != "stream-room-messages" {
                return;
            }
            let msg = fields.get("args").and_then(|a| a.get(0));
            if msg.and_then(|m| m.get("t")).is_some_and(|t| !t.is_null()) {
                self.system.fetch_add(1, Relaxed);
            } else {
                self.deliveries.fetch_add(1, Relaxed);
            }
        }
    }

    impl ChatShared {
        async fn timed(
            &self,
            op: Op,
            fut: impl Future<Output = Result<Value, DdpError>>,
        ) -> Result<Value, DdpError> {
            let t = Instant::now();
            let r = fut.await;
            self.ops.fetch_add(1, Relaxed);
            match &r {
                Ok(_) => self.lats[op as usize].lock().unwrap().record(t.elapsed()),
                Err(e) => self.errors.add(format!("{}:{}", OPS[op as usize].0, e.code())),
            }
            r
        }
    }

    async fn chat_client(
        i: usize,
        client: Client,
        username: String,
        rooms: Arc<Vec<Room>>,
        cs: Arc<ChatShared>,
        deadline: Instant,
        think: Duration,
    ) {
        let mut rng = Rng::new(unix_micros() ^ ((i as u64) << 20));
        let mut current: Option<(usize, Option<u64>)> = None;
        let mut n = 0u64;
        let pause = |rng: &mut Rng| think.mul_f64(0.5 + rng.unit());
        tokio::time::sleep(think.mul_f64(rng.unit())).await;
        while Instant::now() < deadline {
            match current {
                None => {
                    let ri = rng.below(rooms.len());
                    let via = if rng.below(2) == 0 { Via::Code } else { Via::Rid };
                    let joined = cs.timed(Op::Join, join_room(&client, &rooms[ri], via, None)).await;
                    if joined.is_ok() {
                        let sid = cs
                            .timed(Op::Subscribe, async {
                                subscribe_room(&client, &rooms[ri].rid).await.map(Value::from)
                            })
                            .await
                            .ok()
                            .and_then(|v| v.as_u64());
                        current = Some((ri, sid));
                    }
                }
                Some((ri, sid)) => {
                    let rid = rooms[ri].rid.as_str();
                    let roll = rng.below(100);
                    if roll < 50 {
                        n += 1;
                        let msg = json!([{ "rid": rid, "msg": format!("chat {username} #{n}") }]);
                        let _ = cs.timed(Op::Send, client.call("sendMessage", msg)).await;
                    } else if roll < 75 {
                        let params = json!([format!("{rid}/user-activity"), username, ["user-typing"], {}]);
                        let _ = cs.timed(Op::Typing, client.call("stream-notify-room", params)).await;
                    } else if roll < 87 {
                        let params = json!([rid, null, 50, null]);
                        let _ = cs.timed(Op::History, client.call("loadHistory", params)).await;
                    } else {
                        if let Some(sid) = sid {
                            client.unsubscribe(sid);
                        }
                        let _ = cs.timed(Op::Leave, client.call("leaveRoom", json!([rid]))).await;
                        current = None;
                    }
                }
            }
            let wake = (Instant::now() + pause(&mut rng)).min(deadline);
            tokio::time::sleep_until(wake.into()).await;
        }
        if let Some((ri, sid)) = current {
            if let Some(sid) = sid {
                client.unsubscribe(sid);
            }
            let _ = client.call("leaveRoom", json!([rooms[ri].rid])).await;
        }
    }

    /// One point of the chat series: t (s), server RSS (kB), server CPU % over the
    /// interval, ops/s, deliveries/s, connections alive.
    struct Sample(f64, Option<u64>, Option<f64>, f64, f64, usize);

    pub(crate) async fn chat(ctx: &Ctx, a: ChatArgs) -> Result<bool, String> {
        let n_rooms = a.clients.div_ceil(a.room_size.max(1)).max(1);
        procfs::check_fd_budget(a.clients + ctx.creator_bots(n_rooms))?;
        let mut creators = Creators::new(ctx);
        let rooms = Arc::new(creators.create_many(ctx, n_rooms, "chat", json!({})).await?);
        let cs = Arc::new(ChatShared {
            lats: OPS.iter().map(|_| Mutex::new(Lat::default())).collect(),
            errors: Tally::default(),
            ops: AtomicU64::new(0),
            deliveries: AtomicU64::new(0),
            system: AtomicU64::new(0),
        });
        let handler: Handler = cs.clone();
        let mut plans = Vec::with_capacity(a.clients);
        for i in 0..a.clients {
            plans.push(Plan {
                index: i,
                token: Some(ctx.token("u", i, "user")?),
                handler: Some(handler.clone()),
                join: None,
                subscribe: false,
            });
        }
        ctx.progress(format!("chat: connecting {} clients ({n_rooms} rooms)", a.clients));
        let s_before = ctx.snap();
        let lat = shared_lat();
        let fail = Arc::new(Tally::default());
        let clients = setup_many(ctx, plans, &lat, &fail).await;
        let connected = clients.iter().flatten().count();
        ctx.progress(format!("{connected} connected; running mixed workload for {:?}", a.duration));

        let start = Instant::now();
        let deadline = start + a.duration;
        let mut set = JoinSet::new();
        for (i, c) in clients.iter().enumerate() {
            if let Some(c) = c {
                set.spawn(chat_client(
                    i,
                    c.clone(),
                    ctx.username("u", i),
                    rooms.clone(),
                    cs.clone(),
                    deadline,
                    a.think,
                ));
            }
        }
        let mut series: Vec<Sample> = Vec::new();
        let mut prev = ctx.snap();
        let (mut prev_ops, mut prev_del) = (0u64, 0u64);
        let push = |series: &mut Vec<_>, prev: &mut Snap, prev_ops: &mut u64, prev_del: &mut u64| {
            let now = ctx.snap();
            let u = Usage::between(prev, &now);
            let ops = cs.ops.load(Relaxed);
            let del = cs.deliveries.load(Relaxed);
            let alive = clients.iter().flatten().filter(|c| c.is_alive()).count();
            let row = Sample(
                now.at.duration_since(start).as_secs_f64(),
                now.server.map(|s| s.rss_kb),
                u.server_cpu.map(|c| 100.0 * c / u.wall.max(1e-9)),
                (ops - *prev_ops) as f64 / u.wall.max(1e-9),
                (del - *prev_del) as f64 / u.wall.max(1e-9),
                alive,
            );
            eprintln!(
                "[loadgen]   t={:>5.0}s rss {} MiB cpu {}% ops/s {:.0} deliveries/s {:.0} alive {}",
                row.0,
                row.1.map(|v| format!("{:.1}", mib(v))).unwrap_or("n/a".into()),
                row.2.map(|v| format!("{v:.0}")).unwrap_or("n/a".into()),
                row.3,
                row.4,
                row.5
            );
            series.push(row);
            *prev = now;
            *prev_ops = ops;
            *prev_del = del;
        };
        push(&mut series, &mut prev, &mut prev_ops, &mut prev_del);
        loop {
            let next = (prev.at + a.sample).min(deadline);
            tokio::time::sleep_until(next.into()).await;
            push(&mut series, &mut prev, &mut prev_ops, &mut prev_del);
            if Instant::now() >= deadline {
                break;
            }
        }
        while set.join_next().await.is_some() {}
        let total = Usage::between(&s_before, &ctx.snap());

        ctx.say(format!(
            "== chat: {} clients, {n_rooms} rooms, {:?}, think {:?} ==",
            a.clients, a.duration, a.think
        ));
        ctx.say(format!(
            "setup       {connected} connected, failures: {}; connect+login {}",
            fail.text(),
            take(&lat).text()
        ));
        ctx.say("series      t(s)   RSS(MiB)  CPU%   ops/s  deliveries/s  alive");
        for r in &series {
            ctx.say(format!(
                "            {:>5.0}  {:>8}  {:>4}  {:>6.0}  {:>12.0}  {:>5}",
                r.0,
                r.1.map(|v| format!("{:.1}", mib(v))).unwrap_or("n/a".into()),
                r.2.map(|v| format!("{v:.0}")).unwrap_or("n/a".into()),
                r.3,
                r.4,
                r.5
            ));
        }
        let rss: Vec<u64> = series.iter().filter_map(|r| r.1).collect();
        let mut rss_json = Value::Null;
        if let (Some(first), Some(last)) = (rss.first(), rss.last()) {
            let (min, max) = (rss.iter().min().unwrap(), rss.iter().max().unwrap());
            let drift = *last as f64 - *first as f64;
            ctx.say(format!(
                "RSS         start {:.1} MiB, end {:.1} MiB, min {:.1}, max {:.1}; drift {:+.1} MiB ({:+.1}%)",
                mib(*first),
                mib(*last),
                mib(*min),
                mib(*max),
                drift / 1024.0,
                100.0 * drift / (*first as f64).max(1.0)
            ));
            rss_json = json!({"start_kb": first, "end_kb": last, "min_kb": min, "max_kb": max});
        }
        let ops_total = cs.ops.load(Relaxed);
        ctx.say(format!(
            "ops         {ops_total} in {:.1} s = {:.0} ops/s, {} ops per server CPU-s; deliveries {}, system messages {}",
            total.wall,
            ops_total as f64 / a.duration.as_secs_f64().max(1e-9),
            opt_rate(total.per_cpu(ops_total as f64)),
            cs.deliveries.load(Relaxed),
            cs.system.load(Relaxed)
        ));
        ctx.say(format!("            {}", total.text()));
        let mut lat_json = serde_json::Map::new();
        for (name, op) in OPS {
            let l = cs.lats[op as usize].lock().unwrap().clone();
            ctx.say(format!("  {name:<10} {}", l.text()));
            lat_json.insert(name.to_string(), l.json());
        }
        ctx.say(format!("errors      {}", cs.errors.text()));
        let health = ctx.say_health();
        if ctx.json {
            println!(
                "{}",
                json!({
                    "scenario": "chat",
                    "clients": a.clients,
                    "connected": connected,
                    "rooms": n_rooms,
                    "duration_s": a.duration.as_secs_f64(),
                    "ops": ops_total,
                    "ops_per_server_cpu_s": total.per_cpu(ops_total as f64),
                    "deliveries": cs.deliveries.load(Relaxed),
                    "latency": lat_json,
                    "errors": cs.errors.json(),
                    "rss": rss_json,
                    "series": series.iter().map(|r| json!({
                        "t_s": r.0, "rss_kb": r.1, "cpu_pct": r.2, "ops_per_s": r.3,
                        "deliveries_per_s": r.4, "alive": r.5,
                    })).collect::<Vec<_>>(),
                    "usage": total.json(),
                    "health": health,
                })
            );
        }
        drop(creators);
        Ok(connected == a.clients)
    }

    // ----------------------------------------------------------------- churn
    /// Which door the churn's sessions come through.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
    pub(crate) enum Door {
        /// DDP guests: connect, `join-room {code, guestName}`, no login.
        Ddp,
        /// DDP signed-in users (a pool of `--users`): connect + login, `join-room {code}`.
        Users,
        /// REST: `POST /api/v1/channels.join` (+ `channels.leave`) as pool users,
        /// one HTTP request per connection.
        Rest,
        /// Socket.IO guests: CONNECT without auth, `join-room {code, guestName}`,
        /// `leave-room`.
        Sio,
    }

    pub(crate) struct ChurnArgs {
        pub loops: usize,
        pub rooms: usize,
        pub rounds: usize,
        pub round: Duration,
        pub door: Door,
        pub users: usize,
        pub reference_round: usize,
        pub max_growth_mb: f64,
    }

    /// How a session ends: half leave and close cleanly, a third are cut (the
    /// socket drops without a close frame or a leave), the rest close cleanly
    /// without leaving (a guest's seat then waits out `--guest-grace`).
    #[derive(Clone, Copy)]
    enum Exit {
        Leave,
        Cut,
        Close,
    }
    const EXITS: [&str; 3] = ["leave+close", "cut", "close"];

    fn pick_exit(rng: &mut Rng) -> Exit {
        match rng.below(6) {
            0..=2 => Exit::Leave,
            3 | 4 => Exit::Cut,
            _ => Exit::Close,
        }
    }

    struct ChurnShared {
        sessions: AtomicU64,
        exits: [AtomicU64; 3],
        errors: Tally,
        lat: Mutex<Lat>,
    }

    /// One DDP session: connect (+ login), join by code, then leave and close,
    /// close, or cut.
    async fn churn_ddp(
        ep: &Endpoint,
        index: usize,
        token: Option<&str>,
        room: &Room,
        guest_name: Option<&str>,
        exit: Exit,
    ) -> Result<(), (&'static str, DdpError)> {
        let client = Client::open(ep, index, token, None).await?;
        join_room(&client, room, Via::Code, guest_name).await.map_err(|e| ("join", e))?;
        match exit {
            Exit::Leave => {
                client.call("leaveRoom", json!([room.rid])).await.map_err(|e| ("leave", e))?;
                client.close().await;
            }
            Exit::Close => client.close().await,
            // Dropping the last handle aborts its tasks: the socket goes without
            // a close frame.
            Exit::Cut => drop(client),
        }
        Ok(())
    }

    /// One Socket.IO guest session: CONNECT, `join-room` by code, then
    /// `leave-room` and close, close, or cut.
    async fn churn_sio(
        ep: &Endpoint,
        index: usize,
        room: &Room,
        guest_name: &str,
        exit: Exit,
    ) -> Result<(), (&'static str, DdpError)> {
        let mut s = super::sio::Sio::open(ep, index).await.map_err(|e| ("connect", e))?;
        s.ask("join-room", json!({"code": room.code, "guestName": guest_name}))
            .await
            .map_err(|e| ("join", e))?;
        match exit {
            Exit::Leave => {
                s.ask("leave-room", json!({"roomId": room.rid})).await.map_err(|e| ("leave", e))?;
                s.close().await;
            }
            Exit::Close => s.close().await,
            Exit::Cut => drop(s),
        }
        Ok(())
    }

    /// One `POST` on its own connection (roomd answers `Connection: close`).
    /// Without `read`, the socket is dropped once the request is written (a
    /// client that gives up). Returns the status; a non-2xx is an error named
    /// by the answer's `errorType` (or `http-<status>`).
    async fn http_post(
        ep: &Endpoint,
        index: usize,
        path: &str,
        headers: &[(&str, &str)],
        body: &Value,
        read: bool,
    ) -> Result<(), DdpError> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let io = |e: std::io::Error| DdpError::Io(e.to_string());
        let sock =
            if ep.addr.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() }
                .map_err(io)?;
        if let Some(ip) = ep.source_ip(index) {
            sock.bind(SocketAddr::new(ip, 0)).map_err(io)?;
        }
        let mut stream = tokio::time::timeout(ep.timeout, sock.connect(ep.addr))
            .await
            .map_err(|_| DdpError::Timeout)?
            .map_err(io)?;
        let body = body.to_string();
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            ep.addr,
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(&body);
        stream.write_all(req.as_bytes()).await.map_err(io)?;
        if !read {
            return Ok(());
        }
        let mut buf = Vec::new();
        tokio::time::timeout(ep.timeout, stream.read_to_end(&mut buf))
            .await
            .map_err(|_| DdpError::Timeout)?
            .map_err(io)?;
        let text = String::from_utf8_lossy(&buf);
        let status: u16 = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        if (200..300).contains(&status) {
            return Ok(());
        }
        let answer = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        let error = serde_json::from_str::<Value>(answer)
            .ok()
            .and_then(|v| v.get("errorType").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| format!("http-{status}"));
        Err(DdpError::Method { error, reason: truncate(answer, 200).to_owned() })
    }

    /// One REST session: a pool user joins a room by id and leaves it, only
    /// joins (stays a member), or sends the join and drops the socket unread.
    async fn churn_rest(
        ep: &Endpoint,
        index: usize,
        user: &(String, String),
        room: &Room,
        exit: Exit,
    ) -> Result<(), (&'static str, DdpError)> {
        let headers = [("X-Auth-Token", user.0.as_str()), ("X-User-Id", user.1.as_str())];
        let body = json!({"roomId": room.rid});
        let read = !matches!(exit, Exit::Cut);
        http_post(ep, index, "/api/v1/channels.join", &headers, &body, read)
            .await
            .map_err(|e| ("join", e))?;
        if let Exit::Leave = exit {
            http_post(ep, index, "/api/v1/channels.leave", &headers, &body, true)
                .await
                .map_err(|e| ("leave", e))?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)] // one call site
    async fn churn_loop(
        i: usize,
        a_loops: usize,
        door: Door,
        ep: Endpoint,
        rooms: Arc<Vec<Room>>,
        users: Arc<Vec<(String, String)>>,
        cs: Arc<ChurnShared>,
        deadline: Instant,
    ) {
        let mut rng = Rng::new(unix_micros() ^ ((i as u64) << 20));
        let mut k = 0usize;
        // Loop i uses pool users i, i + loops, i + 2 loops…: never one user on
        // two loops at once.
        let mine: Vec<&(String, String)> = users.iter().skip(i).step_by(a_loops.max(1)).collect();
        while Instant::now() < deadline {
            let room = &rooms[rng.below(rooms.len())];
            let exit = pick_exit(&mut rng);
            let index = i + a_loops * k;
            let user = (!mine.is_empty()).then(|| mine[k % mine.len()]);
            k += 1;
            let t0 = Instant::now();
            let r = match (door, user) {
                (Door::Ddp, _) => {
                    let name = format!("Guest {i}-{k}");
                    churn_ddp(&ep, index, None, room, Some(&name), exit).await
                }
                (Door::Sio, _) => {
                    let name = format!("Guest {i}-{k}");
                    churn_sio(&ep, index, room, &name, exit).await
                }
                (Door::Users, Some(u)) => churn_ddp(&ep, index, Some(&u.0), room, None, exit).await,
                (Door::Rest, Some(u)) => churn_rest(&ep, index, u, room, exit).await,
                (_, None) => Err(("setup", DdpError::Protocol("no pool user for this loop".into()))),
            };
            match r {
                Ok(()) => {
                    cs.sessions.fetch_add(1, Relaxed);
                    cs.exits[exit as usize].fetch_add(1, Relaxed);
                    cs.lat.lock().unwrap().record(t0.elapsed());
                }
                Err((stage, e)) => {
                    if cs.errors.total() < 3 {
                        eprintln!("[loadgen] churn session failed at {stage}: {e}");
                    }
                    cs.errors.add(format!("{stage}:{}", e.code()));
                    // Do not spin on a server that refuses.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// One point of the churn series: end of round r.
    struct ChurnRow {
        round: usize,
        t: f64,
        sessions: u64,
        anon_kb: Option<u64>,
        rss_kb: Option<u64>,
        cpu_pct: Option<f64>,
    }

    pub(crate) async fn churn(ctx: &Ctx, a: ChurnArgs) -> Result<bool, String> {
        if a.loops == 0 || a.rooms == 0 || a.rounds == 0 {
            return Err("churn needs --loops, --rooms and --rounds of at least 1".into());
        }
        procfs::check_fd_budget(a.loops * 2 + ctx.creator_bots(a.rooms))?;
        let mut creators = Creators::new(ctx);
        let rooms =
            Arc::new(creators.create_many(ctx, a.rooms, "churn", json!({"guestAccess": true})).await?);
        let users: Vec<(String, String)> = match a.door {
            Door::Ddp | Door::Sio => Vec::new(),
            Door::Users | Door::Rest => (0..a.users.max(a.loops))
                .map(|j| Ok::<_, String>((ctx.token("c", j, "user")?, ctx.username("c", j))))
                .collect::<Result<_, _>>()?,
        };
        let users = Arc::new(users);
        let cs = Arc::new(ChurnShared {
            sessions: AtomicU64::new(0),
            exits: Default::default(),
            errors: Tally::default(),
            lat: Mutex::new(Lat::default()),
        });
        let anon = || -> Option<u64> {
            if ctx.server_pids.is_empty() {
                return None;
            }
            ctx.server_pids.iter().map(|p| procfs::rss_anon_kb(*p)).sum()
        };
        let s_before = ctx.snap();
        let anon_before = anon();
        ctx.progress(format!(
            "churn: {} loops over {} rooms, door {:?}, {} rounds of {:?}; server RssAnon before {}",
            a.loops,
            a.rooms,
            a.door,
            a.rounds,
            a.round,
            anon_before.map(|v| format!("{:.1} MiB", mib(v))).unwrap_or("n/a".into())
        ));
        let start = Instant::now();
        let deadline = start + a.round * a.rounds as u32;
        let mut set = JoinSet::new();
        for i in 0..a.loops {
            let ep = ctx.eps[i % ctx.eps.len()].clone();
            set.spawn(churn_loop(i, a.loops, a.door, ep, rooms.clone(), users.clone(), cs.clone(), deadline));
        }
        let mut rows: Vec<ChurnRow> = Vec::new();
        let mut prev = ctx.snap();
        let round_of = |r: usize, prev: &mut Snap| {
            let now = ctx.snap();
            let u = Usage::between(prev, &now);
            let row = ChurnRow {
                round: r,
                t: now.at.duration_since(start).as_secs_f64(),
                sessions: cs.sessions.load(Relaxed),
                anon_kb: anon(),
                rss_kb: now.server.map(|s| s.rss_kb),
                cpu_pct: u.server_cpu.map(|c| 100.0 * c / u.wall.max(1e-9)),
            };
            eprintln!(
                "[loadgen]   {} t={:>4.0}s sessions {:>8} RssAnon {} MiB (VmRSS {} MiB) server CPU {}%, errors {}",
                if r == 0 { "end+settle".to_string() } else { format!("round {r}") },
                row.t,
                row.sessions,
                row.anon_kb.map(|v| format!("{:.1}", mib(v))).unwrap_or("n/a".into()),
                row.rss_kb.map(|v| format!("{:.1}", mib(v))).unwrap_or("n/a".into()),
                row.cpu_pct.map(|v| format!("{v:.0}")).unwrap_or("n/a".into()),
                cs.errors.total()
            );
            *prev = now;
            row
        };
        for r in 1..=a.rounds {
            tokio::time::sleep_until((start + a.round * r as u32).into()).await;
            rows.push(round_of(r, &mut prev));
        }
        while set.join_next().await.is_some() {}
        // Grace timers of the last cut guests run out, then the resting point.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let settled = round_of(0, &mut prev);
        let total = Usage::between(&s_before, &ctx.snap());

        ctx.say(format!(
            "== churn: door {:?}, {} loops, {} rooms, {} rounds of {:?} ==",
            a.door, a.loops, a.rooms, a.rounds, a.round
        ));
        let sessions = cs.sessions.load(Relaxed);
        let exits: Vec<String> =
            EXITS.iter().zip(&cs.exits).map(|(n, c)| format!("{n} {}", c.load(Relaxed))).collect();
        ctx.say(format!(
            "sessions    {sessions} ({:.0}/s; {}); errors: {}",
            sessions as f64 / total.wall.max(1e-9),
            exits.join(", "),
            cs.errors.text()
        ));
        ctx.say(format!("  session   {}", cs.lat.lock().unwrap().text()));
        ctx.say(format!(
            "RssAnon     before {}",
            anon_before.map(|v| format!("{:.1} MiB", mib(v))).unwrap_or("n/a".into())
        ));
        ctx.say("series      round  t(s)   sessions   RssAnon(MiB)  VmRSS(MiB)  CPU%");
        for r in rows.iter().chain(std::iter::once(&settled)) {
            ctx.say(format!(
                "            {:>5}  {:>4.0}  {:>9}  {:>12}  {:>10}  {:>4}",
                if r.round == 0 { "end".to_string() } else { r.round.to_string() },
                r.t,
                r.sessions,
                r.anon_kb.map(|v| format!("{:.1}", mib(v))).unwrap_or("n/a".into()),
                r.rss_kb.map(|v| format!("{:.1}", mib(v))).unwrap_or("n/a".into()),
                r.cpu_pct.map(|v| format!("{v:.0}")).unwrap_or("n/a".into()),
            ));
        }
        // The verdict: once warm (after the reference round), anonymous memory
        // stays within the bound however many more sessions come.
        let reference = rows.iter().find(|r| r.round == a.reference_round);
        let later: Vec<&ChurnRow> = rows.iter().filter(|r| r.round > a.reference_round).collect();
        let mut pass = sessions > 0;
        let mut verdict = Value::Null;
        match (reference.and_then(|r| r.anon_kb.map(|k| (r, k))), later.last()) {
            (Some((rref, ref_kb)), Some(last)) => {
                let max_kb = later.iter().filter_map(|r| r.anon_kb).max().unwrap_or(ref_kb);
                let growth_mb = (max_kb as f64 - ref_kb as f64) / 1024.0;
                let more = last.sessions.saturating_sub(rref.sessions);
                let per_session =
                    last.anon_kb.map(|l| (l as f64 - ref_kb as f64) * 1024.0 / (more.max(1) as f64));
                let ok = growth_mb <= a.max_growth_mb;
                pass &= ok;
                ctx.say(format!(
                    "verdict     {}: RssAnon peaked {growth_mb:+.1} MiB above round {} ({:.1} MiB) over {more} more sessions \
                     (limit {:.0} MiB); last round {} B per session",
                    if ok { "PASS" } else { "FAIL" },
                    a.reference_round,
                    mib(ref_kb),
                    a.max_growth_mb,
                    per_session.map(|b| format!("{b:+.0}")).unwrap_or("n/a".into())
                ));
                verdict = json!({"pass": ok, "reference_kb": ref_kb, "max_after_kb": max_kb,
                    "growth_mb": growth_mb, "sessions_after_reference": more, "bytes_per_session": per_session});
            }
            _ => ctx.say(format!(
                "verdict     n/a: needs a server pid and more than {} rounds",
                a.reference_round
            )),
        }
        ctx.say(format!("            {}", total.text()));
        let health = ctx.say_health();
        if ctx.json {
            println!(
                "{}",
                json!({
                    "scenario": "churn",
                    "door": format!("{:?}", a.door).to_lowercase(),
                    "loops": a.loops,
                    "rooms": a.rooms,
                    "round_s": a.round.as_secs_f64(),
                    "sessions": sessions,
                    "exits": EXITS.iter().zip(&cs.exits).map(|(n, c)| (n.to_string(), json!(c.load(Relaxed)))).collect::<serde_json::Map<_, _>>(),
                    "errors": cs.errors.json(),
                    "anon_before_kb": anon_before,
                    "series": rows.iter().chain(std::iter::once(&settled)).map(|r| json!({
                        "round": r.round, "t_s": r.t, "sessions": r.sessions, "rss_anon_kb": r.anon_kb,
                        "rss_kb": r.rss_kb, "cpu_pct": r.cpu_pct,
                    })).collect::<Vec<_>>(),
                    "verdict": verdict,
                    "usage": total.json(),
                    "health": health,
                })
            );
        }
        drop(creators);
        Ok(pass)
    }

    // ----------------------------------------------------------------- failover
    pub(crate) struct FailoverArgs {
        pub clients: usize,
        pub room_size: usize,
        pub interval: Duration,
        pub kill_pid: u32,
        pub kill_after: Duration,
        pub after_kill: Duration,
    }

    /// A failover client's patience for one call before it tries another node.
    const CALL_TIMEOUT: Duration = Duration::from_secs(2);

    /// What one failover client saw.
    #[derive(Default)]
    struct FailoverClient {
        ok_before: u64,
        ok_after: u64,
        /// First successful sendMessage on a surviving node, after the kill.
        recovered_at: Option<Instant>,
        /// First failed call or reconnect attempt.
        failed_at: Option<Instant>,
        reconnects: u64,
    }

    /// Clients all on the first --url send messages; the first node is killed
    /// (SIGKILL) and each client reconnects to a survivor (client i to
    /// survivor i mod n-1, then the next one on each failed attempt), logs in,
    /// joins again and sends. Measures kill -> first success per client.
    pub(crate) async fn failover(ctx: &Ctx, a: FailoverArgs) -> Result<bool, String> {
        if ctx.eps.len() < 2 {
            return Err("failover needs --url with two or more nodes; the first is the one killed".into());
        }
        if a.clients == 0 || a.room_size == 0 {
            return Err("--clients and --room-size must be positive".into());
        }
        procfs::check_fd_budget(a.clients + a.clients.div_ceil(a.room_size))?;
        ctx.progress(format!(
            "failover: {} clients on {}, node pid {} killed after {:?}",
            a.clients, ctx.ep.url, a.kill_pid, a.kill_after
        ));
        let n_rooms = a.clients.div_ceil(a.room_size);
        let mut creators = Creators::new(ctx);
        let rooms = creators.create_many(ctx, n_rooms, "failover", ctx.capacity_extra(a.room_size)).await?;
        let mut plans = Vec::with_capacity(a.clients);
        for i in 0..a.clients {
            plans.push(Plan {
                index: i,
                token: Some(ctx.token("u", i, "user")?),
                handler: None,
                join: Some((rooms[i % n_rooms].clone(), Via::Code, None)),
                subscribe: false,
            });
        }
        let (lat, fail) = (shared_lat(), Arc::new(Tally::default()));
        let victim = std::slice::from_ref(&ctx.ep);
        let clients = setup_many_on(ctx, victim, plans, &lat, &fail).await;
        if clients.iter().any(Option::is_none) {
            return Err(format!("setup on {} failed: {}", ctx.ep.url, fail.text()));
        }
        let survivors: Arc<Vec<Endpoint>> = Arc::new(ctx.eps[1..].to_vec());
        let killed_at: Arc<std::sync::OnceLock<Instant>> = Arc::default();
        let send_before = shared_lat();
        let send_after = shared_lat();
        let errors = Arc::new(Tally::default());
        let start = Instant::now();
        let end = start + a.kill_after + a.after_kill;
        let mut set = JoinSet::new();
        for (i, client) in clients.into_iter().flatten().enumerate() {
            let token = ctx.token("u", i, "user")?;
            let room = rooms[i % n_rooms].clone();
            let (survivors, killed_at, errors) = (survivors.clone(), killed_at.clone(), errors.clone());
            let (send_before, send_after) = (send_before.clone(), send_after.clone());
            let interval = a.interval;
            set.spawn(async move {
                let mut me = FailoverClient::default();
                let mut client = Some(client);
                let mut next_node = i % survivors.len();
                // Spread the clients' calls over the interval.
                let mut due = start + interval.mul_f64((i as f64 * 0.618_034).fract());
                while Instant::now() < end {
                    let Some(c) = client.clone() else {
                        // Reconnect to a survivor, log in, join again.
                        let ep = survivors[next_node].clone();
                        next_node = (next_node + 1) % survivors.len();
                        me.reconnects += 1;
                        let plan = Plan {
                            index: i,
                            token: Some(token.clone()),
                            handler: None,
                            join: Some((room.clone(), Via::Code, None)),
                            subscribe: false,
                        };
                        match setup_client(ep, plan).await {
                            Ok(c) => client = Some(c),
                            Err((stage, e)) => {
                                errors.add(format!("reconnect {stage}:{}", e.code()));
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                        }
                        continue;
                    };
                    if me.failed_at.is_none() {
                        // Like a browser's onclose: a dropped socket ends the
                        // pause at once and the next call goes out (and fails).
                        tokio::select! {
                            _ = tokio::time::sleep_until(due.into()) => due += interval,
                            _ = c.closed() => {}
                        }
                    }
                    let t = Instant::now();
                    // A browser learns of a reset socket at once: a call on a
                    // connection already seen dead fails without waiting.
                    let call = c.call("sendMessage", json!([{ "rid": room.rid, "msg": format!("fo {i}") }]));
                    let r = if !c.is_alive() {
                        Err(DdpError::Closed)
                    } else {
                        tokio::time::timeout(CALL_TIMEOUT, call).await.unwrap_or(Err(DdpError::Timeout))
                    };
                    match r {
                        Ok(_) => {
                            let done = Instant::now();
                            match killed_at.get() {
                                Some(k) if t > *k && me.failed_at.is_some() => {
                                    me.recovered_at.get_or_insert(done);
                                    me.failed_at = None;
                                    me.ok_after += 1;
                                    send_after.lock().unwrap().record(done - t);
                                }
                                Some(_) if me.recovered_at.is_some() => {
                                    me.ok_after += 1;
                                    send_after.lock().unwrap().record(done - t);
                                }
                                _ => {
                                    me.ok_before += 1;
                                    send_before.lock().unwrap().record(done - t);
                                }
                            }
                        }
                        Err(e) => {
                            errors.add(format!("sendMessage:{}", e.code()));
                            me.failed_at.get_or_insert(t);
                            if !c.is_alive() || matches!(e, DdpError::Closed | DdpError::Timeout) {
                                client = None;
                            } else {
                                // A refusal on a live connection: retry it soon, not in a hot loop.
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                        }
                    }
                }
                me
            });
        }
        tokio::time::sleep_until((start + a.kill_after).into()).await;
        // The instant before `kill` runs: the figure includes fork+exec of kill(1).
        let _ = killed_at.set(Instant::now());
        let status = std::process::Command::new("kill")
            .args(["-9", &a.kill_pid.to_string()])
            .status()
            .map_err(|e| format!("running kill: {e}"))?;
        if !status.success() {
            return Err(format!("kill -9 {} failed ({status})", a.kill_pid));
        }
        ctx.progress(format!("killed pid {}", a.kill_pid));
        let kill = *killed_at.get().expect("set above");
        let mut from_kill = Lat::default();
        let (mut recovered, mut ok_before, mut ok_after, mut reconnects) = (0, 0, 0, 0);
        while let Some(r) = set.join_next().await {
            let me = r.map_err(|e| format!("client task: {e}"))?;
            if let Some(at) = me.recovered_at {
                recovered += 1;
                from_kill.record(at - kill);
            }
            ok_before += me.ok_before;
            ok_after += me.ok_after;
            reconnects += me.reconnects;
        }
        let (send_before, send_after) = (take(&send_before), take(&send_after));
        ctx.say(format!(
            "== failover: {} clients on {} in {n_rooms} rooms, a sendMessage each every {:?}; kill -9 pid {} at {:?} ==",
            a.clients, ctx.ep.url, a.interval, a.kill_pid, a.kill_after
        ));
        ctx.say(format!(
            "recovered   {recovered} of {} clients succeeded on a surviving node ({reconnects} reconnect attempts)",
            a.clients
        ));
        ctx.say(format!("kill->ok    {}", from_kill.text()));
        ctx.say(format!("sendMessage before the kill {}", send_before.text()));
        ctx.say(format!("            after recovery  {}", send_after.text()));
        ctx.say(format!("calls       ok before {ok_before}, ok after {ok_after}; errors: {}", errors.text()));
        let health = ctx.say_health();
        if ctx.json {
            println!(
                "{}",
                json!({
                    "scenario": "failover",
                    "clients": a.clients,
                    "recovered": recovered,
                    "reconnect_attempts": reconnects,
                    "kill_to_ok": from_kill.json(),
                    "send_before": send_before.json(),
                    "send_after": send_after.json(),
                    "ok_before": ok_before,
                    "ok_after": ok_after,
                    "errors": errors.json(),
                    "health": health,
                })
            );
        }
        drop(creators);
        Ok(recovered == a.clients)
    }

    // ----------------------------------------------------------------- probe
    pub(crate) fn probe(ctx: &Ctx, how: &str) -> Result<bool, String> {
        let s = ctx.snap();
        let (soft, hard) = procfs::open_files_limit();
        let lim = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or("unlimited".into());
        ctx.say(format!(
            "server      pid {} ({how})",
            if ctx.server_pids.is_empty() {
                "?".to_string()
            } else {
                ctx.server_pids.iter().map(u32::to_string).collect::<Vec<_>>().join("+")
            }
        ));
        if let Some(srv) = s.server {
            ctx.say(format!(
                "            RSS {} kB ({:.1} MiB), CPU {:.2} s",
                srv.rss_kb,
                mib(srv.rss_kb),
                srv.cpu_ticks as f64 / procfs::CLK_TCK
            ));
        }
        ctx.say(format!("open files  soft {} hard {}", lim(soft), lim(hard)));
        if ctx.json {
            println!(
                "{}",
                json!({
                    "scenario": "probe",
                    "server_pid": ctx.server_pids.first(),
                    "server_pids": ctx.server_pids,
                    "server_rss_kb": s.server.map(|v| v.rss_kb),
                    "server_cpu_s": s.server.map(|v| v.cpu_ticks as f64 / procfs::CLK_TCK),
                    "nofile_soft": soft,
                    "nofile_hard": hard,
                })
            );
        }
        Ok(s.server.is_some())
    }
}

// ---------------------------------------------------------------------------
// Command line.
// ---------------------------------------------------------------------------
#[derive(Parser)]
#[command(
    name = "loadgen",
    about = "Load generator for roomd (DDP over WebSocket)",
    after_help = "See the doc comment at the top of examples/loadgen.rs for details."
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
        Scenario::Idle { n, guests, shard, room_size, room_capacity, settle, hold, baseline_rss_kb } => {
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

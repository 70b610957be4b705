//! /proc sampling of the server (and of ourselves).
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
            let local_port =
                f.get(1).and_then(|a| a.rsplit_once(':')).and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
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

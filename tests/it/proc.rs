//! Child processes that cannot outlive the test binary, signals by PID,
//! free loopback ports and a tiny blocking HTTP client for health probes.
//!
//! [`RoomdCmd`] is the one way tests start the real `roomd` binary: a
//! server ([`RoomdCmd::server`], giving a [`Roomd`] whose address comes from
//! its "listening" line and whose last log lines are kept for failure
//! reports) or a command run to completion ([`RoomdCmd::cli`]).

use serde_json::Value;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A child process watched by a `sh` watchdog that holds the read end of a
/// pipe whose write end only this test process has. Drop kills the child
/// (panics included); if the test binary itself dies (SIGKILL, CI timeout)
/// the pipe closes, and the watchdog kills the child by its PID and removes
/// `scratch`. No process is left behind either way.
pub(crate) struct Guarded {
    child: Child,
    watchdog: Child,
    /// Keeps the watchdog's pipe open while we live.
    _lifeline: ChildStdin,
    pid: u32,
}

impl Guarded {
    /// Spawns `cmd`. If this test binary dies first, the watchdog removes
    /// `scratch` (a directory of the child's own) and then its parent if
    /// that is empty by then.
    pub(crate) fn spawn(cmd: &mut Command, scratch: Option<&Path>) -> std::io::Result<Guarded> {
        let child = cmd.spawn()?;
        let pid = child.id();
        // `read` returns only at end of file: when every writer has gone.
        let script = r#"read -r line; kill -9 "$1" 2>/dev/null; sleep 0.2
            [ -n "$2" ] && rm -rf -- "$2" && rmdir -- "$(dirname -- "$2")" 2>/dev/null; exit 0"#;
        let scratch = scratch.map(|p| p.display().to_string()).unwrap_or_default();
        let mut watchdog = Command::new("sh")
            .args(["-c", script, "roomd-test-watchdog", &pid.to_string(), &scratch])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let lifeline = watchdog.stdin.take().expect("watchdog stdin");
        Ok(Guarded { child, watchdog, _lifeline: lifeline, pid })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    pub(crate) fn take_stderr(&mut self) -> Option<std::process::ChildStderr> {
        self.child.stderr.take()
    }

    /// Sends `sig` (`STOP`, `CONT`, `TERM`, …) to the child by its PID.
    pub(crate) fn signal(&self, sig: &str) {
        signal(self.pid, sig);
    }

    /// The exit status, if the child has exited.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// `kill -9` and reap. The watchdog goes first: it must never act on a
    /// PID that has been reaped (and might be reused).
    pub(crate) fn kill9(mut self) {
        self.reap();
    }

    /// [`Guarded::kill9`] in place; dropping it later does nothing more.
    pub(crate) fn kill9_in_place(&mut self) {
        self.reap();
    }

    fn reap(&mut self) {
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.reap();
    }
}

pub(crate) fn signal(pid: u32, sig: &str) {
    let st = Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]).status().expect("run kill");
    assert!(st.success(), "kill -{sig} {pid} failed");
}

/// Whether a process with this PID is running or stopped (a zombie
/// waiting to be reaped counts as gone).
pub(crate) fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// `n` distinct loopback ports that were free a moment ago (all held at
/// once while choosing, so they differ from each other), chosen below the
/// kernel's ephemeral range: a server restarted on its port (a killed NATS
/// server, a roomd node) must find it free again, and a port of the
/// ephemeral range can meanwhile become the local end of any outgoing
/// connection on the machine (it did, in a full run: "bind: address already
/// in use" for a restarted NATS server).
pub(crate) fn free_ports(n: usize) -> Vec<u16> {
    use std::hash::{BuildHasher, RandomState};
    const FIRST: u16 = 10_000;
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let mut held: Vec<TcpListener> = Vec::new();
    if ephemeral > FIRST + 1_000 {
        let random = RandomState::new();
        for i in 0..10_000u64 {
            if held.len() == n {
                break;
            }
            let port = FIRST + (random.hash_one(i) % u64::from(ephemeral - FIRST)) as u16;
            if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
                held.push(l);
            }
        }
    }
    // No room below the ephemeral range here: any free port.
    while held.len() < n {
        held.push(TcpListener::bind("127.0.0.1:0").expect("bind a free port"));
    }
    held.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

/// A fresh directory under the system temp dir.
pub(crate) fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "roomd-{tag}-{}-{}",
        std::process::id(),
        crate::support::unique("d")
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `GET path` over HTTP/1.0 (no chunked bodies); status and body, or `None`
/// when nothing answers within a second.
pub(crate) fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let t = Duration::from_secs(1);
    let mut s = TcpStream::connect_timeout(&addr, t).ok()?;
    s.set_read_timeout(Some(t)).ok()?;
    s.set_write_timeout(Some(t)).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Some((status, body))
}

/// [`http_get`] of a JSON body answered with 200.
pub(crate) fn http_json(addr: SocketAddr, path: &str) -> Option<Value> {
    match http_get(addr, path)? {
        (200, body) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}

/// The last `n` lines of a file, for failure reports.
pub(crate) fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Log lines kept per roomd process: enough for any failure report or log
/// assertion, bounded so a chatty node cannot grow the test's memory.
const KEEP_LINES: usize = 2000;

/// The last [`KEEP_LINES`] stderr lines of a roomd process. Cloning shares
/// it, so one ring can follow a node across restarts.
#[derive(Clone, Default)]
pub(crate) struct LogRing(Arc<Mutex<VecDeque<String>>>);

impl LogRing {
    pub(crate) fn push(&self, line: String) {
        let mut l = self.0.lock().unwrap();
        if l.len() == KEEP_LINES {
            l.pop_front();
        }
        l.push_back(line);
    }

    /// The last `n` lines, joined.
    pub(crate) fn tail(&self, n: usize) -> String {
        let l = self.0.lock().unwrap();
        l.iter().skip(l.len().saturating_sub(n)).cloned().collect::<Vec<_>>().join("\n")
    }

    /// Every kept line, joined.
    pub(crate) fn all(&self) -> String {
        self.tail(KEEP_LINES)
    }

    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().iter().cloned().collect()
    }
}

/// How to start the real `roomd` binary.
pub(crate) struct RoomdCmd {
    cmd: Command,
    /// A directory of the process's own, removed by the watchdog if the
    /// test binary dies first.
    scratch: Option<PathBuf>,
    log: LogRing,
}

impl RoomdCmd {
    /// `roomd --listen 127.0.0.1:0 …` as a server: `RUST_LOG` from
    /// `ROOMD_TEST_RUST_LOG` (default `info`), no colours, stderr captured.
    pub(crate) fn server() -> RoomdCmd {
        RoomdCmd::listening(Command::new(env!("CARGO_BIN_EXE_roomd")))
    }

    /// [`RoomdCmd::server`] under `ulimit -n files` (`sh` execs roomd, so
    /// the PID is roomd's).
    pub(crate) fn server_with_open_files(files: u32) -> RoomdCmd {
        let mut sh = Command::new("sh");
        sh.arg("-c").arg(format!("ulimit -n {files} && exec \"$0\" \"$@\"")).arg(env!("CARGO_BIN_EXE_roomd"));
        RoomdCmd::listening(sh)
    }

    fn listening(mut cmd: Command) -> RoomdCmd {
        cmd.args(["--listen", "127.0.0.1:0"])
            .env("RUST_LOG", std::env::var("ROOMD_TEST_RUST_LOG").unwrap_or("info".into()))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        RoomdCmd { cmd, scratch: None, log: LogRing::default() }
    }

    /// `roomd ARGS…` run to completion with [`RoomdCmd::output`].
    pub(crate) fn cli() -> RoomdCmd {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_roomd"));
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        RoomdCmd { cmd, scratch: None, log: LogRing::default() }
    }

    pub(crate) fn arg(mut self, a: impl AsRef<std::ffi::OsStr>) -> RoomdCmd {
        self.cmd.arg(a);
        self
    }

    pub(crate) fn args<S: AsRef<std::ffi::OsStr>>(mut self, a: impl IntoIterator<Item = S>) -> RoomdCmd {
        self.cmd.args(a);
        self
    }

    /// `--data-dir dir`.
    pub(crate) fn data_dir(self, dir: &Path) -> RoomdCmd {
        self.arg("--data-dir").arg(dir)
    }

    pub(crate) fn env(mut self, k: &str, v: impl AsRef<std::ffi::OsStr>) -> RoomdCmd {
        self.cmd.env(k, v);
        self
    }

    pub(crate) fn env_remove(mut self, k: &str) -> RoomdCmd {
        self.cmd.env_remove(k);
        self
    }

    /// Removed by the watchdog if the test binary dies while roomd runs.
    pub(crate) fn scratch(mut self, dir: &Path) -> RoomdCmd {
        self.scratch = Some(dir.to_owned());
        self
    }

    /// Logs into `log` (shared with earlier runs of the same node).
    pub(crate) fn log_into(mut self, log: &LogRing) -> RoomdCmd {
        self.log = log.clone();
        self
    }

    /// Spawns the server without waiting for it.
    pub(crate) fn spawn(mut self) -> Roomd {
        let mut proc = Guarded::spawn(&mut self.cmd, self.scratch.as_deref()).expect("spawn roomd");
        let stderr = proc.take_stderr().expect("roomd stderr");
        let (tx, addr_rx) = std::sync::mpsc::channel();
        let (drained_tx, drained) = std::sync::mpsc::channel();
        let log = self.log.clone();
        log.push(format!("==== roomd started (pid {}) ====", proc.pid()));
        let echo = std::env::var_os("ROOMD_TEST_LOG").is_some();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            // Keeps draining so roomd never blocks on a full pipe.
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = tx.is_some().then(|| address_in(&line)).flatten() {
                    let _ = tx.take().unwrap().send(addr);
                }
                if echo {
                    eprintln!("{line}");
                }
                log.push(line);
            }
            let _ = drained_tx.send(());
        });
        Roomd { proc, log: self.log, addr_rx, addr: None, drained }
    }

    /// Spawns the server and waits (up to 20 s) for its listening line.
    pub(crate) fn start(self) -> Roomd {
        let mut r = self.spawn();
        r.wait_addr(Duration::from_secs(20));
        r
    }

    /// Runs the command to completion (bounded: 60 s).
    pub(crate) fn output(mut self) -> Output {
        let mut child = self.cmd.spawn().expect("spawn roomd");
        // Both pipes drained beside the wait, so a chatty command never
        // blocks on a full pipe before it exits.
        let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let out = std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = out.read_to_end(&mut b);
            b
        });
        let err = std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = err.read_to_end(&mut b);
            b
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{:?} did not finish in 60 s", self.cmd);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Output { status, stdout: out.join().unwrap(), stderr: err.join().unwrap() }
    }
}

/// A running roomd server. Drop kills it (panics included).
pub(crate) struct Roomd {
    proc: Guarded,
    log: LogRing,
    addr_rx: std::sync::mpsc::Receiver<SocketAddr>,
    addr: Option<SocketAddr>,
    /// Says when the reader has seen the end of stderr.
    drained: std::sync::mpsc::Receiver<()>,
}

impl Roomd {
    pub(crate) fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// The address once roomd has logged it, without waiting.
    pub(crate) fn try_addr(&mut self) -> Option<SocketAddr> {
        if self.addr.is_none() {
            self.addr = self.addr_rx.try_recv().ok();
        }
        self.addr
    }

    /// Waits for the listening line; panics with the log if roomd exits
    /// or stays silent for `within`.
    pub(crate) fn wait_addr(&mut self, within: Duration) -> SocketAddr {
        let end = Instant::now() + within;
        loop {
            if let Some(a) = self.addr {
                return a;
            }
            // Wakes the moment the line is read, so a caller acts on a
            // server that has only just printed it.
            if let Ok(a) = self.addr_rx.recv_timeout(Duration::from_millis(20)) {
                self.addr = Some(a);
                continue;
            }
            if let Some(st) = self.exited() {
                panic!("roomd exited ({st}) before reporting its address:\n{}", self.log.tail(40));
            }
            assert!(Instant::now() < end, "roomd did not report its address:\n{}", self.log.tail(40));
        }
    }

    /// The address (after [`Roomd::wait_addr`] or [`RoomdCmd::start`]).
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr.expect("roomd has no address yet (wait_addr first)")
    }

    /// `ws://ADDR/websocket`.
    pub(crate) fn url(&self) -> String {
        format!("ws://{}/websocket", self.addr())
    }

    /// `http://ADDR`.
    pub(crate) fn http(&self) -> String {
        format!("http://{}", self.addr())
    }

    pub(crate) fn log(&self) -> &LogRing {
        &self.log
    }

    /// The log lines of this run up to and including the first that
    /// `done` accepts (up to 20 s).
    pub(crate) fn lines_until(&self, done: impl Fn(&str) -> bool) -> Vec<String> {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let lines = self.log.lines();
            let start = lines.iter().rposition(|l| l.starts_with("==== roomd started")).map_or(0, |i| i + 1);
            if let Some(i) = lines[start..].iter().position(|l| done(l)) {
                return lines[start..=start + i].to_vec();
            }
            assert!(Instant::now() < end, "roomd never logged the awaited line:\n{}", self.log.tail(40));
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (up to `within`) until `/readyz` answers 200.
    pub(crate) async fn ready(&mut self, within: Duration) {
        let end = Instant::now() + within;
        loop {
            if let Some(st) = self.exited() {
                panic!("roomd exited ({st}):\n{}", self.log.tail(40));
            }
            if let Some(addr) = self.try_addr()
                && matches!(http_get(addr, "/readyz"), Some((200, _)))
            {
                return;
            }
            assert!(
                Instant::now() < end,
                "roomd not ready after {within:?} (address {:?}):\n{}",
                self.addr,
                self.log.tail(40)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The exit status, if roomd has exited (its last log lines then kept).
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        let st = self.proc.exited()?;
        let _ = self.drained.recv_timeout(Duration::from_secs(2));
        Some(st)
    }

    /// Waits (up to `within`) for roomd to exit by itself.
    pub(crate) async fn exit_status(&mut self, within: Duration) -> ExitStatus {
        let end = Instant::now() + within;
        loop {
            if let Some(st) = self.exited() {
                return st;
            }
            assert!(Instant::now() < end, "roomd still running after {within:?}:\n{}", self.log.tail(40));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends `sig` (`STOP`, `CONT`, …) and notes it in the log.
    pub(crate) fn signal(&self, sig: &str) {
        self.proc.signal(sig);
        self.log.push(format!("==== roomd pid {} sent SIG{sig} ====", self.pid()));
    }

    /// SIGTERM, then waits (up to 10 s) for the exit.
    pub(crate) fn sigterm(&mut self) -> ExitStatus {
        self.signal("TERM");
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = self.exited() {
                return st;
            }
            assert!(Instant::now() < end, "roomd did not exit after SIGTERM:\n{}", self.log.tail(40));
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `kill -9` and reap.
    pub(crate) fn kill9(&mut self) {
        self.log.push(format!("==== roomd pid {} killed (kill -9) ====", self.pid()));
        self.proc.kill9_in_place();
    }
}

/// The address in roomd's "listening … ws://ADDR/websocket" line.
fn address_in(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("ws://")? + "ws://".len()..];
    rest[..rest.find('/')?].parse().ok()
}

//! Child processes that cannot outlive the test binary, signals by PID,
//! free loopback ports and a tiny blocking HTTP client for health probes.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::Duration;

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
/// once while choosing, so they differ from each other).
pub(crate) fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> =
        (0..n).map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port")).collect();
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

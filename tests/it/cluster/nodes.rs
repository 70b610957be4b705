//! roomd nodes as real processes in cluster mode (`--cluster … --node-id …`),
//! each killed, paused, continued or restarted by its PID.

use super::nats::NatsCluster;
use crate::proc::{LogRing, Roomd, RoomdCmd, tempdir};
use crate::support::Client;
use roomd::auth::{Authenticator, Claims, now_secs};
use serde_json::json;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub(crate) const SECRET: &str = "cluster-test-secret";

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
    proc: Option<Roomd>,
    addr: Option<SocketAddr>,
    dir: PathBuf,
    /// Follows the node across restarts.
    log: LogRing,
    stopped: bool,
}

impl Node {
    pub(crate) fn url(&self) -> String {
        format!("ws://{}/websocket", self.addr.expect("node has no address (not started?)"))
    }

    pub(crate) fn logs(&self, n: usize) -> String {
        self.log.tail(n)
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
        ns.spawn(0);
        ns.wait_ready(0, Duration::from_secs(30)).await;
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
                log: LogRing::default(),
                stopped: false,
            })
            .collect();
        Nodes { nodes, cluster: nats.urls(), base }
    }

    pub(crate) fn url(&self, i: usize) -> String {
        self.nodes[i].url()
    }

    /// Spawns node `i` (its address comes with its listening line).
    fn spawn(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        assert!(node.proc.is_none(), "{} is already running", node.id);
        std::fs::create_dir_all(&node.dir).unwrap();
        node.log.push(format!("==== {} starting ====", node.id));
        let p = RoomdCmd::server()
            .arg("--no-rate-limits")
            .data_dir(&node.dir)
            .args(["--cluster", &self.cluster, "--node-id", &node.id])
            .env("ROOMD_JWT_SECRET", SECRET)
            .scratch(&node.dir)
            .log_into(&node.log)
            .spawn();
        node.proc = Some(p);
        node.addr = None;
        node.stopped = false;
    }

    async fn wait_ready(&mut self, i: usize, within: Duration) {
        let node = &mut self.nodes[i];
        let p = node.proc.as_mut().expect("node not running");
        p.ready(within).await;
        node.addr = p.try_addr();
    }

    /// `kill -9` node `i`.
    pub(crate) fn kill9(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        n.proc.take().expect("node not running").kill9();
        n.stopped = false;
    }

    /// `kill -STOP` node `i`.
    pub(crate) fn stop(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        n.proc.as_ref().expect("node not running").signal("STOP");
        n.stopped = true;
    }

    /// `kill -CONT` node `i`.
    pub(crate) fn cont(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        n.proc.as_ref().expect("node not running").signal("CONT");
        n.stopped = false;
    }

    /// Starts a killed node again (same node id and data dir, new port) and
    /// waits for `/readyz`.
    pub(crate) async fn restart(&mut self, i: usize) {
        self.spawn(i);
        self.wait_ready(i, Duration::from_secs(30)).await;
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
        for &i in &down {
            self.spawn(i);
        }
        for i in down {
            self.wait_ready(i, Duration::from_secs(30)).await;
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

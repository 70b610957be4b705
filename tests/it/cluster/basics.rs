//! Cluster mode on the smallest real setup: one `nats-server` with
//! JetStream (one replica) and two roomd processes. The three-server
//! failure scenarios live in `scenarios`; these check the core: any room
//! from any node, events crossing nodes, exact capacity under concurrent
//! joins through both nodes, and a restart that replays the log.

use crate::proc::{Guarded, Roomd, RoomdCmd, free_ports, tempdir};
use crate::support::{Client, unique};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::cluster::nodes::{SECRET, user as login};

/// The cluster fixture's `nats-server` (skips loudly, or fails under
/// `ROOMD_REQUIRE_NATS=1`).
fn nats_or_skip() -> Option<PathBuf> {
    crate::cluster::nats::nats_or_skip("cluster::basics").cloned()
}

pub(crate) struct Nats {
    proc: Guarded,
    pub(crate) url: String,
    dir: PathBuf,
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.proc.kill9_in_place();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One `nats-server` with JetStream storing in `dir`; like every child of
/// the tests it never outlives the test binary.
pub(crate) fn start_nats(bin: &Path, dir: &Path) -> Nats {
    let port = free_ports(1)[0];
    let mut cmd = Command::new(bin);
    cmd.args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = Guarded::spawn(&mut cmd, None).expect("spawn nats-server");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nats-server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Nats { proc: child, url: format!("nats://127.0.0.1:{port}"), dir: dir.to_owned() }
}

pub(crate) struct Node {
    pub(crate) proc: Roomd,
    pub(crate) url: String,
    pub(crate) http: String,
}

fn start_node(nats: &str, node: &str) -> Node {
    start_node_with(nats, node, &[])
}

pub(crate) fn start_node_with(nats: &str, node: &str, extra: &[&str]) -> Node {
    start_node_env(nats, node, extra, &[])
}

pub(crate) fn start_node_env(nats: &str, node: &str, extra: &[&str], env: &[(&str, &str)]) -> Node {
    let mut cmd = RoomdCmd::server()
        .args(["--no-rate-limits", "--cluster", nats, "--node-id", node])
        .args(["--cluster-replicas", "1"])
        // A test may ask for its own grace; the flag is accepted once.
        .args(if extra.contains(&"--guest-grace") { &[][..] } else { &["--guest-grace", "1s"][..] })
        .args(extra)
        .env("ROOMD_JWT_SECRET", SECRET);
    for (k, v) in env {
        cmd = cmd.env(k, v);
    }
    let proc = cmd.start();
    let (url, http) = (proc.url(), proc.http());
    Node { proc, url, http }
}

/// Waits until the node's `/readyz` says yes (it has replayed the log).
pub(crate) async fn ready(node: &mut Node) {
    node.proc.ready(Duration::from_secs(20)).await;
}

/// One NATS server and two ready nodes `a` and `b` (`None`: no
/// nats-server here, the test is skipped loudly).
async fn two_nodes(tag: &str) -> Option<(Nats, Node, Node)> {
    let bin = nats_or_skip()?;
    let nats = start_nats(&bin, &tempdir(tag));
    let (mut a, mut b) = (start_node(&nats.url, "a"), start_node(&nats.url, "b"));
    ready(&mut a).await;
    ready(&mut b).await;
    Some((nats, a, b))
}

/// A room created on node A is joined through node B; A's subscriber sees
/// B's join and B's message, once each; both nodes answer the same room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_room_from_any_node_and_events_cross_nodes() {
    let Some((_nats, a, b)) = two_nodes("cb1").await else { return };

    let name = unique("xnode");
    let mut alice = login(&a.url, "alice").await;
    let room = alice.call("createChannel", json!([name, []])).await;
    let rid = room["result"]["rid"].as_str().unwrap_or_else(|| panic!("{room}")).to_owned();
    alice.sub_ok("stream-room-messages", json!([rid, false])).await;

    let mut bob = login(&b.url, "bob").await;
    let joined = bob.call("joinRoom", json!([rid])).await;
    assert_eq!(joined["result"], json!(true), "{joined}");
    let sent = bob.call("sendMessage", json!([{"rid": rid, "msg": "hello from b"}])).await;
    assert!(sent.get("error").is_none(), "{sent}");

    let uj = alice.room_message(&rid).await;
    assert_eq!(uj["t"], "uj", "{uj}");
    assert_eq!(uj["u"]["username"], "bob");
    let m = alice.room_message(&rid).await;
    assert_eq!(m["msg"], "hello from b", "{m}");
    assert_eq!(m["_id"], sent["result"]["_id"], "the same message id on both nodes");
    alice.expect_none(Duration::from_millis(300), |f| f["collection"] == "stream-room-messages").await;

    // Both replicas hold the same history.
    let ha = alice.call("loadHistory", json!([rid, null, 10, null])).await;
    let hb = bob.call("loadHistory", json!([rid, null, 10, null])).await;
    let ids = |h: &Value| {
        h["result"]["messages"].as_array().unwrap().iter().map(|m| m["_id"].clone()).collect::<Vec<_>>()
    };
    assert_eq!(ids(&ha), ids(&hb));
    assert_eq!(ids(&ha).len(), 2, "{ha}");
}

/// A room of capacity K, joined concurrently by many users through both
/// nodes: exactly K are admitted, and both nodes agree on who.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_is_exact_across_nodes() {
    let Some((_nats, a, b)) = two_nodes("cb2").await else { return };
    const K: usize = 7;
    const JOINERS: usize = 40;
    let mut owner = login(&a.url, "owner").await;
    let room =
        owner.call("createChannel", json!([unique("cap"), [], false, {}, {"maxParticipants": K + 1}])).await;
    let rid = room["result"]["rid"].as_str().unwrap_or_else(|| panic!("{room}")).to_owned();

    let mut tasks = Vec::new();
    for i in 0..JOINERS {
        let url = if i % 2 == 0 { a.url.clone() } else { b.url.clone() };
        let rid = rid.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = login(&url, &format!("j{i}")).await;
            let r = c.call("joinRoom", json!([rid])).await;
            r["result"] == json!(true)
        }));
    }
    let mut admitted = 0;
    for t in tasks {
        if t.await.unwrap() {
            admitted += 1;
        }
    }
    assert_eq!(admitted, K, "exactly the free seats are given");
    for node in [&a, &b] {
        let mut c = login(&node.url, "owner").await;
        let p = c.call("getRoomParticipants", json!([rid])).await;
        let count = p["result"]["participants"].as_array().map(Vec::len);
        assert_eq!(count, Some(K + 1), "node {} sees {p}", node.http);
    }
}

/// Everything acknowledged is back after every node restarts: the log is
/// replayed at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_replays_the_log() {
    let Some(bin) = nats_or_skip() else { return };
    let dir = tempdir("cb3");
    let nats = start_nats(&bin, &dir);
    let mut a = start_node(&nats.url, "a");
    ready(&mut a).await;
    let mut alice = login(&a.url, "alice").await;
    let room = alice.call("createChannel", json!([unique("replay"), []])).await;
    let rid = room["result"]["rid"].as_str().unwrap().to_owned();
    for i in 0..5 {
        let r = alice.call("sendMessage", json!([{"rid": rid, "msg": format!("m{i}")}])).await;
        assert!(r.get("error").is_none(), "{r}");
    }
    let locked = alice.call("saveRoomSettings", json!([rid, "locked", true])).await;
    assert!(locked.get("error").is_none(), "{locked}");
    drop(alice);
    let Node { mut proc, .. } = a;
    proc.kill9();

    let mut a = start_node(&nats.url, "a");
    ready(&mut a).await;
    let mut alice = login(&a.url, "alice").await;
    let doc = alice.call("getRoomById", json!([rid])).await;
    assert_eq!(doc["result"]["locked"], json!(true), "{doc}");
    let h = alice.call("loadHistory", json!([rid, null, 10, null])).await;
    let msgs: Vec<&str> =
        h["result"]["messages"].as_array().unwrap().iter().filter_map(|m| m["msg"].as_str()).collect();
    for i in 0..5 {
        assert!(msgs.contains(&format!("m{i}").as_str()), "m{i} missing after restart: {msgs:?}");
    }
}

/// A guest whose node dies keeps its seat only until the survivors notice
/// the node is gone (its heartbeat expires) and the guest grace passes;
/// then its departure is announced on every node. A guest on a live node
/// is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guests_of_a_dead_node_are_released_by_the_survivors() {
    let Some((_nats, a, b)) = two_nodes("cb4").await else { return };
    let mut host = login(&a.url, "host").await;
    let room =
        host.call("createChannel", json!([unique("guests"), [], false, {}, {"guestAccess": true}])).await;
    let rid = room["result"]["rid"].as_str().unwrap_or_else(|| panic!("{room}")).to_owned();
    let code = host.room(&rid).await["code"].as_str().unwrap().to_owned();
    host.sub_ok("stream-room-messages", json!([rid, false])).await;

    let mut stays = Client::open(&a.url).await;
    stays.connect().await;
    let r = stays.join_code(&code, Some("Stays")).await;
    assert!(r.get("error").is_none(), "{r}");
    let mut lost = Client::open(&b.url).await;
    lost.connect().await;
    let r = lost.join_code(&code, Some("Lost")).await;
    assert!(r.get("error").is_none(), "{r}");
    for _ in 0..2 {
        assert_eq!(host.room_message(&rid).await["t"], "uj");
    }

    let Node { mut proc, .. } = b;
    proc.kill9();
    let killed = Instant::now();
    // Heartbeat expiry (5 s) + sweep (2 s) + grace (1 s), with room to spare.
    let guests = |p: &Value| -> Vec<String> {
        p["result"]["participants"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x["guestName"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    };
    let mut names = Vec::new();
    while killed.elapsed() < Duration::from_secs(25) {
        let p = host.call("getRoomParticipants", json!([rid])).await;
        names = guests(&p);
        if names == ["Stays"] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!("guest of the killed node released after {:?}", killed.elapsed());
    assert_eq!(names, ["Stays"], "the dead node's guest is still seated");
    assert!(killed.elapsed() >= Duration::from_secs(3), "released before the node could be known dead");
    let ul = host.room_message(&rid).await;
    assert_eq!(ul["t"], "ul", "{ul}");
    assert_eq!(ul["msg"], "Lost", "{ul}");
}

/// Two users opening their direct-message room at the same moment through
/// two nodes get one room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_direct_message_room_per_pair_across_nodes() {
    let Some((_nats, a, b)) = two_nodes("cb5").await else { return };
    for round in 0..5 {
        let (x, y) = (format!("dmx{round}"), format!("dmy{round}"));
        // Signed in once on each node, both users are known to both.
        for url in [&a.url, &b.url] {
            drop(login(url, &x).await);
            drop(login(url, &y).await);
        }
        let mut cx = login(&a.url, &x).await;
        let mut cy = login(&b.url, &y).await;
        let (rx, ry) = tokio::join!(
            cx.call("createDirectMessage", json!([y])),
            cy.call("createDirectMessage", json!([x]))
        );
        let (ix, iy) = (&rx["result"]["rid"], &ry["result"]["rid"]);
        assert!(ix.is_string(), "{rx}");
        assert_eq!(ix, iy, "round {round}: two rooms for one pair");
    }
}

/// `user-status` counts every node: a user signing in on node B shows as
/// online to a listener on node A; a second connection elsewhere keeps the
/// user online when one closes; the last one closing shows offline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_spans_the_nodes() {
    let Some((_nats, a, b)) = two_nodes("cb6").await else { return };
    let mut watcher = login(&a.url, "watcher").await;
    watcher.sub_ok("stream-notify-logged", json!(["user-status", false])).await;
    let status_of = |f: &Value, uid: &str| -> Option<i64> {
        let args = &f["fields"]["args"][0];
        (f["collection"] == "stream-notify-logged" && args[0] == uid).then(|| args[2].as_i64()).flatten()
    };
    let uid = "id-roamer";
    let on_b = login(&b.url, "roamer").await;
    let f = watcher.expect(|f| status_of(f, uid).is_some()).await;
    assert_eq!(status_of(&f, uid), Some(1), "online through node B: {f}");

    // A second connection on node A, then B's closes: still online.
    let on_a = login(&a.url, "roamer").await;
    on_b.close().await;
    watcher.expect_none(Duration::from_millis(1500), |f| status_of(f, uid).is_some()).await;
    // The last one closes: offline everywhere.
    on_a.close().await;
    let f = watcher.expect(|f| status_of(f, uid).is_some()).await;
    assert_eq!(status_of(&f, uid), Some(0), "{f}");
}

/// A typing notice sent through node A reaches a member listening on node
/// B, once, and not its sender.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_crosses_nodes() {
    let Some((_nats, a, b)) = two_nodes("cb7").await else { return };
    let mut typist = login(&a.url, "typist").await;
    let room = typist.call("createChannel", json!([unique("typing"), []])).await;
    let rid = room["result"]["rid"].as_str().unwrap_or_else(|| panic!("{room}")).to_owned();
    let mut watcher = login(&b.url, "watcher").await;
    assert_eq!(watcher.call("joinRoom", json!([rid])).await["result"], json!(true));
    let ev = format!("{rid}/user-activity");
    typist.sub_ok("stream-notify-room", json!([ev, false])).await;
    watcher.sub_ok("stream-notify-room", json!([ev, false])).await;
    let r = typist.call("stream-notify-room", json!([ev, "typist", ["user-typing"], {}])).await;
    assert!(r.get("error").is_none(), "{r}");
    let f = watcher.event("stream-notify-room", &ev).await;
    assert_eq!(f["fields"]["args"], json!(["typist", ["user-typing"], {}]));
    watcher.expect_none(Duration::from_millis(500), |f| f["collection"] == "stream-notify-room").await;
    typist.expect_none(Duration::from_millis(500), |f| f["collection"] == "stream-notify-room").await;
}

/// A message `_id` used once is refused later on any node, even when it left
/// every replica's history window (within the snapshot interval, see
/// `compaction.rs`); the log holds it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_id_is_refused_twice_however_old_on_any_node() {
    let Some(bin) = nats_or_skip() else { return };
    let dir = tempdir("cb8");
    let nats = start_nats(&bin, &dir);
    let mut a = start_node_with(&nats.url, "a", &["--history-limit", "3"]);
    let mut b = start_node_with(&nats.url, "b", &["--history-limit", "3"]);
    ready(&mut a).await;
    ready(&mut b).await;
    let mut alice = login(&a.url, "alice").await;
    let room = alice.call("createChannel", json!([unique("dupid"), []])).await;
    let rid = room["result"]["rid"].as_str().unwrap_or_else(|| panic!("{room}")).to_owned();
    let mut bob = login(&b.url, "bob").await;
    assert_eq!(bob.call("joinRoom", json!([rid])).await["result"], json!(true));
    let first = alice.call("sendMessage", json!([{"_id": "dup-X", "rid": rid, "msg": "first"}])).await;
    assert!(first.get("error").is_none(), "{first}");
    for i in 0..4 {
        let r = alice.call("sendMessage", json!([{"rid": rid, "msg": format!("filler {i}")}])).await;
        assert!(r.get("error").is_none(), "{r}");
    }
    for c in [&mut alice, &mut bob] {
        let again = c.call("sendMessage", json!([{"_id": "dup-X", "rid": rid, "msg": "again"}])).await;
        assert_eq!(again["error"]["error"], "error-message-already-exists", "{again}");
    }
}

/// Renames across nodes: a name is one room's at a time, and a caller who
/// may not rename cannot take a name away from everyone else by trying.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renames_keep_names_unique_and_refused_ones_claim_nothing() {
    let Some((_nats, a, b)) = two_nodes("cb9").await else { return };
    let mut owner = login(&a.url, "owner").await;
    let first = owner.call("createChannel", json!([unique("ren-a"), []])).await;
    let rid = first["result"]["rid"].as_str().unwrap_or_else(|| panic!("{first}")).to_owned();
    let mut other = login(&b.url, "other").await;
    assert_eq!(other.call("joinRoom", json!([rid])).await["result"], json!(true));
    let wanted = unique("ren-wanted");
    let r = other.call("saveRoomSettings", json!([rid, "roomName", wanted])).await;
    assert!(r["error"].is_object(), "a member who may not edit renamed the room: {r}");
    // The name is still free: another room gets it, through the other node.
    let second = other.call("createChannel", json!([wanted, []])).await;
    assert!(second.get("error").is_none(), "the refused rename kept the name: {second}");
    // And the owner cannot rename into it now.
    let r = owner.call("saveRoomSettings", json!([rid, "roomName", wanted])).await;
    assert_eq!(r["error"]["error"], "error-duplicate-channel-name", "{r}");
}

/// Debian's libfaketime, which shifts a process's wall clock (not its
/// monotonic one). Skips loudly without it, or fails under
/// `ROOMD_REQUIRE_NATS=1` (`scripts/test-all.sh`, whose CI installs it).
fn libfaketime_or_skip(test: &str) -> Option<&'static str> {
    const LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
    if Path::new(LIB).exists() {
        return Some(LIB);
    }
    assert!(
        !std::env::var("ROOMD_REQUIRE_NATS").is_ok_and(|v| v == "1"),
        "{test}: {LIB} missing (apt-get install libfaketime)"
    );
    eprintln!("\n!!! SKIPPED {test}: {LIB} missing (apt-get install libfaketime) !!!\n");
    None
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Issue 17, point 6: node `b`'s wall clock is an hour behind. Messages
/// sent alternately through both nodes still get strictly increasing `ts`
/// in the room's order, none behind the real time, so paging history with
/// `end` = the oldest `ts` of the previous page reaches all 30 once; and a
/// topic changed through `b` shows in `rooms/get(updatedSince)` asked with
/// the real time just before the change. Before the rooms took the
/// stream's clock, `b`'s messages were stamped an hour back and paging hid
/// most of `a`'s (23 of 30), and `updatedSince` missed `b`'s topic change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_clock_is_an_hour_behind_stamps_nothing_behind() {
    let Some(bin) = nats_or_skip() else { return };
    let Some(lib) = libfaketime_or_skip("a_node_whose_clock_is_an_hour_behind_stamps_nothing_behind") else {
        return;
    };
    let nats = start_nats(&bin, &tempdir("cb-skew"));
    let mut a = start_node(&nats.url, "a");
    let skewed = [("LD_PRELOAD", lib), ("FAKETIME", "-3600"), ("FAKETIME_DONT_FAKE_MONOTONIC", "1")];
    let mut b = start_node_env(&nats.url, "b", &[], &skewed);
    ready(&mut a).await;
    ready(&mut b).await;

    let mut alice = login(&a.url, "alice").await;
    let room = alice.call("createChannel", json!([unique("skew"), []])).await;
    let rid = room["result"]["rid"].as_str().unwrap_or_else(|| panic!("{room}")).to_owned();
    let mut bob = login(&b.url, "bob").await;
    let joined = bob.call("joinRoom", json!([rid])).await;
    assert_eq!(joined["result"], json!(true), "{joined}");

    let start = now_ms();
    for i in 0..30 {
        let c = if i % 2 == 0 { &mut alice } else { &mut bob };
        let r = c.call("sendMessage", json!([{"rid": rid, "msg": format!("m{i}")}])).await;
        assert!(r.get("error").is_none(), "m{i}: {r}");
    }

    // `a` answers reads from its own replica, which may be a few
    // milliseconds behind a write through `b` (docs/cluster.md): wait
    // until it has applied the last message before paging.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = alice.call("loadHistory", json!([rid, null, 1, null])).await;
        if r["result"]["messages"][0]["msg"] == "m29" {
            break;
        }
        assert!(Instant::now() < deadline, "node a never applied m29: {r}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Page back through `a` five at a time.
    let (mut end, mut seen) = (Value::Null, Vec::new());
    for _ in 0..20 {
        let r = alice.call("loadHistory", json!([rid, end, 5, null])).await;
        let page = r["result"]["messages"].as_array().unwrap_or_else(|| panic!("{r}")).clone();
        let Some(last) = page.last() else { break };
        end = last["ts"].clone();
        for m in &page {
            if m.get("t").is_none() {
                seen.push((m["msg"].as_str().unwrap().to_owned(), m["ts"]["$date"].as_i64().unwrap()));
            }
        }
    }
    let texts: Vec<&str> = seen.iter().map(|(m, _)| m.as_str()).collect();
    let expected: Vec<String> = (0..30).rev().map(|i| format!("m{i}")).collect();
    assert_eq!(texts, expected, "paging by `end` must reach each message once, newest first");
    assert!(seen.windows(2).all(|w| w[0].1 > w[1].1), "ts not strictly decreasing: {seen:?}");
    let behind: Vec<_> = seen.iter().filter(|(_, ts)| *ts < start - 1_000).collect();
    assert!(behind.is_empty(), "stamped behind the real time (started at {start}): {behind:?}");

    // A topic change through `b`, polled through `a` with the real time.
    let mut alice_on_b = login(&b.url, "alice").await;
    // `updatedSince` is exclusive: a change in the very millisecond the
    // client read its clock would not count as after it.
    let since = now_ms() - 1;
    let r = alice_on_b.call("saveRoomSettings", json!([rid, "roomTopic", "skewed"])).await;
    assert!(r.get("error").is_none(), "{r}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = alice.call("rooms/get", json!([{"$date": since}])).await;
        let update = r["result"]["update"].as_array().unwrap_or_else(|| panic!("{r}"));
        if update.iter().any(|d| d["_id"] == rid.as_str() && d["topic"] == "skewed") {
            break;
        }
        if Instant::now() > deadline {
            let all = alice.call("rooms/get", json!([])).await;
            panic!("rooms/get(updatedSince {since}) never showed b's topic change: {r}\nall: {all}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Slack `channels.join {name}` over HTTP to `http` (`http://host:port`)
/// as user `name`; the JSON answer.
async fn slack_join(http: &str, user: &str, channel: &str) -> Value {
    let addr = http.trim_start_matches("http://").to_owned();
    let token = crate::cluster::nodes::token(&format!("id-{user}"), user, &["user"]);
    let body = format!("name={channel}");
    let reply = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let head = format!(
            "POST /api/channels.join HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    })
    .await
    .unwrap();
    let json = reply.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {reply}"))
}

/// Issue 17.4/17.5 across nodes: concurrent Slack joins of one new name
/// through both nodes, and DDP creations of it in other letter cases, make
/// one room; every joiner is its member, every other creation is refused
/// as a duplicate, and both nodes find the room by name in any case.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_room_per_name_in_any_case_across_nodes() {
    let Some((_nats, a, b)) = two_nodes("cb10").await else { return };
    const JOINERS: usize = 10;
    let name = unique("xcase").to_lowercase();
    let mut tasks = Vec::new();
    for i in 0..JOINERS {
        let (http, name) = (if i % 2 == 0 { &a.http } else { &b.http }.clone(), name.clone());
        tasks.push(tokio::spawn(async move { (true, slack_join(&http, &format!("xj{i}"), &name).await) }));
    }
    for i in 0..4 {
        let url = if i % 2 == 0 { a.url.clone() } else { b.url.clone() };
        let spelled = if i < 2 { name.to_uppercase() } else { format!("X{}", &name[1..]) };
        tasks.push(tokio::spawn(async move {
            let mut c = login(&url, &format!("xc{i}")).await;
            (false, c.call("createChannel", json!([spelled])).await)
        }));
    }
    let mut rids = std::collections::HashSet::new();
    let mut ddp_won = 0;
    for t in tasks {
        let (joiner, r) = tokio::time::timeout(Duration::from_secs(40), t).await.expect("answered").unwrap();
        if joiner {
            assert_eq!(r["ok"], true, "{r}");
            rids.insert(r["channel"]["id"].as_str().unwrap().to_owned());
        } else if r.get("error").is_some() {
            assert_eq!(r["error"]["error"], "error-duplicate-channel-name", "{r}");
        } else {
            ddp_won += 1;
            rids.insert(r["result"]["_id"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(rids.len(), 1, "one room: {rids:?}");
    let rid = rids.into_iter().next().unwrap();
    for node in [&a, &b] {
        let mut c = login(&node.url, "xlooker").await;
        assert_eq!(c.call("getRoomIdByNameOrId", json!([name.to_uppercase()])).await["result"], rid.as_str());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let doc = c.call("getRoomById", json!([rid])).await;
            // The joiners, and a DDP creator if one won the name.
            let members = doc["result"]["usersCount"].as_u64().unwrap_or(0) as usize;
            if members == JOINERS + ddp_won {
                break;
            }
            assert!(Instant::now() < deadline, "every joiner a member on every node: {doc}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

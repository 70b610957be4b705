//! Issue 17, points 8–10: a cluster node that is not ready never answers
//! wrongly and never hangs, the stream and NATS limits are checked at
//! start, and a retried leave succeeds. One `nats-server` (JetStream, one
//! replica) per test and real roomd processes.

use super::exclusive;
use super::nats::{NatsConn, Reply, nats_or_skip};
use super::nodes::{SECRET, user};
use crate::proc::{Guarded, Roomd, RoomdCmd, free_ports, http_get, tempdir};
use serde_json::json;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One `nats-server -js` on `port` (a config file when `conf` has extra
/// lines), storing under `dir`.
struct Nats {
    _proc: Guarded,
    port: u16,
}

impl Nats {
    fn start(bin: &Path, dir: &Path, port: u16, extra_conf: &str) -> Nats {
        let store = dir.join("store");
        std::fs::create_dir_all(&store).unwrap();
        let conf = dir.join("nats.conf");
        std::fs::write(
            &conf,
            format!(
                "listen: \"127.0.0.1:{port}\"\njetstream {{\n  store_dir: \"{}\"\n}}\n{extra_conf}\n",
                store.display()
            ),
        )
        .unwrap();
        let proc = Guarded::spawn(
            Command::new(bin)
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
            Some(dir),
        )
        .expect("spawn nats-server");
        let end = Instant::now() + Duration::from_secs(10);
        while NatsConn::connect(port).is_err() {
            assert!(Instant::now() < end, "nats-server did not start on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Nats { _proc: proc, port }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

/// A roomd process in cluster mode (its address known), its log kept for
/// assertions.
fn start(nats_url: &str, node: &str, dir: &Path, extra: &[&str]) -> Roomd {
    RoomdCmd::server()
        .arg("--no-rate-limits")
        .data_dir(dir)
        .args(["--cluster", nats_url, "--node-id", node, "--cluster-replicas", "1"])
        .args(extra)
        .env("ROOMD_JWT_SECRET", SECRET)
        .start()
}

/// One raw HTTP/1.1 request; status, head and body (`None`: no answer
/// within a second).
fn http_raw(addr: SocketAddr, request: &str) -> Option<(u16, String, String)> {
    let t = Duration::from_secs(1);
    let mut s = TcpStream::connect_timeout(&addr, t).ok()?;
    s.set_read_timeout(Some(t)).ok()?;
    s.write_all(request.replace("{addr}", &addr.to_string()).as_bytes()).ok()?;
    let mut buf = Vec::new();
    // A `101` keeps the socket open: whatever came within the timeout.
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Some((status, head.to_ascii_lowercase(), body.to_owned()))
}

const UPGRADE: &str = "GET /websocket HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                       Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
const SOCKETIO: &str = "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: {addr}\r\n\r\n";
const REST: &str = "GET /api/v1/rooms.info?roomId=x HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n";

/// The documented refusal of a node that is not ready: `503` with
/// `Retry-After`.
fn refused(answer: &Option<(u16, String, String)>) -> bool {
    matches!(answer, Some((503, head, _)) if head.contains("\r\nretry-after: "))
}

fn scratch(tag: &str) -> PathBuf {
    tempdir(&format!("ready-{tag}"))
}

/// Point 9: the port answers from the first moment while NATS is not
/// there, the node gives up after `--cluster-start-timeout` with status 1
/// and says why; a node whose NATS comes up later becomes ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_waiting_for_nats_answers_probes_then_gives_up_or_starts() {
    let Some(bin) = nats_or_skip("a_node_waiting_for_nats_answers_probes_then_gives_up_or_starts") else {
        return;
    };
    let _turn = exclusive().await;
    let dir = scratch("wait");
    let ports = free_ports(2);
    let (nowhere, later) = (format!("nats://127.0.0.1:{}", ports[0]), ports[1]);

    let t0 = Instant::now();
    let mut gives_up = start(&nowhere, "w1", &dir.join("w1"), &["--cluster-start-timeout", "3s"]);
    let later_url = format!("nats://127.0.0.1:{later}");
    let mut starts = start(&later_url, "w2", &dir.join("w2"), &["--cluster-start-timeout", "30s"]);
    for node in [&gives_up, &starts] {
        let health = http_get(node.addr(), "/healthz");
        assert_eq!(health, Some((200, "ok\n".into())), "healthz while waiting for NATS");
        let (status, body) = http_get(node.addr(), "/readyz").expect("readyz answers while waiting for NATS");
        assert_eq!(status, 503, "{body}");
        assert!(body.starts_with("waiting for NATS at nats://127.0.0.1:"), "{body}");
        let ws = http_raw(node.addr(), UPGRADE);
        assert!(refused(&ws), "a WebSocket while waiting for NATS: {ws:?}");
        let rest = http_raw(node.addr(), REST);
        assert!(refused(&rest), "REST while waiting for NATS: {rest:?}");
    }
    eprintln!("probes answered {} ms after two nodes started without NATS", t0.elapsed().as_millis());

    let st = gives_up.exit_status(Duration::from_secs(15)).await;
    assert_eq!(st.code(), Some(1), "exit status after the start deadline:\n{}", gives_up.log().all());
    let logs = gives_up.log().all();
    assert!(
        logs.contains("cannot start in cluster mode") && logs.contains("--cluster-start-timeout"),
        "the exit says why:\n{logs}"
    );
    assert!(t0.elapsed() < Duration::from_secs(12), "gave up after {:?}", t0.elapsed());

    // The happy path: NATS comes up while the second node waits.
    let nats = Nats::start(bin, &dir.join("nats"), later, "");
    starts.ready(Duration::from_secs(20)).await;
    let mut c = user(&starts.url(), "waiter").await;
    let r = c.ok("createChannel", json!([crate::support::unique("w"), [], false])).await;
    assert!(r["rid"].is_string(), "{r}");
    drop(nats);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Point 8: a node started on a long log answers no call from partial
/// state. While it replays, DDP, Socket.IO and REST are refused with `503`
/// and `Retry-After`; every call it answers finds the room created last
/// and the newest message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaying_node_refuses_clients_until_it_has_caught_up() {
    let Some(bin) = nats_or_skip("a_replaying_node_refuses_clients_until_it_has_caught_up") else { return };
    let _turn = exclusive().await;
    let dir = scratch("replay");
    let nats = Nats::start(bin, &dir.join("nats"), free_ports(1)[0], "");
    // One partition: the flood below writes straight into `ROOMLOG`.
    let mut a = start(&nats.url(), "a", &dir.join("a"), &["--cluster-partitions", "1"]);
    a.ready(Duration::from_secs(20)).await;
    let mut alice = user(&a.url(), "replay-alice").await;
    let busy = alice.ok("createChannel", json!([crate::support::unique("busy"), [], false])).await["rid"]
        .as_str()
        .unwrap()
        .to_owned();

    // 30,000 messages straight into the room's log (pipelined publishes:
    // much faster than through a node).
    const FLOOD: usize = 30_000;
    let t0 = Instant::now();
    flood(nats.port, &busy, "id-replay-alice", "replay-alice", FLOOD);
    let flooded = t0.elapsed();
    // Node a applies them too before it answers anything after them.
    let end = Instant::now() + Duration::from_secs(60);
    while applied(a.addr()) < FLOOD as u64 {
        assert!(Instant::now() < end, "node a did not apply the flood: {}", applied(a.addr()));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Then, late in the log: a new room and a last message.
    let late_name = crate::support::unique("late");
    let late =
        alice.ok("createChannel", json!([late_name, [], false])).await["rid"].as_str().unwrap().to_owned();
    let last = alice.ok("sendMessage", json!([{"rid": busy, "msg": "the last one"}])).await;
    eprintln!(
        "{FLOOD} entries published in {} ms; node a caught up {} ms later",
        flooded.as_millis(),
        (t0.elapsed() - flooded).as_millis()
    );

    let t1 = Instant::now();
    let b = start(&nats.url(), "b", &dir.join("b"), &[]);
    let (mut refusals, mut answered) = (0, 0);
    let mut refused_doors = [false; 3];
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < end, "b never answered:\n{}", b.log().all());
        let ready = matches!(http_get(b.addr(), "/readyz"), Some((200, _)));
        let probes = [http_raw(b.addr(), UPGRADE), http_raw(b.addr(), SOCKETIO), http_raw(b.addr(), REST)];
        for (i, p) in probes.iter().enumerate() {
            if refused(p) {
                refusals += 1;
                // Before NATS answers the node says it is starting; only
                // the replay's own refusal shows the replay is guarded.
                let body = &p.as_ref().unwrap().2;
                if body == "replaying the room log; retry shortly\n" {
                    refused_doors[i] = true;
                } else {
                    assert!(body.starts_with("starting (waiting for NATS at "), "{body}");
                }
            }
        }
        // Whatever DDP answers must be right.
        if let Some(mut c) = super::nodes::try_user(&b.url(), "replay-alice").await {
            let doc = c.call("getRoomById", json!([late])).await;
            assert_eq!(doc["result"]["name"], late_name.as_str(), "b answered from a partial replica: {doc}");
            let h = c.call("loadHistory", json!([busy, null, 1, null])).await;
            assert_eq!(
                h["result"]["messages"][0]["_id"], last["_id"],
                "b's loadHistory answered from a partial replica: {h}"
            );
            answered += 1;
            if ready {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!(
        "b: {refusals} refusals (ws, socket.io, rest: {refused_doors:?}), first answer {} ms after start, {answered} right answers",
        t1.elapsed().as_millis()
    );
    assert!(
        refused_doors.iter().all(|r| *r),
        "every door refused while replaying: {refused_doors:?}\n{}",
        b.log().all()
    );
    drop(alice);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The stream sequence a node has applied (`/metrics`).
fn applied(addr: SocketAddr) -> u64 {
    let Some((200, body)) = http_get(addr, "/metrics") else { return 0 };
    body.lines()
        .find_map(|l| l.strip_prefix("roomd_cluster_applied_sequence{stream=\"ROOMLOG\"} "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// `n` `sendMessage` entries by `uid` into room `rid`'s log, as pipelined
/// publishes, then waits until the stream holds them.
fn flood(port: u16, rid: &str, uid: &str, username: &str, n: usize) {
    let mut w = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut r = BufReader::new(w.try_clone().unwrap());
    let mut info = String::new();
    r.read_line(&mut info).unwrap();
    w.write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"protocol\":1}\r\n").unwrap();
    let now = roomd::time::Millis::now().0;
    let mut buf = Vec::with_capacity(1 << 20);
    for i in 0..n {
        let entry = json!({
            "id": format!("flood-{rid}-{i}"),
            "origin": "flooder/x",
            "now": now,
            "op": {"op": "send", "who": {"id": uid, "username": username}, "id": format!("flood-{i}"),
                   "msg": format!("message {i}"), "tmid": null},
        })
        .to_string();
        buf.extend_from_slice(format!("PUB roomlog.{rid} {}\r\n{entry}\r\n", entry.len()).as_bytes());
        if buf.len() > 512 * 1024 {
            w.write_all(&buf).unwrap();
            buf.clear();
        }
    }
    buf.extend_from_slice(b"PING\r\n");
    w.write_all(&buf).unwrap();
    r.get_ref().set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    loop {
        let mut l = String::new();
        assert!(r.read_line(&mut l).unwrap() > 0, "NATS closed the flood connection");
        assert!(!l.starts_with("-ERR"), "{l}");
        if l.starts_with("PONG") {
            break;
        }
    }
    drop(w);
    // Core publishes are stored asynchronously: wait for the count.
    let mut c = NatsConn::connect(port).unwrap();
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let info = match c.request("$JS.API.STREAM.INFO.ROOMLOG", &[], b"", Duration::from_secs(5)).unwrap() {
            Reply::Json(v) => v,
            Reply::Status(s) => panic!("stream info: status {s}"),
        };
        if info["state"]["messages"].as_u64().unwrap_or(0) >= n as u64 {
            return;
        }
        assert!(Instant::now() < end, "the stream never held the flood: {info}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Point 10(b): an existing stream whose duplicate window is shorter than
/// the append retry deadline stops the node with a message saying what to
/// do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_duplicate_window_stops_the_node() {
    let Some(bin) = nats_or_skip("a_short_duplicate_window_stops_the_node") else { return };
    let _turn = exclusive().await;
    let dir = scratch("dupe");
    let nats = Nats::start(bin, &dir.join("nats"), free_ports(1)[0], "");
    let mut c = NatsConn::connect(nats.port).unwrap();
    let cfg = json!({
        "name": "ROOMLOG", "subjects": ["roomlog.>", "roomname.>", "roomfacts.>"], "storage": "file",
        "num_replicas": 1, "duplicate_window": 5_000_000_000u64, "allow_direct": true,
    });
    let created = c
        .request("$JS.API.STREAM.CREATE.ROOMLOG", &[], cfg.to_string().as_bytes(), Duration::from_secs(10))
        .unwrap();
    assert!(
        matches!(&created, Reply::Json(v) if v["config"]["duplicate_window"] == 5_000_000_000u64),
        "{created:?}"
    );
    let mut node = start(&nats.url(), "d", &dir.join("d"), &["--cluster-start-timeout", "10s"]);
    let st = node.exit_status(Duration::from_secs(10)).await;
    assert_eq!(st.code(), Some(1), "{}", node.log().all());
    let logs = node.log().all();
    assert!(logs.contains("duplicate_window is 5s") && logs.contains("--dupe-window 2m"), "{logs}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Point 10(a): servers with a small `max_payload` get a warning at start,
/// and a message whose entry does not fit is refused with
/// `error-request-too-large`; smaller ones still go through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_over_max_payload_is_refused_with_a_code() {
    let Some(bin) = nats_or_skip("an_entry_over_max_payload_is_refused_with_a_code") else { return };
    let _turn = exclusive().await;
    let dir = scratch("payload");
    let nats = Nats::start(bin, &dir.join("nats"), free_ports(1)[0], "max_payload: 16384");
    let mut node = start(&nats.url(), "p", &dir.join("p"), &["--max-message-len", "40000"]);
    node.ready(Duration::from_secs(20)).await;
    let logs = node.log().all();
    assert!(
        logs.contains("max_payload (16384 bytes) is smaller than the largest log entry"),
        "the start warns about max_payload:\n{logs}"
    );
    let mut c = user(&node.url(), "payload-user").await;
    let rid = c.ok("createChannel", json!([crate::support::unique("big"), [], false])).await["rid"]
        .as_str()
        .unwrap()
        .to_owned();
    let e = c.err("sendMessage", json!([{"rid": rid, "msg": "x".repeat(20_000)}])).await;
    assert_eq!(e["error"], "error-request-too-large", "{e}");
    assert_eq!(e["reason"], "Request exceeds 16384 bytes", "{e}");
    assert_eq!(e["details"]["maxBytes"], 16384, "{e}");
    let ok = c.ok("sendMessage", json!([{"rid": rid, "msg": "x".repeat(10_000)}])).await;
    assert_eq!(ok["msg"].as_str().map(str::len), Some(10_000));
    drop(nats);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Point 10(c): a leave that landed, whose node died before the caller
/// heard the answer, succeeds when retried through another node, and the
/// room is as after one leave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leave_retried_on_another_node_after_a_kill_succeeds() {
    let Some(bin) = nats_or_skip("a_leave_retried_on_another_node_after_a_kill_succeeds") else { return };
    let _turn = exclusive().await;
    let dir = scratch("leave");
    let nats = Nats::start(bin, &dir.join("nats"), free_ports(1)[0], "");
    let mut a = start(&nats.url(), "la", &dir.join("a"), &[]);
    let mut b = start(&nats.url(), "lb", &dir.join("b"), &[]);
    a.ready(Duration::from_secs(20)).await;
    b.ready(Duration::from_secs(20)).await;
    let mut owner = user(&b.url(), "leave-owner").await;
    let rid = owner.ok("createChannel", json!([crate::support::unique("leave"), [], false])).await["rid"]
        .as_str()
        .unwrap()
        .to_owned();
    owner.sub_ok("stream-room-messages", json!([rid, false])).await;
    let mut bob = user(&a.url(), "leave-bob").await;
    bob.ok("joinRoom", json!([rid])).await;
    // Bob's leave lands (the owner on b hears its `ul`); then a dies and
    // bob, who never read the answer, retries on b.
    bob.send_method("leaveRoom", json!([rid])).await;
    let ul = loop {
        let m = owner.room_message(&rid).await;
        if m["t"] == "ul" {
            break m;
        }
    };
    assert_eq!(ul["u"]["username"], "leave-bob");
    a.kill9();
    let mut bob = user(&b.url(), "leave-bob").await;
    let r = bob.call("leaveRoom", json!([rid])).await;
    assert!(r.get("error").is_none(), "the retried leave must succeed: {r}");
    assert_eq!(owner.room(&rid).await["usersCount"], 1);
    owner.expect_none(Duration::from_millis(300), |f| f["fields"]["args"][0]["t"] == "ul").await;
    drop(nats);
    let _ = std::fs::remove_dir_all(&dir);
}

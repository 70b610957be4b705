//! Memory a client can pin and limits the kernel hits first: unread
//! replies stay within the per-connection and server-wide unsent-byte
//! budgets, a socket that accepts nothing is cut after the write-stall
//! timeout (pongs or not), and the real binary under a low open-files limit
//! refuses extra connections with 1013 while `/healthz` keeps answering.

use crate::http::{get, sample};
use crate::support::*;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;

const PER_CONN: usize = 256 * 1024;
const SERVER: usize = 768 * 1024;
const ATTACKERS: usize = 6;

#[tokio::test]
async fn unread_history_replies_stay_within_the_byte_budgets_and_are_cut_with_4001() {
    let s = TestServer::with_limits(|l| {
        l.max_queued_bytes_per_conn = PER_CONN;
        l.max_queued_bytes = SERVER;
        l.write_stall_timeout = Duration::from_millis(300);
    })
    .await;
    let mut alice = s.user("alice").await;
    let rid = channel(&mut alice, json!({})).await["_id"].as_str().unwrap().to_owned();
    let long = "x".repeat(4000);
    for _ in 0..60 {
        alice.ok("sendMessage", json!([{"rid": rid, "msg": long}])).await;
    }
    // A page stops at half the connection budget (one message past it at
    // most), and says so by returning fewer than asked.
    let page = alice.ok("loadHistory", json!([rid, null, 1000, null])).await;
    let n = page["messages"].as_array().unwrap().len();
    assert!((20..60).contains(&n), "page of {n} messages");
    assert!(page.to_string().len() <= PER_CONN / 2 + 8 * 1024, "page of {} bytes", page.to_string().len());

    let mut attackers = Vec::new();
    for i in 0..ATTACKERS {
        let mut c = s.user(&format!("reader-never-{i}")).await;
        c.ok("joinRoom", json!([rid])).await;
        attackers.push(c);
    }
    // Sample the server-wide unsent bytes throughout the attack.
    let state = s.state.clone();
    let peak = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn({
        let (peak, done) = (peak.clone(), done.clone());
        async move {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(state.queued_bytes(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        }
    });
    // Each asks for far more history than the kernel buffers hold, never
    // reads, and keeps sending pings and pongs (it is alive, just not
    // reading).
    for c in &mut attackers {
        for _ in 0..60 {
            let call = json!({"msg": "method", "method": "loadHistory", "id": unique("h"), "params": [rid, null, 1000, null]});
            assert!(c.try_send(call).await);
            assert!(c.try_send(json!({"msg": "pong"})).await);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let cut = sample(&s.state.render_metrics(), "roomd_slow_consumer_disconnects_total").unwrap_or(0.0);
        if cut as usize == ATTACKERS {
            break;
        }
        assert!(Instant::now() < deadline, "only {cut} of {ATTACKERS} non-reading clients were cut");
        for c in &mut attackers {
            let _ = tokio::time::timeout(Duration::from_millis(5), c.try_send(json!({"msg": "ping"}))).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let closes = futures_util::future::join_all(attackers.iter_mut().map(|c| c.closed())).await;
    for close in closes {
        assert_eq!(close, Some((4001, "slow consumer, reconnect".to_owned())));
    }
    done.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    let peak = peak.load(Ordering::Relaxed);
    assert!(peak <= SERVER, "unsent bytes peaked at {peak}, over the server budget {SERVER}");
    assert!(peak > PER_CONN, "the attack never queued much ({peak} bytes): it tested nothing");
    // Everything the attackers held is given back, and the room still works.
    let deadline = Instant::now() + WAIT;
    while s.state.queued_bytes() != 0 {
        assert!(Instant::now() < deadline, "unsent bytes never released");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    alice.ok("sendMessage", json!([{"rid": rid, "msg": "still here"}])).await;
    let body = get(s.addr, "/metrics").await.body;
    assert_eq!(sample(&body, "roomd_outbound_queued_bytes"), Some(0.0), "{body}");
}

#[tokio::test]
async fn a_result_larger_than_the_connection_budget_is_refused_with_a_code() {
    let s = TestServer::with_limits(|l| l.max_queued_bytes_per_conn = 2048).await;
    let mut alice = s.user("alice").await;
    // `rooms.get` has no page size: with enough rooms its result outgrows
    // a tiny budget.
    for _ in 0..20 {
        channel(&mut alice, json!({})).await;
    }
    let err = alice.call("rooms/get", json!([])).await["error"].clone();
    assert_eq!(err["error"], "error-reply-too-large", "{err}");
    assert_eq!(err["details"]["maxBytes"].as_u64().map(|n| n <= 2048), Some(true), "{err}");
    // The connection stays usable.
    channel(&mut alice, json!({})).await;
}

/// Starts the real binary under `ulimit -n {files}`; returns it, its
/// WebSocket URL and its stderr lines so far (up to the listening line).
fn start_with_open_files(files: u32) -> (KillOnDrop, String, Vec<String>) {
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -n {files} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_roomd"))
        .args(["--listen", "127.0.0.1:0", "--in-memory", "--no-rate-limits"])
        .env("ROOMD_JWT_SECRET", "test-secret")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn roomd");
    let mut child = KillOnDrop(child);
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    loop {
        let line = rx.recv_timeout(Duration::from_secs(20)).expect("roomd did not report its address");
        lines.push(line.clone());
        if let Some(i) = line.find("ws://") {
            let rest = &line[i..];
            let end = rest.find("/websocket").map(|e| e + "/websocket".len()).unwrap_or(rest.len());
            return (child, rest[..end].to_owned(), lines);
        }
    }
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn under_a_low_open_files_limit_extra_connections_get_1013_and_healthz_answers() {
    let (_roomd, url, lines) = start_with_open_files(256);
    // 256 files less the reserve; logged at start.
    let limit_line =
        lines.iter().find(|l| l.contains("open-files limit")).unwrap_or_else(|| panic!("{lines:?}"));
    assert!(limit_line.contains("max_connections=192"), "{limit_line}");
    let addr: std::net::SocketAddr =
        url.trim_start_matches("ws://").trim_end_matches("/websocket").parse().unwrap();
    let mut open = Vec::new();
    for _ in 0..192 {
        let mut c = Client::open(&url).await;
        c.connect().await;
        open.push(c);
    }
    for _ in 0..3 {
        let mut c = Client::open(&url).await;
        let close = c.closed().await;
        assert_eq!(close, Some((1013, "too many connections, try again later".to_owned())));
    }
    // The reserve keeps health and metrics answering at the limit.
    assert_eq!(get(addr, "/healthz").await.status, 200);
    let body = get(addr, "/metrics").await.body;
    assert_eq!(sample(&body, "roomd_connections{kind=\"guest\"}"), Some(192.0), "{body}");
    // Existing connections are unaffected.
    open[0].assert_alive().await;
}

//! Graceful shutdown: clients are told "server restarting" (1012), replies
//! are never cut in half, readyz turns 503 and new WebSockets are refused
//! while draining, and `run` returns within its deadline even when a client
//! is stuck.

use crate::http::get;
use crate::support::*;
use roomd::durability::fake::FakeDurability;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Stops `s` in the background; the handle yields how long `run` took to
/// return (`TestServer::stop` gives up after 15 s, which fails the bounds
/// the tests check).
fn stop_in_background(s: TestServer) -> tokio::task::JoinHandle<Duration> {
    tokio::spawn(async move {
        let t0 = Instant::now();
        s.stop().await;
        t0.elapsed()
    })
}

#[tokio::test]
async fn clients_are_closed_with_1012_and_run_returns_promptly() {
    let s = TestServer::with_limits(|l| l.shutdown_timeout = Duration::from_secs(3)).await;
    let mut user = s.user("alice").await;
    let rid = channel(&mut user, json!({})).await["_id"].as_str().unwrap().to_owned();
    user.sub_ok("stream-room-messages", json!([rid, false])).await;
    let mut guest = s.guest().await;
    // Not even DDP-connected yet.
    let mut raw = Client::open(&s.url()).await;
    let took = stop_in_background(s);
    for c in [&mut user, &mut guest, &mut raw] {
        let (code, reason) = c.closed().await.expect("close frame");
        assert_eq!((code, reason.as_str()), (1012, "server restarting, reconnect"));
    }
    let took = took.await.unwrap();
    assert!(took < Duration::from_secs(2), "run took {took:?} with cooperative clients");
}

#[tokio::test]
async fn calls_in_flight_at_shutdown_are_answered_whole() {
    // Every commit takes 500 ms, so when shutdown begins (right after the
    // first reply) exactly one call is in flight, however loaded the
    // machine is: with instant commits, a busy scheduler could let the
    // session answer several before the shutdown signal lands.
    let fake = Arc::new(FakeDurability::new());
    let s = TestServer::with_durability(fake.clone(), |l| l.shutdown_timeout = Duration::from_secs(3)).await;
    let mut c = s.user("alice").await;
    let rid = channel(&mut c, json!({})).await["_id"].as_str().unwrap().to_owned();
    fake.set_delay(Duration::from_millis(500), Duration::from_millis(500));
    let mut ids = Vec::new();
    for i in 0..200 {
        ids.push(c.send_method("sendMessage", json!([{"rid": rid, "msg": format!("m{i}")}])).await);
    }
    // Shut down while the calls are being processed.
    c.result_of(&ids[0]).await;
    let took = stop_in_background(s);
    assert!(!c.stays_open(Duration::from_secs(5)).await, "never closed");
    // Up to the close: results in call order, each followed by its
    // `updated`; the call being handled when shutdown began is answered.
    let frames: Vec<Value> = c.take_pending();
    let replies: Vec<&Value> =
        frames.iter().filter(|f| f["msg"] == "result" || f["msg"] == "updated").collect();
    assert_eq!(replies.len() % 2, 0, "a result without its updated: {replies:?}");
    for (pair, id) in replies.chunks(2).zip(&ids[1..]) {
        assert_eq!(pair[0]["msg"], "result", "{pair:?}");
        assert_eq!(pair[0]["id"], id.as_str(), "{pair:?}");
        assert!(pair[0].get("error").is_none(), "{pair:?}");
        assert_eq!(pair[1]["methods"][0], id.as_str(), "{pair:?}");
    }
    // No new call is started once the close began: at most the one in
    // flight was answered.
    assert!(replies.len() <= 2, "calls started after shutdown began: {}", replies.len() / 2);
    took.await.unwrap();
}

#[tokio::test]
async fn draining_server_answers_readyz_503_and_returns_by_the_deadline() {
    let s = TestServer::with_limits(|l| {
        l.shutdown_timeout = Duration::from_millis(1500);
        // Big enough that the stuck client is never cut as a slow consumer.
        l.outbound_queue = 100_000;
        l.max_queued_bytes_per_conn = 64 << 20;
        l.write_stall_timeout = Duration::from_secs(60);
    })
    .await;
    let addr = s.addr;
    let url = s.url();
    let mut sender = s.user("alice").await;
    let rid = channel(&mut sender, json!({})).await["_id"].as_str().unwrap().to_owned();
    let mut stuck = s.user("stuck").await;
    stuck.ok("joinRoom", json!([rid])).await;
    stuck.sub_ok("stream-room-messages", json!([rid, false])).await;
    // Fill the stuck client's socket buffers (it never reads), so its
    // connection cannot finish closing on its own.
    let text = "y".repeat(4000);
    for _ in 0..40 {
        let mut ids = Vec::new();
        for _ in 0..50 {
            ids.push(sender.send_method("sendMessage", json!([{"rid": rid, "msg": text}])).await);
        }
        for id in ids {
            sender.result_of(&id).await;
        }
    }
    let took = stop_in_background(s);
    sender.closed().await;
    let r = get(addr, "/readyz").await;
    assert_eq!((r.status, r.body.as_str()), (503, "shutting down\n"));
    assert_eq!(get(addr, "/healthz").await.status, 200);
    match tokio_tungstenite::connect_async(url.as_str()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status().as_u16(), 503),
        other => panic!("a new WebSocket during shutdown: {:?}", other.map(|_| ())),
    }
    let took = took.await.unwrap();
    // The stuck client held the drain open until the deadline, no longer.
    assert!(took >= Duration::from_millis(1200), "the stuck client did not hold the drain: {took:?}");
    assert!(took < Duration::from_millis(3000), "run ignored its deadline: {took:?}");
    drop(stuck);
}

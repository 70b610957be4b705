//! Rooms under slow and failing commits, through the durability seam's
//! fake: replies and events wait for their commit and never overtake those
//! of earlier commands; a failed commit answers an internal error and
//! publishes nothing.

use crate::support::{Client, TestServer, WAIT, assert_error, channel};
use roomd::durability::fake::FakeDurability;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

const SENDERS: usize = 3;
const PER_SENDER: usize = 8;

/// What one connection saw, in arrival order: `Event(id)` for a user
/// message on the room stream, `Result(id)` for the reply to its own
/// `sendMessage` of message `id`.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Event(String),
    Result(String),
}

/// Reads until every one of `mine` is answered and `total` user messages
/// were seen on the stream. Every read is bounded by the harness timeout.
async fn record(c: &mut Client, calls: &HashMap<String, String>, total: usize) -> Vec<Seen> {
    let mut seen = Vec::new();
    let (mut results, mut events) = (0, 0);
    while results < calls.len() || events < total {
        let f = c.next_frame().await;
        if f["msg"] == "result" {
            let call = f["id"].as_str().unwrap_or_default();
            assert!(f.get("error").is_none(), "{f}");
            seen.push(Seen::Result(calls[call].clone()));
            results += 1;
        } else if f["msg"] == "changed" && f["collection"] == "stream-room-messages" {
            let m = &f["fields"]["args"][0];
            if m.get("t").is_none() {
                seen.push(Seen::Event(m["_id"].as_str().unwrap().to_owned()));
                events += 1;
            }
        }
    }
    seen
}

/// The user-message events in `seen`, in arrival order.
fn events(seen: &[Seen]) -> impl Iterator<Item = String> + '_ {
    seen.iter().filter_map(|s| if let Seen::Event(id) = s { Some(id.clone()) } else { None })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_and_events_keep_command_order_under_slow_commits() {
    let fake = Arc::new(FakeDurability::new());
    let s = TestServer::with_durability(fake.clone(), |_| {}).await;
    let mut owner = s.user("c-owner").await;
    let rid = channel(&mut owner, json!({})).await["_id"].as_str().unwrap().to_owned();
    let mut watcher = s.user("c-watcher").await;
    watcher.ok("joinRoom", json!([rid])).await;
    watcher.sub_ok("stream-room-messages", json!([rid, false])).await;
    let mut senders = Vec::new();
    for i in 0..SENDERS {
        let mut c = s.user(&format!("c-sender{i}")).await;
        c.ok("joinRoom", json!([rid])).await;
        c.sub_ok("stream-room-messages", json!([rid, false])).await;
        senders.push(c);
    }
    // From here on every commit takes 50–200 ms, drawn per batch, so
    // batches of different commands finish in an order unlike the order
    // they were made in.
    fake.set_delay(Duration::from_millis(50), Duration::from_millis(200));
    let before = fake.appended();
    let total = SENDERS * PER_SENDER;
    let mut tasks = Vec::new();
    for (i, mut c) in senders.into_iter().enumerate() {
        let rid = rid.clone();
        tasks.push(tokio::spawn(async move {
            let mut calls = HashMap::new();
            for k in 0..PER_SENDER {
                let id = format!("s{i}m{k}xxxxxxxxxxxx");
                let call = c.send_method("sendMessage", json!([{"_id": id, "rid": rid, "msg": id}])).await;
                calls.insert(call, id);
            }
            record(&mut c, &calls, total).await
        }));
    }
    let watched = record(&mut watcher, &HashMap::new(), total).await;
    let mut per_sender = Vec::new();
    for t in tasks {
        per_sender.push(tokio::time::timeout(WAIT * 4, t).await.expect("sender timed out").unwrap());
    }
    assert!(fake.appended() >= before + total, "every message went through the fake");

    // The order the room decided: its history, oldest first.
    let hist = owner.ok("loadHistory", json!([rid, null, 1000, null])).await;
    let decided: Vec<String> = hist["messages"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .filter(|m| m.get("t").is_none())
        .map(|m| m["_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(decided.len(), total);
    assert_eq!(events(&watched).collect::<Vec<_>>(), decided, "events out of command order");
    for seen in &per_sender {
        assert_eq!(events(seen).collect::<Vec<_>>(), decided, "events out of command order");
        // A reply comes after the events of every earlier command (its own
        // message included), however fast its own commit was. (Events of
        // later commands may come before it: replies pass through the
        // caller's session task, events do not.)
        for (pos, s) in seen.iter().enumerate() {
            if let Seen::Result(id) = s {
                let at = decided.iter().position(|d| d == id).unwrap();
                let delivered = events(&seen[..pos]).count();
                assert!(delivered > at, "reply to {id} overtook earlier events: {seen:?}");
            }
        }
    }
}

#[tokio::test]
async fn a_failed_commit_answers_internal_error_and_publishes_nothing() {
    let fake = Arc::new(FakeDurability::new());
    let s = TestServer::with_durability(fake.clone(), |_| {}).await;
    let mut alice = s.user("f-alice").await;
    let rid = channel(&mut alice, json!({})).await["_id"].as_str().unwrap().to_owned();
    let mut bob = s.user("f-bob").await;
    bob.ok("joinRoom", json!([rid])).await;
    bob.sub_ok("stream-room-messages", json!([rid, false])).await;

    fake.fail_next(1);
    let e = alice.err("sendMessage", json!([{"_id": "failedMessage0001", "rid": rid, "msg": "lost"}])).await;
    assert_error(&e, "error-internal", "Internal server error");
    assert_eq!(fake.failed(), 1);
    let is_lost = |f: &Value| f["fields"]["args"][0]["_id"] == "failedMessage0001";
    bob.expect_none(Duration::from_millis(300), is_lost).await;

    // A failed join publishes no join either.
    let mut carol = s.user("f-carol").await;
    fake.fail_next(1);
    let e = carol.err("joinRoom", json!([rid])).await;
    assert_error(&e, "error-internal", "Internal server error");
    bob.expect_none(Duration::from_millis(300), |f| f["fields"]["args"][0]["t"] == "uj").await;

    // The room and the server carry on: the next commit is published.
    let ok = alice.ok("sendMessage", json!([{"rid": rid, "msg": "kept"}])).await;
    let m = bob.room_message(&rid).await;
    assert_eq!(m["_id"], ok["_id"]);
    assert!(bob.take_pending().iter().all(|f| !is_lost(f)));
    let mut late = s.user("f-late").await;
    late.ok("joinRoom", json!([rid])).await;
}

//! Issue 20 on one node, over real sockets: every room event carries its
//! position `seq`, and a Socket.IO socket that comes back with
//! `join-room {since}` receives what it missed, once and in order, before
//! the live stream (`recovered: true`), or is told to refetch
//! (`recovered: false`).

use crate::socketio::{Sio, meeting};
use crate::support::*;
use serde_json::{Value, json};

/// Reads `n` events and checks their positions strictly increase from
/// above `after`; returns them.
pub(crate) async fn events_after(s: &mut Sio, after: u64, n: usize) -> Vec<(String, Value)> {
    let mut got = Vec::new();
    let mut last = after;
    for _ in 0..n {
        let (name, p) = s.next_event().await;
        let seq = p["seq"].as_u64().unwrap_or_else(|| panic!("{name} without seq: {p}"));
        assert!(seq > last, "{name} seq {seq} after {last}: {got:?}");
        last = seq;
        got.push((name, p));
    }
    got
}

/// What a guest away for a while missed: a walk-in's join and leave around
/// 30 messages, then the live stream.
async fn miss_and_recover(srv: &TestServer, host: &mut Client, rid: &str, code: &str) -> (Sio, u64) {
    let mut jane = Sio::connect(srv, None).await;
    let p = jane.ask("join-room", json!({"code": code, "guestName": "Jane"})).await;
    let token = p["guestToken"].as_str().expect("guest token").to_owned();
    assert_eq!(p["recovered"], false, "no since: {p}");
    let joined_at = p["seq"].as_u64().expect("the ack carries seq");
    // Her own join's two events, at or before the ack's position.
    let own = events_after(&mut jane, 0, 2).await;
    assert_eq!((own[0].0.as_str(), own[1].0.as_str()), ("participant-joined", "room-updated"));
    let last = own[1].1["seq"].as_u64().unwrap();
    assert_eq!(last, joined_at, "the ack's position is that of her last event");
    jane.close().await;

    let mut walk = srv.guest().await;
    walk.join_code(code, Some("Walk")).await;
    for i in 0..30 {
        host.ok("sendMessage", json!([{"rid": rid, "msg": format!("m{i}")}])).await;
    }
    walk.ok("leaveRoom", json!([rid])).await;

    let mut back = Sio::connect(srv, None).await;
    let p = back
        .ask("join-room", json!({"code": code, "guestName": "Jane", "guestToken": token, "since": last}))
        .await;
    assert_eq!(p["recovered"], true, "{p}");
    let missed = events_after(&mut back, last, 34).await;
    let names: Vec<&str> = missed.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(&names[..2], ["participant-joined", "room-updated"], "{names:?}");
    assert_eq!(missed[0].1["guestName"], "Walk");
    let msgs: Vec<&Value> = missed[2..32].iter().map(|(_, p)| &p["msg"]).collect();
    assert_eq!(msgs, (0..30).map(|i| json!(format!("m{i}"))).collect::<Vec<_>>().iter().collect::<Vec<_>>());
    assert_eq!(&names[32..], ["participant-left", "room-updated"], "{names:?}");
    let seen = missed[33].1["seq"].as_u64().unwrap();
    assert_eq!(p["seq"].as_u64(), Some(seen), "the ack's position is the last replayed: {p}");
    (back, seen)
}

#[tokio::test]
async fn a_socket_back_with_since_gets_what_it_missed_once_then_the_live_stream() {
    let srv = TestServer::start().await;
    let (mut host, rid, code) = meeting(&srv, json!({"guestAccess": true})).await;
    let (mut back, seen) = miss_and_recover(&srv, &mut host, &rid, &code).await;
    // Then the live stream, nothing twice.
    host.ok("sendMessage", json!([{"rid": rid, "msg": "live"}])).await;
    let live = events_after(&mut back, seen, 1).await;
    assert_eq!((live[0].0.as_str(), &live[0].1["msg"]), ("message", &json!("live")));
    back.close().await;
}

#[tokio::test]
async fn since_outside_the_window_or_unknown_is_not_recovered() {
    let srv = TestServer::with_limits(|l| {
        l.replay_min_events = 5;
        l.replay_min_age = std::time::Duration::ZERO;
    })
    .await;
    let (mut host, rid, code) = meeting(&srv, json!({"guestAccess": true})).await;
    for i in 0..20 {
        host.ok("sendMessage", json!([{"rid": rid, "msg": format!("m{i}")}])).await;
    }
    for (since, why) in [(1, "older than the window"), (1_000_000, "never handed out")] {
        let mut s = Sio::connect(&srv, None).await;
        let p = s.ask("join-room", json!({"code": code, "guestName": "Late", "since": since})).await;
        assert_eq!(p["recovered"], false, "{why}: {p}");
        // Only the live stream: its own join first.
        let (name, ev) = s.next_event().await;
        assert_eq!((name.as_str(), &ev["guestName"]), ("participant-joined", &json!("Late")), "{why}");
        s.close().await;
    }
    let mut s = Sio::connect(&srv, None).await;
    let bad = s.ask("join-room", json!({"code": code, "guestName": "Bad", "since": "yesterday"})).await;
    assert_eq!(bad["error"]["statusCode"], 400, "{bad}");
    s.close().await;
}

/// DDP streams carry the same positions as an extra field.
#[tokio::test]
async fn ddp_room_events_carry_seq() {
    let srv = TestServer::start().await;
    let (mut host, rid, code) = meeting(&srv, json!({"guestAccess": true})).await;
    host.sub_ok("stream-notify-room", json!([format!("{rid}/participants"), false])).await;
    host.sub_ok("stream-room-messages", json!([rid, false])).await;
    let mut g = srv.guest().await;
    g.join_code(&code, Some("Dot")).await;
    let joined = host.event("stream-notify-room", &format!("{rid}/participants")).await;
    let a = joined["fields"]["seq"].as_u64().expect("seq on stream-notify-room");
    assert_eq!(joined["fields"]["args"][1]["seq"].as_u64(), Some(a));
    host.ok("sendMessage", json!([{"rid": rid, "msg": "hello"}])).await;
    let m = host.expect(|f| f["fields"]["args"][0]["msg"] == "hello").await;
    assert!(m["fields"]["seq"].as_u64().is_some_and(|b| b > a), "{m}");
}

/// Rocket.Chat's reconnect call: the messages after a time, newest first,
/// with loadHistory's checks.
#[tokio::test]
async fn load_missed_messages_returns_what_came_after_a_time() {
    let srv = TestServer::start().await;
    let (mut host, rid, _code) = meeting(&srv, json!({})).await;
    let mut ts = Vec::new();
    for i in 0..5 {
        let m = host.ok("sendMessage", json!([{"rid": rid, "msg": format!("m{i}")}])).await;
        ts.push(m["ts"]["$date"].as_i64().unwrap());
    }
    let got = host.ok("loadMissedMessages", json!([rid, {"$date": ts[2]}])).await;
    let msgs: Vec<&Value> =
        got.as_array().unwrap_or_else(|| panic!("{got}")).iter().map(|m| &m["msg"]).collect();
    assert_eq!(msgs, [&json!("m4"), &json!("m3")], "{got}");
    let none = host.ok("loadMissedMessages", json!([rid, {"$date": ts[4]}])).await;
    assert_eq!(none, json!([]));
    let bad = host.err("loadMissedMessages", json!([rid])).await;
    assert_eq!(bad["error"], 400, "{bad}");
    let mut guest = srv.guest().await;
    let anon = guest.err("loadMissedMessages", json!([rid, {"$date": 0}])).await;
    assert_eq!(anon["error"], "error-not-allowed", "a guest with no seat: {anon}");
}

/// A seated guest may catch up too (the web app's guests do), but only on
/// what was said while it held its seat: never the room's earlier history,
/// whatever time it asks from.
#[tokio::test]
async fn a_seated_guest_misses_nothing_said_while_seated_and_reads_nothing_older() {
    let srv = TestServer::start().await;
    let (mut host, rid, code) = meeting(&srv, json!({"guestAccess": true})).await;
    host.ok("sendMessage", json!([{"rid": rid, "msg": "before the guest"}])).await;
    let mut guest = srv.guest().await;
    let seat = guest.join_code(&code, Some("Gail")).await;
    assert!(seat.get("error").is_none(), "{seat}");
    for i in 0..3 {
        host.ok("sendMessage", json!([{"rid": rid, "msg": format!("while seated {i}")}])).await;
    }
    let got = guest.ok("loadMissedMessages", json!([rid, {"$date": 0}])).await;
    let chat: Vec<&str> = got
        .as_array()
        .unwrap_or_else(|| panic!("{got}"))
        .iter()
        .filter(|m| m.get("t").is_none())
        .filter_map(|m| m["msg"].as_str())
        .collect();
    assert_eq!(chat, ["while seated 2", "while seated 1", "while seated 0"], "{got}");
    // A guest of another room reads nothing of this one.
    let (_other_host, _other_rid, other_code) = meeting(&srv, json!({"guestAccess": true})).await;
    let mut stranger = srv.guest().await;
    let seat = stranger.join_code(&other_code, Some("Stan")).await;
    assert!(seat.get("error").is_none(), "{seat}");
    let refused = stranger.err("loadMissedMessages", json!([rid, {"$date": 0}])).await;
    assert_eq!(refused["error"], "error-not-allowed", "{refused}");
}

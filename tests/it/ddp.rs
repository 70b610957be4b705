//! DDP framing rules 1–8 of the core issue: connect, ordering, heartbeats,
//! results, subscriptions, stream frames, EJSON dates, bad input.

use crate::support::*;
use serde_json::{Value, json};
use std::time::Duration;

const SHORT: Duration = Duration::from_millis(300);

// ---- Rule 1: connect -------------------------------------------------------

#[tokio::test]
async fn connect_and_ping() {
    let s = TestServer::start().await;
    let mut c = s.guest().await;
    c.send(json!({"msg": "ping", "id": "p1"})).await;
    let f = c.expect(|f| f["msg"] == "pong").await;
    assert_eq!(f["id"], "p1");
}

#[tokio::test]
async fn connect_accepts_versions_1_pre2_pre1() {
    let s = TestServer::start().await;
    for version in ["1", "pre2", "pre1"] {
        let mut c = Client::open(&s.url()).await;
        c.send(json!({"msg": "connect", "version": version, "support": [version]})).await;
        let f = c.next_frame().await;
        assert_eq!(f["msg"], "connected", "version {version}: {f}");
        let session = f["session"].as_str().expect("session id");
        assert!(!session.is_empty());
        assert_eq!(f.as_object().unwrap().len(), 2, "only msg and session: {f}");
        // Every version is fully usable.
        let login = c.ok("login", json!([{"resume": s.token("u1", "alice", &["user"])}])).await;
        assert_eq!(login["id"], "u1");
    }
}

#[tokio::test]
async fn connect_gives_distinct_sessions() {
    let s = TestServer::start().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let mut c = Client::open(&s.url()).await;
        c.send(json!({"msg": "connect", "version": "1", "support": ["1"]})).await;
        ids.push(c.next_frame().await["session"].clone());
    }
    assert_ne!(ids[0], ids[1]);
    assert_ne!(ids[1], ids[2]);
}

#[tokio::test]
async fn unknown_version_gets_failed_and_close() {
    let s = TestServer::start().await;
    for connect in [
        json!({"msg": "connect", "version": "2", "support": ["2"]}),
        json!({"msg": "connect", "support": ["1"]}),
    ] {
        let mut c = Client::open(&s.url()).await;
        c.send(connect.clone()).await;
        let f = c.next_frame().await;
        assert_eq!(f, json!({"msg": "failed", "version": "1"}), "for {connect}");
        let (code, reason) = c.closed().await.expect("close frame");
        assert_eq!(code, 4400);
        assert!(!reason.is_empty());
    }
}

#[tokio::test]
async fn no_server_id_greeting() {
    let s = TestServer::start().await;
    let mut c = Client::open(&s.url()).await;
    // Nothing at all before `connect`…
    c.expect_none(SHORT, |_| true).await;
    c.send(json!({"msg": "connect", "version": "1", "support": ["1"]})).await;
    // …and the first frame after it is `connected`, never a msg-less frame.
    let f = c.next_frame().await;
    assert_eq!(f["msg"], "connected", "{f}");
    assert!(f.get("server_id").is_none());
    c.assert_alive().await;
    for f in c.take_pending() {
        assert!(f["msg"].is_string(), "frame without msg: {f}");
    }
}

#[tokio::test]
async fn other_paths_get_http_404() {
    let s = TestServer::start().await;
    let url = format!("ws://{}/sockjs", s.addr);
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 404);
        }
        Err(e) => panic!("expected HTTP 404, got {e}"),
        Ok(_) => panic!("handshake on a non-DDP path must fail"),
    }
}

#[tokio::test]
async fn connect_timeout_closes_silent_socket() {
    let s = TestServer::with_limits(|l| l.connect_timeout = Duration::from_millis(200)).await;
    let mut c = Client::open(&s.url()).await;
    let (code, reason) = c.closed().await.expect("close frame");
    assert_eq!(code, 4002);
    assert!(!reason.is_empty());
}

// ---- Rule 2: order; login before `connected` is read -------------------------

#[tokio::test]
async fn login_pipelined_before_connected_is_read() {
    let s = TestServer::start().await;
    let mut c = Client::open(&s.url()).await;
    let token = s.token("u1", "alice", &["user"]);
    // Both frames go out before anything is read.
    c.send(json!({"msg": "connect", "version": "1", "support": ["1"]})).await;
    c.send(json!({"msg": "method", "method": "login", "params": [{"resume": token}], "id": "l1"})).await;
    assert_eq!(c.next_frame().await["msg"], "connected");
    // The signed-in user's own record comes first (see protocol/methods.md).
    let own = c.next_frame().await;
    assert_eq!((own["msg"].as_str(), own["collection"].as_str()), (Some("added"), Some("users")), "{own}");
    let r = c.next_frame().await;
    assert_eq!(r["msg"], "result", "{r}");
    assert_eq!(r["id"], "l1");
    assert_eq!(r["result"]["id"], "u1");
    assert_eq!(c.next_frame().await, json!({"msg": "updated", "methods": ["l1"]}));
}

#[tokio::test]
async fn frames_are_processed_in_order() {
    let s = TestServer::start().await;
    let mut c = s.guest().await;
    let token = s.token("u1", "alice", &["user"]);
    let name = unique("ordered");
    // login, then a call that needs it, then a call that needs the room:
    // each only works if the previous one finished first.
    let ids = [
        c.send_method("login", json!([{"resume": token}])).await,
        c.send_method("createChannel", json!([name])).await,
        c.send_method("getRoomIdByNameOrId", json!([name])).await,
        c.send_method("nope", json!([])).await,
    ];
    let mut results = Vec::new();
    while results.len() < 8 {
        let f = c.next_frame().await;
        // The login's own `users` record is not part of the reply order.
        if f["collection"] != "users" {
            results.push(f);
        }
    }
    let order: Vec<&str> = results.iter().map(|f| f["id"].as_str().unwrap_or("")).collect();
    let expected: Vec<&str> = ids.iter().map(String::as_str).collect();
    let results_only: Vec<&str> = order.iter().step_by(2).copied().collect();
    assert_eq!(results_only, expected, "results in call order: {results:?}");
    assert!(results[0].get("error").is_none(), "{}", results[0]);
    assert!(results[2].get("error").is_none(), "{}", results[2]);
    assert!(results[4]["result"].is_string(), "{}", results[4]);
    assert_eq!(results[6]["error"]["error"], 404);
}

// ---- Rule 3: ping/pong and heartbeats ---------------------------------------

#[tokio::test]
async fn ping_with_and_without_id() {
    let s = TestServer::start().await;
    let mut c = s.guest().await;
    c.send(json!({"msg": "ping", "id": "abc"})).await;
    assert_eq!(c.next_frame().await, json!({"msg": "pong", "id": "abc"}));
    c.send(json!({"msg": "ping"})).await;
    assert_eq!(c.next_frame().await, json!({"msg": "pong"}));
}

#[tokio::test]
async fn server_pings_silent_connection_and_closes_after_timeout() {
    let s = TestServer::with_limits(|l| {
        l.ping_interval = Duration::from_millis(200);
        l.ping_timeout = Duration::from_millis(300);
    })
    .await;
    let mut c = s.guest().await;
    c.auto_pong = false;
    let f = c.next_frame().await;
    assert_eq!(f["msg"], "ping", "{f}");
    let (code, reason) = c.closed().await.expect("close frame");
    assert_eq!(code, 4000);
    assert_eq!(reason, "heartbeat timeout");
}

#[tokio::test]
async fn pong_without_id_keeps_connection_alive() {
    let s = TestServer::with_limits(|l| {
        l.ping_interval = Duration::from_millis(150);
        l.ping_timeout = Duration::from_millis(150);
    })
    .await;
    let mut c = s.guest().await;
    // auto_pong answers `{"msg":"pong"}` (the server's ping has no id).
    assert!(c.stays_open(Duration::from_millis(1200)).await, "closed despite pongs");
    c.assert_alive().await;
}

#[tokio::test]
async fn any_inbound_frame_counts_as_alive() {
    let s = TestServer::with_limits(|l| {
        l.ping_interval = Duration::from_millis(150);
        l.ping_timeout = Duration::from_millis(150);
    })
    .await;
    let mut c = s.guest().await;
    c.auto_pong = false;
    // Never answer a ping; just keep calling methods.
    for _ in 0..12 {
        let r = c.call("nope", json!([])).await;
        assert_eq!(r["error"]["error"], 404);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.assert_alive().await;
}

#[tokio::test]
async fn pre1_gets_no_heartbeat_pings() {
    let s = TestServer::with_limits(|l| {
        l.ping_interval = Duration::from_millis(100);
        l.ping_timeout = Duration::from_millis(100);
    })
    .await;
    let mut c = Client::open(&s.url()).await;
    c.auto_pong = false;
    c.send(json!({"msg": "connect", "version": "pre1", "support": ["pre1"]})).await;
    assert_eq!(c.next_frame().await["msg"], "connected");
    c.expect_none(Duration::from_millis(600), |f| f["msg"] == "ping").await;
    c.assert_alive().await;
}

// ---- Rule 4: method results --------------------------------------------------

#[tokio::test]
async fn result_key_omitted_when_method_returns_nothing() {
    let s = TestServer::start().await;
    let mut c = s.user("alice").await;
    let r = c.call("logout", json!([])).await;
    assert_eq!(r.as_object().unwrap().len(), 2, "only msg and id: {r}");
    assert!(r.get("result").is_none(), "{r}");
    assert!(r.get("error").is_none(), "{r}");
}

#[tokio::test]
async fn updated_follows_each_result() {
    let s = TestServer::start().await;
    let mut c = s.user("alice").await;
    for (method, params) in
        [("createChannel", json!([unique("r")])), ("nope", json!([])), ("logout", json!([]))]
    {
        let id = c.send_method(method, params).await;
        let mut r = c.next_frame().await;
        if method == "logout" {
            // The user's own record goes away before the result.
            assert_eq!(r, json!({"msg": "removed", "collection": "users", "id": "id-alice"}));
            r = c.next_frame().await;
        }
        assert_eq!(r["msg"], "result", "{r}");
        assert_eq!(r["id"], id.as_str());
        assert_eq!(c.next_frame().await, json!({"msg": "updated", "methods": [id]}));
    }
}

#[tokio::test]
async fn unknown_method_is_404() {
    let s = TestServer::start().await;
    let mut c = s.guest().await;
    let e = c.err("noSuchMethod", json!([1, 2])).await;
    assert_error(&e, 404, "Method 'noSuchMethod' not found");
    assert_eq!(e["message"], "Method 'noSuchMethod' not found [404]");
}

#[tokio::test]
async fn wrong_param_types_are_match_failed_400() {
    let s = TestServer::start().await;
    let mut c = s.user("alice").await;
    let e = c.err("joinRoom", json!([42])).await;
    assert_match_failed(&e, "rid");
    assert_eq!(e["details"]["statusCode"], 400);
    let e = c.err("createChannel", json!(["ok-name", "not-a-list"])).await;
    assert_match_failed(&e, "members");
    let e = c.err("login", json!(["not-an-object"])).await;
    assert_match_failed(&e, "params[0]");
    let e = c.err("join-room", json!([{"code": 7}])).await;
    assert_match_failed(&e, "code");
    c.assert_alive().await;
}

// ---- Rule 5: subscriptions ----------------------------------------------------

#[tokio::test]
async fn one_ready_per_sub_never_batched() {
    let s = TestServer::start().await;
    let mut c = s.user("alice").await;
    let rid = channel(&mut c, json!({})).await["_id"].as_str().unwrap().to_owned();
    for id in ["s1", "s2", "s3"] {
        c.send(json!({"msg": "sub", "id": id, "name": "stream-room-messages", "params": [rid, false]})).await;
    }
    for id in ["s1", "s2", "s3"] {
        let f = c.next_frame().await;
        assert_eq!(f, json!({"msg": "ready", "subs": [id]}));
    }
}

#[tokio::test]
async fn unsub_gets_nosub_even_for_unknown_ids() {
    let s = TestServer::start().await;
    let mut c = s.user("alice").await;
    let rid = channel(&mut c, json!({})).await["_id"].as_str().unwrap().to_owned();
    let sub = c.sub_ok("stream-room-messages", json!([rid, false])).await;
    c.send(json!({"msg": "unsub", "id": sub})).await;
    assert_eq!(c.next_frame().await, json!({"msg": "nosub", "id": sub}));
    c.send(json!({"msg": "unsub", "id": "never-subscribed"})).await;
    assert_eq!(c.next_frame().await, json!({"msg": "nosub", "id": "never-subscribed"}));
}

#[tokio::test]
async fn unknown_stream_gets_ready_and_no_events() {
    let s = TestServer::start().await;
    let mut c = s.user("alice").await;
    let r = c.sub("stream-nobody-produces", json!(["whatever", false])).await;
    assert_eq!(r["msg"], "ready", "{r}");
    let r = c.sub("stream-notify-room", json!(["x/unknown-event", false])).await;
    assert_eq!(r["msg"], "ready", "{r}");
    let rid = channel(&mut c, json!({})).await["_id"].as_str().unwrap().to_owned();
    c.ok("saveRoomSettings", json!([rid, "locked", true])).await;
    c.expect_none(SHORT, |f| f["msg"] == "changed").await;
}

#[tokio::test]
async fn sub_without_event_name_is_nosub_with_error() {
    let s = TestServer::start().await;
    let mut c = s.user("alice").await;
    let r = c.sub("stream-room-messages", json!([])).await;
    assert_eq!(r["msg"], "nosub", "{r}");
    assert_eq!(r["error"]["error"], 400, "{r}");
    c.assert_alive().await;
}

// ---- Rule 6: stream frames ---------------------------------------------------

#[tokio::test]
async fn use_collection_true_sends_added_before_ready() {
    let s = TestServer::start().await;
    let mut c = s.user("alice").await;
    let rid = channel(&mut c, json!({})).await["_id"].as_str().unwrap().to_owned();
    c.send(json!({"msg": "sub", "id": "s1", "name": "stream-room-messages", "params": [rid, true]})).await;
    assert_eq!(
        c.next_frame().await,
        json!({"msg": "added", "collection": "stream-room-messages", "id": "id",
               "fields": {"eventName": rid}})
    );
    assert_eq!(c.next_frame().await, json!({"msg": "ready", "subs": ["s1"]}));
    // Unknown streams too.
    c.send(json!({"msg": "sub", "id": "s2", "name": "stream-unknown", "params": ["ev", true]})).await;
    assert_eq!(c.next_frame().await["msg"], "added");
    assert_eq!(c.next_frame().await, json!({"msg": "ready", "subs": ["s2"]}));
}

#[tokio::test]
async fn options_false_or_object_send_no_added() {
    let s = TestServer::start().await;
    let mut c = s.user("alice").await;
    let rid = channel(&mut c, json!({})).await["_id"].as_str().unwrap().to_owned();
    for (id, opts) in [("s1", json!(false)), ("s2", json!({"useCollection": false, "args": []}))] {
        c.send(json!({"msg": "sub", "id": id, "name": "stream-room-messages", "params": [rid, opts]})).await;
        assert_eq!(c.next_frame().await, json!({"msg": "ready", "subs": [id]}));
    }
    // Both subs deliver events in the `changed` shape.
    let mut bob = s.user("bob").await;
    bob.ok("joinRoom", json!([rid])).await;
    let f = c.event("stream-room-messages", &rid).await;
    assert_eq!(f["id"], "id");
    assert_eq!(f["collection"], "stream-room-messages");
    let args = f["fields"]["args"].as_array().expect("args array");
    assert_eq!(args.len(), 1);
    assert_eq!(args[0]["t"], "uj");
    // Exactly the event, its arguments and the room's position (issue 20).
    let mut keys: Vec<&str> = f["fields"].as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["args", "eventName", "seq"], "{f}");
    assert!(f["fields"]["seq"].as_u64().is_some_and(|n| n > 0), "{f}");
}

// ---- Rule 7: EJSON dates ------------------------------------------------------

#[tokio::test]
async fn dates_are_ejson_in_results_and_events() {
    let s = TestServer::start().await;
    let mut c = s.user("alice").await;
    let doc = channel(&mut c, json!({})).await;
    assert!(is_recent_date(&doc["ts"]), "{doc}");
    assert!(is_recent_date(&doc["_updatedAt"]), "{doc}");
    let rid = doc["_id"].as_str().unwrap().to_owned();
    c.sub_ok("stream-room-messages", json!([rid, false])).await;
    c.ok("saveRoomSettings", json!([rid, "locked", true])).await;
    let m = c.room_message(&rid).await;
    assert!(is_recent_date(&m["ts"]), "{m}");
    assert!(is_recent_date(&m["_updatedAt"]), "{m}");
}

#[tokio::test]
async fn ejson_dates_accepted_in_params() {
    let s = TestServer::start().await;
    let mut c = s.user("alice").await;
    let rid = channel(&mut c, json!({})).await["_id"].as_str().unwrap().to_owned();
    c.ok("saveRoomSettings", json!([rid, "locked", true])).await;
    let far_future = json!({"$date": 4_000_000_000_000i64});
    let all = c.ok("loadHistory", json!([rid, far_future, 50, {"$date": 0}])).await;
    let msgs = all["messages"].as_array().expect("messages");
    assert!(msgs.iter().any(|m| m["t"] == "room-locked"), "{all}");
    // The date is really read: nothing is older than the epoch.
    let none = c.ok("loadHistory", json!([rid, {"$date": 0}, 50, null])).await;
    assert_eq!(none["messages"], json!([]), "{none}");
    let e = c.err("loadHistory", json!([rid, "yesterday", 50])).await;
    assert_match_failed(&e, "end");
}

// ---- Rule 8: bad input ---------------------------------------------------------

#[tokio::test]
async fn invalid_json_is_parse_error_and_connection_survives() {
    let s = TestServer::start().await;
    let mut c = s.guest().await;
    c.send_raw("{not json").await;
    assert_eq!(c.next_frame().await, json!({"msg": "error", "reason": "Parse error"}));
    c.assert_alive().await;
}

#[tokio::test]
async fn parse_error_before_connect_too() {
    let s = TestServer::start().await;
    let mut c = Client::open(&s.url()).await;
    c.send_raw("][").await;
    assert_eq!(c.next_frame().await, json!({"msg": "error", "reason": "Parse error"}));
    c.connect().await;
}

#[tokio::test]
async fn unknown_msg_is_bad_request_with_offending_message() {
    let s = TestServer::start().await;
    let mut c = s.guest().await;
    for bad in [json!({"msg": "frobnicate", "x": 1}), json!({"no": "msg"}), json!([1, 2])] {
        c.send(bad.clone()).await;
        assert_eq!(
            c.next_frame().await,
            json!({"msg": "error", "reason": "Bad request", "offendingMessage": bad})
        );
    }
    c.assert_alive().await;
}

#[tokio::test]
async fn anything_before_connect_is_must_connect_first() {
    let s = TestServer::start().await;
    let mut c = Client::open(&s.url()).await;
    let frames = [
        json!({"msg": "method", "method": "login", "params": [], "id": "1"}),
        json!({"msg": "sub", "id": "s", "name": "stream-room-messages", "params": ["x"]}),
        json!({"msg": "ping", "id": "p"}),
        json!({"msg": "bogus"}),
    ];
    for f in frames {
        c.send(f.clone()).await;
        let e = c.next_frame().await;
        assert_eq!(e["msg"], "error", "{e}");
        assert_eq!(e["reason"], "Must connect first", "{e}");
        assert_eq!(e["offendingMessage"], f, "{e}");
    }
    // Still usable.
    c.connect().await;
    c.assert_alive().await;
}

#[tokio::test]
async fn malformed_method_invocation() {
    let s = TestServer::start().await;
    let mut c = s.guest().await;
    for bad in [
        json!({"msg": "method", "id": 1, "method": "login"}),
        json!({"msg": "method", "id": "1"}),
        json!({"msg": "method", "id": "1", "method": "x", "params": {"a": 1}}),
    ] {
        c.send(bad.clone()).await;
        assert_eq!(
            c.next_frame().await,
            json!({"msg": "error", "reason": "Malformed method invocation", "offendingMessage": bad})
        );
    }
    c.assert_alive().await;
}

#[tokio::test]
async fn malformed_subscription() {
    let s = TestServer::start().await;
    let mut c = s.guest().await;
    for bad in [
        json!({"msg": "sub", "id": 5, "name": "x"}),
        json!({"msg": "sub", "id": "1"}),
        json!({"msg": "sub", "id": "1", "name": "x", "params": "nope"}),
    ] {
        c.send(bad.clone()).await;
        assert_eq!(
            c.next_frame().await,
            json!({"msg": "error", "reason": "Malformed subscription", "offendingMessage": bad})
        );
    }
    c.assert_alive().await;
}

#[tokio::test]
async fn frame_over_default_max_size_closes_1009() {
    let s = TestServer::start().await;
    let mut c = s.guest().await;
    // Just under 64 KiB is fine…
    let pad = "a".repeat(60 * 1024);
    c.send(json!({"msg": "ping", "id": "big", "pad": pad})).await;
    assert_eq!(c.next_frame().await["id"], "big");
    // …over it closes with 1009 and a reason.
    let pad = "a".repeat(65 * 1024);
    c.send(json!({"msg": "ping", "id": "huge", "pad": pad})).await;
    let (code, reason) = c.closed().await.expect("close frame");
    assert_eq!(code, 1009);
    assert!(!reason.is_empty());
}

#[tokio::test]
async fn max_frame_size_is_configurable() {
    let s = TestServer::with_limits(|l| l.max_frame_bytes = 1024).await;
    let mut c = s.guest().await;
    c.send(json!({"msg": "ping", "pad": "b".repeat(2000)})).await;
    let (code, reason) = c.closed().await.expect("close frame");
    assert_eq!(code, 1009);
    assert!(!reason.is_empty());
}

#[tokio::test]
async fn binary_frame_closes_1003() {
    let s = TestServer::start().await;
    let mut c = s.guest().await;
    c.send_binary(br#"{"msg":"ping"}"#.to_vec()).await;
    let (code, reason) = c.closed().await.expect("close frame");
    assert_eq!(code, 1003);
    assert!(!reason.is_empty());
}

#[tokio::test]
async fn invalid_utf8_text_frame_closes_1007() {
    let s = TestServer::start().await;
    let mut c = s.guest().await;
    c.send_text_bytes(vec![b'{', 0xff, 0xfe, b'}']).await;
    let (code, reason) = c.closed().await.expect("close frame");
    assert_eq!(code, 1007);
    assert!(!reason.is_empty());
}

#[tokio::test]
async fn garbage_never_kills_the_server() {
    let s = TestServer::start().await;
    let mut c = s.guest().await;
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let junk: Vec<String> = vec![
        deep,
        "null".into(),
        "\"str\"".into(),
        "1e999999".into(),
        r#"{"msg":null}"#.into(),
        r#"{"msg":"method","id":"x","method":"joinRoom","params":[null,null,null]}"#.into(),
        r#"{"msg":"method","id":"y","method":"join-room","params":[[]]}"#.into(),
        r#"{"msg":"sub","id":"z","name":"stream-notify-room","params":[{"a":1}]}"#.into(),
    ];
    for j in &junk {
        c.send_raw(j).await;
    }
    c.assert_alive().await;
    let frames: Vec<Value> = c.take_pending();
    assert!(frames.len() >= junk.len(), "every bad frame is answered: {frames:?}");
    // A fresh connection works too.
    let mut d = s.guest().await;
    d.assert_alive().await;
}

/// The `1009` close survives what the client sends after the frame that
/// was too large: dropping a socket with that still unread would reset
/// it, and a reset throws away the close frame if the client has not read
/// it yet. Here the client's receive window is full of pongs it has not
/// read, so the close frame is still queued when the server closes, and
/// 64 KiB follow the frame: thirty connections, each must see `1009`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_1009_close_frame_survives_bytes_sent_after_the_frame() {
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::AsyncWriteExt;
    use tokio_tungstenite::MaybeTlsStream;
    use tokio_tungstenite::tungstenite::Message;
    const ROUNDS: usize = 30;
    const WAIT: Duration = Duration::from_secs(10);
    let srv = TestServer::with_limits(|l| l.max_frame_bytes = 1024).await;
    // One masked text frame announcing 2,000 bytes (mask key zero: the
    // payload goes as it is), then 64 KiB the server never parses, in one
    // write, so they sit in the server's receive buffer when it closes.
    let mut bytes = vec![0x81, 0x80 | 126, (2000u16 >> 8) as u8, 2000u16 as u8, 0, 0, 0, 0];
    let frame = format!(r#"{{"msg":"ping","pad":"{}"}}"#, "b".repeat(2000 - 23));
    assert_eq!(frame.len(), 2000);
    bytes.extend(frame.into_bytes());
    bytes.extend(std::iter::repeat_n(b'x', 64 * 1024));
    let mut lost = Vec::new();
    for round in 0..ROUNDS {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.set_recv_buffer_size(1).unwrap();
        let tcp =
            tokio::time::timeout(WAIT, sock.connect(srv.addr)).await.expect("connect timed out").unwrap();
        let url = format!("ws://{}/websocket", srv.addr);
        let (mut ws, _) =
            tokio::time::timeout(WAIT, tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(tcp)))
                .await
                .expect("handshake timed out")
                .expect("upgrade refused");
        ws.send(Message::Text(r#"{"msg":"connect","version":"1","support":["1"]}"#.into())).await.unwrap();
        // Pongs the client does not read before the close: more than its
        // receive window holds.
        for i in 0..40 {
            let ping = json!({"msg": "ping", "id": format!("{i:03}{}", "p".repeat(200))});
            ws.send(Message::Text(ping.to_string().into())).await.unwrap();
        }
        // Time for the pongs to be written (bounded; a late pong only makes
        // the round easier).
        tokio::time::sleep(Duration::from_millis(50)).await;
        let MaybeTlsStream::Plain(tcp) = ws.get_mut() else { unreachable!("plain ws://") };
        // The server may reset the connection while this is written.
        let _ = tokio::time::timeout(WAIT, tcp.write_all(&bytes)).await.expect("write timed out");
        let deadline = tokio::time::Instant::now() + WAIT;
        let close = loop {
            match tokio::time::timeout_at(deadline, ws.next()).await.expect("timed out waiting for the close")
            {
                Some(Ok(Message::Close(f))) => break f.map(|f| (u16::from(f.code), f.reason.to_string())),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => break None,
            }
        };
        if close != Some((1009, "frame too large".to_owned())) {
            lost.push((round, close));
        }
    }
    assert!(lost.is_empty(), "{} of {ROUNDS} connections ended without the 1009 close: {lost:?}", lost.len());
}

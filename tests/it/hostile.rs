//! Hostile input: property tests that throw arbitrary text and arbitrary
//! JSON at the frame decoder and, through a live server, at every method and
//! subscription; and a malicious-client suite (floods, oversized and
//! invalid frames, other users' streams, bad tokens, control characters in
//! guest names, join-code brute force).
//!
//! The property tests run a fixed number of cases from a fixed seed, so CI is
//! deterministic. To run longer, or from another seed:
//!
//! ```text
//! PROPTEST_CASES=100000 cargo test --test it hostile
//! PROPTEST_CASES=100000 PROPTEST_RNG_SEED=42 cargo test --release --test it hostile
//! ```

use crate::http::get;
use crate::support::*;
use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::Algorithm;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use roomd::auth::now_secs;
use roomd::wire::{ClientFrame, FrameError, parse_client_frame};
use serde_json::{Map, Value, json};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Cases per property (`PROPTEST_CASES`, default 64).
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64)
}

/// The seed (`PROPTEST_RNG_SEED`, default fixed).
fn seed() -> u64 {
    std::env::var("PROPTEST_RNG_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x7007_5eed)
}

fn config() -> Config {
    Config {
        cases: cases(),
        rng_seed: proptest::test_runner::RngSeed::Fixed(seed()),
        failure_persistence: None,
        ..Config::default()
    }
}

/// Every method the dispatcher knows, plus names it does not.
const METHODS: &[&str] = &[
    "login",
    "logout",
    "createChannel",
    "createPrivateGroup",
    "joinRoom",
    "leaveRoom",
    "join-room",
    "saveRoomSettings",
    "endRoom",
    "getRoomById",
    "getRoomIdByNameOrId",
    "getRoomNameById",
    "sendMessage",
    "loadHistory",
    "stream-notify-room",
    "rooms/get",
    "subscriptions/get",
    "createDirectMessage",
    "archiveRoom",
    "unarchiveRoom",
    "toggleFavorite",
    "hideRoom",
    "openRoom",
    "addUserToRoom",
    "addUsersToRoom",
    "removeUserFromRoom",
    "addRoomOwner",
    "removeRoomOwner",
    "addRoomModerator",
    "removeRoomModerator",
    "addRoomLeader",
    "removeRoomLeader",
    "getRoomRoles",
    "muteUserInRoom",
    "unmuteUserInRoom",
    "",
    "__proto__",
    "nope",
];

/// Streams roomd serves, plus ones it does not.
const SUBS: &[&str] = &[
    "stream-room-messages",
    "stream-notify-room",
    "stream-notify-user",
    "stream-notify-logged",
    "meteor.loginServiceConfiguration",
    "",
];

/// Strings that have broken parsers and validators elsewhere.
fn edge_string(known: Vec<String>) -> impl Strategy<Value = String> {
    let mut fixed: Vec<String> = [
        "",
        " ",
        "\u{0}",
        "a\u{0}b",
        "\u{1b}[31mred",
        "\u{feff}",
        "\u{200b}",
        "\u{202e}evil",
        "\u{10ffff}",
        "😀👍🏽",
        "e\u{301}",
        "$date",
        "__my_messages__",
        "id-alice",
        "id-alice/rooms-changed",
        "guest-x",
        "../../etc/passwd",
        "%00",
        "null",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    fixed.push("z".repeat(6000));
    fixed.extend(known);
    prop_oneof![
        4 => "\\PC{0,24}",
        2 => proptest::sample::select(fixed),
        1 => "[a-z]{3}-[a-z]{3}-[a-z]{3}",
    ]
}

fn json_leaf(known: Vec<String>) -> impl Strategy<Value = Value> {
    prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
        1 => any::<f64>().prop_map(|f| json!(f)),
        1 => Just(json!(-0.0)),
        3 => edge_string(known).prop_map(Value::String),
    ]
}

fn json_key() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => "[a-zA-Z_]{1,8}",
        1 => proptest::sample::select(vec![
            "$date", "$binary", "$type", "$escape", "__proto__", "constructor", "rid", "msg", "_id", "code",
            "guestName", "guestToken", "resume", "maxParticipants", "locked", "guestAccess", "useCollection", "args",
        ])
        .prop_map(str::to_owned),
    ]
}

fn json_value(known: Vec<String>) -> impl Strategy<Value = Value> {
    json_leaf(known).prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(json_key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// JSON text that no `serde_json::Value` round-trips to: huge numbers,
/// deep nesting, duplicate keys.
fn raw_json() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("1e400".to_owned()),
        Just("-1e400".to_owned()),
        Just("123456789012345678901234567890".to_owned()),
        Just("-0".to_owned()),
        Just(r#"{"a":1,"a":2}"#.to_owned()),
        (1usize..300).prop_map(|d| format!("{}{}", "[".repeat(d), "]".repeat(d))),
        (1usize..300).prop_map(|d| format!("{}1{}", "{\"a\":".repeat(d), "}".repeat(d))),
    ]
}

fn param(known: Vec<String>) -> impl Strategy<Value = String> {
    prop_oneof![4 => json_value(known).prop_map(|v| v.to_string()), 1 => raw_json()]
}

/// One hostile frame.
#[derive(Debug, Clone)]
enum Fuzz {
    /// A well-formed method frame with arbitrary params.
    Method { name: String, params: Vec<String> },
    /// A well-formed sub frame with arbitrary params.
    Sub { name: String, params: Vec<String> },
    /// Any JSON object with a known `msg`.
    Frame(Value),
    /// Any text at all.
    Text(String),
}

fn fuzz_frame(known: Vec<String>) -> impl Strategy<Value = Fuzz> {
    let params = || proptest::collection::vec(param(known.clone()), 0..5);
    prop_oneof![
        5 => (proptest::sample::select(METHODS), params())
            .prop_map(|(n, params)| Fuzz::Method { name: n.to_owned(), params }),
        3 => (proptest::sample::select(SUBS), params())
            .prop_map(|(n, params)| Fuzz::Sub { name: n.to_owned(), params }),
        1 => (
            proptest::sample::select(vec!["connect", "method", "sub", "unsub", "ping", "pong", "x"]),
            proptest::collection::btree_map(json_key(), json_value(known.clone()), 0..5),
        )
            .prop_map(|(msg, fields)| {
                let mut o: Map<String, Value> = fields.into_iter().collect();
                o.insert("msg".into(), Value::from(msg));
                Fuzz::Frame(Value::Object(o))
            }),
        1 => any::<String>().prop_map(Fuzz::Text),
    ]
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What came back.
enum Got {
    Frame(Value),
    Closed(Option<(u16, String)>),
}

/// A bare WebSocket client for the fuzz loop, which must see closes as
/// values rather than panics.
struct Raw {
    ws: Ws,
}

impl Raw {
    async fn open(s: &TestServer, token: Option<&str>) -> Raw {
        let (ws, _) = tokio_tungstenite::connect_async(s.url()).await.expect("connect");
        let mut r = Raw { ws };
        r.send(r#"{"msg":"connect","version":"1","support":["1"]}"#).await;
        r.until(|f| f["msg"] == "connected").await.expect("connected");
        if let Some(t) = token {
            r.send(
                &json!({"msg": "method", "id": "login", "method": "login", "params": [{"resume": t}]})
                    .to_string(),
            )
            .await;
            let f = r.until(|f| f["msg"] == "result" && f["id"] == "login").await.expect("login");
            assert!(f.get("error").is_none(), "{f}");
        }
        r
    }

    async fn send(&mut self, text: &str) -> bool {
        self.ws.send(Message::Text(text.into())).await.is_ok()
    }

    async fn next(&mut self) -> Got {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next()).await.expect("no answer: the server hung") {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).expect("the server sent invalid JSON");
                    if v["msg"] == "ping" {
                        let _ = self.send(r#"{"msg":"pong"}"#).await;
                        continue;
                    }
                    return Got::Frame(v);
                }
                Some(Ok(Message::Close(f))) => {
                    return Got::Closed(f.map(|f| (u16::from(f.code), f.reason.to_string())));
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Got::Closed(None),
            }
        }
    }

    /// Frames until one matches; `Err` with the close if the server closed.
    async fn until(&mut self, pred: impl Fn(&Value) -> bool) -> Result<Value, Option<(u16, String)>> {
        loop {
            match self.next().await {
                Got::Frame(v) if pred(&v) => return Ok(v),
                Got::Frame(_) => {}
                Got::Closed(c) => return Err(c),
            }
        }
    }
}

fn frame_text(f: &Fuzz, id: &str) -> String {
    match f {
        Fuzz::Method { name, params } => format!(
            r#"{{"msg":"method","id":{},"method":{},"params":[{}]}}"#,
            json!(id),
            json!(name),
            params.join(",")
        ),
        Fuzz::Sub { name, params } => format!(
            r#"{{"msg":"sub","id":{},"name":{},"params":[{}]}}"#,
            json!(id),
            json!(name),
            params.join(",")
        ),
        Fuzz::Frame(v) => v.to_string(),
        Fuzz::Text(t) => t.clone(),
    }
}

/// Whether `f` answers call or sub `id`: a result, ready, nosub, or a DDP
/// error frame (for params JSON cannot parse, e.g. nesting past the limit).
fn answers(f: &Value, id: &str) -> bool {
    match f["msg"].as_str() {
        Some("result") | Some("nosub") => f["id"] == id,
        Some("ready") => f["subs"][0] == id,
        Some("error") => true,
        _ => false,
    }
}

fn assert_meteor_error(f: &Value, frame: &str) {
    let Some(e) = f.get("error") else { return };
    if f["msg"] == "error" {
        return;
    }
    assert_eq!(e["errorType"], "Meteor.Error", "{f} for {frame}");
    assert!(e["reason"].is_string(), "{f} for {frame}");
    let text = e.to_string().to_lowercase();
    for leak in ["panick", "sqlite", "/src/", ".rs:", "backtrace"] {
        assert!(!text.contains(leak), "internal detail {leak:?} leaked: {f}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbitrary_frames_to_every_method_and_sub_never_break_the_server() {
    let s = TestServer::start().await;
    let token = s.token("id-alice", "alice", &["user"]);
    // Real ids and codes, so some fuzzed calls reach a room.
    let mut owner = s.user("owner").await;
    let doc = channel(&mut owner, json!({"guestAccess": true})).await;
    let known = vec![
        doc["_id"].as_str().unwrap().to_owned(),
        doc["code"].as_str().unwrap_or("abc-def-ghi").to_owned(),
        doc["name"].as_str().unwrap().to_owned(),
        token.clone(),
    ];
    let strategy = fuzz_frame(known);
    let mut runner =
        TestRunner::new_with_rng(config(), TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes()));
    let mut user = Raw::open(&s, Some(&token)).await;
    let mut guest = Raw::open(&s, None).await;
    for case in 0..cases() {
        let fuzz = strategy.new_tree(&mut runner).expect("generate").current();
        let as_user = case % 2 == 0;
        let c = if as_user { &mut user } else { &mut guest };
        let id = format!("f{case}");
        let text = frame_text(&fuzz, &id);
        let mut closed = None;
        if !c.send(&text).await {
            closed = Some(None);
        }
        if closed.is_none() && matches!(fuzz, Fuzz::Method { .. } | Fuzz::Sub { .. }) {
            match c.until(|f| answers(f, &id)).await {
                Ok(f) => assert_meteor_error(&f, &text),
                Err(close) => closed = Some(close),
            }
        }
        if closed.is_none() {
            // Whatever the frame was, the connection still answers.
            let ping = format!("chk{case}");
            c.send(&json!({"msg": "ping", "id": ping}).to_string()).await;
            if let Err(close) = c.until(|f| f["msg"] == "pong" && f["id"] == ping.as_str()).await {
                closed = Some(close);
            }
        }
        if let Some(close) = closed {
            // Closing is allowed (e.g. a frame over the size limit), but
            // always with a code and a reason, never by dropping the socket.
            let (code, reason) =
                close.unwrap_or_else(|| panic!("dropped without a close frame after {text:.200}"));
            assert!(!reason.is_empty(), "close {code} without a reason after {text:.200}");
            let reopened = Raw::open(&s, as_user.then_some(token.as_str())).await;
            if as_user {
                user = reopened;
            } else {
                guest = reopened;
            }
        }
    }
    // A fresh client is served normally afterwards.
    let mut fresh = s.user("fresh").await;
    let rid = channel(&mut fresh, json!({})).await["_id"].as_str().unwrap().to_owned();
    fresh.ok("sendMessage", json!([{"rid": rid, "msg": "still here"}])).await;
    assert_eq!(get(s.addr, "/healthz").await.status, 200);
}

fn seed_bytes() -> [u8; 32] {
    let mut b = [0u8; 32];
    for (i, chunk) in b.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&(seed().wrapping_add(i as u64)).to_le_bytes());
    }
    b
}

proptest! {
    #![proptest_config(config())]

    /// The decoder never panics on any text, and what it accepts has the
    /// shape it claims.
    #[test]
    fn parse_client_frame_never_panics_on_text(text in any::<String>()) {
        let _ = parse_client_frame(&text);
    }

    #[test]
    fn parse_client_frame_classifies_json_objects(
        msg in proptest::sample::select(vec!["connect", "method", "sub", "unsub", "ping", "pong", "x", ""]),
        fields in proptest::collection::btree_map(json_key(), json_value(Vec::new()), 0..6),
        id in prop_oneof![json_value(Vec::new()), "[a-z0-9]{1,5}".prop_map(Value::String)],
    ) {
        let mut o: Map<String, Value> = fields.into_iter().collect();
        o.insert("msg".into(), Value::from(msg));
        o.insert("id".into(), id.clone());
        let text = Value::Object(o.clone()).to_string();
        match parse_client_frame(&text) {
            Ok(ClientFrame::Method { id: got, method, .. }) => {
                prop_assert_eq!(msg, "method");
                prop_assert_eq!(Some(got.as_str()), id.as_str());
                prop_assert_eq!(Some(method.as_str()), o.get("method").and_then(Value::as_str));
            }
            Ok(ClientFrame::Sub { id: got, .. }) => {
                prop_assert_eq!(msg, "sub");
                prop_assert_eq!(Some(got.as_str()), id.as_str());
            }
            Ok(ClientFrame::Unsub { id: got }) => {
                prop_assert_eq!(msg, "unsub");
                prop_assert_eq!(Some(got.as_str()), id.as_str());
            }
            Ok(ClientFrame::Connect { .. }) => prop_assert_eq!(msg, "connect"),
            Ok(ClientFrame::Ping { .. }) => prop_assert_eq!(msg, "ping"),
            Ok(ClientFrame::Pong) => prop_assert_eq!(msg, "pong"),
            Err(FrameError::Parse | FrameError::UnparsableMethod { .. }) => {
                prop_assert!(false, "valid JSON reported as a parse error: {}", text)
            }
            Err(e) => {
                prop_assert!(!matches!(msg, "connect" | "ping" | "pong"), "{} refused: {:?}", msg, e);
                // Every refusal becomes a DDP error frame that echoes the input.
                let frame: Value = serde_json::from_str(e.to_frame().as_str()).unwrap();
                prop_assert_eq!(&frame["msg"], "error");
            }
        }
    }

    #[test]
    fn parse_client_frame_survives_raw_json(raw in raw_json()) {
        for text in [raw.clone(), format!(r#"{{"msg":"method","id":"1","method":"x","params":[{raw}]}}"#)] {
            let _ = parse_client_frame(&text);
        }
    }
}

// ---- Malicious clients -------------------------------------------------------

/// A server with the production abuse limits on.
async fn defended(f: impl FnOnce(&mut roomd::config::Limits)) -> TestServer {
    TestServer::with_limits(|l| {
        l.no_rate_limits = false;
        f(l);
    })
    .await
}

#[tokio::test]
async fn method_flood_is_answered_with_too_many_requests_not_dropped() {
    // Burst 100, refill 1/s: how many pass does not depend on how fast a
    // loaded machine gets through the flood.
    let s = defended(|l| l.rate_other = "1:100".parse().unwrap()).await;
    let mut c = s.user("alice").await;
    let rid = channel(&mut c, json!({})).await["_id"].as_str().unwrap().to_owned();
    let mut ids = Vec::new();
    for _ in 0..300 {
        ids.push(c.send_method("getRoomNameById", json!([rid])).await);
    }
    let (mut ok, mut limited) = (0, 0);
    for id in &ids {
        let r = c.result_of(id).await;
        match r.get("error") {
            None => ok += 1,
            Some(e) => {
                assert_error(
                    e,
                    "too-many-requests",
                    e["reason"].as_str().filter(|r| r.starts_with("Error, too many requests")).unwrap_or("?"),
                );
                assert!(e["details"]["timeToReset"].as_u64().is_some_and(|ms| ms > 0), "{e}");
                limited += 1;
            }
        }
    }
    assert_eq!(ok + limited, 300, "every call is answered");
    // `login` and `createChannel` above took two tokens of the burst.
    assert!((98..110).contains(&ok), "burst of 100 plus refill, got {ok}");
    assert!(limited > 0);
    c.assert_alive().await;
}

#[tokio::test]
async fn sub_flood_is_answered_with_nosub_too_many_requests() {
    let s = defended(|l| l.rate_other = "1:3".parse().unwrap()).await;
    let mut c = s.user("alice").await;
    let mut refused = 0;
    for i in 0..8 {
        let f = c.sub("stream-notify-logged", json!(["user-status", false])).await;
        if f["msg"] == "nosub" {
            assert_eq!(f["error"]["error"], "too-many-requests", "{f}");
            refused += 1;
        } else {
            assert!(i < 4, "sub {i} admitted past the burst: {f}");
        }
    }
    assert!(refused >= 4, "{refused}");
}

#[tokio::test]
async fn oversized_binary_and_invalid_utf8_frames_close_with_reasons() {
    let s = defended(|l| l.max_frame_bytes = 4096).await;
    let mut c = s.guest().await;
    c.send_raw(&format!(r#"{{"msg":"ping","id":"{}"}}"#, "x".repeat(5000))).await;
    assert_eq!(c.closed().await, Some((1009, "frame too large".into())));

    let mut c = s.guest().await;
    c.send_binary(vec![0xde, 0xad]).await;
    assert_eq!(c.closed().await, Some((1003, "binary frames are not supported".into())));

    // A text frame that is not UTF-8 (sent by hand: the client library
    // refuses to build one).
    let mut sock = TcpStream::connect(s.addr).await.unwrap();
    let head = format!(
        "GET /websocket HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        s.addr
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    let (mut ws, _) = {
        // Read the 101 before speaking WebSocket.
        use tokio::io::AsyncReadExt;
        let mut got = Vec::new();
        let mut b = [0u8; 1];
        while !got.ends_with(b"\r\n\r\n") {
            sock.read_exact(&mut b).await.unwrap();
            got.push(b[0]);
        }
        assert!(got.starts_with(b"HTTP/1.1 101"));
        let ws = WebSocketStream::from_raw_socket(
            sock,
            tokio_tungstenite::tungstenite::protocol::Role::Client,
            None,
        )
        .await;
        (ws, ())
    };
    let mask = [1u8, 2, 3, 4];
    let payload = [0xffu8, 0xfe, 0xfd];
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    ws.get_mut().write_all(&frame).await.unwrap();
    let close = loop {
        match tokio::time::timeout(WAIT, ws.next()).await.expect("no close") {
            Some(Ok(Message::Close(f))) => break f.map(|f| (u16::from(f.code), f.reason.to_string())),
            Some(Ok(_)) => continue,
            _ => break None,
        }
    };
    assert_eq!(close, Some((1007, "invalid UTF-8".into())));
    // The server is fine.
    s.guest().await.assert_alive().await;
}

#[tokio::test]
async fn other_users_streams_are_not_allowed() {
    let s = defended(|_| {}).await;
    let mut alice = s.user("alice").await;
    let _bob = s.user("bob").await;
    for ev in ["id-bob/rooms-changed", "id-bob/subscriptions-changed", "id-bob/message", "id-bob/anything"] {
        let f = alice.sub("stream-notify-user", json!([ev, false])).await;
        assert_eq!(f["msg"], "nosub", "{ev}: {f}");
        assert_error(&f["error"], "not-allowed", "Not allowed");
    }
    // Her own is fine.
    alice.sub_ok("stream-notify-user", json!(["id-alice/rooms-changed", false])).await;
    // A guest has no user streams at all.
    let mut g = s.guest().await;
    for (name, ev) in [
        ("stream-notify-user", "id-alice/rooms-changed"),
        ("stream-room-messages", "__my_messages__"),
        ("stream-notify-logged", "user-status"),
    ] {
        let f = g.sub(name, json!([ev, false])).await;
        assert_eq!(f["msg"], "nosub", "{name} {ev}: {f}");
        assert_eq!(f["error"]["error"], "not-allowed", "{f}");
    }
}

#[tokio::test]
async fn forged_expired_and_alg_none_tokens_are_refused() {
    let s = defended(|_| {}).await;
    let now = now_secs();
    let claims = json!({"sub": "id-mallory", "username": "mallory", "exp": now + 3600});
    let header_none = b64url(br#"{"alg":"none","typ":"JWT"}"#);
    let body = b64url(claims.to_string().as_bytes());
    let tokens = [
        ("forged", s.token_with(&claims, Algorithm::HS256, b"not-the-secret")),
        (
            "expired",
            s.token_with(
                &json!({"sub": "id-m", "username": "m", "exp": now - 3600}),
                Algorithm::HS256,
                SECRET,
            ),
        ),
        ("alg none", format!("{header_none}.{body}.")),
        ("other alg", s.token_with(&claims, Algorithm::HS512, SECRET)),
        ("oversized", format!("{}.{}.x", "a".repeat(9000), body)),
        ("garbage", "not.a.jwt".to_owned()),
        (
            "guest id",
            s.token_with(
                &json!({"sub": "guest-x", "username": "g", "exp": now + 60}),
                Algorithm::HS256,
                SECRET,
            ),
        ),
    ];
    let mut c = s.guest().await;
    for (what, t) in tokens {
        let e = c.err("login", json!([{"resume": t}])).await;
        assert_eq!(e["error"], 403, "{what}: {e}");
        assert_eq!(e["errorType"], "Meteor.Error", "{what}: {e}");
        // Still nobody: a method that needs a user is refused.
        let e = c.err("createChannel", json!([unique("r")])).await;
        assert_eq!(e["error"], "error-invalid-user", "{what}: {e}");
    }
}

#[tokio::test]
async fn guest_names_with_control_characters_are_refused() {
    let s = defended(|_| {}).await;
    let mut owner = s.user("owner").await;
    let code = channel(&mut owner, json!({"guestAccess": true})).await["code"].as_str().unwrap().to_owned();
    for name in ["a\u{0}b", "\u{1b}[31mred", "bell\u{7}", "line\nbreak", "\u{9f}", "tab\tname"] {
        let mut g = s.guest().await;
        let r = g.join_code(&code, Some(name)).await;
        assert_match_failed(&r["error"], "guestName");
    }
    let mut g = s.guest().await;
    let r = g.join_code(&code, Some("Zoë 😀")).await;
    assert!(r.get("error").is_none(), "{r}");
}

#[tokio::test]
async fn join_code_brute_force_is_braked_per_connection() {
    let s = defended(|l| {
        l.max_code_failures = 3;
        l.code_failure_window = Duration::from_secs(60);
    })
    .await;
    let mut owner = s.user("owner").await;
    let doc = channel(&mut owner, json!({"guestAccess": true})).await;
    let rid = doc["_id"].as_str().unwrap().to_owned();
    let code = doc["code"].as_str().unwrap().to_owned();
    owner.ok("saveRoomSettings", json!([rid, "joinCode", "right-code"])).await;

    // joinRoom with a wrong join code: three tries, then a pause even for
    // the right one.
    let mut m = s.user("mallory").await;
    for guess in ["a", "b", "c"] {
        let e = m.err("joinRoom", json!([rid, guess])).await;
        assert_eq!(e["error"], "error-code-invalid", "{e}");
    }
    let e = m.err("joinRoom", json!([rid, "right-code"])).await;
    assert_eq!(e["error"], "too-many-requests", "{e}");
    let ms = e["details"]["timeToReset"].as_u64().unwrap();
    assert!(ms > 15_000 && ms <= 20_000, "one attempt per 20 s: {e}");

    // Guessing shareable codes with join-room counts the same way.
    let mut g = s.guest().await;
    for guess in ["aaa-aaa-aaa", "bbb-bbb-bbb", "ccc-ccc-ccc"] {
        let r = g.join_code(guess, Some("Gus")).await;
        assert_eq!(r["error"]["error"], "error-room-not-found", "{r}");
    }
    let r = g.join_code(&code, Some("Gus")).await;
    assert_eq!(r["error"]["error"], "too-many-requests", "{r}");

    // Other connections are not punished.
    let mut honest = s.user("honest").await;
    honest.ok("joinRoom", json!([rid, "right-code"])).await;
    let body = get(s.addr, "/metrics").await.body;
    assert!(body.contains("roomd_rate_limited_total{limit=\"join_codes\"} 2"), "{body}");
}

/// Guessing a room's join code from many connections (each under its own
/// per-connection brake) slows the room's wrong answers down; the right
/// code is still answered at once: strangers' guessing never locks an
/// invitee out.
#[tokio::test]
async fn join_code_guessing_across_connections_delays_wrong_answers_only() {
    let s = TestServer::start().await;
    let mut owner = s.user("jc-owner").await;
    let room = channel(&mut owner, json!({})).await;
    let rid = room["_id"].as_str().unwrap().to_owned();
    owner.ok("saveRoomSettings", json!([rid, "joinCode", "right"])).await;
    for i in 0..20 {
        let mut c = s.user(&format!("jc-guess{i}")).await;
        let e = c.err("joinRoom", json!([rid, format!("wrong{i}")])).await;
        assert_eq!(e["error"], "error-code-invalid");
    }
    let mut late = s.user("jc-late").await;
    let t = std::time::Instant::now();
    let e = late.err("joinRoom", json!([rid, "wrong-again"])).await;
    assert_eq!(e["error"], "error-code-invalid", "{e}");
    assert!(t.elapsed() >= Duration::from_millis(900), "wrong answer not delayed: {:?}", t.elapsed());
    let t = std::time::Instant::now();
    assert_eq!(late.ok("joinRoom", json!([rid, "right"])).await, true);
    assert!(t.elapsed() < Duration::from_millis(500), "right code held up: {:?}", t.elapsed());
    // Members and admins are not held up by strangers' guessing.
    let mut admin = s.user_with_roles("jc-admin", &["admin"]).await;
    assert_eq!(admin.ok("joinRoom", json!([rid])).await, true);
}

/// `JSON.stringify("hello 😀".slice(0, 7))` writes a lone surrogate escape;
/// JavaScript's `JSON.parse` accepts it, so roomd does too (as U+FFFD), and
/// the call gets its result instead of a connection-level parse error.
#[tokio::test]
async fn lone_surrogate_escapes_are_replaced_and_the_call_answered() {
    let s = TestServer::start().await;
    let mut c = s.user("surrogate").await;
    let rid = channel(&mut c, json!({})).await["_id"].as_str().unwrap().to_owned();
    let frame = format!(
        r#"{{"msg":"method","id":"s1","method":"sendMessage","params":[{{"rid":"{rid}","msg":"hello \ud83d"}}]}}"#
    );
    c.send_raw(&frame).await;
    let r = c.result_of("s1").await;
    assert_eq!(r["result"]["msg"], "hello \u{FFFD}", "{r}");
    // A low half alone, a reversed pair, and a proper pair (kept as is).
    let frame = format!(
        r#"{{"msg":"method","id":"s2","method":"sendMessage","params":[{{"rid":"{rid}","msg":"\ude00x\ude00\ud83d \ud83d\ude00 \\ud83d"}}]}}"#
    );
    c.send_raw(&frame).await;
    let r = c.result_of("s2").await;
    assert_eq!(r["result"]["msg"], "\u{FFFD}x\u{FFFD}\u{FFFD} 😀 \\ud83d", "{r}");
}

/// A call frame that is not valid JSON further on, but whose `id` can be
/// read, is answered with that id's `result` (a coded error), not only a
/// connection-level `Parse error` that leaves the call waiting.
#[tokio::test]
async fn unparsable_call_with_a_readable_id_gets_an_error_result() {
    let s = TestServer::start().await;
    let mut c = s.guest().await;
    c.send_raw(r#"{"msg":"method","id":"p1","method":"getRoomById","params":[{"a":tru]}"#).await;
    let r = c.result_of("p1").await;
    assert_match_failed(&r["error"], "frame");
    // Truncated mid-params (a frame cut short by a buggy client).
    c.send_raw(r#"{"msg":"method","method":"sendMessage","id":"p2","params":[{"msg":"x"#).await;
    let r = c.result_of("p2").await;
    assert_match_failed(&r["error"], "frame");
    // No id before the broken part: nothing to answer but the parse error.
    c.send_raw(r#"{"msg":"method","params":[nope],"id":"p3"}"#).await;
    let f = c.expect(|f| f["msg"] == "error").await;
    assert_eq!(f["reason"], "Parse error", "{f}");
    // A sub is not a call: a parse error frame.
    c.send_raw(r#"{"msg":"sub","id":"p4","name":"x","params":[nope]}"#).await;
    let f = c.expect(|f| f["msg"] == "error").await;
    assert_eq!(f["reason"], "Parse error", "{f}");
    c.assert_alive().await;
}

/// Names that hide or reorder text (bidi overrides, zero-width characters,
/// separators, a BOM) are refused; accepted names are stored NFC-normalised.
#[tokio::test]
async fn guest_names_with_format_or_separator_characters_are_refused_and_nfc_normalised() {
    let s = TestServer::start().await;
    let mut owner = s.user("owner").await;
    let code = channel(&mut owner, json!({"guestAccess": true})).await["code"].as_str().unwrap().to_owned();
    let hidden = [
        "admin\u{202E}nimda",
        "ad\u{200B}min",
        "zero\u{200D}joiner",
        "\u{FEFF}bom",
        "line\u{2028}sep",
        "para\u{2029}sep",
        "isolate\u{2066}x\u{2069}",
        "soft\u{AD}hyphen",
        "tag\u{E0041}",
    ];
    for name in hidden {
        let mut g = s.guest().await;
        let r = g.join_code(&code, Some(name)).await;
        assert_match_failed(&r["error"], "guestName");
    }
    // "Zoë" with a combining diaeresis comes back precomposed.
    let mut g = s.guest().await;
    let r = g.join_code(&code, Some(" Zoe\u{0308} ")).await;
    assert_eq!(r["result"]["guestName"], "Zo\u{EB}", "{r}");
}

/// `customFields` keys that reach a JavaScript prototype or read as store
/// operators or paths are refused, at any depth; so are fields over the
/// size or depth limit.
#[tokio::test]
async fn custom_fields_with_dangerous_keys_or_too_big_are_refused() {
    let s = TestServer::start().await;
    let mut c = s.user("cf-owner").await;
    let bad = [
        json!({"__proto__": {"isAdmin": true}}),
        json!({"constructor": 1}),
        json!({"prototype": 1}),
        json!({"$where": "1"}),
        json!({"a.b": 1}),
        json!({"ok": {"deep": [{"$set": 1}]}}),
        json!({"a": {"b": {"c": {"d": {}}}}}),
        json!({"a": [[[[1]]]]}),
        json!({"big": "x".repeat(9000)}),
    ];
    for cf in bad {
        let r = c.call("createChannel", json!([unique("cf"), [], false, cf.clone()])).await;
        assert_eq!(r["error"]["details"]["field"], "customFields", "{cf}: {r}");
        assert_match_failed(&r["error"], "customFields");
    }
    // Four levels (the object itself is the first) are fine.
    let ok = json!({"team": "a", "tags": ["x", {"k": 1}], "n": {"m": {"o": [1]}}});
    let r = c.ok("createChannel", json!([unique("cf"), [], false, ok.clone()])).await;
    let rid = r["_id"].as_str().unwrap().to_owned();
    assert_eq!(c.room(&rid).await["customFields"], ok);
}

/// roomd frames what it sends itself and tungstenite only parses: the
/// control frames tungstenite answers with (a pong for a ping, the echo of
/// a client's close) still reach the client, whole, between roomd's own
/// frames, and a burst of replies arrives frame by frame intact.
#[tokio::test]
async fn pings_are_answered_and_a_clients_close_is_echoed() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    let s = TestServer::start().await;
    let (mut ws, _) = tokio_tungstenite::connect_async(s.url()).await.expect("connect");
    ws.send(Message::Text(r#"{"msg":"connect","version":"1","support":["1"]}"#.into())).await.unwrap();
    // Pings between method calls, whose results are queued meanwhile.
    for i in 0..20 {
        ws.send(Message::Text(format!(r#"{{"msg":"method","method":"nope","id":"{i}"}}"#).into()))
            .await
            .unwrap();
        ws.send(Message::Ping(format!("p{i}").into_bytes().into())).await.unwrap();
    }
    let (mut pongs, mut results) = (Vec::new(), 0);
    while pongs.len() < 20 || results < 20 {
        let m = tokio::time::timeout(WAIT, ws.next()).await.expect("answers timed out");
        match m.expect("stream ended").expect("bad frame") {
            Message::Pong(p) => pongs.push(String::from_utf8_lossy(&p).into_owned()),
            Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).expect("a whole JSON frame");
                results += usize::from(v["msg"] == "result");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // Pongs may be dropped under a flood (RFC 6455 lets a server answer
    // only the latest ping), never reordered or garbled.
    assert!(pongs.iter().all(|p| p.starts_with('p')), "{pongs:?}");
    assert_eq!(pongs.last().map(String::as_str), Some("p19"), "{pongs:?}");
    let bye = CloseFrame { code: CloseCode::Away, reason: "leaving".into() };
    ws.send(Message::Close(Some(bye))).await.unwrap();
    let echo = tokio::time::timeout(WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(f))) => return f.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                other => panic!("no close echo: {other:?}"),
            }
        }
    })
    .await
    .expect("close echo timed out");
    assert_eq!(echo, Some(1001), "the client's close code is echoed");
}

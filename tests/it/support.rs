//! Test harness: a real server on 127.0.0.1:0 and a small DDP client whose
//! every wait is bounded by a timeout, so a hang fails the test instead of
//! blocking CI.

#![allow(dead_code)]

use futures_util::{SinkExt, StreamExt};
use roomd::auth::{Authenticator, Claims, now_secs};
use roomd::config::Limits;
use roomd::server::{self, RunConfig, ServerParts, ServerState};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub(crate) const SECRET: &[u8] = b"test-secret";
pub(crate) const WAIT: Duration = Duration::from_secs(5);

pub(crate) struct TestServer {
    pub addr: SocketAddr,
    pub auth: Authenticator,
    /// The running server's shared state (metrics, readiness flag).
    pub state: Arc<ServerState>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    pub(crate) async fn start() -> Self {
        Self::with_limits(|_| {}).await
    }

    pub(crate) async fn with_limits(f: impl FnOnce(&mut Limits)) -> Self {
        Self::with_auth(Authenticator::hs256(SECRET), f).await
    }

    /// A server verifying tokens with `auth` (e.g. with audience checks);
    /// `token` still mints with [`SECRET`].
    pub(crate) async fn with_auth(auth: Authenticator, f: impl FnOnce(&mut Limits)) -> Self {
        Self::build(auth, None, f).await
    }

    /// A server whose changes go to `durability` (e.g. a
    /// [`FakeDurability`](roomd::durability::fake::FakeDurability) that slows
    /// or fails commits) instead of staying in memory.
    pub(crate) async fn with_durability(
        durability: Arc<dyn roomd::durability::Durability>,
        f: impl FnOnce(&mut Limits),
    ) -> Self {
        Self::build(Authenticator::hs256(SECRET), Some(durability), f).await
    }

    async fn build(
        auth: Authenticator,
        durability: Option<Arc<dyn roomd::durability::Durability>>,
        f: impl FnOnce(&mut Limits),
    ) -> Self {
        // Tests call at machine speed; the abuse limits (rate, room creation,
        // join-code brake) are off unless a test turns them on
        // (`l.no_rate_limits = false`, as `limits.rs` and `hostile.rs` do).
        let mut limits = Limits { no_rate_limits: true, ..Limits::default() };
        f(&mut limits);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let store = durability.map(|d| (d, roomd::durability::Snapshot::default()));
        let state = Arc::new(ServerState::new(ServerParts { auth: auth.clone(), limits: &limits, store }));
        let (tx, rx) = oneshot::channel::<()>();
        let cfg = RunConfig::from_limits(&limits);
        let run_state = state.clone();
        let task = tokio::spawn(async move {
            server::run(listener, run_state, cfg, async {
                let _ = rx.await;
            })
            .await
        });
        TestServer { addr, auth, state, stop: Some(tx), task: Some(task) }
    }

    pub(crate) fn url(&self) -> String {
        format!("ws://{}/websocket", self.addr)
    }

    pub(crate) fn token(&self, id: &str, username: &str, roles: &[&str]) -> String {
        self.auth.mint(&Claims {
            sub: id.into(),
            username: username.into(),
            name: Some(format!("{username} Name")),
            roles: Some(roles.iter().map(|r| r.to_string()).collect()),
            exp: now_secs() + 3600,
            nbf: None,
            iat: None,
        })
    }

    /// Signs arbitrary claims with `alg` and the server's secret (or another
    /// one), for tokens the normal minting path cannot produce.
    pub(crate) fn token_with(&self, claims: &Value, alg: jsonwebtoken::Algorithm, secret: &[u8]) -> String {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(alg),
            claims,
            &jsonwebtoken::EncodingKey::from_secret(secret),
        )
        .expect("mint test token")
    }

    /// A connected (DDP `connect` done) client that has not logged in.
    pub(crate) async fn guest(&self) -> Client {
        let mut c = Client::open(&self.url()).await;
        c.connect().await;
        c
    }

    /// A connected client logged in as `username` (user id `id-<username>`).
    pub(crate) async fn user(&self, username: &str) -> Client {
        self.user_with_roles(username, &["user"]).await
    }

    pub(crate) async fn user_with_roles(&self, username: &str, roles: &[&str]) -> Client {
        let mut c = self.guest().await;
        let token = self.token(&format!("id-{username}"), username, roles);
        let r = c.call("login", json!([{"resume": token}])).await;
        assert!(r.get("error").is_none(), "login failed: {r}");
        // The user's own `users` record came before the result; consumed
        // here so tests that read exact frame sequences start clean.
        let uid = format!("id-{username}");
        c.expect(|f| f["msg"] == "added" && f["collection"] == "users" && f["id"] == uid.as_str()).await;
        c.user_id = Some(uid);
        c
    }

    pub(crate) async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(15), t).await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub(crate) fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", NEXT_ID.fetch_add(1, Ordering::Relaxed))
}

enum Read {
    Frame(Value),
    Closed,
    Timeout,
}

pub(crate) struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Frames read while waiting for something else.
    pending: VecDeque<Value>,
    next: u64,
    pub user_id: Option<String>,
    /// Answer server pings automatically (on by default).
    pub auto_pong: bool,
}

impl Client {
    pub(crate) async fn open(url: &str) -> Self {
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("ws connect timed out")
            .expect("ws connect failed");
        Client { ws, pending: VecDeque::new(), next: 1, user_id: None, auto_pong: true }
    }

    /// Like [`Client::open`], but `None` if the server does not answer (for
    /// servers that may have been killed).
    pub(crate) async fn try_open(url: &str) -> Option<Self> {
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url)).await.ok()?.ok()?;
        Some(Client { ws, pending: VecDeque::new(), next: 1, user_id: None, auto_pong: true })
    }

    /// Like [`Client::connect`], but `None` if the connection ends or stays
    /// silent first.
    pub(crate) async fn try_connect(&mut self) -> Option<()> {
        let hello = json!({"msg": "connect", "version": "1", "support": ["1", "pre2", "pre1"]});
        self.ws.send(Message::Text(hello.to_string().into())).await.ok()?;
        let deadline = Instant::now() + WAIT;
        loop {
            match self.read_until(deadline).await {
                Read::Frame(f) if f["msg"] == "connected" => return Some(()),
                Read::Frame(f) => self.pending.push_back(f),
                Read::Closed | Read::Timeout => return None,
            }
        }
    }

    /// The next frame (pending ones first), or `None` if the connection
    /// ends or `deadline` passes first.
    pub(crate) async fn next_frame_until(&mut self, deadline: Instant) -> Option<Value> {
        if let Some(v) = self.pending.pop_front() {
            return Some(v);
        }
        match self.read_until(deadline).await {
            Read::Frame(v) => Some(v),
            Read::Closed | Read::Timeout => None,
        }
    }

    pub(crate) async fn send_raw(&mut self, text: &str) {
        self.ws.send(Message::Text(text.into())).await.expect("send");
    }

    /// Sends without failing the test if the server has gone (for clients
    /// that are expected to be cut off).
    pub(crate) async fn try_send(&mut self, v: Value) -> bool {
        self.ws.send(Message::Text(v.to_string().into())).await.is_ok()
    }

    pub(crate) async fn send(&mut self, v: Value) {
        self.send_raw(&v.to_string()).await;
    }

    pub(crate) async fn connect(&mut self) {
        self.send(json!({"msg": "connect", "version": "1", "support": ["1", "pre2", "pre1"]})).await;
        let f = self.expect(|f| f["msg"] == "connected").await;
        assert!(f["session"].is_string());
    }

    /// Reads the next frame from the socket (not from `pending`), answering
    /// server pings when `auto_pong` is on. `None` on close.
    async fn read(&mut self) -> Option<Value> {
        match self.read_until(Instant::now() + WAIT).await {
            Read::Frame(v) => Some(v),
            Read::Closed => None,
            Read::Timeout => panic!("timed out waiting for a frame"),
        }
    }

    async fn read_until(&mut self, deadline: Instant) -> Read {
        loop {
            let m = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return Read::Timeout,
                Ok(None) => return Read::Closed,
                Ok(Some(m)) => m,
            };
            match m {
                Ok(Message::Text(t)) => {
                    let v: Value = serde_json::from_str(&t).expect("server sent invalid JSON");
                    if self.auto_pong && v["msg"] == "ping" {
                        let mut pong = json!({"msg": "pong"});
                        if let Some(id) = v.get("id") {
                            pong["id"] = id.clone();
                        }
                        self.send(pong).await;
                        continue;
                    }
                    return Read::Frame(v);
                }
                Ok(Message::Close(_)) | Err(_) => return Read::Closed,
                Ok(_) => continue,
            }
        }
    }

    /// Next frame, pending ones first. Panics on close or timeout.
    pub(crate) async fn next_frame(&mut self) -> Value {
        if let Some(v) = self.pending.pop_front() {
            return v;
        }
        self.read().await.expect("connection closed")
    }

    /// Waits for the first frame matching `pred`, keeping the others.
    pub(crate) async fn expect(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.pending.iter().position(&pred) {
            return self.pending.remove(i).unwrap();
        }
        loop {
            let v = self.read().await.expect("connection closed while waiting");
            if pred(&v) {
                return v;
            }
            self.pending.push_back(v);
        }
    }

    /// Calls a method; returns the whole `result` frame and checks that
    /// `updated` follows.
    pub(crate) async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.send_method(method, params).await;
        self.result_of(&id).await
    }

    /// Like [`Client::call`], but `None` if the connection ends first.
    pub(crate) async fn try_call(&mut self, method: &str, params: Value) -> Option<Value> {
        self.try_call_for(method, params, WAIT).await
    }

    /// [`Client::try_call`] that waits up to `wait` for the result (frames
    /// read meanwhile are dropped).
    pub(crate) async fn try_call_for(
        &mut self,
        method: &str,
        params: Value,
        wait: Duration,
    ) -> Option<Value> {
        let id = self.next.to_string();
        self.next += 1;
        let frame = json!({"msg": "method", "method": method, "params": params, "id": id}).to_string();
        self.ws.send(Message::Text(frame.into())).await.ok()?;
        let deadline = Instant::now() + wait;
        loop {
            let v = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => serde_json::from_str::<Value>(&t).ok()?,
                Ok(Some(Ok(_))) => continue,
                _ => return None,
            };
            if v["msg"] == "ping" {
                let _ = self.ws.send(Message::Text(r#"{"msg":"pong"}"#.into())).await;
            } else if v["msg"] == "result" && v["id"] == id.as_str() {
                return Some(v);
            }
        }
    }

    /// Calls and unwraps `result`, panicking on an error.
    pub(crate) async fn ok(&mut self, method: &str, params: Value) -> Value {
        let r = self.call(method, params).await;
        assert!(r.get("error").is_none(), "{method} failed: {r}");
        r.get("result").cloned().unwrap_or(Value::Null)
    }

    /// Calls and returns the error object, panicking on success.
    pub(crate) async fn err(&mut self, method: &str, params: Value) -> Value {
        let r = self.call(method, params).await;
        r.get("error").cloned().unwrap_or_else(|| panic!("{method} should fail: {r}"))
    }

    /// Subscribes; returns `ready` or `nosub`.
    pub(crate) async fn sub(&mut self, name: &str, params: Value) -> Value {
        let id = self.next.to_string();
        self.next += 1;
        self.send(json!({"msg": "sub", "id": id, "name": name, "params": params})).await;
        self.expect(|f| {
            (f["msg"] == "ready" && f["subs"][0] == id.as_str())
                || (f["msg"] == "nosub" && f["id"] == id.as_str())
        })
        .await
    }

    pub(crate) async fn sub_ok(&mut self, name: &str, params: Value) -> String {
        let r = self.sub(name, params).await;
        assert_eq!(r["msg"], "ready", "sub {name} refused: {r}");
        r["subs"][0].as_str().unwrap().to_owned()
    }

    /// Next stream event (`changed`) on `collection` with `eventName`.
    pub(crate) async fn event(&mut self, collection: &str, event: &str) -> Value {
        self.expect(|f| {
            f["msg"] == "changed" && f["collection"] == collection && f["fields"]["eventName"] == event
        })
        .await
    }

    /// Next room message (args[0]) on `stream-room-messages` for `rid`.
    pub(crate) async fn room_message(&mut self, rid: &str) -> Value {
        self.event("stream-room-messages", rid).await["fields"]["args"][0].clone()
    }

    /// Asserts no frame matching `pred` arrives within `d` (frames that do
    /// arrive are kept for later). Also asserts the connection stays open.
    pub(crate) async fn expect_none(&mut self, d: Duration, pred: impl Fn(&Value) -> bool) {
        if let Some(v) = self.pending.iter().find(|v| pred(v)) {
            panic!("unexpected frame already pending: {v}");
        }
        let deadline = Instant::now() + d;
        loop {
            match self.read_until(deadline).await {
                Read::Timeout => return,
                Read::Closed => panic!("connection closed while expecting silence"),
                Read::Frame(v) => {
                    assert!(!pred(&v), "unexpected frame: {v}");
                    self.pending.push_back(v);
                }
            }
        }
    }

    /// Reads (and keeps) frames for `d`; false if the connection closed.
    pub(crate) async fn stays_open(&mut self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        loop {
            match self.read_until(deadline).await {
                Read::Timeout => return true,
                Read::Closed => return false,
                Read::Frame(v) => self.pending.push_back(v),
            }
        }
    }

    /// Every frame received so far and not yet consumed, in order.
    pub(crate) fn take_pending(&mut self) -> Vec<Value> {
        self.pending.drain(..).collect()
    }

    /// A ping/pong round trip: the connection is open and answering.
    pub(crate) async fn assert_alive(&mut self) {
        let id = format!("alive-{}", self.next);
        self.next += 1;
        self.send(json!({"msg": "ping", "id": id})).await;
        let f = self.expect(|f| f["msg"] == "pong" && f["id"] == id.as_str()).await;
        assert_eq!(f["id"], id.as_str());
    }

    pub(crate) async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.ws.send(Message::Binary(bytes.into())).await.expect("send binary");
    }

    /// Sends a text frame whose payload is `bytes` as is (e.g. invalid UTF-8,
    /// which `Message::Text` cannot carry).
    pub(crate) async fn send_text_bytes(&mut self, bytes: Vec<u8>) {
        use tokio_tungstenite::tungstenite::protocol::frame::Frame;
        use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
        let frame = Frame::message(bytes, OpCode::Data(Data::Text), true);
        self.ws.send(Message::Frame(frame)).await.expect("send raw text frame");
    }

    /// Sends a method call without waiting; returns its id.
    pub(crate) async fn send_method(&mut self, method: &str, params: Value) -> String {
        let id = self.next.to_string();
        self.next += 1;
        self.send(json!({"msg": "method", "method": method, "params": params, "id": id})).await;
        id
    }

    /// Waits for the `result` of call `id` (and the `updated` after it).
    pub(crate) async fn result_of(&mut self, id: &str) -> Value {
        let r = self.expect(|f| f["msg"] == "result" && f["id"] == id).await;
        self.expect(|f| f["msg"] == "updated" && f["methods"][0] == id).await;
        r
    }

    /// `join-room` by shareable code; returns the whole `result` frame.
    pub(crate) async fn join_code(&mut self, code: &str, guest_name: Option<&str>) -> Value {
        let mut p = json!({"code": code});
        if let Some(n) = guest_name {
            p["guestName"] = json!(n);
        }
        self.call("join-room", json!([p])).await
    }

    /// The room document as this (signed-in) client sees it.
    pub(crate) async fn room(&mut self, rid: &str) -> Value {
        self.ok("getRoomById", json!([rid])).await
    }

    /// Waits for the server to close; returns the close code and reason.
    /// One deadline for the whole wait: a server that keeps sending (e.g.
    /// pings) but never closes fails instead of waiting forever.
    pub(crate) async fn closed(&mut self) -> Option<(u16, String)> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await.expect("no close in time") {
                Some(Ok(Message::Close(f))) => return f.map(|f| (u16::from(f.code), f.reason.to_string())),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }

    pub(crate) async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// Creates a channel as `c` with roomd options; returns the room document.
pub(crate) async fn channel(c: &mut Client, extra: Value) -> Value {
    let name = unique("room");
    c.ok("createChannel", json!([name, [], false, {}, extra])).await
}

/// Asserts `err` is a complete Meteor.Error with `code` and `reason`.
pub(crate) fn assert_error(err: &Value, code: impl Into<Value>, reason: &str) {
    let code: Value = code.into();
    assert_eq!(err["error"], code, "error code in {err}");
    assert_eq!(err["reason"], reason, "reason in {err}");
    assert_eq!(err["isClientSafe"], true, "{err}");
    assert_eq!(err["errorType"], "Meteor.Error", "{err}");
    let code_text = match &code {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    assert_eq!(err["message"], format!("{reason} [{code_text}]"), "message in {err}");
    assert!(err["details"].is_object(), "details in {err}");
}

/// Asserts `err` is a `Match failed` (400) error naming `field`.
pub(crate) fn assert_match_failed(err: &Value, field: &str) {
    assert_eq!(err["error"], 400, "{err}");
    let reason = err["reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("Match failed"), "{err}");
    assert!(reason.contains(field), "reason should name {field}: {err}");
    assert_eq!(err["errorType"], "Meteor.Error", "{err}");
}

/// Whether `s` is an ISO-8601 UTC timestamp like `2026-03-03T10:36:00.000Z`.
pub(crate) fn is_iso8601(s: &Value) -> bool {
    let Some(s) = s.as_str() else { return false };
    let b = s.as_bytes();
    b.len() == 24
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            23 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

/// Whether `v` is an EJSON date `{"$date": <ms>}` near the present.
pub(crate) fn is_recent_date(v: &Value) -> bool {
    let Some(ms) = v.get("$date").and_then(Value::as_i64) else {
        return false;
    };
    let now = (now_secs() as i64) * 1000;
    v.as_object().is_some_and(|o| o.len() == 1) && (now - 60_000..now + 60_000).contains(&ms)
}

/// Base64url without padding, for hand-built (e.g. `alg: none`) tokens.
pub(crate) fn b64url(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// A room message (`stream-room-messages` args[0]) of system type `t`.
pub(crate) fn is_system(m: &Value, t: &str) -> bool {
    m["t"] == t
}

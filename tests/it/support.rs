//! Test harness: a real server on 127.0.0.1:0 and a small DDP client whose
//! every wait is bounded by a timeout, so a hang fails the test instead of
//! blocking CI.

#![allow(dead_code)]

use futures_util::{SinkExt, StreamExt};
use roomd::auth::{Authenticator, Claims, now_secs};
use roomd::config::Limits;
use roomd::server::{self, RunConfig, ServerState};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const SECRET: &[u8] = b"test-secret";
pub const WAIT: Duration = Duration::from_secs(5);

pub struct TestServer {
    pub addr: SocketAddr,
    pub auth: Authenticator,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::with_limits(|_| {}).await
    }

    pub async fn with_limits(f: impl FnOnce(&mut Limits)) -> Self {
        let mut limits = Limits::default();
        f(&mut limits);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let auth = Authenticator::hs256(SECRET);
        let state = Arc::new(ServerState::new(auth.clone(), &limits));
        let (tx, rx) = oneshot::channel::<()>();
        let cfg = RunConfig::from_limits(&limits);
        let task = tokio::spawn(async move {
            server::run(listener, state, cfg, async {
                let _ = rx.await;
            })
            .await
        });
        TestServer {
            addr,
            auth,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/websocket", self.addr)
    }

    pub fn token(&self, id: &str, username: &str, roles: &[&str]) -> String {
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

    /// A connected (DDP `connect` done) client that has not logged in.
    pub async fn guest(&self) -> Client {
        let mut c = Client::open(&self.url()).await;
        c.connect().await;
        c
    }

    /// A connected client logged in as `username` (user id `id-<username>`).
    pub async fn user(&self, username: &str) -> Client {
        self.user_with_roles(username, &["user"]).await
    }

    pub async fn user_with_roles(&self, username: &str, roles: &[&str]) -> Client {
        let mut c = self.guest().await;
        let token = self.token(&format!("id-{username}"), username, roles);
        let r = c.call("login", json!([{"resume": token}])).await;
        assert!(r.get("error").is_none(), "login failed: {r}");
        c.user_id = Some(format!("id-{username}"));
        c
    }

    pub async fn stop(mut self) {
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

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", NEXT_ID.fetch_add(1, Ordering::Relaxed))
}

pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Frames read while waiting for something else.
    pending: VecDeque<Value>,
    next: u64,
    pub user_id: Option<String>,
    /// Answer server pings automatically (on by default).
    pub auto_pong: bool,
}

impl Client {
    pub async fn open(url: &str) -> Self {
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("ws connect timed out")
            .expect("ws connect failed");
        Client {
            ws,
            pending: VecDeque::new(),
            next: 1,
            user_id: None,
            auto_pong: true,
        }
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.ws.send(Message::Text(text.into())).await.expect("send");
    }

    pub async fn send(&mut self, v: Value) {
        self.send_raw(&v.to_string()).await;
    }

    pub async fn connect(&mut self) {
        self.send(json!({"msg": "connect", "version": "1", "support": ["1", "pre2", "pre1"]}))
            .await;
        let f = self.expect(|f| f["msg"] == "connected").await;
        assert!(f["session"].is_string());
    }

    /// Reads the next frame from the socket (not from `pending`).
    async fn read(&mut self) -> Option<Value> {
        loop {
            let m = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("timed out waiting for a frame")?;
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
                    return Some(v);
                }
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// Next frame, pending ones first. Panics on close or timeout.
    pub async fn next_frame(&mut self) -> Value {
        if let Some(v) = self.pending.pop_front() {
            return v;
        }
        self.read().await.expect("connection closed")
    }

    /// Waits for the first frame matching `pred`, keeping the others.
    pub async fn expect(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
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
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next.to_string();
        self.next += 1;
        self.send(json!({"msg": "method", "method": method, "params": params, "id": id}))
            .await;
        let r = self
            .expect(|f| f["msg"] == "result" && f["id"] == id.as_str())
            .await;
        self.expect(|f| f["msg"] == "updated" && f["methods"][0] == id.as_str())
            .await;
        r
    }

    /// Calls and unwraps `result`, panicking on an error.
    pub async fn ok(&mut self, method: &str, params: Value) -> Value {
        let r = self.call(method, params).await;
        assert!(r.get("error").is_none(), "{method} failed: {r}");
        r.get("result").cloned().unwrap_or(Value::Null)
    }

    /// Calls and returns the error object, panicking on success.
    pub async fn err(&mut self, method: &str, params: Value) -> Value {
        let r = self.call(method, params).await;
        r.get("error")
            .cloned()
            .unwrap_or_else(|| panic!("{method} should fail: {r}"))
    }

    /// Subscribes; returns `ready` or `nosub`.
    pub async fn sub(&mut self, name: &str, params: Value) -> Value {
        let id = self.next.to_string();
        self.next += 1;
        self.send(json!({"msg": "sub", "id": id, "name": name, "params": params}))
            .await;
        self.expect(|f| {
            (f["msg"] == "ready" && f["subs"][0] == id.as_str())
                || (f["msg"] == "nosub" && f["id"] == id.as_str())
        })
        .await
    }

    pub async fn sub_ok(&mut self, name: &str, params: Value) -> String {
        let r = self.sub(name, params).await;
        assert_eq!(r["msg"], "ready", "sub {name} refused: {r}");
        r["subs"][0].as_str().unwrap().to_owned()
    }

    /// Next stream event (`changed`) on `collection` with `eventName`.
    pub async fn event(&mut self, collection: &str, event: &str) -> Value {
        self.expect(|f| {
            f["msg"] == "changed" && f["collection"] == collection && f["fields"]["eventName"] == event
        })
        .await
    }

    /// Next room message (args[0]) on `stream-room-messages` for `rid`.
    pub async fn room_message(&mut self, rid: &str) -> Value {
        self.event("stream-room-messages", rid).await["fields"]["args"][0].clone()
    }

    /// Asserts no frame matching `pred` arrives within `d`.
    pub async fn expect_none(&mut self, d: Duration, pred: impl Fn(&Value) -> bool) {
        assert!(
            !self.pending.iter().any(&pred),
            "unexpected frame already pending"
        );
        let deadline = tokio::time::Instant::now() + d;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return,
                Ok(Some(Ok(Message::Text(t)))) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    assert!(!pred(&v), "unexpected frame: {v}");
                    self.pending.push_back(v);
                }
                Ok(_) => return,
            }
        }
    }

    /// Waits for the server to close; returns the close code and reason.
    pub async fn closed(&mut self) -> Option<(u16, String)> {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), self.ws.next())
                .await
                .expect("no close in time")
            {
                Some(Ok(Message::Close(f))) => return f.map(|f| (u16::from(f.code), f.reason.to_string())),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// Creates a channel as `c` with roomd options; returns the room document.
pub async fn channel(c: &mut Client, extra: Value) -> Value {
    let name = unique("room");
    c.ok("createChannel", json!([name, [], false, {}, extra])).await
}

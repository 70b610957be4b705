//! DDP client over a WebSocket.
use super::*;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

type Ws = WebSocketStream<TcpStream>;
type Reply = oneshot::Sender<Result<Value, DdpError>>;

/// Receives a connection's data frames, on its reader task.
pub(crate) trait Listener: Send + Sync {
    /// Sees every text frame before it is parsed; returning true consumes it.
    /// A fast path for hot frames (fanout deliveries) that skips JSON parsing.
    fn raw(&self, _frame: &str) -> bool {
        false
    }
    /// `added`/`changed`/`removed` frames: (collection, fields).
    fn event(&self, _collection: &str, _fields: &Value) {}
}

pub(crate) type Handler = Arc<dyn Listener>;

const CONNECT_FRAME: &str = r#"{"msg":"connect","version":"1","support":["1","pre2","pre1"]}"#;

#[derive(Debug, Clone)]
pub(crate) enum DdpError {
    /// A method or subscription error reported by the server.
    Method {
        error: String,
        reason: String,
    },
    Closed,
    Timeout,
    Io(String),
    Protocol(String),
}

impl DdpError {
    /// Short code for tallies: the server's error code, or closed/timeout/io/protocol.
    pub(crate) fn code(&self) -> String {
        match self {
            DdpError::Method { error, .. } => error.clone(),
            DdpError::Closed => "closed".into(),
            DdpError::Timeout => "timeout".into(),
            DdpError::Io(_) => "io".into(),
            DdpError::Protocol(_) => "protocol".into(),
        }
    }
    pub(crate) fn is(&self, code: &str) -> bool {
        matches!(self, DdpError::Method { error, .. } if error == code)
    }
}

impl fmt::Display for DdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DdpError::Method { error, reason } => write!(f, "{error}: {reason}"),
            DdpError::Closed => write!(f, "connection closed"),
            DdpError::Timeout => write!(f, "timed out"),
            DdpError::Io(e) => write!(f, "{e}"),
            DdpError::Protocol(e) => write!(f, "protocol: {e}"),
        }
    }
}

fn io(e: std::io::Error) -> DdpError {
    DdpError::Io(e.to_string())
}

fn method_error(e: &Value) -> DdpError {
    let error = match e.get("error") {
        Some(Value::String(s)) => s.clone(),
        Some(v) if !v.is_null() => v.to_string(),
        _ => "unknown-error".into(),
    };
    let reason =
        e.get("reason").or_else(|| e.get("message")).and_then(Value::as_str).unwrap_or("").to_string();
    DdpError::Method { error, reason }
}

/// Process-wide counters of things that should not happen.
pub(crate) static DISCONNECTS: AtomicU64 = AtomicU64::new(0);
static NOTES: Mutex<BTreeMap<&'static str, u64>> = Mutex::new(BTreeMap::new());

/// Counts an unusual frame/event and prints the first three of each kind.
pub(crate) fn note(kind: &'static str, detail: &str) {
    let n = {
        let mut m = NOTES.lock().unwrap();
        let e = m.entry(kind).or_default();
        *e += 1;
        *e
    };
    if n <= 3 {
        eprintln!("[loadgen] {kind}: {}", util::truncate(detail, 400));
    }
}

pub(crate) fn notes() -> BTreeMap<&'static str, u64> {
    NOTES.lock().unwrap().clone()
}

/// Where to connect and how.
#[derive(Clone, Debug)]
pub(crate) struct Endpoint {
    pub url: String,
    pub addr: SocketAddr,
    pub src_addrs: u8,
    pub timeout: Duration,
}

impl Endpoint {
    pub(crate) async fn resolve(url: &str, src_addrs: u8, timeout: Duration) -> Result<Self, String> {
        let rest =
            url.strip_prefix("ws://").ok_or_else(|| format!("only ws:// URLs are supported, got `{url}`"))?;
        let host = rest.split('/').next().unwrap_or(rest);
        let host = if host.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
            host.to_string()
        } else {
            format!("{host}:80")
        };
        let addr = tokio::net::lookup_host(&host)
            .await
            .map_err(|e| format!("resolving {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("{host} did not resolve"))?;
        Ok(Endpoint { url: url.to_string(), addr, src_addrs: src_addrs.max(1), timeout })
    }

    /// Source address for connection `index`: 127.0.0.(1 + index % src_addrs)
    /// when the server is on IPv4 loopback, so more than ~28k sockets fit.
    pub(crate) fn source_ip(&self, index: usize) -> Option<IpAddr> {
        match self.addr.ip() {
            IpAddr::V4(v4) if v4.is_loopback() => {
                let last = 1 + (index % self.src_addrs as usize) as u8;
                Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
            }
            _ => None,
        }
    }
}

struct Shared {
    tx: mpsc::UnboundedSender<Message>,
    methods: Mutex<HashMap<u64, Reply>>,
    subs: Mutex<HashMap<u64, Reply>>,
    connected: Mutex<Option<Reply>>,
    next_id: AtomicU64,
    closing: AtomicBool,
    alive: AtomicBool,
    /// Woken when `alive` turns false.
    died: tokio::sync::Notify,
}

#[derive(serde::Deserialize)]
struct Incoming {
    msg: Option<String>,
    id: Option<Value>,
    result: Option<Value>,
    error: Option<Value>,
    subs: Option<Vec<String>>,
    collection: Option<String>,
    fields: Option<Value>,
    session: Option<String>,
    version: Option<String>,
}

fn sub_id(s: &str) -> Option<u64> {
    s.strip_prefix('s')?.parse().ok()
}

impl Shared {
    fn send(&self, text: String) -> bool {
        self.tx.send(Message::text(text)).is_ok()
    }

    fn dispatch(&self, text: &str, handler: Option<&Handler>) {
        if handler.is_some_and(|h| h.raw(text)) {
            return;
        }
        let m: Incoming = match serde_json::from_str(text) {
            Ok(m) => m,
            Err(_) => return note("unparseable frame", text),
        };
        match m.msg.as_deref().unwrap_or("") {
            "ping" => {
                let pong = match m.id {
                    Some(id) => json!({"msg": "pong", "id": id}),
                    None => json!({"msg": "pong"}),
                };
                self.send(pong.to_string());
            }
            "connected" => {
                if let Some(tx) = self.connected.lock().unwrap().take() {
                    let _ = tx.send(Ok(Value::String(m.session.unwrap_or_default())));
                }
            }
            "failed" => {
                note("connect failed", text);
                if let Some(tx) = self.connected.lock().unwrap().take() {
                    let msg = format!("server refused DDP version, suggests {:?}", m.version);
                    let _ = tx.send(Err(DdpError::Protocol(msg)));
                }
            }
            "result" => {
                let id = m.id.as_ref().and_then(Value::as_str);
                let id = id.and_then(|s| s.parse::<u64>().ok());
                let tx = id.and_then(|id| self.methods.lock().unwrap().remove(&id));
                match tx {
                    Some(tx) => {
                        let r = match m.error {
                            Some(e) => Err(method_error(&e)),
                            None => Ok(m.result.unwrap_or(Value::Null)),
                        };
                        let _ = tx.send(r);
                    }
                    None => note("result for an unknown method id", text),
                }
            }
            "ready" => {
                for s in m.subs.unwrap_or_default() {
                    let tx = sub_id(&s).and_then(|id| self.subs.lock().unwrap().remove(&id));
                    if let Some(tx) = tx {
                        let _ = tx.send(Ok(Value::Null));
                    }
                }
            }
            "nosub" => {
                let id = m.id.as_ref().and_then(Value::as_str).and_then(sub_id);
                let tx = id.and_then(|id| self.subs.lock().unwrap().remove(&id));
                if let Some(tx) = tx {
                    let err = m
                        .error
                        .as_ref()
                        .map(method_error)
                        .unwrap_or(DdpError::Protocol("nosub without error".into()));
                    let _ = tx.send(Err(err));
                }
            }
            "added" | "changed" | "removed" | "addedBefore" | "movedBefore" => {
                if let Some(h) = handler {
                    let coll = m.collection.as_deref().unwrap_or("");
                    h.event(coll, m.fields.as_ref().unwrap_or(&Value::Null));
                }
            }
            "updated" | "pong" => {}
            "error" => note("server error frame", text),
            _ => note("unexpected frame", text),
        }
    }

    fn fail_all(&self) {
        let mut replies: Vec<Reply> = Vec::new();
        replies.extend(self.methods.lock().unwrap().drain().map(|(_, r)| r));
        replies.extend(self.subs.lock().unwrap().drain().map(|(_, r)| r));
        replies.extend(self.connected.lock().unwrap().take());
        for r in replies {
            let _ = r.send(Err(DdpError::Closed));
        }
    }
}

async fn write_loop(mut sink: SplitSink<Ws, Message>, mut rx: mpsc::UnboundedReceiver<Message>) {
    while let Some(m) = rx.recv().await {
        if sink.feed(m).await.is_err() {
            return;
        }
        // Batch whatever else is queued into one flush.
        while let Ok(m) = rx.try_recv() {
            if sink.feed(m).await.is_err() {
                return;
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
}

async fn read_loop(mut stream: SplitStream<Ws>, shared: Arc<Shared>, handler: Option<Handler>) {
    while let Some(item) = stream.next().await {
        match item {
            Ok(Message::Text(t)) => shared.dispatch(t.as_str(), handler.as_ref()),
            Ok(Message::Close(frame)) => {
                if !shared.closing.load(Relaxed) {
                    note("server closed a connection", &format!("{frame:?}"));
                }
                break;
            }
            Ok(_) => {}
            Err(e) => {
                if !shared.closing.load(Relaxed) {
                    note("connection error", &e.to_string());
                }
                break;
            }
        }
    }
    shared.alive.store(false, Relaxed);
    shared.died.notify_waiters();
    if !shared.closing.load(Relaxed) {
        DISCONNECTS.fetch_add(1, Relaxed);
    }
    shared.fail_all();
}

/// A reply still to come (method result or subscription readiness).
pub(crate) struct Pending {
    shared: Arc<Shared>,
    id: u64,
    sub: bool,
    rx: oneshot::Receiver<Result<Value, DdpError>>,
    timeout: Duration,
}

impl Pending {
    pub(crate) async fn wait(self) -> Result<Value, DdpError> {
        let Pending { shared, id, sub, rx, timeout } = self;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(DdpError::Closed),
            Err(_) => {
                let map = if sub { &shared.subs } else { &shared.methods };
                map.lock().unwrap().remove(&id);
                Err(DdpError::Timeout)
            }
        }
    }
}

struct Inner {
    shared: Arc<Shared>,
    tasks: [JoinHandle<()>; 2],
    timeout: Duration,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shared.closing.store(true, Relaxed);
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// One DDP connection. Cloning shares it; the socket closes when the last
/// clone is dropped.
#[derive(Clone)]
pub(crate) struct Client {
    inner: Arc<Inner>,
}

impl Client {
    /// Opens TCP + WebSocket and sends `connect`; the returned `Pending` resolves
    /// on `connected`.
    pub(crate) async fn connect(
        ep: &Endpoint,
        index: usize,
        handler: Option<Handler>,
    ) -> Result<(Client, Pending), DdpError> {
        let sock = if ep.addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.map_err(io)?;
        if let Some(ip) = ep.source_ip(index) {
            sock.bind(SocketAddr::new(ip, 0)).map_err(|e| DdpError::Io(format!("bind {ip}:0: {e}")))?;
        }
        let stream = tokio::time::timeout(ep.timeout, sock.connect(ep.addr))
            .await
            .map_err(|_| DdpError::Timeout)?
            .map_err(io)?;
        stream.set_nodelay(true).map_err(io)?;
        // Small buffers: thousands of mostly idle connections.
        let cfg = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(16 * 1024);
        let handshake = tokio_tungstenite::client_async_with_config(ep.url.as_str(), stream, Some(cfg));
        let (ws, _response) = tokio::time::timeout(ep.timeout, handshake)
            .await
            .map_err(|_| DdpError::Timeout)?
            .map_err(|e| DdpError::Io(format!("websocket handshake: {e}")))?;
        let (sink, stream) = ws.split();
        let (tx, rx) = mpsc::unbounded_channel();
        let (ctx, crx) = oneshot::channel();
        let shared = Arc::new(Shared {
            tx,
            methods: Mutex::default(),
            subs: Mutex::default(),
            connected: Mutex::new(Some(ctx)),
            next_id: AtomicU64::new(1),
            closing: AtomicBool::new(false),
            alive: AtomicBool::new(true),
            died: tokio::sync::Notify::new(),
        });
        let writer = tokio::spawn(write_loop(sink, rx));
        let reader = tokio::spawn(read_loop(stream, shared.clone(), handler));
        shared.send(CONNECT_FRAME.to_string());
        let connected = Pending { shared: shared.clone(), id: 0, sub: false, rx: crx, timeout: ep.timeout };
        let inner = Inner { shared, tasks: [writer, reader], timeout: ep.timeout };
        Ok((Client { inner: Arc::new(inner) }, connected))
    }

    /// Connects and (with a token) logs in, pipelining `login` after `connect`.
    /// The error names the stage that failed.
    pub(crate) async fn open(
        ep: &Endpoint,
        index: usize,
        token: Option<&str>,
        handler: Option<Handler>,
    ) -> Result<Client, (&'static str, DdpError)> {
        let (client, connected) = Client::connect(ep, index, handler).await.map_err(|e| ("connect", e))?;
        let login = token.map(|t| client.start("login", json!([{ "resume": t }])));
        connected.wait().await.map_err(|e| ("connect", e))?;
        if let Some(login) = login {
            login.wait().await.map_err(|e| ("login", e))?;
        }
        Ok(client)
    }

    /// Registers a method call and returns its frame without sending it.
    pub(crate) fn prepare(&self, method: &str, params: Value) -> (String, Pending) {
        let shared = &self.inner.shared;
        let id = shared.next_id.fetch_add(1, Relaxed);
        let (tx, rx) = oneshot::channel();
        shared.methods.lock().unwrap().insert(id, tx);
        let frame = json!({
            "msg": "method",
            "method": method,
            "params": params,
            "id": id.to_string(),
        })
        .to_string();
        let pending = Pending { shared: shared.clone(), id, sub: false, rx, timeout: self.inner.timeout };
        (frame, pending)
    }

    /// Sends a prepared frame. On a dead connection the pending call fails at once.
    pub(crate) fn send_prepared(&self, frame: String, pending: &Pending) {
        if !self.inner.shared.send(frame) {
            let map = if pending.sub { &self.inner.shared.subs } else { &self.inner.shared.methods };
            map.lock().unwrap().remove(&pending.id);
        }
    }

    pub(crate) fn start(&self, method: &str, params: Value) -> Pending {
        let (frame, pending) = self.prepare(method, params);
        self.send_prepared(frame, &pending);
        pending
    }

    pub(crate) async fn call(&self, method: &str, params: Value) -> Result<Value, DdpError> {
        self.start(method, params).wait().await
    }

    /// Subscribes and waits for `ready`; returns the subscription id.
    pub(crate) async fn subscribe(&self, name: &str, params: Value) -> Result<u64, DdpError> {
        let shared = &self.inner.shared;
        let id = shared.next_id.fetch_add(1, Relaxed);
        let (tx, rx) = oneshot::channel();
        shared.subs.lock().unwrap().insert(id, tx);
        let frame = json!({"msg": "sub", "id": format!("s{id}"), "name": name, "params": params});
        let pending = Pending { shared: shared.clone(), id, sub: true, rx, timeout: self.inner.timeout };
        self.send_prepared(frame.to_string(), &pending);
        pending.wait().await.map(|_| id)
    }

    pub(crate) fn unsubscribe(&self, sid: u64) {
        self.inner.shared.subs.lock().unwrap().remove(&sid);
        let frame = json!({"msg": "unsub", "id": format!("s{sid}")});
        self.inner.shared.send(frame.to_string());
    }

    /// Closes cleanly: a WebSocket close frame, then waits (bounded by the
    /// call timeout) for the server's answer and the socket's end.
    pub(crate) async fn close(&self) {
        let shared = &self.inner.shared;
        shared.closing.store(true, Relaxed);
        let _ = shared.tx.send(Message::Close(None));
        let _ = tokio::time::timeout(self.inner.timeout, self.closed()).await;
    }

    pub(crate) fn is_alive(&self) -> bool {
        self.inner.shared.alive.load(Relaxed)
    }

    /// Resolves once the connection is gone (at once if it already is).
    pub(crate) async fn closed(&self) {
        let shared = &self.inner.shared;
        let died = shared.died.notified();
        tokio::pin!(died);
        died.as_mut().enable();
        if shared.alive.load(Relaxed) {
            died.await;
        }
    }
}

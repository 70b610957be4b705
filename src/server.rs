//! The accept loop, HTTP routing on the one port, and the state every
//! connection shares.
//!
//! `run` takes its listener and its shutdown signal from the caller (main, or
//! a test that bound `127.0.0.1:0`), in the manner of mini-redis. Each socket
//! sends an HTTP request head first: `/websocket` becomes a DDP connection,
//! `/healthz`, `/readyz` and `/metrics` get a plain HTTP answer, anything
//! else a 404.

use crate::auth::Authenticator;
use crate::config::Limits;
use crate::conn::{self, CloseReason, ConnConfig, Tracked};
use crate::http::{self, HeadError, RequestHead, UpgradeError};
use crate::hub::UserHub;
use crate::ids::ConnId;
use crate::limits::{CodeBrakes, RoomCreationLimiter, SessionLimits};
use crate::metrics::Metrics;
use crate::outbox::Budget;
use crate::registry::Registry;
use crate::room::RoomConfig;
use crate::users::Directory;
use futures_util::SinkExt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Everything connections share, built whole by [`ServerState::new`].
/// Lookups go through sharded maps; there is no global lock on any
/// per-message path.
pub struct ServerState {
    /// Verifies the resume tokens of `login`.
    pub auth: Authenticator,
    /// Rooms by id, name, code and direct-message member set: how a call
    /// naming a room finds its actor.
    pub registry: Arc<Registry>,
    /// Users seen (by id and username), their rooms, logged-out tokens.
    pub users: Arc<Directory>,
    /// User-scoped streams and who is online.
    pub hub: Arc<UserHub>,
    /// Where changes become durable (the SQLite store, or a test's fake);
    /// `None` with `--in-memory`.
    pub store: Option<Arc<dyn crate::durability::Durability>>,
    /// Knobs every room actor gets (mailbox, history, guest grace).
    pub room_config: Arc<RoomConfig>,
    /// Knobs every connection gets (queues, byte budgets, heartbeats).
    pub conn_config: ConnConfig,
    /// Rate, subscription and pending-call limits each session applies.
    pub session_limits: SessionLimits,
    /// Room creations per user, shared by all of a user's connections.
    pub room_creations: RoomCreationLimiter,
    /// Join-code brakes per user and per source address.
    pub code_brakes: CodeBrakes,
    /// This server's metrics (`GET /metrics`).
    pub metrics: Arc<Metrics>,
    /// Whether `GET /readyz` may say yes (see [`set_ready`](Self::set_ready)).
    /// Shutdown also turns readyz 503 through `draining`, whatever this says.
    ready: AtomicBool,
    /// Set when shutdown begins: new WebSockets are refused with 503 while
    /// open connections are closed.
    draining: AtomicBool,
    /// The next connection's id.
    next_conn: AtomicU64,
}

/// What a [`ServerState`] is built from.
pub struct ServerParts<'a> {
    /// Verifies the resume tokens of `login`.
    pub auth: Authenticator,
    pub limits: &'a Limits,
    /// The open store and what it held at start; `None` with `--in-memory`.
    pub store: Option<(Arc<dyn crate::durability::Durability>, crate::durability::Snapshot)>,
}

impl ServerState {
    /// Builds the shared state, restoring the store's rooms and users (their
    /// actors are spawned, so this runs inside the tokio runtime).
    pub fn new(parts: ServerParts<'_>) -> Self {
        let ServerParts { auth, limits, store } = parts;
        let (store, snapshot) = store.unzip();
        let state = ServerState {
            auth,
            registry: Arc::new(Registry::default()),
            users: Arc::new(Directory::default()),
            hub: Arc::new(UserHub::default()),
            store,
            room_config: Arc::new(RoomConfig {
                mailbox: limits.room_mailbox.max(1),
                history_limit: limits.history_limit,
                guest_grace: limits.guest_grace,
                max_message_len: limits.max_message_len,
            }),
            conn_config: ConnConfig {
                outbound_queue: limits.outbound_queue.max(1),
                outbound_bytes: Arc::new(Budget::new(
                    limits.max_queued_bytes_per_conn,
                    limits.max_queued_bytes,
                )),
                write_stall_timeout: limits.write_stall_timeout,
                ping_interval: limits.ping_interval,
                ping_timeout: limits.ping_timeout,
                connect_timeout: limits.connect_timeout,
            },
            session_limits: limits.session_limits(),
            room_creations: RoomCreationLimiter::default(),
            code_brakes: CodeBrakes::default(),
            metrics: Arc::new(Metrics::new()),
            ready: AtomicBool::new(true),
            draining: AtomicBool::new(false),
            next_conn: AtomicU64::new(1),
        };
        if let Some(snapshot) = snapshot {
            state.restore(snapshot);
        }
        state
    }

    /// Says whether `GET /readyz` may answer yes (it does from the start:
    /// the store, if any, is open before the state is built). Operators'
    /// tooling and tests turn it off to take the server out of rotation.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// What `GET /readyz` answers: the store is open and the server is not
    /// shutting down.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.is_draining()
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}

/// Settings `run` needs besides the shared state.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub max_connections: usize,
    /// Time a new socket has to send its request head (and, for WebSockets,
    /// to take the `101`); a socket that sends nothing is dropped after it.
    pub handshake_timeout: Duration,
    pub max_frame_bytes: usize,
    pub shutdown_timeout: Duration,
    /// Browser origins allowed besides same-origin (see [`http::HostPolicy`]).
    pub allowed_origins: Arc<[String]>,
    /// `--public-url`s: hosts roomd is served under (see [`http::HostPolicy`]).
    pub public_urls: Arc<[String]>,
}

impl RunConfig {
    pub fn from_limits(l: &Limits) -> Self {
        RunConfig {
            max_connections: l.max_connections,
            handshake_timeout: l.handshake_timeout,
            max_frame_bytes: l.max_frame_bytes,
            shutdown_timeout: l.shutdown_timeout,
            allowed_origins: l.allowed_origins.clone().into(),
            public_urls: l.public_urls.clone().into(),
        }
    }
}

fn ws_config(max_frame: usize) -> WebSocketConfig {
    // The default 128 KiB read buffer per connection dominates memory at
    // tens of thousands of connections; DDP frames are small (a larger frame
    // grows the buffer as needed).
    //
    // Writes are buffered up to 16 KiB so the writer's feed…feed…flush turns
    // a batch of queued frames into one syscall; the buffer starts empty and
    // only grows on connections that actually receive bursts.
    WebSocketConfig::default()
        .read_buffer_size(512)
        .write_buffer_size(16 * 1024)
        .max_message_size(Some(max_frame))
        .max_frame_size(Some(max_frame))
}

/// File descriptors kept out of the connection limit: the store (database,
/// WAL, shared memory), logs, the listener, and sockets for `/healthz`,
/// `/metrics` and refusals, which must keep working at the limit.
pub const FD_RESERVE: u64 = 64;

/// Raises the soft open-files limit to the hard one and returns the number
/// of DDP connections the process can hold: `wanted`, or fewer if the
/// files limit (less [`FD_RESERVE`]) is lower. Without it, accepts start
/// failing with EMFILE before `--max-connections` is reached, and then
/// nobody (not even `/healthz`) is answered.
pub fn connection_capacity(wanted: usize) -> usize {
    let (soft, hard) = match rlimit::Resource::NOFILE.get() {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-files limit; using --max-connections as is");
            return wanted;
        }
    };
    let soft = if hard > soft {
        match rlimit::increase_nofile_limit(hard) {
            Ok(now) => now,
            Err(e) => {
                tracing::warn!(soft, hard, error = %e, "cannot raise the open-files limit");
                soft
            }
        }
    } else {
        soft
    };
    let fit = usize::try_from(soft.saturating_sub(FD_RESERVE)).unwrap_or(usize::MAX).max(1);
    if fit < wanted {
        tracing::warn!(
            open_files = soft,
            reserve = FD_RESERVE,
            max_connections = fit,
            requested = wanted,
            "the open-files limit is below --max-connections; connections beyond {fit} get 1013 (raise `ulimit -n` / LimitNOFILE)"
        );
        fit
    } else {
        tracing::info!(open_files = soft, max_connections = wanted, "connection limit");
        wanted
    }
}

/// What every socket task needs; one per `run`.
struct Listener {
    state: Arc<ServerState>,
    cfg: RunConfig,
    ws_cfg: WebSocketConfig,
    /// One permit per open DDP connection (`--max-connections`).
    permits: Arc<Semaphore>,
    /// The `Host` and `Origin` checks.
    hosts: http::HostPolicy,
}

/// How often histogram samples are folded into buckets.
const METRICS_UPKEEP: Duration = Duration::from_secs(5);

/// Accepts connections until `shutdown` resolves, then shuts down
/// gracefully: readyz turns 503 and new WebSockets are refused, every
/// connection finishes the call it is running and is closed with 1012
/// "server restarting", and `run` returns when all are gone or the
/// configured deadline passes, whichever is first. Health and metrics keep
/// answering until then.
pub async fn run(listener: TcpListener, state: Arc<ServerState>, cfg: RunConfig, shutdown: impl Future) {
    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    let shutdown_timeout = cfg.shutdown_timeout;
    let ctx = Arc::new(Listener {
        hosts: http::HostPolicy::new(listener.local_addr().ok(), &cfg.public_urls, &cfg.allowed_origins),
        ws_cfg: ws_config(cfg.max_frame_bytes),
        permits: Arc::new(Semaphore::new(cfg.max_connections)),
        state: state.clone(),
        cfg,
    });
    let upkeep = tokio::spawn({
        let metrics = state.metrics.clone();
        async move {
            let mut tick = tokio::time::interval(METRICS_UPKEEP);
            loop {
                tick.tick().await;
                metrics.upkeep();
            }
        }
    });
    let mut backoff = Backoff::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            (stream, peer) = accept(&listener, &mut backoff) => {
                tracker.spawn(handle_socket(ctx.clone(), stream, peer, stop.clone()));
            }
        }
    }
    tracing::info!("shutting down: refusing new connections, closing open ones");
    state.draining.store(true, Ordering::Release);
    stop.cancel();
    tracker.close();
    // Sockets accepted while draining get HTTP answers only (readyz 503,
    // WebSocket 503); they are not waited for.
    let http_only = CancellationToken::new();
    let deadline = tokio::time::sleep(shutdown_timeout);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = tracker.wait() => break,
            _ = &mut deadline => {
                tracing::warn!(open = tracker.len(), "shutdown deadline passed with connections still open");
                break;
            }
            (stream, peer) = accept(&listener, &mut backoff) => {
                tokio::spawn(handle_socket(ctx.clone(), stream, peer, http_only.clone()));
            }
        }
    }
    upkeep.abort();
}

/// Exponential backoff for failing `accept` (typically EMFILE), logging at
/// most once per [`Backoff::LOG_EVERY`] with the number of failures since.
struct Backoff {
    delay: Duration,
    failures: u64,
    logged: Option<Instant>,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(5);
    const MAX: Duration = Duration::from_secs(1);
    const LOG_EVERY: Duration = Duration::from_secs(10);

    fn new() -> Self {
        Backoff { delay: Self::FIRST, failures: 0, logged: None }
    }

    fn succeeded(&mut self) {
        self.delay = Self::FIRST;
    }

    /// Records a failure; returns how long to wait before the next accept.
    fn failed(&mut self, e: &std::io::Error) -> Duration {
        self.failures += 1;
        let now = Instant::now();
        if self.logged.is_none_or(|t| now.duration_since(t) >= Self::LOG_EVERY) {
            tracing::warn!(error = %e, failures = self.failures, "accept failing; backing off");
            self.failures = 0;
            self.logged = Some(now);
        }
        let wait = self.delay;
        self.delay = (self.delay * 2).min(Self::MAX);
        wait
    }
}

async fn accept(listener: &TcpListener, backoff: &mut Backoff) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                backoff.succeeded();
                let _ = stream.set_nodelay(true);
                // TCP keepalive reaps half-open sockets even where the DDP
                // heartbeat does not run (`pre1` clients, the HTTP phase).
                let keepalive = socket2::TcpKeepalive::new()
                    .with_time(Duration::from_secs(60))
                    .with_interval(Duration::from_secs(10))
                    .with_retries(3);
                let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
                return (stream, peer);
            }
            Err(e) => {
                let wait = backoff.failed(&e);
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// One accepted socket: read the request head (within the handshake
/// timeout; dropped at once if the server stops), then route it.
/// A WebSocket that finished its upgrade and holds a connection slot.
struct Upgraded {
    ws: WebSocketStream<Tracked<TcpStream>>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// One accepted socket. The HTTP phase runs boxed: its state (request head,
/// timers) is freed once the upgrade is done, so a long-lived connection's
/// task holds only the DDP connection's state.
async fn handle_socket(ctx: Arc<Listener>, stream: TcpStream, peer: SocketAddr, stop: CancellationToken) {
    let state = ctx.state.clone();
    let Some(up) = Box::pin(http_phase(ctx, stream, peer, stop.clone())).await else { return };
    let id = ConnId(state.next_conn.fetch_add(1, Ordering::Relaxed));
    tracing::debug!(conn = %id, %peer, "connected");
    conn::serve(up.ws, id, peer.ip(), state, stop).await;
    drop(up._permit);
    tracing::debug!(conn = %id, "disconnected");
}

/// Reads the request head and answers it: health, metrics, errors, or the
/// WebSocket upgrade (returned for the caller to serve).
async fn http_phase(
    ctx: Arc<Listener>,
    mut stream: TcpStream,
    peer: SocketAddr,
    stop: CancellationToken,
) -> Option<Upgraded> {
    let deadline = Instant::now() + ctx.cfg.handshake_timeout;
    let metrics = &ctx.state.metrics;
    let head = tokio::select! {
        biased;
        _ = stop.cancelled() => return None,
        r = tokio::time::timeout_at(deadline, http::read_head(&mut stream)) => r,
    };
    let head = match head {
        Ok(Ok(h)) => h,
        Err(_) => {
            tracing::debug!(%peer, "no request head within the handshake timeout");
            metrics.handshake_failed("timeout");
            return None;
        }
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "bad request head");
            let (status, label) = match e {
                HeadError::TooLarge => (431, "too-large"),
                HeadError::Malformed => (400, "bad-request"),
                HeadError::Closed | HeadError::Io(_) => {
                    metrics.handshake_failed("closed");
                    return None;
                }
            };
            metrics.handshake_failed(label);
            reply(&mut stream, deadline, status, "bad request\n").await;
            return None;
        }
    };
    if let Some(name) = head.duplicate {
        tracing::debug!(%peer, header = name, "header sent twice");
        metrics.handshake_failed("bad-request");
        reply(&mut stream, deadline, 400, &format!("more than one {name} header\n")).await;
        return None;
    }
    if !ctx.hosts.host_allowed(head.host.as_deref()) {
        tracing::debug!(%peer, host = head.host.as_deref().unwrap_or(""), "host not allowed");
        metrics.handshake_failed("host");
        let body = "host not allowed: roomd listens on a loopback address and answers only to \
                    localhost, 127.0.0.1, [::1] and the hosts of --public-url\n";
        reply(&mut stream, deadline, 421, body).await;
        return None;
    }
    match head.path.as_str() {
        "/websocket" => upgrade(ctx, stream, head, peer, stop, deadline).await,
        "/healthz" | "/readyz" | "/metrics" => {
            serve_http(&ctx.state, stream, &head, deadline).await;
            None
        }
        _ => {
            metrics.handshake_failed("not-found");
            reply(&mut stream, deadline, 404, "not found; the DDP endpoint is /websocket\n").await;
            None
        }
    }
}

/// Writes a small plain-text reply, giving up at `deadline`.
async fn reply(stream: &mut TcpStream, deadline: Instant, status: u16, body: &str) {
    let _ = tokio::time::timeout_at(deadline, http::respond_text(stream, status, body)).await;
}

/// `GET /healthz`, `/readyz`, `/metrics`.
async fn serve_http(state: &ServerState, mut stream: TcpStream, head: &RequestHead, deadline: Instant) {
    let head_only = match head.method.as_str() {
        "GET" => false,
        "HEAD" => true,
        _ => {
            let r = http::respond(
                &mut stream,
                405,
                "text/plain; charset=utf-8",
                "method not allowed\n",
                "Allow: GET, HEAD\r\n",
                false,
            );
            let _ = tokio::time::timeout_at(deadline, r).await;
            return;
        }
    };
    let (status, content_type, body) = match head.path.as_str() {
        "/healthz" => (200, "text/plain; charset=utf-8", "ok\n".to_owned()),
        "/readyz" if state.is_ready() => (200, "text/plain; charset=utf-8", "ready\n".to_owned()),
        "/readyz" if state.is_draining() => (503, "text/plain; charset=utf-8", "shutting down\n".to_owned()),
        "/readyz" => (503, "text/plain; charset=utf-8", "not ready\n".to_owned()),
        _ => {
            state.metrics.outbound_queued_bytes(state.conn_config.outbound_bytes.used());
            (200, "text/plain; version=0.0.4; charset=utf-8", state.metrics.render(state.registry.len()))
        }
    };
    let r = http::respond(&mut stream, status, content_type, &body, "", head_only);
    let _ = tokio::time::timeout_at(deadline, r).await;
}

/// `GET /websocket`: checks the upgrade and the origin, answers `101`,
/// then runs the DDP connection (or closes it with 1013 when the server is
/// at `--max-connections`).
async fn upgrade(
    ctx: Arc<Listener>,
    mut stream: TcpStream,
    mut head: RequestHead,
    peer: SocketAddr,
    stop: CancellationToken,
    deadline: Instant,
) -> Option<Upgraded> {
    let state = &ctx.state;
    if state.is_draining() {
        state.metrics.handshake_failed("draining");
        reply(&mut stream, deadline, 503, "shutting down, reconnect later\n").await;
        return None;
    }
    let key = match head.websocket_key() {
        Ok(k) => k.to_owned(),
        Err(UpgradeError::NotUpgrade) => {
            state.metrics.handshake_failed("bad-request");
            reply(&mut stream, deadline, 400, "expected a WebSocket upgrade\n").await;
            return None;
        }
        Err(UpgradeError::Version) => {
            state.metrics.handshake_failed("bad-request");
            let r = http::respond(
                &mut stream,
                426,
                "text/plain; charset=utf-8",
                "unsupported WebSocket version\n",
                "Sec-WebSocket-Version: 13\r\n",
                false,
            );
            let _ = tokio::time::timeout_at(deadline, r).await;
            return None;
        }
    };
    if !ctx.hosts.origin_allowed(head.origin.as_deref(), head.host.as_deref()) {
        tracing::debug!(%peer, origin = head.origin.as_deref().unwrap_or(""), "origin not allowed");
        state.metrics.handshake_failed("origin");
        reply(&mut stream, deadline, 403, "origin not allowed\n").await;
        return None;
    }
    let accept = http::switching_protocols(&key);
    match tokio::time::timeout_at(deadline, stream.write_all(accept.as_bytes())).await {
        Ok(Ok(())) => {}
        _ => {
            state.metrics.handshake_failed("closed");
            return None;
        }
    }
    let rest = std::mem::take(&mut head.rest);
    drop(head);
    let ws = WebSocketStream::from_partially_read(Tracked::new(stream), rest, Role::Server, Some(ctx.ws_cfg))
        .await;
    let Ok(permit) = ctx.permits.clone().try_acquire_owned() else {
        tracing::debug!(%peer, "over the connection limit");
        state.metrics.handshake_failed("too-many-connections");
        reject(ws, CloseReason::TooManyConnections).await;
        return None;
    };
    let _ = stop;
    Some(Upgraded { ws, _permit: permit })
}

async fn reject(mut ws: WebSocketStream<Tracked<TcpStream>>, reason: CloseReason) {
    let frame = CloseFrame { code: CloseCode::from(reason.code()), reason: reason.text().into() };
    let _ = tokio::time::timeout(Duration::from_secs(2), ws.send(Message::Close(Some(frame)))).await;
}

//! The accept loop, the HTTP connection on the one port, and the state
//! every connection shares.
//!
//! `run` takes its listener and its shutdown signal from the caller (main, or
//! a test that bound `127.0.0.1:0`), in the manner of mini-redis. Each socket
//! is served by hyper's HTTP/1 connection with the router of `routes.rs`;
//! `/websocket` is upgraded and handed, as the `Tracked` `TcpStream` it was accepted as, to the DDP
//! connection code, which runs in the socket's own task (one task per
//! socket, HTTP phase and DDP connection alike).

use crate::auth::Authenticator;
use crate::config::Limits;
use crate::conn::{self, CloseReason, ConnConfig, Tracked};
use crate::http;
use crate::hub::UserHub;
use crate::ids::ConnId;
use crate::limits::{CodeBrakes, RoomCreationLimiter, SessionLimits};
use crate::metrics::Metrics;
use crate::outbox::Budget;
use crate::registry::Registry;
use crate::room::RoomConfig;
use crate::users::Directory;
use axum::Router;
use axum::extract::Request;
use hyper::server::conn::http1;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// Everything connections share, built whole by [`ServerState::new`].
/// Lookups go through sharded maps; there is no global lock on any
/// per-message path.
pub struct ServerState {
    /// Verifies the resume tokens of `login`.
    pub(crate) auth: Authenticator,
    /// Rooms by id, name, code and direct-message member set: how a call
    /// naming a room finds its actor.
    pub(crate) registry: Arc<Registry>,
    /// Users seen (by id and username), their rooms, logged-out tokens.
    pub(crate) users: Arc<Directory>,
    /// User-scoped streams and who is online.
    pub(crate) hub: Arc<UserHub>,
    /// Where changes become durable (the SQLite store, or a test's fake);
    /// `None` with `--in-memory`.
    pub(crate) store: Option<Arc<dyn crate::durability::Durability>>,
    /// Cluster mode's link to the shared log (`--cluster`); `None` on one
    /// node. Rooms then append commands there instead of store batches.
    pub(crate) cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Where rooms put their changes in order, and names and member sets
    /// are claimed (`room/log.rs`): this node alone, or the cluster's log.
    pub(crate) log: Arc<dyn crate::room::log::RoomLog>,
    /// Knobs every room actor gets (mailbox, history, guest grace).
    pub(crate) room_config: Arc<RoomConfig>,
    /// Knobs every connection gets (queues, byte budgets, heartbeats).
    pub(crate) conn_config: ConnConfig,
    /// Rate, subscription and pending-call limits each session applies.
    pub(crate) session_limits: SessionLimits,
    /// Room creations per user, shared by all of a user's connections.
    pub(crate) room_creations: RoomCreationLimiter,
    /// Join-code brakes per user and per source address.
    pub(crate) code_brakes: CodeBrakes,
    /// This server's metrics (`GET /metrics`).
    pub(crate) metrics: Arc<Metrics>,
    /// Whether `GET /readyz` may say yes (see [`set_ready`](Self::set_ready)).
    /// Shutdown also turns readyz 503 through `draining`, whatever this says.
    ready: AtomicBool,
    /// Set when shutdown begins: new WebSockets are refused with 503 while
    /// open connections are closed.
    draining: AtomicBool,
    /// Cluster mode: set until the log's replay has caught up. Until then
    /// this node's replicas are partial, so the doors that would answer
    /// from them (DDP, Socket.IO, REST) refuse with `503` instead.
    replaying: AtomicBool,
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
            log: Arc::new(crate::room::log::LocalLog::new(store.clone())),
            store,
            cluster: None,
            room_config: Arc::new(RoomConfig {
                mailbox: limits.room_mailbox.max(1),
                history_limit: limits.history_cache(),
                history_max_age: limits.retention().max_age,
                guest_grace: limits.guest_grace,
                max_message_len: limits.max_message_len,
                replay: Arc::new(limits.replay_limits()),
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
                ws: ws_config(limits.max_frame_bytes),
            },
            session_limits: limits.session_limits(),
            room_creations: RoomCreationLimiter::default(),
            code_brakes: CodeBrakes::default(),
            metrics: Arc::new(Metrics::new()),
            ready: AtomicBool::new(true),
            draining: AtomicBool::new(false),
            replaying: AtomicBool::new(false),
            next_conn: AtomicU64::new(1),
        };
        if let Some(snapshot) = snapshot {
            state.restore(snapshot);
        }
        state
    }

    /// Cluster mode: builds the state around the shared log. Rooms and users
    /// come from the log's replay (see `cluster::spawn_applier`), which the
    /// caller starts once the state is shared.
    pub fn clustered(
        auth: crate::auth::Authenticator,
        limits: &Limits,
        cluster: Arc<crate::cluster::Cluster>,
    ) -> Self {
        let store: Arc<dyn crate::durability::Durability> = cluster.clone();
        let mut state = ServerState::new(ServerParts {
            auth,
            limits,
            store: Some((store, crate::durability::Snapshot::default())),
        });
        state.log = Arc::new(crate::cluster::room_log::NatsLog(cluster.clone()));
        state.cluster = Some(cluster);
        // Replaying from the start: no door may answer before the applier
        // has caught up (it clears this), not even before it is spawned.
        state.replaying = AtomicBool::new(true);
        state
    }

    /// Cluster mode: starts applying the shared log (a no-op on one node).
    /// `/readyz` says no until the log's replay has caught up.
    pub fn start_applier(self: &Arc<Self>) {
        if let Some(cluster) = &self.cluster {
            crate::cluster::spawn_applier(cluster.clone(), self.clone());
        }
    }

    /// The Prometheus text `GET /metrics` serves.
    pub fn render_metrics(&self) -> String {
        self.metrics.render(self.registry.len())
    }

    /// Bytes queued for connections and not yet written, server-wide.
    pub fn queued_bytes(&self) -> usize {
        self.conn_config.outbound_bytes.used()
    }

    /// Users whose own `users` record some connection is shown (a leak
    /// shows here).
    pub fn own_records(&self) -> usize {
        self.hub.records.len()
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
        self.ready.load(Ordering::Acquire)
            && !self.is_draining()
            && self.cluster.as_ref().is_none_or(|c| c.connected())
    }

    /// Cluster mode: whether the log's replay is still catching up (see
    /// `replaying`). Set by the applier only.
    pub(crate) fn set_replaying(&self, replaying: bool) {
        self.replaying.store(replaying, Ordering::Release);
    }

    pub fn is_replaying(&self) -> bool {
        self.replaying.load(Ordering::Acquire)
    }

    /// Why `GET /readyz` says no, for its body.
    pub(crate) fn not_ready_reason(&self) -> &'static str {
        if self.is_draining() {
            "shutting down"
        } else if self.is_replaying() {
            "replaying the room log"
        } else if self.cluster.as_ref().is_some_and(|c| !c.connected()) {
            "NATS connection down"
        } else {
            "not ready"
        }
    }

    /// A fresh id for a connection of any door.
    pub fn next_conn_id(&self) -> ConnId {
        ConnId(self.next_conn.fetch_add(1, Ordering::Relaxed))
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}

/// Settings `run` needs besides the shared state.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub max_connections: usize,
    /// Time a new socket has to send its request head; a socket that sends
    /// nothing, or dribbles its head, is dropped after it.
    pub handshake_timeout: Duration,
    /// Idle time after which a kept-alive HTTP connection is closed.
    pub http_keepalive_idle: Duration,
    /// Requests answered on one HTTP connection before it is closed.
    pub http_max_requests_per_conn: u32,
    pub max_frame_bytes: usize,
    pub shutdown_timeout: Duration,
    /// Browser origins allowed besides same-origin (see `http::HostPolicy`).
    pub allowed_origins: Arc<[String]>,
    /// `--public-url`s: hosts roomd is served under (see `http::HostPolicy`).
    pub public_urls: Arc<[String]>,
}

impl RunConfig {
    pub fn from_limits(l: &Limits) -> Self {
        RunConfig {
            max_connections: l.max_connections,
            handshake_timeout: l.handshake_timeout,
            http_keepalive_idle: l.http_keepalive_idle,
            http_max_requests_per_conn: l.http_max_requests_per_conn,
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
    // tungstenite writes only control frames (pongs, close replies): roomd
    // frames what it sends itself (`conn::Socket`), so nothing is buffered.
    WebSocketConfig::default()
        .read_buffer_size(512)
        .write_buffer_size(0)
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

/// Largest request head accepted (request line and headers); larger heads
/// get `431`.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Most headers accepted in one request (more get `431`).
const MAX_HEADERS: usize = 32;

/// What the HTTP side of every socket shares; one per `run`. It is the
/// router's state.
pub(crate) struct HttpContext {
    pub(crate) state: Arc<ServerState>,
    /// The `Host` and `Origin` checks.
    pub(crate) hosts: http::HostPolicy,
    pub(crate) ws_cfg: WebSocketConfig,
    /// One permit per open connection, DDP or Socket.IO (`--max-connections`).
    permits: Arc<Semaphore>,
    /// Cancelled when shutdown begins; DDP connections then close with 1012.
    stop: CancellationToken,
    /// hyper's HTTP/1 settings: head size and time limits.
    http1: http1::Builder,
    /// `--http-keepalive-idle`: idle time after which a kept-alive HTTP
    /// connection is closed.
    keepalive_idle: Duration,
    /// `--http-max-requests-per-conn`.
    max_requests_per_conn: u32,
    /// Woken when a DDP connection or Socket.IO socket is refused for want
    /// of a slot: kept-alive HTTP connections then give theirs back (idle
    /// ones at once, busy ones after their answer), so REST keep-alive
    /// never starves the realtime doors.
    pub(crate) reclaim: Arc<Notify>,
    /// The Socket.IO sessions' byte accounting, found by the requests of
    /// the session (`routes.rs`).
    pub(crate) socketio_taps: crate::socketio::Taps,
}

/// The peer address of the socket a request came on (a request extension).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer(pub(crate) SocketAddr);

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
    let mut http1 = http1::Builder::new();
    // The head timeout needs hyper's timer (without one, hyper panics when
    // it arms the timeout). Only HTTP/1: sniffing for HTTP/2 would read
    // before the head timeout starts.
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.handshake_timeout)
        .max_headers(MAX_HEADERS)
        .max_header_size(MAX_HEAD_BYTES);
    let ctx = Arc::new(HttpContext {
        hosts: http::HostPolicy::new(listener.local_addr().ok(), &cfg.public_urls, &cfg.allowed_origins),
        ws_cfg: ws_config(cfg.max_frame_bytes),
        permits: Arc::new(Semaphore::new(cfg.max_connections)),
        state: state.clone(),
        stop: stop.clone(),
        http1,
        keepalive_idle: cfg.http_keepalive_idle,
        max_requests_per_conn: cfg.http_max_requests_per_conn,
        reclaim: Arc::new(Notify::new()),
        socketio_taps: crate::socketio::Taps::default(),
    });
    let door = crate::socketio::DoorConfig {
        permits: ctx.permits.clone(),
        reclaim: ctx.reclaim.clone(),
        max_payload: cfg.max_frame_bytes,
        taps: ctx.socketio_taps.clone(),
    };
    let (socketio, io) = crate::socketio::layer(state.clone(), door);
    let router = crate::routes::router(ctx.clone(), socketio);
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
    prepare_listener(&listener);
    let mut backoff = Backoff::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            (stream, peer) = accept(&listener, &mut backoff) => {
                // The socket's one task, DDP connection included: shutdown
                // waits for it.
                tracker.spawn(serve_socket(ctx.clone(), router.clone(), stream, peer, stop.clone()));
            }
        }
    }
    tracing::info!("shutting down: refusing new connections, closing open ones");
    state.draining.store(true, Ordering::Release);
    stop.cancel();
    // Socket.IO sockets are not on the tracker (engineioxide spawns their
    // tasks): each is disconnected here, its session ended like a DDP one.
    io.close().await;
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
                tokio::spawn(serve_socket(ctx.clone(), router.clone(), stream, peer, http_only.clone()));
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

/// Linux copies a listening socket's `TCP_NODELAY` and keepalive settings
/// (and arms the keepalive timer) into every socket it accepts, so
/// [`set_socket_options`] runs once on the listener instead of five
/// `setsockopt` calls per connection (a fifth of the syscalls the floor
/// peer makes per join). Elsewhere each accepted socket gets them.
const SOCKETS_INHERIT_OPTIONS: bool = cfg!(target_os = "linux");

/// `TCP_NODELAY` (DDP frames are small and answered at once) and TCP
/// keepalive, which reaps half-open sockets even where the DDP heartbeat
/// does not run (`pre1` clients, the HTTP phase).
fn set_socket_options(sock: socket2::SockRef<'_>) -> std::io::Result<()> {
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(60))
        .with_interval(Duration::from_secs(10))
        .with_retries(3);
    sock.set_tcp_nodelay(true)?;
    sock.set_tcp_keepalive(&keepalive)
}

/// Sets the options accepted sockets inherit (see [`SOCKETS_INHERIT_OPTIONS`]).
fn prepare_listener(listener: &TcpListener) {
    if SOCKETS_INHERIT_OPTIONS && let Err(e) = set_socket_options(socket2::SockRef::from(listener)) {
        tracing::warn!(error = %e, "cannot set TCP_NODELAY and keepalive on the listener");
    }
}

async fn accept(listener: &TcpListener, backoff: &mut Backoff) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                backoff.succeeded();
                if !SOCKETS_INHERIT_OPTIONS {
                    let _ = set_socket_options(socket2::SockRef::from(&stream));
                }
                return (stream, peer);
            }
            Err(e) => {
                let wait = backoff.failed(&e);
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// One HTTP connection's keep-alive bookkeeping, shared by its requests (a
/// request extension, read by `routes.rs`) and the task serving it.
#[derive(Default)]
pub(crate) struct KeepAlive {
    /// Requests read on this connection so far (the per-connection cap).
    requests: AtomicU32,
    /// Requests being answered now: the connection is idle only at 0.
    busy: AtomicU32,
    /// Woken when a request starts or its answer is ready: the idle timer
    /// starts again.
    activity: Notify,
    /// The `--max-connections` slot taken when the connection was first
    /// kept open; given back when it closes or is upgraded (engineioxide
    /// keeps a request's extensions for a Socket.IO socket's life, so
    /// dropping this struct is not enough). A lock of this connection
    /// alone, taken once per answer.
    slot: std::sync::Mutex<Option<OwnedSemaphorePermit>>,
    /// The REST door's last sign-in on this connection, reused by the next
    /// request with the same token (`rest::SignedIn`). A lock of this
    /// connection alone.
    pub(crate) signed_in: std::sync::Mutex<Option<Box<crate::rest::SignedIn>>>,
    /// The hand-over: `/websocket`'s handler leaves the upgrade of its `101`
    /// here, and the socket's task, once hyper lets the socket go, runs the
    /// DDP connection on it ([`serve_socket`]). Set at most once.
    ddp_upgrade: std::sync::Mutex<Option<OnUpgrade>>,
}

impl std::fmt::Debug for KeepAlive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeepAlive").field("requests", &self.requests).finish_non_exhaustive()
    }
}

impl KeepAlive {
    fn holds_slot(&self) -> bool {
        self.slot.lock().is_ok_and(|s| s.is_some())
    }

    /// Leaves the upgrade of a DDP `101` for the socket's task to take when
    /// hyper's connection ends (see [`serve_socket`]).
    pub(crate) fn hand_over(&self, on_upgrade: OnUpgrade) {
        if let Ok(mut slot) = self.ddp_upgrade.lock() {
            *slot = Some(on_upgrade);
        }
    }

    fn take_upgrade(&self) -> Option<OnUpgrade> {
        self.ddp_upgrade.lock().ok()?.take()
    }
}

impl HttpContext {
    /// Whether the connection of `ka` stays open after the answer being
    /// sent: not while draining, not past `--http-max-requests-per-conn`,
    /// and only with a `--max-connections` slot (taken on the first kept
    /// answer). Without one the answer closes the connection, so a server
    /// at its limit still answers REST, one request per connection.
    pub(crate) fn keep_open(&self, ka: &KeepAlive) -> bool {
        if self.state.is_draining() || ka.requests.load(Ordering::Relaxed) >= self.max_requests_per_conn {
            return false;
        }
        let Ok(mut slot) = ka.slot.lock() else { return false };
        if slot.is_none() {
            *slot = self.permits.clone().try_acquire_owned().ok();
        }
        slot.is_some()
    }
}

/// One accepted socket, for its whole life, in ONE task: served by hyper
/// until it is closed or upgraded, then, when the answer was a DDP `101`,
/// the DDP connection on the same socket ([`HttpContext::start_ddp`]). The
/// floor does accept, handshake and serve in one task too: a second task per
/// join (spawn, tracker entry, wake across tasks) was ~2 % of a join's
/// samples, and its cell ~500 B of every idle connection (BENCHMARKS.md,
/// "Joins: one task across the hand-over").
///
/// The HTTP phase ([`serve_http`]: hyper's connection, its buffers, the idle
/// timer) is boxed and freed at the upgrade: this future is the task cell of
/// every open DDP connection, so it holds the DDP connection's future and
/// little else (`tests::the_socket_task_stays_small`). A plain `fn` rather
/// than an `async fn`, which would keep its five arguments beside the
/// connection for its whole life.
fn serve_socket(
    ctx: Arc<HttpContext>,
    router: Router,
    stream: TcpStream,
    peer: SocketAddr,
    stop: CancellationToken,
) -> impl Future<Output = ()> + Send + 'static {
    let http = Box::pin(serve_http(ctx, router, stream, peer, stop));
    async move {
        let Some(DdpStart { serve, permit, id }) = http.await else { return };
        serve.await;
        drop(permit);
        tracing::debug!(conn = %id, "disconnected");
    }
}

/// What the HTTP phase of a socket hands its DDP phase, in the same task:
/// the connection, ready to run, with its `--max-connections` slot.
struct DdpStart<F> {
    /// `conn::serve`'s future.
    serve: F,
    /// Held until the connection ends.
    permit: OwnedSemaphorePermit,
    id: ConnId,
}

/// The HTTP phase of one socket: hyper serves it until it is closed or
/// upgraded. Between requests of a kept-alive connection it closes the
/// connection after `--http-keepalive-idle` without a request, when
/// shutdown begins, or when the realtime doors need its slot. After a DDP
/// `101` (the handler left the upgrade in the connection's [`KeepAlive`])
/// it returns the DDP connection to run.
async fn serve_http(
    ctx: Arc<HttpContext>,
    router: Router,
    stream: TcpStream,
    peer: SocketAddr,
    stop: CancellationToken,
) -> Option<DdpStart<impl Future<Output = ()> + Send + 'static>> {
    let ka = Arc::new(KeepAlive::default());
    // Tracked from the start: a Socket.IO WebSocket is written by the
    // engine, and its byte budgets and cut act on this wrapper (`Wire`).
    let stream = Tracked::new(stream);
    let svc = hyper::service::service_fn({
        let (ka, ctx) = (ka.clone(), ctx.clone());
        let wire = stream.wire().clone();
        move |mut req: Request<hyper::body::Incoming>| {
            ka.requests.fetch_add(1, Ordering::Relaxed);
            ka.busy.fetch_add(1, Ordering::Relaxed);
            ka.activity.notify_one();
            req.extensions_mut().insert(Peer(peer));
            req.extensions_mut().insert(wire.clone());
            req.extensions_mut().insert(ka.clone());
            let (ka, ctx, router) = (ka.clone(), ctx.clone(), router.clone());
            async move {
                // The DDP endpoint skips the router (see `routes::ddp_door`).
                let res = if crate::routes::is_ddp_path(req.uri().path()) {
                    crate::routes::ddp_door(ctx, req.map(axum::body::Body::new)).await
                } else {
                    match router.oneshot(req).await {
                        Ok(res) => res,
                        Err(never) => match never {},
                    }
                };
                ka.busy.fetch_sub(1, Ordering::Relaxed);
                ka.activity.notify_one();
                Ok::<_, std::convert::Infallible>(res)
            }
        }
    });
    let conn = ctx.http1.serve_connection(TokioIo::new(stream), svc).with_upgrades();
    tokio::pin!(conn);
    let idle = tokio::time::sleep(ctx.keepalive_idle);
    tokio::pin!(idle);
    let r = loop {
        tokio::select! {
            r = conn.as_mut() => break r,
            _ = ka.activity.notified() => idle.as_mut().reset(Instant::now() + ctx.keepalive_idle),
            // Before the first request hyper's head timeout
            // (`--handshake-timeout`) applies instead; a busy connection
            // is woken again when its answer is ready.
            _ = idle.as_mut() => {
                let idle_now = ka.requests.load(Ordering::Relaxed) > 0 && ka.busy.load(Ordering::Relaxed) == 0;
                if idle_now {
                    conn.as_mut().graceful_shutdown();
                    break conn.await;
                }
                idle.as_mut().reset(Instant::now() + ctx.keepalive_idle);
            }
            _ = ctx.reclaim.notified(), if ka.holds_slot() => {
                conn.as_mut().graceful_shutdown();
                break conn.await;
            }
            _ = stop.cancelled() => {
                // An idle socket is closed at once; a request being answered
                // is finished first.
                conn.as_mut().graceful_shutdown();
                break conn.await;
            }
        }
    };
    // Given back before a DDP connection on this socket asks for its own.
    if let Ok(mut slot) = ka.slot.lock() {
        slot.take();
    }
    // hyper has fulfilled the upgrade when its connection ends with `Ok`
    // after a `101`; an error leaves it unfulfilled (counted below).
    if let (Ok(()), Some(on_upgrade)) = (&r, ka.take_upgrade()) {
        drop(ka);
        return ctx.start_ddp(on_upgrade, peer).await;
    }
    let answered = ka.requests.load(Ordering::Relaxed) > 0;
    let label = match &r {
        Ok(()) if answered => return None,
        Ok(()) => "closed",
        // A head timeout after a request is an idle keep-alive connection
        // closing, not a failed handshake.
        Err(e) if e.is_timeout() => {
            if answered {
                return None;
            }
            "timeout"
        }
        Err(e) if e.is_parse_too_large() => "too-large",
        Err(e) if e.is_parse() || e.is_parse_status() => "bad-request",
        Err(_) => "closed",
    };
    if let Err(e) = &r {
        tracing::debug!(%peer, error = %e, reason = label, "HTTP connection failed");
    }
    ctx.state.metrics.handshake_failed(label);
    None
}

impl HttpContext {
    /// After a `101`, in the socket's task: takes the socket back from hyper
    /// and returns the DDP connection to run on it, or closes it with 1013
    /// when the server is at `--max-connections`.
    async fn start_ddp(
        self: Arc<Self>,
        on_upgrade: OnUpgrade,
        peer: SocketAddr,
    ) -> Option<DdpStart<impl Future<Output = ()> + Send + 'static>> {
        let (stream, rest) = self.take_upgraded(on_upgrade, peer).await?;
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "over the connection limit");
            self.state.metrics.handshake_failed("too-many-connections");
            self.reclaim.notify_waiters();
            reject(stream, CloseReason::TooManyConnections).await;
            return None;
        };
        let state = self.state.clone();
        let socket = conn::open(stream, rest, self.ws_cfg, &state.conn_config).await;
        let id = state.next_conn_id();
        tracing::debug!(conn = %id, %peer, "connected");
        let serve = conn::serve(socket, id, peer.ip(), state, self.stop.clone());
        Some(DdpStart { serve, permit, id })
    }

    /// The upgraded socket as the `Tracked` `TcpStream` (the type the DDP
    /// connection code takes), with any bytes the client sent after its
    /// head.
    async fn take_upgraded(
        &self,
        on_upgrade: OnUpgrade,
        peer: SocketAddr,
    ) -> Option<(Tracked<TcpStream>, Vec<u8>)> {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "upgrade failed");
                self.state.metrics.handshake_failed("closed");
                return None;
            }
        };
        let Ok(parts) = upgraded.downcast::<TokioIo<Tracked<TcpStream>>>() else {
            // Only if `serve_socket` served something other than a
            // TcpStream: a bug, not a client's doing.
            tracing::error!(%peer, "upgraded connection is not a TCP socket");
            return None;
        };
        // Copied: `read_buf` is a view of hyper's 8 KiB read buffer and
        // would keep all of it alive for the connection's lifetime.
        let rest = parts.read_buf.as_ref().to_vec();
        drop(parts.read_buf);
        Some((parts.io.into_inner(), rest))
    }
}

/// Closes a WebSocket the server will not serve with `reason`'s close frame.
async fn reject(mut stream: Tracked<TcpStream>, reason: CloseReason) {
    let frame = conn::close_frame(reason);
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        if stream.write_all(&frame).await.is_ok() {
            let _ = stream.shutdown().await;
        }
    })
    .await;
}

/// What a cluster node says while it waits for NATS (see
/// [`serve_while_starting`]): why it is not ready yet.
#[derive(Debug)]
pub struct StartStatus(std::sync::Mutex<String>);

impl StartStatus {
    pub fn new(reason: String) -> Arc<Self> {
        Arc::new(StartStatus(std::sync::Mutex::new(reason)))
    }

    pub fn set(&self, reason: String) {
        if let Ok(mut r) = self.0.lock() {
            *r = reason;
        }
    }

    fn get(&self) -> String {
        self.0.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

/// How long a client is told to wait before it tries again (`Retry-After`)
/// while a node starts.
pub(crate) const RETRY_AFTER_SECS: &str = "2";

/// Serves the port while `work` runs (a cluster node waiting for NATS,
/// before any state exists): `/healthz` `200` (the process is alive),
/// `/readyz` `503` with `status`, and every other path `503` with
/// `Retry-After`, so probes and clients get an answer at once instead of
/// a bound port that never answers. Returns `work`'s output; `run` then
/// takes over the same listener (sockets accepted meanwhile finish their
/// one answer on their own).
pub async fn serve_while_starting<T>(
    listener: &TcpListener,
    cfg: &RunConfig,
    status: Arc<StartStatus>,
    work: impl Future<Output = T>,
) -> T {
    let hosts =
        Arc::new(http::HostPolicy::new(listener.local_addr().ok(), &cfg.public_urls, &cfg.allowed_origins));
    let mut http1 = http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.handshake_timeout)
        .max_headers(MAX_HEADERS)
        .max_header_size(MAX_HEAD_BYTES)
        .keep_alive(false);
    let router = Router::new().fallback(move |req: Request| {
        let (status, hosts) = (status.clone(), hosts.clone());
        async move { starting_answer(&req, &hosts, &status.get()) }
    });
    prepare_listener(listener);
    let mut backoff = Backoff::new();
    // The same cap as `run`'s: a flood of sockets while the node waits
    // holds no more than --max-connections tasks, each for at most one
    // handshake timeout (one short answer, no keep-alive).
    let slots = Arc::new(Semaphore::new(cfg.max_connections));
    let within = cfg.handshake_timeout;
    tokio::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => return out,
            (stream, _) = accept(listener, &mut backoff) => {
                let Ok(slot) = slots.clone().try_acquire_owned() else { continue };
                let conn = http1.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router.clone()));
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(within, conn).await;
                    drop(slot);
                });
            }
        }
    }
}

fn starting_answer(req: &Request, hosts: &http::HostPolicy, reason: &str) -> axum::response::Response {
    use axum::http::{HeaderValue, StatusCode, header};
    use axum::response::IntoResponse;
    let text = |status: StatusCode, body: String| {
        let headers = [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ];
        (status, headers, body).into_response()
    };
    // The same DNS-rebinding guard as the full router: the reason names
    // the NATS servers.
    if !hosts.host_allowed(http::header_str(req.headers(), &axum::http::header::HOST)) {
        return text(StatusCode::MISDIRECTED_REQUEST, "host not allowed\n".into());
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
        _ => {
            let mut r =
                text(StatusCode::SERVICE_UNAVAILABLE, format!("starting ({reason}); retry shortly\n"));
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The accept path sets no option itself on Linux: what the listener
    /// was given must arrive on every accepted socket.
    #[tokio::test]
    async fn accepted_sockets_have_nodelay_and_keepalive() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        prepare_listener(&listener);
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(TcpStream::connect(addr));
        let accepted =
            tokio::time::timeout(Duration::from_secs(5), accept(&listener, &mut Backoff::new())).await;
        let (stream, _) = accepted.expect("accepted in time");
        let _client = client.await.unwrap().unwrap();
        let sock = socket2::SockRef::from(&stream);
        assert!(sock.tcp_nodelay().unwrap(), "TCP_NODELAY");
        assert!(sock.keepalive().unwrap(), "SO_KEEPALIVE");
        assert_eq!(sock.tcp_keepalive_time().unwrap(), Duration::from_secs(60));
        assert_eq!(sock.tcp_keepalive_interval().unwrap(), Duration::from_secs(10));
        assert_eq!(sock.tcp_keepalive_retries().unwrap(), 3);
    }

    /// The socket's task future is the task cell of every open DDP
    /// connection, so its size is memory per idle connection: the DDP
    /// connection's future (`conn::tests::the_connection_future_stays_small`)
    /// and a few words, never hyper's connection (boxed and freed at the
    /// upgrade). tokio adds 96 B to it (and the tracker 8 B) and rounds the
    /// cell to 128; mimalloc serves an aligned cell of ≤ 1,024 B from its
    /// small pages, and one ≤ 1,152 B from its 1,280-byte class
    /// (BENCHMARKS.md, "Joins: one task across the hand-over").
    #[test]
    fn the_socket_task_stays_small() {
        let task = conn::tests::returned_size(serve_socket);
        let ddp = conn::tests::returned_size(conn::serve::<TcpStream>);
        eprintln!("socket task {task} B, DDP connection {ddp} B");
        assert!(task <= ddp + 40, "the socket task is {task} bytes, its DDP connection {ddp}");
    }
}

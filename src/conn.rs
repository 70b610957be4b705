//! One WebSocket connection, one task: it processes the client's frames
//! strictly in order and, polled beside them, drains the bounded outbound
//! queue to the socket in batches (one framed buffer, one write).
//!
//! Rooms never write to the socket; they put shared, pre-serialised frames on
//! the queue with [`ConnHandle::try_send`]. A full queue means the client is
//! not keeping up: it is closed as a slow consumer instead of being waited
//! for.

use crate::ids::ConnId;
use crate::metrics::Metrics;
use crate::outbox::{Budget, Outbox, PushError};
use crate::server::ServerState;
use crate::session::Session;
use futures_util::task::AtomicWaker;
use futures_util::{FutureExt, SinkExt, StreamExt};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;

/// Why roomd closes a connection; each has a WebSocket close code and a
/// reason the client can show or log. 4000–4099: reconnect is fine;
/// 4400–4499: reconnecting the same way will fail again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer closed or vanished; nothing to send.
    PeerClosed,
    /// Server shutting down or restarting: reconnect later.
    ServerRestart,
    /// No frame at all within the heartbeat timeout.
    HeartbeatTimeout,
    /// The outbound queue was full: the client cannot keep up.
    SlowConsumer,
    /// No `connect` frame within the connect timeout.
    ConnectTimeout,
    /// The client asked for a DDP version roomd does not serve.
    UnsupportedVersion,
    /// A frame larger than the configured maximum.
    TooBig,
    /// A binary frame; DDP is text only.
    Binary,
    /// A text frame that is not valid UTF-8.
    InvalidUtf8,
    /// Over the connection limit.
    TooManyConnections,
    /// Handling a frame panicked (a bug); logged at `error`.
    InternalError,
    /// The signed-in user's token expired and no fresh `login` came.
    TokenExpired,
}

impl CloseReason {
    pub fn code(self) -> u16 {
        match self {
            CloseReason::PeerClosed => 1000,
            CloseReason::ServerRestart => 1012,
            CloseReason::HeartbeatTimeout => 4000,
            CloseReason::SlowConsumer => 4001,
            CloseReason::ConnectTimeout => 4002,
            CloseReason::UnsupportedVersion => 4400,
            CloseReason::TooBig => 1009,
            CloseReason::Binary => 1003,
            CloseReason::InvalidUtf8 => 1007,
            CloseReason::TooManyConnections => 1013,
            CloseReason::InternalError => 1011,
            CloseReason::TokenExpired => 4010,
        }
    }

    /// Label for `roomd_connections_closed_total`.
    pub fn label(self) -> &'static str {
        match self {
            CloseReason::PeerClosed => "peer_closed",
            CloseReason::ServerRestart => "server_restart",
            CloseReason::HeartbeatTimeout => "heartbeat_timeout",
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::ConnectTimeout => "connect_timeout",
            CloseReason::UnsupportedVersion => "unsupported_version",
            CloseReason::TooBig => "too_big",
            CloseReason::Binary => "binary",
            CloseReason::InvalidUtf8 => "invalid_utf8",
            CloseReason::TooManyConnections => "too_many_connections",
            CloseReason::InternalError => "internal_error",
            CloseReason::TokenExpired => "token_expired",
        }
    }

    pub fn text(self) -> &'static str {
        match self {
            CloseReason::PeerClosed => "bye",
            CloseReason::ServerRestart => "server restarting, reconnect",
            CloseReason::HeartbeatTimeout => "heartbeat timeout",
            CloseReason::SlowConsumer => "slow consumer, reconnect",
            CloseReason::ConnectTimeout => "no connect frame in time",
            CloseReason::UnsupportedVersion => "unsupported DDP version",
            CloseReason::TooBig => "frame too large",
            CloseReason::Binary => "binary frames are not supported",
            CloseReason::InvalidUtf8 => "invalid UTF-8",
            CloseReason::TooManyConnections => "too many connections, try again later",
            CloseReason::InternalError => "internal error, reconnect",
            CloseReason::TokenExpired => "token expired, sign in again",
        }
    }
}

/// A connection's one shared allocation: every handle, the room's
/// subscriber entries (the `RoomSink` impl at the end), the frame reader's
/// socket adapter and the task's side waker are this `Arc`. The queue is
/// inline, and closing is a flag here plus the queue's `Notify` rather
/// than a `CancellationToken` child (a 121-byte node per connection in
/// the token's tree, BENCHMARKS.md issue 21).
struct ConnShared {
    id: ConnId,
    outbox: Outbox,
    /// Set by [`ConnHandle::close`]: the reader stops taking new frames,
    /// the writer stops waiting on a stuck socket. Waiters are woken
    /// through the outbox (its side waker for the connection's task, its
    /// `Notify` for [`ConnHandle::closed`]).
    closing: AtomicBool,
    /// The first close reason given; it decides the close frame.
    reason: OnceLock<CloseReason>,
    /// A token from outside whose cancel closes the connection without a
    /// reason: the server-wide shutdown token itself (a reference count,
    /// not a child node), or the token a Socket.IO socket or REST call
    /// ends its handle with.
    outer: CancellationToken,
    /// Counts drops and slow-consumer disconnects where they happen.
    metrics: Arc<Metrics>,
}

/// The part of a connection other tasks hold: a way to queue frames and a
/// way to close it. Cheap to clone: one reference count.
#[derive(Clone)]
pub struct ConnHandle {
    pub id: ConnId,
    shared: Arc<ConnShared>,
}

impl std::fmt::Debug for ConnHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ConnHandle({})", self.id)
    }
}

impl ConnHandle {
    /// Queues a frame without waiting. Returns false if the connection is
    /// gone or was just closed for being too slow.
    pub fn try_send(&self, frame: Utf8Bytes) -> bool {
        self.shared.try_send(frame)
    }

    /// Queues a reply to this connection's own request, waiting for space;
    /// gives up if the connection is closing and the queue is full. (With
    /// space, the reply is queued even while closing: the writer delivers
    /// what was queued before the close frame, so a call that finished
    /// during shutdown still gets its result.)
    pub async fn send(&self, frame: Utf8Bytes) -> bool {
        let r = tokio::select! {
            // Push first: with space, a reply is queued even while closing.
            biased;
            r = self.shared.outbox.push(frame) => r,
            _ = self.closed() => return false,
        };
        self.after_push(r)
    }

    /// Queues two frames back to back (a `result` and its `updated`), so the
    /// writer sees them in one batch.
    pub async fn send_pair(&self, first: Utf8Bytes, second: Utf8Bytes) -> bool {
        let r = tokio::select! {
            biased;
            r = self.shared.outbox.push_pair(first, second) => r,
            _ = self.closed() => return false,
        };
        self.after_push(r)
    }

    /// Counts a slow-consumer cut decided elsewhere (another door's
    /// bounded buffer was full); the caller closed the handle first.
    pub(crate) fn count_slow_consumer(&self, why: &'static str) {
        tracing::debug!(conn = %self.id, why, "closing slow consumer");
        self.shared.metrics.slow_consumer();
    }

    /// Closes a client that does not keep up, counting it once.
    fn slow_consumer(&self, why: &'static str) {
        self.shared.slow_consumer(why)
    }

    /// A reply that cannot be queued (the server-wide budget is spent, or
    /// it is larger than a connection may ever hold; method results are
    /// checked against that before, see [`ConnHandle::max_frame_bytes`])
    /// closes the connection like any slow consumer.
    fn after_push(&self, r: Result<(), PushError>) -> bool {
        match r {
            Ok(()) => true,
            Err(PushError::Closed) => false,
            Err(e @ (PushError::Full | PushError::ServerFull | PushError::TooLarge)) => {
                self.slow_consumer(push_why(&e));
                false
            }
        }
    }

    /// The handle of a connection that has no DDP writer (a Socket.IO
    /// socket, which reaches its client through its own door): DDP frames
    /// addressed to it are refused as to a closed queue, never counted as
    /// drops. `cancel` ends it.
    pub(crate) fn without_writer(
        id: ConnId,
        metrics: Arc<Metrics>,
        cancel: CancellationToken,
        budget: Arc<Budget>,
    ) -> Self {
        let outbox = Outbox::new(1, budget);
        outbox.finish();
        ConnHandle { id, shared: ConnShared::new(id, outbox, cancel, metrics) }
    }

    /// The most a connection can hold unsent: the largest reply it can get.
    pub fn max_frame_bytes(&self) -> usize {
        self.shared.outbox.budget().per_conn()
    }

    /// Closes the connection with `reason`; the first reason given wins.
    /// Returns whether this call decided the reason.
    pub fn close(&self, reason: CloseReason) -> bool {
        self.shared.close(reason)
    }

    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// Completes once the connection is closing; any number of tasks may
    /// wait (a reply waiting for space, the Socket.IO write-stall watch).
    pub(crate) async fn closed(&self) {
        let shared = &*self.shared;
        let outer = shared.outer.cancelled();
        tokio::pin!(outer);
        loop {
            // Enabled before the flag is read: a close in between either
            // shows in the flag or wakes this.
            let changed = shared.outbox.changed();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if shared.closing.load(Ordering::Acquire) {
                return;
            }
            tokio::select! {
                _ = changed => {}
                _ = &mut outer => return,
            }
        }
    }

    /// The reason the connection was closed with, if one was given.
    pub(crate) fn closed_reason(&self) -> Option<CloseReason> {
        self.shared.reason.get().copied()
    }

    pub fn reason(&self) -> CloseReason {
        // A cancel without a reason came from the server-wide shutdown token.
        self.shared.reason.get().copied().unwrap_or(CloseReason::ServerRestart)
    }
}

fn push_why(e: &PushError) -> &'static str {
    match e {
        PushError::Full => "outbound queue full",
        PushError::ServerFull => "server-wide outbound byte budget spent",
        PushError::TooLarge => "frame larger than the per-connection byte budget",
        PushError::Closed => "closed",
    }
}

/// Connection-level timing knobs.
#[derive(Debug, Clone)]
pub(crate) struct ConnConfig {
    pub outbound_queue: usize,
    /// Unsent-byte budgets, per connection and server-wide (shared).
    pub outbound_bytes: Arc<Budget>,
    /// Time the socket may accept no bytes while frames wait before the
    /// connection is closed as a slow consumer.
    pub write_stall_timeout: Duration,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    pub connect_timeout: Duration,
    /// tungstenite's limits and buffer sizes, for the parser a connection
    /// makes when a client's message arrives (`Reader`).
    pub ws: WebSocketConfig,
}

/// An upgraded socket: tungstenite parses the client's frames (and enforces
/// the frame and message limits), roomd frames what it sends itself; both
/// run in the connection's one task ([`serve`]).
///
/// Why not tungstenite's writer: its write buffer keeps the capacity of the
/// largest batch it ever wrote, for the connection's whole life, and its API
/// cannot shrink it (~1.1 KB per idle connection after a join). roomd's
/// writer frames each batch into a buffer it frees once the kernel has it,
/// so an idle connection holds no write buffer. tungstenite still writes
/// its own control frames (pongs, the reply to a client's close); they go
/// to the outbox ([`ReaderIo`]) and the writer puts them between whole
/// frames, so a frame on the wire is never cut by another.
pub(crate) struct Socket<S> {
    io: Tracked<S>,
    /// Bytes the client sent after its request head: the first parser's.
    rest: Vec<u8>,
    ws: WebSocketConfig,
}

/// Wraps an upgraded socket (`rest`: bytes the client sent after its
/// request head) into a [`Socket`]; [`serve`] gives it its queue.
pub(crate) async fn open<S>(
    stream: Tracked<S>,
    rest: Vec<u8>,
    ws_cfg: WebSocketConfig,
    _cfg: &ConnConfig,
) -> Socket<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    Socket { io: stream, rest, ws: ws_cfg }
}

/// The read side of a connection. tungstenite's parser (its read buffer,
/// 512 B, and the boxed stream around it with its waker proxies, ~450 B)
/// exists only while a client's message is on its way: between messages
/// the connection holds the bare socket, and the first bytes of the next
/// message are read into a buffer on the stack, then handed to a new
/// parser. The parser is only dropped at a message boundary (followed with
/// a [`FrameScan`] of the bytes it was given), where it holds nothing but
/// its configuration, so every frame check, limit and close code is still
/// tungstenite's (BENCHMARKS.md, issue 21).
enum Reader<S> {
    /// Between messages: no parser, no buffer.
    Idle(Tracked<S>),
    /// A message (or more) is being read.
    Parsing(Box<WebSocketStream<ReaderIo<S>>>),
    /// Only while moving from one to the other.
    Moving,
}

/// Bytes read at once from an idle socket, on the stack.
const IDLE_READ: usize = 4096;

/// A parser over `io` that has been given `read` (bytes already taken from
/// the socket) to start with.
fn parser<S>(
    io: Tracked<S>,
    read: Vec<u8>,
    conn: &Arc<ConnShared>,
    cfg: WebSocketConfig,
) -> Box<WebSocketStream<ReaderIo<S>>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut scan = FrameScan::default();
    scan.feed(&read, u64::MAX);
    let io = ReaderIo { io, conn: conn.clone(), scan };
    #[cfg(test)]
    tests::PARSERS.with(|p| p.set(p.get() + 1));
    // Making the stream does not wait on anything (it skips the
    // handshake): the future is ready on its first poll.
    let ws = WebSocketStream::from_partially_read(io, read, Role::Server, Some(cfg))
        .now_or_never()
        .expect("a stream without a handshake is ready at once");
    Box::new(ws)
}

impl<S: AsyncRead + AsyncWrite + Unpin> Reader<S> {
    /// The socket, for the writer.
    fn sink(&mut self) -> &mut Tracked<S> {
        match self {
            Reader::Idle(io) => io,
            Reader::Parsing(ws) => &mut ws.get_mut().io,
            Reader::Moving => unreachable!("the reader is never left moving"),
        }
    }

    /// tungstenite's stream over the socket, made if there is none (the
    /// close path reads the client's last frames through it).
    fn stream(&mut self, conn: &Arc<ConnShared>, cfg: WebSocketConfig) -> &mut WebSocketStream<ReaderIo<S>> {
        if let Reader::Idle(_) = self {
            let Reader::Idle(io) = std::mem::replace(self, Reader::Moving) else { unreachable!() };
            *self = Reader::Parsing(parser(io, Vec::new(), conn, cfg));
        }
        match self {
            Reader::Parsing(ws) => ws,
            _ => unreachable!("made above"),
        }
    }

    /// The client's next message, as tungstenite's stream gives it.
    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        conn: &Arc<ConnShared>,
        cfg: WebSocketConfig,
    ) -> Poll<Option<Result<Message, WsError>>> {
        loop {
            match self {
                Reader::Idle(io) => {
                    // Uninitialised: zeroing 4 KB per read would be paid
                    // by every message a client sends.
                    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); IDLE_READ];
                    let mut read = ReadBuf::uninit(&mut buf);
                    match Pin::new(&mut *io).poll_read(cx, &mut read) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(WsError::Io(e)))),
                        // The peer went away between messages.
                        Poll::Ready(Ok(())) if read.filled().is_empty() => return Poll::Ready(None),
                        Poll::Ready(Ok(())) => {
                            let read = read.filled().to_vec();
                            let Reader::Idle(io) = std::mem::replace(self, Reader::Moving) else {
                                unreachable!()
                            };
                            *self = Reader::Parsing(parser(io, read, conn, cfg));
                        }
                    }
                }
                Reader::Parsing(ws) => {
                    let next = ws.poll_next_unpin(cx);
                    // Pending: tungstenite has taken every whole frame it
                    // had and waits for the socket; at a message boundary
                    // it holds no bytes, so it can go.
                    if next.is_pending() && ws.get_ref().scan.between_messages() {
                        let Reader::Parsing(ws) = std::mem::replace(self, Reader::Moving) else {
                            unreachable!()
                        };
                        *self = Reader::Idle(ws.into_inner().io);
                        #[cfg(test)]
                        tests::PARSERS.with(|p| p.set(p.get() - 1));
                        // Polled again: the socket's wake-up now comes
                        // straight to this task, not through the parser.
                        continue;
                    }
                    return next;
                }
                Reader::Moving => unreachable!("the reader is never left moving"),
            }
        }
    }
}

/// The socket as tungstenite's frame reader sees it: reads come from the
/// socket; what it writes (only control frames: roomd never sends through
/// it) becomes control bytes in the outbox, for the writer. The writer
/// writes to the socket itself (`io`, reached through the stream), not
/// through this.
pub(crate) struct ReaderIo<S> {
    io: Tracked<S>,
    conn: Arc<ConnShared>,
    /// Where the frames read so far end: the parser may go only between
    /// messages.
    scan: FrameScan,
}

impl<S: AsyncRead + Unpin> AsyncRead for ReaderIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            self.scan.feed(&buf.filled()[before..], u64::MAX);
        }
        r
    }
}

impl<S> AsyncWrite for ReaderIo<S> {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.conn.outbox.push_control(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Appends a server text frame's header (unmasked, final) for a payload of
/// `len` bytes.
fn text_header(out: &mut Vec<u8>, len: usize) {
    out.push(0x81);
    match len {
        0..=125 => out.push(len as u8),
        126..=0xffff => {
            out.push(126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
}

/// The close frame roomd sends for `reason`, framed.
pub(crate) fn close_frame(reason: CloseReason) -> Vec<u8> {
    let frame = CloseFrame { code: CloseCode::from(reason.code()), reason: reason.text().into() };
    let mut bytes = Vec::with_capacity(4 + reason.text().len());
    // Formatting into a Vec cannot fail.
    let _ = Frame::close(Some(frame)).format(&mut bytes);
    bytes
}

/// Runs a connection to completion, in one task: the client's frames are
/// read and handled, and the outbox is written to the socket, by the same
/// future. (Two tasks, a reader and a writer, cost a second task cell and
/// a second set of handles per connection: ~600 B per idle connection,
/// BENCHMARKS.md issue 21.) `shutdown` is the server-wide token.
///
/// Order of the end: frames stop being read (the one being handled is
/// finished first, the writer still running while it is), the writer
/// stops, the session cleans up, then what is still queued (unless the
/// queue is the problem) and the close frame are written.
///
/// The setup runs here, before the returned future is first polled, and the
/// future is an `async` block rather than an `async fn`: an `async fn` keeps
/// its arguments in its state for its whole life, next to the locals they
/// were moved into, and this future lives as long as the connection
/// (BENCHMARKS.md, Memory).
pub(crate) fn serve<S>(
    socket: Socket<S>,
    id: ConnId,
    peer: std::net::IpAddr,
    server: Arc<ServerState>,
    shutdown: CancellationToken,
) -> impl Future<Output = ()> + Send + 'static
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    start(socket, id, peer, server, shutdown).1
}

/// [`serve`], also returning the connection's handle (tests queue frames
/// through it as a room would).
fn start<S>(
    socket: Socket<S>,
    id: ConnId,
    peer: std::net::IpAddr,
    server: Arc<ServerState>,
    shutdown: CancellationToken,
) -> (ConnHandle, impl Future<Output = ()> + Send + 'static)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let cfg = &server.conn_config;
    let outbox = Outbox::new(cfg.outbound_queue, cfg.outbound_bytes.clone());
    let handle = ConnHandle { id, shared: ConnShared::new(id, outbox, shutdown, server.metrics.clone()) };
    let Socket { io, rest, ws } = socket;
    let stream = match rest.is_empty() {
        true => Reader::Idle(io),
        false => Reader::Parsing(parser(io, rest, &handle.shared, ws)),
    };
    server.metrics.connection_opened();
    let returned = handle.clone();
    let srv = server.clone();
    let session = Session::new(handle.clone(), server, peer);
    let mut live = Live { stream, writer: Writer::default(), session, conn: handle };
    let fut = async move {
        // A panic while handling a frame (a bug) ends this connection with
        // 1011 and is logged once, here; the cleanup below still runs.
        let peer_sent_close =
            match AssertUnwindSafe(read_loop(&mut live, &srv.conn_config)).catch_unwind().await {
                Ok(close) => close,
                Err(_) => {
                    let handle = &live.conn;
                    tracing::error!(conn = %handle.id, "connection task panicked");
                    handle.close(CloseReason::InternalError);
                    false
                }
            };
        let Live { stream, writer, session, conn: handle } = &mut live;
        let id = handle.id;
        // Pin the reason now: a cancel without one came from server
        // shutdown; no cancel at all means the peer went away.
        let reason = if handle.is_closed() { handle.reason() } else { CloseReason::PeerClosed };
        if reason == CloseReason::PeerClosed {
            if peer_sent_close {
                // tungstenite answers a client's close on its next write:
                // this hands the answer (same code) to the outbox, so the
                // client sees a clean close instead of 1006.
                let _ = stream.stream(&handle.shared, srv.conn_config.ws).flush().now_or_never();
            } else {
                // The peer vanished or broke the protocol: a bare close.
                handle.shared.outbox.push_control(&CLOSE_BARE);
            }
        }
        handle.close(reason);
        // Boxed for the same reason as the frame handler: idle connections
        // should not carry the cleanup's state.
        Box::pin(session.finish()).await;
        if !writer.broken {
            let sink = stream.sink();
            let out = std::mem::take(&mut writer.out);
            Box::pin(close_writer(sink, out, &handle.shared.outbox, reason)).await;
        }
        if reason != CloseReason::PeerClosed {
            // Read (and ignore) what the peer still sends until it answers
            // the close, for a bounded time: dropping a socket with unread
            // input resets it, and the reset can destroy the close frame
            // (say, 4001) before the peer has read it.
            let _ = tokio::time::timeout(
                close_linger(reason),
                Box::pin(linger(stream, &handle.shared, srv.conn_config.ws)),
            )
            .await;
        }
        // Rooms that still hold this handle now see it closed and drop it;
        // what was queued for a client that is gone is released.
        handle.shared.outbox.finish();
        let reason = handle.reason();
        srv.metrics.connection_closed(session.kind(), reason.label());
        match reason {
            CloseReason::PeerClosed | CloseReason::ServerRestart => {}
            other => tracing::debug!(conn = %id, reason = other.label(), "connection closed by server"),
        }
    };
    (returned, fut)
}

/// How long a connection the server closed waits for the peer's close,
/// reading what it still sends: dropping the socket while the peer's frames
/// (pings, calls) sit unread sends a reset, and the reset makes the peer's
/// kernel discard the close frame it had not read yet.
fn close_linger(reason: CloseReason) -> Duration {
    match reason {
        // It is behind by definition: it reads everything it left unread
        // before it reaches the close frame.
        CloseReason::SlowConsumer => Duration::from_secs(5),
        _ => Duration::from_secs(1),
    }
}

/// Reads what the peer still sends after the server's close, until its
/// close frame or its end of stream (the caller bounds the time). Frames
/// go through tungstenite; once tungstenite stops at a frame it refused
/// (too large, malformed), the bytes after it are read raw and dropped,
/// up to [`DRAIN_BYTES`] (as a Socket.IO socket's close does): a `1009` close would otherwise be reset by the
/// rest of the very frame it refuses.
async fn linger<S>(stream: &mut Reader<S>, conn: &Arc<ConnShared>, cfg: WebSocketConfig)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let ws = stream.stream(conn, cfg);
    loop {
        match ws.next().await {
            Some(Ok(m)) if m.is_close() => return,
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => break,
        }
    }
    let raw = stream.sink();
    let mut buf = vec![0u8; 4096];
    let mut left = DRAIN_BYTES;
    while left > 0 {
        match raw.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => left = left.saturating_sub(n as u64),
        }
    }
}

/// How long the close frame (and, unless the queue is the problem, what was
/// queued before it) may take to reach the socket. A slow consumer's kernel
/// buffers are full when it is cut, so its close code arrives only once it
/// reads again; holding the bare socket (its queue already released) for a
/// few seconds lets a client that was merely behind learn why it was cut
/// instead of seeing a reset.
const CLOSE_FRAME_TIMEOUT: Duration = Duration::from_secs(5);

/// What the read loop waits for next.
enum Next {
    Closed,
    Timer,
    Frame(Option<Result<Message, WsError>>),
}

/// A connection's parts, owned by its future and lent to the read loop as
/// one reference: every reference the loop keeps across its idle wait is
/// 8 bytes of every idle connection (BENCHMARKS.md, issue 21).
struct Live<S> {
    stream: Reader<S>,
    writer: Writer,
    session: Session,
    conn: ConnHandle,
}

/// Handles the client's frames, and writes what is queued for it, until
/// the connection is to end; true if it ended with the client's close
/// frame.
async fn read_loop<S>(live: &mut Live<S>, cfg: &ConnConfig) -> bool
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // The connection's parts are reached through one reference, not one
    // each (this future, and the wait's closure below, are part of every
    // idle connection's). One instant is kept: until
    // `connect` it is the upgrade's (other frames do not buy time), after
    // it the last frame's; the deadline is recomputed, not kept.
    let mut last_in = Instant::now();
    let mut pinged = false;
    // Both futures are created once: re-creating them per frame would
    // register with the shutdown token and the timer wheel every time. A
    // close decided by this server for this connection is the flag in its
    // shared state, read below; the task hears of it through the side
    // waker.
    // Owned (a reference count, same size as the borrowing one): a borrow
    // of `live` here would keep the wait's closure from lending all of it.
    let shutdown = live.conn.shared.outer.clone().cancelled_owned();
    tokio::pin!(shutdown);
    // Boxed: tokio's timer entry is 112 bytes, and inline it kept the task
    // cell (header, this future, trailer: 128-aligned) at 1,152 B, which
    // mimalloc serves from its 1,280 B class (an aligned block over 1 KiB
    // is over-allocated by 127 B). Out of line the cell is ≤ 1,024 B, a
    // naturally aligned class of its own: 1,024 + 112 B instead of 1,280 B
    // (BENCHMARKS.md, "The task cell under 1 KiB").
    let mut timer = Box::pin(tokio::time::sleep_until(last_in + cfg.connect_timeout));
    loop {
        let deadline = deadline(&live.session, last_in, pinged, cfg);
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        // The first poll of each wait looks at every source; after that,
        // the close (flag and shutdown token), the timer and the socket's
        // read side are polled only when one of them woke the task (they
        // were given the side waker; a close wakes it too), and a wake from
        // a room (a push) only drives the writer. Those are what a delivery
        // would otherwise pay for on every frame: the shutdown token's lock
        // and `Notify`, the timer entry, tungstenite's waker proxies and
        // the socket's readiness lock (BENCHMARKS.md, issue 21).
        // (A mark, not a flag in this future: every idle connection holds
        // the future.)
        live.conn.shared.outbox.mark_side_woken();
        // A `move` closure over reborrows: it holds these four references
        // (a closure naming `live.conn`, `live.writer`, ... would hold one
        // per field it uses).
        let (l, mut shutdown, mut timer) = (&mut *live, shutdown.as_mut(), timer.as_mut());
        let next = std::future::poll_fn(move |cx| {
            let Live { stream, writer, conn, .. } = &mut *l;
            conn.shared.outbox.register(cx.waker());
            let side_woken = conn.shared.outbox.take_side_woken();
            if !side_woken {
                // A close decided elsewhere marks the side wake (see
                // `ConnShared::close`), so it is not asked again here.
                return match writer.pump(cx, conn, stream.sink(), cfg.write_stall_timeout) {
                    // The writer closed it (a failed or stalled socket).
                    true => Poll::Ready(Next::Closed),
                    false => Poll::Pending,
                };
            }
            // Made here, not kept in this future: it is an `Arc` clone, and
            // every idle connection would carry it.
            let side = Waker::from(conn.shared.clone());
            let mut side_cx = Context::from_waker(&side);
            // Once the connection is closing, no new frame is started; the
            // one being handled (below) always runs to completion first.
            if conn.shared.closing.load(Ordering::Acquire) || shutdown.as_mut().poll(&mut side_cx).is_ready()
            {
                return Poll::Ready(Next::Closed);
            }
            if timer.as_mut().poll(&mut side_cx).is_ready() {
                return Poll::Ready(Next::Timer);
            }
            if writer.pump(cx, conn, stream.sink(), cfg.write_stall_timeout) {
                return Poll::Ready(Next::Closed);
            }
            stream.poll_next(&mut side_cx, &conn.shared, cfg.ws).map(Next::Frame)
        })
        .await;
        let conn = &live.conn;
        match next {
            Next::Closed => return false,
            Next::Timer => {
                if live.session.token_expiry().is_some_and(|t| t <= Instant::now()) {
                    conn.close(CloseReason::TokenExpired);
                    return false;
                }
                if Instant::now() < heartbeat_deadline(&live.session, last_in, pinged, cfg) {
                    continue;
                }
                if !live.session.is_connected() {
                    conn.close(CloseReason::ConnectTimeout);
                    return false;
                }
                if pinged {
                    conn.close(CloseReason::HeartbeatTimeout);
                    return false;
                }
                pinged = true;
                let ping = Box::pin(conn.send(crate::wire::ping()));
                if !writing_while(ping, &mut live.writer, &mut live.stream, conn, cfg.write_stall_timeout)
                    .await
                {
                    return false;
                }
            }
            Next::Frame(item) => {
                if live.session.is_connected() {
                    last_in = Instant::now();
                }
                pinged = false;
                match item {
                    None => return false,
                    Some(Ok(Message::Close(_))) => return true,
                    Some(Ok(Message::Text(text))) => {
                        // Frames are handled one at a time, to completion,
                        // which is what keeps a connection's calls in order.
                        // Boxed: the frame handler's future is large (it can
                        // hold any method's state) and is only needed while a
                        // frame is handled, not by every idle connection.
                        let connected = live.session.is_connected();
                        // The frame goes into the box too: only the box's
                        // pointer is in this future while it is handled.
                        let s = &mut live.session;
                        let handled = Box::pin(async move { s.handle_text(&text).await });
                        if !writing_while(
                            handled,
                            &mut live.writer,
                            &mut live.stream,
                            conn,
                            cfg.write_stall_timeout,
                        )
                        .await
                        {
                            return false;
                        }
                        if !connected && live.session.is_connected() {
                            // The heartbeat counts from `connect` on.
                            last_in = Instant::now();
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        conn.close(CloseReason::Binary);
                        return false;
                    }
                    Some(Ok(_)) => {} // ping/pong/raw frames: alive, nothing else
                    Some(Err(e)) => {
                        let reason = match e {
                            WsError::Capacity(CapacityError::MessageTooLong { .. }) => CloseReason::TooBig,
                            WsError::Utf8(_) => CloseReason::InvalidUtf8,
                            _ => CloseReason::PeerClosed,
                        };
                        tracing::debug!(conn = %conn.id, error = %e, "read ended");
                        conn.close(reason);
                        return false;
                    }
                }
            }
        }
    }
}

/// When the heartbeat next needs the connection: `last_in` is the upgrade's
/// instant until `connect`, the last frame's after it.
fn heartbeat_deadline(session: &Session, last_in: Instant, pinged: bool, cfg: &ConnConfig) -> Instant {
    if !session.is_connected() {
        last_in + cfg.connect_timeout
    } else if !session.heartbeat() {
        last_in + Duration::from_secs(86_400 * 365)
    } else if pinged {
        last_in + cfg.ping_interval + cfg.ping_timeout
    } else {
        last_in + cfg.ping_interval
    }
}

/// When the read loop's timer must fire: the heartbeat's deadline, or the
/// signed-in token's expiry if that comes first.
fn deadline(session: &Session, last_in: Instant, pinged: bool, cfg: &ConnConfig) -> Instant {
    let heartbeat = heartbeat_deadline(session, last_in, pinged, cfg);
    session.token_expiry().map_or(heartbeat, |t| t.min(heartbeat))
}

/// Runs `work` (a frame's handling, a ping being queued) to completion
/// while the writer keeps writing: a reply waits for outbox space, and in
/// this one task only the writer frees it.
///
/// A plain function returning the loop itself, not an `async fn`: the
/// latter keeps its arguments and the loop's copies of them side by side,
/// in the state of every connection handling a frame.
fn writing_while<'a, S, F>(
    mut work: Pin<Box<F>>,
    writer: &'a mut Writer,
    stream: &'a mut Reader<S>,
    conn: &'a ConnHandle,
    stall: Duration,
) -> impl Future<Output = F::Output> + 'a
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: Future + ?Sized + 'a,
{
    std::future::poll_fn(move |cx| {
        if let Poll::Ready(r) = work.as_mut().poll(cx) {
            return Poll::Ready(r);
        }
        writer.drive(cx, conn, stream.sink(), stall);
        Poll::Pending
    })
}

/// The sending side of a connection: takes batches from the outbox, frames
/// them and writes them, polled beside the socket's reads in the
/// connection's task. What is not needed while the connection is open (the
/// close path, the write-stall timer) is boxed when it is needed, so an
/// idle writer is a few words.
#[derive(Default)]
struct Writer {
    /// The framed bytes of the batch being written and how far the kernel
    /// has taken them; freed once written, so an idle connection holds no
    /// buffer.
    out: Unsent,
    /// The batch's payload bytes, as the outbox counts them (a frame is at
    /// most the outbox's `u32` cap; a batch of 64 of them fits too, see
    /// `Unsent::frame`).
    payload: u64,
    /// `out` holds a batch not yet all written.
    writing: bool,
    /// No longer driven: the connection is closing (what is unwritten
    /// stays in `out` for the close path), or the outbox is closed.
    stopped: bool,
    /// The socket failed: nothing more is written to it.
    broken: bool,
    /// The write-stall watch, created only when a write cannot finish at
    /// once: writes that complete cost no timer, and an idle writer holds
    /// none (one pointer: a named type, not a boxed `dyn` future's two).
    watch: Option<Box<Stalled>>,
}

/// Batches written per poll of the connection before it yields: a room
/// that keeps the outbox full must not keep the client's frames unread.
const BATCHES_PER_POLL: usize = 16;

impl Writer {
    /// Writes what the outbox holds until the outbox is empty or the socket
    /// takes no more. A socket that fails ends the connection (peer
    /// closed); one that accepts no byte for the stall timeout while frames
    /// wait ends it as a slow consumer (pongs alone do not keep it: they
    /// say nothing of reading). Once the connection is closing, it stops.
    fn drive<S: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        conn: &ConnHandle,
        sink: &mut Tracked<S>,
        stall: Duration,
    ) {
        if self.stopped || conn.is_closed() {
            self.stopped = true;
            return;
        }
        let _ = self.pump(cx, conn, sink, stall);
    }

    /// [`Writer::drive`] for a caller that has already seen the connection
    /// is not closing; true if the writer itself closed it (a failed or
    /// stalled socket).
    fn pump<S: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        conn: &ConnHandle,
        sink: &mut Tracked<S>,
        stall: Duration,
    ) -> bool {
        if self.stopped {
            return false;
        }
        for _ in 0..BATCHES_PER_POLL {
            if !self.writing {
                // The frame list is a local: it is emptied into `out`
                // at once, and an idle writer keeps none.
                let mut batch = Vec::new();
                match conn.shared.outbox.poll_pop_many(cx, &mut batch, &mut self.out.bytes, 64) {
                    Poll::Pending => return false,
                    Poll::Ready(0) => {
                        self.stopped = true;
                        return false;
                    }
                    Poll::Ready(_) => {
                        self.payload = self.out.frame(batch) as u64;
                        self.writing = true;
                    }
                }
            }
            match self.out.poll_write(cx, sink) {
                Poll::Ready(Ok(())) => {
                    conn.shared.outbox.written(std::mem::take(&mut self.payload) as usize);
                    self.writing = false;
                    self.watch = None;
                }
                Poll::Ready(Err(_)) => {
                    // The socket is broken: end the whole connection.
                    self.stopped = true;
                    self.broken = true;
                    conn.close(CloseReason::PeerClosed);
                    return true;
                }
                Poll::Pending => {
                    let watch =
                        self.watch.get_or_insert_with(|| Box::new(Stalled::new(sink.wire.clone(), stall)));
                    if Pin::new(&mut **watch).poll(cx).is_ready() {
                        self.stopped = true;
                        conn.slow_consumer("socket accepted no bytes for the write-stall timeout");
                        return true;
                    }
                    return false;
                }
            }
        }
        cx.waker().wake_by_ref();
        false
    }
}

/// Framed bytes on their way to the socket.
#[derive(Default)]
struct Unsent {
    bytes: Vec<u8>,
    /// How many of `bytes` the kernel has taken.
    at: usize,
}

impl Unsent {
    /// Frames `batch` after what is already here; returns the payload
    /// bytes, as the outbox counts them. The list is dropped with the
    /// frames: nothing of it is kept (heaptrack: 128 B per idle connection
    /// when 8 slots were kept).
    fn frame(&mut self, batch: Vec<Utf8Bytes>) -> usize {
        let payload: usize = batch.iter().map(|f| f.len()).sum();
        self.bytes.reserve(payload + 10 * batch.len());
        for f in batch {
            text_header(&mut self.bytes, f.len());
            self.bytes.extend_from_slice(f.as_bytes());
        }
        payload
    }

    /// Writes everything, then lets the buffer go. A write interrupted
    /// between two `write` calls loses nothing: what the kernel took is
    /// counted in `at`, the rest stays for the close path, so frames on
    /// the wire stay whole.
    fn poll_write<W: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        sink: &mut W,
    ) -> Poll<std::io::Result<()>> {
        while self.at < self.bytes.len() {
            let n = std::task::ready!(Pin::new(&mut *sink).poll_write(cx, &self.bytes[self.at..]))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.at += n;
        }
        self.bytes = Vec::new();
        self.at = 0;
        Pin::new(sink).poll_flush(cx)
    }

    async fn write<W: AsyncWrite + Unpin>(&mut self, sink: &mut W) -> std::io::Result<()> {
        std::future::poll_fn(|cx| self.poll_write(cx, sink)).await
    }
}

/// The connection's end: the close frame, after what was queued before it.
async fn close_writer<W>(sink: &mut W, mut out: Unsent, outbox: &Outbox, reason: CloseReason)
where
    W: AsyncWrite + Unpin,
{
    if reason == CloseReason::PeerClosed {
        // The answer to the peer's close frame (or a bare close, if the
        // peer vanished) is in the control bytes: after the frame being
        // written, they end the stream, so the client sees a clean close
        // instead of 1006.
        out.bytes.extend(outbox.take_control());
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            if out.write(sink).await.is_ok() {
                let _ = sink.shutdown().await;
            }
        })
        .await;
        return;
    }
    if reason == CloseReason::SlowConsumer {
        // What it never read is given back to the budgets now, not after the
        // close frame below has had its chance.
        outbox.finish();
    }
    let _ = tokio::time::timeout(CLOSE_FRAME_TIMEOUT, async {
        // Deliver what was queued before the close (e.g. `failed`, or the
        // result of a call that finished during shutdown), unless the queue
        // is the problem. A frame already partly written is finished in
        // any case: a close frame after half a frame would be garbage.
        if reason != CloseReason::SlowConsumer {
            out.frame(outbox.drain_now());
        }
        out.bytes.extend(close_frame(reason));
        if out.write(sink).await.is_ok() {
            let _ = sink.shutdown().await;
        }
    })
    .await;
}

/// A socket that counts the bytes the kernel accepted, so the writer can
/// tell a peer that reads slowly from one that reads nothing. Every socket
/// the server accepts is wrapped so from the start (its [`Wire`] rides on
/// each HTTP request's extensions): a Socket.IO WebSocket is written by the
/// engine, not by roomd, and its [`Tap`] is how roomd still sees, and can
/// end, what happens on it.
pub(crate) struct Tracked<S> {
    inner: S,
    wire: Arc<Wire>,
    /// Only on a Socket.IO WebSocket: where its client's frames are, and
    /// the end of a socket closed for a message too large.
    frames: Option<Box<EngineScan<S>>>,
}

impl<S> Tracked<S> {
    pub(crate) fn new(inner: S) -> Self {
        Tracked { inner, wire: Arc::new(Wire::default()), frames: None }
    }

    /// The socket's shared side.
    pub(crate) fn wire(&self) -> &Arc<Wire> {
        &self.wire
    }
}

/// What other tasks see of one accepted socket.
#[derive(Debug, Default)]
pub(crate) struct Wire {
    /// Bytes the kernel accepted.
    progress: AtomicU64,
    /// Set once a Socket.IO session runs its WebSocket on this socket; DDP
    /// connections never set it (and pay one word for it).
    tap: OnceLock<Arc<Tap>>,
    /// Set once the Socket.IO engine has upgraded this socket to a
    /// WebSocket (`101`); DDP connections never set it.
    engine_ws: OnceLock<Box<EngineWs>>,
}

/// A WebSocket the Socket.IO engine reads and writes. The engine closes
/// one whose client sent a message over its limit with a bare close frame
/// (no code: the client sees `1005`); roomd follows the client's frame
/// headers to know when that is why, and makes that close frame DDP's
/// `1009` `frame too large`. (A message too large in the instant the
/// WebSocket opens, before the engine's writer has started, ends with no
/// close frame at all: the engine writes none then.)
#[derive(Debug)]
struct EngineWs {
    /// The engine's limit on a frame and on a message (`--max-frame-bytes`).
    max: u64,
    /// The client announced a frame or message over `max`.
    too_big: std::sync::atomic::AtomicBool,
}

impl Wire {
    /// Makes this socket the WebSocket of the Socket.IO session `tap`
    /// belongs to: its written bytes release the session's backlog, and
    /// cutting the tap ends the socket. A socket carries one session.
    pub(crate) fn attach(&self, tap: &Arc<Tap>) {
        let _ = self.tap.set(tap.clone());
        // A message too large that came before the session's sign-in ended
        // still marks its session (see `Tracked::scan`).
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.engine_ws.get().is_some_and(|e| e.too_big.load(Ordering::SeqCst)) {
            tap.mark_too_big();
        }
    }

    /// The Socket.IO engine answered this socket's request with `101`: what
    /// it reads from now on are WebSocket frames, `max` bytes at most.
    /// Called before the `101` is written, so before the client sends one.
    pub(crate) fn engine_websocket(&self, max: usize) {
        let _ = self
            .engine_ws
            .set(Box::new(EngineWs { max: max as u64, too_big: std::sync::atomic::AtomicBool::new(false) }));
    }
}

/// Where a client's WebSocket frames start and end in the bytes read, and
/// how long its message is: only headers are looked at, payloads skipped.
#[derive(Debug, Default)]
struct FrameScan {
    /// The header being read: 2 to 14 bytes.
    head: [u8; 14],
    have: usize,
    /// Payload bytes of the current frame still to come.
    left: u64,
    /// Bytes of the data message so far (its fragments' payloads).
    message: u64,
    /// A data message has begun and its final fragment has not.
    open: bool,
    /// How much of [`CLOSE_TOO_BIG`] has been written.
    close_sent: usize,
}

impl FrameScan {
    /// Follows `bytes`; true if a frame or message goes over `max`.
    fn feed(&mut self, mut bytes: &[u8], max: u64) -> bool {
        let mut over = false;
        while !bytes.is_empty() {
            if self.left > 0 {
                let n = self.left.min(bytes.len() as u64);
                self.left -= n;
                bytes = &bytes[n as usize..];
                continue;
            }
            self.head[self.have] = bytes[0];
            self.have += 1;
            bytes = &bytes[1..];
            if self.have < 2 {
                continue;
            }
            let (len7, masked) = (self.head[1] & 0x7f, self.head[1] & 0x80 != 0);
            let ext = match len7 {
                126 => 2,
                127 => 8,
                _ => 0,
            };
            if self.have < 2 + ext + if masked { 4 } else { 0 } {
                continue;
            }
            let len = match ext {
                0 => u64::from(len7),
                n => self.head[2..2 + n].iter().fold(0u64, |acc, b| acc << 8 | u64::from(*b)),
            };
            let (fin, opcode) = (self.head[0] & 0x80 != 0, self.head[0] & 0x0f);
            // As tungstenite counts: a frame on its own, and a data
            // message across its fragments (control frames apart).
            if opcode < 8 {
                self.message = if opcode == 0 { self.message.saturating_add(len) } else { len };
            }
            over |= len > max || (opcode < 8 && self.message > max);
            if opcode < 8 {
                self.open = !fin;
                if fin {
                    self.message = 0;
                }
            }
            self.left = len;
            self.have = 0;
        }
        over
    }
}

impl FrameScan {
    /// Whether the bytes so far end where a frame ends, outside a
    /// fragmented message.
    fn between_messages(&self) -> bool {
        self.have == 0 && self.left == 0 && !self.open
    }
}

/// The close frame tungstenite writes when the engine closes a WebSocket
/// (server frames are not masked): close, no payload.
const CLOSE_BARE: [u8; 2] = [0x88, 0x00];

/// The close frame roomd writes instead when the client's message was too
/// large: `1009` (`0x03f1`) and DDP's reason, `frame too large`.
const CLOSE_TOO_BIG: [u8; 19] = [
    0x88, 17, 0x03, 0xf1, b'f', b'r', b'a', b'm', b'e', b' ', b't', b'o', b'o', b' ', b'l', b'a', b'r', b'g',
    b'e',
];

/// What [`Tracked`] keeps of a Socket.IO WebSocket, once its client has
/// sent a byte.
struct EngineScan<S> {
    frames: FrameScan,
    /// After [`CLOSE_TOO_BIG`], the write side is shut (FIN follows it).
    shut: bool,
    /// Bytes of the client's read and dropped since ([`DRAIN_BYTES`]).
    drained: u64,
    /// When the wait for more of them ends ([`DRAIN_TIME`]).
    drain_until: Option<Pin<Box<tokio::time::Sleep>>>,
    /// `S`'s read, taken where `S` is known to be readable (`poll_read`):
    /// the drain runs in `poll_write`, whose bounds do not say it (DDP's
    /// writer writes to any `AsyncWrite`).
    read: fn(Pin<&mut S>, &mut Context<'_>, &mut ReadBuf<'_>) -> Poll<std::io::Result<()>>,
}

/// After [`CLOSE_TOO_BIG`], what roomd reads and drops of what the client
/// still sends (the rest of the message over the limit, anything after
/// it) before the engine drops the socket, and how long it waits for it.
/// Dropped with unread bytes, the socket would be answered by the kernel
/// with a reset, which throws away its send queue: the close frame too,
/// if the client had not taken it yet, and the client would see no close
/// frame. The client ends its side once it has the close frame and the FIN
/// after it, so the wait is short; the bounds hold only the engine's
/// writer task, and only for this close.
///
/// The byte bound is DDP's too (its [`linger`] after a refused frame).
const DRAIN_BYTES: u64 = 256 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// A Socket.IO session's hold on the socket the engine writes it to: the
/// bytes it has unsent, and a cut that ends the socket from outside, even
/// while the engine's writer is blocked on it (the engine's own close waits
/// for that writer, so without the cut a peer that never reads would keep
/// its session, and everything queued for it, forever).
#[derive(Debug)]
pub(crate) struct Tap {
    pub(crate) backlog: crate::outbox::Backlog,
    cut: std::sync::atomic::AtomicBool,
    /// Set the moment a message over the limit is seen on its WebSocket.
    too_big: std::sync::atomic::AtomicBool,
    reader: AtomicWaker,
    writer: AtomicWaker,
}

impl Tap {
    pub(crate) fn new(budget: Arc<Budget>) -> Self {
        Tap {
            backlog: crate::outbox::Backlog::new(budget),
            cut: std::sync::atomic::AtomicBool::new(false),
            too_big: std::sync::atomic::AtomicBool::new(false),
            reader: AtomicWaker::new(),
            writer: AtomicWaker::new(),
        }
    }

    /// From now on the socket fails every read and write: the engine's
    /// reader ends the session, its writer stops waiting and drops what it
    /// held.
    pub(crate) fn cut(&self) {
        self.cut.store(true, Ordering::Release);
        self.reader.wake();
        self.writer.wake();
    }

    fn is_cut(&self) -> bool {
        self.cut.load(Ordering::Acquire)
    }

    fn mark_too_big(&self) {
        self.too_big.store(true, Ordering::Release);
    }

    /// Whether the session's WebSocket was closed for a message over
    /// `--max-frame-bytes` (its close reason, `too_big`).
    pub(crate) fn too_big(&self) -> bool {
        self.too_big.load(Ordering::Acquire)
    }
}

fn cut_error() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "cut by the server")
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let tap = self.wire.tap.get().cloned();
        if tap.as_ref().is_some_and(|t| t.is_cut()) {
            return Poll::Ready(Err(cut_error()));
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        match (&r, tap) {
            (Poll::Ready(Ok(())), _) => self.scan(&buf.filled()[before..]),
            (Poll::Pending, Some(t)) => {
                t.reader.register(cx.waker());
                if t.is_cut() {
                    return Poll::Ready(Err(cut_error()));
                }
            }
            _ => {}
        }
        r
    }
}

impl<S: AsyncRead + Unpin> Tracked<S> {
    /// On a Socket.IO WebSocket, follows the client's frames as they are
    /// read, before the engine's tungstenite sees them: a frame or message
    /// over the limit marks the socket (and its session) the moment it is
    /// announced, so the close that follows says why (`poll_write`).
    fn scan(&mut self, bytes: &[u8]) {
        let Some(engine) = self.wire.engine_ws.get() else { return };
        if bytes.is_empty() || engine.too_big.load(Ordering::Relaxed) {
            return;
        }
        let scan = self.frames.get_or_insert_with(|| {
            Box::new(EngineScan {
                frames: FrameScan::default(),
                shut: false,
                drained: 0,
                drain_until: None,
                read: |s, cx, buf| s.poll_read(cx, buf),
            })
        });
        if scan.frames.feed(bytes, engine.max) {
            engine.too_big.store(true, Ordering::SeqCst);
            std::sync::atomic::fence(Ordering::SeqCst);
            if let Some(tap) = self.wire.tap.get() {
                tap.mark_too_big();
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> Tracked<S> {
    /// Writes [`CLOSE_TOO_BIG`] in place of the engine's bare close frame,
    /// then ends the socket in order: shuts the write side and reads what
    /// the client still sends, within [`DRAIN_BYTES`] and [`DRAIN_TIME`].
    /// `Ready(Ok(2))` once that is done; the engine drops the socket next.
    fn poll_close_too_big(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        let Some(scan) = self.frames.as_mut() else { return Poll::Ready(Ok(CLOSE_BARE.len())) };
        let frames = &mut scan.frames;
        while frames.close_sent < CLOSE_TOO_BIG.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &CLOSE_TOO_BIG[frames.close_sent..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => frames.close_sent += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        if !scan.shut {
            match Pin::new(&mut self.inner).poll_shutdown(cx) {
                Poll::Ready(Ok(())) => scan.shut = true,
                // The peer is gone already: nothing left to drain.
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(CLOSE_BARE.len())),
                Poll::Pending => return Poll::Pending,
            }
        }
        let mut scratch = [0u8; 2048];
        while scan.drained < DRAIN_BYTES {
            let mut buf = ReadBuf::new(&mut scratch);
            match (scan.read)(Pin::new(&mut self.inner), cx, &mut buf) {
                // The client's FIN: the socket can close without a reset.
                Poll::Ready(Ok(())) if buf.filled().is_empty() => break,
                Poll::Ready(Ok(())) => scan.drained += buf.filled().len() as u64,
                Poll::Ready(Err(_)) => break,
                Poll::Pending => {
                    let until =
                        scan.drain_until.get_or_insert_with(|| Box::pin(tokio::time::sleep(DRAIN_TIME)));
                    if until.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    break;
                }
            }
        }
        Poll::Ready(Ok(CLOSE_BARE.len()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let tap = self.wire.tap.get().cloned();
        if tap.as_ref().is_some_and(|t| t.is_cut()) {
            return Poll::Ready(Err(cut_error()));
        }
        // Tungstenite writes its close frame on its own once it has flushed
        // everything before it, so a write of exactly these two bytes is
        // that frame (a payload chunk cannot be: engine frames are JSON
        // text, which holds no NUL byte).
        if buf == CLOSE_BARE && self.wire.engine_ws.get().is_some_and(|e| e.too_big.load(Ordering::Acquire)) {
            let r = self.poll_close_too_big(cx);
            // A cut (shutdown, a slow consumer) ends the drain at once too.
            if let (Poll::Pending, Some(t)) = (&r, tap) {
                t.writer.register(cx.waker());
                if t.is_cut() {
                    return Poll::Ready(Err(cut_error()));
                }
            }
            return r;
        }
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        match (&r, tap) {
            (Poll::Ready(Ok(n)), tap) => {
                self.wire.progress.fetch_add(*n as u64, Ordering::Relaxed);
                if let Some(t) = tap {
                    t.backlog.written(*n);
                }
            }
            (Poll::Pending, Some(t)) => {
                t.writer.register(cx.waker());
                if t.is_cut() {
                    return Poll::Ready(Err(cut_error()));
                }
            }
            _ => {}
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Resolves once the socket has accepted no byte for `timeout` (the
/// write-stall watch of one write). Checked a few times per timeout, so it
/// fires within 1¼ of it. A named future rather than an `async fn`, so the
/// writer holds it behind one pointer.
struct Stalled {
    wire: Arc<Wire>,
    timeout: Duration,
    step: Duration,
    seen: u64,
    since: Instant,
    /// Boxed: this watch exists only while a write is stuck.
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Stalled {
    fn new(wire: Arc<Wire>, timeout: Duration) -> Self {
        let step = (timeout / 4).max(Duration::from_millis(5));
        let seen = wire.progress.load(Ordering::Relaxed);
        let since = Instant::now();
        Stalled { wire, timeout, step, seen, since, sleep: Box::pin(tokio::time::sleep(step)) }
    }
}

impl Future for Stalled {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            std::task::ready!(this.sleep.as_mut().poll(cx));
            let now = this.wire.progress.load(Ordering::Relaxed);
            if now != this.seen {
                this.seen = now;
                this.since = Instant::now();
            } else if this.since.elapsed() >= this.timeout {
                return Poll::Ready(());
            }
            this.sleep.as_mut().reset(Instant::now() + this.step);
        }
    }
}

/// What a room holds of a subscribed connection: its shared state, the
/// same `Arc` every handle of it holds (no allocation per subscription).
/// Closing and why stay here; the room only hears `false`.
impl crate::room::RoomSink for ConnShared {
    fn id(&self) -> ConnId {
        self.id
    }

    fn try_send(&self, frame: Utf8Bytes) -> bool {
        ConnShared::try_send(self, frame)
    }
}

impl ConnShared {
    /// See [`ConnHandle::try_send`].
    fn try_send(&self, frame: Utf8Bytes) -> bool {
        match self.outbox.try_push(frame) {
            Ok(()) => true,
            Err(e @ (PushError::Full | PushError::ServerFull | PushError::TooLarge)) => {
                self.metrics.outbound_dropped();
                self.slow_consumer(push_why(&e));
                false
            }
            Err(PushError::Closed) => false,
        }
    }

    fn new(id: ConnId, outbox: Outbox, outer: CancellationToken, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(ConnShared {
            id,
            outbox,
            closing: AtomicBool::new(false),
            reason: OnceLock::new(),
            outer,
            metrics,
        })
    }

    /// See [`ConnHandle::is_closed`].
    fn is_closed(&self) -> bool {
        self.closing.load(Ordering::Acquire) || self.outer.is_cancelled()
    }

    /// See [`ConnHandle::close`].
    fn close(&self, reason: CloseReason) -> bool {
        // The reason first: whoever sees the flag finds it.
        let set = self.reason.set(reason).is_ok();
        let outer = self.outer.is_cancelled();
        if !self.closing.swap(true, Ordering::AcqRel) {
            // Flag before wakes: each waiter rechecks it once woken. The
            // connection's task (side waker: it polls the flag), then
            // every `closed()` and every reply waiting for space.
            self.outbox.side_wake();
            self.outbox.wake_waiters();
        }
        set && !outer
    }

    /// Closes a client that does not keep up, counting it once.
    fn slow_consumer(&self, why: &'static str) {
        if self.close(CloseReason::SlowConsumer) {
            tracing::debug!(conn = %self.id, why, "closing slow consumer");
            self.metrics.slow_consumer();
        }
    }
}

impl std::fmt::Debug for ConnShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Conn({})", self.id)
    }
}

/// The connection task's side waker (see `Outbox::side_wake`): this
/// connection's one allocation, so making it costs a reference count.
impl Wake for ConnShared {
    fn wake(self: Arc<Self>) {
        self.outbox.side_wake();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.outbox.side_wake();
    }
}

impl ConnHandle {
    /// This connection as a room holds it.
    pub fn sink(&self) -> Arc<dyn crate::room::RoomSink> {
        self.shared.clone()
    }
}

#[cfg(test)]
mod sink_tests {
    use super::*;

    /// A room's subscriber entry is the connection's own shared state (a
    /// reference count, no allocation per subscription), and a full queue
    /// seen through it closes the connection as a slow consumer.
    #[test]
    fn a_room_sink_is_the_connections_shared_state() {
        let id = ConnId(7);
        let outbox = Outbox::new(1, Arc::new(Budget::new(1 << 16, 1 << 20)));
        let metrics = Arc::new(Metrics::new());
        let conn = ConnHandle { id, shared: ConnShared::new(id, outbox, CancellationToken::new(), metrics) };
        let (a, b) = (conn.sink(), conn.clone().sink());
        let at = |s: &Arc<dyn crate::room::RoomSink>| Arc::as_ptr(s).cast::<()>();
        assert_eq!(at(&a), Arc::as_ptr(&conn.shared).cast::<()>());
        assert_eq!(at(&a), at(&b));
        assert_eq!(a.id(), id);
        assert!(a.try_send(Utf8Bytes::from_static("one")));
        assert!(!conn.is_closed());
        assert!(!a.try_send(Utf8Bytes::from_static("two")), "a queue of one is full");
        assert_eq!(conn.closed_reason(), Some(CloseReason::SlowConsumer));
        assert!(!b.try_send(Utf8Bytes::from_static("three")));
    }
}

#[cfg(test)]
mod close_tests {
    use super::*;

    fn conn(cap: usize, outer: CancellationToken) -> ConnHandle {
        let id = ConnId(9);
        let outbox = Outbox::new(cap, Arc::new(Budget::new(1 << 16, 1 << 20)));
        ConnHandle { id, shared: ConnShared::new(id, outbox, outer, Arc::new(Metrics::new())) }
    }

    /// A connection's one allocation (its `Arc`, with the outbox inline)
    /// is in the allocator's 192-byte class: the shared state was 200
    /// bytes (216 with the counts, so 224 in mimalloc's classes) while the
    /// outbox held its rare control bytes in a `Vec` and its frame cap in
    /// a `usize`.
    #[test]
    fn a_connections_shared_state_fits_192_bytes_with_its_counts() {
        let shared = std::mem::size_of::<ConnShared>();
        assert!(shared + 16 <= 192, "the shared state is {shared} bytes");
    }

    /// Waits (bounded) for `task`, which must end.
    async fn ends<T>(task: tokio::task::JoinHandle<T>) -> T {
        tokio::time::timeout(Duration::from_secs(5), task).await.expect("ends in time").unwrap()
    }

    /// A handle is one reference count (the queue inline in the shared
    /// state), and closing is a flag plus the queue's `Notify`, not a
    /// cancellation-token child: every waiter hears a close (any number of
    /// `closed()`, a reply waiting for space), a drain or a write in
    /// between ends none of them but the reply, and the outer token
    /// (server shutdown) closes the connection without a reason.
    #[tokio::test]
    async fn a_close_wakes_every_waiter_and_only_a_close_does() {
        assert_eq!(std::mem::size_of::<ConnHandle>(), 16, "the id and one Arc");
        let outer = CancellationToken::new();
        let c = conn(1, outer.clone());
        assert!(c.try_send(Utf8Bytes::from_static("a")));
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let c = c.clone();
                tokio::spawn(async move { c.closed().await })
            })
            .collect();
        let reply = tokio::spawn({
            let c = c.clone();
            async move { c.send(Utf8Bytes::from_static("b")).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!reply.is_finished(), "a queue of one is full");
        // The writer takes "a" and writes it: the reply gets its space, the
        // close waiters (woken by the same `Notify`) wait on.
        let (mut out, mut control) = (Vec::new(), Vec::new());
        assert_eq!(c.shared.outbox.pop_many(&mut out, &mut control, 8).await, 1);
        c.shared.outbox.written(1);
        assert!(ends(reply).await, "queued once there was space");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(waiters.iter().all(|w| !w.is_finished()), "a drain is not a close");
        assert!(!c.is_closed());

        let stuck = tokio::spawn({
            let c = c.clone();
            async move { c.send(Utf8Bytes::from_static("c")).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(c.close(CloseReason::HeartbeatTimeout), "the first reason decides");
        assert!(!c.close(CloseReason::SlowConsumer));
        for w in waiters {
            ends(w).await;
        }
        assert!(!ends(stuck).await, "a full queue and a close: the reply gives up");
        assert!(c.is_closed());
        assert_eq!(c.reason(), CloseReason::HeartbeatTimeout);
        c.closed().await;
        assert!(!outer.is_cancelled(), "a connection's close is its own");

        // The outer token: closed without a reason, so a server restart.
        let outer = CancellationToken::new();
        let c = conn(1, outer.clone());
        let waiter = tokio::spawn({
            let c = c.clone();
            async move { c.closed().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        outer.cancel();
        ends(waiter).await;
        assert!(c.is_closed());
        assert_eq!(c.closed_reason(), None);
        assert_eq!(c.reason(), CloseReason::ServerRestart);
        assert!(!c.close(CloseReason::SlowConsumer), "shutdown came first");
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;

    #[test]
    fn the_too_big_close_frame_is_ddps_1009() {
        let frame = CloseFrame { code: CloseCode::Size, reason: CloseReason::TooBig.text().into() };
        let mut bytes = Vec::new();
        Frame::close(Some(frame)).format(&mut bytes).unwrap();
        assert_eq!(bytes, CLOSE_TOO_BIG);
        let mut bytes = Vec::new();
        Frame::close(None).format(&mut bytes).unwrap();
        assert_eq!(bytes, CLOSE_BARE);
    }

    /// Masked client frame headers, fed a byte at a time or all at once.
    #[test]
    fn frame_scan_finds_frames_and_messages_over_the_limit() {
        fn header(fin: bool, opcode: u8, len: u64) -> Vec<u8> {
            let mut h = vec![u8::from(fin) << 7 | opcode];
            match len {
                0..=125 => h.push(0x80 | len as u8),
                126..=0xffff => {
                    h.push(0x80 | 126);
                    h.extend((len as u16).to_be_bytes());
                }
                _ => {
                    h.push(0x80 | 127);
                    h.extend(len.to_be_bytes());
                }
            }
            h.extend([1, 2, 3, 4]);
            h.extend(std::iter::repeat_n(b'x', len as usize));
            h
        }
        let scan = |bytes: &[u8], one_by_one: bool| {
            let mut s = FrameScan::default();
            if one_by_one { bytes.iter().any(|b| s.feed(&[*b], 1000)) } else { s.feed(bytes, 1000) }
        };
        let fits = [header(true, 1, 1000), header(true, 1, 10), header(true, 2, 300)].concat();
        let fragments_fit = [header(false, 1, 500), header(true, 9, 20), header(true, 0, 500)].concat();
        let one_over = [header(true, 1, 10), header(true, 1, 1001)].concat();
        let fragments_over = [header(false, 1, 600), header(true, 10, 0), header(true, 0, 401)].concat();
        let huge = header(true, 1, 70_000)[..14].to_vec();
        for split in [false, true] {
            assert!(!scan(&fits, split));
            assert!(!scan(&fragments_fit, split));
            assert!(scan(&one_over, split));
            assert!(scan(&fragments_over, split));
            assert!(scan(&huge, split));
        }
    }

    /// A socket that counts the polls of its read side.
    struct CountReads<S> {
        inner: S,
        reads: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl<S: AsyncRead + Unpin> AsyncRead for CountReads<S> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            self.reads.fetch_add(1, Ordering::Relaxed);
            Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    impl<S: AsyncWrite + Unpin> AsyncWrite for CountReads<S> {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            Pin::new(&mut self.inner).poll_write(cx, buf)
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_flush(cx)
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    /// A frame a room queues wakes the connection to write it, and only
    /// that: the socket's read side is polled when the socket woke the task
    /// (each poll of it costs tungstenite's waker proxies and the socket's
    /// readiness lock, per delivered frame; BENCHMARKS.md, issue 21). Over
    /// a real TCP socket; the client's frames are still read and answered.
    #[tokio::test]
    async fn a_queued_frame_does_not_poll_the_read_side() {
        use futures_util::{SinkExt, StreamExt};
        const N: usize = 50;
        let wait = Duration::from_secs(5);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (accepted, client) = tokio::join!(listener.accept(), tokio::net::TcpStream::connect(addr));
        let (server_io, _) = accepted.unwrap();
        let limits = crate::config::Limits::default();
        let server = Arc::new(ServerState::new(crate::server::ServerParts {
            auth: crate::auth::Authenticator::hs256(b"k"),
            limits: &limits,
            store: None,
        }));
        let reads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let io = Tracked::new(CountReads { inner: server_io, reads: reads.clone() });
        let socket = open(io, Vec::new(), WebSocketConfig::default(), &server.conn_config).await;
        let shutdown = CancellationToken::new();
        let (handle, conn) =
            start(socket, server.next_conn_id(), addr.ip(), server.clone(), shutdown.clone());
        let conn = tokio::spawn(conn);
        let mut ws = WebSocketStream::from_raw_socket(client.unwrap(), Role::Client, None).await;

        ws.send(Message::text(r#"{"msg":"connect","version":"1","support":["1"]}"#)).await.unwrap();
        let m = tokio::time::timeout(wait, ws.next()).await.expect("in time").unwrap().unwrap();
        assert!(m.to_text().unwrap().contains("connected"), "{m}");
        let before = reads.load(Ordering::Relaxed);
        for i in 0..N {
            let frame = format!(r#"{{"msg":"changed","n":{i}}}"#);
            assert!(handle.try_send(Utf8Bytes::from(frame.clone())));
            let m = tokio::time::timeout(wait, ws.next()).await.expect("in time").unwrap().unwrap();
            assert_eq!(m.to_text().unwrap(), frame);
        }
        let polled = reads.load(Ordering::Relaxed) - before;
        assert!(polled < N / 5, "{polled} polls of the read side for {N} queued frames");
        // The read side still answers the client.
        ws.send(Message::text(r#"{"msg":"ping","id":"p1"}"#)).await.unwrap();
        let m = tokio::time::timeout(wait, ws.next()).await.expect("in time").unwrap().unwrap();
        assert!(m.to_text().unwrap().contains("pong"), "{m}");
        shutdown.cancel();
        tokio::time::timeout(wait, conn).await.expect("the connection ends").unwrap();
    }

    thread_local! {
        /// tungstenite parsers made and not yet dropped between messages,
        /// on this thread (a `#[tokio::test]` runs its tasks on its own).
        pub(super) static PARSERS: std::cell::Cell<isize> = const { std::cell::Cell::new(0) };
    }

    fn parsers() -> isize {
        PARSERS.with(|p| p.get())
    }

    /// A client frame: masked, `fin` or not.
    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [7u8, 1, 9, 3];
        assert!(payload.len() < 126);
        let mut f = vec![if fin { 0x80 } else { 0 } | opcode, 0x80 | payload.len() as u8];
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    /// Reads from `client` until what it read contains `want`.
    async fn read_until(client: &mut tokio::net::TcpStream, want: &str) {
        use tokio::io::AsyncReadExt;
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(&got).contains(want) {
            let n = tokio::time::timeout(Duration::from_secs(5), client.read(&mut buf))
                .await
                .expect("in time")
                .unwrap();
            assert!(n > 0, "closed before {want:?}: {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
    }

    /// Waits (bounded) until the connection holds `n` parsers.
    async fn settle_at(n: isize) {
        for _ in 0..400 {
            if parsers() == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("{} parsers, expected {n}", parsers());
    }

    /// Between messages a connection holds no tungstenite parser, so no
    /// read buffer (512 B) and no boxed stream (~450 B with its waker
    /// proxies): one is made when a message's first bytes arrive and
    /// dropped once the socket has nothing more. It stays while a frame or
    /// a fragmented message is unfinished. Over a real TCP socket.
    #[tokio::test]
    async fn an_idle_connection_holds_no_parser() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (accepted, client) = tokio::join!(listener.accept(), tokio::net::TcpStream::connect(addr));
        let (server_io, _) = accepted.unwrap();
        let mut client = client.unwrap();
        let limits = crate::config::Limits::default();
        let server = Arc::new(ServerState::new(crate::server::ServerParts {
            auth: crate::auth::Authenticator::hs256(b"k"),
            limits: &limits,
            store: None,
        }));
        let socket =
            open(Tracked::new(server_io), Vec::new(), server.conn_config.ws, &server.conn_config).await;
        let shutdown = CancellationToken::new();
        let conn =
            tokio::spawn(serve(socket, server.next_conn_id(), addr.ip(), server.clone(), shutdown.clone()));

        let connect = client_frame(true, 1, br#"{"msg":"connect","version":"1","support":["1"]}"#);
        client.write_all(&connect).await.unwrap();
        read_until(&mut client, "connected").await;
        settle_at(0).await;

        // Half a frame: the parser holds it until the rest comes.
        let ping = client_frame(true, 1, br#"{"msg":"ping","id":"a"}"#);
        client.write_all(&ping[..9]).await.unwrap();
        settle_at(1).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(parsers(), 1, "a parser holds the unfinished frame");
        client.write_all(&ping[9..]).await.unwrap();
        read_until(&mut client, r#""id":"a""#).await;
        settle_at(0).await;

        // A message in two fragments, the first alone for a while.
        client.write_all(&client_frame(false, 1, br#"{"msg":"pi"#)).await.unwrap();
        settle_at(1).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(parsers(), 1, "a parser holds the unfinished message");
        client.write_all(&client_frame(true, 0, br#"ng","id":"b"}"#)).await.unwrap();
        read_until(&mut client, r#""id":"b""#).await;
        settle_at(0).await;

        // A WebSocket ping is still answered (pong, opcode 0xA) by the
        // parser made for it.
        client.write_all(&client_frame(true, 9, b"hi")).await.unwrap();
        read_until(&mut client, "hi").await;
        settle_at(0).await;

        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), conn).await.expect("the connection ends").unwrap();
    }

    /// The size of the future a five-argument `fn` returns: what a task
    /// spawned with it holds in its cell.
    pub(crate) fn returned_size<A, B, C, D, E, R>(_: impl Fn(A, B, C, D, E) -> R) -> usize {
        std::mem::size_of::<R>()
    }

    /// Every open connection holds this future for its whole life, so its
    /// size is memory per idle connection. Before it was reshaped (an
    /// `async fn` keeping its 320-byte stream argument twice, the close
    /// path and the stall timer inline) the reader's was 1,744 bytes and
    /// the writer task's 744 in a release build; the writer now lives in
    /// the same future. 1,168 bytes (debug) with the session's four full
    /// rate-limit buckets, 1,040 with the compact ones.
    #[test]
    fn the_connection_future_stays_small() {
        type S = tokio::net::TcpStream;
        let serve = returned_size(serve::<S>);
        eprintln!("serve {serve} B");
        // Debug build (752 B; 864 with the heartbeat's timer inline, 880
        // before the read loop took one reference): the task cell must
        // stay ≤ 1,024 B in release, see BENCHMARKS.md, "The task cell
        // under 1 KiB" (issue 21).
        assert!(serve <= 760, "connection future is {serve} bytes");
    }
}

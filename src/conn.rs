//! One WebSocket connection: a reader that processes the client's frames
//! strictly in order, and a writer that drains the bounded outbound queue to
//! the socket in batches (feed, feed, …, flush).
//!
//! Rooms never write to the socket; they put shared, pre-serialised frames on
//! the queue with [`ConnHandle::try_send`]. A full queue means the client is
//! not keeping up: it is closed as a slow consumer instead of being waited
//! for.

use crate::ids::ConnId;
use crate::server::ServerState;
use crate::session::Session;
use futures_util::{SinkExt, StreamExt};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
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
        }
    }
}

struct ConnShared {
    cancel: CancellationToken,
    reason: OnceLock<CloseReason>,
}

/// The part of a connection other tasks hold: a way to queue frames and a
/// way to close it. Cheap to clone.
#[derive(Clone)]
pub struct ConnHandle {
    pub id: ConnId,
    tx: mpsc::Sender<Utf8Bytes>,
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
        match self.tx.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.close(CloseReason::SlowConsumer);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Queues a reply to this connection's own request, waiting for space;
    /// gives up if the connection is closing.
    pub async fn send(&self, frame: Utf8Bytes) -> bool {
        tokio::select! {
            r = self.tx.send(frame) => r.is_ok(),
            _ = self.shared.cancel.cancelled() => false,
        }
    }

    /// Closes the connection with `reason`; the first reason given wins.
    pub fn close(&self, reason: CloseReason) {
        let _ = self.shared.reason.set(reason);
        self.shared.cancel.cancel();
    }

    pub fn is_closed(&self) -> bool {
        self.shared.cancel.is_cancelled()
    }

    async fn closed(&self) {
        self.shared.cancel.cancelled().await
    }

    fn reason(&self) -> CloseReason {
        // A cancel without a reason came from the server-wide shutdown token.
        self.shared
            .reason
            .get()
            .copied()
            .unwrap_or(CloseReason::ServerRestart)
    }
}

/// Connection-level timing knobs.
#[derive(Debug, Clone)]
pub struct ConnConfig {
    pub outbound_queue: usize,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    pub connect_timeout: Duration,
}

/// Runs a connection to completion. `shutdown` is the server-wide token.
pub async fn serve<S>(
    ws: WebSocketStream<S>,
    id: ConnId,
    server: Arc<ServerState>,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let cfg = server.conn_config.clone();
    let (tx, rx) = mpsc::channel(cfg.outbound_queue);
    let handle = ConnHandle {
        id,
        tx,
        shared: Arc::new(ConnShared {
            cancel: shutdown.child_token(),
            reason: OnceLock::new(),
        }),
    };
    let (sink, stream) = ws.split();
    let writer = tokio::spawn(write_loop(sink, rx, handle.clone()));
    let mut session = Session::new(handle.clone(), server);
    read_loop(stream, &mut session, &cfg).await;
    session.finish().await;
    handle.close(CloseReason::PeerClosed);
    let _ = writer.await;
}

async fn read_loop<S>(
    mut stream: futures_util::stream::SplitStream<WebSocketStream<S>>,
    session: &mut Session,
    cfg: &ConnConfig,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let conn = session.conn().clone();
    let mut last_in = Instant::now();
    let mut pinged = false;
    loop {
        let deadline = if !session.is_connected() {
            last_in + cfg.connect_timeout
        } else if !session.heartbeat() {
            last_in + Duration::from_secs(86_400 * 365)
        } else if pinged {
            last_in + cfg.ping_interval + cfg.ping_timeout
        } else {
            last_in + cfg.ping_interval
        };
        tokio::select! {
            _ = conn.closed() => return,
            _ = tokio::time::sleep_until(deadline) => {
                if !session.is_connected() {
                    conn.close(CloseReason::ConnectTimeout);
                    return;
                }
                if pinged {
                    conn.close(CloseReason::HeartbeatTimeout);
                    return;
                }
                pinged = true;
                if !conn.send(crate::wire::ping()).await {
                    return;
                }
            }
            item = stream.next() => {
                last_in = Instant::now();
                pinged = false;
                match item {
                    None | Some(Ok(Message::Close(_))) => return,
                    Some(Ok(Message::Text(text))) => {
                        // Frames are handled one at a time, to completion,
                        // which is what keeps a connection's calls in order.
                        if !session.handle_text(&text).await {
                            return;
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        conn.close(CloseReason::Binary);
                        return;
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
                        return;
                    }
                }
            }
        }
    }
}

async fn write_loop<S>(
    mut sink: futures_util::stream::SplitSink<WebSocketStream<S>, Message>,
    mut rx: mpsc::Receiver<Utf8Bytes>,
    conn: ConnHandle,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut batch = Vec::new();
    loop {
        tokio::select! {
            biased;
            _ = conn.closed() => break,
            n = rx.recv_many(&mut batch, 64) => {
                if n == 0 {
                    break;
                }
                for frame in batch.drain(..) {
                    if sink.feed(Message::Text(frame)).await.is_err() {
                        return;
                    }
                }
                if sink.flush().await.is_err() {
                    return;
                }
            }
        }
    }
    let reason = conn.reason();
    if reason == CloseReason::PeerClosed {
        // If the peer sent a close frame, the WebSocket layer has queued the
        // reply; flushing and closing our half sends it, so the client sees a
        // clean 1000 instead of 1006.
        let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
        return;
    }
    // Deliver what was queued before the close (e.g. `failed`), unless the
    // queue is the problem.
    if reason != CloseReason::SlowConsumer {
        while let Ok(frame) = rx.try_recv() {
            if sink.feed(Message::Text(frame)).await.is_err() {
                return;
            }
        }
    }
    let frame = CloseFrame {
        code: CloseCode::from(reason.code()),
        reason: reason.text().into(),
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = sink.send(Message::Close(Some(frame))).await;
        let _ = sink.close().await;
    })
    .await;
}

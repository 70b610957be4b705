//! The accept loop and the state every connection shares.
//!
//! `run` takes its listener and its shutdown signal from the caller (main, or
//! a test that bound `127.0.0.1:0`), in the manner of mini-redis.

use crate::auth::Authenticator;
use crate::config::Limits;
use crate::conn::{self, CloseReason, ConnConfig};
use crate::hub::UserHub;
use crate::ids::ConnId;
use crate::registry::Registry;
use crate::room::actor::RoomConfig;
use crate::users::Directory;
use futures_util::SinkExt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Everything connections share. Lookups go through sharded maps; there is
/// no global lock on any per-message path.
pub struct ServerState {
    pub auth: Authenticator,
    pub registry: Arc<Registry>,
    pub users: Arc<Directory>,
    pub hub: Arc<UserHub>,
    pub room_config: Arc<RoomConfig>,
    pub conn_config: ConnConfig,
    next_conn: AtomicU64,
}

impl ServerState {
    pub fn new(auth: Authenticator, limits: &Limits) -> Self {
        ServerState {
            auth,
            registry: Arc::new(Registry::default()),
            users: Arc::new(Directory::default()),
            hub: Arc::new(UserHub::default()),
            room_config: Arc::new(RoomConfig {
                mailbox: limits.room_mailbox.max(1),
                history_limit: limits.history_limit,
                guest_grace: limits.guest_grace,
                max_message_len: limits.max_message_len,
            }),
            conn_config: ConnConfig {
                outbound_queue: limits.outbound_queue.max(1),
                ping_interval: limits.ping_interval,
                ping_timeout: limits.ping_timeout,
                connect_timeout: limits.connect_timeout,
            },
            next_conn: AtomicU64::new(1),
        }
    }
}

/// Settings `run` needs besides the shared state.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub max_connections: usize,
    pub handshake_timeout: Duration,
    pub max_frame_bytes: usize,
    pub shutdown_timeout: Duration,
}

impl RunConfig {
    pub fn from_limits(l: &Limits) -> Self {
        RunConfig {
            max_connections: l.max_connections,
            handshake_timeout: l.handshake_timeout,
            max_frame_bytes: l.max_frame_bytes,
            shutdown_timeout: l.shutdown_timeout,
        }
    }
}

fn ws_config(max_frame: usize) -> WebSocketConfig {
    // The default 128 KiB read buffer per connection dominates memory at
    // tens of thousands of connections; DDP frames are small.
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(max_frame))
        .max_frame_size(Some(max_frame))
}

/// Accepts connections until `shutdown` resolves, then closes every
/// connection with "server restarting" and waits (up to the configured
/// deadline) for them to finish.
pub async fn run(listener: TcpListener, state: Arc<ServerState>, cfg: RunConfig, shutdown: impl Future) {
    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    let permits = Arc::new(Semaphore::new(cfg.max_connections));
    let ws_cfg = ws_config(cfg.max_frame_bytes);
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(5);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(x) => {
                    backoff = Duration::from_millis(5);
                    x
                }
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let id = ConnId(state.next_conn.fetch_add(1, Ordering::Relaxed));
        let permit = permits.clone().try_acquire_owned().ok();
        let state = state.clone();
        let stop = stop.clone();
        let handshake_timeout = cfg.handshake_timeout;
        tracker.spawn(async move {
            let Some(ws) = handshake(stream, ws_cfg, handshake_timeout).await else {
                return;
            };
            match permit {
                Some(_permit) => {
                    tracing::debug!(conn = %id, %peer, "connected");
                    conn::serve(ws, id, state, stop).await;
                    tracing::debug!(conn = %id, "disconnected");
                }
                None => reject(ws, CloseReason::TooManyConnections).await,
            }
        });
    }
    tracing::info!("shutting down: closing connections");
    stop.cancel();
    tracker.close();
    if tokio::time::timeout(cfg.shutdown_timeout, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("shutdown deadline passed with connections still open");
    }
}

async fn handshake(
    stream: TcpStream,
    ws_cfg: WebSocketConfig,
    timeout: Duration,
) -> Option<tokio_tungstenite::WebSocketStream<TcpStream>> {
    #[allow(clippy::result_large_err)] // the signature is tungstenite's
    let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        if req.uri().path() == "/websocket" {
            Ok(resp)
        } else {
            let mut e = ErrorResponse::new(Some("not found; the DDP endpoint is /websocket\n".into()));
            *e.status_mut() = StatusCode::NOT_FOUND;
            Err(e)
        }
    };
    let fut = tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(ws_cfg));
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(ws)) => Some(ws),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!("handshake timed out");
            None
        }
    }
}

async fn reject(mut ws: tokio_tungstenite::WebSocketStream<TcpStream>, reason: CloseReason) {
    let frame = CloseFrame {
        code: CloseCode::from(reason.code()),
        reason: reason.text().into(),
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), ws.send(Message::Close(Some(frame)))).await;
}

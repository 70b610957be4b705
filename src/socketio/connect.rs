//! A socket's life: the connect middleware signs it in (or leaves it a
//! guest) and takes its connection slot; whatever ends it, its session ends
//! as a DDP connection's end would and the slot comes back.
//!
//! Ownership is what makes that hold in every order of CONNECT and close:
//! the socket's [`SioConn`] lives in the socket's extensions and nowhere
//! else for good, and nothing it owns holds the socket strongly until the
//! socket has joined the namespace (see [`SocketSlot`]). So a socket that
//! socketioxide drops without a disconnect handler (its Engine.IO session
//! closed while the middleware ran) drops its `SioConn`, whose `Drop` ends
//! the session and frees the slot; a socket that did join is ended by its
//! disconnect handler, registered by the middleware before the socket can
//! join, so no close of a socket in the namespace escapes it and each is
//! counted with the reason socketioxide gives (or roomd's own, decided
//! first: a cut, an expired token, a frame too large).

use super::Door;
use super::emit::{Sinked, SocketSink};
use crate::conn::{CloseReason, ConnHandle, Tap, Wire};
use crate::method::Resume;
use crate::metrics::Metrics;
use crate::server::Peer;
use crate::session::Session;
use serde_json::Value;
use socketioxide::extract::{SocketRef, State, TryData};
use socketioxide::socket::DisconnectReason;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use tokio::sync::{Mutex, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;

/// One socket's server side, kept in the socket's extensions.
pub(super) struct SioConn {
    /// The same session a DDP connection has; events run one at a time
    /// through it, as a DDP connection's calls do. Taken by `Drop`, which
    /// ends it.
    pub(super) session: Mutex<Option<Session>>,
    /// The room this socket last joined: events that name no `roomId` act on it.
    pub(super) room: std::sync::Mutex<Option<String>>,
    pub(super) conn: ConnHandle,
    /// Ends the socket's helper tasks (token expiry, write-stall watch).
    pub(super) cancel: CancellationToken,
    /// The socket itself, once it has joined the namespace.
    pub(super) socket: Arc<SocketSlot>,
    /// Its unsent bytes and its hold on the WebSocket under it.
    pub(super) tap: Arc<Tap>,
    /// What counts its packets and cuts it (the rooms hold it too).
    pub(super) sink: Arc<SocketSink>,
    /// Why it ended, for `roomd_connections_closed_total`, when no
    /// [`CloseReason`] of roomd's says it (set at most once).
    label: std::sync::OnceLock<&'static str>,
    /// Where its Engine.IO sid maps to its tap, removed at the end.
    door: Door,
    sid: String,
    /// The socket's slot under `--max-connections`, released once its
    /// session has ended.
    permit: Option<OwnedSemaphorePermit>,
}

/// The socket, for what must reach it (the rooms' events, a cut) but must
/// not keep it alive: it holds the socket only from `on_connect` until the
/// socket ends, so the socket → extensions → `SioConn` → sink → socket
/// cycle exists only while the socket is in the namespace, and is broken
/// wherever it ends.
#[derive(Default)]
pub(super) struct SocketSlot(std::sync::Mutex<Slot>);

#[derive(Default)]
struct Slot {
    socket: Option<SocketRef>,
    /// Set by [`end`]: a handler that runs late must not fill the slot
    /// again (that would rebuild the cycle with nothing left to break it).
    ended: bool,
}

impl SocketSlot {
    pub(super) fn get(&self) -> Option<SocketRef> {
        self.0.lock().ok()?.socket.clone()
    }

    /// Holds the socket, unless it has ended. Called once it is in the
    /// namespace: by `on_connect`, or by an event handler that ran first
    /// (socketioxide only hands events to sockets in the namespace).
    pub(super) fn fill(&self, s: &SocketRef) {
        if let Ok(mut slot) = self.0.lock()
            && !slot.ended
            && slot.socket.is_none()
        {
            slot.socket = Some(s.clone());
        }
    }

    fn clear(&self) {
        if let Ok(mut slot) = self.0.lock() {
            slot.ended = true;
            slot.socket = None;
        }
    }
}

/// Socket extensions need `Clone`.
#[derive(Clone)]
pub(super) struct ConnRef(pub(super) Arc<SioConn>);

/// Why a CONNECT was refused; the client's `connect_error` shows it as
/// `err.message`.
#[derive(Debug)]
pub(super) struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The connect middleware: `auth.token` (a JWT) signs the socket in with the
/// DDP `login` itself (signature, expiry, revocation, username ownership,
/// the user's record made durable); no token leaves it a guest. Refusals
/// become CONNECT_ERROR packets.
pub(super) async fn sign_in(
    s: SocketRef,
    State(door): State<Door>,
    TryData(auth): TryData<Value>,
) -> Result<(), Refused> {
    let state = door.state.clone();
    if state.is_draining() {
        return Err(Refused("server shutting down, reconnect later".into()));
    }
    let token = match auth {
        // socket.io-client sends no auth payload when none is set.
        Err(_) | Ok(Value::Null) => None,
        Ok(Value::Object(o)) => match o.get("token") {
            None | Some(Value::Null) => None,
            Some(Value::String(t)) => Some(t.clone()),
            Some(_) => return Err(Refused("auth.token must be a string (a JWT)".into())),
        },
        Ok(_) => return Err(Refused("auth must be an object such as {\"token\": \"<JWT>\"}".into())),
    };
    let Ok(permit) = door.permits.clone().try_acquire_owned() else {
        state.metrics.handshake_failed("too-many-connections");
        door.reclaim.notify_waiters();
        return Err(Refused(CloseReason::TooManyConnections.text().into()));
    };
    let id = state.next_conn_id();
    let cancel = CancellationToken::new();
    let conn = ConnHandle::without_writer(
        id,
        state.metrics.clone(),
        cancel.clone(),
        state.conn_config.outbound_bytes.clone(),
    );
    let slot = Arc::new(SocketSlot::default());
    let tap = Arc::new(Tap::new(state.conn_config.outbound_bytes.clone()));
    let sink = Arc::new(SocketSink::new(slot.clone(), conn.clone(), tap.clone(), door.stall));
    let listener = Arc::new(Sinked(sink.clone()));
    let mut session = Session::for_door(conn.clone(), state.clone(), peer_ip(&s), listener);
    if let Some(token) = token {
        let r = session.call(Resume { token }).await;
        if let Err(e) = r {
            return Err(Refused(format!("sign-in refused: {}", e.to_wire("").reason)));
        }
    }
    // A WebSocket session's socket is the one this request came on; a
    // polling session's later upgrade attaches its own (`Taps::before`).
    if s.transport_type() == socketioxide::TransportType::Websocket
        && let Some(wire) = s.req_parts().extensions.get::<Arc<Wire>>()
    {
        wire.attach(&tap);
    }
    let sid = s.id.to_string();
    door.taps.insert(&sid, &tap);
    state.metrics.connection_opened();
    tracing::debug!(conn = %id, sid = %s.id, "socket.io connected");
    let me = SioConn {
        session: Mutex::new(Some(session)),
        room: std::sync::Mutex::new(None),
        conn,
        cancel,
        socket: slot,
        tap,
        sink,
        label: std::sync::OnceLock::new(),
        door,
        sid,
        permit: Some(permit),
    };
    s.extensions.insert(ConnRef(Arc::new(me)));
    // Both here, not in `on_connect`: socketioxide sends the CONNECT answer
    // before it spawns `on_connect`, so an event a client emits as soon as it
    // is connected would find no handler and be dropped unanswered, and a
    // close in that window would find no disconnect handler: its reason
    // (a bad packet, the heartbeat) would be lost. From here on every close
    // of the socket in the namespace reaches `on_disconnect` with socketioxide's
    // reason; a socket closed before it joined the namespace is dropped with
    // its `SioConn` (see the module doc).
    s.on_disconnect(on_disconnect);
    super::events::register(&s);
    Ok(())
}

/// After a successful CONNECT: the token's expiry.
pub(super) async fn on_connect(s: SocketRef) {
    // None: the socket has already ended (its disconnect handler ran).
    let Some(ConnRef(me)) = s.extensions.get::<ConnRef>() else { return };
    me.socket.fill(&s);
    let expiry = match me.session.lock().await.as_ref() {
        Some(session) => session.token_expiry(),
        None => None,
    };
    if let Some(at) = expiry {
        let (slot, cancel, conn) = (me.socket.clone(), me.cancel.clone(), me.conn.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = tokio::time::sleep_until(at) => {
                    conn.close(CloseReason::TokenExpired);
                    if let Some(s) = slot.get() {
                        let _ = s.disconnect();
                    }
                }
            }
        });
    }
}

/// The socket is gone (closed by either side, or its transport died).
async fn on_disconnect(s: SocketRef, reason: DisconnectReason) {
    tracing::debug!(sid = %s.id, ?reason, "socket.io disconnected");
    end(&s, label_of(reason));
}

/// What roomd calls a close socketioxide reports (when roomd did not close
/// the socket itself, with a reason of its own).
fn label_of(reason: DisconnectReason) -> &'static str {
    match reason {
        DisconnectReason::HeartbeatTimeout => CloseReason::HeartbeatTimeout.label(),
        DisconnectReason::ClosingServer => CloseReason::ServerRestart.label(),
        // A malformed packet, or a binary one (no event takes binary data;
        // see `layer`).
        DisconnectReason::PacketParsingError => "bad_packet",
        DisconnectReason::TransportClose
        | DisconnectReason::TransportError
        | DisconnectReason::MultipleHttpPollingError
        | DisconnectReason::ClientNSDisconnect
        | DisconnectReason::ServerNSDisconnect => CloseReason::PeerClosed.label(),
    }
}

/// Ends the socket's server side, once, whoever calls first: takes its
/// `SioConn` out of the socket and breaks the cycle through the slot; the
/// session ends when the last event still running lets go of it
/// (`SioConn::drop`).
fn end(s: &SocketRef, label: &'static str) {
    let Some(ConnRef(me)) = s.extensions.remove::<ConnRef>() else { return };
    // The reason is read before anything cancels the connection: a cancel
    // without a reason reads as a server restart.
    let _ = me.label.set(label);
    me.socket.clear();
    me.cancel.cancel();
}

impl Drop for SioConn {
    fn drop(&mut self) {
        self.cancel.cancel();
        self.door.taps.remove(&self.sid);
        let label = match self.conn.closed_reason() {
            Some(r) => r.label(),
            // Decided by the socket's reader the moment the client announced
            // it; socketioxide reports such a close as a transport error.
            None if self.tap.too_big() => CloseReason::TooBig.label(),
            None => self.label.get().copied().unwrap_or(CloseReason::PeerClosed.label()),
        };
        self.conn.close(CloseReason::PeerClosed);
        let session = self.session.get_mut().take();
        let permit = self.permit.take();
        let metrics: Arc<Metrics> = self.door.state.metrics.clone();
        let Some(mut session) = session else { return };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            // No runtime left (the process is exiting): nothing to wait for.
            metrics.connection_closed(session.kind(), label);
            return;
        };
        let id = self.conn.id;
        rt.spawn(async move {
            // Its guest seats start the same reconnect grace as a DDP
            // connection's; the slot comes back once that is done.
            session.finish().await;
            metrics.connection_closed(session.kind(), label);
            drop(permit);
            tracing::debug!(conn = %id, reason = label, "socket.io session ended");
        });
    }
}

/// The client's address, for the per-address join-code brake: the router
/// puts the TCP peer into each request's extensions.
fn peer_ip(s: &SocketRef) -> IpAddr {
    s.req_parts()
        .extensions
        .get::<Peer>()
        .map(|p| p.0.ip())
        // Without it every such socket shares one address's budget: safe.
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

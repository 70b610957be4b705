//! A socket's life: the connect middleware signs it in (or leaves it a
//! guest) and takes its connection slot; the disconnect handler ends its
//! session as a DDP connection's end would.

use super::Door;
use super::emit::SocketSink;
use crate::conn::{CloseReason, ConnHandle};
use crate::method::Method;
use crate::server::Peer;
use crate::session::Session;
use serde_json::{Value, json};
use socketioxide::extract::{SocketRef, State, TryData};
use socketioxide::socket::DisconnectReason;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use tokio::sync::{Mutex, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;

/// One socket's server side, kept in the socket's extensions from the
/// connect middleware to the disconnect handler.
pub(super) struct SioConn {
    /// The same session a DDP connection has; events run one at a time
    /// through it, as a DDP connection's calls do.
    pub(super) session: Mutex<Session>,
    /// The room this socket last joined: events that name no `roomId` act on it.
    pub(super) room: std::sync::Mutex<Option<String>>,
    pub(super) conn: ConnHandle,
    /// Ends the socket's helper tasks (token expiry, slow-consumer cut).
    pub(super) cancel: CancellationToken,
    /// The socket's slot under `--max-connections`, released with it.
    _permit: OwnedSemaphorePermit,
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
    let state = &door.state;
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
    let sink = Arc::new(SocketSink::new(s.clone(), conn.clone(), cancel.clone()));
    let mut session = Session::for_door(conn.clone(), state.clone(), peer_ip(&s), sink);
    if let Some(token) = token {
        let r = session.call(Method::Login, vec![json!({ "resume": token })]).await;
        if let Err(e) = r {
            return Err(Refused(format!("sign-in refused: {}", e.to_wire("").reason)));
        }
    }
    state.metrics.connection_opened();
    tracing::debug!(conn = %id, sid = %s.id, "socket.io connected");
    let me = SioConn {
        session: Mutex::new(session),
        room: std::sync::Mutex::new(None),
        conn,
        cancel,
        _permit: permit,
    };
    s.extensions.insert(ConnRef(Arc::new(me)));
    Ok(())
}

/// After a successful CONNECT: the events, the end, the token's expiry.
pub(super) async fn on_connect(s: SocketRef) {
    let Some(ConnRef(me)) = s.extensions.get::<ConnRef>() else {
        // The middleware always leaves one; nothing to serve without it.
        let _ = s.disconnect();
        return;
    };
    super::events::register(&s);
    s.on_disconnect(on_disconnect);
    let expiry = me.session.lock().await.token_expiry();
    if let Some(at) = expiry {
        let (s, cancel, conn) = (s.clone(), me.cancel.clone(), me.conn.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = tokio::time::sleep_until(at) => {
                    conn.close(CloseReason::TokenExpired);
                    let _ = s.disconnect();
                }
            }
        });
    }
}

/// The socket is gone (closed by either side, or its transport died): its
/// session ends as a DDP connection's does, so its guest seats start the
/// same reconnect grace. Waits for an event still being handled.
async fn on_disconnect(s: SocketRef, reason: DisconnectReason) {
    // Taken out of the extensions: the rooms' sinks hold the socket, and the
    // socket must not keep holding the session that holds them.
    let Some(ConnRef(me)) = s.extensions.remove::<ConnRef>() else { return };
    me.cancel.cancel();
    let mut session = me.session.lock().await;
    session.finish().await;
    let label = if me.conn.is_closed() {
        me.conn.reason().label()
    } else {
        match reason {
            DisconnectReason::HeartbeatTimeout => CloseReason::HeartbeatTimeout.label(),
            DisconnectReason::ClosingServer => CloseReason::ServerRestart.label(),
            _ => CloseReason::PeerClosed.label(),
        }
    };
    me.conn.close(CloseReason::PeerClosed);
    session.server().metrics.connection_closed(session.kind(), label);
    tracing::debug!(conn = %me.conn.id, sid = %s.id, ?reason, "socket.io disconnected");
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

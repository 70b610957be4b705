//! Per-connection DDP state: whether `connect` happened, who is signed in,
//! which subscriptions are open. Turns each inbound frame into replies.

use crate::auth::{GlobalRole, User};
use crate::conn::{CloseReason, ConnHandle};
use crate::error::MethodError;
use crate::hub::{LoggedEvent, UserEvent};
use crate::ids::{RoomId, UserId};
use crate::method;
use crate::permissions::Principal;
use crate::room::{RoomCommand, RoomHandle, Topic};
use crate::server::ServerState;
use crate::wire::{self, ClientFrame, FrameError};
use std::collections::HashMap;
use std::sync::Arc;

/// DDP versions roomd speaks; all behave the same except that `pre1`
/// predates heartbeats.
const SUPPORTED_VERSIONS: [&str; 3] = ["1", "pre2", "pre1"];

/// An open subscription that delivers something (inert subs are not
/// stored: they never fire, and `unsub` answers `nosub` for any id).
#[derive(Debug, Clone)]
pub enum Sub {
    Room { room: RoomHandle, topic: Topic },
    User { uid: UserId, event: UserEvent },
    Logged(LoggedEvent),
}

impl Sub {
    fn same_target(&self, other: &Sub) -> bool {
        match (self, other) {
            (Sub::Room { room: a, topic: t }, Sub::Room { room: b, topic: u }) => a.id == b.id && t == u,
            (Sub::User { uid: a, event: e }, Sub::User { uid: b, event: f }) => a == b && e == f,
            (Sub::Logged(a), Sub::Logged(b)) => a == b,
            _ => false,
        }
    }
}

pub struct Session {
    conn: ConnHandle,
    pub server: Arc<ServerState>,
    connected: bool,
    heartbeat: bool,
    /// The signed-in user, if any. `None` means guest.
    pub user: Option<Arc<User>>,
    /// This connection's guest identity, created on its first `join-room`.
    pub guest_id: Option<UserId>,
    /// Rooms this connection's guest joined (or tried to): on close, each is
    /// told so the guest's seat is released after the grace period. Recorded
    /// before the join is sent, so a disconnect mid-join leaves no ghost.
    pub guest_rooms: Vec<RoomHandle>,
    /// DDP sub id → what it listens to.
    pub subs: HashMap<String, Sub>,
    /// The user this connection counts as online for.
    online_as: Option<UserId>,
}

impl Session {
    pub fn new(conn: ConnHandle, server: Arc<ServerState>) -> Self {
        Session {
            conn,
            server,
            connected: false,
            heartbeat: true,
            user: None,
            guest_id: None,
            guest_rooms: Vec::new(),
            subs: HashMap::new(),
            online_as: None,
        }
    }

    pub fn conn(&self) -> &ConnHandle {
        &self.conn
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    pub fn heartbeat(&self) -> bool {
        self.heartbeat
    }

    /// The signed-in caller, or `error-invalid-user`.
    pub fn require_user(&self) -> Result<Principal, MethodError> {
        let u = self.user.as_ref().ok_or(MethodError::InvalidUser)?;
        Ok(user_principal(u))
    }

    /// Handles one text frame; returns false when the connection must end.
    pub async fn handle_text(&mut self, text: &str) -> bool {
        let raw = text;
        let frame = match wire::parse_client_frame(text) {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(conn = %self.conn.id, error = %e, "bad frame");
                // Before `connect`, anything that is not a valid connect is
                // answered as Meteor does: "Must connect first".
                let reply = match (&e, self.connected) {
                    (FrameError::Parse, _) | (_, true) => e.to_frame(),
                    (
                        FrameError::BadRequest(v)
                        | FrameError::MalformedMethod(v)
                        | FrameError::MalformedSub(v),
                        false,
                    ) => wire::error_frame("Must connect first", v),
                };
                return self.conn.send(reply).await;
            }
        };
        match frame {
            ClientFrame::Connect { version, support: _ } => {
                if self.connected {
                    let v = serde_json::json!({"msg": "connect", "version": version});
                    return self.conn.send(wire::error_frame("Bad request", &v)).await;
                }
                match version.as_deref() {
                    Some(v) if SUPPORTED_VERSIONS.contains(&v) => {
                        self.connected = true;
                        self.heartbeat = v != "pre1";
                        self.conn.send(wire::connected(&crate::ids::secret(17))).await
                    }
                    _ => {
                        let _ = self.conn.send(wire::failed("1")).await;
                        self.conn.close(CloseReason::UnsupportedVersion);
                        false
                    }
                }
            }
            _ if !self.connected => {
                // Echo the frame as sent; it parsed once, so it parses again.
                let v = serde_json::from_str(raw).unwrap_or(serde_json::Value::Null);
                self.conn.send(wire::error_frame("Must connect first", &v)).await
            }
            ClientFrame::Ping { id } => self.conn.send(wire::pong(id)).await,
            ClientFrame::Pong => true,
            ClientFrame::Method { id, method, params } => {
                let reply = match method::dispatch(self, &method, params).await {
                    Ok(v) => wire::result_ok(&id, v),
                    Err(e) => {
                        log_error(&e, &method, self.conn.id);
                        wire::result_err(&id, &e.to_wire(&method))
                    }
                };
                self.conn.send(reply).await && self.conn.send(wire::updated(&id)).await
            }
            ClientFrame::Sub { id, name, params } => {
                let frames = crate::sub::subscribe(self, &id, &name, params).await;
                for f in frames {
                    if !self.conn.send(f).await {
                        return false;
                    }
                }
                true
            }
            ClientFrame::Unsub { id } => {
                self.unsubscribe(&id).await;
                self.conn.send(wire::nosub(&id, None)).await
            }
        }
    }

    /// Removes sub `id`; the room stops delivering its topic only when no
    /// other sub of this connection still wants it.
    pub async fn unsubscribe(&mut self, id: &str) {
        let Some(sub) = self.subs.remove(id) else { return };
        if self.subs.values().any(|s| s.same_target(&sub)) {
            return;
        }
        let conn = self.conn.id;
        match sub {
            Sub::Room { room, topic } => {
                let _ = room
                    .ask(|tx| RoomCommand::Unsubscribe {
                        conn,
                        topic,
                        respond_to: tx,
                    })
                    .await;
            }
            Sub::User { uid, event } => self.server.hub.unlisten_user(&uid, conn, event),
            Sub::Logged(event) => self.server.hub.unlisten_logged(conn, event),
        }
    }

    /// Marks this connection online as `uid` (or offline with `None`),
    /// announcing `user-status` when a user's first connection opens or the
    /// last one closes.
    pub fn set_online(&mut self, uid: Option<(UserId, String)>) {
        if self.online_as.as_ref() == uid.as_ref().map(|(u, _)| u) {
            return;
        }
        let hub = &self.server.hub;
        if let Some(old) = self.online_as.take()
            && hub.offline(&old)
        {
            let name = self
                .server
                .users
                .by_id(&old)
                .map(|u| u.username)
                .unwrap_or_default();
            hub.send_logged(LoggedEvent::UserStatus, &status_frame(&old, &name, 0));
        }
        if let Some((uid, name)) = uid {
            if hub.online(&uid) {
                hub.send_logged(LoggedEvent::UserStatus, &status_frame(&uid, &name, 1));
            }
            self.online_as = Some(uid);
        }
    }

    /// Drops every room subscription, answering each with `nosub` carrying
    /// `error` (used when the identity they were granted to goes away).
    pub async fn drop_all_subs(&mut self, error: &MethodError) {
        let ids: Vec<String> = self.subs.keys().cloned().collect();
        for id in ids {
            self.unsubscribe(&id).await;
            let _ = self.conn.send(wire::nosub(&id, Some(&error.to_wire("")))).await;
        }
    }

    /// Cleanup when the connection ends: rooms forget this connection and
    /// start the grace period of its guest memberships.
    pub async fn finish(&mut self) {
        let conn = self.conn.id;
        let mut told: Vec<RoomId> = Vec::new();
        for room in std::mem::take(&mut self.guest_rooms) {
            if told.contains(&room.id) {
                continue;
            }
            told.push(room.id.clone());
            room.tell(RoomCommand::ConnClosed {
                conn,
                guest: self.guest_id.clone(),
            })
            .await;
        }
        let mut uids = Vec::new();
        for (_, sub) in self.subs.drain() {
            match sub {
                Sub::Room { room, .. } if !told.contains(&room.id) => {
                    told.push(room.id.clone());
                    room.tell(RoomCommand::ConnClosed { conn, guest: None }).await;
                }
                Sub::User { uid, .. } if !uids.contains(&uid) => uids.push(uid),
                _ => {}
            }
        }
        self.server.hub.drop_conn(conn, &uids);
        self.set_online(None);
    }
}

/// `stream-notify-logged` `user-status`: `[[uid, username, status, text]]`
/// with Rocket.Chat's numbering (0 offline, 1 online).
fn status_frame(uid: &UserId, username: &str, status: u8) -> tokio_tungstenite::tungstenite::Utf8Bytes {
    wire::stream_changed(
        "stream-notify-logged",
        "user-status",
        &serde_json::json!([[uid, username, status, ""]]),
    )
}

pub fn user_principal(u: &User) -> Principal {
    Principal {
        id: u.id.clone(),
        username: u.username.clone(),
        name: u.name.clone(),
        admin: u.has_role(GlobalRole::Admin),
        bot: u.has_role(GlobalRole::Bot),
        guest: false,
    }
}

/// The one place method errors are logged: client mistakes at `debug`,
/// server faults at `error`.
fn log_error(e: &MethodError, method: &str, conn: crate::ids::ConnId) {
    if e.is_server_fault() {
        tracing::error!(%conn, method, error = %e, "method failed");
    } else {
        tracing::debug!(%conn, method, error = %e, "method refused");
    }
}

//! User-scoped streams: `stream-notify-user` (`<uid>/…`), the
//! `__my_messages__` event of `stream-room-messages`, and
//! `stream-notify-logged` (presence and role changes).
//!
//! Rooms reach users through this hub, never through a global lock: every map
//! is a sharded dashmap, and frames go out with `try_send` like room events.

use crate::conn::ConnHandle;
use crate::ids::{ConnId, UserId};
use dashmap::DashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// Events of one user's stream a connection listens to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserEvent {
    RoomsChanged = 1,
    SubscriptionsChanged = 2,
    Message = 4,
    /// `stream-room-messages` / `__my_messages__`.
    MyMessages = 8,
}

/// What one connection's arrival or departure changed about a user's
/// presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flip {
    /// The user's first connection on this node opened, or its last closed.
    pub here: bool,
    /// The user came online, or went offline, for the whole cluster (on one
    /// node: the same as `here`).
    pub everywhere: bool,
}

/// `stream-notify-logged` events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoggedEvent {
    UserStatus = 1,
    RolesChange = 2,
}

struct Listener {
    conn: ConnHandle,
    bits: u8,
}

/// A `stream-notify-logged` listener: the user is kept so events about
/// rooms only some users may read reach only them.
struct LoggedListener {
    conn: ConnHandle,
    uid: UserId,
    bits: u8,
}

#[derive(Default)]
pub struct UserHub {
    users: DashMap<UserId, Vec<Listener>>,
    logged: DashMap<ConnId, LoggedListener>,
    /// Open connections per signed-in user, for online/offline.
    presence: DashMap<UserId, u32>,
    /// Cluster mode: the other nodes (origins) where each user is online.
    remote: DashMap<UserId, Vec<String>>,
    /// How many connections listen to `__my_messages__`; rooms skip the
    /// per-member lookups entirely while this is zero.
    my_messages: AtomicUsize,
    /// Each signed-in user's own `users` record and who holds it.
    pub records: crate::account::OwnRecords,
}

impl std::fmt::Debug for UserHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UserHub { .. }")
    }
}

impl UserHub {
    pub fn listen_user(&self, uid: &UserId, conn: &ConnHandle, ev: UserEvent) {
        let mut list = self.users.entry(uid.clone()).or_default();
        let bit = ev as u8;
        match list.iter_mut().find(|l| l.conn.id == conn.id) {
            Some(l) if l.bits & bit != 0 => return,
            Some(l) => l.bits |= bit,
            None => list.push(Listener { conn: conn.clone(), bits: bit }),
        }
        if ev == UserEvent::MyMessages {
            self.my_messages.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn unlisten_user(&self, uid: &UserId, conn: ConnId, ev: UserEvent) {
        let bit = ev as u8;
        let mut removed = false;
        if let Some(mut list) = self.users.get_mut(uid) {
            for l in list.iter_mut().filter(|l| l.conn.id == conn && l.bits & bit != 0) {
                l.bits &= !bit;
                removed = true;
            }
            list.retain(|l| l.bits != 0);
        }
        self.users.remove_if(uid, |_, l| l.is_empty());
        if removed && ev == UserEvent::MyMessages {
            self.my_messages.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// `uid` is the signed-in user of `conn`; a connection that changes
    /// user drops its subscriptions first (see `login`).
    pub fn listen_logged(&self, conn: &ConnHandle, uid: &UserId, ev: LoggedEvent) {
        self.logged
            .entry(conn.id)
            .or_insert_with(|| LoggedListener { conn: conn.clone(), uid: uid.clone(), bits: 0 })
            .bits |= ev as u8;
    }

    pub fn unlisten_logged(&self, conn: ConnId, ev: LoggedEvent) {
        if let Some(mut l) = self.logged.get_mut(&conn) {
            l.bits &= !(ev as u8);
        }
        self.logged.remove_if(&conn, |_, l| l.bits == 0);
    }

    /// Forgets a closed connection everywhere.
    pub fn drop_conn(&self, conn: ConnId, uids: &[UserId]) {
        self.logged.remove(&conn);
        for uid in uids {
            for ev in [
                UserEvent::RoomsChanged,
                UserEvent::SubscriptionsChanged,
                UserEvent::Message,
                UserEvent::MyMessages,
            ] {
                self.unlisten_user(uid, conn, ev);
            }
        }
    }

    pub fn wants_my_messages(&self) -> bool {
        self.my_messages.load(Ordering::Relaxed) > 0
    }

    /// Sends `frame` to every connection of `uid` listening to `ev`.
    pub fn send_user(&self, uid: &UserId, ev: UserEvent, frame: &Utf8Bytes) {
        if let Some(list) = self.users.get(uid) {
            for l in list.iter().filter(|l| l.bits & ev as u8 != 0) {
                l.conn.try_send(frame.clone());
            }
        }
    }

    pub fn has_listener(&self, uid: &UserId, ev: UserEvent) -> bool {
        self.users.get(uid).is_some_and(|l| l.iter().any(|l| l.bits & ev as u8 != 0))
    }

    pub fn send_logged(&self, ev: LoggedEvent, frame: &Utf8Bytes) {
        self.send_logged_to(ev, frame, |_| true);
    }

    /// Like [`UserHub::send_logged`], but only to listeners whose user
    /// `may_read` says yes (events about a private room go to its members).
    pub fn send_logged_to(&self, ev: LoggedEvent, frame: &Utf8Bytes, may_read: impl Fn(&UserId) -> bool) {
        for l in self.logged.iter().filter(|l| l.bits & ev as u8 != 0 && may_read(&l.uid)) {
            l.conn.try_send(frame.clone());
        }
    }

    /// A connection of `uid` opened: whether it is the user's first here,
    /// and whether the user was online nowhere before (the second differs
    /// only in cluster mode, where other nodes count).
    pub fn online(&self, uid: &UserId) -> Flip {
        let mut n = self.presence.entry(uid.clone()).or_insert(0);
        *n += 1;
        let here = *n == 1;
        Flip { here, everywhere: here && !self.remote.contains_key(uid) }
    }

    /// A connection of `uid` closed or logged out: whether it was the last
    /// here, and whether the user is now online nowhere.
    pub fn offline(&self, uid: &UserId) -> Flip {
        let mut last = false;
        if let Some(mut n) = self.presence.get_mut(uid) {
            *n = n.saturating_sub(1);
            last = *n == 0;
        }
        self.presence.remove_if(uid, |_, n| *n == 0);
        Flip { here: last, everywhere: last && !self.remote.contains_key(uid) }
    }

    /// Cluster mode: `uid` came online (`true`) or went offline on node
    /// `origin`; true if that changes whether the user is online anywhere.
    pub fn remote_presence(&self, uid: &UserId, origin: &str, online: bool) -> bool {
        let local = self.presence.contains_key(uid);
        let was = self.remote.contains_key(uid);
        if online {
            let mut nodes = self.remote.entry(uid.clone()).or_default();
            if !nodes.iter().any(|o| o == origin) {
                nodes.push(origin.to_owned());
            }
        } else if let Some(mut nodes) = self.remote.get_mut(uid) {
            nodes.retain(|o| o != origin);
        }
        self.remote.remove_if(uid, |_, nodes| nodes.is_empty());
        !local && was != self.remote.contains_key(uid)
    }

    /// Cluster mode: node `origin` is gone or sent its full list; the users
    /// it no longer has online, who are now online nowhere, are returned.
    pub fn remote_node_now(&self, origin: &str, online: &std::collections::HashSet<UserId>) -> Vec<UserId> {
        let mut went = Vec::new();
        for mut e in self.remote.iter_mut() {
            if !online.contains(e.key()) && e.value().iter().any(|o| o == origin) {
                e.value_mut().retain(|o| o != origin);
                if e.value().is_empty() && !self.presence.contains_key(e.key()) {
                    went.push(e.key().clone());
                }
            }
        }
        self.remote.retain(|_, nodes| !nodes.is_empty());
        went
    }

    /// Tells `user-status` listeners that `uid` is now online or offline:
    /// `[[uid, username, status, text]]` with Rocket.Chat's numbering (0
    /// offline, 1 online).
    pub fn announce_status(&self, uid: &UserId, username: &str, online: bool) {
        let frame = crate::wire::stream_changed(
            "stream-notify-logged",
            "user-status",
            &serde_json::json!([[uid, username, u8::from(online), ""]]),
        );
        self.send_logged(LoggedEvent::UserStatus, &frame);
    }

    /// The users online on this node (for a cluster presence snapshot).
    pub fn online_here(&self) -> Vec<UserId> {
        self.presence.iter().map(|e| e.key().clone()).collect()
    }
}

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

    /// A connection of `uid` opened; true if it is the user's first.
    pub fn online(&self, uid: &UserId) -> bool {
        let mut n = self.presence.entry(uid.clone()).or_insert(0);
        *n += 1;
        *n == 1
    }

    /// A connection of `uid` closed or logged out; true if it was the last.
    pub fn offline(&self, uid: &UserId) -> bool {
        let mut last = false;
        if let Some(mut n) = self.presence.get_mut(uid) {
            *n = n.saturating_sub(1);
            last = *n == 0;
        }
        self.presence.remove_if(uid, |_, n| *n == 0);
        last
    }
}

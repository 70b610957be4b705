//! The signed-in user's own `users` document. A Meteor server publishes it
//! to every connection of that user; `Meteor.user()` and the `account.user`
//! of `@rocket.chat/ddp-client` are filled from it.
//!
//! One entry per signed-in user holds the user whose fields were last sent
//! and the connections that hold the document, under one map-entry lock, so
//! a connection never sees `changed` before its `added` and every connection
//! of the user converges on the same fields.
//!
//! The entry keeps the signed-in [`User`] itself (shared with the session
//! that signed in) and builds the JSON fields only to send a frame: a JSON
//! map per user cost about 660 bytes per signed-in connection
//! (BENCHMARKS.md, Memory).

use crate::auth::User;
use crate::conn::ConnHandle;
use crate::ids::{ConnId, UserId};
use crate::wire;
use dashmap::DashMap;
use serde_json::{Map, Value};
use std::sync::Arc;

pub(crate) const COLLECTION: &str = "users";

struct Doc {
    /// The user whose fields the connections were last sent.
    shown: Arc<User>,
    conns: Vec<ConnHandle>,
}

#[derive(Default)]
pub struct OwnRecords {
    docs: DashMap<UserId, Doc>,
}

impl std::fmt::Debug for OwnRecords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OwnRecords { .. }")
    }
}

/// The fields Rocket.Chat gives a user about themself, of those roomd
/// knows. A connection holds the record only while signed in, so the user
/// it shows is online.
pub(crate) fn fields_of(u: &User) -> Map<String, Value> {
    let mut f = Map::new();
    f.insert("username".into(), Value::from(u.username.as_str()));
    if let Some(name) = &u.name {
        f.insert("name".into(), Value::from(name.as_str()));
    }
    let roles: Vec<Value> = u.roles.iter().map(|r| Value::from(r.as_str())).collect();
    f.insert("roles".into(), Value::Array(roles));
    f.insert("status".into(), Value::from("online"));
    f
}

/// Whether `a` and `b` give the same [`fields_of`].
fn same_fields(a: &User, b: &User) -> bool {
    a.username == b.username && a.name == b.name && a.roles == b.roles
}

/// What turns `old` into `new`: the keys to set and the keys to clear.
fn diff(old: &Map<String, Value>, new: &Map<String, Value>) -> (Map<String, Value>, Vec<String>) {
    let set =
        new.iter().filter(|(k, v)| old.get(*k) != Some(*v)).map(|(k, v)| (k.clone(), v.clone())).collect();
    let cleared = old.keys().filter(|k| !new.contains_key(*k)).cloned().collect();
    (set, cleared)
}

impl OwnRecords {
    /// `conn` is now signed in as `user`: it gets `added` unless it already
    /// holds the record, and if the user's fields differ from those last
    /// sent, every connection holding the record gets `changed`.
    pub fn show(&self, conn: &ConnHandle, user: &Arc<User>) {
        let id = user.id.as_str();
        let mut doc = self
            .docs
            .entry(user.id.clone())
            // Most users hold the record on one connection.
            .or_insert_with(|| Doc { shown: user.clone(), conns: Vec::with_capacity(1) });
        if !same_fields(&doc.shown, user) {
            let (set, cleared) = diff(&fields_of(&doc.shown), &fields_of(user));
            let frame = wire::doc_changed(COLLECTION, id, &set, &cleared);
            for c in &doc.conns {
                c.try_send(frame.clone());
            }
        }
        // The newest sign-in's user, so the entry shares the session's.
        doc.shown = user.clone();
        if !doc.conns.iter().any(|c| c.id == conn.id) {
            // Queued under the entry lock: no `changed` can overtake it.
            conn.try_send(wire::doc_added(COLLECTION, id, &fields_of(user)));
            doc.conns.push(conn.clone());
        }
    }

    /// `conn` signed out (or in as someone else): it gets `removed`.
    pub fn hide(&self, uid: &UserId, conn: &ConnHandle) {
        if self.forget(uid, conn.id) {
            conn.try_send(wire::doc_removed(COLLECTION, uid.as_str()));
        }
    }

    /// `conn` closed: forgets it without a frame. True if it held the record.
    pub fn forget(&self, uid: &UserId, conn: ConnId) -> bool {
        let held = match self.docs.get_mut(uid) {
            Some(mut doc) => {
                let before = doc.conns.len();
                doc.conns.retain(|c| c.id != conn);
                doc.conns.len() != before
            }
            None => false,
        };
        // The guard is dropped above: removing under it would deadlock.
        self.docs.remove_if(uid, |_, d| d.conns.is_empty());
        held
    }

    /// How many users have a record out (for tests and leak checks).
    pub fn len(&self) -> usize {
        self.docs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }
}

//! The user directory: every user roomd has seen (from verified tokens), so
//! rooms can name members by username, and each user's room memberships.

use crate::auth::User;
use crate::ids::{RoomId, UserId};
use crate::room::UserRef;
use dashmap::DashMap;
use std::collections::HashSet;

#[derive(Default, Debug)]
pub struct Directory {
    by_id: DashMap<UserId, UserRef>,
    by_username: DashMap<String, UserId>,
    /// Rooms each user is a member of; written by room actors.
    memberships: DashMap<UserId, HashSet<RoomId>>,
}

impl Directory {
    /// Records (or refreshes) a user seen at login. Returns true if the
    /// directory changed (new user, or new username or name), i.e. if the
    /// store needs to hear of it.
    pub fn remember(&self, u: &User) -> bool {
        self.remember_ref(UserRef { id: u.id.clone(), username: u.username.clone(), name: u.name.clone() })
    }

    pub fn remember_ref(&self, mut r: UserRef) -> bool {
        // Messages always name their author (`u.name`); without a display
        // name the username stands in, as for users acting themselves.
        if r.name.is_none() {
            r.name = Some(r.username.clone());
        }
        let (id, username) = (r.id.clone(), r.username.clone());
        let old = self.by_id.insert(id.clone(), r.clone());
        if let Some(old) = &old
            && old.username != username
        {
            self.by_username.remove_if(&old.username, |_, v| v == &id);
        }
        self.by_username.insert(username, id);
        old.as_ref() != Some(&r)
    }

    pub fn by_username(&self, username: &str) -> Option<UserRef> {
        let id = self.by_username.get(username)?.clone();
        self.by_id.get(&id).map(|r| r.clone())
    }

    pub fn by_id(&self, id: &UserId) -> Option<UserRef> {
        self.by_id.get(id).map(|r| r.clone())
    }

    pub fn add_membership(&self, uid: &UserId, rid: &RoomId) {
        if uid.is_guest() {
            return;
        }
        self.memberships.entry(uid.clone()).or_default().insert(rid.clone());
    }

    pub fn remove_membership(&self, uid: &UserId, rid: &RoomId) {
        if let Some(mut set) = self.memberships.get_mut(uid) {
            set.remove(rid);
        }
    }

    pub fn rooms_of(&self, uid: &UserId) -> Vec<RoomId> {
        self.memberships.get(uid).map(|s| s.iter().cloned().collect()).unwrap_or_default()
    }
}

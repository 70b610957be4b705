//! The user directory: every user roomd has seen (from verified tokens), so
//! rooms can name members by username; who owns each username; the tokens
//! ended by `logout`; and each user's room memberships.

use crate::auth::User;
use crate::durability::Fact;
use crate::ids::{RoomId, UserId};
use crate::room::UserRef;
use dashmap::DashMap;
use std::collections::HashSet;
use tokio::sync::Notify;

/// The form in which usernames are compared and owned: trimmed,
/// case-insensitive.
pub(crate) fn normalize(username: &str) -> String {
    username.trim().to_lowercase()
}

#[derive(Debug)]
struct Known {
    r: UserRef,
    /// Bumped on every change of `r`.
    version: u64,
    /// The highest version known to be durable. Logins of the same user on
    /// other connections wait for it (see [`Directory::wait_committed`]), so
    /// none is acknowledged before the record (written by whichever login
    /// saw it first) is committed.
    committed: u64,
}

/// A token claims a username that another user owns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("username {username:?} belongs to another user")]
pub struct UsernameTaken {
    pub username: String,
}

/// What a login must do before it is acknowledged.
#[derive(Debug)]
pub enum Admission {
    /// Record `ops`, then report [`Directory::committed`] with `version`.
    Store { ops: Vec<Fact>, version: u64 },
    /// Someone else is storing (or stored) this record: wait for `version`
    /// with [`Directory::wait_committed`].
    Wait { version: u64 },
}

#[derive(Default, Debug)]
pub struct Directory {
    by_id: DashMap<UserId, Known>,
    /// Normalised current username → user.
    by_username: DashMap<String, UserId>,
    /// Normalised username → the user that first used it. Names are never
    /// reassigned while roomd runs (`roomd free-username` works offline).
    owners: DashMap<String, UserId>,
    /// Keys of tokens ended by `logout` → their expiry in seconds.
    revoked: DashMap<String, u64>,
    /// Rooms each user is a member of; written by room actors.
    memberships: DashMap<UserId, HashSet<RoomId>>,
    /// Woken by every commit of a user record. One for the directory rather
    /// than a channel per user (a `watch` cost ~340 bytes per signed-in
    /// user, BENCHMARKS.md, Memory): only a login racing another login of
    /// the same user waits on it, and only until that commit.
    commits: Notify,
}

impl Directory {
    /// Admits a user seen at login: refuses a username owned by someone
    /// else, records the user, and says what must be durable before the
    /// login may be acknowledged. `durable` is false in memory-only mode.
    pub fn admit(&self, u: &User, durable: bool) -> Result<Admission, UsernameTaken> {
        let name = normalize(&u.username);
        // Owner first, in its own short lock: a name is granted once.
        let owner = self.owners.entry(name.clone()).or_insert_with(|| u.id.clone()).clone();
        if owner != u.id {
            return Err(UsernameTaken { username: u.username.clone() });
        }
        let mut r = UserRef { id: u.id.clone(), username: u.username.clone(), name: u.name.clone() };
        // Messages always name their author (`u.name`); without a display
        // name the username stands in, as for users acting themselves.
        if r.name.is_none() {
            r.name = Some(r.username.clone());
        }
        let mut old_name = None;
        let admission = {
            let mut e = self.by_id.entry(u.id.clone()).or_insert_with(|| Known {
                r: UserRef { id: u.id.clone(), username: String::new(), name: None },
                version: 0,
                committed: 0,
            });
            if e.r == r && e.version > 0 {
                Admission::Wait { version: e.version }
            } else {
                if e.r.username != r.username && !e.r.username.is_empty() {
                    old_name = Some(normalize(&e.r.username));
                }
                e.r = r.clone();
                e.version += 1;
                if !durable {
                    e.committed = e.version;
                }
                // The claim row goes with every write of the record (it is
                // idempotent), so whichever login stores first makes both
                // durable together.
                let ops = vec![
                    Fact::user(&UserRef {
                        id: u.id.clone(),
                        username: u.username.clone(),
                        name: u.name.clone(),
                    }),
                    Fact::UsernameOwner { name: name.clone(), uid: u.id.clone() },
                ];
                Admission::Store { ops, version: e.version }
            }
        };
        if let Some(old) = old_name
            && old != name
        {
            self.by_username.remove_if(&old, |_, v| v == &u.id);
        }
        self.by_username.insert(name, u.id.clone());
        Ok(admission)
    }

    /// Reports that `version` of `uid`'s record is durable.
    pub fn committed(&self, uid: &UserId, version: u64) {
        let newer = match self.by_id.get_mut(uid) {
            Some(mut e) if e.committed < version => {
                e.committed = version;
                true
            }
            _ => false,
        };
        if newer {
            self.commits.notify_waiters();
        }
    }

    /// Waits until `version` of `uid`'s record is durable.
    pub async fn wait_committed(&self, uid: &UserId, version: u64) {
        loop {
            // Registered before the check, so a commit in between is not
            // missed.
            let commit = self.commits.notified();
            tokio::pin!(commit);
            commit.as_mut().enable();
            if self.by_id.get(uid).is_some_and(|e| e.committed >= version) {
                return;
            }
            commit.await;
        }
    }

    /// Restores a stored owner of a username at start.
    pub fn restore_owner(&self, name: String, uid: UserId) {
        self.owners.insert(name, uid);
    }

    /// Restores a stored user at start (already durable).
    pub fn restore_user(&self, mut r: UserRef) {
        if r.name.is_none() {
            r.name = Some(r.username.clone());
        }
        let name = normalize(&r.username);
        // A legacy name several users shared resolves to its owner.
        if self.owners.get(&name).is_none_or(|o| *o == r.id) {
            self.by_username.insert(name, r.id.clone());
        }
        self.by_id.insert(r.id.clone(), Known { r, version: 1, committed: 1 });
    }

    /// A user another cluster node signed in (its fact came through the
    /// log). Keeps this node's commit bookkeeping for the user if it has
    /// one; only the record changes.
    pub fn learn_user(&self, mut r: UserRef) {
        if r.name.is_none() {
            r.name = Some(r.username.clone());
        }
        let name = normalize(&r.username);
        if self.owners.get(&name).is_none_or(|o| *o == r.id) {
            self.by_username.insert(name, r.id.clone());
        }
        match self.by_id.get_mut(&r.id) {
            Some(mut known) => known.r = r,
            None => {
                self.by_id.insert(r.id.clone(), Known { r, version: 1, committed: 1 });
            }
        }
    }

    /// A username claim that won in the cluster's log (only the first
    /// claim of a name can land there, so it overrides a local guess).
    pub fn learn_owner(&self, name: String, uid: UserId) {
        self.owners.insert(name, uid);
    }

    /// Restores a token ended by `logout`.
    pub fn restore_revoked(&self, key: String, exp: u64) {
        self.revoked.insert(key, exp);
    }

    pub fn is_revoked(&self, key: &str) -> bool {
        self.revoked.contains_key(key)
    }

    /// Records a token ended by `logout`; returns the fact that makes it
    /// durable.
    pub fn revoke(&self, key: &str, exp: u64) -> Fact {
        // Expired tokens are refused anyway: keep the set to live tokens.
        if self.revoked.len() >= 1024 && self.revoked.len().is_power_of_two() {
            let now = crate::auth::now_secs();
            self.revoked.retain(|_, e| *e >= now);
        }
        self.revoked.insert(key.to_owned(), exp);
        Fact::RevokedToken { key: key.to_owned(), exp }
    }

    pub fn by_username(&self, username: &str) -> Option<UserRef> {
        let id = self.by_username.get(&normalize(username))?.clone();
        self.by_id(&id)
    }

    pub fn by_id(&self, id: &UserId) -> Option<UserRef> {
        self.by_id.get(id).filter(|k| k.version > 0).map(|k| k.r.clone())
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
        // An empty set is no information: keep an entry only while the user
        // is in some room. (The guard is dropped above: removing under it
        // would deadlock.)
        self.memberships.remove_if(uid, |_, set| set.is_empty());
    }

    pub fn rooms_of(&self, uid: &UserId) -> Vec<RoomId> {
        self.memberships.get(uid).map(|s| s.iter().cloned().collect()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;
    use std::time::Duration;

    fn user(id: &str, name: &str) -> User {
        User {
            id: UserId::from(id),
            username: name.into(),
            name: None,
            roles: Vec::new(),
            expires_ms: 0,
            token_key: String::new(),
        }
    }

    /// Issue 8.2 without a channel per user: a second login of a user whose
    /// record another login is storing waits for exactly that commit.
    #[tokio::test]
    async fn a_racing_login_waits_for_the_first_ones_commit() {
        let d = Directory::default();
        let u = user("u1", "racer");
        let Ok(Admission::Store { version, .. }) = d.admit(&u, true) else { panic!("first login stores") };
        let Ok(Admission::Wait { version: waited }) = d.admit(&u, true) else { panic!("second login waits") };
        assert_eq!(waited, version);
        let wait = d.wait_committed(&u.id, waited);
        tokio::pin!(wait);
        assert!(wait.as_mut().now_or_never().is_none(), "answered before the commit");
        // Another user's commit does not end the wait.
        let other = user("u2", "other");
        let Ok(Admission::Store { version: v2, .. }) = d.admit(&other, true) else { panic!() };
        d.committed(&other.id, v2);
        assert!(wait.as_mut().now_or_never().is_none(), "woken by someone else's commit");
        d.committed(&u.id, version);
        tokio::time::timeout(Duration::from_secs(5), wait).await.expect("the commit wakes the waiting login");
        // Once committed, a later racer does not wait at all.
        let Ok(Admission::Wait { version: again }) = d.admit(&u, true) else { panic!() };
        assert!(d.wait_committed(&u.id, again).now_or_never().is_some());
    }
}

//! Finds rooms by id, name and shareable code.
//!
//! Three dashmaps, each sharded, so lookups never take a global lock. Only
//! the creation path and a room's own actor (for renames) write the name
//! index; `entry()` makes "is the name free? take it" one atomic step.

use crate::ids::{RoomCode, RoomId};
use crate::room::{RoomError, RoomHandle};
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;

#[derive(Default, Debug)]
pub struct Registry {
    by_id: DashMap<RoomId, RoomHandle>,
    by_name: DashMap<String, RoomId>,
    by_code: DashMap<RoomCode, RoomId>,
    /// Direct-message rooms by their member set (see [`dm_key`]).
    by_members: DashMap<String, RoomId>,
}

/// A key for a set of user ids that no other set shares: sorted, deduped,
/// each id length-prefixed (ids may contain any character, so plain
/// concatenation would let `ab`+`c` collide with `a`+`bc`).
pub fn dm_key(ids: &[&str]) -> String {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    ids.iter().map(|id| format!("{}:{id}", id.len())).collect()
}

impl Registry {
    pub fn get(&self, id: &RoomId) -> Option<RoomHandle> {
        self.by_id.get(id).map(|h| h.clone())
    }

    pub fn get_by_name(&self, name: &str) -> Option<RoomHandle> {
        let id = self.by_name.get(name)?.clone();
        self.get(&id)
    }

    pub fn get_by_code(&self, code: &str) -> Option<RoomHandle> {
        let id = self.by_code.get(&RoomCode(code.to_owned()))?.clone();
        self.get(&id)
    }

    pub fn id_by_name(&self, name: &str) -> Option<RoomId> {
        self.by_name.get(name).map(|r| r.clone())
    }

    /// Takes `name` for `id`, or fails if another room holds it.
    pub fn reserve_name(&self, name: &str, id: &RoomId) -> Result<(), RoomError> {
        match self.by_name.entry(name.to_owned()) {
            Entry::Occupied(e) if e.get() != id => Err(RoomError::DuplicateName(name.to_owned())),
            Entry::Occupied(_) => Ok(()),
            Entry::Vacant(v) => {
                v.insert(id.clone());
                Ok(())
            }
        }
    }

    /// Frees `name` if `id` still holds it.
    pub fn release_name(&self, name: &str, id: &RoomId) {
        self.by_name.remove_if(name, |_, v| v == id);
    }

    /// A fresh, unused code, reserved for `id`.
    pub fn reserve_code(&self, id: &RoomId) -> RoomCode {
        loop {
            let code = RoomCode::generate();
            if let Entry::Vacant(v) = self.by_code.entry(code.clone()) {
                v.insert(id.clone());
                return code;
            }
        }
    }

    /// Records a restored room's existing code.
    pub fn claim_code(&self, code: &RoomCode, id: &RoomId) {
        self.by_code.insert(code.clone(), id.clone());
    }

    pub fn release_code(&self, code: &RoomCode) {
        self.by_code.remove(code);
    }

    pub fn insert(&self, handle: RoomHandle) {
        self.by_id.insert(handle.id.clone(), handle);
    }

    /// The direct-message room of the member set `key`, if any.
    pub fn direct(&self, key: &str) -> Option<RoomHandle> {
        let id = self.by_members.get(key)?.clone();
        self.get(&id)
    }

    pub fn release_direct(&self, key: &str, id: &RoomId) {
        self.by_members.remove_if(key, |_, v| v == id);
    }

    /// Registers the direct-message room `id` for `key` unless another room
    /// got there first, whose id is returned instead.
    pub fn claim_direct(&self, key: String, id: &RoomId) -> Result<(), RoomId> {
        match self.by_members.entry(key) {
            Entry::Occupied(e) => Err(e.get().clone()),
            Entry::Vacant(v) => {
                v.insert(id.clone());
                Ok(())
            }
        }
    }

    pub fn remove(&self, id: &RoomId) {
        self.by_id.remove(id);
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

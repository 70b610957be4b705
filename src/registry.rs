//! Finds rooms by id, name and shareable code.
//!
//! Three dashmaps, each sharded, so lookups never take a global lock. Only
//! the creation path and a room's own actor (for renames) write the name
//! index; `entry()` makes "is the name free? take it" one atomic step.

use crate::ids::{RoomCode, RoomId};
use crate::room::{RoomError, RoomHandle};
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use tokio::sync::watch;

#[derive(Default, Debug)]
pub struct Registry {
    by_id: DashMap<RoomId, RoomHandle>,
    by_name: DashMap<String, RoomId>,
    by_code: DashMap<RoomCode, RoomId>,
    /// Direct-message rooms by their member set (see [`dm_key`]), and the
    /// sets whose room is being created right now.
    by_members: DashMap<String, DirectSlot>,
}

/// A member set's entry in `by_members`.
#[derive(Debug)]
enum DirectSlot {
    /// The set's room.
    Room(RoomId),
    /// A caller is creating the set's room. Its [`DirectReservation`] holds
    /// the sender; dropping it (room registered, or creation failed) wakes
    /// everyone waiting on this receiver.
    Creating(watch::Receiver<()>),
}

/// What [`Registry::direct_or_reserve`] found for a member set.
#[derive(Debug)]
pub enum DirectLookup<'a> {
    /// The set's room.
    Room(RoomId),
    /// Nobody has the room: the caller creates it under this reservation.
    Reserved(DirectReservation<'a>),
    /// Another caller is creating it: `changed()` on this resolves (with an
    /// error: nothing is ever sent) when that ends either way; then look
    /// again.
    Creating(watch::Receiver<()>),
}

/// The right to create the direct-message room of one member set. Dropped
/// without [`fulfil`](Self::fulfil) (the creation failed, or its caller went
/// away), it frees the set for the next caller.
#[derive(Debug)]
pub struct DirectReservation<'a> {
    registry: &'a Registry,
    key: String,
    /// Dropped when the reservation ends, which wakes the waiters.
    done: Option<watch::Sender<()>>,
}

impl DirectReservation<'_> {
    /// The set's room is `id` (already registered by id): waiters find it.
    pub fn fulfil(mut self, id: &RoomId) {
        self.registry.by_members.insert(self.key.clone(), DirectSlot::Room(id.clone()));
        self.done = None;
    }
}

impl Drop for DirectReservation<'_> {
    fn drop(&mut self) {
        if self.done.is_some() {
            // Freed before `done` drops (after this body), so woken waiters
            // find the set free.
            self.registry.by_members.remove_if(&self.key, |_, slot| matches!(slot, DirectSlot::Creating(_)));
        }
    }
}

/// A key for a set of user ids that no other set shares: sorted, deduped,
/// each id length-prefixed (ids may contain any character, so plain
/// concatenation would let `ab`+`c` collide with `a`+`bc`).
pub(crate) fn dm_key(ids: &[&str]) -> String {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    ids.iter().map(|id| format!("{}:{id}", id.len())).collect()
}

impl Registry {
    /// The room with id `id` (a `&RoomId` or a `&str`; no allocation).
    pub fn get<K>(&self, id: &K) -> Option<RoomHandle>
    where
        K: std::hash::Hash + Eq + ?Sized,
        RoomId: std::borrow::Borrow<K>,
    {
        self.by_id.get(id).map(|h| h.clone())
    }

    pub fn get_by_name(&self, name: &str) -> Option<RoomHandle> {
        let id = self.by_name.get(name)?.clone();
        self.get(&id)
    }

    pub fn get_by_code(&self, code: &str) -> Option<RoomHandle> {
        let id = self.by_code.get(code)?.clone();
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

    /// Gives `name` to `id` whatever held it here: in cluster mode the log
    /// already decided (only one room's claim of a name can land there).
    pub fn force_name(&self, name: &str, id: &RoomId) {
        self.by_name.insert(name.to_owned(), id.clone());
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

    /// The direct-message room of the member set `key`, or the right to
    /// create it, or a way to wait for the caller who is creating it.
    pub fn direct_or_reserve(&self, key: &str) -> DirectLookup<'_> {
        if let Some(slot) = self.by_members.get(key) {
            return match &*slot {
                DirectSlot::Room(id) => DirectLookup::Room(id.clone()),
                DirectSlot::Creating(rx) => DirectLookup::Creating(rx.clone()),
            };
        }
        match self.by_members.entry(key.to_owned()) {
            Entry::Occupied(e) => match e.get() {
                DirectSlot::Room(id) => DirectLookup::Room(id.clone()),
                DirectSlot::Creating(rx) => DirectLookup::Creating(rx.clone()),
            },
            Entry::Vacant(v) => {
                let (tx, rx) = watch::channel(());
                v.insert(DirectSlot::Creating(rx));
                DirectLookup::Reserved(DirectReservation {
                    registry: self,
                    key: key.to_owned(),
                    done: Some(tx),
                })
            }
        }
    }

    /// Records a restored direct-message room for member set `key` (the
    /// first one wins, as at creation).
    pub fn restore_direct(&self, key: String, id: &RoomId) {
        self.by_members.entry(key).or_insert_with(|| DirectSlot::Room(id.clone()));
    }

    /// Every room's handle (a snapshot; for sweeps that visit all rooms).
    pub fn live_handles(&self) -> Vec<RoomHandle> {
        self.by_id.iter().map(|h| h.value().clone()).collect()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    #[test]
    fn a_direct_reservation_wakes_its_waiters_when_it_ends() {
        let r = Registry::default();
        let DirectLookup::Reserved(first) = r.direct_or_reserve("k") else { panic!("not reserved") };
        let DirectLookup::Creating(mut rx) = r.direct_or_reserve("k") else { panic!("not creating") };
        let mut waiting = Box::pin(async move { rx.changed().await });
        assert!((&mut waiting).now_or_never().is_none(), "woken before the creation ended");
        // The creation fails: the waiter wakes at once and the set is free.
        drop(first);
        assert!(waiting.now_or_never().is_some(), "waiter not woken by the failed creation");
        let DirectLookup::Reserved(second) = r.direct_or_reserve("k") else { panic!("set not freed") };
        let DirectLookup::Creating(mut rx) = r.direct_or_reserve("k") else { panic!("not creating") };
        let id = RoomId::from("dm1");
        second.fulfil(&id);
        assert!(rx.changed().now_or_never().is_some(), "waiter not woken by the created room");
        assert!(matches!(r.direct_or_reserve("k"), DirectLookup::Room(got) if got == id));
        // Restoring never replaces the set's room.
        r.restore_direct("k".into(), &RoomId::from("dm2"));
        assert!(matches!(r.direct_or_reserve("k"), DirectLookup::Room(got) if got == id));
    }
}

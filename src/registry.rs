//! Finds rooms by id, name and shareable code.
//!
//! Sharded dashmaps, so lookups never take a global lock. Only the creation
//! path and a room's own actor (for renames) write the name index;
//! `entry()` makes "is the name free? take it" one atomic step.
//!
//! **Room names are unique regardless of letter case** (`General` and
//! `general` are one name; each room keeps the spelling it was given): the
//! name index is keyed by [`name_key`]. A name being created is held by a
//! [`NameReservation`] until the room is registered, and lookups by name in
//! that window wait for it instead of answering "no such room".

use crate::ids::{RoomCode, RoomId};
use crate::room::{RoomCommand, RoomError, RoomHandle};
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use tokio::sync::watch;

#[derive(Default, Debug)]
pub struct Registry {
    by_id: DashMap<RoomId, RoomHandle>,
    /// Rooms (and names being created) by [`name_key`].
    by_name: DashMap<String, NameSlot>,
    /// Rooms restored from a data directory written before names were
    /// unique regardless of case, whose name's key an older room already
    /// holds: each stays reachable by its exact name (and its id), and no
    /// new room can take either spelling.
    by_exact_name: DashMap<String, RoomId>,
    by_code: DashMap<RoomCode, RoomId>,
    /// Direct-message rooms by their member set (see [`dm_key`]), and the
    /// sets whose room is being created right now.
    by_members: DashMap<String, DirectSlot>,
}

/// A name key's entry in `by_name`.
#[derive(Debug)]
enum NameSlot {
    /// The room holding the name, and the name as that room spells it (a
    /// rename frees the old spelling only if it is still the room's).
    Room { id: RoomId, name: String },
    /// A caller is creating a room with this name. Its [`NameReservation`]
    /// holds the sender; dropping it (room registered, or creation failed)
    /// wakes everyone waiting on this receiver.
    Creating(watch::Receiver<()>),
}

/// What [`Registry::name_or_reserve`] found for a name.
#[derive(Debug)]
pub enum NameLookup<'a> {
    /// The room with this name (registered by id).
    Room(RoomId),
    /// No room has the name: the caller creates it under this reservation.
    Reserved(NameReservation<'a>),
    /// Another caller is creating a room with this name: `changed()` on
    /// this resolves when that creation ends either way; then look again.
    Creating(watch::Receiver<()>),
}

/// What [`Registry::lookup_name`] found for a name.
#[derive(Debug)]
pub enum NameFound {
    /// The room with this name (registered by id).
    Room(RoomId),
    /// A room with this name is being created (see [`NameLookup::Creating`]).
    Creating(watch::Receiver<()>),
    /// No room has the name, and nobody is creating one.
    Free,
}

/// The right to create the room named [`name`](Self::name). Dropped
/// without [`fulfil`](Self::fulfil) (the creation failed, or its caller
/// went away), it frees the name and wakes the waiters.
#[derive(Debug)]
pub struct NameReservation<'a> {
    registry: &'a Registry,
    key: String,
    name: String,
    /// Dropped when the reservation ends, which wakes the waiters.
    done: Option<watch::Sender<()>>,
}

impl NameReservation<'_> {
    /// The name as the creator spells it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The room `id` (already registered by id) has the name: waiters find it.
    pub fn fulfil(mut self, id: &RoomId) {
        let name = std::mem::take(&mut self.name);
        self.registry.by_name.insert(self.key.clone(), NameSlot::Room { id: id.clone(), name });
        self.done = None;
    }
}

impl Drop for NameReservation<'_> {
    fn drop(&mut self) {
        if let Some(tx) = &self.done {
            // Freed before `done` drops (after this body), so woken waiters
            // find the name free. Only this reservation's own slot: the log
            // may already have given the name to another node's room.
            self.registry.by_name.remove_if(
                &self.key,
                |_, slot| matches!(slot, NameSlot::Creating(rx) if rx.same_channel(&tx.subscribe())),
            );
        }
    }
}

/// The key a room name is unique under: the name in lower case, so names
/// differing only in letter case are one name (what people expect of
/// channel names, and what Slack's lower-case names need to meet rooms made
/// through Rocket.Chat).
pub(crate) fn name_key(name: &str) -> String {
    name.to_lowercase()
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

    /// The id of the room with join code `code`, held here or not.
    pub fn id_by_code(&self, code: &str) -> Option<RoomId> {
        self.by_code.get(code).map(|id| id.clone())
    }

    /// What holds `name` now, without waiting or reserving: the room, a
    /// creation in progress, or nothing. A restored room's exact spelling
    /// comes first (see `by_exact_name`).
    pub fn lookup_name(&self, name: &str) -> NameFound {
        if let Some(id) = self.by_exact_name.get(name) {
            return NameFound::Room(id.clone());
        }
        match self.by_name.get(&name_key(name)).as_deref() {
            Some(NameSlot::Room { id, .. }) => NameFound::Room(id.clone()),
            Some(NameSlot::Creating(rx)) => NameFound::Creating(rx.clone()),
            None => NameFound::Free,
        }
    }

    /// The room named `name`, or the right to create it, or a way to wait
    /// for the caller who is creating it: one atomic step, so of any number
    /// of concurrent callers exactly one creates.
    pub fn name_or_reserve(&self, name: &str) -> NameLookup<'_> {
        if let Some(id) = self.by_exact_name.get(name) {
            return NameLookup::Room(id.clone());
        }
        let key = name_key(name);
        match self.by_name.entry(key.clone()) {
            Entry::Occupied(e) => match e.get() {
                NameSlot::Room { id, .. } => NameLookup::Room(id.clone()),
                NameSlot::Creating(rx) => NameLookup::Creating(rx.clone()),
            },
            Entry::Vacant(v) => {
                let (tx, rx) = watch::channel(());
                v.insert(NameSlot::Creating(rx));
                NameLookup::Reserved(NameReservation {
                    registry: self,
                    key,
                    name: name.to_owned(),
                    done: Some(tx),
                })
            }
        }
    }

    /// A rename: takes `name` for room `id` (already registered), or fails
    /// if another room holds it or is being created with it. The room's own
    /// name in another letter case is its to respell.
    pub fn reserve_name(&self, name: &str, id: &RoomId) -> Result<(), RoomError> {
        let taken = || Err(RoomError::DuplicateName(name.to_owned()));
        if self.by_exact_name.get(name).is_some_and(|held| *held != *id) {
            return taken();
        }
        match self.by_name.entry(name_key(name)) {
            Entry::Occupied(mut e) => match e.get_mut() {
                NameSlot::Room { id: held, name: spelled } if held == id => {
                    name.clone_into(spelled);
                    Ok(())
                }
                _ => taken(),
            },
            Entry::Vacant(v) => {
                v.insert(NameSlot::Room { id: id.clone(), name: name.to_owned() });
                Ok(())
            }
        }
    }

    /// A restored room's name: its key if free, else (a data directory from
    /// before names were unique regardless of case) its exact spelling.
    /// False when even that is taken: the room is reachable by id only.
    pub fn restore_name(&self, name: &str, id: &RoomId) -> bool {
        match self.by_name.entry(name_key(name)) {
            Entry::Vacant(v) => {
                v.insert(NameSlot::Room { id: id.clone(), name: name.to_owned() });
                true
            }
            Entry::Occupied(e) => match e.get() {
                NameSlot::Room { id: held, .. } if held == id => true,
                NameSlot::Room { name: spelled, .. } if spelled != name => {
                    drop(e);
                    match self.by_exact_name.entry(name.to_owned()) {
                        Entry::Vacant(v) => {
                            v.insert(id.clone());
                            true
                        }
                        Entry::Occupied(held) => held.get() == id,
                    }
                }
                _ => false,
            },
        }
    }

    /// Frees `name` if room `id` still holds it in that spelling.
    pub fn release_name(&self, name: &str, id: &RoomId) {
        self.by_name
            .remove_if(&name_key(name), |_, slot| matches!(slot, NameSlot::Room { id: held, name: spelled } if held == id && spelled == name));
        self.by_exact_name.remove_if(name, |_, held| held == id);
    }

    /// Gives `name` to `id` whatever was being created with it here: in
    /// cluster mode the log already decided (only one room's claim of a
    /// name can land there). A name another room holds in another spelling
    /// (claims older than case-insensitive names) is kept as an exact name.
    pub fn force_name(&self, name: &str, id: &RoomId) {
        let slot = NameSlot::Room { id: id.clone(), name: name.to_owned() };
        match self.by_name.entry(name_key(name)) {
            Entry::Vacant(v) => {
                v.insert(slot);
            }
            Entry::Occupied(mut e) => match e.get() {
                NameSlot::Room { id: held, name: spelled } if held != id && spelled != name => {
                    drop(e);
                    self.by_exact_name.insert(name.to_owned(), id.clone());
                }
                _ => {
                    e.insert(slot);
                }
            },
        }
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
    /// The ids of the rooms held here.
    pub fn ids(&self) -> Vec<RoomId> {
        self.by_id.iter().map(|h| h.key().clone()).collect()
    }

    /// Hands room `id` a command without cloning its handle (a clone would
    /// count as a holder, see [`remove_unshared`](Self::remove_unshared)),
    /// if its mailbox has room at once.
    pub fn try_tell(&self, id: &RoomId, cmd: RoomCommand) {
        if let Some(room) = self.by_id.get(id) {
            room.try_tell(cmd);
        }
    }

    /// Lets room `id` go if nothing but the registry holds its handle (see
    /// `RoomHandle::unshared`): checked and removed under the map's lock,
    /// so no caller can take the handle in between. Its names and code stay
    /// indexed; its actor ends once its mailbox is empty.
    pub fn remove_unshared(&self, id: &RoomId) -> bool {
        self.by_id.remove_if(id, |_, h| h.unshared()).is_some()
    }

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

//! Creating rooms: the steps that happen before a room has an actor
//! (reserving its name and code, spawning it, registering it).

use crate::ids::RoomId;
use crate::permissions::Principal;
use crate::room::{CreateOptions, RoomDeps, RoomError, RoomHandle, RoomState, RoomType, UserRef};
use crate::server::ServerState;
use crate::time::Millis;
use serde_json::Value;

impl ServerState {
    pub fn deps(&self) -> RoomDeps {
        RoomDeps {
            registry: self.registry.clone(),
            users: self.users.clone(),
            hub: self.hub.clone(),
        }
    }

    /// Creates a room: reserves a code and the name, spawns the actor,
    /// registers it. Returns the room document.
    pub fn create_room(
        &self,
        name: String,
        t: RoomType,
        creator: &Principal,
        others: Vec<UserRef>,
        opts: CreateOptions,
    ) -> Result<Value, RoomError> {
        let id = RoomId::generate();
        self.registry.reserve_name(&name, &id)?;
        let code = self.registry.reserve_code(&id);
        let member_ids: Vec<_> = std::iter::once(creator.id.clone())
            .chain(others.iter().map(|u| u.id.clone()))
            .collect();
        let state = RoomState::new(id.clone(), name, t, code, creator, others, opts, Millis::now());
        let doc = state.to_doc();
        for uid in &member_ids {
            self.users.add_membership(uid, &id);
        }
        let handle = RoomHandle::spawn(state, self.room_config.clone(), self.deps());
        self.registry.insert(handle);
        Ok(doc)
    }

    /// The direct-message room of `creator` and `others`, created on first
    /// use. Its id is derived from the sorted member ids, so the same set of
    /// people always lands in the same room, even when two of them create it
    /// at the same moment (`entry()` decides the race).
    pub fn direct_room(&self, creator: &Principal, others: Vec<UserRef>) -> (RoomHandle, bool) {
        let mut ids: Vec<&str> = std::iter::once(creator.id.as_str())
            .chain(others.iter().map(|u| u.id.as_str()))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let id = RoomId(ids.concat());
        self.registry.get_or_insert_with(&id, || {
            let code = self.registry.reserve_code(&id);
            let mut state = RoomState::new(
                id.clone(),
                id.to_string(),
                RoomType::Direct,
                code,
                creator,
                others.clone(),
                CreateOptions::default(),
                Millis::now(),
            );
            // Direct messages have no owners in Rocket.Chat.
            for m in state.members.values_mut() {
                m.roles = crate::room::RoomRoles::NONE;
            }
            for uid in state.members.keys() {
                self.users.add_membership(uid, &id);
            }
            RoomHandle::spawn(state, self.room_config.clone(), self.deps())
        })
    }
}

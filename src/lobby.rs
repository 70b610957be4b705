//! Creating rooms: the steps that happen before a room has an actor
//! (reserving its name and code, spawning it, registering it).

use crate::hub::UserEvent;
use crate::ids::RoomId;
use crate::permissions::Principal;
use crate::registry::dm_key;
use crate::room::{CreateOptions, RoomDeps, RoomError, RoomHandle, RoomState, RoomType, UserRef};
use crate::server::ServerState;
use crate::store::{Snapshot, StoreOp};
use crate::time::Millis;
use crate::wire;
use serde_json::Value;
use serde_json::json;

impl ServerState {
    pub fn deps(&self) -> RoomDeps {
        RoomDeps {
            registry: self.registry.clone(),
            users: self.users.clone(),
            hub: self.hub.clone(),
            store: self.store.clone(),
        }
    }

    /// Creates a room: reserves a code and the name, makes it durable,
    /// spawns the actor, registers it. Returns the room document.
    pub async fn create_room(
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
        let state =
            RoomState::new(id.clone(), name.clone(), t, code.clone(), creator, others, opts, Millis::now());
        if let Err(e) = self.persist_new_room(&state).await {
            self.registry.release_name(&name, &id);
            self.registry.release_code(&code);
            return Err(e);
        }
        let doc = state.to_doc();
        self.activate(state);
        Ok(doc)
    }

    /// The direct-message room of `creator` and `others`, created on first
    /// use and reused afterwards. When two members create it at the same
    /// moment, the member-set index keeps the first and the second caller
    /// gets that room.
    pub async fn direct_room(
        &self,
        creator: &Principal,
        others: Vec<UserRef>,
    ) -> Result<RoomHandle, RoomError> {
        let ids: Vec<&str> =
            std::iter::once(creator.id.as_str()).chain(others.iter().map(|u| u.id.as_str())).collect();
        let key = dm_key(&ids);
        if let Some(h) = self.registry.direct(&key) {
            return Ok(h);
        }
        let id = RoomId::generate();
        if let Err(winner) = self.registry.claim_direct(key.clone(), &id) {
            // Another member is creating this room right now; it is
            // registered once stored (or released if storing fails).
            for _ in 0..400 {
                if let Some(h) = self.registry.get(&winner) {
                    return Ok(h);
                }
                if self.registry.direct(&key).is_none()
                    && self.registry.claim_direct(key.clone(), &id).is_ok()
                {
                    return self.create_direct(key, id, creator, others).await;
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            return Err(RoomError::Unavailable);
        }
        self.create_direct(key, id, creator, others).await
    }

    /// Stores and starts a direct-message room whose member-set key `id`
    /// already holds.
    async fn create_direct(
        &self,
        key: String,
        id: RoomId,
        creator: &Principal,
        others: Vec<UserRef>,
    ) -> Result<RoomHandle, RoomError> {
        let code = self.registry.reserve_code(&id);
        let mut state = RoomState::new(
            id.clone(),
            id.to_string(),
            RoomType::Direct,
            code,
            creator,
            others,
            CreateOptions::default(),
            Millis::now(),
        );
        // Direct messages have no owners in Rocket.Chat.
        for m in state.members.values_mut() {
            m.roles = crate::room::RoomRoles::NONE;
        }
        if let Err(e) = self.persist_new_room(&state).await {
            self.registry.release_direct(&key, &id);
            self.registry.release_code(&state.code);
            return Err(e);
        }
        Ok(self.activate(state))
    }

    /// Writes a new room and its members; returns once durable.
    async fn persist_new_room(&self, state: &RoomState) -> Result<(), RoomError> {
        let Some(store) = &self.store else { return Ok(()) };
        let mut ops = vec![StoreOp::room(state)];
        for m in state.members.values() {
            ops.push(StoreOp::member(&state.id, m));
        }
        store.commit(ops).await.map_err(|e| {
            tracing::error!(room = %state.id, error = %e, "cannot store new room");
            RoomError::Storage
        })
    }

    /// Indexes a new room, starts its actor, and tells its members'
    /// `rooms-changed`/`subscriptions-changed` listeners.
    fn activate(&self, state: RoomState) -> RoomHandle {
        let doc = state.to_doc();
        let subs: Vec<_> =
            state.members.keys().filter_map(|u| Some((u.clone(), state.subscription_doc(u)?))).collect();
        let handle = self.start(state, Vec::new());
        for (uid, sub) in subs {
            let rooms = wire::stream_changed(
                "stream-notify-user",
                &format!("{uid}/rooms-changed"),
                &json!(["inserted", doc]),
            );
            self.hub.send_user(&uid, UserEvent::RoomsChanged, &rooms);
            let subs = wire::stream_changed(
                "stream-notify-user",
                &format!("{uid}/subscriptions-changed"),
                &json!(["inserted", sub]),
            );
            self.hub.send_user(&uid, UserEvent::SubscriptionsChanged, &subs);
        }
        handle
    }

    /// Indexes a room and starts its actor with `history`.
    fn start(&self, state: RoomState, history: Vec<crate::room::Message>) -> RoomHandle {
        for uid in state.members.keys() {
            self.users.add_membership(uid, &state.id);
        }
        let handle = RoomHandle::spawn_with_history(state, history, self.room_config.clone(), self.deps());
        self.registry.insert(handle.clone());
        handle
    }

    /// Rebuilds rooms and the user directory from the store at start.
    /// Guests are never stored, so restored rooms hold users only.
    pub fn restore(&self, snapshot: Snapshot) {
        let users = snapshot.users.len();
        // Owners before users: a legacy name shared by several users
        // resolves to its owner.
        for (name, uid) in snapshot.usernames {
            self.users.restore_owner(name, crate::ids::UserId(uid));
        }
        for u in snapshot.users {
            self.users.restore_user(u);
        }
        for (key, exp) in snapshot.revoked {
            self.users.restore_revoked(key, exp);
        }
        let rooms = snapshot.rooms.len();
        for (state, history) in snapshot.rooms {
            if state.t != RoomType::Direct
                && let Err(e) = self.registry.reserve_name(&state.name, &state.id)
            {
                tracing::error!(room = %state.id, error = %e, "restored room name clashes; room skipped");
                continue;
            }
            if state.t == RoomType::Direct {
                let ids: Vec<&str> = state.members.keys().map(|u| u.as_str()).collect();
                let _ = self.registry.claim_direct(dm_key(&ids), &state.id);
            }
            self.registry.claim_code(&state.code, &state.id);
            self.start(state, history);
        }
        tracing::info!(rooms, users, "state restored");
    }
}

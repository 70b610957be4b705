//! Creating rooms: the steps that happen before a room has an actor
//! (reserving its name and code, spawning it, registering it).

use crate::durability::Snapshot;
use crate::hub::UserEvent;
use crate::ids::RoomId;
use crate::permissions::Principal;
use crate::registry::{DirectLookup, DirectReservation, NameFound, NameLookup, NameReservation, dm_key};
use crate::room::log::{Claim, Creation, Order};
use crate::room::view::RoomInfo;
use crate::room::{CreateOptions, RoomDeps, RoomError, RoomHandle, RoomState, RoomType, UserRef};
use crate::server::ServerState;
use crate::time::Millis;
use crate::wire;
use serde_json::json;

/// How long a `createDirectMessage` waits for a concurrent creation of the
/// same room (one store commit) before answering `Unavailable`.
const DIRECT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// How long a lookup or creation by name waits for a concurrent creation of
/// the same name to end before answering `Unavailable` (retryable): one
/// store commit on one node; a log append and its return with a delivered
/// log.
const NAME_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// What [`ServerState::channel_or_create`] gave its caller.
#[derive(Debug)]
pub(crate) enum ChannelJoin {
    /// A new channel, the caller its creator and only member: the room as
    /// its creator sees it.
    Created(Box<RoomInfo>),
    /// The room that had the name (the caller still has to join it).
    Existing(RoomHandle),
}

/// A name, found or reserved.
enum NameClaim<'a> {
    Existing(RoomHandle),
    Reserved(NameReservation<'a>),
}

/// How [`ServerState::create_named`] ended.
enum Named {
    Created(Box<RoomInfo>),
    /// Another node's room won the name (a delivered log).
    Taken(RoomHandle),
}

/// How a new room's commit ended.
enum Committed {
    Started(RoomHandle),
    /// A delivered log: another node claimed the name first; its room.
    Taken(RoomHandle),
}

impl ServerState {
    pub(crate) fn deps(&self) -> RoomDeps {
        RoomDeps {
            registry: self.registry.clone(),
            users: self.users.clone(),
            hub: self.hub.clone(),
            // With a delivered log the store seam carries only facts:
            // rooms append commands to their log.
            store: if self.log.order() == Order::Delivered { None } else { self.store.clone() },
            log: self.log.clone(),
        }
    }

    /// Creates a room named `name` (`createChannel`, `createPrivateGroup`):
    /// refused as a duplicate if a room has the name in any letter case
    /// (after waiting for a creation of it in progress). Returns the room
    /// as its creator sees it (each door shapes its document).
    pub(crate) async fn create_room(
        &self,
        name: String,
        t: RoomType,
        creator: &Principal,
        others: Vec<UserRef>,
        opts: CreateOptions,
    ) -> Result<RoomInfo, RoomError> {
        let reservation = match self.name_or_reserve(&name).await? {
            NameClaim::Existing(_) => return Err(RoomError::DuplicateName(name)),
            NameClaim::Reserved(r) => r,
        };
        match self.create_named(reservation, t, creator, others, opts).await? {
            Named::Created(info) => Ok(*info),
            Named::Taken(_) => Err(RoomError::DuplicateName(name)),
        }
    }

    /// Join-or-create by name (Slack's `channels.join`) as one step: the
    /// room named `name` in any letter case, or a new public channel of
    /// `creator` when none has it. Of any number of concurrent callers
    /// exactly one creates; the others wait for that creation and get its
    /// room. `may_create` runs only for the caller about to create (its
    /// permission and creation budget); its refusal frees the name for the
    /// next caller.
    pub(crate) async fn channel_or_create<E: From<RoomError>>(
        &self,
        name: &str,
        creator: &Principal,
        may_create: impl FnOnce() -> Result<(), E>,
    ) -> Result<ChannelJoin, E> {
        let reservation = match self.name_or_reserve(name).await? {
            NameClaim::Existing(room) => return Ok(ChannelJoin::Existing(room)),
            NameClaim::Reserved(r) => r,
        };
        may_create()?;
        let created = self
            .create_named(reservation, RoomType::Channel, creator, Vec::new(), CreateOptions::default())
            .await?;
        Ok(match created {
            Named::Created(info) => ChannelJoin::Created(info),
            Named::Taken(room) => ChannelJoin::Existing(room),
        })
    }

    /// The room named `name` in any letter case, waiting (bounded) for a
    /// creation of that name in progress: a lookup never answers "no such
    /// room" for a room that is being created.
    pub(crate) async fn room_by_name(&self, name: &str) -> Result<Option<RoomHandle>, RoomError> {
        let deadline = tokio::time::Instant::now() + NAME_WAIT;
        loop {
            match self.registry.lookup_name(name) {
                NameFound::Room(id) => return self.room(id.as_str()).await,
                NameFound::Free => return Ok(None),
                NameFound::Creating(mut done) => {
                    if tokio::time::timeout_at(deadline, done.changed()).await.is_err() {
                        return Err(RoomError::Unavailable);
                    }
                }
            }
        }
    }

    /// The room named `name`, or the reservation to create it, waiting
    /// (bounded) while another caller creates it.
    async fn name_or_reserve(&self, name: &str) -> Result<NameClaim<'_>, RoomError> {
        let deadline = tokio::time::Instant::now() + NAME_WAIT;
        loop {
            match self.registry.name_or_reserve(name) {
                NameLookup::Room(id) => {
                    return self
                        .room(id.as_str())
                        .await?
                        .map(NameClaim::Existing)
                        .ok_or(RoomError::Unavailable);
                }
                NameLookup::Reserved(r) => return Ok(NameClaim::Reserved(r)),
                NameLookup::Creating(mut done) => {
                    if tokio::time::timeout_at(deadline, done.changed()).await.is_err() {
                        return Err(RoomError::Unavailable);
                    }
                }
            }
        }
    }

    /// Creates the room `reservation` holds the name of: a code, the store
    /// (or the log), the actor, the registry; only then do waiters for the
    /// name find it. With a delivered log another node may have claimed the name
    /// first: then its room, once started here, is the answer.
    async fn create_named(
        &self,
        reservation: NameReservation<'_>,
        t: RoomType,
        creator: &Principal,
        others: Vec<UserRef>,
        opts: CreateOptions,
    ) -> Result<Named, RoomError> {
        let id = RoomId::generate();
        let code = self.registry.reserve_code(&id);
        let name = reservation.name().to_owned();
        let state = RoomState::new(id.clone(), name, t, code.clone(), creator, others, opts, Millis::now());
        // Taken before the state moves into its actor: the room as its
        // creator (a member) sees it at creation.
        let info = Box::new(RoomInfo::from(&state.view()));
        match self.commit_new_room(state, true).await {
            Ok(Committed::Started(_)) => {
                reservation.fulfil(&id);
                Ok(Named::Created(info))
            }
            Ok(Committed::Taken(theirs)) => {
                self.registry.release_code(&code);
                drop(reservation);
                Ok(Named::Taken(theirs))
            }
            Err(e) => {
                // Dropping the reservation frees the name and wakes waiters.
                self.registry.release_code(&code);
                Err(e)
            }
        }
    }

    /// The direct-message room of `creator` and `others`, created on first
    /// use and reused afterwards. When two members create it at the same
    /// moment, the first reserves the member set and the second waits for
    /// that creation to end (woken, not polling): it gets the room, or
    /// creates it itself if the first creation failed.
    pub(crate) async fn direct_room(
        &self,
        creator: &Principal,
        others: Vec<UserRef>,
    ) -> Result<RoomHandle, RoomError> {
        let ids: Vec<&str> =
            std::iter::once(creator.id.as_str()).chain(others.iter().map(|u| u.id.as_str())).collect();
        let key = dm_key(&ids);
        let deadline = tokio::time::Instant::now() + DIRECT_WAIT;
        loop {
            match self.registry.direct_or_reserve(&key) {
                DirectLookup::Room(id) => return self.room(id.as_str()).await?.ok_or(RoomError::Unavailable),
                DirectLookup::Reserved(reservation) => {
                    // The registry's reservation holds the member set on
                    // this node; the log's claim across nodes (the first
                    // claim's room is everyone's).
                    let id = RoomId::generate();
                    return match self.log.claim_direct(&key, &id).await? {
                        Claim::Mine => self.create_direct(reservation, creator, others, id).await,
                        Claim::Theirs(theirs) => {
                            drop(reservation);
                            self.started_elsewhere(&theirs).await
                        }
                    };
                }
                DirectLookup::Creating(mut done) => {
                    if tokio::time::timeout_at(deadline, done.changed()).await.is_err() {
                        return Err(RoomError::Unavailable);
                    }
                }
            }
        }
    }

    /// Stores and starts the direct-message room of the member set that
    /// `reservation` holds.
    async fn create_direct(
        &self,
        reservation: DirectReservation<'_>,
        creator: &Principal,
        others: Vec<UserRef>,
        id: RoomId,
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
        let code = state.code.clone();
        match self.commit_new_room(state, false).await {
            Ok(Committed::Started(handle)) => {
                reservation.fulfil(&id);
                Ok(handle)
            }
            // A direct-message room claims no name.
            Ok(Committed::Taken(_)) => {
                self.registry.release_code(&code);
                Err(RoomError::Unavailable)
            }
            Err(e) => {
                // Dropping the reservation frees the member set.
                self.registry.release_code(&code);
                Err(e)
            }
        }
    }

    /// Makes a new room durable and starts it; `claim_name` also claims its
    /// name in the log (direct messages have no name to claim): a name
    /// another node claimed first answers that node's room once it runs
    /// here.
    async fn commit_new_room(&self, state: RoomState, claim_name: bool) -> Result<Committed, RoomError> {
        if claim_name && let Claim::Theirs(theirs) = self.log.claim_name(&state.name, &state.id).await? {
            return self.started_elsewhere(&theirs).await.map(Committed::Taken);
        }
        match self.log.create(&state).await? {
            Creation::Durable => Ok(Committed::Started(self.activate(state))),
            Creation::Started => {
                self.registry.get(&state.id).map(Committed::Started).ok_or(RoomError::Unavailable)
            }
        }
    }

    /// Room `rid`, created by another node, once it runs here.
    async fn started_elsewhere(&self, rid: &RoomId) -> Result<RoomHandle, RoomError> {
        match self.log.started(&self.registry, rid).await {
            true => self.room(rid.as_str()).await?.ok_or(RoomError::Unavailable),
            false => Err(RoomError::Unavailable),
        }
    }

    /// A delivered log: starts a room this node does not hold yet from its
    /// creation or its latest snapshot, and indexes
    /// it as a creation would. A room already held is left alone.
    pub(crate) fn apply_replica(&self, state: RoomState) {
        self.replica(state, true);
    }

    /// Starts a room this node did not hold (`--cluster-rooms interest`)
    /// and indexes it, without telling anyone: it is not new, only new
    /// here. An already held room is returned as it is.
    pub(crate) fn hold_replica(&self, state: RoomState) -> RoomHandle {
        self.replica(state, false)
    }

    /// Starts and indexes a replica (`announce`: and tells its members, as
    /// a creation would), unless the room is held already.
    fn replica(&self, state: RoomState, announce: bool) -> RoomHandle {
        if let Some(held) = self.registry.get(&state.id) {
            return held;
        }
        let (id, name) = (state.id.clone(), state.name.clone());
        let direct = (state.kind == RoomType::Direct).then(|| {
            let ids: Vec<&str> = state.members.keys().map(|u| u.as_str()).collect();
            dm_key(&ids)
        });
        self.registry.claim_code(&state.code, &state.id);
        // Registered by id before by name: whoever finds the name finds
        // the room.
        let handle = if announce { self.activate(state) } else { self.start(state, Vec::new()) };
        match direct {
            Some(key) => self.registry.restore_direct(key, &id),
            None => self.registry.force_name(&name, &id),
        }
        handle
    }

    /// The room with id `rid`, loading it first if this node holds rooms by
    /// interest and does not hold it yet (`None`: no such room).
    pub(crate) async fn room(&self, rid: &str) -> Result<Option<RoomHandle>, RoomError> {
        if let Some(held) = self.registry.get(rid) {
            return Ok(Some(held));
        }
        let rid = RoomId::from(rid);
        Ok(match self.log.load(&rid).await? {
            true => self.registry.get(&rid),
            false => None,
        })
    }

    /// The room with join code `code`, loaded as [`room`](Self::room) does.
    pub(crate) async fn room_by_code(&self, code: &str) -> Result<Option<RoomHandle>, RoomError> {
        match self.registry.id_by_code(code) {
            Some(id) => self.room(id.as_str()).await,
            None => Ok(None),
        }
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
    /// Restored rooms hold their guests' seats too; each room gives its
    /// guests the guest grace from now to reclaim them.
    pub(crate) fn restore(&self, snapshot: Snapshot) {
        let users = snapshot.users.len();
        // Owners before users: a legacy name shared by several users
        // resolves to its owner.
        for (name, uid) in snapshot.usernames {
            self.users.restore_owner(name, uid);
        }
        for u in snapshot.users {
            self.users.restore_user(u);
        }
        for (key, exp) in snapshot.revoked {
            self.users.restore_revoked(key, exp);
        }
        let rooms = snapshot.rooms.len();
        let mut snapshot_rooms = snapshot.rooms;
        // Oldest first: of rooms whose names differ only in case (stored
        // before names were unique regardless of case), the oldest holds
        // the name in every spelling, the others their exact spelling.
        snapshot_rooms.sort_by(|(a, _), (b, _)| (a.created_at.0, &a.id).cmp(&(b.created_at.0, &b.id)));
        for (state, history) in snapshot_rooms {
            if state.kind != RoomType::Direct && !self.registry.restore_name(&state.name, &state.id) {
                // Restoring never fails over a name: the room runs, and its
                // id still finds it.
                tracing::warn!(room = %state.id, name = %state.name, "restored room's name is held by another room; reachable by id only");
            }
            if state.kind == RoomType::Direct {
                let ids: Vec<&str> = state.members.keys().map(|u| u.as_str()).collect();
                self.registry.restore_direct(dm_key(&ids), &state.id);
            }
            self.registry.claim_code(&state.code, &state.id);
            self.start(state, history);
        }
        tracing::info!(rooms, users, "state restored");
    }

    /// Slack's `channels.join` as one operation: the public channel named
    /// `name` in any letter case joined by `who`, or created by `who` when
    /// no room has the name ([`ServerState::channel_or_create`]: of
    /// concurrent callers exactly one creates; `may_create` as there).
    pub(crate) async fn join_or_create_channel<E: From<RoomError>>(
        &self,
        name: &str,
        who: &Principal,
        may_create: impl FnOnce() -> Result<(), E>,
    ) -> Result<crate::room::view::ChannelEntry, E> {
        match self.channel_or_create(name, who, may_create).await? {
            ChannelJoin::Existing(room) => Ok(room.join_channel(who.clone()).await?),
            ChannelJoin::Created(info) => {
                let room = self.registry.get(&info.id).ok_or(RoomError::Unavailable)?;
                Ok(crate::room::view::ChannelEntry::Created(room.channel_room(&who.id).await?))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Authenticator;
    use crate::config::Limits;
    use crate::ids::UserId;
    use crate::server::ServerParts;
    use std::time::Duration;
    use tokio::time::Instant;

    fn server() -> ServerState {
        let limits = Limits::default();
        ServerState::new(ServerParts { auth: Authenticator::hs256(b"k"), limits: &limits, store: None })
    }

    fn principal(id: &str) -> Principal {
        Principal {
            id: UserId::from(id),
            username: id.to_owned(),
            name: None,
            admin: false,
            bot: false,
            guest: false,
        }
    }

    fn user(id: &str) -> UserRef {
        UserRef { id: UserId::from(id), username: id.to_owned(), name: None }
    }

    /// A second creator waits for the first one's creation instead of
    /// polling: it creates the room the moment the first one gives up, and
    /// gets that room on a later call.
    #[tokio::test(start_paused = true)]
    async fn direct_room_waits_for_a_concurrent_creation() {
        let s = server();
        let key = dm_key(&["a", "b"]);
        let DirectLookup::Reserved(first) = s.registry.direct_or_reserve(&key) else {
            panic!("not reserved")
        };
        let (started, b) = (Instant::now(), principal("b"));
        let (room, ()) = tokio::join!(s.direct_room(&b, vec![user("a")]), async {
            tokio::time::sleep(Duration::from_millis(52)).await;
            drop(first);
        });
        let room = room.expect("created after the first creation failed");
        assert_eq!(started.elapsed(), Duration::from_millis(52), "not woken when the reservation ended");
        let again = s.direct_room(&principal("a"), vec![user("b")]).await.expect("the room");
        assert_eq!(again.id, room.id);
    }

    #[tokio::test(start_paused = true)]
    async fn direct_room_gives_up_on_a_creation_that_never_ends() {
        let s = server();
        let key = dm_key(&["a", "b"]);
        let DirectLookup::Reserved(_stuck) = s.registry.direct_or_reserve(&key) else {
            panic!("not reserved")
        };
        let started = Instant::now();
        let r = s.direct_room(&principal("a"), vec![user("b")]).await;
        assert!(matches!(r, Err(RoomError::Unavailable)), "{r:?}");
        assert_eq!(started.elapsed(), DIRECT_WAIT);
    }
}

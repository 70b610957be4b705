//! The room's rules, pure and synchronous: every operation checks and applies
//! in one call, so the actor that owns a `RoomState` makes each of them atomic
//! simply by handling one command at a time.
//!
//! Operations return what happened as [`Effect`]s; the actor turns them into
//! stored system messages and stream events. Reads return typed views
//! ([`super::view`]): the rules decide who may see what (the join code hidden
//! from non-members), `wire::room` shapes the documents. Nothing here knows
//! about tokio, sockets or JSON, which is what lets `tests/it/model.rs` drive
//! it with random operation sequences.

use super::RoomError;
use super::model::{CustomFields, Member, RoomRoles, RoomType, SeatToken, UserRef};
use super::view::{
    DirectMembers, MeetingStatus, ParticipantList, ParticipantView, RoleHolder, RoomView, SubscriptionView,
};
use crate::ids::{Ids, MessageId, RoomCode, RoomId, UserId};
use crate::permissions::{Permission, Principal, allowed};
use crate::time::Millis;
use std::collections::HashMap;

/// What a system message announces. Its wire code (the message's `t`) is
/// given in one place, [`SystemKind::code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemKind {
    UserJoined,
    UserLeft,
    UserRemoved,
    UserAdded,
    RoomEnded,
    Renamed,
    TopicChanged,
    DescriptionChanged,
    AnnouncementChanged,
    ReadOnlySet,
    ReadOnlyRemoved,
    JoinCodeSet,
    JoinCodeRemoved,
    Locked,
    Unlocked,
    MaxParticipantsChanged,
    GuestAccessChanged,
    GuestChatChanged,
    PrivacyChanged,
    RoleAdded,
    RoleRemoved,
    UserMuted,
    UserUnmuted,
    Archived,
    Unarchived,
}

impl SystemKind {
    /// The message type clients and the store know it by.
    pub fn code(self) -> &'static str {
        use SystemKind as K;
        match self {
            K::UserJoined => "uj",
            K::UserLeft => "ul",
            K::UserRemoved => "ru",
            K::UserAdded => "au",
            K::RoomEnded => "room-ended",
            K::Renamed => "r",
            K::TopicChanged => "room_changed_topic",
            K::DescriptionChanged => "room_changed_description",
            K::AnnouncementChanged => "room_changed_announcement",
            K::ReadOnlySet => "room-set-read-only",
            K::ReadOnlyRemoved => "room-removed-read-only",
            K::JoinCodeSet => "room-join-code-set",
            K::JoinCodeRemoved => "room-join-code-removed",
            K::Locked => "room-locked",
            K::Unlocked => "room-unlocked",
            K::MaxParticipantsChanged => "room-max-participants-changed",
            K::GuestAccessChanged => "room-guest-access-changed",
            K::GuestChatChanged => "room-guest-chat-changed",
            K::PrivacyChanged => "room_changed_privacy",
            K::RoleAdded => "subscription-role-added",
            K::RoleRemoved => "subscription-role-removed",
            K::UserMuted => "user-muted",
            K::UserUnmuted => "user-unmuted",
            K::Archived => "room-archived",
            K::Unarchived => "room-unarchived",
        }
    }
}

/// Something the actor must publish after a successful operation.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Store and broadcast a system message.
    System {
        kind: SystemKind,
        msg: String,
        by: UserRef,
        /// The role a `RoleAdded`/`RoleRemoved` message names.
        role: Option<RoleKind>,
    },
    /// `stream-notify-room` `<rid>/participants` `["joined"|"left", participant]`.
    Participant {
        joined: bool,
        member: Member,
        at: Millis,
    },
    /// `stream-notify-room` `<rid>/participants` `["room-updated", {...}]`.
    RoomUpdated,
    /// A user gained or lost membership (directory index, user streams).
    MembershipAdded(UserId),
    MembershipRemoved(UserId),
    /// The room was renamed: the registry's name index must follow.
    Renamed {
        old: String,
        new: String,
    },
    /// The room document changed: members' `rooms-changed` listeners hear it.
    RoomChanged,
    /// A public channel became private: non-members' subscriptions end.
    BecamePrivate,
    /// One member's subscription (flags, roles) changed.
    SubscriptionChanged(UserId),
    /// A room role was granted or revoked (`stream-notify-logged` `roles-change`).
    RoleChanged {
        user: UserRef,
        role: RoleKind,
        added: bool,
    },
}

/// A room role by name, as the role methods take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleKind {
    Owner,
    Moderator,
    Leader,
}

impl RoleKind {
    pub fn bit(self) -> RoomRoles {
        match self {
            RoleKind::Owner => RoomRoles::OWNER,
            RoleKind::Moderator => RoomRoles::MODERATOR,
            RoleKind::Leader => RoomRoles::LEADER,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            RoleKind::Owner => "owner",
            RoleKind::Moderator => "moderator",
            RoleKind::Leader => "leader",
        }
    }
    fn permission(self) -> Permission {
        match self {
            RoleKind::Owner => Permission::SetOwner,
            RoleKind::Moderator => Permission::SetModerator,
            RoleKind::Leader => Permission::SetLeader,
        }
    }
}

/// Per-user subscription flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    Favorite(bool),
    Open(bool),
}

/// Result of a join attempt that did not fail.
#[derive(Debug, Clone, PartialEq)]
pub enum Joined {
    New(Member),
    /// Already a member: no new seat, no event.
    Existing(Member),
}

impl Joined {
    pub fn member(&self) -> &Member {
        match self {
            Joined::New(m) | Joined::Existing(m) => m,
        }
    }
}

/// One setting change, already parsed from the wire.
#[derive(Debug, Clone, PartialEq)]
pub enum Setting {
    RoomName(String),
    RoomTopic(String),
    RoomDescription(String),
    RoomAnnouncement(String),
    ReadOnly(bool),
    JoinCode(String),
    Locked(bool),
    /// `None` = unlimited.
    MaxParticipants(Option<u32>),
    GuestAccess(bool),
    GuestChat(bool),
    RoomType(RoomType),
    SystemMessages(bool),
    Default(bool),
    Favorite(bool),
}

/// Options a creator may set at creation time (`extraData`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CreateOptions {
    pub read_only: bool,
    pub max_participants: Option<u32>,
    pub locked: bool,
    pub guest_access: bool,
    pub guest_chat: bool,
    pub custom_fields: CustomFields,
}

/// The whole state of one room. Its stored form is `store::rows::RoomRowV1`
/// (without members, which are stored one row each).
#[derive(Debug, Clone)]
pub struct RoomState {
    /// Where the change being applied draws its ids (participant ids,
    /// guest tokens, message ids): set from the change's apply context by
    /// the room's `apply` and reset after it (`room::replicated`); fresh
    /// randomness otherwise. Never stored.
    pub(crate) draw: Ids,
    /// Stable id, never reused: what every method and stream names the room by.
    pub id: RoomId,
    /// Unique among rooms (the registry's name index follows renames);
    /// direct messages use their id.
    pub name: String,
    /// Display name; follows `name` on a rename.
    pub display_name: String,
    /// Channel, private group or direct message: decides who may read and join.
    pub kind: RoomType,
    /// The shareable code `join-room` takes; an invitation by itself.
    pub code: RoomCode,
    /// Creator as `u` (Rocket.Chat's room owner field).
    pub creator: UserRef,
    /// The meeting family's host: the creator's id, fixed for the room's life.
    pub host_id: UserId,
    /// Creation time.
    pub created_at: Millis,
    /// Last change to the room or its membership (`_updatedAt`).
    pub updated_at: Millis,
    /// Read-only: only those allowed to post read-only may send messages.
    pub read_only: bool,
    /// Archived: no joins, no messages, until unarchived.
    pub archived: bool,
    /// `joinRoom`'s secret for non-members (admins and bots skip it).
    pub join_code: Option<String>,
    /// Locked: self-joins stop, except for owners and admins.
    pub locked: bool,
    /// Capacity; `None` = unlimited. Lowering it keeps existing members.
    pub max_participants: Option<u32>,
    /// `false` once ended, for good: no joins or messages; retired once empty.
    pub active: bool,
    /// Whether guests may `join-room`.
    pub guest_access: bool,
    /// Whether guests in the room may post (`sendMessage`); signed-in
    /// members post whatever it says.
    pub guest_chat: bool,
    /// The creator's `customFields`, kept and shown as given.
    pub custom_fields: CustomFields,
    /// Messages sent in the room, system messages included.
    pub message_count: u64,
    /// The position (`seq`) of the latest event the room decided: each
    /// message, participant change and room update takes the next one. A
    /// plain counter in the replicated state, so every cluster node numbers
    /// the same events alike; stored with the room so a restart never hands
    /// a number out twice.
    pub seq: u64,
    /// Rocket.Chat's `default`, `sysMes` and `featured` settings: kept and
    /// shown, not acted on.
    pub default: bool,
    /// See `default`.
    pub system_messages: bool,
    /// See `default`.
    pub featured: bool,
    /// Free texts members see; each change is announced.
    pub topic: Option<String>,
    /// See `topic`.
    pub description: Option<String>,
    /// See `topic`.
    pub announcement: Option<String>,
    /// Who is in the room now, with their roles and flags. Stored one row
    /// each (guests never), hence skipped here.
    pub members: HashMap<UserId, Member>,
}

impl RoomState {
    /// A new room with `creator` as its only member and owner, and `others`
    /// as plain members. Capacity must be checked by the caller first
    /// ([`RoomState::check_initial_capacity`]).
    #[allow(clippy::too_many_arguments)] // one call site; a struct would only rename them
    pub fn new(
        id: RoomId,
        name: String,
        t: RoomType,
        code: RoomCode,
        creator: &Principal,
        others: Vec<UserRef>,
        opts: CreateOptions,
        now: Millis,
    ) -> Self {
        let creator_ref = user_ref(creator);
        let mut members = HashMap::new();
        let mut owner = Member::new(creator_ref.clone(), false, now);
        owner.roles.insert(RoomRoles::OWNER);
        members.insert(creator.id.clone(), owner);
        for u in others {
            if !members.contains_key(&u.id) {
                members.insert(u.id.clone(), Member::new(u, false, now));
            }
        }
        RoomState {
            draw: Ids::random(),
            id,
            display_name: name.clone(),
            name,
            kind: t,
            code,
            creator: UserRef { id: creator.id.clone(), username: creator.username.clone(), name: None },
            host_id: creator.id.clone(),
            created_at: now,
            updated_at: now,
            read_only: opts.read_only,
            archived: false,
            join_code: None,
            locked: opts.locked,
            max_participants: opts.max_participants,
            active: true,
            guest_access: opts.guest_access,
            guest_chat: opts.guest_chat,
            custom_fields: opts.custom_fields,
            message_count: 0,
            seq: 0,
            default: false,
            system_messages: true,
            featured: false,
            topic: None,
            description: None,
            announcement: None,
            members,
        }
    }

    /// `error-room-full` when `count` initial members would exceed capacity.
    pub fn check_initial_capacity(count: usize, max: Option<u32>) -> Result<(), RoomError> {
        match max {
            Some(m) if count > m as usize => Err(RoomError::Full),
            _ => Ok(()),
        }
    }

    pub fn roles_of(&self, uid: &UserId) -> RoomRoles {
        self.members.get(uid).map(|m| m.roles).unwrap_or_default()
    }

    pub fn is_member(&self, uid: &UserId) -> bool {
        self.members.contains_key(uid)
    }

    /// The oldest message `uid` may read: a guest reads only what was said
    /// while it held its seat (from the seat's join, kept through a
    /// reclaimed reconnect), never the room's earlier history; users are
    /// bounded by `can_read` alone.
    pub fn read_floor(&self, uid: &UserId) -> Millis {
        match self.members.get(uid) {
            Some(m) if uid.is_guest() => m.joined_at,
            _ => Millis(0),
        }
    }

    pub fn is_full(&self) -> bool {
        matches!(self.max_participants, Some(m) if self.members.len() >= m as usize)
    }

    /// Owners and admins pass a lock (the host only while an owner).
    fn can_bypass_lock(&self, who: &Principal) -> bool {
        allowed(Permission::BypassLock, who, self.roles_of(&who.id))
    }

    /// Whether a `joinRoom` by `who` would be checked against the join code.
    pub fn needs_code(&self, who: &Principal) -> bool {
        self.join_code.is_some()
            && !self.is_member(&who.id)
            && !allowed(Permission::JoinWithoutJoinCode, who, RoomRoles::NONE)
    }

    /// `joinRoom(rid, joinCode?)`: a signed-in user joins a public channel.
    pub fn join_self(
        &mut self,
        who: &Principal,
        join_code: Option<&str>,
        now: Millis,
        fx: &mut Vec<Effect>,
    ) -> Result<Joined, RoomError> {
        match self.check_join_self(who, join_code)? {
            Some(m) => Ok(Joined::Existing(m.clone())),
            None => Ok(Joined::New(self.admit(who, now, fx))),
        }
    }

    /// Every check of [`RoomState::join_self`], in its order, without the
    /// admission: `Some` is the caller's existing membership, `None` means
    /// the caller may be admitted. An ended room answers from this too.
    pub fn check_join_self(
        &self,
        who: &Principal,
        join_code: Option<&str>,
    ) -> Result<Option<&Member>, RoomError> {
        if let Some(m) = self.members.get(&who.id) {
            return Ok(Some(m));
        }
        if self.kind != RoomType::Channel || who.guest {
            return Err(RoomError::NotAllowed);
        }
        self.check_open(who)?;
        if let Some(expected) = &self.join_code
            && !allowed(Permission::JoinWithoutJoinCode, who, RoomRoles::NONE)
        {
            match join_code {
                None | Some("") => return Err(RoomError::CodeRequired),
                Some(given) if !constant_time_eq(given.as_bytes(), expected.as_bytes()) => {
                    return Err(RoomError::CodeInvalid);
                }
                Some(_) => {}
            }
        }
        if self.is_full() {
            return Err(RoomError::Full);
        }
        Ok(None)
    }

    /// `join-room {code, guestName}`: join by shareable code, as a user or a
    /// guest. The code itself is the invitation, so private rooms and join
    /// codes do not apply; activity, lock and capacity do.
    pub fn join_by_code(
        &mut self,
        who: &Principal,
        now: Millis,
        fx: &mut Vec<Effect>,
    ) -> Result<Joined, RoomError> {
        match self.check_join_by_code(who)? {
            Some(m) => Ok(Joined::Existing(m.clone())),
            None => Ok(Joined::New(self.admit(who, now, fx))),
        }
    }

    /// Every check of [`RoomState::join_by_code`], in its order (see
    /// [`RoomState::check_join_self`] for the answer).
    pub fn check_join_by_code(&self, who: &Principal) -> Result<Option<&Member>, RoomError> {
        if let Some(m) = self.members.get(&who.id) {
            return Ok(Some(m));
        }
        if who.guest && !self.guest_access {
            return Err(RoomError::GuestsNotAllowed);
        }
        if self.kind == RoomType::Direct {
            return Err(RoomError::NotAllowed);
        }
        self.check_open(who)?;
        if self.is_full() {
            return Err(RoomError::Full);
        }
        Ok(None)
    }

    /// The checks every self-join shares, in the documented order: archived,
    /// ended, locked (owners and admins pass the lock).
    fn check_open(&self, who: &Principal) -> Result<(), RoomError> {
        if self.archived {
            return Err(RoomError::Archived);
        }
        if !self.active {
            return Err(RoomError::Inactive);
        }
        if self.locked && !self.can_bypass_lock(who) {
            return Err(RoomError::Locked);
        }
        Ok(())
    }

    /// The seat reclaim rule, one for live and restored seats: the guest
    /// seat whose token is `token` goes back to its guest, unless the
    /// caller's connection already is another guest (`current`: one
    /// connection, one guest). Seats are matched by the token's digest,
    /// the only thing a restored seat has; a restored seat learns the
    /// token again here, so answers can carry it. A token of another room
    /// (or of a released seat) matches nothing.
    pub fn reclaim_seat(&mut self, token: &str, current: Option<&UserId>) -> Option<Member> {
        let presented = SeatToken::digest(token);
        let seat = self
            .members
            .values_mut()
            .find(|m| m.guest && m.guest_token.as_ref().is_some_and(|t| t.is(&presented)))?;
        if current.is_some_and(|c| *c != seat.user.id) {
            return None;
        }
        if seat.guest_token.as_ref().is_some_and(|t| t.secret().is_none()) {
            seat.guest_token = Some(SeatToken::from_secret(token.to_owned()));
        }
        Some(seat.clone())
    }

    /// Guests holding seats: after a restart, nobody's connection holds
    /// them, so each gets the guest grace to come back, as after any
    /// disconnect.
    pub fn guests(&self) -> impl Iterator<Item = &UserId> {
        self.members.values().filter(|m| m.guest).map(|m| &m.user.id)
    }

    fn admit(&mut self, who: &Principal, now: Millis, fx: &mut Vec<Effect>) -> Member {
        let member = Member::drawn(user_ref(who), who.guest, now, &mut self.draw);
        self.members.insert(who.id.clone(), member.clone());
        self.updated_at = now;
        fx.push(Effect::MembershipAdded(who.id.clone()));
        fx.push(Effect::System {
            kind: SystemKind::UserJoined,
            msg: member.user.username.clone(),
            by: member.user.clone(),
            role: None,
        });
        fx.push(Effect::Participant { joined: true, member: member.clone(), at: now });
        fx.push(Effect::RoomUpdated);
        member
    }

    /// `leaveRoom(rid)`. When the last owner is also the last member, the
    /// room ends with their departure instead of being left ownerless.
    pub fn leave(&mut self, uid: &UserId, now: Millis, fx: &mut Vec<Effect>) -> Result<Member, RoomError> {
        let ends_room = self.check_leave(uid)?;
        let member = self.remove_member(uid, now, SystemKind::UserLeft, None, fx);
        if ends_room && self.active {
            self.active = false;
            fx.push(Effect::System {
                kind: SystemKind::RoomEnded,
                msg: String::new(),
                by: member.user.clone(),
                role: None,
            });
            fx.push(Effect::RoomUpdated);
        }
        Ok(member)
    }

    /// Every check of [`RoomState::leave`], in its order; `true` if the
    /// leaver is the last member and an owner (the room then ends).
    pub fn check_leave(&self, uid: &UserId) -> Result<bool, RoomError> {
        let Some(member) = self.members.get(uid) else {
            // `NotInRoom` is the idempotent no-op (see `leaveRoom`), for the
            // public channels anyone may see. A non-member of a private room
            // gets what every other call of theirs there gets: it tells an
            // outsider nothing about the room.
            return Err(if self.kind == RoomType::Channel {
                RoomError::NotInRoom
            } else {
                RoomError::NotAllowed
            });
        };
        if self.kind == RoomType::Direct {
            return Err(RoomError::ActionNotAllowed("Leaving a direct message"));
        }
        let is_owner = member.roles.contains(RoomRoles::OWNER);
        let other_owners =
            self.members.values().filter(|m| m.roles.contains(RoomRoles::OWNER) && &m.user.id != uid).count();
        let last_member = self.members.len() == 1;
        if is_owner && other_owners == 0 && !last_member {
            return Err(RoomError::LastOwner);
        }
        Ok(is_owner && last_member)
    }

    /// Removes a member for any reason (leave, removal, guest expiry) and
    /// emits the matching events, announced as `kind`. The member must exist.
    pub fn remove_member(
        &mut self,
        uid: &UserId,
        now: Millis,
        kind: SystemKind,
        by: Option<UserRef>,
        fx: &mut Vec<Effect>,
    ) -> Member {
        let member = self.members.remove(uid).expect("caller checked membership");
        self.updated_at = now;
        let by = by.unwrap_or_else(|| member.user.clone());
        fx.push(Effect::System { kind, msg: member.user.username.clone(), by, role: None });
        fx.push(Effect::Participant { joined: false, member: member.clone(), at: now });
        fx.push(Effect::RoomUpdated);
        fx.push(Effect::MembershipRemoved(uid.clone()));
        member
    }

    /// `endRoom(rid)`: no further joins; members are told.
    pub fn end(&mut self, who: &Principal, now: Millis, fx: &mut Vec<Effect>) -> Result<(), RoomError> {
        self.check_end(who)?;
        self.active = false;
        self.updated_at = now;
        fx.push(Effect::System {
            kind: SystemKind::RoomEnded,
            msg: String::new(),
            by: user_ref(who),
            role: None,
        });
        fx.push(Effect::RoomUpdated);
        fx.push(Effect::RoomChanged);
        Ok(())
    }

    /// Every check of [`RoomState::end`], in its order.
    pub fn check_end(&self, who: &Principal) -> Result<(), RoomError> {
        if !allowed(Permission::EndRoom, who, self.roles_of(&who.id)) {
            return Err(RoomError::ActionNotAllowed("Ending the room"));
        }
        if !self.active {
            return Err(RoomError::Inactive);
        }
        Ok(())
    }

    /// `saveRoomSettings`: every check first, then a new name must be won
    /// (`reserve_name` takes it in the registry, where another room may hold
    /// it), and only then does anything change.
    pub fn save_settings(
        &mut self,
        who: &Principal,
        settings: Vec<Setting>,
        now: Millis,
        fx: &mut Vec<Effect>,
        mut reserve_name: impl FnMut(&str) -> Result<(), RoomError>,
    ) -> Result<(), RoomError> {
        self.check_settings(who, &settings)?;
        for s in &settings {
            if let Setting::RoomName(n) = s
                && n != &self.name
            {
                reserve_name(n)?;
            }
        }
        self.apply_settings(who, settings, now, fx);
        Ok(())
    }

    /// Checks permission and every value of a `saveRoomSettings` call; only
    /// when all pass does [`RoomState::apply_settings`] change anything, so a
    /// call with one bad setting changes nothing.
    pub fn check_settings(&self, who: &Principal, settings: &[Setting]) -> Result<(), RoomError> {
        if !allowed(Permission::EditRoom, who, self.roles_of(&who.id)) {
            return Err(RoomError::ActionNotAllowed("Editing room"));
        }
        for s in settings {
            match s {
                Setting::RoomName(n) if !valid_room_name(n) => {
                    return Err(RoomError::InvalidRoomName(n.clone()));
                }
                Setting::MaxParticipants(Some(0)) => {
                    return Err(RoomError::InvalidSettingValue("maxParticipants".into()));
                }
                Setting::RoomType(t) if self.kind == RoomType::Direct || *t == RoomType::Direct => {
                    return Err(RoomError::InvalidSettingValue("roomType".into()));
                }
                Setting::RoomType(t)
                    if *t != self.kind && !allowed(Permission::ArchiveRoom, who, self.roles_of(&who.id)) =>
                {
                    // Changing privacy is an owner/admin matter in Rocket.Chat.
                    return Err(RoomError::ActionNotAllowed("Change room type"));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Applies settings already accepted by [`RoomState::check_settings`].
    /// Settings that do not change anything emit nothing.
    pub fn apply_settings(
        &mut self,
        who: &Principal,
        settings: Vec<Setting>,
        now: Millis,
        fx: &mut Vec<Effect>,
    ) {
        let by = user_ref(who);
        let sys = |kind: SystemKind, msg: String| Effect::System { kind, msg, by: by.clone(), role: None };
        let mut room_updated = false;
        for s in settings {
            match s {
                Setting::RoomName(n) => {
                    if n != self.name {
                        let old = std::mem::replace(&mut self.name, n.clone());
                        self.display_name = n.clone();
                        fx.push(Effect::Renamed { old, new: n.clone() });
                        fx.push(sys(SystemKind::Renamed, n));
                    }
                }
                Setting::RoomTopic(v) => {
                    if self.topic.as_deref().unwrap_or("") != v {
                        self.topic = Some(v.clone());
                        fx.push(sys(SystemKind::TopicChanged, v));
                    }
                }
                Setting::RoomDescription(v) => {
                    if self.description.as_deref().unwrap_or("") != v {
                        self.description = Some(v.clone());
                        fx.push(sys(SystemKind::DescriptionChanged, v));
                    }
                }
                Setting::RoomAnnouncement(v) => {
                    if self.announcement.as_deref().unwrap_or("") != v {
                        self.announcement = Some(v.clone());
                        fx.push(sys(SystemKind::AnnouncementChanged, v));
                    }
                }
                Setting::ReadOnly(v) => {
                    if self.read_only != v {
                        self.read_only = v;
                        let t = if v { SystemKind::ReadOnlySet } else { SystemKind::ReadOnlyRemoved };
                        fx.push(sys(t, who.username.clone()));
                    }
                }
                Setting::JoinCode(code) => {
                    let new = (!code.is_empty()).then_some(code);
                    if self.join_code != new {
                        // Never broadcast the code itself: members who may
                        // not edit the room must not learn it from the stream.
                        let t =
                            if new.is_some() { SystemKind::JoinCodeSet } else { SystemKind::JoinCodeRemoved };
                        self.join_code = new;
                        fx.push(sys(t, String::new()));
                    }
                }
                Setting::Locked(v) => {
                    if self.locked != v {
                        self.locked = v;
                        fx.push(sys(
                            if v { SystemKind::Locked } else { SystemKind::Unlocked },
                            String::new(),
                        ));
                        room_updated = true;
                    }
                }
                Setting::MaxParticipants(v) => {
                    if self.max_participants != v {
                        self.max_participants = v;
                        let msg = v.map(|n| n.to_string()).unwrap_or_default();
                        fx.push(sys(SystemKind::MaxParticipantsChanged, msg));
                        room_updated = true;
                    }
                }
                Setting::GuestAccess(v) => {
                    if self.guest_access != v {
                        self.guest_access = v;
                        fx.push(sys(SystemKind::GuestAccessChanged, v.to_string()));
                    }
                }
                Setting::GuestChat(v) => {
                    if self.guest_chat != v {
                        self.guest_chat = v;
                        fx.push(sys(SystemKind::GuestChatChanged, v.to_string()));
                    }
                }
                Setting::RoomType(t) => {
                    if self.kind != t {
                        self.kind = t;
                        fx.push(sys(SystemKind::PrivacyChanged, t.as_str().to_owned()));
                        if t == RoomType::Private {
                            fx.push(Effect::BecamePrivate);
                        }
                    }
                }
                Setting::SystemMessages(v) => self.system_messages = v,
                Setting::Default(v) => self.default = v,
                Setting::Favorite(v) => self.featured = v,
            }
        }
        self.updated_at = now;
        if room_updated {
            fx.push(Effect::RoomUpdated);
        }
        fx.push(Effect::RoomChanged);
    }

    /// `addUserToRoom` / `addUsersToRoom`: `who` adds `target`. Returns false
    /// (and changes nothing) if the target is already a member. The lock
    /// does not apply (it only stops self-joins); capacity does.
    pub fn add_member(
        &mut self,
        who: &Principal,
        target: UserRef,
        now: Millis,
        fx: &mut Vec<Effect>,
    ) -> Result<bool, RoomError> {
        if self.kind == RoomType::Direct {
            return Err(RoomError::CantInviteDirect);
        }
        let roles = self.roles_of(&who.id);
        let may = if self.is_member(&who.id) {
            allowed(Permission::AddUserToJoinedRoom, who, roles)
        } else {
            self.kind == RoomType::Channel && allowed(Permission::AddUserToAnyCRoom, who, roles)
        };
        if !may {
            return Err(RoomError::NotAllowed);
        }
        if self.archived {
            return Err(RoomError::Archived);
        }
        if !self.active {
            return Err(RoomError::Inactive);
        }
        if self.is_member(&target.id) {
            return Ok(false);
        }
        if self.is_full() {
            return Err(RoomError::Full);
        }
        let member = Member::drawn(target, false, now, &mut self.draw);
        self.members.insert(member.user.id.clone(), member.clone());
        self.updated_at = now;
        fx.push(Effect::MembershipAdded(member.user.id.clone()));
        fx.push(Effect::System {
            kind: SystemKind::UserAdded,
            msg: member.user.username.clone(),
            by: user_ref(who),
            role: None,
        });
        fx.push(Effect::Participant { joined: true, member, at: now });
        fx.push(Effect::RoomUpdated);
        Ok(true)
    }

    /// `removeUserFromRoom`: `who` removes `target`.
    pub fn remove_by(
        &mut self,
        who: &Principal,
        target: &UserId,
        now: Millis,
        fx: &mut Vec<Effect>,
    ) -> Result<(), RoomError> {
        if self.kind == RoomType::Direct {
            return Err(RoomError::NotAllowed);
        }
        if !allowed(Permission::RemoveUser, who, self.roles_of(&who.id)) {
            return Err(RoomError::NotAllowed);
        }
        let Some(m) = self.members.get(target) else {
            return Err(RoomError::TargetNotInRoom);
        };
        if m.roles.contains(RoomRoles::OWNER) && self.owner_count() == 1 {
            return Err(RoomError::LastOwner);
        }
        self.remove_member(target, now, SystemKind::UserRemoved, Some(user_ref(who)), fx);
        Ok(())
    }

    fn owner_count(&self) -> usize {
        self.members.values().filter(|m| m.roles.contains(RoomRoles::OWNER)).count()
    }

    /// `addRoomOwner` & co. (`add`) and `removeRoomOwner` & co.
    pub fn set_role(
        &mut self,
        who: &Principal,
        target: &UserId,
        role: RoleKind,
        add: bool,
        now: Millis,
        fx: &mut Vec<Effect>,
    ) -> Result<(), RoomError> {
        if self.kind == RoomType::Direct || !allowed(role.permission(), who, self.roles_of(&who.id)) {
            return Err(RoomError::NotAllowed);
        }
        let owners = self.owner_count();
        // Guests are transient and cannot hold room roles.
        if target.is_guest() {
            return Err(RoomError::NotAllowed);
        }
        let Some(m) = self.members.get_mut(target) else {
            return Err(RoomError::TargetNotInRoom);
        };
        let has = m.roles.contains(role.bit());
        match (add, has) {
            (true, true) => return Err(RoomError::AlreadyHasRole(role)),
            (false, false) => return Err(RoomError::LacksRole(role)),
            (false, true) if role == RoleKind::Owner && owners == 1 => {
                return Err(RoomError::RemoveLastOwner);
            }
            _ => {}
        }
        if add {
            m.roles.insert(role.bit());
        } else {
            m.roles.remove(role.bit());
        }
        let user = m.user.clone();
        self.updated_at = now;
        let kind = if add { SystemKind::RoleAdded } else { SystemKind::RoleRemoved };
        fx.push(Effect::System { kind, msg: user.username.clone(), by: user_ref(who), role: Some(role) });
        fx.push(Effect::SubscriptionChanged(target.clone()));
        fx.push(Effect::RoleChanged { user, role, added: add });
        Ok(())
    }

    /// `muteUserInRoom` / `unmuteUserInRoom`. Idempotent: no change, no message.
    pub fn set_muted(
        &mut self,
        who: &Principal,
        target: &UserId,
        muted: bool,
        now: Millis,
        fx: &mut Vec<Effect>,
    ) -> Result<(), RoomError> {
        if self.kind == RoomType::Direct || !allowed(Permission::MuteUser, who, self.roles_of(&who.id)) {
            return Err(RoomError::NotAllowed);
        }
        let Some(m) = self.members.get_mut(target) else {
            return Err(RoomError::TargetNotInRoom);
        };
        if m.muted == muted {
            return Ok(());
        }
        m.muted = muted;
        let name = m.user.username.clone();
        self.updated_at = now;
        fx.push(Effect::SubscriptionChanged(target.clone()));
        let kind = if muted { SystemKind::UserMuted } else { SystemKind::UserUnmuted };
        fx.push(Effect::System { kind, msg: name, by: user_ref(who), role: None });
        fx.push(Effect::RoomChanged);
        Ok(())
    }

    /// `archiveRoom` / `unarchiveRoom`. Idempotent.
    pub fn set_archived(
        &mut self,
        who: &Principal,
        archived: bool,
        now: Millis,
        fx: &mut Vec<Effect>,
    ) -> Result<(), RoomError> {
        if self.kind == RoomType::Direct || !allowed(Permission::ArchiveRoom, who, self.roles_of(&who.id)) {
            return Err(RoomError::ActionNotAllowed(if archived {
                "Archiving room"
            } else {
                "Unarchiving room"
            }));
        }
        if self.archived == archived {
            return Ok(());
        }
        self.archived = archived;
        self.updated_at = now;
        let kind = if archived { SystemKind::Archived } else { SystemKind::Unarchived };
        fx.push(Effect::System { kind, msg: who.username.clone(), by: user_ref(who), role: None });
        fx.push(Effect::RoomChanged);
        Ok(())
    }

    /// `toggleFavorite`, `hideRoom`, `openRoom` on the caller's own membership.
    pub fn set_flag(&mut self, uid: &UserId, flag: Flag, fx: &mut Vec<Effect>) -> Result<(), RoomError> {
        self.check_flag(uid)?;
        let Some(m) = self.members.get_mut(uid) else {
            return Err(RoomError::NotInRoom);
        };
        match flag {
            Flag::Favorite(v) => m.favorite = v,
            Flag::Open(v) => m.open = v,
        }
        fx.push(Effect::SubscriptionChanged(uid.clone()));
        Ok(())
    }

    /// The check of [`RoomState::set_flag`]: only members have flags.
    pub fn check_flag(&self, uid: &UserId) -> Result<(), RoomError> {
        if self.is_member(uid) { Ok(()) } else { Err(RoomError::NotInRoom) }
    }

    /// The `sendMessage` checks, in their order: member, archived, active,
    /// read-only (unless allowed to post there), muted, then a client-chosen
    /// `id` that `known` says the room already has. Returns the sender.
    pub fn check_send(
        &self,
        who: &Principal,
        id: Option<&MessageId>,
        known: impl FnOnce(&MessageId) -> Result<bool, RoomError>,
    ) -> Result<&Member, RoomError> {
        let Some(member) = self.members.get(&who.id) else {
            return Err(RoomError::NotInRoom);
        };
        if self.archived {
            return Err(RoomError::Archived);
        }
        if !self.active {
            return Err(RoomError::Inactive);
        }
        if self.read_only && !allowed(Permission::PostReadonly, who, member.roles) {
            return Err(RoomError::ActionNotAllowed("Posting in a read-only room"));
        }
        if member.muted {
            return Err(RoomError::ActionNotAllowed("Posting while muted"));
        }
        // A guest posts only where the room says guests may (`guestChat`):
        // a meeting's chat is part of the meeting, a channel's is not theirs.
        if who.guest && !self.guest_chat {
            return Err(RoomError::ActionNotAllowed("Posting as a guest"));
        }
        if let Some(id) = id
            && known(id)?
        {
            return Err(RoomError::DuplicateMessage);
        }
        Ok(member)
    }

    /// Members may read everything; signed-in non-members may read public
    /// channels when `public_ok` (messages, documents, roles; not the
    /// per-member streams).
    pub fn can_read(&self, uid: &UserId, public_ok: bool) -> bool {
        self.is_member(uid) || (public_ok && self.kind == RoomType::Channel && !uid.is_guest())
    }

    /// The room as `uid` may see it, if they may read the room. A
    /// non-member of a room with a join code does not get the shareable
    /// code, which would let them in by `join-room` without the join code.
    pub fn view_for(&self, uid: &UserId) -> Result<RoomView<'_>, RoomError> {
        if !self.can_read(uid, true) {
            return Err(RoomError::NotAllowed);
        }
        let mut view = self.view();
        if !self.is_member(uid) && self.join_code.is_some() {
            view.code = None;
        }
        Ok(view)
    }

    /// Members holding a room role (`getRoomRoles`), if `uid` may read the
    /// room.
    pub fn role_holders(&self, uid: &UserId) -> Result<Vec<RoleHolder<'_>>, RoomError> {
        if !self.can_read(uid, true) {
            return Err(RoomError::NotAllowed);
        }
        Ok(self
            .members
            .values()
            .filter(|m| m.roles != RoomRoles::NONE)
            .map(|m| RoleHolder { room: &self.id, user: &m.user, roles: m.roles })
            .collect())
    }

    /// `getRoomParticipants`: the room and its participants, oldest seat
    /// first (a stable order for lists), each with a display name, if `uid`
    /// is a member (guests included). Never carries a guest's seat token.
    /// An ended room has no members, so it answers not-allowed through this
    /// same check.
    pub fn participant_list(&self, uid: &UserId) -> Result<ParticipantList<'_>, RoomError> {
        if !self.is_member(uid) {
            return Err(RoomError::NotAllowed);
        }
        let mut members: Vec<&Member> = self.members.values().collect();
        members.sort_by(|a, b| (a.joined_at, &a.participant_id).cmp(&(b.joined_at, &b.participant_id)));
        let participants = members
            .into_iter()
            .map(|m| ParticipantView {
                display_name: Some(m.user.name.as_ref().unwrap_or(&m.user.username).clone()),
                ..self.participant(m, None)
            })
            .collect();
        Ok(ParticipantList { room: self.view(), participants })
    }

    /// `m` as the meeting API shows a participant of this room; `left_at`
    /// is set for the `left` event (`m` may no longer be a member). Only a
    /// signed-in member can be the host.
    pub fn participant(&self, m: &Member, left_at: Option<Millis>) -> ParticipantView {
        ParticipantView {
            id: m.participant_id.clone(),
            room: self.id.clone(),
            user: (!m.guest).then(|| m.user.id.clone()),
            guest_name: m.guest.then(|| m.user.username.clone()),
            host: !m.guest && m.user.id == self.host_id,
            joined_at: m.joined_at,
            left_at,
            display_name: None,
            guest_token: None,
        }
    }

    /// The member's subscription (Rocket.Chat `subscriptions/get`), if
    /// `uid` is a member.
    pub fn subscription(&self, uid: &UserId) -> Option<SubscriptionView<'_>> {
        let m = self.members.get(uid)?;
        Some(SubscriptionView {
            room: &self.id,
            user: &m.user,
            name: &self.name,
            display_name: &self.display_name,
            kind: self.kind,
            joined_at: m.joined_at,
            updated_at: self.updated_at.max(m.joined_at),
            open: m.open,
            favorite: m.favorite,
            roles: m.roles,
        })
    }

    /// The meeting view's room status (`room-updated`).
    pub fn status(&self) -> MeetingStatus {
        MeetingStatus {
            locked: self.locked,
            active: self.active,
            max_participants: self.max_participants,
            participant_count: self.members.len(),
        }
    }

    /// The whole room, unfiltered: what the room itself publishes to its
    /// members and what `RoomCommand::Doc` answers.
    pub fn view(&self) -> RoomView<'_> {
        let direct = (self.kind == RoomType::Direct).then(|| {
            let mut usernames: Vec<&str> = self.members.values().map(|m| m.user.username.as_str()).collect();
            usernames.sort_unstable();
            DirectMembers { usernames, ids: self.members.keys().collect() }
        });
        RoomView {
            id: &self.id,
            name: &self.name,
            display_name: &self.display_name,
            kind: self.kind,
            message_count: self.message_count,
            member_count: self.members.len(),
            creator: &self.creator,
            created_at: self.created_at,
            updated_at: self.updated_at,
            read_only: self.read_only,
            default: self.default,
            system_messages: self.system_messages,
            custom_fields: &self.custom_fields,
            archived: self.archived,
            code: Some(&self.code),
            locked: self.locked,
            max_participants: self.max_participants,
            active: self.active,
            join_code_required: self.join_code.is_some(),
            guest_access: self.guest_access,
            guest_chat: self.guest_chat,
            host_id: &self.host_id,
            direct,
            topic: self.topic.as_deref(),
            description: self.description.as_deref(),
            announcement: self.announcement.as_deref(),
        }
    }
}

/// The room's clock. Every time the room hands out — a message's `ts`, the
/// room's `_updatedAt` — is later than every one before it, in the order the
/// room decides: `max(clock, previous + 1 ms)`. Wall clocks tie within a
/// millisecond, step back (NTP) and differ between cluster nodes; clients
/// page history with `ts < end` and poll with `_updatedAt > since`, which
/// lose or hide anything that shares or goes behind an earlier time.
///
/// The clock is told the time (a node's clock, or in cluster mode the clock
/// carried by the log entry, so every replica stamps the same), and never
/// reads one. The price: while a room stamps more than one thing per
/// millisecond, or after a clock ahead of the others set a time, the room's
/// times run ahead of the wall clock until it catches up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoomClock {
    /// The latest time handed out.
    last: Millis,
}

/// The time for something decided when the clock says `clock`, after
/// `previous`: strictly later than `previous`, and never before `clock`.
pub fn next_stamp(previous: Millis, clock: Millis) -> Millis {
    Millis(clock.0.max(previous.0.saturating_add(1)))
}

impl RoomClock {
    /// A clock whose latest time handed out is `last` (a restored room: the
    /// later of its `_updatedAt` and its newest message's `ts`).
    pub fn after(last: Millis) -> Self {
        RoomClock { last }
    }

    /// The latest time handed out.
    pub fn last(&self) -> Millis {
        self.last
    }

    /// The time of a command arriving at `clock`. Not recorded: a command
    /// that stamps nothing (a read) leaves the clock where it was.
    pub fn now(&self, clock: Millis) -> Millis {
        next_stamp(self.last, clock)
    }

    /// A message's `ts` in a command decided at `now`: `now` for its first
    /// message, one millisecond more for each further one.
    pub fn stamp(&mut self, now: Millis) -> Millis {
        self.last = next_stamp(self.last, now);
        self.last
    }

    /// Records a time the command set elsewhere (the room's `_updatedAt`).
    pub fn saw(&mut self, t: Millis) {
        self.last = self.last.max(t);
    }
}

/// The user as messages name them. `name` falls back to the username, so
/// `u.name` is always present for clients that display it.
pub fn user_ref(p: &Principal) -> UserRef {
    UserRef {
        id: p.id.clone(),
        username: p.username.clone(),
        name: Some(p.name.clone().unwrap_or_else(|| p.username.clone())),
    }
}

/// Rocket.Chat's default channel-name rule: `[0-9a-zA-Z-_.]+`.
pub fn valid_room_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Compares secrets without an early exit, so response timing does not tell
/// a brute-forcer how many leading characters were right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_clock_behind_or_tied_still_moves_forward() {
        let mut c = RoomClock::after(Millis(1_000));
        // Tied with the last time, then an hour behind (a skewed node's
        // entry): one millisecond later each time.
        assert_eq!(c.stamp(c.now(Millis(1_000))), Millis(1_001));
        assert_eq!(c.stamp(c.now(Millis(1_000 - 3_600_000))), Millis(1_002));
        // A clock ahead is taken as it is.
        assert_eq!(c.stamp(c.now(Millis(5_000))), Millis(5_000));
        // A read takes no time.
        assert_eq!(c.now(Millis(0)), Millis(5_001));
        assert_eq!(c.last(), Millis(5_000));
        // Two messages of one command.
        let now = c.now(Millis(5_000));
        assert_eq!((c.stamp(now), c.stamp(now)), (Millis(5_001), Millis(5_002)));
        // `_updatedAt` set to the command's time is recorded too.
        let now = c.now(Millis(9_000));
        c.saw(now);
        assert_eq!(c.now(Millis(9_000)), Millis(9_001));
        assert_eq!(next_stamp(Millis(i64::MAX), Millis(0)), Millis(i64::MAX));
    }

    proptest! {
        /// Whatever clocks the commands bring (ties, steps back, an hour
        /// off either way), message times and `_updatedAt`s are each
        /// strictly increasing, a command's time is later than everything
        /// before it and never before its clock, and every replica fed the
        /// same clocks hands out the same times. The order is the actor's:
        /// the rules set `_updatedAt` to the command's time, its messages
        /// are stamped, then the clock sees `_updatedAt`.
        #[test]
        fn stamps_strictly_increase_whatever_the_clocks(
            start in 0i64..1_000_000,
            cmds in proptest::collection::vec((-3_600_000i64..3_600_000, 0usize..4, any::<bool>()), 1..200),
        ) {
            let run = || {
                let mut c = RoomClock::after(Millis(start));
                let (mut messages, mut updates) = (Vec::new(), vec![Millis(start)]);
                let mut wall = 1_000_000i64;
                for &(skew, count, touches) in &cmds {
                    wall += 1; // the wall clock moves a little between commands
                    let clock = Millis(wall + skew);
                    let now = c.now(clock);
                    let before = messages.last().copied().unwrap_or(Millis(start)).max(*updates.last().unwrap());
                    assert!(now >= clock && now > before, "{now:?} after {before:?} at {clock:?}");
                    for i in 0..count {
                        let ts = c.stamp(now);
                        assert!(i > 0 || ts == now, "a command's first message takes its time");
                        messages.push(ts);
                    }
                    if touches {
                        updates.push(now);
                        c.saw(now);
                    }
                }
                (messages, updates)
            };
            let (messages, updates) = run();
            prop_assert!(messages.windows(2).all(|w| w[0] < w[1]), "{messages:?}");
            prop_assert!(updates.windows(2).all(|w| w[0] < w[1]), "{updates:?}");
            prop_assert_eq!((messages, updates), run());
        }
    }
}

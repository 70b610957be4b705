//! What the rules let a reader see of a room: the typed results of
//! [`RoomState`](super::RoomState)'s read rules (`view`, `view_for`,
//! `role_holders`, `participant_list`, `subscription`, `status`,
//! `participant`), borrowing the state's fields. The rules decide who may
//! see what (the join code hidden from non-members, the host flag); the
//! wire shapes of these views (Rocket.Chat's documents, the meeting API's
//! objects) are built in one place, `wire::room`. Nothing here knows JSON,
//! so renaming a wire field cannot change a rule, nor the reverse.

use super::model::{CustomFields, RoomRoles, RoomType, UserRef};
use crate::ids::{RoomCode, RoomId, UserId};
use crate::time::Millis;

/// The room as one reader may see it (Rocket.Chat's room document plus
/// roomd's meeting fields).
#[derive(Debug, Clone, PartialEq)]
pub struct RoomView<'a> {
    pub id: &'a RoomId,
    pub name: &'a str,
    pub display_name: &'a str,
    pub kind: RoomType,
    pub message_count: u64,
    /// Members now, guests included.
    pub member_count: usize,
    pub creator: &'a UserRef,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub read_only: bool,
    pub default: bool,
    pub system_messages: bool,
    /// Kept and shown as the creator gave them.
    pub custom_fields: &'a CustomFields,
    pub archived: bool,
    /// The shareable code; `None` where the reader may not have it (a
    /// non-member of a room with a join code: it would let them in by
    /// `join-room` without the join code).
    pub code: Option<&'a RoomCode>,
    pub locked: bool,
    pub max_participants: Option<u32>,
    pub active: bool,
    /// Whether `joinRoom` asks non-members for a join code (never the code).
    pub join_code_required: bool,
    pub guest_access: bool,
    pub guest_chat: bool,
    pub host_id: &'a UserId,
    /// A direct message's members; `None` for channels and groups.
    pub direct: Option<DirectMembers<'a>>,
    pub topic: Option<&'a str>,
    pub description: Option<&'a str>,
    pub announcement: Option<&'a str>,
}

/// Who a direct message is between.
#[derive(Debug, Clone, PartialEq)]
pub struct DirectMembers<'a> {
    /// Sorted, so the list reads the same whoever asks.
    pub usernames: Vec<&'a str>,
    /// In the members' own order.
    pub ids: Vec<&'a UserId>,
}

/// One member as the meeting API shows it. Owned (a copy of a few short
/// fields), so that `join-room`'s reply can carry it out of the room.
#[derive(Debug, Clone, PartialEq)]
pub struct ParticipantView {
    /// The participant id, stable for the membership.
    pub id: String,
    pub room: RoomId,
    /// A signed-in member's user id; `None` for a guest.
    pub user: Option<UserId>,
    /// A guest's chosen name; `None` for a signed-in member.
    pub guest_name: Option<String>,
    /// The room's host (a signed-in member, never a guest).
    pub host: bool,
    pub joined_at: Millis,
    /// Set for the `left` event; `None` while the member is in.
    pub left_at: Option<Millis>,
    /// A display name, for lists (a user's id alone means nothing to a
    /// guest); `None` in events.
    pub display_name: Option<String>,
    /// The seat's token, only in the reply to the guest who holds it.
    pub guest_token: Option<String>,
}

/// `join-room`'s answer: the caller's seat, the room's position when it
/// was taken, and for a listening socket that asked to resume, whether
/// everything since its last position was replayed.
#[derive(Debug, Clone, PartialEq)]
pub struct Seated {
    pub participant: ParticipantView,
    pub seq: u64,
    pub recovered: Option<bool>,
}

/// `getRoomParticipants`: the room and its participants, oldest seat first.
#[derive(Debug, Clone, PartialEq)]
pub struct ParticipantList<'a> {
    pub room: RoomView<'a>,
    pub participants: Vec<ParticipantView>,
}

/// One member's subscription (Rocket.Chat `subscriptions/get`).
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionView<'a> {
    pub room: &'a RoomId,
    pub user: &'a UserRef,
    pub name: &'a str,
    pub display_name: &'a str,
    pub kind: RoomType,
    pub joined_at: Millis,
    /// The later of the room's last change and the member's join.
    pub updated_at: Millis,
    pub open: bool,
    pub favorite: bool,
    pub roles: RoomRoles,
}

/// A member holding a room role (`getRoomRoles`).
#[derive(Debug, Clone, PartialEq)]
pub struct RoleHolder<'a> {
    pub room: &'a RoomId,
    pub user: &'a UserRef,
    pub roles: RoomRoles,
}

/// The meeting view's room status (`room-updated`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeetingStatus {
    pub locked: bool,
    pub active: bool,
    pub max_participants: Option<u32>,
    pub participant_count: usize,
}

/// A [`RoomView`] that owns its fields, so a room's answer can leave the
/// room (`getRoomById`, `getRoomParticipants`, the lobby's new room): the
/// reader's typed result, shaped by each door from [`RoomInfo::view`].
#[derive(Debug, Clone, PartialEq)]
pub struct RoomInfo {
    pub id: RoomId,
    pub name: String,
    pub display_name: String,
    pub kind: RoomType,
    pub message_count: u64,
    pub member_count: usize,
    pub creator: UserRef,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub read_only: bool,
    pub default: bool,
    pub system_messages: bool,
    pub custom_fields: CustomFields,
    pub archived: bool,
    pub code: Option<RoomCode>,
    pub locked: bool,
    pub max_participants: Option<u32>,
    pub active: bool,
    pub join_code_required: bool,
    pub guest_access: bool,
    pub guest_chat: bool,
    pub host_id: UserId,
    /// A direct message's members: usernames (sorted) and ids.
    pub direct: Option<(Vec<String>, Vec<UserId>)>,
    pub topic: Option<String>,
    pub description: Option<String>,
    pub announcement: Option<String>,
}

impl From<&RoomView<'_>> for RoomInfo {
    fn from(v: &RoomView<'_>) -> Self {
        RoomInfo {
            id: v.id.clone(),
            name: v.name.to_owned(),
            display_name: v.display_name.to_owned(),
            kind: v.kind,
            message_count: v.message_count,
            member_count: v.member_count,
            creator: v.creator.clone(),
            created_at: v.created_at,
            updated_at: v.updated_at,
            read_only: v.read_only,
            default: v.default,
            system_messages: v.system_messages,
            custom_fields: v.custom_fields.clone(),
            archived: v.archived,
            code: v.code.cloned(),
            locked: v.locked,
            max_participants: v.max_participants,
            active: v.active,
            join_code_required: v.join_code_required,
            guest_access: v.guest_access,
            guest_chat: v.guest_chat,
            host_id: v.host_id.clone(),
            direct: v.direct.as_ref().map(|d| {
                (
                    d.usernames.iter().map(|u| (*u).to_owned()).collect(),
                    d.ids.iter().map(|id| (*id).clone()).collect(),
                )
            }),
            topic: v.topic.map(str::to_owned),
            description: v.description.map(str::to_owned),
            announcement: v.announcement.map(str::to_owned),
        }
    }
}

impl RoomInfo {
    /// Borrowed back as the view the wire shapes read.
    pub fn view(&self) -> RoomView<'_> {
        RoomView {
            id: &self.id,
            name: &self.name,
            display_name: &self.display_name,
            kind: self.kind,
            message_count: self.message_count,
            member_count: self.member_count,
            creator: &self.creator,
            created_at: self.created_at,
            updated_at: self.updated_at,
            read_only: self.read_only,
            default: self.default,
            system_messages: self.system_messages,
            custom_fields: &self.custom_fields,
            archived: self.archived,
            code: self.code.as_ref(),
            locked: self.locked,
            max_participants: self.max_participants,
            active: self.active,
            join_code_required: self.join_code_required,
            guest_access: self.guest_access,
            guest_chat: self.guest_chat,
            host_id: &self.host_id,
            direct: self.direct.as_ref().map(|(names, ids)| DirectMembers {
                usernames: names.iter().map(String::as_str).collect(),
                ids: ids.iter().collect(),
            }),
            topic: self.topic.as_deref(),
            description: self.description.as_deref(),
            announcement: self.announcement.as_deref(),
        }
    }
}

/// [`ParticipantList`] owning its room, to leave the room as an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Participants {
    pub room: RoomInfo,
    pub participants: Vec<ParticipantView>,
}

impl From<ParticipantList<'_>> for Participants {
    fn from(l: ParticipantList<'_>) -> Self {
        Participants { room: RoomInfo::from(&l.room), participants: l.participants }
    }
}

/// A public channel as a join leaves it: the room and its signed-in
/// members' ids (guests have no account to list).
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelRoom {
    pub room: RoomInfo,
    pub members: Vec<UserId>,
}

/// How a join of a public channel by name or id went (Slack's
/// `channels.join`, `conversations.join`).
#[derive(Debug, Clone, PartialEq)]
pub enum ChannelEntry {
    /// No room had the name: the caller created it and is its only member.
    Created(ChannelRoom),
    /// The caller joined it now.
    Joined(ChannelRoom),
    /// The caller was a member already; `before` is the room as read
    /// before the join was tried.
    AlreadyIn { before: Box<RoomInfo>, now: ChannelRoom },
}

/// [`RoleHolder`] owning its fields, to leave the room as an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleEntry {
    pub room: RoomId,
    pub user: UserRef,
    pub roles: RoomRoles,
}

impl RoleEntry {
    pub fn view(&self) -> RoleHolder<'_> {
        RoleHolder { room: &self.room, user: &self.user, roles: self.roles }
    }
}

/// [`SubscriptionView`] owning its fields, to leave the room as an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionInfo {
    pub room: RoomId,
    pub user: UserRef,
    pub name: String,
    pub display_name: String,
    pub kind: RoomType,
    pub joined_at: Millis,
    pub updated_at: Millis,
    pub open: bool,
    pub favorite: bool,
    pub roles: RoomRoles,
}

impl SubscriptionInfo {
    pub fn view(&self) -> SubscriptionView<'_> {
        SubscriptionView {
            room: &self.room,
            user: &self.user,
            name: &self.name,
            display_name: &self.display_name,
            kind: self.kind,
            joined_at: self.joined_at,
            updated_at: self.updated_at,
            open: self.open,
            favorite: self.favorite,
            roles: self.roles,
        }
    }
}

impl From<&SubscriptionView<'_>> for SubscriptionInfo {
    fn from(s: &SubscriptionView<'_>) -> Self {
        SubscriptionInfo {
            room: s.room.clone(),
            user: s.user.clone(),
            name: s.name.to_owned(),
            display_name: s.display_name.to_owned(),
            kind: s.kind,
            joined_at: s.joined_at,
            updated_at: s.updated_at,
            open: s.open,
            favorite: s.favorite,
            roles: s.roles,
        }
    }
}

/// The read rules' answers as they leave the room.
impl super::RoomState {
    /// The whole room, unfiltered ([`RoomState::view`](super::RoomState::view)).
    pub fn info(&self) -> RoomInfo {
        RoomInfo::from(&self.view())
    }

    /// The room as `uid` may see it ([`RoomState::view_for`](super::RoomState::view_for)).
    pub fn info_for(&self, uid: &UserId) -> Result<RoomInfo, super::RoomError> {
        self.view_for(uid).map(|v| RoomInfo::from(&v))
    }

    /// The room for `uid`'s room list: `None` unless a member.
    pub fn member_info(&self, uid: &UserId) -> Option<RoomInfo> {
        self.is_member(uid).then(|| RoomInfo::from(&self.view()))
    }

    /// `getRoomRoles` ([`RoomState::role_holders`](super::RoomState::role_holders)).
    pub fn role_entries(&self, uid: &UserId) -> Result<Vec<RoleEntry>, super::RoomError> {
        self.role_holders(uid).map(|hs| {
            hs.iter()
                .map(|h| RoleEntry { room: h.room.clone(), user: h.user.clone(), roles: h.roles })
                .collect()
        })
    }

    /// The member's subscription ([`RoomState::subscription`](super::RoomState::subscription)).
    pub fn subscription_info(&self, uid: &UserId) -> Option<SubscriptionInfo> {
        self.subscription(uid).map(|s| SubscriptionInfo::from(&s))
    }

    /// `getRoomParticipants` ([`RoomState::participant_list`](super::RoomState::participant_list)).
    pub fn participants(&self, uid: &UserId) -> Result<Participants, super::RoomError> {
        self.participant_list(uid).map(Participants::from)
    }
}

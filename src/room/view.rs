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

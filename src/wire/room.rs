//! The wire shapes of a room: Rocket.Chat's room and subscription
//! documents, `getRoomRoles` entries, and the meeting API's participants and
//! status, each built from a typed view the rules return
//! ([`crate::room::view`]). The one place that turns what the rules let a
//! reader see into JSON; it decides nothing about who sees what.

use crate::ids::UserId;
use crate::room::RoomError;
use crate::room::RoomState;
use crate::room::view::{
    MeetingStatus, ParticipantList, ParticipantView, RoleHolder, RoomView, SubscriptionView,
};
use serde_json::{Value, json};

/// The room document in Rocket.Chat's shape plus roomd's fields. A hidden
/// code leaves the `code` key out.
pub fn room_doc(v: &RoomView<'_>) -> Value {
    let mut doc = json!({
        "_id": v.id,
        "name": v.name,
        "fname": v.display_name,
        "t": v.kind.as_str(),
        "msgs": v.message_count,
        "usersCount": v.member_count,
        "u": {"_id": v.creator.id, "username": v.creator.username},
        "ts": v.created_at,
        "ro": v.read_only,
        "default": v.default,
        "sysMes": v.system_messages,
        "_updatedAt": v.updated_at,
        "customFields": v.custom_fields,
        "archived": v.archived,
        "locked": v.locked,
        "maxParticipants": v.max_participants,
        "active": v.active,
        "joinCodeRequired": v.join_code_required,
        "guestAccess": v.guest_access,
        "guestChat": v.guest_chat,
        "hostId": v.host_id,
    });
    if let Value::Object(o) = &mut doc {
        if let Some(code) = v.code {
            o.insert("code".into(), json!(code));
        }
        if let Some(d) = &v.direct {
            o.insert("usernames".into(), json!(d.usernames));
            o.insert("uids".into(), json!(d.ids));
        }
        for (k, text) in
            [("topic", v.topic), ("description", v.description), ("announcement", v.announcement)]
        {
            if let Some(text) = text {
                o.insert(k.into(), Value::from(text));
            }
        }
    }
    doc
}

/// The meeting API's participant object.
pub fn participant(p: &ParticipantView<'_>) -> Value {
    let mut v = json!({
        "id": p.id,
        "roomId": p.room,
        "userId": p.user,
        "guestName": p.guest_name,
        "isActive": p.left_at.is_none(),
        "isHost": p.host,
        "joinedAt": p.joined_at.to_iso8601(),
        "leftAt": p.left_at.map(|t| t.to_iso8601()),
    });
    if let Value::Object(o) = &mut v {
        if let Some(name) = p.display_name {
            o.insert("name".into(), Value::from(name));
        }
        if let Some(token) = p.guest_token {
            o.insert("guestToken".into(), Value::from(token));
        }
    }
    v
}

/// `getRoomParticipants`' answer: the room's summary and its participants.
pub fn participant_list(l: &ParticipantList<'_>) -> Value {
    let r = &l.room;
    json!({
        "room": {
            "_id": r.id,
            "name": r.name,
            "code": r.code,
            "locked": r.locked,
            "active": r.active,
            "maxParticipants": r.max_participants,
            "participantCount": r.member_count,
            "guestChat": r.guest_chat,
        },
        "participants": l.participants.iter().map(participant).collect::<Vec<_>>(),
    })
}

/// The subscription document (Rocket.Chat `subscriptions/get`).
pub fn subscription(s: &SubscriptionView<'_>) -> Value {
    json!({
        "_id": format!("{}{}", s.room, s.user.id),
        "rid": s.room,
        "u": {"_id": s.user.id, "username": s.user.username},
        "name": s.name,
        "fname": s.display_name,
        "t": s.kind.as_str(),
        "ts": s.joined_at,
        "ls": s.joined_at,
        "_updatedAt": s.updated_at,
        "open": s.open,
        "alert": false,
        "unread": 0,
        "f": s.favorite,
        "roles": s.roles.names(),
    })
}

/// One `getRoomRoles` entry.
pub fn role_entry(r: &RoleHolder<'_>) -> Value {
    json!({"rid": r.room, "u": r.user, "roles": r.roles.names()})
}

/// The `room-updated` payload of the meeting view.
pub fn meeting_status(s: &MeetingStatus) -> Value {
    json!({
        "isLocked": s.locked,
        "isActive": s.active,
        "maxParticipants": s.max_participants,
        "participantCount": s.participant_count,
    })
}

/// A room's documents by the names its callers (the actor, the lobby, the
/// ended room, the model test) ask for them: each runs the read rule in
/// `room/state.rs` (who may see what) and shapes its typed result here.
impl RoomState {
    /// The whole room document, unfiltered.
    pub fn to_doc(&self) -> Value {
        room_doc(&self.view())
    }

    /// The room document as `uid` may see it ([`RoomState::view_for`]).
    pub fn doc_for(&self, uid: &UserId) -> Result<Value, RoomError> {
        self.view_for(uid).map(|v| room_doc(&v))
    }

    /// `getRoomRoles` entries ([`RoomState::role_holders`]).
    pub fn roles_for(&self, uid: &UserId) -> Result<Vec<Value>, RoomError> {
        self.role_holders(uid).map(|hs| hs.iter().map(role_entry).collect())
    }

    /// `getRoomParticipants` ([`RoomState::participant_list`]).
    pub fn participants_for(&self, uid: &UserId) -> Result<Value, RoomError> {
        self.participant_list(uid).map(|l| participant_list(&l))
    }

    /// The member's subscription document ([`RoomState::subscription`]).
    pub fn subscription_doc(&self, uid: &UserId) -> Option<Value> {
        self.subscription(uid).map(|s| subscription(&s))
    }

    /// The `room-updated` payload ([`RoomState::status`]).
    pub fn meeting_status(&self) -> Value {
        meeting_status(&self.status())
    }
}

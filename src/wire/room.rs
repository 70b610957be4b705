//! The wire shapes of a room: Rocket.Chat's room and subscription
//! documents, `getRoomRoles` entries, and the meeting API's participants and
//! status, each built from a typed view the rules return
//! ([`crate::room::view`]). The one place that turns what the rules let a
//! reader see into JSON; it decides nothing about who sees what.

use crate::ids::{RoomId, UserId};
use crate::room::view::{
    MeetingStatus, ParticipantList, ParticipantView, Participants, RoleHolder, RoomInfo, RoomView, Seated,
    SubscriptionView,
};
use crate::room::{Message, RoomState, RoomType, UserRef};
use crate::time::Millis;
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

/// A creation's answer from DDP's `createChannel`/`createPrivateGroup` and
/// Socket.IO's `create-room`: the room document as its creator sees it,
/// plus `rid` and `inserted`.
pub fn created_room(info: &RoomInfo) -> Value {
    let mut doc = room_doc(&info.view());
    if let Value::Object(o) = &mut doc {
        o.insert("rid".into(), Value::from(info.id.as_str()));
        o.insert("inserted".into(), Value::Bool(true));
    }
    doc
}

/// A message as a method returns it (Rocket.Chat's message document, the
/// same shape the message streams carry).
pub fn message(m: &Message) -> Value {
    // Our own types always serialise; the `null` fallback is unreachable.
    serde_json::to_value(m).unwrap_or(Value::Null)
}

/// A `loadHistory`/`loadMissedMessages`/`channels.history` page's
/// messages, in the page's order. Built as `Value`s (sorted keys), the
/// shape these answers have always had, unlike the streams' frames.
pub fn history(messages: &[std::sync::Arc<Message>]) -> Vec<Value> {
    messages.iter().map(|m| message(m)).collect()
}

/// The meeting API's participant object.
pub fn participant(p: &ParticipantView) -> Value {
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
        if let Some(name) = &p.display_name {
            o.insert("name".into(), Value::from(name.as_str()));
        }
        if let Some(token) = &p.guest_token {
            o.insert("guestToken".into(), Value::from(token.as_str()));
        }
    }
    v
}

/// `join-room`'s answer: the participant with the room's position, and
/// `recovered` when the socket asked to resume.
pub fn seated(s: &Seated) -> Value {
    let mut v = participant(&s.participant);
    if let Value::Object(o) = &mut v {
        o.insert("seq".into(), Value::from(s.seq));
        if let Some(r) = s.recovered {
            o.insert("recovered".into(), Value::from(r));
        }
    }
    v
}

/// A `joined`/`left` event's participant, with the event's position.
pub fn participant_event(p: &ParticipantView, seq: u64) -> Value {
    with_seq(participant(p), seq)
}

/// A `room-updated` event's status, with the event's position.
pub fn meeting_status_event(s: &MeetingStatus, seq: u64) -> Value {
    with_seq(meeting_status(s), seq)
}

/// The meeting view's `room-ended` event.
pub fn room_ended(room: &RoomId, at: Millis, seq: u64) -> Value {
    json!({"roomId": room, "endedAt": at.to_iso8601(), "seq": seq})
}

/// A user's message as the meeting view's `message` event: plain ids and
/// an ISO time, like the participant objects, rather than Rocket.Chat's
/// document.
pub fn meeting_message(m: &Message, seq: u64) -> Value {
    json!({
        "id": m.id,
        "roomId": m.rid,
        "msg": m.msg,
        "ts": m.ts.to_iso8601(),
        "user": {"id": m.u.id, "username": m.u.username, "name": m.u.name},
        "seq": seq,
    })
}

/// The length of [`meeting_message`]'s JSON, counted from the message's
/// fields (each string's escaped length, no document built): what the
/// replay window charges a message it keeps unrendered. Keys and
/// punctuation are fixed; an object's length does not depend on its key
/// order. `room::replay`'s tests check it against the rendering.
pub fn meeting_message_len(m: &Message, seq: u64) -> usize {
    const FIXED: usize = r#"{"id":,"msg":,"roomId":,"seq":,"ts":,"user":{"id":,"name":,"username":}}"#.len();
    // Years 0000 to 9999 print as `YYYY-MM-DDTHH:MM:SS.mmmZ`, no escapes.
    const ISO_RANGE: std::ops::RangeInclusive<i64> = -62_167_219_200_000..=253_402_300_799_999;
    let ts = if ISO_RANGE.contains(&m.ts.0) { 24 } else { m.ts.to_iso8601().len() } + 2;
    FIXED
        + crate::wire::json_len(m.id.as_str())
        + crate::wire::json_len(&m.msg)
        + crate::wire::json_len(m.rid.as_str())
        + crate::wire::json_len(&seq)
        + ts
        + crate::wire::json_len(m.u.id.as_str())
        + crate::wire::json_len(&m.u.name)
        + crate::wire::json_len(&m.u.username)
}

/// What `__my_messages__` tells about the room beside each message.
pub fn my_message_meta(kind: RoomType, name: &str) -> Value {
    json!({
        "roomParticipant": true,
        "roomType": kind.as_str(),
        "roomName": name,
    })
}

/// The room a member lost, as `rooms-changed` `removed` names it.
pub fn room_gone(room: &RoomId) -> Value {
    json!({"_id": room})
}

/// The subscription a member lost, as `subscriptions-changed` `removed`
/// names it.
pub fn subscription_gone(room: &RoomId, uid: &UserId) -> Value {
    json!({"_id": format!("{room}{uid}"), "rid": room, "u": {"_id": uid}})
}

/// A `roles-change` entry: `role` granted (`added`) or revoked in `room`.
pub fn role_change(room: &RoomId, user: &UserRef, role: &str, added: bool) -> Value {
    json!({
        "type": if added { "added" } else { "removed" },
        "_id": role,
        "u": user,
        "scope": room,
    })
}

/// Adds an event's position to its payload object.
fn with_seq(mut v: Value, seq: u64) -> Value {
    if let Value::Object(o) = &mut v {
        o.insert("seq".into(), Value::from(seq));
    }
    v
}

/// `getRoomParticipants`' answer: the room's summary and its participants.
pub fn participant_list(l: &ParticipantList<'_>) -> Value {
    participants_of(&l.room, &l.participants)
}

/// [`participant_list`] of a room's answer.
pub fn participants(p: &Participants) -> Value {
    participants_of(&p.room.view(), &p.participants)
}

fn participants_of(r: &RoomView<'_>, participants: &[ParticipantView]) -> Value {
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
        "participants": participants.iter().map(participant).collect::<Vec<_>>(),
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

    /// The member's subscription document ([`RoomState::subscription`]).
    pub fn subscription_doc(&self, uid: &UserId) -> Option<Value> {
        self.subscription(uid).map(|s| subscription(&s))
    }

    /// The `room-updated` payload ([`RoomState::status`]).
    pub fn meeting_status(&self) -> Value {
        meeting_status(&self.status())
    }
}

#[cfg(test)]
mod tests {
    //! The documents' exact bytes, taken from the shapes the room core
    //! built before they moved here (issue 18): a change to a key or a
    //! value is a change to the wire, which the protocol docs must follow.
    use super::*;
    use crate::ids::{RoomCode, RoomId};
    use crate::permissions::Principal;
    use crate::room::{CreateOptions, Member, RoomRoles, RoomType, SeatToken, UserRef};
    use crate::time::Millis;

    fn member(id: &str, guest: bool, at: i64, pid: &str) -> Member {
        Member {
            user: UserRef {
                id: UserId(id.into()),
                username: id.into(),
                name: (!guest).then(|| format!("N {id}")),
            },
            guest,
            roles: RoomRoles::NONE,
            participant_id: pid.into(),
            joined_at: Millis(at),
            muted: false,
            favorite: true,
            open: false,
            guest_token: guest.then(|| SeatToken::from_secret("tok".into())),
        }
    }

    /// A locked channel with a join code, a host, a user and a guest.
    fn room() -> RoomState {
        let host = Principal {
            id: UserId("host".into()),
            username: "host".into(),
            name: Some("N host".into()),
            admin: false,
            bot: false,
            guest: false,
        };
        let mut opts = CreateOptions {
            read_only: true,
            max_participants: Some(7),
            locked: true,
            guest_access: true,
            ..Default::default()
        };
        opts.custom_fields.insert("dept".into(), json!({"n": 1, "z": [1, "a"]}));
        let code = RoomCode("abc-def-ghi".into());
        let mut s = RoomState::new(
            RoomId("rid1".into()),
            "room-a".into(),
            RoomType::Channel,
            code,
            &host,
            vec![],
            opts,
            Millis(1000),
        );
        if let Some(m) = s.members.get_mut(&host.id) {
            m.participant_id = "p0".into();
        }
        s.members.insert(UserId("bob".into()), member("bob", false, 2000, "p1"));
        s.members.insert(UserId("guest-x".into()), member("guest-x", true, 3000, "p2"));
        s.join_code = Some("sec".into());
        s.topic = Some("t\"opic".into());
        s.announcement = Some("ann".into());
        s.message_count = 9;
        s.updated_at = Millis(2500);
        s
    }

    #[test]
    fn a_non_member_sees_the_room_without_its_code() {
        let got = room().info_for(&UserId("stranger".into())).map(|i| room_doc(&i.view()).to_string());
        let want = r#"{"_id":"rid1","_updatedAt":{"$date":2500},"active":true,"announcement":"ann","archived":false,"customFields":{"dept":{"n":1,"z":[1,"a"]}},"default":false,"fname":"room-a","guestAccess":true,"guestChat":false,"hostId":"host","joinCodeRequired":true,"locked":true,"maxParticipants":7,"msgs":9,"name":"room-a","ro":true,"sysMes":true,"t":"c","topic":"t\"opic","ts":{"$date":1000},"u":{"_id":"host","username":"host"},"usersCount":3}"#;
        assert_eq!(got.as_deref(), Ok(want));
        // A member gets the same document with the code.
        let member = room().info_for(&UserId("bob".into())).map(|i| room_doc(&i.view())["code"].clone());
        assert_eq!(member, Ok(json!("abc-def-ghi")));
    }

    #[test]
    fn participants_subscription_and_a_direct_room_keep_their_shapes() {
        let s = room();
        let got = s.participants(&UserId("guest-x".into())).map(|p| participants(&p).to_string());
        let want = r#"{"participants":[{"guestName":null,"id":"p0","isActive":true,"isHost":true,"joinedAt":"1970-01-01T00:00:01.000Z","leftAt":null,"name":"N host","roomId":"rid1","userId":"host"},{"guestName":null,"id":"p1","isActive":true,"isHost":false,"joinedAt":"1970-01-01T00:00:02.000Z","leftAt":null,"name":"N bob","roomId":"rid1","userId":"bob"},{"guestName":"guest-x","id":"p2","isActive":true,"isHost":false,"joinedAt":"1970-01-01T00:00:03.000Z","leftAt":null,"name":"guest-x","roomId":"rid1","userId":null}],"room":{"_id":"rid1","active":true,"code":"abc-def-ghi","guestChat":false,"locked":true,"maxParticipants":7,"name":"room-a","participantCount":3}}"#;
        assert_eq!(got.as_deref(), Ok(want));
        let got = s.subscription_info(&UserId("bob".into())).map(|i| subscription(&i.view()).to_string());
        assert_eq!(got, s.subscription_doc(&UserId("bob".into())).map(|v| v.to_string()));
        let want = r#"{"_id":"rid1bob","_updatedAt":{"$date":2500},"alert":false,"f":true,"fname":"room-a","ls":{"$date":2000},"name":"room-a","open":false,"rid":"rid1","roles":[],"t":"c","ts":{"$date":2000},"u":{"_id":"bob","username":"bob"},"unread":0}"#;
        assert_eq!(got.as_deref(), Some(want));
        let mut d = s.clone();
        d.kind = RoomType::Direct;
        d.members.retain(|uid, _| uid.as_str() == "host");
        d.description = Some("d".into());
        let doc = room_doc(&d.info().view());
        assert_eq!(doc, d.to_doc());
        assert_eq!(
            (&doc["usernames"], &doc["uids"], &doc["description"]),
            (&json!(["host"]), &json!(["host"]), &json!("d"))
        );
    }

    #[test]
    fn a_guest_gets_its_token_and_a_leaver_its_time() {
        let s = room();
        let m = &s.members[&UserId("guest-x".into())];
        let token = m.guest_token.as_ref().and_then(|t| t.secret()).map(str::to_owned);
        let p = ParticipantView { guest_token: token, ..s.participant(m, None) };
        let resumed = seated(&Seated { participant: p.clone(), seq: 7, recovered: Some(true) });
        let want = r#"{"guestName":"guest-x","guestToken":"tok","id":"p2","isActive":true,"isHost":false,"joinedAt":"1970-01-01T00:00:03.000Z","leftAt":null,"recovered":true,"roomId":"rid1","seq":7,"userId":null}"#;
        assert_eq!(resumed.to_string(), want);
        assert_eq!(seated(&Seated { participant: p, seq: 7, recovered: None }).get("recovered"), None);
        let left = participant(&s.participant(m, Some(Millis(4000))));
        let want = r#"{"guestName":"guest-x","id":"p2","isActive":false,"isHost":false,"joinedAt":"1970-01-01T00:00:03.000Z","leftAt":"1970-01-01T00:00:04.000Z","roomId":"rid1","userId":null}"#;
        assert_eq!(left.to_string(), want);
    }

    #[test]
    fn event_payloads_keep_their_shapes() {
        let rid = RoomId("rid1".into());
        let u = UserRef { id: UserId("bob".into()), username: "bob".into(), name: Some("Bob".into()) };
        let ended = room_ended(&rid, Millis(4000), 12).to_string();
        assert_eq!(ended, r#"{"endedAt":"1970-01-01T00:00:04.000Z","roomId":"rid1","seq":12}"#);
        let m = Message::user("m1".into(), &rid, "hi".into(), u.clone(), None, Millis(5000));
        let want = r#"{"id":"m1","msg":"hi","roomId":"rid1","seq":13,"ts":"1970-01-01T00:00:05.000Z","user":{"id":"bob","name":"Bob","username":"bob"}}"#;
        assert_eq!(meeting_message(&m, 13).to_string(), want);
        let meta = my_message_meta(RoomType::Private, "g").to_string();
        assert_eq!(meta, r#"{"roomName":"g","roomParticipant":true,"roomType":"p"}"#);
        let gone = subscription_gone(&rid, &u.id).to_string();
        assert_eq!(gone, r#"{"_id":"rid1bob","rid":"rid1","u":{"_id":"bob"}}"#);
        let role = role_change(&rid, &u, "owner", false).to_string();
        let want = r#"{"_id":"owner","scope":"rid1","type":"removed","u":{"_id":"bob","name":"Bob","username":"bob"}}"#;
        assert_eq!(role, want);
        let status =
            MeetingStatus { locked: false, active: true, max_participants: None, participant_count: 2 };
        let want =
            r#"{"isActive":true,"isLocked":false,"maxParticipants":null,"participantCount":2,"seq":3}"#;
        assert_eq!(meeting_status_event(&status, 3).to_string(), want);
    }
}

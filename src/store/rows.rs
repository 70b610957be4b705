//! Stored rows: the durable shape of rooms, members, messages and users,
//! apart from the domain types (`room::model`, `room::state`) and from the
//! wire frames (`wire`). Renaming a domain field or a wire field cannot
//! change what is on disk; only a new row version here can.
//!
//! Versioning: each row type carries its version in its name. Schema
//! versions 1 to 4 (`PRAGMA user_version`) all hold V1 rows, as JSON in the
//! `doc` columns; v4 added a table (`guest_seats`, [`GuestSeatRowV1`]), not
//! a new shape of an old row. A future shape gets a `…V2` struct, a migration in
//! `store::sqlite::MIGRATIONS` (or a decoder that accepts both), and keeps
//! V1 for reading old data directories.
//!
//! The V1 JSON is byte-for-byte what roomd wrote before these types
//! existed (field names, order, `null`s and omissions), which
//! `tests/it/store_rows.rs` checks against rows of that era.

use crate::ids::{MessageId, RoomCode, RoomId, UserId};
use crate::room::{Member, Message, RoomRoles, RoomState, RoomType, SeatToken, UserRef};
use crate::time::Millis;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::HashMap;

/// Dates are stored as EJSON `{"$date": ms}`.
mod date {
    use crate::time::Millis;
    use serde::ser::SerializeMap;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(m: &Millis, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(1))?;
        map.serialize_entry("$date", &m.0)?;
        map.end()
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Millis, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        crate::time::parse_date(&v).ok_or_else(|| serde::de::Error::custom("expected {\"$date\": <ms>}"))
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A user as stored in the `users` table and embedded in other rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRowV1 {
    #[serde(rename = "_id")]
    pub id: UserId,
    pub username: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl From<&UserRef> for UserRowV1 {
    fn from(u: &UserRef) -> Self {
        UserRowV1 { id: u.id.clone(), username: u.username.clone(), name: u.name.clone() }
    }
}

impl From<UserRowV1> for UserRef {
    fn from(r: UserRowV1) -> Self {
        UserRef { id: r.id, username: r.username, name: r.name }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoomTypeV1 {
    #[serde(rename = "c")]
    Channel,
    #[serde(rename = "p")]
    Private,
    #[serde(rename = "d")]
    Direct,
}

impl From<RoomType> for RoomTypeV1 {
    fn from(t: RoomType) -> Self {
        match t {
            RoomType::Channel => RoomTypeV1::Channel,
            RoomType::Private => RoomTypeV1::Private,
            RoomType::Direct => RoomTypeV1::Direct,
        }
    }
}

impl From<RoomTypeV1> for RoomType {
    fn from(t: RoomTypeV1) -> Self {
        match t {
            RoomTypeV1::Channel => RoomType::Channel,
            RoomTypeV1::Private => RoomType::Private,
            RoomTypeV1::Direct => RoomType::Direct,
        }
    }
}

/// A room's settings and metadata (`rooms.doc`); members and messages are
/// rows of their own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomRowV1 {
    pub id: RoomId,
    pub name: String,
    pub fname: String,
    pub t: RoomTypeV1,
    pub code: RoomCode,
    pub creator: UserRowV1,
    pub host_id: UserId,
    #[serde(with = "date")]
    pub ts: Millis,
    #[serde(with = "date")]
    pub updated_at: Millis,
    pub ro: bool,
    pub archived: bool,
    pub join_code: Option<String>,
    pub locked: bool,
    pub max_participants: Option<u32>,
    pub active: bool,
    pub guest_access: bool,
    /// Absent in rows written before the setting existed: off. Written only
    /// when on, so a room without it keeps the bytes older roomd wrote.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub guest_chat: bool,
    pub custom_fields: Map<String, Value>,
    /// Written for compatibility; on restore the count of stored messages
    /// wins.
    pub msgs: u64,
    /// The room's latest event position (`RoomState::seq`). Absent in rows
    /// written before positions existed (and while it is 0): 0. The room
    /// row is rewritten whenever the position moves, in the same commit as
    /// the events, so a restart resumes after every number handed out.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub seq: u64,
    pub default: bool,
    pub sys_mes: bool,
    pub featured: bool,
    pub topic: Option<String>,
    pub description: Option<String>,
    pub announcement: Option<String>,
}

impl From<&RoomState> for RoomRowV1 {
    fn from(s: &RoomState) -> Self {
        RoomRowV1 {
            id: s.id.clone(),
            name: s.name.clone(),
            fname: s.display_name.clone(),
            t: s.kind.into(),
            code: s.code.clone(),
            creator: UserRowV1::from(&s.creator),
            host_id: s.host_id.clone(),
            ts: s.created_at,
            updated_at: s.updated_at,
            ro: s.read_only,
            archived: s.archived,
            join_code: s.join_code.clone(),
            locked: s.locked,
            max_participants: s.max_participants,
            active: s.active,
            guest_access: s.guest_access,
            guest_chat: s.guest_chat,
            custom_fields: s.custom_fields.clone(),
            msgs: s.message_count,
            seq: s.seq,
            default: s.default,
            sys_mes: s.system_messages,
            featured: s.featured,
            topic: s.topic.clone(),
            description: s.description.clone(),
            announcement: s.announcement.clone(),
        }
    }
}

impl From<RoomRowV1> for RoomState {
    /// The room without members (they are restored from their own rows).
    fn from(r: RoomRowV1) -> Self {
        RoomState {
            draw: crate::ids::Ids::random(),
            id: r.id,
            name: r.name,
            display_name: r.fname,
            kind: r.t.into(),
            code: r.code,
            creator: r.creator.into(),
            host_id: r.host_id,
            created_at: r.ts,
            updated_at: r.updated_at,
            read_only: r.ro,
            archived: r.archived,
            join_code: r.join_code,
            locked: r.locked,
            max_participants: r.max_participants,
            active: r.active,
            guest_access: r.guest_access,
            guest_chat: r.guest_chat,
            custom_fields: r.custom_fields,
            message_count: r.msgs,
            seq: r.seq,
            default: r.default,
            system_messages: r.sys_mes,
            featured: r.featured,
            topic: r.topic,
            description: r.description,
            announcement: r.announcement,
            members: HashMap::new(),
        }
    }
}

/// One (signed-in) member of a room (`members.doc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRowV1 {
    pub user: UserRowV1,
    pub guest: bool,
    /// Bit set: 1 owner, 2 moderator, 4 leader.
    pub roles: u8,
    pub participant_id: String,
    #[serde(with = "date")]
    pub joined_at: Millis,
    pub muted: bool,
    pub favorite: bool,
    pub open: bool,
}

impl From<&Member> for MemberRowV1 {
    fn from(m: &Member) -> Self {
        MemberRowV1 {
            user: UserRowV1::from(&m.user),
            guest: m.guest,
            roles: m.roles.bits(),
            participant_id: m.participant_id.clone(),
            joined_at: m.joined_at,
            muted: m.muted,
            favorite: m.favorite,
            open: m.open,
        }
    }
}

impl From<MemberRowV1> for Member {
    fn from(r: MemberRowV1) -> Self {
        Member {
            user: r.user.into(),
            guest: r.guest,
            roles: RoomRoles::from_bits(r.roles),
            participant_id: r.participant_id,
            joined_at: r.joined_at,
            muted: r.muted,
            favorite: r.favorite,
            open: r.open,
            // Users only: guests' seats are `GuestSeatRowV1`s.
            guest_token: None,
        }
    }
}

/// A guest's seat (`guest_seats.doc`, schema v4 on), so a guest keeps it
/// across a restart. Guests have no roles and no subscription flags, so
/// the row holds only what the room shows of them, and the SHA-256 of the
/// seat's token (hex): the token itself is a secret and is never stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestSeatRowV1 {
    /// The guest's id and its display name (`username` and `name`).
    pub user: UserRowV1,
    pub participant_id: String,
    #[serde(with = "date")]
    pub joined_at: Millis,
    pub muted: bool,
    /// Lowercase hex SHA-256 of the seat token; empty for a seat without
    /// one (which can then only expire).
    pub token_sha256: String,
}

impl From<&Member> for GuestSeatRowV1 {
    fn from(m: &Member) -> Self {
        GuestSeatRowV1 {
            user: UserRowV1::from(&m.user),
            participant_id: m.participant_id.clone(),
            joined_at: m.joined_at,
            muted: m.muted,
            token_sha256: m.guest_token.as_ref().map(|t| hex(t.digest_bytes())).unwrap_or_default(),
        }
    }
}

impl From<GuestSeatRowV1> for Member {
    fn from(r: GuestSeatRowV1) -> Self {
        Member {
            user: r.user.into(),
            guest: true,
            roles: RoomRoles::NONE,
            participant_id: r.participant_id,
            joined_at: r.joined_at,
            muted: r.muted,
            favorite: false,
            open: true,
            guest_token: unhex(&r.token_sha256).map(SeatToken::from_digest),
        }
    }
}

fn hex(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The 32 bytes of a 64-digit hex string; `None` for anything else.
fn unhex(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// A message (`messages.doc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageRowV1 {
    #[serde(rename = "_id")]
    pub id: MessageId,
    pub rid: RoomId,
    pub msg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub t: Option<String>,
    #[serde(with = "date")]
    pub ts: Millis,
    pub u: UserRowV1,
    #[serde(rename = "_updatedAt", with = "date")]
    pub updated_at: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groupable: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Always-empty parsed-content arrays: present (`[]`) or absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<[(); 0]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mentions: Option<[(); 0]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<[(); 0]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md: Option<[(); 0]>,
}

impl From<&Message> for MessageRowV1 {
    fn from(m: &Message) -> Self {
        MessageRowV1 {
            id: m.id.clone(),
            rid: m.rid.clone(),
            msg: m.msg.clone(),
            t: m.t.as_deref().map(str::to_owned),
            ts: m.ts,
            u: UserRowV1::from(&m.u),
            updated_at: m.updated_at,
            groupable: m.groupable,
            tmid: m.tmid.clone(),
            role: m.role.as_deref().map(str::to_owned),
            urls: m.urls,
            mentions: m.mentions,
            channels: m.channels,
            md: m.md,
        }
    }
}

impl From<MessageRowV1> for Message {
    fn from(r: MessageRowV1) -> Self {
        Message {
            id: r.id,
            rid: r.rid,
            msg: r.msg,
            t: r.t.map(Cow::Owned),
            ts: r.ts,
            u: r.u.into(),
            updated_at: r.updated_at,
            groupable: r.groupable,
            tmid: r.tmid,
            role: r.role.map(Cow::Owned),
            urls: r.urls,
            mentions: r.mentions,
            channels: r.channels,
            md: r.md,
        }
    }
}

/// Serialising rows cannot fail (string keys only, no failing impls).
pub(crate) fn encode<T: Serialize>(row: &T) -> String {
    serde_json::to_string(row).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The v4 seat row's shape is pinned (a later roomd must read it), it
    /// holds the token's digest and not the token, and a restored seat is
    /// matched by the token alone.
    #[test]
    fn a_guest_seat_row_keeps_the_token_digest_only() {
        let token = "GvtLX2dRcRVWHfu_q0TQuZZZ5DgL50sK";
        let user =
            UserRef { id: UserId::from("guest-abc"), username: "Jane".into(), name: Some("Jane".into()) };
        let mut m = Member::new(user, true, Millis(1_767_225_600_000));
        m.participant_id = "p1".into();
        m.guest_token = Some(SeatToken::from_secret(token.into()));
        let doc = encode(&GuestSeatRowV1::from(&m));
        assert_eq!(
            doc,
            r#"{"user":{"_id":"guest-abc","username":"Jane","name":"Jane"},"participant_id":"p1","joined_at":{"$date":1767225600000},"muted":false,"token_sha256":"#
                .to_owned()
                + &format!("\"{}\"}}", hex(&SeatToken::digest(token)))
        );
        assert!(!doc.contains(token));
        let back: Member = serde_json::from_str::<GuestSeatRowV1>(&doc).unwrap().into();
        let seat = back.guest_token.as_ref().expect("digest restored");
        assert_eq!(seat.secret(), None);
        assert!(seat.is(&SeatToken::digest(token)));
        assert!(!seat.is(&SeatToken::digest("another token")));
        assert_eq!((back.participant_id.as_str(), back.joined_at, back.guest), ("p1", m.joined_at, true));
        // A damaged digest gives a seat nobody can reclaim: it only expires.
        let bad = doc.replace("\"token_sha256\":\"", "\"token_sha256\":\"zz");
        let back: Member = serde_json::from_str::<GuestSeatRowV1>(&bad).unwrap().into();
        assert!(back.guest_token.is_none());
    }
}

//! Plain data of a room: members, roles, messages. No rules, no tokio, and
//! no serde shapes: stored rows live in `store::rows`, wire shapes in `wire`.

use crate::ids::{Ids, MessageId, RoomId, UserId};
use crate::time::Millis;
use std::borrow::Cow;

/// The creator's `customFields`: an opaque JSON object, kept, stored and
/// shown as given (its keys and size are checked when the room is created).
/// No rule reads inside it, so it stays the value it arrived as rather than
/// a domain type.
pub type CustomFields = serde_json::Map<String, serde_json::Value>;

/// `c` public channel, `p` private group, `d` direct message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoomType {
    Channel,
    Private,
    Direct,
}

impl RoomType {
    pub fn as_str(self) -> &'static str {
        match self {
            RoomType::Channel => "c",
            RoomType::Private => "p",
            RoomType::Direct => "d",
        }
    }
}

/// A member's roles in one room, as a tiny bit set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct RoomRoles(u8);

impl RoomRoles {
    pub const NONE: RoomRoles = RoomRoles(0);
    pub const OWNER: RoomRoles = RoomRoles(1);
    pub const MODERATOR: RoomRoles = RoomRoles(2);
    pub const LEADER: RoomRoles = RoomRoles(4);

    /// The set as bits (owner 1, moderator 2, leader 4), for stored rows.
    pub fn bits(self) -> u8 {
        self.0
    }
    /// The set from [`RoomRoles::bits`]; unknown bits are dropped.
    pub fn from_bits(bits: u8) -> Self {
        RoomRoles(bits & 7)
    }
    pub fn contains(self, other: RoomRoles) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }
    pub fn insert(&mut self, other: RoomRoles) {
        self.0 |= other.0;
    }
    pub fn remove(&mut self, other: RoomRoles) {
        self.0 &= !other.0;
    }
    /// Rocket.Chat role names, for `getRoomRoles` and subscriptions.
    pub fn names(self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.contains(RoomRoles::OWNER) {
            v.push("owner");
        }
        if self.contains(RoomRoles::MODERATOR) {
            v.push("moderator");
        }
        if self.contains(RoomRoles::LEADER) {
            v.push("leader");
        }
        v
    }
}

/// A user as embedded in messages and room documents (`{_id, username,
/// name}` on the wire, see `wire`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRef {
    pub id: UserId,
    pub username: String,
    pub name: Option<String>,
}

/// One member of a room: a signed-in user or a guest (a guest's seat is
/// stored too, with only a digest of its token, see [`SeatToken`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub user: UserRef,
    pub guest: bool,
    pub roles: RoomRoles,
    /// The meeting family's participant id; stable for the membership.
    pub participant_id: String,
    pub joined_at: Millis,
    pub muted: bool,
    /// Per-user subscription flags (`f`, `open`).
    pub favorite: bool,
    pub open: bool,
    /// What a guest presents to reclaim its seat after a reconnect (or a
    /// restart).
    pub guest_token: Option<SeatToken>,
}

impl Member {
    pub fn new(user: UserRef, guest: bool, now: Millis) -> Self {
        Self::drawn(user, guest, now, &mut Ids::random())
    }

    /// A new member whose participant id and guest token come from `ids`
    /// (a change's apply context: the same on every replica).
    pub fn drawn(user: UserRef, guest: bool, now: Millis, ids: &mut Ids) -> Self {
        let participant_id = ids.meteor_id();
        Member {
            user,
            guest,
            roles: RoomRoles::NONE,
            participant_id,
            joined_at: now,
            muted: false,
            favorite: false,
            open: true,
            guest_token: guest.then(|| SeatToken::from_secret(ids.secret(32))),
        }
    }
}

/// A guest seat's token. Whoever presents it takes the seat, so it is a
/// secret: only its SHA-256 digest is kept beyond the moment it is issued
/// or presented, and only the digest is stored. The token is 32 random
/// characters (~190 bits), so a plain digest is as hard to reverse as the
/// token is to guess; no slow hash is needed.
#[derive(Clone, PartialEq, Eq)]
pub struct SeatToken {
    /// The token itself, while this process knows it (it issued it, or the
    /// guest presented it since): `join-room` hands it back.
    secret: Option<String>,
    digest: [u8; 32],
}

impl SeatToken {
    /// A token the guest presented (and that matched).
    pub fn from_secret(secret: String) -> Self {
        SeatToken { digest: Self::digest(&secret), secret: Some(secret) }
    }

    /// A stored token: its digest only.
    pub fn from_digest(digest: [u8; 32]) -> Self {
        SeatToken { secret: None, digest }
    }

    /// SHA-256 of a presented token, computed once per lookup.
    pub fn digest(token: &str) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(token.as_bytes()).into()
    }

    /// Whether `presented` (a [`SeatToken::digest`]) is this token's, in
    /// time that does not depend on where they differ.
    pub fn is(&self, presented: &[u8; 32]) -> bool {
        self.digest.iter().zip(presented).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }

    pub fn secret(&self) -> Option<&str> {
        self.secret.as_deref()
    }

    pub fn digest_bytes(&self) -> &[u8; 32] {
        &self.digest
    }
}

/// Never prints the secret (members end up in debug logs).
impl std::fmt::Debug for SeatToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SeatToken(..)")
    }
}

/// A message: a user's text or a system message (`t` set). Its wire shape
/// is in `wire`, its stored row in `store::rows`.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub id: MessageId,
    pub rid: RoomId,
    /// Always present, `""` when empty: clients crash on a missing `msg`.
    pub msg: String,
    pub t: Option<Cow<'static, str>>,
    pub ts: Millis,
    pub u: UserRef,
    pub updated_at: Millis,
    pub groupable: Option<bool>,
    pub tmid: Option<String>,
    /// Role name for `subscription-role-added/removed`.
    pub role: Option<Cow<'static, str>>,
    /// Rocket.Chat's parsed-content fields; roomd does not parse markdown,
    /// but clients expect the arrays on user messages.
    pub urls: Option<[(); 0]>,
    pub mentions: Option<[(); 0]>,
    pub channels: Option<[(); 0]>,
    pub md: Option<[(); 0]>,
}

impl Message {
    /// A system message of type `t`; `groupable: false` as Rocket.Chat sets.
    pub fn system(
        id: MessageId,
        rid: &RoomId,
        t: &'static str,
        msg: String,
        u: UserRef,
        now: Millis,
    ) -> Self {
        Message {
            id,
            rid: rid.clone(),
            msg,
            t: Some(Cow::Borrowed(t)),
            ts: now,
            u,
            updated_at: now,
            groupable: Some(false),
            tmid: None,
            role: None,
            urls: None,
            mentions: None,
            channels: None,
            md: None,
        }
    }

    /// A user's chat message.
    pub fn user(
        id: MessageId,
        rid: &RoomId,
        msg: String,
        u: UserRef,
        tmid: Option<String>,
        now: Millis,
    ) -> Self {
        Message {
            id,
            rid: rid.clone(),
            msg,
            t: None,
            ts: now,
            u,
            updated_at: now,
            groupable: None,
            tmid,
            role: None,
            urls: Some([]),
            mentions: Some([]),
            channels: Some([]),
            md: Some([]),
        }
    }
}

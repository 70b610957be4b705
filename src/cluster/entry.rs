//! What the cluster's log holds: stored types, versioned apart from the
//! domain types they carry (like `store::rows` for SQLite).
//!
//! A room's log holds *commands*, not their effects: every node applies
//! each entry to its own replica of the room through the same rules, in the
//! log's order, so every node reaches the same state and emits the same
//! events to its own listeners. What a rule would draw at random (ids,
//! guest tokens) is drawn from a generator seeded by the entry's `id`, and
//! the clock is the time the stream stored the entry (see
//! `apply::apply`): the replicas stay identical.

use crate::ids::UserId;
use crate::permissions::Principal;
use crate::room::UserRef;
use crate::store::rows::{GuestSeatRowV1, MemberRowV1, RoomRowV1, UserRowV1};
use crate::time::Millis;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One entry of `roomlog.<rid>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EntryV1 {
    /// Unique per entry: the idempotency key (`Nats-Msg-Id`) and the seed of
    /// the ids the entry's rules draw.
    pub id: String,
    /// The node incarnation that appended it (`<node-id>/<boot>`); it holds
    /// the caller waiting for the result.
    pub origin: String,
    /// The origin's clock when the command arrived. Replicas replace it
    /// with the time the stream stored the entry before applying it (one
    /// clock for every node, whatever the origin's says); kept in the
    /// entry for operators reading the log.
    pub now: i64,
    pub op: OpV1,
    /// Its stream sequence, set by the applier (not stored: the stream
    /// numbers it). Snapshots name the log position they cover with it.
    #[serde(skip)]
    pub seq: u64,
}

/// The caller as permissions see it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WhoV1 {
    pub id: UserId,
    pub username: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub admin: bool,
    #[serde(default)]
    pub bot: bool,
    #[serde(default)]
    pub guest: bool,
}

impl From<&Principal> for WhoV1 {
    fn from(p: &Principal) -> Self {
        WhoV1 {
            id: p.id.clone(),
            username: p.username.clone(),
            name: p.name.clone(),
            admin: p.admin,
            bot: p.bot,
            guest: p.guest,
        }
    }
}

impl From<WhoV1> for Principal {
    fn from(w: WhoV1) -> Self {
        Principal { id: w.id, username: w.username, name: w.name, admin: w.admin, bot: w.bot, guest: w.guest }
    }
}

/// A room command that changes the room. Commands that only read (documents,
/// history, subscriptions) never reach the log: any replica answers them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum OpV1 {
    /// The room is created with these members.
    Create {
        room: Box<RoomRowV1>,
        members: Vec<MemberRowV1>,
    },
    JoinSelf {
        who: WhoV1,
        code: Option<String>,
    },
    JoinByCode {
        who: WhoV1,
    },
    Leave {
        uid: UserId,
    },
    End {
        who: WhoV1,
    },
    /// `saveRoomSettings`, as the method's `{name: value}` pairs.
    Settings {
        who: WhoV1,
        settings: Vec<(String, Value)>,
    },
    /// A guest's reconnect grace ran out on the node holding its connection
    /// (or that node is gone).
    GuestGone {
        uid: UserId,
    },
    /// A guest resumed its seat through the entry's origin node, which now
    /// holds it.
    GuestHeld {
        uid: UserId,
    },
    Send {
        who: WhoV1,
        id: String,
        msg: String,
        tmid: Option<String>,
    },
    AddMember {
        who: WhoV1,
        target: UserRowV1,
    },
    RemoveMember {
        who: WhoV1,
        target: UserId,
    },
    SetRole {
        who: WhoV1,
        target: UserId,
        role: String,
        add: bool,
    },
    SetMuted {
        who: WhoV1,
        target: UserId,
        muted: bool,
    },
    SetArchived {
        who: WhoV1,
        archived: bool,
    },
    /// `favorite` or `open`.
    SetFlag {
        uid: UserId,
        flag: String,
        on: bool,
    },
    /// The room's state without its messages, as of log sequence
    /// `covers`, and where its older messages are (`cluster::compact`).
    Snapshot(Box<SnapshotV1>),
}

/// A room's replicated state at one log position, without messages: what
/// a node needs to hold the room without the log below that position.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotV1 {
    /// The last log sequence whose effects this holds.
    pub covers: u64,
    pub room: Box<RoomRowV1>,
    pub members: Vec<MemberRowV1>,
    pub guests: Vec<GuestSeatRowV1>,
    /// The node (origin) holding each guest's seat.
    pub guest_nodes: Vec<(UserId, String)>,
    /// The room clock's latest time (messages and `_updatedAt` follow it).
    pub clock: i64,
    /// Every history chunk of the room, oldest first.
    pub chunks: Vec<ChunkRefV1>,
    /// Ids of the user messages since the previous snapshot, up to
    /// `covers`: refused as a reused `_id` until the next snapshot.
    pub ids: Vec<String>,
    /// The ids the previous snapshot carried: still refused until this
    /// snapshot entry itself is applied (every replica switches there).
    pub prev_ids: Vec<String>,
    /// The `covers` of the snapshot this one follows (0: none), and how
    /// many entries of the room the writer applied after it, up to
    /// `covers`. A replica that counted fewer from the same base read past
    /// entries a purge removed before it got to them, and reloads the room
    /// from this snapshot (`None`: written before roomd counted; trusted).
    #[serde(default)]
    pub base: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

/// Where one chunk of a room's history is (`roomhist.<rid>`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChunkRefV1 {
    /// Its sequence in the history stream.
    pub seq: u64,
    pub first_ts: i64,
    pub last_ts: i64,
    pub count: u32,
}

/// A fact that belongs to no room (`roomfacts.*`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "fact", rename_all = "camelCase")]
pub enum FactV1 {
    User { origin: String, user: UserRowV1 },
    UsernameOwner { origin: String, name: String, uid: UserId },
    RevokedToken { origin: String, key: String, exp: u64 },
}

impl EntryV1 {
    pub fn now(&self) -> Millis {
        Millis(self.now)
    }
}

/// `UserRef` in its stored form.
pub fn user_row(u: &UserRef) -> UserRowV1 {
    UserRowV1::from(u)
}

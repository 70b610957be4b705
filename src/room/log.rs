//! The room-log seam: where a room's changes are put in order before they
//! are applied. The room core (the actor, the lobby, the session) speaks
//! only to a [`RoomLog`], never to a particular one:
//!
//! - [`LocalLog`], one node: a change is sequenced and applied at once by
//!   the room's actor ([`Order::Now`]); what it changed becomes durable
//!   through the durability seam (`durability.rs`: SQLite, memory, a
//!   test's fake). Names and direct-message member sets are claimed in the
//!   registry alone.
//! - the NATS log (`cluster::room_log`, `--cluster`): a change is appended
//!   to the room's log as an [`Entry`] and applied when the log delivers
//!   it ([`Order::Delivered`]), on every node alike, with the entry's
//!   clock and ids seeded by the entry. Names and member sets are also
//!   claimed in the stream.
//!
//! Either way a change is one [`RoomOp`] applied by the actor's one
//! `apply` (`room/replicated.rs`) through the same rules. The actor reads
//! [`RoomLog::order`] once, when it starts: the per-message path on one
//! node makes no call through the trait object.

use super::RoomError;
use super::handle::{SendParams, Topic};
use super::model::{Message, UserRef};
use super::state::{Flag, RoleKind, RoomState, Setting};
use crate::durability::{BoxFuture, Durability, RoomBatch, RoomChange};
use crate::ids::{MessageId, RoomId, UserId};
use crate::permissions::Principal;
use crate::registry::Registry;
use crate::time::Millis;
use serde_json::Value;
use std::sync::Arc;

/// When a change is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// As it arrives, by the actor that received it (one node).
    Now,
    /// When the log delivers it, by every replica of the room.
    Delivered,
}

/// A change to a room: the room-operation vocabulary every log carries
/// (its stored form, if any, is the log's business).
#[derive(Debug)]
pub enum RoomOp {
    JoinSelf {
        who: Box<Principal>,
        code: Option<String>,
    },
    JoinByCode {
        who: Box<Principal>,
    },
    Leave {
        uid: UserId,
    },
    End {
        who: Box<Principal>,
    },
    Settings {
        who: Box<Principal>,
        settings: Vec<Setting>,
    },
    /// A guest's grace is over (on the node that held it, or its node is
    /// gone): it leaves.
    GuestGone {
        uid: UserId,
    },
    /// A guest's seat is held by the entry's origin from now on.
    GuestHeld {
        uid: UserId,
    },
    /// `params.id` is fixed before a change is logged, so every replica
    /// stores the same id.
    Send {
        who: Box<Principal>,
        params: Box<SendParams>,
    },
    AddMember {
        who: Box<Principal>,
        target: UserRef,
    },
    RemoveMember {
        who: Box<Principal>,
        target: UserId,
    },
    SetRole {
        who: Box<Principal>,
        target: UserId,
        role: RoleKind,
        add: bool,
    },
    SetMuted {
        who: Box<Principal>,
        target: UserId,
        muted: bool,
    },
    SetArchived {
        who: Box<Principal>,
        archived: bool,
    },
    SetFlag {
        uid: UserId,
        flag: Flag,
    },
    /// The log's compaction point (`room/compacted.rs`).
    Snapshot(Box<RoomSnapshot>),
    /// An entry this version cannot apply (a newer writer's): skipped, its
    /// caller told why.
    Unreadable(RoomError),
}

/// A change as a log delivers it.
#[derive(Debug)]
pub struct Entry {
    /// Unique per change: the caller's key, and the seed of the ids its
    /// application draws.
    pub id: String,
    /// The node that appended it.
    pub origin: String,
    /// The time it is applied at (the log's clock, the same on every node).
    pub now: Millis,
    /// Its position in the log (0: a room starting from a snapshot).
    pub seq: u64,
    pub op: RoomOp,
}

/// What a room's snapshot tells the room itself (the room's state and
/// members start the room; see `cluster::compact`).
#[derive(Debug, Clone)]
pub struct RoomSnapshot {
    /// The log position the snapshot covers.
    pub covers: u64,
    /// The node holding each guest's seat.
    pub guest_nodes: Vec<(UserId, String)>,
    /// The room clock's latest time.
    pub clock: Millis,
    /// The history chunks holding every message it covers.
    pub chunks: Vec<ChunkRef>,
    /// User message ids accepted since the snapshot before.
    pub ids: Vec<String>,
    /// The previous snapshot's `ids`.
    pub prev_ids: Vec<String>,
    /// The `covers` of the snapshot this one follows, and how many of the
    /// room's entries its writer applied since, up to `covers` (`None`:
    /// not counted; see `RoomActor::holds_all_before`).
    pub base: u64,
    pub count: Option<u64>,
}

/// Where a run of a room's older messages is kept.
#[derive(Debug, Clone)]
pub struct ChunkRef {
    pub seq: u64,
    pub first_ts: Millis,
    pub last_ts: Millis,
    pub count: u32,
}

/// A snapshot to write (by the node whose entry made it due).
pub struct SnapshotJob {
    pub state: RoomState,
    pub snapshot: RoomSnapshot,
    /// The messages accepted since the previous snapshot, up to `covers`,
    /// oldest first: they become the new chunks.
    pub messages: Vec<Arc<Message>>,
    /// The `covers` of the snapshot in effect (0: none yet): the
    /// idempotency key shared by every writer of the next snapshot.
    pub base: u64,
}

/// Who holds a name or a direct-message member set.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    Mine,
    /// Another room (another node's) claimed it first.
    Theirs(RoomId),
}

/// How a new room's creation went.
#[derive(Debug)]
pub enum Creation {
    /// Durable; the caller starts the room.
    Durable,
    /// The log delivered it and this node started the room.
    Started,
}

/// The seam. Methods past `order` and `origin` matter only to a log whose
/// order is [`Order::Delivered`]; [`LocalLog`] answers them trivially.
pub trait RoomLog: Send + Sync + std::fmt::Debug {
    fn order(&self) -> Order;
    /// This node's name in the log: the origin its entries carry.
    fn origin(&self) -> &str;
    /// Appends `entry` to room `rid`'s log (after claiming the room's new
    /// name `claim`, if any); resolves once the log has it.
    fn append(
        &self,
        rid: RoomId,
        entry: Entry,
        claim: Option<String>,
    ) -> BoxFuture<'static, Result<(), RoomError>>;
    /// Typing and activity notices of this node's connections, for the
    /// other nodes' listeners.
    fn relay_notice(&self, rid: &RoomId, uid: &UserId, topic: Topic, event: &str, args: &Value);
    /// Entries of a room between snapshots (0: no snapshots).
    fn snapshot_every(&self) -> u64;
    /// Writes a snapshot; `Ok(false)`: another node's won.
    fn write_snapshot(&self, job: SnapshotJob) -> BoxFuture<'static, Result<bool, String>>;
    /// The messages of one history chunk.
    fn read_chunk(&self, chunk: ChunkRef) -> BoxFuture<'static, Result<Vec<Message>, String>>;
    /// Claims room name `name` for `rid` beyond this node's registry.
    fn claim_name<'a>(&'a self, name: &'a str, rid: &'a RoomId) -> BoxFuture<'a, Result<Claim, RoomError>>;
    /// Claims the direct-message member set `key` for `rid`.
    fn claim_direct<'a>(&'a self, key: &'a str, rid: &'a RoomId) -> BoxFuture<'a, Result<Claim, RoomError>>;
    /// Makes a new room durable (and, for a delivered log, started here).
    fn create<'a>(&'a self, state: &'a RoomState) -> BoxFuture<'a, Result<Creation, RoomError>>;
    /// Resolves once room `rid`, created elsewhere, runs on this node.
    fn started<'a>(&'a self, registry: &'a Registry, rid: &'a RoomId) -> BoxFuture<'a, bool>;
    /// A user's first connection on this node opened (`online`) or its
    /// last one closed: the other nodes' `user-status` hears it.
    fn presence(&self, uid: &UserId, username: &str, online: bool);
    /// Makes room `rid` held on this node if it is not (a node holding
    /// rooms by interest loads it from the log): `false` when there is no
    /// such room.
    fn load<'a>(&'a self, rid: &'a RoomId) -> BoxFuture<'a, Result<bool, RoomError>>;
}

/// One node: sequence now, apply now, durable through the store.
#[derive(Debug)]
pub struct LocalLog {
    store: Option<Arc<dyn Durability>>,
}

impl LocalLog {
    /// `store`: where new rooms become durable (`None` in memory only).
    pub fn new(store: Option<Arc<dyn Durability>>) -> Self {
        LocalLog { store }
    }
}

impl RoomLog for LocalLog {
    fn order(&self) -> Order {
        Order::Now
    }

    fn origin(&self) -> &str {
        ""
    }

    fn append(&self, rid: RoomId, _: Entry, _: Option<String>) -> BoxFuture<'static, Result<(), RoomError>> {
        // The actor applies at once ([`Order::Now`]) and never appends; a
        // change that got here anyway is refused, not silently dropped.
        tracing::error!(room = %rid, "a change was appended to the local log, which applies at once");
        Box::pin(async { Err(RoomError::Unavailable) })
    }

    fn relay_notice(&self, _: &RoomId, _: &UserId, _: Topic, _: &str, _: &Value) {}

    fn snapshot_every(&self) -> u64 {
        0
    }

    fn write_snapshot(&self, _: SnapshotJob) -> BoxFuture<'static, Result<bool, String>> {
        Box::pin(async { Ok(false) })
    }

    fn read_chunk(&self, _: ChunkRef) -> BoxFuture<'static, Result<Vec<Message>, String>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn claim_name<'a>(&'a self, _: &'a str, _: &'a RoomId) -> BoxFuture<'a, Result<Claim, RoomError>> {
        // The caller's registry reservation is the claim.
        Box::pin(async { Ok(Claim::Mine) })
    }

    fn claim_direct<'a>(&'a self, _: &'a str, _: &'a RoomId) -> BoxFuture<'a, Result<Claim, RoomError>> {
        Box::pin(async { Ok(Claim::Mine) })
    }

    fn create<'a>(&'a self, state: &'a RoomState) -> BoxFuture<'a, Result<Creation, RoomError>> {
        Box::pin(async move {
            let Some(store) = &self.store else { return Ok(Creation::Durable) };
            let mut changes = vec![RoomChange::room(state)];
            changes.extend(state.members.values().map(RoomChange::member));
            let batch = RoomBatch { rid: state.id.clone(), changes };
            store.append(batch).await.await.map_err(|e| {
                tracing::error!(room = %state.id, error = %e, "cannot store new room");
                RoomError::Storage
            })?;
            Ok(Creation::Durable)
        })
    }

    fn started<'a>(&'a self, registry: &'a Registry, rid: &'a RoomId) -> BoxFuture<'a, bool> {
        Box::pin(async move { registry.get(rid).is_some() })
    }

    fn presence(&self, _: &UserId, _: &str, _: bool) {}

    /// One node holds every room it has.
    fn load<'a>(&'a self, _: &'a RoomId) -> BoxFuture<'a, Result<bool, RoomError>> {
        Box::pin(async { Ok(false) })
    }
}

/// Fixes a send's message id before it is logged.
pub(super) fn fixed_id(params: &mut SendParams) {
    if params.id.is_none() {
        params.id = Some(MessageId::generate());
    }
}

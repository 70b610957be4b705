//! The NATS implementation of the room-log seam (`room/log.rs`): a change
//! is appended to its room's log in JetStream and applied when the
//! applier (`apply.rs`) delivers it, on every node. Names and
//! direct-message member sets are claimed in the stream, create-only.
//!
//! This file is also where the room's operations ([`RoomOp`]) meet their
//! stored form ([`OpV1`]): the one conversion each way.

use super::entry::{ChunkRefV1, EntryV1, OpV1, SnapshotV1, WhoV1, user_row};
use super::{Cluster, ClusterError, SnapshotJob as Job, entry_bytes};
use crate::durability::BoxFuture;
use crate::ids::{MessageId, RoomId, UserId};
use crate::registry::Registry;
use crate::room::log::{ChunkRef, Claim, Creation, Entry, Order, RoomLog, RoomOp, RoomSnapshot, SnapshotJob};
use crate::room::{Flag, Message, RoleKind, RoomError, RoomState, SendParams, Setting, Topic};
use crate::store::rows::{GuestSeatRowV1, MemberRowV1, RoomRowV1};
use crate::time::Millis;
use bytes::Bytes;
use serde_json::Value;
use std::sync::Arc;

/// How long a creation waits for its entry to come back from the log and
/// start the room on this node.
const CREATE_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// The room log on NATS JetStream.
#[derive(Debug)]
pub struct NatsLog(pub Arc<Cluster>);

impl RoomLog for NatsLog {
    fn order(&self) -> Order {
        Order::Delivered
    }

    fn origin(&self) -> &str {
        self.0.origin()
    }

    fn append(
        &self,
        rid: RoomId,
        entry: Entry,
        claim: Option<String>,
    ) -> BoxFuture<'static, Result<(), RoomError>> {
        let cluster = self.0.clone();
        Box::pin(async move {
            let Some(entry) = stored(entry) else {
                tracing::error!(room = %rid, "only a change a room makes can be appended");
                return Err(RoomError::Unavailable);
            };
            append(&cluster, &rid, &entry, claim).await
        })
    }

    fn relay_notice(&self, rid: &RoomId, uid: &UserId, topic: Topic, event: &str, args: &Value) {
        self.0.relay_notice(rid, uid, topic, event, args);
    }

    fn snapshot_every(&self) -> u64 {
        self.0.snapshot_every()
    }

    fn write_snapshot(&self, job: SnapshotJob) -> BoxFuture<'static, Result<bool, String>> {
        let cluster = self.0.clone();
        Box::pin(async move {
            super::write_snapshot(&cluster, snapshot_job(job)).await.map_err(|e| e.to_string())
        })
    }

    fn read_chunk(&self, chunk: ChunkRef) -> BoxFuture<'static, Result<Vec<Message>, String>> {
        let cluster = self.0.clone();
        Box::pin(
            async move { super::read_chunk(&cluster, &chunk_row(&chunk)).await.map_err(|e| e.to_string()) },
        )
    }

    fn claim_name<'a>(&'a self, name: &'a str, rid: &'a RoomId) -> BoxFuture<'a, Result<Claim, RoomError>> {
        // By the name's key, so names are unique regardless of case across
        // nodes too.
        Box::pin(self.claim(Cluster::name_subject(name), rid, "cannot claim the room name"))
    }

    fn claim_direct<'a>(&'a self, key: &'a str, rid: &'a RoomId) -> BoxFuture<'a, Result<Claim, RoomError>> {
        Box::pin(self.claim(Cluster::direct_subject(key), rid, "cannot claim a direct-message room"))
    }

    /// Appends the creation to the room's log and waits until this node's
    /// applier has started the room (every node starts it the same way,
    /// from the same entry).
    fn create<'a>(&'a self, state: &'a RoomState) -> BoxFuture<'a, Result<Creation, RoomError>> {
        Box::pin(async move {
            let cluster = &self.0;
            let id = &state.id;
            let mut members: Vec<MemberRowV1> = state.members.values().map(MemberRowV1::from).collect();
            members.sort_by(|a, b| a.user.id.cmp(&b.user.id));
            let entry = EntryV1 {
                id: crate::ids::secret(22),
                origin: cluster.origin().to_owned(),
                now: state.created_at.0,
                seq: 0,
                op: OpV1::Create { room: Box::new(RoomRowV1::from(state)), members },
            };
            let started = cluster.await_creation(&entry.id);
            if let Err(e) = cluster.append(Cluster::room_subject(id), &entry.id, entry_bytes(&entry)).await {
                cluster.forget_creation(&entry.id);
                tracing::error!(room = %id, error = %e, "cannot append the room's creation");
                return Err(RoomError::Unavailable);
            }
            match tokio::time::timeout(CREATE_WAIT, started).await {
                Ok(Ok(())) => Ok(Creation::Started),
                _ => {
                    cluster.forget_creation(&entry.id);
                    tracing::error!(room = %id, "room created in the log but not applied in time");
                    Err(RoomError::Unavailable)
                }
            }
        })
    }

    fn started<'a>(&'a self, registry: &'a Registry, rid: &'a RoomId) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            tokio::time::timeout(CREATE_WAIT, self.0.room_started(registry, rid)).await.unwrap_or(false)
        })
    }

    fn presence(&self, uid: &UserId, username: &str, online: bool) {
        self.0.announce_presence(uid, username, online);
    }

    fn load<'a>(&'a self, rid: &'a RoomId) -> BoxFuture<'a, Result<bool, RoomError>> {
        Box::pin(async move {
            if !self.0.by_interest() {
                return Ok(false);
            }
            self.0.load(rid).await.map_err(|e| {
                tracing::error!(room = %rid, error = %e, "cannot load the room");
                RoomError::Unavailable
            })
        })
    }
}

impl NatsLog {
    async fn claim(&self, subject: String, rid: &RoomId, what: &'static str) -> Result<Claim, RoomError> {
        let mine = Bytes::from(rid.to_string());
        let held = self.0.claim_or_get(subject, mine.clone()).await.map_err(|e| {
            tracing::error!(room = %rid, error = %e, "{what}");
            RoomError::Unavailable
        })?;
        Ok(if held == mine {
            Claim::Mine
        } else {
            Claim::Theirs(RoomId::from(String::from_utf8_lossy(&held).as_ref()))
        })
    }
}

async fn append(
    cluster: &Cluster,
    rid: &RoomId,
    entry: &EntryV1,
    claim: Option<String>,
) -> Result<(), RoomError> {
    if let Some(name) = claim {
        let mine = Bytes::from(rid.to_string());
        match cluster.claim(Cluster::name_subject(&name), mine.clone(), |held| held == &mine[..]).await {
            Ok(()) => {}
            Err(ClusterError::Taken) => return Err(RoomError::DuplicateName(name)),
            Err(e) => {
                tracing::error!(room = %rid, error = %e, "cannot claim the new room name");
                return Err(RoomError::Unavailable);
            }
        }
    }
    cluster.append(Cluster::room_subject(rid), &entry.id, entry_bytes(entry)).await.map(|_| ()).map_err(|e| {
        match e {
            // The caller's doing (a call near --max-frame-bytes against a
            // smaller max_payload): told so, and nothing is wrong here.
            ClusterError::TooLarge { size, max } => {
                tracing::debug!(room = %rid, size, max, "log entry over the NATS max_payload refused");
                RoomError::TooLarge(max)
            }
            e => {
                tracing::error!(room = %rid, error = %e, "cannot append to the room log");
                RoomError::Unavailable
            }
        }
    })
}

/// An entry as the log stores it; `None` for what a room never appends
/// (its snapshot is written by `compact`, an unreadable entry was read).
fn stored(e: Entry) -> Option<EntryV1> {
    Some(EntryV1 { id: e.id, origin: e.origin, now: e.now.0, seq: e.seq, op: op_row(e.op)? })
}

fn op_row(op: RoomOp) -> Option<OpV1> {
    let who = |p: Box<crate::permissions::Principal>| WhoV1::from(&*p);
    Some(match op {
        RoomOp::JoinSelf { who: w, code } => OpV1::JoinSelf { who: who(w), code },
        RoomOp::JoinByCode { who: w } => OpV1::JoinByCode { who: who(w) },
        RoomOp::Leave { uid } => OpV1::Leave { uid },
        RoomOp::End { who: w } => OpV1::End { who: who(w) },
        RoomOp::Settings { who: w, settings } => {
            OpV1::Settings { who: who(w), settings: settings.iter().map(setting_pair).collect() }
        }
        RoomOp::GuestGone { uid } => OpV1::GuestGone { uid },
        RoomOp::GuestHeld { uid } => OpV1::GuestHeld { uid },
        RoomOp::Send { who: w, params } => {
            let SendParams { id, msg, tmid } = *params;
            // `split` fixed the id before the op was logged.
            let id = id.unwrap_or_else(MessageId::generate).to_string();
            OpV1::Send { who: who(w), id, msg, tmid }
        }
        RoomOp::AddMember { who: w, target } => OpV1::AddMember { who: who(w), target: user_row(&target) },
        RoomOp::RemoveMember { who: w, target } => OpV1::RemoveMember { who: who(w), target },
        RoomOp::SetRole { who: w, target, role, add } => {
            OpV1::SetRole { who: who(w), target, role: role.name().to_owned(), add }
        }
        RoomOp::SetMuted { who: w, target, muted } => OpV1::SetMuted { who: who(w), target, muted },
        RoomOp::SetArchived { who: w, archived } => OpV1::SetArchived { who: who(w), archived },
        RoomOp::SetFlag { uid, flag } => {
            let (flag, on) = match flag {
                Flag::Favorite(on) => ("favorite", on),
                Flag::Open(on) => ("open", on),
            };
            OpV1::SetFlag { uid, flag: flag.to_owned(), on }
        }
        RoomOp::Snapshot(_) | RoomOp::Unreadable(_) => return None,
    })
}

/// An entry as a room applies it; `None` for a creation (the applier
/// starts the room itself).
pub(crate) fn delivered(e: EntryV1) -> Option<Entry> {
    let op = match e.op {
        OpV1::Create { .. } => return None,
        OpV1::JoinSelf { who, code } => RoomOp::JoinSelf { who: Box::new(who.into()), code },
        OpV1::JoinByCode { who } => RoomOp::JoinByCode { who: Box::new(who.into()) },
        OpV1::Leave { uid } => RoomOp::Leave { uid },
        OpV1::End { who } => RoomOp::End { who: Box::new(who.into()) },
        OpV1::Settings { who, settings } => {
            let parsed: Result<Vec<Setting>, RoomError> =
                settings.iter().map(|(k, v)| crate::method::parse_setting(k, v)).collect();
            match parsed {
                Ok(settings) => RoomOp::Settings { who: Box::new(who.into()), settings },
                Err(e) => {
                    // Checked before it was logged; only a newer writer's
                    // setting this version does not know lands here.
                    tracing::error!(error = %e, "unknown setting in the room log; entry skipped");
                    RoomOp::Unreadable(e)
                }
            }
        }
        OpV1::GuestGone { uid } => RoomOp::GuestGone { uid },
        OpV1::GuestHeld { uid } => RoomOp::GuestHeld { uid },
        OpV1::Send { who, id, msg, tmid } => RoomOp::Send {
            who: Box::new(who.into()),
            params: Box::new(SendParams { id: Some(MessageId::from(id.as_str())), msg, tmid }),
        },
        OpV1::AddMember { who, target } => {
            RoomOp::AddMember { who: Box::new(who.into()), target: target.into() }
        }
        OpV1::RemoveMember { who, target } => RoomOp::RemoveMember { who: Box::new(who.into()), target },
        OpV1::SetRole { who, target, role, add } => {
            let role = match role.as_str() {
                "owner" => RoleKind::Owner,
                "moderator" => RoleKind::Moderator,
                _ => RoleKind::Leader,
            };
            RoomOp::SetRole { who: Box::new(who.into()), target, role, add }
        }
        OpV1::SetMuted { who, target, muted } => {
            RoomOp::SetMuted { who: Box::new(who.into()), target, muted }
        }
        OpV1::SetArchived { who, archived } => RoomOp::SetArchived { who: Box::new(who.into()), archived },
        OpV1::SetFlag { uid, flag, on } => {
            let flag = if flag == "open" { Flag::Open(on) } else { Flag::Favorite(on) };
            RoomOp::SetFlag { uid, flag }
        }
        OpV1::Snapshot(s) => RoomOp::Snapshot(Box::new(room_snapshot(*s))),
    };
    Some(Entry { id: e.id, origin: e.origin, now: Millis(e.now), seq: e.seq, op })
}

/// What the room itself takes from a stored snapshot.
fn room_snapshot(s: SnapshotV1) -> RoomSnapshot {
    RoomSnapshot {
        covers: s.covers,
        guest_nodes: s.guest_nodes,
        clock: Millis(s.clock),
        chunks: s.chunks.iter().map(chunk_ref).collect(),
        ids: s.ids,
        prev_ids: s.prev_ids,
        base: s.base,
        count: s.count,
    }
}

/// A snapshot as stored: the room's state and seats, and what the room
/// keeps.
fn snapshot_row(s: RoomSnapshot, state: &RoomState) -> SnapshotV1 {
    let (mut members, mut guests) = (Vec::new(), Vec::new());
    for m in state.members.values() {
        if m.guest {
            guests.push(GuestSeatRowV1::from(m));
        } else {
            members.push(MemberRowV1::from(m));
        }
    }
    SnapshotV1 {
        covers: s.covers,
        room: Box::new(RoomRowV1::from(state)),
        members,
        guests,
        guest_nodes: s.guest_nodes,
        clock: s.clock.0,
        chunks: s.chunks.iter().map(chunk_row).collect(),
        ids: s.ids,
        prev_ids: s.prev_ids,
        base: s.base,
        count: s.count,
    }
}

fn snapshot_job(job: SnapshotJob) -> Job {
    let SnapshotJob { state, snapshot, messages, base } = job;
    Job { rid: state.id.clone(), snapshot: snapshot_row(snapshot, &state), messages, base }
}

fn chunk_ref(c: &ChunkRefV1) -> ChunkRef {
    ChunkRef { seq: c.seq, first_ts: Millis(c.first_ts), last_ts: Millis(c.last_ts), count: c.count }
}

fn chunk_row(c: &ChunkRef) -> ChunkRefV1 {
    ChunkRefV1 { seq: c.seq, first_ts: c.first_ts.0, last_ts: c.last_ts.0, count: c.count }
}

/// A setting as the `saveRoomSettings` pair it was parsed from.
fn setting_pair(s: &Setting) -> (String, Value) {
    let (k, v): (&str, Value) = match s {
        Setting::RoomName(v) => ("roomName", v.as_str().into()),
        Setting::RoomTopic(v) => ("roomTopic", v.as_str().into()),
        Setting::RoomDescription(v) => ("roomDescription", v.as_str().into()),
        Setting::RoomAnnouncement(v) => ("roomAnnouncement", v.as_str().into()),
        Setting::ReadOnly(v) => ("readOnly", (*v).into()),
        Setting::JoinCode(v) => ("joinCode", v.as_str().into()),
        Setting::Locked(v) => ("locked", (*v).into()),
        Setting::MaxParticipants(v) => ("maxParticipants", v.map_or(Value::Null, Value::from)),
        Setting::GuestAccess(v) => ("guestAccess", (*v).into()),
        Setting::GuestChat(v) => ("guestChat", (*v).into()),
        Setting::RoomType(t) => {
            ("roomType", if *t == crate::room::RoomType::Private { "p" } else { "c" }.into())
        }
        Setting::SystemMessages(v) => ("systemMessages", (*v).into()),
        Setting::Default(v) => ("default", (*v).into()),
        Setting::Favorite(v) => ("favorite", (*v).into()),
    };
    (k.to_owned(), v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every setting survives the trip through the log unchanged.
    #[test]
    fn settings_round_trip_through_their_pairs() {
        let all = [
            Setting::RoomName("n".into()),
            Setting::RoomTopic("t".into()),
            Setting::RoomDescription("d".into()),
            Setting::RoomAnnouncement("a".into()),
            Setting::ReadOnly(true),
            Setting::JoinCode("c".into()),
            Setting::Locked(true),
            Setting::MaxParticipants(Some(7)),
            Setting::MaxParticipants(None),
            Setting::GuestAccess(false),
            Setting::GuestChat(true),
            Setting::RoomType(crate::room::RoomType::Private),
            Setting::RoomType(crate::room::RoomType::Channel),
            Setting::SystemMessages(false),
            Setting::Default(true),
            Setting::Favorite(true),
        ];
        for s in all {
            let (k, v) = setting_pair(&s);
            let back = crate::method::parse_setting(&k, &v).expect("parses");
            assert_eq!(format!("{back:?}"), format!("{s:?}"));
        }
    }
}

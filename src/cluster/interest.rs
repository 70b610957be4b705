//! Rooms by interest (`--cluster-rooms interest`): a node holds a room —
//! its actor, members, recent messages, and the application of its log —
//! only once it is used through this node: a call or subscription naming
//! it, a member signed in here being added to it, a room this node
//! creates. See docs/cluster.md, "Rooms by interest".
//!
//! Every node still reads every partition stream in order (that is what
//! keeps the room directory: names, codes and direct-message member sets,
//! and which rooms each user may be a member of, small facts by room), but
//! skips the entries of rooms it does not hold.
//!
//! A room is loaded by its partition's applier, between two entries: from
//! the room's own subject (its latest snapshot and the entries after it, or
//! its creation and everything after it when it has no snapshot yet), read
//! up to the last entry the applier has applied. Everything after that the
//! applier delivers to the room as usual, so a loaded room continues the
//! log exactly where it stood when it was read, with nothing to hand over
//! and nothing to fence; the cost is that the partition's other rooms wait
//! for the load (one read of at most `--cluster-snapshot-every` entries).

use super::entry::{EntryV1, OpV1};
use super::{Cluster, ClusterError};
use crate::hub::UserEvent;
use crate::ids::{RoomId, UserId};
use crate::room::RoomCommand;
use crate::server::ServerState;
use crate::store::rows::{RoomRowV1, RoomTypeV1};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How long a caller's load is retried: as long as an append is
/// (`APPEND_DEADLINE`), since a load fails for the same reasons.
const LOAD_DEADLINE: Duration = super::APPEND_DEADLINE;
/// Loads waiting for one partition's applier. Callers beyond this wait for
/// a slot (bounded, as every queue is).
const LOAD_QUEUE: usize = 256;

/// A caller waiting for a room to be loaded: `true` once it is held here,
/// `false` if the log has no such room.
pub(crate) struct Load {
    rid: RoomId,
    done: oneshot::Sender<Result<bool, String>>,
}

/// The load queues of every partition's applier.
pub(crate) struct Loads {
    senders: Vec<mpsc::Sender<Load>>,
    /// Taken once by each partition's applier task.
    receivers: Mutex<Vec<Option<mpsc::Receiver<Load>>>>,
}

impl Loads {
    pub(super) fn new(partitions: usize) -> Loads {
        let (senders, receivers) = (0..partitions)
            .map(|_| {
                let (tx, rx) = mpsc::channel(LOAD_QUEUE);
                (tx, Some(rx))
            })
            .unzip();
        Loads { senders, receivers: Mutex::new(receivers) }
    }

    /// Partition `p`'s queue, for its applier.
    pub(super) fn take(&self, p: usize) -> Option<mpsc::Receiver<Load>> {
        self.receivers.lock().unwrap_or_else(|e| e.into_inner()).get_mut(p)?.take()
    }
}

impl Cluster {
    /// Whether this node holds only the rooms used through it.
    pub(crate) fn by_interest(&self) -> bool {
        self.interest.is_some()
    }

    /// Makes room `rid` held here, loading it if it is not: `Ok(false)`
    /// when the log has no such room. Callers wait for the load; nothing
    /// answers from a room before it has caught up. A load that fails (the
    /// stream's leader is being elected, a server is slow to answer) is
    /// tried again, up to [`LOAD_DEADLINE`].
    pub(crate) async fn load(&self, rid: &RoomId) -> Result<bool, ClusterError> {
        let deadline = tokio::time::Instant::now() + LOAD_DEADLINE;
        let mut pause = Duration::from_millis(50);
        loop {
            match self.load_once(rid).await {
                Err(e) if tokio::time::Instant::now() + pause < deadline => {
                    tracing::debug!(room = %rid, error = %e, "room load failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                r => return r,
            }
        }
    }

    async fn load_once(&self, rid: &RoomId) -> Result<bool, ClusterError> {
        let unavailable = |why: &str| ClusterError::Unavailable(format!("loading room {rid}: {why}"));
        let (done, answer) = oneshot::channel();
        let queue = &self.loads.senders[self.layout.of(rid.as_str())];
        queue.send(Load { rid: rid.clone(), done }).await.map_err(|_| unavailable("the applier stopped"))?;
        match answer.await {
            Ok(Ok(held)) => Ok(held),
            Ok(Err(e)) => Err(unavailable(&e)),
            Err(_) => Err(unavailable("the applier stopped")),
        }
    }
}

/// Lets go of the rooms nothing on this node used for about `after`: every
/// `after / 2` each held room is told to sweep itself (`RoomActor::sweep`:
/// one unused at two sweeps in a row leaves the registry if nothing else
/// holds its handle). The applier then skips its entries; a later use
/// loads it again.
pub(super) fn spawn_sweeper(cluster: Arc<Cluster>, state: Arc<ServerState>) {
    let Some(after) = cluster.interest else { return };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval((after / 2).max(Duration::from_millis(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            for id in state.registry.ids() {
                state.registry.try_tell(&id, RoomCommand::Sweep);
            }
        }
    });
}

/// Answers one load request, in the applier of the room's partition, which
/// has applied everything up to `applied`.
pub(super) async fn serve(cluster: &Cluster, state: &ServerState, applied: u64, load: Load) {
    let Load { rid, done } = load;
    if state.registry.get(&rid).is_some() {
        let _ = done.send(Ok(true));
        return;
    }
    let started = std::time::Instant::now();
    let r = load_room(cluster, state, &rid, applied).await;
    match &r {
        Ok(true) => {
            crate::metrics::cluster_room_load(started.elapsed().as_secs_f64());
            tracing::debug!(room = %rid, ms = started.elapsed().as_millis() as u64, "room loaded");
            cluster.started(&rid);
        }
        Ok(false) => {}
        // Retried by the caller (`Cluster::load`), which logs the last failure.
        Err(e) => tracing::warn!(room = %rid, error = %e, "loading a room failed"),
    }
    let _ = done.send(r.map_err(|e| e.to_string()));
}

/// Loads room `rid` with its entries before log sequence `seq` (the entry
/// the applier is at), for the applier to apply that entry to it next.
pub(super) async fn load_before(
    cluster: &Cluster,
    state: &ServerState,
    rid: &RoomId,
    seq: u64,
) -> Result<bool, ClusterError> {
    let held = load_room(cluster, state, rid, seq.saturating_sub(1)).await?;
    if held {
        cluster.started(rid);
    }
    Ok(held)
}

/// Reads room `rid`'s entries up to `applied` from its subject and starts
/// it from them (see the module docs).
async fn load_room(
    cluster: &Cluster,
    state: &ServerState,
    rid: &RoomId,
    applied: u64,
) -> Result<bool, ClusterError> {
    let (log, subject) = cluster.room_log(rid).await?;
    let last = match log.get_last_raw_message_by_subject(&subject).await {
        Ok(m) => m.sequence,
        Err(e) if is_not_found(&e) => return Ok(false),
        Err(e) => return Err(ClusterError::Unavailable(format!("reading room {rid}'s log: {e}"))),
    };
    // What the applier has not reached yet, it delivers to the room once
    // the room is held.
    let entries = super::compact::read_entries(cluster, rid, 0, last.min(applied)).await?;
    if entries.is_empty() {
        // Created after the point the applier has reached: not a room here
        // yet (the applier starts it if a caller here waits for it).
        return Ok(false);
    }
    start(cluster, state, rid, entries).await
}

/// Starts room `rid` from its creation or its latest snapshot and the
/// entries after it.
async fn start(
    cluster: &Cluster,
    state: &ServerState,
    rid: &RoomId,
    entries: Vec<EntryV1>,
) -> Result<bool, ClusterError> {
    let from = entries.iter().rposition(|e| matches!(e.op, OpV1::Snapshot(_)));
    let (room, seed, rest) = match from {
        Some(i) => {
            let mut entries = entries;
            let snapshot = entries.remove(i);
            let OpV1::Snapshot(snap) = &snapshot.op else { return Ok(false) };
            let covers = snap.covers;
            let room = super::compact::snapshot_state(snap);
            let rest: Vec<EntryV1> = entries
                .into_iter()
                .filter(|e| e.seq > covers && !matches!(e.op, OpV1::Snapshot(_)))
                .collect();
            (room, super::room_log::delivered(snapshot).map(Box::new), rest)
        }
        None => {
            let mut entries = entries.into_iter();
            // A room's log begins with its creation until a snapshot is
            // written; anything else first is a log this node cannot start.
            let Some(EntryV1 { op: OpV1::Create { room, members }, id, .. }) = entries.next() else {
                tracing::error!(room = %rid, "room log without a creation or a snapshot; not loaded");
                return Ok(false);
            };
            let mut room = crate::room::RoomState::from(*room);
            for m in members {
                room.members.insert(m.user.id.clone(), m.into());
            }
            cluster.created(&id);
            (room, None, entries.collect())
        }
    };
    let handle = state.hold_replica(room);
    let entries = rest.into_iter().filter_map(super::room_log::delivered).collect();
    handle.tell(RoomCommand::Load { snapshot: seed, entries }).await;
    Ok(true)
}

fn is_not_found(e: &async_nats::jetstream::stream::RawMessageError) -> bool {
    matches!(e.kind(), async_nats::jetstream::stream::RawMessageErrorKind::NoMessageFound)
}

/// The applier met an entry of a room this node does not hold: keeps what
/// the room directory needs of it (names, codes, member sets; who may be a
/// member), and says whether the node must hold the room from this entry
/// on — a member signed in here is being added to it, or a caller here
/// waits for its creation.
pub(super) fn unheld(cluster: &Cluster, state: &ServerState, rid: &str, entry: &EntryV1) -> bool {
    let id = RoomId::from(rid);
    let joining: Vec<&UserId> = match &entry.op {
        OpV1::Create { room, members } => {
            note_room(state, &id, room, members.iter().map(|m| &m.user.id));
            if cluster.creations.contains_key(&entry.id) || cluster.starts.contains_key(&id) {
                return true;
            }
            members.iter().map(|m| &m.user.id).collect()
        }
        OpV1::Snapshot(snap) => {
            let members =
                snap.members.iter().map(|m| &m.user.id).chain(snap.guests.iter().map(|g| &g.user.id));
            note_room(state, &id, &snap.room, members);
            return false;
        }
        OpV1::JoinSelf { who, .. } | OpV1::JoinByCode { who } => vec![&who.id],
        OpV1::AddMember { target, .. } => vec![&target.id],
        _ => return false,
    };
    for uid in &joining {
        state.users.add_membership(uid, &id);
    }
    // Their `rooms-changed`/`subscriptions-changed` listeners here hear of
    // the room from its own replica, so the node holds it from this entry.
    joining.iter().any(|uid| {
        state.hub.has_listener(uid, UserEvent::SubscriptionsChanged)
            || state.hub.has_listener(uid, UserEvent::RoomsChanged)
    })
}

/// What the directory keeps of a room this node does not hold: its code,
/// its name or direct-message member set, and who may be its members (a
/// user's room lists load each candidate and ask it).
fn note_room<'a>(
    state: &ServerState,
    id: &RoomId,
    room: &RoomRowV1,
    members: impl Iterator<Item = &'a UserId>,
) {
    let members: Vec<&UserId> = members.collect();
    state.registry.claim_code(&room.code, id);
    if matches!(room.t, RoomTypeV1::Direct) {
        let ids: Vec<&str> = members.iter().map(|u| u.as_str()).collect();
        state.registry.restore_direct(crate::registry::dm_key(&ids), id);
    } else {
        state.registry.force_name(&room.name, id);
    }
    for uid in members {
        state.users.add_membership(uid, id);
    }
}

//! The applier: one task per partition stream on every node, each reading
//! its whole stream in order and applying each entry to this node's
//! replicas — rooms get their commands through their mailboxes, the user
//! directory its facts (all in partition 0, `ROOMLOG`). At start each
//! replays its stream from the beginning (that is the restore), and
//! `/readyz` says yes once every one has caught up with what its stream held
//! then. Until then the node refuses clients (`ServerState::is_replaying`):
//! its replicas are partial, and an answer from them would be wrong, not
//! late.
//!
//! Partitions are applied independently, so entries of different streams
//! have no order between them. Nothing needs one: a room's entries are all
//! in its own stream, its creation first; an entry carries the identities
//! it acts on (`WhoV1`, `UserRowV1`) and applying it never reads the user
//! directory; a name or direct-message claim only guards uniqueness, and a
//! caller that lost a direct-message claim waits for the winner's room to
//! start here (`Cluster::room_started`), from whichever stream.

use super::Cluster;
use super::entry::{EntryV1, FactV1, OpV1};
use super::partition::Layout;
use crate::ids::RoomId;
use crate::room::RoomCommand;
use crate::server::ServerState;
use crate::time::Millis;
use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use futures_util::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// How long the applier's consumer may be silent before the stream is asked
/// whether it missed something.
const STALL_CHECK: Duration = Duration::from_secs(1);

/// Starts the applier. The server is not ready until it has caught up.
pub(crate) fn spawn_applier(cluster: Arc<Cluster>, state: Arc<ServerState>) {
    state.set_ready(false);
    state.set_replaying(true);
    super::liveness::spawn(cluster.clone(), state.clone());
    super::presence::spawn(cluster.clone(), state.clone());
    super::notices::spawn(cluster.clone(), state.clone());
    super::interest::spawn_sweeper(cluster.clone(), state.clone());
    // Partitions still replaying; the one that brings it to zero opens
    // the node.
    let replaying = Arc::new(AtomicUsize::new(cluster.layout.count()));
    for p in 0..cluster.layout.count() {
        let (cluster, state, replaying) = (cluster.clone(), state.clone(), replaying.clone());
        // Loads of rooms this node does not hold (`interest`) are served
        // by their partition's applier, between two entries.
        let mut loads = cluster.loads.take(p).unwrap_or_else(|| tokio::sync::mpsc::channel(1).1);
        tokio::spawn(async move {
            let mut part = Partition {
                name: Layout::stream(p),
                applied: 0,
                caught_up: false,
                sequence: crate::metrics::cluster_applied_sequence(&Layout::stream(p)),
            };
            loop {
                if let Err(e) = run(&cluster, &state, &mut part, &replaying, &mut loads).await {
                    tracing::error!(stream = %part.name, error = %e, applied = part.applied, "reading the room log failed; retrying");
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
    }
}

/// One partition stream's reader: where it is, kept across consumers.
struct Partition {
    name: String,
    /// The last sequence of this stream applied here.
    applied: u64,
    /// Whether it reached what the stream held when it started.
    caught_up: bool,
    sequence: metrics::Gauge,
}

impl Partition {
    /// This partition reached its start target: the last one to do so
    /// opens the node.
    async fn caught_up(&mut self, state: &ServerState, replaying: &AtomicUsize) {
        if std::mem::replace(&mut self.caught_up, true) {
            return;
        }
        tracing::info!(stream = %self.name, entries = self.applied, "partition replayed");
        if replaying.fetch_sub(1, Ordering::AcqRel) == 1 {
            replayed(state).await;
        }
    }
}

/// Reads `part`'s stream from `applied + 1` on until the consumer fails.
async fn run(
    cluster: &Cluster,
    state: &ServerState,
    part: &mut Partition,
    replaying: &AtomicUsize,
    loads: &mut tokio::sync::mpsc::Receiver<super::interest::Load>,
) -> Result<(), String> {
    let mut stream = cluster.js.get_stream(&part.name).await.map_err(|e| e.to_string())?;
    let target = stream.info().await.map_err(|e| e.to_string())?.state.last_sequence;
    if target <= part.applied {
        part.caught_up(state, replaying).await;
    }
    let deliver_policy = match part.applied {
        0 => DeliverPolicy::All,
        n => DeliverPolicy::ByStartSequence { start_sequence: n + 1 },
    };
    // An ordered consumer: no acks, the server pushes in stream order and
    // the client recreates it past the last sequence it saw after a gap.
    let consumer = stream
        .create_consumer(pull::OrderedConfig { deliver_policy, ..Default::default() })
        .await
        .map_err(|e| e.to_string())?;
    let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
    loop {
        // Loads and entries take turns (no `biased`): a burst of loads
        // does not hold the partition's entries back for long.
        let next = tokio::select! {
            Some(load) = loads.recv() => {
                super::interest::serve(cluster, state, part.applied, load).await;
                continue;
            }
            next = tokio::time::timeout(STALL_CHECK, messages.next()) => next,
        };
        let m = match next {
            Ok(Some(m)) => m.map_err(|e| e.to_string())?,
            Ok(None) => return Err("the consumer ended".into()),
            Err(_) => {
                // Quiet is fine unless the stream has entries this node has
                // not seen: a consumer whose server died (the stream's
                // leader, a paused server) can stay silent for a long time
                // instead of failing. Then it is replaced.
                let info = tokio::time::timeout(STALL_CHECK * 2, stream.info()).await;
                match info {
                    Ok(Ok(info)) if info.state.last_sequence <= part.applied => continue,
                    Ok(Ok(info)) => {
                        return Err(format!(
                            "the consumer stalled at {} while the stream is at {}",
                            part.applied, info.state.last_sequence
                        ));
                    }
                    Ok(Err(e)) => return Err(format!("cannot read the stream's state: {e}")),
                    Err(_) => {
                        // No answer at all: the server we talk to is likely
                        // stuck (see `Cluster::publish_retrying`).
                        let _ = cluster.js.client().force_reconnect().await;
                        return Err("the stream's state did not come in time".into());
                    }
                }
            }
        };
        let (seq, stored) =
            m.info().map(|i| (i.stream_sequence, stored_at(i.published))).map_err(|e| e.to_string())?;
        if seq <= part.applied {
            continue;
        }
        // Not applied (a room could not be reloaded): read again from here.
        apply(cluster, state, m.subject.as_str(), &m.payload, (seq, stored))
            .await
            .map_err(|e| e.to_string())?;
        part.applied = seq;
        crate::metrics::cluster_applied(&part.sequence, seq);
        if seq >= target {
            part.caught_up(state, replaying).await;
        }
    }
}

/// When the stream stored an entry, in milliseconds.
pub(super) fn stored_at(published: async_nats::datetime::DateTime) -> Millis {
    Millis(i64::try_from(published.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX))
}

/// The appliers have handed every entry the streams held at start to its
/// room. The rooms apply them from their mailboxes, so one more command to
/// each, answered after everything queued before it, tells when the
/// replicas really hold that state; then the node serves.
async fn replayed(state: &ServerState) {
    let started = std::time::Instant::now();
    for room in state.registry.live_handles() {
        // An error is a room that retired meanwhile: nothing left to wait for.
        let _ = room.ask(|tx| RoomCommand::Doc { respond_to: tx }).await;
    }
    state.set_replaying(false);
    state.set_ready(true);
    tracing::info!(drained_ms = started.elapsed().as_millis() as u64, "room logs replayed; ready");
}

/// Applies one stored entry. `stored` is when the stream stored it: the
/// rooms decide with that clock rather than the origin node's, so a roomd
/// node whose clock is off cannot stamp a room's messages or `_updatedAt`
/// behind the others' (clients page with `ts < end` and poll with
/// `updatedSince`). Every replica reads the same time from the stream; the
/// room's clock keeps the times strictly increasing if the stream's leader
/// changes to a server whose clock is behind.
async fn apply(
    cluster: &Cluster,
    state: &ServerState,
    subject: &str,
    payload: &[u8],
    at: (u64, Millis),
) -> Result<(), super::ClusterError> {
    let (seq, stored) = at;
    if let Some(placed) = cluster.layout.room_here(subject) {
        let Ok(rid) = placed else {
            tracing::error!(subject, "log entry outside its room's partition skipped");
            return Ok(());
        };
        let mut entry: EntryV1 = match serde_json::from_slice(payload) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(subject, error = %e, "unreadable room log entry skipped");
                return Ok(());
            }
        };
        entry.now = stored.0;
        entry.seq = seq;
        if cluster.by_interest() && state.registry.get(rid).is_none() {
            if !super::interest::unheld(cluster, state, rid, &entry) {
                return Ok(());
            }
            // Held from this entry on: the room catches up with the log
            // before it, then applies this one as it comes.
            if !matches!(entry.op, OpV1::Create { .. })
                && !super::interest::load_before(cluster, state, &RoomId::from(rid), seq).await?
            {
                return Ok(());
            }
        }
        if let OpV1::Create { room, members } = entry.op {
            // Started on every node, the creating one included. Replays of
            // an entry already applied change nothing.
            let mut room = crate::room::RoomState::from(*room);
            for m in members {
                room.members.insert(m.user.id.clone(), m.into());
            }
            state.apply_replica(room);
            cluster.created(&entry.id);
            cluster.started(&RoomId::from(rid));
            return Ok(());
        }
        match state.registry.get(rid) {
            Some(room) if matches!(entry.op, OpV1::Snapshot(_)) => {
                return super::compact::held_snapshot(cluster, &room, rid, entry).await;
            }
            Some(room) => {
                if let Some(entry) = super::room_log::delivered(entry) {
                    room.tell(RoomCommand::Apply(Box::new(entry))).await
                }
            }
            // A room whose log was compacted starts from its snapshot.
            None => super::compact::unknown_room(cluster, state, rid, entry).await,
        }
    } else if subject.starts_with("roomfacts.") {
        match serde_json::from_slice::<FactV1>(payload) {
            Ok(fact) => apply_fact(cluster, state, fact),
            Err(e) => tracing::error!(subject, error = %e, "unreadable fact skipped"),
        }
    }
    // `roomname.*` claims only guard uniqueness; the rooms carry the names.
    Ok(())
}

fn apply_fact(cluster: &Cluster, state: &ServerState, fact: FactV1) {
    let users = &state.users;
    match fact {
        // This incarnation already applied its own facts when it made them.
        FactV1::User { origin, .. }
        | FactV1::UsernameOwner { origin, .. }
        | FactV1::RevokedToken { origin, .. }
            if origin == cluster.origin() => {}
        FactV1::User { user, .. } => users.learn_user(user.into()),
        FactV1::UsernameOwner { name, uid, .. } => users.learn_owner(name, uid),
        FactV1::RevokedToken { key, exp, .. } => users.restore_revoked(key, exp),
    }
}

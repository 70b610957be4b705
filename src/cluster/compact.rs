//! Snapshots and compaction of the room logs, and the room history chunks
//! that keep the messages the logs no longer hold. See docs/cluster.md,
//! "Snapshots and history".
//!
//! Every `--cluster-snapshot-every` entries of a room, the node that
//! appended the entry reaching the count (all replicas count the same, so
//! all know whose turn it is) writes, in this order:
//! 1. the messages the room accepted since its previous snapshot, as one or
//!    more chunks on `roomhist.<rid>` of the stream `ROOMHIST` (a stream of
//!    its own: the applier never reads it, so a start does not grow with
//!    history);
//! 2. a snapshot entry on the room's log (`OpV1::Snapshot`): the room's
//!    state without messages as of log sequence `covers`, and the index of
//!    every chunk;
//! 3. once that entry is acknowledged, a purge of `roomlog.<rid>` below
//!    `covers + 1` (`{filter, seq}`, never a rollup).
//!
//! A crash between two steps loses nothing: a chunk no snapshot indexes is
//! never read, and entries stay in the log until a snapshot that covers
//! them has landed. The entries after `covers` and before the snapshot
//! entry (appended while it was written) stay too, so a node that reads the
//! room from scratch meets them before the snapshot: it holds them
//! (`Compaction::early`) until the snapshot arrives, starts the room from
//! it and then applies them.
//!
//! Two nodes writing a snapshot on the same base (the previous snapshot's
//! `covers`) use the same `Nats-Msg-Id`, so JetStream keeps the first and
//! the second writer, told its append was a duplicate, purges nothing.

use super::entry::{ChunkRefV1, EntryV1, OpV1, SnapshotV1};
use super::{Cluster, ClusterError};
use crate::ids::RoomId;
use crate::room::{Message, RoomCommand, RoomState};
use crate::server::ServerState;
use crate::store::rows::MessageRowV1;
use async_nats::jetstream::{self, message::PublishMessage as Publish, stream};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// The stream holding room history chunks.
pub(super) const HIST_STREAM: &str = "ROOMHIST";
/// Default `--cluster-snapshot-every`.
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 1000;
/// Entries held for rooms this node has not started yet (see the module
/// docs), over all rooms. Only entries of a room whose snapshot is being
/// written wait here, a handful each; past this the oldest room's are
/// dropped with an error rather than held without bound.
const MAX_EARLY: usize = 100_000;

/// This node's side of compaction.
pub(crate) struct Compaction {
    hist: stream::Stream,
    /// `--cluster-snapshot-every`: entries of a room between snapshots.
    pub(crate) every: u64,
    /// Entries of rooms not started here yet, by room id, in log order
    /// (only the applier touches it).
    early: Mutex<HashMap<String, Vec<EntryV1>>>,
}

impl Compaction {
    /// Creates or checks the history stream.
    pub(super) async fn open(
        js: &jetstream::Context,
        replicas: usize,
        every: u64,
    ) -> Result<Compaction, ClusterError> {
        let wanted = stream::Config {
            name: HIST_STREAM.to_owned(),
            subjects: vec!["roomhist.>".into()],
            storage: stream::StorageType::File,
            num_replicas: replicas.max(1),
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        };
        let mut hist = js
            .get_or_create_stream(wanted.clone())
            .await
            .map_err(|e| ClusterError::Unavailable(e.to_string()))?;
        let info = hist.info().await.map_err(|e| ClusterError::Unavailable(e.to_string()))?;
        if info.config.storage != stream::StorageType::File || info.config.num_replicas != wanted.num_replicas
        {
            return Err(ClusterError::Stream(
                HIST_STREAM.to_owned(),
                format!(
                    "it has {:?} storage and {} replicas; roomd needs file storage and {} (--cluster-replicas)",
                    info.config.storage, info.config.num_replicas, wanted.num_replicas
                ),
            ));
        }
        Ok(Compaction { hist, every: every.max(1), early: Mutex::new(HashMap::new()) })
    }
}

/// The subject of a room's history chunks.
fn hist_subject(rid: &RoomId) -> String {
    format!("roomhist.{rid}")
}

/// What a snapshot writer takes from the room actor.
pub(crate) struct SnapshotJob {
    pub rid: RoomId,
    pub snapshot: SnapshotV1,
    /// The messages accepted since the previous snapshot, up to `covers`,
    /// oldest first: they become the new chunks.
    pub messages: Vec<std::sync::Arc<Message>>,
    /// The `covers` of the snapshot in effect (0: none yet): the
    /// idempotency key shared by every writer of the next snapshot.
    pub base: u64,
}

/// Writes chunks, the snapshot entry and the purge (see the module docs).
/// `Ok(false)`: another node's snapshot on the same base won.
pub(crate) async fn write_snapshot(cluster: &Cluster, job: SnapshotJob) -> Result<bool, ClusterError> {
    let SnapshotJob { rid, mut snapshot, messages, base } = job;
    let covers = snapshot.covers;
    // Chunks well under max_payload: a chunk holds many messages, each at
    // most one call's frame.
    let budget = (cluster.max_payload() / 2).max(64 * 1024);
    let mut batch: Vec<MessageRowV1> = Vec::new();
    let mut bytes = 2;
    let mut part = 0u32;
    for m in &messages {
        let row = MessageRowV1::from(&**m);
        let len = serde_json::to_vec(&row).map(|v| v.len()).unwrap_or(0) + 1;
        if !batch.is_empty() && bytes + len > budget {
            snapshot.chunks.push(write_chunk(cluster, &rid, covers, part, &batch).await?);
            part += 1;
            batch.clear();
            bytes = 2;
        }
        bytes += len;
        batch.push(row);
    }
    if !batch.is_empty() {
        snapshot.chunks.push(write_chunk(cluster, &rid, covers, part, &batch).await?);
    }
    let entry = EntryV1 {
        id: format!("snap-{rid}-{base}"),
        origin: cluster.origin().to_owned(),
        now: crate::time::Millis::now().0,
        op: OpV1::Snapshot(Box::new(snapshot)),
        seq: 0,
    };
    let payload = super::entry_bytes(&entry);
    let publish = || Publish::build().payload(payload.clone()).message_id(&entry.id);
    let (log, subject) = cluster.room_log(&rid).await?;
    let ack = cluster.publish_acked(&subject, payload.len(), publish).await?;
    if ack.duplicate {
        return Ok(false);
    }
    fault_point("ROOMD_TEST_CRASH_BEFORE_PURGE");
    log.purge()
        .filter(subject)
        .sequence(covers + 1)
        .await
        .map_err(|e| ClusterError::Unavailable(e.to_string()))?;
    Ok(true)
}

/// Test-only fault injection: the process dies here (as `kill -9` would)
/// when the variable is set. Nothing else reads it.
fn fault_point(var: &str) {
    if std::env::var_os(var).is_some() {
        tracing::warn!(var, "fault injection: aborting");
        std::process::abort();
    }
}

async fn write_chunk(
    cluster: &Cluster,
    rid: &RoomId,
    covers: u64,
    part: u32,
    rows: &[MessageRowV1],
) -> Result<ChunkRefV1, ClusterError> {
    let payload = Bytes::from(serde_json::to_vec(rows).unwrap_or_default());
    // Keyed by what it covers: a retried write lands once.
    let id = format!("hist-{rid}-{covers}-{part}");
    let publish = || Publish::build().payload(payload.clone()).message_id(&id);
    let ack = cluster.publish_acked(&hist_subject(rid), payload.len(), publish).await?;
    Ok(ChunkRefV1 {
        seq: ack.sequence,
        first_ts: rows.first().map_or(0, |r| r.ts.0),
        last_ts: rows.last().map_or(0, |r| r.ts.0),
        count: u32::try_from(rows.len()).unwrap_or(u32::MAX),
    })
}

/// Reads one history chunk, oldest message first. Only messages inside the
/// range its index entry names count: the index is the truth.
pub(crate) async fn read_chunk(cluster: &Cluster, chunk: &ChunkRefV1) -> Result<Vec<Message>, ClusterError> {
    let m = cluster
        .compaction
        .hist
        .get_raw_message(chunk.seq)
        .await
        .map_err(|e| ClusterError::Unavailable(e.to_string()))?;
    let rows: Vec<MessageRowV1> =
        serde_json::from_slice(&m.payload).map_err(|e| ClusterError::Unavailable(e.to_string()))?;
    Ok(rows
        .into_iter()
        .filter(|r| r.ts.0 >= chunk.first_ts && r.ts.0 <= chunk.last_ts)
        .map(Message::from)
        .collect())
}

/// The applier met an entry of a room this node does not hold. A snapshot
/// starts the room (then the entries held for it follow); anything else is
/// held until its snapshot comes.
pub(super) async fn unknown_room(cluster: &Cluster, state: &ServerState, rid: &str, entry: EntryV1) {
    let OpV1::Snapshot(snap) = &entry.op else {
        let mut early = cluster.compaction.early.lock().unwrap_or_else(|e| e.into_inner());
        let held: usize = early.values().map(Vec::len).sum();
        if held >= MAX_EARLY {
            tracing::error!(
                room = rid,
                "too many log entries held for rooms without a snapshot; entry skipped"
            );
            return;
        }
        // Not an error yet: the room's snapshot normally follows within a
        // few entries. An entry of a room that never had one waits here
        // harmlessly (bounded above).
        tracing::debug!(room = rid, seq = entry.seq, "log entry held until its room's snapshot");
        early.entry(rid.to_owned()).or_default().push(entry);
        return;
    };
    let held =
        cluster.compaction.early.lock().unwrap_or_else(|e| e.into_inner()).remove(rid).unwrap_or_default();
    let covers = snap.covers;
    state.apply_replica(snapshot_state(snap));
    let rid = RoomId::from(rid);
    cluster.started(&rid);
    let Some(handle) = state.registry.get(&rid) else { return };
    // The room first takes the snapshot as its starting point (sequence 0
    // marks it so), then the entries after it, then the snapshot entry in
    // its own place in the log.
    let mut seed = entry.clone();
    seed.seq = 0;
    for e in std::iter::once(seed).chain(held.into_iter().filter(|e| e.seq > covers)) {
        if let Some(e) = super::room_log::delivered(e) {
            handle.tell(RoomCommand::Apply(Box::new(e))).await;
        }
    }
    if let Some(entry) = super::room_log::delivered(entry) {
        handle.tell(RoomCommand::Apply(Box::new(entry))).await;
    }
}

/// The room state a snapshot holds (members and guest seats included).
pub(super) fn snapshot_state(snap: &SnapshotV1) -> RoomState {
    let mut room = RoomState::from((*snap.room).clone());
    for m in &snap.members {
        room.members.insert(m.user.id.clone(), m.clone().into());
    }
    for g in &snap.guests {
        room.members.insert(g.user.id.clone(), g.clone().into());
    }
    room
}

/// How long reading a room's entries may wait for the next one. Not long:
/// the read runs in its partition's applier (a load, a reload), whose other
/// rooms wait meanwhile; a read that stalls (its server died) fails, and
/// the load or the applier tries again on a fresh consumer.
const READ_BACK_WAIT: Duration = Duration::from_secs(5);

/// The applier met a snapshot entry of a room this node holds. The room
/// applies it if it holds everything the snapshot covers; if it does not
/// (it read behind a purge, see `RoomActor::holds_all_before`), the room is
/// reloaded from the snapshot and its entries between `covers` and the
/// snapshot entry, read back from the log. An error leaves the entry
/// unapplied, for the applier to deliver again.
pub(super) async fn held_snapshot(
    cluster: &Cluster,
    room: &crate::room::RoomHandle,
    rid: &str,
    entry: EntryV1,
) -> Result<(), ClusterError> {
    let OpV1::Snapshot(snap) = &entry.op else { return Ok(()) };
    let state = snapshot_state(snap);
    let covers = snap.covers;
    let at = entry.seq;
    let Some(delivered) = super::room_log::delivered(entry.clone()) else { return Ok(()) };
    let whole =
        room.ask(|tx| RoomCommand::ApplySnapshot { entry: Box::new(delivered), respond_to: tx }).await;
    // An error is a room that retired meanwhile: nothing to reload.
    if whole.unwrap_or(true) {
        return Ok(());
    }
    // Up to the snapshot entry, which ends the read (or, if a later
    // snapshot purged it, an entry after it).
    let entries: Vec<_> = read_entries(cluster, &RoomId::from(rid), covers, at - 1)
        .await?
        .into_iter()
        .filter_map(super::room_log::delivered)
        .collect();
    let Some(snapshot) = super::room_log::delivered(entry) else { return Ok(()) };
    crate::metrics::cluster_room_reload();
    room.tell(RoomCommand::Reseed { state: Box::new(state), snapshot: Box::new(snapshot), entries }).await;
    Ok(())
}

/// Room `rid`'s log entries after sequence `after` up to `upto`
/// (inclusive), read with a consumer of its own. The read ends at `upto`
/// or at the room's first entry beyond it: one of them always comes (the
/// caller knows an entry at or after `upto` exists).
pub(super) async fn read_entries(
    cluster: &Cluster,
    rid: &RoomId,
    after: u64,
    upto: u64,
) -> Result<Vec<EntryV1>, ClusterError> {
    use async_nats::jetstream::consumer::{DeliverPolicy, pull};
    use futures_util::StreamExt;
    let unavailable = |e: String| ClusterError::Unavailable(format!("reading room {rid}'s log: {e}"));
    let (log, subject) = cluster.room_log(rid).await?;
    let consumer = log
        .create_consumer(pull::OrderedConfig {
            filter_subject: subject,
            deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: after + 1 },
            ..Default::default()
        })
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    let mut messages = consumer.messages().await.map_err(|e| unavailable(e.to_string()))?;
    let mut entries = Vec::new();
    loop {
        let m = match tokio::time::timeout(READ_BACK_WAIT, messages.next()).await {
            Ok(Some(Ok(m))) => m,
            Ok(Some(Err(e))) => return Err(unavailable(e.to_string())),
            Ok(None) => return Err(unavailable("the consumer ended".into())),
            Err(_) => return Err(unavailable("no entry came".into())),
        };
        let info = m.info().map_err(|e| unavailable(e.to_string()))?;
        let (seq, stored) = (info.stream_sequence, super::apply::stored_at(info.published));
        if seq > upto {
            return Ok(entries);
        }
        match serde_json::from_slice::<EntryV1>(&m.payload) {
            Ok(mut e) => {
                e.now = stored.0;
                e.seq = seq;
                entries.push(e);
            }
            // Skipped here as the applier skips it.
            Err(e) => tracing::error!(room = %rid, error = %e, "unreadable room log entry skipped"),
        }
        if seq == upto {
            return Ok(entries);
        }
    }
}

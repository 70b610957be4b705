//! A delivered log: a room's part in compacting its log (the log writes
//! and reads snapshots and chunks, `RoomLog::write_snapshot`/`read_chunk`;
//! this decides when, and what the room keeps).
//!
//! What a replica keeps instead of every message id and every message:
//! - the messages accepted since the latest snapshot it applied (`tail`,
//!   bounded by the snapshot interval): the next snapshot's chunks are
//!   written from them, and pages older than the window read them;
//! - the index of the history chunks holding everything the snapshot covers;
//! - the ids a reused `_id` is refused for (see [`RoomCompaction::knows`]).
//!
//! Everything that decides (the entry count, the ids refused) follows from
//! the log alone, so every replica decides the same, whether it started the
//! room from its creation or from a snapshot.

use super::RoomError;
use super::actor::{Out, RoomActor};
use super::handle::Reply;
use super::log::{ChunkRef, Entry, RoomOp, RoomSnapshot, SnapshotJob};
use super::model::Message;
use super::publish::HistoryPage;
use super::state::RoomState;
use crate::ids::{MessageId, UserId};
use crate::time::Millis;
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A replica's compaction state (a delivered log only; empty otherwise).
#[derive(Debug, Default)]
pub(super) struct RoomCompaction {
    /// The log sequence the latest applied snapshot covers (0: none).
    covered: u64,
    /// Sequences of the entries applied after `covered`: their count says
    /// when the next snapshot is due.
    since: VecDeque<u64>,
    /// Messages accepted after `covered`, with their entry's sequence.
    tail: VecDeque<(u64, Arc<Message>)>,
    /// Ids of the user messages in `tail`.
    tail_ids: HashSet<MessageId>,
    /// The user message ids the latest snapshot carried (those since the
    /// snapshot before it).
    ids: Vec<String>,
    ids_set: HashSet<MessageId>,
    /// A room started from a snapshot: the ids its previous snapshot
    /// carried, refused until the snapshot entry itself is applied, as on
    /// replicas that applied the whole log.
    extra: HashSet<MessageId>,
    /// Between starting from a snapshot and applying its entry in the log:
    /// no snapshot is written meanwhile.
    seeded: bool,
    chunks: Vec<ChunkRef>,
    /// The sequence of the entry being applied.
    applying: u64,
    /// This node is writing a snapshot of the room.
    writing: Arc<AtomicBool>,
}

/// The room's compaction state, made on its first use (a delivered log).
pub(super) fn made(c: &mut Option<Box<RoomCompaction>>) -> &mut RoomCompaction {
    c.get_or_insert_with(Box::default)
}

impl RoomCompaction {
    /// Whether this node is writing a snapshot of the room now.
    pub(super) fn writing(&self) -> bool {
        self.writing.load(Ordering::Acquire)
    }

    /// A message the room accepted while applying the current entry.
    pub(super) fn accepted(&mut self, m: &Arc<Message>) {
        if m.t.is_none() {
            self.tail_ids.insert(m.id.clone());
        }
        self.tail.push_back((self.applying, m.clone()));
    }

    /// Whether a client-chosen `_id` is refused as reused: it is, while its
    /// message is among those accepted since the snapshot before the latest
    /// one (at least the last `--cluster-snapshot-every` entries' worth).
    /// Older ids are not remembered (docs/cluster.md, Limits).
    pub(super) fn knows(&self, id: &MessageId) -> bool {
        self.tail_ids.contains(id) || self.ids_set.contains(id) || self.extra.contains(id)
    }

    fn set_ids(&mut self, ids: Vec<String>) {
        self.ids_set = ids.iter().map(|i| MessageId::from(i.as_str())).collect();
        self.ids = ids;
    }
}

impl RoomActor {
    /// Applies one entry of the room's log, counting it towards the next
    /// snapshot.
    pub(super) fn apply_logged(&mut self, entry: Entry) {
        let entry = match entry.op {
            RoomOp::Snapshot(snap) => return self.apply_snapshot(*snap, entry.seq),
            _ => entry,
        };
        let (seq, origin) = (entry.seq, entry.origin.clone());
        made(&mut self.compaction).applying = seq;
        self.apply_entry(entry);
        made(&mut self.compaction).since.push_back(seq);
        self.maybe_snapshot(&origin);
    }

    /// A snapshot entry. Sequence 0 is a room this node starts from the
    /// snapshot (`cluster::compact::unknown_room`); otherwise it is the
    /// entry in its place in the log.
    fn apply_snapshot(&mut self, snap: RoomSnapshot, seq: u64) {
        let c = made(&mut self.compaction);
        if seq == 0 {
            self.guest_nodes = snap.guest_nodes.into_iter().collect();
            self.clock.saw(snap.clock);
            c.covered = snap.covers;
            c.extra = snap.prev_ids.iter().map(|i| MessageId::from(i.as_str())).collect();
            c.set_ids(snap.ids);
            c.seeded = true;
            self.history_complete = snap.chunks.is_empty();
            c.chunks = snap.chunks;
            return;
        }
        if snap.covers < c.covered {
            // Outdone by a later snapshot already applied.
            return;
        }
        c.extra.clear();
        c.seeded = false;
        if snap.covers == c.covered {
            return;
        }
        let covers = snap.covers;
        c.covered = covers;
        c.chunks = snap.chunks;
        c.set_ids(snap.ids);
        c.tail.retain(|(s, _)| *s > covers);
        c.tail_ids = c.tail.iter().filter(|(_, m)| m.t.is_none()).map(|(_, m)| m.id.clone()).collect();
        c.since.retain(|s| *s > covers);
    }

    /// Whether this replica applied every entry a snapshot in its place in
    /// the log covers, so that adopting its chunk index leaves nothing out.
    /// A replica reading behind the log's head can find entries below a
    /// newer snapshot purged before it read them (the purge follows the
    /// snapshot entry, which it has not reached yet): it then counts fewer
    /// entries since the same base than the writer did, or does not share
    /// the writer's base at all. Such a replica reloads the room from the
    /// snapshot (`reseed`) instead.
    pub(super) fn holds_all_before(&self, snap: &RoomSnapshot) -> bool {
        let Some(count) = snap.count else { return true };
        // No compaction state yet: nothing applied, as a fresh one says.
        let (covered, applied) = self
            .compaction
            .as_deref()
            .map_or((0, 0), |c| (c.covered, c.since.iter().filter(|s| **s <= snap.covers).count() as u64));
        if snap.covers <= covered {
            // Older than or the same as what it applied: ignored anyway.
            return true;
        }
        snap.base == covered && applied == count
    }

    /// Starts the room over from `snapshot` (an entry in its place in the
    /// log) and the entries after what it covers, read back from the log:
    /// the replica missed entries a purge removed (see
    /// [`RoomActor::holds_all_before`]). The entries are applied silently:
    /// this node's listeners heard them (or the state they were decided on)
    /// when they first came; sockets coming back with a position get
    /// `recovered: false` and refetch, as the replay window starts afresh.
    pub(super) fn reseed(&mut self, state: RoomState, snapshot: Entry, entries: Vec<Entry>) {
        let at = snapshot.seq;
        let RoomOp::Snapshot(snap) = snapshot.op else { return };
        tracing::warn!(
            room = %self.state.id,
            entries = entries.len(),
            "this node read the room's log behind a purge; room reloaded from its snapshot"
        );
        let before: Vec<UserId> = self.state.members.keys().cloned().collect();
        self.state = state;
        self.history.clear();
        self.history_ids.clear();
        // Keeps the flag of a snapshot this node may be writing now.
        let writing = self.compaction.as_ref().map(|c| c.writing.clone()).unwrap_or_default();
        self.compaction = Some(Box::new(RoomCompaction { writing, ..Default::default() }));
        // As a node meeting the room first at this snapshot: the snapshot
        // as the starting point, the entries after it, then the snapshot
        // entry in its place.
        self.seed(*snap, at, entries.into_iter().filter(|e| e.seq < at).collect());
        // Whoever left while this replica was not looking stops hearing the
        // room here too, as a leave applied in its place would have made
        // them (and a room that went private keeps only its members).
        for uid in before.into_iter().filter(|u| !self.state.members.contains_key(u)) {
            self.staged.push(Out::DropSubs(uid));
        }
        if self.state.kind == super::RoomType::Private {
            self.staged.push(Out::DropNonMembers);
        }
    }

    /// Starts from `snap` (an entry at log sequence `at`), as a node
    /// meeting the room first at this snapshot: the snapshot as the
    /// starting point, the entries after what it covers, the snapshot entry
    /// in its place, then any later entries; all applied silently, and the
    /// replay window starts afresh.
    fn seed(&mut self, snap: RoomSnapshot, at: u64, entries: Vec<Entry>) {
        self.apply_snapshot(snap.clone(), 0);
        let covered = self.compaction.as_ref().map_or(0, |c| c.covered);
        let (before, after): (Vec<Entry>, Vec<Entry>) =
            entries.into_iter().filter(|e| e.seq > covered).partition(|e| e.seq < at);
        for e in before {
            self.apply_silently(e);
        }
        self.apply_snapshot(snap, at);
        self.staged.clear();
        self.ops.clear();
        for e in after {
            self.apply_silently(e);
        }
        self.replay = super::replay::ReplayWindow::new(self.cfg.replay.clone(), self.state.seq);
    }

    /// Applies a log entry without telling anyone: its listeners heard it
    /// when it came, or it came before this node held the room.
    fn apply_silently(&mut self, e: Entry) {
        self.apply_logged(e);
        self.staged.clear();
        self.ops.clear();
    }

    /// A room this node just started (a log holding rooms by interest) from its
    /// latest snapshot, or from its creation when it has none, catches up
    /// with the entries the log holds after it. Silent: they were decided
    /// before this node held the room, and it has no listeners yet.
    pub(super) fn load(&mut self, snapshot: Option<Entry>, entries: Vec<Entry>) {
        match snapshot {
            Some(Entry { seq, op: RoomOp::Snapshot(snap), .. }) => self.seed(*snap, seq, entries),
            _ => {
                for e in entries {
                    self.apply_silently(e);
                }
                self.replay = super::replay::ReplayWindow::new(self.cfg.replay.clone(), self.state.seq);
            }
        }
    }

    /// Writes a snapshot if one is due and this node appended the entry
    /// that made it due: every `--cluster-snapshot-every` entries; if that
    /// node is gone (no snapshot came), the node of the entry a tenth of
    /// the interval later tries, and so on.
    fn maybe_snapshot(&mut self, origin: &str) {
        let every = self.log.snapshot_every();
        if every == 0 {
            return;
        }
        let retry = (every / 10).max(1);
        let c = made(&mut self.compaction);
        let n = c.since.len() as u64;
        if n < every
            || !(n - every).is_multiple_of(retry)
            || origin != self.log.origin()
            || c.seeded
            || c.writing.load(Ordering::Acquire)
        {
            return;
        }
        let Some(&covers) = c.since.back() else { return };
        let messages: Vec<Arc<Message>> = c.tail.iter().map(|(_, m)| m.clone()).collect();
        let ids = messages.iter().filter(|m| m.t.is_none()).map(|m| m.id.to_string()).collect();
        let snapshot = RoomSnapshot {
            covers,
            guest_nodes: self.guest_nodes.iter().map(|(u, n)| (u.clone(), n.clone())).collect(),
            clock: self.clock.last(),
            chunks: c.chunks.clone(),
            ids,
            prev_ids: c.ids.clone(),
            base: c.covered,
            count: Some(n),
        };
        let job = SnapshotJob { state: self.state.clone(), snapshot, messages, base: c.covered };
        let writing = c.writing.clone();
        writing.store(true, Ordering::Release);
        let rid = self.state.id.clone();
        let write = self.log.write_snapshot(job);
        tokio::spawn(async move {
            match write.await {
                Ok(true) => tracing::debug!(room = %rid, covers, "room log compacted"),
                Ok(false) => tracing::debug!(room = %rid, covers, "another node's snapshot landed first"),
                // Nothing is lost: the entries stay until a snapshot lands.
                Err(e) => {
                    tracing::warn!(room = %rid, error = %e, "cannot write the room's snapshot; retried later")
                }
            }
            writing.store(false, Ordering::Release);
        });
    }

    /// `loadHistory` from a delivered log past the window: messages accepted
    /// since the latest snapshot from memory, older ones from the history
    /// chunks (read off the room's loop). Each message is in exactly one of
    /// window, tail and chunks below `before`, and `ts` strictly increases,
    /// so pages neither skip nor repeat.
    pub(super) fn compacted_page(
        &mut self,
        mut page: HistoryPage,
        end: Option<Millis>,
        floor: Millis,
        limit: usize,
        max_bytes: usize,
        respond_to: Reply<Vec<Arc<Message>>>,
    ) {
        if !page.wants_more(limit) || self.history_complete {
            return self.reply(respond_to, Ok(page.messages));
        }
        let before = match (self.history.front(), end) {
            (Some(m), Some(e)) => m.ts().min(e),
            (Some(m), None) => m.ts(),
            (None, Some(e)) => e,
            (None, None) => Millis(i64::MAX),
        };
        let c = self.compaction.as_deref();
        for (_, m) in c.into_iter().flat_map(|c| c.tail.iter()).rev() {
            if m.ts >= before || m.ts < floor {
                continue;
            }
            if !page.wants_more(limit) || !page.push(Arc::clone(m), max_bytes) {
                break;
            }
        }
        let older: Vec<ChunkRef> = c
            .into_iter()
            .flat_map(|c| c.chunks.iter())
            .filter(|c| c.first_ts < before && c.last_ts >= floor)
            .cloned()
            .collect();
        if !page.wants_more(limit) || older.is_empty() {
            return self.reply(respond_to, Ok(page.messages));
        }
        let rid = self.state.id.clone();
        let log = self.log.clone();
        self.staged.push(Out::Reply(Box::new(move |_| {
            tokio::spawn(async move {
                for chunk in older.into_iter().rev() {
                    let messages = match log.read_chunk(chunk).await {
                        Ok(m) => m,
                        Err(e) => {
                            tracing::error!(room = %rid, error = %e, "cannot read a history chunk");
                            let _ = respond_to.send(Err(RoomError::Unavailable));
                            return;
                        }
                    };
                    for m in messages.into_iter().rev().filter(|m| m.ts < before && m.ts >= floor) {
                        if !page.wants_more(limit) || !page.push(Arc::new(m), max_bytes) {
                            let _ = respond_to.send(Ok(page.messages));
                            return;
                        }
                    }
                }
                let _ = respond_to.send(Ok(page.messages));
            });
        })));
    }
}

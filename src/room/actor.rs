//! The room actor: one tokio task per room owns its [`RoomState`], its
//! message history and its subscribers, and handles one command at a time.
//! That serialisation is what makes "check, then insert" atomic: there is no
//! lock to forget. This file is the loop and the commit pipeline (a
//! command's outputs wait for its commit, in command order); what each
//! command does is in `commands.rs`.
//!
//! Flow control: connections reach the actor through a bounded mailbox with
//! `send().await` (a busy room slows its callers down); the actor reaches
//! connections only through [`RoomSink::try_send`] on their bounded
//! outbound queues, so a slow client is disconnected and never stalls the
//! room. There is no cycle of awaiting sends.

use super::RoomError;
use super::ended::EndedRoom;
use super::handle::{Reply, RoomCommand, RoomConfig, RoomDeps, RoomHandle, Topic};
use super::listener::{MeetingEvent, RoomListener};
use super::log::{Order, RoomLog};
use super::model::Message;
use super::sink::RoomSink;
use super::state::{RoomClock, RoomState};
use super::throttle::CodeThrottle;
use crate::durability::{Committed, Durability, DurabilityError, RoomBatch, RoomChange};
use crate::hub::{LoggedEvent, UserEvent, UserHub};
use crate::ids::{ConnId, MessageId, UserId};
use crate::registry::Registry;
use crate::time::Millis;
use crate::users::Directory;
use serde_json::value::RawValue;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// One connection listening to this room.
pub(super) struct Subscriber {
    pub(super) sink: Arc<dyn RoomSink>,
    /// Who is listening: their subscriptions end if they leave, or if the
    /// room goes private while they are not members.
    pub(super) uid: UserId,
    /// The [`Topic`] bits this connection listens to.
    pub(super) topics: u8,
    /// The connection's DDP sub ids on this room's streams.
    pub(super) sub_ids: Vec<String>,
}

impl Subscriber {
    /// Adds a DDP sub id once. Most connections hold one or two subs on a
    /// room, for the room's life: a `push` on an empty `Vec` would make
    /// room for four (96 B where one needs 24).
    fn add_sub_id(&mut self, sub_id: String) {
        if !self.sub_ids.contains(&sub_id) {
            self.sub_ids.reserve_exact(1);
            self.sub_ids.push(sub_id);
        }
    }
}

/// A connection that joined by code through a door that hears the room as
/// events (Socket.IO): it hears every meeting event from its join on.
pub(super) struct Listening {
    pub(super) sink: Arc<dyn RoomListener>,
    /// Its member: it stops hearing the room when that member leaves.
    pub(super) uid: UserId,
}

/// The task that owns one room. `pub(super)` fields are shared with
/// `publish.rs`, which turns the rules' effects into frames and store rows.
pub(super) struct RoomActor {
    pub(super) state: RoomState,
    /// Stamps messages and `_updatedAt` so each strictly follows the last
    /// (see [`RoomClock`]): history paging by `ts` and `updatedSince`
    /// depend on it.
    pub(super) clock: RoomClock,
    rx: mpsc::Receiver<RoomCommand>,
    /// Weak, so the actor's own timers do not keep it alive.
    pub(super) me: mpsc::WeakSender<RoomCommand>,
    /// Filled when the actor retires; shared with every live handle.
    summary: Arc<OnceLock<Arc<EndedRoom>>>,
    pub(super) cfg: Arc<RoomConfig>,
    pub(super) registry: Arc<Registry>,
    pub(super) users: Arc<Directory>,
    pub(super) hub: Arc<UserHub>,
    pub(super) subscribers: HashMap<ConnId, Subscriber>,
    /// Connections hearing the room as meeting events (see [`Listening`]).
    pub(super) listeners: HashMap<ConnId, Listening>,
    /// The latest `history_limit` messages, oldest first: a cache of the
    /// newest part of the room's history, which `loadHistory` answers from
    /// before it reads older pages from the store.
    pub(super) history: VecDeque<super::recent::Recent>,
    /// Whether `history` holds every message the room has (a new room, or a
    /// restored one that had fewer than the window): then no page needs the
    /// store. Cleared for good when the window first drops a message.
    pub(super) history_complete: bool,
    /// Ids in `history`, to refuse a client-chosen `_id` twice.
    pub(super) history_ids: HashSet<MessageId>,
    /// A delivered log: what the replica keeps between snapshots of its
    /// log (recent messages and ids, the history chunks' index). Made on
    /// first use, so a room that never applies a log (one node) holds a
    /// pointer instead of ~300 B and an `Arc`.
    pub(super) compaction: Option<Box<super::compacted::RoomCompaction>>,
    /// Ids of messages submitted to the store and not yet committed: a
    /// burst can push them out of `history` before the store has them.
    pub(super) unconfirmed: HashSet<MessageId>,
    /// Guests in their reconnect grace, with the epoch of their timer.
    pub(super) guest_epochs: HashMap<UserId, u64>,
    /// The connection currently holding each guest's seat.
    pub(super) guest_holders: HashMap<UserId, ConnId>,
    /// A delivered log: the node (origin) holding each guest's seat, as the
    /// log says (the node that appended its join or latest resume).
    pub(super) guest_nodes: HashMap<UserId, String>,
    /// A delivered log: guests whose node was first seen gone at this instant.
    pub(super) orphaned: HashMap<UserId, Instant>,
    /// Numbers grace timers, so a stale timer is recognised and ignored.
    pub(super) next_epoch: u64,
    /// `None` runs in memory only (and with a delivered log).
    pub(super) store: Option<Arc<dyn Durability>>,
    /// Where this room's changes are put in order (`room/log.rs`).
    pub(super) log: Arc<dyn RoomLog>,
    /// `log`'s order, read once: the per-message path branches on this
    /// field, not through the trait object.
    pub(super) order: Order,
    /// A delivered log: callers on this node waiting for their entry to
    /// come back from the log, by entry id.
    pub(super) waiters: HashMap<String, super::replicated::Waiter>,
    /// Wrong join codes for this room, from any connection.
    pub(super) code_throttle: CodeThrottle,
    /// What the command being handled wants to send, once durable. Not to
    /// be confused with a connection's `outbox::Outbox`, where these end up.
    pub(super) staged: Vec<Out>,
    /// What the command being handled changed, for the store.
    pub(super) ops: Vec<RoomChange>,
    /// The latest meeting events, for sockets that come back (`join-room`
    /// with `since`).
    pub(super) replay: super::replay::ReplayWindow,
    /// The command being handled changed the room's row.
    pub(super) room_dirty: bool,
    /// The position the store has (or is committing) in the room's row.
    stored_seq: u64,
    /// Outputs waiting for their commit, oldest first. Outputs of a command
    /// that changed nothing still queue behind earlier ones, so every
    /// connection sees replies and events in the order the actor decided.
    pending: VecDeque<Pending>,
    /// Sweeps in a row that found the room unused here (see `sweep`).
    unused_sweeps: u8,
}

/// Starts the actor of `state` on mailbox `rx`; `history` is a restored
/// room's recent messages, oldest first.
pub(super) fn spawn(
    state: RoomState,
    history: Vec<Message>,
    cfg: Arc<RoomConfig>,
    deps: RoomDeps,
    rx: mpsc::Receiver<RoomCommand>,
    me: mpsc::WeakSender<RoomCommand>,
    summary: Arc<OnceLock<Arc<EndedRoom>>>,
) {
    let RoomDeps { registry, users, hub, store, log } = deps;
    // Resumes after the latest time the room handed out, so a restart
    // (or a clock that stepped back meanwhile) never stamps behind it.
    let last = history.iter().map(|m| m.ts).fold(state.updated_at, Millis::max);
    // The store restored at most `history_limit` messages: as many means
    // there may be older ones on disk.
    let history_complete = history.len() < cfg.history_limit;
    let replay = super::replay::ReplayWindow::new(cfg.replay.clone(), state.seq);
    let mut actor = RoomActor {
        clock: RoomClock::after(last),
        replay,
        room_dirty: false,
        stored_seq: state.seq,
        state,
        rx,
        me,
        summary,
        cfg,
        registry,
        users,
        hub,
        subscribers: HashMap::new(),
        listeners: HashMap::new(),
        history: VecDeque::new(),
        history_complete,
        history_ids: HashSet::new(),
        unconfirmed: HashSet::new(),
        compaction: None,
        guest_epochs: HashMap::new(),
        guest_holders: HashMap::new(),
        guest_nodes: HashMap::new(),
        orphaned: HashMap::new(),
        next_epoch: 0,
        store,
        order: log.order(),
        log,
        waiters: HashMap::new(),
        code_throttle: CodeThrottle::default(),
        staged: Vec::new(),
        ops: Vec::new(),
        pending: VecDeque::new(),
        unused_sweeps: 0,
    };
    for m in history {
        actor.history_ids.insert(m.id.clone());
        actor.history.push_back(super::recent::Recent::new(m, &actor.state.id));
    }
    if actor.order == Order::Now {
        // Guests of a restored room: no connection holds their seats after
        // a restart, so each has the guest grace from now to come back with
        // its token, as if its connection had just closed. (A new room has
        // no guests. A delivered log outlives a node's restart; the
        // guests of a gone node are released through it, see
        // `cluster::liveness`.)
        let guests: Vec<UserId> = actor.state.guests().cloned().collect();
        for uid in guests {
            actor.start_guest_grace(uid);
        }
    }
    tokio::spawn(actor.run());
}

/// Commands parked behind commits before the actor stops reading its mailbox.
pub(super) const MAX_PENDING: usize = 1024;

/// Sends a command's reply; told whether its commit failed.
type ReplyFn = Box<dyn FnOnce(Option<&DurabilityError>) + Send>;

/// Something to send once the command that produced it is durable.
pub(super) enum Out {
    Room {
        topic: Topic,
        frame: Utf8Bytes,
        except: Option<ConnId>,
    },
    User {
        uid: UserId,
        event: UserEvent,
        frame: Utf8Bytes,
    },
    Logged {
        event: LoggedEvent,
        frame: Utf8Bytes,
    },
    AddSub {
        sink: Arc<dyn RoomSink>,
        uid: UserId,
        topic: Topic,
        sub_id: String,
    },
    RemoveSub {
        conn: ConnId,
        topic: Topic,
        sub_id: String,
        last: bool,
    },
    /// A meeting event for every [`Listening`] connection, and for the
    /// replay window.
    Meeting {
        event: MeetingEvent,
        seq: u64,
        at: Millis,
        /// Its bytes, or a chat message rendered only if someone listens.
        payload: super::replay::Staged,
    },
    /// A connection starts hearing meeting events (it joined by code).
    Listen {
        conn: ConnId,
        uid: UserId,
        sink: Arc<dyn RoomListener>,
        /// Replay first what came after this position, up to `upto`.
        resume: Option<Resume>,
    },
    /// A member left: their room subscriptions stop here, after the events
    /// announcing the departure.
    DropSubs(UserId),
    /// The room went private: only members may keep listening.
    DropNonMembers,
    Reply(ReplyFn),
}

/// A socket's `since`, spliced into its live events where it starts
/// listening: every event up to `upto` (the room's position when the
/// socket took its seat) was delivered before this point, every later one
/// is delivered after it.
pub(super) struct Resume {
    pub(super) since: u64,
    pub(super) upto: u64,
    /// Set once the replay was sent; the join's answer, which comes right
    /// after, reads it as `recovered`.
    pub(super) recovered: Arc<std::sync::atomic::AtomicBool>,
}

struct Pending {
    commit: Option<Committed>,
    out: Vec<Out>,
    /// Messages this commit stores (see `RoomActor::unconfirmed`).
    msg_ids: Vec<MessageId>,
}

impl RoomActor {
    /// Ended and empty, with nothing left to deliver: the actor can retire.
    fn retirable(&self) -> bool {
        !self.state.active
            && self.state.members.is_empty()
            && self.pending.is_empty()
            && self.staged.is_empty()
            && self.waiters.is_empty()
    }

    /// A log that holds rooms by interest sweeps them: a room that nothing on this node
    /// needed at two sweeps in a row leaves the registry, if nothing but
    /// the registry holds its handle (a caller, a subscription, a session's
    /// seat; checked under the registry's lock, so none can take it in
    /// between). Decided here, between two commands: no entry can change
    /// the room between the check and the removal. The actor then ends once
    /// its mailbox is empty; the next use loads the room again.
    pub(super) fn sweep(&mut self) {
        if !self.unused_here() {
            self.unused_sweeps = 0;
            return;
        }
        self.unused_sweeps = self.unused_sweeps.saturating_add(1);
        if self.unused_sweeps >= 2 && self.registry.remove_unshared(&self.state.id) {
            crate::metrics::room_let_go();
            tracing::debug!(room = %self.state.id, "room unused here; let go");
        }
    }

    /// Whether nothing on this node needs this replica: a guest seated
    /// through this node, a grace timer or a snapshot running here, a caller
    /// waiting for its entry, a subscriber or listener, or a member
    /// listening here to their `rooms-changed`/`subscriptions-changed`
    /// streams keeps it.
    fn unused_here(&self) -> bool {
        use crate::hub::UserEvent;
        let origin = self.log.origin();
        self.subscribers.is_empty()
            && self.listeners.is_empty()
            && self.guest_holders.is_empty()
            && self.guest_epochs.is_empty()
            && self.orphaned.is_empty()
            && !self.guest_nodes.values().any(|n| n == origin)
            && self.waiters.is_empty()
            && self.pending.is_empty()
            && self.staged.is_empty()
            && !self.compaction.as_ref().is_some_and(|c| c.writing())
            && !self.state.members.keys().any(|uid| {
                self.hub.has_listener(uid, UserEvent::RoomsChanged)
                    || self.hub.has_listener(uid, UserEvent::SubscriptionsChanged)
            })
    }

    /// Replaces this room in the registry with its summary, answers whatever
    /// is still queued from the summary, and lets the task end.
    async fn retire(mut self) {
        let ended = Arc::new(EndedRoom::new(self.state.clone()));
        let _ = self.summary.set(ended.clone());
        for sub in self.subscribers.values() {
            sub.end_subs();
        }
        self.registry.insert(RoomHandle::ended(self.state.id.clone(), ended.clone()));
        self.rx.close();
        // `recv` (not `try_recv`) also waits for senders that reserved a
        // slot before the close; each gets its answer from the summary.
        while let Some(cmd) = self.rx.recv().await {
            ended.answer(cmd);
        }
        tracing::debug!(room = %self.state.id, "room ended and empty; actor released");
    }

    /// The room's task for its whole life. Not an `async fn`: one moves
    /// its arguments into locals, so its future kept the actor twice (as
    /// the argument and as the local); an `async move` block keeps it once.
    #[allow(clippy::manual_async_fn)] // as an `async fn` it holds the actor twice
    fn run(mut self) -> impl std::future::Future<Output = ()> + Send {
        async move {
            if self.retirable() {
                // Boxed: inline, its future (a second actor, moved in) would be
                // part of every room's task for the room's whole life.
                return Box::pin(self.retire()).await;
            }
            // The registry holds the only long-lived senders; the loop ends when
            // the room is removed from it and the last caller is done.
            loop {
                tokio::select! {
                    // Completed commits first: they release replies and events.
                    res = head_commit(&mut self.pending), if !self.pending.is_empty() => {
                        self.complete_head(res);
                    }
                    // While commits lag, stop taking commands: the bounded mailbox
                    // then pushes back on callers instead of `pending` growing.
                    // (A delivered log has no commits here: its waiters are bounded
                    // in `submit`, and the mailbox must keep flowing, since the
                    // log's entries that answer them arrive through it.)
                    cmd = self.rx.recv(), if self.pending.len() < MAX_PENDING => match cmd {
                        Some(cmd) => {
                            self.handle(cmd);
                            self.finish_command().await;
                        }
                        None => break,
                    },
                }
                if self.retirable() {
                    return Box::pin(self.retire()).await;
                }
            }
            while !self.pending.is_empty() {
                let res = head_commit(&mut self.pending).await;
                self.complete_head(res);
            }
            tracing::debug!(room = %self.state.id, "room actor stopped");
        }
    }

    /// Hands the command's changes to the store and parks its outputs until
    /// they are durable; with nothing to wait for, delivers at once.
    async fn finish_command(&mut self) {
        if self.store.is_some() && (self.room_dirty || self.state.seq != self.stored_seq) {
            // Also after a message alone: the row carries the position.
            self.stored_seq = self.state.seq;
            self.ops.push(RoomChange::room(&self.state));
        }
        self.room_dirty = false;
        let out = std::mem::take(&mut self.staged);
        let ops = std::mem::take(&mut self.ops);
        let msg_ids: Vec<MessageId> = ops.iter().filter_map(RoomChange::message_id).cloned().collect();
        let commit = match (&self.store, ops.is_empty()) {
            (Some(store), false) => {
                Some(store.append(RoomBatch { rid: self.state.id.clone(), changes: ops }).await)
            }
            _ => None,
        };
        if commit.is_none() && self.pending.is_empty() {
            self.deliver(out, None);
        } else if commit.is_some() || !out.is_empty() {
            self.unconfirmed.extend(msg_ids.iter().cloned());
            self.pending.push_back(Pending { commit, out, msg_ids });
        }
    }

    fn complete_head(&mut self, res: Result<(), DurabilityError>) {
        if let Some(p) = self.pending.pop_front() {
            for id in &p.msg_ids {
                self.unconfirmed.remove(id);
            }
            self.deliver(p.out, res.as_ref().err());
        }
        // Outputs that waited only for their turn can go now.
        while self.pending.front().is_some_and(|p| p.commit.is_none()) {
            if let Some(p) = self.pending.pop_front() {
                self.deliver(p.out, None);
            }
        }
    }

    /// Sends outputs. After a failed commit, events are not sent (the change
    /// is not durable) and replies carry an internal error.
    fn deliver(&mut self, out: Vec<Out>, failed: Option<&DurabilityError>) {
        for o in out {
            match o {
                Out::Room { topic, frame, except } if failed.is_none() => {
                    self.deliver_room(topic, &frame, except)
                }
                Out::User { uid, event, frame } if failed.is_none() => {
                    self.hub.send_user(&uid, event, &frame)
                }
                Out::Logged { event, frame } if failed.is_none() => {
                    // Who may read the room now (the change is committed):
                    // a private room's ids and role holders are not shown
                    // to every signed-in user.
                    self.hub.send_logged_to(event, &frame, |uid| self.state.can_read(uid, true))
                }
                Out::Meeting { event, seq, at, payload } if failed.is_none() => {
                    // Most rooms have no listener now: a message is then
                    // rendered only if a socket comes back for it.
                    if !self.listeners.is_empty() {
                        self.deliver_meeting(event, &payload.live(seq));
                    }
                    self.replay.push(seq, at, event, payload);
                }
                Out::Room { .. } | Out::User { .. } | Out::Logged { .. } | Out::Meeting { .. } => {}
                Out::Listen { conn, uid, sink, resume } => {
                    if let Some(r) = resume
                        && let Some(missed) = self.replay.after(r.since, r.upto)
                    {
                        // Inside the actor, between the events decided
                        // before the seat and those after: nothing is
                        // missed or heard twice.
                        if !missed.into_iter().all(|e| sink.emit(e.event, &e.payload(&self.state.id))) {
                            continue;
                        }
                        r.recovered.store(true, std::sync::atomic::Ordering::Release);
                    }
                    self.listeners.insert(conn, Listening { sink, uid });
                }
                Out::AddSub { sink, uid, topic, sub_id } => {
                    let entry = self.subscribers.entry(sink.id()).or_insert_with(|| Subscriber {
                        sink,
                        uid,
                        topics: 0,
                        sub_ids: Vec::new(),
                    });
                    entry.topics |= topic.bit();
                    entry.add_sub_id(sub_id);
                }
                Out::RemoveSub { conn, topic, sub_id, last } => {
                    if let Some(s) = self.subscribers.get_mut(&conn) {
                        s.sub_ids.retain(|id| id != &sub_id);
                        if last {
                            s.topics &= !topic.bit();
                        }
                        if s.topics == 0 {
                            self.subscribers.remove(&conn);
                        }
                    }
                }
                Out::DropSubs(uid) => {
                    self.subscribers.retain(|_, s| {
                        let keep = s.uid != uid;
                        if !keep {
                            s.end_subs();
                        }
                        keep
                    });
                    self.listeners.retain(|_, l| l.uid != uid);
                }
                Out::DropNonMembers => {
                    let members = &self.state.members;
                    self.subscribers.retain(|_, s| {
                        let keep = members.contains_key(&s.uid);
                        if !keep {
                            s.end_subs();
                        }
                        keep
                    });
                    self.listeners.retain(|_, l| members.contains_key(&l.uid));
                }
                Out::Reply(f) => f(failed),
            }
        }
    }

    /// Answers a command that changed nothing after `delay`, without
    /// holding the room: a timer task sends it.
    pub(super) fn reply_later<T: Send + 'static>(
        &mut self,
        respond_to: Reply<T>,
        delay: Duration,
        r: Result<T, RoomError>,
    ) {
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = respond_to.send(r);
        });
    }

    /// Queues the reply to a command.
    pub(super) fn reply<T: Send + 'static>(&mut self, respond_to: Reply<T>, r: Result<T, RoomError>) {
        self.staged.push(Out::Reply(Box::new(move |failed| {
            let r = match failed {
                Some(_) => Err(RoomError::Storage),
                None => r,
            };
            let _ = respond_to.send(r);
        })));
    }

    /// Whether any connection will hear `topic`, so a frame nobody receives
    /// is never serialised. Subscriptions still waiting in `staged` or
    /// behind a commit count as listening: they take effect in order.
    pub(super) fn wants(&self, topic: Topic) -> bool {
        let bit = topic.bit();
        !self.pending.is_empty()
            || self.staged.iter().any(|o| matches!(o, Out::AddSub { .. }))
            || self.subscribers.values().any(|s| s.topics & bit != 0)
    }

    /// Hands a meeting event to every listener; one that cannot take it is
    /// forgotten (its door closes it as a slow consumer).
    fn deliver_meeting(&mut self, event: MeetingEvent, payload: &RawValue) {
        self.listeners.retain(|_, l| l.sink.emit(event, payload));
    }

    /// Sends one pre-serialised frame to every subscriber of `topic`.
    /// Subscribers whose queue is closed or full are dropped (a full queue
    /// also closes that connection as a slow consumer).
    fn deliver_room(&mut self, topic: Topic, frame: &Utf8Bytes, except: Option<ConnId>) {
        let bit = topic.bit();
        let mut dead = Vec::new();
        for (id, s) in &self.subscribers {
            if s.topics & bit == 0 || Some(*id) == except {
                continue;
            }
            if !s.sink.try_send(frame.clone()) {
                dead.push(*id);
            }
        }
        for id in dead {
            self.subscribers.remove(&id);
        }
    }
}

/// Waits for the oldest pending commit; entries with nothing to wait for are
/// ready at once.
async fn head_commit(pending: &mut VecDeque<Pending>) -> Result<(), DurabilityError> {
    match pending.front_mut().and_then(|p| p.commit.as_mut()) {
        Some(commit) => commit.await,
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn returned_size<A, F: std::future::Future>(_: fn(A) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Every room's task holds this future for the room's whole life, idle
    /// or not. It was 7,280 bytes for a 1,792-byte actor: `retire`'s
    /// future awaited inline (the actor again, moved in) and `run` an
    /// `async fn` (its `self` argument kept beside the local it is moved
    /// to). Now it is the actor and the loop's small state.
    #[test]
    fn the_room_future_holds_the_actor_once() {
        let actor = std::mem::size_of::<RoomActor>();
        let run = returned_size(RoomActor::run);
        eprintln!("actor {actor} B, run {run} B");
        assert!(run <= actor + 512, "room future is {run} bytes for a {actor}-byte actor");
    }

    /// Every room holds its actor for its whole life, idle or not (in rooms
    /// of 10, a tenth of it per connection). It was 1,792 bytes: the
    /// compaction state of a delivered log (~290 B) inline in rooms that
    /// never apply one, and the seeded id generator (~330 B) inline in
    /// every room's state though only a change applied from a log uses it.
    #[test]
    fn the_room_actor_stays_small() {
        let actor = std::mem::size_of::<RoomActor>();
        let state = std::mem::size_of::<RoomState>();
        eprintln!("actor {actor} B, state {state} B");
        assert!(actor <= ACTOR_MAX, "the room actor is {actor} bytes");
    }
    const ACTOR_MAX: usize = 1_200;

    /// A subscriber's sub ids take what they hold, not a `Vec`'s first
    /// four slots.
    #[test]
    fn a_subscriber_holds_its_sub_ids_snugly() {
        #[derive(Debug)]
        struct Nowhere;
        impl RoomSink for Nowhere {
            fn id(&self) -> ConnId {
                ConnId(1)
            }
            fn try_send(&self, _: Utf8Bytes) -> bool {
                true
            }
        }
        let mut s =
            Subscriber { sink: Arc::new(Nowhere), uid: UserId::from("u"), topics: 0, sub_ids: Vec::new() };
        s.add_sub_id("s1".into());
        s.add_sub_id("s1".into());
        assert_eq!((s.sub_ids.len(), s.sub_ids.capacity()), (1, 1));
        s.add_sub_id("s2".into());
        assert_eq!((s.sub_ids.len(), s.sub_ids.capacity()), (2, 2));
    }
}

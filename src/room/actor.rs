//! The room actor: one tokio task per room owns its [`RoomState`], its
//! message history and its subscribers, and handles one command at a time.
//! That serialisation is what makes "check, then insert" atomic: there is no
//! lock to forget.
//!
//! Flow control: connections reach the actor through a bounded mailbox with
//! `send().await` (a busy room slows its callers down); the actor reaches
//! connections only through [`ConnHandle::try_send`] on their bounded
//! outbound queues, so a slow client is disconnected and never stalls the
//! room. There is no cycle of awaiting sends.

use super::RoomError;
use super::UserRef;
use super::ended::EndedRoom;
use super::model::Message;
use super::state::{Effect, Flag, Joined, RoleKind, RoomState, Setting};
use crate::conn::ConnHandle;
use crate::hub::{LoggedEvent, UserEvent, UserHub};
use crate::ids::{ConnId, MessageId, RoomId, UserId};
use crate::permissions::{Permission, Principal, allowed};
use crate::registry::Registry;
use crate::store::{Committed, StoreError, StoreHandle, StoreOp};
use crate::time::Millis;
use crate::users::Directory;
use crate::wire;
use serde_json::{Value, json};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// Which of a room's streams a connection listens to. One connection holds
/// each topic at most once, however many DDP subs it opened for it, so no
/// event is delivered twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// `stream-room-messages` / `<rid>`.
    Messages = 1,
    /// `stream-notify-room` / `<rid>/participants`.
    Participants = 2,
    /// `stream-notify-room` / `<rid>/typing`.
    Typing = 4,
    /// `stream-notify-room` / `<rid>/user-activity`.
    UserActivity = 8,
    /// `stream-notify-room` / `<rid>/deleteMessage`.
    DeleteMessage = 16,
}

impl Topic {
    fn bit(self) -> u8 {
        self as u8
    }
}

/// Parameters of `sendMessage`, validated by the method layer.
#[derive(Debug)]
pub struct SendParams {
    pub id: Option<MessageId>,
    pub msg: String,
    pub tmid: Option<String>,
}

/// Where a room sends a command's answer.
pub type Reply<T> = oneshot::Sender<Result<T, RoomError>>;

/// What a room can be asked to do.
#[derive(Debug)]
pub enum RoomCommand {
    JoinSelf {
        who: Box<Principal>,
        code: Option<String>,
        respond_to: Reply<Joined>,
    },
    /// `join-room`; replies with the participant object.
    JoinByCode {
        who: Box<Principal>,
        /// The joining connection; for a guest it becomes the seat's holder.
        conn: ConnId,
        respond_to: Reply<Value>,
    },
    /// A reconnecting guest presents its token from connection `conn`: the
    /// participant and the guest's id if the token is known and `current`
    /// (the connection's own guest id, if it has one) matches, `None`
    /// otherwise.
    ResumeGuest {
        token: String,
        conn: ConnId,
        current: Option<UserId>,
        respond_to: Reply<Option<(UserId, Value)>>,
    },
    Leave {
        uid: UserId,
        respond_to: Reply<()>,
    },
    End {
        who: Box<Principal>,
        respond_to: Reply<()>,
    },
    Settings {
        who: Box<Principal>,
        settings: Vec<Setting>,
        respond_to: Reply<()>,
    },
    Doc {
        respond_to: Reply<Value>,
    },
    /// Room doc only if `uid` may see it (member, or public channel).
    DocFor {
        uid: UserId,
        respond_to: Reply<Value>,
    },
    Subscribe {
        conn: ConnHandle,
        uid: UserId,
        signed_in: bool,
        topic: Topic,
        /// The DDP sub id, so the room can end it with `nosub` itself.
        sub_id: String,
        respond_to: Reply<()>,
    },
    Unsubscribe {
        sub_id: String,
        /// Whether no other sub of this connection wants `topic` here.
        last: bool,
        conn: ConnId,
        topic: Topic,
        respond_to: Reply<()>,
    },
    /// The connection is gone: drop its subscriptions; if it carried a guest
    /// member of this room, start that guest's grace period.
    ConnClosed {
        conn: ConnId,
        guest: Option<UserId>,
    },
    GuestExpired {
        uid: UserId,
        epoch: u64,
    },
    Send {
        who: Box<Principal>,
        params: Box<SendParams>,
        respond_to: Reply<Value>,
    },
    History {
        uid: UserId,
        end: Option<Millis>,
        limit: usize,
        /// The page stops before the message that would take its JSON past
        /// this size (the first message always fits).
        max_bytes: usize,
        respond_to: Reply<Vec<Value>>,
    },
    AddMember {
        who: Box<Principal>,
        target: UserRef,
        respond_to: Reply<bool>,
    },
    RemoveMember {
        who: Box<Principal>,
        target: UserId,
        respond_to: Reply<()>,
    },
    SetRole {
        who: Box<Principal>,
        target: UserId,
        role: RoleKind,
        add: bool,
        respond_to: Reply<()>,
    },
    SetMuted {
        who: Box<Principal>,
        target: UserId,
        muted: bool,
        respond_to: Reply<()>,
    },
    SetArchived {
        who: Box<Principal>,
        archived: bool,
        respond_to: Reply<()>,
    },
    SetFlag {
        uid: UserId,
        flag: Flag,
        respond_to: Reply<()>,
    },
    /// The caller's subscription document, `None` if not a member.
    SubscriptionDoc {
        uid: UserId,
        respond_to: Reply<Option<Value>>,
    },
    /// `getRoomRoles` entries, if `uid` may read the room.
    Roles {
        uid: UserId,
        respond_to: Reply<Vec<Value>>,
    },
    /// `stream-notify-room` typing/user-activity, re-emitted to others.
    Notify {
        from: ConnId,
        uid: UserId,
        topic: Topic,
        event: String,
        args: Value,
    },
}

/// Cheap, cloneable way to talk to a room.
#[derive(Clone, Debug)]
pub struct RoomHandle {
    pub id: RoomId,
    inner: Inner,
}

#[derive(Clone, Debug)]
enum Inner {
    /// The mailbox, and where the actor leaves its summary when it retires
    /// (for callers that still hold this handle).
    Live(mpsc::Sender<RoomCommand>, Arc<std::sync::OnceLock<Arc<EndedRoom>>>),
    /// Ended and empty: answered from a summary, no task.
    Ended(Arc<EndedRoom>),
}

/// Room-wide knobs from the server config.
#[derive(Debug, Clone)]
pub struct RoomConfig {
    pub mailbox: usize,
    pub history_limit: usize,
    pub guest_grace: Duration,
    pub max_message_len: usize,
}

impl RoomHandle {
    /// Spawns the actor for `state` and returns its handle.
    pub fn spawn(state: RoomState, cfg: Arc<RoomConfig>, deps: RoomDeps) -> Self {
        Self::spawn_with_history(state, Vec::new(), cfg, deps)
    }

    /// Spawns the actor of a restored room with its recent `history`
    /// (oldest first).
    pub fn spawn_with_history(
        state: RoomState,
        history: Vec<Message>,
        cfg: Arc<RoomConfig>,
        deps: RoomDeps,
    ) -> Self {
        let RoomDeps { registry, users, hub, store } = deps;
        let (tx, rx) = mpsc::channel(cfg.mailbox);
        let summary = Arc::new(std::sync::OnceLock::new());
        let handle = RoomHandle { id: state.id.clone(), inner: Inner::Live(tx.clone(), summary.clone()) };
        let mut actor = RoomActor {
            state,
            rx,
            me: tx.downgrade(),
            summary,
            cfg,
            registry,
            users,
            hub,
            subscribers: HashMap::new(),
            history: VecDeque::new(),
            history_ids: HashSet::new(),
            unconfirmed: HashSet::new(),
            guest_epochs: HashMap::new(),
            guest_holders: HashMap::new(),
            next_epoch: 0,
            store,
            code_throttle: CodeThrottle::default(),
            outbox: Vec::new(),
            ops: Vec::new(),
            pending: VecDeque::new(),
        };
        for m in history {
            actor.history_ids.insert(m.id.clone());
            actor.history.push_back(Arc::new(m));
        }
        tokio::spawn(actor.run());
        handle
    }

    /// Sends a command built around a reply channel and waits for the reply.
    pub async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> RoomCommand) -> Result<T, RoomError> {
        let (tx, rx) = oneshot::channel();
        self.tell(make(tx)).await;
        rx.await.map_err(|_| RoomError::Unavailable)?
    }

    /// Fire-and-forget for notices that need no answer. Waits for mailbox
    /// space (bounded), never drops.
    pub async fn tell(&self, cmd: RoomCommand) {
        match &self.inner {
            Inner::Live(tx, summary) => {
                if let Err(mpsc::error::SendError(cmd)) = tx.send(cmd).await {
                    // The actor retired after this handle was looked up.
                    match summary.get() {
                        Some(e) => e.answer(cmd),
                        None => Self::retired(&self.id, cmd),
                    }
                }
            }
            Inner::Ended(e) => e.answer(cmd),
        }
    }

    fn retired(id: &RoomId, cmd: RoomCommand) {
        // Only possible for a caller that fetched the live handle just before
        // the actor retired; dropping the reply sender answers Unavailable.
        tracing::debug!(room = %id, "command reached a retired actor");
        drop(cmd);
    }

    fn ended(id: RoomId, e: Arc<EndedRoom>) -> Self {
        RoomHandle { id, inner: Inner::Ended(e) }
    }
}

/// Shared services a room actor uses besides its own state.
#[derive(Clone, Debug)]
pub struct RoomDeps {
    pub registry: Arc<Registry>,
    pub users: Arc<Directory>,
    pub hub: Arc<UserHub>,
    /// `None` runs in memory only.
    pub store: Option<StoreHandle>,
}

struct Subscriber {
    conn: ConnHandle,
    uid: UserId,
    topics: u8,
    /// The connection's DDP sub ids on this room's streams.
    sub_ids: Vec<String>,
}

impl Subscriber {
    /// Tells the client its subscriptions here are over (the member left,
    /// the room went private or retired), so none ends silently.
    fn end_subs(&self) {
        for id in &self.sub_ids {
            self.conn.try_send(wire::nosub(id, None));
        }
    }
}

struct RoomActor {
    state: RoomState,
    rx: mpsc::Receiver<RoomCommand>,
    /// Weak, so the actor's own timers do not keep it alive.
    me: mpsc::WeakSender<RoomCommand>,
    /// Filled when the actor retires; shared with every live handle.
    summary: Arc<std::sync::OnceLock<Arc<EndedRoom>>>,
    cfg: Arc<RoomConfig>,
    registry: Arc<Registry>,
    users: Arc<Directory>,
    hub: Arc<UserHub>,
    subscribers: HashMap<ConnId, Subscriber>,
    history: VecDeque<Arc<Message>>,
    /// Ids in `history`, to refuse a client-chosen `_id` twice.
    history_ids: HashSet<MessageId>,
    /// Ids of messages submitted to the store and not yet committed: a
    /// burst can push them out of `history` before the store has them.
    unconfirmed: HashSet<MessageId>,
    /// Guests in their reconnect grace, with the epoch of their timer.
    guest_epochs: HashMap<UserId, u64>,
    /// The connection currently holding each guest's seat.
    guest_holders: HashMap<UserId, ConnId>,
    next_epoch: u64,
    store: Option<StoreHandle>,
    /// Wrong join codes for this room, from any connection.
    code_throttle: CodeThrottle,
    /// What the command being handled wants to send, once durable.
    outbox: Vec<Out>,
    /// What the command being handled changed, for the store.
    ops: Vec<StoreOp>,
    /// Outputs waiting for their commit, oldest first. Outputs of a command
    /// that changed nothing still queue behind earlier ones, so every
    /// connection sees replies and events in the order the actor decided.
    pending: VecDeque<Pending>,
}

/// Commands parked behind commits before the actor stops reading its mailbox.
const MAX_PENDING: usize = 1024;

/// Sends a command's reply; told whether its commit failed.
type ReplyFn = Box<dyn FnOnce(Option<&StoreError>) + Send>;

/// Something to send once the command that produced it is durable.
enum Out {
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
        conn: ConnHandle,
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
    /// A member left: their room subscriptions stop here, after the events
    /// announcing the departure.
    DropSubs(UserId),
    /// The room went private: only members may keep listening.
    DropNonMembers,
    Reply(ReplyFn),
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
            && self.outbox.is_empty()
    }

    /// Replaces this room in the registry with its summary, answers whatever
    /// is still queued from the summary, and lets the task end.
    async fn retire(mut self) {
        let ended = Arc::new(EndedRoom {
            doc: self.state.to_doc(),
            t: self.state.t,
            archived: self.state.archived,
            guest_access: self.state.guest_access,
        });
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

    async fn run(mut self) {
        if self.retirable() {
            return self.retire().await;
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
                cmd = self.rx.recv(), if self.pending.len() < MAX_PENDING => match cmd {
                    Some(cmd) => {
                        self.handle(cmd);
                        self.finish_command().await;
                    }
                    None => break,
                },
            }
            if self.retirable() {
                return self.retire().await;
            }
        }
        while !self.pending.is_empty() {
            let res = head_commit(&mut self.pending).await;
            self.complete_head(res);
        }
        tracing::debug!(room = %self.state.id, "room actor stopped");
    }

    /// Hands the command's changes to the store and parks its outputs until
    /// they are durable; with nothing to wait for, delivers at once.
    async fn finish_command(&mut self) {
        let out = std::mem::take(&mut self.outbox);
        let ops = std::mem::take(&mut self.ops);
        let msg_ids: Vec<MessageId> = ops
            .iter()
            .filter_map(|op| match op {
                StoreOp::PutMessage { id, .. } => Some(id.clone()),
                _ => None,
            })
            .collect();
        let commit = match (&self.store, ops.is_empty()) {
            (Some(store), false) => Some(store.submit(ops).await),
            _ => None,
        };
        if commit.is_none() && self.pending.is_empty() {
            self.deliver(out, None);
        } else if commit.is_some() || !out.is_empty() {
            self.unconfirmed.extend(msg_ids.iter().cloned());
            self.pending.push_back(Pending { commit, out, msg_ids });
        }
    }

    fn complete_head(&mut self, res: Result<(), StoreError>) {
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
    fn deliver(&mut self, out: Vec<Out>, failed: Option<&StoreError>) {
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
                    self.hub.send_logged_to(event, &frame, |uid| self.can_read(uid, true))
                }
                Out::Room { .. } | Out::User { .. } | Out::Logged { .. } => {}
                Out::AddSub { conn, uid, topic, sub_id } => {
                    let entry = self.subscribers.entry(conn.id).or_insert_with(|| Subscriber {
                        conn,
                        uid,
                        topics: 0,
                        sub_ids: Vec::new(),
                    });
                    entry.topics |= topic.bit();
                    if !entry.sub_ids.contains(&sub_id) {
                        entry.sub_ids.push(sub_id);
                    }
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
                Out::DropSubs(uid) => self.subscribers.retain(|_, s| {
                    let keep = s.uid != uid;
                    if !keep {
                        s.end_subs();
                    }
                    keep
                }),
                Out::DropNonMembers => {
                    let members = &self.state.members;
                    self.subscribers.retain(|_, s| {
                        let keep = members.contains_key(&s.uid);
                        if !keep {
                            s.end_subs();
                        }
                        keep
                    });
                }
                Out::Reply(f) => f(failed),
            }
        }
    }

    /// Answers a command that changed nothing after `delay`, without
    /// holding the room: a timer task sends it.
    fn reply_later<T: Send + 'static>(
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
    fn reply<T: Send + 'static>(&mut self, respond_to: Reply<T>, r: Result<T, RoomError>) {
        self.outbox.push(Out::Reply(Box::new(move |failed| {
            let r = match failed {
                Some(_) => Err(RoomError::Storage),
                None => r,
            };
            let _ = respond_to.send(r);
        })));
    }

    fn handle(&mut self, cmd: RoomCommand) {
        let now = Millis::now();
        let mut fx = Vec::new();
        match cmd {
            RoomCommand::JoinSelf { who, code, respond_to } => {
                let r = self.state.join_self(&who, code.as_deref(), now, &mut fx);
                if let Err(RoomError::CodeInvalid) = r {
                    // While the room is being guessed at, wrong answers come
                    // late; a right code is never held up or refused, so
                    // strangers' guessing cannot lock members-to-be out.
                    let late = self.code_throttle.busy();
                    self.code_throttle.failed();
                    if late {
                        self.reply_later(respond_to, CodeThrottle::DELAY, r);
                        return;
                    }
                }
                if let Ok(Joined::Existing(_)) = &r {
                    self.notice(&who.id, "You are already in this room", now);
                }
                self.publish(fx, now);
                self.reply(respond_to, r);
            }
            RoomCommand::JoinByCode { who, conn, respond_to } => {
                let r = self.state.join_by_code(&who, now, &mut fx).map(|j| self.participant(j.member()));
                if r.is_ok() && who.guest {
                    self.guest_holders.insert(who.id.clone(), conn);
                }
                self.publish(fx, now);
                self.reply(respond_to, r);
            }
            RoomCommand::ResumeGuest { token, conn, current, respond_to } => {
                let found = self
                    .state
                    .guest_by_token(&token)
                    .filter(|m| current.as_ref().is_none_or(|c| c == &m.user.id))
                    .cloned();
                let r = found.map(|m| {
                    // Back (perhaps before the old connection was even
                    // noticed gone): the seat is kept, and only this
                    // connection closing can start its grace period now.
                    self.guest_epochs.remove(&m.user.id);
                    self.guest_holders.insert(m.user.id.clone(), conn);
                    (m.user.id.clone(), self.participant(&m))
                });
                self.reply(respond_to, Ok(r));
            }
            RoomCommand::Leave { uid, respond_to } => {
                let r = self.state.leave(&uid, now, &mut fx).map(|_| ());
                self.guest_epochs.remove(&uid);
                self.publish(fx, now);
                self.reply(respond_to, r);
            }
            RoomCommand::End { who, respond_to } => {
                let r = self.state.end(&who, now, &mut fx);
                self.publish(fx, now);
                self.reply(respond_to, r);
            }
            RoomCommand::Settings { who, settings, respond_to } => {
                let r = self.save_settings(&who, settings, now, &mut fx);
                self.publish(fx, now);
                self.reply(respond_to, r);
            }
            RoomCommand::Doc { respond_to } => {
                self.reply(respond_to, Ok(self.state.to_doc()));
            }
            RoomCommand::DocFor { uid, respond_to } => {
                let r = if self.can_read(&uid, true) {
                    Ok(self.doc_for(&uid))
                } else {
                    Err(RoomError::NotAllowed)
                };
                self.reply(respond_to, r);
            }
            RoomCommand::Subscribe { conn, uid, signed_in, topic, sub_id, respond_to } => {
                let r = if self.can_read(&uid, signed_in && topic == Topic::Messages) {
                    self.outbox.push(Out::AddSub { conn, uid, topic, sub_id });
                    Ok(())
                } else {
                    Err(RoomError::NotAllowed)
                };
                self.reply(respond_to, r);
            }
            RoomCommand::Unsubscribe { conn, topic, sub_id, last, respond_to } => {
                self.outbox.push(Out::RemoveSub { conn, topic, sub_id, last });
                self.reply(respond_to, Ok(()));
            }
            RoomCommand::ConnClosed { conn, guest } => {
                self.subscribers.remove(&conn);
                let holds = |uid: &UserId| self.guest_holders.get(uid).is_none_or(|h| *h == conn);
                if let Some(uid) = guest.filter(|u| self.state.is_member(u) && holds(u)) {
                    self.guest_holders.remove(&uid);
                    self.start_guest_grace(uid);
                }
            }
            RoomCommand::GuestExpired { uid, epoch } => {
                if self.guest_epochs.get(&uid) == Some(&epoch) {
                    self.guest_epochs.remove(&uid);
                    if self.state.is_member(&uid) {
                        self.state.remove_member(&uid, now, "ul", None, &mut fx);
                        self.publish(fx, now);
                    }
                }
            }
            RoomCommand::Send { who, params, respond_to } => {
                let r = self.send_message(&who, *params, now);
                self.reply(respond_to, r);
            }
            RoomCommand::History { uid, end, limit, max_bytes, respond_to } => {
                let r = if self.can_read(&uid, true) {
                    let mut bytes = 0;
                    let msgs = self
                        .history
                        .iter()
                        .rev()
                        .filter(|m| end.is_none_or(|e| m.ts < e))
                        .take(limit)
                        .map(|m| serde_json::to_value(&**m).unwrap_or(Value::Null))
                        .take_while(|v| {
                            // Built and measured one at a time, so a page
                            // never holds more than the cap in memory.
                            let first = bytes == 0;
                            bytes += json_len(v) + 1;
                            first || bytes <= max_bytes
                        })
                        .collect();
                    Ok(msgs)
                } else {
                    Err(RoomError::NotAllowed)
                };
                self.reply(respond_to, r);
            }
            RoomCommand::AddMember { who, target, respond_to } => {
                let name = target.username.clone();
                let r = self.state.add_member(&who, target, now, &mut fx);
                if let Ok(false) = r {
                    self.notice(&who.id, &format!("{name} is already in here"), now);
                }
                self.publish(fx, now);
                self.reply(respond_to, r);
            }
            RoomCommand::RemoveMember { who, target, respond_to } => {
                let r = self.state.remove_by(&who, &target, now, &mut fx);
                self.publish(fx, now);
                self.reply(respond_to, r);
            }
            RoomCommand::SetRole { who, target, role, add, respond_to } => {
                let r = self.state.set_role(&who, &target, role, add, now, &mut fx);
                self.publish(fx, now);
                self.reply(respond_to, r);
            }
            RoomCommand::SetMuted { who, target, muted, respond_to } => {
                let r = self.state.set_muted(&who, &target, muted, now, &mut fx);
                self.publish(fx, now);
                self.reply(respond_to, r);
            }
            RoomCommand::SetArchived { who, archived, respond_to } => {
                let r = self.state.set_archived(&who, archived, now, &mut fx);
                self.publish(fx, now);
                self.reply(respond_to, r);
            }
            RoomCommand::SetFlag { uid, flag, respond_to } => {
                let r = self.state.set_flag(&uid, flag, &mut fx);
                self.publish(fx, now);
                self.reply(respond_to, r);
            }
            RoomCommand::SubscriptionDoc { uid, respond_to } => {
                self.reply(respond_to, Ok(self.state.subscription_doc(&uid)));
            }
            RoomCommand::Roles { uid, respond_to } => {
                let r = if self.can_read(&uid, true) {
                    let rid = &self.state.id;
                    Ok(self
                        .state
                        .members
                        .values()
                        .filter(|m| m.roles != super::RoomRoles::NONE)
                        .map(|m| json!({"rid": rid, "u": m.user, "roles": m.roles.names()}))
                        .collect())
                } else {
                    Err(RoomError::NotAllowed)
                };
                self.reply(respond_to, r);
            }
            RoomCommand::Notify { from, uid, topic, event, args } => {
                if self.state.is_member(&uid) {
                    let frame = wire::stream_changed("stream-notify-room", &event, &args);
                    self.broadcast(topic, &frame, Some(from));
                }
            }
        }
    }

    /// The participant object returned by `join-room`; guests also get the
    /// token that lets them reclaim the seat after a reconnect.
    fn participant(&self, m: &super::Member) -> Value {
        let mut p = m.participant(&self.state.id, &self.state.host_id, None);
        if let (Some(t), Value::Object(o)) = (&m.guest_token, &mut p) {
            o.insert("guestToken".into(), Value::from(t.as_str()));
        }
        p
    }

    /// The room document as `uid` may see it: a non-member of a room with a
    /// join code does not get the shareable code, which would let them in
    /// by `join-room` without the join code.
    fn doc_for(&self, uid: &UserId) -> Value {
        let mut doc = self.state.to_doc();
        if !self.state.is_member(uid)
            && self.state.join_code.is_some()
            && let Value::Object(o) = &mut doc
        {
            o.remove("code");
        }
        doc
    }

    /// Members may read everything; signed-in non-members may read the
    /// messages of public channels when `public_ok`.
    fn can_read(&self, uid: &UserId, public_ok: bool) -> bool {
        self.state.is_member(uid)
            || (public_ok && self.state.t == super::RoomType::Channel && !uid.is_guest())
    }

    fn save_settings(
        &mut self,
        who: &Principal,
        settings: Vec<Setting>,
        now: Millis,
        fx: &mut Vec<Effect>,
    ) -> Result<(), RoomError> {
        self.state.check_settings(who, &settings)?;
        // A rename must win the name in the registry before anything changes.
        for s in &settings {
            if let Setting::RoomName(n) = s
                && n != &self.state.name
            {
                self.registry.reserve_name(n, &self.state.id)?;
            }
        }
        self.state.apply_settings(who, settings, now, fx);
        Ok(())
    }

    fn send_message(&mut self, who: &Principal, p: SendParams, now: Millis) -> Result<Value, RoomError> {
        let roles = self.state.roles_of(&who.id);
        let Some(member) = self.state.members.get(&who.id) else {
            return Err(RoomError::NotInRoom);
        };
        if self.state.archived {
            return Err(RoomError::Archived);
        }
        if !self.state.active {
            return Err(RoomError::Inactive);
        }
        if self.state.ro && !allowed(Permission::PostReadonly, who, roles) {
            return Err(RoomError::ActionNotAllowed("Posting in a read-only room"));
        }
        if member.muted {
            return Err(RoomError::ActionNotAllowed("Posting while muted"));
        }
        let id = match p.id {
            Some(id) if self.message_known(&id)? => return Err(RoomError::DuplicateMessage),
            Some(id) => id,
            None => MessageId::generate(),
        };
        let msg = Message::user(id, &self.state.id, p.msg, member.user.clone(), p.tmid, now);
        let value = serde_json::to_value(&msg).unwrap_or(Value::Null);
        self.store_and_broadcast(msg);
        Ok(value)
    }

    /// Whether this room already has a message `id`, however old. Memory
    /// answers for the recent ones (the history window, and messages whose
    /// commit is in flight); older ones are looked up in the store by its
    /// unique index. The lookup blocks this actor's thread for an indexed
    /// point read (microseconds with a warm page cache), which costs less
    /// than parking the room behind a round trip to another thread; only
    /// client-chosen ids reach it.
    fn message_known(&self, id: &MessageId) -> Result<bool, RoomError> {
        if self.history_ids.contains(id) || self.unconfirmed.contains(id) {
            return Ok(true);
        }
        match &self.store {
            Some(store) => store.message_exists(&self.state.id, id).map_err(|e| {
                tracing::error!(room = %self.state.id, error = %e, "cannot look up a message id");
                RoomError::Storage
            }),
            None => Ok(false),
        }
    }

    fn store_and_broadcast(&mut self, msg: Message) {
        self.state.msgs += 1;
        if self.store.is_some() {
            self.ops.push(StoreOp::message(&msg));
        }
        if self.wants(Topic::Messages) {
            let frame = wire::stream_changed("stream-room-messages", self.state.id.as_str(), &[&msg]);
            self.broadcast(Topic::Messages, &frame, None);
        }
        let msg = Arc::new(msg);
        self.history_ids.insert(msg.id.clone());
        self.history.push_back(msg);
        while self.history.len() > self.cfg.history_limit {
            if let Some(old) = self.history.pop_front() {
                self.history_ids.remove(&old.id);
            }
        }
        if self.hub.wants_my_messages() {
            let last = self.history.back().cloned();
            if let Some(msg) = last {
                let meta = json!({
                    "roomParticipant": true,
                    "roomType": self.state.t.as_str(),
                    "roomName": self.state.name,
                });
                let frame =
                    wire::stream_changed("stream-room-messages", "__my_messages__", &json!([&*msg, meta]));
                let outs: Vec<Out> = self
                    .state
                    .members
                    .keys()
                    .filter(|uid| self.hub.has_listener(uid, UserEvent::MyMessages))
                    .map(|uid| Out::User {
                        uid: uid.clone(),
                        event: UserEvent::MyMessages,
                        frame: frame.clone(),
                    })
                    .collect();
                self.outbox.extend(outs);
            }
        }
    }

    /// An ephemeral notice on `stream-notify-user` `<uid>/message`, shown to
    /// one user and never stored.
    fn notice(&mut self, uid: &UserId, text: &str, now: Millis) {
        if !self.hub.has_listener(uid, UserEvent::Message) {
            return;
        }
        let bot = UserRef { id: UserId::from("rocket.cat"), username: "rocket.cat".into(), name: None };
        let mut m = Message::system(&self.state.id, "ephemeral", text.to_owned(), bot, now);
        m.t = None;
        m.groupable = None;
        let args = json!([m]);
        let frame = wire::stream_changed("stream-notify-user", &format!("{uid}/message"), &args);
        self.outbox.push(Out::User { uid: uid.clone(), event: UserEvent::Message, frame });
    }

    /// `stream-notify-user` `<uid>/<event>` to one user, if listening.
    fn notify_user(&mut self, uid: &UserId, event: UserEvent, name: &str, args: &Value) {
        if self.hub.has_listener(uid, event) {
            let frame = wire::stream_changed("stream-notify-user", &format!("{uid}/{name}"), args);
            self.outbox.push(Out::User { uid: uid.clone(), event, frame });
        }
    }

    fn start_guest_grace(&mut self, uid: UserId) {
        self.next_epoch += 1;
        let epoch = self.next_epoch;
        self.guest_epochs.insert(uid.clone(), epoch);
        let me = self.me.clone();
        let grace = self.cfg.guest_grace;
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            if let Some(tx) = me.upgrade() {
                let _ = tx.send(RoomCommand::GuestExpired { uid, epoch }).await;
            }
        });
    }

    /// Turns effects into stored messages and stream events, in order.
    fn publish(&mut self, fx: Vec<Effect>, now: Millis) {
        let rid = self.state.id.clone();
        if self.store.is_some() && !fx.is_empty() {
            // Room metadata is one small row; rewriting it on every change
            // is simpler than tracking which field moved.
            self.ops.push(StoreOp::room(&self.state));
        }
        for e in fx {
            match e {
                Effect::System { t, msg, by, role } => {
                    let mut m = Message::system(&rid, t, msg, by, now);
                    m.role = role.map(Cow::Borrowed);
                    self.store_and_broadcast(m);
                }
                Effect::Participant { .. } | Effect::RoomUpdated if !self.wants(Topic::Participants) => {}
                Effect::Participant { joined, member, at } => {
                    let p = member.participant(&rid, &self.state.host_id, (!joined).then_some(at));
                    let args = json!([if joined { "joined" } else { "left" }, p]);
                    let frame =
                        wire::stream_changed("stream-notify-room", &format!("{rid}/participants"), &args);
                    self.broadcast(Topic::Participants, &frame, None);
                }
                Effect::RoomUpdated => {
                    let args = json!(["room-updated", self.state.meeting_status()]);
                    let frame =
                        wire::stream_changed("stream-notify-room", &format!("{rid}/participants"), &args);
                    self.broadcast(Topic::Participants, &frame, None);
                }
                Effect::MembershipAdded(uid) => {
                    self.users.add_membership(&uid, &rid);
                    self.persist_member(&uid);
                    // Documents are built only for users who listen.
                    if self.hub.has_listener(&uid, UserEvent::SubscriptionsChanged)
                        && let Some(sub) = self.state.subscription_doc(&uid)
                    {
                        self.notify_user(
                            &uid,
                            UserEvent::SubscriptionsChanged,
                            "subscriptions-changed",
                            &json!(["inserted", sub]),
                        );
                    }
                    if self.hub.has_listener(&uid, UserEvent::RoomsChanged) {
                        self.notify_user(
                            &uid,
                            UserEvent::RoomsChanged,
                            "rooms-changed",
                            &json!(["inserted", self.state.to_doc()]),
                        );
                    }
                }
                Effect::MembershipRemoved(uid) => {
                    self.users.remove_membership(&uid, &rid);
                    if self.store.is_some() && !uid.is_guest() {
                        self.ops.push(StoreOp::DeleteMember { rid: rid.clone(), uid: uid.clone() });
                    }
                    let sub_id = format!("{rid}{uid}");
                    self.notify_user(
                        &uid,
                        UserEvent::SubscriptionsChanged,
                        "subscriptions-changed",
                        &json!(["removed", {"_id": sub_id, "rid": rid, "u": {"_id": uid}}]),
                    );
                    self.notify_user(
                        &uid,
                        UserEvent::RoomsChanged,
                        "rooms-changed",
                        &json!(["removed", {"_id": rid}]),
                    );
                    // A member who left stops hearing the room right after
                    // the events announcing it.
                    self.outbox.push(Out::DropSubs(uid));
                }
                Effect::Renamed { old, new: _ } => self.registry.release_name(&old, &rid),
                Effect::BecamePrivate => self.outbox.push(Out::DropNonMembers),
                Effect::RoomChanged => {
                    let args = json!(["updated", self.state.to_doc()]);
                    let uids: Vec<UserId> = self.state.members.keys().cloned().collect();
                    for uid in &uids {
                        self.notify_user(uid, UserEvent::RoomsChanged, "rooms-changed", &args);
                    }
                }
                Effect::SubscriptionChanged(uid) => {
                    self.persist_member(&uid);
                    if let Some(sub) = self.state.subscription_doc(&uid) {
                        self.notify_user(
                            &uid,
                            UserEvent::SubscriptionsChanged,
                            "subscriptions-changed",
                            &json!(["updated", sub]),
                        );
                    }
                }
                Effect::RoleChanged { user, role, added } => {
                    let args = json!([{
                        "type": if added { "added" } else { "removed" },
                        "_id": role,
                        "u": user,
                        "scope": rid,
                    }]);
                    let frame = wire::stream_changed("stream-notify-logged", "roles-change", &args);
                    self.outbox.push(Out::Logged { event: LoggedEvent::RolesChange, frame });
                }
            }
        }
    }

    /// Stores a member's current row (guests are never stored).
    fn persist_member(&mut self, uid: &UserId) {
        if self.store.is_none() || uid.is_guest() {
            return;
        }
        if let Some(m) = self.state.members.get(uid) {
            self.ops.push(StoreOp::member(&self.state.id, m));
        }
    }

    /// Whether any connection will hear `topic`, so a frame nobody receives
    /// is never serialised. Subscriptions still waiting in the outbox or
    /// behind a commit count as listening: they take effect in order.
    fn wants(&self, topic: Topic) -> bool {
        let bit = topic.bit();
        !self.pending.is_empty()
            || self.outbox.iter().any(|o| matches!(o, Out::AddSub { .. }))
            || self.subscribers.values().any(|s| s.topics & bit != 0)
    }

    /// Queues one pre-serialised frame on every subscriber of `topic`.
    /// Subscribers whose queue is closed or full are dropped (a full queue
    /// also closes that connection as a slow consumer).
    fn broadcast(&mut self, topic: Topic, frame: &Utf8Bytes, except: Option<ConnId>) {
        self.outbox.push(Out::Room { topic, frame: frame.clone(), except });
    }

    fn deliver_room(&mut self, topic: Topic, frame: &Utf8Bytes, except: Option<ConnId>) {
        let bit = topic.bit();
        let mut dead = Vec::new();
        for (id, s) in &self.subscribers {
            if s.topics & bit == 0 || Some(*id) == except {
                continue;
            }
            if !s.conn.try_send(frame.clone()) {
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
async fn head_commit(pending: &mut VecDeque<Pending>) -> Result<(), StoreError> {
    match pending.front_mut().and_then(|p| p.commit.as_mut()) {
        Some(rx) => rx.await.unwrap_or(Err(StoreError::Closed)),
        None => Ok(()),
    }
}

/// Per-room brake on join-code guessing: after [`CodeThrottle::MAX`] wrong
/// codes within [`CodeThrottle::WINDOW`], each further wrong code is
/// answered [`CodeThrottle::DELAY`] late, until the window has moved on.
/// Right codes are answered at once: refusing them would let anyone lock a
/// room's invitees out. Guessers themselves are braked in the session (per
/// connection, user and address).
#[derive(Default)]
struct CodeThrottle {
    failures: VecDeque<std::time::Instant>,
}

impl CodeThrottle {
    const MAX: usize = 20;
    const WINDOW: Duration = Duration::from_secs(60);
    const DELAY: Duration = Duration::from_secs(1);

    fn prune(&mut self) {
        let now = std::time::Instant::now();
        while self.failures.front().is_some_and(|t| now.duration_since(*t) >= Self::WINDOW) {
            self.failures.pop_front();
        }
    }

    /// Whether the room has seen [`CodeThrottle::MAX`] wrong codes within
    /// the window.
    fn busy(&mut self) -> bool {
        self.prune();
        self.failures.len() >= Self::MAX
    }

    fn failed(&mut self) {
        self.failures.push_back(std::time::Instant::now());
        if self.failures.len() > Self::MAX {
            self.failures.pop_front();
        }
    }
}

/// Length of `v` as compact JSON, without building the string.
fn json_len(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

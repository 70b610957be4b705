//! How a change reaches the rules, whichever log orders it (`room/log.rs`).
//! A command that changes the room splits into its [`RoomOp`] and its
//! caller (a [`Waiter`]). On one node the op is applied at once. With a
//! delivered log it is appended as an entry and the caller waits; every
//! node's actor applies every entry when the log delivers it, through the
//! same `apply` as a single node, with the entry's clock and ids seeded by
//! the entry: all replicas decide the same. The node holding the caller
//! answers it from its own application of the entry.

use super::RoomError;
use super::actor::RoomActor;
use super::handle::{JoinParams, Reply, RoomCommand};
use super::listener::RoomListener;
use super::log::{Entry, Order, RoomOp, fixed_id};
use super::model::Message;
use super::state::{Joined, Setting};
use super::view::Seated;
use crate::ids::{ConnId, Ids};
use crate::time::Millis;
use std::sync::Arc;

/// A caller waiting for its change to be applied.
pub(super) enum Waiter {
    Joined(Reply<Joined>),
    /// `join-room`: the joining connection's details stay here; they mean
    /// nothing on other nodes.
    ByCode {
        conn: ConnId,
        listener: Option<Arc<dyn RoomListener>>,
        since: Option<u64>,
        respond_to: Reply<Seated>,
    },
    /// `sendMessage`: the stored message.
    Message(Reply<Message>),
    Unit(Reply<()>),
    Bool(Reply<bool>),
}

impl Waiter {
    pub(super) fn fail(self, e: RoomError) {
        match self {
            Waiter::Joined(tx) => drop(tx.send(Err(e))),
            Waiter::ByCode { respond_to, .. } => drop(respond_to.send(Err(e))),
            Waiter::Message(tx) => drop(tx.send(Err(e))),
            Waiter::Unit(tx) => drop(tx.send(Err(e))),
            Waiter::Bool(tx) => drop(tx.send(Err(e))),
        }
    }
}

/// The reply channels of the caller of an op, or channels nobody listens
/// to when the caller is on another node (a waiter of another kind cannot
/// happen: entry ids are unique).
pub(super) struct Caller(pub(super) Option<Waiter>);

impl Caller {
    pub(super) fn joined(self) -> Reply<Joined> {
        match self.0 {
            Some(Waiter::Joined(tx)) => tx,
            _ => nobody(),
        }
    }

    /// The joining connection, its listener and `since`, and its reply.
    #[allow(clippy::type_complexity)]
    pub(super) fn by_code(self) -> (ConnId, Option<Arc<dyn RoomListener>>, Option<u64>, Reply<Seated>) {
        match self.0 {
            Some(Waiter::ByCode { conn, listener, since, respond_to }) => (conn, listener, since, respond_to),
            // Another node's guest: no connection of it here holds the
            // seat (id 0 is never a connection's).
            _ => (ConnId(0), None, None, nobody()),
        }
    }

    pub(super) fn message(self) -> Reply<Message> {
        match self.0 {
            Some(Waiter::Message(tx)) => tx,
            _ => nobody(),
        }
    }

    pub(super) fn unit(self) -> Reply<()> {
        match self.0 {
            Some(Waiter::Unit(tx)) => tx,
            _ => nobody(),
        }
    }

    pub(super) fn boolean(self) -> Reply<bool> {
        match self.0 {
            Some(Waiter::Bool(tx)) => tx,
            _ => nobody(),
        }
    }
}

/// A reply channel nobody listens to: other nodes' entries have no caller
/// here.
fn nobody<T>() -> Reply<T> {
    tokio::sync::oneshot::channel().0
}

/// What [`RoomActor::split`] made of a command.
pub(super) enum Split {
    /// A change, its caller, and (delivered logs) the new room name its
    /// entry claims first.
    Change(RoomOp, Option<Waiter>, Option<String>),
    /// A command that does not change the room, or concerns this node's
    /// connections: handled here at once.
    Other(RoomCommand),
    /// Nothing to do (a stale timer), or already answered.
    Done,
}

/// What an op is applied with, explicitly: the clock it is decided at and
/// where the ids it draws come from (for an entry every replica applies, a
/// generator seeded by the entry's id).
pub(super) struct ApplyCtx {
    pub(super) at: Millis,
    pub(super) ids: Ids,
}

impl RoomActor {
    /// Splits a command that changes the room into its op and its caller.
    pub(super) fn split(&mut self, cmd: RoomCommand) -> Split {
        let deferred = self.order == Order::Delivered;
        let mut claim = None;
        let (op, waiter) = match cmd {
            RoomCommand::JoinSelf { who, code, respond_to } => {
                (RoomOp::JoinSelf { who, code }, Waiter::Joined(respond_to))
            }
            RoomCommand::JoinByCode { who, params, respond_to } => {
                let JoinParams { conn, listener, since } = *params;
                (RoomOp::JoinByCode { who }, Waiter::ByCode { conn, listener, since, respond_to })
            }
            RoomCommand::Leave { uid, respond_to } => (RoomOp::Leave { uid }, Waiter::Unit(respond_to)),
            RoomCommand::End { who, respond_to } => (RoomOp::End { who }, Waiter::Unit(respond_to)),
            RoomCommand::Settings { who, settings, respond_to } => {
                if deferred {
                    for s in &settings {
                        if let Setting::RoomName(name) = s
                            && *name != self.state.name
                        {
                            claim = Some(name.clone());
                        }
                    }
                    // A rename claims its name for good before the entry is
                    // written: only a caller who may rename now gets to
                    // claim one (the entry's application checks again).
                    if claim.is_some()
                        && let Err(e) = self.state.check_settings(&who, &settings)
                    {
                        let _ = respond_to.send(Err(e));
                        return Split::Done;
                    }
                }
                (RoomOp::Settings { who, settings }, Waiter::Unit(respond_to))
            }
            RoomCommand::GuestExpired { uid, epoch } => {
                // Only the node holding the guest's connection times it
                // out; the removal itself is an op like any leave.
                if self.guest_epoch(&uid) != Some(epoch) || !self.state.is_member(&uid) {
                    return Split::Done;
                }
                self.forget_guest(&uid);
                return Split::Change(RoomOp::GuestGone { uid }, None, None);
            }
            RoomCommand::Send { who, mut params, respond_to } => {
                if deferred {
                    fixed_id(&mut params);
                }
                (RoomOp::Send { who, params }, Waiter::Message(respond_to))
            }
            RoomCommand::AddMember { who, target, respond_to } => {
                (RoomOp::AddMember { who, target: *target }, Waiter::Bool(respond_to))
            }
            RoomCommand::RemoveMember { who, target, respond_to } => {
                (RoomOp::RemoveMember { who, target }, Waiter::Unit(respond_to))
            }
            RoomCommand::SetRole { who, target, role, add, respond_to } => {
                (RoomOp::SetRole { who, target, role, add }, Waiter::Unit(respond_to))
            }
            RoomCommand::SetMuted { who, target, muted, respond_to } => {
                (RoomOp::SetMuted { who, target, muted }, Waiter::Unit(respond_to))
            }
            RoomCommand::SetArchived { who, archived, respond_to } => {
                (RoomOp::SetArchived { who, archived }, Waiter::Unit(respond_to))
            }
            RoomCommand::SetFlag { uid, flag, respond_to } => {
                (RoomOp::SetFlag { uid, flag }, Waiter::Unit(respond_to))
            }
            other => return Split::Other(other),
        };
        Split::Change(op, Some(waiter), claim)
    }

    /// Puts a change in order: applied now (one node), or appended to the
    /// room's log and applied when it comes back.
    pub(super) fn sequence(&mut self, op: RoomOp, waiter: Option<Waiter>, claim: Option<String>) {
        match self.order {
            Order::Now => self.apply(op, Caller(waiter), ApplyCtx { at: Millis::now(), ids: Ids::random() }),
            Order::Delivered => self.append_entry(op, waiter, claim),
        }
    }

    /// The one place an op meets the rules: decided at the room's time
    /// after `ctx.at`, drawing its ids from `ctx.ids`.
    pub(super) fn apply(&mut self, op: RoomOp, caller: Caller, ctx: ApplyCtx) {
        let now = self.clock.now(ctx.at);
        self.state.draw = ctx.ids;
        self.apply_op(op, caller, now);
        // Nothing outside this change draws from its generator: a seeded
        // one is predictable.
        self.state.draw = Ids::random();
        self.clock.saw(self.state.updated_at);
    }

    /// Writes `op` to the room's log (after claiming the name `claim`, if
    /// any); `waiter` hears the outcome when the entry comes back.
    fn append_entry(&mut self, op: RoomOp, waiter: Option<Waiter>, claim: Option<String>) {
        if self.waiters.len() >= super::actor::MAX_PENDING {
            // The log is not keeping up with this room's callers here: say
            // so rather than queue without bound.
            if let Some(w) = waiter {
                w.fail(RoomError::Unavailable);
            }
            return;
        }
        let entry = Entry {
            id: crate::ids::secret(22),
            origin: self.log.origin().to_owned(),
            now: Millis::now(),
            seq: 0,
            op,
        };
        let id = entry.id.clone();
        if let Some(w) = waiter {
            self.waiters.insert(id.clone(), w);
        }
        let append = self.log.append(self.state.id.clone(), entry, claim);
        let me = self.me.clone();
        tokio::spawn(async move {
            if let Err(error) = append.await
                && let Some(tx) = me.upgrade()
            {
                let _ = tx.send(RoomCommand::Unlogged { id, error: Box::new(error) }).await;
            }
        });
    }

    /// A guest resumed through this node, which holds its seat from now
    /// on; the log tells the other replicas (one node: nothing to tell).
    pub(super) fn now_held_here(&mut self, uid: &crate::ids::UserId) {
        if self.order == Order::Delivered
            && self.guest_nodes.get(uid).map(String::as_str) != Some(self.log.origin())
        {
            self.append_entry(RoomOp::GuestHeld { uid: uid.clone() }, None, None);
        }
    }

    /// Removes (through the log) guests whose node has been gone for the
    /// guest grace (delivered logs only; see `cluster::liveness`).
    pub(super) fn reap_guests(&mut self, alive: &std::collections::HashSet<String>) {
        if self.order != Order::Delivered {
            return;
        }
        let now = std::time::Instant::now();
        let grace = self.cfg.guest_grace;
        let mut gone = Vec::new();
        for (uid, m) in &self.state.members {
            if !m.guest {
                continue;
            }
            match self.guest_nodes.get(uid) {
                Some(node) if !alive.contains(node) => {
                    let since = *self.orphaned.entry(uid.clone()).or_insert(now);
                    if now.duration_since(since) >= grace {
                        gone.push(uid.clone());
                    }
                }
                _ => {
                    self.orphaned.remove(uid);
                }
            }
        }
        for uid in gone {
            // Asked again at the next sweep if this append fails.
            self.orphaned.remove(&uid);
            tracing::info!(room = %self.state.id, guest = %uid, "guest's node is gone; seat released");
            self.append_entry(RoomOp::GuestGone { uid }, None, None);
        }
    }

    /// Applies one entry of this room's log; answers its caller if the
    /// caller is connected here.
    pub(super) fn apply_entry(&mut self, entry: Entry) {
        let waiter = self.waiters.remove(&entry.id);
        match &entry.op {
            RoomOp::JoinByCode { who } if who.guest => {
                self.guest_nodes.insert(who.id.clone(), entry.origin.clone());
            }
            RoomOp::GuestHeld { uid } => {
                self.guest_nodes.insert(uid.clone(), entry.origin.clone());
                self.orphaned.remove(uid);
                return;
            }
            _ => {}
        }
        if let RoomOp::Unreadable(e) = entry.op {
            // Checked before it was logged; only a newer writer's entry
            // this version does not know lands here (logged as it was
            // read).
            if let Some(w) = waiter {
                w.fail(e);
            }
            return;
        }
        let ids = Ids::seeded(&entry.id);
        self.apply(entry.op, Caller(waiter), ApplyCtx { at: entry.now, ids });
        // Guests who left (or never got in) need no holder any more.
        if self.guest_nodes.len() > self.state.members.len() {
            let members = &self.state.members;
            self.guest_nodes.retain(|uid, _| members.contains_key(uid));
            self.orphaned.retain(|uid, _| members.contains_key(uid));
        }
    }

    /// This node's entry `id` did not reach the log: its caller hears why.
    pub(super) fn unlogged(&mut self, id: &str, error: RoomError) {
        if let Some(w) = self.waiters.remove(id) {
            w.fail(error);
        }
    }
}

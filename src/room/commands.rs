//! What the room actor does with each [`RoomCommand`]: the dispatch from a
//! command to the rules in `state.rs`, one small method per command. A
//! command that changes the room is split into its [`RoomOp`] first
//! (`replicated.rs`) and reaches the rules through `apply_op`. Each
//! method stages its reply and events (through `publish` and `reply`); the
//! loop in `actor.rs` then commits and delivers them in order.

use super::RoomError;
use super::actor::{Out, Resume, RoomActor};
use super::handle::{
    HistoryParams, JoinParams, NotifyParams, Reply, ResumeParams, RoomCommand, SendParams, SubscribeParams,
    Topic,
};
use super::listener::RoomListener;
use super::log::{Order, RoomOp};
use super::model::Message;
use super::replicated::{Caller, Split};
use super::state::{Effect, Joined, RoomState, Setting, SystemKind};
use super::view::{ParticipantView, Seated};
use crate::ids::{ConnId, MessageId, UserId};
use crate::permissions::Principal;
use crate::time::Millis;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Dispatch: which command runs where, and when.
impl RoomActor {
    pub(super) fn handle(&mut self, cmd: RoomCommand) {
        let cmd = match cmd {
            RoomCommand::Apply(entry) => return self.apply_logged(*entry),
            RoomCommand::ApplySnapshot { entry, respond_to } => {
                let whole = match &entry.op {
                    RoomOp::Snapshot(snap) => self.holds_all_before(snap),
                    _ => true,
                };
                if whole {
                    self.apply_logged(*entry);
                }
                let _ = respond_to.send(Ok(whole));
                return;
            }
            RoomCommand::Reseed { state, snapshot, entries } => {
                return self.reseed(*state, *snapshot, entries);
            }
            RoomCommand::Load { snapshot, entries } => return self.load(snapshot.map(|s| *s), entries),
            RoomCommand::Unlogged { id, error } => return self.unlogged(&id, *error),
            cmd => match self.split(cmd) {
                Split::Change(op, waiter, claim) => return self.sequence(op, waiter, claim),
                Split::Other(cmd) => cmd,
                Split::Done => return,
            },
        };
        self.handle_at(cmd, Millis::now());
    }

    /// Handles one command that changes nothing in the room's log (a
    /// read, or this node's connections) with the clock at `clock`.
    pub(super) fn handle_at(&mut self, cmd: RoomCommand, clock: Millis) {
        self.decide(cmd, self.clock.now(clock));
        self.clock.saw(self.state.updated_at);
    }

    /// Handles one command decided at `now` (the room's time, after every
    /// time it handed out before).
    fn decide(&mut self, cmd: RoomCommand, now: Millis) {
        use RoomCommand as C;
        match cmd {
            C::ResumeGuest { params, respond_to } => {
                let ResumeParams { token, current, join: JoinParams { conn, listener, since } } = *params;
                self.resume_guest(&token, conn, current, Tuned { listener, since }, respond_to)
            }
            C::Doc { respond_to } => self.reply(respond_to, Ok(self.state.info())),
            C::DocFor { uid, respond_to } => self.reply(respond_to, self.state.info_for(&uid)),
            C::Sweep => self.sweep(),
            C::Subscribe { params, respond_to } => {
                let SubscribeParams { sink, uid, signed_in, topic, sub_id } = *params;
                let r = if self.state.can_read(&uid, signed_in && topic == Topic::Messages) {
                    self.staged.push(Out::AddSub { sink, uid, topic, sub_id });
                    Ok(())
                } else {
                    Err(RoomError::NotAllowed)
                };
                self.reply(respond_to, r);
            }
            C::Unsubscribe { conn, topic, sub_id, last, respond_to } => {
                self.staged.push(Out::RemoveSub { conn, topic, sub_id, last });
                self.reply(respond_to, Ok(()));
            }
            C::ConnClosed { conn, guest } => self.conn_closed(conn, guest),
            C::ReapGuests { alive } => self.reap_guests(&alive),
            // Changes and log deliveries: split off in `handle`.
            C::Apply(_)
            | C::ApplySnapshot { .. }
            | C::Reseed { .. }
            | C::Load { .. }
            | C::Unlogged { .. }
            | C::JoinSelf { .. }
            | C::JoinByCode { .. }
            | C::Leave { .. }
            | C::End { .. }
            | C::Settings { .. }
            | C::GuestExpired { .. }
            | C::Send { .. }
            | C::AddMember { .. }
            | C::RemoveMember { .. }
            | C::SetRole { .. }
            | C::SetMuted { .. }
            | C::SetArchived { .. }
            | C::SetFlag { .. } => {}
            C::History { params, respond_to } => {
                let HistoryParams { uid, end, after, limit, max_bytes } = *params;
                self.history(&uid, (end, after), limit, max_bytes, now, respond_to)
            }
            C::SubscriptionDoc { uid, respond_to } => {
                let sub = self.state.subscription_info(&uid);
                if sub.is_none() {
                    self.forget_stale_membership(&uid);
                }
                self.reply(respond_to, Ok(sub))
            }
            C::MemberDoc { uid, respond_to } => {
                let info = self.state.member_info(&uid);
                if info.is_none() {
                    self.forget_stale_membership(&uid);
                }
                self.reply(respond_to, Ok(info))
            }
            C::Roles { uid, respond_to } => self.reply(respond_to, self.state.role_entries(&uid)),
            C::Participants { uid, respond_to } => self.reply(respond_to, self.state.participants(&uid)),
            C::Notify(params) => {
                let NotifyParams { from, uid, topic, event, args } = *params;
                if self.state.is_member(&uid) {
                    self.relay(from, topic, &event, &args);
                    // From a connection here (not relayed from another node):
                    // the other nodes' listeners hear it too.
                    if from != ConnId(0) {
                        self.log.relay_notice(&self.state.id, &uid, topic, &event, &args);
                    }
                }
            }
        }
    }

    /// Applies one change decided at `now` (see `replicated::apply`, the
    /// only caller): the rules it runs, answering `caller`.
    pub(super) fn apply_op(&mut self, op: RoomOp, caller: Caller, now: Millis) {
        use RoomOp as O;
        match op {
            O::JoinSelf { who, code } => self.join_self(&who, code, now, caller.joined()),
            O::JoinByCode { who } => {
                let (conn, listener, since, respond_to) = caller.by_code();
                self.join_by_code(&who, conn, Tuned { listener, since }, now, respond_to)
            }
            O::Leave { uid } => self.leave(&uid, now, caller.unit()),
            O::End { who } => self.rule(now, caller.unit(), |s, fx| s.end(&who, now, fx)),
            O::Settings { who, settings } => self.save_settings(&who, settings, now, caller.unit()),
            O::GuestGone { uid } => self.guest_gone(&uid, now),
            O::Send { who, params } => {
                let r = self.send_message(&who, *params, now);
                self.reply(caller.message(), r);
            }
            O::AddMember { who, target } => {
                let name = target.username.clone();
                let mut fx = Vec::new();
                let r = self.state.add_member(&who, target, now, &mut fx);
                if let Ok(false) = r {
                    self.notice(&who.id, &format!("{name} is already in here"), now);
                }
                self.publish(fx, now);
                self.reply(caller.boolean(), r);
            }
            O::RemoveMember { who, target } => {
                self.rule(now, caller.unit(), |s, fx| s.remove_by(&who, &target, now, fx))
            }
            O::SetRole { who, target, role, add } => {
                self.rule(now, caller.unit(), |s, fx| s.set_role(&who, &target, role, add, now, fx))
            }
            O::SetMuted { who, target, muted } => {
                self.rule(now, caller.unit(), |s, fx| s.set_muted(&who, &target, muted, now, fx))
            }
            O::SetArchived { who, archived } => {
                self.rule(now, caller.unit(), |s, fx| s.set_archived(&who, archived, now, fx))
            }
            O::SetFlag { uid, flag } => self.rule(now, caller.unit(), |s, fx| s.set_flag(&uid, flag, fx)),
            // Where the guest's seat is held and the log's compaction
            // point: bookkeeping of the delivered log, taken care of before
            // an entry gets here (`apply_entry`, `apply_logged`).
            O::GuestHeld { .. } | O::Snapshot(_) => {}
            O::Unreadable(e) => {
                if let Some(w) = caller.0 {
                    w.fail(e);
                }
            }
        }
    }

    /// The shape of most changes: run one rule, publish what it changed,
    /// queue its answer.
    fn rule<T: Send + 'static>(
        &mut self,
        now: Millis,
        respond_to: Reply<T>,
        rule: impl FnOnce(&mut RoomState, &mut Vec<Effect>) -> Result<T, RoomError>,
    ) {
        let mut fx = Vec::new();
        let r = rule(&mut self.state, &mut fx);
        self.publish(fx, now);
        self.reply(respond_to, r);
    }
}

/// Joining, leaving and the room's settings.
impl RoomActor {
    fn join_self(&mut self, who: &Principal, code: Option<String>, now: Millis, respond_to: Reply<Joined>) {
        let mut fx = Vec::new();
        let r = self.state.join_self(who, code.as_deref(), now, &mut fx);
        if let Err(RoomError::CodeInvalid) = r {
            // While the room is being guessed at, wrong answers come
            // late; a right code is never held up or refused, so
            // strangers' guessing cannot lock members-to-be out.
            if let Some(delay) = self.code_throttle.wrong_code(Instant::now()) {
                self.reply_later(respond_to, delay, r);
                return;
            }
        }
        if let Ok(Joined::Existing(_)) = &r {
            self.notice(&who.id, "You are already in this room", now);
        }
        self.publish(fx, now);
        self.reply(respond_to, r);
    }

    fn join_by_code(
        &mut self,
        who: &Principal,
        conn: ConnId,
        tuned: Tuned,
        now: Millis,
        respond_to: Reply<Seated>,
    ) {
        let mut fx = Vec::new();
        let upto = self.state.seq;
        let r = self.state.join_by_code(who, now, &mut fx).map(|j| self.participant(j.member()));
        if r.is_ok() && who.guest {
            self.guest_holders.insert(who.id.clone(), conn);
        }
        // Before the join's own events: the joiner hears its join like
        // everyone else, and everything after it.
        let recovered = match &r {
            Ok(_) => self.listen(conn, who.id.clone(), tuned, upto),
            Err(_) => None,
        };
        self.publish(fx, now);
        let seq = self.state.seq;
        self.staged.push(Out::Reply(Box::new(move |failed| {
            let r = match failed {
                Some(_) => Err(RoomError::Storage),
                None => r.map(|p| seated(p, seq, recovered)),
            };
            let _ = respond_to.send(r);
        })));
    }

    /// Stages a joined socket's start of listening (with its replay, if it
    /// asked for one); returns where its `recovered` will be known.
    fn listen(&mut self, conn: ConnId, uid: UserId, tuned: Tuned, upto: u64) -> Option<Arc<AtomicBool>> {
        let sink = tuned.listener?;
        let recovered = Arc::new(AtomicBool::new(false));
        let resume = tuned.since.map(|since| Resume { since, upto, recovered: recovered.clone() });
        self.staged.push(Out::Listen { conn, uid, sink, resume });
        Some(recovered)
    }

    fn leave(&mut self, uid: &UserId, now: Millis, respond_to: Reply<()>) {
        let mut fx = Vec::new();
        let r = self.state.leave(uid, now, &mut fx).map(|_| ());
        self.guest_epochs.remove(uid);
        self.publish(fx, now);
        self.reply(respond_to, r);
    }

    fn save_settings(&mut self, who: &Principal, settings: Vec<Setting>, now: Millis, respond_to: Reply<()>) {
        let mut fx = Vec::new();
        let (registry, rid) = (&self.registry, self.state.id.clone());
        let delivered = self.order == Order::Delivered;
        let r = self.state.save_settings(who, settings, now, &mut fx, |name| {
            // A rename must win the name in the registry before
            // anything changes. From a delivered log it already won the
            // name's claim in the log, before the entry was written.
            if delivered {
                registry.force_name(name, &rid);
                Ok(())
            } else {
                registry.reserve_name(name, &rid)
            }
        });
        self.publish(fx, now);
        self.reply(respond_to, r);
    }
}

/// Guests' seats: who holds each, and the grace a guest has to come back.
impl RoomActor {
    fn resume_guest(
        &mut self,
        token: &str,
        conn: ConnId,
        current: Option<UserId>,
        tuned: Tuned,
        respond_to: Reply<Option<(UserId, Seated)>>,
    ) {
        let seq = self.state.seq;
        let r = self.state.reclaim_seat(token, current.as_ref()).map(|m| {
            // Back (perhaps before the old connection was even
            // noticed gone, or after a restart): the seat is kept,
            // and only this connection closing can start its grace
            // period now.
            self.guest_epochs.remove(&m.user.id);
            self.guest_holders.insert(m.user.id.clone(), conn);
            (m.user.id.clone(), self.participant(&m))
        });
        let recovered = match &r {
            Some((uid, _)) => self.listen(conn, uid.clone(), tuned, seq),
            None => None,
        };
        if let Some((uid, _)) = &r {
            self.now_held_here(uid);
        }
        self.staged.push(Out::Reply(Box::new(move |failed| {
            let r = match failed {
                Some(_) => Err(RoomError::Storage),
                None => Ok(r.map(|(uid, p)| (uid, seated(p, seq, recovered)))),
            };
            let _ = respond_to.send(r);
        })));
    }

    fn conn_closed(&mut self, conn: ConnId, guest: Option<UserId>) {
        self.subscribers.remove(&conn);
        self.listeners.remove(&conn);
        let holds = |uid: &UserId| self.guest_holders.get(uid).is_none_or(|h| *h == conn);
        if let Some(uid) = guest.filter(|u| self.state.is_member(u) && holds(u)) {
            self.guest_holders.remove(&uid);
            self.start_guest_grace(uid);
        }
    }

    fn guest_gone(&mut self, uid: &UserId, now: Millis) {
        self.forget_guest(uid);
        self.remove_guest(uid, now);
    }

    /// A guest's grace is over: it leaves, if it is still here.
    fn remove_guest(&mut self, uid: &UserId, now: Millis) {
        if self.state.is_member(uid) {
            let mut fx = Vec::new();
            self.state.remove_member(uid, now, SystemKind::UserLeft, None, &mut fx);
            self.publish(fx, now);
        }
    }

    pub(super) fn start_guest_grace(&mut self, uid: UserId) {
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

    /// The epoch of `uid`'s running grace timer, if any.
    /// `uid` is not a member, yet their room list led here: what led here
    /// was a note made before this room decided (a join it may have
    /// refused) or before a leave the note did not follow. Dropped in the
    /// room's own turn, so no membership this room grants later is lost.
    fn forget_stale_membership(&self, uid: &UserId) {
        self.users.remove_membership(uid, &self.state.id);
    }

    pub(super) fn guest_epoch(&self, uid: &UserId) -> Option<u64> {
        self.guest_epochs.get(uid).copied()
    }

    /// `uid`'s grace is over here (its removal is on its way).
    pub(super) fn forget_guest(&mut self, uid: &UserId) {
        self.guest_epochs.remove(uid);
        self.guest_holders.remove(uid);
    }
}

/// Messages: sending, and reading the history.
impl RoomActor {
    fn send_message(&mut self, who: &Principal, p: SendParams, now: Millis) -> Result<Message, RoomError> {
        let member = self.state.check_send(who, p.id.as_ref(), |id| self.message_known(id))?;
        let user = member.user.clone();
        let id = p.id.unwrap_or_else(|| MessageId::drawn(&mut self.state.draw));
        let ts = self.clock.stamp(now);
        let msg = Message::user(id, &self.state.id, p.msg, user, p.tmid, ts);
        // The caller's door shapes its copy; the store row and the frames
        // share one serialisation (see `store_and_broadcast`).
        let reply = msg.clone();
        self.store_and_broadcast(msg);
        Ok(reply)
    }

    /// Whether this room already has a message `id`, however old. Memory
    /// answers for the recent ones (the history window, and messages whose
    /// commit is in flight); older ones are looked up in the store by its
    /// unique index. The lookup blocks this actor's thread for an indexed
    /// point read (microseconds with a warm page cache), which costs less
    /// than parking the room behind a round trip to another thread; only
    /// client-chosen ids reach it.
    fn message_known(&self, id: &MessageId) -> Result<bool, RoomError> {
        if self.order == Order::Delivered {
            // Only what every replica holds alike decides (not the
            // per-node window).
            return Ok(self.compaction.as_ref().is_some_and(|c| c.knows(id)));
        }
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

    /// `loadHistory`: a page from the window in memory, or, when the page
    /// reaches past it, from the store.
    fn history(
        &mut self,
        uid: &UserId,
        (end, after): (Option<Millis>, Option<Millis>),
        limit: usize,
        max_bytes: usize,
        now: Millis,
        respond_to: Reply<Vec<Arc<Message>>>,
    ) {
        if !self.state.can_read(uid, true) {
            return self.reply(respond_to, Err(RoomError::NotAllowed));
        }
        // Times are strictly increasing per room: "after t" is "from t + 1".
        let floor = self
            .history_floor(now)
            .max(after.map_or(Millis(0), |t| Millis(t.0.saturating_add(1))))
            .max(self.state.read_floor(uid));
        let page = self.history_page(end, floor, limit, max_bytes);
        if self.order == Order::Delivered {
            return self.compacted_page(page, end, floor, limit, max_bytes, respond_to);
        }
        match (&self.store, page.wants_more(limit) && !self.history_complete) {
            (Some(store), true) => {
                // The rest is older than the window: read from the
                // store, off this loop, once earlier commits are
                // durable (a burst may have pushed messages out of
                // the window before the store had them).
                let before =
                    self.history.front().map_or(end, |m| Some(end.map_or(m.ts(), |e| e.min(m.ts()))));
                let (store, rid) = (store.clone(), self.state.id.clone());
                self.staged.push(Out::Reply(Box::new(move |failed| {
                    if failed.is_some() {
                        let _ = respond_to.send(Err(RoomError::Storage));
                        return;
                    }
                    tokio::spawn(async move {
                        let r = page.read_on(&*store, &rid, before, floor, limit, max_bytes).await;
                        let _ = respond_to.send(r);
                    });
                })));
            }
            _ => self.reply(respond_to, Ok(page.messages)),
        }
    }
}

/// How a joining connection hears the room: its listener (Socket.IO) and
/// the position it last heard, if it comes back.
pub(super) struct Tuned {
    pub(super) listener: Option<Arc<dyn RoomListener>>,
    pub(super) since: Option<u64>,
}

/// The participant object of a join, with the room's position after it and,
/// for a listening socket, whether its `since` was recovered (read once the
/// replay, staged before the answer, was sent).
fn seated(participant: ParticipantView, seq: u64, recovered: Option<Arc<AtomicBool>>) -> Seated {
    Seated { participant, seq, recovered: recovered.map(|r| r.load(Ordering::Acquire)) }
}

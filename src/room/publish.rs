//! Turning what the rules decided into what others see: the [`Effect`]s of
//! a command become stored rows (`ops`) and frames staged for delivery once
//! they are durable. The only room file that shapes frames (through
//! `wire`); documents are built once per command and only for listeners.

use super::RoomError;
use super::UserRef;
use super::actor::{Out, RoomActor, Subscriber};
use super::handle::Topic;
use super::listener::MeetingEvent;
use super::model::{Member, Message};
use super::recent::Recent;
use super::replay::{Fields, SeatEvent, Staged};
use super::state::{Effect, SystemKind};
use super::view::ParticipantView;
use crate::durability::{Durability, RoomChange};
use crate::hub::{LoggedEvent, UserEvent};
use crate::ids::{ConnId, MessageId, RoomId, UserId};
use crate::time::Millis;
use crate::wire;
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::sync::Arc;
use tokio_tungstenite::tungstenite::Utf8Bytes;

impl Subscriber {
    /// Tells the client its subscriptions here are over (the member left,
    /// the room went private or retired), so none ends silently.
    pub(super) fn end_subs(&self) {
        for id in &self.sub_ids {
            self.sink.try_send(wire::nosub(id, None));
        }
    }
}

/// The room document, serialised at most once per command: effects that
/// carry it share the bytes. Keyed by the message count, the one field
/// that moves while a command's effects are published (each system
/// message counts), so every effect still shows the room as of its turn.
#[derive(Default)]
struct DocOnce {
    msgs: u64,
    doc: Option<Box<RawValue>>,
}

impl DocOnce {
    fn get(&mut self, state: &super::RoomState) -> &RawValue {
        if self.msgs != state.message_count {
            self.msgs = state.message_count;
            self.doc = None;
        }
        self.doc.get_or_insert_with(|| raw(&state.to_doc()))
    }
}

/// A `room-updated` event's payload: the one rendering, live and replayed.
pub(super) fn replay_status(status: &super::view::MeetingStatus, seq: u64) -> Box<RawValue> {
    raw(&wire::room::meeting_status_event(status, seq))
}

/// A `joined`/`left` event's payload: the one rendering, live and replayed.
pub(super) fn participant_payload(p: &ParticipantView, seq: u64) -> Box<RawValue> {
    raw(&wire::room::participant_event(p, seq))
}

/// A chat message's `message` event payload: the one rendering, live (only
/// when the room has meeting listeners) and replayed.
pub(super) fn message_payload(m: &Message, seq: u64) -> Box<RawValue> {
    #[cfg(test)]
    tests::RENDERED.with(|n| n.set(n.get() + 1));
    raw(&wire::room::meeting_message(m, seq))
}

/// `v` as JSON bytes that later frames embed without serialising it again.
fn raw<T: Serialize + ?Sized>(v: &T) -> Box<RawValue> {
    // Our own types always serialise; the `null` fallback is unreachable.
    serde_json::value::to_raw_value(v).unwrap_or_default()
}

impl RoomActor {
    /// Turns effects into stored messages and stream events, in order.
    pub(super) fn publish(&mut self, fx: Vec<Effect>, now: Millis) {
        let rid = self.state.id.clone();
        if !fx.is_empty() {
            // Room metadata is one small row; rewriting it on every change
            // is simpler than tracking which field moved. Written when the
            // command is done (`finish_command`), with its final position.
            self.room_dirty = true;
        }
        let mut doc = DocOnce::default();
        for e in fx {
            match e {
                Effect::System { kind, msg, by, role } => {
                    let ended = kind == SystemKind::RoomEnded;
                    let ts = self.clock.stamp(now);
                    let mut m = Message::system(
                        MessageId::drawn(&mut self.state.draw),
                        &rid,
                        kind.code(),
                        msg,
                        by,
                        ts,
                    );
                    m.role = role.map(|r| Cow::Borrowed(r.name()));
                    let seq = self.store_and_broadcast(m);
                    if ended {
                        // The same event as the system message: its position.
                        let payload = wire::room::room_ended(&rid, now, seq);
                        self.meeting(MeetingEvent::RoomEnded, seq, now, raw(&payload));
                    }
                }
                // Built whether or not anyone listens now: the replay
                // window keeps them for sockets that come back.
                Effect::Participant { joined, member, at } => {
                    let seq = self.next_seq();
                    let view = self.state.participant(&member, (!joined).then_some(at));
                    let p = participant_payload(&view, seq);
                    if self.wants(Topic::Participants) {
                        let args = (if joined { "joined" } else { "left" }, &*p);
                        let event = format!("{rid}/participants");
                        let frame = wire::stream_changed_at("stream-notify-room", &event, &args, Some(seq));
                        self.broadcast(Topic::Participants, &frame, None);
                    }
                    let event =
                        if joined { MeetingEvent::ParticipantJoined } else { MeetingEvent::ParticipantLeft };
                    // Every join and leave makes one, and the replay window
                    // keeps it: as its fields, not its ~190 bytes.
                    let kept = SeatEvent::of(&view);
                    debug_assert!(kept.as_ref().is_none_or(|k| k.view(&rid) == view));
                    let payload = Staged::Bytes(p.into(), kept.map(Fields::Participant));
                    self.staged.push(Out::Meeting { event, seq, at: now, payload });
                }
                Effect::RoomUpdated => {
                    let seq = self.next_seq();
                    let compact = self.state.status();
                    let status = replay_status(&compact, seq);
                    if self.wants(Topic::Participants) {
                        let args = ("room-updated", &*status);
                        let event = format!("{rid}/participants");
                        let frame = wire::stream_changed_at("stream-notify-room", &event, &args, Some(seq));
                        self.broadcast(Topic::Participants, &frame, None);
                    }
                    // Every join and leave makes one, and the replay window
                    // keeps it: as its four fields, not its ~90 bytes.
                    let payload = Staged::Bytes(status.into(), Some(Fields::Status(compact)));
                    let event = MeetingEvent::RoomUpdated;
                    self.staged.push(Out::Meeting { event, seq, at: now, payload });
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
                            &("inserted", sub),
                        );
                    }
                    if self.hub.has_listener(&uid, UserEvent::RoomsChanged) {
                        let args = ("inserted", doc.get(&self.state));
                        let frame = wire::stream_changed(
                            "stream-notify-user",
                            &format!("{uid}/rooms-changed"),
                            &args,
                        );
                        self.staged.push(Out::User { uid, event: UserEvent::RoomsChanged, frame });
                    }
                }
                Effect::MembershipRemoved(uid) => {
                    self.users.remove_membership(&uid, &rid);
                    // Whatever ended the seat (leave, kick, grace), nothing
                    // about the guest may outlive it: a guest id is never
                    // seen again, so an entry kept here is kept forever
                    // (issue 24: one per guest who left).
                    if uid.is_guest() {
                        self.forget_guest(&uid);
                    }
                    if self.store.is_some() {
                        self.ops.push(RoomChange::MemberLeft(uid.clone()));
                    }
                    self.notify_user(
                        &uid,
                        UserEvent::SubscriptionsChanged,
                        "subscriptions-changed",
                        &("removed", wire::room::subscription_gone(&rid, &uid)),
                    );
                    self.notify_user(
                        &uid,
                        UserEvent::RoomsChanged,
                        "rooms-changed",
                        &("removed", wire::room::room_gone(&rid)),
                    );
                    // A member who left stops hearing the room right after
                    // the events announcing it.
                    self.staged.push(Out::DropSubs(uid));
                }
                Effect::Renamed { old, new: _ } => self.registry.release_name(&old, &rid),
                Effect::BecamePrivate => self.staged.push(Out::DropNonMembers),
                Effect::RoomChanged => {
                    let listeners = self.members_listening(UserEvent::RoomsChanged);
                    if !listeners.is_empty() {
                        // One document for all members; only the event name differs.
                        let args = ("updated", doc.get(&self.state));
                        let frames: Vec<Out> = listeners
                            .into_iter()
                            .map(|uid| {
                                let event = format!("{uid}/rooms-changed");
                                let frame = wire::stream_changed("stream-notify-user", &event, &args);
                                Out::User { uid, event: UserEvent::RoomsChanged, frame }
                            })
                            .collect();
                        self.staged.extend(frames);
                    }
                }
                Effect::SubscriptionChanged(uid) => {
                    self.persist_member(&uid);
                    if let Some(sub) = self.state.subscription_doc(&uid) {
                        self.notify_user(
                            &uid,
                            UserEvent::SubscriptionsChanged,
                            "subscriptions-changed",
                            &("updated", sub),
                        );
                    }
                }
                Effect::RoleChanged { user, role, added } => {
                    let args = [wire::room::role_change(&rid, &user, role.name(), added)];
                    let frame = wire::stream_changed("stream-notify-logged", "roles-change", &args);
                    self.staged.push(Out::Logged { event: LoggedEvent::RolesChange, frame });
                }
            }
        }
    }

    /// Counts, stores and broadcasts a message, and keeps it in the history.
    /// The message is serialised for the wire once; every frame reuses
    /// those bytes. Its stored row is a type of its own (`MessageRowV1`),
    /// encoded by the store off the room's path.
    /// Returns the message's position.
    pub(super) fn store_and_broadcast(&mut self, msg: Message) -> u64 {
        self.state.message_count += 1;
        let seq = self.next_seq();
        // A chat message is shared at once: the replay window keeps the
        // history's `Arc` (and, with a delivered log, the compaction tail
        // too). A notice the history keeps compactly stays owned.
        let shared = msg.t.is_none() || self.order == super::log::Order::Delivered;
        let msg = if shared { Ok(Arc::new(msg)) } else { Err(msg) };
        let m: &Message = match &msg {
            Ok(a) => a,
            Err(m) => m,
        };
        let bytes = raw(m);
        if self.store.is_some() {
            self.ops.push(RoomChange::message(m));
        }
        if self.wants(Topic::Messages) {
            let frame = wire::stream_changed_at(
                "stream-room-messages",
                self.state.id.as_str(),
                &[&*bytes],
                Some(seq),
            );
            self.broadcast(Topic::Messages, &frame, None);
        }
        if let Ok(shared) = &msg
            && shared.t.is_none()
        {
            // Rendered on delivery, and only if someone listens then.
            let payload = Staged::Message(Arc::clone(shared));
            let (event, at) = (MeetingEvent::Message, shared.ts);
            self.staged.push(Out::Meeting { event, seq, at, payload });
        }
        if self.hub.wants_my_messages() {
            let listeners = self.members_listening(UserEvent::MyMessages);
            if !listeners.is_empty() {
                let meta = wire::room::my_message_meta(self.state.kind, &self.state.name);
                let frame = wire::stream_changed_at(
                    "stream-room-messages",
                    "__my_messages__",
                    &(&*bytes, meta),
                    Some(seq),
                );
                let outs = listeners.into_iter().map(|uid| Out::User {
                    uid,
                    event: UserEvent::MyMessages,
                    frame: frame.clone(),
                });
                self.staged.extend(outs);
            }
        }
        self.history_ids.insert(m.id.clone());
        let kept = match msg {
            Ok(msg) => {
                if self.order == super::log::Order::Delivered {
                    super::compacted::made(&mut self.compaction).accepted(&msg);
                }
                Recent::Full(msg)
            }
            Err(msg) => Recent::new(msg, &self.state.id),
        };
        self.history.push_back(kept);
        while self.history.len() > self.cfg.history_limit {
            if let Some(old) = self.history.pop_front() {
                self.history_ids.remove(old.id());
                self.history_complete = false;
            }
        }
        seq
    }

    /// The room's next event position (see `RoomState::seq`).
    fn next_seq(&mut self) -> u64 {
        self.state.seq += 1;
        self.state.seq
    }

    /// An ephemeral notice on `stream-notify-user` `<uid>/message`, shown to
    /// one user and never stored.
    pub(super) fn notice(&mut self, uid: &UserId, text: &str, now: Millis) {
        if !self.hub.has_listener(uid, UserEvent::Message) {
            return;
        }
        let bot = UserRef { id: UserId::from("rocket.cat"), username: "rocket.cat".into(), name: None };
        let id = MessageId::drawn(&mut self.state.draw);
        let mut m = Message::system(id, &self.state.id, "ephemeral", text.to_owned(), bot, now);
        m.t = None;
        m.groupable = None;
        let frame = wire::stream_changed("stream-notify-user", &format!("{uid}/message"), &[m]);
        self.staged.push(Out::User { uid: uid.clone(), event: UserEvent::Message, frame });
    }

    /// Members with a listener for `event`, so documents are built only
    /// when someone will receive them.
    fn members_listening(&self, event: UserEvent) -> Vec<UserId> {
        self.state.members.keys().filter(|uid| self.hub.has_listener(uid, event)).cloned().collect()
    }

    /// `stream-notify-user` `<uid>/<event>` to one user, if listening.
    fn notify_user<A: Serialize>(&mut self, uid: &UserId, event: UserEvent, name: &str, args: &A) {
        if self.hub.has_listener(uid, event) {
            let frame = wire::stream_changed("stream-notify-user", &format!("{uid}/{name}"), args);
            self.staged.push(Out::User { uid: uid.clone(), event, frame });
        }
    }

    /// A member's `stream-notify-room` event (typing, user activity),
    /// passed on to the room's other listeners of `topic`.
    pub(super) fn relay(&mut self, from: ConnId, topic: Topic, event: &str, args: &Value) {
        let frame = wire::stream_changed("stream-notify-room", event, args);
        self.broadcast(topic, &frame, Some(from));
    }

    /// Stores a member's current row (a guest's seat too, so it survives a
    /// restart: it is durable before its `join-room` is answered).
    fn persist_member(&mut self, uid: &UserId) {
        if self.store.is_none() {
            return;
        }
        if let Some(m) = self.state.members.get(uid) {
            self.ops.push(RoomChange::member(m));
        }
    }

    /// Stages a meeting event for every listener (see `RoomListener`).
    fn meeting(&mut self, event: MeetingEvent, seq: u64, at: Millis, payload: impl Into<Arc<RawValue>>) {
        self.staged.push(Out::Meeting { event, seq, at, payload: Staged::Bytes(payload.into(), None) });
    }

    /// Stages one pre-serialised frame for every subscriber of `topic`.
    fn broadcast(&mut self, topic: Topic, frame: &Utf8Bytes, except: Option<ConnId>) {
        self.staged.push(Out::Room { topic, frame: frame.clone(), except });
    }

    /// The participant object returned by `join-room`; guests also get the
    /// token that lets them reclaim the seat after a reconnect.
    pub(super) fn participant(&self, m: &Member) -> ParticipantView {
        let guest_token = m.guest_token.as_ref().and_then(|t| t.secret()).map(str::to_owned);
        ParticipantView { guest_token, ..self.state.participant(m, None) }
    }

    /// The oldest `ts` the retention policy still keeps at `now` (0: all).
    pub(super) fn history_floor(&self, now: Millis) -> Millis {
        match self.cfg.history_max_age {
            Some(age) => {
                Millis(now.0.saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX)).max(0))
            }
            None => Millis(0),
        }
    }

    /// The part of a `loadHistory` page the in-memory window answers: the
    /// newest `limit` messages before `end` (none older than `floor`),
    /// newest first, within `max_bytes` (see [`HistoryPage::push`]).
    pub(super) fn history_page(
        &self,
        end: Option<Millis>,
        floor: Millis,
        limit: usize,
        max_bytes: usize,
    ) -> HistoryPage {
        let mut page = HistoryPage::default();
        for m in self.history.iter().rev().filter(|m| end.is_none_or(|e| m.ts() < e) && m.ts() >= floor) {
            if !page.wants_more(limit) || !page.push(m.message(&self.state.id), max_bytes) {
                break;
            }
        }
        page
    }
}

/// A `loadHistory` page being built, newest first: the room's own
/// messages (shared with the window where it holds them); each door shapes
/// them.
#[derive(Debug, Default)]
pub(super) struct HistoryPage {
    pub(super) messages: Vec<Arc<Message>>,
    /// Bytes of `messages` as a JSON array's elements.
    bytes: usize,
    /// The byte budget stopped the page.
    full: bool,
}

impl HistoryPage {
    /// Whether the page has room for more than it holds.
    pub(super) fn wants_more(&self, limit: usize) -> bool {
        !self.full && self.messages.len() < limit
    }

    /// Adds `m` unless it would take the page past `max_bytes` (the first
    /// message always fits); `false` once the page is full. Each message is
    /// measured as its wire document by serialising it into a counter, so
    /// the room builds no JSON for a page and holds at most the cap.
    pub(super) fn push(&mut self, m: Arc<Message>, max_bytes: usize) -> bool {
        let first = self.messages.is_empty();
        self.bytes += wire::json_len(&*m) + 1;
        if first || self.bytes <= max_bytes {
            self.messages.push(m);
            true
        } else {
            self.full = true;
            false
        }
    }

    /// Completes the page from `store`: messages older than `before`
    /// (what the window did not hold), none older than `floor`.
    pub(super) async fn read_on(
        mut self,
        store: &dyn Durability,
        rid: &RoomId,
        before: Option<Millis>,
        floor: Millis,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<Arc<Message>>, RoomError> {
        let want = limit.saturating_sub(self.messages.len());
        let older = store
            .history_before(rid, before.unwrap_or(Millis(i64::MAX)), floor, want)
            .await
            .map_err(|e| {
                tracing::error!(room = %rid, error = %e, "cannot read history from the store");
                RoomError::Storage
            })?;
        for m in older {
            if !self.wants_more(limit) || !self.push(Arc::new(m), max_bytes) {
                break;
            }
        }
        Ok(self.messages)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::cell::Cell;

    thread_local! {
        /// `message` event payloads rendered on this thread (a test's
        /// current-thread runtime runs its rooms here).
        pub(in crate::room) static RENDERED: Cell<usize> = const { Cell::new(0) };
    }

    use crate::auth::Authenticator;
    use crate::config::Limits;
    use crate::ids::{ConnId, UserId};
    use crate::permissions::Principal;
    use crate::room::{
        CreateOptions, JoinParams, MeetingEvent, RoomCommand, RoomHandle, RoomListener, RoomType, SendParams,
    };
    use crate::server::{ServerParts, ServerState};
    use serde_json::value::RawValue;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// A door's listener that keeps the `message` events it hears, as bytes.
    #[derive(Debug, Default)]
    struct Heard(Mutex<Vec<String>>);

    impl RoomListener for Heard {
        fn emit(&self, event: MeetingEvent, payload: &RawValue) -> bool {
            if event == MeetingEvent::Message {
                self.0.lock().unwrap().push(payload.get().to_owned());
            }
            true
        }
    }

    impl Heard {
        /// The `n` messages heard so far, waiting (bounded) for them.
        async fn messages(&self, n: usize) -> Vec<String> {
            for _ in 0..200 {
                let got = self.0.lock().unwrap().clone();
                if got.len() >= n {
                    return got;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            panic!("heard {:?}, want {n}", self.0.lock().unwrap());
        }
    }

    fn principal(id: &str, guest: bool) -> Principal {
        Principal {
            id: if guest { UserId::new_guest() } else { UserId::from(id) },
            username: id.to_owned(),
            name: Some(format!("{id} \"é\" 🦀")),
            admin: false,
            bot: false,
            guest,
        }
    }

    /// A guest takes a seat by code (listening if `heard`); the room's
    /// position at the seat.
    async fn seat(room: &RoomHandle, name: &str, heard: Option<Arc<Heard>>, since: Option<u64>) -> u64 {
        let listener = heard.map(|h| h as Arc<dyn RoomListener>);
        let conn = ConnId(name.len() as u64 + 1000);
        let params = Box::new(JoinParams { conn, listener, since });
        let who = Box::new(principal(name, true));
        let seated = room.ask(|tx| RoomCommand::JoinByCode { who, params, respond_to: tx }).await.unwrap();
        assert_eq!(seated.recovered, since.map(|_| true), "{name}");
        seated.seq
    }

    /// Issue 21: a message in a room nobody listens to by code is not
    /// rendered as a meeting event; a socket that comes back for it gets
    /// it rendered then, the same bytes a live listener got.
    #[tokio::test]
    async fn a_message_is_rendered_only_for_listeners_and_replayed_as_the_same_bytes() {
        let limits = Limits::default();
        let s =
            ServerState::new(ServerParts { auth: Authenticator::hs256(b"k"), limits: &limits, store: None });
        let host = principal("host", false);
        let opts = CreateOptions { guest_access: true, guest_chat: true, ..CreateOptions::default() };
        let info = s.create_room("talk".into(), RoomType::Channel, &host, Vec::new(), opts).await.unwrap();
        let room = s.room(info.id.as_str()).await.unwrap().expect("the room");
        let send = |msg: &str| {
            let (who, msg) = (Box::new(host.clone()), msg.to_owned());
            let params = Box::new(SendParams { id: None, msg, tmid: None });
            room.ask(|tx| RoomCommand::Send { who, params, respond_to: tx })
        };

        // Seated but not listening: nobody hears the room by code.
        let before = seat(&room, "Zed", None, None).await;
        let rendered = RENDERED.get();
        send("one \"1\" \\ </script>\n\u{1}").await.unwrap();
        send("two ✓ 🎉").await.unwrap();
        assert_eq!(RENDERED.get(), rendered, "rendered with no listener");

        // Ann comes back for them: rendered now, for her.
        let ann = Arc::new(Heard::default());
        seat(&room, "Ann", Some(ann.clone()), Some(before)).await;
        let missed = ann.messages(2).await;
        assert_eq!(RENDERED.get(), rendered + 2);
        assert!(missed[0].contains("\\u0001") && missed[1].contains("🎉"), "{missed:?}");

        // Live, for Ann; then Bob comes back for it and gets the same bytes.
        let at = seat(&room, "Cy", None, None).await;
        send("three").await.unwrap();
        let live = ann.messages(3).await.pop().unwrap();
        let bob = Arc::new(Heard::default());
        seat(&room, "Bob", Some(bob.clone()), Some(at)).await;
        assert_eq!(bob.messages(1).await, [live]);
    }
}

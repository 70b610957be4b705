//! A room's replay window: its latest meeting events, as their listeners
//! got them (same bytes, `seq` included), so a socket that comes back with
//! `join-room {since}` receives what it missed before anything newer.
//!
//! The window keeps an event while it is among the room's last
//! `min_events` or younger than `min_age`, and never more than
//! `max_room_bytes` per room nor, over all rooms, `max_total_bytes`
//! (one shared counter, an atomic: no lock). Whatever the bytes push out
//! is lost for replay, and a `since` from before it answers
//! `recovered: false`. Only delivered events enter it: a change whose
//! commit failed was never heard, so it is never replayed.
//!
//! What an event counts against the byte limits: its payload's length as
//! sent (the JSON its listeners got or would get), plus [`ENTRY_OVERHEAD`].
//! A chat message is kept as the message itself (the `Arc` the room's
//! recent history shares), not rendered unless someone listens (issue 21:
//! most rooms have no meeting listener, and rendering every message cost
//! ~4 % of a REST `chat.postMessage` profile); it counts as the length of
//! its `message` event computed from its fields without rendering
//! ([`wire::room::meeting_message_len`], exact), or as what the message
//! holds in memory if that is more (its struct, its `Arc`'s counts and
//! its strings' capacities: the history may let go of it while the window
//! still holds it), so the limits bound memory as before.

use super::listener::MeetingEvent;
use super::model::Message;
use super::publish::{message_payload, participant_payload, replay_status};
use super::view::{MeetingStatus, ParticipantView};
use crate::ids::{RoomId, UserId};
use crate::time::Millis;
use crate::wire;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Bytes an entry costs besides its payload (the entry and the `Arc`).
const ENTRY_OVERHEAD: usize = 64;

/// The window's limits, shared by every room of the server.
#[derive(Debug)]
pub struct ReplayLimits {
    /// `--replay-min-events`: kept whatever their age.
    pub min_events: usize,
    /// `--replay-min-age`: kept whatever their number.
    pub min_age: Duration,
    /// `--replay-max-bytes-per-room`.
    pub max_room_bytes: usize,
    /// `--replay-max-bytes`, over every room.
    pub max_total_bytes: usize,
    /// What all windows hold now, against `max_total_bytes`.
    total: AtomicUsize,
}

impl ReplayLimits {
    pub fn new(min_events: usize, min_age: Duration, max_room_bytes: usize, max_total_bytes: usize) -> Self {
        ReplayLimits { min_events, min_age, max_room_bytes, max_total_bytes, total: AtomicUsize::new(0) }
    }

    /// Bytes all rooms' windows hold now.
    pub fn total_bytes(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }
}

/// One event as its listeners heard it.
pub(super) struct Replayable {
    pub(super) seq: u64,
    /// The room's time of the event (in cluster mode the log entry's, so
    /// every node ages its window alike).
    at: Millis,
    pub(super) event: MeetingEvent,
    /// The payload's length, counted against the limits as its bytes.
    len: u32,
    payload: Kept,
}

/// An event's payload: its bytes, or for the events every join and leave
/// makes (`joined`/`left` and `room-updated`) the fields they render, or
/// for a chat message the message; rendered again by the same function
/// (`publish::participant_payload`, `publish::replay_status`,
/// `publish::message_payload`) when a socket comes back.
enum Kept {
    Bytes(Arc<RawValue>),
    Status(MeetingStatus),
    Participant(Box<SeatEvent>),
    Message(Arc<Message>),
}

/// A meeting event's payload as the room stages it for its listeners and
/// its window.
pub(super) enum Staged {
    /// Rendered already (the DDP stream carries the same JSON); `fields`
    /// is what it renders, if the window may keep that instead.
    Bytes(Arc<RawValue>, Option<Fields>),
    /// A chat message, rendered only if someone listens when it is
    /// delivered (or a socket comes back for it).
    Message(Arc<Message>),
}

impl Staged {
    /// The bytes listeners get for the event at `seq`: the same a replay
    /// gives ([`Replayable::payload`]).
    pub(super) fn live(&self, seq: u64) -> Cow<'_, RawValue> {
        match self {
            Staged::Bytes(b, _) => Cow::Borrowed(&**b),
            Staged::Message(m) => Cow::Owned(message_payload(m, seq)),
        }
    }
}

/// What a meeting event's payload renders, when the window may keep that
/// instead of the bytes (see [`Kept`]).
pub(super) enum Fields {
    /// A `room-updated` event's status.
    Status(MeetingStatus),
    /// A `joined`/`left` event's participant.
    Participant(Box<SeatEvent>),
}

/// A `joined`/`left` event's participant as its fields: ~70 B in one box
/// and one string where its JSON takes ~190 B (issue 21: one per join,
/// kept in every room's window). The room's id is the window's own,
/// given back when the event is rendered.
pub(super) struct SeatEvent {
    /// The participant id followed by the user's id (a signed-in member)
    /// or the guest's name, in one allocation; `split` is where the
    /// second begins.
    text: Box<str>,
    split: u32,
    guest: bool,
    host: bool,
    joined_at: Millis,
    left_at: Option<Millis>,
}

impl SeatEvent {
    /// `p`'s fields, if these are all it shows: an event's participant has
    /// no list name or seat token, and is either a user or a guest.
    pub(super) fn of(p: &ParticipantView) -> Option<Box<SeatEvent>> {
        if p.display_name.is_some() || p.guest_token.is_some() {
            return None;
        }
        let (guest, who) = match (&p.user, &p.guest_name) {
            (Some(u), None) => (false, u.as_str()),
            (None, Some(name)) => (true, name.as_str()),
            _ => return None,
        };
        let split = u32::try_from(p.id.len()).ok()?;
        let text = [p.id.as_str(), who].concat().into_boxed_str();
        Some(Box::new(SeatEvent {
            text,
            split,
            guest,
            host: p.host,
            joined_at: p.joined_at,
            left_at: p.left_at,
        }))
    }

    /// The participant again, in `room`.
    pub(super) fn view(&self, room: &RoomId) -> ParticipantView {
        let (id, who) = self.text.split_at(self.split as usize);
        ParticipantView {
            id: id.to_owned(),
            room: room.clone(),
            user: (!self.guest).then(|| UserId::from(who)),
            guest_name: self.guest.then(|| who.to_owned()),
            host: self.host,
            joined_at: self.joined_at,
            left_at: self.left_at,
            display_name: None,
            guest_token: None,
        }
    }
}

impl Replayable {
    fn cost(&self) -> usize {
        self.len as usize + ENTRY_OVERHEAD
    }

    /// The bytes its listeners got; `room` is the window's room.
    pub(super) fn payload(&self, room: &RoomId) -> Cow<'_, RawValue> {
        match &self.payload {
            Kept::Bytes(b) => Cow::Borrowed(&**b),
            Kept::Status(s) => Cow::Owned(replay_status(s, self.seq)),
            Kept::Participant(p) => Cow::Owned(participant_payload(&p.view(room), self.seq)),
            Kept::Message(m) => Cow::Owned(message_payload(m, self.seq)),
        }
    }
}

/// What `m` holds in memory: its struct, its `Arc`'s two counts, its
/// strings' heap.
fn held(m: &Message) -> usize {
    let cow = |c: &Option<Cow<'static, str>>| match c {
        Some(Cow::Owned(s)) => s.capacity(),
        _ => 0,
    };
    std::mem::size_of::<Message>()
        + 2 * std::mem::size_of::<usize>()
        + m.id.0.capacity()
        + m.rid.0.capacity()
        + m.msg.capacity()
        + cow(&m.t)
        + m.u.id.0.capacity()
        + m.u.username.capacity()
        + m.u.name.as_ref().map_or(0, String::capacity)
        + m.tmid.as_ref().map_or(0, String::capacity)
        + cow(&m.role)
}

pub(super) struct ReplayWindow {
    limits: Arc<ReplayLimits>,
    events: VecDeque<Replayable>,
    /// Every event with a position above this one is in `events` (if it
    /// was a meeting event at all); the ones at or below it are gone.
    floor: u64,
    bytes: usize,
}

impl ReplayWindow {
    /// An empty window of a room whose latest position is `seq`: nothing
    /// before it can be replayed (a restart lost what memory held).
    pub(super) fn new(limits: Arc<ReplayLimits>, seq: u64) -> Self {
        ReplayWindow { limits, events: VecDeque::new(), floor: seq, bytes: 0 }
    }

    /// Keeps a delivered event, then trims the window to its limits.
    pub(super) fn push(&mut self, seq: u64, at: Millis, event: MeetingEvent, staged: Staged) {
        let (len, payload) = match staged {
            Staged::Bytes(b, fields) => {
                let len = b.get().len();
                let kept = match fields {
                    Some(Fields::Status(s)) => Kept::Status(s),
                    Some(Fields::Participant(p)) => Kept::Participant(p),
                    None => Kept::Bytes(b),
                };
                (len, kept)
            }
            Staged::Message(m) => (wire::room::meeting_message_len(&m, seq).max(held(&m)), Kept::Message(m)),
        };
        let Ok(len) = u32::try_from(len) else {
            // Larger than any frame a connection takes: never replayable.
            return self.drop_all(seq);
        };
        let e = Replayable { seq, at, event, len, payload };
        let cost = e.cost();
        self.bytes += cost;
        self.limits.total.fetch_add(cost, Ordering::Relaxed);
        self.events.push_back(e);
        self.trim(at);
    }

    fn trim(&mut self, now: Millis) {
        let min_age = i64::try_from(self.limits.min_age.as_millis()).unwrap_or(i64::MAX);
        while let Some(front) = self.events.front() {
            let old =
                self.events.len() > self.limits.min_events && now.0.saturating_sub(front.at.0) > min_age;
            let over = self.bytes > self.limits.max_room_bytes
                || self.limits.total.load(Ordering::Relaxed) > self.limits.max_total_bytes;
            if !old && !over {
                break;
            }
            self.drop_front();
        }
    }

    /// Forgets every event up to `seq`: a `since` before it is not recovered.
    fn drop_all(&mut self, seq: u64) {
        while !self.events.is_empty() {
            self.drop_front();
        }
        self.floor = seq;
    }

    fn drop_front(&mut self) {
        if let Some(e) = self.events.pop_front() {
            let cost = e.cost();
            self.bytes -= cost;
            self.limits.total.fetch_sub(cost, Ordering::Relaxed);
            self.floor = e.seq;
        }
    }

    /// The events after `since`, oldest first, if the window still holds
    /// every one of them up to `upto` (the room's position when the socket
    /// took its seat); `None` if `since` is older than the window or newer
    /// than `upto` (another room's position, or one never handed out).
    pub(super) fn after(&self, since: u64, upto: u64) -> Option<impl Iterator<Item = &Replayable>> {
        if since < self.floor || since > upto {
            return None;
        }
        Some(self.events.iter().skip_while(move |e| e.seq <= since).take_while(move |e| e.seq <= upto))
    }
}

impl Drop for ReplayWindow {
    /// A retired room gives its bytes back to the server-wide budget.
    fn drop(&mut self) {
        self.limits.total.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(n: usize) -> Arc<RawValue> {
        Arc::from(RawValue::from_string(format!("\"{}\"", "x".repeat(n))).unwrap())
    }

    #[test]
    fn keeps_the_last_events_or_the_young_ones_and_forgets_the_rest() {
        let limits = Arc::new(ReplayLimits::new(3, Duration::from_secs(10), 1 << 20, 1 << 20));
        let mut w = ReplayWindow::new(limits.clone(), 5);
        assert!(w.after(4, 5).is_none(), "before the window");
        assert_eq!(w.after(5, 5).map(|i| i.count()), Some(0));
        for seq in 6..=10 {
            w.push(seq, Millis(1000), MeetingEvent::Message, Staged::Bytes(payload(10), None));
        }
        // All young: all kept.
        assert_eq!(w.after(5, 10).map(|i| i.count()), Some(5));
        // Old now: only the last three stay.
        w.push(11, Millis(100_000), MeetingEvent::Message, Staged::Bytes(payload(10), None));
        assert!(w.after(7, 11).is_none());
        let seqs: Vec<u64> = w.after(8, 11).unwrap().map(|e| e.seq).collect();
        assert_eq!(seqs, [9, 10, 11]);
        assert!(w.after(12, 11).is_none(), "a position never handed out");
        drop(w);
        assert_eq!(limits.total_bytes(), 0);
    }

    #[test]
    fn bytes_bound_each_room_and_the_server() {
        let limits = Arc::new(ReplayLimits::new(1000, Duration::from_secs(600), 1000, 1500));
        let mut a = ReplayWindow::new(limits.clone(), 0);
        let mut b = ReplayWindow::new(limits.clone(), 0);
        for seq in 1..=20 {
            a.push(seq, Millis(0), MeetingEvent::Message, Staged::Bytes(payload(100), None));
        }
        assert!(a.bytes <= 1000);
        for seq in 1..=20 {
            b.push(seq, Millis(0), MeetingEvent::Message, Staged::Bytes(payload(100), None));
        }
        assert!(limits.total_bytes() <= 1500, "{}", limits.total_bytes());
        assert!(a.after(0, 20).is_none());
    }

    /// A `room-updated` event is kept as its status and replayed as the
    /// same bytes its listeners got; it counts as those bytes.
    #[test]
    fn a_status_is_kept_as_its_fields_and_replayed_as_the_same_bytes() {
        let limits = Arc::new(ReplayLimits::new(1000, Duration::from_secs(600), 1 << 20, 1 << 20));
        let mut w = ReplayWindow::new(limits.clone(), 0);
        let status =
            MeetingStatus { locked: false, active: true, max_participants: Some(11), participant_count: 7 };
        let live: Arc<RawValue> = replay_status(&status, 1).into();
        w.push(
            1,
            Millis(0),
            MeetingEvent::RoomUpdated,
            Staged::Bytes(live.clone(), Some(Fields::Status(status))),
        );
        w.push(2, Millis(0), MeetingEvent::Message, Staged::Bytes(payload(10), None));
        let room = RoomId::from("r1");
        let got: Vec<String> = w.after(0, 2).unwrap().map(|e| e.payload(&room).get().to_owned()).collect();
        assert_eq!(got, [live.get().to_owned(), payload(10).get().to_owned()]);
        assert!(matches!(w.events[0].payload, Kept::Status(_)));
        assert_eq!(limits.total_bytes(), live.get().len() + 12 + 2 * ENTRY_OVERHEAD);
        assert!(std::mem::size_of::<Replayable>() <= 48, "{}", std::mem::size_of::<Replayable>());
    }

    /// A guest and a signed-in member, joining and leaving, with names
    /// and ids that need JSON escapes and take several UTF-8 bytes.
    fn seats() -> Vec<(MeetingEvent, ParticipantView)> {
        let guest = ParticipantView {
            id: "pAbCdEfGhIjKlMnOp".into(),
            room: RoomId::from("GENERAL\"room\"/ü"),
            user: None,
            guest_name: Some("Zoë \"the\" 🦀\\ </script>\n\u{1}".into()),
            host: false,
            joined_at: Millis(1_765_000_000_123),
            left_at: None,
            display_name: None,
            guest_token: None,
        };
        let host = ParticipantView {
            id: "qRsTuVwXyZ0123456".into(),
            user: Some(UserId::from("u-\"émile\"-🎉")),
            guest_name: None,
            host: true,
            ..guest.clone()
        };
        let left =
            |p: &ParticipantView| ParticipantView { left_at: Some(Millis(1_765_000_099_999)), ..p.clone() };
        vec![
            (MeetingEvent::ParticipantJoined, guest.clone()),
            (MeetingEvent::ParticipantJoined, host.clone()),
            (MeetingEvent::ParticipantLeft, left(&guest)),
            (MeetingEvent::ParticipantLeft, left(&host)),
        ]
    }

    /// A `joined`/`left` event is kept as its participant's fields and
    /// replayed as the same bytes its listeners got (rendered by the live
    /// path's function); it counts as those bytes.
    #[test]
    fn a_participant_is_kept_as_its_fields_and_replayed_as_the_same_bytes() {
        let limits = Arc::new(ReplayLimits::new(1000, Duration::from_secs(600), 1 << 20, 1 << 20));
        let mut w = ReplayWindow::new(limits.clone(), 0);
        let mut live = Vec::new();
        for (seq, (event, p)) in (1..).zip(seats()) {
            let bytes: Arc<RawValue> = participant_payload(&p, seq).into();
            w.push(
                seq,
                Millis(0),
                event,
                Staged::Bytes(bytes.clone(), SeatEvent::of(&p).map(Fields::Participant)),
            );
            live.push(bytes.get().to_owned());
        }
        let room = seats()[0].1.room.clone();
        let got: Vec<String> = w.after(0, 4).unwrap().map(|e| e.payload(&room).get().to_owned()).collect();
        assert_eq!(got, live);
        assert!(live[0].contains("\\u0001") && live[1].contains("🎉"), "{}", live[0]);
        assert!(w.events.iter().all(|e| matches!(e.payload, Kept::Participant(_))));
        let counted: usize = live.iter().map(|l| l.len() + ENTRY_OVERHEAD).sum();
        assert_eq!(limits.total_bytes(), counted);
        assert!(std::mem::size_of::<Replayable>() <= 48, "{}", std::mem::size_of::<Replayable>());
    }

    /// What the window holds on the heap for an event besides its entry.
    fn held(e: &Replayable) -> usize {
        match &e.payload {
            // The `Arc`'s two counts and the bytes.
            Kept::Bytes(b) => 16 + b.get().len(),
            Kept::Status(_) => 0,
            Kept::Participant(p) => std::mem::size_of::<SeatEvent>() + p.text.len(),
            Kept::Message(m) => super::held(m),
        }
    }

    /// Issue 21: the join's event is kept in well under half of its JSON
    /// (the typical guest's: a 17-character id, a short name, a room id).
    #[test]
    fn a_participant_event_is_kept_compact() {
        let limits = Arc::new(ReplayLimits::new(1000, Duration::from_secs(600), 1 << 20, 1 << 20));
        let mut w = ReplayWindow::new(limits, 0);
        let p = ParticipantView {
            id: "pAbCdEfGhIjKlMnOp".into(),
            room: RoomId::from("kXw3pQ9mZr2LtY8vB"),
            guest_name: Some("Guest 4711".into()),
            ..seats()[0].1.clone()
        };
        let bytes: Arc<RawValue> = participant_payload(&p, 7).into();
        w.push(
            7,
            Millis(0),
            MeetingEvent::ParticipantJoined,
            Staged::Bytes(bytes.clone(), SeatEvent::of(&p).map(Fields::Participant)),
        );
        let kept = held(&w.events[0]);
        assert!(kept * 2 < bytes.get().len(), "{kept} B kept for {} B of JSON", bytes.get().len());
        assert!(std::mem::size_of::<SeatEvent>() <= 48, "{}", std::mem::size_of::<SeatEvent>());
    }

    /// Chat messages as a room makes them: escapes, emoji, a thread
    /// parent, with and without a display name, at odd times.
    fn messages() -> Vec<Message> {
        use crate::ids::MessageId;
        use crate::room::UserRef;
        let rid = RoomId::from("GENERAL\"room\"/ü");
        let u = UserRef {
            id: UserId::from("u-\"émile\"-🎉"),
            username: "émile \\ </script>".into(),
            name: Some("Émile \"the\" 🦀\n\u{1}".into()),
        };
        let plain = UserRef { id: UserId::from("u1"), username: "ann".into(), name: None };
        let msg = |id: &str, text: &str, u: &UserRef, tmid: Option<&str>, ts: i64| {
            Message::user(
                MessageId::from(id),
                &rid,
                text.into(),
                u.clone(),
                tmid.map(str::to_owned),
                Millis(ts),
            )
        };
        vec![
            msg("m1", "hi", &plain, None, 1_765_000_000_123),
            msg("m\"2", "\u{0}\u{1f}\t\"quoted\" \\ / ✓ 🎉 </script>", &u, Some("m1"), 1_765_000_000_124),
            msg("m3", "", &u, None, 0),
            msg("m4", &"long é ".repeat(500), &plain, Some("p\"arent"), -1),
            msg("m5", "far", &plain, None, 253_402_300_799_999),
            msg("m6", "farther", &plain, None, 253_402_300_800_000),
            msg("m7", "before year 0", &u, None, -62_167_219_200_001),
        ]
    }

    /// A chat message is kept as the message itself and replayed as the
    /// same bytes its listeners got (the live path's function, the entry's
    /// `seq`); it counts as that JSON's length, computed without rendering
    /// it, or as what it holds in memory if that is more.
    #[test]
    fn a_message_is_kept_as_itself_and_replayed_as_the_same_bytes() {
        let limits = Arc::new(ReplayLimits::new(1000, Duration::from_secs(600), 1 << 20, 1 << 20));
        let mut w = ReplayWindow::new(limits.clone(), 0);
        let mut live = Vec::new();
        let mut counted = 0;
        for (seq, m) in [1, 9, 10, 99_999, u64::MAX - 7, 12, 13].into_iter().zip(messages()) {
            let m = Arc::new(m);
            let staged = Staged::Message(m.clone());
            let bytes = staged.live(seq).get().to_owned();
            assert_eq!(bytes, message_payload(&m, seq).get());
            assert_eq!(wire::room::meeting_message_len(&m, seq), bytes.len(), "{bytes}");
            counted += bytes.len().max(super::held(&m)) + ENTRY_OVERHEAD;
            w.push(seq, Millis(0), MeetingEvent::Message, staged);
            // The window shares the message; it holds no copy.
            assert_eq!(Arc::strong_count(&m), 2);
            live.push(bytes);
        }
        let room = RoomId::from("elsewhere");
        let got: Vec<String> =
            w.after(0, u64::MAX).unwrap().map(|e| e.payload(&room).get().to_owned()).collect();
        assert_eq!(got, live);
        assert!(
            live[1].contains("\\u0000")
                && live[1].contains("🎉")
                && live[5].contains("\"10000-")
                && live[6].contains("\"-001-"),
            "{live:?}"
        );
        assert!(w.events.iter().all(|e| matches!(e.payload, Kept::Message(_))));
        assert_eq!(limits.total_bytes(), counted);
        // Never less than it holds, so the limits bound memory.
        assert!(w.events.iter().all(|e| e.len as usize >= held(e)));
        assert!(std::mem::size_of::<Replayable>() <= 48, "{}", std::mem::size_of::<Replayable>());
    }

    /// A participant with fields an event never shows (a list name, a seat
    /// token) is not taken apart: its bytes are kept.
    #[test]
    fn a_participant_with_more_fields_keeps_its_bytes() {
        let p = seats()[0].1.clone();
        assert!(SeatEvent::of(&ParticipantView { guest_token: Some("t".into()), ..p.clone() }).is_none());
        assert!(SeatEvent::of(&ParticipantView { display_name: Some("n".into()), ..p.clone() }).is_none());
        assert!(SeatEvent::of(&ParticipantView { user: Some(UserId::from("u")), ..p }).is_none());
    }
}

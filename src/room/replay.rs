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

use super::listener::MeetingEvent;
use super::publish::replay_status;
use super::view::MeetingStatus;
use crate::time::Millis;
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

/// An event's payload: its bytes, or for a `room-updated` event (one per
/// join and leave) the status they render, rendered again the same way
/// (`publish::replay_status`) when a socket comes back.
enum Kept {
    Bytes(Arc<RawValue>),
    Status(MeetingStatus),
}

impl Replayable {
    fn cost(&self) -> usize {
        self.len as usize + ENTRY_OVERHEAD
    }

    /// The bytes its listeners got.
    pub(super) fn payload(&self) -> Cow<'_, RawValue> {
        match &self.payload {
            Kept::Bytes(b) => Cow::Borrowed(&**b),
            Kept::Status(s) => Cow::Owned(replay_status(s, self.seq)),
        }
    }
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
    /// `status` is what `payload` renders, if it is a `room-updated` event.
    pub(super) fn push(
        &mut self,
        seq: u64,
        at: Millis,
        event: MeetingEvent,
        payload: Arc<RawValue>,
        status: Option<MeetingStatus>,
    ) {
        let Ok(len) = u32::try_from(payload.get().len()) else {
            // Larger than any frame a connection takes: never replayable.
            return self.drop_all(seq);
        };
        let payload = match status {
            Some(s) => Kept::Status(s),
            None => Kept::Bytes(payload),
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
            w.push(seq, Millis(1000), MeetingEvent::Message, payload(10), None);
        }
        // All young: all kept.
        assert_eq!(w.after(5, 10).map(|i| i.count()), Some(5));
        // Old now: only the last three stay.
        w.push(11, Millis(100_000), MeetingEvent::Message, payload(10), None);
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
            a.push(seq, Millis(0), MeetingEvent::Message, payload(100), None);
        }
        assert!(a.bytes <= 1000);
        for seq in 1..=20 {
            b.push(seq, Millis(0), MeetingEvent::Message, payload(100), None);
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
        w.push(1, Millis(0), MeetingEvent::RoomUpdated, live.clone(), Some(status));
        w.push(2, Millis(0), MeetingEvent::Message, payload(10), None);
        let got: Vec<String> = w.after(0, 2).unwrap().map(|e| e.payload().get().to_owned()).collect();
        assert_eq!(got, [live.get().to_owned(), payload(10).get().to_owned()]);
        assert!(matches!(w.events[0].payload, Kept::Status(_)));
        assert_eq!(limits.total_bytes(), live.get().len() + 12 + 2 * ENTRY_OVERHEAD);
        assert!(std::mem::size_of::<Replayable>() <= 48, "{}", std::mem::size_of::<Replayable>());
    }
}

//! Server → client: the rooms' meeting events, emitted to each socket that
//! joined. Emitting never waits, and a socket lives under DDP's budgets:
//! its packets count against `--max-queued-bytes-per-conn` and
//! `--max-queued-bytes` until the kernel has taken them (or a poll has),
//! its socketioxide buffer holds `--outbound-queue` packets, and a socket
//! that breaks either, or accepts no byte for `--write-stall-timeout`, is
//! cut as a slow consumer.

use super::connect::SocketSlot;
use crate::conn::{CloseReason, ConnHandle, Tap};
use crate::outbox::PushError;
use crate::room::{MeetingEvent, RoomListener};
use serde_json::value::RawValue;
use socketioxide::{SendError, SocketError};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Every server → client event name (`protocol/socketio.md` documents each).
pub const SERVER_EVENTS: [&str; 5] = [
    name(MeetingEvent::ALL[0]),
    name(MeetingEvent::ALL[1]),
    name(MeetingEvent::ALL[2]),
    name(MeetingEvent::ALL[3]),
    name(MeetingEvent::ALL[4]),
];

/// The Socket.IO name of a meeting event.
pub(super) const fn name(e: MeetingEvent) -> &'static str {
    match e {
        MeetingEvent::ParticipantJoined => "participant-joined",
        MeetingEvent::ParticipantLeft => "participant-left",
        MeetingEvent::RoomUpdated => "room-updated",
        MeetingEvent::Message => "message",
        MeetingEvent::RoomEnded => "room-ended",
    }
}

/// A socket as the rooms it joined see it.
pub(super) struct SocketSink {
    socket: Arc<SocketSlot>,
    conn: ConnHandle,
    tap: Arc<Tap>,
    /// `--write-stall-timeout`.
    stall: Duration,
    /// Whether a write-stall watch is running for this socket.
    watching: AtomicBool,
}

impl SocketSink {
    pub(super) fn new(socket: Arc<SocketSlot>, conn: ConnHandle, tap: Arc<Tap>, stall: Duration) -> Self {
        SocketSink { socket, conn, tap, stall, watching: AtomicBool::new(false) }
    }

    /// Counts a packet of `n` bytes for the socket before it is handed to
    /// the engine; one that breaks a budget cuts the socket instead.
    pub(super) fn count(self: &Arc<Self>, n: usize) -> bool {
        if let Err(e) = self.tap.backlog.add(n) {
            self.cut(match e {
                PushError::Full => "socket.io unsent bytes over the per-connection budget",
                PushError::ServerFull => "server-wide outbound byte budget spent",
                PushError::TooLarge => "packet larger than the per-connection byte budget",
                PushError::Closed => "closed",
            });
            return false;
        }
        self.watch();
        true
    }

    /// Cuts a socket that does not keep up, with the reason DDP gives it
    /// (`slow_consumer`): its WebSocket fails at once, which ends the
    /// Engine.IO session even while the engine's writer is blocked on it,
    /// and what the engine held for it is dropped. A polling session gets a
    /// DISCONNECT packet if its buffer has room; the heartbeat reaps one
    /// that does not poll, as before.
    pub(super) fn cut(&self, why: &'static str) {
        if !self.conn.close(CloseReason::SlowConsumer) {
            return;
        }
        self.conn.count_slow_consumer(why);
        self.tap.cut();
        if let Some(s) = self.socket.get() {
            let _ = s.disconnect();
        }
    }

    /// Starts the write-stall watch unless one runs: it lives while bytes
    /// are unsent, and cuts the socket when none has left for the
    /// write-stall timeout (pongs or not, as for DDP).
    fn watch(self: &Arc<Self>) {
        if self.watching.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            let step = (me.stall / 4).max(Duration::from_millis(5));
            let mut seen = me.tap.backlog.released();
            let mut since = Instant::now();
            loop {
                // Ends with the socket, not a step later: it holds the
                // sink, and with it the socket's unsent bytes.
                tokio::select! {
                    _ = me.conn.closed() => return,
                    _ = tokio::time::sleep(step) => {}
                }
                let now = me.tap.backlog.released();
                if now != seen || me.tap.backlog.unsent() == 0 {
                    seen = now;
                    since = Instant::now();
                }
                if me.tap.backlog.unsent() == 0 {
                    me.watching.store(false, Ordering::Release);
                    // A packet counted since is watched by whoever
                    // counted it, unless it saw this watch still running.
                    if me.tap.backlog.unsent() == 0 || me.watching.swap(true, Ordering::AcqRel) {
                        return;
                    }
                } else if since.elapsed() >= me.stall {
                    me.cut("socket accepted no bytes for the write-stall timeout");
                    return;
                }
            }
        });
    }
}

/// The bytes of an event packet as the engine writes it:
/// `42["<name>",<payload>]`.
fn packet_len(name: &str, payload: &RawValue) -> usize {
    name.len() + payload.get().len() + 7
}

impl std::fmt::Debug for SocketSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SocketSink({})", self.conn.id)
    }
}

/// The rooms hold the sink as `Arc<dyn RoomListener>`; `Sinked` is the
/// `Arc` they hold, so counting can start the watch.
#[derive(Debug)]
pub(super) struct Sinked(pub(super) Arc<SocketSink>);

impl RoomListener for Sinked {
    fn emit(&self, event: MeetingEvent, payload: &RawValue) -> bool {
        let sink = &self.0;
        if sink.conn.is_closed() {
            return false;
        }
        // Before the socket joined the namespace no room knows it.
        let Some(socket) = sink.socket.get() else { return true };
        let n = packet_len(name(event), payload);
        if !sink.count(n) {
            return false;
        }
        match socket.emit(name(event), payload) {
            Ok(()) => true,
            Err(e) => {
                sink.tap.backlog.written(n);
                if let SendError::Socket(SocketError::InternalChannelFull) = e {
                    sink.cut("socket.io buffer full");
                    return false;
                }
                // Not connected (yet: an event handled in the instant
                // before socketioxide marks the socket connected, or no
                // more): the socket keeps listening until its end closes
                // the connection, and the room forgets it then.
                tracing::debug!(conn = %sink.conn.id, error = %e, "socket.io emit failed");
                !sink.conn.is_closed()
            }
        }
    }
}

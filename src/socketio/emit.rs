//! Server → client: the rooms' meeting events, emitted to each socket that
//! joined. Emitting never waits: socketioxide's per-socket buffer is
//! bounded, and a socket whose buffer is full is cut as a slow consumer.

use crate::conn::{CloseReason, ConnHandle};
use crate::room::{MeetingEvent, RoomListener};
use serde_json::value::RawValue;
use socketioxide::extract::SocketRef;
use socketioxide::{SendError, SocketError};

use std::time::Duration;
use tokio_util::sync::CancellationToken;

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
    socket: SocketRef,
    conn: ConnHandle,
    cancel: CancellationToken,
}

impl SocketSink {
    pub(super) fn new(socket: SocketRef, conn: ConnHandle, cancel: CancellationToken) -> Self {
        SocketSink { socket, conn, cancel }
    }

    /// Cuts a socket that does not keep up. Its DISCONNECT packet needs a
    /// free slot in the full buffer, so it is retried briefly; a socket
    /// that never drains is reaped by the heartbeat anyway.
    fn cut(&self) {
        if !self.conn.close(CloseReason::SlowConsumer) {
            return;
        }
        self.conn.count_slow_consumer("socket.io buffer full");
        let (socket, cancel) = (self.socket.clone(), self.cancel.clone());
        tokio::spawn(async move {
            for _ in 0..100 {
                match socket.clone().disconnect() {
                    Err(SocketError::InternalChannelFull) => {}
                    _ => return,
                }
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        });
    }
}

impl std::fmt::Debug for SocketSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SocketSink({}, {})", self.conn.id, self.socket.id)
    }
}

impl RoomListener for SocketSink {
    fn emit(&self, event: MeetingEvent, payload: &RawValue) -> bool {
        match self.socket.emit(name(event), payload) {
            Ok(()) => true,
            Err(SendError::Socket(SocketError::InternalChannelFull)) => {
                self.cut();
                false
            }
            Err(e) => {
                tracing::debug!(conn = %self.conn.id, error = %e, "socket.io emit failed");
                false
            }
        }
    }
}

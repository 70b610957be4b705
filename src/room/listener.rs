//! Doors that hear a room as named events rather than DDP streams (the
//! Socket.IO endpoint): what they hear ([`MeetingEvent`]) and how the room
//! reaches them ([`RoomListener`]). The room knows nothing of the transport.

use serde_json::value::RawValue;
use std::fmt::Debug;

/// A meeting event, as a door that joined by code hears it. The payload is
/// the JSON the room built once for every listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeetingEvent {
    /// Someone took a seat: their participant object.
    ParticipantJoined,
    /// Someone left (or their grace ran out): their participant object with `leftAt`.
    ParticipantLeft,
    /// `{isLocked, isActive, maxParticipants, participantCount}` changed.
    RoomUpdated,
    /// A chat message (system messages are not sent: the participant and
    /// room events say the same).
    Message,
    /// The host ended the room: `{roomId, endedAt}`.
    RoomEnded,
}

impl MeetingEvent {
    pub const ALL: [MeetingEvent; 5] = [
        MeetingEvent::ParticipantJoined,
        MeetingEvent::ParticipantLeft,
        MeetingEvent::RoomUpdated,
        MeetingEvent::Message,
        MeetingEvent::RoomEnded,
    ];
}

/// Where a room sends the meeting events of a connection that joined by
/// code through a non-DDP door.
pub trait RoomListener: Send + Sync + Debug {
    /// Hands `payload` to the connection without waiting. Returns false if
    /// the connection is gone or could not take it; the door then closes it
    /// as a slow consumer (its buffer is bounded) and the room forgets it.
    fn emit(&self, event: MeetingEvent, payload: &RawValue) -> bool;
}

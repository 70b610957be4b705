//! The method layer's error type and the one place where every error of
//! every layer becomes a wire code.
//!
//! The mapping is an exhaustive `match` (no `_` arm): adding a variant
//! anywhere fails to compile until it has a code, a reason and a status.
//! `tests/it/docs.rs` checks that every code here is documented in
//! `protocol/errors.md`.

use crate::auth::AuthError;
use crate::room::RoomError;
use crate::room::state::RoleKind;
use crate::wire::{ErrorCode, WireError};
use serde_json::{Map, Value};

/// Why a method call or a subscription failed.
#[derive(Debug, thiserror::Error)]
pub enum MethodError {
    #[error("unknown method {0}")]
    UnknownMethod(String),
    /// A parameter had the wrong type or shape (Meteor's `check` failure).
    #[error("match failed: {0:?}")]
    Match(MatchError),
    /// The method needs a signed-in user and the connection has none.
    #[error("not logged in")]
    InvalidUser,
    #[error("login failed: {0}")]
    Auth(#[from] AuthError),
    #[error("unrecognized login options")]
    UnrecognizedLogin,
    /// No room with that id (Rocket.Chat family).
    #[error("invalid room")]
    InvalidRoom,
    /// No room with that code (meeting family).
    #[error("room not found")]
    RoomNotFound,
    #[error("empty name")]
    InvalidName,
    #[error("unknown username {0}")]
    InvalidUsername(String),
    #[error("message longer than {0} characters")]
    MessageTooLong(usize),
    #[error(transparent)]
    Room(#[from] RoomError),
    /// A subscription the caller may not read.
    #[error("subscription not allowed")]
    SubNotAllowed,
    /// A limit refused the call; the number is `timeToReset` in ms.
    #[error("too many requests, retry in {0} ms")]
    TooManyRequests(u64),
    #[error("too many subscriptions")]
    TooManySubscriptions,
    /// The result would be larger than a connection may have unsent
    /// (`--max-queued-bytes-per-conn`); the number is that budget.
    #[error("reply larger than {0} bytes")]
    ReplyTooLarge(usize),
}

/// Details of a `Match failed` error: which field, what was expected.
#[derive(Debug, Clone)]
pub struct MatchError {
    pub field: String,
    pub expected: String,
}

impl MethodError {
    pub fn matching(field: impl Into<String>, expected: impl Into<String>) -> Self {
        MethodError::Match(MatchError { field: field.into(), expected: expected.into() })
    }

    /// Server faults are logged at `error`; everything else is the client's
    /// doing and is logged at `debug`.
    pub fn is_server_fault(&self) -> bool {
        matches!(self, MethodError::Room(RoomError::Unavailable | RoomError::Storage))
    }

    /// The Meteor.Error sent to the client. `method` goes into `details` as
    /// Rocket.Chat does, so clients can tell which call failed.
    pub fn to_wire(&self, method: &str) -> WireError {
        use ErrorCode::{Num, Str};
        use Status::{Quiet, Shown};
        let mut details = Map::new();
        if !method.is_empty() {
            details.insert("method".into(), Value::from(method));
        }
        let (code, reason, status): (ErrorCode, String, Status) = match self {
            MethodError::UnknownMethod(name) => (Num(404), format!("Method '{name}' not found"), Quiet(404)),
            MethodError::Match(m) => {
                details.insert("field".into(), Value::from(m.field.clone()));
                details.insert("expected".into(), Value::from(m.expected.clone()));
                (Num(400), format!("Match failed: {} must be {}", m.field, m.expected), Shown(400))
            }
            MethodError::InvalidUser => (Str("error-invalid-user"), "Invalid user".into(), Quiet(401)),
            MethodError::Auth(e) => (Num(403), e.reason().into(), Shown(403)),
            MethodError::UnrecognizedLogin => {
                (Num(400), "Unrecognized options for login request".into(), Shown(400))
            }
            MethodError::InvalidRoom => (Str("error-invalid-room"), "Invalid room".into(), Quiet(404)),
            MethodError::RoomNotFound => (Str("error-room-not-found"), "Room not found".into(), Shown(404)),
            MethodError::InvalidName => (Str("error-invalid-name"), "Invalid name".into(), Quiet(400)),
            MethodError::InvalidUsername(u) => {
                details.insert("username".into(), Value::from(u.clone()));
                (Str("error-invalid-username"), "Invalid username".into(), Quiet(404))
            }
            MethodError::MessageTooLong(max) => {
                details.insert("maxLength".into(), Value::from(*max));
                (
                    Str("error-message-size-exceeded"),
                    format!("Message size exceeds {max} characters"),
                    Shown(400),
                )
            }
            MethodError::SubNotAllowed => (Str("not-allowed"), "Not allowed".into(), Shown(403)),
            MethodError::TooManyRequests(ms) => too_many_requests(*ms, &mut details),
            MethodError::TooManySubscriptions => {
                (Str("too-many-subscriptions"), "Too many subscriptions".into(), Shown(429))
            }
            MethodError::ReplyTooLarge(max) => {
                details.insert("maxBytes".into(), Value::from(*max));
                (Str("error-reply-too-large"), format!("Reply exceeds {max} bytes"), Shown(413))
            }
            MethodError::Room(e) => match e {
                RoomError::NotAllowed | RoomError::NotAChannel => {
                    (Str("error-not-allowed"), "Not allowed".into(), Shown(403))
                }
                RoomError::GuestsNotAllowed => {
                    (Str("error-not-allowed"), "Guests are not allowed in this room".into(), Shown(403))
                }
                RoomError::Archived => (Str("error-room-archived"), "Room is archived".into(), Shown(400)),
                RoomError::Inactive => {
                    (Str("error-room-inactive"), "Room is no longer active".into(), Shown(400))
                }
                RoomError::Locked => (Str("error-room-locked"), "Room is locked".into(), Shown(403)),
                RoomError::CodeRequired => (Str("error-code-required"), "Code required".into(), Shown(400)),
                RoomError::CodeInvalid => (Str("error-code-invalid"), "Invalid code".into(), Shown(400)),
                RoomError::Full => (Str("error-room-full"), "Room is full".into(), Shown(400)),
                RoomError::NotInRoom => {
                    (Str("error-user-not-in-room"), "You are not in this room".into(), Quiet(403))
                }
                RoomError::LastOwner => (
                    Str("error-you-are-last-owner"),
                    "You are the last owner. Please set new owner before leaving the room.".into(),
                    Quiet(400),
                ),
                RoomError::ActionNotAllowed(action) => {
                    details.insert("action".into(), Value::from(*action));
                    (Str("error-action-not-allowed"), format!("{action} is not allowed"), Shown(403))
                }
                RoomError::InvalidSettings(s) => {
                    details.insert("setting".into(), Value::from(s.clone()));
                    (Str("error-invalid-settings"), "Invalid settings provided".into(), Quiet(400))
                }
                RoomError::InvalidSettingValue(s) => {
                    details.insert("setting".into(), Value::from(s.clone()));
                    (Str("error-invalid-settings"), format!("Invalid value for setting {s}"), Quiet(400))
                }
                RoomError::DuplicateName(n) => {
                    details.insert("channel_name".into(), Value::from(n.clone()));
                    (
                        Str("error-duplicate-channel-name"),
                        format!("A channel with name '{n}' exists"),
                        Quiet(409),
                    )
                }
                RoomError::InvalidRoomName(n) => {
                    details.insert("channel_name".into(), Value::from(n.clone()));
                    (Str("error-invalid-room-name"), format!("{n} is not a valid room name"), Quiet(400))
                }
                RoomError::TargetNotInRoom => {
                    (Str("error-user-not-in-room"), "User is not in this room".into(), Quiet(400))
                }
                RoomError::AlreadyHasRole(role) => match role {
                    RoleKind::Owner => {
                        (Str("error-user-already-owner"), "User is already an owner".into(), Quiet(400))
                    }
                    RoleKind::Moderator => (
                        Str("error-user-already-moderator"),
                        "User is already a moderator".into(),
                        Quiet(400),
                    ),
                    RoleKind::Leader => {
                        (Str("error-user-already-leader"), "User is already a leader".into(), Quiet(400))
                    }
                },
                RoomError::LacksRole(role) => match role {
                    RoleKind::Owner => {
                        (Str("error-user-not-owner"), "User is not an owner".into(), Quiet(400))
                    }
                    RoleKind::Moderator => {
                        (Str("error-user-not-moderator"), "User is not a moderator".into(), Quiet(400))
                    }
                    RoleKind::Leader => {
                        (Str("error-user-not-leader"), "User is not a leader".into(), Quiet(400))
                    }
                },
                RoomError::RemoveLastOwner => (
                    Str("error-remove-last-owner"),
                    "This is the last owner. Please set a new owner before removing this one.".into(),
                    Quiet(400),
                ),
                RoomError::CantInviteDirect => (
                    Str("error-cant-invite-for-direct-room"),
                    "Can't invite user to direct rooms".into(),
                    Quiet(400),
                ),
                RoomError::DuplicateMessage => (
                    Str("error-message-already-exists"),
                    "A message with this _id already exists".into(),
                    Quiet(409),
                ),
                RoomError::TooLarge(max) => {
                    details.insert("maxBytes".into(), Value::from(*max));
                    (Str("error-request-too-large"), format!("Request exceeds {max} bytes"), Shown(413))
                }
                RoomError::Storage | RoomError::Unavailable => {
                    (Str("error-internal"), "Internal server error".into(), Shown(500))
                }
            },
        };
        let status = match status {
            Shown(s) => {
                details.insert("statusCode".into(), Value::from(s));
                s
            }
            Quiet(s) => s,
        };
        WireError { error: code, reason, details, status }
    }
}

/// The HTTP-style status of an error: every error has one (Socket.IO acks
/// carry it as `statusCode`); DDP shows it in `details.statusCode` only
/// where it always has (`Shown`), so DDP replies stay as they were.
enum Status {
    Shown(u16),
    Quiet(u16),
}

/// Rocket.Chat's DDP rate-limiter wording and details, for every throttle.
fn too_many_requests(ms: u64, details: &mut Map<String, Value>) -> (ErrorCode, String, Status) {
    let seconds = ms.div_ceil(1000);
    details.insert("timeToReset".into(), Value::from(ms));
    details.insert("seconds".into(), Value::from(seconds));
    let reason = format!(
        "Error, too many requests. Please slow down. You must wait {seconds} seconds before trying again."
    );
    (ErrorCode::Str("too-many-requests"), reason, Status::Shown(429))
}

//! Errors of the room layer: a rule said no.

/// Every way a room operation can be refused. Mapped to wire codes only in
/// `crate::error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomError {
    #[error("room is private and caller is not a member")]
    NotAllowed,
    /// Slack's joins: the room is a private group or direct message (or one
    /// the caller may not see), which such a join never enters.
    #[error("room is not a public channel")]
    NotAChannel,
    #[error("room is archived")]
    Archived,
    #[error("room has ended")]
    Inactive,
    #[error("room is locked")]
    Locked,
    #[error("join code required")]
    CodeRequired,
    #[error("join code invalid")]
    CodeInvalid,
    #[error("room is full")]
    Full,
    #[error("caller is not a member")]
    NotInRoom,
    #[error("caller is the last owner")]
    LastOwner,
    #[error("action {0} not allowed")]
    ActionNotAllowed(&'static str),
    #[error("invalid setting {0}")]
    InvalidSettings(String),
    #[error("invalid value for setting {0}")]
    InvalidSettingValue(String),
    #[error("name {0} taken")]
    DuplicateName(String),
    #[error("invalid room name {0}")]
    InvalidRoomName(String),
    #[error("guests are not allowed in this room")]
    GuestsNotAllowed,
    #[error("target user is not a member")]
    TargetNotInRoom,
    #[error("user already has role {0:?}")]
    AlreadyHasRole(super::state::RoleKind),
    #[error("user lacks role {0:?}")]
    LacksRole(super::state::RoleKind),
    #[error("cannot remove the last owner")]
    RemoveLastOwner,
    #[error("cannot invite to a direct room")]
    CantInviteDirect,
    #[error("message id already used")]
    DuplicateMessage,
    /// Cluster mode: the command's log entry is larger than the NATS
    /// servers accept (`max_payload`, the number).
    #[error("log entry larger than {0} bytes")]
    TooLarge(usize),
    /// The change could not be made durable.
    #[error("store commit failed")]
    Storage,
    /// The actor is gone (room ended and released, or the task panicked).
    #[error("room actor unavailable")]
    Unavailable,
}

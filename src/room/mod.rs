//! Rooms: the pure rules ([`state`], `throttle`) and the typed views their
//! reads return ([`view`], shaped into documents by `wire::room`), the
//! handle everyone else holds (`handle`), the actor that owns a room's state and its
//! subscribers (`actor`: its loop and commit pipeline), what it does with
//! each command (`commands`), what it publishes (`publish`), how it keeps
//! its recent history (`recent`), and what remains of a room that ended
//! and emptied (`ended`).

mod actor;
mod commands;
mod compacted;
mod ended;
mod error;
mod handle;
mod listener;
pub mod log;
pub mod model;
mod publish;
mod recent;
mod replay;
mod replicated;
mod sink;
pub mod state;
mod throttle;
pub mod view;

pub use ended::EndedRoom;
pub use error::RoomError;
pub use handle::{
    HistoryParams, JoinParams, NotifyParams, Reply, ResumeParams, RoomCommand, RoomConfig, RoomDeps,
    RoomHandle, SendParams, SubscribeParams, Topic,
};
pub use listener::{MeetingEvent, RoomListener};
pub use model::{Member, Message, RoomRoles, RoomType, SeatToken, UserRef};
pub use replay::ReplayLimits;
pub use sink::RoomSink;
pub use state::{CreateOptions, Effect, Flag, Joined, RoleKind, RoomState, Setting, SystemKind};

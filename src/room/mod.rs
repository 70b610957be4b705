//! Rooms: the pure rules ([`state`]), the actor that owns a room's state and
//! its subscribers ([`actor`]), and the handle everyone else holds.

pub mod actor;
mod ended;
mod error;
pub mod model;
pub mod state;

pub use actor::{RoomCommand, RoomDeps, RoomHandle, SendParams, Topic};
pub use error::RoomError;
pub use model::{Member, Message, RoomRoles, RoomType, UserRef};
pub use state::{CreateOptions, Effect, Flag, Joined, RoleKind, RoomState, Setting};

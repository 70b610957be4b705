//! Method calls: one `match` on the wire name, one file per method (or per
//! family of near-identical methods). Each returns `Ok(Some(value))` for a
//! `result`, `Ok(None)` to omit it, or a [`MethodError`]; the session writes
//! the reply.

mod create_room;
mod end_room;
mod get_room;
mod join_by_code;
mod join_room;
mod leave_room;
mod load_history;
mod login;
mod params;
mod save_room_settings;
mod send_message;
mod stream_notify_room;

pub use params::Params;

use crate::error::MethodError;
use crate::ids::RoomId;
use crate::room::{RoomHandle, RoomType};
use crate::session::Session;
use serde_json::Value;

pub type MethodResult = Result<Option<Value>, MethodError>;

pub async fn dispatch(s: &mut Session, name: &str, params: Vec<Value>) -> MethodResult {
    let p = Params(params);
    match name {
        "login" => login::login(s, p).await,
        "logout" => login::logout(s).await,
        "createChannel" => create_room::call(s, p, RoomType::Channel).await,
        "createPrivateGroup" => create_room::call(s, p, RoomType::Private).await,
        "joinRoom" => join_room::call(s, p).await,
        "leaveRoom" => leave_room::call(s, p).await,
        "join-room" => join_by_code::call(s, p).await,
        "saveRoomSettings" => save_room_settings::call(s, p).await,
        "endRoom" => end_room::call(s, p).await,
        "getRoomById" => get_room::by_id(s, p).await,
        "getRoomIdByNameOrId" => get_room::id_by_name_or_id(s, p).await,
        "getRoomNameById" => get_room::name_by_id(s, p).await,
        "sendMessage" => send_message::call(s, p).await,
        "loadHistory" => load_history::call(s, p).await,
        "stream-notify-room" => stream_notify_room::call(s, p).await,
        other => Err(MethodError::UnknownMethod(other.to_owned())),
    }
}

/// The room with id `rid`, or `error-invalid-room`.
pub fn room(s: &Session, rid: &str) -> Result<RoomHandle, MethodError> {
    s.server
        .registry
        .get(&RoomId::from(rid))
        .ok_or(MethodError::InvalidRoom)
}

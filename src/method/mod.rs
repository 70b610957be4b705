//! Method calls: one `match` on the wire name, one file per method (or per
//! family of near-identical methods). Each returns `Ok(Some(value))` for a
//! `result`, `Ok(None)` to omit it, or a [`MethodError`]; the session writes
//! the reply.

mod add_users;
mod archive;
mod create_room;
mod direct_message;
mod end_room;
mod get_room;
mod join_by_code;
mod join_room;
mod leave_room;
mod load_history;
mod login;
mod mute;
mod params;
mod room_roles;
mod rooms_get;
mod save_room_settings;
mod send_message;
mod stream_notify_room;
mod subscription_flags;

pub use params::Params;

use crate::error::MethodError;
use crate::ids::RoomId;
use crate::room::{RoleKind, RoomHandle, RoomType};
use crate::session::Session;
use serde_json::Value;
use subscription_flags::Which;

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
        "rooms/get" => rooms_get::rooms(s, p).await,
        "subscriptions/get" => rooms_get::subscriptions(s, p).await,
        "createDirectMessage" => direct_message::call(s, p).await,
        "archiveRoom" => archive::call(s, p, true).await,
        "unarchiveRoom" => archive::call(s, p, false).await,
        "toggleFavorite" => subscription_flags::call(s, p, Which::Favorite).await,
        "hideRoom" => subscription_flags::call(s, p, Which::Hide).await,
        "openRoom" => subscription_flags::call(s, p, Which::Open).await,
        "addUserToRoom" => add_users::add_one(s, p).await,
        "addUsersToRoom" => add_users::add_many(s, p).await,
        "removeUserFromRoom" => add_users::remove(s, p).await,
        "addRoomOwner" => room_roles::set(s, p, RoleKind::Owner, true).await,
        "removeRoomOwner" => room_roles::set(s, p, RoleKind::Owner, false).await,
        "addRoomModerator" => room_roles::set(s, p, RoleKind::Moderator, true).await,
        "removeRoomModerator" => room_roles::set(s, p, RoleKind::Moderator, false).await,
        "addRoomLeader" => room_roles::set(s, p, RoleKind::Leader, true).await,
        "removeRoomLeader" => room_roles::set(s, p, RoleKind::Leader, false).await,
        "getRoomRoles" => room_roles::get(s, p).await,
        "muteUserInRoom" => mute::call(s, p, true).await,
        "unmuteUserInRoom" => mute::call(s, p, false).await,
        other => Err(MethodError::UnknownMethod(other.to_owned())),
    }
}

/// `[{rid, username}]`: the room and the user it names, for the methods
/// that act on another member (remove, mute, unmute).
pub fn room_and_user(s: &Session, p: &Params) -> Result<(RoomHandle, crate::room::UserRef), MethodError> {
    let o = p.obj(0, "params[0]")?;
    let rid = params::field_str(o, "rid")?.ok_or_else(|| MethodError::matching("rid", "a string"))?;
    let username =
        params::field_str(o, "username")?.ok_or_else(|| MethodError::matching("username", "a string"))?;
    let room = room(s, rid)?;
    let user = s
        .server
        .users
        .by_username(username)
        .ok_or_else(|| MethodError::InvalidUsername(username.to_owned()))?;
    Ok((room, user))
}

/// The room with id `rid`, or `error-invalid-room`.
pub fn room(s: &Session, rid: &str) -> Result<RoomHandle, MethodError> {
    s.server.registry.get(&RoomId::from(rid)).ok_or(MethodError::InvalidRoom)
}

//! Method calls, in the shape of mini-redis's `cmd/mod.rs`: the wire name is
//! parsed once into a [`Method`], which then answers everything the session
//! asks about the call (its name for metrics and errors, its rate-limit
//! class, the permission it needs) and `apply`s it. Nothing
//! after the parse compares method-name strings.
//!
//! One file per method, or per family of near-identical methods, named
//! after what it does. The methods the other doors use have typed
//! parameters and results ([`Call`]): the file's DDP `call` parses them from
//! the positional params and shapes the result as DDP's (`Ok(Some(value))`
//! for a `result`, `Ok(None)` to omit it); the Socket.IO and REST doors
//! build the same structs and shape the same results their own way. The
//! rest are DDP-only and still take [`Params`] directly.

mod archive;
mod create_room;
mod direct_message;
mod end_room;
mod join_by_code;
mod join_by_id;
mod leave_room;
mod load_history;
mod login;
mod members;
mod mute;
mod params;
mod room_lists;
mod room_lookup;
mod room_participants;
mod room_roles;
mod save_room_settings;
pub(crate) use save_room_settings::parse_setting;
mod send_message;
mod subscription_flags;
mod typing;

use params::Params;

use crate::error::MethodError;
use crate::limits::MethodClass;
use crate::permissions::Permission;
use crate::room::{RoleKind, RoomHandle, RoomType};
use crate::session::Session;
use serde_json::Value;
use subscription_flags::Which;

pub(crate) type MethodResult = Result<Option<Value>, MethodError>;

pub(crate) use create_room::{CreateRoom, JoinChannel, JoinOrCreateChannel};
pub(crate) use end_room::EndRoom;
pub(crate) use join_by_code::JoinByCode;
pub(crate) use join_by_id::JoinRoom;
pub(crate) use leave_room::LeaveRoom;
pub(crate) use load_history::LoadHistory;
pub(crate) use login::Resume;
pub(crate) use room_lookup::{GetRoomById, GetRoomIdByNameOrId};
pub(crate) use room_participants::GetRoomParticipants;
pub(crate) use save_room_settings::{SaveRoomSettings, done as settings_saved};
pub(crate) use send_message::SendMessage;

/// A method call with typed parameters, as a door builds it: the DDP door
/// parses one from a `method` frame's positional params (each method's
/// `call`), the Socket.IO and REST doors build one from their own input.
/// [`Session::call`] runs it through the DDP limits, brakes and metrics;
/// its typed `Output` is shaped by each door (`wire::*` for DDP), so no
/// door reads another door's JSON.
pub(crate) trait Call: Send + Sized {
    type Output: Send;

    /// The method it is (its limits, metrics, and the name errors carry).
    fn method(&self) -> Method;

    /// What is checked of the caller before the parameters are looked at
    /// (signed in, may create rooms…), so a refusal reads the same whether
    /// the parameters were good or not, from every door.
    fn precheck(_s: &Session, _method: Method) -> Result<(), MethodError> {
        Ok(())
    }

    /// Runs it as `s` (the caller checks again: they give the caller's
    /// identity).
    fn run(self, s: &mut Session) -> impl Future<Output = Result<Self::Output, MethodError>> + Send;
}

/// Declares [`Method`] from one table of `Variant = "wire name"` rows, so the
/// parse, the name and the list of every method cannot disagree.
macro_rules! methods {
    ($($variant:ident = $name:literal,)*) => {
        /// A method roomd knows, parsed once from its wire name
        /// (`protocol/methods.md` has a section for each).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Method {
            $($variant,)*
        }

        impl Method {
            /// Every method, in table order.
            pub const ALL: &'static [Method] = &[$(Method::$variant,)*];

            /// The method called `name` on the wire, or `UnknownMethod`
            /// (answered as Meteor does: 404, "Method '…' not found").
            pub fn parse(name: &str) -> Result<Method, MethodError> {
                match name {
                    $($name => Ok(Method::$variant),)*
                    other => Err(MethodError::UnknownMethod(other.to_owned())),
                }
            }

            /// The wire name (also the `method` label of the metrics).
            pub fn name(self) -> &'static str {
                match self {
                    $(Method::$variant => $name,)*
                }
            }
        }
    };
}

methods! {
    Login = "login",
    Logout = "logout",
    CreateChannel = "createChannel",
    CreatePrivateGroup = "createPrivateGroup",
    JoinRoom = "joinRoom",
    LeaveRoom = "leaveRoom",
    JoinByCode = "join-room",
    SaveRoomSettings = "saveRoomSettings",
    EndRoom = "endRoom",
    GetRoomById = "getRoomById",
    GetRoomIdByNameOrId = "getRoomIdByNameOrId",
    GetRoomNameById = "getRoomNameById",
    SendMessage = "sendMessage",
    LoadHistory = "loadHistory",
    LoadMissedMessages = "loadMissedMessages",
    StreamNotifyRoom = "stream-notify-room",
    RoomsGet = "rooms/get",
    SubscriptionsGet = "subscriptions/get",
    CreateDirectMessage = "createDirectMessage",
    ArchiveRoom = "archiveRoom",
    UnarchiveRoom = "unarchiveRoom",
    ToggleFavorite = "toggleFavorite",
    HideRoom = "hideRoom",
    OpenRoom = "openRoom",
    AddUserToRoom = "addUserToRoom",
    AddUsersToRoom = "addUsersToRoom",
    RemoveUserFromRoom = "removeUserFromRoom",
    AddRoomOwner = "addRoomOwner",
    RemoveRoomOwner = "removeRoomOwner",
    AddRoomModerator = "addRoomModerator",
    RemoveRoomModerator = "removeRoomModerator",
    AddRoomLeader = "addRoomLeader",
    RemoveRoomLeader = "removeRoomLeader",
    GetRoomRoles = "getRoomRoles",
    GetRoomParticipants = "getRoomParticipants",
    MuteUserInRoom = "muteUserInRoom",
    UnmuteUserInRoom = "unmuteUserInRoom",
}

impl Method {
    /// How many methods there are (metrics keep one slot per method).
    pub const COUNT: usize = Method::ALL.len();

    /// Which per-connection token bucket a call draws from.
    pub fn limit_class(self) -> MethodClass {
        match self {
            Method::SendMessage => MethodClass::Message,
            Method::JoinRoom | Method::JoinByCode => MethodClass::Join,
            _ => MethodClass::Other,
        }
    }

    /// Whether the call joins a room (and so may carry a join code): joins
    /// pass the join-code brakes and are counted as joins or rejections.
    pub fn is_join(self) -> bool {
        self.limit_class() == MethodClass::Join
    }

    /// Whether the call may create a room (the per-user creation cap).
    pub fn creates_room(self) -> bool {
        matches!(self, Method::CreateChannel | Method::CreatePrivateGroup | Method::CreateDirectMessage)
    }

    /// The permission the call needs whatever room it names, checked
    /// before any room is involved. Permissions that depend on the caller's
    /// roles in a room (edit-room, mute-user, …) are the room's own rules.
    pub fn permission(self) -> Option<Permission> {
        match self {
            Method::CreateChannel => Some(Permission::CreateC),
            Method::CreatePrivateGroup => Some(Permission::CreateP),
            _ => None,
        }
    }

    /// Runs the call as `s`.
    pub(crate) async fn apply(self, s: &mut Session, params: Vec<Value>) -> MethodResult {
        let p = Params(params);
        match self {
            Method::Login => login::login(s, p).await,
            Method::Logout => login::logout(s).await,
            Method::CreateChannel => create_room::call(s, p, RoomType::Channel).await,
            Method::CreatePrivateGroup => create_room::call(s, p, RoomType::Private).await,
            Method::JoinRoom => join_by_id::call(s, p).await,
            Method::LeaveRoom => leave_room::call(s, p).await,
            Method::JoinByCode => join_by_code::call(s, p).await,
            Method::SaveRoomSettings => save_room_settings::call(s, p).await,
            Method::EndRoom => end_room::call(s, p).await,
            Method::GetRoomById => room_lookup::by_id(s, p).await,
            Method::GetRoomIdByNameOrId => room_lookup::id_by_name_or_id(s, p).await,
            Method::GetRoomNameById => room_lookup::name_by_id(s, p).await,
            Method::SendMessage => send_message::call(s, p).await,
            Method::LoadHistory => load_history::call(s, p).await,
            Method::LoadMissedMessages => load_history::missed(s, p).await,
            Method::StreamNotifyRoom => typing::call(s, p).await,
            Method::RoomsGet => room_lists::rooms(s, p).await,
            Method::SubscriptionsGet => room_lists::subscriptions(s, p).await,
            Method::CreateDirectMessage => direct_message::call(s, p).await,
            Method::ArchiveRoom => archive::call(s, p, true).await,
            Method::UnarchiveRoom => archive::call(s, p, false).await,
            Method::ToggleFavorite => subscription_flags::call(s, p, Which::Favorite).await,
            Method::HideRoom => subscription_flags::call(s, p, Which::Hide).await,
            Method::OpenRoom => subscription_flags::call(s, p, Which::Open).await,
            Method::AddUserToRoom => members::add_one(s, p).await,
            Method::AddUsersToRoom => members::add_many(s, p).await,
            Method::RemoveUserFromRoom => members::remove(s, p).await,
            Method::AddRoomOwner => room_roles::set(s, p, RoleKind::Owner, true).await,
            Method::RemoveRoomOwner => room_roles::set(s, p, RoleKind::Owner, false).await,
            Method::AddRoomModerator => room_roles::set(s, p, RoleKind::Moderator, true).await,
            Method::RemoveRoomModerator => room_roles::set(s, p, RoleKind::Moderator, false).await,
            Method::AddRoomLeader => room_roles::set(s, p, RoleKind::Leader, true).await,
            Method::RemoveRoomLeader => room_roles::set(s, p, RoleKind::Leader, false).await,
            Method::GetRoomRoles => room_roles::get(s, p).await,
            Method::GetRoomParticipants => room_participants::call(s, p).await,
            Method::MuteUserInRoom => mute::call(s, p, true).await,
            Method::UnmuteUserInRoom => mute::call(s, p, false).await,
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `[{rid, username}]`: the room and the user it names, for the methods
/// that act on another member (remove, mute, unmute).
async fn room_and_user(s: &Session, p: &Params) -> Result<(RoomHandle, crate::room::UserRef), MethodError> {
    let o = p.obj(0, "params[0]")?;
    let rid = params::field_str(o, "rid")?.ok_or_else(|| MethodError::matching("rid", "a string"))?;
    let username =
        params::field_str(o, "username")?.ok_or_else(|| MethodError::matching("username", "a string"))?;
    let room = room(s, rid).await?;
    let user = s
        .server()
        .users
        .by_username(username)
        .ok_or_else(|| MethodError::InvalidUsername(username.to_owned()))?;
    Ok((room, user))
}

/// The room with id `rid`, or `error-invalid-room`.
async fn room(s: &Session, rid: &str) -> Result<RoomHandle, MethodError> {
    s.server().room(rid).await?.ok_or(MethodError::InvalidRoom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_parses_back_from_its_name() {
        for m in Method::ALL {
            assert_eq!(Method::parse(m.name()).ok(), Some(*m));
        }
        let mut names: Vec<_> = Method::ALL.iter().map(|m| m.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Method::COUNT, "two methods share a wire name");
        assert!(matches!(Method::parse("joinroom"), Err(MethodError::UnknownMethod(n)) if n == "joinroom"));
    }

    #[test]
    fn classes_and_permissions() {
        assert_eq!(Method::SendMessage.limit_class(), MethodClass::Message);
        assert!(Method::JoinRoom.is_join() && Method::JoinByCode.is_join());
        assert!(!Method::LeaveRoom.is_join());
        assert!(Method::CreateDirectMessage.creates_room() && !Method::JoinRoom.creates_room());
        assert_eq!(Method::CreatePrivateGroup.permission(), Some(Permission::CreateP));
        assert_eq!(Method::Login.permission(), None);
    }
}

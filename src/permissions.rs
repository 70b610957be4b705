//! Who may do what: the one permission table, following Rocket.Chat's
//! defaults. Handlers and room rules ask [`allowed`]; nothing else decides.
//!
//! The same table is in `protocol/permissions.md`.

use crate::room::RoomRoles;

/// A caller as the rules see it: global roles plus whether it is a guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub id: crate::ids::UserId,
    pub username: String,
    pub name: Option<String>,
    pub admin: bool,
    pub bot: bool,
    pub guest: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// `createChannel`.
    CreateC,
    /// `createPrivateGroup`.
    CreateP,
    /// `saveRoomSettings`.
    EditRoom,
    /// `endRoom`.
    EndRoom,
    /// `archiveRoom` / `unarchiveRoom`.
    ArchiveRoom,
    /// Join a room that has a join code without giving it.
    JoinWithoutJoinCode,
    /// Self-join a locked room.
    BypassLock,
    /// Add others to a room one is in.
    AddUserToJoinedRoom,
    /// Add others to any public channel.
    AddUserToAnyCRoom,
    /// Remove others from a room.
    RemoveUser,
    /// Grant or revoke owner.
    SetOwner,
    /// Grant or revoke moderator.
    SetModerator,
    /// Grant or revoke leader.
    SetLeader,
    /// Mute and unmute.
    MuteUser,
    /// Post in a read-only room.
    PostReadonly,
}

impl Permission {
    pub fn name(self) -> &'static str {
        match self {
            Permission::CreateC => "create-c",
            Permission::CreateP => "create-p",
            Permission::EditRoom => "edit-room",
            Permission::EndRoom => "end-room",
            Permission::ArchiveRoom => "archive-room",
            Permission::JoinWithoutJoinCode => "join-without-join-code",
            Permission::BypassLock => "bypass-room-lock",
            Permission::AddUserToJoinedRoom => "add-user-to-joined-room",
            Permission::AddUserToAnyCRoom => "add-user-to-any-c-room",
            Permission::RemoveUser => "remove-user",
            Permission::SetOwner => "set-owner",
            Permission::SetModerator => "set-moderator",
            Permission::SetLeader => "set-leader",
            Permission::MuteUser => "mute-user",
            Permission::PostReadonly => "post-readonly",
        }
    }
}

/// Whether `who`, holding `room_roles` in the room at hand (empty when not a
/// member or when the permission is not about a room), has `perm`.
pub fn allowed(perm: Permission, who: &Principal, room_roles: RoomRoles) -> bool {
    if who.guest {
        // Guests hold no permission at all; their only ways in are
        // `join-room` and leaving their own membership, checked elsewhere.
        return false;
    }
    let admin = who.admin;
    let owner = room_roles.contains(RoomRoles::OWNER);
    let moderator = room_roles.contains(RoomRoles::MODERATOR);
    match perm {
        Permission::CreateC | Permission::CreateP => true,
        Permission::EditRoom => admin || owner || moderator,
        Permission::EndRoom => admin || owner,
        Permission::ArchiveRoom => admin || owner,
        Permission::JoinWithoutJoinCode => admin || who.bot,
        Permission::BypassLock => admin || owner,
        Permission::AddUserToJoinedRoom => admin || owner || moderator,
        Permission::AddUserToAnyCRoom => admin,
        Permission::RemoveUser => admin || owner || moderator,
        Permission::SetOwner => admin || owner,
        Permission::SetModerator => admin || owner,
        Permission::SetLeader => admin || owner,
        Permission::MuteUser => admin || owner || moderator,
        Permission::PostReadonly => admin || owner || moderator,
    }
}

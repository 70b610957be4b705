//! `addRoomOwner/removeRoomOwner`, `addRoomModerator/removeRoomModerator`,
//! `addRoomLeader/removeRoomLeader` `(rid, userId)` → `true`, and
//! `getRoomRoles(rid)`.

use super::{MethodResult, Params, room};
use crate::ids::UserId;
use crate::room::{RoleKind, RoomCommand};
use crate::session::Session;
use serde_json::Value;

pub(super) async fn set(s: &mut Session, p: Params, role: RoleKind, add: bool) -> MethodResult {
    let who = s.require_user()?;
    let rid = p.str(0, "rid")?;
    let target = UserId::from(p.str(1, "userId")?);
    let room = room(s, rid).await?;
    room.ask(|tx| RoomCommand::SetRole { who: Box::new(who), target, role, add, respond_to: tx }).await?;
    Ok(Some(Value::Bool(true)))
}

pub(super) async fn get(s: &mut Session, p: Params) -> MethodResult {
    let who = s.require_user()?;
    let rid = p.str(0, "rid")?;
    let room = room(s, rid).await?;
    let roles = room.ask(|tx| RoomCommand::Roles { uid: who.id, respond_to: tx }).await?;
    Ok(Some(Value::Array(roles.iter().map(|r| crate::wire::room::role_entry(&r.view())).collect())))
}

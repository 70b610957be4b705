//! `leaveRoom(rid)`: signed-in users and guests leave their own membership.

use super::{MethodResult, Params, room};
use crate::error::MethodError;
use crate::room::RoomCommand;
use crate::session::Session;

pub(super) async fn call(s: &mut Session, p: Params) -> MethodResult {
    let uid = match (s.user(), s.guest_id()) {
        (Some(u), _) => u.id.clone(),
        (None, Some(g)) => g.clone(),
        (None, None) => return Err(MethodError::InvalidUser),
    };
    let rid = p.str(0, "rid")?;
    let room = room(s, rid)?;
    room.ask(|tx| RoomCommand::Leave { uid, respond_to: tx }).await?;
    Ok(None)
}

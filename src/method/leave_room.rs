//! `leaveRoom(rid)`: signed-in users and guests leave their own membership.
//!
//! Idempotent: what the caller asks for is "I am not a member afterwards",
//! so a caller who already is not one (a retry after a lost answer, a node
//! killed after the leave landed) succeeds without a second `ul`. The other
//! refusals (last owner, direct message) still apply to members.

use super::{MethodResult, Params, room};
use crate::error::MethodError;
use crate::room::{RoomCommand, RoomError};
use crate::session::Session;

pub(super) async fn call(s: &mut Session, p: Params) -> MethodResult {
    let uid = match (s.user(), s.guest_id()) {
        (Some(u), _) => u.id.clone(),
        (None, Some(g)) => g.clone(),
        (None, None) => return Err(MethodError::InvalidUser),
    };
    let rid = p.str(0, "rid")?;
    let room = room(s, rid)?;
    match room.ask(|tx| RoomCommand::Leave { uid, respond_to: tx }).await {
        // Decided by the room in its order, so a leave racing a join of the
        // same user is answered from the state that command saw.
        Ok(()) | Err(RoomError::NotInRoom) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

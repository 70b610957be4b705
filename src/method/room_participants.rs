//! `getRoomParticipants(rid)`: the meeting view of a room for its members,
//! guests included: a short summary and who is there now. It is how a guest,
//! who may not call `getRoomById`, learns the room's name and its people.

use super::{MethodResult, Params, room};
use crate::error::MethodError;
use crate::room::{RoomCommand, RoomError};
use crate::session::Session;

pub(super) async fn call(s: &mut Session, p: Params) -> MethodResult {
    let uid = match (s.user(), s.guest_id()) {
        (Some(u), _) => Some(u.id.clone()),
        (None, g) => g.cloned(),
    };
    let rid = p.str(0, "rid")?;
    let room = room(s, rid)?;
    // A guest that never called `join-room` is a member of no room.
    let uid = uid.ok_or(MethodError::Room(RoomError::NotAllowed))?;
    let view = room.ask(|tx| RoomCommand::Participants { uid, respond_to: tx }).await?;
    Ok(Some(view))
}

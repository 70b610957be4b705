//! `getRoomParticipants(rid)`: the meeting view of a room for its members,
//! guests included: a short summary and who is there now. It is how a guest,
//! who may not call `getRoomById`, learns the room's name and its people.

use super::{Call, Method, MethodResult, Params, room};
use crate::error::MethodError;
use crate::room::view::Participants;
use crate::room::{RoomCommand, RoomError};
use crate::session::Session;
use crate::wire;

#[derive(Debug, Clone)]
pub(crate) struct GetRoomParticipants {
    pub(crate) rid: String,
}

impl Call for GetRoomParticipants {
    type Output = Participants;

    fn method(&self) -> Method {
        Method::GetRoomParticipants
    }

    async fn run(self, s: &mut Session) -> Result<Participants, MethodError> {
        let uid = match (s.user(), s.guest_id()) {
            (Some(u), _) => Some(u.id.clone()),
            (None, g) => g.cloned(),
        };
        let room = room(s, &self.rid).await?;
        // A guest that never called `join-room` is a member of no room.
        let uid = uid.ok_or(MethodError::Room(RoomError::NotAllowed))?;
        Ok(room.ask(|tx| RoomCommand::Participants { uid, respond_to: tx }).await?)
    }
}

pub(super) async fn call(s: &mut Session, p: Params) -> MethodResult {
    let c = GetRoomParticipants { rid: p.str(0, "rid")?.to_owned() };
    Ok(Some(wire::room::participants(&c.run(s).await?)))
}

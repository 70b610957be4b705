//! `leaveRoom(rid)`: signed-in users and guests leave their own membership.
//!
//! Idempotent: what the caller asks for is "I am not a member afterwards",
//! so a caller who already is not one (a retry after a lost answer, a node
//! killed after the leave landed) succeeds without a second `ul`. The other
//! refusals (last owner, direct message) still apply to members.

use super::{Call, Method, MethodResult, Params, room};
use crate::error::MethodError;
use crate::ids::UserId;
use crate::room::{RoomCommand, RoomError};
use crate::session::Session;

#[derive(Debug, Clone)]
pub(crate) struct LeaveRoom {
    pub(crate) rid: String,
}

/// The member the caller is: its user, or its guest seat.
fn member_id(s: &Session) -> Result<UserId, MethodError> {
    match (s.user(), s.guest_id()) {
        (Some(u), _) => Ok(u.id.clone()),
        (None, Some(g)) => Ok(g.clone()),
        (None, None) => Err(MethodError::InvalidUser),
    }
}

impl Call for LeaveRoom {
    type Output = ();

    fn method(&self) -> Method {
        Method::LeaveRoom
    }

    fn precheck(s: &Session, _: Method) -> Result<(), MethodError> {
        member_id(s).map(drop)
    }

    async fn run(self, s: &mut Session) -> Result<(), MethodError> {
        let uid = member_id(s)?;
        let room = room(s, &self.rid).await?;
        match room.ask(|tx| RoomCommand::Leave { uid, respond_to: tx }).await {
            // Decided by the room in its order, so a leave racing a join of the
            // same user is answered from the state that command saw.
            Ok(()) | Err(RoomError::NotInRoom) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

pub(super) async fn call(s: &mut Session, p: Params) -> MethodResult {
    LeaveRoom::precheck(s, Method::LeaveRoom)?;
    LeaveRoom { rid: p.str(0, "rid")?.to_owned() }.run(s).await?;
    Ok(None)
}

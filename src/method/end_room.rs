//! `endRoom(rid)`: the room stops admitting anyone; members are told.

use super::{Call, Method, MethodResult, Params, room};
use crate::error::MethodError;
use crate::room::RoomCommand;
use crate::session::Session;

#[derive(Debug, Clone)]
pub(crate) struct EndRoom {
    pub(crate) rid: String,
}

impl Call for EndRoom {
    type Output = ();

    fn method(&self) -> Method {
        Method::EndRoom
    }

    fn precheck(s: &Session, _: Method) -> Result<(), MethodError> {
        s.require_user().map(drop)
    }

    async fn run(self, s: &mut Session) -> Result<(), MethodError> {
        let who = s.require_user()?;
        let room = room(s, &self.rid).await?;
        Ok(room.ask(|tx| RoomCommand::End { who: Box::new(who), respond_to: tx }).await?)
    }
}

pub(super) async fn call(s: &mut Session, p: Params) -> MethodResult {
    EndRoom::precheck(s, Method::EndRoom)?;
    EndRoom { rid: p.str(0, "rid")?.to_owned() }.run(s).await?;
    Ok(None)
}

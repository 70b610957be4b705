//! `endRoom(rid)`: the room stops admitting anyone; members are told.

use super::{MethodResult, Params, room};
use crate::room::RoomCommand;
use crate::session::Session;

pub(super) async fn call(s: &mut Session, p: Params) -> MethodResult {
    let who = s.require_user()?;
    let rid = p.str(0, "rid")?;
    let room = room(s, rid)?;
    room.ask(|tx| RoomCommand::End { who: Box::new(who), respond_to: tx }).await?;
    Ok(None)
}

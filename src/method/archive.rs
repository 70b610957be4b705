//! `archiveRoom(rid)` / `unarchiveRoom(rid)`: no `result` key on success,
//! as in Rocket.Chat.

use super::{MethodResult, Params, room};
use crate::room::RoomCommand;
use crate::session::Session;

pub(super) async fn call(s: &mut Session, p: Params, archived: bool) -> MethodResult {
    let who = s.require_user()?;
    let rid = p.str(0, "rid")?;
    let room = room(s, rid).await?;
    room.ask(|tx| RoomCommand::SetArchived { who: Box::new(who), archived, respond_to: tx }).await?;
    Ok(None)
}

//! `muteUserInRoom({rid, username})` / `unmuteUserInRoom({rid, username})`.

use super::{MethodResult, Params, room_and_user};
use crate::room::RoomCommand;
use crate::session::Session;
use serde_json::Value;

pub(super) async fn call(s: &mut Session, p: Params, muted: bool) -> MethodResult {
    let who = s.require_user()?;
    let (room, target) = room_and_user(s, &p).await?;
    room.ask(|tx| RoomCommand::SetMuted { who: Box::new(who), target: target.id, muted, respond_to: tx })
        .await?;
    Ok(Some(Value::Bool(true)))
}

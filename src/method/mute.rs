//! `muteUserInRoom({rid, username})` / `unmuteUserInRoom({rid, username})`.

use super::params::field_str;
use super::{MethodResult, Params, room};
use crate::error::MethodError;
use crate::room::RoomCommand;
use crate::session::Session;
use serde_json::Value;

pub async fn call(s: &mut Session, p: Params, muted: bool) -> MethodResult {
    let who = s.require_user()?;
    let o = p.obj(0, "params[0]")?;
    let rid = field_str(o, "rid")?.ok_or_else(|| MethodError::matching("rid", "a string"))?;
    let username = field_str(o, "username")?.ok_or_else(|| MethodError::matching("username", "a string"))?;
    let room = room(s, rid)?;
    let target = s
        .server
        .users
        .by_username(username)
        .ok_or_else(|| MethodError::InvalidUsername(username.to_owned()))?;
    room.ask(|tx| RoomCommand::SetMuted { who: Box::new(who), target: target.id, muted, respond_to: tx })
        .await?;
    Ok(Some(Value::Bool(true)))
}

//! `joinRoom(rid, joinCode?)`: a signed-in user joins a public channel.

use super::{MethodResult, Params, room};
use crate::room::{Joined, RoomCommand};
use crate::session::Session;
use serde_json::Value;

pub(super) async fn call(s: &mut Session, p: Params) -> MethodResult {
    let who = s.require_user()?;
    let rid = p.str(0, "rid")?;
    let code = p.opt_str(1, "joinCode")?.map(str::to_owned);
    let room = room(s, rid)?;
    match room.ask(|tx| RoomCommand::JoinSelf { who: Box::new(who), code, respond_to: tx }).await? {
        Joined::New(_) => Ok(Some(Value::Bool(true))),
        // Already a member: Rocket.Chat returns nothing and posts nothing.
        Joined::Existing(_) => Ok(None),
    }
}

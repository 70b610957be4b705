//! `toggleFavorite(rid, favorite=true)`, `hideRoom(rid)`, `openRoom(rid)`:
//! flags on the caller's own subscription. Each returns `1` (the number of
//! subscriptions changed), as Rocket.Chat does.

use super::{MethodResult, Params, room};
use crate::room::{Flag, RoomCommand};
use crate::session::Session;
use serde_json::Value;

pub(super) enum Which {
    Favorite,
    Hide,
    Open,
}

pub(super) async fn call(s: &mut Session, p: Params, which: Which) -> MethodResult {
    let who = s.require_user()?;
    let rid = p.str(0, "rid")?;
    let flag = match which {
        Which::Favorite => Flag::Favorite(p.opt_bool(1, "favorite")?.unwrap_or(true)),
        Which::Hide => Flag::Open(false),
        Which::Open => Flag::Open(true),
    };
    let room = room(s, rid).await?;
    room.ask(|tx| RoomCommand::SetFlag { uid: who.id, flag, respond_to: tx }).await?;
    Ok(Some(Value::from(1)))
}

//! `createDirectMessage(...usernames)`: the caller's direct-message room
//! with those users, created on first use and reused afterwards.

use super::{MethodResult, Params};
use crate::error::MethodError;
use crate::room::RoomCommand;
use crate::session::Session;
use serde_json::Value;

pub(super) async fn call(s: &mut Session, p: Params) -> MethodResult {
    let who = s.require_user()?;
    if p.0.is_empty() {
        return Err(MethodError::matching("usernames", "one or more usernames"));
    }
    let mut others = Vec::new();
    for i in 0..p.0.len() {
        let name = p.str(i, "username")?;
        let u = s
            .server()
            .users
            .by_username(name)
            .ok_or_else(|| MethodError::InvalidUsername(name.to_owned()))?;
        if u.id != who.id && !others.iter().any(|o: &crate::room::UserRef| o.id == u.id) {
            others.push(u);
        }
    }
    let room = s.server().direct_room(&who, others).await?;
    let info = room.ask(|tx| RoomCommand::Doc { respond_to: tx }).await?;
    let mut doc = crate::wire::room::room_doc(&info.view());
    if let Value::Object(o) = &mut doc {
        o.insert("rid".into(), Value::from(info.id.as_str()));
    }
    Ok(Some(doc))
}

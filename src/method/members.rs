//! `addUserToRoom({rid, username})`, `addUsersToRoom({rid, users:[…]})`,
//! `removeUserFromRoom({rid, username})`.

use super::params::field_str;
use super::{MethodResult, Params, room, room_and_user};
use crate::error::MethodError;
use crate::room::RoomCommand;
use crate::session::Session;
use serde_json::Value;

pub(super) async fn add_one(s: &mut Session, p: Params) -> MethodResult {
    s.require_user()?;
    let o = p.obj(0, "params[0]")?;
    let username = field_str(o, "username")?.ok_or_else(|| MethodError::matching("username", "a string"))?;
    add(s, o, vec![username.to_owned()]).await
}

pub(super) async fn add_many(s: &mut Session, p: Params) -> MethodResult {
    s.require_user()?;
    let o = p.obj(0, "params[0]")?;
    let users = match o.get("users") {
        Some(Value::Array(a)) if !a.is_empty() => a
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| MethodError::matching("users", "an array of usernames"))?,
        _ => return Err(MethodError::matching("users", "a non-empty array of usernames")),
    };
    add(s, o, users).await
}

async fn add(s: &mut Session, o: &serde_json::Map<String, Value>, usernames: Vec<String>) -> MethodResult {
    let who = s.require_user()?;
    let rid = field_str(o, "rid")?.ok_or_else(|| MethodError::matching("rid", "a string"))?;
    let room = room(s, rid).await?;
    // Resolve every name first: an unknown one fails the call before anyone
    // is added.
    let mut targets = Vec::with_capacity(usernames.len());
    for name in &usernames {
        let name = name.trim_start_matches('@');
        targets.push(
            s.server()
                .users
                .by_username(name)
                .ok_or_else(|| MethodError::InvalidUsername(name.to_owned()))?,
        );
    }
    for target in targets {
        let who = who.clone();
        room.ask(|tx| RoomCommand::AddMember {
            who: Box::new(who),
            target: Box::new(target),
            respond_to: tx,
        })
        .await?;
    }
    Ok(Some(Value::Bool(true)))
}

pub(super) async fn remove(s: &mut Session, p: Params) -> MethodResult {
    let who = s.require_user()?;
    let (room, target) = room_and_user(s, &p).await?;
    room.ask(|tx| RoomCommand::RemoveMember { who: Box::new(who), target: target.id, respond_to: tx })
        .await?;
    Ok(Some(Value::Bool(true)))
}

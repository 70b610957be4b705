//! `getRoomById(rid)`, `getRoomNameById(rid)`, `getRoomIdByNameOrId(x)`.

use super::{MethodResult, Params, room};
use crate::error::MethodError;
use crate::room::{RoomCommand, RoomError};
use crate::session::Session;
use serde_json::Value;

pub(super) async fn by_id(s: &mut Session, p: Params) -> MethodResult {
    let who = s.require_user()?;
    let rid = p.str(0, "rid")?;
    let room = room(s, rid)?;
    let doc = room.ask(|tx| RoomCommand::DocFor { uid: who.id, respond_to: tx }).await?;
    Ok(Some(doc))
}

pub(super) async fn name_by_id(s: &mut Session, p: Params) -> MethodResult {
    let who = s.require_user()?;
    let rid = p.str(0, "rid")?;
    let room = room(s, rid)?;
    let doc = room.ask(|tx| RoomCommand::DocFor { uid: who.id, respond_to: tx }).await?;
    Ok(Some(doc.get("name").cloned().unwrap_or(Value::Null)))
}

pub(super) async fn id_by_name_or_id(s: &mut Session, p: Params) -> MethodResult {
    let who = s.require_user()?;
    let key = p.str(0, "nameOrId")?;
    let server = s.server();
    // By name in any letter case; a room being created is waited for, not
    // reported missing.
    let handle = match server.registry.get(key) {
        Some(h) => h,
        None => server.room_by_name(key).await?.ok_or(MethodError::InvalidRoom)?,
    };
    // Only reveal the id to someone who may see the room.
    handle.ask(|tx| RoomCommand::DocFor { uid: who.id, respond_to: tx }).await.map_err(|e| match e {
        RoomError::Unavailable => MethodError::Room(e),
        _ => MethodError::Room(RoomError::NotAllowed),
    })?;
    Ok(Some(Value::from(handle.id.as_str())))
}

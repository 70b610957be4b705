//! `getRoomById(rid)`, `getRoomNameById(rid)`, `getRoomIdByNameOrId(x)`.

use super::{Call, Method, MethodResult, Params, room};
use crate::error::MethodError;
use crate::ids::RoomId;
use crate::room::view::RoomInfo;
use crate::room::{RoomCommand, RoomError};
use crate::session::Session;
use crate::wire;
use serde_json::Value;

/// `getRoomById(rid)`: the room as the caller may see it.
#[derive(Debug, Clone)]
pub(crate) struct GetRoomById {
    pub(crate) rid: String,
}

impl Call for GetRoomById {
    type Output = RoomInfo;

    fn method(&self) -> Method {
        Method::GetRoomById
    }

    fn precheck(s: &Session, _: Method) -> Result<(), MethodError> {
        s.require_user().map(drop)
    }

    async fn run(self, s: &mut Session) -> Result<RoomInfo, MethodError> {
        let who = s.require_user()?;
        let room = room(s, &self.rid).await?;
        Ok(room.ask(|tx| RoomCommand::DocFor { uid: who.id, respond_to: tx }).await?)
    }
}

pub(super) async fn by_id(s: &mut Session, p: Params) -> MethodResult {
    GetRoomById::precheck(s, Method::GetRoomById)?;
    let c = GetRoomById { rid: p.str(0, "rid")?.to_owned() };
    Ok(Some(wire::room::room_doc(&c.run(s).await?.view())))
}

pub(super) async fn name_by_id(s: &mut Session, p: Params) -> MethodResult {
    GetRoomById::precheck(s, Method::GetRoomNameById)?;
    let c = GetRoomById { rid: p.str(0, "rid")?.to_owned() };
    Ok(Some(Value::from(c.run(s).await?.name)))
}

/// `getRoomIdByNameOrId(nameOrId)`: the id of the room with that id or
/// name (any letter case), if the caller may see it.
#[derive(Debug, Clone)]
pub(crate) struct GetRoomIdByNameOrId {
    pub(crate) name_or_id: String,
}

impl Call for GetRoomIdByNameOrId {
    type Output = RoomId;

    fn method(&self) -> Method {
        Method::GetRoomIdByNameOrId
    }

    fn precheck(s: &Session, _: Method) -> Result<(), MethodError> {
        s.require_user().map(drop)
    }

    async fn run(self, s: &mut Session) -> Result<RoomId, MethodError> {
        let who = s.require_user()?;
        let key = self.name_or_id.as_str();
        let server = s.server();
        // By name in any letter case; a room being created is waited for, not
        // reported missing.
        let handle = match server.room(key).await? {
            Some(h) => h,
            None => server.room_by_name(key).await?.ok_or(MethodError::InvalidRoom)?,
        };
        // Only reveal the id to someone who may see the room.
        handle.ask(|tx| RoomCommand::DocFor { uid: who.id, respond_to: tx }).await.map_err(|e| match e {
            RoomError::Unavailable => MethodError::Room(e),
            _ => MethodError::Room(RoomError::NotAllowed),
        })?;
        Ok(handle.id.clone())
    }
}

pub(super) async fn id_by_name_or_id(s: &mut Session, p: Params) -> MethodResult {
    GetRoomIdByNameOrId::precheck(s, Method::GetRoomIdByNameOrId)?;
    let c = GetRoomIdByNameOrId { name_or_id: p.str(0, "nameOrId")?.to_owned() };
    Ok(Some(Value::from(c.run(s).await?.as_str())))
}

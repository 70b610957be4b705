//! `join-room [{code, guestName?, guestToken?, since?}]`: the meeting family's join
//! by shareable code, for signed-in users and for guests.

use super::params::field_str;
use super::{Call, Method, MethodResult, Params};
use crate::error::MethodError;
use crate::ids::{RoomCode, UserId};
use crate::permissions::Principal;
use crate::room::view::Seated;
use crate::room::{JoinParams, ResumeParams, RoomCommand};
use crate::session::{Session, user_principal};
use crate::wire;
use serde_json::{Map, Value};

/// Guest display names: 1–50 characters after trimming.
const MAX_GUEST_NAME: usize = 50;

/// `join-room`'s parameters.
#[derive(Debug, Clone)]
pub(crate) struct JoinByCode {
    pub(crate) code: String,
    pub(crate) guest_name: Option<String>,
    pub(crate) guest_token: Option<String>,
    /// The position of the last event the client heard: a listening
    /// socket gets what followed before anything newer (`recovered`).
    pub(crate) since: Option<u64>,
}

impl JoinByCode {
    /// From `{code, guestName?, guestToken?, since?}`: DDP's `params[0]`,
    /// Socket.IO's `join-room` payload.
    pub(crate) fn from_object(o: &Map<String, Value>) -> Result<Self, MethodError> {
        let code = field_str(o, "code")?.ok_or_else(|| MethodError::matching("code", "a string"))?;
        let guest_name = field_str(o, "guestName")?.map(str::to_owned);
        let guest_token = field_str(o, "guestToken")?.map(str::to_owned);
        let since = match o.get("since") {
            None | Some(Value::Null) => None,
            Some(v) => {
                Some(v.as_u64().ok_or_else(|| MethodError::matching("since", "a non-negative integer"))?)
            }
        };
        Ok(JoinByCode { code: code.to_owned(), guest_name, guest_token, since })
    }
}

impl Call for JoinByCode {
    type Output = Seated;

    fn method(&self) -> Method {
        Method::JoinByCode
    }

    async fn run(self, s: &mut Session) -> Result<Seated, MethodError> {
        join(s, self).await
    }
}

/// The DDP door.
pub(super) async fn call(s: &mut Session, p: Params) -> MethodResult {
    let c = JoinByCode::from_object(p.obj(0, "params[0]")?)?;
    Ok(Some(wire::room::seated(&join(s, c).await?)))
}

async fn join(s: &mut Session, c: JoinByCode) -> Result<Seated, MethodError> {
    let JoinByCode { code, guest_name, guest_token, since } = c;
    // Validate the name before anything else, so a bad name is reported as
    // such whatever the state of the room.
    let who = match s.user() {
        Some(u) => user_principal(u),
        None => {
            let name = super::params::display_name(
                guest_name.as_deref().unwrap_or(""),
                "guestName",
                MAX_GUEST_NAME,
            )?;
            Principal {
                id: s.guest_id().cloned().unwrap_or_else(UserId::new_guest),
                username: name.clone(),
                name: Some(name),
                admin: false,
                bot: false,
                guest: true,
            }
        }
    };
    if !RoomCode::is_well_formed(&code) {
        return Err(MethodError::RoomNotFound);
    }
    let room = s.server().room_by_code(&code).await?.ok_or(MethodError::RoomNotFound)?;
    let conn = s.conn().id;
    let listener = s.room_listener();
    if !who.guest {
        let participant = room
            .ask(|tx| RoomCommand::JoinByCode {
                who: Box::new(who),
                params: Box::new(JoinParams { conn, listener, since }),
                respond_to: tx,
            })
            .await?;
        return Ok(participant);
    }
    // The guest is recorded once the room answered, whatever it answered:
    // the call runs to completion before the connection's cleanup, which
    // then reaches this room.
    if let Some(token) = guest_token {
        let current = s.guest_id().cloned();
        let listener = listener.clone();
        let resumed = room
            .ask(|tx| RoomCommand::ResumeGuest {
                params: Box::new(ResumeParams { token, current, join: JoinParams { conn, listener, since } }),
                respond_to: tx,
            })
            .await;
        match resumed {
            Ok(Some((gid, participant))) => {
                s.record_guest(&room, Some(gid));
                return Ok(participant);
            }
            Ok(None) => {}
            Err(e) => {
                s.record_guest(&room, None);
                return Err(e.into());
            }
        }
    }
    let gid = who.id.clone();
    let joined = room
        .ask(|tx| RoomCommand::JoinByCode {
            who: Box::new(who),
            params: Box::new(JoinParams { conn, listener, since }),
            respond_to: tx,
        })
        .await;
    s.record_guest(&room, Some(gid));
    joined.map_err(MethodError::from)
}

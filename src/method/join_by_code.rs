//! `join-room [{code, guestName?, guestToken?}]`: the meeting family's join
//! by shareable code, for signed-in users and for guests.

use super::params::field_str;
use super::{MethodResult, Params};
use crate::error::MethodError;
use crate::ids::{RoomCode, UserId};
use crate::permissions::Principal;
use crate::room::RoomCommand;
use crate::session::{Session, user_principal};

/// Guest display names: 1–50 characters after trimming.
const MAX_GUEST_NAME: usize = 50;

pub async fn call(s: &mut Session, p: Params) -> MethodResult {
    let o = p.obj(0, "params[0]")?;
    let code = field_str(o, "code")?.ok_or_else(|| MethodError::matching("code", "a string"))?;
    let guest_name = field_str(o, "guestName")?;
    let guest_token = field_str(o, "guestToken")?;
    // Validate the name before anything else, so a bad name is reported as
    // such whatever the state of the room.
    let who = match &s.user {
        Some(u) => user_principal(u),
        None => {
            let name = super::params::display_name(guest_name.unwrap_or(""), "guestName", MAX_GUEST_NAME)?;
            Principal {
                id: s.guest_id.clone().unwrap_or_else(UserId::new_guest),
                username: name.clone(),
                name: Some(name),
                admin: false,
                bot: false,
                guest: true,
            }
        }
    };
    if !RoomCode::is_well_formed(code) {
        return Err(MethodError::RoomNotFound);
    }
    let room = s.server.registry.get_by_code(code).ok_or(MethodError::RoomNotFound)?;
    if who.guest {
        // Recorded before the join is sent: if the connection drops while the
        // join is in flight, the cleanup still reaches this room.
        if !s.guest_rooms.iter().any(|r| r.id == room.id) {
            s.guest_rooms.push(room.clone());
        }
        let (conn, current) = (s.conn().id, s.guest_id.clone());
        if let Some(token) = guest_token.map(str::to_owned)
            && let Some((gid, participant)) =
                room.ask(|tx| RoomCommand::ResumeGuest { token, conn, current, respond_to: tx }).await?
        {
            s.guest_id = Some(gid);
            return Ok(Some(participant));
        }
        s.guest_id = Some(who.id.clone());
    }
    let conn = s.conn().id;
    let participant =
        room.ask(|tx| RoomCommand::JoinByCode { who: Box::new(who), conn, respond_to: tx }).await?;
    Ok(Some(participant))
}

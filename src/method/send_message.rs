//! `sendMessage({_id?, rid, msg, tmid?})`.

use super::params::field_str;
use super::{MethodResult, Params, room};
use crate::error::MethodError;
use crate::ids::MessageId;
use crate::permissions::Principal;
use crate::room::{RoomCommand, SendParams};
use crate::session::Session;
use crate::wire;

pub(super) async fn call(s: &mut Session, p: Params) -> MethodResult {
    // A guest posts as the seat its `join-room` gave it; the room decides
    // whether guests may post there (`guestChat`) and names the message
    // after the seat's guest name.
    let who = match (s.user(), s.guest_id()) {
        (None, Some(g)) => Principal {
            id: g.clone(),
            username: String::new(),
            name: None,
            admin: false,
            bot: false,
            guest: true,
        },
        _ => s.require_user()?,
    };
    let o = p.obj(0, "message")?;
    let rid = field_str(o, "rid")?.ok_or_else(|| MethodError::matching("rid", "a string"))?;
    let msg = field_str(o, "msg")?.unwrap_or("");
    let id = field_str(o, "_id")?;
    let tmid = field_str(o, "tmid")?.map(str::to_owned);
    if msg.trim().is_empty() {
        return Err(MethodError::matching("msg", "a non-empty string"));
    }
    let max = s.server().room_config.max_message_len;
    if msg.chars().count() > max {
        return Err(MethodError::MessageTooLong(max));
    }
    let id = match id {
        Some(id) if id.is_empty() || id.len() > 64 => {
            return Err(MethodError::matching("_id", "a string of 1 to 64 characters"));
        }
        Some(id) => Some(MessageId::from(id)),
        None => None,
    };
    let room = room(s, rid)?;
    let params = Box::new(SendParams { id, msg: msg.to_owned(), tmid });
    let stored = room.ask(|tx| RoomCommand::Send { who: Box::new(who), params, respond_to: tx }).await?;
    Ok(Some(wire::room::message(&stored)))
}

//! `sendMessage({_id?, rid, msg, tmid?})`.

use super::params::field_str;
use super::{Call, Method, MethodResult, Params, room};
use crate::error::MethodError;
use crate::ids::MessageId;
use crate::permissions::Principal;
use crate::room::{Message, RoomCommand, SendParams};
use crate::session::Session;
use crate::wire;

/// `sendMessage`'s parameters, as the client gave them (checked when run,
/// in the order DDP always checked them).
#[derive(Debug, Clone)]
pub(crate) struct SendMessage {
    pub(crate) rid: String,
    pub(crate) msg: String,
    /// The client's id for the message (idempotent retries).
    pub(crate) id: Option<String>,
    pub(crate) tmid: Option<String>,
}

/// The sender: a signed-in user, or a guest posting as the seat its
/// `join-room` gave it (the room decides whether guests may post there,
/// `guestChat`, and names the message after the seat's guest name).
fn sender(s: &Session) -> Result<Principal, MethodError> {
    match (s.user(), s.guest_id()) {
        (None, Some(g)) => Ok(Principal {
            id: g.clone(),
            username: String::new(),
            name: None,
            admin: false,
            bot: false,
            guest: true,
        }),
        _ => s.require_user(),
    }
}

impl Call for SendMessage {
    type Output = Message;

    fn method(&self) -> Method {
        Method::SendMessage
    }

    fn precheck(s: &Session, _: Method) -> Result<(), MethodError> {
        sender(s).map(drop)
    }

    async fn run(self, s: &mut Session) -> Result<Message, MethodError> {
        let who = sender(s)?;
        let SendMessage { rid, msg, id, tmid } = self;
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
            Some(id) => Some(MessageId::from(id.as_str())),
            None => None,
        };
        let room = room(s, &rid).await?;
        let params = Box::new(SendParams { id, msg, tmid });
        Ok(room.ask(|tx| RoomCommand::Send { who: Box::new(who), params, respond_to: tx }).await?)
    }
}

/// The DDP door: `[{_id?, rid, msg, tmid?}]`.
pub(super) async fn call(s: &mut Session, p: Params) -> MethodResult {
    SendMessage::precheck(s, Method::SendMessage)?;
    let o = p.obj(0, "message")?;
    let c = SendMessage {
        rid: field_str(o, "rid")?.ok_or_else(|| MethodError::matching("rid", "a string"))?.to_owned(),
        msg: field_str(o, "msg")?.unwrap_or("").to_owned(),
        id: field_str(o, "_id")?.map(str::to_owned),
        tmid: field_str(o, "tmid")?.map(str::to_owned),
    };
    Ok(Some(wire::room::message(&c.run(s).await?)))
}

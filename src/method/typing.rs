//! The `stream-notify-room` method: typing indicators, re-emitted to the
//! room's other subscribers.
//!
//! `["<rid>/user-activity", username, ["user-typing"]|[], {}]` and the legacy
//! `["<rid>/typing", username, bool]`. A write in someone else's name is
//! ignored without error, as Rocket.Chat does.

use super::{MethodResult, Params, room};
use crate::error::MethodError;
use crate::room::{NotifyParams, RoomCommand, Topic};
use crate::session::Session;
use serde_json::Value;

pub(super) async fn call(s: &mut Session, p: Params) -> MethodResult {
    let who = s.require_user()?;
    let event = p.str(0, "eventName")?;
    let Some((rid, kind)) = event.rsplit_once('/') else {
        return Err(MethodError::matching("eventName", "\"<rid>/user-activity\" or \"<rid>/typing\""));
    };
    let topic = match kind {
        "user-activity" => {
            if !matches!(p.get(2), Some(Value::Array(a)) if a.iter().all(Value::is_string)) {
                return Err(MethodError::matching("activities", "an array of strings"));
            }
            Topic::UserActivity
        }
        "typing" => {
            p.opt_bool(2, "typing")?;
            Topic::Typing
        }
        _ => {
            return Err(MethodError::matching("eventName", "\"<rid>/user-activity\" or \"<rid>/typing\""));
        }
    };
    let username = p.str(1, "username")?;
    if username != who.username {
        return Ok(None);
    }
    let room = room(s, rid).await?;
    let args = Value::Array(p.0[1..].to_vec());
    room.tell(RoomCommand::Notify(Box::new(NotifyParams {
        from: s.conn().id,
        uid: who.id,
        topic,
        event: event.to_owned(),
        args,
    })))
    .await;
    Ok(None)
}

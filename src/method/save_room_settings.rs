//! `saveRoomSettings(rid, setting, value)` and
//! `saveRoomSettings(rid, {setting: value, …})`.

use super::params::loose_bool;
use super::{MethodResult, Params, room};
use crate::error::MethodError;
use crate::room::{RoomCommand, RoomError, RoomType, Setting};
use crate::session::Session;
use serde_json::{Value, json};

pub(super) async fn call(s: &mut Session, p: Params) -> MethodResult {
    let who = s.require_user()?;
    let rid = p.str(0, "rid")?;
    let pairs: Vec<(String, Value)> = match p.get(1) {
        Some(Value::String(k)) => vec![(k.clone(), p.get(2).cloned().unwrap_or(Value::Null))],
        Some(Value::Object(o)) => o.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        _ => {
            return Err(MethodError::matching("settings", "a setting name or an object of settings"));
        }
    };
    if pairs.is_empty() {
        return Err(RoomError::InvalidSettings(String::new()).into());
    }
    let settings = pairs.into_iter().map(|(k, v)| parse_setting(&k, &v)).collect::<Result<Vec<_>, _>>()?;
    let room = room(s, rid)?;
    room.ask(|tx| RoomCommand::Settings { who: Box::new(who), settings, respond_to: tx }).await?;
    Ok(Some(json!({"result": true, "rid": rid})))
}

/// One `saveRoomSettings` pair as a [`Setting`] (also how cluster mode reads
/// settings back from a room's log).
pub(crate) fn parse_setting(key: &str, v: &Value) -> Result<Setting, RoomError> {
    let bad = || RoomError::InvalidSettingValue(key.to_owned());
    let string = || v.as_str().map(str::to_owned).ok_or_else(bad);
    let boolean = || loose_bool(v).ok_or_else(bad);
    Ok(match key {
        "roomName" => Setting::RoomName(string()?),
        "roomTopic" => Setting::RoomTopic(string()?),
        "roomDescription" => Setting::RoomDescription(string()?),
        "roomAnnouncement" => Setting::RoomAnnouncement(string()?),
        "readOnly" => Setting::ReadOnly(boolean()?),
        "joinCode" => Setting::JoinCode(string()?),
        "locked" => Setting::Locked(boolean()?),
        "guestAccess" => Setting::GuestAccess(boolean()?),
        "guestChat" => Setting::GuestChat(boolean()?),
        "systemMessages" => Setting::SystemMessages(boolean()?),
        "default" => Setting::Default(boolean()?),
        "favorite" => match v {
            // Rocket.Chat sends `{favorite, defaultValue}`.
            Value::Object(o) => Setting::Favorite(o.get("favorite").and_then(loose_bool).ok_or_else(bad)?),
            _ => Setting::Favorite(boolean()?),
        },
        "maxParticipants" => match v {
            Value::Null => Setting::MaxParticipants(None),
            _ => match v.as_u64() {
                Some(n) if n >= 1 && n <= u64::from(u32::MAX) => Setting::MaxParticipants(Some(n as u32)),
                _ => return Err(bad()),
            },
        },
        "roomType" => match v.as_str() {
            Some("c") => Setting::RoomType(RoomType::Channel),
            Some("p") => Setting::RoomType(RoomType::Private),
            _ => return Err(bad()),
        },
        other => return Err(RoomError::InvalidSettings(other.to_owned())),
    })
}

//! `saveRoomSettings(rid, setting, value)` and
//! `saveRoomSettings(rid, {setting: value, …})`.

use super::params::loose_bool;
use super::{Call, Method, MethodResult, Params, room};
use crate::error::MethodError;
use crate::room::{RoomCommand, RoomError, RoomType, Setting};
use crate::session::Session;
use serde_json::{Value, json};

/// `saveRoomSettings`' parameters: the room and its new settings, all
/// applied or none.
#[derive(Debug, Clone)]
pub(crate) struct SaveRoomSettings {
    pub(crate) rid: String,
    pub(crate) settings: Vec<Setting>,
}

impl SaveRoomSettings {
    /// From `(setting, value)` pairs, as every door names them.
    pub(crate) fn from_pairs(rid: String, pairs: &[(&str, &Value)]) -> Result<Self, MethodError> {
        if pairs.is_empty() {
            return Err(RoomError::InvalidSettings(String::new()).into());
        }
        let settings = pairs.iter().map(|(k, v)| parse_setting(k, v)).collect::<Result<Vec<_>, _>>()?;
        Ok(SaveRoomSettings { rid, settings })
    }
}

impl Call for SaveRoomSettings {
    type Output = ();

    fn method(&self) -> Method {
        Method::SaveRoomSettings
    }

    fn precheck(s: &Session, _: Method) -> Result<(), MethodError> {
        s.require_user().map(drop)
    }

    async fn run(self, s: &mut Session) -> Result<(), MethodError> {
        let who = s.require_user()?;
        let room = room(s, &self.rid).await?;
        let settings = self.settings;
        Ok(room.ask(|tx| RoomCommand::Settings { who: Box::new(who), settings, respond_to: tx }).await?)
    }
}

/// The DDP door.
pub(super) async fn call(s: &mut Session, p: Params) -> MethodResult {
    SaveRoomSettings::precheck(s, Method::SaveRoomSettings)?;
    let rid = p.str(0, "rid")?;
    let pairs: Vec<(&str, &Value)> = match p.get(1) {
        Some(Value::String(k)) => vec![(k.as_str(), p.get(2).unwrap_or(&Value::Null))],
        Some(Value::Object(o)) => o.iter().map(|(k, v)| (k.as_str(), v)).collect(),
        _ => {
            return Err(MethodError::matching("settings", "a setting name or an object of settings"));
        }
    };
    let c = SaveRoomSettings::from_pairs(rid.to_owned(), &pairs)?;
    c.run(s).await?;
    Ok(Some(done(rid)))
}

/// What a settings change answers (DDP, and Socket.IO's acknowledgement).
pub(crate) fn done(rid: &str) -> Value {
    json!({"result": true, "rid": rid})
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

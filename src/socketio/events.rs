//! Client → server events. Each is acknowledged, and each is a thin
//! adapter: its payload becomes the parameters of one DDP method, run
//! through the socket's session exactly as a DDP call would be.

use super::connect::ConnRef;
use crate::error::MethodError;
use crate::method::{
    CreateRoom, EndRoom, GetRoomParticipants, JoinByCode, LeaveRoom, Method, SaveRoomSettings, SendMessage,
    settings_saved,
};
use crate::room::RoomType;
use crate::session::Session;
use crate::wire;
use serde_json::{Map, Value, json};
use socketioxide::extract::{AckSender, Event, SocketRef, TryData};
use std::sync::Mutex;

/// Every client → server event name (`protocol/socketio.md` documents each).
pub const CLIENT_EVENTS: [&str; 9] = [
    "join-room",
    "leave-room",
    "get-participants",
    "send-message",
    "create-room",
    "lock-room",
    "unlock-room",
    "set-max-participants",
    "end-room",
];

/// One handler takes every event of the socket: socketioxide keeps each
/// socket's handlers in a map of its own, and nine closures boxed per
/// socket held ~800 B of every idle socket (BENCHMARKS.md, issue 21).
pub(super) fn register(s: &SocketRef) {
    s.on_fallback(on_event);
}

/// An event that is not one of [`CLIENT_EVENTS`] is dropped unanswered, as
/// socketioxide drops an event no handler is registered for.
async fn on_event(s: SocketRef, Event(name): Event, TryData(data): TryData<Value>, ack: AckSender) {
    let Some(event) = CLIENT_EVENTS.into_iter().find(|e| *e == name) else { return };
    handle(event, s, data.ok(), ack).await
}

/// Runs one event and acknowledges it: the method's result (or
/// `{"ok": true}` when it has none), or `{"error": {…}}`.
async fn handle(event: &'static str, s: SocketRef, data: Option<Value>, ack: AckSender) {
    let Some(ConnRef(me)) = s.extensions.get::<ConnRef>() else { return };
    // It may run before `on_connect` has: the rooms' events need the socket.
    me.socket.fill(&s);
    let current = me.room.lock().map(|r| r.clone()).unwrap_or_default();
    let reply = match to_call(event, data.unwrap_or(Value::Null), current.as_deref()) {
        Err(e) => wire::socketio_error(&e.to_wire("")),
        Ok(call) => {
            let method = call.method();
            let r = match me.session.lock().await.as_mut() {
                Some(session) => run(session, call, &me.room).await,
                // The socket has ended; nobody is left to answer.
                None => return,
            };
            r.unwrap_or_else(|e| wire::socketio_error(&e.to_wire(method.name())))
        }
    };
    // The ack counts against the socket's byte budgets like an event.
    let n = reply.to_string().len() + 8;
    if !me.sink.count(n) {
        return;
    }
    if let Err(e) = ack.send(&reply) {
        me.tap.backlog.written(n);
        tracing::debug!(conn = %me.conn.id, event, error = %e, "socket.io ack not sent");
    }
}

/// The method call an event stands for, its parameters built from the
/// event's payload. A parameter the payload gets wrong is kept as the
/// call's error: the session answers it where DDP answers a bad parameter
/// (after the limits and the caller checks), so both doors refuse alike.
#[derive(Debug)]
enum EventCall {
    JoinByCode(Result<JoinByCode, MethodError>),
    Leave(LeaveRoom),
    Participants(GetRoomParticipants),
    Send(Result<SendMessage, MethodError>),
    Create(Result<CreateRoom, MethodError>),
    /// Lock, unlock, capacity: the room named, and its settings.
    Settings(String, Result<SaveRoomSettings, MethodError>),
    End(EndRoom),
}

impl EventCall {
    fn method(&self) -> Method {
        match self {
            EventCall::JoinByCode(_) => Method::JoinByCode,
            EventCall::Leave(_) => Method::LeaveRoom,
            EventCall::Participants(_) => Method::GetRoomParticipants,
            EventCall::Send(_) => Method::SendMessage,
            EventCall::Create(_) => Method::CreatePrivateGroup,
            EventCall::Settings(..) => Method::SaveRoomSettings,
            EventCall::End(_) => Method::EndRoom,
        }
    }
}

/// Runs `call` and shapes its answer as the event's acknowledgement. Keeps
/// the room that later events without a `roomId` act on: the last one
/// joined or created; none after leaving it.
async fn run(s: &mut Session, call: EventCall, slot: &Mutex<Option<String>>) -> Result<Value, MethodError> {
    let remember = |rid: Option<&str>| {
        if let Ok(mut slot) = slot.lock() {
            *slot = rid.map(str::to_owned);
        }
    };
    let ok = || json!({ "ok": true });
    Ok(match call {
        EventCall::JoinByCode(c) => {
            let seated = s.call_parsed(Method::JoinByCode, c).await?;
            remember(Some(seated.participant.room.as_str()));
            wire::room::seated(&seated)
        }
        EventCall::Leave(c) => {
            let rid = c.rid.clone();
            s.call(c).await?;
            if slot.lock().is_ok_and(|r| r.as_deref() == Some(rid.as_str())) {
                remember(None);
            }
            ok()
        }
        EventCall::Participants(c) => wire::room::participants(&s.call(c).await?),
        EventCall::Send(c) => wire::room::message(&s.call_parsed(Method::SendMessage, c).await?),
        EventCall::Create(c) => {
            let created = s.call_parsed(Method::CreatePrivateGroup, c).await?;
            remember(Some(created.id.as_str()));
            wire::room::created_room(&created)
        }
        EventCall::Settings(rid, c) => {
            s.call_parsed(Method::SaveRoomSettings, c).await?;
            settings_saved(&rid)
        }
        EventCall::End(c) => {
            s.call(c).await?;
            ok()
        }
    })
}

/// A string field of the payload, named `field` in a refusal.
fn text(o: &Map<String, Value>, key: &str, field: &str) -> Result<Option<String>, MethodError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(MethodError::matching(field, "a string")),
    }
}

/// The call an event stands for. `current` is the room the socket last
/// joined, for events that name no `roomId`.
fn to_call(event: &str, data: Value, current: Option<&str>) -> Result<EventCall, MethodError> {
    let o = match data {
        Value::Object(o) => o,
        Value::Null => Map::new(),
        _ => return Err(MethodError::matching("payload", "an object")),
    };
    let rid = || -> Result<String, MethodError> {
        match o.get("roomId") {
            Some(Value::String(r)) => Ok(r.clone()),
            None | Some(Value::Null) => current
                .map(str::to_owned)
                .ok_or_else(|| MethodError::matching("roomId", "a string (or join a room first)")),
            Some(_) => Err(MethodError::matching("roomId", "a string")),
        }
    };
    let settings = |key: &str, v: &Value| -> Result<EventCall, MethodError> {
        let rid = rid()?;
        let c = SaveRoomSettings::from_pairs(rid.clone(), &[(key, v)]);
        Ok(EventCall::Settings(rid, c))
    };
    Ok(match event {
        "join-room" => EventCall::JoinByCode(JoinByCode::from_object(&o)),
        "leave-room" => EventCall::Leave(LeaveRoom { rid: rid()? }),
        "get-participants" => EventCall::Participants(GetRoomParticipants { rid: rid()? }),
        "send-message" => {
            let rid = rid()?;
            EventCall::Send((|| {
                Ok(SendMessage {
                    rid,
                    msg: text(&o, "msg", "msg")?.unwrap_or_default(),
                    id: text(&o, "id", "_id")?,
                    tmid: None,
                })
            })())
        }
        "create-room" => {
            let name = match o.get("name") {
                None | Some(Value::Null) => Value::from(format!("meeting-{}", crate::ids::secret(10))),
                Some(n) => n.clone(),
            };
            let mut extra = Map::new();
            for key in ["maxParticipants", "guestAccess", "guestChat"] {
                if let Some(v) = o.get(key) {
                    extra.insert(key.into(), v.clone());
                }
            }
            // A meeting's guests take part in its chat unless told otherwise.
            extra.entry("guestChat").or_insert(Value::Bool(true));
            EventCall::Create(CreateRoom::from_fields(
                RoomType::Private,
                Some(&name),
                None,
                None,
                None,
                Some(&extra),
            ))
        }
        "lock-room" => settings("locked", &Value::Bool(true))?,
        "unlock-room" => settings("locked", &Value::Bool(false))?,
        "set-max-participants" => {
            settings("maxParticipants", o.get("maxParticipants").unwrap_or(&Value::Null))?
        }
        "end-room" => EventCall::End(EndRoom { rid: rid()? }),
        // Only the names above are registered.
        other => return Err(MethodError::UnknownMethod(other.to_owned())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room::Setting;

    #[test]
    fn every_event_maps_to_a_method() {
        for e in CLIENT_EVENTS {
            let data = json!({ "roomId": "r1", "code": "abc-def-ghi", "msg": "hi", "maxParticipants": 3 });
            let call = to_call(e, data, None).unwrap_or_else(|err| panic!("{e}: {err:?}"));
            // Each payload builds its call's parameters, none left to fail.
            let built = match &call {
                EventCall::JoinByCode(c) => c.is_ok(),
                EventCall::Send(c) => c.is_ok(),
                EventCall::Create(c) => c.is_ok(),
                EventCall::Settings(_, c) => c.is_ok(),
                EventCall::Leave(_) | EventCall::Participants(_) | EventCall::End(_) => true,
            };
            assert!(built, "{e}: {call:?}");
        }
        let EventCall::Send(Ok(m)) =
            to_call("send-message", json!({"msg": "hi", "id": "m1"}), Some("r1")).unwrap()
        else {
            panic!("send-message sends");
        };
        assert_eq!((m.rid.as_str(), m.msg.as_str(), m.id.as_deref()), ("r1", "hi", Some("m1")));
        let EventCall::Send(Err(e)) = to_call("send-message", json!({"id": 5}), Some("r1")).unwrap() else {
            panic!("a bad id is the call's error");
        };
        assert!(matches!(e, MethodError::Match(ref m) if m.field == "_id"), "{e:?}");
    }

    #[test]
    fn room_defaults_to_the_joined_one() {
        let EventCall::Settings(rid, Ok(c)) = to_call("lock-room", Value::Null, Some("r9")).unwrap() else {
            panic!("lock-room is a settings change");
        };
        assert_eq!((rid.as_str(), c.rid.as_str(), c.settings), ("r9", "r9", vec![Setting::Locked(true)]));
        let e = to_call("leave-room", json!({}), None).unwrap_err();
        assert!(matches!(e, MethodError::Match(ref m) if m.field == "roomId"), "{e:?}");
        assert!(to_call("end-room", json!({"roomId": 5}), Some("r9")).is_err());
        assert!(to_call("join-room", json!("abc"), None).is_err());
    }
}

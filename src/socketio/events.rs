//! Client → server events. Each is acknowledged, and each is a thin
//! adapter: its payload becomes the parameters of one DDP method, run
//! through the socket's session exactly as a DDP call would be.

use super::connect::ConnRef;
use crate::error::MethodError;
use crate::method::Method;
use crate::wire;
use serde_json::{Map, Value, json};
use socketioxide::extract::{AckSender, SocketRef, TryData};

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

pub(super) fn register(s: &SocketRef) {
    for event in CLIENT_EVENTS {
        s.on(event, move |s: SocketRef, TryData(data): TryData<Value>, ack: AckSender| {
            handle(event, s, data.ok(), ack)
        });
    }
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
        Ok((method, params)) => {
            let rid = params.first().and_then(Value::as_str).map(str::to_owned);
            let r = match me.session.lock().await.as_mut() {
                Some(session) => session.call(method, params).await,
                // The socket has ended; nobody is left to answer.
                None => return,
            };
            match r {
                Ok(v) => {
                    let v = v.unwrap_or_else(|| json!({ "ok": true }));
                    remember_room(&me.room, method, rid, &v);
                    v
                }
                Err(e) => wire::socketio_error(&e.to_wire(method.name())),
            }
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

/// Keeps the room that later events without a `roomId` act on: the last one
/// joined or created; none after leaving it.
fn remember_room(slot: &std::sync::Mutex<Option<String>>, method: Method, rid: Option<String>, v: &Value) {
    let Ok(mut slot) = slot.lock() else { return };
    match method {
        Method::JoinByCode => *slot = v.get("roomId").and_then(Value::as_str).map(str::to_owned),
        Method::CreatePrivateGroup => *slot = v.get("_id").and_then(Value::as_str).map(str::to_owned),
        Method::LeaveRoom if *slot == rid => *slot = None,
        _ => {}
    }
}

/// The method and DDP parameters an event stands for. `current` is the
/// room the socket last joined, for events that name no `roomId`.
fn to_call(event: &str, data: Value, current: Option<&str>) -> Result<(Method, Vec<Value>), MethodError> {
    let o = match data {
        Value::Object(o) => o,
        Value::Null => Map::new(),
        _ => return Err(MethodError::matching("payload", "an object")),
    };
    let rid = || -> Result<Value, MethodError> {
        match o.get("roomId") {
            Some(Value::String(r)) => Ok(Value::from(r.as_str())),
            None | Some(Value::Null) => current
                .map(Value::from)
                .ok_or_else(|| MethodError::matching("roomId", "a string (or join a room first)")),
            Some(_) => Err(MethodError::matching("roomId", "a string")),
        }
    };
    Ok(match event {
        "join-room" => (Method::JoinByCode, vec![Value::Object(o.clone())]),
        "leave-room" => (Method::LeaveRoom, vec![rid()?]),
        "get-participants" => (Method::GetRoomParticipants, vec![rid()?]),
        "send-message" => {
            let mut m = Map::new();
            m.insert("rid".into(), rid()?);
            m.insert("msg".into(), o.get("msg").cloned().unwrap_or(Value::Null));
            if let Some(id) = o.get("id") {
                m.insert("_id".into(), id.clone());
            }
            (Method::SendMessage, vec![Value::Object(m)])
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
            (Method::CreatePrivateGroup, vec![name, json!([]), json!(false), json!({}), Value::Object(extra)])
        }
        "lock-room" => (Method::SaveRoomSettings, vec![rid()?, json!({ "locked": true })]),
        "unlock-room" => (Method::SaveRoomSettings, vec![rid()?, json!({ "locked": false })]),
        "set-max-participants" => {
            let n = o.get("maxParticipants").cloned().unwrap_or(Value::Null);
            (Method::SaveRoomSettings, vec![rid()?, json!({ "maxParticipants": n })])
        }
        "end-room" => (Method::EndRoom, vec![rid()?]),
        // Only the names above are registered.
        other => return Err(MethodError::UnknownMethod(other.to_owned())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_maps_to_a_method() {
        for e in CLIENT_EVENTS {
            let data = json!({ "roomId": "r1", "code": "abc-def-ghi", "msg": "hi", "maxParticipants": 3 });
            assert!(to_call(e, data, None).is_ok(), "{e}");
        }
    }

    #[test]
    fn room_defaults_to_the_joined_one() {
        let (m, p) = to_call("lock-room", Value::Null, Some("r9")).unwrap();
        assert_eq!((m, p), (Method::SaveRoomSettings, vec![json!("r9"), json!({"locked": true})]));
        let e = to_call("leave-room", json!({}), None).unwrap_err();
        assert!(matches!(e, MethodError::Match(ref m) if m.field == "roomId"), "{e:?}");
        assert!(to_call("end-room", json!({"roomId": 5}), Some("r9")).is_err());
        assert!(to_call("join-room", json!("abc"), None).is_err());
    }
}

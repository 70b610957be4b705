//! DDP frames: the only module that parses inbound JSON frames or knows the
//! outbound frame shapes. Everything else deals in typed values.
//!
//! Shapes follow Meteor's DDP spec and the server's actual behaviour (what
//! real client libraries depend on), not just the written spec: e.g. `result`
//! omits the key when a method returns nothing, stream events use the literal
//! document id `"id"`.

use serde::Serialize;
use serde_json::{Map, Value, json};
use tokio_tungstenite::tungstenite::Utf8Bytes;

pub mod room;

/// One inbound frame after validation.
#[derive(Debug)]
pub enum ClientFrame {
    Connect { version: Option<String>, support: Vec<String> },
    Ping { id: Option<Value> },
    Pong,
    Method { id: String, method: String, params: Vec<Value> },
    Sub { id: String, name: String, params: Vec<Value> },
    Unsub { id: String },
}

/// Why an inbound frame could not be turned into a [`ClientFrame`]. Each maps
/// to a DDP `{"msg":"error"}` frame; none of them ends the connection.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("Parse error")]
    Parse,
    /// Not valid JSON, but the start of a method call whose `id` could be
    /// read: answered as that call's `result`, so the caller's call ends.
    #[error("Parse error")]
    UnparsableMethod { id: String },
    #[error("Bad request")]
    BadRequest(Value),
    #[error("Malformed method invocation")]
    MalformedMethod(Value),
    #[error("Malformed subscription")]
    MalformedSub(Value),
}

impl FrameError {
    /// The `{"msg":"error"}` frame for this failure.
    pub fn to_frame(&self) -> Utf8Bytes {
        let reason = self.to_string();
        match self {
            FrameError::Parse | FrameError::UnparsableMethod { .. } => {
                to_frame(&json!({"msg": "error", "reason": reason}))
            }
            FrameError::BadRequest(v) | FrameError::MalformedMethod(v) | FrameError::MalformedSub(v) => {
                error_frame(&reason, v)
            }
        }
    }
}

/// Parses one text frame. Never panics: serde_json bounds nesting depth, and
/// every shape check is explicit.
pub fn parse_client_frame(text: &str) -> Result<ClientFrame, FrameError> {
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        // The slow paths run only for frames that failed: valid frames pay
        // nothing for them.
        Err(_) => match replace_lone_surrogates(text).and_then(|t| serde_json::from_str(&t).ok()) {
            Some(v) => v,
            None => {
                return Err(match recover_method_id(text) {
                    Some(id) => FrameError::UnparsableMethod { id },
                    None => FrameError::Parse,
                });
            }
        },
    };
    let Value::Object(mut obj) = value else {
        return Err(FrameError::BadRequest(value));
    };
    let msg = obj.get("msg").and_then(Value::as_str).unwrap_or("");
    match msg {
        "connect" => {
            let version = obj.get("version").and_then(Value::as_str).map(str::to_owned);
            let support = obj
                .get("support")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                .unwrap_or_default();
            Ok(ClientFrame::Connect { version, support })
        }
        "ping" => Ok(ClientFrame::Ping { id: obj.remove("id") }),
        "pong" => Ok(ClientFrame::Pong),
        "method" => {
            let ok = matches!(obj.get("id"), Some(Value::String(_)))
                && matches!(obj.get("method"), Some(Value::String(_)))
                && matches!(obj.get("params"), None | Some(Value::Array(_)));
            if !ok {
                return Err(FrameError::MalformedMethod(Value::Object(obj)));
            }
            let id = take_string(&mut obj, "id");
            let method = take_string(&mut obj, "method");
            let params = take_array(&mut obj, "params");
            Ok(ClientFrame::Method { id, method, params })
        }
        "sub" => {
            let ok = matches!(obj.get("id"), Some(Value::String(_)))
                && matches!(obj.get("name"), Some(Value::String(_)))
                && matches!(obj.get("params"), None | Some(Value::Array(_)));
            if !ok {
                return Err(FrameError::MalformedSub(Value::Object(obj)));
            }
            let id = take_string(&mut obj, "id");
            let name = take_string(&mut obj, "name");
            let params = take_array(&mut obj, "params");
            Ok(ClientFrame::Sub { id, name, params })
        }
        "unsub" => match obj.get("id") {
            Some(Value::String(_)) => Ok(ClientFrame::Unsub { id: take_string(&mut obj, "id") }),
            _ => Err(FrameError::BadRequest(Value::Object(obj))),
        },
        _ => Err(FrameError::BadRequest(Value::Object(obj))),
    }
}

/// Rewrites every `\uD800`–`\uDFFF` escape that is not half of a
/// surrogate pair into `\uFFFD`. JavaScript strings may hold lone
/// surrogates (`"😀".slice(0, 1)`) and `JSON.stringify` writes them as
/// escapes that `JSON.parse` accepts; serde_json refuses them. `None` when
/// there was nothing to replace.
fn replace_lone_surrogates(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let hex4 = |at: usize| -> Option<u32> {
        let digits = b.get(at..at + 4)?;
        let s = std::str::from_utf8(digits).ok()?;
        u32::from_str_radix(s, 16).ok().filter(|_| digits.iter().all(u8::is_ascii_hexdigit))
    };
    let is_high = |c: u32| (0xD800..0xDC00).contains(&c);
    let is_low = |c: u32| (0xDC00..0xE000).contains(&c);
    let mut out = String::new();
    let (mut i, mut copied) = (0, 0);
    while i < b.len() {
        if b[i] != b'\\' {
            i += 1;
            continue;
        }
        // An escape: a backslash followed by one character (which is ASCII in any
        // valid escape; a backslash never occurs inside a UTF-8 sequence, so
        // the positions sliced below are always char boundaries).
        let Some(cp) = (b.get(i + 1) == Some(&b'u')).then(|| hex4(i + 2)).flatten() else {
            i += 2;
            continue;
        };
        let paired = is_high(cp)
            && b.get(i + 6) == Some(&b'\\')
            && b.get(i + 7) == Some(&b'u')
            && hex4(i + 8).is_some_and(is_low);
        if paired {
            i += 12;
            continue;
        }
        if !is_high(cp) && !is_low(cp) {
            i += 6;
            continue;
        }
        out.push_str(&text[copied..i]);
        out.push_str("\\ufffd");
        i += 6;
        copied = i;
    }
    if copied == 0 {
        return None;
    }
    out.push_str(&text[copied..]);
    Some(out)
}

/// The `id` of a frame that starts like a method call (`msg` is `"method"`,
/// or absent so far while `method` is a string) but is not valid JSON
/// further on: the top-level object is read key by key until the error, and
/// whatever was read by then counts. Keys after the broken part are lost.
fn recover_method_id(text: &str) -> Option<String> {
    use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
    #[derive(Default)]
    struct Seen {
        msg: Option<String>,
        id: Option<String>,
        method: bool,
    }
    struct Probe<'a>(&'a mut Seen);
    impl<'de> Visitor<'de> for Probe<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a DDP frame")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(key) = map.next_key::<String>()? {
                match key.as_str() {
                    "msg" => self.0.msg = Some(map.next_value::<String>()?),
                    "id" => self.0.id = Some(map.next_value::<String>()?),
                    "method" => {
                        map.next_value::<String>()?;
                        self.0.method = true;
                    }
                    _ => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(())
        }
    }
    let mut seen = Seen::default();
    let mut de = serde_json::Deserializer::from_str(text);
    let _ = (&mut de).deserialize_map(Probe(&mut seen));
    let is_method = match seen.msg.as_deref() {
        Some(m) => m == "method",
        None => seen.method,
    };
    seen.id.filter(|_| is_method)
}

fn take_string(obj: &mut Map<String, Value>, key: &str) -> String {
    match obj.remove(key) {
        Some(Value::String(s)) => s,
        _ => String::new(),
    }
}

fn take_array(obj: &mut Map<String, Value>, key: &str) -> Vec<Value> {
    match obj.remove(key) {
        Some(Value::Array(a)) => a,
        _ => Vec::new(),
    }
}

/// A Meteor.Error as it travels in `result.error` and `nosub.error`.
#[derive(Debug, Clone, PartialEq)]
pub struct WireError {
    /// Meteor allows a string or a number (404 for unknown methods, 400 for
    /// `Match failed`); Rocket.Chat clients match on the string codes.
    pub error: ErrorCode,
    pub reason: String,
    pub details: Map<String, Value>,
    /// The HTTP-style status (400, 403, 404, …) every error has.
    pub status: u16,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ErrorCode {
    Str(&'static str),
    Num(u16),
}

impl ErrorCode {
    fn to_value(&self) -> Value {
        match self {
            ErrorCode::Str(s) => Value::from(*s),
            ErrorCode::Num(n) => Value::from(*n),
        }
    }

    pub fn as_string(&self) -> String {
        match self {
            ErrorCode::Str(s) => (*s).to_owned(),
            ErrorCode::Num(n) => n.to_string(),
        }
    }
}

impl WireError {
    pub fn to_value(&self) -> Value {
        let code = self.error.to_value();
        json!({
            "isClientSafe": true,
            "error": code,
            "reason": self.reason,
            "message": format!("{} [{}]", self.reason, self.error.as_string()),
            "errorType": "Meteor.Error",
            "details": self.details,
        })
    }
}

/// A failed Socket.IO acknowledgement: `{"error": {statusCode, code,
/// message, details?}}`, the same code and reason as the DDP error.
pub fn socketio_error(err: &WireError) -> Value {
    let mut e = json!({
        "statusCode": err.status,
        "code": err.error.as_string(),
        "message": err.reason,
    });
    let details: Map<String, Value> = err
        .details
        .iter()
        .filter(|(k, _)| *k != "method" && *k != "statusCode")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let (false, Value::Object(o)) = (details.is_empty(), &mut e) {
        o.insert("details".into(), Value::Object(details));
    }
    json!({ "error": e })
}

pub fn to_frame<T: Serialize>(v: &T) -> Utf8Bytes {
    // Serialising our own types into a String cannot fail (no non-string map
    // keys, no failing Serialize impls), so the fallback is unreachable.
    Utf8Bytes::from(serde_json::to_string(v).unwrap_or_else(|_| "{}".to_owned()))
}

/// Length of `v` as compact JSON, counted while serialising without
/// building a string or a `Value`: what a history page's byte budget
/// measures. An object's length does not depend on its key order, so this
/// equals the length of the same document built as a `Value` and sent.
pub fn json_len<T: Serialize + ?Sized>(v: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    // Our own types always serialise (see `to_frame`).
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

pub fn connected(session: &str) -> Utf8Bytes {
    to_frame(&json!({"msg": "connected", "session": session}))
}

pub fn failed(version: &str) -> Utf8Bytes {
    to_frame(&json!({"msg": "failed", "version": version}))
}

pub fn ping() -> Utf8Bytes {
    Utf8Bytes::from_static(r#"{"msg":"ping"}"#)
}

/// A JSON string literal: `s` quoted and escaped.
fn json_string(s: &str) -> String {
    // Serialising a `&str` cannot fail.
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

// The frames below are sent for every call, ping and subscription, so they
// are formatted directly instead of going through a `json!` map. Keys are
// in the order `json!` (a sorted map) writes them, so the bytes are the
// same either way (the tests check that).

pub fn pong(id: Option<Value>) -> Utf8Bytes {
    match id {
        Some(id) => Utf8Bytes::from(format!(r#"{{"id":{},"msg":"pong"}}"#, Value::to_string(&id))),
        None => Utf8Bytes::from_static(r#"{"msg":"pong"}"#),
    }
}

/// `result` for a successful call; `None` omits the `result` key, as Meteor
/// does for methods that return `undefined`. The value is written in place,
/// not moved into another map first.
pub fn result_ok(id: &str, value: Option<&Value>) -> Utf8Bytes {
    #[derive(Serialize)]
    struct Result<'a> {
        id: &'a str,
        msg: &'static str,
        result: &'a Value,
    }
    match value {
        Some(result) => to_frame(&Result { id, msg: "result", result }),
        None => Utf8Bytes::from(format!(r#"{{"id":{},"msg":"result"}}"#, json_string(id))),
    }
}

pub fn result_err(id: &str, err: &WireError) -> Utf8Bytes {
    to_frame(&json!({"msg": "result", "id": id, "error": err.to_value()}))
}

pub fn updated(id: &str) -> Utf8Bytes {
    Utf8Bytes::from(format!(r#"{{"methods":[{}],"msg":"updated"}}"#, json_string(id)))
}

pub fn ready(sub_id: &str) -> Utf8Bytes {
    Utf8Bytes::from(format!(r#"{{"msg":"ready","subs":[{}]}}"#, json_string(sub_id)))
}

pub fn nosub(sub_id: &str, err: Option<&WireError>) -> Utf8Bytes {
    match err {
        Some(e) => to_frame(&json!({"msg": "nosub", "id": sub_id, "error": e.to_value()})),
        None => Utf8Bytes::from(format!(r#"{{"id":{},"msg":"nosub"}}"#, json_string(sub_id))),
    }
}

/// DDP connection-level error (`{"msg":"error"}`), echoing the offending frame.
pub fn error_frame(reason: &str, offending: &Value) -> Utf8Bytes {
    to_frame(&json!({"msg": "error", "reason": reason, "offendingMessage": offending}))
}

/// A stream event. Serialised once per event and shared by every recipient.
pub fn stream_changed<A: Serialize>(collection: &str, event: &str, args: &A) -> Utf8Bytes {
    stream_changed_at(collection, event, args, None)
}

/// A room's stream event with its position: `fields.seq` beside
/// `eventName` and `args`, where DDP clients that do not know it ignore it.
pub fn stream_changed_at<A: Serialize>(
    collection: &str,
    event: &str,
    args: &A,
    seq: Option<u64>,
) -> Utf8Bytes {
    #[derive(Serialize)]
    struct Fields<'a, A> {
        #[serde(rename = "eventName")]
        event_name: &'a str,
        args: &'a A,
        #[serde(skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
    }
    #[derive(Serialize)]
    struct Changed<'a, A> {
        msg: &'static str,
        collection: &'a str,
        id: &'static str,
        fields: Fields<'a, A>,
    }
    to_frame(&Changed {
        msg: "changed",
        collection,
        id: "id",
        fields: Fields { event_name: event, args, seq },
    })
}

/// The `added` document a `useCollection: true` subscriber expects before
/// `ready`.
pub fn stream_added(collection: &str, event: &str) -> Utf8Bytes {
    to_frame(&json!({
        "msg": "added", "collection": collection, "id": "id",
        "fields": {"eventName": event}
    }))
}

/// `added` for a document of a real collection (e.g. the signed-in user's
/// own `users` record), as Meteor's mergebox sends it.
pub fn doc_added(collection: &str, id: &str, fields: &Map<String, Value>) -> Utf8Bytes {
    to_frame(&json!({"msg": "added", "collection": collection, "id": id, "fields": fields}))
}

/// `changed` for a document: `fields` holds new values, `cleared` the keys
/// that went away; each key is left out when empty, as Meteor does.
pub fn doc_changed(collection: &str, id: &str, fields: &Map<String, Value>, cleared: &[String]) -> Utf8Bytes {
    let mut f = json!({"msg": "changed", "collection": collection, "id": id});
    if !fields.is_empty() {
        f["fields"] = Value::Object(fields.clone());
    }
    if !cleared.is_empty() {
        f["cleared"] = json!(cleared);
    }
    to_frame(&f)
}

pub fn doc_removed(collection: &str, id: &str) -> Utf8Bytes {
    to_frame(&json!({"msg": "removed", "collection": collection, "id": id}))
}

/// The wire shape of an embedded user: `{_id, username, name?}`.
impl Serialize for crate::room::UserRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct UserFrame<'a> {
            #[serde(rename = "_id")]
            id: &'a str,
            username: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            name: Option<&'a str>,
        }
        UserFrame { id: self.id.as_str(), username: &self.username, name: self.name.as_deref() }.serialize(s)
    }
}

/// The wire shape of a message (Rocket.Chat's message document). `msg` is
/// always present: clients crash on a missing one.
impl Serialize for crate::room::Message {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use crate::room::UserRef;
        use crate::time::Millis;
        #[derive(Serialize)]
        struct MessageFrame<'a> {
            #[serde(rename = "_id")]
            id: &'a str,
            rid: &'a str,
            msg: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            t: Option<&'a str>,
            ts: Millis,
            u: &'a UserRef,
            #[serde(rename = "_updatedAt")]
            updated_at: Millis,
            #[serde(skip_serializing_if = "Option::is_none")]
            groupable: Option<bool>,
            #[serde(skip_serializing_if = "Option::is_none")]
            tmid: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            role: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            urls: Option<[(); 0]>,
            #[serde(skip_serializing_if = "Option::is_none")]
            mentions: Option<[(); 0]>,
            #[serde(skip_serializing_if = "Option::is_none")]
            channels: Option<[(); 0]>,
            #[serde(skip_serializing_if = "Option::is_none")]
            md: Option<[(); 0]>,
        }
        MessageFrame {
            id: self.id.as_str(),
            rid: self.rid.as_str(),
            msg: &self.msg,
            t: self.t.as_deref(),
            ts: self.ts,
            u: &self.u,
            updated_at: self.updated_at,
            groupable: self.groupable,
            tmid: self.tmid.as_deref(),
            role: self.role.as_deref(),
            urls: self.urls,
            mentions: self.mentions,
            channels: self.channels,
            md: self.md,
        }
        .serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A history page measures each message with `json_len` and answers it
    /// as a `Value` (sorted keys): the two must agree byte for byte, or the
    /// page's byte budget would drift from what is sent.
    #[test]
    fn json_len_counts_the_sent_document() {
        use crate::ids::{MessageId, RoomId, UserId};
        use crate::room::{Message, UserRef};
        use crate::time::Millis;
        let u = UserRef { id: UserId::from("u1"), username: "ann \"é\"".into(), name: Some("Ann\n".into()) };
        let rid = RoomId::from("r1");
        for m in [
            Message::user(MessageId::generate(), &rid, "hi <\u{1}> ✓".into(), u.clone(), None, Millis(5)),
            Message::system(MessageId::generate(), &rid, "uj", String::new(), u, Millis(7)),
        ] {
            let sent = serde_json::to_string(&crate::wire::room::message(&m)).unwrap();
            assert_eq!(json_len(&m), sent.len());
            assert_ne!(
                sent,
                serde_json::to_string(&m).unwrap(),
                "key order differs; only the length is shared"
            );
        }
    }

    #[test]
    fn parses_and_rejects() {
        assert!(matches!(parse_client_frame("{"), Err(FrameError::Parse)));
        assert!(matches!(parse_client_frame("[]"), Err(FrameError::BadRequest(_))));
        assert!(matches!(parse_client_frame(r#"{"msg":"x"}"#), Err(FrameError::BadRequest(_))));
        assert!(matches!(
            parse_client_frame(r#"{"msg":"method","id":1,"method":"a"}"#),
            Err(FrameError::MalformedMethod(_))
        ));
        assert!(matches!(
            parse_client_frame(r#"{"msg":"sub","id":"1","name":"a","params":{}}"#),
            Err(FrameError::MalformedSub(_))
        ));
        match parse_client_frame(r#"{"msg":"method","id":"1","method":"a"}"#) {
            Ok(ClientFrame::Method { params, .. }) => assert!(params.is_empty()),
            other => panic!("{other:?}"),
        }
        let deep = "[".repeat(10_000);
        assert!(matches!(parse_client_frame(&deep), Err(FrameError::Parse)));
    }

    #[test]
    fn result_without_value_omits_key() {
        assert_eq!(result_ok("7", None).as_str(), r#"{"id":"7","msg":"result"}"#);
    }

    /// The preformatted frames are byte for byte what `json!` wrote, for
    /// ids that need escaping too.
    #[test]
    fn fixed_frames_match_their_json_shapes() {
        let result = json!({"_id": "r1", "n": [1, 2.5, null], "s": "é\u{1F600}\"\\"});
        for id in ["7", "", "a\"b\\c", "line\nbreak\u{0}", "é\u{1F600}", "</script>"] {
            let same = |ours: Utf8Bytes, theirs: Value| assert_eq!(ours.as_str(), to_frame(&theirs).as_str());
            same(updated(id), json!({"msg": "updated", "methods": [id]}));
            same(ready(id), json!({"msg": "ready", "subs": [id]}));
            same(nosub(id, None), json!({"msg": "nosub", "id": id}));
            same(result_ok(id, None), json!({"msg": "result", "id": id}));
            same(result_ok(id, Some(&result)), json!({"msg": "result", "id": id, "result": result}));
            same(pong(Some(json!(id))), json!({"msg": "pong", "id": id}));
        }
        for id in [json!(7), json!(null), json!({"b": 1, "a": [true]})] {
            assert_eq!(pong(Some(id.clone())).as_str(), to_frame(&json!({"msg": "pong", "id": id})).as_str());
        }
    }
}

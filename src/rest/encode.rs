//! The hot REST answers written straight to bytes.
//!
//! Every other answer is built as a `serde_json::Value`, its `{"$date"}`
//! dates rewritten to ISO strings ([`super::dates_to_iso`]) and printed:
//! for a posted message that is a map of ~15 `String` keys built, walked,
//! printed and dropped per request, and it was ~12 % of the server's CPU
//! under `chat.postMessage` load. These writers print the same bytes (keys
//! in the sorted order a `Value` object prints them, dates as ISO strings)
//! without the tree; the tests below hold them to the `Value` path byte for
//! byte.

use crate::room::{Message, UserRef};
use crate::time::Millis;

/// `chat.postMessage`'s answer:
/// `{"channel", "message", "success": true, "ts": <ms>}`.
pub(super) fn posted_message(channel: &str, m: &Message) -> Vec<u8> {
    let mut b = Vec::with_capacity(320 + m.msg.len());
    b.extend_from_slice(b"{\"channel\":");
    string(&mut b, channel);
    b.extend_from_slice(b",\"message\":");
    message(&mut b, m);
    b.extend_from_slice(b",\"success\":true,\"ts\":");
    b.extend_from_slice(itoa_i64(m.ts.0).as_bytes());
    b.push(b'}');
    b
}

/// `chat.sendMessage`'s answer: `{"message", "success": true}`.
pub(super) fn sent_message(m: &Message) -> Vec<u8> {
    let mut b = Vec::with_capacity(288 + m.msg.len());
    b.extend_from_slice(b"{\"message\":");
    message(&mut b, m);
    b.extend_from_slice(b",\"success\":true}");
    b
}

/// A message document as `wire::room::message` shapes it, keys sorted as a
/// `Value` object's are (byte order), dates as ISO strings.
fn message(b: &mut Vec<u8>, m: &Message) {
    b.extend_from_slice(b"{\"_id\":");
    string(b, m.id.as_str());
    b.extend_from_slice(b",\"_updatedAt\":");
    iso(b, m.updated_at);
    if m.channels.is_some() {
        b.extend_from_slice(b",\"channels\":[]");
    }
    if let Some(g) = m.groupable {
        b.extend_from_slice(if g { b",\"groupable\":true" } else { b",\"groupable\":false" });
    }
    if m.md.is_some() {
        b.extend_from_slice(b",\"md\":[]");
    }
    if m.mentions.is_some() {
        b.extend_from_slice(b",\"mentions\":[]");
    }
    b.extend_from_slice(b",\"msg\":");
    string(b, &m.msg);
    b.extend_from_slice(b",\"rid\":");
    string(b, m.rid.as_str());
    if let Some(role) = &m.role {
        b.extend_from_slice(b",\"role\":");
        string(b, role);
    }
    if let Some(t) = &m.t {
        b.extend_from_slice(b",\"t\":");
        string(b, t);
    }
    if let Some(tmid) = &m.tmid {
        b.extend_from_slice(b",\"tmid\":");
        string(b, tmid);
    }
    b.extend_from_slice(b",\"ts\":");
    iso(b, m.ts);
    b.extend_from_slice(b",\"u\":");
    user(b, &m.u);
    if m.urls.is_some() {
        b.extend_from_slice(b",\"urls\":[]");
    }
    b.push(b'}');
}

/// `{"_id", "name"?, "username"}`.
fn user(b: &mut Vec<u8>, u: &UserRef) {
    b.extend_from_slice(b"{\"_id\":");
    string(b, u.id.as_str());
    if let Some(name) = &u.name {
        b.extend_from_slice(b",\"name\":");
        string(b, name);
    }
    b.extend_from_slice(b",\"username\":");
    string(b, &u.username);
    b.push(b'}');
}

/// A JSON string with serde_json's own escaping (the `Value` path's).
fn string(b: &mut Vec<u8>, s: &str) {
    // Writing a `&str` into a `Vec` cannot fail.
    let _ = serde_json::to_writer(&mut *b, s);
}

/// `"2026-03-03T10:36:00.123Z"`, as [`Millis::to_iso8601`] writes it, but
/// into `b` without a `format!`. Years outside 0000–9999 (never a message's)
/// take the general path.
fn iso(b: &mut Vec<u8>, t: Millis) {
    let ms = t.0.rem_euclid(1000);
    let secs = t.0.div_euclid(1000);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = crate::time::civil_from_days(secs.div_euclid(86_400));
    if !(0..=9999).contains(&y) {
        b.push(b'"');
        b.extend_from_slice(t.to_iso8601().as_bytes());
        b.push(b'"');
        return;
    }
    let mut out = *b"\"0000-00-00T00:00:00.000Z\"";
    let mut put = |at: usize, width: usize, mut v: i64| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(1, 4, y);
    put(6, 2, i64::from(m));
    put(9, 2, i64::from(d));
    put(12, 2, sod / 3600);
    put(15, 2, sod % 3600 / 60);
    put(18, 2, sod % 60);
    put(21, 3, ms);
    b.extend_from_slice(&out);
}

/// An integer as decimal text, on the stack.
fn itoa_i64(v: i64) -> ItoaBuf {
    let mut buf = ItoaBuf { bytes: [0; 20], start: 20 };
    let neg = v < 0;
    let mut n = v.unsigned_abs();
    loop {
        buf.start -= 1;
        buf.bytes[buf.start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if neg {
        buf.start -= 1;
        buf.bytes[buf.start] = b'-';
    }
    buf
}

/// [`itoa_i64`]'s digits: 19 digits and a sign fit in 20 bytes.
struct ItoaBuf {
    bytes: [u8; 20],
    start: usize,
}

impl ItoaBuf {
    fn as_bytes(&self) -> &[u8] {
        &self.bytes[self.start..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{MessageId, RoomId, UserId};
    use crate::rest::dates_to_iso;
    use crate::wire;
    use serde_json::{Value, json};
    use std::borrow::Cow;

    /// The `Value` path these writers replace, as `rocketchat::run` and
    /// `handle` took it.
    fn via_value(mut body: Value) -> Vec<u8> {
        dates_to_iso(&mut body);
        if let Value::Object(o) = &mut body {
            o.insert("success".into(), Value::Bool(true));
        }
        body.to_string().into_bytes()
    }

    fn messages() -> Vec<Message> {
        let plain = UserRef { id: UserId::from("uBot"), username: "bot".into(), name: None };
        let odd = UserRef {
            id: UserId::from("u\"1\\"),
            username: "ann \"é\"\u{1}</script>".into(),
            name: Some("Ann\n\t✓ \u{1F600}".into()),
        };
        let rid = RoomId::from("r\u{7f}1");
        let mut all = vec![
            Message::user(
                MessageId::generate(),
                &rid,
                "hi".into(),
                plain.clone(),
                None,
                Millis(1_772_534_160_123),
            ),
            Message::user(
                MessageId::generate(),
                &rid,
                String::new(),
                odd.clone(),
                Some("t\"1".into()),
                Millis(0),
            ),
            Message::system(MessageId::generate(), &rid, "uj", "x\u{0}y".into(), odd.clone(), Millis(-1)),
            Message::system(
                MessageId::generate(),
                &rid,
                "ul",
                String::new(),
                plain,
                Millis(253_402_300_799_999),
            ),
        ];
        // Every optional field at once, and years the fast path leaves alone.
        let mut full =
            Message::user(MessageId::generate(), &rid, "é".repeat(300), odd, Some("tm".into()), Millis(5));
        full.t = Some(Cow::Borrowed("subscription-role-added"));
        full.role = Some(Cow::Borrowed("moderator"));
        full.groupable = Some(true);
        full.updated_at = Millis(951_782_400_000);
        all.push(full.clone());
        full.ts = Millis(253_402_300_800_000);
        full.updated_at = Millis(-62_167_219_200_001);
        all.push(full);
        all
    }

    #[test]
    fn posted_message_matches_the_value_path() {
        for m in messages() {
            for channel in ["GENERAL", "#gen\"eral", ""] {
                let old = via_value(
                    json!({ "ts": m.ts.0, "channel": channel, "message": wire::room::message(&m) }),
                );
                assert_eq!(
                    String::from_utf8(posted_message(channel, &m)).unwrap(),
                    String::from_utf8(old).unwrap()
                );
            }
        }
    }

    #[test]
    fn sent_message_matches_the_value_path() {
        for m in messages() {
            let old = via_value(json!({ "message": wire::room::message(&m) }));
            assert_eq!(String::from_utf8(sent_message(&m)).unwrap(), String::from_utf8(old).unwrap());
        }
    }

    #[test]
    fn iso_dates_match_to_iso8601() {
        let same = |ms: i64| {
            let mut b = Vec::new();
            iso(&mut b, Millis(ms));
            assert_eq!(b, format!("\"{}\"", Millis(ms).to_iso8601()).into_bytes(), "{ms}");
        };
        // From before year 0 to after 9999 in steps of ~34.6 days and an
        // odd number of milliseconds: every month, every ending.
        let mut ms = -62_167_219_200_000_i64 - 5;
        while ms < 253_402_400_000_000 {
            same(ms);
            ms += 2_987_654_321;
        }
        // Leap days, the turn of a century, the ends of the fast path.
        for ms in
            [951_782_400_000, 951_868_799_999, 4_107_542_400_000, -62_167_219_200_000, 253_402_300_799_999]
        {
            same(ms);
        }
        for v in [0, 1, -1, 9, 10, i64::MAX, i64::MIN, 1_772_534_160_123] {
            assert_eq!(itoa_i64(v).as_bytes(), v.to_string().as_bytes());
        }
    }
}

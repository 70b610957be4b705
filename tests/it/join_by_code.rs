//! `join-room {code, guestName?, guestToken?}`: the meeting family's join by
//! shareable code, for signed-in users and guests.

use crate::support::*;
use serde_json::{Value, json};
use std::time::Duration;

struct Room {
    id: String,
    code: String,
}

async fn room(owner: &mut Client, extra: Value) -> Room {
    let doc = channel(owner, extra).await;
    Room { id: doc["_id"].as_str().unwrap().to_owned(), code: doc["code"].as_str().unwrap().to_owned() }
}

fn assert_status_error(r: &Value, code: &str, reason: &str, status: u16) {
    let e = r.get("error").unwrap_or_else(|| panic!("expected {code}: {r}"));
    assert_error(e, code, reason);
    assert_eq!(e["details"]["statusCode"], status, "{e}");
}

#[tokio::test]
async fn user_participant_shape() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let r = room(&mut alice, json!({})).await;
    let mut bob = s.user("bob").await;
    let p = bob.ok("join-room", json!([{"code": r.code}])).await;
    assert!(p["id"].as_str().is_some_and(|s| !s.is_empty()), "{p}");
    assert_eq!(p["roomId"], r.id.as_str());
    assert_eq!(p["userId"], "id-bob");
    assert_eq!(p["guestName"], Value::Null);
    assert_eq!(p["isActive"], true);
    assert_eq!(p["isHost"], false);
    assert!(is_iso8601(&p["joinedAt"]), "{p}");
    assert_eq!(p["leftAt"], Value::Null);
    for k in ["id", "roomId", "userId", "guestName", "isActive", "isHost", "joinedAt", "leftAt"] {
        assert!(p.get(k).is_some(), "missing {k}: {p}");
    }
    assert_eq!(alice.room(&r.id).await["usersCount"], 2);
}

#[tokio::test]
async fn host_participant_is_host() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let r = room(&mut alice, json!({})).await;
    let p = alice.ok("join-room", json!([{"code": r.code}])).await;
    assert_eq!(p["isHost"], true, "{p}");
    assert_eq!(p["userId"], "id-alice");
}

#[tokio::test]
async fn guest_participant_shape() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let r = room(&mut alice, json!({"guestAccess": true})).await;
    let mut g = s.guest().await;
    let p = g.ok("join-room", json!([{"code": r.code, "guestName": "  Jane Smith  "}])).await;
    assert_eq!(p["guestName"], "Jane Smith", "trimmed: {p}");
    assert_eq!(p["userId"], Value::Null);
    assert_eq!(p["roomId"], r.id.as_str());
    assert_eq!(p["isActive"], true);
    assert_eq!(p["isHost"], false);
    assert!(is_iso8601(&p["joinedAt"]), "{p}");
    assert_eq!(p["leftAt"], Value::Null);
    assert_eq!(alice.room(&r.id).await["usersCount"], 2);
}

#[tokio::test]
async fn user_may_join_private_group_by_code() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let doc = alice.ok("createPrivateGroup", json!([unique("g")])).await;
    let id = doc["_id"].as_str().unwrap();
    let mut bob = s.user("bob").await;
    assert_eq!(bob.err("joinRoom", json!([id])).await["error"], "error-not-allowed");
    let p = bob.ok("join-room", json!([{"code": doc["code"]}])).await;
    assert_eq!(p["roomId"], id);
    assert_eq!(bob.room(id).await["usersCount"], 2);
}

#[tokio::test]
async fn room_not_found_is_404() {
    let s = TestServer::start().await;
    let mut bob = s.user("bob").await;
    for code in ["zzz-zzz-zzz", "not a code", "ABC-DEF-GHI", ""] {
        let r = bob.join_code(code, None).await;
        assert_status_error(&r, "error-room-not-found", "Room not found", 404);
    }
    let mut g = s.guest().await;
    let r = g.join_code("zzz-zzz-zzz", Some("Jane")).await;
    assert_status_error(&r, "error-room-not-found", "Room not found", 404);
}

#[tokio::test]
async fn ended_room_is_400() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let r = room(&mut alice, json!({"guestAccess": true})).await;
    alice.call("endRoom", json!([r.id])).await;
    let mut bob = s.user("bob").await;
    let res = bob.join_code(&r.code, None).await;
    assert_status_error(&res, "error-room-inactive", "Room is no longer active", 400);
    let mut g = s.guest().await;
    let res = g.join_code(&r.code, Some("Jane")).await;
    assert_status_error(&res, "error-room-inactive", "Room is no longer active", 400);
}

#[tokio::test]
async fn locked_room_is_403() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let r = room(&mut alice, json!({"guestAccess": true, "locked": true})).await;
    let mut bob = s.user("bob").await;
    let res = bob.join_code(&r.code, None).await;
    assert_status_error(&res, "error-room-locked", "Room is locked", 403);
    let mut g = s.guest().await;
    let res = g.join_code(&r.code, Some("Jane")).await;
    assert_status_error(&res, "error-room-locked", "Room is locked", 403);
    // Admins pass the lock.
    let mut admin = s.user_with_roles("root", &["admin"]).await;
    let res = admin.join_code(&r.code, None).await;
    assert!(res.get("error").is_none(), "{res}");
    assert_eq!(alice.room(&r.id).await["usersCount"], 2);
}

#[tokio::test]
async fn full_room_is_400() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let r = room(&mut alice, json!({"guestAccess": true, "maxParticipants": 2})).await;
    let mut bob = s.user("bob").await;
    bob.ok("join-room", json!([{"code": r.code}])).await;
    let mut carol = s.user("carol").await;
    let res = carol.join_code(&r.code, None).await;
    assert_status_error(&res, "error-room-full", "Room is full", 400);
    let mut g = s.guest().await;
    let res = g.join_code(&r.code, Some("Jane")).await;
    assert_status_error(&res, "error-room-full", "Room is full", 400);
    assert_eq!(alice.room(&r.id).await["usersCount"], 2);
}

#[tokio::test]
async fn errors_come_in_documented_order() {
    let s = TestServer::start().await;
    let _bob = s.user("bob").await;
    let mut alice = s.user("alice").await;
    let mut carol = s.user("carol").await;
    // Ended, locked and full at once: "inactive" wins.
    let r = room(&mut alice, json!({"maxParticipants": 1, "locked": true})).await;
    alice.call("endRoom", json!([r.id])).await;
    let res = carol.join_code(&r.code, None).await;
    assert_status_error(&res, "error-room-inactive", "Room is no longer active", 400);
    // Locked and full: "locked" wins.
    let r = room(&mut alice, json!({"maxParticipants": 1, "locked": true})).await;
    let res = carol.join_code(&r.code, None).await;
    assert_status_error(&res, "error-room-locked", "Room is locked", 403);
    alice.ok("saveRoomSettings", json!([r.id, "locked", false])).await;
    let res = carol.join_code(&r.code, None).await;
    assert_status_error(&res, "error-room-full", "Room is full", 400);
    // A join code (joinRoom's check) does not apply to join-room: the
    // shareable code is the invitation.
    let r = room(&mut alice, json!({})).await;
    alice.ok("saveRoomSettings", json!([r.id, "joinCode", "pw"])).await;
    let res = carol.join_code(&r.code, None).await;
    assert!(res.get("error").is_none(), "{res}");
}

#[tokio::test]
async fn guest_without_guest_access_is_not_allowed() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let r = room(&mut alice, json!({})).await;
    let mut g = s.guest().await;
    let res = g.join_code(&r.code, Some("Jane")).await;
    let e = &res["error"];
    assert_eq!(e["error"], "error-not-allowed", "{res}");
    assert_eq!(e["details"]["statusCode"], 403, "{res}");
    assert_eq!(alice.room(&r.id).await["usersCount"], 1);
    // Turning guest access on lets the same guest in.
    alice.ok("saveRoomSettings", json!([r.id, "guestAccess", true])).await;
    let res = g.join_code(&r.code, Some("Jane")).await;
    assert!(res.get("error").is_none(), "{res}");
}

#[tokio::test]
async fn guest_name_validation() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let r = room(&mut alice, json!({"guestAccess": true})).await;
    let mut g = s.guest().await;
    let too_long = "x".repeat(51);
    let bad: Vec<Value> = vec![
        json!({"code": r.code}),
        json!({"code": r.code, "guestName": ""}),
        json!({"code": r.code, "guestName": "   \t "}),
        json!({"code": r.code, "guestName": too_long}),
        json!({"code": r.code, "guestName": 42}),
    ];
    for p in bad {
        let e = g.err("join-room", json!([p])).await;
        assert_match_failed(&e, "guestName");
        assert_eq!(e["details"]["statusCode"], 400, "{e}");
    }
    // Also when the code is unknown: the name is checked first.
    let e = g.err("join-room", json!([{"code": "zzz-zzz-zzz", "guestName": ""}])).await;
    assert_match_failed(&e, "guestName");
    let e = g.err("join-room", json!([])).await;
    assert_eq!(e["error"], 400, "{e}");
    assert_eq!(alice.room(&r.id).await["usersCount"], 1);
    // Exactly 50 characters (after trimming) is fine.
    let fifty = format!("  {}  ", "é".repeat(50));
    let p = g.ok("join-room", json!([{"code": r.code, "guestName": fifty}])).await;
    assert_eq!(p["guestName"], "é".repeat(50));
}

#[tokio::test]
async fn joining_twice_returns_the_same_participant() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let r = room(&mut alice, json!({"guestAccess": true, "maxParticipants": 3})).await;
    alice.sub_ok("stream-room-messages", json!([r.id, false])).await;
    let mut bob = s.user("bob").await;
    let p1 = bob.ok("join-room", json!([{"code": r.code}])).await;
    let mut g = s.guest().await;
    let g1 = g.ok("join-room", json!([{"code": r.code, "guestName": "Jane"}])).await;
    // Both joined: the room is full now.
    assert_eq!(alice.room_message(&r.id).await["t"], "uj");
    assert_eq!(alice.room_message(&r.id).await["t"], "uj");
    let p2 = bob.ok("join-room", json!([{"code": r.code}])).await;
    let g2 = g.ok("join-room", json!([{"code": r.code, "guestName": "Jane"}])).await;
    assert_eq!(p1["id"], p2["id"]);
    assert_eq!(p1["joinedAt"], p2["joinedAt"]);
    assert_eq!(g1["id"], g2["id"]);
    // joinRoom for an existing join-room member is a no-op too.
    let r2 = bob.call("joinRoom", json!([r.id])).await;
    assert!(r2.get("error").is_none() && r2.get("result").is_none(), "{r2}");
    assert_eq!(alice.room(&r.id).await["usersCount"], 3);
    alice.expect_none(Duration::from_millis(300), |f| f["msg"] == "changed").await;
}

#[tokio::test]
async fn guest_leaves_when_connection_closes_after_grace() {
    let s = TestServer::with_limits(|l| l.guest_grace = Duration::from_millis(300)).await;
    let mut alice = s.user("alice").await;
    let r = room(&mut alice, json!({"guestAccess": true})).await;
    alice.sub_ok("stream-room-messages", json!([r.id, false])).await;
    let ev = format!("{}/participants", r.id);
    alice.sub_ok("stream-notify-room", json!([ev, false])).await;
    let mut g = s.guest().await;
    let p = g.ok("join-room", json!([{"code": r.code, "guestName": "Jane"}])).await;
    let uj = alice.room_message(&r.id).await;
    assert_eq!(uj["t"], "uj");
    let guest_id = uj["u"]["_id"].clone();
    let closed_at = tokio::time::Instant::now();
    g.close().await;
    // Not before the grace period…
    alice.expect_none(Duration::from_millis(150), |f| f["fields"]["args"][0]["t"] == "ul").await;
    // …but after it, announced like any leave.
    let ul = alice.expect(|f| f["msg"] == "changed" && f["fields"]["args"][0]["t"] == "ul").await;
    assert!(closed_at.elapsed() >= Duration::from_millis(250));
    let ul = &ul["fields"]["args"][0];
    assert_eq!(ul["msg"], "Jane");
    assert_eq!(ul["u"]["_id"], guest_id, "stable guest id: {ul}");
    assert_eq!(ul["u"]["username"], "Jane");
    let left =
        alice.expect(|f| f["fields"]["eventName"] == ev.as_str() && f["fields"]["args"][0] == "left").await;
    let lp = &left["fields"]["args"][1];
    assert_eq!(lp["id"], p["id"]);
    assert_eq!(lp["isActive"], false);
    assert!(is_iso8601(&lp["leftAt"]), "{lp}");
    assert_eq!(alice.room(&r.id).await["usersCount"], 1);
}

#[tokio::test]
async fn guest_resume_with_token_within_grace_keeps_the_seat() {
    let s = TestServer::with_limits(|l| l.guest_grace = Duration::from_millis(500)).await;
    let mut alice = s.user("alice").await;
    let r = room(&mut alice, json!({"guestAccess": true, "maxParticipants": 2})).await;
    alice.sub_ok("stream-room-messages", json!([r.id, false])).await;
    let mut g = s.guest().await;
    let p = g.ok("join-room", json!([{"code": r.code, "guestName": "Jane"}])).await;
    let token = p["guestToken"].as_str().expect("guest gets a guestToken").to_owned();
    assert_eq!(alice.room_message(&r.id).await["t"], "uj");
    g.close().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Back within the grace period, on a new connection.
    let mut g2 = s.guest().await;
    let p2 = g2.ok("join-room", json!([{"code": r.code, "guestName": "Jane", "guestToken": token}])).await;
    assert_eq!(p2["id"], p["id"], "same participant: {p2}");
    assert_eq!(p2["joinedAt"], p["joinedAt"]);
    // The seat is kept past the original grace deadline: no leave, no join.
    alice.expect_none(Duration::from_millis(800), |f| f["msg"] == "changed").await;
    assert_eq!(alice.room(&r.id).await["usersCount"], 2);
    // The resumed guest is a member: it can read the room's streams.
    g2.sub_ok("stream-room-messages", json!([r.id, false])).await;
    // A wrong token is not a resume: a fresh join, refused here as full.
    let mut g3 = s.guest().await;
    let res =
        g3.call("join-room", json!([{"code": r.code, "guestName": "Eve", "guestToken": "forged"}])).await;
    assert_eq!(res["error"]["error"], "error-room-full", "{res}");
}

#[tokio::test]
async fn guest_leave_room_and_events_name_the_guest() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let r = room(&mut alice, json!({"guestAccess": true})).await;
    alice.sub_ok("stream-room-messages", json!([r.id, false])).await;
    let mut g = s.guest().await;
    // A guest that has joined nothing has no membership to leave.
    let e = g.err("leaveRoom", json!([r.id])).await;
    assert_eq!(e["error"], "error-invalid-user");
    g.ok("join-room", json!([{"code": r.code, "guestName": "Jane"}])).await;
    let uj = alice.room_message(&r.id).await;
    assert_eq!(uj["t"], "uj");
    assert_eq!(uj["msg"], "Jane");
    assert_eq!(uj["u"]["username"], "Jane");
    let gid = uj["u"]["_id"].as_str().expect("guest id").to_owned();
    assert!(gid.starts_with("guest-"), "{uj}");
    let r2 = g.call("leaveRoom", json!([r.id])).await;
    assert!(r2.get("error").is_none() && r2.get("result").is_none(), "{r2}");
    let ul = alice.room_message(&r.id).await;
    assert_eq!(ul["t"], "ul");
    assert_eq!(ul["u"]["_id"], gid.as_str());
    let again = g.call("leaveRoom", json!([r.id])).await;
    assert!(again.get("error").is_none(), "leaving again is idempotent: {again}");
    assert_eq!(alice.room(&r.id).await["usersCount"], 1);
}

#[tokio::test]
async fn guest_reads_only_its_own_rooms() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let mine = room(&mut alice, json!({"guestAccess": true})).await;
    let other = room(&mut alice, json!({"guestAccess": true})).await;
    let mut g = s.guest().await;
    g.ok("join-room", json!([{"code": mine.code, "guestName": "Jane"}])).await;
    g.sub_ok("stream-room-messages", json!([mine.id, false])).await;
    for (name, ev) in [
        ("stream-room-messages", other.id.clone()),
        ("stream-notify-room", format!("{}/participants", other.id)),
    ] {
        let r = g.sub(name, json!([ev, false])).await;
        assert_eq!(r["msg"], "nosub", "{r}");
        assert_eq!(r["error"]["error"], "not-allowed", "{r}");
    }
}

#[tokio::test]
async fn guest_stays_while_connected_longer_than_grace() {
    let s = TestServer::with_limits(|l| l.guest_grace = Duration::from_millis(100)).await;
    let mut alice = s.user("alice").await;
    let r = room(&mut alice, json!({"guestAccess": true})).await;
    let mut g = s.guest().await;
    g.ok("join-room", json!([{"code": r.code, "guestName": "Jane"}])).await;
    assert!(g.stays_open(Duration::from_millis(400)).await);
    assert_eq!(alice.room(&r.id).await["usersCount"], 2);
}

/// Issue 22.1: names with joined emoji (a zero-width joiner, variation
/// selectors, an emoji tag sequence) are accepted as typed; length counts
/// Unicode scalar values (`👩‍💻` is 3 of the 50).
#[tokio::test]
async fn guest_names_with_joined_emoji_are_accepted() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let r = room(&mut alice, json!({"guestAccess": true})).await;
    for name in [
        "👩\u{200D}💻 Dev",                                             // woman technologist
        "Pride 🏳\u{FE0F}\u{200D}🌈",                                    // rainbow flag
        "👨\u{200D}👩\u{200D}👧\u{200D}👦",                             // family
        "❤\u{FE0F}\u{200D}🔥 Ana",                                      // heart on fire (a BMP first half)
        "🧑🏽\u{200D}🚀",                                                 // skin tone before the joiner
        "🐦\u{200D}⬛",                                                 // black bird (U+2B1B)
        "🏴\u{E0067}\u{E0062}\u{E0065}\u{E006E}\u{E0067}\u{E007F} fan", // flag of England
        "1\u{FE0F}\u{20E3} Ines",                                       // keycap
    ] {
        let mut g = s.guest().await;
        let p = g.ok("join-room", json!([{"code": r.code, "guestName": name}])).await;
        assert_eq!(p["guestName"], name.trim(), "{p}");
    }
    // 50 scalar values including joiners are fine; 51 are too many.
    let fifty = "👩\u{200D}💻".repeat(16) + "xy";
    assert_eq!(fifty.chars().count(), 50);
    let mut g = s.guest().await;
    g.ok("join-room", json!([{"code": r.code, "guestName": fifty}])).await;
    let e =
        s.guest().await.err("join-room", json!([{"code": r.code, "guestName": format!("{fifty}z")}])).await;
    assert_error(&e, 400, "Match failed: guestName must be 1 to 50 characters after trimming");
    assert_eq!(e["details"]["expected"], "1 to 50 characters after trimming", "{e}");
}

/// Issue 22.1: a name refused for a hidden character says so (and which
/// one), distinct from a name that is empty or too long; joiners outside an
/// emoji sequence, bidi overrides and other format characters stay refused.
#[tokio::test]
async fn guest_names_with_hidden_characters_say_why() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let r = room(&mut alice, json!({"guestAccess": true})).await;
    for (name, found) in [
        ("ali\u{202E}ce", "U+202E"),         // right-to-left override
        ("ali\u{2066}ce\u{2069}", "U+2066"), // bidi isolate
        ("al\u{200D}ice", "U+200D"),         // joiner between letters
        ("👩\u{200D}", "U+200D"),            // joiner with nothing after it
        ("\u{200D}💻", "U+200D"),            // joiner with nothing before it
        ("👩\u{200D}x", "U+200D"),           // joiner before a letter
        ("ali\u{200B}ce", "U+200B"),         // zero-width space
        ("alice\u{E0041}", "U+E0041"),       // tag outside a flag sequence
        ("🏴\u{E0067}\u{E0062}", "U+E0067"), // flag tags never closed
        ("a\u{0007}b", "U+0007"),            // control character
        ("a\u{2028}b", "U+2028"),            // line separator
    ] {
        let e = s.guest().await.err("join-room", json!([{"code": r.code, "guestName": name}])).await;
        let expected = format!("free of control, format and separator characters (found {found})");
        assert_error(&e, 400, &format!("Match failed: guestName must be {expected}"));
        assert_eq!(e["details"]["field"], "guestName", "{e}");
        assert_eq!(e["details"]["expected"], expected.as_str(), "{name:?}: {e}");
    }
    for name in ["", "   "] {
        let e = s.guest().await.err("join-room", json!([{"code": r.code, "guestName": name}])).await;
        assert_error(&e, 400, "Match failed: guestName must be 1 to 50 characters after trimming");
    }
    assert_eq!(alice.room(&r.id).await["usersCount"], 1, "nobody was admitted");
}

/// Issue 22.2: a room's `guestChat` decides whether its guests may post.
/// Off (the default of `createChannel`/`createPrivateGroup`, the Rocket.Chat
/// doors) a guest's `sendMessage` is refused with the reason; on, the guest
/// posts under their guest name, members see it live and in history, and the
/// size limit and the message rate limit apply as to everyone.
#[tokio::test]
async fn guests_post_only_where_guest_chat_is_on() {
    let s = TestServer::with_limits(|l| {
        l.max_message_len = 20;
        l.no_rate_limits = false;
        l.rate_messages = "0.01:5".parse().unwrap();
    })
    .await;
    let mut alice = s.user("alice").await;
    let doc = channel(&mut alice, json!({"guestAccess": true})).await;
    assert_eq!(doc["guestChat"], false, "Rocket.Chat rooms default to no guest chat: {doc}");
    let (rid, code) = (doc["_id"].as_str().unwrap().to_owned(), doc["code"].as_str().unwrap().to_owned());
    alice.sub_ok("stream-room-messages", json!([rid, false])).await;
    let mut g = s.guest().await;
    g.ok("join-room", json!([{"code": code, "guestName": "Jane 👩\u{200D}💻"}])).await;
    let e = g.err("sendMessage", json!([{"rid": rid, "msg": "hi"}])).await;
    assert_error(&e, "error-action-not-allowed", "Posting as a guest is not allowed");
    assert_eq!(e["details"]["action"], "Posting as a guest", "{e}");

    alice.ok("saveRoomSettings", json!([rid, "guestChat", true])).await;
    let changed = alice.expect(|f| is_system(&f["fields"]["args"][0], "room-guest-chat-changed")).await;
    assert_eq!(changed["fields"]["args"][0]["msg"], "true");
    assert_eq!(alice.room(&rid).await["guestChat"], true);
    let view = g.ok("getRoomParticipants", json!([rid])).await;
    assert_eq!(view["room"]["guestChat"], true, "{view}");

    let m = g.ok("sendMessage", json!([{"rid": rid, "msg": "hello from a guest"}])).await;
    assert_eq!(
        (&m["u"]["username"], &m["msg"]),
        (&json!("Jane 👩\u{200D}💻"), &json!("hello from a guest")),
        "{m}"
    );
    let id = m["_id"].clone();
    let live = alice.expect(|f| f["fields"]["args"][0]["_id"] == id).await;
    assert_eq!(live["collection"], "stream-room-messages", "{live}");
    assert_eq!(live["fields"]["args"][0]["u"]["username"], "Jane 👩\u{200D}💻");
    let h = alice.ok("loadHistory", json!([rid, null, 10, null])).await;
    assert!(h["messages"].as_array().unwrap().iter().any(|x| x["_id"] == m["_id"]), "{h}");

    // The same limits as a member's: size, then the message bucket (5
    // calls, refused ones included).
    let long = g.err("sendMessage", json!([{"rid": rid, "msg": "x".repeat(21)}])).await;
    assert_eq!(long["error"], "error-message-size-exceeded", "{long}");
    g.ok("sendMessage", json!([{"rid": rid, "msg": "two"}])).await;
    g.ok("sendMessage", json!([{"rid": rid, "msg": "three"}])).await;
    let limited = g.err("sendMessage", json!([{"rid": rid, "msg": "four"}])).await;
    assert_eq!(limited["error"], "too-many-requests", "{limited}");

    // Turned off again, guests are refused again; members still post.
    alice.ok("saveRoomSettings", json!([rid, {"guestChat": false}])).await;
    let mut g2 = s.guest().await;
    g2.ok("join-room", json!([{"code": code, "guestName": "Bo"}])).await;
    let e = g2.err("sendMessage", json!([{"rid": rid, "msg": "hi"}])).await;
    assert_error(&e, "error-action-not-allowed", "Posting as a guest is not allowed");
    alice.ok("sendMessage", json!([{"rid": rid, "msg": "members only"}])).await;
}

/// Issue 22.2: a guest's post is checked by the room as everyone's is: a
/// guest with no seat in that room is not in it.
#[tokio::test]
async fn a_guest_without_a_seat_cannot_post() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let a = room(&mut alice, json!({"guestAccess": true, "guestChat": true})).await;
    let b = room(&mut alice, json!({"guestAccess": true, "guestChat": true})).await;
    let mut g = s.guest().await;
    let e = g.err("sendMessage", json!([{"rid": a.id, "msg": "hi"}])).await;
    assert_eq!(e["error"], "error-invalid-user", "a guest that joined nothing: {e}");
    g.ok("join-room", json!([{"code": a.code, "guestName": "Jane"}])).await;
    g.ok("sendMessage", json!([{"rid": a.id, "msg": "hi"}])).await;
    let e = g.err("sendMessage", json!([{"rid": b.id, "msg": "hi"}])).await;
    assert_eq!(e["error"], "error-user-not-in-room", "{e}");
}

//! Room lifetime: an ended room that empties releases its actor but keeps
//! answering as an ended room.

use crate::support::*;
use serde_json::json;

#[tokio::test]
async fn ended_and_emptied_room_still_answers_as_ended() {
    let s = TestServer::start().await;
    let mut owner = s.user("lc-owner").await;
    let mut other = s.user("lc-other").await;
    let room = channel(&mut owner, json!({"guestAccess": true})).await;
    let rid = room["_id"].as_str().unwrap().to_owned();
    let code = room["code"].as_str().unwrap().to_owned();
    other.ok("joinRoom", json!([rid])).await;
    owner.ok("endRoom", json!([rid])).await;
    // Members may still leave an ended room; the last one out releases it.
    other.ok("leaveRoom", json!([rid])).await;
    owner.ok("leaveRoom", json!([rid])).await;

    for _ in 0..3 {
        let e = other.err("joinRoom", json!([rid])).await;
        assert_eq!(e["error"], "error-room-inactive");
        let e = other.err("join-room", json!([{"code": code}])).await;
        assert_eq!(e["error"], "error-room-inactive");
        let mut guest = s.guest().await;
        let e = guest.err("join-room", json!([{"code": code, "guestName": "Late"}])).await;
        assert_eq!(e["error"], "error-room-inactive");
        let doc = other.ok("getRoomById", json!([rid])).await;
        assert_eq!(doc["active"], false);
        assert_eq!(doc["usersCount"], 0);
        let r = owner.call("leaveRoom", json!([rid])).await;
        assert!(r.get("error").is_none(), "leaving again is idempotent: {r}");
    }
}

#[tokio::test]
async fn sole_owner_leaving_ends_and_releases_the_room() {
    let s = TestServer::start().await;
    let mut owner = s.user("lc-solo").await;
    let room = channel(&mut owner, json!({})).await;
    let rid = room["_id"].as_str().unwrap().to_owned();
    owner.ok("leaveRoom", json!([rid])).await;
    let mut late = s.user("lc-late").await;
    let e = late.err("joinRoom", json!([rid])).await;
    assert_eq!(e["error"], "error-room-inactive");
    assert_eq!(e["reason"], "Room is no longer active");
}

/// A guest whose old connection has not yet been noticed gone reconnects
/// and resumes its seat; when the old connection finally closes, the seat
/// stays with the new one.
#[tokio::test]
async fn resumed_guest_keeps_its_seat_when_the_stale_connection_closes() {
    let s = TestServer::with_limits(|l| l.guest_grace = std::time::Duration::from_millis(200)).await;
    let mut owner = s.user("lc-host").await;
    let room = channel(&mut owner, json!({"guestAccess": true})).await;
    let (rid, code) = (room["_id"].as_str().unwrap().to_owned(), room["code"].as_str().unwrap().to_owned());
    let mut old = s.guest().await;
    let p = old.ok("join-room", json!([{"code": code, "guestName": "Roamer"}])).await;
    let token = p["guestToken"].as_str().unwrap().to_owned();
    let mut new = s.guest().await;
    let again =
        new.ok("join-room", json!([{"code": code, "guestName": "Roamer", "guestToken": token}])).await;
    assert_eq!(again["id"], p["id"], "same participant, same seat");
    old.close().await;
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let doc = owner.ok("getRoomById", json!([rid])).await;
    assert_eq!(doc["usersCount"], 2, "the resumed guest must still hold its seat: {doc}");
    // And when the connection that holds it closes, the seat is released.
    new.close().await;
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let doc = owner.ok("getRoomById", json!([rid])).await;
    assert_eq!(doc["usersCount"], 1);
}

/// The shareable code is an invitation that skips the join code, so a room
/// with a join code does not show it to non-members.
#[tokio::test]
async fn room_code_is_hidden_from_non_members_when_a_join_code_is_set() {
    let s = TestServer::start().await;
    let mut owner = s.user("lc-coder").await;
    let room = channel(&mut owner, json!({})).await;
    let rid = room["_id"].as_str().unwrap().to_owned();
    let mut stranger = s.user("lc-stranger").await;
    assert!(stranger.ok("getRoomById", json!([rid])).await["code"].is_string(), "open channel: code visible");
    owner.ok("saveRoomSettings", json!([rid, "joinCode", "secret"])).await;
    let doc = stranger.ok("getRoomById", json!([rid])).await;
    assert!(doc.get("code").is_none(), "code leaked to a non-member: {doc}");
    assert!(owner.ok("getRoomById", json!([rid])).await["code"].is_string(), "members still see it");
}

/// Subscriptions the server ends (the member left or was removed, the
/// channel went private) are ended with `nosub`, never silently.
#[tokio::test]
async fn server_ended_subscriptions_get_nosub() {
    let s = TestServer::start().await;
    let mut owner = s.user("lc-subowner").await;
    let mut leaver = s.user("lc-leaver").await;
    let mut reader = s.user("lc-reader").await;
    let room = channel(&mut owner, json!({})).await;
    let rid = room["_id"].as_str().unwrap().to_owned();
    leaver.ok("joinRoom", json!([rid])).await;
    let m = leaver.sub_ok("stream-room-messages", json!([rid, false])).await;
    let p = leaver.sub_ok("stream-notify-room", json!([format!("{rid}/participants"), false])).await;
    leaver.ok("leaveRoom", json!([rid])).await;
    for id in [m, p] {
        let f = leaver.expect(|f| f["msg"] == "nosub" && f["id"] == id.as_str()).await;
        assert!(f.get("error").is_none(), "{f}");
    }
    // A signed-in non-member reading a public channel loses it when the
    // channel goes private.
    let r = reader.sub_ok("stream-room-messages", json!([rid, false])).await;
    owner.ok("saveRoomSettings", json!([rid, "roomType", "p"])).await;
    reader.expect(|f| f["msg"] == "nosub" && f["id"] == r.as_str()).await;
    owner.ok("sendMessage", json!([{"rid": rid, "msg": "private now"}])).await;
    reader
        .expect_none(std::time::Duration::from_millis(200), |f| {
            f["msg"] == "changed" && f["fields"]["args"][0]["msg"] == "private now"
        })
        .await;
}

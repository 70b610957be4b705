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
        let e = owner.err("leaveRoom", json!([rid])).await;
        assert_eq!(e["error"], "error-user-not-in-room");
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

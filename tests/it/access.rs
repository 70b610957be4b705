//! Who can reach what: every dispatched method is tried as a guest (even one
//! seated in a room) and, for room-scoped methods, as a signed-in
//! non-member of a private group. The method list is read from the
//! dispatcher, so a new method without an entry here fails this test.

use crate::support::*;
use serde_json::{Value, json};
use std::collections::BTreeSet;

fn dispatched() -> BTreeSet<String> {
    crate::docs::dispatched_methods()
}

/// Plausible params for each method aimed at room `rid`, whose member
/// `victim` (username, id) may be the target.
fn params(method: &str, rid: &str, code: &str, victim: (&str, &str)) -> Option<Value> {
    let (vname, vid) = victim;
    Some(match method {
        "login" | "logout" | "join-room" => return None,
        "createChannel" | "createPrivateGroup" => json!([unique("acc")]),
        "createDirectMessage" => json!([vname]),
        "rooms/get" | "subscriptions/get" => json!([]),
        "joinRoom"
        | "leaveRoom"
        | "endRoom"
        | "getRoomById"
        | "getRoomNameById"
        | "getRoomIdByNameOrId"
        | "archiveRoom"
        | "unarchiveRoom"
        | "hideRoom"
        | "openRoom"
        | "getRoomRoles"
        | "getRoomParticipants" => json!([rid]),
        "toggleFavorite" => json!([rid, true]),
        "saveRoomSettings" => json!([rid, {"locked": true, "joinCode": "", "roomTopic": "pwned"}]),
        "sendMessage" => json!([{"rid": rid, "msg": "intruder"}]),
        "loadHistory" => json!([rid, null, 50, null]),
        "loadMissedMessages" => json!([rid, {"$date": 0}]),
        "stream-notify-room" => json!([format!("{rid}/user-activity"), "x", ["user-typing"], {}]),
        "addUserToRoom" | "removeUserFromRoom" | "muteUserInRoom" | "unmuteUserInRoom" => {
            json!([{"rid": rid, "username": vname}])
        }
        "addUsersToRoom" => json!([{"rid": rid, "users": [vname]}]),
        "addRoomOwner"
        | "removeRoomOwner"
        | "addRoomModerator"
        | "removeRoomModerator"
        | "addRoomLeader"
        | "removeRoomLeader" => json!([rid, vid]),
        other => panic!("no access-test params for method {other}: add them here ({code})"),
    })
}

#[tokio::test]
async fn guests_reach_no_method_beyond_join_room_and_leaving() {
    let s = TestServer::start().await;
    let mut owner = s.user("acc-owner").await;
    let mut member = s.user("acc-member").await;
    let room = channel(&mut owner, json!({"guestAccess": true})).await;
    let (rid, code) = (room["_id"].as_str().unwrap().to_owned(), room["code"].as_str().unwrap().to_owned());
    member.ok("joinRoom", json!([rid])).await;
    // The strongest guest there is: seated in the room.
    let mut guest = s.guest().await;
    guest.ok("join-room", json!([{"code": code, "guestName": "Eve"}])).await;
    for m in dispatched() {
        let Some(p) = params(&m, &rid, &code, ("acc-member", "id-acc-member")) else { continue };
        if m == "leaveRoom" {
            continue; // a guest may leave its own seat; tried last
        }
        if m == "getRoomParticipants" {
            // A seated guest may see the room it is in, and nothing secret.
            let v = guest.ok(&m, p).await;
            assert!(
                v["participants"].as_array().unwrap().iter().all(|p| p.get("guestToken").is_none()),
                "{v}"
            );
            continue;
        }
        if m == "loadMissedMessages" {
            // A seated guest may catch up on what was said while it held its
            // seat (the web app's guests do), and nothing older: here its
            // own join is all there is.
            let v = guest.ok(&m, p).await;
            let got = v.as_array().unwrap_or_else(|| panic!("{v}"));
            assert!(got.iter().all(|msg| msg["t"] == "uj" && msg["msg"] == "Eve"), "{v}");
            continue;
        }
        let e = guest.err(&m, p).await;
        if m == "sendMessage" {
            // A seated guest reaches the room's rule, which refuses guests
            // unless `guestChat` is on (off here).
            assert_eq!(e["details"]["action"], "Posting as a guest", "guest reached {m}: {e}");
            continue;
        }
        assert_eq!(e["error"], "error-invalid-user", "guest reached {m}: {e}");
    }
    let h = owner.ok("loadHistory", json!([rid, null, 50, null])).await;
    assert!(h["messages"].as_array().unwrap().iter().all(|m| m["msg"] != "intruder"), "{h}");
    let doc = owner.ok("getRoomById", json!([rid])).await;
    assert_eq!(doc["locked"], false);
    assert!(doc.get("topic").is_none(), "{doc}");
    assert_eq!(doc["usersCount"], 3);
    let r = guest.call("leaveRoom", json!([rid])).await;
    assert!(r.get("error").is_none(), "a guest may leave its own seat: {r}");
}

#[tokio::test]
async fn non_members_reach_no_room_scoped_method_of_a_private_group() {
    let s = TestServer::start().await;
    let mut owner = s.user("acc-powner").await;
    let mut member = s.user("acc-pmember").await;
    let group = owner.ok("createPrivateGroup", json!([unique("acc-p"), ["acc-pmember"]])).await;
    let rid = group["_id"].as_str().unwrap().to_owned();
    let code = group["code"].as_str().unwrap().to_owned();
    member.sub_ok("stream-room-messages", json!([rid, false])).await;
    member.sub_ok("stream-notify-room", json!([format!("{rid}/user-activity"), false])).await;
    let mut outsider = s.user("acc-outsider").await;
    // Not room-scoped, or allowed to anyone signed in by design.
    let unscoped =
        ["createChannel", "createPrivateGroup", "createDirectMessage", "rooms/get", "subscriptions/get"];
    for m in dispatched() {
        if unscoped.contains(&m.as_str()) {
            continue;
        }
        let Some(p) = params(&m, &rid, &code, ("acc-pmember", "id-acc-pmember")) else { continue };
        let r = outsider.call(&m, p).await;
        if m == "stream-notify-room" {
            // Answered like Rocket.Chat (no error), but nobody hears it.
            assert!(r.get("error").is_none(), "{r}");
            continue;
        }
        assert!(r.get("error").is_some(), "non-member reached {m} on a private group: {r}");
    }
    member
        .expect_none(std::time::Duration::from_millis(300), |f| {
            f["msg"] == "changed" && f["fields"]["eventName"] == format!("{rid}/user-activity").as_str()
        })
        .await;
    let doc = owner.ok("getRoomById", json!([rid])).await;
    assert_eq!(doc["locked"], false);
    assert_eq!(doc["usersCount"], 2);
    assert_eq!(doc["archived"], false);
    assert!(doc.get("topic").is_none(), "{doc}");
    let roles = owner.ok("getRoomRoles", json!([rid])).await;
    assert_eq!(roles.as_array().unwrap().len(), 1, "only the owner holds a role: {roles}");
    let hist = owner.ok("loadHistory", json!([rid, null, 50, null])).await;
    assert!(hist["messages"].as_array().unwrap().iter().all(|m| m["msg"] != "intruder"));
}

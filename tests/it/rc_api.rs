//! The Rocket.Chat rooms API beyond room entry: direct messages, room and
//! subscription lists, favourites, roles, mute, message rules, typing and
//! the user-scoped streams.

use crate::support::*;
use serde_json::{Value, json};
use std::time::Duration;

const QUIET: Duration = Duration::from_millis(200);

async fn rid_of(doc: &Value) -> String {
    doc["_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn direct_messages_are_shared_and_closed() {
    let s = TestServer::start().await;
    let mut a = s.user("rc-a").await;
    let mut b = s.user("rc-b").await;
    let dm = a.ok("createDirectMessage", json!(["rc-b"])).await;
    assert_eq!(dm["t"], "d");
    assert_eq!(dm["rid"], dm["_id"]);
    assert_eq!(dm["usernames"], json!(["rc-a", "rc-b"]));
    let again = b.ok("createDirectMessage", json!(["rc-a"])).await;
    assert_eq!(again["_id"], dm["_id"], "the same pair gets the same room");
    let rid = rid_of(&dm).await;
    assert_eq!(a.err("leaveRoom", json!([rid])).await["error"], "error-action-not-allowed");
    let mut c = s.user("rc-c").await;
    assert_eq!(c.err("joinRoom", json!([rid])).await["error"], "error-not-allowed");
    let e = a.err("addUserToRoom", json!([{"rid": rid, "username": "rc-c"}])).await;
    assert_eq!(e["error"], "error-cant-invite-for-direct-room");
    assert_eq!(a.err("createDirectMessage", json!(["nobody"])).await["error"], "error-invalid-username");
}

#[tokio::test]
async fn room_and_subscription_lists_flags_and_dates() {
    let s = TestServer::start().await;
    let mut a = s.user("rc-lists").await;
    let r1 = rid_of(&channel(&mut a, json!({})).await).await;
    let r2 = rid_of(&a.ok("createPrivateGroup", json!([unique("grp")])).await).await;
    let rooms = a.ok("rooms/get", json!([])).await;
    let ids: Vec<&str> = rooms.as_array().unwrap().iter().filter_map(|r| r["_id"].as_str()).collect();
    assert!(ids.contains(&r1.as_str()) && ids.contains(&r2.as_str()), "{rooms}");
    let future = json!({"$date": 4_102_444_800_000i64});
    assert_eq!(a.ok("rooms/get", json!([future])).await, json!({"update": [], "remove": []}));
    let past = a.ok("rooms/get", json!([{"$date": 0}])).await;
    assert_eq!(past["update"].as_array().unwrap().len(), 2);

    assert_eq!(a.ok("toggleFavorite", json!([r1, true])).await, 1);
    assert_eq!(a.ok("hideRoom", json!([r2])).await, 1);
    let subs = a.ok("subscriptions/get", json!([])).await;
    let sub = |rid: &str| subs.as_array().unwrap().iter().find(|s| s["rid"] == rid).cloned().unwrap();
    assert_eq!(sub(&r1)["f"], true);
    assert_eq!(sub(&r2)["open"], false);
    assert_eq!(sub(&r1)["roles"], json!(["owner"]));
    a.ok("openRoom", json!([r2])).await;
    let subs = a.ok("subscriptions/get", json!([])).await;
    assert!(subs.as_array().unwrap().iter().any(|s| s["rid"] == r2.as_str() && s["open"] == true));
}

#[tokio::test]
async fn roles_and_their_errors() {
    let s = TestServer::start().await;
    let mut a = s.user("rc-owner").await;
    let mut b = s.user("rc-mod").await;
    let rid = rid_of(&channel(&mut a, json!({})).await).await;
    b.ok("joinRoom", json!([rid])).await;
    a.sub_ok("stream-room-messages", json!([rid, false])).await;
    assert_eq!(b.err("addRoomModerator", json!([rid, "id-rc-owner"])).await["error"], "error-not-allowed");
    assert_eq!(a.ok("addRoomModerator", json!([rid, "id-rc-mod"])).await, true);
    let m = a.room_message(&rid).await;
    assert_eq!(m["t"], "subscription-role-added");
    assert_eq!(m["role"], "moderator");
    assert_eq!(m["msg"], "rc-mod");
    assert_eq!(
        a.err("addRoomModerator", json!([rid, "id-rc-mod"])).await["error"],
        "error-user-already-moderator"
    );
    assert_eq!(a.err("removeRoomLeader", json!([rid, "id-rc-mod"])).await["error"], "error-user-not-leader");
    assert_eq!(a.err("addRoomOwner", json!([rid, "id-nobody"])).await["error"], "error-user-not-in-room");
    assert_eq!(
        a.err("removeRoomOwner", json!([rid, "id-rc-owner"])).await["error"],
        "error-remove-last-owner"
    );
    let roles = a.ok("getRoomRoles", json!([rid])).await;
    assert!(
        roles
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["u"]["_id"] == "id-rc-mod" && r["roles"] == json!(["moderator"]))
    );
    a.ok("removeRoomModerator", json!([rid, "id-rc-mod"])).await;
    assert_eq!(a.room_message(&rid).await["t"], "subscription-role-removed");
}

#[tokio::test]
async fn message_rules() {
    let s = TestServer::with_limits(|l| l.max_message_len = 10).await;
    let mut a = s.user("rc-poster").await;
    let mut b = s.user("rc-reader").await;
    let rid = rid_of(&channel(&mut a, json!({})).await).await;
    assert_eq!(
        b.err("sendMessage", json!([{"rid": rid, "msg": "hi"}])).await["error"],
        "error-user-not-in-room"
    );
    b.ok("joinRoom", json!([rid])).await;
    let m = a.ok("sendMessage", json!([{"_id": "client-id-1", "rid": rid, "msg": "hello"}])).await;
    assert_eq!(m["_id"], "client-id-1");
    assert_eq!(m["u"]["username"], "rc-poster");
    assert!(m["ts"]["$date"].is_i64() && m["urls"] == json!([]) && m["md"] == json!([]));
    let dup = a.err("sendMessage", json!([{"_id": "client-id-1", "rid": rid, "msg": "again"}])).await;
    assert_eq!(dup["error"], "error-message-already-exists");
    let long = a.err("sendMessage", json!([{"rid": rid, "msg": "x".repeat(11)}])).await;
    assert_eq!(long["error"], "error-message-size-exceeded");
    a.ok("muteUserInRoom", json!([{"rid": rid, "username": "rc-reader"}])).await;
    assert_eq!(
        b.err("sendMessage", json!([{"rid": rid, "msg": "hi"}])).await["error"],
        "error-action-not-allowed"
    );
    a.ok("unmuteUserInRoom", json!([{"rid": rid, "username": "rc-reader"}])).await;
    b.ok("sendMessage", json!([{"rid": rid, "msg": "hi"}])).await;
    a.ok("saveRoomSettings", json!([rid, "readOnly", true])).await;
    assert_eq!(
        b.err("sendMessage", json!([{"rid": rid, "msg": "hi"}])).await["error"],
        "error-action-not-allowed"
    );
    a.ok("sendMessage", json!([{"rid": rid, "msg": "owner ok"}])).await;
    a.ok("archiveRoom", json!([rid])).await;
    assert_eq!(
        a.err("sendMessage", json!([{"rid": rid, "msg": "late"}])).await["error"],
        "error-room-archived"
    );

    // History: newest first, system messages included, `end` pages back.
    let h = a.ok("loadHistory", json!([rid, null, 50, null])).await;
    let msgs = h["messages"].as_array().unwrap();
    assert_eq!(h["unreadNotLoaded"], 0);
    assert_eq!(msgs[0]["t"], "room-archived");
    assert!(msgs.iter().any(|m| m["t"] == "uj") && msgs.iter().any(|m| m["msg"] == "hello"));
    let ts: Vec<i64> = msgs.iter().map(|m| m["ts"]["$date"].as_i64().unwrap()).collect();
    assert!(ts.windows(2).all(|w| w[0] >= w[1]), "newest first: {ts:?}");
    let older = a.ok("loadHistory", json!([rid, {"$date": ts[0]}, 2, null])).await;
    assert!(older["messages"].as_array().unwrap().len() <= 2);
    assert!(older["messages"].as_array().unwrap().iter().all(|m| m["ts"]["$date"].as_i64().unwrap() < ts[0]));
}

#[tokio::test]
async fn typing_reaches_others_only_and_only_in_ones_own_name() {
    let s = TestServer::start().await;
    let mut a = s.user("rc-typist").await;
    let mut b = s.user("rc-watcher").await;
    let rid = rid_of(&channel(&mut a, json!({})).await).await;
    b.ok("joinRoom", json!([rid])).await;
    let ev = format!("{rid}/user-activity");
    a.sub_ok("stream-notify-room", json!([ev, false])).await;
    b.sub_ok("stream-notify-room", json!([ev, false])).await;
    b.sub_ok("stream-notify-room", json!([format!("{rid}/typing"), false])).await;
    let r = a.call("stream-notify-room", json!([ev, "rc-typist", ["user-typing"], {}])).await;
    assert!(r.get("error").is_none() && r.get("result").is_none(), "{r}");
    let f = b.event("stream-notify-room", &ev).await;
    assert_eq!(f["fields"]["args"], json!(["rc-typist", ["user-typing"], {}]));
    a.expect_none(QUIET, |f| f["msg"] == "changed").await;
    // Someone else's name: ignored without error, nobody hears it.
    a.ok("stream-notify-room", json!([ev, "rc-watcher", ["user-typing"], {}])).await;
    b.expect_none(QUIET, |f| f["msg"] == "changed").await;
    // The legacy event.
    a.call("stream-notify-room", json!([format!("{rid}/typing"), "rc-typist", true])).await;
    let f = b.event("stream-notify-room", &format!("{rid}/typing")).await;
    assert_eq!(f["fields"]["args"], json!(["rc-typist", true]));
}

#[tokio::test]
async fn user_streams_follow_rooms_memberships_messages_presence_and_roles() {
    let s = TestServer::start().await;
    let mut a = s.user("rc-streamer").await;
    let mut b = s.user("rc-listener").await;
    let uid = "id-rc-listener";
    b.sub_ok("stream-notify-user", json!([format!("{uid}/rooms-changed"), false])).await;
    b.sub_ok("stream-notify-user", json!([format!("{uid}/subscriptions-changed"), false])).await;
    b.sub_ok("stream-room-messages", json!(["__my_messages__", false])).await;
    b.sub_ok("stream-notify-logged", json!(["user-status", false])).await;
    b.sub_ok("stream-notify-logged", json!(["roles-change", false])).await;
    // Another user's stream is not readable.
    let r = b.sub("stream-notify-user", json!(["id-rc-streamer/rooms-changed", false])).await;
    assert_eq!(r["msg"], "nosub");

    let rid = rid_of(&channel(&mut a, json!({})).await).await;
    a.ok("addUserToRoom", json!([{"rid": rid, "username": "rc-listener"}])).await;
    let f = b.event("stream-notify-user", &format!("{uid}/subscriptions-changed")).await;
    assert_eq!(f["fields"]["args"][0], "inserted");
    assert_eq!(f["fields"]["args"][1]["rid"], rid.as_str());
    let f = b.event("stream-notify-user", &format!("{uid}/rooms-changed")).await;
    assert_eq!(f["fields"]["args"][0], "inserted");

    a.ok("sendMessage", json!([{"rid": rid, "msg": "to all my rooms"}])).await;
    let f = b
        .expect(|f| {
            f["fields"]["eventName"] == "__my_messages__"
                && f["fields"]["args"][0]["msg"] == "to all my rooms"
        })
        .await;
    assert_eq!(f["fields"]["args"][1]["roomType"], "c");

    a.ok("addRoomLeader", json!([rid, uid])).await;
    let f = b.event("stream-notify-logged", "roles-change").await;
    assert_eq!(f["fields"]["args"][0]["type"], "added");
    assert_eq!(f["fields"]["args"][0]["_id"], "leader");
    assert_eq!(f["fields"]["args"][0]["scope"], rid.as_str());

    let c = s.user("rc-newcomer").await;
    let f = b
        .expect(|f| {
            f["fields"]["eventName"] == "user-status" && f["fields"]["args"][0][0] == "id-rc-newcomer"
        })
        .await;
    assert_eq!(f["fields"]["args"][0][2], 1, "online");
    c.close().await;
    let f = b
        .expect(|f| {
            f["fields"]["eventName"] == "user-status" && f["fields"]["args"][0][0] == "id-rc-newcomer"
        })
        .await;
    assert_eq!(f["fields"]["args"][0][2], 0, "offline");

    a.ok("removeUserFromRoom", json!([{"rid": rid, "username": "rc-listener"}])).await;
    let f = b
        .expect(|f| {
            f["fields"]["eventName"] == format!("{uid}/subscriptions-changed").as_str()
                && f["fields"]["args"][0] == "removed"
        })
        .await;
    assert_eq!(f["fields"]["args"][1]["rid"], rid.as_str());
}

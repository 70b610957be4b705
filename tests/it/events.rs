//! Membership events: system messages on `stream-room-messages`, the meeting
//! view on `stream-notify-room` `<rid>/participants`, who may subscribe, and
//! delivery order and uniqueness.

use crate::support::*;
use serde_json::{Value, json};
use std::time::Duration;

const QUIET: Duration = Duration::from_millis(300);

async fn new_channel(owner: &mut Client, extra: Value) -> (String, String) {
    let doc = channel(owner, extra).await;
    (doc["_id"].as_str().unwrap().to_owned(), doc["code"].as_str().unwrap().to_owned())
}

fn participants(rid: &str) -> String {
    format!("{rid}/participants")
}

/// Checks the fields every message object must carry (clients crash without
/// them) and the Rocket.Chat system-message shape.
fn assert_system_message(m: &Value, rid: &str, t: &str) {
    assert!(m["_id"].as_str().is_some_and(|s| !s.is_empty()), "_id: {m}");
    assert_eq!(m["rid"], rid, "{m}");
    assert_eq!(m["t"], t, "{m}");
    assert!(m["msg"].is_string(), "msg must be a string: {m}");
    assert!(m["u"]["_id"].as_str().is_some_and(|s| !s.is_empty()), "u._id: {m}");
    assert!(m["u"]["username"].is_string(), "u.username: {m}");
    assert!(is_recent_date(&m["ts"]), "ts: {m}");
    assert!(is_recent_date(&m["_updatedAt"]), "_updatedAt: {m}");
    assert_eq!(m["groupable"], false, "{m}");
}

#[tokio::test]
async fn join_and_leave_system_messages() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let (rid, _) = new_channel(&mut alice, json!({})).await;
    alice.sub_ok("stream-room-messages", json!([rid, false])).await;
    let mut bob = s.user("bob").await;
    bob.ok("joinRoom", json!([rid])).await;
    let uj = alice.room_message(&rid).await;
    assert_system_message(&uj, &rid, "uj");
    assert_eq!(uj["msg"], "bob");
    assert_eq!(uj["u"], json!({"_id": "id-bob", "username": "bob", "name": "bob Name"}));
    bob.call("leaveRoom", json!([rid])).await;
    let ul = alice.room_message(&rid).await;
    assert_system_message(&ul, &rid, "ul");
    assert_eq!(ul["msg"], "bob");
    assert_eq!(ul["u"]["_id"], "id-bob");
    assert_ne!(uj["_id"], ul["_id"]);
}

#[tokio::test]
async fn join_by_code_announces_uj_too() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let (rid, code) = new_channel(&mut alice, json!({})).await;
    alice.sub_ok("stream-room-messages", json!([rid, false])).await;
    let mut bob = s.user("bob").await;
    bob.ok("join-room", json!([{"code": code}])).await;
    let uj = alice.room_message(&rid).await;
    assert_system_message(&uj, &rid, "uj");
    assert_eq!(uj["u"]["_id"], "id-bob");
}

#[tokio::test]
async fn added_and_removed_by_someone_system_messages() {
    let s = TestServer::start().await;
    let _bob = s.user("bob").await;
    let mut alice = s.user("alice").await;
    let (rid, _) = new_channel(&mut alice, json!({})).await;
    alice.sub_ok("stream-room-messages", json!([rid, false])).await;
    alice.ok("addUserToRoom", json!([{"rid": rid, "username": "bob"}])).await;
    let au = alice.room_message(&rid).await;
    assert_system_message(&au, &rid, "au");
    assert_eq!(au["msg"], "bob");
    assert_eq!(au["u"]["_id"], "id-alice", "by whom: {au}");
    alice.ok("removeUserFromRoom", json!([{"rid": rid, "username": "bob"}])).await;
    let ru = alice.room_message(&rid).await;
    assert_system_message(&ru, &rid, "ru");
    assert_eq!(ru["msg"], "bob");
    assert_eq!(ru["u"]["_id"], "id-alice");
    assert_eq!(alice.room(&rid).await["usersCount"], 1);
}

#[tokio::test]
async fn settings_end_and_capacity_system_messages() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let (rid, _) = new_channel(&mut alice, json!({})).await;
    let mut bob = s.user("bob").await;
    bob.ok("joinRoom", json!([rid])).await;
    bob.sub_ok("stream-room-messages", json!([rid, false])).await;
    alice.ok("saveRoomSettings", json!([rid, "locked", true])).await;
    alice.ok("saveRoomSettings", json!([rid, "locked", false])).await;
    alice.ok("saveRoomSettings", json!([rid, "maxParticipants", 5])).await;
    alice.ok("saveRoomSettings", json!([rid, "roomTopic", "news"])).await;
    alice.ok("saveRoomSettings", json!([rid, "joinCode", "secret-code"])).await;
    alice.call("endRoom", json!([rid])).await;
    let mut seen = Vec::new();
    for _ in 0..6 {
        let m = bob.room_message(&rid).await;
        assert!(m["t"].is_string(), "{m}");
        let t = m["t"].as_str().unwrap().to_owned();
        assert_system_message(&m, &rid, &t);
        assert_eq!(m["u"]["_id"], "id-alice", "{m}");
        assert!(!m.to_string().contains("secret-code"), "join code leaked: {m}");
        seen.push((t, m["msg"].clone()));
    }
    let types: Vec<&str> = seen.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(types[0], "room-locked");
    assert_eq!(types[1], "room-unlocked");
    assert_eq!(types[2], "room-max-participants-changed");
    assert_eq!(seen[2].1, "5");
    assert_eq!(types[3], "room_changed_topic");
    assert_eq!(seen[3].1, "news");
    assert_eq!(types[5], "room-ended");
    assert_eq!(seen[0].1, "");
    assert_eq!(seen[5].1, "");
}

#[tokio::test]
async fn unchanged_setting_posts_nothing() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let (rid, _) = new_channel(&mut alice, json!({})).await;
    alice.sub_ok("stream-room-messages", json!([rid, false])).await;
    alice.ok("saveRoomSettings", json!([rid, "locked", false])).await;
    alice.expect_none(QUIET, |f| f["msg"] == "changed").await;
}

#[tokio::test]
async fn participant_events_joined_left_and_room_updated() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let (rid, code) = new_channel(&mut alice, json!({"maxParticipants": 4, "guestAccess": true})).await;
    let ev = participants(&rid);
    alice.sub_ok("stream-notify-room", json!([ev, false])).await;
    let mut bob = s.user("bob").await;
    let p = bob.ok("join-room", json!([{"code": code}])).await;

    let joined = alice.event("stream-notify-room", &ev).await;
    assert_eq!(joined["id"], "id");
    let args = &joined["fields"]["args"];
    assert_eq!(args[0], "joined");
    assert_eq!(args[1]["id"], p["id"]);
    assert_eq!(args[1]["userId"], "id-bob");
    assert_eq!(args[1]["isActive"], true);
    assert_eq!(args[1]["leftAt"], Value::Null);
    let mut upd = alice.event("stream-notify-room", &ev).await;
    // The event's position, in the frame and in the object alike.
    let seq = upd["fields"]["seq"].clone();
    assert!(seq.as_u64().is_some(), "{upd}");
    assert_eq!(upd["fields"]["args"][1].as_object_mut().unwrap().remove("seq"), Some(seq));
    assert_eq!(
        upd["fields"]["args"],
        json!(["room-updated", {"isLocked": false, "isActive": true, "maxParticipants": 4, "participantCount": 2}])
    );

    bob.call("leaveRoom", json!([rid])).await;
    let left = alice.event("stream-notify-room", &ev).await;
    let args = &left["fields"]["args"];
    assert_eq!(args[0], "left");
    assert_eq!(args[1]["id"], p["id"]);
    assert_eq!(args[1]["isActive"], false);
    assert!(is_iso8601(&args[1]["leftAt"]), "{left}");
    let upd = alice.event("stream-notify-room", &ev).await;
    assert_eq!(upd["fields"]["args"][1]["participantCount"], 1);

    alice.ok("saveRoomSettings", json!([rid, "locked", true])).await;
    let upd = alice.event("stream-notify-room", &ev).await;
    assert_eq!(upd["fields"]["args"][0], "room-updated");
    assert_eq!(upd["fields"]["args"][1]["isLocked"], true);
    alice.ok("saveRoomSettings", json!([rid, "maxParticipants", 9])).await;
    let upd = alice.event("stream-notify-room", &ev).await;
    assert_eq!(upd["fields"]["args"][1]["maxParticipants"], 9);
    alice.call("endRoom", json!([rid])).await;
    let upd = alice.event("stream-notify-room", &ev).await;
    assert_eq!(upd["fields"]["args"][1]["isActive"], false);
}

#[tokio::test]
async fn events_reach_other_members_in_order() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let (rid, _) = new_channel(&mut alice, json!({})).await;
    let mut watchers = Vec::new();
    for name in ["w1", "w2"] {
        let mut w = s.user(name).await;
        w.ok("joinRoom", json!([rid])).await;
        watchers.push(w);
    }
    for w in &mut watchers {
        w.sub_ok("stream-room-messages", json!([rid, false])).await;
    }
    let names: Vec<String> = (0..8).map(|i| format!("joiner{i}")).collect();
    let mut joiners = Vec::new();
    for n in &names {
        let mut c = s.user(n).await;
        c.ok("joinRoom", json!([rid])).await;
        joiners.push(c);
    }
    alice.ok("saveRoomSettings", json!([rid, "locked", true])).await;
    for c in joiners.iter_mut().take(3) {
        c.call("leaveRoom", json!([rid])).await;
    }
    let mut expected: Vec<(String, String)> = names.iter().map(|n| ("uj".into(), n.clone())).collect();
    expected.push(("room-locked".into(), String::new()));
    for n in names.iter().take(3) {
        expected.push(("ul".into(), n.clone()));
    }
    for w in &mut watchers {
        let mut got = Vec::new();
        for _ in 0..expected.len() {
            let m = w.room_message(&rid).await;
            got.push((m["t"].as_str().unwrap_or("").to_owned(), m["msg"].as_str().unwrap_or("").to_owned()));
        }
        assert_eq!(got, expected);
        w.expect_none(Duration::from_millis(100), |f| f["msg"] == "changed").await;
    }
}

#[tokio::test]
async fn subscribing_requires_membership() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let (cid, _) = new_channel(&mut alice, json!({})).await;
    let gid = alice.ok("createPrivateGroup", json!([unique("g")])).await["_id"].as_str().unwrap().to_owned();
    let mut bob = s.user("bob").await;
    for (name, ev) in [
        ("stream-room-messages", gid.clone()),
        ("stream-notify-room", participants(&gid)),
        ("stream-notify-room", participants(&cid)),
        ("stream-room-messages", "NoSuchRoom1234567".to_owned()),
    ] {
        let r = bob.sub(name, json!([ev, false])).await;
        assert_eq!(r["msg"], "nosub", "{name} {ev}: {r}");
        assert_eq!(r["error"]["error"], "not-allowed", "{r}");
        assert_eq!(r["error"]["errorType"], "Meteor.Error", "{r}");
    }
    // Members may.
    alice.sub_ok("stream-room-messages", json!([gid, false])).await;
    alice.sub_ok("stream-notify-room", json!([participants(&gid), false])).await;
}

/// Issue 2 asks for membership on every room stream; issue 3 (the complete
/// Rocket.Chat rooms API) refines it: the messages of a public channel are
/// readable by any signed-in user, as in Rocket.Chat's channel preview.
/// Everything else still needs membership: a public channel's participants,
/// a private group's messages, and any stream for a guest who is not in the
/// room.
#[tokio::test]
async fn public_channel_messages_are_readable_by_signed_in_non_members_only() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let (cid, _) = new_channel(&mut alice, json!({"guestAccess": true})).await;
    let group = alice.ok("createPrivateGroup", json!([unique("grp")])).await;
    let gid = group["_id"].as_str().unwrap().to_owned();
    let mut bob = s.user("bob").await;
    let r = bob.sub("stream-room-messages", json!([cid, false])).await;
    assert_eq!(r["msg"], "ready", "{r}");
    alice.ok("sendMessage", json!([{"rid": cid, "msg": "hello readers"}])).await;
    assert_eq!(bob.room_message(&cid).await["msg"], "hello readers");
    for (stream, event) in
        [("stream-notify-room", format!("{cid}/participants")), ("stream-room-messages", gid.clone())]
    {
        let r = bob.sub(stream, json!([event, false])).await;
        assert_eq!(r["msg"], "nosub", "{stream} {event}: {r}");
        assert_eq!(r["error"]["error"], "not-allowed", "{r}");
    }
    // A guest in another room may not read this one.
    let other = new_channel(&mut alice, json!({"guestAccess": true})).await;
    let mut guest = s.guest().await;
    guest.ok("join-room", json!([{"code": other.1, "guestName": "G"}])).await;
    let r = guest.sub("stream-room-messages", json!([cid, false])).await;
    assert_eq!(r["msg"], "nosub", "{r}");
}

#[tokio::test]
async fn subscribe_right_after_join_sees_all_later_events() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let (rid, _) = new_channel(&mut alice, json!({})).await;
    let mut bob = s.user("bob").await;
    // Pipelined: join and subscribe in one go, while others keep joining.
    let mut others = Vec::new();
    for i in 0..5 {
        others.push(s.user(&format!("o{i}")).await);
    }
    let join = bob.send_method("joinRoom", json!([rid])).await;
    bob.send(json!({"msg": "sub", "id": "bs", "name": "stream-room-messages", "params": [rid, false]})).await;
    let mut handles = Vec::new();
    for mut o in others {
        let rid = rid.clone();
        handles.push(tokio::spawn(async move {
            o.ok("joinRoom", json!([rid])).await;
            o
        }));
    }
    let r = bob.result_of(&join).await;
    assert_eq!(r["result"], true, "{r}");
    bob.expect(|f| f["msg"] == "ready" && f["subs"][0] == "bs").await;
    for h in handles {
        h.await.unwrap();
    }
    // Now everything after is seen, in order.
    alice.ok("saveRoomSettings", json!([rid, "locked", true])).await;
    let mut late = s.user("late").await;
    alice.ok("saveRoomSettings", json!([rid, "locked", false])).await;
    late.ok("joinRoom", json!([rid])).await;
    let mut tail = Vec::new();
    loop {
        let m = bob.room_message(&rid).await;
        let t = m["t"].as_str().unwrap_or("").to_owned();
        let done = t == "uj" && m["msg"] == "late";
        tail.push(t);
        if done {
            break;
        }
    }
    let n = tail.len();
    assert!(n >= 3, "{tail:?}");
    assert_eq!(&tail[n - 3..], ["room-locked", "room-unlocked", "uj"], "{tail:?}");
    // Only joins of o0..o4 (racing the subscribe) may precede the lock.
    assert!(tail[..n - 3].iter().all(|t| t == "uj"), "{tail:?}");
}

#[tokio::test]
async fn joiner_subscribed_in_same_batch_sees_later_join_and_no_duplicates() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let (rid, code) = new_channel(&mut alice, json!({"guestAccess": true})).await;
    let mut g = s.guest().await;
    g.ok("join-room", json!([{"code": code, "guestName": "Jane"}])).await;
    g.sub_ok("stream-room-messages", json!([rid, false])).await;
    let mut bob = s.user("bob").await;
    bob.ok("joinRoom", json!([rid])).await;
    let m = g.room_message(&rid).await;
    assert_eq!(m["t"], "uj");
    assert_eq!(m["msg"], "bob");
    g.expect_none(QUIET, |f| f["msg"] == "changed").await;
}

#[tokio::test]
async fn no_duplicate_delivery_when_subscribed_twice() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let (rid, _) = new_channel(&mut alice, json!({})).await;
    let s1 = alice.sub_ok("stream-room-messages", json!([rid, false])).await;
    let _s2 = alice.sub_ok("stream-room-messages", json!([rid, true])).await;
    let added = alice.expect(|f| f["msg"] == "added").await;
    assert_eq!(added["fields"]["eventName"], rid.as_str());
    let ev = participants(&rid);
    alice.sub_ok("stream-notify-room", json!([ev, false])).await;
    alice.sub_ok("stream-notify-room", json!([ev, false])).await;
    let mut bob = s.user("bob").await;
    bob.ok("joinRoom", json!([rid])).await;
    assert_eq!(alice.room_message(&rid).await["t"], "uj");
    assert_eq!(alice.event("stream-notify-room", &ev).await["fields"]["args"][0], "joined");
    assert_eq!(alice.event("stream-notify-room", &ev).await["fields"]["args"][0], "room-updated");
    alice.expect_none(QUIET, |f| f["msg"] == "changed").await;
    // Dropping one of the two subs keeps the other delivering, once.
    alice.send(json!({"msg": "unsub", "id": s1})).await;
    alice.expect(|f| f["msg"] == "nosub" && f["id"] == s1.as_str()).await;
    bob.call("leaveRoom", json!([rid])).await;
    assert_eq!(alice.room_message(&rid).await["t"], "ul");
    alice.expect_none(QUIET, |f| f["msg"] == "changed" && f["collection"] == "stream-room-messages").await;
}

#[tokio::test]
async fn unsubscribed_connection_gets_nothing() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let (rid, _) = new_channel(&mut alice, json!({})).await;
    let sid = alice.sub_ok("stream-room-messages", json!([rid, false])).await;
    alice.send(json!({"msg": "unsub", "id": sid})).await;
    alice.expect(|f| f["msg"] == "nosub").await;
    let mut bob = s.user("bob").await;
    bob.ok("joinRoom", json!([rid])).await;
    alice.expect_none(QUIET, |f| f["msg"] == "changed").await;
}

#[tokio::test]
async fn leaver_stops_receiving() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let (rid, _) = new_channel(&mut alice, json!({})).await;
    let mut bob = s.user("bob").await;
    bob.ok("joinRoom", json!([rid])).await;
    bob.sub_ok("stream-room-messages", json!([rid, false])).await;
    bob.sub_ok("stream-notify-room", json!([participants(&rid), false])).await;
    bob.call("leaveRoom", json!([rid])).await;
    let mut carol = s.user("carol").await;
    carol.ok("joinRoom", json!([rid])).await;
    alice.ok("saveRoomSettings", json!([rid, "locked", true])).await;
    bob.expect_none(QUIET, |f| {
        f["msg"] == "changed"
            && (f["fields"]["args"][0]["msg"] == "carol" || f["fields"]["args"][0]["t"] == "room-locked")
    })
    .await;
    bob.expect_none(Duration::from_millis(50), |f| {
        f["collection"] == "stream-notify-room" && f["fields"]["args"][0] == "joined"
    })
    .await;
    // And may not subscribe again while out.
    let r = bob.sub("stream-notify-room", json!([participants(&rid), false])).await;
    assert_eq!(r["msg"], "nosub", "{r}");
}

#[tokio::test]
async fn ended_room_members_are_told_and_keep_no_extra_events() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let (rid, code) = new_channel(&mut alice, json!({"guestAccess": true})).await;
    let mut g = s.guest().await;
    g.ok("join-room", json!([{"code": code, "guestName": "Jane"}])).await;
    g.sub_ok("stream-room-messages", json!([rid, false])).await;
    g.sub_ok("stream-notify-room", json!([participants(&rid), false])).await;
    alice.call("endRoom", json!([rid])).await;
    let m = g.room_message(&rid).await;
    assert_system_message(&m, &rid, "room-ended");
    let u = g.event("stream-notify-room", &participants(&rid)).await;
    assert_eq!(u["fields"]["args"][1]["isActive"], false);
}

/// `roles-change` about a private group reaches its members only: other
/// signed-in users never learn the group's id or who holds roles in it.
/// A public channel's role changes still reach every signed-in user.
#[tokio::test]
async fn roles_change_of_a_private_group_reaches_members_only() {
    let s = TestServer::start().await;
    let mut owner = s.user("rc-priv-owner").await;
    let mut member = s.user("rc-priv-member").await;
    let mut outsider = s.user("rc-priv-outsider").await;
    for c in [&mut owner, &mut member, &mut outsider] {
        c.sub_ok("stream-notify-logged", json!(["roles-change", false])).await;
    }
    let group = owner.ok("createPrivateGroup", json!([unique("secret"), ["rc-priv-member"]])).await;
    let gid = group["_id"].as_str().unwrap().to_owned();
    owner.ok("addRoomModerator", json!([gid, "id-rc-priv-member"])).await;
    let f = member.event("stream-notify-logged", "roles-change").await;
    assert_eq!(f["fields"]["args"][0]["scope"], gid.as_str(), "{f}");
    let f = owner.event("stream-notify-logged", "roles-change").await;
    assert_eq!(f["fields"]["args"][0]["scope"], gid.as_str(), "{f}");

    // A public channel's change afterwards: the outsider's first
    // roles-change must be this one, not the group's.
    let rid = channel(&mut owner, json!({})).await["_id"].as_str().unwrap().to_owned();
    owner.ok("addUserToRoom", json!([{"rid": rid, "username": "rc-priv-member"}])).await;
    owner.ok("addRoomLeader", json!([rid, "id-rc-priv-member"])).await;
    let f = outsider.event("stream-notify-logged", "roles-change").await;
    assert_eq!(f["fields"]["args"][0]["scope"], rid.as_str(), "the private group leaked: {f}");
    assert!(!outsider.take_pending().iter().any(|f| f.to_string().contains(&gid)));
}

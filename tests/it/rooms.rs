//! Room methods: createChannel / createPrivateGroup, joinRoom, leaveRoom,
//! saveRoomSettings, endRoom, getRoomById, getRoomIdByNameOrId.

use crate::support::*;
use serde_json::{Value, json};
use std::time::Duration;

const METEOR_ALPHABET: &str = "23456789ABCDEFGHJKLMNPQRSTWXYZabcdefghijkmnopqrstuvwxyz";

fn rid(doc: &Value) -> String {
    doc["_id"].as_str().expect("room _id").to_owned()
}

fn is_room_code(v: &Value) -> bool {
    let Some(s) = v.as_str() else { return false };
    s.len() == 11
        && s.char_indices().all(|(i, c)| if i == 3 || i == 7 { c == '-' } else { c.is_ascii_lowercase() })
}

/// A channel owned by `owner` with `members` (who must have logged in once).
async fn channel_with(owner: &mut Client, members: &[&str], extra: Value) -> Value {
    owner.ok("createChannel", json!([unique("room"), members, false, {}, extra])).await
}

// ---- createChannel / createPrivateGroup ---------------------------------------

#[tokio::test]
async fn create_channel_result_shape() {
    let s = TestServer::start().await;
    let mut c = s.user("alice").await;
    let name = unique("general");
    let doc = c.ok("createChannel", json!([name, [], false, {"team": "blue"}, {}])).await;
    let id = doc["_id"].as_str().expect("_id");
    assert_eq!(id.chars().count(), 17, "{doc}");
    assert!(id.chars().all(|ch| METEOR_ALPHABET.contains(ch)), "{doc}");
    assert_eq!(doc["rid"], id);
    assert_eq!(doc["inserted"], true);
    assert_eq!(doc["name"], name.as_str());
    assert_eq!(doc["fname"], name.as_str());
    assert_eq!(doc["t"], "c");
    assert_eq!(doc["msgs"], 0);
    assert_eq!(doc["usersCount"], 1);
    assert_eq!(doc["u"], json!({"_id": "id-alice", "username": "alice"}));
    assert!(is_recent_date(&doc["ts"]), "{doc}");
    assert!(is_recent_date(&doc["_updatedAt"]), "{doc}");
    assert_eq!(doc["ro"], false);
    assert_eq!(doc["default"], false);
    assert_eq!(doc["sysMes"], true);
    assert_eq!(doc["customFields"], json!({"team": "blue"}));
    assert!(is_room_code(&doc["code"]), "{doc}");
    assert_eq!(doc["locked"], false);
    assert_eq!(doc["maxParticipants"], Value::Null);
    assert_eq!(doc["active"], true);
    assert_eq!(doc["joinCodeRequired"], false);
    assert_eq!(doc["guestAccess"], false);
    assert_eq!(doc["hostId"], "id-alice");
}

#[tokio::test]
async fn create_private_group_is_type_p_and_caller_is_owner_member() {
    let s = TestServer::start().await;
    let mut c = s.user("alice").await;
    let doc = c.ok("createPrivateGroup", json!([unique("grp")])).await;
    assert_eq!(doc["t"], "p");
    assert_eq!(doc["inserted"], true);
    assert_eq!(doc["rid"], doc["_id"]);
    assert_eq!(doc["usersCount"], 1);
    assert!(is_room_code(&doc["code"]));
    // The creator is the owner: it may change settings.
    let id = rid(&doc);
    c.ok("saveRoomSettings", json!([id, "roomTopic", "hi"])).await;
}

#[tokio::test]
async fn create_with_members_read_only_and_extra_data() {
    let s = TestServer::start().await;
    let _bob = s.user("bob").await;
    let _carol = s.user("carol").await;
    let mut c = s.user("alice").await;
    let doc = c
        .ok(
            "createChannel",
            json!([unique("r"), ["bob", "carol", "nobody", "alice", "bob"], true, {},
                   {"maxParticipants": 5, "locked": true, "guestAccess": true, "broadcast": false}]),
        )
        .await;
    assert_eq!(doc["usersCount"], 3, "alice + bob + carol; unknown and duplicates skipped: {doc}");
    assert_eq!(doc["ro"], true);
    assert_eq!(doc["maxParticipants"], 5);
    assert_eq!(doc["locked"], true);
    assert_eq!(doc["guestAccess"], true);
}

#[tokio::test]
async fn create_room_codes_and_ids_are_unique() {
    let s = TestServer::start().await;
    let mut c = s.user("alice").await;
    let mut codes = std::collections::HashSet::new();
    let mut ids = std::collections::HashSet::new();
    for _ in 0..20 {
        let doc = channel(&mut c, json!({})).await;
        assert!(codes.insert(doc["code"].clone()));
        assert!(ids.insert(doc["_id"].clone()));
    }
}

#[tokio::test]
async fn create_empty_name_is_invalid_name() {
    let s = TestServer::start().await;
    let mut c = s.user("alice").await;
    for method in ["createChannel", "createPrivateGroup"] {
        let e = c.err(method, json!([""])).await;
        assert_error(&e, "error-invalid-name", "Invalid name");
    }
}

#[tokio::test]
async fn create_bad_characters_is_invalid_room_name() {
    let s = TestServer::start().await;
    let mut c = s.user("alice").await;
    for (method, name) in [("createChannel", "has space"), ("createPrivateGroup", "bad/slash!")] {
        let e = c.err(method, json!([name])).await;
        assert_error(&e, "error-invalid-room-name", &format!("{name} is not a valid room name"));
        assert_eq!(e["details"]["channel_name"], name, "{e}");
    }
    // The default rule accepts [0-9a-zA-Z-_.]+.
    c.ok("createChannel", json!([format!("Ok_name-1.{}", unique("x"))])).await;
}

#[tokio::test]
async fn create_duplicate_name() {
    let s = TestServer::start().await;
    let mut c = s.user("alice").await;
    let name = unique("dup");
    c.ok("createChannel", json!([name])).await;
    let mut bob = s.user("bob").await;
    for method in ["createChannel", "createPrivateGroup"] {
        let e = bob.err(method, json!([name])).await;
        assert_error(&e, "error-duplicate-channel-name", &format!("A channel with name '{name}' exists"));
        assert_eq!(e["details"]["channel_name"], name.as_str());
    }
}

#[tokio::test]
async fn create_with_more_members_than_capacity_is_room_full() {
    let s = TestServer::start().await;
    let _bob = s.user("bob").await;
    let _carol = s.user("carol").await;
    let mut c = s.user("alice").await;
    let name = unique("full");
    let e = c.err("createChannel", json!([name, ["bob", "carol"], false, {}, {"maxParticipants": 2}])).await;
    assert_error(&e, "error-room-full", "Room is full");
    // Nothing was created: the name is still free.
    let doc = c.ok("createChannel", json!([name, ["bob"], false, {}, {"maxParticipants": 2}])).await;
    assert_eq!(doc["usersCount"], 2);
}

// ---- joinRoom ------------------------------------------------------------------

#[tokio::test]
async fn join_room_success_returns_true() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let id = rid(&channel(&mut alice, json!({})).await);
    let mut bob = s.user("bob").await;
    let r = bob.call("joinRoom", json!([id])).await;
    assert_eq!(r["result"], true, "{r}");
    assert_eq!(alice.room(&id).await["usersCount"], 2);
}

#[tokio::test]
async fn join_room_already_member_omits_result_and_posts_nothing() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let id = rid(&channel(&mut alice, json!({})).await);
    alice.sub_ok("stream-room-messages", json!([id, false])).await;
    let mut bob = s.user("bob").await;
    bob.ok("joinRoom", json!([id])).await;
    assert_eq!(alice.room_message(&id).await["t"], "uj");
    for who in [&mut bob, &mut alice] {
        let r = who.call("joinRoom", json!([id])).await;
        assert!(r.get("result").is_none(), "{r}");
        assert!(r.get("error").is_none(), "{r}");
    }
    alice.expect_none(Duration::from_millis(300), |f| f["msg"] == "changed").await;
    assert_eq!(alice.room(&id).await["usersCount"], 2);
}

#[tokio::test]
async fn join_room_invalid_room() {
    let s = TestServer::start().await;
    let mut c = s.user("alice").await;
    let e = c.err("joinRoom", json!(["NoSuchRoom1234567"])).await;
    assert_error(&e, "error-invalid-room", "Invalid room");
}

#[tokio::test]
async fn join_room_private_group_not_allowed() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let id = rid(&alice.ok("createPrivateGroup", json!([unique("g")])).await);
    let mut bob = s.user("bob").await;
    let e = bob.err("joinRoom", json!([id])).await;
    assert_eq!(e["error"], "error-not-allowed", "{e}");
    assert_eq!(alice.room(&id).await["usersCount"], 1);
}

#[tokio::test]
async fn join_room_inactive() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let id = rid(&channel(&mut alice, json!({})).await);
    alice.call("endRoom", json!([id])).await;
    let mut bob = s.user("bob").await;
    let e = bob.err("joinRoom", json!([id])).await;
    assert_error(&e, "error-room-inactive", "Room is no longer active");
}

#[tokio::test]
async fn join_room_locked() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let id = rid(&channel(&mut alice, json!({"locked": true})).await);
    let mut bob = s.user("bob").await;
    let e = bob.err("joinRoom", json!([id])).await;
    assert_error(&e, "error-room-locked", "Room is locked");
    alice.ok("saveRoomSettings", json!([id, "locked", false])).await;
    assert_eq!(bob.ok("joinRoom", json!([id])).await, true);
}

#[tokio::test]
async fn join_room_code_required_and_invalid() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let id = rid(&channel(&mut alice, json!({})).await);
    alice.ok("saveRoomSettings", json!([id, "joinCode", "s3cret"])).await;
    let mut bob = s.user("bob").await;
    for p in [json!([id]), json!([id, ""]), json!([id, null])] {
        let e = bob.err("joinRoom", p).await;
        assert_error(&e, "error-code-required", "Code required");
    }
    for wrong in ["s3cre", "S3CRET", "s3cret "] {
        let e = bob.err("joinRoom", json!([id, wrong])).await;
        assert_error(&e, "error-code-invalid", "Invalid code");
    }
    assert_eq!(alice.room(&id).await["usersCount"], 1);
    assert_eq!(bob.ok("joinRoom", json!([id, "s3cret"])).await, true);
}

#[tokio::test]
async fn join_room_full() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let id = rid(&channel(&mut alice, json!({"maxParticipants": 2})).await);
    let mut bob = s.user("bob").await;
    bob.ok("joinRoom", json!([id])).await;
    let mut carol = s.user("carol").await;
    let e = carol.err("joinRoom", json!([id])).await;
    assert_error(&e, "error-room-full", "Room is full");
    assert_eq!(alice.room(&id).await["usersCount"], 2);
}

#[tokio::test]
async fn join_room_errors_come_in_documented_order() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let _bob = s.user("bob").await;
    let mut carol = s.user("carol").await;
    // Full (alice + bob of 2), coded, locked, then ended: each step peels one.
    let id = rid(&channel_with(&mut alice, &["bob"], json!({"maxParticipants": 2})).await);
    alice.ok("saveRoomSettings", json!([id, {"joinCode": "k", "locked": true}])).await;
    let expect = |e: Value, code: &str| assert_eq!(e["error"], code, "{e}");
    alice.call("endRoom", json!([id])).await;
    expect(carol.err("joinRoom", json!([id])).await, "error-room-inactive");
    // A fresh room in the same shape, not ended.
    let id = rid(&channel_with(&mut alice, &["bob"], json!({"maxParticipants": 2})).await);
    alice.ok("saveRoomSettings", json!([id, {"joinCode": "k", "locked": true}])).await;
    expect(carol.err("joinRoom", json!([id])).await, "error-room-locked");
    alice.ok("saveRoomSettings", json!([id, "locked", false])).await;
    expect(carol.err("joinRoom", json!([id])).await, "error-code-required");
    expect(carol.err("joinRoom", json!([id, "x"])).await, "error-code-invalid");
    expect(carol.err("joinRoom", json!([id, "k"])).await, "error-room-full");
    // Invalid room beats everything; private beats inactive.
    expect(carol.err("joinRoom", json!(["nope"])).await, "error-invalid-room");
    let gid = rid(&alice.ok("createPrivateGroup", json!([unique("g")])).await);
    alice.call("endRoom", json!([gid])).await;
    expect(carol.err("joinRoom", json!([gid])).await, "error-not-allowed");
}

#[tokio::test]
async fn join_room_archived_comes_before_inactive() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let id = rid(&channel(&mut alice, json!({"locked": true})).await);
    alice.call("archiveRoom", json!([id])).await;
    let mut bob = s.user("bob").await;
    let e = bob.err("joinRoom", json!([id])).await;
    assert_error(&e, "error-room-archived", "Room is archived");
    alice.call("endRoom", json!([id])).await;
    let e = bob.err("joinRoom", json!([id])).await;
    assert_eq!(e["error"], "error-room-archived", "archived is checked before inactive: {e}");
    alice.call("unarchiveRoom", json!([id])).await;
    let e = bob.err("joinRoom", json!([id])).await;
    assert_eq!(e["error"], "error-room-inactive", "{e}");
}

#[tokio::test]
async fn lock_lets_only_owners_and_admins_in() {
    // alice (creator) hands ownership to bob and leaves; bob locks. The lock
    // blocks self-joins for everyone but the room's owners and admins: alice
    // is no longer an owner, so she is locked out like anyone else.
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let id = rid(&channel(&mut alice, json!({})).await);
    let mut bob = s.user("bob").await;
    bob.ok("joinRoom", json!([id])).await;
    alice.ok("addRoomOwner", json!([id, "id-bob"])).await;
    let r = alice.call("leaveRoom", json!([id])).await;
    assert!(r.get("error").is_none(), "another owner remains: {r}");
    bob.ok("saveRoomSettings", json!([id, "locked", true])).await;
    let mut carol = s.user("carol").await;
    assert_eq!(carol.err("joinRoom", json!([id])).await["error"], "error-room-locked");
    assert_eq!(alice.err("joinRoom", json!([id])).await["error"], "error-room-locked");
    // The owner's own self-join is a no-op, never "locked".
    let r = bob.call("joinRoom", json!([id])).await;
    assert!(r.get("error").is_none() && r.get("result").is_none(), "{r}");
    let mut admin = s.user_with_roles("root", &["admin"]).await;
    assert_eq!(admin.ok("joinRoom", json!([id])).await, true);
    let doc = bob.room(&id).await;
    assert_eq!(doc["usersCount"], 2);
    assert_eq!(doc["active"], true);
}

#[tokio::test]
async fn owners_add_people_past_the_lock_but_not_past_capacity() {
    let s = TestServer::start().await;
    let _bob = s.user("bob").await;
    let _carol = s.user("carol").await;
    let mut alice = s.user("alice").await;
    let id = rid(&channel(&mut alice, json!({"locked": true, "maxParticipants": 2})).await);
    assert_eq!(alice.ok("addUserToRoom", json!([{"rid": id, "username": "bob"}])).await, true);
    let e = alice.err("addUserToRoom", json!([{"rid": id, "username": "carol"}])).await;
    assert_eq!(e["error"], "error-room-full", "{e}");
    assert_eq!(alice.room(&id).await["usersCount"], 2);
}

#[tokio::test]
async fn moderators_may_save_settings_but_not_end() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let id = rid(&channel(&mut alice, json!({})).await);
    let mut bob = s.user("bob").await;
    bob.ok("joinRoom", json!([id])).await;
    assert_eq!(
        bob.err("saveRoomSettings", json!([id, "locked", true])).await["error"],
        "error-action-not-allowed"
    );
    alice.ok("addRoomModerator", json!([id, "id-bob"])).await;
    let r = bob.ok("saveRoomSettings", json!([id, "locked", true])).await;
    assert_eq!(r, json!({"result": true, "rid": id}));
    assert_eq!(alice.room(&id).await["locked"], true);
    assert_eq!(bob.err("endRoom", json!([id])).await["error"], "error-action-not-allowed");
}

#[tokio::test]
async fn lock_bypass_for_admin_but_capacity_still_applies() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let id = rid(&channel(&mut alice, json!({"locked": true, "maxParticipants": 2})).await);
    let mut bob = s.user("bob").await;
    assert_eq!(bob.err("joinRoom", json!([id])).await["error"], "error-room-locked");
    let mut admin = s.user_with_roles("root", &["admin"]).await;
    assert_eq!(admin.ok("joinRoom", json!([id])).await, true);
    let mut admin2 = s.user_with_roles("root2", &["admin"]).await;
    let e = admin2.err("joinRoom", json!([id])).await;
    assert_eq!(e["error"], "error-room-full", "{e}");
}

#[tokio::test]
async fn owner_of_a_locked_room_is_not_locked_out() {
    // The owner is already a member: a self-join is a no-op, never
    // `error-room-locked`, whichever family it comes through.
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let doc = channel(&mut alice, json!({"locked": true})).await;
    let id = rid(&doc);
    let r = alice.call("joinRoom", json!([id])).await;
    assert!(r.get("error").is_none() && r.get("result").is_none(), "{r}");
    let p = alice.join_code(doc["code"].as_str().unwrap(), None).await;
    assert_eq!(p["result"]["isHost"], true, "{p}");
    let mut bob = s.user("bob").await;
    let e = bob.join_code(doc["code"].as_str().unwrap(), None).await;
    assert_eq!(e["error"]["error"], "error-room-locked", "{e}");
}

#[tokio::test]
async fn bots_and_admins_skip_the_join_code() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let id = rid(&channel(&mut alice, json!({})).await);
    alice.ok("saveRoomSettings", json!([id, "joinCode", "pw"])).await;
    let mut bot = s.user_with_roles("robo", &["bot"]).await;
    assert_eq!(bot.ok("joinRoom", json!([id])).await, true);
    let mut admin = s.user_with_roles("root", &["admin"]).await;
    assert_eq!(admin.ok("joinRoom", json!([id])).await, true);
    let mut user = s.user("bob").await;
    assert_eq!(user.err("joinRoom", json!([id])).await["error"], "error-code-required");
    assert_eq!(alice.room(&id).await["usersCount"], 3);
}

// ---- leaveRoom -----------------------------------------------------------------

#[tokio::test]
async fn leave_room_success_has_no_result() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let id = rid(&channel(&mut alice, json!({})).await);
    let mut bob = s.user("bob").await;
    bob.ok("joinRoom", json!([id])).await;
    let r = bob.call("leaveRoom", json!([id])).await;
    assert!(r.get("result").is_none() && r.get("error").is_none(), "{r}");
    assert_eq!(alice.room(&id).await["usersCount"], 1);
    // Can join again afterwards.
    assert_eq!(bob.ok("joinRoom", json!([id])).await, true);
}

#[tokio::test]
async fn leave_room_errors() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let id = rid(&channel(&mut alice, json!({})).await);
    let mut bob = s.user("bob").await;
    let e = bob.err("leaveRoom", json!(["NoSuchRoom1234567"])).await;
    assert_error(&e, "error-invalid-room", "Invalid room");
    // Leaving is idempotent: a non-member is already where it asked to be.
    let r = bob.call("leaveRoom", json!([id])).await;
    assert!(r.get("error").is_none(), "{r}");
    assert_eq!(alice.room(&id).await["usersCount"], 1);
    bob.ok("joinRoom", json!([id])).await;
    let e = alice.err("leaveRoom", json!([id])).await;
    assert_error(
        &e,
        "error-you-are-last-owner",
        "You are the last owner. Please set new owner before leaving the room.",
    );
    let doc = alice.room(&id).await;
    assert_eq!(doc["usersCount"], 2);
    assert_eq!(doc["active"], true);
}

#[tokio::test]
async fn sole_owner_leaving_as_only_member_ends_the_room() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let doc = channel(&mut alice, json!({})).await;
    let id = rid(&doc);
    let r = alice.call("leaveRoom", json!([id])).await;
    assert!(r.get("error").is_none(), "{r}");
    let mut bob = s.user("bob").await;
    let e = bob.err("joinRoom", json!([id])).await;
    assert_error(&e, "error-room-inactive", "Room is no longer active");
    let e = bob.join_code(doc["code"].as_str().unwrap(), None).await;
    assert_eq!(e["error"]["error"], "error-room-inactive", "{e}");
    let seen = bob.room(&id).await;
    assert_eq!(seen["active"], false);
    assert_eq!(seen["usersCount"], 0);
}

// ---- saveRoomSettings ------------------------------------------------------------

#[tokio::test]
async fn save_room_settings_each_setting() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let id = rid(&channel(&mut alice, json!({})).await);
    let new_name = unique("renamed");
    let cases: Vec<(&str, Value, &str, Value)> = vec![
        ("roomName", json!(new_name), "name", json!(new_name)),
        ("roomTopic", json!("today: tests"), "topic", json!("today: tests")),
        ("readOnly", json!(true), "ro", json!(true)),
        ("joinCode", json!("abc"), "joinCodeRequired", json!(true)),
        ("locked", json!(true), "locked", json!(true)),
        ("maxParticipants", json!(7), "maxParticipants", json!(7)),
        ("guestAccess", json!(true), "guestAccess", json!(true)),
        ("readOnly", json!(false), "ro", json!(false)),
        ("joinCode", json!(""), "joinCodeRequired", json!(false)),
        ("locked", json!(false), "locked", json!(false)),
        ("maxParticipants", Value::Null, "maxParticipants", Value::Null),
        ("guestAccess", json!(false), "guestAccess", json!(false)),
    ];
    for (setting, value, field, expected) in cases {
        let r = alice.ok("saveRoomSettings", json!([id, setting, value])).await;
        assert_eq!(r, json!({"result": true, "rid": id}), "{setting}");
        let doc = alice.room(&id).await;
        assert_eq!(doc[field], expected, "{setting}={value}: {doc}");
    }
    assert_eq!(alice.room(&id).await["fname"], new_name.as_str());
}

#[tokio::test]
async fn save_room_settings_object_form() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let id = rid(&channel(&mut alice, json!({})).await);
    let r = alice
        .ok(
            "saveRoomSettings",
            json!([id, {"roomTopic": "t", "locked": true, "maxParticipants": 3, "guestAccess": true}]),
        )
        .await;
    assert_eq!(r, json!({"result": true, "rid": id}));
    let doc = alice.room(&id).await;
    assert_eq!(doc["topic"], "t");
    assert_eq!(doc["locked"], true);
    assert_eq!(doc["maxParticipants"], 3);
    assert_eq!(doc["guestAccess"], true);
}

#[tokio::test]
async fn rename_updates_name_index() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let doc = channel(&mut alice, json!({})).await;
    let id = rid(&doc);
    let old = doc["name"].as_str().unwrap().to_owned();
    let new = unique("new-name");
    alice.ok("saveRoomSettings", json!([id, "roomName", new])).await;
    assert_eq!(alice.ok("getRoomIdByNameOrId", json!([new])).await, id.as_str());
    let e = alice.err("getRoomIdByNameOrId", json!([old])).await;
    assert_eq!(e["error"], "error-invalid-room");
    // The old name is free again; the new one is taken.
    alice.ok("createChannel", json!([old])).await;
    let e = alice.err("createChannel", json!([new])).await;
    assert_eq!(e["error"], "error-duplicate-channel-name");
    // Renaming onto a taken name fails and changes nothing.
    let e = alice.err("saveRoomSettings", json!([id, "roomName", old])).await;
    assert_eq!(e["error"], "error-duplicate-channel-name", "{e}");
    let e = alice.err("saveRoomSettings", json!([id, "roomName", "bad name"])).await;
    assert_eq!(e["error"], "error-invalid-room-name", "{e}");
    assert_eq!(alice.room(&id).await["name"], new.as_str());
}

#[tokio::test]
async fn save_room_settings_not_allowed_for_plain_member_or_outsider() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let id = rid(&channel(&mut alice, json!({})).await);
    let mut bob = s.user("bob").await;
    bob.ok("joinRoom", json!([id])).await;
    let mut carol = s.user("carol").await;
    for c in [&mut bob, &mut carol] {
        let e = c.err("saveRoomSettings", json!([id, "locked", true])).await;
        assert_eq!(e["error"], "error-action-not-allowed", "{e}");
        assert_eq!(e["details"]["statusCode"], 403, "{e}");
    }
    assert_eq!(alice.room(&id).await["locked"], false);
    // Admins may, without being members.
    let mut admin = s.user_with_roles("root", &["admin"]).await;
    admin.ok("saveRoomSettings", json!([id, "locked", true])).await;
    assert_eq!(alice.room(&id).await["locked"], true);
}

#[tokio::test]
async fn save_room_settings_unknown_setting_changes_nothing() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let id = rid(&channel(&mut alice, json!({})).await);
    let e = alice.err("saveRoomSettings", json!([id, "colour", "red"])).await;
    assert_error(&e, "error-invalid-settings", "Invalid settings provided");
    let e = alice.err("saveRoomSettings", json!([id, {"locked": true, "colour": "red"}])).await;
    assert_eq!(e["error"], "error-invalid-settings", "{e}");
    assert_eq!(alice.room(&id).await["locked"], false, "atomic: nothing applied");
    // Bad values for known settings are refused too.
    for (k, v) in [
        ("maxParticipants", json!(0)),
        ("maxParticipants", json!("ten")),
        ("locked", json!("maybe")),
        ("roomTopic", json!(5)),
    ] {
        let e = alice.err("saveRoomSettings", json!([id, k, v])).await;
        assert_eq!(e["error"], "error-invalid-settings", "{k}={v}: {e}");
    }
    let e = alice.err("saveRoomSettings", json!(["NoSuchRoom1234567", "locked", true])).await;
    assert_eq!(e["error"], "error-invalid-room");
}

#[tokio::test]
async fn lowering_capacity_keeps_members_and_blocks_new_joins() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let id = rid(&channel(&mut alice, json!({})).await);
    for name in ["bob", "carol", "dave"] {
        let mut c = s.user(name).await;
        c.ok("joinRoom", json!([id])).await;
    }
    alice.ok("saveRoomSettings", json!([id, "maxParticipants", 2])).await;
    let doc = alice.room(&id).await;
    assert_eq!(doc["usersCount"], 4, "nobody is evicted: {doc}");
    assert_eq!(doc["maxParticipants"], 2);
    let mut erin = s.user("erin").await;
    assert_eq!(erin.err("joinRoom", json!([id])).await["error"], "error-room-full");
    // Leaving does not free a seat while still over capacity.
    let mut bob = s.user("bob").await;
    bob.call("leaveRoom", json!([id])).await;
    assert_eq!(erin.err("joinRoom", json!([id])).await["error"], "error-room-full");
    alice.ok("saveRoomSettings", json!([id, "maxParticipants", 5])).await;
    assert_eq!(erin.ok("joinRoom", json!([id])).await, true);
}

// ---- endRoom ------------------------------------------------------------------------

#[tokio::test]
async fn end_room_by_owner() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let doc = channel(&mut alice, json!({"guestAccess": true})).await;
    let id = rid(&doc);
    let mut bob = s.user("bob").await;
    bob.ok("joinRoom", json!([id])).await;
    bob.sub_ok("stream-room-messages", json!([id, false])).await;
    bob.sub_ok("stream-notify-room", json!([format!("{id}/participants"), false])).await;
    let r = alice.call("endRoom", json!([id])).await;
    assert!(r.get("error").is_none() && r.get("result").is_none(), "{r}");
    // Members are told.
    let m = bob.room_message(&id).await;
    assert_eq!(m["t"], "room-ended", "{m}");
    assert_eq!(m["msg"], "");
    let u = bob.event("stream-notify-room", &format!("{id}/participants")).await;
    assert_eq!(u["fields"]["args"][0], "room-updated");
    assert_eq!(u["fields"]["args"][1]["isActive"], false);
    assert_eq!(alice.room(&id).await["active"], false);
    // Further joins fail, both families.
    let mut carol = s.user("carol").await;
    let e = carol.err("joinRoom", json!([id])).await;
    assert_error(&e, "error-room-inactive", "Room is no longer active");
    let mut g = s.guest().await;
    let e = g.join_code(doc["code"].as_str().unwrap(), Some("G")).await;
    assert_eq!(e["error"]["error"], "error-room-inactive");
    // Ending twice is refused.
    let e = alice.err("endRoom", json!([id])).await;
    assert_eq!(e["error"], "error-room-inactive");
}

#[tokio::test]
async fn end_room_errors_and_admin() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let id = rid(&channel(&mut alice, json!({})).await);
    let mut bob = s.user("bob").await;
    bob.ok("joinRoom", json!([id])).await;
    let e = bob.err("endRoom", json!([id])).await;
    assert_eq!(e["error"], "error-action-not-allowed", "{e}");
    let e = bob.err("endRoom", json!(["NoSuchRoom1234567"])).await;
    assert_eq!(e["error"], "error-invalid-room");
    assert_eq!(alice.room(&id).await["active"], true);
    let mut admin = s.user_with_roles("root", &["admin"]).await;
    let r = admin.call("endRoom", json!([id])).await;
    assert!(r.get("error").is_none(), "{r}");
    assert_eq!(alice.room(&id).await["active"], false);
}

// ---- getRoomById / getRoomIdByNameOrId ------------------------------------------------

#[tokio::test]
async fn get_room_by_id() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let created = channel(&mut alice, json!({"maxParticipants": 9})).await;
    let id = rid(&created);
    let doc = alice.room(&id).await;
    for k in [
        "_id",
        "name",
        "fname",
        "t",
        "msgs",
        "u",
        "ts",
        "ro",
        "default",
        "sysMes",
        "customFields",
        "code",
        "locked",
        "maxParticipants",
        "active",
        "joinCodeRequired",
        "guestAccess",
        "hostId",
    ] {
        assert_eq!(doc[k], created[k], "{k}");
    }
    assert_eq!(doc["usersCount"], 1);
    assert!(is_recent_date(&doc["_updatedAt"]));
    // Public channels are visible to signed-in non-members.
    let mut bob = s.user("bob").await;
    assert_eq!(bob.room(&id).await["_id"], id.as_str());
    let e = bob.err("getRoomById", json!(["NoSuchRoom1234567"])).await;
    assert_error(&e, "error-invalid-room", "Invalid room");
    let e = bob.err("getRoomById", json!([5])).await;
    assert_match_failed(&e, "rid");
    // Private groups only to members.
    let gid = rid(&alice.ok("createPrivateGroup", json!([unique("g")])).await);
    let e = bob.err("getRoomById", json!([gid])).await;
    assert_eq!(e["error"], "error-not-allowed");
}

#[tokio::test]
async fn get_room_id_by_name_or_id() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let doc = channel(&mut alice, json!({})).await;
    let id = rid(&doc);
    assert_eq!(alice.ok("getRoomIdByNameOrId", json!([doc["name"]])).await, id.as_str());
    assert_eq!(alice.ok("getRoomIdByNameOrId", json!([id])).await, id.as_str());
    let e = alice.err("getRoomIdByNameOrId", json!(["no-such-room"])).await;
    assert_error(&e, "error-invalid-room", "Invalid room");
    let g = alice.ok("createPrivateGroup", json!([unique("g")])).await;
    let mut bob = s.user("bob").await;
    let e = bob.err("getRoomIdByNameOrId", json!([g["name"]])).await;
    assert_eq!(e["error"], "error-not-allowed", "{e}");
    assert_eq!(alice.ok("getRoomIdByNameOrId", json!([g["name"]])).await, g["_id"]);
}

//! The REST doors over real sockets: Rocket.Chat's `/api/v1/…` room
//! endpoints and Slack's `channels.join` / `conversations.join`: every
//! endpoint's success and its errors, rate limits, answers only after the
//! commit, and the same events for DDP subscribers whichever door a change
//! came through.

use crate::http::{Reply, parse, raw};
use crate::support::*;
use roomd::durability::fake::FakeDurability;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Sends one HTTP request and reads the answer (the server closes after it).
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, String)>,
) -> Reply {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = match body {
        Some((content_type, b)) => {
            req.push_str(&format!("Content-Type: {content_type}\r\nContent-Length: {}\r\n", b.len()));
            b
        }
        None => String::new(),
    };
    req.push_str("\r\n");
    req.push_str(&body);
    parse(&raw(addr, req.as_bytes()).await)
}

fn json_of(r: &Reply) -> Value {
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {r:?}"))
}

/// A Rocket.Chat REST client signed in as one user.
pub(crate) struct Rc {
    addr: SocketAddr,
    token: String,
    uid: String,
}

impl Rc {
    pub(crate) fn new(s: &TestServer, username: &str) -> Rc {
        let uid = format!("id-{username}");
        Rc { addr: s.addr, token: s.token(&uid, username, &["user"]), uid }
    }

    pub(crate) async fn post(&self, endpoint: &str, body: Value) -> (u16, Value) {
        let h = [("X-Auth-Token", self.token.as_str()), ("X-User-Id", self.uid.as_str())];
        let path = format!("/api/v1/{endpoint}");
        let r = request(self.addr, "POST", &path, &h, Some(("application/json", body.to_string()))).await;
        (r.status, json_of(&r))
    }

    async fn get(&self, endpoint_and_query: &str) -> (u16, Value) {
        let h = [("X-Auth-Token", self.token.as_str()), ("X-User-Id", self.uid.as_str())];
        let r = request(self.addr, "GET", &format!("/api/v1/{endpoint_and_query}"), &h, None).await;
        (r.status, json_of(&r))
    }

    /// A success: 200 and `success: true`.
    async fn ok(&self, endpoint: &str, body: Value) -> Value {
        let (status, v) = self.post(endpoint, body).await;
        assert_eq!((status, &v["success"]), (200, &json!(true)), "{endpoint}: {v}");
        v
    }

    async fn ok_get(&self, endpoint_and_query: &str) -> Value {
        let (status, v) = self.get(endpoint_and_query).await;
        assert_eq!((status, &v["success"]), (200, &json!(true)), "{endpoint_and_query}: {v}");
        v
    }

    /// A new channel named uniquely; returns its id.
    async fn channel(&self) -> String {
        let v = self.ok("channels.create", json!({ "name": unique("rest") })).await;
        v["channel"]["_id"].as_str().unwrap().to_owned()
    }
}

/// Asserts a Meteor-style REST failure: `status`, `errorType` `code`, and
/// `error` "<reason> [<code>]".
fn assert_failure(got: &(u16, Value), status: u16, code: &str) {
    let (s, v) = got;
    assert_eq!(*s, status, "{v}");
    assert_eq!(v["success"], false, "{v}");
    assert_eq!(v["errorType"], code, "{v}");
    let error = v["error"].as_str().unwrap_or_default();
    assert!(error.ends_with(&format!(" [{code}]")), "{v}");
}

const UNAUTHORIZED: &str = r#"{"message":"You must be logged in to do this.","status":"error"}"#;

#[tokio::test]
async fn rest_requests_without_a_valid_sign_in_get_401() {
    let s = TestServer::start().await;
    let alice = Rc::new(&s, "r-alice");
    let path = "/api/v1/channels.create";
    let body = Some(("application/json", json!({"name": unique("x")}).to_string()));
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![],
        vec![("X-Auth-Token", alice.token.as_str())],
        vec![("X-User-Id", alice.uid.as_str())],
        vec![("X-Auth-Token", "not-a-jwt"), ("X-User-Id", alice.uid.as_str())],
        // Someone else's id with alice's token.
        vec![("X-Auth-Token", alice.token.as_str()), ("X-User-Id", "id-r-bob")],
    ];
    for h in cases {
        let r = request(s.addr, "POST", path, &h, body.clone()).await;
        assert_eq!(r.status, 401, "{h:?}: {r:?}");
        assert_eq!(r.body, UNAUTHORIZED, "{h:?}");
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    let r = request(s.addr, "GET", "/api/v1/me", &[], None).await;
    assert_eq!((r.status, r.body.as_str()), (401, UNAUTHORIZED));
}

#[tokio::test]
async fn rest_login_with_a_resume_token_and_me() {
    let s = TestServer::start().await;
    let alice = Rc::new(&s, "r-login");
    let body = json!({ "resume": alice.token }).to_string();
    let r = request(s.addr, "POST", "/api/v1/login", &[], Some(("application/json", body))).await;
    let v = json_of(&r);
    assert_eq!((r.status, &v["status"]), (200, &json!("success")), "{v}");
    assert_eq!(v["data"]["authToken"], alice.token.as_str());
    assert_eq!(v["data"]["userId"], "id-r-login");
    assert_eq!(v["data"]["me"]["username"], "r-login");
    for bad in [json!({"resume": "nope"}), json!({"user": "a", "password": "b"}), json!({})] {
        let r =
            request(s.addr, "POST", "/api/v1/login", &[], Some(("application/json", bad.to_string()))).await;
        let v = json_of(&r);
        assert_eq!((r.status, &v["status"]), (401, &json!("error")), "{bad}: {v}");
    }
    let me = alice.ok_get("me").await;
    assert_eq!(
        (&me["_id"], &me["username"], &me["name"]),
        (&json!("id-r-login"), &json!("r-login"), &json!("r-login Name"))
    );
    assert_eq!(me["roles"], json!(["user"]));
}

#[tokio::test]
async fn rest_channels_create_info_and_their_errors() {
    let s = TestServer::start().await;
    let alice = Rc::new(&s, "r-creator");
    let mut bob = s.user("r-member").await;
    let name = unique("rest-room");
    let v = alice
        .ok(
            "channels.create",
            json!({
                "name": name, "members": ["r-member", "nobody-known"], "readOnly": true,
                "customFields": {"team": "a"}, "extraData": {"broadcast": true, "maxParticipants": 5},
                "locked": false,
            }),
        )
        .await;
    let ch = &v["channel"];
    assert_eq!(
        (&ch["name"], &ch["t"], &ch["ro"], &ch["usersCount"]),
        (&json!(name), &json!("c"), &json!(true), &json!(2))
    );
    assert_eq!((&ch["maxParticipants"], &ch["customFields"]["team"]), (&json!(5), &json!("a")));
    assert!(ch["code"].is_string(), "{ch}");
    assert!(ch.get("rid").is_none() && ch.get("inserted").is_none(), "{ch}");
    assert!(is_iso8601(&ch["ts"]), "REST dates are ISO strings: {ch}");
    let rid = ch["_id"].as_str().unwrap();
    // Bob was added: DDP sees the room.
    assert_eq!(bob.ok("getRoomById", json!([rid])).await["_id"], rid);

    let by_id = alice.ok_get(&format!("channels.info?roomId={rid}")).await;
    assert_eq!(by_id["channel"]["_id"], rid);
    let by_name = alice.ok_get(&format!("channels.info?roomName={name}")).await;
    assert_eq!(by_name["channel"]["_id"], rid);
    assert_eq!(alice.ok_get(&format!("rooms.info?roomId={rid}")).await["room"]["_id"], rid);
    assert_failure(&alice.get(&format!("groups.info?roomId={rid}")).await, 400, "error-invalid-room");
    assert_failure(&alice.get("channels.info?roomId=nope").await, 400, "error-invalid-room");
    assert_failure(&alice.get("channels.info").await, 400, "400");

    assert_failure(
        &alice.post("channels.create", json!({"name": name})).await,
        400,
        "error-duplicate-channel-name",
    );
    assert_failure(
        &alice.post("channels.create", json!({"name": "bad name"})).await,
        400,
        "error-invalid-room-name",
    );
    assert_failure(&alice.post("channels.create", json!({})).await, 400, "error-invalid-name");
    let v = alice.post("channels.create", json!({"name": unique("x"), "excludeSelf": true})).await;
    assert_failure(&v, 400, "400");
    assert_eq!(v.1["details"]["field"], "excludeSelf");
    assert_failure(
        &alice.post("channels.create", json!({"name": unique("x"), "readOnly": "yes"})).await,
        400,
        "400",
    );
    let r = request(
        s.addr,
        "POST",
        "/api/v1/channels.create",
        &[("X-Auth-Token", &alice.token), ("X-User-Id", &alice.uid)],
        Some(("application/json", "{nope".into())),
    )
    .await;
    assert_failure(&(r.status, json_of(&r)), 400, "error-invalid-request");
}

#[tokio::test]
async fn rest_groups_create_and_info() {
    let s = TestServer::start().await;
    let alice = Rc::new(&s, "r-group");
    let outsider = Rc::new(&s, "r-outsider");
    let name = unique("grp");
    let v = alice.ok("groups.create", json!({ "name": name })).await;
    assert_eq!(v["group"]["t"], "p", "{v}");
    let rid = v["group"]["_id"].as_str().unwrap();
    assert_eq!(alice.ok_get(&format!("groups.info?roomId={rid}")).await["group"]["name"], name.as_str());
    assert_failure(&alice.get(&format!("channels.info?roomId={rid}")).await, 400, "error-invalid-room");
    // Not readable by a non-member.
    assert_failure(&outsider.get(&format!("groups.info?roomId={rid}")).await, 403, "error-not-allowed");
    // The outsider did sign in: login made its record durable, nothing more.
    let _ = outsider;
}

#[tokio::test]
async fn rest_join_code_join_leave_and_ddp_sees_the_same_events() {
    let s = TestServer::start().await;
    let owner = Rc::new(&s, "r-owner");
    let joiner = Rc::new(&s, "r-joiner");
    let rid = owner.channel().await;
    // A DDP client subscribed to the room sees what REST changes.
    let mut watcher = s.user("r-owner").await;
    watcher.sub_ok("stream-room-messages", json!([rid, false])).await;

    let v = owner.ok("channels.setJoinCode", json!({"roomId": rid, "joinCode": "87hsyi9"})).await;
    assert_eq!(v["channel"]["joinCodeRequired"], true, "{v}");
    assert_failure(
        &joiner.post("channels.setJoinCode", json!({"roomId": rid, "joinCode": "x"})).await,
        403,
        "error-action-not-allowed",
    );
    assert_failure(&owner.post("channels.setJoinCode", json!({"roomId": rid})).await, 400, "400");

    assert_failure(&joiner.post("channels.join", json!({"roomId": rid})).await, 400, "error-code-required");
    assert_failure(
        &joiner.post("channels.join", json!({"roomId": rid, "joinCode": "wrong"})).await,
        400,
        "error-code-invalid",
    );
    assert_failure(
        &joiner.post("channels.join", json!({"roomId": "no-such-room"})).await,
        400,
        "error-invalid-room",
    );
    let v = joiner.ok("channels.join", json!({"roomId": rid, "joinCode": "87hsyi9"})).await;
    assert_eq!(v["channel"]["usersCount"], 2, "{v}");
    let set = watcher.room_message(&rid).await;
    assert!(is_system(&set, "room-join-code-set"), "{set}");
    let uj = watcher.room_message(&rid).await;
    assert!(is_system(&uj, "uj") && uj["u"]["username"] == "r-joiner", "{uj}");

    let posted = joiner.ok("chat.postMessage", json!({"roomId": rid, "text": "hello over REST"})).await;
    assert_eq!(posted["message"]["msg"], "hello over REST");
    assert!(posted["ts"].as_i64().unwrap() > 0, "{posted}");
    let m = watcher.room_message(&rid).await;
    assert_eq!((&m["msg"], &m["_id"]), (&json!("hello over REST"), &posted["message"]["_id"]));

    let v = joiner.ok("channels.leave", json!({"roomId": rid})).await;
    assert_eq!(v["channel"]["usersCount"], 1, "{v}");
    let ul = watcher.room_message(&rid).await;
    assert!(is_system(&ul, "ul") && ul["u"]["username"] == "r-joiner", "{ul}");
    // Idempotent: leaving again succeeds and changes nothing.
    let v = joiner.ok("channels.leave", json!({"roomId": rid})).await;
    assert_eq!(v["channel"]["usersCount"], 1, "{v}");
}

#[tokio::test]
async fn rest_messages_history_and_members() {
    let s = TestServer::start().await;
    let alice = Rc::new(&s, "r-poster");
    let bob = Rc::new(&s, "r-reader");
    let name = unique("talk");
    let rid = alice.ok("channels.create", json!({"name": name})).await["channel"]["_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // By channel name, with or without `#`.
    let v = alice.ok("chat.postMessage", json!({"channel": format!("#{name}"), "text": "one"})).await;
    assert_eq!((&v["channel"], &v["message"]["rid"]), (&json!(format!("#{name}")), &json!(rid)));
    // Timestamps are in milliseconds: apart, so `latest` (exclusive) below
    // can tell "one" from "two".
    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    alice.ok("chat.postMessage", json!({"channel": name, "text": "two"})).await;
    let v = alice
        .ok("chat.sendMessage", json!({"message": {"rid": rid, "msg": "three", "_id": "rest-msg-3"}}))
        .await;
    assert_eq!(v["message"]["_id"], "rest-msg-3");
    assert!(is_iso8601(&v["message"]["ts"]), "{v}");
    assert_failure(
        &alice
            .post("chat.sendMessage", json!({"message": {"rid": rid, "msg": "again", "_id": "rest-msg-3"}}))
            .await,
        400,
        "error-message-already-exists",
    );
    assert_failure(&alice.post("chat.sendMessage", json!({"message": "hi"})).await, 400, "400");
    assert_failure(&alice.post("chat.postMessage", json!({"roomId": rid, "text": "  "})).await, 400, "400");
    assert_failure(&alice.post("chat.postMessage", json!({"text": "x"})).await, 400, "400");
    assert_failure(
        &alice.post("chat.postMessage", json!({"roomId": rid, "text": "x".repeat(100_000)})).await,
        400,
        "error-message-size-exceeded",
    );
    // Not a member: the room's own rule.
    assert_failure(
        &bob.post("chat.postMessage", json!({"roomId": rid, "text": "x"})).await,
        403,
        "error-user-not-in-room",
    );

    let h = alice.ok_get(&format!("channels.history?roomId={rid}&count=2")).await;
    let msgs: Vec<&str> =
        h["messages"].as_array().unwrap().iter().map(|m| m["msg"].as_str().unwrap()).collect();
    assert_eq!(msgs, ["three", "two"], "newest first: {h}");
    let oldest = h["messages"][1]["ts"].as_str().unwrap();
    let older = alice.ok_get(&format!("channels.history?roomName={name}&latest={oldest}&count=1")).await;
    assert_eq!(older["messages"][0]["msg"], "one", "{older}");
    let paged = alice.ok_get(&format!("channels.history?roomId={rid}&offset=1&count=1")).await;
    assert_eq!((&paged["messages"][0]["msg"], &paged["offset"]), (&json!("two"), &json!(1)), "{paged}");
    assert_failure(&alice.get(&format!("channels.history?roomId={rid}&latest=yesterday")).await, 400, "400");

    bob.ok("channels.join", json!({"roomId": rid})).await;
    let m = alice.ok_get(&format!("channels.members?roomId={rid}")).await;
    assert_eq!((&m["total"], &m["count"], &m["offset"]), (&json!(2), &json!(2), &json!(0)), "{m}");
    let names: Vec<&str> =
        m["members"].as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap()).collect();
    assert_eq!(names, ["r-poster", "r-reader"]);
    let page = alice.ok_get(&format!("channels.members?roomId={rid}&offset=1&count=1")).await;
    assert_eq!((&page["members"][0]["_id"], &page["total"]), (&json!("id-r-reader"), &json!(2)));
    let stranger = Rc::new(&s, "r-stranger");
    assert_failure(&stranger.get(&format!("channels.members?roomId={rid}")).await, 403, "error-not-allowed");
}

#[tokio::test]
async fn rest_form_bodies_are_read_like_json() {
    let s = TestServer::start().await;
    let alice = Rc::new(&s, "r-form");
    let rid = alice.channel().await;
    let h = [("X-Auth-Token", alice.token.as_str()), ("X-User-Id", alice.uid.as_str())];
    let body = format!("roomId={rid}&text=sent+as+a+form%21");
    let r = request(
        s.addr,
        "POST",
        "/api/v1/chat.postMessage",
        &h,
        Some(("application/x-www-form-urlencoded", body)),
    )
    .await;
    let v = json_of(&r);
    assert_eq!((r.status, &v["message"]["msg"]), (200, &json!("sent as a form!")), "{v}");
}

#[tokio::test]
async fn rest_wrong_verbs_and_unknown_paths() {
    let s = TestServer::start().await;
    let r = request(s.addr, "GET", "/api/v1/channels.create", &[], None).await;
    assert_eq!(r.status, 405, "{r:?}");
    let r = request(s.addr, "GET", "/api/v1/channels.nope", &[], None).await;
    assert_eq!(r.status, 404, "{r:?}");
    let r = request(
        s.addr,
        "POST",
        "/api/v1/chat.postMessage",
        &[],
        Some(("application/json", "x".repeat(300 * 1024))),
    )
    .await;
    assert_eq!(r.status, 413, "{r:?}");
}

#[tokio::test]
async fn rest_rate_limits_answer_429_with_headers() {
    let s = TestServer::with_limits(|l| {
        l.no_rate_limits = false;
        l.rate_messages = "1:1".parse().unwrap();
    })
    .await;
    let alice = Rc::new(&s, "r-fast");
    let rid = alice.channel().await;
    alice.ok("chat.postMessage", json!({"roomId": rid, "text": "1"})).await;
    // Each request is a new session: the bucket is the user's.
    let h = [("X-Auth-Token", alice.token.as_str()), ("X-User-Id", alice.uid.as_str())];
    let body = json!({"roomId": rid, "text": "2"}).to_string();
    let r = request(s.addr, "POST", "/api/v1/chat.postMessage", &h, Some(("application/json", body))).await;
    assert_failure(&(r.status, json_of(&r)), 429, "too-many-requests");
    assert_eq!(r.header("retry-after"), Some("1"), "{r:?}");
    assert_eq!(r.header("x-ratelimit-limit"), Some("1"));
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
    assert!(r.header("x-ratelimit-reset").and_then(|v| v.parse::<i64>().ok()).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_answers_only_after_the_commit() {
    let fake = Arc::new(FakeDurability::new());
    let s = TestServer::with_durability(fake.clone(), |_| {}).await;
    let alice = Rc::new(&s, "r-durable");
    let rid = alice.channel().await;
    let before = fake.appended();
    fake.set_delay(Duration::from_millis(300), Duration::from_millis(300));
    let started = tokio::time::Instant::now();
    alice.ok("chat.postMessage", json!({"roomId": rid, "text": "kept"})).await;
    assert!(started.elapsed() >= Duration::from_millis(300), "answered before the commit");
    assert_eq!(fake.appended(), before + 1, "one durable change");
    fake.set_delay(Duration::ZERO, Duration::ZERO);
    // A failed commit is an internal error, and nothing is published.
    let mut watcher = s.user("r-durable").await;
    watcher.sub_ok("stream-room-messages", json!([rid, false])).await;
    fake.fail_next(1);
    assert_failure(
        &alice.post("chat.postMessage", json!({"roomId": rid, "text": "lost"})).await,
        500,
        "error-internal",
    );
    assert_eq!(fake.failed(), 1);
    watcher.expect_none(Duration::from_millis(300), |f| f["fields"]["args"][0]["msg"] == "lost").await;
}

// --- Slack ---------------------------------------------------------------

async fn slack(s: &TestServer, path: &str, token: Option<&str>, form: &str) -> (Reply, Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let h: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    let r =
        request(s.addr, "POST", path, &h, Some(("application/x-www-form-urlencoded", form.to_owned()))).await;
    let v = json_of(&r);
    (r, v)
}

fn slack_error(got: &(Reply, Value), code: &str) {
    assert_eq!(got.0.status, 200, "{:?}", got.0);
    assert_eq!((&got.1["ok"], &got.1["error"]), (&json!(false), &json!(code)), "{}", got.1);
}

#[tokio::test]
async fn slack_channels_join_creates_then_joins() {
    let s = TestServer::start().await;
    let alice = s.token("id-s-alice", "s-alice", &["user"]);
    let bob = s.token("id-s-bob", "s-bob", &["user"]);
    let base = unique("General");
    let (r, v) = slack(&s, "/api/channels.join", Some(&alice), &format!("name=%23{base}")).await;
    assert_eq!((r.status, &v["ok"]), (200, &json!(true)), "{v}");
    let ch = &v["channel"];
    let name = base.to_lowercase();
    assert_eq!(
        (&ch["name"], &ch["name_normalized"], &ch["creator"]),
        (&json!(name), &json!(name), &json!("id-s-alice"))
    );
    assert_eq!(
        (&ch["is_channel"], &ch["is_member"], &ch["is_private"], &ch["is_archived"]),
        (&json!(true), &json!(true), &json!(false), &json!(false))
    );
    assert_eq!(ch["members"], json!(["id-s-alice"]));
    assert!(ch["created"].as_i64().unwrap() > 1_600_000_000, "seconds: {ch}");
    assert!(v.get("already_in_channel").is_none(), "{v}");
    let rid = ch["id"].as_str().unwrap().to_owned();

    // Again: already in it, a limited object.
    let (_, v) = slack(&s, "/api/channels.join", Some(&alice), &format!("name={base}")).await;
    assert_eq!(
        (&v["ok"], &v["already_in_channel"], &v["channel"]["id"]),
        (&json!(true), &json!(true), &json!(rid)),
        "{v}"
    );
    assert!(v["channel"].get("members").is_none(), "{v}");

    // Bob joins with a token parameter in a JSON body; a DDP subscriber sees it.
    let mut watcher = s.user("s-alice").await;
    watcher.sub_ok("stream-room-messages", json!([rid, false])).await;
    let body = json!({"name": name, "token": bob}).to_string();
    let r = request(s.addr, "POST", "/api/channels.join", &[], Some(("application/json", body))).await;
    let v = json_of(&r);
    assert_eq!(v["channel"]["members"], json!(["id-s-alice", "id-s-bob"]), "{v}");
    let uj = watcher.room_message(&rid).await;
    assert!(is_system(&uj, "uj") && uj["u"]["_id"] == "id-s-bob", "{uj}");

    // conversations.join by id.
    let carol = s.token("id-s-carol", "s-carol", &["user"]);
    let (_, v) = slack(&s, "/api/conversations.join", Some(&carol), &format!("channel={rid}")).await;
    assert_eq!((&v["ok"], &v["channel"]["members"][2]), (&json!(true), &json!("id-s-carol")), "{v}");
    let (_, v) = slack(&s, "/api/conversations.join", Some(&carol), &format!("channel={rid}")).await;
    assert_eq!((&v["ok"], &v["warning"]), (&json!(true), &json!("already_in_channel")), "{v}");
    slack_error(
        &slack(&s, "/api/conversations.join", Some(&carol), "channel=nope").await,
        "channel_not_found",
    );
    slack_error(&slack(&s, "/api/conversations.join", Some(&carol), "").await, "missing_argument");
}

#[tokio::test]
async fn slack_channels_join_names_and_errors() {
    let s = TestServer::start().await;
    let alice = s.token("id-s-names", "s-names", &["user"]);
    let n = unique("x");
    let (_, v) = slack(&s, "/api/channels.join", Some(&alice), &format!("name=My+Room.{n}")).await;
    assert_eq!(v["channel"]["name"], format!("my-room-{n}"), "normalised: {v}");
    for (name, code) in [
        ("", "invalid_name_required"),
        ("%23", "invalid_name_required"),
        ("Caps", "invalid_name_specials"),
        ("a+b", "invalid_name_specials"),
        ("--__", "invalid_name_punctuation"),
        (&"a".repeat(81), "invalid_name_maxlength"),
    ] {
        slack_error(
            &slack(&s, "/api/channels.join", Some(&alice), &format!("name={name}&validate=true")).await,
            code,
        );
    }
    slack_error(&slack(&s, "/api/channels.join", Some(&alice), "name=%21%21").await, "invalid_name");
    slack_error(&slack(&s, "/api/channels.join", Some(&alice), "validate=true").await, "missing_argument");
    slack_error(&slack(&s, "/api/channels.join", None, "name=general").await, "not_authed");
    slack_error(
        &slack(&s, "/api/channels.join", Some("xoxb-not-a-jwt"), "name=general").await,
        "invalid_auth",
    );
    slack_error(&slack(&s, "/api/channels.join", None, "name=general&token=bad").await, "invalid_auth");
    let lower = format!("bearer {alice}");
    let r = request(
        s.addr,
        "POST",
        "/api/channels.join",
        &[("authorization", &lower)],
        Some(("application/x-www-form-urlencoded", format!("name={n}"))),
    )
    .await;
    assert_eq!(json_of(&r)["channel"]["creator"], "id-s-names", "{r:?}");

    // Archived, private, join code: the room's rules still apply.
    let mut owner = s.user("s-owner").await;
    let archived = channel(&mut owner, json!({})).await;
    owner.ok("archiveRoom", json!([archived["_id"]])).await;
    let name = archived["name"].as_str().unwrap();
    slack_error(&slack(&s, "/api/channels.join", Some(&alice), &format!("name={name}")).await, "is_archived");
    let rid = archived["_id"].as_str().unwrap();
    slack_error(
        &slack(&s, "/api/conversations.join", Some(&alice), &format!("channel={rid}")).await,
        "is_archived",
    );
    let group = owner.ok("createPrivateGroup", json!([unique("priv"), []])).await;
    let name = group["name"].as_str().unwrap();
    slack_error(&slack(&s, "/api/channels.join", Some(&alice), &format!("name={name}")).await, "name_taken");
    let rid = group["_id"].as_str().unwrap();
    slack_error(
        &slack(&s, "/api/conversations.join", Some(&alice), &format!("channel={rid}")).await,
        "method_not_supported_for_channel_type",
    );
    // Refused joins count as refused, by the reason DDP would give.
    let body = crate::http::get(s.addr, "/metrics").await.body;
    for reason in ["error-room-archived", "error-not-allowed"] {
        let sample = format!("roomd_room_join_rejections_total{{reason=\"{reason}\"}}");
        assert_eq!(crate::http::sample(&body, &sample), Some(2.0), "{sample}:\n{body}");
    }
    let coded = channel(&mut owner, json!({})).await;
    owner.ok("saveRoomSettings", json!([coded["_id"], "joinCode", "secret"])).await;
    let name = coded["name"].as_str().unwrap();
    let (r, v) = slack(&s, "/api/channels.join", Some(&alice), &format!("name={name}")).await;
    assert_eq!(
        (r.status, &v["error"], &v["detail"]),
        (200, &json!("restricted_action"), &json!("Code required [error-code-required]")),
        "{v}"
    );
}

#[tokio::test]
async fn slack_rate_limit_is_429_ratelimited() {
    let s = TestServer::with_limits(|l| {
        l.no_rate_limits = false;
        l.rate_joins = "1:1".parse().unwrap();
    })
    .await;
    let alice = s.token("id-s-fast", "s-fast", &["user"]);
    let name = unique("fast");
    let (_, v) = slack(&s, "/api/channels.join", Some(&alice), &format!("name={name}")).await;
    assert_eq!(v["ok"], true, "{v}");
    let (r, v) = slack(&s, "/api/channels.join", Some(&alice), &format!("name={name}")).await;
    assert_eq!((r.status, &v["ok"], &v["error"]), (429, &json!(false), &json!("ratelimited")), "{v}");
    assert_eq!(r.header("retry-after"), Some("1"));
}

#[tokio::test]
async fn rest_requests_are_not_connections() {
    let s = TestServer::start().await;
    let mut watcher = s.user("r-watch").await;
    watcher.sub_ok("stream-notify-logged", json!(["user-status", false])).await;
    let bot = Rc::new(&s, "r-bot");
    bot.ok_get("me").await;
    bot.channel().await;
    // No online/offline flap per request, and the gauges count the one socket.
    watcher.expect_none(Duration::from_millis(300), |f| f["fields"]["eventName"] == "user-status").await;
    let body = crate::http::get(s.addr, "/metrics").await.body;
    assert_eq!(crate::http::sample(&body, "roomd_connections{kind=\"user\"}"), Some(1.0), "{body}");
    assert_eq!(crate::http::sample(&body, "roomd_connections{kind=\"guest\"}"), Some(0.0), "{body}");
}

#[tokio::test]
async fn rest_room_rules_refuse_as_on_ddp() {
    let s = TestServer::start().await;
    let mut owner = s.user("r-rules-owner").await;
    let joiner = Rc::new(&s, "r-rules-joiner");
    let slack_token = s.token("id-r-rules-joiner", "r-rules-joiner", &["user"]);
    let full = channel(&mut owner, json!({"maxParticipants": 1})).await;
    let locked = channel(&mut owner, json!({"locked": true})).await;
    let archived = channel(&mut owner, json!({})).await;
    owner.ok("archiveRoom", json!([archived["_id"]])).await;

    assert_failure(
        &joiner.post("channels.join", json!({"roomId": full["_id"]})).await,
        400,
        "error-room-full",
    );
    assert_failure(
        &joiner.post("channels.join", json!({"roomId": locked["_id"]})).await,
        403,
        "error-room-locked",
    );
    assert_failure(
        &joiner.post("channels.join", json!({"roomId": archived["_id"]})).await,
        400,
        "error-room-archived",
    );
    for (room, detail) in
        [(&full, "Room is full [error-room-full]"), (&locked, "Room is locked [error-room-locked]")]
    {
        let form = format!("name={}", room["name"].as_str().unwrap());
        let (r, v) = slack(&s, "/api/channels.join", Some(&slack_token), &form).await;
        assert_eq!(
            (r.status, &v["error"], &v["detail"]),
            (200, &json!("restricted_action"), &json!(detail)),
            "{v}"
        );
    }

    // A read-only channel takes no message from a plain member.
    let ro = owner.ok("createChannel", json!([unique("ro"), [], true])).await;
    joiner.ok("channels.join", json!({"roomId": ro["_id"]})).await;
    let refused = joiner.post("chat.postMessage", json!({"roomId": ro["_id"], "text": "hi"})).await;
    assert_failure(&refused, 403, "error-action-not-allowed");
    assert_eq!(refused.1["details"]["action"], "Posting in a read-only room");
    // The last owner may not leave.
    let owner_rest = Rc::new(&s, "r-rules-owner");
    assert_failure(
        &owner_rest.post("channels.leave", json!({"roomId": ro["_id"]})).await,
        400,
        "error-you-are-last-owner",
    );
}

// --- Names: join-or-create, letter case, lookups during a creation --------

/// Runs `n` Slack `channels.join {name}` at once, with `tokens[i % len]`.
async fn joins_at_once(s: &TestServer, tokens: &[String], n: usize, name: &str) -> Vec<Value> {
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (addr, token, barrier) = (s.addr, tokens[i % tokens.len()].clone(), barrier.clone());
            let form = format!("name={name}");
            tokio::spawn(async move {
                barrier.wait().await;
                let auth = format!("Bearer {token}");
                let h = [("Authorization", auth.as_str())];
                let r = request(
                    addr,
                    "POST",
                    "/api/channels.join",
                    &h,
                    Some(("application/x-www-form-urlencoded", form)),
                )
                .await;
                json_of(&r)
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(tokio::time::timeout(Duration::from_secs(20), t).await.expect("join answered").unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_concurrent_joins_of_a_new_name_all_end_in_one_room() {
    // Commits take a while, as on a disk: the creation window is wide.
    let fake = Arc::new(FakeDurability::new());
    let s = TestServer::with_durability(fake.clone(), |_| {}).await;
    fake.set_delay(Duration::from_millis(40), Duration::from_millis(80));
    let tokens: Vec<String> =
        (0..20).map(|i| s.token(&format!("id-cj{i}"), &format!("cj{i}"), &["user"])).collect();

    let mut watcher = s.user("cj0").await;
    for round in 0..3 {
        // 20 users at once: all ok, one room, exactly 20 members.
        let name = unique("crowd");
        let answers = joins_at_once(&s, &tokens, 20, &name).await;
        assert!(answers.iter().all(|v| v["ok"] == true), "round {round}: {answers:?}");
        let ids: std::collections::HashSet<_> = answers.iter().map(|v| v["channel"]["id"].clone()).collect();
        assert_eq!(ids.len(), 1, "round {round}: one room: {ids:?}");
        let rid = ids.into_iter().next().unwrap();
        let created =
            answers.iter().filter(|v| v["channel"]["members"].as_array().is_some_and(|m| m.len() == 1));
        assert!(created.count() <= 1, "round {round}: one creator: {answers:?}");
        let view = watcher.ok("getRoomParticipants", json!([rid])).await;
        assert_eq!(view["participants"].as_array().unwrap().len(), 20, "round {round}: {view}");
        assert_eq!(watcher.room(rid.as_str().unwrap()).await["usersCount"], 20, "round {round}");

        // One user's 10 at once: all ok, one room of one member (one
        // created it, nine found it with the caller already in).
        let name = unique("solo");
        let answers = joins_at_once(&s, &tokens[1..2], 10, &name).await;
        assert!(answers.iter().all(|v| v["ok"] == true), "round {round}: {answers:?}");
        let ids: std::collections::HashSet<_> = answers.iter().map(|v| v["channel"]["id"].clone()).collect();
        assert_eq!(ids.len(), 1, "round {round}: {answers:?}");
        assert_eq!(
            answers.iter().filter(|v| v["already_in_channel"] == true).count(),
            9,
            "round {round}: {answers:?}"
        );
        let rid = ids.into_iter().next().unwrap();
        assert_eq!(watcher.room(rid.as_str().unwrap()).await["usersCount"], 1, "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddp_lookups_by_name_wait_for_a_creation_in_progress() {
    let fake = Arc::new(FakeDurability::new());
    let s = TestServer::with_durability(fake.clone(), |_| {}).await;
    let mut looker = s.user("lk-looker").await;
    let mut creator = s.user("lk-creator").await;
    fake.set_delay(Duration::from_millis(400), Duration::from_millis(400));
    let name = unique("Slow");
    let n = name.clone();
    let creating = tokio::spawn(async move { creator.ok("createChannel", json!([n])).await });
    // Well inside the commit: the name is reserved, the room not yet there.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let started = tokio::time::Instant::now();
    let got = looker.ok("getRoomIdByNameOrId", json!([name])).await;
    assert!(started.elapsed() >= Duration::from_millis(100), "answered before the creation ended");
    let room = tokio::time::timeout(Duration::from_secs(5), creating).await.unwrap().unwrap();
    assert_eq!(got, room["_id"], "the room being created, found by name");

    // REST by name during a creation, and a second creation of the same
    // name in another case waits too, then is refused as a duplicate.
    let rc = Rc::new(&s, "lk-rest");
    let mut other = s.user("lk-other").await;
    let name = unique("Slower");
    let (n, upper) = (name.clone(), name.to_uppercase());
    let mut creator = s.user("lk-creator").await;
    let creating = tokio::spawn(async move { creator.ok("createChannel", json!([n])).await });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let info = rc.ok_get(&format!("channels.info?roomName={}", name.to_lowercase())).await;
    let dup = other.err("createChannel", json!([upper])).await;
    assert_eq!(dup["error"], "error-duplicate-channel-name", "{dup}");
    let room = tokio::time::timeout(Duration::from_secs(5), creating).await.unwrap().unwrap();
    assert_eq!(info["channel"]["_id"], room["_id"]);
}

#[tokio::test]
async fn room_names_are_unique_regardless_of_case_across_doors() {
    let s = TestServer::start().await;
    let mut alice = s.user("nc-alice").await;
    let rc = Rc::new(&s, "nc-rest");
    let slack_bob = s.token("id-nc-bob", "nc-bob", &["user"]);
    let name = unique("Lobby");
    let room = alice.ok("createChannel", json!([name])).await;
    let rid = room["_id"].as_str().unwrap();
    assert_eq!(room["name"], name.as_str(), "the spelling is kept");

    // DDP, Rocket.Chat REST: any other case is the same name.
    let dup = alice.err("createPrivateGroup", json!([name.to_lowercase()])).await;
    assert_eq!(dup["error"], "error-duplicate-channel-name", "{dup}");
    assert_failure(
        &rc.post("channels.create", json!({"name": name.to_uppercase()})).await,
        400,
        "error-duplicate-channel-name",
    );
    // Slack's lower-case name joins the existing room.
    let (_, v) =
        slack(&s, "/api/channels.join", Some(&slack_bob), &format!("name={}", name.to_lowercase())).await;
    assert_eq!(
        (&v["ok"], &v["channel"]["id"], &v["channel"]["name"]),
        (&json!(true), &json!(rid), &json!(name)),
        "{v}"
    );
    // Lookups by name in any case.
    assert_eq!(alice.ok("getRoomIdByNameOrId", json!([name.to_uppercase()])).await, rid);
    let info = rc.ok_get(&format!("channels.info?roomName={}", name.to_lowercase())).await;
    assert_eq!(info["channel"]["_id"], rid);

    // A rename may respell the room's own name, not take another's.
    let other = alice.ok("createChannel", json!([unique("other")])).await;
    let dup = alice.err("saveRoomSettings", json!([other["_id"], "roomName", name.to_lowercase()])).await;
    assert_eq!(dup["error"], "error-duplicate-channel-name", "{dup}");
    alice.ok("saveRoomSettings", json!([rid, "roomName", name.to_uppercase()])).await;
    assert_eq!(alice.ok("getRoomIdByNameOrId", json!([name.clone()])).await, rid, "respelt name still held");
    let dup = alice.err("createChannel", json!([name])).await;
    assert_eq!(dup["error"], "error-duplicate-channel-name", "{dup}");
}

#[tokio::test]
async fn every_api_answer_says_nosniff() {
    let s = TestServer::start().await;
    let rc = Rc::new(&s, "ns-user");
    let h = [("X-Auth-Token", rc.token.as_str()), ("X-User-Id", rc.uid.as_str())];
    let slack_auth = format!("Bearer {}", rc.token);
    let form = ("application/x-www-form-urlencoded", format!("name={}", unique("ns")));
    let answers = [
        request(s.addr, "GET", "/api/v1/me", &h, None).await,
        request(s.addr, "GET", "/api/v1/me", &[], None).await,
        request(s.addr, "GET", "/api/v1/channels.info?roomId=nope", &h, None).await,
        request(s.addr, "POST", "/api/channels.join", &[("Authorization", slack_auth.as_str())], Some(form))
            .await,
        request(s.addr, "POST", "/api/channels.join", &[], None).await,
        request(s.addr, "GET", "/api/no-such-endpoint", &[], None).await,
        request(s.addr, "GET", "/api/channels.join", &[], None).await,
    ];
    for r in &answers {
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{r:?}");
    }
    assert_eq!(answers.iter().map(|r| r.status).collect::<Vec<_>>(), [200, 401, 400, 200, 200, 404, 405]);
}

//! Identity: resume-token login, refused tokens, logout, the user directory
//! and what guests (never logged in) may not do.

use crate::support::*;
use jsonwebtoken::Algorithm;
use roomd::auth::now_secs;
use serde_json::{Value, json};
use std::time::Duration;

fn claims(sub: &str, username: &str, exp: u64) -> Value {
    json!({"sub": sub, "username": username, "name": "Some Name", "exp": exp})
}

async fn login_err(s: &TestServer, token: &str) -> Value {
    let mut c = s.guest().await;
    let e = c.err("login", json!([{"resume": token}])).await;
    // A refused login leaves the connection a guest.
    let after = c.err("createChannel", json!([unique("x")])).await;
    assert_eq!(after["error"], "error-invalid-user");
    e
}

#[tokio::test]
async fn login_result_shape() {
    let s = TestServer::start().await;
    let mut c = s.guest().await;
    let exp = now_secs() + 3600;
    let token = s.token_with(&claims("u-42", "alice", exp), Algorithm::HS256, SECRET);
    let r = c.ok("login", json!([{"resume": token}])).await;
    assert_eq!(
        r,
        json!({
            "id": "u-42",
            "token": token,
            "tokenExpires": {"$date": exp * 1000},
            "type": "resume",
        })
    );
    // Signed in: a user-only method now works.
    c.ok("createChannel", json!([unique("room")])).await;
}

#[tokio::test]
async fn login_roles_default_to_user_and_admin_role_is_honoured() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let rid = channel(&mut alice, json!({})).await["_id"].as_str().unwrap().to_owned();
    // No `roles` claim: a plain user, who may not end someone else's room.
    let token = s.token_with(&claims("u-plain", "plain", now_secs() + 600), Algorithm::HS256, SECRET);
    let mut plain = s.guest().await;
    plain.ok("login", json!([{"resume": token}])).await;
    let e = plain.err("endRoom", json!([rid])).await;
    assert_eq!(e["error"], "error-action-not-allowed");
    // `roles: ["admin"]` may.
    let mut admin = s.user_with_roles("root", &["admin"]).await;
    admin.call("endRoom", json!([rid])).await;
    assert_eq!(alice.room(&rid).await["active"], false);
}

#[tokio::test]
async fn expired_token_is_403() {
    let s = TestServer::start().await;
    let t = s.token_with(&claims("u1", "alice", now_secs() - 3600), Algorithm::HS256, SECRET);
    let e = login_err(&s, &t).await;
    assert_error(&e, 403, "Your session has expired. Please log in again.");
}

#[tokio::test]
async fn forged_token_wrong_secret_is_403() {
    let s = TestServer::start().await;
    let t = s.token_with(&claims("u1", "alice", now_secs() + 600), Algorithm::HS256, b"not-the-secret");
    let e = login_err(&s, &t).await;
    assert_error(&e, 403, "Invalid token signature");
}

#[tokio::test]
async fn tampered_payload_is_403() {
    let s = TestServer::start().await;
    let good = s.token_with(&claims("u1", "alice", now_secs() + 600), Algorithm::HS256, SECRET);
    let parts: Vec<&str> = good.split('.').collect();
    let evil = b64url(claims("u-admin", "admin", now_secs() + 600).to_string().as_bytes());
    let forged = format!("{}.{}.{}", parts[0], evil, parts[2]);
    let e = login_err(&s, &forged).await;
    assert_error(&e, 403, "Invalid token signature");
}

#[tokio::test]
async fn alg_none_is_refused() {
    let s = TestServer::start().await;
    let header = b64url(br#"{"alg":"none","typ":"JWT"}"#);
    let body = b64url(claims("u1", "alice", now_secs() + 600).to_string().as_bytes());
    for t in [format!("{header}.{body}."), format!("{header}.{body}")] {
        let e = login_err(&s, &t).await;
        assert_eq!(e["error"], 403, "{e}");
        assert!(!e["reason"].as_str().unwrap_or("").is_empty(), "{e}");
    }
}

#[tokio::test]
async fn other_algorithms_are_refused_even_with_the_right_secret() {
    let s = TestServer::start().await;
    for alg in [Algorithm::HS384, Algorithm::HS512] {
        let t = s.token_with(&claims("u1", "alice", now_secs() + 600), alg, SECRET);
        let e = login_err(&s, &t).await;
        assert_error(&e, 403, "Token algorithm is not accepted");
    }
}

#[tokio::test]
async fn garbage_and_incomplete_tokens_are_403() {
    let s = TestServer::start().await;
    let e = login_err(&s, "not.a.jwt").await;
    assert_error(&e, 403, "Malformed token");
    // A token without a username claim.
    let t = s.token_with(&json!({"sub": "u1", "exp": now_secs() + 600}), Algorithm::HS256, SECRET);
    let e = login_err(&s, &t).await;
    assert_eq!(e["error"], 403, "{e}");
    assert!(!e["reason"].as_str().unwrap_or("").is_empty());
    // Nor may a token claim a guest id.
    let t = s.token_with(&claims("guest-abc", "sneaky", now_secs() + 600), Algorithm::HS256, SECRET);
    let e = login_err(&s, &t).await;
    assert_eq!(e["error"], 403, "{e}");
}

#[tokio::test]
async fn login_without_resume_is_refused() {
    let s = TestServer::start().await;
    let mut c = s.guest().await;
    let e = c.err("login", json!([{"user": {"username": "a"}, "password": "x"}])).await;
    assert_error(&e, 400, "Unrecognized options for login request");
    let e = c.err("login", json!([{"resume": 17}])).await;
    assert_match_failed(&e, "resume");
}

#[tokio::test]
async fn logout_clears_identity() {
    let s = TestServer::start().await;
    let mut c = s.user("alice").await;
    let rid = channel(&mut c, json!({})).await["_id"].as_str().unwrap().to_owned();
    let r = c.call("logout", json!([])).await;
    assert!(r.get("result").is_none() && r.get("error").is_none(), "{r}");
    let e = c.err("getRoomById", json!([rid])).await;
    assert_error(&e, "error-invalid-user", "Invalid user");
    let e = c.err("createChannel", json!([unique("r")])).await;
    assert_eq!(e["error"], "error-invalid-user");
    // And one can log in again afterwards, with a fresh token.
    let token = s.token_with(&claims("id-alice", "alice", now_secs() + 7200), Algorithm::HS256, SECRET);
    c.ok("login", json!([{"resume": token}])).await;
    c.room(&rid).await;
}

#[tokio::test]
async fn logout_ends_room_subscriptions() {
    let s = TestServer::start().await;
    let mut c = s.user("alice").await;
    let rid = channel(&mut c, json!({})).await["_id"].as_str().unwrap().to_owned();
    let sub = c.sub_ok("stream-room-messages", json!([rid, false])).await;
    c.call("logout", json!([])).await;
    let n = c.expect(|f| f["msg"] == "nosub").await;
    assert_eq!(n["id"], sub.as_str());
    assert_eq!(n["error"]["error"], "not-allowed", "{n}");
    // Nothing more from the room reaches the logged-out connection.
    let mut bob = s.user("bob").await;
    bob.ok("joinRoom", json!([rid])).await;
    c.expect_none(Duration::from_millis(300), |f| f["msg"] == "changed").await;
}

#[tokio::test]
async fn login_as_someone_else_drops_previous_subscriptions() {
    let s = TestServer::start().await;
    let mut c = s.user("alice").await;
    let rid = channel(&mut c, json!({})).await["_id"].as_str().unwrap().to_owned();
    let sub = c.sub_ok("stream-notify-room", json!([format!("{rid}/participants"), false])).await;
    let token = s.token("id-bob", "bob", &["user"]);
    c.ok("login", json!([{"resume": token}])).await;
    let n = c.expect(|f| f["msg"] == "nosub").await;
    assert_eq!(n["id"], sub.as_str());
}

#[tokio::test]
async fn server_remembers_users_it_has_seen() {
    let s = TestServer::start().await;
    // bob has logged in once (and left); carol never has.
    let bob = s.user("bob").await;
    bob.close().await;
    let mut alice = s.user("alice").await;
    let doc = alice.ok("createPrivateGroup", json!([unique("grp"), ["bob", "carol"]])).await;
    assert_eq!(doc["usersCount"], 2, "bob added, unknown carol skipped: {doc}");
    let rid = doc["_id"].as_str().unwrap().to_owned();
    // bob is a member of the private group now.
    let mut bob = s.user("bob").await;
    assert_eq!(bob.room(&rid).await["_id"], rid.as_str());
    let mut carol = s.user("carol").await;
    let e = carol.err("getRoomById", json!([rid])).await;
    assert_eq!(e["error"], "error-not-allowed");
}

#[tokio::test]
async fn guests_may_not_use_user_methods() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let rid = channel(&mut alice, json!({})).await["_id"].as_str().unwrap().to_owned();
    let mut g = s.guest().await;
    let calls = [
        ("createChannel", json!([unique("g")])),
        ("createPrivateGroup", json!([unique("g")])),
        ("joinRoom", json!([rid])),
        ("leaveRoom", json!([rid])),
        ("saveRoomSettings", json!([rid, "locked", true])),
        ("endRoom", json!([rid])),
        ("getRoomById", json!([rid])),
        ("getRoomIdByNameOrId", json!([rid])),
    ];
    for (m, p) in calls {
        let e = g.err(m, p).await;
        assert_error(&e, "error-invalid-user", "Invalid user");
    }
    // Nor read streams of rooms they are not in.
    let r = g.sub("stream-room-messages", json!([rid, false])).await;
    assert_eq!(r["msg"], "nosub");
    assert_eq!(r["error"]["error"], "not-allowed", "{r}");
    assert_eq!(alice.room(&rid).await["locked"], false);
}

#[tokio::test]
async fn guest_in_a_room_still_may_not_use_user_methods() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let doc = channel(&mut alice, json!({"guestAccess": true})).await;
    let rid = doc["_id"].as_str().unwrap().to_owned();
    let mut g = s.guest().await;
    let r = g.join_code(doc["code"].as_str().unwrap(), Some("Jane")).await;
    assert!(r.get("error").is_none(), "{r}");
    for (m, p) in [
        ("saveRoomSettings", json!([rid, "locked", true])),
        ("endRoom", json!([rid])),
        ("getRoomById", json!([rid])),
        ("joinRoom", json!([rid])),
    ] {
        let e = g.err(m, p).await;
        assert_eq!(e["error"], "error-invalid-user", "{m}: {e}");
    }
    // What a guest may do: read its room's streams and leave.
    g.sub_ok("stream-room-messages", json!([rid, false])).await;
    g.sub_ok("stream-notify-room", json!([format!("{rid}/participants"), false])).await;
    let r = g.call("leaveRoom", json!([rid])).await;
    assert!(r.get("error").is_none() && r.get("result").is_none(), "{r}");
}

fn is_users(f: &Value, msg: &str, id: &str) -> bool {
    f["msg"] == msg && f["collection"] == "users" && f["id"] == id
}

fn named_token(s: &TestServer, id: &str, username: &str, name: &str, roles: &[&str]) -> String {
    let claims = json!({
        "sub": id, "username": username, "name": name, "roles": roles, "exp": now_secs() + 600,
    });
    s.token_with(&claims, Algorithm::HS256, SECRET)
}

/// Logs `c` in with `token`; returns every frame up to the login's
/// `updated`, in arrival order.
async fn login_frames(c: &mut Client, token: &str) -> Vec<Value> {
    let id = c.send_method("login", json!([{"resume": token}])).await;
    let mut seen = Vec::new();
    loop {
        let f = c.next_frame().await;
        let done = f["msg"] == "updated" && f["methods"][0] == id.as_str();
        seen.push(f);
        if done {
            return seen;
        }
    }
}

#[tokio::test]
async fn login_publishes_the_users_own_record_before_updated() {
    let s = TestServer::start().await;
    let mut c = s.guest().await;
    let token = named_token(&s, "u-rec", "rec", "Rec Ord", &["user", "admin"]);
    let frames = login_frames(&mut c, &token).await;
    let added = frames.iter().position(|f| is_users(f, "added", "u-rec"));
    let added = added.unwrap_or_else(|| panic!("no users `added` before `updated`: {frames:?}"));
    assert_eq!(
        frames[added]["fields"],
        json!({"username": "rec", "name": "Rec Ord", "roles": ["user", "admin"], "status": "online"})
    );
    let result = frames.iter().position(|f| f["msg"] == "result").unwrap();
    assert!(frames[result].get("error").is_none(), "{frames:?}");
    // Only one record, and nothing else about users.
    assert_eq!(frames.iter().filter(|f| f["collection"] == "users").count(), 1, "{frames:?}");
    // The same identity again on the same connection: nothing new to send.
    let again = login_frames(&mut c, &token).await;
    assert!(!again.iter().any(|f| f["collection"] == "users"), "{again:?}");
    c.expect_none(Duration::from_millis(100), |f| f["collection"] == "users").await;
}

#[tokio::test]
async fn own_record_changes_reach_every_connection_of_the_user_and_logout_removes_it() {
    let s = TestServer::start().await;
    let mut a = s.guest().await;
    let mut b = s.guest().await;
    let mut other = s.user("bystander").await;
    let first = named_token(&s, "u-two", "two", "Two Old", &["user"]);
    let frames = login_frames(&mut a, &first).await;
    assert!(frames.iter().any(|f| is_users(f, "added", "u-two")), "{frames:?}");
    let frames = login_frames(&mut b, &first).await;
    assert!(frames.iter().any(|f| is_users(f, "added", "u-two")), "{frames:?}");
    // Same fields: the first connection hears nothing.
    a.expect_none(Duration::from_millis(100), |f| f["collection"] == "users").await;

    // A new token with a new name and roles, on the second connection:
    // both connections get `changed` with just what changed.
    let renamed = named_token(&s, "u-two", "two", "Two New", &["user", "bot"]);
    let frames = login_frames(&mut b, &renamed).await;
    let ch: Vec<&Value> = frames.iter().filter(|f| is_users(f, "changed", "u-two")).collect();
    assert_eq!(ch.len(), 1, "{frames:?}");
    assert_eq!(ch[0]["fields"], json!({"name": "Two New", "roles": ["user", "bot"]}));
    assert!(ch[0].get("cleared").is_none(), "{}", ch[0]);
    let f = a.expect(|f| is_users(f, "changed", "u-two")).await;
    assert_eq!(f["fields"], json!({"name": "Two New", "roles": ["user", "bot"]}));

    // Logout removes the record from that connection only.
    b.ok("logout", json!([])).await;
    b.expect(|f| is_users(f, "removed", "u-two")).await;
    a.expect_none(Duration::from_millis(100), |f| f["collection"] == "users").await;

    // Signing in as someone else on a connection: `removed` for the old id,
    // then `added` for the new one.
    let frames = login_frames(&mut a, &s.token("u-three", "three", &["user"])).await;
    let removed = frames.iter().position(|f| is_users(f, "removed", "u-two"));
    let added = frames.iter().position(|f| is_users(f, "added", "u-three"));
    assert!(matches!((removed, added), (Some(r), Some(d)) if r < d), "{frames:?}");

    // Nobody else ever saw these records.
    other
        .expect_none(Duration::from_millis(100), |f| f["collection"] == "users" && f["id"] != "id-bystander")
        .await;
    a.close().await;
    b.close().await;
    // Closed connections are forgotten; the bystander's record is the only one left.
    let deadline = tokio::time::Instant::now() + WAIT;
    while s.state.own_records() != 1 {
        assert!(tokio::time::Instant::now() < deadline, "records leak: {}", s.state.own_records());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn guests_and_refused_logins_get_no_users_record() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let doc = channel(&mut alice, json!({"guestAccess": true})).await;
    let mut g = s.guest().await;
    let r = g.join_code(doc["code"].as_str().unwrap(), Some("Jane")).await;
    assert!(r.get("error").is_none(), "{r}");
    let bad = s.token_with(&claims("u-x", "x", now_secs() + 60), Algorithm::HS256, b"wrong-secret");
    g.err("login", json!([{"resume": bad}])).await;
    g.call("logout", json!([])).await;
    g.expect_none(Duration::from_millis(150), |f| f["collection"] == "users").await;
}

/// Issue 8.7: `logout` ends the token itself, not only the connection's
/// identity: the same token is refused afterwards, on any connection.
#[tokio::test]
async fn logout_ends_the_token() {
    let s = TestServer::start().await;
    let token = s.token("id-alice", "alice", &["user"]);
    let mut a = s.guest().await;
    a.ok("login", json!([{"resume": token}])).await;
    let mut b = s.guest().await;
    b.ok("login", json!([{"resume": token}])).await;
    a.call("logout", json!([])).await;
    let e = b.err("login", json!([{"resume": token}])).await;
    assert_error(&e, 403, "Token was ended by logout. Please log in again.");
    let e = a.err("login", json!([{"resume": token}])).await;
    assert_eq!(e["error"], 403);
    // Another token of the same user is fine.
    let fresh = s.token_with(&claims("id-alice", "alice", now_secs() + 7200), Algorithm::HS256, SECRET);
    a.ok("login", json!([{"resume": fresh}])).await;
}

/// Issue 8.7: a connection whose token expires is closed with 4010.
#[tokio::test]
async fn connection_is_closed_when_its_token_expires() {
    let s = TestServer::start().await;
    let mut c = s.guest().await;
    let t = s.token_with(&claims("id-brief", "brief", now_secs() + 2), Algorithm::HS256, SECRET);
    c.ok("login", json!([{"resume": t}])).await;
    let (code, reason) = c.closed().await.expect("a close frame");
    assert_eq!((code, reason.as_str()), (4010, "token expired, sign in again"));
}

/// Issue 8.7: a fresh `login` before expiry keeps the connection and its
/// subscriptions.
#[tokio::test]
async fn login_with_a_fresh_token_before_expiry_keeps_the_connection_and_subscriptions() {
    let s = TestServer::start().await;
    let mut c = s.guest().await;
    let t = s.token_with(&claims("id-renew", "renew", now_secs() + 2), Algorithm::HS256, SECRET);
    c.ok("login", json!([{"resume": t}])).await;
    let rid = channel(&mut c, json!({})).await["_id"].as_str().unwrap().to_owned();
    c.sub_ok("stream-room-messages", json!([rid, false])).await;
    let fresh = s.token_with(&claims("id-renew", "renew", now_secs() + 3600), Algorithm::HS256, SECRET);
    c.ok("login", json!([{"resume": fresh}])).await;
    assert!(c.stays_open(Duration::from_secs(4)).await, "closed although the token was renewed");
    let mut bob = s.user("bob").await;
    bob.ok("joinRoom", json!([rid])).await;
    bob.ok("sendMessage", json!([{"rid": rid, "msg": "still listening?"}])).await;
    let m = c.expect(|f| f["msg"] == "changed" && f["fields"]["args"][0]["msg"] == "still listening?").await;
    assert_eq!(m["collection"], "stream-room-messages");
}

/// Issue 8.6: a username belongs to the first user that used it (trimmed,
/// case-insensitive); a token claiming it for another subject is refused,
/// so methods naming the user still reach its owner.
#[tokio::test]
async fn a_username_cannot_be_taken_over() {
    let s = TestServer::start().await;
    let alice = s.user("alice").await;
    alice.close().await;
    for claimed in ["alice", " alice ", "ALICE"] {
        let t = s.token_with(&claims("mallory2", claimed, now_secs() + 600), Algorithm::HS256, SECRET);
        let e = login_err(&s, &t).await;
        assert_error(&e, 403, "Username belongs to another user");
    }
    // Its owner still signs in with it, in any spelling.
    let t = s.token_with(&claims("id-alice", " Alice", now_secs() + 600), Algorithm::HS256, SECRET);
    s.guest().await.ok("login", json!([{"resume": t}])).await;
    let mut bob = s.user("bob").await;
    let rid = channel(&mut bob, json!({})).await["_id"].as_str().unwrap().to_owned();
    bob.ok("addUserToRoom", json!([{"rid": rid, "username": "alice"}])).await;
    let roles = bob.ok("getRoomById", json!([rid])).await;
    assert_eq!(roles["usersCount"], 2);
    let dm = bob.ok("createDirectMessage", json!(["alice"])).await;
    assert!(dm.to_string().contains("id-alice"), "the DM goes to alice: {dm}");
    assert!(!dm.to_string().contains("mallory2"), "{dm}");
}

/// Issue 8.9: `Guest-` in any case is a guest prefix.
#[tokio::test]
async fn guest_subjects_are_refused_in_any_case() {
    let s = TestServer::start().await;
    for sub in ["guest-abc", "Guest-abc", "GUEST-abc", "gUeSt-x"] {
        let t = s.token_with(&claims(sub, &unique("g"), now_secs() + 600), Algorithm::HS256, SECRET);
        let e = login_err(&s, &t).await;
        assert_error(&e, 403, "Token subject must not start with guest-");
    }
}

/// Issue 8.8: `aud` and `iss` checks.
#[tokio::test]
async fn audience_and_issuer() {
    let now = now_secs() + 600;
    let tok = |s: &TestServer, extra: Value| {
        let mut c = claims(&unique("u"), &unique("n"), now);
        c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        s.token_with(&c, Algorithm::HS256, SECRET)
    };
    // None configured: an `aud` means the token was meant for someone else.
    let s = TestServer::start().await;
    let e = login_err(&s, &tok(&s, json!({"aud": "roomd"}))).await;
    assert_error(&e, 403, "Token has an audience (aud) but roomd accepts none; set --jwt-audience");
    s.guest().await.ok("login", json!([{"resume": tok(&s, json!({"iss": "anyone"}))}])).await;

    let auth = roomd::auth::Authenticator::hs256(SECRET)
        .with_claim_checks(&["roomd".into(), "chat".into()], &["https://idp.example".into()]);
    let s = TestServer::with_auth(auth, |_| {}).await;
    let ok = json!({"aud": "roomd", "iss": "https://idp.example"});
    s.guest().await.ok("login", json!([{"resume": tok(&s, ok)}])).await;
    let ok = json!({"aud": ["other", "chat"], "iss": "https://idp.example"});
    s.guest().await.ok("login", json!([{"resume": tok(&s, ok)}])).await;
    let bad_aud = "Token audience (aud) is not accepted (--jwt-audience)";
    let bad_iss = "Token issuer (iss) is not accepted (--jwt-issuer)";
    for (extra, reason) in [
        (json!({"aud": "other", "iss": "https://idp.example"}), bad_aud),
        (json!({"iss": "https://idp.example"}), bad_aud),
        (json!({"aud": "roomd", "iss": "https://evil.example"}), bad_iss),
        (json!({"aud": "roomd"}), bad_iss),
    ] {
        let e = login_err(&s, &tok(&s, extra.clone())).await;
        assert_error(&e, 403, reason);
    }
}

/// Runs the real binary's `roomd token` with the test secret and `args`;
/// returns the token.
fn cli_token(args: &[&str]) -> String {
    let out = crate::proc::RoomdCmd::cli()
        .arg("token")
        .args(args)
        .env("ROOMD_JWT_SECRET", std::str::from_utf8(SECRET).unwrap())
        .output();
    assert!(out.status.success(), "roomd token failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The claims of a token signed with the test secret, whatever they are.
fn payload(token: &str) -> Value {
    let mut v = jsonwebtoken::Validation::new(Algorithm::HS256);
    v.validate_aud = false;
    v.set_required_spec_claims::<&str>(&[]);
    jsonwebtoken::decode::<Value>(token, &jsonwebtoken::DecodingKey::from_secret(SECRET), &v)
        .expect("a JWT")
        .claims
}

/// Issue 22.5: two tokens minted by `roomd token` in the same second for
/// the same user differ (a unique `jti`), so logging out with one leaves
/// the other working: the revocation list keys a token by its bytes.
#[tokio::test]
async fn cli_tokens_minted_in_one_second_log_out_separately() {
    let s = TestServer::start().await;
    let args = ["--user-id", "id-twin", "--username", "twin"];
    // Two mints a few milliseconds apart; retried if they straddled a
    // second boundary, so the pair really shares its `iat`.
    let (a, b) = (0..5)
        .map(|_| (cli_token(&args), cli_token(&args)))
        .find(|(a, b)| payload(a)["iat"] == payload(b)["iat"])
        .expect("two tokens within one second");
    assert_ne!(a, b, "tokens minted in the same second must differ");
    let (ja, jb) = (payload(&a)["jti"].clone(), payload(&b)["jti"].clone());
    assert!(ja.as_str().is_some_and(|j| j.len() >= 16), "a jti: {}", payload(&a));
    assert_ne!(ja, jb);

    let mut first = s.guest().await;
    first.ok("login", json!([{"resume": a}])).await;
    first.call("logout", json!([])).await;
    assert_error(&login_err(&s, &a).await, 403, "Token was ended by logout. Please log in again.");
    // The twin still signs in, on a new connection.
    s.guest().await.ok("login", json!([{"resume": b}])).await;
}

/// Issue 22.5: `roomd token --audience --issuer` mints tokens that a server
/// started with `--jwt-audience`/`--jwt-issuer` accepts.
#[tokio::test]
async fn cli_token_with_audience_and_issuer() {
    let auth = roomd::auth::Authenticator::hs256(SECRET)
        .with_claim_checks(&["roomd".into()], &["https://idp.example".into()]);
    let s = TestServer::with_auth(auth, |_| {}).await;
    let base = ["--user-id", "id-aud", "--username", "aud"];
    let t = cli_token(&[&base[..], &["--audience", "roomd", "--issuer", "https://idp.example"]].concat());
    assert_eq!(
        (payload(&t)["aud"].clone(), payload(&t)["iss"].clone()),
        (json!("roomd"), json!("https://idp.example"))
    );
    let me = s.guest().await.ok("login", json!([{"resume": t}])).await;
    assert_eq!(me["id"], "id-aud");
    // Without one of them the same server refuses it, saying why (a token
    // lacking both may be refused for either: jsonwebtoken's choice).
    let no_aud = cli_token(&[&base[..], &["--issuer", "https://idp.example"]].concat());
    assert_error(&login_err(&s, &no_aud).await, 403, "Token audience (aud) is not accepted (--jwt-audience)");
    let no_iss = cli_token(&[&base[..], &["--audience", "roomd"]].concat());
    assert_error(&login_err(&s, &no_iss).await, 403, "Token issuer (iss) is not accepted (--jwt-issuer)");
    let wrong =
        cli_token(&[&base[..], &["--audience", "roomd", "--issuer", "https://other.example"]].concat());
    assert_error(&login_err(&s, &wrong).await, 403, "Token issuer (iss) is not accepted (--jwt-issuer)");
}

/// Issue 22.5: `roomd token --help` describes every claim flag.
#[test]
fn cli_token_help_describes_its_flags() {
    let out = crate::proc::RoomdCmd::cli().args(["token", "--help"]).output();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--user-id", "--username", "--name", "--audience", "--issuer"] {
        // clap prints a flag's description on its own line or after it;
        // either way some words follow the flag before the next one.
        let at = help.find(&format!("  {flag} ")).unwrap_or_else(|| panic!("{flag} missing:\n{help}"));
        let mut lines = help[at + flag.len() + 2..].lines();
        let own = lines.next().unwrap_or("").to_owned();
        let below = lines.take_while(|l| !l.trim_start().starts_with('-') && !l.trim().is_empty());
        let described = below.fold(own, |acc, l| acc + " " + l);
        let words =
            described.split_whitespace().filter(|w| !w.starts_with('<') && !w.starts_with('[')).count();
        assert!(words >= 3, "{flag} has no description:\n{help}");
    }
}

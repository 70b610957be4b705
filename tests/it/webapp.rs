//! The meeting-room web app's server side: `getRoomParticipants` (what a
//! guest may learn about the room it is in), the embedded files on the DDP
//! port, and the development sign-in link in the startup log.

use crate::http::{get, raw};
use crate::proc::{Roomd, RoomdCmd};
use crate::support::*;
use serde_json::{Value, json};
use std::time::Duration;

#[tokio::test]
async fn participants_for_members_and_guests() {
    let s = TestServer::start().await;
    let mut host = s.user("alice").await;
    let doc = channel(&mut host, json!({"guestAccess": true, "maxParticipants": 5})).await;
    let (rid, code) = (doc["_id"].as_str().unwrap(), doc["code"].as_str().unwrap());
    let mut jane = s.guest().await;
    let seat = jane.ok("join-room", json!([{"code": code, "guestName": "Jane"}])).await;
    let mut bob = s.user("bob").await;
    bob.ok("join-room", json!([{"code": code}])).await;

    // A guest, who may not call getRoomById, sees the room and its people.
    let v = jane.ok("getRoomParticipants", json!([rid])).await;
    let room = &v["room"];
    assert_eq!(room["_id"], rid);
    assert_eq!(room["name"], doc["name"]);
    assert_eq!(room["code"], code);
    assert_eq!((room["locked"].clone(), room["active"].clone()), (json!(false), json!(true)));
    assert_eq!((room["maxParticipants"].clone(), room["participantCount"].clone()), (json!(5), json!(3)));
    let ps = v["participants"].as_array().expect("participants array");
    assert_eq!(ps.len(), 3, "{v}");
    // Oldest seat first: the host, then the guest, then bob.
    assert_eq!(ps[0]["userId"], "id-alice");
    assert_eq!(ps[0]["isHost"], true);
    assert_eq!(ps[0]["name"], "alice Name", "a user's display name");
    assert_eq!(ps[1]["guestName"], "Jane");
    assert_eq!(ps[1]["name"], "Jane");
    assert_eq!(ps[1]["id"], seat["id"]);
    assert_eq!(ps[2]["userId"], "id-bob");
    for p in ps {
        assert!(p.get("guestToken").is_none(), "a guest's token must never be shown to others: {p}");
        assert_eq!(p["isActive"], true);
        assert!(is_iso8601(&p["joinedAt"]), "{p}");
        assert_eq!(p["leftAt"], Value::Null);
    }
    // Members who are users get the same answer.
    assert_eq!(host.ok("getRoomParticipants", json!([rid])).await, v);

    // State changes show up: lock, leave.
    host.ok("saveRoomSettings", json!([rid, {"locked": true}])).await;
    bob.ok("leaveRoom", json!([rid])).await;
    let v = jane.ok("getRoomParticipants", json!([rid])).await;
    assert_eq!(v["room"]["locked"], true);
    assert_eq!(v["room"]["participantCount"], 2);
    assert_eq!(v["participants"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn participants_refused_to_non_members() {
    let s = TestServer::start().await;
    let mut host = s.user("alice").await;
    let doc = channel(&mut host, json!({"guestAccess": true})).await;
    let (rid, code) = (doc["_id"].as_str().unwrap(), doc["code"].as_str().unwrap());
    let other = channel(&mut host, json!({"guestAccess": true})).await;

    // A signed-in non-member, even of a public channel.
    let mut bob = s.user("bob").await;
    let e = bob.err("getRoomParticipants", json!([rid])).await;
    assert_error(&e, "error-not-allowed", "Not allowed");
    assert_eq!(e["details"]["method"], "getRoomParticipants");
    assert_eq!(e["details"]["statusCode"], 403);
    // A guest that never joined, and a guest seated in another room.
    let mut fresh = s.guest().await;
    assert_error(&fresh.err("getRoomParticipants", json!([rid])).await, "error-not-allowed", "Not allowed");
    let mut elsewhere = s.guest().await;
    elsewhere.ok("join-room", json!([{"code": other["code"], "guestName": "Eve"}])).await;
    assert_error(
        &elsewhere.err("getRoomParticipants", json!([rid])).await,
        "error-not-allowed",
        "Not allowed",
    );
    // A guest that left is no longer a member.
    let mut jane = s.guest().await;
    jane.ok("join-room", json!([{"code": code, "guestName": "Jane"}])).await;
    jane.ok("getRoomParticipants", json!([rid])).await;
    jane.call("leaveRoom", json!([rid])).await;
    assert_error(&jane.err("getRoomParticipants", json!([rid])).await, "error-not-allowed", "Not allowed");

    // Bad input and unknown rooms.
    assert_match_failed(&bob.err("getRoomParticipants", json!([])).await, "rid");
    assert_match_failed(&bob.err("getRoomParticipants", json!([5])).await, "rid");
    assert_error(
        &bob.err("getRoomParticipants", json!(["nope"])).await,
        "error-invalid-room",
        "Invalid room",
    );
}

#[tokio::test]
async fn participants_of_an_ended_room() {
    let s = TestServer::start().await;
    let mut host = s.user("alice").await;
    let doc = channel(&mut host, json!({"guestAccess": true})).await;
    let (rid, code) = (doc["_id"].as_str().unwrap(), doc["code"].as_str().unwrap());
    let mut jane = s.guest().await;
    jane.ok("join-room", json!([{"code": code, "guestName": "Jane"}])).await;
    host.ok("endRoom", json!([rid])).await;
    // Members stay members of an ended room until they leave.
    let v = jane.ok("getRoomParticipants", json!([rid])).await;
    assert_eq!(v["room"]["active"], false);
    assert_eq!(v["room"]["participantCount"], 2);
    // Once it has emptied, nobody is a member.
    jane.ok("leaveRoom", json!([rid])).await;
    host.ok("leaveRoom", json!([rid])).await;
    assert_error(&host.err("getRoomParticipants", json!([rid])).await, "error-not-allowed", "Not allowed");
}

fn header<'a>(headers: &'a str, name: &str) -> Option<&'a str> {
    headers.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test]
async fn web_app_is_served_on_the_ddp_port() {
    let s = TestServer::start().await;
    for path in ["/", "/r/abc-def-ghi"] {
        let r = get(s.addr, path).await;
        assert_eq!(r.status, 200, "{path}: {r:?}");
        assert_eq!(header(&r.headers, "content-type"), Some("text/html; charset=utf-8"));
        assert!(r.body.contains("<script type=\"module\" src=\"/app/app.js\">"), "{path}: {}", r.body);
        let csp = header(&r.headers, "content-security-policy").expect("CSP");
        assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"), "{csp}");
        assert!(csp.contains(&format!("connect-src 'self' ws://{0} wss://{0}", s.addr)), "{csp}");
        assert_eq!(header(&r.headers, "x-content-type-options"), Some("nosniff"));
        assert_eq!(header(&r.headers, "cache-control"), Some("no-cache"));
    }
    for (path, ty) in [
        ("/app/app.js", "text/javascript; charset=utf-8"),
        ("/app/ddp.js", "text/javascript; charset=utf-8"),
        ("/app/style.css", "text/css; charset=utf-8"),
    ] {
        let r = get(s.addr, path).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(header(&r.headers, "content-type"), Some(ty), "{path}");
        assert!(!r.body.is_empty());
        assert_eq!(header(&r.headers, "content-length"), Some(r.body.len().to_string().as_str()));
        // Unchanged since the browser's copy: 304 without a body.
        let etag = header(&r.headers, "etag").expect("etag").to_owned();
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nIf-None-Match: {etag}\r\nConnection: close\r\n\r\n",
            s.addr
        );
        let again = raw(s.addr, req.as_bytes()).await;
        assert!(again.starts_with("HTTP/1.1 304 "), "{again}");
        assert!(again.ends_with("\r\n\r\n"), "a 304 has no body: {again:?}");
    }
    let head = raw(
        s.addr,
        format!("HEAD /app/app.js HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", s.addr).as_bytes(),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200 ") && head.ends_with("\r\n\r\n"), "{head:?}");
    let post =
        raw(s.addr, format!("POST / HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", s.addr).as_bytes())
            .await;
    assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
    assert_eq!(header(post.split("\r\n\r\n").next().unwrap_or(""), "allow"), Some("GET, HEAD"), "{post}");
    for path in ["/app/nope.js", "/app/../Cargo.toml", "/index.html", "/rooms", "/r.html"] {
        assert_eq!(get(s.addr, path).await.status, 404, "{path}");
    }
}

/// Issue 22.3: a share link pasted at the end of a sentence, with a
/// trailing slash, or cut short still opens the app (which strips the
/// punctuation or says the room is not found), never a bare 404.
#[tokio::test]
async fn share_links_with_punctuation_or_no_code_serve_the_app() {
    let s = TestServer::start().await;
    for path in [
        "/r/abc-def-ghi/",
        "/r/abc-def-ghi.",
        "/r/abc-def-ghi)",
        "/r/abc-def-ghi),",
        "/r/abc-def-ghi%E2%80%9D", // a closing quotation mark
        "/r/abc-def-ghi/.",
        "/r",
        "/r/",
        "/r/a/b",
    ] {
        let r = get(s.addr, path).await;
        assert_eq!(r.status, 200, "{path}: {r:?}");
        assert_eq!(header(&r.headers, "content-type"), Some("text/html; charset=utf-8"), "{path}");
        assert!(r.body.contains("<script type=\"module\" src=\"/app/app.js\">"), "{path}: {}", r.body);
        assert!(header(&r.headers, "content-security-policy").is_some(), "{path}");
    }
}

/// A running binary, killed (and its data directory removed) however the
/// test ends.
struct Running(Roomd, std::path::PathBuf);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.kill9();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

/// Starts the real binary with `--in-memory` and a fresh data directory
/// (`secret`: `ROOMD_JWT_SECRET`, or none for the development secret) and
/// returns it with its log lines up to the in-memory notice, which comes
/// after the listening line and the sign-in link.
fn start_binary(secret: Option<&str>) -> (Running, Vec<String>) {
    let dir = std::env::temp_dir().join(format!("roomd-devlink-{}-{}", std::process::id(), unique("d")));
    let _ = std::fs::remove_dir_all(&dir);
    let mut cmd = RoomdCmd::server().arg("--in-memory").data_dir(&dir).env_remove("ROOMD_JWT_SECRET");
    if let Some(s) = secret {
        cmd = cmd.env("ROOMD_JWT_SECRET", s);
    }
    let roomd = cmd.spawn();
    let lines = roomd.lines_until(|l| l.contains("in-memory mode"));
    (Running(roomd, dir), lines)
}

/// With its generated development secret, roomd prints a sign-in link whose
/// token logs in as a user who may create rooms; with a configured secret it
/// prints none.
#[tokio::test]
async fn dev_secret_prints_a_working_sign_in_link() {
    let (_server, lines) = start_binary(None);
    let link =
        lines.iter().find_map(|l| Some(l[l.find("open http://")? + "open ".len()..].trim().to_owned()));
    let check = async {
        let link = link.unwrap_or_else(|| panic!("no sign-in link in the startup log: {lines:#?}"));
        let (base, token) = link.split_once("/#token=").unwrap_or_else(|| panic!("odd link {link}"));
        let addr = base.strip_prefix("http://127.0.0.1:").unwrap_or_else(|| panic!("not loopback: {link}"));
        let mut c = Client::open(&format!("ws://127.0.0.1:{addr}/websocket")).await;
        c.connect().await;
        let me = c.ok("login", json!([{"resume": token}])).await;
        assert_eq!(me["id"], "dev", "{me}");
        let ttl_ms = me["tokenExpires"]["$date"].as_u64().unwrap() - roomd::auth::now_secs() * 1000;
        assert!((23 * 3600 * 1000..=24 * 3600 * 1000).contains(&ttl_ms), "{me}");
        let room = channel(&mut c, json!({})).await;
        assert_eq!(room["u"]["username"], "host");
    };
    tokio::time::timeout(Duration::from_secs(20), check).await.expect("sign-in check timed out");

    let (_server, lines) = start_binary(Some("configured-secret"));
    assert!(lines.iter().any(|l| l.contains("listening")), "{lines:#?}");
    assert!(!lines.iter().any(|l| l.contains("#token=")), "a configured secret gets no link: {lines:#?}");
}

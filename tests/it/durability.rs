//! The durable store: acknowledged changes survive SIGKILL and a graceful
//! restart; old schemas migrate; newer ones are refused.
//!
//! These tests run the real `roomd` binary on a temporary data directory.

use crate::support::{Client, unique};
use roomd::auth::{Authenticator, Claims, now_secs};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SECRET: &str = "durability-secret";

struct Proc {
    child: Child,
    url: String,
}

/// A failing assertion must not leave a server running.
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("roomd-{tag}-{}-{}", std::process::id(), unique("d")));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Starts `roomd` on a free port with `dir` as its data directory and waits
/// for its "listening" line.
fn start(dir: &Path) -> Proc {
    start_with(dir, &[])
}

/// [`start`] with extra command-line arguments.
fn start_with(dir: &Path, extra: &[&str]) -> Proc {
    // Rate limits would only slow the workload and the checks down; this
    // test is about durability.
    let mut child = Command::new(env!("CARGO_BIN_EXE_roomd"))
        .args(["--listen", "127.0.0.1:0", "--no-rate-limits", "--data-dir"])
        .arg(dir)
        .args(extra)
        .env("ROOMD_JWT_SECRET", SECRET)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn roomd");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(i) = line.find("ws://") {
                let rest = &line[i..];
                let end = rest.find("/websocket").map(|e| e + "/websocket".len()).unwrap_or(rest.len());
                if let Some(tx) = tx.take() {
                    let _ = tx.send(rest[..end].to_owned());
                }
            }
            // Keep draining so the child never blocks on a full pipe.
        }
    });
    let url = rx.recv_timeout(Duration::from_secs(20)).expect("roomd did not report its address");
    Proc { child, url }
}

fn sigterm(p: &mut Proc) -> std::process::ExitStatus {
    let _ = Command::new("kill").args(["-TERM", &p.child.id().to_string()]).status();
    for _ in 0..200 {
        if let Some(st) = p.child.try_wait().unwrap() {
            return st;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("roomd did not exit after SIGTERM");
}

fn token(id: &str, username: &str, roles: &[&str]) -> String {
    Authenticator::hs256(SECRET.as_bytes()).mint(&Claims {
        sub: id.into(),
        username: username.into(),
        name: None,
        roles: Some(roles.iter().map(|r| r.to_string()).collect()),
        exp: now_secs() + 3600,
        nbf: None,
        iat: None,
    })
}

async fn login(url: &str, username: &str) -> Client {
    let mut c = Client::open(url).await;
    c.connect().await;
    let r = c.call("login", json!([{"resume": token(&format!("id-{username}"), username, &["user"])}])).await;
    assert!(r.get("error").is_none(), "{r}");
    c
}

/// One client's acknowledged operations, and whether an operation was in
/// flight when the server died (its outcome is then unknown).
#[derive(Default, Debug)]
struct Ledger {
    /// (rid, capacity, creator)
    created: Vec<(String, u64, String)>,
    /// (rid, username) → member after the last acknowledged join/leave.
    membership: HashMap<(String, String), bool>,
    /// Pairs whose last join/leave was never answered.
    unknown: Vec<(String, String)>,
    messages: Vec<(String, String)>,
    topics: HashMap<String, String>,
    unknown_topic: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_operations_survive_sigkill() {
    let dir = tempdir("crash");
    let mut server = start(&dir);
    let url = server.url.clone();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let rooms: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (url, ledger, rooms, stop) = (url.clone(), ledger.clone(), rooms.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let name = format!("crash{i}");
            let mut c = login(&url, &name).await;
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                // Every reply is recorded only once it has arrived: a call
                // cut off by the kill is "unknown", never "acknowledged".
                match n % 5 {
                    0 | 1 => {
                        let cap = 3 + n % 3;
                        let room = format!("crash-{i}-{n}");
                        let Some(r) = try_call(
                            &mut c,
                            "createChannel",
                            json!([room, [], false, {}, {"maxParticipants": cap}]),
                        )
                        .await
                        else {
                            return;
                        };
                        if let Some(rid) = r["result"]["_id"].as_str() {
                            let mut l = ledger.lock().unwrap();
                            l.created.push((rid.to_owned(), cap, name.clone()));
                            l.membership.insert((rid.to_owned(), name.clone()), true);
                            rooms.lock().unwrap().push(rid.to_owned());
                        }
                    }
                    2 => {
                        let pick =
                            { rooms.lock().unwrap().iter().rev().nth((n as usize * 7 + i) % 5).cloned() };
                        let Some(rid) = pick else { continue };
                        ledger.lock().unwrap().unknown.push((rid.clone(), name.clone()));
                        let Some(r) = try_call(&mut c, "joinRoom", json!([rid])).await else { return };
                        let mut l = ledger.lock().unwrap();
                        l.unknown.retain(|p| p != &(rid.clone(), name.clone()));
                        if r.get("error").is_none() {
                            l.membership.insert((rid, name.clone()), true);
                        }
                    }
                    3 => {
                        let pick = {
                            let l = ledger.lock().unwrap();
                            l.membership
                                .iter()
                                .filter(|((_, u), m)| u == &name && **m)
                                .map(|((r, _), _)| r.clone())
                                .next()
                        };
                        let Some(rid) = pick else { continue };
                        ledger.lock().unwrap().unknown.push((rid.clone(), name.clone()));
                        let Some(r) =
                            try_call(&mut c, "sendMessage", json!([{"rid": rid, "msg": format!("m{n}")}]))
                                .await
                        else {
                            return;
                        };
                        let mut l = ledger.lock().unwrap();
                        l.unknown.retain(|p| p != &(rid.clone(), name.clone()));
                        if let Some(id) = r["result"]["_id"].as_str() {
                            l.messages.push((rid, id.to_owned()));
                        }
                    }
                    _ => {
                        // Only the creator edits its rooms' topics, so "the last
                        // acknowledged topic" is well defined.
                        let pick = {
                            let l = ledger.lock().unwrap();
                            l.created.iter().rev().find(|(_, _, c)| c == &name).map(|(r, _, _)| r.clone())
                        };
                        let Some(rid) = pick else { continue };
                        let topic = format!("t{i}-{n}");
                        ledger.lock().unwrap().unknown_topic.push(rid.clone());
                        let Some(r) =
                            try_call(&mut c, "saveRoomSettings", json!([rid, "roomTopic", topic])).await
                        else {
                            return;
                        };
                        let mut l = ledger.lock().unwrap();
                        if r.get("error").is_none() {
                            l.topics.insert(rid.clone(), topic);
                        }
                        if let Some(pos) = l.unknown_topic.iter().position(|x| x == &rid) {
                            l.unknown_topic.remove(pos);
                        }
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.child.kill().expect("SIGKILL");
    let _ = server.child.wait();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }

    let mut server = start(&dir);
    // All writers have stopped; take the ledger out of its lock.
    let l = std::mem::take(&mut *ledger.lock().unwrap());
    assert!(l.created.len() >= 5, "too little work happened before the kill: {l:?}");
    eprintln!(
        "crash test: {} rooms, {} memberships, {} messages, {} topics acknowledged",
        l.created.len(),
        l.membership.len(),
        l.messages.len(),
        l.topics.len()
    );
    let mut admin = Client::open(&server.url).await;
    admin.connect().await;
    admin.ok("login", json!([{"resume": token("id-root", "root", &["admin"])}])).await;
    for (rid, cap, _) in &l.created {
        let doc = admin.ok("getRoomById", json!([rid])).await;
        assert_eq!(doc["_id"], rid.as_str(), "acknowledged room lost");
        let count = doc["usersCount"].as_u64().unwrap();
        assert!(count <= *cap, "room {rid} over capacity after restart: {count} > {cap}");
        if let Some(topic) = l.topics.get(rid).filter(|_| !l.unknown_topic.contains(rid)) {
            assert_eq!(doc["topic"], topic.as_str(), "acknowledged topic lost");
        }
    }
    for i in 0..8 {
        let name = format!("crash{i}");
        let mut c = login(&server.url, &name).await;
        let subs = c.ok("subscriptions/get", json!([])).await;
        let mine: Vec<&str> = subs.as_array().unwrap().iter().filter_map(|s| s["rid"].as_str()).collect();
        for ((rid, user), member) in &l.membership {
            if user != &name || l.unknown.contains(&(rid.clone(), user.clone())) {
                continue;
            }
            assert_eq!(mine.contains(&rid.as_str()), *member, "{user} membership of {rid} lost");
        }
        c.close().await;
    }
    let mut by_room: HashMap<&str, Vec<&str>> = HashMap::new();
    for (rid, id) in &l.messages {
        by_room.entry(rid).or_default().push(id);
    }
    for (rid, ids) in by_room {
        let hist = admin.ok("loadHistory", json!([rid, null, 1000, null])).await;
        let have: Vec<&str> =
            hist["messages"].as_array().unwrap().iter().filter_map(|m| m["_id"].as_str()).collect();
        for id in ids {
            assert!(have.contains(&id), "acknowledged message {id} in {rid} lost");
        }
    }
    assert_eq!(sigterm(&mut server).code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Calls `method`; `None` if the connection died before the reply.
async fn try_call(c: &mut Client, method: &str, params: Value) -> Option<Value> {
    c.try_call(method, params).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_restart_keeps_everything() {
    let dir = tempdir("graceful");
    let mut server = start(&dir);
    let mut alice = login(&server.url, "galice").await;
    let mut bob = login(&server.url, "gbob").await;
    let room = alice.ok("createPrivateGroup", json!([unique("g"), ["gbob"], false])).await;
    let rid = room["_id"].as_str().unwrap().to_owned();
    alice
        .ok(
            "saveRoomSettings",
            json!([rid, {"roomTopic": "kept", "joinCode": "s3cret", "maxParticipants": 7, "guestChat": true}]),
        )
        .await;
    alice.ok("addRoomModerator", json!([rid, "id-gbob"])).await;
    bob.ok("toggleFavorite", json!([rid, true])).await;
    let carol = login(&server.url, "gcarol").await;
    alice.ok("addUserToRoom", json!([{"rid": rid, "username": "gcarol"}])).await;
    alice.ok("muteUserInRoom", json!([{"rid": rid, "username": "gcarol"}])).await;
    carol.close().await;
    let sent = alice.ok("sendMessage", json!([{"rid": rid, "msg": "before restart"}])).await;
    alice.close().await;
    bob.close().await;
    assert_eq!(sigterm(&mut server).code(), Some(0), "graceful shutdown must exit 0");

    let mut server = start(&dir);
    let mut alice = login(&server.url, "galice").await;
    let doc = alice.ok("getRoomById", json!([rid])).await;
    assert_eq!(doc["topic"], "kept");
    assert_eq!(doc["maxParticipants"], 7);
    assert_eq!(doc["guestChat"], true);
    assert_eq!(doc["joinCodeRequired"], true);
    assert_eq!(doc["code"], room["code"]);
    assert_eq!(doc["usersCount"], 3);
    // The mute survived the restart.
    let mut carol = login(&server.url, "gcarol").await;
    let e = carol.err("sendMessage", json!([{"rid": rid, "msg": "still muted?"}])).await;
    assert_eq!(e["error"], "error-action-not-allowed", "{e}");
    carol.close().await;
    let roles = alice.ok("getRoomRoles", json!([rid])).await;
    assert!(
        roles
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["u"]["username"] == "gbob" && r["roles"][0] == "moderator")
    );
    let hist = alice.ok("loadHistory", json!([rid, null, 50, null])).await;
    assert!(hist["messages"].as_array().unwrap().iter().any(|m| m["_id"] == sent["_id"]));
    let mut bob = login(&server.url, "gbob").await;
    let subs = bob.ok("subscriptions/get", json!([])).await;
    let sub = subs.as_array().unwrap().iter().find(|s| s["rid"] == rid.as_str()).expect("bob's subscription");
    assert_eq!(sub["f"], true);
    // The user directory survived too: alice can add bob by username to a
    // new room without bob logging in first on this run.
    let other = alice.ok("createChannel", json!([unique("g2"), ["gbob"]])).await;
    assert_eq!(other["usersCount"], 2);
    // A message id used before the restart is still refused.
    let dup = alice.err("sendMessage", json!([{"_id": sent["_id"], "rid": rid, "msg": "again"}])).await;
    assert_eq!(dup["error"], "error-message-already-exists");
    bob.close().await;
    assert_eq!(sigterm(&mut server).code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn old_schema_is_migrated_and_newer_refused() {
    use roomd::store::sqlite::MIGRATIONS;
    let dir = tempdir("schema");
    {
        let conn = rusqlite::Connection::open(dir.join("roomd.sqlite3")).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
    }
    let mut server = start(&dir);
    let mut c = login(&server.url, "schema").await;
    c.ok("createChannel", json!([unique("s")])).await;
    c.close().await;
    assert_eq!(sigterm(&mut server).code(), Some(0));
    let version: i64 = rusqlite::Connection::open(dir.join("roomd.sqlite3"))
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, roomd::store::LATEST_SCHEMA);

    rusqlite::Connection::open(dir.join("roomd.sqlite3"))
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_roomd"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .env("ROOMD_JWT_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(!out.status.success(), "a newer schema must be refused");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("newer"), "the refusal must say why: {err}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn sigkill(p: &mut Proc) {
    let _ = p.child.kill();
    let _ = p.child.wait();
}

/// Issue 8.1: an `_id` reused after it left the in-memory history window
/// was acknowledged and then lost on restart (the store kept the older row).
/// It is refused, whatever its age, and every acknowledged message survives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reused_message_id_outside_the_window_is_refused_and_nothing_acknowledged_is_lost() {
    let dir = tempdir("dupid");
    let mut server = start_with(&dir, &["--history-limit", "3"]);
    let mut alice = login(&server.url, "dupalice").await;
    let rid = alice.ok("createChannel", json!([unique("d")])).await["_id"].as_str().unwrap().to_owned();
    alice.ok("sendMessage", json!([{"_id": "X", "rid": rid, "msg": "original"}])).await;
    for i in 0..3 {
        alice.ok("sendMessage", json!([{"rid": rid, "msg": format!("filler {i}")}])).await;
    }
    let e = alice.err("sendMessage", json!([{"_id": "X", "rid": rid, "msg": "impostor"}])).await;
    assert_eq!(e["error"], "error-message-already-exists", "{e}");
    // A burst of client-chosen ids, each checked while earlier ones may
    // still be in flight to the store and already out of the window.
    let ids: Vec<String> = (0..6).map(|i| format!("B{i}")).collect();
    for id in &ids {
        alice.send_method("sendMessage", json!([{"_id": id, "rid": rid, "msg": "burst"}])).await;
    }
    for id in &ids {
        alice.send_method("sendMessage", json!([{"_id": id, "rid": rid, "msg": "burst again"}])).await;
    }
    let mut acked = 0;
    let mut refused = 0;
    while acked + refused < 12 {
        let f = alice.expect(|f| f["msg"] == "result").await;
        if f.get("error").is_some() {
            assert_eq!(f["error"]["error"], "error-message-already-exists", "{f}");
            refused += 1;
        } else {
            acked += 1;
        }
    }
    assert_eq!((acked, refused), (6, 6));
    let msgs_before = alice.room(&rid).await["msgs"].clone();
    assert_eq!(msgs_before, 4 + 6);
    sigkill(&mut server);

    let server = start_with(&dir, &["--history-limit", "50"]);
    let mut alice = login(&server.url, "dupalice").await;
    assert_eq!(alice.room(&rid).await["msgs"], msgs_before, "msgs counts what was stored");
    let hist = alice.ok("loadHistory", json!([rid, null, 50, null])).await;
    let msgs = hist["messages"].as_array().unwrap();
    let x: Vec<&Value> = msgs.iter().filter(|m| m["_id"] == "X").collect();
    assert_eq!(x.len(), 1);
    assert_eq!(x[0]["msg"], "original");
    for id in &ids {
        assert!(msgs.iter().any(|m| m["_id"] == id.as_str()), "acknowledged {id} lost");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Eight connections log in at once as new user `name`; returns the first
/// result as soon as it arrives (the others may still be pending).
async fn racing_logins(url: &str, name: &str) -> Option<Value> {
    let mut clients = Vec::new();
    for _ in 0..8 {
        let mut c = Client::open(url).await;
        c.connect().await;
        clients.push(c);
    }
    let t = token(&format!("id-{name}"), name, &["user"]);
    let (tx, mut rx) = tokio::sync::mpsc::channel(8);
    let go = Arc::new(tokio::sync::Barrier::new(8));
    for mut c in clients {
        let (tx, t, go) = (tx.clone(), t.clone(), go.clone());
        tokio::spawn(async move {
            go.wait().await;
            // `try_call`: the server may die under the later ones.
            let f = c.try_call("login", json!([{"resume": t}])).await;
            let _ = tx.send(f).await;
        });
    }
    tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap()
}

/// Issue 8.2: eight connections log in as the same new user at once; only
/// one writes the record, and the others used to be answered before it
/// was committed (so SIGKILL right after the first result lost the user
/// about once in six runs). Every result now waits for the commit: the
/// record is visible in the database the moment any result arrives, and
/// survives a SIGKILL sent right then.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_logins_answer_only_after_the_user_is_stored() {
    let dir = tempdir("loginrace");
    let mut server = start(&dir);
    for round in 0..20 {
        let name = format!("racer{round}");
        let first = racing_logins(&server.url, &name).await;
        // Committed transactions are visible to a new reader at once (WAL).
        let db = rusqlite::Connection::open_with_flags(
            dir.join("roomd.sqlite3"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let stored: bool = db
            .query_row("SELECT 1 FROM users WHERE id = ?1", [format!("id-{name}")], |_| Ok(()))
            .map(|_| true)
            .unwrap_or(false);
        assert!(first.as_ref().is_some_and(|f| f.get("error").is_none()), "{first:?}");
        assert!(stored, "round {round}: login of {name} acknowledged before the user was stored");
    }
    let first = racing_logins(&server.url, "racer-killed").await;
    sigkill(&mut server);
    assert!(first.as_ref().is_some_and(|f| f.get("error").is_none()), "{first:?}");
    let server = start(&dir);
    let mut other = login(&server.url, "witness").await;
    let doc = other.ok("createPrivateGroup", json!([unique("w"), ["racer-killed"]])).await;
    assert_eq!(doc["usersCount"], 2, "acknowledged user lost after SIGKILL");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 8.6 and 8.7 across restarts: a username stays with its first
/// owner, a logged-out token stays refused, and `roomd free-username`
/// (server stopped) frees a name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn username_owners_and_logouts_survive_restart_and_names_can_be_freed() {
    let dir = tempdir("owners");
    let mut server = start(&dir);
    let alice = login(&server.url, "owner-alice").await;
    alice.close().await;
    let mut c = Client::open(&server.url).await;
    c.connect().await;
    let t = token("id-leaver", "leaver", &["user"]);
    c.ok("login", json!([{"resume": t}])).await;
    c.call("logout", json!([])).await;
    sigkill(&mut server);

    let mut server = start(&dir);
    let mut m = Client::open(&server.url).await;
    m.connect().await;
    let e = m.err("login", json!([{"resume": token("mallory2", " Owner-Alice ", &["user"])}])).await;
    assert_eq!(e["error"], 403, "{e}");
    assert_eq!(e["reason"], "Username belongs to another user");
    let e = m.err("login", json!([{"resume": t}])).await;
    assert_eq!(e["reason"], "Token was ended by logout. Please log in again.", "{e}");
    assert_eq!(sigterm(&mut server).code(), Some(0));

    let out = Command::new(env!("CARGO_BIN_EXE_roomd"))
        .args(["free-username", " OWNER-alice", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("id-owner-alice"), "{out:?}");

    let server = start(&dir);
    let mut m = Client::open(&server.url).await;
    m.connect().await;
    m.ok("login", json!([{"resume": token("mallory2", "owner-alice", &["user"])}])).await;
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A v2 data directory gets username owners from its users (the earliest
/// stored user keeps a name several shared).
#[tokio::test]
async fn v2_data_dir_gets_username_owners() {
    use roomd::store::sqlite::MIGRATIONS;
    let dir = tempdir("schema2");
    {
        let conn = rusqlite::Connection::open(dir.join("roomd.sqlite3")).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.execute_batch(MIGRATIONS[1]).unwrap();
        conn.pragma_update(None, "user_version", 2).unwrap();
        conn.execute(
            "INSERT INTO users (id, doc) VALUES ('first', '{\"_id\":\"first\",\"username\":\"Shared\"}')",
            [],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO users (id, doc) VALUES ('second', '{\"_id\":\"second\",\"username\":\"shared\"}')",
            [],
        )
        .unwrap();
    }
    let server = start(&dir);
    let mut c = Client::open(&server.url).await;
    c.connect().await;
    let e = c.err("login", json!([{"resume": token("second", "shared", &["user"])}])).await;
    assert_eq!(e["reason"], "Username belongs to another user", "{e}");
    c.ok("login", json!([{"resume": token("first", "SHARED", &["user"])}])).await;
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

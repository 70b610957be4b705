//! Races over real sockets: many concurrent joins against few seats, joins
//! racing a lock, and guests that vanish mid-join.

use crate::support::*;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Barrier;

/// Concurrent clients in the capacity races.
const JOINERS: usize = 1000;
const FREE_SEATS: usize = 10;

/// Opens `n` clients (logged in as `prefix<i>`, or guests when `prefix` is
/// `None`), a bounded number at a time.
async fn open_many(s: &TestServer, n: usize, prefix: Option<&str>) -> Vec<Client> {
    let url = s.url();
    let mut out = Vec::with_capacity(n);
    let mut pending = futures_util::stream::iter((0..n).map(|i| {
        let url = url.clone();
        let token = prefix.map(|p| {
            let id = format!("id-{p}{i}");
            (s.token(&id, &format!("{p}{i}"), &["user"]), id)
        });
        async move {
            let mut c = Client::open(&url).await;
            c.connect().await;
            if let Some((t, id)) = token {
                let r = c.call("login", json!([{"resume": t}])).await;
                assert!(r.get("error").is_none(), "{r}");
                c.user_id = Some(id);
            }
            c
        }
    }))
    .buffer_unordered(64);
    while let Some(c) = pending.next().await {
        out.push(c);
    }
    out
}

/// Runs `call` on every client at (nearly) the same instant; returns each
/// client's `result` frame.
async fn all_at_once(clients: Vec<Client>, method: &'static str, params: Value) -> Vec<Value> {
    let barrier = Arc::new(Barrier::new(clients.len()));
    let tasks: FuturesUnordered<_> = clients
        .into_iter()
        .map(|mut c| {
            let barrier = barrier.clone();
            let params = params.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let r = c.call(method, params).await;
                (r, c)
            })
        })
        .collect();
    let done: Vec<_> = tasks.collect().await;
    let mut results = Vec::new();
    let mut keep = Vec::new();
    for d in done {
        let (r, c) = d.expect("join task panicked");
        results.push(r);
        keep.push(c);
    }
    // Close after everyone is done so guest seats are not released early.
    for c in keep {
        c.close().await;
    }
    results
}

fn count_ok_and_full(results: &[Value]) -> (usize, usize) {
    let mut ok = 0;
    let mut full = 0;
    for r in results {
        match r.get("error") {
            None => ok += 1,
            Some(e) if e["error"] == "error-room-full" => full += 1,
            Some(e) => panic!("unexpected error: {e}"),
        }
    }
    (ok, full)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_join_room_admits_exactly_capacity() {
    let s = TestServer::start().await;
    let mut owner = s.user("owner").await;
    let doc = channel(&mut owner, json!({"maxParticipants": FREE_SEATS + 1})).await;
    let rid = doc["_id"].as_str().unwrap().to_owned();
    owner.sub_ok("stream-room-messages", json!([rid, false])).await;
    let clients = open_many(&s, JOINERS, Some("u")).await;
    let results = all_at_once(clients, "joinRoom", json!([rid])).await;
    let (ok, full) = count_ok_and_full(&results);
    assert_eq!(ok, FREE_SEATS, "admitted");
    assert_eq!(full, JOINERS - FREE_SEATS);
    for r in results.iter().filter(|r| r.get("error").is_none()) {
        assert_eq!(r["result"], true);
    }
    assert_eq!(owner.room(&rid).await["usersCount"], FREE_SEATS + 1);
    for _ in 0..FREE_SEATS {
        assert_eq!(owner.room_message(&rid).await["t"], "uj");
    }
    owner.expect_none(Duration::from_millis(200), |f| f["msg"] == "changed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_join_by_code_admits_exactly_capacity() {
    let s = TestServer::start().await;
    let mut owner = s.user("owner").await;
    let doc = channel(&mut owner, json!({"maxParticipants": FREE_SEATS + 1, "guestAccess": true})).await;
    let rid = doc["_id"].as_str().unwrap().to_owned();
    let code = doc["code"].as_str().unwrap().to_owned();
    owner.sub_ok("stream-notify-room", json!([format!("{rid}/participants"), false])).await;
    // Half signed-in users, half guests.
    let mut clients = open_many(&s, JOINERS / 2, Some("u")).await;
    clients.extend(open_many(&s, JOINERS / 2, None).await);
    let results = all_at_once(clients, "join-room", json!([{"code": code, "guestName": "Guest"}])).await;
    let (ok, full) = count_ok_and_full(&results);
    assert_eq!(ok, FREE_SEATS, "admitted");
    assert_eq!(full, JOINERS - FREE_SEATS);
    let ids: std::collections::HashSet<_> =
        results.iter().filter_map(|r| r.get("result")).map(|p| p["id"].clone()).collect();
    assert_eq!(ids.len(), FREE_SEATS, "distinct participants");
    let mut joined = 0;
    let mut max_count = 0;
    while joined < FREE_SEATS {
        let f = owner.event("stream-notify-room", &format!("{rid}/participants")).await;
        match f["fields"]["args"][0].as_str() {
            Some("joined") => joined += 1,
            Some("room-updated") => {
                let n = f["fields"]["args"][1]["participantCount"].as_u64().unwrap();
                assert!(n <= (FREE_SEATS + 1) as u64, "over capacity: {f}");
                max_count = max_count.max(n);
            }
            _ => {}
        }
    }
    // Guests' seats go after the grace period (default 10 s, longer than
    // this test), so the count is still exactly full.
    assert_eq!(owner.room(&rid).await["usersCount"], FREE_SEATS + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn joins_racing_a_lock_never_admit_after_the_lock() {
    let s = TestServer::start().await;
    let mut owner = s.user("owner").await;
    let rid = channel(&mut owner, json!({})).await["_id"].as_str().unwrap().to_owned();
    let mut watcher = s.user("watcher").await;
    watcher.ok("joinRoom", json!([rid])).await;
    watcher.sub_ok("stream-room-messages", json!([rid, false])).await;

    const N: usize = 300;
    let clients = open_many(&s, N, Some("r")).await;
    let barrier = Arc::new(Barrier::new(N + 1));
    let mut tasks = Vec::new();
    for (i, mut c) in clients.into_iter().enumerate() {
        let barrier = barrier.clone();
        let rid = rid.clone();
        let username = c.user_id.clone().unwrap().trim_start_matches("id-").to_owned();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            // Spread the joins over ~300 ms, around the moment the lock
            // goes out.
            tokio::time::sleep(Duration::from_millis(i as u64)).await;
            let r = c.call("joinRoom", json!([rid])).await;
            (username, r)
        }));
    }
    barrier.wait().await;
    // Lock once the room has demonstrably started admitting, so the lock
    // lands in the middle of the stream of joins.
    let mut before_lock = std::collections::HashSet::new();
    while before_lock.len() < N / 3 {
        let m = watcher.room_message(&rid).await;
        assert_eq!(m["t"], "uj", "{m}");
        before_lock.insert(m["msg"].as_str().unwrap().to_owned());
    }
    owner.ok("saveRoomSettings", json!([rid, "locked", true])).await;

    // Joins sent after the lock was acknowledged: all refused.
    let late = open_many(&s, 50, Some("late")).await;
    let late_results = all_at_once(late, "joinRoom", json!([rid])).await;
    for r in &late_results {
        assert_eq!(r["error"]["error"], "error-room-locked", "{r}");
    }

    let mut admitted = std::collections::HashSet::new();
    let mut locked = 0;
    for t in tasks {
        let (name, r) = t.await.unwrap();
        match r.get("error") {
            None => {
                admitted.insert(name);
            }
            Some(e) => {
                assert_eq!(e["error"], "error-room-locked", "{r}");
                locked += 1;
            }
        }
    }
    assert_eq!(admitted.len() + locked, N);
    // In the room's own order: every admission precedes `room-locked`, and
    // the admissions are exactly the successful calls.
    loop {
        let m = watcher.room_message(&rid).await;
        match m["t"].as_str() {
            Some("uj") => {
                before_lock.insert(m["msg"].as_str().unwrap().to_owned());
            }
            Some("room-locked") => break,
            other => panic!("unexpected {other:?}: {m}"),
        }
    }
    assert_eq!(before_lock, admitted);
    watcher.expect_none(Duration::from_millis(200), |f| f["fields"]["args"][0]["t"] == "uj").await;
    let count = owner.room(&rid).await["usersCount"].as_u64().unwrap() as usize;
    assert_eq!(count, 2 + admitted.len());
    eprintln!("lock race: {} admitted before the lock, {locked} refused", admitted.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn disconnect_during_join_leaves_no_ghost() {
    let s = TestServer::with_limits(|l| l.guest_grace = Duration::from_millis(200)).await;
    let mut owner = s.user("owner").await;
    let doc = channel(&mut owner, json!({"guestAccess": true})).await;
    let rid = doc["_id"].as_str().unwrap().to_owned();
    let code = doc["code"].as_str().unwrap().to_owned();
    owner.sub_ok("stream-room-messages", json!([rid, false])).await;

    const N: usize = 100;
    let guests = open_many(&s, N, None).await;
    let mut tasks = Vec::new();
    for (i, mut g) in guests.into_iter().enumerate() {
        let code = code.clone();
        tasks.push(tokio::spawn(async move {
            g.send(json!({"msg": "method", "method": "join-room", "id": "j",
                          "params": [{"code": code, "guestName": format!("ghost{i}")}]}))
                .await;
            // Vanish without reading the answer; some politely, some not.
            if i % 2 == 0 {
                g.close().await;
            } else {
                drop(g);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // After the grace period every seat is released.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let n = owner.room(&rid).await["usersCount"].as_u64().unwrap();
        if n == 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{} ghost members remain", n - 1);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Every announced join was followed by a leave of the same guest.
    let mut joined = std::collections::HashMap::new();
    let mut left = std::collections::HashMap::new();
    // Every leave was published before the count reached 1, so the stream
    // goes quiet once it has delivered them all.
    while let Ok(m) = tokio::time::timeout(Duration::from_millis(300), owner.room_message(&rid)).await {
        let map = if m["t"] == "uj" { &mut joined } else { &mut left };
        map.insert(m["u"]["_id"].as_str().unwrap().to_owned(), m["msg"].clone());
    }
    assert_eq!(joined, left, "every joined guest left");
    // And it stays that way.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(owner.room(&rid).await["usersCount"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn joins_to_different_rooms_do_not_wait_on_each_other() {
    let s = TestServer::start().await;
    let mut owner = s.user("owner").await;
    let mut rooms = Vec::new();
    for _ in 0..10 {
        rooms.push(channel(&mut owner, json!({"maxParticipants": 3})).await["_id"].clone());
    }
    let clients = open_many(&s, 100, Some("d")).await;
    let tasks: FuturesUnordered<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            let rid = rooms[i % rooms.len()].clone();
            tokio::spawn(async move { c.call("joinRoom", json!([rid])).await })
        })
        .collect();
    let results: Vec<Value> = tasks.map(|r| r.unwrap()).collect().await;
    let (ok, full) = count_ok_and_full(&results);
    assert_eq!(ok, 2 * rooms.len(), "two free seats per room");
    assert_eq!(full, 100 - 2 * rooms.len());
    for rid in &rooms {
        assert_eq!(owner.room(rid.as_str().unwrap()).await["usersCount"], 3);
    }
}

/// Concurrent creations of one name in different letter cases make one
/// room; lookups by name racing them never answer "no such room" once a
/// creation has begun, and all find that one room.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_of_one_name_in_any_case_make_one_room() {
    let fake = Arc::new(roomd::durability::fake::FakeDurability::new());
    let s = TestServer::with_durability(fake.clone(), |_| {}).await;
    fake.set_delay(Duration::from_millis(30), Duration::from_millis(60));
    const CREATORS: usize = 16;
    let base = unique("Race");
    let clients = open_many(&s, CREATORS * 2, Some("nr")).await;
    let barrier = Arc::new(Barrier::new(clients.len()));
    let tasks: FuturesUnordered<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            let barrier = barrier.clone();
            // Creators spell the name in varying case; lookers wait a moment
            // (inside the creation window) and look it up.
            let spelled: String =
                base.chars()
                    .enumerate()
                    .map(|(j, ch)| {
                        if (i >> (j % 4)) & 1 == 1 {
                            ch.to_ascii_uppercase()
                        } else {
                            ch.to_ascii_lowercase()
                        }
                    })
                    .collect();
            tokio::spawn(async move {
                barrier.wait().await;
                let r = if i < CREATORS {
                    c.call("createChannel", json!([spelled])).await
                } else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    c.call("getRoomIdByNameOrId", json!([spelled])).await
                };
                (i < CREATORS, r)
            })
        })
        .collect();
    let done: Vec<_> = tasks.collect().await;
    let mut created = Vec::new();
    let mut found = std::collections::HashSet::new();
    for d in done {
        let (creator, r) = d.expect("task panicked");
        match (creator, r.get("error")) {
            (true, None) => created.push(r["result"]["_id"].clone()),
            (true, Some(e)) => assert_eq!(e["error"], "error-duplicate-channel-name", "{r}"),
            (false, None) => {
                found.insert(r["result"].clone());
            }
            (false, Some(e)) => panic!("lookup during the creation: {e}"),
        }
    }
    assert_eq!(created.len(), 1, "exactly one creation wins: {created:?}");
    assert_eq!(found.into_iter().collect::<Vec<_>>(), created, "every lookup found that room");
}

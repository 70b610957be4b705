//! Paging history by time (issue 17, point 6): a room's message `ts` is
//! strictly increasing in the room's order, so paging back with `end` (or
//! REST's `latest`) = the oldest `ts` of the previous page, the way
//! Rocket.Chat clients do, reaches every message exactly once, however many
//! messages shared a millisecond on the wall clock.

use crate::http::{parse, raw};
use crate::support::*;
use serde_json::{Value, json};
use std::collections::HashMap;

const WRITERS: usize = 30;
const MESSAGES: usize = 1000;
const PAGE: usize = 50;

/// A room where `WRITERS` members sent `MESSAGES` messages (`m<i>`) at once.
async fn busy_room(s: &TestServer) -> (Client, String) {
    let mut owner = s.user("owner").await;
    let rid = channel(&mut owner, json!({})).await["rid"].as_str().unwrap().to_owned();
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let mut c = s.user(&format!("writer{w}")).await;
        assert_eq!(c.ok("joinRoom", json!([rid])).await, json!(true));
        writers.push(c);
    }
    let tasks: Vec<_> = writers
        .into_iter()
        .enumerate()
        .map(|(w, mut c)| {
            let rid = rid.clone();
            tokio::spawn(async move {
                for i in (w..MESSAGES).step_by(WRITERS) {
                    c.ok("sendMessage", json!([{"rid": rid, "msg": format!("m{i}")}])).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    (owner, rid)
}

/// Asserts the user messages paged through are `m0`…`m999`, each once.
fn check_all_once(seen: &[(String, i64)]) {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for (msg, _) in seen {
        *counts.entry(msg.as_str()).or_default() += 1;
    }
    let missing: Vec<usize> =
        (0..MESSAGES).filter(|i| !counts.contains_key(format!("m{i}").as_str())).collect();
    let twice: Vec<&&str> = counts.iter().filter(|(_, n)| **n > 1).map(|(m, _)| m).collect();
    assert!(missing.is_empty(), "{} of {MESSAGES} unreachable by paging: {missing:?}", missing.len());
    assert!(twice.is_empty(), "served twice: {twice:?}");
    assert_eq!(seen.len(), MESSAGES);
}

/// The messages (system ones included) of a page as (text or type, ts).
fn page_of(messages: &[Value], ts: impl Fn(&Value) -> i64) -> Vec<(String, i64, bool)> {
    messages
        .iter()
        .map(|m| {
            let user = m.get("t").is_none();
            let label = if user { m["msg"].as_str() } else { m["t"].as_str() };
            (label.unwrap_or_default().to_owned(), ts(&m["ts"]), user)
        })
        .collect()
}

/// 30 writers, 1,000 messages; `loadHistory` pages of 50 with `end` = the
/// oldest `ts` of the previous page reach each message exactly once, and
/// `ts` strictly decreases down the pages. Before the room's clock, 100–200
/// messages that shared a millisecond across a page boundary were skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_history_paging_by_end_reaches_every_message_once() {
    // Room for the 30 joins' system messages beside the 1,000.
    let s = TestServer::with_limits(|l| l.history_limit = 2000).await;
    let (mut owner, rid) = busy_room(&s).await;

    let (mut end, mut all, mut pages) = (Value::Null, Vec::new(), 0);
    loop {
        pages += 1;
        assert!(pages < 100, "paging does not end");
        let r = owner.ok("loadHistory", json!([rid, end, PAGE, null])).await;
        let page = page_of(r["messages"].as_array().unwrap(), |t| t["$date"].as_i64().unwrap());
        let Some((_, oldest, _)) = page.last() else { break };
        end = json!({"$date": oldest});
        all.extend(page);
    }
    assert!(all.windows(2).all(|w| w[0].1 > w[1].1), "ts is not strictly decreasing down the pages");
    let users: Vec<(String, i64)> = all.into_iter().filter(|m| m.2).map(|(m, t, _)| (m, t)).collect();
    check_all_once(&users);
}

/// The same through REST: `channels.history` with `latest` = the oldest
/// `ts` (ISO 8601, milliseconds) of the previous page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_channels_history_paging_by_latest_reaches_every_message_once() {
    let s = TestServer::with_limits(|l| l.history_limit = 2000).await;
    let (_owner, rid) = busy_room(&s).await;
    let all = rest_pages(&s, &rid, PAGE, 100).await;
    assert!(all.windows(2).all(|w| w[0].1 > w[1].1), "ts is not strictly decreasing down the pages");
    let users: Vec<(String, i64)> = all.into_iter().filter(|m| m.2).map(|(m, t, _)| (m, t)).collect();
    check_all_once(&users);
}

/// Every message (system ones included) of `rid`, newest first, as the
/// owner pages REST `channels.history` back with `latest` = the oldest `ts`
/// (ISO 8601, milliseconds) of the previous page, `count` at a time, until
/// a page comes back empty (at most `max_pages`).
async fn rest_pages(s: &TestServer, rid: &str, count: usize, max_pages: usize) -> Vec<(String, i64, bool)> {
    let token = s.token("id-owner", "owner", &["user"]);
    let (mut latest, mut all) = (String::new(), Vec::new());
    for pages in 0.. {
        assert!(pages < max_pages, "paging does not end");
        let q = if latest.is_empty() { String::new() } else { format!("&latest={latest}") };
        let req = format!(
            "GET /api/v1/channels.history?roomId={rid}&count={count}{q} HTTP/1.1\r\nHost: {}\r\n\
             X-Auth-Token: {token}\r\nX-User-Id: id-owner\r\nConnection: close\r\n\r\n",
            s.addr
        );
        let reply = parse(&raw(s.addr, req.as_bytes()).await);
        assert_eq!(reply.status, 200, "{reply:?}");
        let body: Value = serde_json::from_str(&reply.body).unwrap();
        let messages = body["messages"].as_array().unwrap();
        let Some(last) = messages.last() else { break };
        latest = last["ts"].as_str().unwrap().to_owned();
        all.extend(page_of(messages, |t| iso_ms(t.as_str().unwrap())));
    }
    all
}

/// An ISO 8601 time (`2026-03-03T10:36:00.123Z`) as a number that orders
/// like the time (the date as `yyyymmdd` days: not a real epoch, but
/// monotonic, which is all the order check needs).
fn iso_ms(s: &str) -> i64 {
    let day: i64 = s[..10].replace('-', "").parse().unwrap();
    let (h, m, sec, ms): (i64, i64, i64, i64) = (
        s[11..13].parse().unwrap(),
        s[14..16].parse().unwrap(),
        s[17..19].parse().unwrap(),
        s[20..23].parse().unwrap(),
    );
    day * 86_400_000 + ((h * 60 + m) * 60 + sec) * 1000 + ms
}

// Issue 19, point 4: the in-memory window is a cache of recent messages;
// pages older than it come from the store, so every stored message is
// reachable with the default configuration (before, 2,000 of 3,000 were not).

const MANY: usize = 3000;
const MANY_WRITERS: usize = 10;

/// `n` messages `m0`…`m<n-1>` into a new channel of `owner`, from
/// `MANY_WRITERS` concurrent members; returns the room id.
async fn fill_room(owner: &mut Client, writers: Vec<Client>, n: usize) -> String {
    let rid = channel(owner, json!({})).await["rid"].as_str().unwrap().to_owned();
    let count = writers.len();
    let tasks: Vec<_> = writers
        .into_iter()
        .enumerate()
        .map(|(w, mut c)| {
            let rid = rid.clone();
            tokio::spawn(async move {
                assert_eq!(c.ok("joinRoom", json!([rid])).await, json!(true));
                for i in (w..n).step_by(count) {
                    c.ok("sendMessage", json!([{"rid": rid, "msg": format!("m{i}")}])).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    rid
}

/// Pages `rid` back through `loadHistory`, `page` at a time, with `end` =
/// the oldest `ts` of the previous page; all messages, newest first.
async fn page_ddp(c: &mut Client, rid: &str, page: usize) -> Vec<(String, i64, bool)> {
    let (mut end, mut all) = (Value::Null, Vec::new());
    for _ in 0..10_000 / page + 10 {
        let r = c.ok("loadHistory", json!([rid, end, page, null])).await;
        assert_eq!(r["unreadNotLoaded"], json!(0));
        let got = page_of(r["messages"].as_array().unwrap(), |t| t["$date"].as_i64().unwrap());
        let Some((_, oldest, _)) = got.last() else { return all };
        end = json!({"$date": oldest});
        all.extend(got);
    }
    panic!("paging does not end");
}

/// Asserts the user messages of `all` are `m0`…`m<n-1>`, each once, in
/// strictly decreasing `ts`.
fn check_n_once(all: Vec<(String, i64, bool)>, n: usize) {
    assert!(all.windows(2).all(|w| w[0].1 > w[1].1), "ts is not strictly decreasing down the pages");
    let users: Vec<String> = all.into_iter().filter(|m| m.2).map(|m| m.0).collect();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for m in &users {
        *counts.entry(m.as_str()).or_default() += 1;
    }
    let missing = (0..n).filter(|i| !counts.contains_key(format!("m{i}").as_str())).count();
    let twice: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).map(|(m, _)| m).collect();
    assert_eq!(missing, 0, "{missing} of {n} unreachable by paging");
    assert!(twice.is_empty(), "served twice: {twice:?}");
    assert_eq!(users.len(), n);
}

/// A server on a fresh SQLite data directory, default limits.
async fn sqlite_server() -> TestServer {
    let dir = crate::proc::tempdir("history");
    let cache = roomd::config::Limits::default().history_limit;
    let store = roomd::store::SqliteStore::open(&dir, roomd::store::SyncMode::Normal, cache).unwrap();
    TestServer::with_durability(std::sync::Arc::new(store), |_| {}).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_history_pages_all_3000_stored_messages_with_the_default_config() {
    let s = sqlite_server().await;
    let mut owner = s.user("owner").await;
    let mut writers = Vec::new();
    for w in 0..MANY_WRITERS {
        writers.push(s.user(&format!("writer{w}")).await);
    }
    let rid = fill_room(&mut owner, writers, MANY).await;
    // Pages that cross the window's edge and pages wholly below it.
    check_n_once(page_ddp(&mut owner, &rid, 70).await, MANY);
    check_n_once(page_ddp(&mut owner, &rid, 1000).await, MANY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_channels_history_pages_all_3000_stored_messages_by_latest() {
    let s = sqlite_server().await;
    let mut owner = s.user("owner").await;
    let mut writers = Vec::new();
    for w in 0..MANY_WRITERS {
        writers.push(s.user(&format!("writer{w}")).await);
    }
    let rid = fill_room(&mut owner, writers, MANY).await;
    let all = rest_pages(&s, &rid, 100, 200).await;
    check_n_once(all, MANY);
}

/// A real process, restarted: the restored window holds only the newest
/// messages, and paging still reaches all 3,000 from the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_all_messages_after_a_restart() {
    use crate::durability::{login, start_with};
    use crate::proc::tempdir;
    let dir = tempdir("history-restart");
    let mut server = start_with(&dir, &["--sync", "normal"]);
    let mut owner = login(&server.url(), "owner").await;
    let mut writers = Vec::new();
    for w in 0..MANY_WRITERS {
        writers.push(login(&server.url(), &format!("writer{w}")).await);
    }
    let rid = fill_room(&mut owner, writers, MANY).await;
    drop(owner);
    assert!(server.sigterm().success());
    let server = start_with(&dir, &["--sync", "normal"]);
    let mut owner = login(&server.url(), "owner").await;
    check_n_once(page_ddp(&mut owner, &rid, 100).await, MANY);
}

/// `--history-retention-count 100`: the background pruner deletes all but
/// the newest 100 messages of the room, and pages then show exactly those,
/// before and after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_by_count_prunes_the_oldest_messages_in_the_background() {
    use crate::durability::{login, start_with};
    use crate::proc::tempdir;
    let dir = tempdir("history-retention");
    let args = ["--sync", "normal", "--history-retention-count", "100", "--history-prune-interval", "100ms"];
    let mut server = start_with(&dir, &args);
    let mut owner = login(&server.url(), "owner").await;
    let writer = login(&server.url(), "writer").await;
    let rid = fill_room(&mut owner, vec![writer], 300).await;
    let kept = |all: &[(String, i64, bool)]| all.iter().map(|m| m.0.clone()).collect::<Vec<_>>();
    let newest: Vec<String> = (200..300).rev().map(|i| format!("m{i}")).collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let all = page_ddp(&mut owner, &rid, 100).await;
        if kept(&all) == newest {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not pruned to the newest 100: {} left", all.len());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    drop(owner);
    assert!(server.sigterm().success());
    let server = start_with(&dir, &args);
    let mut owner = login(&server.url(), "owner").await;
    assert_eq!(kept(&page_ddp(&mut owner, &rid, 30).await), newest);
}

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
    let token = s.token("id-owner", "owner", &["user"]);
    let (mut latest, mut all, mut pages) = (String::new(), Vec::new(), 0);
    loop {
        pages += 1;
        assert!(pages < 100, "paging does not end");
        let q = if latest.is_empty() { String::new() } else { format!("&latest={latest}") };
        let req = format!(
            "GET /api/v1/channels.history?roomId={rid}&count={PAGE}{q} HTTP/1.1\r\nHost: {}\r\n\
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
    assert!(all.windows(2).all(|w| w[0].1 > w[1].1), "ts is not strictly decreasing down the pages");
    let users: Vec<(String, i64)> = all.into_iter().filter(|m| m.2).map(|(m, t, _)| (m, t)).collect();
    check_all_once(&users);
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

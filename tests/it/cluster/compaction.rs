//! Snapshots and compaction of the room logs (issue 19, points 3 and 4):
//! a fresh node reads a room's snapshot and the entries after it, not the
//! room's whole history, and still pages every message exactly once from
//! the history chunks; a crash between the snapshot and the purge loses
//! nothing; a reused message `_id` is refused within the documented window.

use super::basics::{Nats, Node, ready, start_nats, start_node_env};
use crate::cluster::nodes::user as login;
use crate::proc::{http_get, tempdir};
use crate::support::{Client, unique};
use futures_util::StreamExt;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;

fn nats_or_skip() -> Option<std::path::PathBuf> {
    crate::cluster::nats::nats_or_skip("cluster::compaction").cloned()
}

fn node(nats: &Nats, id: &str, every: u32, env: &[(&str, &str)]) -> Node {
    start_node_env(&nats.url, id, &["--cluster-snapshot-every", &every.to_string()], env)
}

/// Entries of `subject` in stream `stream`, as the NATS server counts them.
async fn subject_entries(url: &str, stream: &str, subject: &str) -> usize {
    let client = async_nats::connect(url).await.expect("connect to NATS");
    let js = async_nats::jetstream::new(client);
    let s = js.get_stream(stream).await.expect("stream");
    let mut subjects = s.info_with_subjects(subject).await.expect("subjects");
    let mut n = 0;
    while let Some(Ok((_, count))) = subjects.next().await {
        n += count;
    }
    n
}

/// The stream and subject holding room `rid`'s log: the one partition
/// (`ROOMLOG` with `roomlog.<rid>`, or `ROOMLOG_<p>` with
/// `roomlog_<p>.<rid>`) where it has entries. A room's log is never empty (a
/// purge keeps the snapshot), and it lives in exactly one partition.
async fn room_log(url: &str, rid: &str) -> (String, String) {
    let mut found = Vec::new();
    for p in 0..8 {
        let (stream, subject) = match p {
            0 => ("ROOMLOG".to_owned(), format!("roomlog.{rid}")),
            p => (format!("ROOMLOG_{p}"), format!("roomlog_{p}.{rid}")),
        };
        let client = async_nats::connect(url).await.expect("connect to NATS");
        let js = async_nats::jetstream::new(client);
        if js.get_stream(&stream).await.is_err() {
            break; // partitions are numbered without gaps
        }
        if subject_entries(url, &stream, &subject).await > 0 {
            found.push((stream, subject));
        }
    }
    assert_eq!(found.len(), 1, "room {rid}'s log is in one partition: {found:?}");
    found.remove(0)
}

/// A sample of the node's `/metrics`.
fn metric(node: &Node, name: &str) -> f64 {
    let (_, body) = http_get(node.proc.addr(), "/metrics").expect("/metrics answers");
    body.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

/// Sends `n` messages `<tag>-<i>` through `c`; panics on a refusal.
async fn send_many(c: &mut Client, rid: &str, tag: &str, n: usize) {
    for i in 0..n {
        let r = c.call("sendMessage", json!([{"rid": rid, "msg": format!("{tag}-{i}")}])).await;
        assert!(r.get("error").is_none(), "{tag}-{i}: {r}");
    }
}

/// Pages the whole history with `loadHistory` (`limit` a page, by `end`);
/// returns each user message's text with how many times it came.
pub(crate) async fn page_all(c: &mut Client, rid: &str, limit: usize) -> HashMap<String, usize> {
    let (mut end, mut seen, mut last_ts) = (Value::Null, HashMap::new(), i64::MAX);
    for _ in 0..100_000 {
        let r = c.call("loadHistory", json!([rid, end, limit, null])).await;
        let page = r["result"]["messages"].as_array().unwrap_or_else(|| panic!("{r}")).clone();
        let Some(last) = page.last() else { return seen };
        for m in &page {
            let ts = m["ts"]["$date"].as_i64().unwrap();
            assert!(ts < last_ts, "pages not strictly older: {ts} after {last_ts}");
            last_ts = ts;
            if m.get("t").is_none() {
                *seen.entry(m["msg"].as_str().unwrap().to_owned()).or_insert(0) += 1;
            }
        }
        end = last["ts"].clone();
    }
    panic!("history paging did not end");
}

fn assert_each_once(seen: &HashMap<String, usize>, expected: &[String], who: &str) {
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "{who}: messages paged twice: {twice:?}");
    let missing: Vec<_> = expected.iter().filter(|m| !seen.contains_key(*m)).collect();
    assert!(
        missing.is_empty(),
        "{who}: {} of {} messages never paged, e.g. {:?}",
        missing.len(),
        expected.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(seen.len(), expected.len(), "{who}: unexpected messages paged");
}

/// 3,000 messages with a snapshot every 100 entries: the room's log holds
/// about one interval, a fresh node applies about that many entries (not
/// 3,000) and pages every message once from the history chunks, as does the
/// node that saw them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_node_reads_the_snapshot_and_pages_all_history_from_chunks() {
    let Some(bin) = nats_or_skip() else { return };
    let nats = start_nats(&bin, &tempdir("cc1"));
    let mut a = node(&nats, "a", 100, &[]);
    ready(&mut a).await;
    let mut alice = login(&a.url, "alice").await;
    let room = alice.call("createChannel", json!([unique("compact"), []])).await;
    let rid = room["result"]["rid"].as_str().unwrap_or_else(|| panic!("{room}")).to_owned();
    let mut others = Vec::new();
    for name in ["bob", "carol"] {
        let mut c = login(&a.url, name).await;
        assert_eq!(c.call("joinRoom", json!([rid])).await["result"], json!(true));
        others.push(c);
    }
    let (mut bob, mut carol) = (others.remove(0), others.remove(0));
    tokio::join!(
        send_many(&mut alice, &rid, "a", 1000),
        send_many(&mut bob, &rid, "b", 1000),
        send_many(&mut carol, &rid, "c", 1000),
    );
    let expected: Vec<String> =
        ["a", "b", "c"].iter().flat_map(|t| (0..1000).map(move |i| format!("{t}-{i}"))).collect();

    // The last snapshot and its purge follow the last message closely.
    let (stream, subject) = room_log(&nats.url, &rid).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut held = subject_entries(&nats.url, &stream, &subject).await;
    while held > 250 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        held = subject_entries(&nats.url, &stream, &subject).await;
    }
    assert!(held <= 250, "roomlog.<rid> still holds {held} entries after 3,003 with a snapshot every 100");

    let mut b = node(&nats, "b", 100, &[]);
    ready(&mut b).await;
    let applied = metric(&b, "roomd_cluster_applied_total");
    eprintln!("roomlog.<rid> holds {held} entries; the fresh node applied {applied}");
    assert!(applied <= 300.0, "the fresh node applied {applied} entries; the room's log was compacted");

    let mut dave = login(&b.url, "dave").await;
    assert_eq!(dave.call("joinRoom", json!([rid])).await["result"], json!(true));
    let on_b = page_all(&mut dave, &rid, 70).await;
    assert_each_once(&on_b, &expected, "fresh node b");
    let on_a = page_all(&mut alice, &rid, 70).await;
    assert_each_once(&on_a, &expected, "node a");
}

/// 30 writers through 3 nodes, 6,000 messages, the default snapshot
/// interval: every node (and a node started afterwards) pages every message
/// exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_writers_over_three_nodes_page_every_message_once_on_each_node() {
    let Some(bin) = nats_or_skip() else { return };
    let nats = start_nats(&bin, &tempdir("cc2"));
    let mut nodes = Vec::new();
    for id in ["a", "b", "c"] {
        let mut n = start_node_env(&nats.url, id, &[], &[]);
        ready(&mut n).await;
        nodes.push(n);
    }
    let mut owner = login(&nodes[0].url, "owner").await;
    let room = owner.call("createChannel", json!([unique("thirty"), []])).await;
    let rid = room["result"]["rid"].as_str().unwrap_or_else(|| panic!("{room}")).to_owned();
    let mut writers = Vec::new();
    for w in 0..30 {
        let mut c = login(&nodes[w % 3].url, &format!("w{w}")).await;
        assert_eq!(c.call("joinRoom", json!([rid])).await["result"], json!(true));
        writers.push(c);
    }
    let tasks: Vec<_> = writers
        .into_iter()
        .enumerate()
        .map(|(w, mut c)| {
            let rid = rid.clone();
            tokio::spawn(async move {
                send_many(&mut c, &rid, &format!("w{w}"), 200).await;
                c
            })
        })
        .collect();
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(300), t).await.expect("writers finish").expect("writer");
    }
    let expected: Vec<String> = (0..30).flat_map(|w| (0..200).map(move |i| format!("w{w}-{i}"))).collect();
    let mut fresh = start_node_env(&nats.url, "d", &[], &[]);
    ready(&mut fresh).await;
    for (i, n) in nodes.iter().chain([&fresh]).enumerate() {
        let mut reader = login(&n.url, &format!("reader{i}")).await;
        assert_eq!(reader.call("joinRoom", json!([rid])).await["result"], json!(true));
        // Writes through other nodes may still be applied here.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let seen = page_all(&mut reader, &rid, 100).await;
            if seen.len() < expected.len() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            assert_each_once(&seen, &expected, &format!("node {i}"));
            break;
        }
    }
}

/// A node killed after its snapshot entry landed and before it purged the
/// log below it (`ROOMD_TEST_CRASH_BEFORE_PURGE` aborts it right there):
/// after a restart nothing is lost or doubled on any node, and the next
/// snapshot, written by another node, purges what the dead one left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_snapshot_and_purge_loses_and_doubles_nothing() {
    let Some(bin) = nats_or_skip() else { return };
    let nats = start_nats(&bin, &tempdir("cc3"));
    let mut a = node(&nats, "a", 50, &[("ROOMD_TEST_CRASH_BEFORE_PURGE", "1")]);
    let mut b = node(&nats, "b", 50, &[]);
    ready(&mut a).await;
    ready(&mut b).await;
    let mut alice = login(&a.url, "alice").await;
    let room = alice.call("createChannel", json!([unique("crash"), []])).await;
    let rid = room["result"]["rid"].as_str().unwrap_or_else(|| panic!("{room}")).to_owned();
    let mut bob = login(&b.url, "bob").await;
    assert_eq!(bob.call("joinRoom", json!([rid])).await["result"], json!(true));
    // Bob's join is entry 1; alice's messages 2.. reach 50 at her 49th,
    // and her node writes the snapshot and dies before purging.
    let mut acked = Vec::new();
    for i in 0..60 {
        let r = match alice.try_call("sendMessage", json!([{"rid": rid, "msg": format!("a-{i}")}])).await {
            Some(r) => r,
            None => break,
        };
        if r.get("error").is_some() {
            break;
        }
        acked.push(format!("a-{i}"));
    }
    a.proc.exit_status(Duration::from_secs(10)).await;
    // A call in flight when the node died may have landed unanswered.
    let in_flight = format!("a-{}", acked.len());
    assert!(acked.len() >= 40 && acked.len() < 60, "node a died at its snapshot: {} acked", acked.len());
    let (stream, subject) = room_log(&nats.url, &rid).await;
    let held = subject_entries(&nats.url, &stream, &subject).await;
    assert!(held >= 50, "nothing may be purged by the dead node: {held} entries");

    send_many(&mut bob, &rid, "b", 30).await;
    acked.extend((0..30).map(|i| format!("b-{i}")));
    let mut a = node(&nats, "a", 50, &[]);
    ready(&mut a).await;
    let landed = page_all(&mut bob, &rid, 40).await;
    if landed.contains_key(&in_flight) {
        acked.push(in_flight);
    }
    for (n, who) in [(&a, "alice"), (&b, "bob")] {
        let mut c = login(&n.url, who).await;
        assert_each_once(&page_all(&mut c, &rid, 40).await, &acked, who);
    }
    // The next snapshot (bob's node's turn) purges everything below it.
    send_many(&mut bob, &rid, "c", 40).await;
    acked.extend((0..40).map(|i| format!("c-{i}")));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut held = subject_entries(&nats.url, &stream, &subject).await;
    while held > 45 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        held = subject_entries(&nats.url, &stream, &subject).await;
    }
    assert!(held <= 45, "the next snapshot purged nothing: {held} entries");
    let mut c = node(&nats, "c", 50, &[]);
    ready(&mut c).await;
    for (n, who) in [(&a, "alice"), (&b, "bob"), (&c, "carol")] {
        let mut cl = login(&n.url, who).await;
        if who == "carol" {
            assert_eq!(cl.call("joinRoom", json!([rid])).await["result"], json!(true));
        }
        assert_each_once(&page_all(&mut cl, &rid, 40).await, &acked, who);
    }
}

/// The `_id` guarantee without every id in memory: a reused `_id` is
/// refused on every node while its message is within the last snapshot
/// interval or the one before it; later it is accepted, and every node
/// (one started from the snapshot too) decides alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_message_id_is_refused_within_two_snapshot_intervals_on_every_node() {
    let Some(bin) = nats_or_skip() else { return };
    let nats = start_nats(&bin, &tempdir("cc4"));
    let mut a = node(&nats, "a", 10, &[]);
    let mut b = node(&nats, "b", 10, &[]);
    ready(&mut a).await;
    ready(&mut b).await;
    let mut alice = login(&a.url, "alice").await;
    let room = alice.call("createChannel", json!([unique("reuse"), []])).await;
    let rid = room["result"]["rid"].as_str().unwrap_or_else(|| panic!("{room}")).to_owned();
    let mut bob = login(&b.url, "bob").await;
    assert_eq!(bob.call("joinRoom", json!([rid])).await["result"], json!(true));
    let first = alice.call("sendMessage", json!([{"_id": "reuse-X", "rid": rid, "msg": "first"}])).await;
    assert!(first.get("error").is_none(), "{first}");
    // Past one snapshot (entry 10), within the next interval.
    send_many(&mut alice, &rid, "f", 12).await;
    let mut c = node(&nats, "c", 10, &[]);
    ready(&mut c).await;
    let mut carol = login(&c.url, "carol").await;
    assert_eq!(carol.call("joinRoom", json!([rid])).await["result"], json!(true));
    for cl in [&mut alice, &mut bob, &mut carol] {
        let again = cl.call("sendMessage", json!([{"_id": "reuse-X", "rid": rid, "msg": "again"}])).await;
        assert_eq!(again["error"]["error"], "error-message-already-exists", "{again}");
    }
    // Two more intervals later the id is no longer remembered.
    send_many(&mut alice, &rid, "g", 25).await;
    let later = bob.call("sendMessage", json!([{"_id": "reuse-X", "rid": rid, "msg": "later"}])).await;
    assert!(later.get("error").is_none(), "{later}");
    let again = carol.call("sendMessage", json!([{"_id": "reuse-X", "rid": rid, "msg": "again"}])).await;
    assert_eq!(again["error"]["error"], "error-message-already-exists", "{again}");
    // Every node holds the same history: each decided alike.
    let mut views = Vec::new();
    for cl in [&mut alice, &mut bob, &mut carol] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut seen = page_all(cl, &rid, 30).await;
        while !seen.contains_key("later") && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            seen = page_all(cl, &rid, 30).await;
        }
        views.push(seen);
    }
    assert_eq!(views[0], views[1]);
    assert_eq!(views[0], views[2]);
    assert_eq!(views[0].get("first"), Some(&1));
    assert_eq!(views[0].get("later"), Some(&1));
    assert!(!views[0].contains_key("again"));
}

/// A node that falls behind while other nodes compact the room's log (here
/// it is stopped with SIGSTOP) finds entries it had not read yet purged:
/// when it meets the snapshot that purged them it notices it missed some
/// and reloads the room from that snapshot and the log after it. Without
/// that, its replica kept a hole (messages it never pages) and a member
/// list that differs from the other nodes'.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_behind_a_purge_reloads_the_room_and_agrees_with_the_others() {
    let Some(bin) = nats_or_skip() else { return };
    let nats = start_nats(&bin, &tempdir("cc5"));
    let mut a = node(&nats, "a", 50, &[]);
    let mut d = node(&nats, "d", 50, &[]);
    ready(&mut a).await;
    ready(&mut d).await;
    let mut alice = login(&a.url, "alice").await;
    let room = alice.call("createChannel", json!([unique("behind"), []])).await;
    let rid = room["result"]["rid"].as_str().unwrap_or_else(|| panic!("{room}")).to_owned();
    // Bob listens through node d, and leaves through node a while d is
    // stopped: his leave is among the entries d never reads.
    let mut bob = login(&d.url, "bob").await;
    assert_eq!(bob.call("joinRoom", json!([rid])).await["result"], json!(true));
    let sub = bob.sub_ok("stream-room-messages", json!([rid, false])).await;

    d.proc.signal("STOP");
    send_many(&mut alice, &rid, "a", 500).await;
    let mut carol = login(&a.url, "carol").await;
    assert_eq!(carol.call("joinRoom", json!([rid])).await["result"], json!(true));
    let mut bob_on_a = login(&a.url, "bob").await;
    let left = bob_on_a.call("leaveRoom", json!([rid])).await;
    assert!(left.get("error").is_none(), "{left}");
    send_many(&mut alice, &rid, "b", 500).await;
    d.proc.signal("CONT");

    let expected: Vec<String> =
        ["a", "b"].iter().flat_map(|t| (0..500).map(move |i| format!("{t}-{i}"))).collect();
    let mut eve = login(&d.url, "eve").await;
    assert_eq!(eve.call("joinRoom", json!([rid])).await["result"], json!(true));
    let want = members(&mut alice, &rid).await;
    assert_eq!(want.len(), 3, "alice, carol and eve: {want:?}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let seen = page_all(&mut eve, &rid, 100).await;
        let got = members(&mut eve, &rid).await;
        if (seen.len() < expected.len() || got != want) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        assert_each_once(&seen, &expected, "the node that was behind");
        assert_eq!(got, want, "members on the node that was behind");
        break;
    }
    // The scenario did make the node read behind a purge.
    let log = d.proc.log().all();
    assert!(
        log.contains("room reloaded from its snapshot"),
        "no reload on node d:\n{}",
        d.proc.log().tail(30)
    );
    assert!(metric(&d, "roomd_cluster_room_reloads_total ") >= 1.0, "the reload is counted");
    // And node d stops telling bob about the room, as his leave would have.
    let nosub = bob.expect(|f| f["msg"] == "nosub" && f["id"] == sub.as_str());
    tokio::time::timeout(Duration::from_secs(10), nosub).await.expect("bob's subscription on node d ends");
}

/// The room's participants' user ids as one node lists them, sorted.
pub(crate) async fn members(c: &mut Client, rid: &str) -> Vec<String> {
    let p = c.call("getRoomParticipants", json!([rid])).await;
    let mut ids: Vec<String> = p["result"]["participants"]
        .as_array()
        .unwrap_or_else(|| panic!("{p}"))
        .iter()
        .map(|x| x["userId"].as_str().unwrap_or("?").to_owned())
        .collect();
    ids.sort();
    ids
}

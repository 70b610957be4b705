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
    let subject = format!("roomlog.{rid}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut held = subject_entries(&nats.url, "ROOMLOG", &subject).await;
    while held > 250 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        held = subject_entries(&nats.url, "ROOMLOG", &subject).await;
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

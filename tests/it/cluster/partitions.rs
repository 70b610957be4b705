//! Issue 19, point 5: room logs spread over a fixed number of partition
//! streams (`--cluster-partitions`), whose leaders sit on different NATS
//! servers; the count is recorded when the cluster is created and checked
//! at every start; a cluster made before partitions is one partition.

use super::basics::{Nats, start_nats, start_node_with};
use super::nats::{NatsConn, Reply, nats_or_skip};
use super::nodes::{Nodes, user};
use super::{SharedNats, exclusive};
use crate::proc::{RoomdCmd, tempdir};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const STREAMS: [&str; 3] = ["ROOMLOG", "ROOMLOG_1", "ROOMLOG_2"];

fn port_of(nats: &Nats) -> u16 {
    nats.url.rsplit(':').next().and_then(|p| p.parse().ok()).expect("nats url has a port")
}

/// Starts a node with `--cluster-partitions n` that must refuse to start:
/// exit status 1; returns its log.
async fn refused_at_start(nats: &Nats, n: usize) -> String {
    let mut b = RoomdCmd::server()
        .args(["--no-rate-limits", "--cluster", &nats.url, "--node-id", "b", "--cluster-replicas", "1"])
        .args(["--cluster-partitions", &n.to_string(), "--cluster-start-timeout", "10s"])
        .env("ROOMD_JWT_SECRET", super::nodes::SECRET)
        .start();
    let st = b.exit_status(Duration::from_secs(15)).await;
    assert_eq!(st.code(), Some(1), "{}", b.log().all());
    b.log().all()
}

/// A JetStream API request; `None` when the server answered a status or
/// an error.
fn js(port: u16, subject: &str, body: Value) -> Option<Value> {
    let mut c = NatsConn::connect(port).ok()?;
    let body = if body.is_null() { String::new() } else { body.to_string() };
    match c.request(subject, &[], body.as_bytes(), Duration::from_secs(5)).ok()? {
        Reply::Json(v) if v.get("error").is_none() => Some(v),
        _ => None,
    }
}

/// The room subjects a stream holds, with their entry counts.
fn subjects(port: u16, stream: &str) -> BTreeMap<String, u64> {
    let info = js(port, &format!("$JS.API.STREAM.INFO.{stream}"), json!({"subjects_filter": ">"}));
    let Some(info) = info else { return BTreeMap::new() };
    info["state"]["subjects"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0))).collect())
        .unwrap_or_default()
}

/// The partition record a node wrote into `ROOMLOG` (a direct get answers
/// the raw entry, which is JSON).
fn record(port: u16) -> Option<Value> {
    js(port, "$JS.API.DIRECT.GET.ROOMLOG.roomcluster.partitions", json!(null))
}

/// Nine rooms created through three nodes of a 3-server R3 cluster land
/// in all three partition streams, and each works from every node: a join
/// and a message through each node reach a listener on another, and every
/// node's history of every room is the same. The three streams' leaders
/// are on at least two servers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_spread_over_partitions_work_from_every_node() {
    let Some(bin) = nats_or_skip("rooms_spread_over_partitions_work_from_every_node") else { return };
    let nats = SharedNats::get(bin).await;
    let nodes = Nodes::start(&nats, "parts", 3).await;
    let mut users = Vec::new();
    for i in 0..3 {
        users.push(user(&nodes.url(i), &format!("parts-u{i}")).await);
    }
    let mut rooms = Vec::new();
    for r in 0..9 {
        let name = crate::support::unique(&format!("parts{r}"));
        let c = &mut users[r % 3];
        rooms.push(c.ok("createChannel", json!([name, [], false])).await["rid"].as_str().unwrap().to_owned());
    }
    // Where the rooms' logs are, as NATS says.
    let port = nats.servers[0].client_port;
    let mut used = BTreeSet::new();
    for stream in STREAMS {
        for subject in subjects(port, stream).keys() {
            if rooms.iter().any(|r| subject.ends_with(&format!(".{r}"))) {
                used.insert(stream);
            }
        }
    }
    assert!(used.len() >= 2, "nine rooms in one partition: {used:?}");
    for (r, rid) in rooms.iter().enumerate() {
        let owner = r % 3;
        users[owner].sub_ok("stream-room-messages", json!([rid, false])).await;
        for j in (0..3).filter(|&j| j != owner) {
            assert_eq!(users[j].ok("joinRoom", json!([rid])).await, json!(true));
            users[j].ok("sendMessage", json!([{"rid": rid, "msg": format!("from {j} in {r}")}])).await;
        }
        let mut heard = Vec::new();
        while heard.len() < 2 {
            let m = users[owner].room_message(rid).await;
            if m["t"].is_null() {
                heard.push(m["msg"].as_str().unwrap().to_owned());
            }
        }
        heard.sort();
        let others: Vec<String> =
            (0..3).filter(|&j| j != owner).map(|j| format!("from {j} in {r}")).collect();
        assert_eq!(heard, others, "room {rid}");
    }
    for rid in &rooms {
        let mut seen = Vec::new();
        for c in users.iter_mut() {
            let h = c.ok("loadHistory", json!([rid, null, 50, null])).await;
            let ids: Vec<Value> =
                h["messages"].as_array().unwrap().iter().map(|m| m["_id"].clone()).collect();
            seen.push(ids);
        }
        assert!(seen.iter().all(|s| s == &seen[0] && s.len() >= 4), "room {rid}: {seen:?}");
    }
    // The leaders: roomd asks for them to be spread when it starts (all
    // three on three servers; at least two is what the issue asks).
    let end = Instant::now() + Duration::from_secs(15);
    let leaders = loop {
        let leaders: Vec<Option<String>> = STREAMS.iter().map(|s| nats.stream_leader(s)).collect();
        let distinct: BTreeSet<&String> = leaders.iter().flatten().collect();
        if distinct.len() >= 3 || Instant::now() > end {
            break leaders;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!("partition leaders: {leaders:?}");

    let distinct: BTreeSet<&String> = leaders.iter().flatten().collect();
    assert!(distinct.len() >= 2, "every partition led by one server: {leaders:?}");
}

/// The count is fixed when the cluster is created: a node started later
/// with another explicit count refuses to start and says what to do; one
/// without the flag adopts the recorded count and serves the rooms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_different_partition_count_is_refused_at_start() {
    let Some(bin) = nats_or_skip("a_different_partition_count_is_refused_at_start") else { return };
    let _turn = exclusive().await;
    let nats = start_nats(bin, &tempdir("parts-count"));
    let mut a = start_node_with(&nats.url, "a", &["--cluster-partitions", "2"]);
    super::basics::ready(&mut a).await;
    let mut alice = user(&a.url, "count-alice").await;
    let rid = alice.ok("createChannel", json!([crate::support::unique("count"), [], false])).await["rid"]
        .as_str()
        .unwrap()
        .to_owned();
    alice.ok("sendMessage", json!([{"rid": rid, "msg": "kept"}])).await;
    assert_eq!(record(port_of(&nats)), Some(json!({"partitions": 2})));

    let logs = refused_at_start(&nats, 3).await;
    assert!(
        logs.contains("--cluster-partitions 3 disagrees with this cluster's 2 partitions")
            && logs.contains("start without the flag or with 2"),
        "{logs}"
    );

    let mut c = start_node_with(&nats.url, "c", &[]);
    super::basics::ready(&mut c).await;
    let mut carol = user(&c.url, "count-carol").await;
    assert_eq!(carol.ok("joinRoom", json!([rid])).await, json!(true));
    let h = carol.ok("loadHistory", json!([rid, null, 10, null])).await;
    assert!(h["messages"].as_array().unwrap().iter().any(|m| m["msg"] == "kept"), "{h}");
    assert!(subjects(port_of(&nats), "ROOMLOG_2").is_empty(), "a third partition was made");
}

/// A cluster made before partitions (everything in `ROOMLOG`, no record)
/// keeps working as one partition: a node refuses an explicit other count
/// with a message naming the old layout, a node without the flag serves the
/// old rooms and records the count 1, and new rooms stay in `ROOMLOG`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_made_before_partitions_is_one_partition() {
    let Some(bin) = nats_or_skip("a_cluster_made_before_partitions_is_one_partition") else { return };
    let _turn = exclusive().await;
    let nats = start_nats(bin, &tempdir("parts-old"));
    let port = port_of(&nats);
    // One partition is the old layout plus the record: make the cluster,
    // then take the record and its subject away.
    let mut a = start_node_with(&nats.url, "a", &["--cluster-partitions", "1"]);
    super::basics::ready(&mut a).await;
    let mut alice = user(&a.url, "old-alice").await;
    let rid = alice.ok("createChannel", json!([crate::support::unique("old"), [], false])).await["rid"]
        .as_str()
        .unwrap()
        .to_owned();
    alice.ok("sendMessage", json!([{"rid": rid, "msg": "from the old days"}])).await;
    drop(alice);
    drop(a);
    let got = js(port, "$JS.API.STREAM.MSG.GET.ROOMLOG", json!({"last_by_subj": "roomcluster.partitions"}))
        .expect("the record");
    let seq = got["message"]["seq"].as_u64().unwrap();
    assert!(js(port, "$JS.API.STREAM.MSG.DELETE.ROOMLOG", json!({"seq": seq})).is_some());
    let mut cfg = js(port, "$JS.API.STREAM.INFO.ROOMLOG", json!({})).unwrap()["config"].clone();
    cfg["subjects"] = json!(["roomlog.>", "roomname.>", "roomfacts.>"]);
    assert!(js(port, "$JS.API.STREAM.UPDATE.ROOMLOG", cfg).is_some());
    assert_eq!(record(port), None);

    let logs = refused_at_start(&nats, 3).await;
    assert!(
        logs.contains("holds a cluster created before partitions") && logs.contains("or with 1"),
        "{logs}"
    );

    let mut c = start_node_with(&nats.url, "c", &[]);
    super::basics::ready(&mut c).await;
    assert_eq!(record(port), Some(json!({"partitions": 1})));
    let mut carol = user(&c.url, "old-carol").await;
    assert_eq!(carol.ok("joinRoom", json!([rid])).await, json!(true));
    let h = carol.ok("loadHistory", json!([rid, null, 10, null])).await;
    assert!(h["messages"].as_array().unwrap().iter().any(|m| m["msg"] == "from the old days"), "{h}");
    let mut new = Vec::new();
    for i in 0..6 {
        let name = crate::support::unique(&format!("new{i}"));
        new.push(
            carol.ok("createChannel", json!([name, [], false])).await["rid"].as_str().unwrap().to_owned(),
        );
    }
    let held = subjects(port, "ROOMLOG");
    assert!(new.iter().all(|r| held.contains_key(&format!("roomlog.{r}"))), "{held:?}");
    assert!(js(port, "$JS.API.STREAM.INFO.ROOMLOG_1", json!({})).is_none(), "a second partition was made");
}

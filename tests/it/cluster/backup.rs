//! Issue 23, point 4: a cluster's rooms survive a backup of its streams
//! (`ROOMLOG` and the partition streams `ROOMLOG_1`, `ROOMLOG_2`) and their
//! restore into a fresh NATS server, from which a new
//! roomd node serves them. The test does what `nats stream backup ROOMLOG
//! DIR` and `nats stream restore DIR` do (docs/operations.md, "Cluster
//! mode"), with the server's own API, since no `nats` CLI is at hand:
//!
//! - backup: `$JS.API.STREAM.SNAPSHOT.ROOMLOG` answers the stream's config
//!   and state, then the server sends the snapshot (an S2-compressed tar) in
//!   chunks to a deliver subject we subscribed to. Each chunk that carries a
//!   reply subject must be acknowledged there (flow control: unacknowledged
//!   chunks stop the sender). An empty message ends it: no header or status
//!   `204` is the end, `408`/`500` a failure. We keep what the CLI keeps:
//!   `backup.json` (config and state) and `stream.tar.s2`.
//! - restore: `$JS.API.STREAM.RESTORE.ROOMLOG` with `{config, state}` answers a
//!   deliver subject; every chunk is sent there as a request (the server
//!   acknowledges each), and an empty request ends the upload; its reply is
//!   the restored stream's info, or the error.
//!
//! Why async-nats and not the raw client in `cluster/nats.rs`: that client
//! does one request and reads its one reply, dropping anything else. The
//! snapshot needs a subscription that receives many messages, acknowledges
//! each on its own reply subject and reads status headers; the restore needs
//! a request per chunk. async-nats (roomd's own client) already does all of
//! that; the snapshot and restore protocol itself is spelled out here.

use super::basics::{ready, start_nats, start_node_with};
use crate::cluster::nodes::user as login;
use crate::proc::tempdir;
use crate::support::{Client, unique};
use async_nats::Client as Nats;
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

/// The streams of a cluster of the default three partitions, `ROOMLOG`
/// last as docs/operations.md says (it holds the claims and users the
/// rooms of the others need, written before them).
const STREAMS: [&str; 3] = ["ROOMLOG_1", "ROOMLOG_2", "ROOMLOG"];
/// Every NATS exchange of the backup and the restore is bounded by this.
const STEP: Duration = Duration::from_secs(10);

async fn nats_client(url: &str) -> Nats {
    async_nats::ConnectOptions::new()
        .request_timeout(Some(STEP))
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// `nats stream backup ROOMLOG DIR`: writes `DIR/backup.json` and
/// `DIR/stream.tar.s2`; returns the stream state the snapshot reported.
async fn backup(url: &str, dir: &Path, stream: &str) -> Value {
    std::fs::create_dir_all(dir).unwrap();
    let nc = nats_client(url).await;
    let deliver = nc.new_inbox();
    // Subscribed before asking: the server waits only briefly for interest.
    let mut chunks = nc.subscribe(deliver.clone()).await.expect("subscribe to the deliver subject");
    let req = json!({"deliver_subject": deliver});
    let reply = nc
        .request(format!("$JS.API.STREAM.SNAPSHOT.{stream}"), Bytes::from(req.to_string()))
        .await
        .expect("snapshot request answered");
    let head: Value = serde_json::from_slice(&reply.payload).expect("snapshot answer is JSON");
    assert!(head.get("error").is_none(), "snapshot refused: {head}");
    assert!(head["config"].is_object() && head["state"].is_object(), "{head}");

    let mut tar = Vec::new();
    let deadline = Instant::now() + STEP;
    loop {
        let m = tokio::time::timeout_at(deadline.into(), chunks.next())
            .await
            .expect("snapshot chunks stopped coming")
            .expect("deliver subscription ended");
        if m.payload.is_empty() {
            let code = m.status.map(|s| s.as_u16());
            assert!(matches!(code, None | Some(204)), "snapshot failed: {code:?} {:?}", m.description);
            break;
        }
        tar.extend_from_slice(&m.payload);
        if let Some(ack) = m.reply {
            nc.publish(ack, Bytes::new()).await.expect("ack a snapshot chunk");
        }
    }
    assert!(!tar.is_empty(), "empty snapshot");
    let meta = json!({"config": head["config"], "state": head["state"]});
    std::fs::write(dir.join("backup.json"), serde_json::to_vec_pretty(&meta).unwrap()).unwrap();
    std::fs::write(dir.join("stream.tar.s2"), &tar).unwrap();
    head["state"].clone()
}

/// `nats stream restore DIR` into the server at `url`; returns the
/// restored stream's info.
async fn restore(url: &str, dir: &Path, stream: &str) -> Value {
    let nc = nats_client(url).await;
    let meta: Value = serde_json::from_slice(&std::fs::read(dir.join("backup.json")).unwrap()).unwrap();
    let tar = std::fs::read(dir.join("stream.tar.s2")).unwrap();
    let reply = nc
        .request(format!("$JS.API.STREAM.RESTORE.{stream}"), Bytes::from(meta.to_string()))
        .await
        .expect("restore request answered");
    let head: Value = serde_json::from_slice(&reply.payload).expect("restore answer is JSON");
    let deliver = head["deliver_subject"].as_str().unwrap_or_else(|| panic!("restore refused: {head}"));
    for chunk in tar.chunks(64 * 1024) {
        let ack =
            nc.request(deliver.to_owned(), Bytes::copy_from_slice(chunk)).await.expect("chunk acknowledged");
        // An acknowledgement is empty; anything else is the server's error.
        assert!(ack.payload.is_empty(), "restore chunk refused: {}", String::from_utf8_lossy(&ack.payload));
    }
    let done = nc.request(deliver.to_owned(), Bytes::new()).await.expect("restore finished");
    let info: Value = serde_json::from_slice(&done.payload).expect("restore result is JSON");
    assert!(info.get("error").is_none(), "restore failed: {info}");
    info
}

/// What a client sees of a room: its document's durable fields, its
/// participants and its whole history.
async fn view(c: &mut Client, rid: &str) -> Value {
    let doc = c.room(rid).await;
    let p = c.call("getRoomParticipants", json!([rid])).await;
    let mut people: Vec<Value> =
        p["result"]["participants"].as_array().unwrap_or_else(|| panic!("{p}")).clone();
    people.sort_by_key(|x| x["id"].to_string());
    let roles = c.call("getRoomRoles", json!([rid])).await;
    let h = c.call("loadHistory", json!([rid, null, 100, null])).await;
    let history: Vec<Value> = h["result"]["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("{h}"))
        .iter()
        .map(|m| json!([m["_id"], m["t"], m["msg"], m["u"]["username"], m["ts"]]))
        .collect();
    json!({
        "name": doc["name"], "code": doc["code"], "topic": doc["topic"], "locked": doc["locked"],
        "guestAccess": doc["guestAccess"], "usersCount": doc["usersCount"],
        "summary": p["result"]["room"], "participants": people, "roles": roles["result"],
        "history": history,
    })
}

/// Rooms with members, messages, a topic, a lock and a guest seat, made
/// through a node on one NATS server; a snapshot of `ROOMLOG` taken while
/// that node runs; the old server gone; the snapshot restored into a fresh
/// server; a new node started there serves every room exactly as before
/// (documents, participants, the whole history, once each), keeps names
/// claimed and takes new writes; the guest, whose node is not in the new
/// cluster, is released after the grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_roomlog_serves_every_room_from_a_new_node() {
    let Some(bin) = crate::cluster::nats::nats_or_skip("cluster::backup").cloned() else { return };
    let started = Instant::now();
    let old = start_nats(&bin, &tempdir("cbk-old"));
    let mut a = start_node_with(&old.url, "a", &[]);
    ready(&mut a).await;

    let mut alice = login(&a.url, "alice").await;
    let mut bob = login(&a.url, "bob").await;
    let mut carol = login(&a.url, "carol").await;
    let mut rooms = Vec::new();
    for (i, opts) in [json!({}), json!({}), json!({"guestAccess": true})].into_iter().enumerate() {
        let r = alice.call("createChannel", json!([unique(&format!("bk{i}")), [], false, {}, opts])).await;
        rooms.push(r["result"]["rid"].as_str().unwrap_or_else(|| panic!("{r}")).to_owned());
    }
    for rid in &rooms {
        for c in [&mut bob, &mut carol] {
            assert_eq!(c.call("joinRoom", json!([rid])).await["result"], json!(true));
        }
        for n in 0..4 {
            let c = match n % 3 {
                0 => &mut alice,
                1 => &mut bob,
                _ => &mut carol,
            };
            let r = c.call("sendMessage", json!([{"rid": rid, "msg": format!("{rid} m{n}")}])).await;
            assert!(r.get("error").is_none(), "{r}");
        }
    }
    let r = alice.call("saveRoomSettings", json!([rooms[0], "roomTopic", "kept through a restore"])).await;
    assert!(r.get("error").is_none(), "{r}");
    let r = alice.call("saveRoomSettings", json!([rooms[1], "locked", true])).await;
    assert!(r.get("error").is_none(), "{r}");
    let r = bob.call("leaveRoom", json!([rooms[1]])).await;
    assert!(r.get("error").is_none(), "{r}");
    let code = alice.room(&rooms[2]).await["code"].as_str().unwrap().to_owned();
    let mut guest = Client::open(&a.url).await;
    guest.connect().await;
    let r = guest.join_code(&code, Some("Visitor")).await;
    assert!(r.get("error").is_none(), "{r}");

    let mut before = Vec::new();
    for rid in &rooms {
        before.push(view(&mut alice, rid).await);
    }
    assert_eq!(before[0]["topic"], "kept through a restore");
    assert_eq!(before[1]["locked"], true);
    assert!(before[2]["participants"].to_string().contains("Visitor"), "{}", before[2]);

    // Online: node `a` is running and its guest still seated.
    let dir = tempdir("cbk-backup");
    let mut states = Vec::new();
    for stream in STREAMS {
        states.push(backup(&old.url, &dir.join(stream), stream).await);
    }
    drop((alice, bob, carol, guest, a, old));

    let fresh = start_nats(&bin, &tempdir("cbk-new"));
    for (stream, state) in STREAMS.iter().zip(&states) {
        let info = restore(&fresh.url, &dir.join(stream), stream).await;
        assert_eq!(info["state"]["messages"], state["messages"], "restored {info}");
        assert_eq!(info["state"]["last_seq"], state["last_seq"], "restored {info}");
        assert_eq!(info["config"]["duplicate_window"], json!(120_000_000_000u64), "{info}");
    }

    // A new node, never seen by the old cluster, with a guest grace short
    // enough to watch it pass.
    let mut b = start_node_with(&fresh.url, "b", &["--guest-grace", "3s"]);
    ready(&mut b).await;
    let mut alice = login(&b.url, "alice").await;
    alice.sub_ok("stream-room-messages", json!([rooms[2], false])).await;
    for (rid, want) in rooms.iter().zip(&before) {
        assert_eq!(&view(&mut alice, rid).await, want, "room {rid} after the restore");
    }
    // Names are still claimed, and the rooms take new writes.
    let taken = alice.call("createChannel", json!([before[0]["name"], []])).await;
    assert_eq!(taken["error"]["error"], "error-duplicate-channel-name", "{taken}");
    let r = alice.call("sendMessage", json!([{"rid": rooms[0], "msg": "after the restore"}])).await;
    assert!(r.get("error").is_none(), "{r}");
    let mut bob = login(&b.url, "bob").await;
    let r = bob.call("sendMessage", json!([{"rid": rooms[1], "msg": "not a member"}])).await;
    assert!(r["error"].is_object(), "bob left room 1 before the backup: {r}");

    // The guest's node is not in this cluster: its seat goes after the grace.
    // (Node heartbeat sweeps every 2 s: released about 6 s after `b` starts.)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let ul = loop {
        let f = alice.next_frame_until(deadline).await.expect("the guest's seat was never released");
        let m = &f["fields"]["args"][0];
        if f["collection"] == "stream-room-messages" && m["t"] == "ul" {
            break m.clone();
        }
    };
    assert_eq!(ul["msg"], "Visitor", "{ul}");
    // A second restore over the live stream is refused by the server.
    let nc = nats_client(&fresh.url).await;
    let meta = std::fs::read(dir.join("ROOMLOG").join("backup.json")).unwrap();
    let again = nc.request("$JS.API.STREAM.RESTORE.ROOMLOG", meta.into()).await.expect("answered");
    let again: Value = serde_json::from_slice(&again.payload).unwrap();
    assert_eq!(again["error"]["err_code"], 10130, "stream name already in use: {again}");
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("backup, restore and checks took {:?}", started.elapsed());
}

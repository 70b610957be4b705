//! Issue 12, "What CI must show": three roomd nodes on three clustered
//! nats-servers behave, for every client, like one roomd — exact capacity,
//! events once and in commit order on every node, nothing acknowledged
//! lost when a roomd node or a NATS server is killed, paused or the whole
//! cluster restarts. Each scenario is bounded in time and count.

use super::nats::{NatsCluster, nats_or_skip};
use super::nodes::{Nodes, token, try_guest, try_user, user};
use super::workload::{Workload, check_room, error_code};
use super::{SharedNats, exclusive};
use crate::support::{Client, unique};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Barrier;
use tokio_tungstenite::tungstenite::Message;

/// Fails the scenario if it runs longer than `secs` (every process is
/// still stopped by the fixtures' destructors).
async fn bounded<T>(secs: u64, name: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), f).await {
        Ok(v) => v,
        Err(_) => panic!("{name}: did not finish within {secs} s"),
    }
}

/// The owner's room: a public channel created through `c`.
async fn create_room(c: &mut Client, extra: Value) -> (String, String) {
    let doc = c.ok("createChannel", json!([unique("cl"), [], false, {}, extra])).await;
    (doc["_id"].as_str().unwrap().to_owned(), doc["code"].as_str().unwrap().to_owned())
}

/// A guest taking a seat through the Socket.IO door (Engine.IO v4 over
/// WebSocket): the ack's payload, or `None` if the socket failed.
struct SioGuest {
    ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
}

impl SioGuest {
    async fn open(ws_url: &str) -> Option<SioGuest> {
        let url = ws_url.replace("/websocket", "/socket.io/?EIO=4&transport=websocket");
        let (ws, _) = tokio::time::timeout(Duration::from_secs(5), tokio_tungstenite::connect_async(url))
            .await
            .ok()?
            .ok()?;
        let mut g = SioGuest { ws };
        g.read_until(|t| t.starts_with('0')).await?;
        g.ws.send(Message::Text("40".into())).await.ok()?;
        g.read_until(|t| t.starts_with("40")).await?;
        Some(g)
    }

    async fn read_until(&mut self, pred: impl Fn(&str) -> bool) -> Option<String> {
        let end = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            match tokio::time::timeout_at(end, self.ws.next()).await.ok()?? {
                Ok(Message::Text(t)) if t.as_str() == "2" => {
                    self.ws.send(Message::Text("3".into())).await.ok()?
                }
                Ok(Message::Text(t)) if pred(t.as_str()) => return Some(t.to_string()),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    async fn join(&mut self, code: &str, name: &str) -> Option<Value> {
        let packet = format!("420{}", json!(["join-room", {"code": code, "guestName": name}]));
        self.ws.send(Message::Text(packet.into())).await.ok()?;
        let ack = self.read_until(|t| t.starts_with("430")).await?;
        let mut args: Vec<Value> = serde_json::from_str(&ack[3..]).ok()?;
        Some(args.remove(0))
    }
}

/// One contender for a seat, connected and signed in before the race
/// (a REST request is its own connection: it has only an address).
enum Contender {
    User(Client, String),
    Guest(Client, String),
    Sio(Box<SioGuest>, String),
    Rest(String, String),
}

/// `POST /api/v1/channels.join` (the Rocket.Chat REST door) as user `name`:
/// `Ok(user id)` if admitted, `Err(errorType)` if not.
async fn rest_join(ws_url: &str, rid: &str, name: &str) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = ws_url.trim_start_matches("ws://").trim_end_matches("/websocket").to_owned();
    let body = json!({"roomId": rid}).to_string();
    let req = format!(
        "POST /api/v1/channels.join HTTP/1.1\r\nHost: {addr}\r\nX-Auth-Token: {}\r\nX-User-Id: id-{name}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        token(&format!("id-{name}"), name, &["user"]),
        body.len()
    );
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(&addr).await.ok()?;
        s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        Some(String::from_utf8_lossy(&buf).to_string())
    };
    let Ok(Some(text)) = tokio::time::timeout(Duration::from_secs(30), exchange).await else {
        return Err("no answer".into());
    };
    // The JSON object of the body (whether or not it came chunked).
    let json = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    let (Some(a), Some(b)) = (json.find('{'), json.rfind('}')) else {
        return Err(format!("no JSON in {text}"));
    };
    let v: Value = serde_json::from_str(&json[a..=b]).map_err(|e| format!("{e}: {text}"))?;
    if v["success"] == true {
        Ok(format!("id-{name}"))
    } else {
        Err(v["errorType"].as_str().unwrap_or("?").to_owned())
    }
}

/// Outcome of one contender: `Ok(name)` if admitted, `Err(code)` if not.
async fn contend(c: Contender, rid: &str, code: &str) -> (Result<String, String>, Option<Contender>) {
    match c {
        Contender::User(mut cl, name) => {
            let r = cl.try_call_for("joinRoom", json!([rid]), Duration::from_secs(30)).await;
            let out = match r {
                None => Err("no answer".into()),
                Some(r) => match error_code(&r) {
                    None => Ok(format!("id-{name}")),
                    Some(e) => Err(e),
                },
            };
            (out, Some(Contender::User(cl, name)))
        }
        Contender::Guest(mut cl, name) => {
            let r = cl
                .try_call_for(
                    "join-room",
                    json!([{"code": code, "guestName": name}]),
                    Duration::from_secs(30),
                )
                .await;
            let out = match r {
                None => Err("no answer".into()),
                Some(r) => match error_code(&r) {
                    None => Ok(r["result"]["guestName"].as_str().unwrap_or_default().to_owned()),
                    Some(e) => Err(e),
                },
            };
            (out, Some(Contender::Guest(cl, name)))
        }
        Contender::Sio(mut s, name) => {
            let out = match s.join(code, &name).await {
                None => Err("no answer".into()),
                Some(ack) if ack.get("error").is_some() => {
                    Err(ack["error"]["code"].as_str().unwrap_or("?").to_owned())
                }
                Some(ack) => Ok(ack["guestName"].as_str().unwrap_or_default().to_owned()),
            };
            (out, Some(Contender::Sio(s, name)))
        }
        Contender::Rest(url, name) => (rest_join(&url, rid, &name).await, None),
    }
}

/// Participants (by `userId`, or `guestName` for guests) as node `c` lists them.
async fn participants(c: &mut Client, rid: &str) -> (Vec<String>, Value) {
    let p = c.ok("getRoomParticipants", json!([rid])).await;
    let mut who: Vec<String> = p["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["userId"].as_str().or(x["guestName"].as_str()).unwrap_or("?").to_owned())
        .collect();
    who.sort();
    (who, p)
}

/// [`participants`] once they equal `expected`, or after five seconds
/// (a node's replica may trail the log by a moment).
async fn participants_settled(c: &mut Client, rid: &str, expected: &[String]) -> (Vec<String>, Value) {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let (who, p) = participants(c, rid).await;
        if who == expected || Instant::now() > end {
            return (who, p);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const K: usize = 20;
const CONTENDERS: usize = 300;

/// (1) A room of capacity K and 300 concurrent joins over the three nodes
/// and four doors (DDP `joinRoom` and REST `channels.join` by users, DDP
/// `join-room` and Socket.IO `join-room` by guests): exactly K members, the
/// same K on every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn capacity_is_exact_across_nodes() {
    let Some(bin) = nats_or_skip("capacity_is_exact_across_nodes") else { return };
    let nats = SharedNats::get(bin).await;
    let nodes = Nodes::start(&nats, "cap", 3).await;
    bounded(150, "capacity", async {
        let mut owners = Vec::new();
        for i in 0..3 {
            owners.push(user(&nodes.url(i), "cap-owner").await);
        }
        let (rid, code) =
            create_room(&mut owners[0], json!({"maxParticipants": K, "guestAccess": true})).await;
        let t0 = Instant::now();
        let prepared: Vec<Contender> = futures_util::stream::iter(0..CONTENDERS)
            .map(|i| {
                let url = nodes.url(i % 3);
                async move {
                    let name = format!("cap{i}");
                    match (i / 3) % 4 {
                        0 => Contender::User(user(&url, &name).await, name),
                        1 => Contender::Guest(try_guest(&url).await.expect("guest connects"), name),
                        2 => Contender::Sio(
                            Box::new(SioGuest::open(&url).await.expect("socket.io connects")),
                            name,
                        ),
                        _ => Contender::Rest(url, name),
                    }
                }
            })
            .buffer_unordered(32)
            .collect()
            .await;
        eprintln!("capacity: {CONTENDERS} contenders connected in {} ms", t0.elapsed().as_millis());
        let go = Arc::new(Barrier::new(CONTENDERS));
        let t0 = Instant::now();
        let tasks: Vec<_> = prepared
            .into_iter()
            .map(|c| {
                let (go, rid, code) = (go.clone(), rid.clone(), code.clone());
                tokio::spawn(async move {
                    go.wait().await;
                    contend(c, &rid, &code).await
                })
            })
            .collect();
        let mut admitted = Vec::new();
        let mut refused: HashMap<String, usize> = HashMap::new();
        let mut keep = Vec::new(); // seats of guests last while their sockets do
        for t in tasks {
            let (out, c) = t.await.unwrap();
            keep.push(c);
            match out {
                Ok(who) => admitted.push(who),
                Err(code) => *refused.entry(code).or_default() += 1,
            }
        }
        eprintln!(
            "capacity: {CONTENDERS} joins answered in {} ms: {} admitted, refused {refused:?}",
            t0.elapsed().as_millis(),
            admitted.len()
        );
        assert_eq!(admitted.len(), K - 1, "K = {K} (the owner holds one seat): admitted {admitted:?}");
        assert_eq!(refused.get("error-room-full").copied(), Some(CONTENDERS - (K - 1)), "{refused:?}");
        let mut expected: Vec<String> = admitted.clone();
        expected.push("id-cap-owner".into());
        expected.sort();
        let settle = Instant::now();
        for (i, o) in owners.iter_mut().enumerate() {
            let (who, p) = participants_settled(o, &rid, &expected).await;
            eprintln!(
                "capacity: node {} lists the K members {} ms after the last answer",
                i + 1,
                settle.elapsed().as_millis()
            );
            assert_eq!(p["room"]["participantCount"], K, "node {i}: {p}");
            assert_eq!(who, expected, "node {i} lists other members than those admitted");
            assert_eq!(o.room(&rid).await["usersCount"], K, "node {i}");
        }
        // Still full, through every node and door.
        for i in 0..3 {
            let mut late = user(&nodes.url(i), &format!("cap-late{i}")).await;
            let e = late.err("joinRoom", json!([rid])).await;
            assert_eq!(e["error"], "error-room-full", "node {i}: {e}");
        }
        drop(keep);
    })
    .await;
}

/// What a watcher saw of the room: `(id, t, msg)` of every
/// `stream-room-messages` event between the markers `start` and `end`.
async fn watch(c: &mut Client, rid: &str, start: &str, end: &str) -> Vec<(String, String, String)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    let mut started = false;
    loop {
        let Some(f) = c.next_frame_until(deadline).await else {
            panic!("watcher: no `{end}` marker within 30 s; saw {} events: {seen:?}", seen.len());
        };
        if f["msg"] != "changed"
            || f["collection"] != "stream-room-messages"
            || f["fields"]["eventName"] != rid
        {
            continue;
        }
        let m = &f["fields"]["args"][0];
        let text = m["msg"].as_str().unwrap_or_default().to_owned();
        if !started {
            started = text == start;
            continue;
        }
        if text == end && m["t"].is_null() {
            return seen;
        }
        seen.push((
            m["_id"].as_str().unwrap_or_default().to_owned(),
            m["t"].as_str().unwrap_or("").to_owned(),
            text,
        ));
    }
}

/// (2) Members on different nodes each see every `uj`, `ul` and message
/// once and in the same order, while users and guests join, post and leave
/// through all three nodes at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_cross_nodes_once_and_in_order() {
    let Some(bin) = nats_or_skip("events_cross_nodes_once_and_in_order") else { return };
    let nats = SharedNats::get(bin).await;
    let nodes = Nodes::start(&nats, "ev", 3).await;
    bounded(120, "events", async {
        let mut owner = user(&nodes.url(0), "ev-owner").await;
        let (rid, code) = create_room(&mut owner, json!({"guestAccess": true})).await;
        let mut watchers = Vec::new();
        for i in 0..3 {
            let mut w = user(&nodes.url(i), &format!("ev-watch{i}")).await;
            w.ok("joinRoom", json!([rid])).await;
            watchers.push(w);
        }
        for w in &mut watchers {
            w.sub_ok("stream-room-messages", json!([rid, false])).await;
        }
        let (start, end) = (unique("start"), unique("end"));
        owner.ok("sendMessage", json!([{"rid": rid, "msg": start}])).await;
        let readers: Vec<_> = watchers
            .into_iter()
            .map(|mut w| {
                let (rid, start, end) = (rid.clone(), start.clone(), end.clone());
                tokio::spawn(async move { watch(&mut w, &rid, &start, &end).await })
            })
            .collect();
        // Actors on every node at once: users join, post, some leave; one
        // guest per node joins and leaves.
        let actors: Vec<_> = (0..3)
            .map(|node| {
                let (url, rid, code) = (nodes.url(node), rid.clone(), code.clone());
                tokio::spawn(async move {
                    let mut joined = Vec::new();
                    let mut left = Vec::new();
                    let mut posted = Vec::new();
                    for j in 0..4 {
                        let name = format!("ev-a{node}-{j}");
                        let mut c = user(&url, &name).await;
                        c.ok("joinRoom", json!([rid])).await;
                        joined.push(name.clone());
                        let m = c
                            .ok("sendMessage", json!([{"rid": rid, "msg": format!("hello from {name}")}]))
                            .await;
                        posted.push((name.clone(), m["_id"].as_str().unwrap().to_owned()));
                        if j % 2 == 0 {
                            c.ok("leaveRoom", json!([rid])).await;
                            left.push(name.clone());
                        }
                        c.close().await;
                    }
                    let gname = format!("ev-guest{node}");
                    let mut g = try_guest(&url).await.expect("guest connects");
                    let r = g.call("join-room", json!([{"code": code, "guestName": gname}])).await;
                    assert!(r.get("error").is_none(), "{r}");
                    joined.push(gname.clone());
                    g.ok("leaveRoom", json!([rid])).await;
                    left.push(gname);
                    (joined, left, posted)
                })
            })
            .collect();
        let (mut joined, mut left, mut posted) = (Vec::new(), Vec::new(), Vec::new());
        for a in actors {
            let (j, l, p) = a.await.unwrap();
            joined.extend(j);
            left.extend(l);
            posted.extend(p);
        }
        owner.ok("sendMessage", json!([{"rid": rid, "msg": end}])).await;
        let mut views = Vec::new();
        for r in readers {
            views.push(r.await.unwrap());
        }
        let expected = joined.len() + left.len() + posted.len();
        for (i, v) in views.iter().enumerate() {
            let ids: HashSet<&str> = v.iter().map(|(id, _, _)| id.as_str()).collect();
            assert_eq!(ids.len(), v.len(), "watcher on node {i} saw an event twice: {v:?}");
            assert_eq!(
                v.len(),
                expected,
                "watcher on node {i}: {} events, expected {expected}: {v:?}",
                v.len()
            );
            let of = |t: &str| -> Vec<String> {
                let mut x: Vec<String> = v.iter().filter(|e| e.1 == t).map(|e| e.2.clone()).collect();
                x.sort();
                x
            };
            let sorted = |mut x: Vec<String>| {
                x.sort();
                x
            };
            assert_eq!(of("uj"), sorted(joined.clone()), "node {i}: joins seen");
            assert_eq!(of("ul"), sorted(left.clone()), "node {i}: leaves seen");
            for (name, id) in &posted {
                let at = |pred: &dyn Fn(&(String, String, String)) -> bool| v.iter().position(pred);
                let j = at(&|e| e.1 == "uj" && &e.2 == name).unwrap();
                let m =
                    at(&|e| &e.0 == id).unwrap_or_else(|| panic!("node {i}: message {id} of {name} missing"));
                assert!(j < m, "node {i}: {name}'s message before its join");
                if let Some(l) = at(&|e| e.1 == "ul" && &e.2 == name) {
                    assert!(m < l, "node {i}: {name}'s message after its leave");
                }
            }
        }
        let order = |v: &Vec<(String, String, String)>| v.iter().map(|e| e.0.clone()).collect::<Vec<_>>();
        assert_eq!(order(&views[0]), order(&views[1]), "nodes 1 and 2 saw the events in different orders");
        assert_eq!(order(&views[0]), order(&views[2]), "nodes 1 and 3 saw the events in different orders");
        eprintln!("events: {expected} events seen once, in one order, on 3 nodes");
    })
    .await;
}

/// (3) `kill -9` a roomd node (the room's first owner) mid-stream of
/// acknowledged joins, messages and topic changes: the others serve on,
/// every acknowledged change is visible from another node, and the killed
/// node catches up once restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_node_loses_nothing_acknowledged() {
    let Some(bin) = nats_or_skip("killed_node_loses_nothing_acknowledged") else { return };
    let nats = SharedNats::get(bin).await;
    let mut nodes = Nodes::start(&nats, "kill", 3).await;
    bounded(180, "kill -9 roomd", async {
        const CAP: u64 = 100;
        let mut owner = user(&nodes.url(0), "kill-owner").await;
        let (rid, _) = create_room(&mut owner, json!({"maxParticipants": CAP})).await;
        owner.ok("sendMessage", json!([{"rid": rid, "msg": "owner was here"}])).await;
        let urls: Vec<String> = (0..3).map(|i| nodes.url(i)).collect();
        let work = Workload::start(urls, &rid, "kill-owner", "kill", 2);
        tokio::time::sleep(Duration::from_millis(2000)).await;
        nodes.kill9(0);
        let killed = Instant::now();
        let first = wait_served(&work, killed, None, Duration::from_secs(60)).await;
        eprintln!("kill -9 roomd node: first successful call {} ms after the kill", first.as_millis());
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let l = work.stop().await;
        eprintln!("kill -9 roomd node: {}", l.summary());
        assert!(l.messages.len() >= 10, "too little work acknowledged: {}", l.summary());
        let after = l.first_served_after(killed, Some(1)).or(l.first_served_after(killed, Some(2)));
        assert!(after.is_some(), "no call was served by the surviving nodes after the kill");
        let mut views = Vec::new();
        for i in [1, 2] {
            let mut c = user(&nodes.url(i), "kill-owner").await;
            views.push(check_room(&mut c, &rid, CAP, &l, &format!("node {} after the kill", i + 1)).await);
        }
        assert_eq!(views[0], views[1], "nodes 2 and 3 disagree about the room");
        nodes.restart(0).await;
        let mut c = user(&nodes.url(0), "kill-owner").await;
        let v = check_room(&mut c, &rid, CAP, &l, "restarted node 1").await;
        assert_eq!(v, views[0], "the restarted node did not catch up");
        c.ok("saveRoomSettings", json!([rid, "roomTopic", "after restart"])).await;
        let mut other = user(&nodes.url(2), "kill-owner").await;
        assert_eq!(other.room(&rid).await["topic"], "after restart");
    })
    .await;
}

/// Waits until the workload has a definitive answer to a call started at
/// or after `t` (on `node`, or any); how long after `t` it came.
async fn wait_served(work: &Workload, t: Instant, node: Option<usize>, within: Duration) -> Duration {
    loop {
        if let Some(d) = work.served_after(t, node) {
            return d;
        }
        assert!(t.elapsed() < within, "no call served on {node:?} within {within:?} after the failure");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How long writes through a node may stall when a NATS server dies: a
/// Raft election takes 2–5 s here (docs/cluster.md); four times that.
const RESUME_WITHIN: Duration = Duration::from_secs(20);

/// A NATS cluster of its own for scenarios that kill or pause servers.
async fn own_nats(bin: &std::path::Path) -> NatsCluster {
    let mut nats = NatsCluster::start(bin, 3);
    nats.wait_ready(Duration::from_secs(30)).await;
    nats
}

/// (4) `kill -9` the nats-server leading the ROOMLOG stream mid-stream:
/// writes resume through every node; nothing acknowledged is lost; the
/// restarted server catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_stream_leader_loses_nothing_acknowledged() {
    let Some(bin) = nats_or_skip("killed_stream_leader_loses_nothing_acknowledged") else { return };
    let _turn = exclusive().await;
    let mut nats = own_nats(bin).await;
    let nodes = Nodes::start(&nats, "lead", 3).await;
    bounded(180, "kill -9 stream leader", async {
        const CAP: u64 = 100;
        let mut owner = user(&nodes.url(0), "lead-owner").await;
        let (rid, _) = create_room(&mut owner, json!({"maxParticipants": CAP})).await;
        // The leader that matters is the one of the stream holding this
        // room's log: its partition.
        let log = nats.room_stream(&rid).expect("the room's log is in a partition stream");
        let stream = nats.stream_on(0, &log).expect("roomd created the room's partition stream");
        assert_eq!(stream["config"]["num_replicas"], 3, "{stream}");
        assert_eq!(stream["config"]["storage"], "file", "{stream}");
        let urls: Vec<String> = (0..3).map(|i| nodes.url(i)).collect();
        let work = Workload::start(urls, &rid, "lead-owner", "lead", 2);
        tokio::time::sleep(Duration::from_millis(2000)).await;
        let leader = nats.wait_stream_leader(&log, Duration::from_secs(5)).await;
        let name = nats.servers[leader].name.clone();
        eprintln!(
            "kill -9 stream leader {name} of {log}: client connections {:?}; consumers led by {:?}",
            nats.clients(),
            nats.consumer_leaders(&log)
        );
        nats.kill9(leader);
        let killed = Instant::now();
        let mut per_node = Vec::new();
        for i in 0..3 {
            per_node.push(wait_served(&work, killed, Some(i), RESUME_WITHIN).await.as_millis());
        }
        eprintln!("kill -9 stream leader {name}: first served call per roomd node after {per_node:?} ms");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let l = work.stop().await;
        eprintln!("kill -9 stream leader: {}", l.summary());
        let mut views = Vec::new();
        for i in 0..3 {
            let mut c = user(&nodes.url(i), "lead-owner").await;
            views.push(check_room(&mut c, &rid, CAP, &l, &format!("node {}", i + 1)).await);
        }
        assert!(views.windows(2).all(|w| w[0] == w[1]), "nodes disagree about the room: {views:?}");
        nats.restart(leader);
        nats.wait_ready(Duration::from_secs(30)).await;
        // The restarted replica catches up from the leader on its own time:
        // wait for it (bounded) before comparing.
        let caught_up = Instant::now() + Duration::from_secs(30);
        let states = loop {
            let states: Vec<Value> = (0..3)
                .map(|i| nats.stream_on(i, &log).map(|s| s["state"]["last_seq"].clone()).unwrap_or_default())
                .collect();
            if states.windows(2).all(|w| w[0] == w[1]) || Instant::now() > caught_up {
                break states;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert!(
            states.windows(2).all(|w| w[0] == w[1]),
            "replicas differ 30 s after the restart: {states:?}"
        );
    })
    .await;
}

/// (5) `kill -STOP` the node that serves a room, fill the room through the
/// other nodes, `kill -CONT`: joins sent through the continued node at once
/// are refused as full, and the room holds exactly K.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paused_node_cannot_overfill_after_it_continues() {
    let Some(bin) = nats_or_skip("paused_node_cannot_overfill_after_it_continues") else { return };
    let nats = SharedNats::get(bin).await;
    let mut nodes = Nodes::start(&nats, "stale", 3).await;
    bounded(180, "STOP/CONT roomd", async {
        const CAP: usize = 8;
        let mut owner = user(&nodes.url(2), "stale-owner").await;
        let (rid, _) = create_room(&mut owner, json!({"maxParticipants": CAP})).await;
        for j in 0..2 {
            let mut c = user(&nodes.url(2), &format!("stale-early{j}")).await;
            c.ok("joinRoom", json!([rid])).await;
        }
        let mut late = Vec::new();
        for j in 0..6 {
            late.push(user(&nodes.url(2), &format!("stale-late{j}")).await);
        }
        let mut fillers = Vec::new();
        for j in 0..2 * CAP {
            fillers.push(user(&nodes.url(j % 2), &format!("stale-fill{j}")).await);
        }
        nodes.stop(2);
        let stopped = Instant::now();
        let mut admitted =
            vec!["id-stale-owner".to_owned(), "id-stale-early0".into(), "id-stale-early1".into()];
        let mut full = false;
        let mut first_ok = None;
        let mut errors: HashMap<String, usize> = HashMap::new();
        'fill: for (j, f) in fillers.iter_mut().enumerate() {
            loop {
                assert!(
                    stopped.elapsed() < Duration::from_secs(60),
                    "room not filled 60 s after the STOP: {errors:?}"
                );
                let r = f.try_call_for("joinRoom", json!([rid]), Duration::from_secs(10)).await;
                match r.as_ref().map(error_code) {
                    Some(None) => {
                        first_ok.get_or_insert(stopped.elapsed());
                        admitted.push(format!("id-stale-fill{j}"));
                        break;
                    }
                    Some(Some(code)) if code == "error-room-full" => {
                        full = true;
                        break 'fill;
                    }
                    Some(Some(code)) => *errors.entry(code).or_default() += 1,
                    // Outcome unknown: the same join again is answered
                    // "already a member" if it got in.
                    None => {
                        *errors.entry("no answer".into()).or_default() += 1;
                        if let Some(c) = try_user(&nodes.url(j % 2), &format!("stale-fill{j}")).await {
                            *f = c;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        assert!(full, "the fillers never saw the room full");
        eprintln!(
            "STOP roomd: first join through another node {:?} ms after the STOP; retried errors {errors:?}",
            first_ok.map(|d| d.as_millis())
        );
        assert_eq!(admitted.len(), CAP);
        nodes.cont(2);
        let tasks: Vec<_> = late
            .into_iter()
            .enumerate()
            .map(|(j, mut c)| {
                let rid = rid.clone();
                tokio::spawn(async move {
                    let mut answers = Vec::new();
                    for _ in 0..10 {
                        let r = c.try_call_for("joinRoom", json!([rid]), Duration::from_secs(15)).await;
                        let code = r.as_ref().map(error_code);
                        answers.push(format!("{code:?}"));
                        match code {
                            Some(Some(c)) if c == "error-room-full" => return (j, false, answers),
                            Some(None) => return (j, true, answers),
                            Some(Some(_)) => tokio::time::sleep(Duration::from_millis(200)).await,
                            None => return (j, false, answers),
                        }
                    }
                    (j, false, answers)
                })
            })
            .collect();
        for t in tasks {
            let (j, in_room, answers) = t.await.unwrap();
            assert!(!in_room, "late joiner {j} through the continued node was admitted: {answers:?}");
            assert_eq!(
                answers.last().map(String::as_str),
                Some("Some(Some(\"error-room-full\"))"),
                "late joiner {j} through the continued node: {answers:?}"
            );
        }
        admitted.sort();
        for i in 0..3 {
            let mut c = user(&nodes.url(i), "stale-owner").await;
            let (who, p) = participants_settled(&mut c, &rid, &admitted).await;
            assert_eq!(who, admitted, "node {}: {p}", i + 1);
        }
    })
    .await;
}

/// The server to pause for a minority partition: a follower of ROOMLOG,
/// preferring one that roomd nodes are connected to.
fn follower_with_clients(nats: &NatsCluster, leader: usize) -> usize {
    (0..3)
        .filter(|&i| i != leader)
        .max_by_key(|&i| {
            crate::proc::http_json(nats.servers[i].http(), "/connz")
                .and_then(|c| c["num_connections"].as_u64())
                .unwrap_or(0)
        })
        .unwrap()
}

/// (6) `kill -STOP` one nats-server (a minority): every roomd node keeps
/// serving writes; nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paused_nats_minority_keeps_the_cluster_serving() {
    let Some(bin) = nats_or_skip("paused_nats_minority_keeps_the_cluster_serving") else { return };
    let _turn = exclusive().await;
    let mut nats = own_nats(bin).await;
    let nodes = Nodes::start(&nats, "minor", 3).await;
    bounded(180, "STOP one nats-server", async {
        const CAP: u64 = 100;
        const WINDOW: Duration = Duration::from_secs(12);
        let mut owner = user(&nodes.url(0), "minor-owner").await;
        let (rid, _) = create_room(&mut owner, json!({"maxParticipants": CAP})).await;
        let urls: Vec<String> = (0..3).map(|i| nodes.url(i)).collect();
        let work = Workload::start(urls, &rid, "minor-owner", "minor", 1);
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let leader = nats.wait_stream_leader("ROOMLOG", Duration::from_secs(5)).await;
        let paused = follower_with_clients(&nats, leader);
        let name = nats.servers[paused].name.clone();
        eprintln!(
            "STOP nats-server {name}: ROOMLOG led by {}; client connections {:?}; consumers led by {:?}",
            nats.servers[leader].name,
            nats.clients(),
            nats.consumer_leaders("ROOMLOG")
        );
        nats.stop(paused);
        let from = Instant::now();
        tokio::time::sleep(WINDOW).await;
        let to = Instant::now();
        nats.cont(paused);
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let l = work.stop().await;
        eprintln!("STOP nats-server {name} (follower) for {WINDOW:?}: {}", l.summary());
        let mut idle = Vec::new();
        for i in 0..3 {
            let served = l.served_between(from, to, i);
            let silence = l.longest_silence(from, to, i);
            eprintln!(
                "  roomd node {}: {served} calls served while paused, longest silence {} ms",
                i + 1,
                silence.as_millis()
            );
            if served == 0 {
                idle.push(i + 1);
            }
        }
        assert!(idle.is_empty(), "roomd nodes {idle:?} served nothing while {name} was paused");
        nats.wait_ready(Duration::from_secs(30)).await;
        for i in 0..3 {
            let mut c = user(&nodes.url(i), "minor-owner").await;
            check_room(&mut c, &rid, CAP, &l, &format!("node {}", i + 1)).await;
        }
    })
    .await;
}

/// (7) Stop everything (`kill -9` every roomd and every nats-server),
/// start it all again on the same stores (roomd once NATS is healthy again):
/// everything acknowledged is back, on every node, and capacity still holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn whole_cluster_restart_restores_everything_acknowledged() {
    let Some(bin) = nats_or_skip("whole_cluster_restart_restores_everything_acknowledged") else { return };
    whole_cluster_restart(bin, "all", true).await;
}

/// (7) as a power cut would have it: roomd nodes start at the same moment
/// as the nats-servers, before JetStream has its leaders back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn whole_cluster_restart_with_everything_started_at_once() {
    let Some(bin) = nats_or_skip("whole_cluster_restart_with_everything_started_at_once") else { return };
    whole_cluster_restart(bin, "once", false).await;
}

async fn whole_cluster_restart(bin: &std::path::Path, tag: &str, wait_for_nats: bool) {
    let _turn = exclusive().await;
    let mut nats = own_nats(bin).await;
    let mut nodes = Nodes::start(&nats, tag, 3).await;
    let owner = |i: usize| format!("{tag}-owner{i}");
    bounded(180, "whole cluster restart", async {
        // Three rooms, each created and changed through a different node.
        let mut rooms = Vec::new();
        for i in 0..3 {
            let mut o = user(&nodes.url(i), &owner(i)).await;
            let cap = 4 + i;
            let (rid, code) = create_room(&mut o, json!({"maxParticipants": cap})).await;
            o.ok("saveRoomSettings", json!([rid, {"roomTopic": format!("topic {i}"), "joinCode": "sesame"}]))
                .await;
            rooms.push((rid, code, cap, owner(i)));
        }
        // Members join through other nodes until each room is full; each posts.
        let mut expected: Vec<(Vec<String>, Vec<String>)> = Vec::new();
        for (r, (rid, _, cap, owner)) in rooms.iter().enumerate() {
            let mut members = vec![format!("id-{owner}")];
            let mut messages = Vec::new();
            for j in 1..*cap {
                let name = format!("{tag}-m{r}-{j}");
                let mut c = user(&nodes.url((r + j) % 3), &name).await;
                c.ok("joinRoom", json!([rid, "sesame"])).await;
                let m = c.ok("sendMessage", json!([{"rid": rid, "msg": format!("{name} was here")}])).await;
                members.push(format!("id-{name}"));
                messages.push(m["_id"].as_str().unwrap().to_owned());
            }
            let mut extra = user(&nodes.url(r), &format!("{tag}-extra{r}")).await;
            assert_eq!(extra.err("joinRoom", json!([rid, "sesame"])).await["error"], "error-room-full");
            members.sort();
            expected.push((members, messages));
        }
        nodes.kill_all();
        for i in 0..3 {
            nats.kill9(i);
        }
        let t0 = Instant::now();
        for i in 0..3 {
            nats.restart(i);
        }
        if wait_for_nats {
            nats.wait_ready(Duration::from_secs(60)).await;
        }
        nodes.restart_all().await;
        eprintln!(
            "whole cluster restart: NATS and roomd ready {} ms after the start",
            t0.elapsed().as_millis()
        );
        for i in 0..3 {
            for (r, (rid, code, cap, owner)) in rooms.iter().enumerate() {
                let label = format!("node {} room {r}", i + 1);
                let mut o = user(&nodes.url(i), owner).await;
                let doc = o.room(rid).await;
                assert_eq!(doc["topic"], format!("topic {r}"), "{label}: {doc}");
                assert_eq!(doc["maxParticipants"], *cap, "{label}: {doc}");
                assert_eq!(doc["joinCodeRequired"], true, "{label}: {doc}");
                assert_eq!(doc["code"], code.as_str(), "{label}: {doc}");
                let (who, _) = participants(&mut o, rid).await;
                assert_eq!(who, expected[r].0, "{label}: members");
                let hist = o.ok("loadHistory", json!([rid, null, 100, null])).await;
                let ids: Vec<&str> =
                    hist["messages"].as_array().unwrap().iter().filter_map(|m| m["_id"].as_str()).collect();
                for id in &expected[r].1 {
                    assert!(ids.contains(&id.as_str()), "{label}: acknowledged message {id} lost");
                }
                let mut extra = user(&nodes.url(i), &format!("{tag}-extra{r}")).await;
                let e = extra.err("joinRoom", json!([rid, "sesame"])).await;
                assert_eq!(e["error"], "error-room-full", "{label}: capacity after the restart: {e}");
            }
        }
        // Names stay taken across the restart.
        let mut o = user(&nodes.url(1), &owner(0)).await;
        let name = o.room(&rooms[0].0).await["name"].clone();
        let e = o.err("createChannel", json!([name])).await;
        assert_eq!(e["error"], "error-duplicate-channel-name", "{e}");
    })
    .await;
}

/// Every node of a new deployment starts at the same moment on a fresh NATS
/// cluster (no ROOMLOG stream yet): each creates or finds the stream and
/// becomes ready, and a room made through one is served by all.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_started_together_on_a_fresh_cluster_all_serve() {
    let Some(bin) = nats_or_skip("nodes_started_together_on_a_fresh_cluster_all_serve") else { return };
    let _turn = exclusive().await;
    let nats = own_nats(bin).await;
    bounded(90, "fresh start", async {
        let nodes = Nodes::start_together(&nats, "fresh", 3).await;
        let mut owner = user(&nodes.url(0), "fresh-owner").await;
        let (rid, _) = create_room(&mut owner, json!({})).await;
        for i in 1..3 {
            let mut c = user(&nodes.url(i), &format!("fresh-u{i}")).await;
            let r = c.try_call_for("joinRoom", json!([rid]), Duration::from_secs(10)).await;
            assert!(r.as_ref().is_some_and(|r| error_code(r).is_none()), "node {}: {r:?}", i + 1);
        }
    })
    .await;
}

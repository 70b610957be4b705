//! Rooms by interest (`--cluster-rooms interest`, issue 19 point 2): a node
//! holds only the rooms used through it, loads any other on first use from
//! its snapshot and the log after it, and then answers exactly as the nodes
//! that held it all along.

use super::basics::{Nats, Node, ready, start_nats, start_node_env};
use super::compaction::{members as participants, page_all};
use crate::cluster::nodes::{try_guest, user as login};
use crate::proc::{http_get, tempdir};
use crate::support::{Client, unique};
use serde_json::{Value, json};
use std::time::Duration;

fn nats_or_skip() -> Option<std::path::PathBuf> {
    crate::cluster::nats::nats_or_skip("cluster::interest").cloned()
}

/// A node holding rooms by interest, with a snapshot every `every` entries.
fn node(nats: &Nats, id: &str, every: u32) -> Node {
    start_node_env(
        &nats.url,
        id,
        &["--cluster-rooms", "interest", "--cluster-snapshot-every", &every.to_string()],
        &[],
    )
}

fn loaded(node: &Node) -> f64 {
    let (_, body) = http_get(node.proc.addr(), "/metrics").expect("/metrics answers");
    body.lines()
        .find_map(|l| l.strip_prefix("roomd_rooms_loaded ").and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no roomd_rooms_loaded in /metrics"))
}

/// A public channel created through `c`: its id and join code.
async fn channel(c: &mut Client, prefix: &str) -> (String, String) {
    let doc = c.ok("createChannel", json!([unique(prefix), [], false, {}, {"guestAccess": true}])).await;
    (doc["_id"].as_str().unwrap().to_owned(), doc["code"].as_str().unwrap().to_owned())
}

/// Issue 19's bar: 3 nodes, 300 rooms each used only through one node:
/// no node holds more than 150. Then a room is used through a node that
/// did not hold it: that node loads it (its snapshot and the entries after)
/// and answers as the node that held it all along, in both directions.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rooms_used_through_one_node_are_held_only_there_and_load_anywhere() {
    let Some(bin) = nats_or_skip() else { return };
    let nats = start_nats(&bin, &tempdir("ci1"));
    let mut nodes = [node(&nats, "a", 50), node(&nats, "b", 50), node(&nats, "c", 50)];
    for n in &mut nodes {
        ready(n).await;
    }
    let mut owners = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        owners.push(login(&n.url, &format!("owner{i}")).await);
    }
    let mut rooms: Vec<Vec<(String, String)>> = vec![Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..100 {
        for (i, o) in owners.iter_mut().enumerate() {
            let (rid, code) = channel(o, "ci").await;
            o.ok("sendMessage", json!([{"rid": rid, "msg": "hello"}])).await;
            rooms[i].push((rid, code));
        }
    }
    for n in &nodes {
        let held = loaded(n);
        assert!((100.0..=150.0).contains(&held), "node {} holds {held} rooms of 300", n.url);
    }

    // A room with a snapshot and entries after it, used through node c.
    let (rid, _) = rooms[0][0].clone();
    let owner = &mut owners[0];
    for i in 0..120 {
        owner.ok("sendMessage", json!([{"rid": rid, "msg": format!("m-{i}")}])).await;
    }
    let before = loaded(&nodes[2]);
    let mut carol = login(&nodes[2].url, "carol").await;
    assert_eq!(carol.call("joinRoom", json!([rid])).await["result"], json!(true));
    assert_eq!(loaded(&nodes[2]), before + 1.0, "node c loaded the room it was asked for");
    // Every message once, through the node that loaded the room.
    let seen = page_all(&mut carol, &rid, 50).await;
    for i in 0..120 {
        assert_eq!(seen.get(&format!("m-{i}")), Some(&1), "m-{i} through node c: {seen:?}");
    }
    assert_eq!(seen.get("hello"), Some(&1));
    // The same members on both nodes, and changes flow both ways.
    let mut alice_on_a = login(&nodes[0].url, "owner0").await;
    assert_eq!(participants(&mut carol, &rid).await, participants(&mut alice_on_a, &rid).await);
    alice_on_a.sub_ok("stream-room-messages", json!([rid, false])).await;
    carol.sub_ok("stream-room-messages", json!([rid, false])).await;
    carol.ok("sendMessage", json!([{"rid": rid, "msg": "from c"}])).await;
    let heard = alice_on_a.expect(|f| f["fields"]["args"][0]["msg"] == "from c");
    tokio::time::timeout(Duration::from_secs(10), heard).await.expect("node a hears node c's message");
    owners[0].ok("sendMessage", json!([{"rid": rid, "msg": "from a"}])).await;
    let heard = carol.expect(|f| f["fields"]["args"][0]["msg"] == "from a");
    tokio::time::timeout(Duration::from_secs(10), heard).await.expect("node c hears node a's message");

    // A guest joins another room by its code through node b, which never
    // held it: the code is found, the room loaded, the seat taken.
    let (rid2, code2) = rooms[2][5].clone();
    let mut g = try_guest(&nodes[1].url).await.expect("guest connects");
    let r = g.call("join-room", json!([{"code": code2, "guestName": "Gina"}])).await;
    assert!(r.get("error").is_none(), "{r}");
    let mut owner2 = login(&nodes[2].url, "owner2").await;
    assert_eq!(
        participants(&mut owner2, &rid2).await.len(),
        2,
        "the guest's seat is seen where the room lived"
    );
    // A code that names no room is still not found.
    let bad = g.call("join-room", json!([{"code": "zzz-zzz-zzz", "guestName": "Gina"}])).await;
    assert_eq!(bad["error"]["error"], json!("error-room-not-found"), "{bad}");
}

/// A member signed in on a node that does not hold a room hears it when
/// another node adds them to it, as on a node that holds every room; and
/// their room list there names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_added_through_another_node_hears_it_and_lists_the_room() {
    let Some(bin) = nats_or_skip() else { return };
    let nats = start_nats(&bin, &tempdir("ci2"));
    let (mut a, mut b) = (node(&nats, "a", 1000), node(&nats, "b", 1000));
    ready(&mut a).await;
    ready(&mut b).await;
    let mut bob = login(&b.url, "bob").await;
    let mut alice = login(&a.url, "alice").await;
    let group = alice.ok("createPrivateGroup", json!([unique("grp"), []])).await;
    let rid = group["rid"].as_str().or(group["_id"].as_str()).unwrap_or_else(|| panic!("{group}")).to_owned();
    bob.sub_ok("stream-notify-user", json!(["id-bob/subscriptions-changed", false])).await;
    assert_eq!(loaded(&b), 0.0, "node b holds no room yet");
    let added = alice.call("addUserToRoom", json!([{"rid": rid, "username": "bob"}])).await;
    assert!(added.get("error").is_none(), "{added}");
    let heard = bob.expect(|f| {
        f["collection"] == "stream-notify-user"
            && f["fields"]["args"][0] == "inserted"
            && f["fields"]["args"][1]["rid"] == rid.as_str()
    });
    tokio::time::timeout(Duration::from_secs(10), heard).await.expect("bob hears he was added, on node b");
    let subs = bob.call("subscriptions/get", json!([])).await;
    let names: Vec<&Value> =
        subs["result"].as_array().unwrap_or_else(|| panic!("{subs}")).iter().map(|s| &s["rid"]).collect();
    assert!(names.contains(&&json!(rid)), "bob's subscriptions on node b name the group: {subs}");
}

/// When the only node holding a room is killed, a surviving node that never
/// held it serves it on the first call: it loads the room (snapshot and the
/// entries after it), and nothing acknowledged through the dead node is
/// missing. Prints how long that first call took (docs/cluster.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_survivor_serves_a_room_it_did_not_hold_when_its_holder_dies() {
    let Some(bin) = nats_or_skip() else { return };
    let nats = start_nats(&bin, &tempdir("ci3"));
    let (mut a, mut b) = (node(&nats, "a", 100), node(&nats, "b", 100));
    ready(&mut a).await;
    ready(&mut b).await;
    let mut alice = login(&a.url, "alice").await;
    let (rid, _) = channel(&mut alice, "die").await;
    for i in 0..250 {
        alice.ok("sendMessage", json!([{"rid": rid, "msg": format!("k-{i}")}])).await;
    }
    assert_eq!(loaded(&b), 0.0, "node b never held the room");
    a.proc.kill9();
    let started = std::time::Instant::now();
    let mut back = login(&b.url, "alice").await;
    let first = back.call("loadHistory", json!([rid, null, 300, null])).await;
    let took = started.elapsed();
    println!(
        "first call on a room the survivor did not hold, after its holder died: {took:?} (sign-in included)"
    );
    let n = first["result"]["messages"].as_array().unwrap_or_else(|| panic!("{first}")).len();
    assert!(n >= 250, "the survivor serves the whole recent history: {n} messages");
    let seen = page_all(&mut back, &rid, 100).await;
    for i in 0..250 {
        assert_eq!(seen.get(&format!("k-{i}")), Some(&1), "k-{i} after the holder died: {seen:?}");
    }
    back.ok("sendMessage", json!([{"rid": rid, "msg": "still here"}])).await;
    assert_eq!(loaded(&b), 1.0);
}

/// A node lets go of a room nothing there uses any more, and a later use
/// loads it again with everything that happened meanwhile; a room someone
/// listens to through the node is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unused_room_is_let_go_and_loads_again_with_what_happened_meanwhile() {
    let Some(bin) = nats_or_skip() else { return };
    let nats = start_nats(&bin, &tempdir("ci4"));
    let mut a = node(&nats, "a", 50);
    let args =
        ["--cluster-rooms", "interest", "--cluster-snapshot-every", "50", "--cluster-unload-after", "1s"];
    let mut b = start_node_env(&nats.url, "b", &args, &[]);
    ready(&mut a).await;
    ready(&mut b).await;
    let mut alice = login(&a.url, "alice").await;
    let (kept, _) = channel(&mut alice, "kept").await;
    let (gone, _) = channel(&mut alice, "gone").await;
    // Bob listens to one room through node b and only reads the other.
    let mut bob = login(&b.url, "bob").await;
    bob.sub_ok("stream-room-messages", json!([kept, false])).await;
    let r = bob.call("loadHistory", json!([gone, null, 10, null])).await;
    assert!(r.get("error").is_none(), "{r}");
    assert_eq!(loaded(&b), 2.0);
    // Unused for a few sweeps: the read room goes, the listened one stays.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while loaded(&b) > 1.0 {
        assert!(tokio::time::Instant::now() < deadline, "node b never let the unused room go");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(loaded(&b), 1.0, "the room bob listens to stays held");
    // Meanwhile the room lives on through node a (past a snapshot too).
    for i in 0..80 {
        alice.ok("sendMessage", json!([{"rid": gone, "msg": format!("g-{i}")}])).await;
    }
    let mut carol = login(&a.url, "carol").await;
    assert_eq!(carol.call("joinRoom", json!([gone])).await["result"], json!(true));
    // Used again through node b: loaded with all of it.
    let seen = page_all(&mut bob, &gone, 30).await;
    for i in 0..80 {
        assert_eq!(seen.get(&format!("g-{i}")), Some(&1), "g-{i} after the reload: {seen:?}");
    }
    let mut alice_on_b = login(&b.url, "alice").await;
    assert_eq!(participants(&mut alice_on_b, &gone).await, participants(&mut alice, &gone).await);
    // And the kept room still delivers to bob.
    alice.ok("sendMessage", json!([{"rid": kept, "msg": "still listening"}])).await;
    let heard = bob.expect(|f| f["fields"]["args"][0]["msg"] == "still listening");
    tokio::time::timeout(Duration::from_secs(10), heard).await.expect("bob hears the kept room");
}

/// A node that does not hold a room notes its joins (before the room
/// decides them) but not its leaves. A user who joined and left through
/// node a and then lists their rooms through node b, which never held the
/// room, must not find it there: the room, loaded for the list, answers
/// that they are not a member, and drops the stale note.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_room_left_through_another_node_is_not_listed() {
    let Some(bin) = nats_or_skip() else { return };
    let nats = start_nats(&bin, &tempdir("ci5"));
    let (mut a, mut b) = (node(&nats, "a", 1000), node(&nats, "b", 1000));
    ready(&mut a).await;
    ready(&mut b).await;
    let mut alice = login(&a.url, "alice").await;
    let (left, _) = channel(&mut alice, "left").await;
    let (kept, _) = channel(&mut alice, "kept").await;
    let mut bob = login(&a.url, "bob").await;
    for rid in [&left, &kept] {
        assert_eq!(bob.call("joinRoom", json!([rid])).await["result"], json!(true));
    }
    let gone = bob.call("leaveRoom", json!([left])).await;
    assert!(gone.get("error").is_none(), "{gone}");
    // Node b applies entries within milliseconds; the list below must come
    // after it applied the leave (else the room, loaded up to before the
    // leave, rightly still lists bob).
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(loaded(&b), 0.0, "node b holds no room yet");
    let mut bob_b = login(&b.url, "bob").await;
    for method in ["rooms/get", "subscriptions/get"] {
        let list = bob_b.call(method, json!([])).await;
        let rids: Vec<&str> = list["result"]
            .as_array()
            .unwrap_or_else(|| panic!("{list}"))
            .iter()
            .filter_map(|d| d["rid"].as_str().or(d["_id"].as_str()))
            .collect();
        let kept_key = if method == "rooms/get" { "_id" } else { "rid" };
        assert!(
            list["result"].as_array().unwrap().iter().any(|d| d[kept_key] == kept.as_str()),
            "{method} through node b lists the room bob is in: {list}"
        );
        assert!(!rids.contains(&left.as_str()), "{method} through node b lists the room bob left: {list}");
    }
}

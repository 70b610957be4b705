//! Issue 20 across nodes: positions are the same on every node (each
//! applies the room's log in order), so a Socket.IO guest whose node was
//! killed (`kill -9`) while it was away comes back through another node
//! with `since` and receives what it missed, once and in order, then the
//! live stream; no session store is involved.

use super::SharedNats;
use super::nats::nats_or_skip;
use super::nodes::{Nodes, try_guest, user};
use crate::replay::events_after;
use crate::socketio::Sio;
use crate::support::unique;
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_socket_whose_node_was_killed_recovers_through_another_node() {
    let Some(bin) = nats_or_skip("a_socket_whose_node_was_killed_recovers_through_another_node") else {
        return;
    };
    let nats = SharedNats::get(bin).await;
    let mut nodes = Nodes::start(&nats, "rp", 3).await;
    let run = async {
        let mut owner = user(&nodes.url(2), "rp-owner").await;
        let doc =
            owner.ok("createChannel", json!([unique("rp"), [], false, {}, {"guestAccess": true}])).await;
        let (rid, code) = (doc["_id"].as_str().unwrap().to_owned(), doc["code"].as_str().unwrap().to_owned());

        // Jane, on node 1, hears her own join.
        let mut jane = Sio::connect_url(&nodes.url(0)).await;
        let p = jane.ask("join-room", json!({"code": code, "guestName": "Jane"})).await;
        let token = p["guestToken"].as_str().unwrap_or_else(|| panic!("{p}")).to_owned();
        let own = events_after(&mut jane, 0, 2).await;
        let last = own[1].1["seq"].as_u64().unwrap();

        // Her node dies; meanwhile a walk-in comes and goes around 10 messages.
        nodes.kill9(0);
        drop(jane);
        let mut walk = try_guest(&nodes.url(1)).await.expect("guest on node 2");
        walk.join_code(&code, Some("Walk")).await;
        for i in 0..10 {
            owner.ok("sendMessage", json!([{"rid": rid, "msg": format!("m{i}")}])).await;
        }
        walk.ok("leaveRoom", json!([rid])).await;

        // Back through node 2, no shared session: the log's positions.
        let mut back = Sio::connect_url(&nodes.url(1)).await;
        let ask = json!({"code": code, "guestName": "Jane", "guestToken": token, "since": last});
        let p = back.ask("join-room", ask).await;
        assert_eq!(p["recovered"], true, "{p}");
        let missed = events_after(&mut back, last, 14).await;
        let names: Vec<&str> = missed.iter().map(|(n, _)| n.as_str()).collect();
        let mut want = vec!["participant-joined", "room-updated"];
        want.extend(std::iter::repeat_n("message", 10));
        want.extend(["participant-left", "room-updated"]);
        assert_eq!(names, want);
        assert_eq!(missed[0].1["guestName"], "Walk");
        for (i, (_, m)) in missed[2..12].iter().enumerate() {
            assert_eq!(m["msg"], format!("m{i}"));
        }
        let seen = missed[13].1["seq"].as_u64().unwrap();
        assert_eq!(p["seq"].as_u64(), Some(seen), "{p}");

        // Then live, nothing twice.
        owner.ok("sendMessage", json!([{"rid": rid, "msg": "live"}])).await;
        let live = events_after(&mut back, seen, 1).await;
        assert_eq!((live[0].0.as_str(), &live[0].1["msg"]), ("message", &json!("live")));

        // A position this room never handed out is not recovered.
        let mut late = Sio::connect_url(&nodes.url(2)).await;
        let p = late.ask("join-room", json!({"code": code, "guestName": "Late", "since": seen + 1000})).await;
        assert_eq!(p["recovered"], false, "{p}");
        let (name, ev) = late.next_event().await;
        assert_eq!((name.as_str(), &ev["guestName"]), ("participant-joined", &json!("Late")));
    };
    match tokio::time::timeout(Duration::from_secs(120), run).await {
        Ok(()) => {}
        Err(_) => panic!("replay across nodes did not finish within 120 s"),
    }
}

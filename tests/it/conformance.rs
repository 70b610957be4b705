//! Door conformance: one scenario — a wrong code, a lock, a full room, a
//! join, a second join, an ended room — played through every door that
//! joins a room, each against its own fresh room, and the decisions
//! compared. The doors are adapters onto the same room rules, so the same
//! situation must get the same answer (code and status) whichever door it
//! came through; a door that re-checked a rule itself, or mapped an error
//! differently, would break the table.
//!
//! Two families join differently by contract: `joinRoom` (DDP) and
//! `channels.join` (REST) take the room's id and its `joinCode`; `join-room`
//! (DDP and Socket.IO) takes the meeting code, which *is* the invitation, so
//! a wrong one names no room. Inside a family the rows must be equal; across
//! families they differ only in that first step.

use crate::rest::Rc;
use crate::socketio::Sio;
use crate::support::*;
use serde_json::{Value, json};

/// What a door decided: admitted, or refused with (code, HTTP-like status).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Decision {
    Admitted,
    Refused(String, u64),
}

fn refused(code: &str, status: u64) -> Decision {
    Decision::Refused(code.to_owned(), status)
}

/// The doors that take a seat in a room.
#[derive(Debug, Clone, Copy)]
enum Door {
    DdpJoinRoom,
    DdpJoinByCode,
    SocketIo,
    Rest,
}

/// The room under test: its id, meeting code and join code.
struct Room {
    rid: String,
    code: String,
}

const JOIN_CODE: &str = "open-sesame";

/// One joiner, signed in through `door`.
enum Joiner {
    Ddp(Box<Client>),
    Sio(Box<Sio>),
    Rest(Rc),
}

impl Joiner {
    async fn sign_in(s: &TestServer, door: Door, username: &str) -> Joiner {
        match door {
            Door::DdpJoinRoom | Door::DdpJoinByCode => Joiner::Ddp(Box::new(s.user(username).await)),
            Door::SocketIo => {
                let token = s.token(&format!("id-{username}"), username, &["user"]);
                Joiner::Sio(Box::new(Sio::connect(s, Some(json!({ "token": token }))).await))
            }
            Door::Rest => Joiner::Rest(Rc::new(s, username)),
        }
    }

    /// Tries to join `room` through `door`; `wrong` presents a wrong code
    /// (the join code, or for `join-room` a meeting code of no room).
    async fn join(&mut self, door: Door, room: &Room, wrong: bool) -> Decision {
        let join_code = if wrong { "not-the-code" } else { JOIN_CODE };
        let meeting_code = if wrong { "zzz-zzz-zzz" } else { room.code.as_str() };
        match (door, self) {
            (Door::DdpJoinRoom, Joiner::Ddp(c)) => {
                ddp(c.call("joinRoom", json!([room.rid, join_code])).await)
            }
            (Door::DdpJoinByCode, Joiner::Ddp(c)) => {
                ddp(c.call("join-room", json!([{ "code": meeting_code }])).await)
            }
            (Door::SocketIo, Joiner::Sio(s)) => {
                let ack = s.ask("join-room", json!({ "code": meeting_code })).await;
                match ack.get("error") {
                    None => Decision::Admitted,
                    Some(e) => {
                        refused(e["code"].as_str().unwrap_or("?"), e["statusCode"].as_u64().unwrap_or(0))
                    }
                }
            }
            (Door::Rest, Joiner::Rest(r)) => {
                let (status, v) =
                    r.post("channels.join", json!({ "roomId": room.rid, "joinCode": join_code })).await;
                if status == 200 && v["success"] == true {
                    Decision::Admitted
                } else {
                    refused(v["errorType"].as_str().unwrap_or("?"), u64::from(status))
                }
            }
            (door, _) => panic!("joiner signed in through another door than {door:?}"),
        }
    }
}

/// A DDP `result` frame as a decision; an error without a status (Meteor
/// errors such as `error-invalid-room` carry none) counts as 400, which is
/// what the REST door answers for them.
fn ddp(result: Value) -> Decision {
    match result.get("error") {
        None => Decision::Admitted,
        Some(e) => {
            refused(e["error"].as_str().unwrap_or("?"), e["details"]["statusCode"].as_u64().unwrap_or(400))
        }
    }
}

/// Plays the scenario through `door` on a room of its own; returns the
/// decisions in order.
async fn scenario(s: &TestServer, door: Door) -> Vec<Decision> {
    let tag = format!("{door:?}").to_lowercase();
    let mut owner = s.user(&format!("conf-owner-{tag}")).await;
    let made = channel(&mut owner, json!({ "maxParticipants": 2 })).await;
    let room = Room {
        rid: made["_id"].as_str().unwrap().to_owned(),
        code: made["code"].as_str().unwrap().to_owned(),
    };
    let settings = |v: Value| json!([room.rid, v]);
    owner.ok("saveRoomSettings", settings(json!({ "joinCode": JOIN_CODE }))).await;
    let mut alice = Joiner::sign_in(s, door, &format!("conf-alice-{tag}")).await;
    let mut bob = Joiner::sign_in(s, door, &format!("conf-bob-{tag}")).await;
    let mut carol = Joiner::sign_in(s, door, &format!("conf-carol-{tag}")).await;
    let mut decided = Vec::new();

    // 1. A wrong code.
    decided.push(alice.join(door, &room, true).await);
    // 2. Locked.
    owner.ok("saveRoomSettings", settings(json!({ "locked": true }))).await;
    decided.push(alice.join(door, &room, false).await);
    owner.ok("saveRoomSettings", settings(json!({ "locked": false }))).await;
    // 3. Admitted: the owner and alice fill the room of two.
    decided.push(alice.join(door, &room, false).await);
    // 4. Joining again admits without a second seat.
    decided.push(alice.join(door, &room, false).await);
    // 5. Full.
    decided.push(bob.join(door, &room, false).await);
    // 6. Ended: nobody joins, whatever the capacity.
    owner.ok("saveRoomSettings", settings(json!({ "maxParticipants": 10 }))).await;
    owner.ok("endRoom", json!([room.rid])).await;
    decided.push(carol.join(door, &room, false).await);

    // Whatever each door said, the room holds exactly the owner and alice.
    let view = owner.ok("getRoomParticipants", json!([room.rid])).await;
    assert_eq!(view["room"]["participantCount"], 2, "{door:?}: after the scenario: {view}");
    assert_eq!(view["participants"].as_array().map(Vec::len), Some(2), "{door:?}: {view}");
    decided
}

#[tokio::test]
async fn every_door_decides_the_same_scenario_the_same_way() {
    let s = TestServer::start().await;
    let common = [
        refused("error-room-locked", 403),
        Decision::Admitted,
        Decision::Admitted,
        refused("error-room-full", 400),
        refused("error-room-inactive", 400),
    ];
    let with_first =
        |first: Decision| -> Vec<Decision> { std::iter::once(first).chain(common.clone()).collect() };
    let by_join_code = with_first(refused("error-code-invalid", 400));
    let by_meeting_code = with_first(refused("error-room-not-found", 404));

    for (door, expected) in [
        (Door::DdpJoinRoom, &by_join_code),
        (Door::Rest, &by_join_code),
        (Door::DdpJoinByCode, &by_meeting_code),
        (Door::SocketIo, &by_meeting_code),
    ] {
        assert_eq!(&scenario(&s, door).await, expected, "{door:?} decided differently");
    }
}

//! The Socket.IO door over real sockets, with a minimal Engine.IO v4 /
//! Socket.IO v5 client over WebSocket (`tests/interop/socketio.mjs` runs
//! the npm client, polling and upgrade included): sign-in, error acks, one
//! room for both doors, the connection limit, origins, the guest's grace.

use crate::support::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// One Socket.IO socket on the `/` namespace.
pub(crate) struct Sio {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_ack: u64,
    /// Server events read while waiting for something else.
    events: Vec<(String, Value)>,
}

/// What a CONNECT got.
enum Connect {
    Ok(Box<Sio>),
    Refused(String),
}

impl Sio {
    async fn open(srv: &TestServer, auth: Option<Value>) -> Connect {
        Sio::open_at(&format!("ws://{}/websocket", srv.addr), auth).await
    }

    /// A socket on the server whose DDP endpoint is `ws_url` (a cluster node).
    pub(crate) async fn connect_url(ws_url: &str) -> Sio {
        match Sio::open_at(ws_url, None).await {
            Connect::Ok(s) => *s,
            Connect::Refused(m) => panic!("CONNECT refused: {m}"),
        }
    }

    async fn open_at(ws_url: &str, auth: Option<Value>) -> Connect {
        let url = ws_url.replace("/websocket", "/socket.io/?EIO=4&transport=websocket");
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("socket.io connect timed out")
            .expect("socket.io upgrade refused");
        Sio::handshake(ws, auth).await
    }

    /// A socket whose TCP receive buffer is as small as the kernel allows:
    /// what the server sends it and it does not read soon waits in the
    /// server's send queue.
    async fn connect_small_window(srv: &TestServer) -> Sio {
        let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", srv.addr);
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.set_recv_buffer_size(1).unwrap();
        let tcp =
            tokio::time::timeout(WAIT, sock.connect(srv.addr)).await.expect("connect timed out").unwrap();
        let (ws, _) =
            tokio::time::timeout(WAIT, tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(tcp)))
                .await
                .expect("socket.io connect timed out")
                .expect("socket.io upgrade refused");
        match Sio::handshake(ws, None).await {
            Connect::Ok(s) => *s,
            Connect::Refused(m) => panic!("CONNECT refused: {m}"),
        }
    }

    /// The Engine.IO open packet and the Socket.IO CONNECT on `ws`.
    async fn handshake(mut ws: WebSocketStream<MaybeTlsStream<TcpStream>>, auth: Option<Value>) -> Connect {
        let open = next_text(&mut ws).await.expect("engine.io open packet");
        assert!(open.starts_with("0{"), "{open}");
        let connect = match auth {
            Some(a) => format!("40{a}"),
            None => "40".to_owned(),
        };
        ws.send(Message::Text(connect.into())).await.unwrap();
        let reply = loop {
            let t = next_text(&mut ws).await.expect("CONNECT answer");
            if t != "2" {
                break t;
            }
            ws.send(Message::Text("3".into())).await.unwrap();
        };
        if let Some(err) = reply.strip_prefix("44") {
            let v: Value = serde_json::from_str(err).unwrap();
            return Connect::Refused(v["message"].as_str().unwrap_or_default().to_owned());
        }
        assert!(reply.starts_with("40{"), "{reply}");
        Connect::Ok(Box::new(Sio { ws, next_ack: 0, events: Vec::new() }))
    }

    pub(crate) async fn connect(srv: &TestServer, auth: Option<Value>) -> Sio {
        match Sio::open(srv, auth).await {
            Connect::Ok(s) => *s,
            Connect::Refused(m) => panic!("CONNECT refused: {m}"),
        }
    }

    /// `socket.emit(event, payload, ack)`; returns the ack's payload.
    pub(crate) async fn ask(&mut self, event: &str, payload: Value) -> Value {
        let id = self.next_ack;
        self.next_ack += 1;
        let packet = format!("42{id}{}", json!([event, payload]));
        self.ws.send(Message::Text(packet.into())).await.unwrap();
        let prefix = format!("43{id}");
        loop {
            let t = self.read().await.expect("socket closed while waiting for an ack");
            if let Some(rest) = t.strip_prefix(&prefix) {
                let mut args: Vec<Value> = serde_json::from_str(rest).unwrap();
                assert_eq!(args.len(), 1, "{t}");
                return args.remove(0);
            }
            self.keep(&t);
        }
    }

    /// Waits for a server event named `name` whose payload matches `pred`.
    pub(crate) async fn event(&mut self, name: &str, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.events.iter().position(|(n, p)| n == name && pred(p)) {
            return self.events.remove(i).1;
        }
        loop {
            let t = self.read().await.unwrap_or_else(|| panic!("socket closed waiting for {name}"));
            self.keep(&t);
            if let Some(i) = self.events.iter().position(|(n, p)| n == name && pred(p)) {
                return self.events.remove(i).1;
            }
        }
    }

    /// The next server event, in the order the socket received it.
    pub(crate) async fn next_event(&mut self) -> (String, Value) {
        loop {
            if !self.events.is_empty() {
                return self.events.remove(0);
            }
            let t = self.read().await.expect("socket closed waiting for an event");
            self.keep(&t);
        }
    }

    fn keep(&mut self, t: &str) {
        if let Some(rest) = t.strip_prefix("42") {
            let mut v: Vec<Value> = serde_json::from_str(rest).unwrap();
            let payload = v.pop().unwrap_or(Value::Null);
            let name = v.pop().and_then(|n| n.as_str().map(str::to_owned)).unwrap_or_default();
            self.events.push((name, payload));
        }
    }

    /// The next Engine.IO message, answering pings; `None` once closed.
    async fn read(&mut self) -> Option<String> {
        loop {
            let t = next_text(&mut self.ws).await?;
            if t == "2" {
                self.ws.send(Message::Text("3".into())).await.ok()?;
                continue;
            }
            return Some(t);
        }
    }

    pub(crate) async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

async fn next_text(ws: &mut WebSocketStream<MaybeTlsStream<TcpStream>>) -> Option<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await.expect("timed out reading socket.io") {
            Some(Ok(Message::Text(t))) => return Some(t.to_string()),
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
            Some(Ok(_)) => continue,
        }
    }
}

/// A meeting room created over DDP by a signed-in host; returns (host, rid, code).
pub(crate) async fn meeting(srv: &TestServer, extra: Value) -> (Client, String, String) {
    let mut host = srv.user("host").await;
    let room = channel(&mut host, extra).await;
    (host, room["_id"].as_str().unwrap().to_owned(), room["code"].as_str().unwrap().to_owned())
}

fn error_of(ack: &Value) -> (u64, &str, &str) {
    let e = &ack["error"];
    (
        e["statusCode"].as_u64().unwrap_or(0),
        e["code"].as_str().unwrap_or(""),
        e["message"].as_str().unwrap_or(""),
    )
}

#[tokio::test]
async fn guest_joins_by_socketio_and_both_doors_see_each_other() {
    let srv = TestServer::start().await;
    let (mut host, rid, code) = meeting(&srv, json!({"guestAccess": true})).await;
    host.sub_ok("stream-notify-room", json!([format!("{rid}/participants"), false])).await;
    host.sub_ok("stream-room-messages", json!([rid, false])).await;

    let mut jane = Sio::connect(&srv, None).await;
    let p = jane.ask("join-room", json!({"code": code, "guestName": "Jane Smith"})).await;
    for k in ["id", "roomId", "userId", "guestName", "isActive", "isHost", "joinedAt", "leftAt"] {
        assert!(p.get(k).is_some(), "{k} missing: {p}");
    }
    assert_eq!(
        (&p["roomId"], &p["userId"], &p["guestName"]),
        (&json!(rid), &Value::Null, &json!("Jane Smith"))
    );
    assert_eq!(
        (p["isActive"].as_bool(), p["isHost"].as_bool(), &p["leftAt"]),
        (Some(true), Some(false), &Value::Null)
    );
    assert!(is_iso8601(&p["joinedAt"]), "{p}");

    // The DDP member sees the Socket.IO guest's seat and its `uj`.
    let ev = host.event("stream-notify-room", &format!("{rid}/participants")).await;
    assert_eq!(ev["fields"]["args"][0], "joined");
    assert_eq!(ev["fields"]["args"][1]["id"], p["id"]);
    let uj = host.expect(|f| is_system(&f["fields"]["args"][0], "uj")).await;
    assert_eq!(uj["fields"]["args"][0]["u"]["username"], "Jane Smith");

    // And the Socket.IO guest sees a DDP guest's seat.
    let mut dave = srv.guest().await;
    let d = dave.join_code(&code, Some("Dave")).await;
    let joined = jane.event("participant-joined", |p| p["guestName"] == "Dave").await;
    assert_eq!(joined["id"], d["result"]["id"]);
    let mut updated = jane.event("room-updated", |u| u["participantCount"] == 3).await;
    assert!(updated["seq"].as_u64().is_some_and(|s| s > 0), "{updated}");
    updated.as_object_mut().unwrap().remove("seq");
    assert_eq!(
        updated,
        json!({"isLocked": false, "isActive": true, "maxParticipants": null, "participantCount": 3})
    );

    // Messages from DDP reach the Socket.IO member in the meeting shape.
    let m = host.ok("sendMessage", json!([{"rid": rid, "msg": "welcome"}])).await;
    let got = jane.event("message", |x| x["id"] == m["_id"]).await;
    assert_eq!(
        (&got["msg"], &got["roomId"], &got["user"]["username"]),
        (&json!("welcome"), &json!(rid), &json!("host"))
    );
    assert!(is_iso8601(&got["ts"]), "{got}");

    // get-participants works for the guest, not for a stranger.
    let view = jane.ask("get-participants", json!({})).await;
    assert_eq!(view["room"]["participantCount"], 3, "{view}");
    let mut stranger = Sio::connect(&srv, None).await;
    let denied = stranger.ask("get-participants", json!({"roomId": rid})).await;
    assert_eq!(error_of(&denied).0, 403, "{denied}");
    assert_eq!(error_of(&denied).1, "error-not-allowed");
    jane.close().await;
    stranger.close().await;
}

/// Issue 22.2: a Socket.IO `create-room` meeting lets its guests chat by
/// default; a guest's `send-message` reaches Socket.IO, DDP and REST
/// readers under the guest's name.
#[tokio::test]
async fn meeting_guests_chat_and_every_door_shows_it() {
    let srv = TestServer::start().await;
    let token = srv.token("u-chat-host", "chat-host", &["user"]);
    let mut owner = Sio::connect(&srv, Some(json!({"token": token}))).await;
    let room = owner.ask("create-room", json!({"guestAccess": true})).await;
    assert_eq!(room["guestChat"], true, "meetings default to guest chat: {room}");
    let off = owner.ask("create-room", json!({"guestAccess": true, "guestChat": false})).await;
    assert_eq!(off["guestChat"], false, "{off}");
    let rid = room["_id"].as_str().unwrap().to_owned();
    owner.ask("join-room", json!({"code": room["code"]})).await;
    let mut ddp = Client::open(&srv.url()).await;
    ddp.connect().await;
    ddp.ok("login", json!([{"resume": token}])).await;
    ddp.sub_ok("stream-room-messages", json!([rid, false])).await;

    let mut jane = Sio::connect(&srv, None).await;
    jane.ask("join-room", json!({"code": room["code"], "guestName": "Jane 🏳\u{FE0F}\u{200D}🌈"})).await;
    let sent = jane.ask("send-message", json!({"msg": "hi all"})).await;
    assert!(sent["error"].is_null(), "{sent}");
    let got = owner.event("message", |m| m["msg"] == "hi all").await;
    assert_eq!(got["user"]["username"], "Jane 🏳\u{FE0F}\u{200D}🌈", "{got}");
    let live = ddp.expect(|f| f["fields"]["args"][0]["msg"] == "hi all").await;
    assert_eq!(live["fields"]["args"][0]["u"]["name"], "Jane 🏳\u{FE0F}\u{200D}🌈", "{live}");
    let req = format!(
        "GET /api/v1/channels.history?roomId={rid} HTTP/1.1\r\nHost: {}\r\nX-Auth-Token: {token}\r\nX-User-Id: u-chat-host\r\nConnection: close\r\n\r\n",
        srv.addr
    );
    let r = crate::http::parse(&crate::http::raw(srv.addr, req.as_bytes()).await);
    let h: Value = serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {r:?}"));
    let m = h["messages"].as_array().and_then(|a| a.iter().find(|m| m["msg"] == "hi all")).cloned();
    assert_eq!(m.map(|m| m["u"]["username"].clone()), Some(json!("Jane 🏳\u{FE0F}\u{200D}🌈")), "{h}");
    jane.close().await;
    owner.close().await;
}

#[tokio::test]
async fn refusals_are_acks_with_the_ddp_codes_and_a_status() {
    let srv = TestServer::start().await;
    let (mut host, rid, code) = meeting(&srv, json!({"guestAccess": true, "maxParticipants": 2})).await;
    let mut g = Sio::connect(&srv, None).await;
    let ack = g.ask("join-room", json!({"code": "zzz-zzz-zzz", "guestName": "G"})).await;
    assert_eq!(error_of(&ack), (404, "error-room-not-found", "Room not found"), "{ack}");
    let ack = g.ask("join-room", json!({"code": code})).await;
    assert_eq!(error_of(&ack).0, 400, "a guest needs a name: {ack}");
    host.ok("saveRoomSettings", json!([rid, {"locked": true}])).await;
    let ack = g.ask("join-room", json!({"code": code, "guestName": "G"})).await;
    assert_eq!(error_of(&ack), (403, "error-room-locked", "Room is locked"), "{ack}");
    host.ok("saveRoomSettings", json!([rid, {"locked": false}])).await;
    assert!(g.ask("join-room", json!({"code": code, "guestName": "G"})).await["error"].is_null());
    let mut h = Sio::connect(&srv, None).await;
    let ack = h.ask("join-room", json!({"code": code, "guestName": "H"})).await;
    assert_eq!(error_of(&ack), (400, "error-room-full", "Room is full"), "{ack}");
    // Owner events need a signed-in owner: the guest is refused as over DDP.
    let ack = g.ask("lock-room", json!({})).await;
    assert_eq!(error_of(&ack).1, "error-invalid-user", "{ack}");
    assert_eq!(error_of(&ack).0, 401, "{ack}");
    let ack = g.ask("end-room", json!({"roomId": 7})).await;
    assert_eq!(error_of(&ack).0, 400, "{ack}");
    host.ok("endRoom", json!([rid])).await;
    let ack = h.ask("join-room", json!({"code": code, "guestName": "H"})).await;
    assert_eq!(error_of(&ack), (400, "error-room-inactive", "Room is no longer active"), "{ack}");
}

#[tokio::test]
async fn token_signs_in_with_the_ddp_login_checks() {
    let srv = TestServer::start().await;
    let bad = Sio::open(&srv, Some(json!({"token": "nope"}))).await;
    assert!(
        matches!(bad, Connect::Refused(ref m) if m.starts_with("sign-in refused: ")),
        "bad token accepted"
    );
    let bad = Sio::open(&srv, Some(json!({"token": 5}))).await;
    assert!(matches!(bad, Connect::Refused(ref m) if m.contains("auth.token")));

    let token = srv.token("u-sio", "sio-owner", &["user"]);
    let mut owner = Sio::connect(&srv, Some(json!({"token": token}))).await;
    let room = owner.ask("create-room", json!({"maxParticipants": 3, "guestAccess": true})).await;
    assert!(room["code"].is_string(), "{room}");
    assert_eq!(room["maxParticipants"], 3);
    let p = owner.ask("join-room", json!({"code": room["code"]})).await;
    assert_eq!((&p["userId"], &p["isHost"]), (&json!("u-sio"), &json!(true)), "{p}");
    assert!(owner.ask("lock-room", json!({})).await["error"].is_null());
    let u = owner.event("room-updated", |u| u["isLocked"] == true).await;
    assert_eq!(u["participantCount"], 1);
    assert!(owner.ask("set-max-participants", json!({"maxParticipants": 5})).await["error"].is_null());
    owner.event("room-updated", |u| u["maxParticipants"] == 5).await;
    assert!(owner.ask("end-room", json!({})).await["error"].is_null());
    let ended = owner.event("room-ended", |_| true).await;
    assert_eq!(ended["roomId"], room["_id"]);

    // A token ended by a DDP logout is refused here too: the same login.
    let mut ddp = Client::open(&srv.url()).await;
    ddp.connect().await;
    ddp.ok("login", json!([{"resume": token}])).await;
    ddp.call("logout", json!([])).await;
    let revoked = Sio::open(&srv, Some(json!({"token": token}))).await;
    assert!(
        matches!(revoked, Connect::Refused(ref m) if m.starts_with("sign-in refused")),
        "revoked token accepted"
    );
    owner.close().await;
}

#[tokio::test]
async fn sockets_count_against_the_connection_limit() {
    let srv = TestServer::with_limits(|l| l.max_connections = 1).await;
    let ddp = srv.guest().await;
    let refused = Sio::open(&srv, None).await;
    assert!(
        matches!(refused, Connect::Refused(ref m) if m.contains("too many connections")),
        "over the limit"
    );
    ddp.close().await;
    // The DDP slot comes back once its connection has ended.
    let deadline = Instant::now() + WAIT;
    let sio = loop {
        if let Connect::Ok(s) = Sio::open(&srv, None).await {
            break s;
        }
        assert!(Instant::now() < deadline, "slot never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // And the Socket.IO socket holds it: a DDP client now gets 1013.
    let mut late = Client::open(&srv.url()).await;
    assert_eq!(late.closed().await.map(|c| c.0), Some(1013));
    sio.close().await;
}

#[tokio::test]
async fn foreign_origin_is_refused() {
    let srv = TestServer::start().await;
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", srv.addr);
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert("origin", "http://evil.example".parse().unwrap());
    let err = tokio_tungstenite::connect_async(req).await.expect_err("foreign origin upgraded");
    match err {
        tokio_tungstenite::tungstenite::Error::Http(r) => assert_eq!(r.status(), 403),
        other => panic!("unexpected error {other}"),
    }
}

#[tokio::test]
async fn guest_seat_ends_after_the_grace_once_the_socket_is_gone() {
    let grace = Duration::from_millis(600);
    let srv = TestServer::with_limits(|l| l.guest_grace = grace).await;
    let (mut host, rid, code) = meeting(&srv, json!({"guestAccess": true})).await;
    host.sub_ok("stream-notify-room", json!([format!("{rid}/participants"), false])).await;
    let mut g = Sio::connect(&srv, None).await;
    let p = g.ask("join-room", json!({"code": code, "guestName": "Brief"})).await;
    host.expect(|f| f["fields"]["args"][0] == "joined").await;
    let gone = Instant::now();
    g.close().await;
    let left = host.expect(|f| f["fields"]["args"][0] == "left").await;
    assert_eq!(left["fields"]["args"][1]["id"], p["id"]);
    assert!(gone.elapsed() >= grace, "seat released before the grace ({:?})", gone.elapsed());

    // Within the grace, a new socket presenting the guest token keeps the seat.
    let mut g = Sio::connect(&srv, None).await;
    let p = g.ask("join-room", json!({"code": code, "guestName": "Back"})).await;
    let token = p["guestToken"].as_str().unwrap().to_owned();
    g.close().await;
    let mut again = Sio::connect(&srv, None).await;
    let resumed =
        again.ask("join-room", json!({"code": code, "guestName": "Back", "guestToken": token})).await;
    assert_eq!(resumed["id"], p["id"], "{resumed}");
    host.expect_none(grace * 2, |f| {
        f["fields"]["args"][0] == "left" && f["fields"]["args"][1]["id"] == p["id"]
    })
    .await;
    // It hears the room again after resuming.
    let mut dave = srv.guest().await;
    dave.join_code(&code, Some("Dave")).await;
    again.event("participant-joined", |x| x["guestName"] == "Dave").await;
}

/// Open connections of both kinds, from the `roomd_connections` gauges.
fn open_connections(srv: &TestServer) -> f64 {
    let m = srv.state.render_metrics();
    ["user", "guest"]
        .iter()
        .map(|k| crate::http::sample(&m, &format!("roomd_connections{{kind=\"{k}\"}}")).unwrap_or(0.0))
        .sum()
}

/// Waits until no connection is open (slots and gauges all given back).
async fn all_closed(srv: &TestServer) {
    let deadline = Instant::now() + WAIT;
    while open_connections(srv) != 0.0 {
        assert!(
            Instant::now() < deadline,
            "connections never closed: {} open\n{}",
            open_connections(srv),
            srv.state.render_metrics()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One HTTP/1.1 request on its own TCP connection; returns (status, body).
async fn http(srv: &TestServer, method: &str, path: &str, body: &str) -> (u16, String) {
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain;charset=UTF-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        srv.addr,
        body.len()
    );
    let r = crate::http::parse(&crate::http::raw(srv.addr, req.as_bytes()).await);
    (r.status, r.body)
}

/// A polling Engine.IO session: its `sid`.
async fn polling_session(srv: &TestServer) -> String {
    let (status, body) = http(srv, "GET", "/socket.io/?EIO=4&transport=polling", "").await;
    assert_eq!(status, 200, "{body}");
    let open: Value = serde_json::from_str(body.strip_prefix('0').expect("open packet")).unwrap();
    open["sid"].as_str().unwrap().to_owned()
}

/// CONNECT and an Engine.IO close in one polling request (`40\x1e1`), over
/// and over: every slot must come back, and the gauge with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_then_close_in_one_poll_gives_the_slot_back() {
    let srv = TestServer::with_limits(|l| l.max_connections = 4).await;
    let token = srv.token("u-drop", "dropper", &[]);
    for i in 0..40 {
        let sid = polling_session(&srv).await;
        let body =
            if i % 2 == 0 { "40\u{1e}1".to_owned() } else { format!("40{}\u{1e}1", json!({"token": token})) };
        let (status, reply) =
            http(&srv, "POST", &format!("/socket.io/?EIO=4&transport=polling&sid={sid}"), &body).await;
        assert_eq!(status, 200, "{reply}");
    }
    all_closed(&srv).await;
    // A new client is admitted on every door.
    let sio = Sio::connect(&srv, None).await;
    let ddp = srv.guest().await;
    sio.close().await;
    ddp.close().await;
}

/// CONNECT over WebSocket and the socket destroyed at once, guests and
/// users alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_then_drop_over_websocket_gives_the_slot_back() {
    let srv = TestServer::with_limits(|l| l.max_connections = 4).await;
    let token = srv.token("u-drop", "dropper", &[]);
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", srv.addr);
    for i in 0..40 {
        let (mut ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(&url))
            .await
            .expect("upgrade timed out")
            .expect("upgrade refused");
        next_text(&mut ws).await.expect("open packet");
        let connect = if i % 2 == 0 { "40".to_owned() } else { format!("40{}", json!({"token": token})) };
        ws.send(Message::Text(connect.into())).await.unwrap();
        // Destroyed, no close frame.
        drop(ws);
    }
    all_closed(&srv).await;
    let sio = Sio::connect(&srv, None).await;
    let ddp = srv.guest().await;
    sio.close().await;
    ddp.close().await;
}

/// `roomd_connections_closed_total` for one reason.
fn closed_for(srv: &TestServer, reason: &str) -> f64 {
    let m = srv.state.render_metrics();
    crate::http::sample(&m, &format!("roomd_connections_closed_total{{reason=\"{reason}\"}}")).unwrap_or(0.0)
}

/// A Socket.IO guest that never reads lives under DDP's byte budgets: its
/// unsent packets count against `--max-queued-bytes-per-conn` until the
/// kernel takes them, and it is cut as a slow consumer (the socketioxide
/// packet buffer, far larger here, never fills first) while the room keeps
/// delivering to everyone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socketio_reader_that_never_reads_is_cut_under_the_byte_budget() {
    let srv = TestServer::with_limits(|l| {
        l.outbound_queue = 1_000_000;
        l.max_queued_bytes_per_conn = 256 * 1024;
    })
    .await;
    let (mut host, rid, code) = meeting(&srv, json!({"guestAccess": true})).await;
    let mut slow = Sio::connect(&srv, None).await;
    slow.ask("join-room", json!({"code": code, "guestName": "Slow"})).await;
    // `slow` reads nothing from here on.
    let text = "x".repeat(4000);
    let mut sent = 0;
    let cut = || {
        let m = srv.state.render_metrics();
        crate::http::sample(&m, "roomd_slow_consumer_disconnects_total").unwrap_or(0.0) > 0.0
    };
    while sent < 6000 && !cut() {
        let mut ids = Vec::new();
        for _ in 0..50 {
            ids.push(host.send_method("sendMessage", json!([{"rid": rid, "msg": text}])).await);
        }
        for id in ids {
            let r = host.result_of(&id).await;
            assert!(r.get("error").is_none(), "the room stalled or refused: {r}");
        }
        sent += 50;
    }
    assert!(cut(), "never cut after {sent} messages of 4 kB\n{}", srv.state.render_metrics());
    // What the kernel's socket buffers took (a few MB on loopback) is no
    // longer counted; the budget bounds what the server holds beyond that.
    assert!(sent <= 3000, "cut only after {sent} messages of 4 kB (budget 256 KiB)");
    // The host's connection is all that is left, and the room still answers.
    host.ok("sendMessage", json!([{"rid": rid, "msg": "the end"}])).await;
    let deadline = Instant::now() + WAIT;
    while open_connections(&srv) != 1.0 || closed_for(&srv, "slow_consumer") != 1.0 {
        assert!(Instant::now() < deadline, "the slow socket is still open, or not closed as slow_consumer");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // And its unsent bytes are given back to the server-wide budget.
    drop(slow);
    loop {
        let body = crate::http::get(srv.addr, "/metrics").await.body;
        let used = crate::http::sample(&body, "roomd_outbound_queued_bytes").unwrap_or(0.0);
        if used < 64.0 * 1024.0 {
            break;
        }
        assert!(Instant::now() < deadline, "the cut socket's bytes were not given back: {used}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// No event takes binary data: a packet announcing attachments closes the
/// socket at once (nothing is buffered for it), counted as `bad_packet`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_packet_with_binary_attachments_closes_the_socket() {
    let srv = TestServer::start().await;
    // Sent right after the CONNECT answer, before `on_connect` has run
    // (mostly): the reason must be counted whatever the order.
    let mut s = Sio::connect(&srv, None).await;
    let packet = r#"451-["send-message",{"msg":{"_placeholder":true,"num":0}}]"#;
    s.ws.send(Message::Text(packet.into())).await.unwrap();
    // Attachments that would have followed are not waited for.
    let _ = s.ws.send(Message::Binary(vec![0u8; 60_000].into())).await;
    while s.read().await.is_some() {}
    all_closed(&srv).await;
    assert_eq!(closed_for(&srv, "bad_packet"), 1.0, "{}", srv.state.render_metrics());
    assert_eq!(closed_for(&srv, "peer_closed"), 0.0, "{}", srv.state.render_metrics());
}

/// The close a raw WebSocket ends with: `(code, reason)`, `None` if it
/// ended without a close frame.
async fn close_of(ws: &mut WebSocketStream<MaybeTlsStream<TcpStream>>) -> Option<(u16, String)> {
    let deadline = Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await.expect("timed out waiting for the close") {
            Some(Ok(Message::Close(f))) => {
                return Some(
                    f.map(|f| (u16::from(f.code), f.reason.to_string())).unwrap_or((1005, String::new())),
                );
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}

/// A packet over `--max-frame-bytes` closes the WebSocket with `1009`
/// `frame too large`, as DDP does (the engine alone sends a close frame
/// without a code: `1005`), in one frame or in fragments; the socket is
/// counted as `too_big`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_packet_over_the_frame_limit_closes_1009() {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    let srv = TestServer::with_limits(|l| l.max_frame_bytes = 1024).await;
    let too_big = Some((1009, "frame too large".to_owned()));

    // One frame over, after a packet that fits.
    let mut s = Sio::connect(&srv, None).await;
    let fits = s.ask("get-participants", json!({"roomId": "r".repeat(900)})).await;
    assert_eq!(error_of(&fits).1, "error-invalid-room", "{fits}");
    let packet = format!("42{}", json!(["send-message", {"msg": "b".repeat(2000)}]));
    s.ws.send(Message::Text(packet.into())).await.unwrap();
    assert_eq!(close_of(&mut s.ws).await, too_big);

    // A message of three fragments that fit alone, over together, with a
    // ping between them.
    let mut s = Sio::connect(&srv, None).await;
    let chunk = "c".repeat(600);
    let first = format!("42[\"send-message\",{{\"msg\":\"{chunk}");
    s.ws.send(Message::Frame(Frame::message(first, OpCode::Data(Data::Text), false))).await.unwrap();
    s.ws.send(Message::Ping(vec![1].into())).await.unwrap();
    let next = Frame::message(chunk.clone(), OpCode::Data(Data::Continue), false);
    s.ws.send(Message::Frame(next)).await.unwrap();
    let last = Frame::message(format!("{chunk}\"}}]"), OpCode::Data(Data::Continue), true);
    let _ = s.ws.send(Message::Frame(last)).await;
    assert_eq!(close_of(&mut s.ws).await, too_big);
    // A client ends its side once it has the close frame (the server waits
    // for that, within bounds, before it drops the socket).
    drop(s);

    all_closed(&srv).await;
    assert_eq!(closed_for(&srv, "too_big"), 2.0, "{}", srv.state.render_metrics());
    assert_eq!(closed_for(&srv, "peer_closed"), 0.0, "{}", srv.state.render_metrics());
}

/// The `1009` close frame reaches the client even when more of the
/// client's bytes follow the packet over the limit. A socket dropped with
/// unread bytes is answered by the kernel with a reset, which throws away
/// whatever of the server's bytes were still queued to send (the close
/// frame among them); the server closes its side in order instead: FIN
/// after the close frame, the rest of what the client sends read and
/// dropped. Here the client's receive window is full of acks it has not
/// read yet, so the close frame is still queued when the server closes,
/// and 64 KiB follow the packet: thirty sockets, each must see `1009`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_1009_close_frame_survives_bytes_sent_after_the_packet() {
    use tokio::io::AsyncWriteExt;
    const ROUNDS: usize = 30;
    let srv = TestServer::with_limits(|l| l.max_frame_bytes = 1024).await;
    // One masked text frame announcing 2,000 bytes (mask key zero: the
    // payload is sent as it is), then 64 KiB the server never parses, all
    // in one write, so they are in the server's receive buffer when the
    // engine closes.
    let mut bytes = vec![0x81, 0x80 | 126, (2000u16 >> 8) as u8, 2000u16 as u8, 0, 0, 0, 0];
    bytes.extend(format!("42[\"send-message\",{{\"msg\":\"{}\"}}]", "b".repeat(1971)).into_bytes());
    bytes.extend(std::iter::repeat_n(b'x', 64 * 1024));
    let mut lost = Vec::new();
    for round in 0..ROUNDS {
        let mut s = Sio::connect_small_window(&srv).await;
        // Acks the client does not read before the close: more than its
        // receive window holds.
        for id in 0..40 {
            let packet = format!("42{id}{}", json!(["get-participants", {"roomId": "r".repeat(100)}]));
            s.ws.send(Message::Text(packet.into())).await.unwrap();
        }
        // Time for the acks to be written (bounded; a late ack only makes
        // the round easier).
        tokio::time::sleep(Duration::from_millis(50)).await;
        let MaybeTlsStream::Plain(tcp) = s.ws.get_mut() else { unreachable!("plain ws://") };
        // The server may reset the connection while this is written.
        let _ = tokio::time::timeout(WAIT, tcp.write_all(&bytes)).await.expect("write timed out");
        let close = close_of(&mut s.ws).await;
        if close != Some((1009, "frame too large".to_owned())) {
            lost.push((round, close));
        }
    }
    assert!(lost.is_empty(), "{} of {ROUNDS} sockets ended without the 1009 close: {lost:?}", lost.len());
    all_closed(&srv).await;
    assert_eq!(closed_for(&srv, "too_big"), ROUNDS as f64, "{}", srv.state.render_metrics());
}

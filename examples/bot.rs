//! A bot that creates a room, sets a join code, and prints every membership
//! event.
//!
//! Run it against a local server (`cargo run --release` in another terminal):
//!
//! ```sh
//! export ROOMD_TOKEN=$(cargo run -q --release -- token --user-id bot1 --username greeter --role bot)
//! cargo run --example bot -- --room lobby --join-code sesame
//! ```
//!
//! It prints the room's shareable code; guests join with
//! `cargo run --example guest -- <code> "Jane Smith"`, users with
//! `joinRoom(rid, "sesame")`. Options: `--url` (default
//! `ws://127.0.0.1:3000/websocket`), `--room`, `--join-code`, `--max N`.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Args {
    url: String,
    room: String,
    join_code: Option<String>,
    max: Option<u64>,
    token: String,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        url: "ws://127.0.0.1:3000/websocket".into(),
        room: format!("bot-room-{}", std::process::id()),
        join_code: None,
        max: None,
        token: std::env::var("ROOMD_TOKEN")
            .map_err(|_| "set ROOMD_TOKEN (see the top of examples/bot.rs)")?,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => a.url = val()?,
            "--room" => a.room = val()?,
            "--join-code" => a.join_code = Some(val()?),
            "--max" => a.max = Some(val()?.parse().map_err(|_| "--max takes a number")?),
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(a)
}

/// Sends a method call and waits for its result, printing events that
/// arrive meanwhile.
async fn call(ws: &mut Ws, id: &str, method: &str, params: Value) -> Result<Value, String> {
    let frame = json!({"msg": "method", "id": id, "method": method, "params": params});
    ws.send(Message::Text(frame.to_string().into())).await.map_err(|e| e.to_string())?;
    loop {
        let v = next(ws).await?;
        if v["msg"] == "result" && v["id"] == id {
            return match v.get("error") {
                Some(e) => Err(format!("{method}: {}", e["message"])),
                None => Ok(v.get("result").cloned().unwrap_or(Value::Null)),
            };
        }
        print_event(&v);
    }
}

/// Next frame; answers server pings so the connection stays up.
async fn next(ws: &mut Ws) -> Result<Value, String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).map_err(|e| e.to_string())?;
                if v["msg"] == "ping" {
                    let pong = json!({"msg": "pong", "id": v.get("id")});
                    ws.send(Message::Text(pong.to_string().into())).await.map_err(|e| e.to_string())?;
                    continue;
                }
                return Ok(v);
            }
            Some(Ok(Message::Close(f))) => return Err(format!("server closed: {f:?}")),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("connection closed".into()),
        }
    }
}

fn print_event(v: &Value) {
    if v["msg"] != "changed" {
        return;
    }
    let args = &v["fields"]["args"];
    match v["collection"].as_str() {
        Some("stream-room-messages") => {
            let m = &args[0];
            match m["t"].as_str() {
                Some("uj") => println!("+ {} joined", m["msg"].as_str().unwrap_or("?")),
                Some("ul") => println!("- {} left", m["msg"].as_str().unwrap_or("?")),
                Some(t) => println!("* {t} by {} {}", m["u"]["username"].as_str().unwrap_or("?"), m["msg"]),
                None => println!(
                    "{}: {}",
                    m["u"]["username"].as_str().unwrap_or("?"),
                    m["msg"].as_str().unwrap_or("")
                ),
            }
        }
        Some("stream-notify-room") if args[0] == "room-updated" => println!("room now: {}", args[1]),
        _ => {}
    }
}

async fn run(a: Args) -> Result<(), String> {
    let (mut ws, _) =
        tokio_tungstenite::connect_async(&a.url).await.map_err(|e| format!("{}: {e}", a.url))?;
    let connect = json!({"msg": "connect", "version": "1", "support": ["1", "pre2", "pre1"]});
    ws.send(Message::Text(connect.to_string().into())).await.map_err(|e| e.to_string())?;
    let me = call(&mut ws, "login", "login", json!([{"resume": a.token}])).await?;
    println!("logged in as {}", me["id"]);
    let extra = json!({"guestAccess": true, "maxParticipants": a.max});
    let room = call(&mut ws, "create", "createChannel", json!([a.room, [], false, {}, extra])).await?;
    let rid = room["_id"].as_str().unwrap_or_default().to_owned();
    if let Some(code) = &a.join_code {
        call(&mut ws, "code", "saveRoomSettings", json!([rid, "joinCode", code])).await?;
    }
    for (i, (stream, event)) in
        [("stream-room-messages", rid.clone()), ("stream-notify-room", format!("{rid}/participants"))]
            .iter()
            .enumerate()
    {
        let sub = json!({"msg": "sub", "id": format!("s{i}"), "name": stream, "params": [event, false]});
        ws.send(Message::Text(sub.to_string().into())).await.map_err(|e| e.to_string())?;
    }
    println!("room {} (rid {rid}) is open; share code {}", a.room, room["code"].as_str().unwrap_or("?"));
    println!("waiting for members (Ctrl-C to stop)");
    loop {
        print_event(&next(&mut ws).await?);
    }
}

#[tokio::main]
async fn main() {
    let result = match args() {
        Ok(a) => run(a).await,
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        eprintln!("bot: {e}");
        std::process::exit(1);
    }
}

//! A guest that joins a room by its shareable code and prints what happens
//! there.
//!
//! ```sh
//! cargo run --example guest -- abc-def-ghi "Jane Smith"
//! ```
//!
//! The room must allow guests (`guestAccess`, which `examples/bot.rs` sets).
//! `--url` overrides `ws://127.0.0.1:3000/websocket`. Ctrl-C closes the
//! connection; the server frees the seat after its guest grace period.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

#[tokio::main]
async fn main() {
    let mut pos = Vec::new();
    let mut url = "ws://127.0.0.1:3000/websocket".to_owned();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        if a == "--url" {
            url = it.next().unwrap_or_default();
        } else {
            pos.push(a);
        }
    }
    let [code, name] = match <[String; 2]>::try_from(pos) {
        Ok(p) => p,
        Err(_) => {
            eprintln!("usage: guest <room-code> <display name> [--url ws://host:port/websocket]");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&url, &code, &name).await {
        eprintln!("guest: {e}");
        std::process::exit(1);
    }
}

async fn run(url: &str, code: &str, name: &str) -> Result<(), String> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.map_err(|e| format!("{url}: {e}"))?;
    let frames = [
        json!({"msg": "connect", "version": "1", "support": ["1"]}),
        json!({"msg": "method", "id": "join", "method": "join-room", "params": [{"code": code, "guestName": name}]}),
    ];
    for f in frames {
        ws.send(Message::Text(f.to_string().into())).await.map_err(|e| e.to_string())?;
    }
    loop {
        let Some(msg) = ws.next().await else { return Err("connection closed".into()) };
        let text = match msg.map_err(|e| e.to_string())? {
            Message::Text(t) => t,
            Message::Close(f) => return Err(format!("server closed: {f:?}")),
            _ => continue,
        };
        let v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        match v["msg"].as_str() {
            Some("ping") => {
                let pong = json!({"msg": "pong", "id": v.get("id")}).to_string();
                ws.send(Message::Text(pong.into())).await.map_err(|e| e.to_string())?;
            }
            Some("result") if v["id"] == "join" => {
                if let Some(e) = v.get("error") {
                    return Err(format!("cannot join: {}", e["message"]));
                }
                let p = &v["result"];
                let rid = p["roomId"].as_str().unwrap_or_default();
                println!("joined room {rid} as {name} (participant {})", p["id"]);
                for (i, (stream, event)) in [
                    ("stream-room-messages", rid.to_owned()),
                    ("stream-notify-room", format!("{rid}/participants")),
                ]
                .iter()
                .enumerate()
                {
                    let sub = json!({"msg": "sub", "id": format!("s{i}"), "name": stream, "params": [event, false]});
                    ws.send(Message::Text(sub.to_string().into())).await.map_err(|e| e.to_string())?;
                }
            }
            Some("changed") if v["collection"] == "stream-room-messages" => {
                let m = &v["fields"]["args"][0];
                let who = m["u"]["username"].as_str().unwrap_or("?");
                match m["t"].as_str() {
                    Some(t) => println!("* {t} {who} {}", m["msg"]),
                    None => println!("{who}: {}", m["msg"].as_str().unwrap_or("")),
                }
            }
            Some("changed") => println!("{}", v["fields"]["args"]),
            _ => {}
        }
    }
}

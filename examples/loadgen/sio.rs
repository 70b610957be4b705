//! A minimal Socket.IO v5 (Engine.IO v4, WebSocket transport only) guest client
//! for the churn and idle scenarios: CONNECT, events with acknowledgements,
//! close or cut, or stay (answering pings).
use super::ddp::{DdpError, Endpoint};
use super::*;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// One socket on the `/` namespace, driven by one task: calls go one at a
/// time, and everything read while waiting for an ack (server events,
/// pings) is answered or dropped.
pub(crate) struct Sio {
    ws: WebSocketStream<TcpStream>,
    next_ack: u64,
    timeout: Duration,
}

fn io(e: impl fmt::Display) -> DdpError {
    DdpError::Io(e.to_string())
}

/// The Socket.IO URL on the same host as the endpoint's DDP URL.
fn url(ep: &Endpoint) -> String {
    let rest = ep.url.strip_prefix("ws://").unwrap_or(&ep.url);
    let host = rest.split('/').next().unwrap_or(rest);
    format!("ws://{host}/socket.io/?EIO=4&transport=websocket")
}

impl Sio {
    /// TCP + WebSocket, the Engine.IO open packet, then a CONNECT without
    /// `auth` (a guest); a CONNECT_ERROR is an error named by its message.
    pub(crate) async fn open(ep: &Endpoint, index: usize) -> Result<Sio, DdpError> {
        let sock = if ep.addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.map_err(io)?;
        if let Some(ip) = ep.source_ip(index) {
            sock.bind(SocketAddr::new(ip, 0)).map_err(io)?;
        }
        let stream = tokio::time::timeout(ep.timeout, sock.connect(ep.addr))
            .await
            .map_err(|_| DdpError::Timeout)?
            .map_err(io)?;
        stream.set_nodelay(true).map_err(io)?;
        let (ws, _) = tokio::time::timeout(ep.timeout, tokio_tungstenite::client_async(url(ep), stream))
            .await
            .map_err(|_| DdpError::Timeout)?
            .map_err(|e| DdpError::Io(format!("websocket handshake: {e}")))?;
        let mut me = Sio { ws, next_ack: 0, timeout: ep.timeout };
        let open = me.read().await?;
        if !open.starts_with("0{") {
            return Err(DdpError::Protocol(format!("engine.io open: {}", util::truncate(&open, 100))));
        }
        me.send("40".into()).await?;
        let reply = me.read().await?;
        if let Some(err) = reply.strip_prefix("44") {
            let v: Value = serde_json::from_str(err).unwrap_or(Value::Null);
            let reason = v["message"].as_str().unwrap_or(err).to_owned();
            return Err(DdpError::Method { error: "connect-error".into(), reason });
        }
        if !reply.starts_with("40") {
            return Err(DdpError::Protocol(format!("CONNECT answer: {}", util::truncate(&reply, 100))));
        }
        Ok(me)
    }

    async fn send(&mut self, text: String) -> Result<(), DdpError> {
        self.ws.send(Message::Text(text.into())).await.map_err(io)
    }

    /// The next Engine.IO message that is not a ping (pings are answered).
    async fn read(&mut self) -> Result<String, DdpError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return Err(DdpError::Timeout),
                Ok(Some(Ok(Message::Text(t)))) if t.as_str() == "2" => self.send("3".into()).await?,
                Ok(Some(Ok(Message::Text(t)))) => return Ok(t.to_string()),
                Ok(Some(Ok(Message::Close(_)))) | Ok(None) => return Err(DdpError::Closed),
                Ok(Some(Err(e))) => return Err(io(e)),
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// `socket.emit(event, payload, ack)`: the ack's payload, or its
    /// `error` object as an error named by its `code`.
    pub(crate) async fn ask(&mut self, event: &str, payload: Value) -> Result<Value, DdpError> {
        let id = self.next_ack;
        self.next_ack += 1;
        self.send(format!("42{id}{}", json!([event, payload]))).await?;
        let prefix = format!("43{id}");
        loop {
            let t = self.read().await?;
            let Some(rest) = t.strip_prefix(&prefix) else { continue };
            let mut args: Vec<Value> =
                serde_json::from_str(rest).map_err(|e| DdpError::Protocol(e.to_string()))?;
            let v = if args.is_empty() { Value::Null } else { args.remove(0) };
            if let Some(e) = v.get("error") {
                let error = e["code"].as_str().unwrap_or("error").to_owned();
                let reason = e["message"].as_str().unwrap_or_default().to_owned();
                return Err(DdpError::Method { error, reason });
            }
            return Ok(v);
        }
    }

    /// Stays connected, answering the server's pings, until the connection
    /// ends (the idle scenario keeps sockets this way).
    pub(crate) async fn keep(mut self) {
        while let Some(Ok(m)) = self.ws.next().await {
            match m {
                Message::Text(t) if t.as_str() == "2" && self.send("3".into()).await.is_err() => return,
                Message::Close(_) => return,
                _ => {}
            }
        }
    }

    /// A WebSocket close frame, then the server's answer (bounded).
    pub(crate) async fn close(mut self) {
        let timeout = self.timeout;
        let _ = tokio::time::timeout(timeout, async {
            self.ws.close(None).await.ok()?;
            while let Some(Ok(_)) = self.ws.next().await {}
            Some(())
        })
        .await;
    }
}

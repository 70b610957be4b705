//! The Socket.IO door: Engine.IO v4 / Socket.IO v5 on `/socket.io/`, served
//! by socketioxide, onto the same rooms as DDP.
//!
//! Each socket of the `/` namespace gets a [`Session`](crate::session::Session)
//! like a DDP connection's, so its events run as the same method calls, with
//! the same rules, permissions, rate limits, join-code brakes and durability
//! (an event is acknowledged only once its change is committed):
//!
//! - [`connect`]: the `auth.token` sign-in (the DDP `login` itself), the
//!   connection limit, and the socket's end (its guest seats start their
//!   grace period).
//! - [`events`]: client events and their acknowledgements, each a thin
//!   adapter onto one method.
//! - [`emit`]: the rooms' meeting events, emitted to the sockets that joined.
//!
//! `protocol/socketio.md` is the wire contract.

mod connect;
mod emit;
mod events;

pub use emit::SERVER_EVENTS;
pub use events::CLIENT_EVENTS;

use crate::conn::{Tap, Wire};
use crate::server::ServerState;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, header};
use dashmap::DashMap;
use socketioxide::handler::ConnectHandler;
use socketioxide::layer::SocketIoLayer;
use socketioxide::{ParserConfig, SocketIo};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::Semaphore;

/// What the door needs besides the shared state.
#[derive(Clone)]
pub struct DoorConfig {
    /// One permit per open connection of any door (`--max-connections`).
    pub permits: Arc<Semaphore>,
    /// Woken when a socket is refused for want of a slot: kept-alive HTTP
    /// connections give theirs back (`server::HttpContext::reclaim`).
    pub reclaim: Arc<tokio::sync::Notify>,
    /// The largest packet a client may send, over WebSocket or as one
    /// polling request body: the DDP frame limit (`--max-frame-bytes`).
    pub max_payload: usize,
    /// The live sockets' taps, shared with the router's `/socket.io/` guard.
    pub taps: Taps,
}

/// What every socket's handlers share (socketioxide's state).
#[derive(Clone)]
struct Door {
    state: Arc<ServerState>,
    permits: Arc<Semaphore>,
    reclaim: Arc<tokio::sync::Notify>,
    taps: Taps,
    /// `--write-stall-timeout`.
    stall: Duration,
}

/// The live sockets' [`Tap`]s by Engine.IO session id: what a later request
/// of the same session (a poll, the upgrade to WebSocket) needs to find.
/// Sharded; touched once per such request, never per packet.
#[derive(Clone, Default)]
pub struct Taps(Arc<DashMap<String, Weak<Tap>>>);

impl Taps {
    fn insert(&self, sid: &str, tap: &Arc<Tap>) {
        self.0.insert(sid.to_owned(), Arc::downgrade(tap));
    }

    fn remove(&self, sid: &str) {
        self.0.remove(sid);
    }

    /// Before a `/socket.io/` request is served: the upgrade of a polling
    /// session to WebSocket makes this request's socket the one the
    /// session's bytes are counted and cut on. Returns the tap of a poll
    /// (`GET` on the polling transport), for [`Taps::polled`].
    pub(crate) fn before(&self, method: &Method, uri: &Uri, wire: Option<&Arc<Wire>>) -> Option<Arc<Tap>> {
        let (mut sid, mut websocket) = (None, false);
        for pair in uri.query().unwrap_or_default().split('&') {
            match pair.split_once('=') {
                Some(("sid", v)) => sid = Some(v),
                Some(("transport", v)) => websocket = v == "websocket",
                _ => {}
            }
        }
        let tap = self.0.get(sid?)?.upgrade()?;
        if websocket {
            if let Some(wire) = wire {
                wire.attach(&tap);
            }
            return None;
        }
        (*method == Method::GET).then_some(tap)
    }

    /// A poll was answered: what the session had unsent left with it (the
    /// engine answers a poll with every packet it holds).
    pub(crate) fn polled(tap: &Tap) {
        tap.backlog.written(usize::MAX);
    }
}

/// The headers of a request that opens an Engine.IO session that anything
/// reads once roomd's guards have passed it: engineioxide reads
/// `Sec-WebSocket-Key` to answer the upgrade. The head it keeps for the
/// session is read later only for its extensions (roomd's `Peer` and
/// `Wire`); neither engineioxide, socketioxide nor roomd's handlers read
/// its headers, so a browser's cookies and user agent (~1 KB) would be
/// kept per socket for nothing.
const KEPT_HEADERS: [HeaderName; 1] = [header::SEC_WEBSOCKET_KEY];

/// A `/socket.io/` request that opens an Engine.IO session (no `sid`),
/// with its URI and the headers in [`KEPT_HEADERS`] copied into
/// allocations of their own, the other headers dropped.
///
/// engineioxide keeps the head of that request (`http::request::Parts`) for
/// the whole life of the session (`SocketRef::req_parts`). hyper parses the
/// URI and every header value as a slice of the connection's read buffer
/// (8 KiB at first), so the kept head kept that whole buffer alive: about
/// 8 KiB per idle socket for a few hundred bytes of head. Copying costs a
/// few small allocations once per session; every other request is passed
/// on as it is.
pub(crate) fn own_head<B>(req: Request<B>) -> Request<B> {
    let opens = !req.uri().query().unwrap_or_default().split('&').any(|p| p.starts_with("sid="));
    if !opens {
        return req;
    }
    let (mut parts, body) = req.into_parts();
    if let Ok(uri) = parts.uri.to_string().parse::<Uri>() {
        parts.uri = uri;
    }
    // Sized to what is kept: a map's spare slots are ~100 B each.
    let kept = KEPT_HEADERS.iter().map(|n| parts.headers.get_all(n).iter().count()).sum();
    let mut headers = HeaderMap::with_capacity(kept);
    for name in KEPT_HEADERS {
        for value in parts.headers.get_all(&name) {
            // Cannot fail: the bytes were a header value already. Should
            // it, the shared value is kept (correct, only larger).
            let value = HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
            headers.append(name.clone(), value);
        }
    }
    parts.headers = headers;
    Request::from_parts(parts, body)
}

/// The tower layer to put on the router (it answers `/socket.io/` and
/// passes every other request on) and the handle that closes every socket
/// at shutdown ([`SocketIo::close`]).
pub fn layer(state: Arc<ServerState>, cfg: DoorConfig) -> (SocketIoLayer, SocketIo) {
    let conn = &state.conn_config;
    let stall = conn.write_stall_timeout;
    let (layer, io) = SocketIo::builder()
        // The default (100 kB) is below what a DDP client may send.
        .max_payload(cfg.max_payload as u64)
        .ws_max_message_size(cfg.max_payload)
        .ws_max_frame_size(cfg.max_payload)
        // The default 4 KiB per socket is mostly idle; frames are small.
        .ws_read_buffer_size(512)
        // Bounded per socket, like a DDP connection's outbound queue; a
        // room that finds it full cuts the socket as a slow consumer. The
        // bytes are bounded too (`emit`).
        .max_buffer_size(conn.outbound_queue)
        // No event takes binary data: a packet announcing attachments is
        // refused (the socket closed) before any attachment is buffered.
        .with_parser(ParserConfig::common().max_incoming_binaries(0).max_incoming_binary_buf_size(0))
        // The DDP heartbeat and connect deadlines.
        .ping_interval(conn.ping_interval)
        .ping_timeout(conn.ping_timeout)
        .connect_timeout(conn.connect_timeout)
        .with_state(Door { state, permits: cfg.permits, reclaim: cfg.reclaim, taps: cfg.taps, stall })
        .build_layer();
    io.ns("/", connect::on_connect.with(connect::sign_in));
    (layer, io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    /// Whether `s` points into `buf`'s allocation.
    fn inside(buf: &Bytes, s: &[u8]) -> bool {
        let (start, p) = (buf.as_ptr() as usize, s.as_ptr() as usize);
        p >= start && p < start + buf.len()
    }

    /// A head as hyper hands it over: the URI and the header values are
    /// slices of one read buffer.
    fn shared_head(path: &str) -> (Bytes, Request<()>) {
        let buf = Bytes::from(format!("{path}websocketdGhlIHNhbXBsZSBub25jZQ=="));
        let uri = Uri::from_maybe_shared(buf.slice(..path.len())).unwrap();
        let mut req = Request::builder().uri(uri).body(()).unwrap();
        let h = req.headers_mut();
        h.insert("upgrade", HeaderValue::from_maybe_shared(buf.slice(path.len()..path.len() + 9)).unwrap());
        h.insert("sec-websocket-key", HeaderValue::from_maybe_shared(buf.slice(path.len() + 9..)).unwrap());
        (buf, req)
    }

    #[test]
    fn a_request_that_opens_a_session_keeps_no_slice_of_the_read_buffer() {
        let (buf, req) = shared_head("/socket.io/?EIO=4&transport=websocket");
        assert!(req.headers().values().all(|v| inside(&buf, v.as_bytes())), "the setup shares the buffer");
        let req = own_head(req);
        assert_eq!(req.uri(), "/socket.io/?EIO=4&transport=websocket");
        assert_eq!(req.headers()["sec-websocket-key"], "dGhlIHNhbXBsZSBub25jZQ==");
        for v in req.headers().values() {
            assert!(!inside(&buf, v.as_bytes()), "{v:?} still points into the read buffer");
        }
        assert!(!inside(&buf, req.uri().path().as_bytes()));
        assert!(!inside(&buf, req.uri().query().unwrap_or_default().as_bytes()));
    }

    /// Of a browser's head, the session keeps the WebSocket key the engine
    /// answers the upgrade with, not its cookies or user agent.
    #[test]
    fn a_request_that_opens_a_session_keeps_only_the_headers_read_later() {
        let cookie = format!("session={}", "c".repeat(1000));
        let agent = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36";
        let req = Request::builder()
            .uri("/socket.io/?EIO=4&transport=websocket")
            .header("host", "127.0.0.1:3000")
            .header("cookie", &cookie)
            .header("user-agent", agent)
            .header("accept-language", "en-US,en;q=0.9")
            .header("upgrade", "websocket")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .body(())
            .unwrap();
        let before: usize = req.headers().iter().map(|(n, v)| n.as_str().len() + v.len()).sum();
        let req = own_head(req);
        let kept: Vec<_> = req.headers().keys().map(|n| n.as_str()).collect();
        assert_eq!(kept, ["sec-websocket-key"]);
        assert_eq!(req.headers()["sec-websocket-key"], "dGhlIHNhbXBsZSBub25jZQ==");
        let after: usize = req.headers().iter().map(|(n, v)| n.as_str().len() + v.len()).sum();
        // The header bytes the session no longer holds (values the copy
        // allocated one by one, names of the map's entries).
        assert!(before - after > 1100, "{before} -> {after}");
    }

    #[test]
    fn a_request_of_a_running_session_is_passed_on_as_it_is() {
        let (buf, req) = shared_head("/socket.io/?EIO=4&transport=polling&sid=abc");
        let req = own_head(req);
        assert!(req.headers().values().all(|v| inside(&buf, v.as_bytes())));
        assert!(inside(&buf, req.uri().path().as_bytes()));
    }
}

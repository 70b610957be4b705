//! HTTP on the DDP port: health, readiness and metrics endpoints, 404s,
//! the WebSocket upgrade done by hand (bytes sent before the `101` are not
//! lost) and the `Origin` policy.

use crate::support::*;
use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// A parsed HTTP response.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    /// The header block, as received.
    pub headers: String,
    pub body: String,
}

/// Sends `request` as is and reads until the server closes (it does after
/// an error, or when the request says `Connection: close`).
pub(crate) async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.expect("tcp connect");
    s.write_all(request).await.expect("write request");
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .expect("response timed out")
        .expect("read response");
    String::from_utf8_lossy(&out).into_owned()
}

impl Reply {
    /// The value of header `name`, which is matched case-insensitively (as
    /// HTTP header names are).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

pub(crate) fn parse(text: &str) -> Reply {
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    Reply { status, headers: head.to_owned(), body: body.to_owned() }
}

/// `GET path` with `Connection: close`.
pub(crate) async fn get(addr: SocketAddr, path: &str) -> Reply {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    parse(&raw(addr, req.as_bytes()).await)
}

/// The value of sample `line_prefix` (e.g. `roomd_rooms` or
/// `roomd_connections{kind="user"}`) in a Prometheus text body.
pub(crate) fn sample(body: &str, line_prefix: &str) -> Option<f64> {
    body.lines().find_map(|l| l.strip_prefix(line_prefix)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Polls `/metrics` until `sample` has `value` (the server updates some
/// numbers as connections wind down).
pub(crate) async fn wait_for_sample(addr: SocketAddr, line_prefix: &str, value: f64) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let body = get(addr, "/metrics").await.body;
        if sample(&body, line_prefix) == Some(value) {
            return body;
        }
        assert!(tokio::time::Instant::now() < deadline, "{line_prefix} never reached {value}:\n{body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn health_readiness_and_metrics_share_the_ddp_port() {
    let s = TestServer::start().await;
    let mut c = s.guest().await;

    let h = get(s.addr, "/healthz").await;
    assert_eq!((h.status, h.body.as_str()), (200, "ok\n"), "{h:?}");
    let r = get(s.addr, "/readyz").await;
    assert_eq!((r.status, r.body.as_str()), (200, "ready\n"), "{r:?}");
    let m = get(s.addr, "/metrics").await;
    assert_eq!(m.status, 200);
    assert_eq!(m.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"), "{}", m.headers);
    assert!(m.body.contains("# TYPE roomd_connections gauge"), "{}", m.body);

    // HEAD has the headers and no body; other methods are refused.
    let head =
        parse(&raw(s.addr, b"HEAD /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await);
    assert_eq!((head.status, head.body.as_str()), (200, ""));
    assert_eq!(head.header("content-length"), Some("3"), "{}", head.headers);
    let post = parse(
        &raw(
            s.addr,
            b"POST /metrics HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .await,
    );
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"), "{}", post.headers);

    // The DDP connection opened before is unaffected.
    c.assert_alive().await;
}

#[tokio::test]
async fn readyz_follows_the_ready_flag() {
    let s = TestServer::start().await;
    s.state.set_ready(false);
    let r = get(s.addr, "/readyz").await;
    assert_eq!((r.status, r.body.as_str()), (503, "not ready\n"));
    // Liveness is independent of readiness.
    assert_eq!(get(s.addr, "/healthz").await.status, 200);
    s.state.set_ready(true);
    assert_eq!(get(s.addr, "/readyz").await.status, 200);
}

#[tokio::test]
async fn unknown_paths_and_bad_heads_get_http_errors() {
    let s = TestServer::start().await;
    let r = get(s.addr, "/nope").await;
    assert_eq!(r.status, 404);
    assert!(r.body.contains("/websocket"), "{r:?}");
    // `/websocket` without the upgrade headers.
    assert_eq!(get(s.addr, "/websocket").await.status, 400);
    // A WebSocket version other than 13.
    let old = b"GET /websocket HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade, close\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n";
    let r = parse(&raw(s.addr, old).await);
    assert_eq!(r.status, 426);
    assert_eq!(r.header("sec-websocket-version"), Some("13"), "{}", r.headers);
    // Garbage and oversized heads.
    assert_eq!(parse(&raw(s.addr, b"\x16\x03\x01 not http\r\n\r\n").await).status, 400);
    let big = format!("GET /healthz HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(9000));
    assert_eq!(parse(&raw(s.addr, big.as_bytes()).await).status, 431);
    let many: String = (0..40).map(|i| format!("X-{i}: y\r\n")).collect();
    let many = format!("GET /healthz HTTP/1.1\r\nHost: localhost\r\n{many}\r\n");
    assert_eq!(parse(&raw(s.addr, many.as_bytes()).await).status, 431);
    // The REST endpoints' place has none yet.
    assert_eq!(get(s.addr, "/api/v1/info").await.status, 404);
    let body = get(s.addr, "/metrics").await.body;
    assert_eq!(sample(&body, "roomd_handshake_failures_total{reason=\"not-found\"}"), Some(2.0));
    assert_eq!(sample(&body, "roomd_handshake_failures_total{reason=\"too-large\"}"), Some(2.0));
    assert_eq!(sample(&body, "roomd_handshake_failures_total{reason=\"bad-request\"}"), Some(3.0));
}

/// A masked client text frame (payload < 126 bytes).
fn client_text_frame(payload: &str) -> Vec<u8> {
    let p = payload.as_bytes();
    assert!(p.len() < 126);
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let mut f = vec![0x81, 0x80 | p.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(p.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

#[tokio::test]
async fn frames_sent_before_the_101_are_not_lost() {
    let s = TestServer::start().await;
    let mut sock = TcpStream::connect(s.addr).await.unwrap();
    let mut bytes = format!(
        "GET /websocket HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        s.addr
    )
    .into_bytes();
    bytes.extend(client_text_frame(r#"{"msg":"connect","version":"1","support":["1"]}"#));
    sock.write_all(&bytes).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let text = loop {
        let n = tokio::time::timeout(WAIT, sock.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if text.contains("\"connected\"") {
            break text;
        }
    };
    assert!(text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"), "{text}");
    let head = parse(&text);
    assert_eq!(head.header("sec-websocket-accept"), Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{text}");
}

async fn open_with_origin(s: &TestServer, origin: Option<&str>) -> Result<(), u16> {
    let mut req = s.url().into_client_request().unwrap();
    if let Some(o) = origin {
        req.headers_mut().insert("Origin", HeaderValue::from_str(o).unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok(_) => Ok(()),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("unexpected handshake error: {e}"),
    }
}

#[tokio::test]
async fn websocket_origin_policy() {
    let s = TestServer::with_limits(|l| l.allowed_origins = vec!["https://app.example".into()]).await;
    // Non-browser clients send no Origin.
    assert_eq!(open_with_origin(&s, None).await, Ok(()));
    // Same origin: the origin's host is the Host header.
    let same = format!("http://{}", s.addr);
    assert_eq!(open_with_origin(&s, Some(&same)).await, Ok(()));
    assert_eq!(open_with_origin(&s, Some("https://app.example")).await, Ok(()));
    // Cross-site WebSocket hijacking attempts.
    assert_eq!(open_with_origin(&s, Some("https://evil.example")).await, Err(403));
    assert_eq!(open_with_origin(&s, Some("https://app.example.evil")).await, Err(403));
    assert_eq!(open_with_origin(&s, Some("null")).await, Err(403));

    let d = TestServer::start().await;
    assert_eq!(open_with_origin(&d, Some("https://app.example")).await, Err(403));
    assert_eq!(open_with_origin(&d, Some(&format!("http://{}", d.addr))).await, Ok(()));
}

#[tokio::test]
async fn metrics_count_connections_methods_joins_and_messages() {
    let s = TestServer::start().await;
    let mut alice = s.user("alice").await;
    let mut guest = s.guest().await;
    let rid = channel(&mut alice, json!({})).await["_id"].as_str().unwrap().to_owned();
    alice.ok("sendMessage", json!([{"rid": rid, "msg": "hello"}])).await;
    alice.err("no-such-method-xyzzy", json!([])).await;
    guest.join_code("zzz-zzz-zzz", Some("Gus")).await;
    let mut bob = s.user("bob").await;
    bob.ok("joinRoom", json!([rid])).await;
    bob.ok("leaveRoom", json!([rid])).await;

    let body = get(s.addr, "/metrics").await.body;
    for (line, value) in [
        ("roomd_connections{kind=\"user\"}", 2.0),
        ("roomd_connections{kind=\"guest\"}", 1.0),
        ("roomd_connections_total", 3.0),
        ("roomd_rooms", 1.0),
        ("roomd_messages_sent_total", 1.0),
        ("roomd_room_joins_total", 1.0),
        ("roomd_room_leaves_total", 1.0),
        ("roomd_room_join_rejections_total{reason=\"error-room-not-found\"}", 1.0),
        ("roomd_method_calls_total{method=\"sendMessage\",outcome=\"ok\"}", 1.0),
        ("roomd_method_calls_total{method=\"unknown\",outcome=\"error\"}", 1.0),
        ("roomd_method_calls_total{method=\"login\",outcome=\"ok\"}", 2.0),
        ("roomd_method_duration_seconds_count{method=\"sendMessage\"}", 1.0),
    ] {
        assert_eq!(sample(&body, line), Some(value), "{line} in:\n{body}");
    }
    // Client-chosen method names never become labels.
    assert!(!body.contains("xyzzy"), "{body}");
    assert!(body.contains("roomd_method_duration_seconds_bucket{method=\"sendMessage\",le="), "{body}");

    // Closing moves the gauges and counts the close reason.
    alice.close().await;
    wait_for_sample(s.addr, "roomd_connections{kind=\"user\"}", 1.0).await;
    let body = wait_for_sample(s.addr, "roomd_connections_closed_total{reason=\"peer_closed\"}", 1.0).await;
    assert_eq!(sample(&body, "roomd_connections{kind=\"guest\"}"), Some(1.0), "{body}");
    // Logging out turns a user connection into a guest one.
    bob.call("logout", json!([])).await;
    let body = get(s.addr, "/metrics").await.body;
    assert_eq!(sample(&body, "roomd_connections{kind=\"user\"}"), Some(0.0), "{body}");
    assert_eq!(sample(&body, "roomd_connections{kind=\"guest\"}"), Some(2.0), "{body}");
}

#[tokio::test]
async fn websocket_path_accepts_a_trailing_slash_and_a_query_string() {
    let s = TestServer::start().await;
    for path in ["/websocket/", "/websocket?x=1", "/websocket/?x=1&y=%2F"] {
        let mut c = Client::open(&format!("ws://{}{path}", s.addr)).await;
        c.connect().await;
        c.assert_alive().await;
    }
    // Only that one alias: other paths stay 404.
    for path in ["/websocket//", "/websocketx", "/sockjs/websocket", "/healthz/"] {
        assert_eq!(get(s.addr, path).await.status, 404, "{path}");
    }
}

/// A raw WebSocket upgrade for `/websocket` with `extra` header lines.
async fn upgrade_with(addr: SocketAddr, extra: &str) -> Reply {
    let req = format!(
        "GET /websocket HTTP/1.1\r\n{extra}Upgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    let mut s = TcpStream::connect(addr).await.expect("tcp connect");
    s.write_all(req.as_bytes()).await.expect("write request");
    // A 101 keeps the socket open: read only until the head ends.
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    let read = async {
        loop {
            let n = s.read(&mut buf).await.expect("read response");
            out.extend_from_slice(&buf[..n]);
            if n == 0 || out.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    };
    tokio::time::timeout(WAIT, read).await.expect("response timed out");
    if !out.starts_with(b"HTTP/1.1 101") {
        let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut out)).await;
    }
    parse(&String::from_utf8_lossy(&out))
}

#[tokio::test]
async fn two_origin_or_host_headers_are_refused() {
    let s = TestServer::with_limits(|l| l.allowed_origins = vec!["https://app.example".into()]).await;
    let host = format!("Host: {}\r\n", s.addr);
    let r = upgrade_with(s.addr, &format!("{host}Origin: https://app.example\r\n")).await;
    assert_eq!(r.status, 101, "{r:?}");
    let r = upgrade_with(
        s.addr,
        &format!("{host}Origin: https://app.example\r\nOrigin: https://evil.example\r\n"),
    )
    .await;
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("more than one Origin header"), "{r:?}");
    let r = upgrade_with(s.addr, &format!("{host}Host: evil.example\r\n")).await;
    assert_eq!(r.status, 400, "{r:?}");
}

/// Origins compare by scheme, host and port, default ports made explicit.
#[tokio::test]
async fn origin_check_compares_scheme_host_and_port() {
    let s = TestServer::with_limits(|l| l.allowed_origins = vec!["https://app.example".into()]).await;
    assert_eq!(open_with_origin(&s, Some("https://app.example:443")).await, Ok(()));
    assert_eq!(open_with_origin(&s, Some("HTTPS://APP.example")).await, Ok(()));
    assert_eq!(open_with_origin(&s, Some("http://app.example")).await, Err(403));
    assert_eq!(open_with_origin(&s, Some("https://app.example:8443")).await, Err(403));
    // Same origin: Host's port, or the scheme's default port when absent.
    let port = s.addr.port();
    assert_eq!(open_with_origin(&s, Some(&format!("http://127.0.0.1:{port}/"))).await, Ok(()));
    assert_eq!(open_with_origin(&s, Some(&format!("ws://127.0.0.1:{port}"))).await, Err(403));
    assert_eq!(open_with_origin(&s, Some(&format!("http://127.0.0.1:{}", port ^ 1))).await, Err(403));
    let r = upgrade_with(s.addr, "Host: localhost\r\nOrigin: https://localhost:443\r\n").await;
    assert_eq!(r.status, 101, "{r:?}");
}

/// DNS rebinding: on a loopback listener, a `Host` that is not a loopback
/// name (or a `--public-url` host) is refused with 421, on every path.
#[tokio::test]
async fn foreign_host_on_a_loopback_listener_is_refused() {
    let s = TestServer::start().await;
    let port = s.addr.port();
    for host in
        [format!("localhost:{port}"), format!("127.0.0.1:{port}"), "[::1]".to_owned(), "127.0.0.2".into()]
    {
        let r = upgrade_with(s.addr, &format!("Host: {host}\r\n")).await;
        assert_eq!(r.status, 101, "{host}: {r:?}");
    }
    let r = upgrade_with(
        s.addr,
        &format!("Host: rebind.evil.example:{port}\r\nOrigin: http://rebind.evil.example:{port}\r\n"),
    )
    .await;
    assert_eq!(r.status, 421, "{r:?}");
    assert!(r.body.contains("host not allowed"), "{r:?}");
    let reply = raw(
        s.addr,
        format!("GET /metrics HTTP/1.1\r\nHost: rebind.evil.example:{port}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 421 Misdirected Request"), "{reply}");
    let body = get(s.addr, "/metrics").await.body;
    assert_eq!(sample(&body, "roomd_handshake_failures_total{reason=\"host\"}"), Some(2.0), "{body}");
}

/// `--public-url` names the host roomd is served under: accepted as `Host`
/// and its origin as same-origin.
#[tokio::test]
async fn public_url_host_and_origin_are_accepted() {
    let s = TestServer::with_limits(|l| l.public_urls = vec!["https://chat.example".into()]).await;
    let r = upgrade_with(s.addr, "Host: chat.example\r\nOrigin: https://chat.example\r\n").await;
    assert_eq!(r.status, 101, "{r:?}");
    // Behind a proxy that keeps Host but not the port.
    let r = upgrade_with(s.addr, "Host: 127.0.0.1\r\nOrigin: https://chat.example\r\n").await;
    assert_eq!(r.status, 101, "{r:?}");
    let r = upgrade_with(s.addr, "Host: chat.example:8443\r\n").await;
    assert_eq!(r.status, 421, "{r:?}");
    let r = upgrade_with(s.addr, "Host: 127.0.0.1\r\nOrigin: http://chat.example\r\n").await;
    assert_eq!(r.status, 403, "{r:?}");
}

/// The DDP endpoint is answered without the router (`routes::ddp_door`):
/// every spelling of its path still gets the `Host`, duplicate-header and
/// `Origin` checks, and a refusal there is kept alive like any answer.
#[tokio::test]
async fn the_ddp_door_keeps_the_routers_checks_on_every_spelling() {
    let s = TestServer::with_limits(|l| l.allowed_origins = vec!["https://app.example".into()]).await;
    let port = s.addr.port();
    let upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
    for path in ["/websocket", "/websocket/", "/websocket?x=1", "/websocket/?y=%2F"] {
        let ask = |headers: String| async move {
            let req = format!("GET {path} HTTP/1.1\r\n{headers}{upgrade}\r\n");
            let mut out = Vec::new();
            let mut c = TcpStream::connect(s.addr).await.expect("tcp connect");
            c.write_all(req.as_bytes()).await.expect("write request");
            let mut buf = [0u8; 1024];
            let read = async {
                while !out.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = c.read(&mut buf).await.expect("read response");
                    assert!(n > 0, "closed before the answer");
                    out.extend_from_slice(&buf[..n]);
                }
            };
            tokio::time::timeout(WAIT, read).await.expect("response timed out");
            parse(&String::from_utf8_lossy(&out))
        };
        let r = ask(format!("Host: rebind.evil.example:{port}\r\n")).await;
        assert_eq!(r.status, 421, "{path}: {r:?}");
        let r = ask(format!("Host: {}\r\nHost: evil.example\r\n", s.addr)).await;
        assert_eq!(r.status, 400, "{path}: {r:?}");
        let r = ask(format!("Host: {}\r\nOrigin: https://evil.example\r\n", s.addr)).await;
        assert_eq!(r.status, 403, "{path}: {r:?}");
        let r = ask(format!("Host: {}\r\nOrigin: https://app.example\r\n", s.addr)).await;
        assert_eq!(r.status, 101, "{path}: {r:?}");
    }
    // A refusal on a kept-alive connection leaves it open for the next
    // request, as the router's answers do.
    let host = s.addr;
    let reply = raw(
        s.addr,
        format!(
            "GET /websocket HTTP/1.1\r\nHost: {host}\r\n\r\nGET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 400 Bad Request"), "{reply}");
    assert!(reply.contains("expected a WebSocket upgrade"), "{reply}");
    assert!(reply.contains("HTTP/1.1 200 OK") && reply.ends_with("ok\n"), "{reply}");
}

//! HTTP/1.1 keep-alive on the REST paths over real sockets: several
//! answers on one connection, the idle timeout, the per-connection request
//! cap, the client's `Connection: close`, HTTP/1.0, the connection limit
//! and shutdown.

use crate::support::*;
use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// One answer read off a kept connection: status, header block, body.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: String,
    body: String,
}

impl Answer {
    fn says_close(&self) -> bool {
        self.headers.lines().any(|l| {
            l.split_once(':').is_some_and(|(n, v)| {
                n.trim().eq_ignore_ascii_case("connection") && v.trim().eq_ignore_ascii_case("close")
            })
        })
    }
}

/// A raw HTTP/1.x client on one TCP connection.
struct Conn {
    r: BufReader<TcpStream>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Conn {
        let s =
            tokio::time::timeout(WAIT, TcpStream::connect(addr)).await.expect("connect timed out").unwrap();
        Conn { r: BufReader::new(s) }
    }

    /// Sends `req` as is and reads exactly one answer (by its
    /// `Content-Length`), leaving the connection as the server left it.
    async fn ask(&mut self, req: &str) -> Answer {
        self.r.get_mut().write_all(req.as_bytes()).await.expect("write request");
        tokio::time::timeout(WAIT, self.read_answer()).await.expect("answer timed out")
    }

    async fn read_answer(&mut self) -> Answer {
        let mut headers = String::new();
        loop {
            let mut line = String::new();
            let n = self.r.read_line(&mut line).await.expect("read head");
            assert!(n > 0, "connection closed before an answer; got {headers:?}");
            if line == "\r\n" {
                break;
            }
            headers.push_str(&line);
        }
        let status = headers.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status line");
        let len: usize = headers
            .lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.trim().eq_ignore_ascii_case("content-length").then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        let mut body = vec![0; len];
        self.r.read_exact(&mut body).await.expect("read body");
        Answer { status, headers, body: String::from_utf8_lossy(&body).into_owned() }
    }

    /// Whether the server closes the connection within `within` (EOF or
    /// reset), with nothing more sent.
    async fn closed_within(&mut self, within: Duration) -> bool {
        let mut buf = [0u8; 64];
        match tokio::time::timeout(within, self.r.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => true,
            Ok(Ok(n)) => {
                panic!("unexpected bytes after the answer: {:?}", String::from_utf8_lossy(&buf[..n]))
            }
            Err(_) => false,
        }
    }
}

fn get(addr: SocketAddr, path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n")
}

fn post_message(addr: SocketAddr, token: &str, rid: &str, text: &str) -> String {
    let body = json!({"roomId": rid, "text": text}).to_string();
    format!(
        "POST /api/v1/chat.postMessage HTTP/1.1\r\nHost: {addr}\r\nX-Auth-Token: {token}\r\nX-User-Id: id-ann\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn create_channel(addr: SocketAddr, token: &str, name: &str) -> String {
    let body = json!({"name": name}).to_string();
    format!(
        "POST /api/v1/channels.create HTTP/1.1\r\nHost: {addr}\r\nX-Auth-Token: {token}\r\nX-User-Id: id-ann\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn rest_requests_share_one_connection() {
    let s = TestServer::start().await;
    let token = s.token("id-ann", "ann", &["user"]);
    let mut c = Conn::open(s.addr).await;
    let created = c.ask(&create_channel(s.addr, &token, &unique("ka"))).await;
    assert_eq!(created.status, 200, "{created:?}");
    assert!(!created.says_close(), "{created:?}");
    let v: serde_json::Value = serde_json::from_str(&created.body).unwrap();
    let rid = v["channel"]["_id"].as_str().expect("channel id").to_owned();
    for i in 0..5 {
        let a = c.ask(&post_message(s.addr, &token, &rid, &format!("m{i}"))).await;
        assert_eq!(a.status, 200, "{a:?}");
        assert!(!a.says_close(), "answer {i} closes: {a:?}");
    }
    let probe = c.ask(&get(s.addr, "/healthz")).await;
    assert_eq!(probe.status, 200);
    assert!(!c.closed_within(Duration::from_millis(200)).await, "kept-alive connection closed early");
}

#[tokio::test]
async fn idle_kept_connection_closes_after_the_idle_timeout() {
    let s = TestServer::with_limits(|l| l.http_keepalive_idle = Duration::from_millis(400)).await;
    let mut c = Conn::open(s.addr).await;
    let a = c.ask(&get(s.addr, "/healthz")).await;
    assert!(!a.says_close(), "{a:?}");
    // Still open before the timeout, and usable: a request restarts it.
    assert!(!c.closed_within(Duration::from_millis(200)).await, "closed before the idle timeout");
    assert_eq!(c.ask(&get(s.addr, "/healthz")).await.status, 200);
    assert!(
        !c.closed_within(Duration::from_millis(200)).await,
        "the second request did not restart the timer"
    );
    assert!(c.closed_within(Duration::from_secs(3)).await, "idle connection not closed");
}

#[tokio::test]
async fn last_answer_under_the_request_cap_says_close() {
    let s = TestServer::with_limits(|l| l.http_max_requests_per_conn = 3).await;
    let mut c = Conn::open(s.addr).await;
    for i in 1..=2 {
        let a = c.ask(&get(s.addr, "/healthz")).await;
        assert!(!a.says_close(), "answer {i} closes: {a:?}");
    }
    let last = c.ask(&get(s.addr, "/healthz")).await;
    assert_eq!(last.status, 200);
    assert!(last.says_close(), "third answer does not say close: {last:?}");
    assert!(c.closed_within(WAIT).await, "not closed after the cap");
}

#[tokio::test]
async fn client_connection_close_and_http10_are_honoured() {
    let s = TestServer::start().await;
    let mut c = Conn::open(s.addr).await;
    assert!(!c.ask(&get(s.addr, "/healthz")).await.says_close());
    let close = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", s.addr);
    let a = c.ask(&close).await;
    assert!(a.says_close(), "{a:?}");
    assert!(c.closed_within(WAIT).await, "client's Connection: close not honoured");

    // HTTP/1.0 keeps the connection only when it asks to.
    let mut c = Conn::open(s.addr).await;
    let ka10 = format!("GET /healthz HTTP/1.0\r\nHost: {}\r\nConnection: keep-alive\r\n\r\n", s.addr);
    let a = c.ask(&ka10).await;
    assert_eq!(a.status, 200);
    assert!(!c.closed_within(Duration::from_millis(200)).await, "HTTP/1.0 keep-alive not honoured: {a:?}");
    let plain10 = format!("GET /healthz HTTP/1.0\r\nHost: {}\r\n\r\n", s.addr);
    assert_eq!(c.ask(&plain10).await.status, 200);
    assert!(c.closed_within(WAIT).await, "HTTP/1.0 without keep-alive not closed");
}

/// A kept connection holds a `--max-connections` slot: at the limit the
/// next client's answer closes, and a refused DDP client makes the idle
/// kept connection give its slot back.
#[tokio::test]
async fn kept_connections_hold_a_slot_and_yield_it_to_realtime_clients() {
    let s = TestServer::with_limits(|l| l.max_connections = 1).await;
    let mut kept = Conn::open(s.addr).await;
    assert!(!kept.ask(&get(s.addr, "/healthz")).await.says_close());
    let mut other = Conn::open(s.addr).await;
    let a = other.ask(&get(s.addr, "/healthz")).await;
    assert_eq!(a.status, 200, "REST still answered at the limit");
    assert!(a.says_close(), "a second kept connection past the limit: {a:?}");
    // The DDP client is refused (1013) and the kept connection closes.
    let mut refused = Client::open(&s.url()).await;
    assert!(refused.try_connect().await.is_none(), "DDP client admitted past the limit");
    assert!(kept.closed_within(WAIT).await, "kept connection kept its slot from a DDP client");
    // Now the slot is free again (given back just after the close).
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut c = Client::open(&s.url()).await;
        if c.try_connect().await.is_some() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "slot never given back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A kept connection that then upgrades to DDP gives its keep-alive slot
/// back before its DDP connection takes one (the socket's one task does
/// both, in that order): at `--max-connections 1` it is admitted, not
/// refused with 1013 by its own slot.
#[tokio::test]
async fn a_kept_connection_upgrades_to_ddp_at_the_limit() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let s = TestServer::with_limits(|l| l.max_connections = 1).await;
    let mut kept = Conn::open(s.addr).await;
    assert!(!kept.ask(&get(s.addr, "/healthz")).await.says_close(), "first answer kept open");
    let (mut ws, res) =
        tokio::time::timeout(WAIT, tokio_tungstenite::client_async(s.url(), kept.r.into_inner()))
            .await
            .expect("upgrade timed out")
            .expect("upgrade on the kept connection");
    assert_eq!(res.status(), 101);
    let hello = json!({"msg": "connect", "version": "1", "support": ["1"]});
    ws.send(Message::Text(hello.to_string().into())).await.expect("send connect");
    let connected = tokio::time::timeout(WAIT, async {
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Text(t) = m {
                return t.contains(r#""msg":"connected""#);
            }
        }
        false
    })
    .await
    .expect("no answer to connect");
    assert!(connected, "the upgraded kept connection was not served");
}

#[tokio::test]
async fn shutdown_closes_idle_kept_connections() {
    let s = TestServer::start().await;
    let mut c = Conn::open(s.addr).await;
    assert!(!c.ask(&get(s.addr, "/healthz")).await.says_close());
    let stopped = tokio::spawn(s.stop());
    assert!(c.closed_within(WAIT).await, "idle kept connection not closed at shutdown");
    tokio::time::timeout(WAIT, stopped).await.expect("shutdown waited on an idle kept connection").unwrap();
}

/// A kept-alive connection remembers its sign-in between requests, but a
/// `logout` of that token (here over DDP) ends it for the very next request
/// on the same connection; another token on the connection signs in afresh.
#[tokio::test]
async fn a_remembered_rest_sign_in_ends_with_logout() {
    let s = TestServer::start().await;
    let token = s.token("id-ann", "ann", &["user"]);
    let mut c = Conn::open(s.addr).await;
    let created = c.ask(&create_channel(s.addr, &token, &unique("ka-out"))).await;
    assert_eq!(created.status, 200, "{created:?}");
    let v: serde_json::Value = serde_json::from_str(&created.body).unwrap();
    let rid = v["channel"]["_id"].as_str().expect("channel id").to_owned();
    let a = c.ask(&post_message(s.addr, &token, &rid, "before")).await;
    assert_eq!(a.status, 200, "{a:?}");

    let mut ddp = s.guest().await;
    let r = ddp.call("login", json!([{"resume": token}])).await;
    assert!(r.get("error").is_none(), "{r}");
    let r = ddp.call("logout", json!([])).await;
    assert!(r.get("error").is_none(), "{r}");

    let a = c.ask(&post_message(s.addr, &token, &rid, "after")).await;
    assert_eq!(a.status, 401, "a revoked token still posts on its kept connection: {a:?}");
    // The same connection, a fresh token of the same user: signed in again.
    let fresh = s.token("id-ann", "ann", &["user"]);
    assert_ne!(fresh, token);
    let a = c.ask(&post_message(s.addr, &fresh, &rid, "again")).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert!(!a.says_close(), "{a:?}");
}

fn me(addr: SocketAddr, token: &str, uid: &str) -> String {
    format!("GET /api/v1/me HTTP/1.1\r\nHost: {addr}\r\nX-Auth-Token: {token}\r\nX-User-Id: {uid}\r\n\r\n")
}

/// A kept connection remembers one sign-in; it must answer for nobody
/// else: another user's token on the same connection signs in as that
/// user, the remembered token with someone else's `X-User-Id` is refused,
/// and a token that expired since its last request is refused.
#[tokio::test]
async fn a_remembered_rest_sign_in_serves_only_its_own_token_user_and_lifetime() {
    let s = TestServer::start().await;
    let ann = s.token("id-ann", "ann", &["user"]);
    let bob = s.token("id-bob", "bob", &["user"]);
    let mut c = Conn::open(s.addr).await;
    let id_of = |a: &Answer| {
        assert_eq!(a.status, 200, "{a:?}");
        let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
        v["_id"].as_str().expect("me's _id").to_owned()
    };
    assert_eq!(id_of(&c.ask(&me(s.addr, &ann, "id-ann")).await), "id-ann");
    assert_eq!(id_of(&c.ask(&me(s.addr, &bob, "id-bob")).await), "id-bob", "bob answered as ann");
    assert_eq!(id_of(&c.ask(&me(s.addr, &ann, "id-ann")).await), "id-ann", "ann answered as bob");
    let a = c.ask(&me(s.addr, &ann, "id-bob")).await;
    assert_eq!(a.status, 401, "ann's remembered token passed as bob: {a:?}");

    // A token 27 s past its expiry: still inside the verifier's 30 s
    // leeway (`auth::LEEWAY_SECS`) for its first request, outside it 4 s on.
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() - 27;
    let claims = json!({"sub": "id-cy", "username": "cy", "roles": ["user"], "exp": exp});
    let short = s.token_with(&claims, jsonwebtoken::Algorithm::HS256, SECRET);
    assert_eq!(id_of(&c.ask(&me(s.addr, &short, "id-cy")).await), "id-cy");
    tokio::time::sleep(Duration::from_millis(4100)).await;
    let a = c.ask(&me(s.addr, &short, "id-cy")).await;
    assert_eq!(a.status, 401, "an expired remembered token still signs in: {a:?}");
}

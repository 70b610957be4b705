//! The HTTP side of the listening port: reading a request head (bounded in
//! size; the caller bounds it in time), the WebSocket upgrade checks, the
//! `Origin` policy, and small `Connection: close` responses for the health
//! and metrics endpoints.
//!
//! roomd reads the head itself (with `httparse`) instead of letting the
//! WebSocket library do it, so one port serves both `GET /websocket` and
//! plain HTTP. Only what routing needs is copied out of the head; the read
//! buffer is dropped as soon as the head is parsed.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// Largest request head accepted (request line and headers).
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Most headers accepted in one request.
const MAX_HEADERS: usize = 32;

/// What roomd needs from a request head.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    /// The path without the query string (`/websocket/` folded into
    /// `/websocket`).
    pub path: String,
    pub host: Option<String>,
    pub origin: Option<String>,
    pub upgrade: Option<String>,
    pub connection: Option<String>,
    pub ws_key: Option<String>,
    pub ws_version: Option<String>,
    /// A header that must appear at most once (`Host`, `Origin`) but came
    /// more than once: the request is refused, since which copy a proxy or
    /// a check looked at is ambiguous.
    pub duplicate: Option<&'static str>,
    /// Bytes read past the head (a client that did not wait for `101`);
    /// handed to the WebSocket layer so nothing is lost.
    pub rest: Vec<u8>,
}

/// Why a head could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    #[error("request head larger than {MAX_HEAD_BYTES} bytes or too many headers")]
    TooLarge,
    #[error("malformed request head")]
    Malformed,
    #[error("connection closed before the request head ended")]
    Closed,
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads one request head. Reads in small steps, so an idle socket costs no
/// buffer and a large head is refused at [`MAX_HEAD_BYTES`].
pub async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> Result<RequestHead, HeadError> {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(HeadError::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => return Ok(extract(&req, buf[len..].to_vec())),
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD_BYTES => continue,
            Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
                return Err(HeadError::TooLarge);
            }
            Err(_) => return Err(HeadError::Malformed),
        }
    }
}

fn extract(req: &httparse::Request<'_, '_>, rest: Vec<u8>) -> RequestHead {
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_owned())
    };
    let count = |name: &str| req.headers.iter().filter(|h| h.name.eq_ignore_ascii_case(name)).count();
    let duplicate = ["Host", "Origin"].into_iter().find(|n| count(n) > 1);
    let target = req.path.unwrap_or("/");
    let mut path = target.split(['?', '#']).next().unwrap_or("/").to_owned();
    // Meteor serves its DDP endpoint with and without the trailing slash,
    // and clients built for it may ask for either.
    if path == "/websocket/" {
        path.pop();
    }
    RequestHead {
        method: req.method.unwrap_or("").to_owned(),
        path,
        host: header("host"),
        origin: header("origin"),
        upgrade: header("upgrade"),
        connection: header("connection"),
        ws_key: header("sec-websocket-key"),
        ws_version: header("sec-websocket-version"),
        duplicate,
        rest,
    }
}

/// Why a request for `/websocket` is not a valid upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradeError {
    /// Not `GET`, or a plain HTTP request without the upgrade headers.
    NotUpgrade,
    /// A WebSocket version other than 13.
    Version,
}

impl RequestHead {
    /// Checks the RFC 6455 upgrade headers; returns the client's key.
    pub fn websocket_key(&self) -> Result<&str, UpgradeError> {
        let has_token = |v: &Option<String>, token: &str| {
            v.as_deref().is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        };
        if self.method != "GET"
            || !has_token(&self.upgrade, "websocket")
            || !has_token(&self.connection, "upgrade")
        {
            return Err(UpgradeError::NotUpgrade);
        }
        if self.ws_version.as_deref() != Some("13") {
            return Err(UpgradeError::Version);
        }
        match self.ws_key.as_deref() {
            Some(k) if !k.is_empty() => Ok(k),
            _ => Err(UpgradeError::NotUpgrade),
        }
    }
}

/// A web origin, `scheme://host:port`, with the port made explicit
/// (80/443 by default) and scheme and host in lower case, so two spellings
/// of one origin compare equal and nothing else does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

impl Origin {
    /// Parses an `Origin` header value or a URL whose path is empty or `/`
    /// (`--public-url`, `--allowed-origin`). Only `http` and `https`.
    pub fn parse(s: &str) -> Option<Origin> {
        let (scheme, rest) = s.trim().split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        let default = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return None,
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = split_host_port(authority)?;
        Some(Origin { scheme, host, port: port.unwrap_or(default) })
    }

    fn default_port(&self) -> u16 {
        if self.scheme == "https" { 443 } else { 80 }
    }
}

/// Splits `host[:port]` (IPv6 in brackets) into a lower-case host and the
/// port if given. `None` for anything else: userinfo, paths, empty hosts,
/// bad ports.
pub fn split_host_port(authority: &str) -> Option<(String, Option<u16>)> {
    let bad = |c: char| matches!(c, '/' | '?' | '#' | '@' | '\\') || c.is_whitespace() || c.is_control();
    if authority.is_empty() || authority.contains(bad) {
        return None;
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (inside, after) = v6.split_once(']')?;
        if inside.is_empty() || !inside.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.') {
            return None;
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (format!("[{inside}]"), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (authority.to_owned(), None),
        }
    };
    if host.is_empty() || (!host.starts_with('[') && host.contains(':')) {
        return None;
    }
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse().ok()?),
        Some(_) => return None,
    };
    Some((host.to_ascii_lowercase(), port))
}

/// Which `Host` and `Origin` values the handshake accepts; built once.
#[derive(Debug, Clone, Default)]
pub struct HostPolicy {
    /// roomd listens on a loopback address: `Host` must name loopback or a
    /// public URL (DNS-rebinding protection).
    pub loopback_only: bool,
    /// `--public-url`s: hosts roomd is served under; their origins count
    /// as same-origin.
    pub public: Vec<Origin>,
    /// `--allowed-origin`s that parsed; `any` for `*`.
    pub allowed: Vec<Origin>,
    pub any_origin: bool,
}

impl HostPolicy {
    pub fn new(listen: Option<std::net::SocketAddr>, public_urls: &[String], allowed: &[String]) -> Self {
        HostPolicy {
            loopback_only: listen.is_some_and(|a| a.ip().is_loopback()),
            public: public_urls.iter().filter_map(|u| Origin::parse(u)).collect(),
            allowed: allowed.iter().filter_map(|u| Origin::parse(u)).collect(),
            any_origin: allowed.iter().any(|a| a.trim() == "*"),
        }
    }

    /// Whether a request with this `Host` is served. Only checked while
    /// listening on loopback: there, a browser page on another site can
    /// reach roomd through a DNS name rebound to 127.0.0.1, and `Host` is
    /// what gives it away. Allowed: `localhost`, any `127.x.x.x`, `[::1]`
    /// (any port), and the hosts of `--public-url`. A request without
    /// `Host` is not a browser's, so it passes.
    pub fn host_allowed(&self, host: Option<&str>) -> bool {
        if !self.loopback_only {
            return true;
        }
        let Some(host) = host else { return true };
        let Some((name, port)) = split_host_port(host) else { return false };
        let loopback = name == "localhost"
            || name == "[::1]"
            || name.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback());
        loopback || self.public.iter().any(|p| p.host == name && p.port == port.unwrap_or(p.default_port()))
    }

    /// Whether a WebSocket handshake with this `Origin` may proceed:
    /// requests without `Origin` (non-browser clients); same-origin
    /// requests (an `http`/`https` origin whose host and port are those of
    /// the `Host` header, or a `--public-url`'s origin); origins on the
    /// allowed list (`*` allows any). Scheme, host and port are compared
    /// exactly, default ports made explicit.
    pub fn origin_allowed(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        let Some(origin) = origin else { return true };
        if self.any_origin {
            return true;
        }
        let Some(o) = Origin::parse(origin) else { return false };
        if self.allowed.contains(&o) || self.public.contains(&o) {
            return true;
        }
        match host.and_then(split_host_port) {
            Some((name, port)) => name == o.host && port.unwrap_or(o.default_port()) == o.port,
            None => false,
        }
    }
}

/// The `101 Switching Protocols` reply for a client key.
pub fn switching_protocols(key: &str) -> String {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    )
}

/// Writes a complete response and closes the write side. `head_only` for
/// `HEAD` requests.
pub async fn respond<S: AsyncWrite + Unpin>(
    stream: &mut S,
    status: u16,
    content_type: &str,
    body: &str,
    extra_headers: &str,
    head_only: bool,
) -> std::io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n{extra_headers}\r\n",
        reason_phrase(status),
        body.len()
    );
    if !head_only {
        out.push_str(body);
    }
    stream.write_all(out.as_bytes()).await?;
    stream.flush().await?;
    stream.shutdown().await
}

/// A plain-text response.
pub async fn respond_text<S: AsyncWrite + Unpin>(
    stream: &mut S,
    status: u16,
    body: &str,
) -> std::io::Result<()> {
    respond(stream, status, "text/plain; charset=utf-8", body, "", false).await
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        421 => "Misdirected Request",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(bytes: &[u8]) -> Result<RequestHead, HeadError> {
        let mut r = bytes;
        read_head(&mut r).await
    }

    #[tokio::test]
    async fn reads_head_and_keeps_the_rest() {
        let h = parse(b"GET /websocket?x=1 HTTP/1.1\r\nHost: a:1\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\nxyz")
            .await
            .unwrap();
        assert_eq!(h.path, "/websocket");
        let slash = parse(b"GET /websocket/?x=1 HTTP/1.1\r\n\r\n").await.unwrap();
        assert_eq!(slash.path, "/websocket");
        assert_eq!(h.host.as_deref(), Some("a:1"));
        assert_eq!(h.rest, b"xyz");
        assert_eq!(h.websocket_key(), Ok("dGhlIHNhbXBsZSBub25jZQ=="));
        // RFC 6455's worked example.
        assert!(switching_protocols("dGhlIHNhbXBsZSBub25jZQ==").contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    }

    #[tokio::test]
    async fn refuses_bad_heads() {
        assert!(matches!(parse(b"GET / HTTP/1.1\r\n").await, Err(HeadError::Closed)));
        assert!(matches!(parse(b"\x00\x01garbage\r\n\r\n").await, Err(HeadError::Malformed)));
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD_BYTES));
        assert!(matches!(parse(big.as_bytes()).await, Err(HeadError::TooLarge)));
        let many: String = (0..40).map(|i| format!("X{i}: y\r\n")).collect();
        let req = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert!(matches!(parse(req.as_bytes()).await, Err(HeadError::TooLarge)));
        let h = parse(b"GET /websocket HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
        assert_eq!(h.websocket_key(), Err(UpgradeError::NotUpgrade));
        let h = parse(b"GET /websocket HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: k\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(h.websocket_key(), Err(UpgradeError::Version));
    }

    #[test]
    fn origin_policy() {
        let none = HostPolicy::default();
        let list = HostPolicy::new(None, &[], &["https://app.example.com".to_owned()]);
        assert!(none.origin_allowed(None, Some("x")));
        assert!(none.origin_allowed(Some("http://x:3000"), Some("x:3000")));
        assert!(none.origin_allowed(Some("https://X:3000"), Some("x:3000")));
        assert!(none.origin_allowed(Some("https://x"), Some("x:443")));
        assert!(!none.origin_allowed(Some("http://x:8080"), Some("x:3000")));
        assert!(!none.origin_allowed(Some("http://x"), Some("x:3000")));
        assert!(!none.origin_allowed(Some("ftp://x:3000"), Some("x:3000")));
        assert!(!none.origin_allowed(Some("https://evil.example"), Some("x:3000")));
        assert!(!none.origin_allowed(Some("null"), Some("x:3000")));
        assert!(!none.origin_allowed(Some("https://x:3000"), None));
        assert!(list.origin_allowed(Some("https://app.example.com"), Some("x")));
        assert!(list.origin_allowed(Some("https://app.example.com:443"), Some("x")));
        assert!(list.origin_allowed(Some("https://app.example.com/"), Some("x")));
        assert!(!list.origin_allowed(Some("http://app.example.com"), Some("x")));
        assert!(!list.origin_allowed(Some("https://app.example.com:8443"), Some("x")));
        assert!(!list.origin_allowed(Some("https://app.example.com.evil"), Some("x")));
        let any = HostPolicy::new(None, &[], &["*".to_owned()]);
        assert!(any.origin_allowed(Some("https://any"), Some("x")));
    }

    #[test]
    fn host_policy_on_loopback() {
        let listen = "127.0.0.1:3000".parse().ok();
        let p = HostPolicy::new(listen, &["https://chat.example.com".to_owned()], &[]);
        for ok in
            ["localhost:3000", "LOCALHOST", "127.0.0.1:3000", "127.1.2.3:9", "[::1]:3000", "chat.example.com"]
        {
            assert!(p.host_allowed(Some(ok)), "{ok}");
        }
        assert!(p.host_allowed(Some("chat.example.com:443")));
        assert!(p.host_allowed(None));
        for bad in ["evil.example:3000", "chat.example.com:80", "localhost.evil", "a@localhost", "", "[::2]"]
        {
            assert!(!p.host_allowed(Some(bad)), "{bad}");
        }
        assert!(p.origin_allowed(Some("https://chat.example.com"), Some("127.0.0.1:3000")));
        let open = HostPolicy::new("0.0.0.0:3000".parse().ok(), &[], &[]);
        assert!(open.host_allowed(Some("evil.example")));
    }
}

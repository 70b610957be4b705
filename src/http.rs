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

/// Whether a WebSocket handshake with this `Origin` may proceed: requests
/// without `Origin` (non-browser clients), same-origin requests (the
/// origin's host equals the `Host` header) and origins on the allowed list
/// (`*` allows any).
pub fn origin_allowed(origin: Option<&str>, host: Option<&str>, allowed: &[String]) -> bool {
    let Some(origin) = origin else { return true };
    let origin = origin.trim_end_matches('/');
    if allowed.iter().any(|a| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(origin)) {
        return true;
    }
    let origin_host = origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://"));
    match (origin_host, host) {
        (Some(o), Some(h)) => !o.is_empty() && o.eq_ignore_ascii_case(h),
        _ => false,
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
        let none: Vec<String> = Vec::new();
        let list = vec!["https://app.example.com".to_owned()];
        assert!(origin_allowed(None, Some("x"), &none));
        assert!(origin_allowed(Some("http://x:3000"), Some("x:3000"), &none));
        assert!(origin_allowed(Some("https://X:3000"), Some("x:3000"), &none));
        assert!(!origin_allowed(Some("https://evil.example"), Some("x:3000"), &none));
        assert!(!origin_allowed(Some("null"), Some("x:3000"), &none));
        assert!(!origin_allowed(Some("https://x:3000"), None, &none));
        assert!(origin_allowed(Some("https://app.example.com"), Some("x"), &list));
        assert!(origin_allowed(Some("https://app.example.com/"), Some("x"), &list));
        assert!(!origin_allowed(Some("https://app.example.com.evil"), Some("x"), &list));
        assert!(origin_allowed(Some("https://any"), Some("x"), &["*".to_owned()]));
    }
}

//! The rules of the HTTP door, free of any I/O: which `Host` and `Origin`
//! values are served, and what makes a request a valid WebSocket upgrade.
//! The router (`routes.rs`) applies them; hyper reads and writes the bytes.

use axum::http::{HeaderMap, Method, header};

/// Why a request for `/websocket` is not a valid upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UpgradeError {
    /// Not `GET`, or a plain HTTP request without the upgrade headers.
    NotUpgrade,
    /// A WebSocket version other than 13.
    Version,
}

/// Checks the RFC 6455 upgrade headers; returns the client's key.
pub(crate) fn websocket_key<'h>(method: &Method, headers: &'h HeaderMap) -> Result<&'h [u8], UpgradeError> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    if method != Method::GET
        || !has_token(header::UPGRADE, "websocket")
        || !has_token(header::CONNECTION, "upgrade")
    {
        return Err(UpgradeError::NotUpgrade);
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes().trim_ascii()) != Some(b"13") {
        return Err(UpgradeError::Version);
    }
    match headers.get(header::SEC_WEBSOCKET_KEY).map(|k| k.as_bytes().trim_ascii()) {
        Some(k) if !k.is_empty() => Ok(k),
        _ => Err(UpgradeError::NotUpgrade),
    }
}

/// A header's value as text, trimmed; `None` when absent or not visible
/// ASCII.
pub(crate) fn header_str<'h>(headers: &'h HeaderMap, name: &header::HeaderName) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

/// The first of `Host` and `Origin` that came more than once: such a
/// request is refused, since which copy a proxy or a check looked at is
/// ambiguous.
pub(crate) fn duplicated(headers: &HeaderMap) -> Option<&'static str> {
    [(header::HOST, "Host"), (header::ORIGIN, "Origin")]
        .into_iter()
        .find(|(h, _)| headers.get_all(h).iter().count() > 1)
        .map(|(_, name)| name)
}

/// A web origin, `scheme://host:port`, with the port made explicit
/// (80/443 by default) and scheme and host in lower case, so two spellings
/// of one origin compare equal and nothing else does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

impl Origin {
    /// Parses an `Origin` header value or a URL whose path is empty or `/`
    /// (`--public-url`, `--allowed-origin`). Only `http` and `https`.
    pub(crate) fn parse(s: &str) -> Option<Origin> {
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
pub(crate) fn split_host_port(authority: &str) -> Option<(String, Option<u16>)> {
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
pub(crate) struct HostPolicy {
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
    pub(crate) fn new(
        listen: Option<std::net::SocketAddr>,
        public_urls: &[String],
        allowed: &[String],
    ) -> Self {
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
    pub(crate) fn host_allowed(&self, host: Option<&str>) -> bool {
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
    pub(crate) fn origin_allowed(&self, origin: Option<&str>, host: Option<&str>) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn upgrade_checks() {
        let ok = headers(&[
            ("upgrade", "WebSocket"),
            ("connection", "keep-alive, Upgrade"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-version", "13"),
        ]);
        assert_eq!(websocket_key(&Method::GET, &ok), Ok(&b"dGhlIHNhbXBsZSBub25jZQ=="[..]));
        assert_eq!(websocket_key(&Method::POST, &ok), Err(UpgradeError::NotUpgrade));
        assert_eq!(websocket_key(&Method::GET, &headers(&[("host", "a")])), Err(UpgradeError::NotUpgrade));
        let old = headers(&[
            ("upgrade", "websocket"),
            ("connection", "upgrade"),
            ("sec-websocket-key", "k"),
            ("sec-websocket-version", "8"),
        ]);
        assert_eq!(websocket_key(&Method::GET, &old), Err(UpgradeError::Version));
        let keyless =
            headers(&[("upgrade", "websocket"), ("connection", "upgrade"), ("sec-websocket-version", "13")]);
        assert_eq!(websocket_key(&Method::GET, &keyless), Err(UpgradeError::NotUpgrade));
        assert_eq!(duplicated(&headers(&[("host", "a"), ("origin", "x"), ("origin", "y")])), Some("Origin"));
        assert_eq!(duplicated(&headers(&[("host", "a"), ("host", "b")])), Some("Host"));
        assert_eq!(duplicated(&ok), None);
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

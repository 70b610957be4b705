//! The meeting-room web app, embedded in the binary: the files of `web/`,
//! which URL serves which, and the headers they go out with. Routing and the
//! socket are the server's business (`routes.rs`); this module only answers
//! "what is at this path".

/// One embedded file.
#[derive(Debug)]
pub(crate) struct Asset {
    /// The name under `/app/`.
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
    /// Hash of `body`, computed at compile time: the entity tag.
    pub hash: u64,
}

const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    h
}

macro_rules! asset {
    ($name:literal, $type:literal) => {{
        const BODY: &[u8] = include_bytes!(concat!("../web/", $name));
        Asset { name: $name, content_type: $type, body: BODY, hash: fnv1a(BODY) }
    }};
}

/// Every file of the app. `index.html` is also the page for `/` and every
/// share link under `/r` (the app reads the code from the URL).
pub(crate) static ASSETS: [Asset; 5] = [
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("ddp.js", "text/javascript; charset=utf-8"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
];

/// The asset served at `path`, if any: `/`, `/app/<name>`, and the app for
/// `/r`, `/r/` and anything below. Share links travel through chat and
/// mail, which glue a sentence's punctuation to them (`/r/abc-def-ghi).`)
/// or cut them short; the app strips what is not part of a code, or says
/// kindly that no room has it, where a bare `404` would only puzzle the
/// guest. Everything under `/r/` is the same static page, so answering it
/// reveals nothing about which codes exist.
pub(crate) fn asset_for(path: &str) -> Option<&'static Asset> {
    let name = if path == "/" || path == "/r" || path.starts_with("/r/") {
        "index.html"
    } else {
        path.strip_prefix("/app/")?
    };
    ASSETS.iter().find(|a| a.name == name)
}

impl Asset {
    /// The entity tag, quoted.
    pub(crate) fn etag(&self) -> String {
        format!("\"{:016x}\"", self.hash)
    }

    /// Whether an `If-None-Match` header names this version.
    pub(crate) fn matches(&self, if_none_match: Option<&str>) -> bool {
        let etag = self.etag();
        if_none_match.is_some_and(|v| {
            v.split(',').map(str::trim).any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
        })
    }

    /// Response headers (name, value) for this asset requested with
    /// `Host: host`.
    ///
    /// URLs carry no version, so every response is `no-cache`: the browser
    /// keeps the file but asks again each time, and gets a body-less `304`
    /// while the binary is the same.
    pub(crate) fn headers(&self, host: Option<&str>) -> [(&'static str, String); 6] {
        [
            ("cache-control", "no-cache".to_owned()),
            ("etag", self.etag()),
            ("content-security-policy", csp(host)),
            ("x-content-type-options", "nosniff".to_owned()),
            ("referrer-policy", "no-referrer".to_owned()),
            ("x-frame-options", "DENY".to_owned()),
        ]
    }
}

/// Only the app's own files, no inline code, nothing framed; the one way
/// out is the DDP WebSocket on this same host. `'self'` alone covers
/// `ws:`/`wss:` in current browsers; the explicit host is for older ones.
fn csp(host: Option<&str>) -> String {
    let mut connect = String::from("'self'");
    // The Host header is the client's own; only a plain host[:port] goes
    // into the header, so nothing can be injected through it.
    if let Some(h) = host.filter(|h| {
        !h.is_empty()
            && h.len() <= 255
            && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
    }) {
        connect.push_str(&format!(" ws://{h} wss://{h}"));
    }
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src {connect}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(asset_for("/").unwrap().name, "index.html");
        for link in ["/r/abc-def-ghi", "/r/abc-def-ghi/", "/r/abc-def-ghi).", "/r", "/r/", "/r/a/b"] {
            assert_eq!(asset_for(link).unwrap().name, "index.html", "{link}");
        }
        assert_eq!(asset_for("/app/app.js").unwrap().content_type, "text/javascript; charset=utf-8");
        assert_eq!(asset_for("/app/style.css").unwrap().content_type, "text/css; charset=utf-8");
        for bad in ["/app/", "/app/nope.js", "/app/../Cargo.toml", "/index.html", "/x", "/rooms", "/r.html"] {
            assert!(asset_for(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn etags_and_csp() {
        let a = asset_for("/app/ddp.js").unwrap();
        let tag = a.etag();
        assert!(a.matches(Some(&tag)));
        assert!(a.matches(Some(&format!("W/{tag}, \"x\""))));
        assert!(!a.matches(Some("\"other\"")));
        assert!(!a.matches(None));
        let csp_of =
            |host| a.headers(host).into_iter().find(|(n, _)| *n == "content-security-policy").unwrap().1;
        let h = csp_of(Some("127.0.0.1:3000"));
        assert!(h.contains("connect-src 'self' ws://127.0.0.1:3000 wss://127.0.0.1:3000;"), "{h}");
        // A hostile Host header is left out rather than echoed.
        let h = csp_of(Some("x; script-src *"));
        assert!(h.contains("connect-src 'self';"), "{h}");
    }
}

//! The REST doors under `/api`: Rocket.Chat's REST room endpoints
//! ([`rocketchat`], `/api/v1/…`) and Slack's `channels.join` and
//! `conversations.join` ([`slack`], `/api/…`).
//!
//! Both are thin adapters, as the Socket.IO door is: a request signs in a
//! [`Session`] of its own with the DDP `login` (the token's signature,
//! expiry, revocation and username ownership, the user's record made
//! durable), then runs one or a few typed calls ([`Call`]: each method's
//! parameters, built here from the request) through [`Session::call`], so permissions, join-code brakes, durability waits,
//! metrics and error logging are the DDP ones, and DDP and Socket.IO
//! clients see the same events whichever door a change came through. A
//! response is written only after the method returned, which is after its
//! change was committed.
//!
//! What a connection would give a session and a request cannot, this module
//! adds: the per-method-class token buckets are kept per user
//! ([`RestState`]), since every request has a fresh session.
//!
//! A kept-alive HTTP connection remembers its last sign-in ([`SignedIn`]):
//! the next request with the same token skips the token's verification
//! (signature, claims) but not its revocation and expiry, which are checked
//! on every request, so a `logout` elsewhere ends it at once.
//!
//! `protocol/rest.md` is the wire contract.

mod encode;
mod rocketchat;
mod slack;

pub use rocketchat::ROUTES as ROCKETCHAT_ROUTES;
pub use slack::ROUTES as SLACK_ROUTES;
pub use slack::{NameError, channel_name};

use crate::auth::User;
use crate::conn::ConnHandle;
use crate::error::MethodError;
use crate::ids::UserId;
use crate::limits::{self, ConnLimiter, MethodClass};
use crate::method::{Call, Method, Resume};
use crate::server::KeepAlive;
use crate::server::{HttpContext, Peer};
use crate::session::Session;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dashmap::DashMap;
use serde_json::{Map, Value};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

type Ctx = Arc<HttpContext>;

/// The largest request body a REST endpoint reads (`413` above it): far
/// above any message roomd accepts, far below what would hurt.
pub(crate) const MAX_BODY_BYTES: usize = 256 * 1024;

/// The routes of both doors, to be nested at `/api`.
pub(crate) fn router() -> Router<Ctx> {
    let rest = Arc::new(RestState::default());
    rocketchat::routes(Router::new(), rest.clone()).merge(slack::routes(Router::new(), rest))
}

/// What REST requests share beyond the server state.
#[derive(Default)]
pub(crate) struct RestState {
    /// Each user's token buckets (`--rate-*`), shared by all of the user's
    /// requests as a connection's are by its calls.
    limiters: DashMap<UserId, ConnLimiter>,
}

/// Above this many remembered users the buckets start over: a bound on
/// memory, not a limit anyone can use to escape (a bucket forgotten is
/// full again, and the join-code brakes are kept elsewhere).
const LIMITERS_PRUNE_AT: usize = 10_000;

impl RestState {
    /// Takes a token of `class` for `uid`, or says how long to wait.
    fn admit(&self, ctx: &HttpContext, uid: &UserId, class: MethodClass) -> Result<(), MethodError> {
        let limits = &ctx.state.session_limits;
        let now = Instant::now();
        if self.limiters.len() > LIMITERS_PRUNE_AT {
            self.limiters.clear();
        }
        // A known user's buckets without cloning its id for the lookup.
        let mut limiter = match self.limiters.get_mut(uid) {
            Some(l) => l,
            None => self.limiters.entry(uid.clone()).or_insert_with(|| ConnLimiter::new(limits, now)),
        };
        limiter.admit(class, now).map_err(|wait| {
            ctx.state.metrics.rate_limited(class.label());
            MethodError::TooManyRequests(limits::millis_ceil(wait))
        })
    }
}

/// A signed-in request: its own session and the user it signed in as.
pub(crate) struct Caller {
    session: Session,
    pub(crate) user: Arc<User>,
}

/// The last sign-in of a kept-alive HTTP connection: the token it was made
/// with and the user it verified to.
pub(crate) struct SignedIn {
    token: Box<str>,
    user: User,
}

impl SignedIn {
    /// The user `token` signed in as on this connection before, if that
    /// sign-in still holds: the same token, not revoked since (`logout`),
    /// not expired.
    fn reuse(&self, token: &str, users: &crate::users::Directory) -> Option<User> {
        (*self.token == *token
            && !users.is_revoked(&self.user.token_key)
            && crate::time::Millis::now().0 < self.user.expires_ms)
            .then(|| self.user.clone())
    }
}

impl Caller {
    /// Signs a fresh per-request session in: with the DDP `login` itself,
    /// or, on a kept-alive connection whose last request signed in with the
    /// same token, with that sign-in (see [`SignedIn::reuse`]).
    async fn sign_in(ctx: &HttpContext, token: &str, input: &Input) -> Result<Caller, MethodError> {
        let state = &ctx.state;
        let conn = ConnHandle::without_writer(
            state.next_conn_id(),
            state.metrics.clone(),
            CancellationToken::new(),
            state.conn_config.outbound_bytes.clone(),
        );
        let mut session = Session::per_request(conn, state.clone(), input.peer());
        let keep = input.keep.as_deref();
        let known = keep.and_then(|k| {
            let slot = k.signed_in.lock().ok()?;
            slot.as_ref()?.reuse(token, &state.users)
        });
        match known {
            Some(user) => session.sign_in(user).await,
            None => {
                session.call(Resume { token: token.to_owned() }).await?;
                if let (Some(k), Some(u)) = (keep, session.user())
                    && let Ok(mut slot) = k.signed_in.lock()
                {
                    *slot = Some(Box::new(SignedIn { token: token.into(), user: (**u).clone() }));
                }
            }
        }
        let user = session.user().cloned().ok_or(MethodError::InvalidUser)?;
        Ok(Caller { session, user })
    }

    /// One method call, exactly as a DDP `method` frame would run it.
    pub(crate) async fn call<C: Call>(&mut self, call: C) -> Result<C::Output, MethodError> {
        self.session.call(call).await
    }

    /// [`Caller::call`] of parameters the request may have got wrong
    /// ([`Session::call_parsed`]).
    pub(crate) async fn call_parsed<C: Call>(
        &mut self,
        method: Method,
        call: Result<C, MethodError>,
    ) -> Result<C::Output, MethodError> {
        self.session.call_parsed(method, call).await
    }

    /// The session's end, as a connection's would be (it holds nothing a
    /// room must hear of, but the hub forgets it the same way).
    async fn finish(mut self) {
        self.session.finish().await;
    }
}

/// A request's parameters: the query string and the body (a JSON object or
/// a form), body fields winning.
#[derive(Debug, Default)]
pub(crate) struct Input {
    pub(crate) fields: Map<String, Value>,
    headers: HeaderMap,
    peer: Option<IpAddr>,
    /// The HTTP connection's keep-alive state (absent in unit tests).
    keep: Option<Arc<KeepAlive>>,
}

/// Why a request's parameters could not be read.
#[derive(Debug)]
pub(crate) enum InputError {
    /// Body larger than [`MAX_BODY_BYTES`].
    TooLarge,
    /// Not sent within the deadline.
    Timeout,
    /// Not a JSON object, not a form.
    Malformed(&'static str),
}

impl Input {
    /// Reads the request's query and body (within the size limit and a
    /// deadline: a stalled body must not hold the socket).
    async fn read(ctx: &HttpContext, req: Request) -> Result<Input, InputError> {
        let (parts, body) = req.into_parts();
        let mut fields = Map::new();
        if let Some(q) = parts.uri.query() {
            for (k, v) in parse_form(q.as_bytes()).ok_or(InputError::Malformed("query string"))? {
                fields.insert(k, Value::String(v));
            }
        }
        let limit = ctx.state.conn_config.ping_timeout;
        let bytes: Bytes = match tokio::time::timeout(limit, axum::body::to_bytes(body, MAX_BODY_BYTES)).await
        {
            Err(_) => return Err(InputError::Timeout),
            Ok(Err(_)) => return Err(InputError::TooLarge),
            Ok(Ok(b)) => b,
        };
        let form = crate::http::header_str(&parts.headers, &header::CONTENT_TYPE)
            .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
        if form {
            for (k, v) in parse_form(&bytes).ok_or(InputError::Malformed("form body"))? {
                fields.insert(k, Value::String(v));
            }
        } else if !bytes.iter().all(u8::is_ascii_whitespace) {
            // Straight into a map: anything but an object fails here too.
            match serde_json::from_slice::<Map<String, Value>>(&bytes) {
                Ok(o) if fields.is_empty() => fields = o,
                Ok(o) => fields.extend(o),
                Err(_) => return Err(InputError::Malformed("JSON object body")),
            }
        }
        let peer = parts.extensions.get::<Peer>().map(|p| p.0.ip());
        let keep = parts.extensions.get::<Arc<KeepAlive>>().cloned();
        Ok(Input { fields, headers: parts.headers, peer, keep })
    }

    /// The client's address for the join-code brake (the router puts the
    /// TCP peer into every request); without one, every such request shares
    /// one address's budget: safe.
    fn peer(&self) -> IpAddr {
        self.peer.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        self.fields.get(key).filter(|v| !v.is_null())
    }

    /// A string field, if present.
    pub(crate) fn opt_str(&self, key: &str) -> Result<Option<&str>, MethodError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(MethodError::matching(key, "a string")),
        }
    }

    /// A boolean field; a form or query sends `true`/`false` as text.
    pub(crate) fn opt_bool(&self, key: &str) -> Result<Option<bool>, MethodError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if s == "true" || s == "1" => Ok(Some(true)),
            Some(Value::String(s)) if s == "false" || s == "0" || s.is_empty() => Ok(Some(false)),
            Some(_) => Err(MethodError::matching(key, "a boolean")),
        }
    }

    /// A non-negative integer field; a form or query sends it as text.
    pub(crate) fn opt_uint(&self, key: &str) -> Result<Option<u64>, MethodError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => {
                s.parse().map(Some).map_err(|_| MethodError::matching(key, "a non-negative integer"))
            }
            Some(v) => {
                v.as_u64().map(Some).ok_or_else(|| MethodError::matching(key, "a non-negative integer"))
            }
        }
    }
}

/// `application/x-www-form-urlencoded` pairs, or `None` if not valid UTF-8.
fn parse_form(bytes: &[u8]) -> Option<Vec<(String, String)>> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(bytes).ok()
}

/// A JSON answer with `status`.
pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    encoded_response(status, body.to_string().into_bytes())
}

/// A JSON answer with `status` whose body is already encoded.
pub(crate) fn encoded_response(status: StatusCode, body: Vec<u8>) -> Response {
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ];
    (status, headers, Body::from(body)).into_response()
}

/// The wait a rate-limit refusal carries, in whole seconds (at least 1),
/// for `Retry-After`.
pub(crate) fn retry_after_secs(e: &MethodError) -> Option<u64> {
    match e {
        MethodError::TooManyRequests(ms) => Some(ms.div_ceil(1000).max(1)),
        _ => None,
    }
}

/// `{"$date": ms}` (EJSON, as DDP sends dates) becomes an ISO 8601 string
/// everywhere in `v`, as Rocket.Chat's REST API writes dates.
pub(crate) fn dates_to_iso(v: &mut Value) {
    match v {
        Value::Object(o) => {
            if o.len() == 1
                && let Some(ms) = o.get("$date").and_then(Value::as_i64)
            {
                *v = Value::from(crate::time::Millis(ms).to_iso8601());
                return;
            }
            o.values_mut().for_each(dates_to_iso);
        }
        Value::Array(a) => a.iter_mut().for_each(dates_to_iso),
        _ => {}
    }
}

/// Milliseconds of an ISO 8601 UTC date-time (`2026-03-03T10:36:00.123Z`,
/// fraction optional), as Rocket.Chat's REST API takes dates.
pub(crate) fn parse_iso(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes().all(|c| c.is_ascii_digit()).then(|| part.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d, h, mi, sec) =
        (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    let rest = &s[19..];
    let (frac, zone) = match rest.strip_prefix('.') {
        Some(r) => {
            let digits = r.bytes().take_while(u8::is_ascii_digit).count();
            let ms: String = r[..digits].chars().chain("000".chars()).take(3).collect();
            (ms.parse::<i64>().ok()?, &r[digits..])
        }
        None => (0, rest),
    };
    if zone != "Z" || !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + h) * 60 + mi) * 60_000 + sec * 1000 + frac)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn iso_dates_round_trip() {
        for ms in [0, 951_782_400_000, 1_772_534_160_123] {
            let iso = crate::time::Millis(ms).to_iso8601();
            assert_eq!(parse_iso(&iso), Some(ms), "{iso}");
        }
        assert_eq!(parse_iso("2026-03-03T10:36:00Z"), Some(1_772_534_160_000));
        for bad in
            ["", "2026-03-03", "2026-03-03T10:36:00", "2026-13-03T10:36:00Z", "2026-03-03T10:36:00+01:00"]
        {
            assert_eq!(parse_iso(bad), None, "{bad}");
        }
    }

    #[test]
    fn ejson_dates_become_iso_strings() {
        let mut v = json!({"ts": {"$date": 0}, "list": [{"_updatedAt": {"$date": 1000}}], "n": 3});
        dates_to_iso(&mut v);
        assert_eq!(
            v,
            json!({"ts": "1970-01-01T00:00:00.000Z", "list": [{"_updatedAt": "1970-01-01T00:00:01.000Z"}], "n": 3})
        );
    }

    #[test]
    fn forms_decode() {
        let pairs = parse_form(b"name=%23General+room&validate=true").unwrap();
        assert_eq!(pairs, vec![("name".into(), "#General room".into()), ("validate".into(), "true".into())]);
    }
}

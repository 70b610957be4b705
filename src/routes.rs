//! What each path of the one port answers: the router every socket is
//! served with.
//!
//! - `/websocket` (and `/websocket/`, any query): the DDP endpoint, upgraded
//!   into the connection code of `conn.rs`.
//! - `/healthz`, `/readyz`, `/metrics`: plain answers for probes and scrapes.
//! - `/`, `/r/<code>` (and anything else under `/r`), `/app/<file>`: the
//!   meeting-room web app ([`webapp`]).
//! - `/api/…`: the REST doors ([`crate::rest`]), a nested router.
//! - `/socket.io/`: the Socket.IO door ([`crate::socketio`]), a layer that
//!   answers its own path and passes every other request on.
//! - anything else: `404`.
//!
//! Every request first passes the `Host` checks ([`host_guard`]); every
//! answer but a `101` closes the connection. More doors (Socket.IO, REST)
//! are added in [`router`], as routes or as a layer, inside those two.

use crate::http::{self, UpgradeError};
use crate::server::{HttpContext, KeepAlive};
use crate::webapp;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use socketioxide::layer::SocketIoLayer;
use std::sync::Arc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

type Ctx = Arc<HttpContext>;

/// The whole HTTP surface of the port.
pub(crate) fn router(ctx: Ctx, socketio: SocketIoLayer) -> Router {
    Router::new()
        .route("/websocket", any(websocket))
        // Meteor serves its DDP endpoint with and without the trailing
        // slash, and clients built for it may ask for either.
        .route("/websocket/", any(websocket))
        .route("/healthz", any(probe))
        .route("/readyz", any(probe))
        .route("/metrics", any(probe))
        .route("/", any(web_app))
        // Share links, also cut short or with punctuation glued on.
        .route("/r", any(web_app))
        .route("/r/", any(web_app))
        .route("/r/{*link}", any(web_app))
        .route("/app/{file}", any(web_app))
        .nest("/api", api())
        .fallback(not_found)
        .layer(socketio)
        // Outside the Socket.IO layer, so it also guards `/socket.io/`.
        .layer(middleware::from_fn_with_state(ctx.clone(), replay_guard))
        // engineioxide checks no origin: ours runs first.
        .layer(middleware::from_fn_with_state(ctx.clone(), socketio_guard))
        // Outermost last: the Host checks run before any route; the close
        // decision sees every answer, refusals included.
        .layer(middleware::from_fn_with_state(ctx.clone(), host_guard))
        .layer(middleware::from_fn_with_state(ctx.clone(), keep_alive_or_close))
        .with_state(ctx)
}

/// `/api/…`: the REST doors ([`crate::rest`]): Rocket.Chat's `/api/v1/…`
/// room endpoints and Slack's `channels.join`, `conversations.join`.
/// Every answer under `/api` (refusals and `404`s included) carries
/// `X-Content-Type-Options: nosniff`, so a browser never reads a JSON
/// answer as another type (a script, a page).
fn api() -> Router<Ctx> {
    crate::rest::router().fallback(not_found).layer(middleware::map_response(nosniff))
}

async fn nosniff(mut res: Response) -> Response {
    res.headers_mut().insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    res
}

/// Refuses a request that names its host ambiguously (two `Host` or
/// `Origin` headers: `400`) or, on a loopback listener, a host that is not
/// this machine's (`421`: DNS rebinding), whatever the path.
async fn host_guard(State(ctx): State<Ctx>, req: Request, next: Next) -> Response {
    match host_refusal(&ctx, req.headers()) {
        Some(refused) => refused,
        None => next.run(req).await,
    }
}

/// [`host_guard`]'s answer when it refuses the request.
fn host_refusal(ctx: &Ctx, headers: &HeaderMap) -> Option<Response> {
    let metrics = &ctx.state.metrics;
    if let Some(name) = http::duplicated(headers) {
        tracing::debug!(header = name, "header sent twice");
        metrics.handshake_failed("bad-request");
        return Some(text(StatusCode::BAD_REQUEST, format!("more than one {name} header\n")));
    }
    let host = http::header_str(headers, &header::HOST);
    if !ctx.hosts.host_allowed(host) {
        tracing::debug!(host = host.unwrap_or(""), "host not allowed");
        metrics.handshake_failed("host");
        return Some(text(
            StatusCode::MISDIRECTED_REQUEST,
            "host not allowed: roomd listens on a loopback address and answers only to \
             localhost, 127.0.0.1, [::1] and the hosts of --public-url\n",
        ));
    }
    None
}

/// Whether `path` is the DDP endpoint (`/websocket`, `/websocket/`; the
/// query is not part of the path).
pub(crate) fn is_ddp_path(path: &str) -> bool {
    path == "/websocket" || path == "/websocket/"
}

/// The DDP endpoint without the router: the HTTP phase (`server::serve_http`) calls this for
/// [`is_ddp_path`] requests, which every DDP connection starts with. It
/// runs what the router's stack runs for that path, in the same order:
/// the `Host` checks ([`host_guard`]), the replay refusal
/// ([`replay_guard`]), then [`websocket`] (the origin check and the `101`),
/// and [`keep_alive_or_close`]'s decision on any other answer. The
/// Socket.IO layer and guard pass these paths on untouched. Skipping the
/// router's matching and the middlewares' boxed futures is a few percent
/// of a join's CPU (BENCHMARKS.md, "Joins: the DDP handshake").
pub(crate) async fn ddp_door(ctx: Ctx, req: Request) -> Response {
    let ka = req.extensions().get::<Arc<KeepAlive>>().cloned();
    let mut res = if let Some(refused) = host_refusal(&ctx, req.headers()) {
        refused
    } else if ctx.state.is_replaying() {
        replay_refusal(&ctx)
    } else {
        websocket(State(ctx.clone()), req).await
    };
    if res.status() != StatusCode::SWITCHING_PROTOCOLS {
        close_unless_kept(&ctx, ka, &mut res);
    }
    res
}

/// Whether the connection stays open after this answer (HTTP/1.1
/// keep-alive, see `HttpContext::keep_open`): when not, the answer says
/// `Connection: close` and hyper closes after it. Decided per answer rather
/// than by turning keep-alive off in hyper, which would also put `close`
/// into the `101`'s `Connection` header (clients refuse that). A client's
/// own `Connection: close`, or HTTP/1.0 without keep-alive, is honoured by
/// hyper. Socket.IO's long-polling requests are left as they were: their
/// session already holds a slot, and a polling client sends one request
/// after another (the idle timeout closes the connection when it stops).
async fn keep_alive_or_close(State(ctx): State<Ctx>, req: Request, next: Next) -> Response {
    let polling = is_socketio(&req);
    let ka = req.extensions().get::<Arc<KeepAlive>>().cloned();
    let mut res = next.run(req).await;
    if polling || res.status() == StatusCode::SWITCHING_PROTOCOLS {
        return res;
    }
    close_unless_kept(&ctx, ka, &mut res);
    res
}

/// `Connection: close` on `res` unless its connection stays open.
fn close_unless_kept(ctx: &Ctx, ka: Option<Arc<KeepAlive>>, res: &mut Response) {
    // Without the extension (not served by `server::serve_http`): one answer.
    if !ka.is_some_and(|ka| ctx.keep_open(&ka)) {
        res.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
}

fn is_socketio(req: &Request) -> bool {
    req.uri().path().starts_with("/socket.io/")
}

/// `/socket.io/` (the polling requests and the WebSocket upgrade alike):
/// the `Origin` check of `/websocket` and a deadline for a request body that stalls (engineioxide has none;
/// a long-polling `GET` is answered within the ping interval by itself).
async fn socketio_guard(State(ctx): State<Ctx>, req: Request, next: Next) -> Response {
    if !is_socketio(&req) {
        return next.run(req).await;
    }
    let origin = http::header_str(req.headers(), &header::ORIGIN);
    if !ctx.hosts.origin_allowed(origin, http::header_str(req.headers(), &header::HOST)) {
        tracing::debug!(origin = origin.unwrap_or(""), "socket.io origin not allowed");
        ctx.state.metrics.handshake_failed("origin");
        return text(StatusCode::FORBIDDEN, "origin not allowed\n");
    }
    // The engine keeps the head of a request that opens a session.
    let req = crate::socketio::own_head(req);
    // The session's bytes are counted on the socket its WebSocket runs on,
    // and released by the polls that take them (`socketio::Taps`).
    let wire = req.extensions().get::<Arc<crate::conn::Wire>>();
    if let Some(tap) = ctx.socketio_taps.before(req.method(), req.uri(), wire) {
        let res = next.run(req).await;
        crate::socketio::Taps::polled(&tap);
        return res;
    }
    if req.method() != Method::POST {
        let wire = wire.cloned();
        let res = next.run(req).await;
        // The engine upgraded this socket: roomd follows its frames from
        // here on, to close it with `1009` when a message is too large.
        if res.status() == StatusCode::SWITCHING_PROTOCOLS
            && let (Some(wire), Some(max)) = (wire, ctx.ws_cfg.max_message_size)
        {
            wire.engine_websocket(max);
        }
        return res;
    }
    let limit = ctx.state.conn_config.ping_timeout;
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(res) => res,
        Err(_) => text(StatusCode::REQUEST_TIMEOUT, "request body not received in time\n"),
    }
}

/// Cluster mode, while the node replays the log: the doors that answer
/// from room state (`/websocket`, `/socket.io/`, `/api/`) refuse with
/// `503` and `Retry-After` instead of answering from partial replicas.
/// Refusing the connection, rather than each call, is what every existing
/// client already retries: DDP clients reconnect after a failed upgrade,
/// socket.io-client after a failed handshake, HTTP clients on `503`. The
/// probes, metrics and the web app's files answer as usual.
async fn replay_guard(State(ctx): State<Ctx>, req: Request, next: Next) -> Response {
    if !ctx.state.is_replaying() {
        return next.run(req).await;
    }
    let path = req.uri().path();
    if !(path.starts_with("/websocket") || path.starts_with("/api/") || is_socketio(&req)) {
        return next.run(req).await;
    }
    replay_refusal(&ctx)
}

/// [`replay_guard`]'s answer.
fn replay_refusal(ctx: &Ctx) -> Response {
    ctx.state.metrics.handshake_failed("replaying");
    let mut r = text(StatusCode::SERVICE_UNAVAILABLE, "replaying the room log; retry shortly\n");
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(crate::server::RETRY_AFTER_SECS));
    // The connection is refused, not kept alive for a retry on it: the
    // Socket.IO paths would otherwise stay open (see `keep_alive_or_close`).
    r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// A small uncacheable plain-text answer.
fn text(status: StatusCode, body: impl Into<String>) -> Response {
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8")),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ];
    (status, headers, body.into()).into_response()
}

/// `None` for `GET` and `HEAD` (hyper leaves out the body of a `HEAD`
/// answer); the `405` for any other method.
fn only_get_or_head(method: &Method) -> Option<Response> {
    if method == Method::GET || method == Method::HEAD {
        return None;
    }
    let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    Some(r)
}

async fn not_found(State(ctx): State<Ctx>) -> Response {
    ctx.state.metrics.handshake_failed("not-found");
    text(StatusCode::NOT_FOUND, "not found; the DDP endpoint is /websocket\n")
}

/// `/healthz`, `/readyz`, `/metrics`.
async fn probe(State(ctx): State<Ctx>, req: Request) -> Response {
    if let Some(refused) = only_get_or_head(req.method()) {
        return refused;
    }
    let state = &ctx.state;
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" if state.is_ready() => text(StatusCode::OK, "ready\n"),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, format!("{}\n", state.not_ready_reason())),
        _ => {
            state.metrics.outbound_queued_bytes(state.conn_config.outbound_bytes.used());
            let body = state.render_metrics();
            let mut r = text(StatusCode::OK, body);
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
    }
}

/// `GET /websocket`: checks the upgrade and the origin and answers `101`;
/// the socket's task then runs the DDP connection on the upgraded socket.
async fn websocket(State(ctx): State<Ctx>, mut req: Request) -> Response {
    let metrics = &ctx.state.metrics;
    if ctx.state.is_draining() {
        metrics.handshake_failed("draining");
        return text(StatusCode::SERVICE_UNAVAILABLE, "shutting down, reconnect later\n");
    }
    let accept = match http::websocket_key(req.method(), req.headers()) {
        Ok(key) => derive_accept_key(key),
        Err(UpgradeError::NotUpgrade) => {
            metrics.handshake_failed("bad-request");
            return text(StatusCode::BAD_REQUEST, "expected a WebSocket upgrade\n");
        }
        Err(UpgradeError::Version) => {
            metrics.handshake_failed("bad-request");
            let mut r = text(StatusCode::UPGRADE_REQUIRED, "unsupported WebSocket version\n");
            r.headers_mut().insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
            return r;
        }
    };
    let origin = http::header_str(req.headers(), &header::ORIGIN);
    if !ctx.hosts.origin_allowed(origin, http::header_str(req.headers(), &header::HOST)) {
        tracing::debug!(origin = origin.unwrap_or(""), "origin not allowed");
        metrics.handshake_failed("origin");
        return text(StatusCode::FORBIDDEN, "origin not allowed\n");
    }
    let Some(ka) = req.extensions().get::<Arc<KeepAlive>>().cloned() else {
        // `server::serve_http` adds it to every request; without it no task
        // would take the upgraded socket.
        tracing::error!("request without its connection's hand-over slot");
        return text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n");
    };
    let Ok(accept) = HeaderValue::try_from(accept) else {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n");
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    // Nothing of the request lives on into the connection.
    drop(req);
    // The socket's own task runs the connection once the `101` is out.
    ka.hand_over(on_upgrade);
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    r
}

/// The web app's pages and files: `304` when the browser's copy is current.
async fn web_app(State(ctx): State<Ctx>, req: Request) -> Response {
    let Some(asset) = webapp::asset_for(req.uri().path()) else {
        return not_found(State(ctx)).await;
    };
    if let Some(refused) = only_get_or_head(req.method()) {
        return refused;
    }
    let fresh = asset.matches(req.headers().get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()));
    let mut r = if fresh {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let mut r = Response::new(Body::from(asset.body));
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
        r
    };
    for (name, value) in asset.headers(http::header_str(req.headers(), &header::HOST)) {
        // Every value is built from constants or a checked host; one that
        // still does not fit a header is left out rather than failing.
        if let Ok(v) = HeaderValue::try_from(value) {
            r.headers_mut().insert(name, v);
        }
    }
    r
}

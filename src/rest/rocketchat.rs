//! Rocket.Chat's REST room endpoints (`/api/v1/…`), each a thin adapter
//! onto one or a few DDP methods.
//!
//! Auth is Rocket.Chat's: `X-Auth-Token` (a roomd JWT) and `X-User-Id`
//! (its `sub`); missing or refused is `401` with Rocket.Chat's body. A
//! method's failure is the DDP error (same code, same reason) in
//! Rocket.Chat's REST shape, with a status from [`http_status`]. Dates are
//! ISO strings, as Rocket.Chat's REST API writes them.

use super::{
    Caller, Ctx, Input, InputError, RestState, dates_to_iso, encode, encoded_response, json_response,
    parse_iso,
};
use crate::error::MethodError;
use crate::ids::RoomId;
use crate::method::{
    CreateRoom, GetRoomById, GetRoomIdByNameOrId, GetRoomParticipants, JoinRoom, LeaveRoom, LoadHistory,
    Method, SaveRoomSettings, SendMessage,
};
use crate::room::RoomType;
use crate::time::Millis;
use crate::wire;
use crate::wire::WireError;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{MethodFilter, on};
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// Declares [`Endpoint`] from one table, so the routes, the paths the docs
/// test reads and the dispatch cannot disagree.
macro_rules! endpoints {
    ($($variant:ident = $verb:ident $path:literal,)*) => {
        /// A Rocket.Chat REST endpoint roomd serves.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum Endpoint {
            $($variant,)*
        }

        impl Endpoint {
            const ALL: &'static [Endpoint] = &[$(Endpoint::$variant,)*];

            /// The path below `/api`.
            fn path(self) -> &'static str {
                match self {
                    $(Endpoint::$variant => $path,)*
                }
            }

            fn verb(self) -> MethodFilter {
                match self {
                    $(Endpoint::$variant => MethodFilter::$verb,)*
                }
            }
        }

        /// `"GET /api/v1/me"`, … for every endpoint (`protocol/rest.md`
        /// documents each).
        pub const ROUTES: &[&str] = &[$(concat!(stringify!($verb), " /api", $path),)*];
    };
}

endpoints! {
    Login = POST "/v1/login",
    Me = GET "/v1/me",
    ChannelsCreate = POST "/v1/channels.create",
    GroupsCreate = POST "/v1/groups.create",
    ChannelsSetJoinCode = POST "/v1/channels.setJoinCode",
    ChannelsJoin = POST "/v1/channels.join",
    ChannelsLeave = POST "/v1/channels.leave",
    ChannelsInfo = GET "/v1/channels.info",
    GroupsInfo = GET "/v1/groups.info",
    RoomsInfo = GET "/v1/rooms.info",
    ChannelsHistory = GET "/v1/channels.history",
    ChannelsMembers = GET "/v1/channels.members",
    ChatPostMessage = POST "/v1/chat.postMessage",
    ChatSendMessage = POST "/v1/chat.sendMessage",
}

impl Endpoint {
    /// The method whose rate-limit bucket a request draws from and whose
    /// name its errors carry in `details.method`.
    fn method(self) -> Method {
        match self {
            Endpoint::Login | Endpoint::Me => Method::Login,
            Endpoint::ChannelsCreate => Method::CreateChannel,
            Endpoint::GroupsCreate => Method::CreatePrivateGroup,
            Endpoint::ChannelsSetJoinCode => Method::SaveRoomSettings,
            Endpoint::ChannelsJoin => Method::JoinRoom,
            Endpoint::ChannelsLeave => Method::LeaveRoom,
            Endpoint::ChannelsInfo | Endpoint::GroupsInfo | Endpoint::RoomsInfo => Method::GetRoomById,
            Endpoint::ChannelsHistory => Method::LoadHistory,
            Endpoint::ChannelsMembers => Method::GetRoomParticipants,
            Endpoint::ChatPostMessage | Endpoint::ChatSendMessage => Method::SendMessage,
        }
    }
}

pub(super) fn routes(mut r: Router<Ctx>, rest: Arc<RestState>) -> Router<Ctx> {
    for &ep in Endpoint::ALL {
        let rest = rest.clone();
        r = r.route(
            ep.path(),
            on(ep.verb(), move |State(ctx): State<Ctx>, req: Request| handle(ep, ctx, rest, req)),
        );
    }
    r
}

/// Reads, signs in, limits, runs, answers.
async fn handle(ep: Endpoint, ctx: Ctx, rest: Arc<RestState>, req: Request) -> Response {
    let input = match Input::read(&ctx, req).await {
        Ok(i) => i,
        Err(e) => return input_error(e),
    };
    if ep == Endpoint::Login {
        return login(&ctx, &input).await;
    }
    let (Some(token), Some(uid)) = (input.header("x-auth-token"), input.header("x-user-id")) else {
        return unauthorized();
    };
    let mut caller = match Caller::sign_in(&ctx, token, &input).await {
        Ok(c) if c.user.id.as_str() == uid => c,
        Ok(c) => {
            c.finish().await;
            return unauthorized();
        }
        Err(_) => return unauthorized(),
    };
    let method = ep.method();
    let result = match rest.admit(&ctx, &caller.user.id, method.limit_class()) {
        Ok(()) => run(ep, &mut caller, &input).await,
        Err(e) => Err(e),
    };
    caller.finish().await;
    match result {
        Ok(Answer::Doc(mut body)) => {
            dates_to_iso(&mut body);
            if let Value::Object(o) = &mut body {
                o.insert("success".into(), Value::Bool(true));
            }
            json_response(StatusCode::OK, &body)
        }
        Ok(Answer::Encoded(bytes)) => encoded_response(StatusCode::OK, bytes),
        Err(e) => failure(&ctx, &e, method),
    }
}

/// A successful answer: a document still to be finished (ISO dates,
/// `success`), or, for the hot endpoints, the final bytes ([`encode`]).
enum Answer {
    Doc(Value),
    Encoded(Vec<u8>),
}

/// The endpoint's calls and the shape of its answer (without `success`).
async fn run(ep: Endpoint, c: &mut Caller, input: &Input) -> Result<Answer, MethodError> {
    Ok(Answer::Doc(match ep {
        // Answered by `login` before any caller exists.
        Endpoint::Login => return Err(MethodError::UnrecognizedLogin),
        Endpoint::Me => me(c),
        Endpoint::ChannelsCreate => json!({ "channel": create(c, input, RoomType::Channel).await? }),
        Endpoint::GroupsCreate => json!({ "group": create(c, input, RoomType::Private).await? }),
        Endpoint::ChannelsSetJoinCode => {
            let rid = room_id(c, input).await?;
            let code =
                input.opt_str("joinCode")?.ok_or_else(|| MethodError::matching("joinCode", "a string"))?;
            let change = SaveRoomSettings::from_pairs(rid.clone(), &[("joinCode", &Value::from(code))]);
            c.call_parsed(Method::SaveRoomSettings, change).await?;
            json!({ "channel": room_doc(c, rid).await? })
        }
        Endpoint::ChannelsJoin => {
            let rid = room_id(c, input).await?;
            let code = input.opt_str("joinCode")?.map(str::to_owned);
            c.call(JoinRoom { rid: rid.clone(), code }).await?;
            json!({ "channel": room_doc(c, rid).await? })
        }
        Endpoint::ChannelsLeave => {
            let rid = room_id(c, input).await?;
            let before = room_doc(c, rid.clone()).await?;
            c.call(LeaveRoom { rid: rid.clone() }).await?;
            // A private room is no longer readable once left.
            let after = room_doc(c, rid).await.unwrap_or(before);
            json!({ "channel": after })
        }
        Endpoint::ChannelsInfo => json!({ "channel": info(c, input, Some(RoomType::Channel)).await? }),
        Endpoint::GroupsInfo => json!({ "group": info(c, input, Some(RoomType::Private)).await? }),
        Endpoint::RoomsInfo => json!({ "room": info(c, input, None).await? }),
        Endpoint::ChannelsHistory => {
            let rid = room_id(c, input).await?;
            let end = match input.opt_str("latest")? {
                Some(s) => Some(Millis(
                    parse_iso(s).ok_or_else(|| MethodError::matching("latest", "an ISO 8601 UTC date"))?,
                )),
                None => None,
            };
            let count = input.opt_uint("count")?.unwrap_or(20);
            // `offset` pages from `latest` (the way `rocketchat-api`
            // pages); `loadHistory` caps the window it reads.
            let offset = input.opt_uint("offset")?.unwrap_or(0);
            let limit = Some(offset.saturating_add(count));
            let all = c.call(LoadHistory { rid, end, limit }).await?;
            let messages =
                wire::room::history(all.get(usize::try_from(offset).unwrap_or(usize::MAX)..).unwrap_or(&[]));
            json!({ "messages": messages, "count": messages.len(), "offset": offset })
        }
        Endpoint::ChannelsMembers => members(c, input).await?,
        Endpoint::ChatPostMessage => {
            let (rid, channel) = match (input.opt_str("roomId")?, input.opt_str("channel")?) {
                (Some(rid), _) => (rid.to_owned(), rid.to_owned()),
                (None, Some(ch)) => {
                    let name = ch.strip_prefix('#').unwrap_or(ch);
                    (by_name(c, name).await?.as_str().to_owned(), ch.to_owned())
                }
                (None, None) => return Err(MethodError::matching("roomId", "a string (or channel)")),
            };
            let msg = input.opt_str("text")?.unwrap_or("").to_owned();
            let message = c.call(SendMessage { rid, msg, id: None, tmid: None }).await?;
            return Ok(Answer::Encoded(encode::posted_message(&channel, &message)));
        }
        Endpoint::ChatSendMessage => {
            let message = match input.get("message") {
                Some(Value::Object(m)) => m,
                _ => return Err(MethodError::matching("message", "an object {rid, msg, _id?}")),
            };
            let send = (|| {
                Ok(SendMessage {
                    rid: text(message, "rid")?.ok_or_else(|| MethodError::matching("rid", "a string"))?,
                    msg: text(message, "msg")?.unwrap_or_default(),
                    id: text(message, "_id")?,
                    tmid: text(message, "tmid")?,
                })
            })();
            let message = c.call_parsed(Method::SendMessage, send).await?;
            return Ok(Answer::Encoded(encode::sent_message(&message)));
        }
    }))
}

/// A string field of a JSON object parameter.
fn text(o: &Map<String, Value>, key: &str) -> Result<Option<String>, MethodError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(MethodError::matching(key, "a string")),
    }
}

/// The room document of `rid` as the caller may see it (`getRoomById`).
async fn room_doc(c: &mut Caller, rid: String) -> Result<Value, MethodError> {
    Ok(wire::room::room_doc(&c.call(GetRoomById { rid }).await?.view()))
}

/// `POST /api/v1/login` with `{"resume": "<JWT>"}`: the DDP `login`;
/// anything else (a password) is refused as Rocket.Chat refuses a bad one.
async fn login(ctx: &Ctx, input: &Input) -> Response {
    let Ok(Some(token)) = input.opt_str("resume") else {
        return json_response(
            StatusCode::UNAUTHORIZED,
            &json!({"status": "error", "error": "Unauthorized", "message": "Unauthorized: roomd signs in with {\"resume\": \"<JWT>\"} only"}),
        );
    };
    match Caller::sign_in(ctx, token, input).await {
        Ok(c) => {
            let me = me(&c);
            let body = json!({
                "status": "success",
                "data": { "authToken": token, "userId": c.user.id, "me": me },
            });
            c.finish().await;
            json_response(StatusCode::OK, &body)
        }
        Err(e) => {
            let w = e.to_wire(Method::Login.name());
            json_response(
                StatusCode::UNAUTHORIZED,
                &json!({"status": "error", "error": "Unauthorized", "message": w.reason}),
            )
        }
    }
}

/// The signed-in user as `me` describes them.
fn me(c: &Caller) -> Value {
    let u = &c.user;
    json!({
        "_id": u.id,
        "username": u.username,
        "name": u.name.as_deref().unwrap_or(&u.username),
        "status": "online",
        "active": true,
        "roles": u.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        "utcOffset": 0,
    })
}

/// `channels.create` / `groups.create`: the DDP create with Rocket.Chat's
/// REST fields; roomd's room options may also be top-level fields.
async fn create(c: &mut Caller, input: &Input, kind: RoomType) -> Result<Value, MethodError> {
    if input.opt_bool("excludeSelf")? == Some(true) {
        // The creator is the room's first owner in roomd.
        return Err(MethodError::matching("excludeSelf", "false (the creator is always a member)"));
    }
    let mut extra = match input.get("extraData") {
        None => Map::new(),
        Some(Value::Object(o)) => o.clone(),
        Some(_) => return Err(MethodError::matching("extraData", "an object")),
    };
    for key in ["maxParticipants", "locked", "guestAccess", "guestChat"] {
        if let Some(v) = input.get(key) {
            extra.insert(key.into(), v.clone());
        }
    }
    let read_only = Value::Bool(input.opt_bool("readOnly")?.unwrap_or(false));
    let create = CreateRoom::from_fields(
        kind,
        input.get("name"),
        input.get("members"),
        Some(&read_only),
        input.get("customFields"),
        Some(&extra),
    );
    let method = match kind {
        RoomType::Private => Method::CreatePrivateGroup,
        _ => Method::CreateChannel,
    };
    Ok(wire::room::room_doc(&c.call_parsed(method, create).await?.view()))
}

/// The room a request names: `roomId`, or `roomName` looked up as the DDP
/// `getRoomIdByNameOrId` does (only rooms the caller may see).
async fn room_id(c: &mut Caller, input: &Input) -> Result<String, MethodError> {
    if let Some(rid) = input.opt_str("roomId")? {
        return Ok(rid.to_owned());
    }
    match input.opt_str("roomName")? {
        Some(name) => Ok(by_name(c, name).await?.as_str().to_owned()),
        None => Err(MethodError::matching("roomId", "a string (or roomName)")),
    }
}

async fn by_name(c: &mut Caller, name: &str) -> Result<RoomId, MethodError> {
    c.call(GetRoomIdByNameOrId { name_or_id: name.to_owned() }).await
}

/// `*.info`: the room document, refused as not found when it is not of the
/// endpoint's kind (`channels.info` on a private group).
async fn info(c: &mut Caller, input: &Input, kind: Option<RoomType>) -> Result<Value, MethodError> {
    let rid = room_id(c, input).await?;
    let room = c.call(GetRoomById { rid }).await?;
    match kind {
        Some(k) if room.kind != k => Err(MethodError::InvalidRoom),
        _ => Ok(wire::room::room_doc(&room.view())),
    }
}

/// Most members one `channels.members` page lists.
const MAX_MEMBERS_PAGE: u64 = 1000;

/// `channels.members`: the room's participants (`getRoomParticipants`, so
/// for members only), as Rocket.Chat lists users, paged by `offset`/`count`.
async fn members(c: &mut Caller, input: &Input) -> Result<Value, MethodError> {
    let rid = room_id(c, input).await?;
    let offset = input.opt_uint("offset")?.unwrap_or(0) as usize;
    let count = input.opt_uint("count")?.unwrap_or(50).min(MAX_MEMBERS_PAGE) as usize;
    let all = c.call(GetRoomParticipants { rid }).await?.participants;
    let users = &c.session.server().users;
    let members: Vec<Value> = all
        .iter()
        .skip(offset)
        .take(count)
        .map(|p| match &p.user {
            Some(uid) => {
                let username = users.by_id(uid).map(|u| u.username);
                json!({ "_id": uid, "username": username, "name": p.display_name, "status": "online" })
            }
            // A guest of the meeting family: no account, no username.
            None => json!({ "_id": p.id, "username": Value::Null, "name": p.display_name, "guest": true }),
        })
        .collect();
    Ok(json!({ "members": members, "count": members.len(), "offset": offset, "total": all.len() }))
}

/// A body or query that could not be read.
fn input_error(e: InputError) -> Response {
    let (status, reason) = match e {
        InputError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "Request body too large".to_owned()),
        InputError::Timeout => (StatusCode::REQUEST_TIMEOUT, "Request body not received in time".to_owned()),
        InputError::Malformed(what) => (StatusCode::BAD_REQUEST, format!("Invalid {what}")),
    };
    let code = "error-invalid-request";
    json_response(
        status,
        &json!({"success": false, "error": format!("{reason} [{code}]"), "errorType": code}),
    )
}

/// `401` as Rocket.Chat answers a request without a valid sign-in.
fn unauthorized() -> Response {
    json_response(
        StatusCode::UNAUTHORIZED,
        &json!({"status": "error", "message": "You must be logged in to do this."}),
    )
}

/// REST's status for an error: the status `error.rs` gives every error (its
/// one exhaustive mapping), folded onto the few Rocket.Chat's REST API
/// uses: `401` signed out, `403` refused by a permission or a room rule,
/// `429` rate limited, `500` a server fault, `400` anything else.
fn http_status(w: &WireError) -> StatusCode {
    match w.status {
        401 => StatusCode::UNAUTHORIZED,
        403 => StatusCode::FORBIDDEN,
        429 => StatusCode::TOO_MANY_REQUESTS,
        500..=599 => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// A method's failure in Rocket.Chat's REST shape:
/// `{"success": false, "error": "<reason> [<code>]", "errorType": "<code>", "details"?}`;
/// a rate limit adds `Retry-After` and `X-RateLimit-*`.
fn failure(ctx: &Ctx, e: &MethodError, method: Method) -> Response {
    let w = e.to_wire(method.name());
    let status = http_status(&w);
    if status == StatusCode::UNAUTHORIZED {
        return unauthorized();
    }
    let code = w.error.as_string();
    let mut body = json!({ "success": false, "error": format!("{} [{code}]", w.reason), "errorType": code });
    let details: Map<String, Value> =
        w.details.into_iter().filter(|(k, _)| k != "method" && k != "statusCode").collect();
    if !details.is_empty() {
        body["details"] = Value::Object(details);
    }
    let mut res = json_response(status, &body);
    if let (MethodError::TooManyRequests(ms), Some(secs)) = (e, super::retry_after_secs(e)) {
        let limits = &ctx.state.session_limits;
        let spec = match method.limit_class() {
            crate::limits::MethodClass::Message => limits.messages,
            crate::limits::MethodClass::Join => limits.joins,
            crate::limits::MethodClass::Other => limits.other,
        };
        let reset = crate::time::Millis::now().0.saturating_add(i64::try_from(*ms).unwrap_or(i64::MAX));
        let h = res.headers_mut();
        h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        h.insert("x-ratelimit-limit", HeaderValue::from(spec.burst));
        h.insert("x-ratelimit-remaining", HeaderValue::from(0u32));
        h.insert("x-ratelimit-reset", HeaderValue::from(reset));
    }
    res
}

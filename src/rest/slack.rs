//! Slack's Web API `channels.join` (join-or-create by name) and its
//! replacement `conversations.join` (join by id), as thin adapters: each is
//! one typed call of the room core ([`JoinOrCreateChannel`],
//! [`JoinChannel`]) whose typed answer ([`ChannelEntry`]) this door shapes.
//!
//! Slack answers HTTP 200 with `{"ok": false, "error": "<code>"}` for every
//! failure except a rate limit (`429`, `Retry-After`, `ratelimited`); the
//! codes come from [`slack_code`], one exhaustive match. The token is a
//! roomd JWT, sent as `Authorization: Bearer` or as a `token` parameter.

use super::{Caller, Ctx, Input, InputError, RestState, json_response, retry_after_secs};
use crate::auth::AuthError;
use crate::error::MethodError;
use crate::method::{JoinChannel, JoinOrCreateChannel, Method};
use crate::room::view::{ChannelEntry, ChannelRoom, RoomInfo};
use crate::room::{RoomError, RoomType};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::post;
use serde_json::{Value, json};
use std::sync::Arc;

/// Every Slack route (`protocol/rest.md` documents each).
pub const ROUTES: &[&str] = &["POST /api/channels.join", "POST /api/conversations.join"];

/// Slack's longest channel name, in characters.
const MAX_NAME_CHARS: usize = 80;

/// Why a channel name breaks Slack's naming rules; each is a Slack error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    /// Nothing but an optional `#`.
    Required,
    /// Only hyphens and underscores.
    Punctuation,
    /// Longer than [`MAX_NAME_CHARS`].
    MaxLength,
    /// Upper case, spaces, periods or other characters besides `a-z`,
    /// `0-9`, `-` and `_`.
    Specials,
    /// Nothing usable left after normalising.
    Invalid,
}

impl NameError {
    /// The Slack error code.
    pub fn code(self) -> &'static str {
        match self {
            NameError::Required => "invalid_name_required",
            NameError::Punctuation => "invalid_name_punctuation",
            NameError::MaxLength => "invalid_name_maxlength",
            NameError::Specials => "invalid_name_specials",
            NameError::Invalid => "invalid_name",
        }
    }
}

fn allowed(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'
}

/// The channel `raw` names under Slack's rules (a leading `#` dropped):
/// with `validate`, the name as given or the rule it breaks; without, the
/// name normalised as Slack does (trimmed, lower case, spaces and periods
/// to hyphens, other characters dropped, at most 80 characters), or the
/// rule nothing could fix (empty, only punctuation).
pub fn channel_name(raw: &str, validate: bool) -> Result<String, NameError> {
    let raw = raw.strip_prefix('#').unwrap_or(raw);
    let name: String = if validate {
        if raw.is_empty() {
            return Err(NameError::Required);
        }
        if raw.chars().count() > MAX_NAME_CHARS {
            return Err(NameError::MaxLength);
        }
        if !raw.chars().all(allowed) {
            return Err(NameError::Specials);
        }
        raw.to_owned()
    } else {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(NameError::Required);
        }
        let normalised: String = trimmed
            .chars()
            .flat_map(char::to_lowercase)
            .map(|c| if c == ' ' || c == '.' { '-' } else { c })
            .filter(|c| allowed(*c))
            .take(MAX_NAME_CHARS)
            .collect();
        if normalised.is_empty() {
            return Err(NameError::Invalid);
        }
        normalised
    };
    if name.chars().all(|c| c == '-' || c == '_') {
        return Err(NameError::Punctuation);
    }
    Ok(name)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    ChannelsJoin,
    ConversationsJoin,
}

pub(super) fn routes(r: Router<Ctx>, rest: Arc<RestState>) -> Router<Ctx> {
    let r2 = rest.clone();
    r.route(
        "/channels.join",
        post(move |State(ctx): State<Ctx>, req: Request| handle(Call::ChannelsJoin, ctx, rest, req)),
    )
    .route(
        "/conversations.join",
        post(move |State(ctx): State<Ctx>, req: Request| handle(Call::ConversationsJoin, ctx, r2, req)),
    )
}

/// A Slack failure: its code and, for a refusal by a room rule, roomd's
/// own error in `detail`.
struct Failure {
    code: &'static str,
    detail: Option<String>,
    retry_after: Option<u64>,
}

impl Failure {
    fn plain(code: &'static str) -> Self {
        Failure { code, detail: None, retry_after: None }
    }
}

impl From<MethodError> for Failure {
    fn from(e: MethodError) -> Self {
        let w = e.to_wire("");
        Failure {
            code: slack_code(&e),
            detail: Some(format!("{} [{}]", w.reason, w.error.as_string())),
            retry_after: retry_after_secs(&e),
        }
    }
}

async fn handle(call: Call, ctx: Ctx, rest: Arc<RestState>, req: Request) -> Response {
    let input = match Input::read(&ctx, req).await {
        Ok(i) => i,
        Err(InputError::Timeout) => return answer(Err(Failure::plain("request_timeout"))),
        Err(InputError::TooLarge) => return answer(Err(Failure::plain("invalid_arguments"))),
        Err(InputError::Malformed(_)) => return answer(Err(Failure::plain("invalid_form_data"))),
    };
    // Auth schemes are case-insensitive (RFC 9110).
    let bearer = input.header("authorization").and_then(|h| {
        let (scheme, token) = h.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    });
    let token = match (bearer, input.opt_str("token")) {
        (Some(t), _) | (None, Ok(Some(t))) if !t.is_empty() => t.to_owned(),
        _ => return answer(Err(Failure::plain("not_authed"))),
    };
    let mut caller = match Caller::sign_in(&ctx, &token, &input).await {
        Ok(c) => c,
        Err(e) => {
            let code = match e {
                MethodError::Auth(AuthError::Revoked) => "token_revoked",
                _ => "invalid_auth",
            };
            return answer(Err(Failure::plain(code)));
        }
    };
    let result = match rest.admit(&ctx, &caller.user.id, Method::JoinRoom.limit_class()) {
        Ok(()) => match call {
            Call::ChannelsJoin => channels_join(&mut caller, &input).await,
            Call::ConversationsJoin => conversations_join(&mut caller, &input).await,
        },
        Err(e) => Err(e.into()),
    };
    caller.finish().await;
    answer(result)
}

fn answer(result: Result<Value, Failure>) -> Response {
    match result {
        Ok(mut body) => {
            if let Value::Object(o) = &mut body {
                o.insert("ok".into(), Value::Bool(true));
            }
            json_response(StatusCode::OK, &body)
        }
        Err(f) => {
            let mut body = json!({ "ok": false, "error": f.code });
            if let Some(d) = f.detail {
                body["detail"] = Value::from(d);
            }
            match f.retry_after {
                Some(secs) => {
                    let mut res = json_response(StatusCode::TOO_MANY_REQUESTS, &body);
                    res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
                    res
                }
                None => json_response(StatusCode::OK, &body),
            }
        }
    }
}

/// `channels.join`: join the public channel named `name`, creating it
/// (the caller its creator) if no room has that name: one operation of the
/// room core ([`JoinOrCreateChannel`]).
async fn channels_join(c: &mut Caller, input: &Input) -> Result<Value, Failure> {
    let raw = input.opt_str("name")?.ok_or(Failure::plain("missing_argument"))?;
    let validate = input.opt_bool("validate")?.unwrap_or(false);
    let name = channel_name(raw, validate).map_err(|e| Failure::plain(e.code()))?;
    let entry = match c.call(JoinOrCreateChannel { name }).await {
        // A private group's name is taken, and it cannot be joined this way.
        Err(MethodError::Room(RoomError::NotAChannel)) => return Err(Failure::plain("name_taken")),
        r => r?,
    };
    Ok(match entry {
        ChannelEntry::Created(now) | ChannelEntry::Joined(now) => json!({ "channel": full_channel(&now) }),
        ChannelEntry::AlreadyIn { before, .. } => {
            json!({ "already_in_channel": true, "channel": limited_channel(&before) })
        }
    })
}

/// `conversations.join`: join the public channel with id `channel`.
async fn conversations_join(c: &mut Caller, input: &Input) -> Result<Value, Failure> {
    let rid = input.opt_str("channel")?.ok_or(Failure::plain("missing_argument"))?.to_owned();
    Ok(match c.call(JoinChannel { rid }).await? {
        ChannelEntry::Created(now) | ChannelEntry::Joined(now) => json!({ "channel": full_channel(&now) }),
        ChannelEntry::AlreadyIn { now, .. } => json!({
            "channel": full_channel(&now),
            "warning": "already_in_channel",
            "response_metadata": { "warnings": ["already_in_channel"] },
        }),
    })
}

/// The channel object of a join, from the room as read after it.
fn full_channel(now: &ChannelRoom) -> Value {
    let r = &now.room;
    let text = |v: Option<&str>| json!({ "value": v.unwrap_or(""), "creator": "", "last_set": 0 });
    json!({
        "id": r.id,
        "name": r.name,
        "is_channel": true,
        "created": r.created_at.0 / 1000,
        "creator": r.creator.id,
        "is_archived": r.archived,
        "is_general": r.default,
        "name_normalized": r.name,
        "is_shared": false,
        "is_org_shared": false,
        "is_member": true,
        "is_private": r.kind == RoomType::Private,
        "is_mpim": false,
        "members": now.members,
        "topic": text(r.topic.as_deref()),
        "purpose": text(r.description.as_deref()),
        "previous_names": [],
    })
}

/// The limited channel object Slack returns when already in the channel.
fn limited_channel(r: &RoomInfo) -> Value {
    json!({
        "id": r.id,
        "name": r.name,
        "created": r.created_at.0 / 1000,
        "creator": r.creator.id,
        "is_archived": r.archived,
        "is_general": r.default,
    })
}

/// Slack's error code for every roomd error: the one mapping for this door
/// (exhaustive, so a new error must be given a code here).
fn slack_code(e: &MethodError) -> &'static str {
    match e {
        MethodError::UnknownMethod(_) => "unknown_method",
        MethodError::Match(_) => "invalid_arguments",
        MethodError::InvalidUser => "not_authed",
        MethodError::Auth(AuthError::Revoked) => "token_revoked",
        MethodError::Auth(_) | MethodError::UnrecognizedLogin => "invalid_auth",
        MethodError::InvalidRoom | MethodError::RoomNotFound => "channel_not_found",
        MethodError::InvalidName => "invalid_name_required",
        MethodError::InvalidUsername(_) => "user_not_found",
        MethodError::MessageTooLong(_) => "msg_too_long",
        MethodError::SubNotAllowed => "no_permission",
        MethodError::TooManyRequests(_) | MethodError::TooManySubscriptions => "ratelimited",
        MethodError::ReplyTooLarge(_) => "internal_error",
        MethodError::Room(r) => match r {
            RoomError::Archived | RoomError::Inactive => "is_archived",
            // `channels.join` answers `name_taken` instead (see there).
            RoomError::NotAChannel => "method_not_supported_for_channel_type",
            RoomError::DuplicateName(_) => "name_taken",
            RoomError::InvalidRoomName(_) => "invalid_name",
            // Slack's "you may not": a permission (create-c), or a room rule
            // (join code, lock, capacity); `detail` says which.
            RoomError::ActionNotAllowed(_)
            | RoomError::NotAllowed
            | RoomError::GuestsNotAllowed
            | RoomError::Locked
            | RoomError::CodeRequired
            | RoomError::CodeInvalid
            | RoomError::Full => "restricted_action",
            RoomError::NotInRoom | RoomError::TargetNotInRoom => "not_in_channel",
            RoomError::LastOwner
            | RoomError::RemoveLastOwner
            | RoomError::AlreadyHasRole(_)
            | RoomError::LacksRole(_)
            | RoomError::CantInviteDirect
            | RoomError::DuplicateMessage
            | RoomError::InvalidSettings(_)
            | RoomError::InvalidSettingValue(_) => "invalid_arguments",
            RoomError::TooLarge(_) => "msg_too_long",
            RoomError::Storage | RoomError::Unavailable => "internal_error",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised_as_slack_does() {
        assert_eq!(channel_name("General", false).unwrap(), "general");
        assert_eq!(channel_name("#Team Room.2", false).unwrap(), "team-room-2");
        assert_eq!(channel_name("  ünïcode!ok  ", false).unwrap(), "ncodeok");
        assert_eq!(channel_name(&"a".repeat(100), false).unwrap().len(), MAX_NAME_CHARS);
        assert_eq!(channel_name("#", false), Err(NameError::Required));
        assert_eq!(channel_name("   ", false), Err(NameError::Required));
        assert_eq!(channel_name("--", false), Err(NameError::Punctuation));
        assert_eq!(channel_name(" . ", false), Err(NameError::Punctuation));
        assert_eq!(channel_name("!!!", false), Err(NameError::Invalid));
    }

    #[test]
    fn validate_refuses_with_the_rule_broken() {
        assert_eq!(channel_name("#ok-name_1", true).unwrap(), "ok-name_1");
        assert_eq!(channel_name("", true), Err(NameError::Required));
        assert_eq!(channel_name("#", true), Err(NameError::Required));
        assert_eq!(channel_name(&"a".repeat(81), true), Err(NameError::MaxLength));
        assert_eq!(channel_name(&"a".repeat(80), true).unwrap().len(), 80);
        assert_eq!(channel_name("General", true), Err(NameError::Specials));
        assert_eq!(channel_name("a b", true), Err(NameError::Specials));
        assert_eq!(channel_name("a.b", true), Err(NameError::Specials));
        assert_eq!(channel_name("_-_", true), Err(NameError::Punctuation));
        let codes: Vec<_> = [
            NameError::Required,
            NameError::Punctuation,
            NameError::MaxLength,
            NameError::Specials,
            NameError::Invalid,
        ]
        .iter()
        .map(|e| e.code())
        .collect();
        assert!(codes.iter().all(|c| c.starts_with("invalid_name")), "{codes:?}");
    }

    #[test]
    fn room_rules_become_slack_codes() {
        assert_eq!(slack_code(&RoomError::Archived.into()), "is_archived");
        assert_eq!(slack_code(&RoomError::CodeRequired.into()), "restricted_action");
        assert_eq!(slack_code(&RoomError::DuplicateName("x".into()).into()), "name_taken");
        assert_eq!(slack_code(&MethodError::TooManyRequests(5)), "ratelimited");
    }
}

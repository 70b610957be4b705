//! `createChannel` and `createPrivateGroup`
//! `(name, members=[], readOnly=false, customFields={}, extraData={})`.

use super::{MethodResult, Params};
use crate::error::MethodError;
use crate::lobby::ChannelJoin;
use crate::permissions::{Permission, allowed};
use crate::room::state::valid_room_name;
use crate::room::{CreateOptions, RoomError, RoomRoles, RoomState, RoomType};
use crate::session::Session;
use serde_json::{Map, Value};

/// `perm` is the calling method's [`permission`](super::Method::permission).
pub(super) async fn call(s: &mut Session, p: Params, t: RoomType, perm: Option<Permission>) -> MethodResult {
    let who = s.require_user()?;
    if perm.is_some_and(|perm| !allowed(perm, &who, RoomRoles::NONE)) {
        return Err(RoomError::ActionNotAllowed("Creating a room").into());
    }
    let name = p.opt_str(0, "name")?.unwrap_or("");
    if name.trim().is_empty() {
        return Err(MethodError::InvalidName);
    }
    if !valid_room_name(name) {
        return Err(RoomError::InvalidRoomName(name.to_owned()).into());
    }
    let usernames = p.opt_str_list(1, "members")?;
    let mut opts = CreateOptions {
        read_only: p.opt_bool(2, "readOnly")?.unwrap_or(false),
        custom_fields: match p.opt_obj(3, "customFields")? {
            Some(o) => {
                super::params::custom_fields(o)?;
                o.clone()
            }
            None => Map::new(),
        },
        ..CreateOptions::default()
    };
    if let Some(extra) = p.opt_obj(4, "extraData")? {
        // Rocket.Chat's own extraData keys (broadcast, encrypted, teamId…)
        // are accepted and ignored; roomd reads its room options.
        match extra.get("maxParticipants") {
            None | Some(Value::Null) => {}
            Some(v) => match v.as_u64() {
                Some(n) if n >= 1 && n <= u64::from(u32::MAX) => opts.max_participants = Some(n as u32),
                _ => {
                    return Err(MethodError::matching("extraData.maxParticipants", "a positive integer"));
                }
            },
        }
        for (key, slot) in [
            ("locked", &mut opts.locked),
            ("guestAccess", &mut opts.guest_access),
            ("guestChat", &mut opts.guest_chat),
        ] {
            match extra.get(key) {
                None | Some(Value::Null) => {}
                Some(Value::Bool(b)) => *slot = *b,
                Some(_) => return Err(MethodError::matching(format!("extraData.{key}"), "a boolean")),
            }
        }
    }
    // Unknown usernames are skipped, as Rocket.Chat does.
    let mut others = Vec::new();
    for u in &usernames {
        if let Some(r) = s.server().users.by_username(u)
            && r.id != who.id
            && !others.iter().any(|o: &crate::room::UserRef| o.id == r.id)
        {
            others.push(r);
        }
    }
    RoomState::check_initial_capacity(1 + others.len(), opts.max_participants)?;
    let mut doc = s.server().create_room(name.to_owned(), t, &who, others, opts).await?;
    if let Value::Object(o) = &mut doc {
        let id = o.get("_id").cloned().unwrap_or(Value::Null);
        o.insert("rid".into(), id);
        o.insert("inserted".into(), Value::Bool(true));
    }
    Ok(Some(doc))
}

/// Slack's `channels.join` by name: the public channel named `name` in any
/// letter case, or a new one of the caller's, decided in one step by the
/// lobby (of concurrent callers exactly one creates; the others get its
/// room). Creating needs `create-c` and a token of the caller's room
/// creation budget, taken only by the caller who creates and given back if
/// the creation fails. The caller joins an existing room itself (its rules:
/// type, archive, join code, lock, capacity).
pub(crate) async fn join_or_create_channel(s: &mut Session, name: &str) -> Result<ChannelJoin, MethodError> {
    let who = s.require_user()?;
    if !valid_room_name(name) {
        return Err(RoomError::InvalidRoomName(name.to_owned()).into());
    }
    let server = s.server().clone();
    let limits = &server.session_limits;
    let mut charged = false;
    let r = server
        .channel_or_create(name, &who, || {
            if !allowed(Permission::CreateC, &who, RoomRoles::NONE) {
                return Err(MethodError::from(RoomError::ActionNotAllowed("Creating a room")));
            }
            if limits.rate_limits {
                let now = tokio::time::Instant::now();
                server.room_creations.try_take(&who.id, limits.room_creation_spec(), now).map_err(
                    |wait| {
                        server.metrics.rate_limited("room_creation");
                        MethodError::TooManyRequests(crate::limits::millis_ceil(wait))
                    },
                )?;
                charged = true;
            }
            Ok(())
        })
        .await;
    if charged && r.is_err() {
        server.room_creations.refund(&who.id);
    }
    r
}

//! `loadHistory(rid, end, limit, lastSeen)`: newest first, system messages
//! included, from the room's bounded in-memory history. A page also stops
//! at half the connection's unsent-byte budget, so a history reply always
//! fits beside the events queued for the same client; clients page on with
//! `end` = the oldest `ts` they got.

use super::{MethodResult, Params, room};
use crate::error::MethodError;
use crate::room::{RoomCommand, RoomError};
use crate::session::Session;
use serde_json::json;

/// Upper bound on one page, whatever the client asks for.
const MAX_LIMIT: u64 = 1000;

pub(super) async fn call(s: &mut Session, p: Params) -> MethodResult {
    let who = s.require_user()?;
    let rid = p.str(0, "rid")?;
    let end = p.opt_date(1, "end")?;
    let limit = p.opt_uint(2, "limit")?.unwrap_or(20).min(MAX_LIMIT) as usize;
    let _last_seen = p.opt_date(3, "lastSeen")?;
    let room = room(s, rid)?;
    let max_bytes = s.conn().max_frame_bytes() / 2;
    let messages = room
        .ask(|tx| RoomCommand::History { uid: who.id, end, after: None, limit, max_bytes, respond_to: tx })
        .await?;
    Ok(Some(json!({"messages": messages, "unreadNotLoaded": 0})))
}

/// `loadMissedMessages(rid, {$date})`, what Rocket.Chat clients call after a
/// reconnect: the room's messages after that time, newest first (as
/// Rocket.Chat sorts them), system messages included, with `loadHistory`'s
/// checks and bounds (at most 1000 messages and half the connection's byte
/// budget: a client that gets that many pages on with `loadHistory`).
/// Unlike `loadHistory`, a guest holding a seat may call it: a guest hears
/// the room's chat live, so what it missed while its connection was gone is
/// what it would have heard; the room serves it nothing older than its seat.
pub(super) async fn missed(s: &mut Session, p: Params) -> MethodResult {
    let uid = match (s.user(), s.guest_id()) {
        (Some(u), _) => Some(u.id.clone()),
        (None, g) => g.cloned(),
    };
    let rid = p.str(0, "rid")?;
    let after = p
        .opt_date(1, "lastUpdate")?
        .ok_or_else(|| crate::error::MethodError::matching("lastUpdate", "a {\"$date\": ms} date"))?;
    let room = room(s, rid)?;
    // A guest that never called `join-room` holds no seat anywhere.
    let uid = uid.ok_or(MethodError::Room(RoomError::NotAllowed))?;
    let max_bytes = s.conn().max_frame_bytes() / 2;
    let limit = MAX_LIMIT as usize;
    let messages = room
        .ask(|tx| RoomCommand::History {
            uid,
            end: None,
            after: Some(after),
            limit,
            max_bytes,
            respond_to: tx,
        })
        .await?;
    Ok(Some(serde_json::Value::Array(messages)))
}

//! `loadHistory(rid, end, limit, lastSeen)`: newest first, system messages
//! included, from the room's bounded in-memory history. A page also stops
//! at half the connection's unsent-byte budget, so a history reply always
//! fits beside the events queued for the same client; clients page on with
//! `end` = the oldest `ts` they got.

use super::{Call, Method, MethodResult, Params, room};
use crate::error::MethodError;
use crate::room::{HistoryParams, Message, RoomCommand, RoomError};
use crate::session::Session;
use crate::time::Millis;
use crate::wire;
use serde_json::{Value, json};
use std::sync::Arc;

/// Upper bound on one page, whatever the client asks for.
const MAX_LIMIT: u64 = 1000;

/// `loadHistory`'s parameters.
#[derive(Debug, Clone)]
pub(crate) struct LoadHistory {
    pub(crate) rid: String,
    /// Only messages before this time; `None` for the newest.
    pub(crate) end: Option<Millis>,
    /// At most this many (20 unless given; capped at [`MAX_LIMIT`]).
    pub(crate) limit: Option<u64>,
}

impl Call for LoadHistory {
    /// The page's messages, newest first, as the room's history holds them;
    /// each door shapes them ([`crate::wire::room::history`]).
    type Output = Vec<Arc<Message>>;

    fn method(&self) -> Method {
        Method::LoadHistory
    }

    fn precheck(s: &Session, _: Method) -> Result<(), MethodError> {
        s.require_user().map(drop)
    }

    async fn run(self, s: &mut Session) -> Result<Vec<Arc<Message>>, MethodError> {
        let who = s.require_user()?;
        let limit = self.limit.unwrap_or(20).min(MAX_LIMIT) as usize;
        let room = room(s, &self.rid).await?;
        let max_bytes = s.conn().max_frame_bytes() / 2;
        let end = self.end;
        Ok(room
            .ask(|tx| RoomCommand::History {
                params: Box::new(HistoryParams { uid: who.id, end, after: None, limit, max_bytes }),
                respond_to: tx,
            })
            .await?)
    }
}

/// The DDP door: `(rid, end, limit, lastSeen)`.
pub(super) async fn call(s: &mut Session, p: Params) -> MethodResult {
    LoadHistory::precheck(s, Method::LoadHistory)?;
    let rid = p.str(0, "rid")?.to_owned();
    let end = p.opt_date(1, "end")?;
    let limit = p.opt_uint(2, "limit")?;
    let _last_seen = p.opt_date(3, "lastSeen")?;
    let messages = LoadHistory { rid, end, limit }.run(s).await?;
    Ok(Some(json!({"messages": wire::room::history(&messages), "unreadNotLoaded": 0})))
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
    let room = room(s, rid).await?;
    // A guest that never called `join-room` holds no seat anywhere.
    let uid = uid.ok_or(MethodError::Room(RoomError::NotAllowed))?;
    let max_bytes = s.conn().max_frame_bytes() / 2;
    let limit = MAX_LIMIT as usize;
    let messages = room
        .ask(|tx| RoomCommand::History {
            params: Box::new(HistoryParams { uid, end: None, after: Some(after), limit, max_bytes }),
            respond_to: tx,
        })
        .await?;
    Ok(Some(Value::Array(wire::room::history(&messages))))
}

//! `rooms/get([updatedSince])` and `subscriptions/get([updatedSince])`.
//!
//! Without a date both return a plain list, as Rocket.Chat does; with one,
//! `{update, remove}`. roomd does not keep tombstones, so `remove` is always
//! empty: a client learns of rooms it left from `subscriptions-changed`.

use super::{MethodResult, Params};
use crate::ids::UserId;
use crate::room::Reply;
use crate::room::RoomCommand;
use crate::room::view::{RoomInfo, SubscriptionInfo};
use crate::session::Session;
use crate::time::{Millis, parse_date};
use crate::wire;
use serde_json::{Value, json};

pub(super) async fn rooms(s: &mut Session, p: Params) -> MethodResult {
    let doc = |r: Option<RoomInfo>| r.map(|r| wire::room::room_doc(&r.view()));
    collect(s, p, |uid, tx| RoomCommand::MemberDoc { uid, respond_to: tx }, doc).await
}

pub(super) async fn subscriptions(s: &mut Session, p: Params) -> MethodResult {
    let doc = |s: Option<SubscriptionInfo>| s.map(|s| wire::room::subscription(&s.view()));
    collect(s, p, |uid, tx| RoomCommand::SubscriptionDoc { uid, respond_to: tx }, doc).await
}

/// Asks each of the caller's rooms for one answer, shaped by `doc` into a
/// document (`None` skips a room).
async fn collect<T>(
    s: &mut Session,
    p: Params,
    make: impl Fn(UserId, Reply<T>) -> RoomCommand,
    doc: impl Fn(T) -> Option<Value>,
) -> MethodResult {
    let who = s.require_user()?;
    let since = p.opt_date(0, "updatedSince")?;
    let mut docs = Vec::new();
    for rid in s.server().users.rooms_of(&who.id) {
        // A room this node does not hold is loaded: the user's own rooms
        // are this node's interest while they are signed in here.
        let Ok(Some(room)) = s.server().room(rid.as_str()).await else { continue };
        let uid = who.id.clone();
        if let Ok(doc_of) = room.ask(|tx| make(uid, tx)).await
            && let Some(doc) = doc(doc_of)
        {
            docs.push(doc);
        }
    }
    Ok(Some(shape(docs, since)))
}

fn shape(mut docs: Vec<Value>, since: Option<Millis>) -> Value {
    docs.sort_by(|a, b| a["_id"].as_str().cmp(&b["_id"].as_str()));
    match since {
        None => Value::Array(docs),
        Some(t) => {
            let update: Vec<Value> =
                docs.into_iter().filter(|d| parse_date(&d["_updatedAt"]).is_some_and(|u| u > t)).collect();
            json!({"update": update, "remove": []})
        }
    }
}

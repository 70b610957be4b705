//! DDP subscriptions to Rocket.Chat streams.
//!
//! Streams roomd knows reach a room actor, which checks the caller may read
//! and records the connection for that topic. Streams or events roomd does
//! not produce still get `ready` (clients subscribe to many things
//! speculatively) and simply never fire.

use crate::error::MethodError;
use crate::hub::{LoggedEvent, UserEvent};
use crate::room::{RoomCommand, SubscribeParams, Topic};
use crate::session::{Session, Sub};
use crate::wire;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// Handles `sub`; returns the frames to send, in order.
pub(crate) async fn subscribe(s: &mut Session, id: &str, name: &str, params: Vec<Value>) -> Vec<Utf8Bytes> {
    // A reused id replaces the old subscription; release the old one first
    // so it cannot keep delivering under an id the client can no longer stop.
    s.unsubscribe(id).await;
    // Only subscriptions that deliver something are kept (and counted);
    // at the cap, any new sub id is refused, inert or not.
    if !s.subs().contains_key(id) && s.subs().len() >= s.server().session_limits.max_subscriptions {
        tracing::debug!(conn = %s.conn().id, stream = name, open = s.subs().len(), "sub refused: too many");
        return vec![wire::nosub(id, Some(&MethodError::TooManySubscriptions.to_wire("")))];
    }
    let Some(Value::String(event)) = params.first() else {
        let e = MethodError::matching("params[0]", "the stream's event name (a string)");
        return vec![wire::nosub(id, Some(&e.to_wire("")))];
    };
    // Second param: `true`, `false`, or `{useCollection, args}`.
    let use_collection = match params.get(1) {
        Some(Value::Bool(b)) => *b,
        Some(Value::Object(o)) => o.get("useCollection").and_then(Value::as_bool).unwrap_or(false),
        _ => false,
    };
    let result = match name {
        "stream-room-messages" => room_topic(s, id, event, Topic::Messages).await,
        "stream-notify-room" => match event.rsplit_once('/') {
            Some((rid, "participants")) => room_topic_of(s, id, rid, Topic::Participants).await,
            Some((rid, "typing")) => room_topic_of(s, id, rid, Topic::Typing).await,
            Some((rid, "user-activity")) => room_topic_of(s, id, rid, Topic::UserActivity).await,
            Some((rid, "deleteMessage")) => room_topic_of(s, id, rid, Topic::DeleteMessage).await,
            _ => Ok(()),
        },
        "stream-notify-user" => match event.split_once('/') {
            // Only the user themself may listen to their stream.
            Some((uid, ev)) if s.user().is_some_and(|u| u.id.as_str() == uid) => {
                let event = match ev {
                    "rooms-changed" => Some(UserEvent::RoomsChanged),
                    "subscriptions-changed" => Some(UserEvent::SubscriptionsChanged),
                    "message" => Some(UserEvent::Message),
                    _ => None,
                };
                if let Some(event) = event {
                    user_topic(s, id, event);
                }
                Ok(())
            }
            _ => Err(MethodError::SubNotAllowed),
        },
        "stream-notify-logged" => {
            if let Some(uid) = s.user().map(|u| u.id.clone()) {
                let event = match event.as_str() {
                    "user-status" => Some(LoggedEvent::UserStatus),
                    "roles-change" => Some(LoggedEvent::RolesChange),
                    _ => None,
                };
                if let Some(event) = event {
                    s.server().hub.listen_logged(s.conn(), &uid, event);
                    s.add_sub(id.to_owned(), Sub::Logged(event));
                }
                Ok(())
            } else {
                Err(MethodError::SubNotAllowed)
            }
        }
        _ => Ok(()),
    };
    match result {
        Ok(()) => {
            let mut frames = Vec::with_capacity(2);
            if use_collection {
                frames.push(wire::stream_added(name, event));
            }
            frames.push(wire::ready(id));
            frames
        }
        Err(e) => {
            tracing::debug!(conn = %s.conn().id, stream = name, event = %event, error = %e, "sub refused");
            vec![wire::nosub(id, Some(&e.to_wire("")))]
        }
    }
}

async fn room_topic(s: &mut Session, id: &str, rid: &str, topic: Topic) -> Result<(), MethodError> {
    if rid == "__my_messages__" {
        if s.user().is_none() {
            return Err(MethodError::SubNotAllowed);
        }
        user_topic(s, id, UserEvent::MyMessages);
        return Ok(());
    }
    room_topic_of(s, id, rid, topic).await
}

async fn room_topic_of(s: &mut Session, id: &str, rid: &str, topic: Topic) -> Result<(), MethodError> {
    let room = s.server().room(rid).await?.ok_or(MethodError::SubNotAllowed)?;
    let (uid, signed_in) = match (s.user(), s.guest_id()) {
        (Some(u), _) => (u.id.clone(), true),
        (None, Some(g)) => (g.clone(), false),
        (None, None) => return Err(MethodError::SubNotAllowed),
    };
    let sink = s.conn().sink();
    let sub_id = id.to_owned();
    room.ask(|tx| RoomCommand::Subscribe {
        params: Box::new(SubscribeParams { sink, uid, signed_in, topic, sub_id }),
        respond_to: tx,
    })
    .await
    .map_err(|_| MethodError::SubNotAllowed)?;
    s.add_sub(id.to_owned(), Sub::Room { room, topic });
    Ok(())
}

/// Listens to one of the signed-in user's own events.
fn user_topic(s: &mut Session, id: &str, event: UserEvent) {
    let Some(uid) = s.user().map(|u| u.id.clone()) else {
        return;
    };
    s.server().hub.listen_user(&uid, s.conn(), event);
    s.add_sub(id.to_owned(), Sub::User { uid, event });
}

//! Typing and user-activity notices across nodes. Like on one server they
//! are not durable and not ordered with the room's changes: they travel on
//! plain NATS subjects (`roomd.notify.<rid>`), at most once, and each node
//! relays what it hears to its own listeners of the room.

use super::Cluster;
use crate::ids::{ConnId, RoomId, UserId};
use crate::room::{NotifyParams, RoomCommand, Topic};
use crate::server::ServerState;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Serialize, Deserialize)]
struct NoticeV1 {
    origin: String,
    uid: UserId,
    /// `typing` or `user-activity`.
    topic: String,
    event: String,
    args: Value,
}

impl Cluster {
    /// Passes a notice a member sent through this node to the other nodes.
    pub(crate) fn relay_notice(&self, rid: &RoomId, uid: &UserId, topic: Topic, event: &str, args: &Value) {
        let topic = match topic {
            Topic::Typing => "typing",
            Topic::UserActivity => "user-activity",
            _ => return,
        };
        let notice = NoticeV1 {
            origin: self.origin.clone(),
            uid: uid.clone(),
            topic: topic.to_owned(),
            event: event.to_owned(),
            args: args.clone(),
        };
        let payload = bytes::Bytes::from(serde_json::to_vec(&notice).unwrap_or_default());
        let (client, subject) = (self.js.client(), format!("roomd.notify.{rid}"));
        tokio::spawn(async move {
            if let Err(e) = client.publish(subject, payload).await {
                tracing::debug!(error = %e, "notice not relayed to the other nodes");
            }
        });
    }
}

/// Hands the other nodes' notices to this node's rooms.
pub(super) fn spawn(cluster: Arc<Cluster>, state: Arc<ServerState>) {
    tokio::spawn(async move {
        loop {
            let mut sub = match cluster.js.client().subscribe("roomd.notify.>").await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen to notices; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            while let Some(m) = sub.next().await {
                let Some(rid) = m.subject.as_str().strip_prefix("roomd.notify.") else { continue };
                let Ok(n) = serde_json::from_slice::<NoticeV1>(&m.payload) else { continue };
                let topic = match n.topic.as_str() {
                    "typing" => Topic::Typing,
                    "user-activity" => Topic::UserActivity,
                    _ => continue,
                };
                if n.origin == cluster.origin {
                    continue;
                }
                if let Some(room) = state.registry.get(rid) {
                    // Connection 0 is nobody's: every listener here hears it,
                    // and it is not passed on again.
                    let cmd = RoomCommand::Notify(Box::new(NotifyParams {
                        from: ConnId(0),
                        uid: n.uid,
                        topic,
                        event: n.event,
                        args: n.args,
                    }));
                    room.tell(cmd).await;
                }
            }
        }
    });
}

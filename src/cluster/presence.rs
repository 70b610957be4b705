//! Presence across nodes (`user-status`): a user is online while any node
//! has a connection of theirs.
//!
//! Presence is not durable state (a single server forgets it on restart
//! too), so it travels on plain NATS subjects, not the log: each node
//! announces when a user's first connection on it opens or its last one
//! closes, and every 15 s sends its whole list, which corrects anything a
//! lost message or a late start left wrong. A node that stops heartbeating
//! (see `liveness`) takes its users with it.

use super::Cluster;
use crate::ids::UserId;
use crate::server::ServerState;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

const SUBJECT: &str = "roomd.presence";
const SNAPSHOT_EVERY: Duration = Duration::from_secs(15);

/// One presence message between nodes.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
enum PresenceV1 {
    /// A user's first connection on `origin` opened, or its last closed.
    Change { origin: String, uid: UserId, username: String, online: bool },
    /// Everyone online on `origin` now.
    Snapshot { origin: String, online: Vec<(UserId, String)> },
}

impl Cluster {
    /// Tells the other nodes that `uid` came online or went offline here.
    pub(crate) fn announce_presence(&self, uid: &UserId, username: &str, online: bool) {
        let msg = PresenceV1::Change {
            origin: self.origin.clone(),
            uid: uid.clone(),
            username: username.to_owned(),
            online,
        };
        self.publish_presence(&msg);
    }

    fn publish_presence(&self, msg: &PresenceV1) {
        let client = self.js.client();
        let payload = bytes::Bytes::from(serde_json::to_vec(msg).unwrap_or_default());
        tokio::spawn(async move {
            // At most once, like the rest of presence; the snapshots heal.
            if let Err(e) = client.publish(SUBJECT, payload).await {
                tracing::debug!(error = %e, "presence not sent");
            }
        });
    }
}

/// Listens to the other nodes' presence and sends this node's snapshots.
pub(super) fn spawn(cluster: Arc<Cluster>, state: Arc<ServerState>) {
    let snapshots = (cluster.clone(), state.clone());
    tokio::spawn(async move {
        let (cluster, state) = snapshots;
        loop {
            tokio::time::sleep(SNAPSHOT_EVERY).await;
            let online = state
                .hub
                .online_here()
                .into_iter()
                .map(|uid| {
                    let name = state.users.by_id(&uid).map(|u| u.username).unwrap_or_default();
                    (uid, name)
                })
                .collect();
            cluster.publish_presence(&PresenceV1::Snapshot { origin: cluster.origin.clone(), online });
        }
    });
    tokio::spawn(async move {
        loop {
            let mut sub = match cluster.js.client().subscribe(SUBJECT).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen to presence; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            while let Some(m) = sub.next().await {
                match serde_json::from_slice::<PresenceV1>(&m.payload) {
                    Ok(p) => heard(&cluster, &state, p),
                    Err(e) => tracing::debug!(error = %e, "unreadable presence message"),
                }
            }
        }
    });
}

fn heard(cluster: &Cluster, state: &ServerState, p: PresenceV1) {
    let hub = &state.hub;
    match p {
        PresenceV1::Change { origin, .. } | PresenceV1::Snapshot { origin, .. }
            if origin == cluster.origin => {}
        PresenceV1::Change { origin, uid, username, online } => {
            if hub.remote_presence(&uid, &origin, online) {
                hub.announce_status(&uid, &username, online);
            }
        }
        PresenceV1::Snapshot { origin, online } => {
            let ids: HashSet<UserId> = online.iter().map(|(u, _)| u.clone()).collect();
            for (uid, username) in &online {
                if hub.remote_presence(uid, &origin, true) {
                    hub.announce_status(uid, username, true);
                }
            }
            node_now(state, &origin, &ids);
        }
    }
}

/// Node `origin` has exactly `online` online (nobody if it is gone):
/// announces who is therefore offline everywhere.
pub(super) fn node_now(state: &ServerState, origin: &str, online: &HashSet<UserId>) {
    for uid in state.hub.remote_node_now(origin, online) {
        let name = state.users.by_id(&uid).map(|u| u.username).unwrap_or_default();
        state.hub.announce_status(&uid, &name, false);
    }
}
